"""A deliberately broken n-gram ban, named after its bug; test_restricted_decoding.py proves that its checks
catch it."""
import numpy as np


def ban_ngrams_without_their_prefix(ngrams):
    """Bans each n-gram's last token at every step, whatever the text ends with: "the" banned this way also
    removes every "e", so the output is restricted far beyond the n-gram. The rate of the banned n-gram is
    still 0, which is why a check must look at the steps where the prefix is NOT there."""
    ngrams = [tuple(ngram) for ngram in ngrams]

    def process(ids, logits):
        logits = np.array(logits, dtype=np.float64)
        for ngram in ngrams:
            logits[:, ngram[-1]] = -np.inf  # BUG: should only fire in rows whose text ends with ngram[:-1]
        return logits

    return process
