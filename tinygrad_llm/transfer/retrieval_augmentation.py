"""Retrieval augmentation: answer a question from facts put into the model's context (Q28, Q29's link).

A knowledge base (KB) of family facts becomes short sentences ("the mother of bob is ann."). A small GPT, one
token per word, is trained to read a prompt

    facts: the father of kim is dov. the mother of bob is ann. question: who is the mother of bob? answer: ann.

and to write the answer (the loss is on the answer and its full stop only). It must learn to find the fact
that matches the question and copy its name, not to store the facts. Two choices make sure of that:

- Held-out people: the people it is tested on are never the subject of a training question.
- Anonymised names (the trick reading-comprehension datasets use to stop a reader answering from memory):
  before the reader sees an episode, every name in it is replaced by one of a few READER_NAMES, drawn at
  random per episode and applied consistently to the prompt and the answer. "Who is p3's mother" means a
  different person in every episode, so memorising a family cannot lower the loss, and the reader's whole
  vocabulary of names is 16 tokens that it sees in every batch: copying one of them from the context is
  an induction head's job, which a two-layer model learns in a hundred steps. (Measured: with the 1445 real
  names as tokens the same reader got 1% exact match after 600 steps, each name's embedding being trained
  too rarely; with names spelt out character by character, 0% after 150.)

Where the facts come from is the experiment:

    none       no facts at all: the model can only guess (the closed-book baseline)
    bm25       the k facts a BM25 retriever ranks highest for the question
    embedding  the k facts the trigram-embedding retriever ranks highest
    oracle     the true fact among k - 1 retrieved distractors: what a perfect retriever would give

Retrieval runs on the real sentences; only the reader's copy is anonymised. When the KB changes (a fact is
edited), the retriever's index is rebuilt from the new sentences and the same model, without retraining,
answers with the new fact; without facts it has nothing to read the new answer from.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .. import optim
from ..autograd import no_grad
from ..data.seq2seq_tasks import TaskVocabulary
from ..nn import functional as F
from ..nn.gpt import GPT
from ..random import manual_seed
from .knowledge_graph import FamilyGraph, all_names
from .retrieval import BM25, Retriever

QA_RELATIONS = ("mother", "father", "spouse")  # one answer each, and all six letters long
IGNORE = -100  # cross-entropy's ignore_index: prompt and padding positions carry no loss
ANSWER_END = "."


@dataclass(frozen=True)
class Question:
    relation: str
    person: str

    @property
    def text(self) -> str:
        return f"who is the {self.relation} of {self.person}?"


def fact_sentence(question: Question, answer: str) -> str:
    return f"the {question.relation} of {question.person} is {answer}."


def knowledge_base(graph: FamilyGraph) -> dict:
    """{Question: answer name} for every person's mother, father and spouse that the graph knows."""
    kb = {}
    for person, name in enumerate(graph.names):
        if graph.parents[person] is not None:
            mother, father = graph.parents[person]
            kb[Question("mother", name)] = graph.names[mother]
            kb[Question("father", name)] = graph.names[father]
        if graph.spouse[person] >= 0:
            kb[Question("spouse", name)] = graph.names[graph.spouse[person]]
    return kb


def edit_knowledge_base(kb: dict, questions, seed: int = 0) -> dict:
    """A copy of `kb` in which each of `questions` has a new answer: a random name different from the old one."""
    rng = np.random.default_rng(seed)
    names = all_names()
    edited = dict(kb)
    for question in questions:
        new = kb[question]
        while new == kb[question]:
            new = names[rng.integers(len(names))]
        edited[question] = new
    return edited


def split_people(kb: dict, held_out_fraction: float = 0.25, seed: int = 0) -> tuple[list, list]:
    """(train questions, test questions), split by the person asked about: no test person is ever the subject
    of a training question, so a right test answer must come from the context."""
    people = sorted({q.person for q in kb})
    held_out = set(np.random.default_rng(seed).choice(people, int(round(len(people) * held_out_fraction)), replace=False))
    return [q for q in kb if q.person not in held_out], [q for q in kb if q.person in held_out]


def prompt(facts, question: Question) -> str:
    """The text the model continues with the answer."""
    return "facts: " + "".join(f + " " for f in facts) + f"question: {question.text} answer: "


def context_with_answer(retriever: Retriever, question: Question, gold_fact: str, k: int, rng) -> list[str]:
    """The retriever's top k facts with the gold fact guaranteed (it replaces the last one if missing), in random
    order: the "oracle" context, and what the model is trained on (it must find the fact, not count on place)."""
    facts = [retriever.documents[i] for i in retriever.retrieve(question.text, k)]
    if gold_fact not in facts:
        facts[-1] = gold_fact
    return [facts[i] for i in rng.permutation(k)]


PROMPT_WORDS = ("facts", "question", "answer", "who", "is", "the", "of") + QA_RELATIONS + (".", "?", ":")
READER_NAMES = all_names()[:16]  # at most 2 names per fact: enough for k <= 8 facts per prompt


def qa_tokens(text: str) -> list[str]:
    """Words and punctuation marks: 'of bob is ann.' -> ['of', 'bob', 'is', 'ann', '.']."""
    return re.findall(r"[a-z]+|[.?:]", text)


def qa_vocabulary() -> TaskVocabulary:
    """One token per word: the prompt's few words and the READER_NAMES. Real names are not in it: an episode
    is anonymised (see `anonymise`) before it is encoded."""
    return TaskVocabulary(PROMPT_WORDS + READER_NAMES)


def encode_examples(vocabulary, prompts, answers, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets), both (N, length): prompt + answer + '.' right-padded; targets are the next tokens
    at the answer's positions and IGNORE elsewhere. Right padding needs no mask: a causal model never looks
    ahead at it."""
    inputs = np.full((len(prompts), length), vocabulary.pad_id, dtype=np.int64)
    targets = np.full((len(prompts), length), IGNORE, dtype=np.int64)
    for row, (text, answer) in enumerate(zip(prompts, answers)):
        prompt_ids = vocabulary.encode(qa_tokens(text))
        answer_ids = vocabulary.encode(qa_tokens(answer + ANSWER_END))
        ids = np.concatenate([prompt_ids, answer_ids])
        if len(ids) > length + 1:
            raise ValueError(f"encode_examples: example {row} has {len(ids)} tokens, more than length + 1 = "
                             f"{length + 1}; raise the length (the model's context_size)")
        inputs[row, :len(ids) - 1] = ids[:-1]
        start = len(prompt_ids) - 1  # the last prompt character predicts the answer's first
        targets[row, start:start + len(answer_ids)] = answer_ids
    return inputs, targets


def exact_match(model, inputs: np.ndarray, targets: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Per example: is every answer character (and the full stop) the model's most likely next character?
    That is exactly "greedy decoding writes the answer": each argmax is the gold character, so the greedy
    continuation is the gold continuation. One teacher-forced forward pass instead of a loop of decoding steps."""
    correct = []
    with no_grad():
        for start in range(0, len(inputs), batch_size):
            logits = model(inputs[start:start + batch_size]).data
            batch_targets = targets[start:start + batch_size]
            scored = batch_targets != IGNORE
            correct.append(((logits.argmax(-1) == batch_targets) | ~scored).all(axis=1))
    return np.concatenate(correct)


def train_reader(inputs: np.ndarray, targets: np.ndarray, vocab_size: int, steps: int = 600, batch_size: int = 32,
                 embed_dim: int = 64, num_heads: int = 4, num_layers: int = 2, lr: float = 3e-3,
                 positions: str = "learned", seed: int = 0) -> GPT:
    """A small GPT trained with Adam (linear warmup, cosine decay, clipping at 1) on random batches of the
    encoded examples, with the loss on the answer tokens only."""
    manual_seed(seed)
    model = GPT(vocab_size, context_size=inputs.shape[1], embed_dim=embed_dim, num_heads=num_heads,
                num_layers=num_layers, positions=positions).train()
    optimizer = optim.Adam(model.parameters(), lr=lr)
    scheduler = optim.LinearWarmupCosine(optimizer, max(1, steps // 10), steps, min_lr=lr / 10)
    rng = np.random.default_rng([seed, 1])
    for _ in range(steps):
        rows = rng.integers(0, len(inputs), batch_size)
        optimizer.zero_grad()
        F.cross_entropy(model(inputs[rows]), targets[rows], ignore_index=IGNORE).backward()
        optim.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
    return model.eval()


def anonymise(texts, rng) -> list[str]:
    """The same texts with every name replaced by one of READER_NAMES, drawn at random (consistently across
    the texts, distinct names staying distinct, a different draw per call): pass an episode's prompt and its
    answer(s) together. A name the prompt lacks (a closed-book answer) still gets a name, one the prompt does
    not use, so guessing it is the only way to be right."""
    known = set(all_names())
    fresh = iter(rng.permutation(len(READER_NAMES)))
    mapping: dict = {}

    def rename(match):
        word = match.group(0)
        if word in known and word not in mapping:
            chosen = next(fresh, None)
            if chosen is None:
                raise ValueError(f"anonymise: more than {len(READER_NAMES)} distinct names in one episode "
                                 f"({texts!r}); use fewer facts per prompt")
            mapping[word] = READER_NAMES[chosen]
        return mapping.get(word, word)

    return [re.sub(r"[a-z]+", rename, text) for text in texts]


def training_examples(kb: dict, questions, k: int, closed_book_fraction: float, renamings: int = 8,
                      seed: int = 0) -> tuple[list, list]:
    """(prompts, answers) for `questions`, each `renamings` times anonymised afresh: k facts
    from a BM25 index of the facts about these questions' people (gold guaranteed, order shuffled), and a
    `closed_book_fraction` of the prompts without facts, so that a prompt with no facts is something the model
    has seen."""
    rng = np.random.default_rng([seed, 2])
    retriever = BM25([fact_sentence(q, kb[q]) for q in questions])
    retrieved = {q: context_with_answer(retriever, q, fact_sentence(q, kb[q]), k, rng) for q in questions}
    prompts, answers = [], []
    for _ in range(renamings):
        for q in questions:
            facts = [] if rng.random() < closed_book_fraction else [retrieved[q][i] for i in rng.permutation(k)]
            text, answer = anonymise([prompt(facts, q), kb[q]], rng)
            prompts.append(text)
            answers.append(answer)
    return prompts, answers
