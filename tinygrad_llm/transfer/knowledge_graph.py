"""Knowledge-graph embeddings: a synthetic family graph and TransE (Q28, M50).

A knowledge graph is a set of facts (head, relation, tail), e.g. (ann, parent_of, bob). TransE (Bordes et
al., 2013) gives every entity and every relation a vector and wants a true fact to be a translation:

    h + r ~ t          score(h, r, t) = -||h + r - t||   (L1 or L2 norm; higher is more plausible)

It learns from the graph alone with a margin ranking loss: a true triple must score at least `margin` above
a corrupted one (its head or tail swapped for a random entity):

    loss = mean(max(0, margin - score(true) + score(corrupted)))

The score only sees the difference h - t, so shifting every entity by one vector changes no score; what
stops the loss from being lowered by blowing the vectors up (which pushes corrupted triples far away) is
the constraint that every entity vector has unit norm, re-imposed after each step.

The graph is data, not a teacher (M50): TransE stores its facts in embeddings, a retriever puts them in a
model's context (retrieval.py); neither is distillation, which copies a model's outputs.

Evaluation ranks the true tail of each held-out fact among all entities ("filtered": other true tails of
the same (head, relation) are left out, so a correct alternative is not counted as a mistake) and reports
the mean reciprocal rank (MRR) and Hits@10, against the same model with its random initial embeddings.
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np

from ..autograd import no_grad
from ..nn import init
from ..nn.layers import Embedding
from ..nn.module import Module
from ..optim import SGD
from ..random import manual_seed
from ..tensor import Tensor

RELATIONS = ("parent_of", "child_of", "sibling_of", "spouse_of", "grandparent_of", "grandchild_of")
INVERSE = {"parent_of": "child_of", "child_of": "parent_of", "sibling_of": "sibling_of", "spouse_of": "spouse_of",
           "grandparent_of": "grandchild_of", "grandchild_of": "grandparent_of"}
NORMS = (1, 2)
_CONSONANTS, _VOWELS = "bcdfghjklmnprstvz", "aeiou"


@functools.cache
def all_names() -> tuple[str, ...]:
    """Every consonant-vowel-consonant name ('bab' .. 'zuz'): 1445 three-letter names, all the same length,
    so sentences about different people line up character by character. Built once (a tuple, so shared
    safely)."""
    return tuple("".join(letters) for letters in itertools.product(_CONSONANTS, _VOWELS, _CONSONANTS))


@dataclass(frozen=True)
class FamilyGraph:
    """People (entity ids 0..n-1, with names and genders 'f'/'m') and the relations between them.

    parents[i] is (mother, father) of person i, or None for a founder or someone who married into a family;
    spouse[i] is their spouse's id or -1. Every triple follows from these two tables (see `triples`).
    """

    names: tuple
    genders: tuple
    parents: tuple
    spouse: tuple

    @property
    def num_entities(self) -> int:
        return len(self.names)

    @property
    def num_relations(self) -> int:
        return len(RELATIONS)

    def children(self, person: int) -> list[int]:
        return [c for c, pair in enumerate(self.parents) if pair is not None and person in pair]

    def triples(self) -> np.ndarray:
        """Every fact as an (N, 3) int64 array of (head, relation id, tail), relation ids indexing RELATIONS."""
        facts = set()

        def add(head, relation, tail):
            facts.add((head, RELATIONS.index(relation), tail))

        for child, pair in enumerate(self.parents):
            if pair is None:
                continue
            for parent in pair:
                add(parent, "parent_of", child)
                add(child, "child_of", parent)
                for grandparent in self.parents[parent] or ():
                    add(grandparent, "grandparent_of", child)
                    add(child, "grandchild_of", grandparent)
            for sibling, other in enumerate(self.parents):
                if sibling != child and other == pair:
                    add(child, "sibling_of", sibling)
        for person, partner in enumerate(self.spouse):
            if partner >= 0:
                add(person, "spouse_of", partner)
        return np.array(sorted(facts), dtype=np.int64).reshape(-1, 3)


def make_family_graph(num_families: int = 8, generations: int = 3, children: tuple = (2, 3), seed: int = 0) -> FamilyGraph:
    """Families over `generations`: each starts from a married couple; each couple has between children[0]
    and children[1] children (random genders); every child except in the last generation marries someone
    from outside (of the other gender) and has children in turn. Names are distinct. Deterministic in seed."""
    if num_families < 1 or generations < 1 or not 1 <= children[0] <= children[1]:
        raise ValueError(f"make_family_graph: need num_families >= 1, generations >= 1 and 1 <= children[0] <= "
                         f"children[1], got {num_families}, {generations}, {children}")
    rng = np.random.default_rng(seed)
    genders, parents, spouse = [], [], []

    def new_person(gender, pair=None):
        genders.append(gender)
        parents.append(pair)
        spouse.append(-1)
        return len(genders) - 1

    def marry(a, b):
        spouse[a], spouse[b] = b, a
        return (a, b) if genders[a] == "f" else (b, a)  # (mother, father)

    couples = [marry(new_person("f"), new_person("m")) for _ in range(num_families)]
    for _ in range(generations - 1):
        next_couples = []
        for couple in couples:
            for _ in range(rng.integers(children[0], children[1] + 1)):
                child = new_person(str(rng.choice(["f", "m"])), couple)
                partner = new_person("m" if genders[child] == "f" else "f")
                next_couples.append(marry(child, partner))
        couples = next_couples
    for couple in couples:  # the last generation: children without spouses
        for _ in range(rng.integers(children[0], children[1] + 1)):
            new_person(str(rng.choice(["f", "m"])), couple)
    names = all_names()
    if len(genders) > len(names):
        raise ValueError(f"make_family_graph: {len(genders)} people but only {len(names)} distinct names; "
                         "use fewer families, generations or children")
    chosen = rng.choice(len(names), size=len(genders), replace=False)
    return FamilyGraph(tuple(names[i] for i in chosen), tuple(genders), tuple(parents), tuple(spouse))


def inverse_triples(triples: np.ndarray) -> np.ndarray:
    """(t, inverse(r), h) for every (h, r, t): the same facts read the other way round."""
    inverse_ids = np.array([RELATIONS.index(INVERSE[name]) for name in RELATIONS])
    return np.stack([triples[:, 2], inverse_ids[triples[:, 1]], triples[:, 0]], axis=1)


def split_triples(triples: np.ndarray, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, test): for a random `test_fraction` of the facts, one direction is held out for the test and its
    inverse stays in training (parent_of(a, b) tested, child_of(b, a) trained), so every test fact is unseen but
    inferable from the training graph. Every triple lands in exactly one of the two."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"split_triples: test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    index = {tuple(t): i for i, t in enumerate(triples.tolist())}
    partner = np.array([index[tuple(t)] for t in inverse_triples(triples).tolist()])
    pairs = sorted({(min(i, j), max(i, j)) for i, j in enumerate(partner)})
    is_test = np.zeros(len(triples), dtype=bool)
    for i, j in pairs:
        if rng.random() < test_fraction:
            is_test[i if rng.random() < 0.5 else j] = True
    return triples[~is_test], triples[is_test]


# ------------------------------------------------------------------------------------------------ TransE
def transe_score(heads: Tensor, relations: Tensor, tails: Tensor, norm: int = 1) -> Tensor:
    """-||h + r - t||_norm over the last axis: 0 for a perfect translation, more negative the further off."""
    if norm not in NORMS:
        raise ValueError(f"transe_score: norm must be 1 (L1) or 2 (L2), got {norm!r}")
    difference = heads + relations - tails
    distance = difference.abs().sum(axis=-1) if norm == 1 else (difference * difference).sum(axis=-1).sqrt()
    return -distance


def margin_ranking_loss(positive_scores: Tensor, negative_scores: Tensor, margin: float = 1.0) -> Tensor:
    """mean(max(0, margin - positive + negative)): zero once every true triple beats its corruption by margin."""
    if positive_scores.shape != negative_scores.shape:
        raise ValueError(f"margin_ranking_loss: positive {positive_scores.shape} and negative {negative_scores.shape} "
                         "scores must have the same shape (one corruption per true triple)")
    return (margin - positive_scores + negative_scores).relu().mean()


def corrupt(triples: np.ndarray, num_entities: int, rng: np.random.Generator) -> np.ndarray:
    """Each triple with its head or its tail (a coin flip) replaced by a uniformly random entity. A corruption
    can happen to be a true fact; with many entities that is rare, and the loss tolerates the noise."""
    corrupted = triples.copy()
    replace_head = rng.random(len(triples)) < 0.5
    random_entities = rng.integers(0, num_entities, len(triples))
    corrupted[replace_head, 0] = random_entities[replace_head]
    corrupted[~replace_head, 2] = random_entities[~replace_head]
    return corrupted


class TransE(Module):
    """One vector per entity and per relation; score(h, r, t) = -||e_h + w_r - e_t||.

    Initialised as in the paper: uniform in +-6/sqrt(dim), relation vectors then scaled to unit norm once,
    entity vectors kept at unit norm throughout (call `normalize_entities_` after every step)."""

    def __init__(self, num_entities: int, num_relations: int, dim: int = 32, norm: int = 1):
        if norm not in NORMS:
            raise ValueError(f"TransE: norm must be 1 (L1) or 2 (L2), got {norm!r}")
        self.norm = norm
        bound = 6 / np.sqrt(dim)
        self.entities = Embedding(num_entities, dim)
        self.relations = Embedding(num_relations, dim)
        for table in (self.entities, self.relations):
            init.uniform_(table.weight, -bound, bound)
        self.relations.weight.data /= np.linalg.norm(self.relations.weight.data, axis=1, keepdims=True)
        self.normalize_entities_()

    def normalize_entities_(self):
        """Project every entity vector back onto the unit sphere (in place, outside the graph)."""
        weight = self.entities.weight.data
        weight /= np.linalg.norm(weight, axis=1, keepdims=True)
        return self

    def forward(self, triples) -> Tensor:
        """Scores of (N, 3) triples (head, relation, tail) -> (N,)."""
        triples = np.asarray(triples)
        if triples.ndim != 2 or triples.shape[1] != 3:
            raise ValueError(f"TransE: triples must be an (N, 3) array of (head, relation, tail) ids, got {triples.shape}")
        return transe_score(self.entities(triples[:, 0]), self.relations(triples[:, 1]), self.entities(triples[:, 2]),
                            self.norm)

    def tail_scores(self, heads, relations) -> np.ndarray:
        """(N, num_entities): the score of every entity as the tail of each (head, relation)."""
        entities = self.entities.weight.data
        translated = entities[np.asarray(heads)] + self.relations.weight.data[np.asarray(relations)]
        difference = translated[:, None, :] - entities[None, :, :]
        distance = np.abs(difference).sum(-1) if self.norm == 1 else np.sqrt((difference * difference).sum(-1))
        return -distance


def transe_loss(model: TransE, triples: np.ndarray, rng: np.random.Generator, margin: float = 1.0) -> Tensor:
    """The margin ranking loss of `triples` against one fresh corruption each."""
    return margin_ranking_loss(model(triples), model(corrupt(triples, model.entities.num_embeddings, rng)), margin)


def train_transe(train: np.ndarray, num_entities: int, num_relations: int, dim: int = 32, norm: int = 1,
                 margin: float = 1.0, epochs: int = 200, batch_size: int = 128, lr: float = 0.05, seed: int = 0) -> TransE:
    """SGD on shuffled mini-batches of the training triples (the paper's recipe), entity norms reset to 1 after
    every step. Returns the trained model."""
    manual_seed(seed)
    model = TransE(num_entities, num_relations, dim, norm)
    optimizer = SGD(model.parameters(), lr=lr)
    rng = np.random.default_rng([seed, 1])
    for _ in range(epochs):
        order = rng.permutation(len(train))
        for start in range(0, len(train), batch_size):
            optimizer.zero_grad()
            transe_loss(model, train[order[start:start + batch_size]], rng, margin).backward()
            optimizer.step()
            model.normalize_entities_()
    return model


def filtered_ranks(model: TransE, test: np.ndarray, known: np.ndarray) -> np.ndarray:
    """The rank (1 = best) of each test triple's true tail among all entities, after removing the other tails
    that `known` (every true triple: train and test) lists for the same (head, relation). Ties count against
    the model, so a model that scores everything alike gets the worst rank, not the best."""
    true_tails: dict = {}
    for head, relation, tail in known.tolist():
        true_tails.setdefault((head, relation), set()).add(tail)
    with no_grad():
        scores = model.tail_scores(test[:, 0], test[:, 1])
    ranks = np.empty(len(test), dtype=np.int64)
    for i, (head, relation, tail) in enumerate(test.tolist()):
        competitors = np.ones(scores.shape[1], dtype=bool)
        competitors[list(true_tails.get((head, relation), ()))] = False
        ranks[i] = 1 + int((scores[i, competitors] >= scores[i, tail]).sum())
    return ranks


def ranking_metrics(ranks: np.ndarray) -> dict:
    """Mean reciprocal rank, Hits@10 (the fraction ranked in the top 10) and mean rank."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0 or (ranks < 1).any():
        raise ValueError(f"ranking_metrics: needs ranks >= 1, got {ranks.size} ranks with minimum "
                         f"{ranks.min() if ranks.size else None}")
    return {"mrr": float(np.mean(1 / ranks)), "hits_at_10": float(np.mean(ranks <= 10)), "mean_rank": float(ranks.mean())}
