"""Learning checks for the distributed sampler (no MPI needed: K samplers, one per rank, stepped side by side),
and for what the distributed package does without MPI.

Each rank's shard of every global batch is disjoint from the others', the shards cover the data once per epoch,
every epoch is a new order, the last global batch may be uneven, and the position in the data is independent of
the number of ranks, so a run resumes under another K. The checks are functions of the sampler class, and each
broken sampler in broken_distributed.py (M46: a hard-coded rank, every rank reading everything, no reshuffle) fails
at least one of them.
"""
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import Phase, given, settings, strategies as st

from tinygrad_llm.distributed import DistributedSampler
from tinygrad_llm.distributed.gradient_averaging import plan_buckets
from tinygrad_llm.distributed.mpi import import_mpi
from tinygrad_llm.nn import Parameter

import broken_distributed as broken

pytestmark = pytest.mark.scaling

num_samples = st.integers(1, 60)
batch_sizes = st.integers(1, 7)
world_sizes = st.integers(1, 5)
seeds = st.integers(0, 2**16)


def one_epoch(samplers) -> list[list[np.ndarray]]:
    """Every global batch of one epoch as [rank 0's indices, rank 1's, ...]."""
    first = samplers[0]
    steps = math.ceil(first.num_samples / first.global_batch_size)
    return [[sampler.next_batch() for sampler in samplers] for _ in range(steps)]


def ranks(sampler_class, n, batch_size, world_size, seed):
    return [sampler_class(n, batch_size, rank, world_size, seed) for rank in range(world_size)]


def phases(shrink: bool):
    """A check run only to prove it fails needs no minimal counterexample: skipping the shrinking saves seconds."""
    return settings(phases=list(Phase) if shrink else [Phase.explicit, Phase.reuse, Phase.generate])


def check_shards_are_disjoint_and_cover_each_epoch(sampler_class, shrink=True):
    @phases(shrink)
    @given(n=num_samples, batch_size=batch_sizes, world_size=world_sizes, seed=seeds)
    def every_sample_exactly_once_per_epoch(n, batch_size, world_size, seed):
        samplers = ranks(sampler_class, n, batch_size, world_size, seed)
        for _ in range(2):
            seen = np.concatenate([shard for batch in one_epoch(samplers) for shard in batch])
            assert sorted(seen.tolist()) == list(range(n)), (
                f"an epoch of {n} samples on {world_size} ranks trained on {sorted(seen.tolist())}")

    every_sample_exactly_once_per_epoch()


def check_each_epoch_is_reshuffled(sampler_class, shrink=True):
    @phases(shrink)
    @given(n=st.integers(12, 60), batch_size=batch_sizes, world_size=world_sizes, seed=seeds)
    def epochs_differ(n, batch_size, world_size, seed):
        samplers = ranks(sampler_class, n, batch_size, world_size, seed)
        orders = [np.concatenate([s for batch in one_epoch(samplers) for s in batch]).tolist() for _ in range(3)]
        assert orders[0] != orders[1] or orders[1] != orders[2], "three epochs visited the data in one order"

    epochs_differ()


SAMPLER_CHECKS = [check_shards_are_disjoint_and_cover_each_epoch, check_each_epoch_is_reshuffled]
BROKEN_SAMPLERS = [broken.SamplerReadingTheWholeDataset, broken.SamplerWithHardCodedRank,
                   broken.SamplerWithoutReshuffling]


@pytest.mark.parametrize("check", SAMPLER_CHECKS, ids=lambda c: c.__name__)
def test_the_library_sampler_passes(check):
    check(DistributedSampler)


@pytest.mark.parametrize("sampler_class", BROKEN_SAMPLERS, ids=lambda c: c.__name__)
def test_a_sampler_check_catches_the_broken_sampler(sampler_class):
    caught = []
    for check in SAMPLER_CHECKS:
        try:
            check(sampler_class, shrink=False)
        except AssertionError:
            caught.append(check.__name__)
    assert caught, f"no check caught {sampler_class.__name__}"


@given(n=num_samples, batch_size=batch_sizes, world_size=world_sizes, seed=seeds)
def test_the_ranks_shards_in_rank_order_are_the_global_batch(n, batch_size, world_size, seed):
    """So K ranks with batch_size B see exactly the batches of one process with batch_size K * B."""
    one_process = DistributedSampler(n, world_size * batch_size, 0, 1, seed)
    for batch in one_epoch(ranks(DistributedSampler, n, batch_size, world_size, seed)):
        np.testing.assert_array_equal(np.concatenate(batch), one_process.next_batch())


@given(n=num_samples, batch_size=batch_sizes, world_size=world_sizes, seed=seeds)
def test_only_the_last_global_batch_of_an_epoch_is_uneven(n, batch_size, world_size, seed):
    epoch = one_epoch(ranks(DistributedSampler, n, batch_size, world_size, seed))
    for batch in epoch[:-1]:
        assert [len(shard) for shard in batch] == [batch_size] * world_size
    last = [len(shard) for shard in epoch[-1]]
    assert sum(last) == n - (len(epoch) - 1) * world_size * batch_size
    assert max(last) - min(last) <= 1, f"the last batch's shards {last} are not balanced"


@given(n=num_samples, batch_size=batch_sizes, world_size=world_sizes, later_world_size=world_sizes, seed=seeds,
       steps=st.integers(0, 30))
def test_a_run_resumes_under_another_number_of_ranks_where_it_stopped(n, batch_size, world_size, later_world_size,
                                                                      seed, steps):
    """K ranks take `steps` global batches and save; K' ranks load the state and finish the epoch: together they
    train on one permutation, in order, each sample once."""
    before = ranks(DistributedSampler, n, batch_size, world_size, seed)
    seen = []
    for _ in range(steps):
        if before[0].epoch == 0:
            seen += [i for sampler in before for i in sampler.next_batch()]
    state = before[0].state_dict()
    assert all(sampler.state_dict() == state for sampler in before), "the ranks disagree on the position"
    after = ranks(DistributedSampler, n, batch_size, later_world_size, seed)
    for sampler in after:
        sampler.load_state_dict(state)
    while after[0].epoch == 0:
        seen += [i for sampler in after for i in sampler.next_batch()]
    assert seen == after[0].permutation(0).tolist()


def test_bad_arguments_get_a_clear_error():
    with pytest.raises(ValueError, match="rank must be in"):
        DistributedSampler(10, 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="num_samples >= 1"):
        DistributedSampler(0, 2, rank=0, world_size=1)
    with pytest.raises(ValueError, match="outside an epoch"):
        DistributedSampler(10, 2, rank=0, world_size=1).load_state_dict({"epoch": 0, "consumed": 10})


@given(sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=12), bucket_bytes=st.integers(4, 8000))
def test_buckets_keep_parameter_order_and_stay_under_the_size_unless_one_parameter_is_bigger(sizes, bucket_bytes):
    parameters = [Parameter(np.zeros(size, dtype=np.float32)) for size in sizes]
    buckets = plan_buckets(parameters, bucket_bytes)
    assert [i for bucket in buckets for i in bucket] == list(range(len(sizes)))
    for bucket in buckets:
        assert len(bucket) == 1 or sum(4 * sizes[i] for i in bucket) <= bucket_bytes
    for left, right in zip(buckets, buckets[1:]):  # greedy: the next parameter did not fit
        assert sum(4 * sizes[i] for i in left + right[:1]) > bucket_bytes


def test_mpi_is_imported_only_when_used():
    code = "import sys, tinygrad_llm.training, tinygrad_llm.distributed; print('mpi4py' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_mpi4py_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # makes `from mpi4py import MPI` raise ImportError
    with pytest.raises(ImportError, match=r'pip install -e "\.\[distributed\]"'):
        import_mpi()
