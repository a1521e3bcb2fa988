"""The batching policy on a simulated clock: latency and throughput at arrival rates one machine cannot send.

A load generator on the same 2-core machine as the server competes with it for the CPU, and cannot push
arrival rates far past what the server sustains. But the engine's time goes almost entirely to a few
operations whose cost is easy to measure once:

    prefill of one prompt         prefill_s
    one decoding step of b rows   step_time(b) = step_base_s + step_per_row_s * b

step_base_s is what every step pays whatever b (reading every weight, Python and dispatch overhead);
step_per_row_s what each extra row adds. Decoding is memory-bound, so the base dominates and b rows cost
far less than b steps of one row: that is the whole case for batching (M41).

`simulate` runs the very same BatchingPolicy as the engine, on a clock that jumps from event to event
(an arrival, the end of a step), and charges those measured times. It reports what the live server
reports, for any arrival rate, in milliseconds of computing:

    service model = measure_service_model(model)                  seconds, from the real model
    result = simulate(arrival_rate=50.0, num_requests=2000, max_batch_size=8, max_wait_s=0.01,
                      service_model=model, tokens_per_request=32, seed=0)
    result.latency_percentiles(), result.tokens_per_second

The engine's loop, step by step, is mirrored here: admit, prefill the newcomers, one token for every
running request (the finished ones leave), one decoding step for the rest.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np

from ..autograd import no_grad
from .batched_decoding import DecodingSequence, decode_step
from .batching_policy import BatchingPolicy


@dataclass(frozen=True)
class ServiceModel:
    """Seconds the engine spends: prefill_s per admitted prompt, step_time(b) per decoding step of b rows."""
    step_base_s: float
    step_per_row_s: float
    prefill_s: float

    def step_time(self, batch_size: int) -> float:
        return self.step_base_s + self.step_per_row_s * batch_size

    def service_time(self, tokens: int) -> float:
        """A request's latency when it has the server to itself: its prefill (which yields the first token),
        then a one-row step for each further token. No schedule can serve it faster."""
        return self.prefill_s + (tokens - 1) * self.step_time(1)


def measure_service_model(model, batch_sizes=(1, 2, 4, 8), prompt_length: int | None = None, steps: int = 10,
                          seed: int = 0) -> ServiceModel:
    """Time the real model: the median prefill of a prompt_length-token prompt, and the median decoding step
    of every batch size over `steps` steps, fitted by least squares to step_base_s + step_per_row_s * b.
    A fitted coefficient below 0 (timing noise on a tiny model) is clipped to 0.

    prompt_length defaults to a quarter of the model's context, so the steps run at a typical cache length.
    Run it on a quiet machine: other processes' load lands in the measured times."""
    context = model.max_context
    prompt_length = prompt_length if prompt_length is not None else max(1, context // 4)
    if prompt_length < 1 or prompt_length + steps > context or steps < 1 or len(set(batch_sizes)) < 2:
        raise ValueError(f"measure_service_model: needs steps >= 1, 1 <= prompt_length and prompt_length + steps <= "
                         f"max_context={context} (got {prompt_length} + {steps}), and at least two distinct batch "
                         f"sizes to fit a line (got {tuple(batch_sizes)})")
    rng = np.random.default_rng(seed)
    model.eval()
    with no_grad():
        prompt = rng.integers(0, model.vocab_size, prompt_length)
        DecodingSequence(model, prompt)   # warm-up: a first call may compile kernels
        prefill_s = statistics.median(_seconds(lambda: DecodingSequence(model, prompt)) for _ in range(steps))
        step_s = [_median_step_seconds(model, b, prompt_length, steps, rng) for b in batch_sizes]
    slope, intercept = np.polyfit(np.asarray(batch_sizes, dtype=float), step_s, 1)
    return ServiceModel(step_base_s=max(float(intercept), 0.0), step_per_row_s=max(float(slope), 0.0),
                        prefill_s=prefill_s)


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _median_step_seconds(model, batch_size: int, prompt_length: int, steps: int, rng) -> float:
    """Median seconds of decode_step for batch_size sequences, each starting from its own random prompt."""
    sequences = [DecodingSequence(model, rng.integers(0, model.vocab_size, prompt_length)) for _ in range(batch_size)]
    times = []
    for _ in range(steps):
        for sequence in sequences:
            sequence.append(int(sequence.next_logits.argmax()))
        times.append(_seconds(lambda: decode_step(model, sequences)))
    return statistics.median(times)


class _SimulatedRequest:
    """One request on the simulated clock (compared by identity, as the policy requires)."""

    def __init__(self, index: int, arrival: float, tokens: int):
        self.index, self.arrival, self.tokens_left = index, arrival, tokens


@dataclass
class SimulationResult:
    """Per request (indexed in arrival order; NaN for a request never answered) and per decoding step."""
    arrival_times: np.ndarray       # (n,) seconds
    first_token_times: np.ndarray   # (n,) when its first token was out
    finish_times: np.ndarray        # (n,) when its last token was out
    tokens: np.ndarray              # (n,) tokens each asked for
    answer_order: list              # request indices in the order they finished (each once, if all is well)
    batch_sizes: list               # rows of every decoding step

    @property
    def latencies(self) -> np.ndarray:
        return self.finish_times - self.arrival_times

    @property
    def times_to_first_token(self) -> np.ndarray:
        return self.first_token_times - self.arrival_times

    @property
    def duration_s(self) -> float:
        """From the first arrival to the last answer."""
        return float(np.nanmax(self.finish_times) - self.arrival_times.min())

    @property
    def tokens_per_second(self) -> float:
        answered = ~np.isnan(self.finish_times)
        return float(self.tokens[answered].sum() / self.duration_s)

    @property
    def requests_per_second(self) -> float:
        return float((~np.isnan(self.finish_times)).sum() / self.duration_s)

    def latency_percentiles(self, levels=(50, 90, 99)) -> dict:
        """{"p50": seconds, ...} over the answered requests."""
        return {f"p{level}": float(value) for level, value in zip(levels, np.nanpercentile(self.latencies, levels))}


def simulate_policy(policy: BatchingPolicy, arrival_times, tokens_per_request, service_model: ServiceModel
                    ) -> SimulationResult:
    """Run `policy` on a simulated clock for requests arriving at `arrival_times` (seconds, any order), each
    asking for tokens_per_request tokens (an int, or one per request), charging service_model's times."""
    arrivals = np.asarray(arrival_times, dtype=float)
    tokens = np.broadcast_to(np.asarray(tokens_per_request, dtype=np.int64), arrivals.shape).copy()
    if arrivals.ndim != 1 or arrivals.size == 0 or (tokens < 1).any() or not np.isfinite(arrivals).all():
        raise ValueError("simulate_policy: needs a non-empty 1-D array of finite arrival times and at least one token "
                         f"per request, got arrivals of shape {arrivals.shape} and tokens {tokens_per_request!r}")
    order = np.argsort(arrivals, kind="stable")
    requests = [_SimulatedRequest(i, arrivals[i], tokens[i]) for i in order]
    first_token, finish = np.full(arrivals.shape, np.nan), np.full(arrivals.shape, np.nan)
    answer_order, batch_sizes = [], []
    now, next_arrival = float(arrivals.min()), 0
    while True:
        while next_arrival < len(requests) and requests[next_arrival].arrival <= now:
            policy.enqueue(requests[next_arrival], requests[next_arrival].arrival)
            next_arrival += 1
        admitted = policy.admit(now)
        if not policy.running:   # idle: jump to the next event, an arrival or the end of the batching wait
            events = [moment for moment in (policy.next_admission_time(now),
                                            requests[next_arrival].arrival if next_arrival < len(requests) else None)
                      if moment is not None]
            if not events:
                break
            if min(events) <= now:
                raise RuntimeError(f"simulate_policy: {type(policy).__name__} admits nobody at t={now} although "
                                   "it says it would: the clock cannot advance")
            now = min(events)
            continue
        now += service_model.prefill_s * len(admitted)
        for request in list(policy.running):   # one token each; a request that has all of them leaves
            request.tokens_left -= 1
            if np.isnan(first_token[request.index]):
                first_token[request.index] = now
            if request.tokens_left <= 0:
                finish[request.index] = now
                answer_order.append(request.index)
                policy.finish(request)
        if policy.running:
            batch_sizes.append(len(policy.running))
            now += service_model.step_time(len(policy.running))
    return SimulationResult(arrivals, first_token, finish, tokens, answer_order, batch_sizes)


def simulate(arrival_rate: float, num_requests: int, max_batch_size: int, max_wait_s: float,
             service_model: ServiceModel, tokens_per_request, seed: int = 0) -> SimulationResult:
    """Poisson arrivals at `arrival_rate` requests per second (exponential gaps of mean 1 / rate) served by a
    BatchingPolicy(max_batch_size, max_wait_s) on the simulated clock."""
    if not arrival_rate > 0 or num_requests < 1:
        raise ValueError(f"simulate: arrival_rate must be > 0 requests/s and num_requests >= 1, got {arrival_rate!r} "
                         f"and {num_requests!r}")
    arrivals = poisson_arrival_times(arrival_rate, num_requests, np.random.default_rng(seed))
    return simulate_policy(BatchingPolicy(max_batch_size, max_wait_s), arrivals, tokens_per_request, service_model)


def poisson_arrival_times(rate: float, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` arrival times (seconds from 0) of a Poisson process of `rate` per second: exponential gaps. The
    simulation and the live load generator draw their workloads with it."""
    return np.cumsum(rng.exponential(1.0 / rate, size=count))
