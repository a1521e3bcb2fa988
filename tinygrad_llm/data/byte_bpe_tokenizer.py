"""Byte-level BPE (the GPT-2 scheme): start from the 256 byte values, repeatedly merge the commonest pair.

Vocabulary: ids 0..255 are the bytes, merge k creates id 256 + k, and the five special tokens follow the
merges. Because every string is a sequence of UTF-8 bytes, any text (Chinese, emoji, code, a lone
combining accent) encodes with no UNK; merges only make common byte sequences cheaper. A Chinese
character costs three byte tokens until merges cover it, so the same sentence costs a different number
of tokens in different languages.

Training
1. Pre-split the text into chunks with CHUNK_PATTERN, so a merge never crosses a chunk boundary (no
   token glues the end of one word to the start of the next, or a word to the comma after it).
2. Count each distinct chunk once; a pair's count is its number of adjacent occurrences summed over
   chunks, weighted by chunk frequency.
3. Pick the pair with the highest count; ties go to the smallest (left id, right id), so training is
   deterministic. Replace its occurrences left to right in the chunks that contain it and update the
   counts of only the pairs those chunks gain or lose (not a recount of the whole text).
4. Stop after `num_merges` merges, or earlier when no pair occurs `min_pair_count` times.

Encoding a chunk applies merges in the order they were learned: repeatedly merge the adjacent pair
with the lowest merge id until no adjacent pair has one. This reproduces the training segmentation,
and each distinct chunk is encoded once (cached).
"""
from __future__ import annotations

import functools
import heapq
import re
from collections import Counter, defaultdict
from typing import NamedTuple

from .tokenizer import SPECIAL_TOKENS, Tokenizer, check_utf8_text

# Alternatives, tried left to right at each position; together they match every character, so the
# chunks concatenate back to the text:
#   " ?[^\W\d_]+"       a run of letters (any script) with at most one leading space: " hello", "你好"
#   " ?\d+"             a run of digits with at most one leading space: " 2024"
#   " ?(?:[^\s\w]|_)+"  a run of anything else (punctuation, symbols, emoji, combining marks): " (",
#                       "...", "，"
#   "\s+(?!\S)"         whitespace not followed by text, which leaves a last space for the next word,
#                       so "a   b" splits as "a", "  ", " b" and " b" is the same token as in "a b"
#   "\s+"               the one whitespace character left before text when it is not a plain
#                       space (the newline before a line's first word)
# Unlike GPT-2 there is no special case for English contractions ("'s", "'t"): "don't" splits as
# "don", "'", "t".
CHUNK_PATTERN = re.compile(r" ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+")
NUM_BYTES = 256
ENCODE_CACHE_SIZE = 1 << 16


def pretokenize(text: str) -> list[str]:
    """The chunks of CHUNK_PATTERN; "".join(pretokenize(text)) == text."""
    return CHUNK_PATTERN.findall(text)


class Merge(NamedTuple):
    pair: tuple[int, int]  # (left id, right id)
    new_id: int
    count: int  # occurrences of the pair in the training text when it was merged


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """`ids` with each occurrence of `pair`, scanned left to right without overlap, replaced by new_id."""
    left, right = pair
    merged, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == left and ids[i + 1] == right:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


def learn_merges(chunk_counts: dict[bytes, int], num_merges: int, min_pair_count: int = 2) -> list[Merge]:
    """The BPE merges of a table {chunk bytes: frequency} (steps 2-4 of the module docstring).

    Counts live in `pair_counts`; `chunks_with[pair]` lists the chunks that may contain the pair, so a
    merge visits only those. A heap of (-count, left, right) entries finds the best pair; an entry whose
    count no longer matches `pair_counts` is stale (the pair's count changed) and is skipped.
    """
    chunks = [list(chunk) for chunk in chunk_counts]
    frequencies = list(chunk_counts.values())
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    chunks_with: dict[tuple[int, int], set[int]] = defaultdict(set)
    for index, (ids, frequency) in enumerate(zip(chunks, frequencies)):
        for pair in zip(ids, ids[1:]):
            pair_counts[pair] += frequency
            chunks_with[pair].add(index)
    heap = [(-count, *pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    merges: list[Merge] = []
    while heap and len(merges) < num_merges:
        negative_count, left, right = heapq.heappop(heap)
        pair, count = (left, right), -negative_count
        if pair_counts.get(pair) != count:
            continue
        if count < min_pair_count:
            break
        new_id = NUM_BYTES + len(merges)
        merges.append(Merge(pair, new_id, count))
        changed = set()
        for index in chunks_with.pop(pair):
            old, frequency = chunks[index], frequencies[index]
            new = merge_pair(old, pair, new_id)
            chunks[index] = new
            for gone in zip(old, old[1:]):
                pair_counts[gone] -= frequency
                changed.add(gone)
            for added in zip(new, new[1:]):
                pair_counts[added] += frequency
                chunks_with[added].add(index)
                changed.add(added)
        for changed_pair in changed:
            if pair_counts[changed_pair] > 0:
                heapq.heappush(heap, (-pair_counts[changed_pair], *changed_pair))
            else:
                del pair_counts[changed_pair]
    return merges


class ByteBPETokenizer(Tokenizer):
    def __init__(self, merges):
        self.merges = [Merge(tuple(pair), new_id, count) for pair, new_id, count in merges]
        bytes_by_id = [bytes([b]) for b in range(NUM_BYTES)]
        for expected_id, (pair, new_id, count) in enumerate(self.merges, start=NUM_BYTES):
            if new_id != expected_id or not all(0 <= side < new_id for side in pair) or count < 0:
                raise ValueError(
                    f"ByteBPETokenizer: merge {(pair, new_id, count)} is invalid; merge k must create id {NUM_BYTES} + k "
                    "from two earlier ids"
                )
            bytes_by_id.append(bytes_by_id[pair[0]] + bytes_by_id[pair[1]])
        self._new_id_of_pair = {merge.pair: merge.new_id for merge in self.merges}
        first_special = len(bytes_by_id)
        super().__init__(
            bytes_by_id + [None] * len(SPECIAL_TOKENS),
            {name: first_special + i for i, name in enumerate(SPECIAL_TOKENS)},
        )
        self._encode_chunk = functools.lru_cache(maxsize=ENCODE_CACHE_SIZE)(self._merge_chunk)

    @classmethod
    def train(cls, text: str, num_merges: int, min_pair_count: int = 2) -> ByteBPETokenizer:
        """Learn up to `num_merges` merges from `text` (fewer if no pair occurs `min_pair_count` times:
        merging a pair seen once only memorises the training text)."""
        check_utf8_text(text, "ByteBPETokenizer.train")
        if not isinstance(num_merges, int) or num_merges < 0:
            raise ValueError(f"ByteBPETokenizer.train: num_merges must be an int >= 0, got {num_merges!r}")
        if min_pair_count < 1:
            raise ValueError(f"ByteBPETokenizer.train: min_pair_count must be >= 1, got {min_pair_count}")
        chunk_counts = {chunk.encode("utf-8"): n for chunk, n in Counter(pretokenize(text)).items()}
        return cls(learn_merges(chunk_counts, num_merges, min_pair_count))

    def _merge_chunk(self, chunk: str) -> tuple[int, ...]:
        """The standard encode loop: merge the lowest-id (earliest learned) adjacent pair until none is left."""
        ids = list(chunk.encode("utf-8"))
        never = len(self._bytes_by_id)  # larger than every merge id
        while len(ids) > 1:
            pair = min(zip(ids, ids[1:]), key=lambda p: self._new_id_of_pair.get(p, never))
            new_id = self._new_id_of_pair.get(pair)
            if new_id is None:
                break
            ids = merge_pair(ids, pair, new_id)
        return tuple(ids)

    def _encode_text(self, text: str) -> list[int]:
        ids = []
        for chunk in pretokenize(text):
            ids.extend(self._encode_chunk(chunk))
        return ids

    def _to_json(self) -> dict:
        return {"merges": [[*merge.pair, merge.new_id, merge.count] for merge in self.merges]}

    @classmethod
    def _from_json(cls, payload: dict) -> ByteBPETokenizer:
        return cls([((left, right), new_id, count) for left, right, new_id, count in payload["merges"]])

    def _vocabulary_summary(self) -> str:
        return f"{NUM_BYTES} bytes + {len(self.merges)} merges + {len(SPECIAL_TOKENS)} specials"
