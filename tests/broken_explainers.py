"""Deliberately broken explainers, each named after its bug; test_shapley_lime.py proves that the library's models
or the Shapley properties catch every one."""
import numpy as np

from tinygrad_llm.interpretability.shapley import all_coalitions


def occlusion_that_calls_the_model_on_strings(model, words, target):
    """M52: hands the model the occluded sentences themselves (an (n, words) array of strings) where it expects
    token ids, instead of going through a predict(list of strings) -> probabilities wrapper."""
    occluded = [[word if j != i else "<unk>" for j, word in enumerate(words)] for i in range(len(words))]
    logits = model(np.array(occluded + [list(words)]))  # BUG: raw strings, not token ids
    scores = logits.data[:, -1, target]
    return scores[-1] - scores[:-1]


def predict_without_softmax(score_sentences):
    """M52's twin: a wrapper that returns the model's raw scores (logits) instead of probabilities, so an
    explainer would share out a log-odds difference that no class probability shows."""
    def predict(sentences):
        return score_sentences(sentences)  # BUG: no softmax
    return predict


def shapley_values_with_uniform_weights(value_of, num_words):
    """Weighs every coalition alike, 1 / 2^(d-1) (the Banzhaf index), instead of |S|! (d - |S| - 1)! / d!: still
    symmetric and still 0 for a dummy, but the values no longer add up to v(all) - v(none)."""
    masks = all_coalitions(num_words)
    values = np.asarray(value_of(masks), dtype=np.float64)
    coalition = np.arange(2 ** num_words)
    phi = np.empty(num_words)
    for word in range(num_words):
        without = coalition[~masks[:, word]]
        phi[word] = np.mean(values[without | (1 << word)] - values[without])  # BUG: uniform coalition weight
    return phi


def shapley_values_in_one_order(value_of, num_words):
    """Credits each word with its marginal contribution in the sentence's own order only (weight 1 on the
    coalition of the words before it, 0 on every other): efficient, since the sum telescopes, but two
    interchangeable words get different values depending on which comes first."""
    masks = np.tri(num_words + 1, num_words, k=-1, dtype=bool)  # row k: the first k words
    values = np.asarray(value_of(masks), dtype=np.float64)
    return np.diff(values)  # BUG: one arrival order instead of the average over all d! orders
