"""Deduplicating training text: exact duplicates by hashing, near duplicates by MinHash (Q07).

Why bother: a pretraining corpus scraped from the web repeats itself (boilerplate, mirrors, quoted
passages). Every repeat costs compute and teaches nothing new, and a passage seen many times is what a
model learns to recite word for word (memorisation, regurgitation of personal data).

Exact duplicates: hash each document and keep the first one with each hash. Order matters for
reproducibility, so `exact_deduplicate` keeps first occurrences in their original order, and running it
twice changes nothing (idempotent).

Near duplicates (the same page with a different date, a typo fixed, a line added) have different hashes.
Compare their *shingle sets* instead: the overlapping character n-grams (or word n-grams) of each text.
Two texts are near duplicates when the Jaccard similarity J(A, B) = |A ∩ B| / |A ∪ B| of their sets is
high. Computing J for every pair is O(n²) set intersections; MinHash turns each set into a short
signature whose agreement rate estimates J:

    h(x) = (a * x + b) mod p   with random a, b, and p = 2**31 - 1 (prime), for k pairs (a, b)
    signature[i] = min over the set's elements x of h_i(x)

For a random hash function every element of A ∪ B is equally likely to hold the smallest value, and the
two minima agree exactly when that element lies in A ∩ B, so P(sig_A[i] == sig_B[i]) = J. The estimate
"fraction of the k positions that agree" is a mean of k Bernoulli(J) draws: unbiased, with standard
deviation sqrt(J (1 - J) / k). (Elements enter as 64-bit BLAKE2 hashes reduced mod p, so any hashable
text works and results do not depend on Python's per-process string hashing.)

Locality-sensitive hashing (LSH) avoids comparing every pair: cut each signature into `bands` bands of
r = k / bands rows and call two texts candidates when all r rows of some band agree. A pair with
similarity J becomes a candidate with probability 1 - (1 - J**r)**bands, an S-curve that is steep around
J ≈ (1 / bands) ** (1 / r): near duplicates almost always collide in some band, unrelated texts almost
never do. Only candidates get their estimate checked against the threshold.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from itertools import combinations

import numpy as np

MERSENNE_PRIME = (1 << 31) - 1  # p: a*x + b < 2**62 for a, x < p, so the products fit in uint64
SHINGLE_UNITS = ("char", "word")


def _digest(text: str, size: int) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=size).digest()


def exact_deduplicate(texts) -> list[str]:
    """The texts with every repeat removed: the first occurrence of each text is kept, in the original order.

    Keeps a 16-byte digest per distinct text rather than the text itself, as a pipeline over billions of
    documents would. Idempotent: exact_deduplicate(exact_deduplicate(t)) == exact_deduplicate(t).
    """
    seen, kept = set(), []
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"exact_deduplicate: item {index} is a {type(text).__name__}, expected str; "
                            "decode bytes first (text.decode('utf-8'))")
        digest = _digest(text, 16)
        if digest not in seen:
            seen.add(digest)
            kept.append(text)
    return kept


def shingles(text: str, size: int = 5, unit: str = "char") -> set[str]:
    """The set of overlapping n-grams of `text`: `size` characters, or `size` words (split on whitespace).

    A text shorter than one shingle is a single shingle of itself, so short lines still get compared; an
    empty text has no shingles.
    """
    if unit not in SHINGLE_UNITS:
        raise ValueError(f"shingles: unit must be one of {SHINGLE_UNITS}, got {unit!r}")
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"shingles: size must be an int >= 1, got {size!r}")
    if not isinstance(text, str):
        raise TypeError(f"shingles: expected text as str, got {type(text).__name__}")
    if unit == "word":
        words = text.split()
        if not words:
            return set()
        return {" ".join(words[i:i + size]) for i in range(max(1, len(words) - size + 1))}
    if not text:
        return set()
    return {text[i:i + size] for i in range(max(1, len(text) - size + 1))}


def jaccard(a: set, b: set) -> float:
    """|A ∩ B| / |A ∪ B|, the exact similarity MinHash estimates (1.0 for two empty sets: they are equal)."""
    union = len(a | b)
    return len(a & b) / union if union else 1.0


class MinHash:
    """k hash functions h_i(x) = (a_i x + b_i) mod p; a set's signature holds the minimum of each over the set.

    Two signatures made by the same MinHash (same num_hashes and seed) are comparable; the fraction of
    positions where they agree estimates the Jaccard similarity of the two sets with standard deviation
    sqrt(J (1 - J) / num_hashes).
    """

    def __init__(self, num_hashes: int = 128, seed: int = 0):
        if not isinstance(num_hashes, int) or num_hashes < 1:
            raise ValueError(f"MinHash: num_hashes must be an int >= 1, got {num_hashes!r}")
        rng = np.random.default_rng(seed)
        self.num_hashes = num_hashes
        self._a = rng.integers(1, MERSENNE_PRIME, size=num_hashes, dtype=np.uint64)[:, None]
        self._b = rng.integers(0, MERSENNE_PRIME, size=num_hashes, dtype=np.uint64)[:, None]

    def signature(self, elements) -> np.ndarray:
        """(num_hashes,) uint64: the minimum of each hash function over the set `elements` (strings or ints)."""
        elements = set(elements)
        if not elements:
            raise ValueError("MinHash.signature: the set is empty, and the minimum of an empty set is undefined; "
                             "skip empty texts before deduplicating (shingles('') is empty)")
        x = np.fromiter((int.from_bytes(_digest(repr(e), 8), "little") % MERSENNE_PRIME for e in elements),
                        dtype=np.uint64, count=len(elements))
        return ((self._a * x[None, :] + self._b) % MERSENNE_PRIME).min(axis=1)

    def signatures(self, sets) -> np.ndarray:
        """(len(sets), num_hashes): one signature per set, row by row."""
        return np.stack([self.signature(s) for s in sets])

    @staticmethod
    def estimate_jaccard(signature_a: np.ndarray, signature_b: np.ndarray) -> float:
        """The fraction of positions where two signatures agree: an unbiased estimate of their sets' Jaccard."""
        signature_a, signature_b = np.asarray(signature_a), np.asarray(signature_b)
        if signature_a.shape != signature_b.shape or signature_a.ndim != 1:
            raise ValueError(f"MinHash.estimate_jaccard: signatures must be 1-D and of one length (made by the same "
                             f"MinHash), got shapes {signature_a.shape} and {signature_b.shape}")
        return float(np.mean(signature_a == signature_b))


def lsh_candidate_pairs(signatures: np.ndarray, bands: int) -> set[tuple[int, int]]:
    """Pairs (i, j), i < j, whose signatures agree on every row of at least one band.

    signatures (n, k) with k divisible by `bands`; each band of r = k / bands rows is hashed to a bucket,
    and texts sharing a bucket become candidates: work grows with the number of collisions, not with n².
    """
    signatures = np.asarray(signatures)
    if signatures.ndim != 2 or bands < 1 or signatures.shape[1] % bands:
        raise ValueError(f"lsh_candidate_pairs: need signatures (n, k) with k divisible by bands; got shape "
                         f"{signatures.shape} and bands={bands}")
    rows = signatures.shape[1] // bands
    candidates = set()
    for band in range(bands):
        buckets = defaultdict(list)
        for index, key in enumerate(map(bytes, signatures[:, band * rows:(band + 1) * rows])):
            buckets[key].append(index)
        for members in buckets.values():
            candidates.update(combinations(members, 2))
    return candidates


def near_duplicate_pairs(texts, threshold: float = 0.8, num_hashes: int = 128, bands: int = 32,
                         shingle_size: int = 5, unit: str = "char", seed: int = 0) -> dict[tuple[int, int], float]:
    """{(i, j): estimated Jaccard} for the pairs of texts that LSH proposes and whose estimate is >= threshold.

    Empty texts are skipped (they have no shingles). The defaults (128 hashes in 32 bands of 4 rows) put the
    LSH S-curve's midpoint near J = (1/32) ** (1/4) ≈ 0.42, well below 0.8, so that pairs above the
    threshold are almost never missed by the banding step.
    """
    if not 0 <= threshold <= 1:
        raise ValueError(f"near_duplicate_pairs: threshold must be in [0, 1], got {threshold}")
    sets = [shingles(text, shingle_size, unit) for text in texts]
    kept = [i for i, s in enumerate(sets) if s]
    if len(kept) < 2:
        return {}
    signatures = MinHash(num_hashes, seed).signatures([sets[i] for i in kept])
    found = {}
    for a, b in sorted(lsh_candidate_pairs(signatures, bands)):
        estimate = MinHash.estimate_jaccard(signatures[a], signatures[b])
        if estimate >= threshold:
            found[(kept[a], kept[b])] = estimate
    return found
