"""Deliberately broken serving pieces, each named after its bug; tests/test_serving_engine.py proves that its
checks catch every one."""
from tinygrad_llm.nn import GPT
from tinygrad_llm.serving import BatchingPolicy


class BatcherThatDropsARequest(BatchingPolicy):
    """A request that arrives while the batch is full is silently discarded instead of queued: it never gets
    an answer, and its client waits forever (the bug that backpressure exists to prevent)."""

    def enqueue(self, item, now):
        if len(self.running) < self.max_batch_size:   # BUG: a full batch drops the arrival
            super().enqueue(item, now)


class BatcherThatDuplicatesARequest(BatchingPolicy):
    """A request that arrives while a batch runs is queued twice (a retry path that forgot the first try went
    through): it is served, and answered, twice."""

    def enqueue(self, item, now):
        super().enqueue(item, now)
        if self.running:
            super().enqueue(item, now)   # BUG: the same request again


class GPTThatIgnoresRowPositions(GPT):
    """In a ragged batch every row's new token gets the padded width (the longest row's length) as its
    position instead of its own row's length: the shorter rows read the wrong positional vectors."""

    def _first_position(self, cache):
        return cache.length if cache is not None else 0   # BUG: one position for all rows
