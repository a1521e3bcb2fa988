"""Deliberately broken knowledge pieces, each named after its bug; test_knowledge.py proves that its checks
catch every one."""
import numpy as np

from tinygrad_llm.transfer.knowledge_graph import TransE, transe_score
from tinygrad_llm.transfer.retrieval import BM25, words


class BM25WithoutLengthNormalisation(BM25):
    """Accepts b but never divides by the document's length: a long document that mentions a word once scores
    as high as a one-word document, so padding a document with filler costs it nothing."""

    def scores(self, query):
        total = np.zeros(len(self.documents))
        for word in set(words(query)) & self.idf.keys():
            frequency = np.array([c.get(word, 0) for c in self.counts], dtype=np.float64)
            total += self.idf[word] * frequency * (self.k1 + 1) / (frequency + self.k1)  # BUG: no (1 - b + b|d|/avgdl)
        return total


class TransEThatSubtractsTheRelation(TransE):
    """Scores -||h - r - t||: the relation translates the wrong way, so a perfect fact t = h + r scores -2||r||
    instead of the best possible 0. Training can still lower the loss (it learns r pointing backwards), which is
    why the check is the definition, not the loss."""

    def forward(self, triples):
        heads, tails = self.entities(triples[:, 0]), self.entities(triples[:, 2])
        return transe_score(heads, -self.relations(triples[:, 1]), tails, self.norm)  # BUG: h - r - t
