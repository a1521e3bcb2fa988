"""Deliberately broken attribution pieces, each named after its bug; test_attribution.py proves that its checks
catch every one."""
import numpy as np


def occlusion_calling_predict_on_a_raw_string(predict, words, target, baseline_token=None):
    """Occlusion that scores the whole sentence with predict(sentence) instead of predict([sentence]) (M52). A
    prediction function that loops over its input reads the string character by character, so the "whole
    sentence" probability is its first character's, and every score is off by the same silent amount."""
    filler = [] if baseline_token is None else [baseline_token]
    full = np.asarray(predict(" ".join(words)))[0]  # BUG: a raw string, not a list of strings
    occluded = np.asarray(predict([" ".join(words[:i] + filler + words[i + 1:]) for i in range(len(words))]))
    return full[target] - occluded[:, target]
