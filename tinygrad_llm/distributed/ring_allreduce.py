"""A ring all-reduce written out: what MPI's Allreduce does for large arrays, and what it costs in bytes.

The K ranks sit in a ring; each sends only to its right neighbour and receives only from its left one. The
array is cut into K chunks. With K = 3 and chunks a, b, c (a_r is rank r's copy of chunk a):

  reduce-scatter, K-1 steps: each rank passes one chunk to the right, and the receiver adds it to its own copy
      step 1   rank 0 sends a_0 -> rank 1 adds (a_0 + a_1);  rank 1 sends b_1 -> rank 2;  rank 2 sends c_2 -> rank 0
      step 2   rank 1 sends a_0 + a_1 -> rank 2, which now holds the complete sum of chunk a; and so on
      now rank r holds the complete sum of chunk (r + 1) mod K
  all-gather, K-1 more steps: each complete chunk travels once around the ring, overwriting the partial copies

Each rank sends 2(K-1) chunks of n/K numbers: 2(K-1)/K * n * itemsize bytes, almost 2n whatever K is. So data
parallelism adds about two model-sizes of traffic per rank per step; it never lowers communication.
"""
from __future__ import annotations

import numpy as np


def ring_allreduce_bytes(num_values: int, world_size: int, itemsize: int = 4) -> float:
    """The formula: bytes each rank sends in a ring all-reduce of num_values numbers, 2(K-1)/K * n * itemsize."""
    return 2 * (world_size - 1) / world_size * num_values * itemsize


def ring_allreduce(comm, values: np.ndarray) -> tuple[np.ndarray, int]:
    """(sum of `values` over all ranks, bytes this rank passed to Sendrecv), by reduce-scatter then all-gather.

    Collective: every rank calls it with an array of the same shape and dtype. The result equals
    comm.Allreduce(values, op=SUM) up to the order of the floating-point additions.
    """
    world_size, rank = comm.Get_size(), comm.Get_rank()
    right, left = (rank + 1) % world_size, (rank - 1) % world_size
    total = np.array(values, copy=True)
    chunks = np.array_split(total.reshape(-1), world_size)  # views into `total`, the last ones maybe one shorter
    bytes_sent = 0
    for step in range(world_size - 1):  # reduce-scatter
        send, receive = chunks[(rank - step) % world_size], chunks[(rank - step - 1) % world_size]
        incoming = np.empty_like(receive)
        comm.Sendrecv(send, dest=right, recvbuf=incoming, source=left)
        receive += incoming
        bytes_sent += send.nbytes
    for step in range(world_size - 1):  # all-gather: pass the complete chunks on
        send, receive = chunks[(rank - step + 1) % world_size], chunks[(rank - step) % world_size]
        comm.Sendrecv(send, dest=right, recvbuf=receive, source=left)
        bytes_sent += send.nbytes
    return total, bytes_sent
