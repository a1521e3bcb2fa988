"""Deliberately broken federated-learning pieces, each named after its bug; tests/test_federated.py proves its
checks catch every one."""
import numpy as np

from tinygrad_llm.responsible.federated_averaging import Aggregate
from tinygrad_llm.responsible.secure_aggregation import pair_mask


def average_called_private(vectors):
    """M58: "the server only keeps the average of the clients' updates, so no client is exposed". To average
    them it received every update as it was: the average hides nothing from the party that computed it."""
    return Aggregate(total=np.mean(vectors, axis=0) * len(vectors), received=list(vectors))  # BUG: sent in the clear


def mask_added_by_both_clients(client_id, residues, pair_seeds):
    """Both clients of a pair ADD their shared mask: each vector looks random, but the masks never cancel."""
    masked = np.array(residues, dtype=np.uint32)
    for seed in pair_seeds.values():
        masked += pair_mask(seed, masked.size).reshape(masked.shape)  # BUG: client j < i should subtract
    return masked


def mask_with_small_masks(client_id, residues, pair_seeds):
    """Masks drawn below 2^16 "to keep the numbers small": they still cancel exactly, but the top 16 bits of
    each masked value are the update's own (plus a carry): the server reads the update's size and sign."""
    masked = np.array(residues, dtype=np.uint32)
    for other, seed in pair_seeds.items():
        small = pair_mask(seed, masked.size).reshape(masked.shape) >> np.uint32(16)  # BUG: not uniform mod 2^32
        masked = masked + small if other > client_id else masked - small
    return masked
