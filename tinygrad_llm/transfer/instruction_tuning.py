"""Instruction tuning (Q42's backing, Q27): teach a pretrained LM to answer a request instead of continuing text.

A base language model continues whatever it is given. Instruction tuning is ordinary next-token training on
examples written in one fixed format, here

    <|bos|>Q: flip abc
    A: cba<|eos|>

so that, given "Q: ...\\nA: ", the likeliest continuation is the answer followed by <|eos|> (the model learns
to stop). The tasks are synthetic with planted, checkable answers (copy a word, flip it, write it in capitals),
so "did it follow the instruction?" is an exact string comparison. They are sized for a tiny GPT: every task
name has four letters and every word three, so each letter of the word always sits at the same position, and
each answer letter is one fixed lookup (which position, and whether to capitalise) that the task name selects.

Loss on the response only. Every example is split into the prompt (bos, "Q: <request>\\nA: ") and the response
("<answer><|eos|>"), and only the response tokens are targets; the prompt is read but never predicted. Why:
- the prompt is given at inference time, so predicting it is a skill the model never needs; the gradient
  it brings would pull capacity towards modelling the requests (and their fixed template, which is easy
  and would dominate the mean loss of a short answer);
- the loss then measures exactly what we care about: how likely the right answer is given the question.
The mask marks tokens, not positions of logits: loss_mask[t] says "token t is a target", and the logits
that predict it are those at position t - 1 (instruction_loss does the shift).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.char_tokenizer import CharTokenizer
from ..data.padding import pad_batch
from ..generation.generate import generate
from ..nn import functional as F

TASKS = ("copy", "flip", "caps")  # one length: the word starts at the same position whatever the task
WORD_LETTERS = "abcdefgh"
WORD_LENGTH = 3
INSTRUCTION_ALPHABET = "\n :QA" + "".join(TASKS) + WORD_LETTERS + WORD_LETTERS.upper()
IGNORE_INDEX = -100


def format_prompt(prompt: str) -> str:
    """The text the model is given: the request in the instruction template, up to where the answer starts."""
    return f"Q: {prompt}\nA: "


def instruction_tokenizer(extra_text: str = "") -> CharTokenizer:
    """A character tokenizer that covers the instruction format and the tasks (plus any other text, e.g. the
    pretraining corpus, so one vocabulary serves both)."""
    return CharTokenizer.train(INSTRUCTION_ALPHABET + extra_text)


def answer(task: str, argument: str) -> str:
    """The planted ground truth of one request."""
    if task == "copy":
        return argument
    if task == "flip":
        return argument[::-1]
    if task == "caps":
        return argument.upper()
    raise ValueError(f"answer: task must be one of {TASKS}, got {task!r}")


def random_request(rng: np.random.Generator, tasks=TASKS) -> tuple[str, str]:
    """(prompt, correct response) for one random request: a task and a word of WORD_LENGTH letters."""
    task = tasks[rng.integers(len(tasks))]
    argument = "".join(rng.choice(list(WORD_LETTERS), size=WORD_LENGTH))
    return f"{task} {argument}", answer(task, argument)


def instruction_dataset(count: int, seed: int = 0, tasks=TASKS) -> list[tuple[str, str]]:
    """`count` (prompt, response) pairs drawn independently."""
    rng = np.random.default_rng(seed)
    return [random_request(rng, tasks) for _ in range(count)]


def build_example(prompt: str, response: str, tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """(ids, loss_mask), both of length len(prompt tokens) + len(response tokens).

    ids = bos + format_prompt(prompt) + response + eos; loss_mask is True exactly at the response tokens and
    the eos (stopping is part of the answer), False at bos and the prompt (see the module docstring for why).
    """
    if not response:
        raise ValueError(f"build_example: the response to {prompt!r} is empty; an example needs at least one "
                         "response token to train on (the eos alone would teach the model to say nothing)")
    prompt_ids = tokenizer.encode(format_prompt(prompt), add_bos=True)
    response_ids = tokenizer.encode(response, add_eos=True)
    ids = np.concatenate([prompt_ids, response_ids])
    loss_mask = np.concatenate([np.zeros(len(prompt_ids), bool), np.ones(len(response_ids), bool)])
    return ids, loss_mask


@dataclass
class InstructionBatch:
    ids: np.ndarray  # (B, T) int64, right-padded with pad_id
    loss_mask: np.ndarray  # (B, T) bool, True at response tokens (never at padding)


def collate(examples, pad_id: int) -> InstructionBatch:
    """Right-pad (ids, loss_mask) examples into one batch. Right padding with a causal model changes nothing
    for the real tokens (they never attend to later positions), and the mask is False on the padding."""
    padded = pad_batch([ids for ids, _ in examples], pad_id)
    loss_mask = np.zeros(padded.ids.shape, bool)
    for row, (_, mask) in enumerate(examples):
        loss_mask[row, :len(mask)] = mask
    return InstructionBatch(padded.ids, loss_mask)


def next_token_targets(ids: np.ndarray, loss_mask: np.ndarray, function: str) -> tuple[np.ndarray, np.ndarray]:
    """(inputs ids[:, :-1], targets ids[:, 1:] with IGNORE_INDEX wherever the mask is off): the shift that lines
    each masked token up with the logits that predict it."""
    ids, loss_mask = np.asarray(ids), np.asarray(loss_mask, dtype=bool)
    if ids.ndim != 2 or ids.shape != loss_mask.shape or ids.shape[1] < 2:
        raise ValueError(f"{function}: ids and the mask must be (batch, T) arrays of one shape with T >= 2, got "
                         f"ids {ids.shape} and mask {loss_mask.shape}")
    if loss_mask[:, 0].any():
        raise ValueError(f"{function}: the mask is True at position 0, but the first token has no logits that "
                         "predict it; start every sequence with a prompt (at least a bos token)")
    targets = np.where(loss_mask[:, 1:], ids[:, 1:], IGNORE_INDEX)
    return ids[:, :-1], targets


def instruction_loss(model, batch: InstructionBatch):
    """Mean cross-entropy over the response tokens of the batch (every response token weighs the same)."""
    inputs, targets = next_token_targets(batch.ids, batch.loss_mask, "instruction_loss")
    return F.cross_entropy(model(inputs), targets, ignore_index=IGNORE_INDEX)


def respond(model, tokenizer, prompts, max_new_tokens: int = 8) -> list[str]:
    """The model's greedy answers to a list of requests: the text generated after the template, up to <|eos|>.
    Requests whose prompts have the same number of tokens are decoded together, as one batch."""
    encoded = [tokenizer.encode(format_prompt(prompt), add_bos=True) for prompt in prompts]
    answers = [""] * len(prompts)
    for length in sorted({len(ids) for ids in encoded}):
        rows = [i for i, ids in enumerate(encoded) if len(ids) == length]
        generated = generate(model, np.stack([encoded[i] for i in rows]), max_new_tokens, temperature=0,
                             stop_token_id=tokenizer.eos_id)
        for row, ids in zip(rows, generated[:, length:]):
            finished = np.flatnonzero(ids == tokenizer.eos_id)
            answers[row] = tokenizer.decode(ids[:finished[0]] if finished.size else ids, skip_special_tokens=True)
    return answers


def response_accuracy(model, tokenizer, pairs) -> float:
    """The fraction of (prompt, response) pairs whose greedy answer is exactly the response."""
    longest = max(len(response) for _, response in pairs)
    answers = respond(model, tokenizer, [prompt for prompt, _ in pairs], longest + 1)
    return float(np.mean([given == response for given, (_, response) in zip(answers, pairs)]))
