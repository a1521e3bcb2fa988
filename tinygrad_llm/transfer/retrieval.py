"""Retrievers: given a question, find the few documents most likely to answer it (Q28).

Two ways to score a document d against a query q, both written here:

BM25 (lexical: exact words). For each distinct query word w found in d, with f its count in d, |d| the
document's length in words and avgdl the mean length:

    idf(w) * f * (k1 + 1) / (f + k1 * (1 - b + b * |d| / avgdl))
    idf(w) = ln(1 + (N - n_w + 0.5) / (n_w + 0.5))       N documents, n_w of them contain w

The idf is the "+1" variant (Lucene's): the 1 inside the log keeps it positive even for a word found in more
than half the documents (the original Robertson-Sparck Jones idf goes negative there). k1 bounds what repeats
of a word can add (the term saturates at idf * (k1 + 1)); b says how much a long document is penalised
(b = 0: not at all, b = 1: fully in proportion to its length).

Embedding cosine (fuzzy: shared pieces of words). A text's vector is the mean of fixed random vectors, one
per character trigram of its words (with boundary marks: "bob" -> "#bo", "bob", "ob#"); documents are ranked
by the cosine between their vector and the query's. Random vectors of dimension D are nearly orthogonal, so
this approximates the cosine of trigram counts; it matches "mother" with "mothers", which BM25 does not.
No training is involved: the embedding is a hashing trick, stated as such.

Both rank with `retrieve(query, k)`, best first, ties broken by document order.
"""
from __future__ import annotations

import re
import zlib
from collections import Counter

import numpy as np


def words(text: str) -> list[str]:
    """Lower-cased runs of letters and digits: 'Who is Bob's mother?' -> ['who', 'is', 'bob', 's', 'mother']."""
    return re.findall(r"[a-z0-9]+", text.lower())


class Retriever:
    """A scorer over a fixed list of documents; subclasses define `scores(query)`."""

    def __init__(self, documents):
        self.documents = list(documents)
        if not self.documents or not all(isinstance(d, str) for d in self.documents):
            raise ValueError(f"{type(self).__name__}: documents must be a non-empty list of strings")

    def scores(self, query: str) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must define scores()")

    def retrieve(self, query: str, k: int = 3) -> list[int]:
        """The indices of the k best documents for `query`, best first (ties: the earlier document first)."""
        if not 1 <= k <= len(self.documents):
            raise ValueError(f"{type(self).__name__}.retrieve: k must be in 1..{len(self.documents)} (the number of "
                             f"documents), got {k}")
        return np.argsort(-self.scores(query), kind="stable")[:k].tolist()


class BM25(Retriever):
    def __init__(self, documents, k1: float = 1.5, b: float = 0.75):
        super().__init__(documents)
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"BM25: needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.k1, self.b = k1, b
        self.counts = [Counter(words(d)) for d in self.documents]
        self.lengths = np.array([sum(c.values()) for c in self.counts], dtype=np.float64)
        self.average_length = max(self.lengths.mean(), 1e-12)
        document_frequency = Counter(w for c in self.counts for w in c)
        n = len(self.documents)
        self.idf = {w: np.log(1 + (n - df + 0.5) / (df + 0.5)) for w, df in document_frequency.items()}

    def scores(self, query: str) -> np.ndarray:
        """BM25 of every document for the distinct words of `query` (a word no document has adds nothing)."""
        length_factor = self.k1 * (1 - self.b + self.b * self.lengths / self.average_length)
        total = np.zeros(len(self.documents))
        for word in set(words(query)) & self.idf.keys():
            frequency = np.array([c.get(word, 0) for c in self.counts], dtype=np.float64)
            total += self.idf[word] * frequency * (self.k1 + 1) / (frequency + length_factor)
        return total


class EmbeddingRetriever(Retriever):
    def __init__(self, documents, dim: int = 256, seed: int = 0):
        super().__init__(documents)
        self.dim, self.seed = dim, seed
        self._trigram_vectors: dict = {}
        self.vectors = np.stack([self.embed(d) for d in self.documents])

    def trigram_vector(self, trigram: str) -> np.ndarray:
        """A fixed N(0, 1/dim) vector per trigram, from a generator seeded by the trigram's CRC32 (Python's hash()
        of a string changes from run to run, so it cannot seed anything reproducible)."""
        if trigram not in self._trigram_vectors:
            rng = np.random.default_rng([self.seed, zlib.crc32(trigram.encode("utf-8"))])
            self._trigram_vectors[trigram] = rng.standard_normal(self.dim) / np.sqrt(self.dim)
        return self._trigram_vectors[trigram]

    def embed(self, text: str) -> np.ndarray:
        """The mean trigram vector of `text`, scaled to unit length (zeros for a text with no letters)."""
        trigrams = [f"#{w}#"[i:i + 3] for w in words(text) for i in range(len(w))]
        if not trigrams:
            return np.zeros(self.dim)
        mean = np.mean([self.trigram_vector(t) for t in trigrams], axis=0)
        return mean / max(np.linalg.norm(mean), 1e-12)

    def scores(self, query: str) -> np.ndarray:
        """Cosine similarity of every document with `query` (all unit vectors, so a dot product)."""
        return self.vectors @ self.embed(query)

