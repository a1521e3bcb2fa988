"""The inference engine: one model, loaded once, serving many requests from a background thread (Q22).

    engine = InferenceEngine(model, max_batch_size=8, max_wait_s=0.01, max_queue=64)
    engine.start()
    handle = engine.submit(CompletionRequest(prompt_ids, max_tokens=20), on_token=print, on_finish=print)
    ...
    engine.stop()

The thread repeats one token boundary after another:

    1. cancelled requests leave; the batching policy (batching_policy.py) admits waiting ones into free slots
    2. every newly admitted request reads its prompt into its own KV cache (a batch-1 prefill)
    3. every running request samples its next token with its own settings and random generator, and streams
       it to its caller (on_token); a request that has all its tokens leaves (on_finish("length"))
    4. one forward pass of the model advances all the others by one token (batched_decoding.py)

Step 2 stalls everyone else for the length of a prefill; servers split long prompts into chunks that ride
along with the decoding steps ("chunked prefill") so that the running requests keep streaming.

Every request gets exactly the tokens it would get alone from `generate` with the same settings and seed:
batching changes how many requests share a forward pass, never what any of them computes (to float
rounding). The queue is bounded: when `max_queue` requests wait, submit refuses at once (QueueFullError,
with an estimate of when to retry) instead of letting every queued request's latency grow without bound.

Callbacks run on the engine thread, between steps: a slow callback delays every request, so they should
only hand the token over (to a queue, a socket buffer) and return.
"""
from __future__ import annotations

import logging
import numbers
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..autograd import no_grad
from ..generation.sampling import check_sampling_options, sample_next_token
from .batched_decoding import DecodingSequence, decode_step
from .batching_policy import BatchingPolicy

logger = logging.getLogger(__name__)

_KEPT_SAMPLES = 10_000      # latency percentiles are over the last this many requests
_UNMEASURED_RETRY_S = 1.0   # Retry-After before any step was timed: the smallest whole second HTTP can say


@dataclass(frozen=True)
class CompletionRequest:
    """What to generate: `max_tokens` tokens after `prompt_ids`, sampled as `generate` samples them.

    prompt_ids: int (T,) with 1 <= T <= model.max_context and every id < vocab_size. temperature 0 is greedy.
    seed: the request's own np.random.default_rng(seed), so it gets the same tokens as
    generate(model, prompt_ids, max_tokens, temperature, top_k, top_p, seed=seed) alone, whoever it shares
    the batch with. None: fresh randomness.
    """
    prompt_ids: np.ndarray
    max_tokens: int
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None


class QueueFullError(RuntimeError):
    """The queue holds max_queue requests: try again in about `retry_after_s` seconds (HTTP 503 Retry-After)."""

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


def check_request(model, request, name: str = "InferenceEngine.submit") -> None:
    """Raise a teaching error for a request the model cannot serve (the HTTP layer checks first; this is the
    backstop that keeps a bad request from ever reaching the decoding thread)."""
    if not isinstance(request, CompletionRequest):
        raise TypeError(f"{name}: expected a CompletionRequest, got {type(request).__name__}")
    prompt = np.asarray(request.prompt_ids)
    if prompt.ndim != 1 or prompt.size == 0 or not np.issubdtype(prompt.dtype, np.integer):
        raise ValueError(f"{name}: prompt_ids must be a non-empty 1-D array of integer token ids, got shape "
                         f"{prompt.shape} and dtype {prompt.dtype}; encode the prompt with the model's tokenizer")
    if model.max_context is not None and prompt.size > model.max_context:
        raise ValueError(f"{name}: the prompt has {prompt.size} tokens but the model reads at most "
                         f"max_context={model.max_context}; send at most its last {model.max_context} tokens")
    if prompt.min() < 0 or prompt.max() >= model.vocab_size:
        raise ValueError(f"{name}: prompt_ids must lie in 0..{model.vocab_size - 1} (the model's vocabulary), got "
                         f"ids from {prompt.min()} to {prompt.max()}")
    if isinstance(request.max_tokens, bool) or not isinstance(request.max_tokens, numbers.Integral) \
            or request.max_tokens < 1:
        raise ValueError(f"{name}: max_tokens must be an integer >= 1, got {request.max_tokens!r}")
    check_sampling_options(request.temperature, request.top_k, request.top_p, name)
    if request.seed is not None and (isinstance(request.seed, bool) or not isinstance(request.seed, numbers.Integral)
                                     or request.seed < 0):
        raise ValueError(f"{name}: seed must be None or an integer >= 0, got {request.seed!r}")


class _Job:
    """The engine's record of one submitted request (compared by identity: two equal requests are two jobs)."""

    def __init__(self, request: CompletionRequest, on_token, on_finish, submitted_at: float):
        self.request, self.on_token, self.on_finish = request, on_token, on_finish
        self.prompt = np.asarray(request.prompt_ids, dtype=np.int64)
        self.rng = np.random.default_rng(request.seed)
        self.submitted_at, self.first_token_at = submitted_at, None
        self.tokens_sent = 0
        self.sequence: DecodingSequence | None = None
        self.cancel_requested = False
        self.finished = False

    @property
    def tokens_left(self) -> int:
        return self.request.max_tokens - self.tokens_sent


class RequestHandle:
    """What submit returns: the caller's way to cancel its request (a client that disconnected)."""

    def __init__(self, engine: "InferenceEngine", job: _Job):
        self._engine, self._job = engine, job

    def cancel(self) -> None:
        """Free the request's slot at the next token boundary; on_finish("cancelled") follows unless it has
        already finished. Safe from any thread, any number of times."""
        self._engine._request_cancel(self._job)


class InferenceEngine:
    def __init__(self, model, max_batch_size: int = 8, max_wait_s: float = 0.01, max_queue: int = 64):
        if isinstance(max_queue, bool) or not isinstance(max_queue, numbers.Integral) or max_queue < 1:
            raise ValueError(f"InferenceEngine: max_queue must be an integer >= 1, got {max_queue!r}")
        self._model = model.eval()   # dropout off; every step also runs under no_grad (no graph is recorded)
        self._policy = BatchingPolicy(max_batch_size, max_wait_s)
        self._max_queue = int(max_queue)
        self._wakeup = threading.Condition()   # guards everything below; notified on submit, cancel and stop
        self._thread: threading.Thread | None = None
        self._accepting, self._cancel_everything = True, False
        self._started_at: float | None = None
        self._boundary_seconds: float | None = None   # running mean of the time between token boundaries
        self._counts = dict(requests_submitted=0, requests_finished=0, requests_rejected=0, tokens_generated=0,
                            token_boundaries=0)
        self._latencies, self._times_to_first_token = deque(maxlen=_KEPT_SAMPLES), deque(maxlen=_KEPT_SAMPLES)

    @property
    def model(self):
        return self._model

    @property
    def max_batch_size(self) -> int:
        return self._policy.max_batch_size

    @property
    def max_wait_s(self) -> float:
        return self._policy.max_wait_s

    @property
    def max_queue(self) -> int:
        return self._max_queue

    # ---- the caller's side (any thread) -------------------------------------------------------------------

    def start(self) -> None:
        """Start the background decoding thread (once)."""
        with self._wakeup:
            if self._thread is not None or not self._accepting:
                raise RuntimeError("InferenceEngine.start: an engine starts once; build a new one after stop()")
            self._started_at = time.monotonic()
            self._thread = threading.Thread(target=self._serve, name="inference-engine", daemon=True)
            self._thread.start()

    def submit(self, request: CompletionRequest, on_token: Callable[[int], None],
               on_finish: Callable[[str], None]) -> RequestHandle:
        """Queue a request. on_token(token_id) is called for every generated token, then on_finish(reason)
        exactly once, both on the engine thread. Raises QueueFullError when max_queue requests wait."""
        check_request(self._model, request)
        if not callable(on_token) or not callable(on_finish):
            raise TypeError("InferenceEngine.submit: on_token and on_finish must be callables")
        with self._wakeup:
            if not self._accepting:
                raise RuntimeError("InferenceEngine.submit: the engine is shutting down and admits no new requests")
            if len(self._policy.waiting) >= self._max_queue:
                self._counts["requests_rejected"] += 1
                raise QueueFullError(f"InferenceEngine.submit: {self._max_queue} requests already wait (max_queue); "
                                     "retry later", self._retry_after_s())
            job = _Job(request, on_token, on_finish, time.monotonic())
            self._policy.enqueue(job, job.submitted_at)
            self._counts["requests_submitted"] += 1
            self._wakeup.notify()
        return RequestHandle(self, job)

    def stop(self, cancel_in_flight: bool = False, timeout_s: float | None = None) -> None:
        """Admit nothing new; finish the running and queued requests (or, with cancel_in_flight, end them at the
        next token boundary with on_finish("shutdown")), then join the thread. With timeout_s, whatever is
        still unfinished after that many seconds is cancelled the same way. Calling it again does no harm."""
        if self._thread is not None and threading.current_thread() is self._thread:
            raise RuntimeError("InferenceEngine.stop: called from a callback on the engine thread, which cannot wait "
                               "for itself; call it from another thread")
        with self._wakeup:
            self._accepting = False
            self._cancel_everything |= bool(cancel_in_flight)
            self._wakeup.notify()
        if self._thread is None:   # never started: nobody else will answer the queued requests
            self._end_all_waiting_and_running("shutdown")
            return
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            with self._wakeup:
                self._cancel_everything = True
                self._wakeup.notify()
            self._thread.join()

    def metrics(self) -> dict:
        """Counters and latency percentiles as plain JSON types (None where nothing was measured yet)."""
        with self._wakeup:
            counts = dict(self._counts)
            latencies, first_tokens = list(self._latencies), list(self._times_to_first_token)
            queued, active = len(self._policy.waiting), len(self._policy.running)
            uptime = 0.0 if self._started_at is None else time.monotonic() - self._started_at
        boundaries = counts.pop("token_boundaries")
        return dict(counts, queue_length=queued, active_requests=active,
                    batch_size_mean=counts["tokens_generated"] / boundaries if boundaries else None,
                    latency_s=_percentiles(latencies, (50, 90, 99)),
                    time_to_first_token_s=_percentiles(first_tokens, (50, 99)),
                    uptime_s=uptime)

    def _request_cancel(self, job: _Job) -> None:
        with self._wakeup:
            job.cancel_requested = True
            self._wakeup.notify()

    def _retry_after_s(self) -> float:
        """When a queue slot should free: the queue moves once a running request finishes, and the closest to
        finishing needs tokens_left more token boundaries."""
        if self._boundary_seconds is None or not self._policy.running:
            return _UNMEASURED_RETRY_S
        return min(job.tokens_left for job in self._policy.running) * self._boundary_seconds

    # ---- the engine thread ---------------------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            with no_grad():
                while self._next_boundary():
                    pass
        except Exception as error:   # a bug, not a bad request: answer everyone rather than leave them hanging
            logger.exception("InferenceEngine: the decoding thread failed")
            with self._wakeup:
                self._accepting = False
            self._end_all_waiting_and_running(f"error: the engine failed: {type(error).__name__}: {error}")

    def _next_boundary(self) -> bool:
        """Let cancelled requests leave, admit waiting ones, and run one token boundary (or sleep until there is
        something to do). Returns False once the engine is stopped and everyone has been answered."""
        with self._wakeup:
            if self._cancel_everything:
                ending = self._take_out(lambda job: True, "shutdown")
            else:
                ending = self._take_out(lambda job: job.cancel_requested, "cancelled")
            now = time.monotonic()
            # a stopping engine waits for no company: every queued request may start at once
            admitted = self._policy.admit(now if self._accepting else now + self.max_wait_s)
            running = list(self._policy.running)
            done = not running and not self._policy.waiting and not self._accepting
            if not running and not done and not ending:
                admission = self._policy.next_admission_time(now)
                self._wakeup.wait(None if admission is None else admission - now)
        self._announce_endings(ending)
        if running:
            self._token_boundary(admitted, running)
        return not done

    def _take_out(self, should_end, reason: str) -> list:
        """Remove the jobs that should_end (waiting or running) from the policy; returns (job, reason) pairs.
        Called with the lock held; their on_finish runs later, outside it."""
        jobs = [job for _, job in self._policy.waiting] + self._policy.running
        ending = [(job, reason) for job in jobs if should_end(job)]
        for job, _ in ending:
            self._policy.remove(job)
            job.finished = True
            self._counts["requests_finished"] += 1
        return ending

    def _end_all_waiting_and_running(self, reason: str) -> None:
        with self._wakeup:
            ending = self._take_out(lambda job: True, reason)
        self._announce_endings(ending)

    @staticmethod
    def _announce_endings(ending: list) -> None:
        for job, reason in ending:
            try:
                job.on_finish(reason)
            except Exception:   # a broken caller must not take the engine, and every other request, down
                logger.exception("InferenceEngine: on_finish raised; the engine goes on")

    def _finish(self, job: _Job, reason: str) -> None:
        now = time.monotonic()
        with self._wakeup:
            self._policy.finish(job)
            job.finished = True
            self._counts["requests_finished"] += 1
            if reason == "length":
                self._latencies.append(now - job.submitted_at)
        self._announce_endings([(job, reason)])

    def _token_boundary(self, admitted: list, running: list) -> None:
        """Prefill the newcomers, give every running request one token, advance the rest in one forward pass.
        Whatever goes wrong with one request (its callback raised, say) ends that request alone."""
        started = time.monotonic()
        for job in admitted:
            self._guarded(job, self._prefill)
        continuing = [job for job in running if not job.finished and self._guarded(job, self._next_token)]
        if continuing:
            try:
                decode_step(self._model, [job.sequence for job in continuing])
            except Exception as error:
                for job in continuing:
                    self._finish(job, f"error: decoding step failed: {type(error).__name__}: {error}")
        self._record_boundary(time.monotonic() - started)

    def _guarded(self, job: _Job, action) -> bool:
        """action(job), or end the job with the error it raised (False)."""
        try:
            return action(job)
        except Exception as error:
            if not job.finished:
                self._finish(job, f"error: {type(error).__name__}: {error}")
            return False

    def _prefill(self, job: _Job) -> bool:
        """Read the job's prompt into its own cache (a batch-1 forward pass); its first token's logits come out."""
        job.sequence = DecodingSequence(self._model, job.prompt)
        return True

    def _next_token(self, job: _Job) -> bool:
        """Sample the job's next token and stream it; True when it still needs a batched decoding step."""
        request = job.request
        token = int(sample_next_token(job.sequence.next_logits[None], request.temperature, request.top_k,
                                      request.top_p, job.rng)[0])
        job.on_token(token)
        now = time.monotonic()
        with self._wakeup:
            job.tokens_sent += 1
            self._counts["tokens_generated"] += 1
            if job.first_token_at is None:
                job.first_token_at = now
                self._times_to_first_token.append(now - job.submitted_at)
        if job.tokens_left == 0:
            self._finish(job, "length")
            return False
        return job.sequence.append(token)

    def _record_boundary(self, seconds: float) -> None:
        with self._wakeup:
            self._counts["token_boundaries"] += 1
            old = self._boundary_seconds
            self._boundary_seconds = seconds if old is None else 0.9 * old + 0.1 * seconds


def _percentiles(samples: list, levels: tuple) -> dict:
    """{"p50": ..., ...} in seconds, or None values while there is no sample."""
    values = np.percentile(samples, levels) if samples else [None] * len(levels)
    return {f"p{level}": (None if value is None else float(value)) for level, value in zip(levels, values)}
