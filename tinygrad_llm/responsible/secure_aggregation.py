"""Secure aggregation, simplified from Bonawitz et al. 2017: the server learns the SUM of the clients' vectors
and nothing else about any one of them (Q37, M58).

Every pair of clients (i, j) agrees on a seed s_ij the server does not know, and client i sends

    y_i = x_i + sum_{j > i} PRG(s_ij) - sum_{j < i} PRG(s_ij)

Each pair's mask is added by one client of the pair and subtracted by the other, so in sum_i y_i every mask
cancels and the server gets sum_i x_i; any y_i alone is x_i plus a mask the server cannot predict.

Three details turn the sketch into something that works:
  - Exact arithmetic. A float mask big enough to hide x swamps its low bits (x + m - m != x in floating point).
    So each vector is first quantised to fixed point (the integer round(x * 2^f), f fractional bits) and all
    sums are taken modulo 2^32, where NumPy's uint32 addition wraps for free. A mask uniform on {0, ..., 2^32-1}
    makes y_i exactly uniform whatever x_i is (a one-time pad). The true sum must fit: |sum x| * 2^f < 2^31.
  - Seeds nobody else knows: a Diffie-Hellman exchange. Client i publishes g^a_i mod p (a_i private); the server
    relays the public keys; clients i and j both compute g^(a_i a_j) mod p, which nobody is known to compute
    from the public keys alone in a well-chosen group (here RFC 3526's 2048-bit one). SHA-256 turns that number
    into a seed.
  - Dropped clients. If client d never sends y_d, the masks it shared with the others no longer cancel and the
    sum is garbage. Recovery: each surviving client i reveals s_id; the server regenerates those masks and
    removes them (`unmask_sum`; without the revealed seeds it refuses rather than return garbage).

What this toy leaves out, so it is for reading, not for protecting anyone: the private keys and the PRG come from
NumPy's seeded generators, not cryptographic ones (the `secrets` module, AES-CTR or ChaCha20); the public keys
are not authenticated, so a server that lies about them can sit in the middle; and revealing s_id is safe only
if d really dropped: if y_d arrives late after all, it is now unmasked. The real protocol gives each client a
second, self mask and secret-shares both kinds of seed (Shamir, t of n), so the server can remove one kind or the
other for each client but never both. And the sum itself can still leak (gradient_leakage.py); bounding that needs
differential privacy.
"""
from __future__ import annotations

import hashlib

import numpy as np

from .federated_averaging import Aggregate

# RFC 3526, group 14: a 2048-bit safe prime p = 2q + 1 (q prime) with generator 2.
MODP_2048_PRIME = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)
MODP_2048_GENERATOR = 2
FIELD_BITS = 32  # everything is a residue modulo 2^32 (uint32)
FRACTIONAL_BITS = 16  # fixed point: a quantisation step of 2^-16 ~ 1.5e-5


# ---------------------------------------------------------------------------- fixed point modulo 2^32
def quantize(values, fractional_bits: int = FRACTIONAL_BITS, num_clients: int = 1) -> np.ndarray:
    """Floats -> uint32 residues: round(x * 2^f) modulo 2^32 (negative numbers wrap, two's complement).

    Raises if a value is so large that the sum of num_clients such values could pass 2^31 and wrap."""
    scaled = np.round(np.asarray(values, dtype=np.float64) * 2.0**fractional_bits)
    largest = (2**(FIELD_BITS - 1) - 1) // num_clients
    if not np.all(np.abs(scaled) <= largest):  # also catches NaN and inf
        worst = np.max(np.abs(np.asarray(values, dtype=np.float64)))
        raise ValueError(f"quantize: |value| up to {worst} with {fractional_bits} fractional bits does not fit "
                         f"{num_clients} clients' sum in {FIELD_BITS}-bit fixed point (largest allowed "
                         f"{largest / 2**fractional_bits:.6g}); clip the updates or use fewer fractional bits")
    return scaled.astype(np.int64).astype(np.uint32)


def dequantize(residues: np.ndarray, fractional_bits: int = FRACTIONAL_BITS) -> np.ndarray:
    """uint32 residues -> floats, reading residues >= 2^31 as negative (the inverse of quantize)."""
    return np.asarray(residues, dtype=np.uint32).view(np.int32).astype(np.float64) / 2.0**fractional_bits


# ---------------------------------------------------------------------------- pair seeds by Diffie-Hellman
def diffie_hellman_keypair(rng: np.random.Generator, prime: int = MODP_2048_PRIME,
                           generator: int = MODP_2048_GENERATOR) -> tuple[int, int]:
    """(private exponent a, public key g^a mod p); a is 256 random bits (toy: from a seeded NumPy generator)."""
    private = int.from_bytes(rng.bytes(32), "big") | 1 << 255  # never 0 or tiny
    return private, pow(generator, private, prime)


def shared_seed(private_key: int, other_public_key: int, prime: int = MODP_2048_PRIME) -> int:
    """The seed both ends of a pair compute: SHA-256 of (other's public key)^(own private key) mod p."""
    if not 1 < other_public_key < prime - 1:
        raise ValueError(f"shared_seed: a public key must lie strictly between 1 and p - 1 (1 and p - 1 would make "
                         f"the shared secret predictable), got {other_public_key}")
    secret = pow(other_public_key, private_key, prime)
    return int.from_bytes(hashlib.sha256(secret.to_bytes((prime.bit_length() + 7) // 8, "big")).digest(), "big")


def agree_pair_seeds(num_clients: int, rng: np.random.Generator, prime: int = MODP_2048_PRIME,
                     generator: int = MODP_2048_GENERATOR) -> list[dict[int, int]]:
    """Client i's seeds {j: s_ij} for every other j, after each client published a public key (the server saw
    only those). Both ends of a pair get the same seed; costs num_clients^2 modular exponentiations."""
    keys = [diffie_hellman_keypair(rng, prime, generator) for _ in range(num_clients)]
    return [{j: shared_seed(private, keys[j][1], prime) for j in range(num_clients) if j != i}
            for i, (private, _) in enumerate(keys)]


# ---------------------------------------------------------------------------- masking and unmasking
def pair_mask(seed: int, size: int) -> np.ndarray:
    """PRG(seed): `size` uniform uint32 residues (toy PRG: NumPy's PCG64, not a cryptographic one)."""
    return np.random.default_rng(seed).integers(0, 2**FIELD_BITS, size=size, dtype=np.uint32)


def mask(client_id: int, residues: np.ndarray, pair_seeds: dict[int, int]) -> np.ndarray:
    """y_i = x_i + sum_{j > i} PRG(s_ij) - sum_{j < i} PRG(s_ij)  (mod 2^32) for x_i already quantised."""
    masked = np.array(residues, dtype=np.uint32)
    for other, seed in pair_seeds.items():
        if other > client_id:
            masked += pair_mask(seed, masked.size).reshape(masked.shape)
        else:
            masked -= pair_mask(seed, masked.size).reshape(masked.shape)
    return masked


def unmask_sum(masked: dict[int, np.ndarray], num_clients: int,
               revealed_seeds: dict[tuple[int, int], int] | None = None) -> np.ndarray:
    """The server's side: sum of the received y_i (mod 2^32), minus the masks that cannot cancel because their
    other client dropped. revealed_seeds[(i, d)] = s_id, revealed by survivor i about dropped client d."""
    revealed_seeds = revealed_seeds or {}
    dropped = sorted(set(range(num_clients)) - set(masked))
    missing = [(i, d) for i in masked for d in dropped if (i, d) not in revealed_seeds]
    if missing:
        raise ValueError(f"unmask_sum: clients {dropped} dropped, so the masks they shared with the survivors do not "
                         f"cancel and the sum would be garbage; the survivors must reveal the pair seeds "
                         f"(survivor, dropped) = {missing}")
    total = np.sum(list(masked.values()), axis=0, dtype=np.uint32)  # wraps modulo 2^32
    for i in masked:
        for d in dropped:
            uncancelled = pair_mask(revealed_seeds[(i, d)], total.size).reshape(total.shape)
            if d > i:  # survivor i added this mask, the dropped client would have subtracted it
                total -= uncancelled
            else:
                total += uncancelled
    return total


def secure_sum(vectors: list[np.ndarray], rng=0, fractional_bits: int = FRACTIONAL_BITS,
               dropped=(), prime: int = MODP_2048_PRIME, generator: int = MODP_2048_GENERATOR) -> Aggregate:
    """One round of the protocol, every party simulated here: key agreement, quantise, mask, send; clients in
    `dropped` never send, survivors reveal their seeds with them, the server unmasks. Returns the float sum of
    the vectors that arrived (exact up to quantisation) and what the server received: the masked residues.
    Usable as federated_averaging's `aggregate` as functools.partial(secure_sum, rng=a Generator): a Generator
    gives every round fresh keys, while an int seed would repeat the same masks each round, and two rounds' y_i
    subtracted would cancel them (a one-time pad used twice)."""
    dropped = set(dropped)
    if not dropped < set(range(len(vectors))):
        raise ValueError(f"secure_sum: dropped = {sorted(dropped)} must name some of the clients 0..{len(vectors) - 1} "
                         "and leave at least one of them")
    rng = np.random.default_rng(rng)
    seeds = agree_pair_seeds(len(vectors), rng, prime, generator)
    masked = {i: mask(i, quantize(v, fractional_bits, len(vectors)), seeds[i])
              for i, v in enumerate(vectors) if i not in dropped}
    revealed = {(i, d): seeds[i][d] for i in masked for d in dropped}
    total = unmask_sum(masked, len(vectors), revealed)
    return Aggregate(total=dequantize(total, fractional_bits), received=list(masked.values()))
