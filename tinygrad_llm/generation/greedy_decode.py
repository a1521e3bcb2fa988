"""Greedy decoding for encoder-decoder models: encode once, then take the most probable token at each step.

    encoded = model.encode(source)                   the source is read once
    prefix  = [BOS]
    repeat: y = argmax p(y | prefix, source); append y; stop at EOS or max_length

Training never runs this loop: teacher forcing feeds the GOLD prefix. At inference the prefix is the
model's own, so one early mistake is fed back in and can derail the rest (exposure bias); comparing
teacher-forced accuracy with free-running accuracy measures how much that costs.

Each step feeds only the newest token: the model's cache holds the rest (self-attention keys and values, or
an RNN state) and the encoder's keys and values, computed once per source.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..autograd import no_grad
from ..device import as_array_on
from ..nn import functional as F


@dataclass
class DecodedBatch:
    """One output per source: `tokens` without BOS and EOS, `scores` the summed log-probability of the tokens
    and of the EOS that ended them, `finished` False where max_length cut a sequence before its EOS."""

    tokens: list[list[int]]
    scores: np.ndarray
    finished: np.ndarray


def resolve_max_length(model, max_length: int | None, caller: str) -> int:
    """The number of tokens (EOS included) to generate at most: the caller's, or the model's target limit."""
    limit = model.max_target_length
    if max_length is None:
        if limit is None:
            raise ValueError(f"{caller}: {type(model).__name__} has no target length limit; pass max_length")
        return limit
    if not isinstance(max_length, (int, np.integer)) or max_length < 1:
        raise ValueError(f"{caller}: max_length must be a positive integer, got {max_length!r}")
    if limit is not None and max_length > limit:
        raise ValueError(f"{caller}: max_length={max_length} exceeds the model's max_target_length={limit}")
    return int(max_length)


def next_token_log_probs(model, last_tokens: np.ndarray, encoded, cache) -> np.ndarray:
    """log p(next token) (B, V) after feeding `last_tokens` (B,) through the cached decoder, as a host array:
    the search's bookkeeping runs on the CPU whatever the model's device."""
    logits = model.decode(last_tokens[:, None], encoded, cache=cache)
    return as_array_on(F.log_softmax(logits[:, 0], axis=-1).data, "cpu").astype(np.float64)


def strip_after_eos(sequence, eos_id: int) -> tuple[list[int], bool]:
    """The tokens (as ints) before the first EOS, and whether there was one."""
    sequence = [int(token) for token in sequence]
    if eos_id in sequence:
        return sequence[:sequence.index(eos_id)], True
    return sequence, False


def greedy_decode(model, source, source_padding=None, *, bos_id: int, eos_id: int,
                  max_length: int | None = None) -> DecodedBatch:
    """The argmax output for every source (B, S), in one batched loop of at most max_length steps."""
    max_length = resolve_max_length(model, max_length, "greedy_decode")
    with no_grad():
        encoded = model.encode(source, source_padding)
        cache = model.new_cache(encoded)
        batch = encoded.batch_size
        last = np.full(batch, bos_id, dtype=np.int64)
        scores, finished = np.zeros(batch), np.zeros(batch, dtype=bool)
        generated = []
        for _ in range(max_length):
            log_probs = next_token_log_probs(model, last, encoded, cache)
            last = np.where(finished, eos_id, log_probs.argmax(axis=-1))
            scores += np.where(finished, 0.0, log_probs[np.arange(batch), last])
            generated.append(last)
            finished |= last == eos_id
            if finished.all():
                break
    outputs = [strip_after_eos(row, eos_id) for row in np.stack(generated, axis=1)]
    return DecodedBatch([tokens for tokens, _ in outputs], scores, np.array([done for _, done in outputs]))


def sequence_log_prob(model, source, targets: list, source_padding=None, *, bos_id: int, eos_id: int) -> np.ndarray:
    """Teacher-forced log p(target + EOS | source) for each (source row, target token list): the score greedy and
    beam search report for a FINISHED sequence they return, computed in one pass instead of step by step."""
    if len(targets) != np.shape(source)[0]:
        raise ValueError(f"sequence_log_prob: {len(targets)} targets for {np.shape(source)[0]} sources")
    length = max(len(t) for t in targets) + 1
    decoder_input = np.full((len(targets), length), eos_id, dtype=np.int64)
    gold = np.full((len(targets), length), eos_id, dtype=np.int64)
    for row, target in enumerate(targets):
        decoder_input[row, 0] = bos_id
        decoder_input[row, 1:len(target) + 1] = target
        gold[row, :len(target)] = target
    with no_grad():
        log_probs = F.log_softmax(model(source, decoder_input, source_padding), axis=-1).data.astype(np.float64)
    picked = np.take_along_axis(log_probs, gold[..., None], axis=-1)[..., 0]
    counted = np.arange(length)[None, :] <= np.array([len(t) for t in targets])[:, None]
    return (picked * counted).sum(axis=1)
