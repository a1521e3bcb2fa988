"""ZeRO (the Zero Redundancy Optimizer), stages 0, 1 and 2: data parallelism without K copies of Adam.

Plain data parallelism keeps everything on every rank: the weights, the gradients, the two Adam moments (and,
in mixed precision, a float32 master copy of the weights). All K ranks then do the same update on the same
numbers. ZeRO removes that redundancy by giving each rank one contiguous shard of the parameters to own:

    stage 0   nothing sharded: all-reduce the gradients, every rank updates every weight (plain data parallel)
    stage 1   the optimizer state is sharded: all-reduce the gradients, each rank keeps Adam moments (and master
              weights) only for its shard, updates only its shard, then an all-gather gives everyone every weight
    stage 2   the gradients too: a reduce-scatter replaces the all-reduce, so each rank receives only the
              averaged gradient of its own shard (an all-reduce is a reduce-scatter plus an all-gather, so this
              sends no more bytes than stage 0)

Every stage computes exactly the update of plain data parallelism with AdamW: the update is elementwise, so
updating a slice of the weights is the same arithmetic as updating all of them (this class even calls AdamW's
own `update` on each slice). Only the memory per rank changes, see `memory_ledger.py`.

To make shards cheap, the constructor moves every parameter into ONE flat vector and leaves each Parameter's
`.data` a view into it, so an all-gather writes the new weights straight into the model. Load weights into the
model (Module.load_state_dict copies into the views) rather than assigning new arrays to `.data`.

In a training step the gradients are reduced once, by `clip_grad_norm_` or by `step`, whichever comes first:

    zero_grad -> forward -> loss -> backward -> optimizer.clip_grad_norm_(1.0) -> optimizer.step()

Every method that communicates is collective: all ranks must call it, in the same order. `comm` is an mpi4py
communicator (or anything with its Get_rank, Get_size, Bcast, Allreduce, allreduce, Reduce_scatter and Allgatherv).
"""
from __future__ import annotations

import numpy as np

from ..optim.adam import AdamW

STAGES = (0, 1, 2)


def contiguous_shards(size: int, world_size: int) -> tuple[list[int], list[int]]:
    """(counts, offsets) of `world_size` contiguous shards covering range(size), sizes differing by at most one."""
    if world_size < 1 or size < 0:
        raise ValueError(f"contiguous_shards: need size >= 0 and world_size >= 1, got size={size}, world_size={world_size}")
    counts = [size // world_size + (rank < size % world_size) for rank in range(world_size)]
    offsets = [sum(counts[:rank]) for rank in range(world_size)]
    return counts, offsets


class _FlatSlice:
    """Stands in for a Parameter when AdamW.update runs on a slice of the flat weights: it only uses `.data`."""

    def __init__(self, data: np.ndarray):
        self.data = data


class ZeroAdamW(AdamW):
    """AdamW over K ranks whose state (stage 1) and gradients (stage 2) are split into one shard per rank.

    `params` takes the same parameters or parameter-group dicts as AdamW (e.g. weight decay on matrices only);
    a learning-rate scheduler drives it as it drives AdamW. Rank 0's initial weights are broadcast, so every rank
    starts from the same model.
    """

    def __init__(self, params, comm, stage: int = 1, lr: float = 1e-3, betas: tuple = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        if stage not in STAGES:
            raise ValueError(f"ZeroAdamW: stage must be one of {STAGES} (0 = plain data parallel), got {stage!r}")
        self.comm, self.stage = comm, stage
        self.rank, self.world_size = comm.Get_rank(), comm.Get_size()
        self.parameters = [param for group in self.param_groups for param in group["params"]]
        self.flat_parameters = self._flatten_parameters_into_one_buffer()
        self.parameter_ranges = self._ranges_in_flat_vector()
        counts, offsets = contiguous_shards(self.flat_parameters.size, self.world_size)
        self.shard_counts, self.shard_offsets = counts, offsets
        start = 0 if stage == 0 else offsets[self.rank]
        stop = self.flat_parameters.size if stage == 0 else start + counts[self.rank]
        self.shard = slice(start, stop)
        # float32 weights the update works on: in float32 training they ARE this rank's slice of the parameters
        # (a view, no extra memory); with half-precision parameters they are a float32 copy (the master weights).
        owned = self.flat_parameters[self.shard]
        self.master_weights = owned if owned.dtype == np.float32 else owned.astype(np.float32)
        self.exp_avg = np.zeros(stop - start, dtype=np.float32)
        self.exp_avg_sq = np.zeros(stop - start, dtype=np.float32)
        self.step_count = 0
        self.segments = list(self._segments_of_my_shard())
        self.gradient = None  # after reduction: the averaged flat gradient (stages 0, 1) or this rank's shard of it (2)

    # ------------------------------------------------------------ the flat layout
    def _flatten_parameters_into_one_buffer(self) -> np.ndarray:
        dtypes = {param.dtype for param in self.parameters}
        if len(dtypes) != 1 or any(param.device != "cpu" for param in self.parameters):
            raise TypeError(
                f"ZeroAdamW: all parameters must be NumPy arrays of one dtype to share one flat buffer, got dtypes "
                f"{sorted(map(str, dtypes))} on {sorted({p.device for p in self.parameters})}; cast the model first"
            )
        flat = np.concatenate([param.data.ravel() for param in self.parameters])
        self.comm.Bcast(flat, root=0)
        start = 0
        for param in self.parameters:
            param.data = flat[start:start + param.data.size].reshape(param.shape)
            start += param.data.size
        return flat

    def _ranges_in_flat_vector(self) -> list[tuple[int, int]]:
        ranges, start = [], 0
        for param in self.parameters:
            ranges.append((start, start + param.data.size))
            start += param.data.size
        return ranges

    def _segments_of_my_shard(self):
        """(group, slice within the shard): the pieces of this rank's shard, one per parameter that overlaps it.
        Each piece keeps its parameter's group, hence its weight decay (matrices only, if the groups say so)."""
        groups = [group for group in self.param_groups for _ in group["params"]]
        for group, (start, stop) in zip(groups, self.parameter_ranges):
            start, stop = max(start, self.shard.start), min(stop, self.shard.stop)
            if start < stop:
                yield group, slice(start - self.shard.start, stop - self.shard.start)

    # ------------------------------------------------------------ gradients
    def zero_grad(self) -> None:
        super().zero_grad()
        self.gradient = None

    def reduce_gradients(self) -> None:
        """Average every rank's gradients: all-reduce the flat gradient (stages 0, 1), or reduce-scatter it so this
        rank receives only the average over its own shard (stage 2; the full gradient is then released)."""
        local = self._flat_local_gradient()
        if self.stage < 2:
            averaged = np.empty_like(local)
            self.comm.Allreduce(local, averaged)
            averaged /= self.world_size
            for param, (start, stop) in zip(self.parameters, self.parameter_ranges):
                param.grad = averaged[start:stop].reshape(param.shape)  # the model sees the averaged gradient
        else:
            averaged = np.empty(self.shard.stop - self.shard.start, dtype=local.dtype)
            self.comm.Reduce_scatter(local, averaged, recvcounts=self.shard_counts)
            averaged /= self.world_size
            for param in self.parameters:
                param.grad = None
        self.gradient = averaged

    def _flat_local_gradient(self) -> np.ndarray:
        missing = [param.shape for param in self.parameters if param.grad is None]
        if missing:
            raise ValueError(
                f"ZeroAdamW: {len(missing)} parameter(s) have no gradient (shapes {missing[:3]}); ZeRO packs every "
                "gradient into one buffer that all ranks reduce together, so every parameter must take part in the "
                "loss on every rank (call backward before clip_grad_norm_/step, and optimize only used parameters)"
            )
        return np.concatenate([param.grad.ravel() for param in self.parameters]).astype(self.flat_parameters.dtype)

    def clip_grad_norm_(self, max_norm: float) -> float:
        """Scale the averaged gradient so its global 2-norm is at most max_norm; returns the norm before clipping.

        No rank holds all of a stage-2 gradient, so each rank sums the squares of the part it owns and one
        all-reduce of that single number adds up the global squared norm (the same formula as
        optim.clip_grad_norm_, computed in pieces)."""
        if not max_norm > 0:
            raise ValueError(f"ZeroAdamW.clip_grad_norm_: max_norm must be > 0, got {max_norm}; 1.0 is a common choice")
        if self.gradient is None:
            self.reduce_gradients()
        owned = (self.gradient if self.stage != 1 else self.gradient[self.shard]).astype(np.float64)
        squared_norm = float(owned @ owned)
        if self.stage > 0:
            squared_norm = self.comm.allreduce(squared_norm)
        total_norm = float(np.sqrt(squared_norm))
        if total_norm > max_norm:
            self.gradient *= max_norm / (total_norm + 1e-6)
        return total_norm

    # ------------------------------------------------------------ the update
    def step(self) -> None:
        """Update this rank's shard with AdamW, then all-gather the shards so every rank has every new weight."""
        self._check_parameters_still_in_the_flat_buffer()
        if self.gradient is None:
            self.reduce_gradients()
        self.step_count += 1
        owned_gradient = self.gradient if self.stage != 1 else self.gradient[self.shard]
        owned_gradient = owned_gradient.astype(np.float32, copy=False)
        for group, piece in self.segments:
            state = {"step": self.step_count, "exp_avg": self.exp_avg[piece], "exp_avg_sq": self.exp_avg_sq[piece]}
            self.update(_FlatSlice(self.master_weights[piece]), owned_gradient[piece], group, state)
        if self.stage == 0:
            if self.master_weights.base is not self.flat_parameters:
                self.flat_parameters[...] = self.master_weights
            return
        updated = self.master_weights.astype(self.flat_parameters.dtype)  # a copy: it is sent while flat is received
        self.comm.Allgatherv(updated, [self.flat_parameters, (self.shard_counts, self.shard_offsets)])

    def _check_parameters_still_in_the_flat_buffer(self) -> None:
        for param in self.parameters:
            if param.data.base is not self.flat_parameters:
                raise RuntimeError(
                    f"ZeroAdamW.step: the array of a parameter of shape {param.shape} was replaced after the optimizer "
                    "was built, so the all-gather can no longer reach it; load weights with model.load_state_dict "
                    "(it copies in place), or build the optimizer after moving or replacing the weights"
                )

    # ------------------------------------------------------------ saving and resuming
    def _gather(self, shard: np.ndarray) -> np.ndarray:
        if self.stage == 0:
            return shard.copy()
        full = np.empty(self.flat_parameters.size, dtype=shard.dtype)
        self.comm.Allgatherv(shard, [full, (self.shard_counts, self.shard_offsets)])
        return full

    def state_dict(self) -> dict:
        """Collective. The shards gathered into AdamW's own per-parameter format, so a ZeRO checkpoint resumes
        under any number of ranks and any stage, or in a plain AdamW. Half-precision models also save the
        float32 master weights (without them a resume would lose the bits the half-precision copy rounded off)."""
        saved = super().state_dict()
        if self.step_count == 0:
            return saved
        full = {"exp_avg": self._gather(self.exp_avg), "exp_avg_sq": self._gather(self.exp_avg_sq)}
        if self.master_weights.base is not self.flat_parameters:
            full["master_weights"] = self._gather(self.master_weights)
        saved["state"] = {
            index: {"step": np.array(self.step_count),
                    **{key: values[start:stop].reshape(param.shape).copy() for key, values in full.items()}}
            for index, (param, (start, stop)) in enumerate(zip(self.parameters, self.parameter_ranges))
        }
        return saved

    def load_state_dict(self, state_dict: dict) -> None:
        """Take this rank's shard of a state saved by `state_dict()` (of any stage or rank count) or by AdamW."""
        super().load_state_dict(state_dict)  # checks the groups and restores the hyperparameters
        self.state = {}
        saved = {int(index): values for index, values in state_dict["state"].items()}
        if len(saved) not in (0, len(self.parameters)):
            raise ValueError(
                f"ZeroAdamW.load_state_dict: the state covers {len(saved)} of {len(self.parameters)} parameters; "
                "ZeRO updates all parameters every step, so it can only resume a state that has all of them or none"
            )
        self.step_count = int(saved[0]["step"]) if saved else 0
        self.exp_avg[...] = self._my_shard_of(saved, "exp_avg")
        self.exp_avg_sq[...] = self._my_shard_of(saved, "exp_avg_sq")
        if saved and "master_weights" in saved[0]:  # else float32 training: the weights are the model's own
            self.master_weights[...] = self._my_shard_of(saved, "master_weights")
        self.gradient = None

    def _my_shard_of(self, saved: dict, key: str) -> np.ndarray:
        if not saved:
            return np.zeros(self.shard.stop - self.shard.start, dtype=np.float32)
        flat = np.concatenate([np.asarray(saved[index][key], dtype=np.float32).ravel() for index in range(len(saved))])
        return flat[self.shard]
