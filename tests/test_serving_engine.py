"""Chapter 9 checks for the continuous-batching engine (Q22, M41): batching changes how many requests share a
forward pass, never what any request gets.

- Per-row positions: a ragged batch (rows that have seen different numbers of tokens) through one forward pass
  gives every row the logits it gets alone, for learned, sinusoidal and rotary positions.
- The engine: every request, whoever it shares the batch with and whenever it joins, gets exactly the tokens
  of `generate` alone (greedy, and sampling with the same seed), also past the context limit; cancel, stop,
  backpressure and bad input behave; on_finish comes exactly once.
- The policy, on the simulated clock: every request answered exactly once, never faster than alone, the
  batch never exceeds B, B = 1 and w = 0 is first-in first-out, throughput under heavy load does not fall as
  B grows.
The `check_*` functions take the implementation under test, so the same checks run on the broken variants
in tests/broken_serving.py and must fail there.
"""
import json
import threading
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import broken_serving as broken
import tinygrad_llm as tgl
from tinygrad_llm.generation import generate
from tinygrad_llm.nn import GPT
from tinygrad_llm.nn.gpt import POSITION_KINDS
from tinygrad_llm.nn.positional import LearnedPositionalEmbedding, RotaryEmbedding, SinusoidalPositionalEncoding
from tinygrad_llm.serving import (BatchingPolicy, CompletionRequest, DecodingSequence, InferenceEngine,
                                  QueueFullError, RaggedKVCache, ServiceModel, decode_step, measure_service_model,
                                  simulate, simulate_policy)

pytestmark = pytest.mark.compression

VOCAB, CONTEXT = 20, 12
# The broken variants fail on almost every example; shrinking the failure would only cost time.
NO_SHRINKING = (Phase.explicit, Phase.reuse, Phase.generate)
ENGINE_EXAMPLES = 8   # each example starts a thread and decodes up to ~100 tokens


@lru_cache(maxsize=None)
def decisive_gpt(model_class=GPT, positions="learned", seed=0) -> GPT:
    """A tiny GPT with weights ~ N(0, 0.5). GPT-2's initialisation (std 0.02) makes an untrained model's
    logits nearly equal, where rounding alone could flip a greedy choice; larger weights give clear winners
    and varied tokens, so the comparisons test the batching, not luck."""
    tgl.manual_seed(seed)
    model = model_class(VOCAB, context_size=CONTEXT, embed_dim=16, num_heads=2, num_layers=2, positions=positions)
    rng = np.random.default_rng(seed)
    for _, parameter in model.named_parameters():
        parameter.data[...] = rng.normal(0, 0.5, parameter.shape)
    return model.eval()


def logits_alone(model, ids) -> np.ndarray:
    """(T, V) logits of one sequence read whole, without any cache: the reference every batched row must match."""
    with tgl.no_grad():
        return model(np.asarray(ids)[None]).data[0]


# ------------------------------------------------------------------ per-row positions
@given(st.lists(st.integers(0, CONTEXT - 3), min_size=1, max_size=4), st.integers(1, 3))
def test_positional_modules_take_one_offset_per_row(offsets, length):
    offsets = np.array(offsets)
    dim = 8
    for table in (LearnedPositionalEmbedding(CONTEXT, dim), SinusoidalPositionalEncoding(CONTEXT, dim)):
        per_row = table(length, offsets).data
        assert per_row.shape == (len(offsets), length, dim)
        for row, offset in zip(per_row, offsets):
            np.testing.assert_array_equal(row, table(length, int(offset)).data)
    rotary = RotaryEmbedding(dim, CONTEXT)
    x = tgl.tensor(np.random.default_rng(length).normal(size=(len(offsets), 2, length, dim)).astype(np.float32))
    rotated = rotary.rotate(x, offsets).data
    for b, offset in enumerate(offsets):
        np.testing.assert_allclose(rotated[b:b + 1], rotary.rotate(x[b:b + 1], int(offset)).data, rtol=1e-6, atol=1e-6)


def test_positions_past_the_table_name_the_row_offsets():
    with pytest.raises(ValueError, match="exceed max_positions"):
        LearnedPositionalEmbedding(CONTEXT, 4)(2, np.array([0, CONTEXT - 1]))


def check_ragged_forward_matches_rows(model_class):
    """Rows of different cached lengths, stacked (RaggedKVCache) and fed 1-3 new tokens in one forward pass,
    get the logits each row gets when read whole on its own."""
    @given(st.sampled_from(POSITION_KINDS), st.lists(st.integers(1, CONTEXT - 3), min_size=2, max_size=4),
           st.integers(1, 3), st.integers(0, 2**16))
    @settings(report_multiple_bugs=False, phases=NO_SHRINKING)
    def ragged(positions, cached_lengths, new_tokens, seed):
        model = decisive_gpt(model_class, positions)
        rng = np.random.default_rng(seed)
        rows = [rng.integers(0, VOCAB, length + new_tokens) for length in cached_lengths]
        caches = []
        with tgl.no_grad():
            for row, length in zip(rows, cached_lengths):
                caches.append(model.new_cache(1))
                model(row[None, :length], cache=caches[-1])
            batch = model(np.stack([row[length:] for row, length in zip(rows, cached_lengths)]),
                          cache=RaggedKVCache(caches)).data
        for b, (row, length) in enumerate(zip(rows, cached_lengths)):
            np.testing.assert_allclose(batch[b], logits_alone(model, row)[length:], rtol=1e-4, atol=1e-5)

    ragged()


def test_ragged_batch_forward_matches_every_row_alone():
    check_ragged_forward_matches_rows(GPT)


@given(st.sampled_from(POSITION_KINDS), st.lists(st.integers(1, CONTEXT), min_size=1, max_size=4),
       st.integers(1, CONTEXT + 4), st.integers(0, 2**16))
@settings(max_examples=15)
def test_decode_step_logits_equal_batch_one_logits(positions, prompt_lengths, steps, seed):
    """Sequences decoded together, step by step and past the context limit (where a window restarts and is
    prefilled alone), always hold the next-token logits of their own window read alone."""
    model = decisive_gpt(GPT, positions)
    rng = np.random.default_rng(seed)
    with tgl.no_grad():
        sequences = [DecodingSequence(model, rng.integers(0, VOCAB, length)) for length in prompt_lengths]
        for _ in range(steps):
            fed = [s for s in sequences if s.append(int(rng.integers(VOCAB)))]
            if fed:
                decode_step(model, fed)
            for sequence in sequences:
                assert sequence.cache.length == len(sequence.window) <= CONTEXT
                np.testing.assert_allclose(sequence.next_logits, logits_alone(model, sequence.window)[-1],
                                           rtol=1e-4, atol=1e-5)


def test_ragged_cache_refuses_what_it_cannot_stack():
    model = decisive_gpt()
    with pytest.raises(ValueError, match="batch 1"):
        RaggedKVCache([model.new_cache(2)])


# ------------------------------------------------------------------ the engine
class Recorder:
    """The callbacks of one request: its tokens and every finish reason (there must be exactly one)."""

    def __init__(self):
        self.tokens, self.reasons = [], []
        self.first_token = threading.Event()

    def on_token(self, token):
        assert not self.reasons, "a token after on_finish"
        self.tokens.append(token)
        self.first_token.set()

    def on_finish(self, reason):
        self.reasons.append(reason)


def serve_all(model, requests, **engine_options):
    """Queue every request, then start the engine and let it finish them all; returns (engine, recorders)."""
    engine = InferenceEngine(model, **engine_options)
    recorders = [Recorder() for _ in requests]
    for request, recorder in zip(requests, recorders):
        engine.submit(request, recorder.on_token, recorder.on_finish)
    engine.start()
    engine.stop()
    return engine, recorders


request_shapes = st.lists(st.tuples(st.integers(1, CONTEXT), st.integers(1, 2 * CONTEXT)), min_size=1, max_size=5)


@given(st.sampled_from(POSITION_KINDS), request_shapes, st.integers(1, 3), st.integers(0, 2**16))
@settings(max_examples=ENGINE_EXAMPLES)
def test_greedy_requests_get_the_tokens_of_generate_alone(positions, shapes, max_batch_size, seed):
    """Prompts of different lengths, more requests than slots (so later ones join a running batch as earlier
    ones leave), and max_tokens up to twice the context (so windows restart mid-batch)."""
    model = decisive_gpt(GPT, positions)
    rng = np.random.default_rng(seed)
    requests = [CompletionRequest(rng.integers(0, VOCAB, length), max_tokens, temperature=0)
                for length, max_tokens in shapes]
    engine, recorders = serve_all(model, requests, max_batch_size=max_batch_size, max_wait_s=0)
    for request, recorder in zip(requests, recorders):
        alone = generate(model, request.prompt_ids, request.max_tokens, temperature=0)[len(request.prompt_ids):]
        assert recorder.reasons == ["length"] and recorder.tokens == alone.tolist()
    metrics = engine.metrics()
    assert metrics["requests_finished"] == len(requests) == metrics["requests_submitted"]
    assert metrics["tokens_generated"] == sum(r.max_tokens for r in requests)
    assert 1 <= metrics["batch_size_mean"] <= max_batch_size
    json.dumps(metrics)   # plain JSON types only


sampling_settings = st.tuples(st.floats(0.3, 2.0), st.none() | st.integers(1, VOCAB), st.none() | st.floats(0.2, 1.0),
                              st.integers(0, 2**31))


@given(request_shapes, st.lists(sampling_settings, min_size=5, max_size=5), st.integers(0, 2**16))
@settings(max_examples=ENGINE_EXAMPLES)
def test_seeded_requests_sample_the_tokens_of_generate_alone(shapes, settings_list, seed):
    model = decisive_gpt(GPT, "rope")
    rng = np.random.default_rng(seed)
    requests = [CompletionRequest(rng.integers(0, VOCAB, length), max_tokens, temperature, top_k, top_p, request_seed)
                for (length, max_tokens), (temperature, top_k, top_p, request_seed) in zip(shapes, settings_list)]
    _, recorders = serve_all(model, requests, max_batch_size=3, max_wait_s=0)
    for r, recorder in zip(requests, recorders):
        alone = generate(model, r.prompt_ids, r.max_tokens, r.temperature, r.top_k, r.top_p, seed=r.seed)
        assert recorder.reasons == ["length"] and recorder.tokens == alone[len(r.prompt_ids):].tolist()


def test_requests_submitted_from_many_threads_while_it_runs_get_their_own_tokens():
    model = decisive_gpt(GPT, "sinusoidal")
    engine = InferenceEngine(model, max_batch_size=3, max_wait_s=0.002)
    engine.start()
    rng = np.random.default_rng(0)
    requests = [CompletionRequest(rng.integers(0, VOCAB, rng.integers(1, CONTEXT + 1)), int(rng.integers(1, 20)),
                                  temperature=0.8, seed=i) for i in range(6)]
    recorders = [Recorder() for _ in requests]

    def client(indices):
        for i in indices:
            engine.submit(requests[i], recorders[i].on_token, recorders[i].on_finish)
            recorders[i].first_token.wait(timeout=60)   # the next one joins a batch that is already running

    clients = [threading.Thread(target=client, args=(range(k, len(requests), 3),)) for k in range(3)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    engine.stop()
    for r, recorder in zip(requests, recorders):
        alone = generate(model, r.prompt_ids, r.max_tokens, r.temperature, seed=r.seed)[len(r.prompt_ids):]
        assert recorder.reasons == ["length"] and recorder.tokens == alone.tolist()


def test_cancel_frees_the_slot_for_the_next_request():
    model = decisive_gpt()
    engine = InferenceEngine(model, max_batch_size=1, max_wait_s=0)
    first, second = Recorder(), Recorder()
    handles = []

    def cancel_after_two_tokens(token):
        first.on_token(token)
        if len(first.tokens) == 2:
            handles[0].cancel()

    handles.append(engine.submit(CompletionRequest(np.array([1, 2]), 50, temperature=0), cancel_after_two_tokens,
                                 first.on_finish))
    second_request = CompletionRequest(np.array([3]), 5, temperature=0)
    engine.submit(second_request, second.on_token, second.on_finish)
    engine.start()
    engine.stop()
    assert first.reasons == ["cancelled"] and len(first.tokens) == 2   # left at the very next token boundary
    assert second.reasons == ["length"] and second.tokens == generate(model, [3], 5, temperature=0)[1:].tolist()
    handles[0].cancel()   # cancelling a finished request does nothing
    assert first.reasons == ["cancelled"]


def test_cancel_of_a_queued_request_answers_it_without_running_it():
    engine = InferenceEngine(decisive_gpt(), max_batch_size=1)
    recorder = Recorder()
    engine.submit(CompletionRequest(np.array([1]), 3), recorder.on_token, recorder.on_finish).cancel()
    engine.start()
    engine.stop()
    assert recorder.reasons == ["cancelled"] and recorder.tokens == []


@pytest.mark.parametrize("cancel_in_flight", [False, True])
def test_stop_finishes_or_cancels_everything_in_flight(cancel_in_flight):
    engine = InferenceEngine(decisive_gpt(), max_batch_size=2, max_wait_s=0)
    recorders = [Recorder() for _ in range(4)]
    for recorder in recorders:
        engine.submit(CompletionRequest(np.array([1, 2, 3]), 30, temperature=0), recorder.on_token, recorder.on_finish)
    engine.start()
    assert recorders[0].first_token.wait(timeout=60)
    engine.stop(cancel_in_flight=cancel_in_flight)
    expected = "shutdown" if cancel_in_flight else "length"
    assert all(len(r.reasons) == 1 for r in recorders)
    assert [r.reasons[0] for r in recorders[2:]] == [expected] * 2   # the queued ones never started
    if not cancel_in_flight:
        assert all(len(r.tokens) == 30 for r in recorders)
    with pytest.raises(RuntimeError, match="shutting down"):
        engine.submit(CompletionRequest(np.array([1]), 1), Recorder().on_token, Recorder().on_finish)
    engine.stop()   # idempotent
    assert all(len(r.reasons) == 1 for r in recorders)


def test_stop_with_a_timeout_cancels_what_is_still_running():
    engine = InferenceEngine(decisive_gpt(), max_batch_size=1, max_wait_s=0)
    recorder = Recorder()
    engine.submit(CompletionRequest(np.array([1]), 100_000, temperature=0), recorder.on_token, recorder.on_finish)
    engine.start()
    assert recorder.first_token.wait(timeout=60)
    engine.stop(timeout_s=0.05)
    assert recorder.reasons == ["shutdown"] and 0 < len(recorder.tokens) < 100_000


def test_a_full_queue_refuses_with_a_retry_estimate():
    engine = InferenceEngine(decisive_gpt(), max_queue=2)
    recorders = [Recorder() for _ in range(2)]
    for recorder in recorders:
        engine.submit(CompletionRequest(np.array([1]), 2), recorder.on_token, recorder.on_finish)
    with pytest.raises(QueueFullError) as refused:
        engine.submit(CompletionRequest(np.array([1]), 2), Recorder().on_token, Recorder().on_finish)
    assert refused.value.retry_after_s > 0
    assert engine.metrics()["requests_rejected"] == 1 and engine.metrics()["queue_length"] == 2
    engine.stop()   # never started: the queued requests are answered all the same
    assert [r.reasons for r in recorders] == [["shutdown"], ["shutdown"]]


def test_a_failing_callback_ends_only_its_own_request():
    model = decisive_gpt()
    engine = InferenceEngine(model, max_batch_size=2, max_wait_s=0)
    broken_client, good_client = Recorder(), Recorder()

    def disconnects(token):
        raise ConnectionError("client went away")

    engine.submit(CompletionRequest(np.array([1]), 5, temperature=0), disconnects, broken_client.on_finish)
    engine.submit(CompletionRequest(np.array([2]), 5, temperature=0), good_client.on_token, good_client.on_finish)
    engine.start()
    engine.stop()
    assert len(broken_client.reasons) == 1 and broken_client.reasons[0].startswith("error: ")
    assert "client went away" in broken_client.reasons[0]
    assert good_client.reasons == ["length"] and good_client.tokens == generate(model, [2], 5, temperature=0)[1:].tolist()


@pytest.mark.parametrize("fields, message", [
    (dict(prompt_ids=np.array([], dtype=np.int64)), "non-empty"),
    (dict(prompt_ids=np.array([[1, 2]])), "1-D"),
    (dict(prompt_ids=np.array([0.5])), "integer"),
    (dict(prompt_ids=np.arange(CONTEXT + 1) % VOCAB), "max_context"),
    (dict(prompt_ids=np.array([VOCAB])), "vocabulary"),
    (dict(max_tokens=0), "max_tokens"),
    (dict(temperature=-1.0), "temperature"),
    (dict(top_k=0), "top-k"),
    (dict(top_p=1.5), "top-p"),
    (dict(seed=-3), "seed"),
])
def test_a_request_the_model_cannot_serve_is_refused_with_the_reason(fields, message):
    engine = InferenceEngine(decisive_gpt())
    request = CompletionRequest(**{**dict(prompt_ids=np.array([1, 2]), max_tokens=3), **fields})
    with pytest.raises(ValueError, match=message):
        engine.submit(request, Recorder().on_token, Recorder().on_finish)
    assert engine.metrics()["requests_submitted"] == 0


# ------------------------------------------------------------------ the policy on the simulated clock
service_models = st.builds(ServiceModel, st.floats(1e-4, 1e-2), st.floats(0, 1e-2), st.floats(1e-4, 1e-2))
arrivals_and_tokens = st.lists(st.tuples(st.floats(0, 0.2), st.integers(1, 8)), min_size=1, max_size=30)


def run_policy(policy, arrivals_tokens, service_model):
    arrivals, tokens = zip(*arrivals_tokens)
    return simulate_policy(policy, arrivals, tokens, service_model)


def check_policy_serves_every_request_once(policy_class):
    """Whatever the arrivals, B and w: every request answered exactly once, no sooner than it could be served
    alone, and no decoding step larger than B."""
    @given(arrivals_and_tokens, st.integers(1, 4), st.sampled_from([0.0, 0.005, 0.05]), service_models)
    @settings(report_multiple_bugs=False, phases=NO_SHRINKING)
    def served(arrivals_tokens, max_batch_size, max_wait_s, service_model):
        result = run_policy(policy_class(max_batch_size, max_wait_s), arrivals_tokens, service_model)
        assert sorted(result.answer_order) == list(range(len(arrivals_tokens)))
        alone = np.array([service_model.service_time(tokens) for tokens in result.tokens])
        assert (result.latencies >= alone * (1 - 1e-9)).all()
        assert all(1 <= size <= max_batch_size for size in result.batch_sizes)

    served()


def test_the_policy_serves_every_request_once():
    check_policy_serves_every_request_once(BatchingPolicy)


@given(arrivals_and_tokens, service_models)
def test_one_slot_and_no_wait_is_first_in_first_out(arrivals_tokens, service_model):
    result = run_policy(BatchingPolicy(1, 0.0), arrivals_tokens, service_model)
    arrival_order = np.argsort(result.arrival_times, kind="stable").tolist()
    assert result.answer_order == arrival_order
    finish_in_order = result.finish_times[arrival_order]
    first_token_in_order = result.first_token_times[arrival_order]
    assert (first_token_in_order[1:] >= finish_in_order[:-1]).all()   # each starts after the one before is done


@given(service_models, st.integers(20, 120), st.integers(1, 16), st.integers(0, 1000))
def test_under_heavy_load_throughput_does_not_fall_as_the_batch_grows(service_model, num_requests, tokens, seed):
    capacity_alone = 1 / service_model.service_time(tokens)   # requests per second with B = 1
    throughputs = [simulate(100 * capacity_alone, num_requests, max_batch_size, 0.0, service_model, tokens,
                            seed).tokens_per_second for max_batch_size in (1, 2, 4, 8)]
    assert all(later >= earlier * (1 - 1e-9) for earlier, later in zip(throughputs, throughputs[1:]))


@given(st.floats(0, 1e-2), st.floats(1e-4, 1e-2), st.integers(4, 16), st.integers(100, 300), st.integers(0, 1000))
def test_near_capacity_one_slot_has_a_worse_p99_than_the_best_batch(per_row_s, prefill_s, tokens, num_requests, seed):
    """At 90% of what B = 1 can serve, its queue keeps growing in bursts; a batch absorbs them (M41: batching buys
    throughput, and under load that is what keeps the tail short). Decoding is memory-bound, so the cost every
    step pays (step_base_s) is at least what each row adds. With a single token per request there is no
    decoding step to share, and batching cannot help: hence tokens >= 4 here."""
    service_model = ServiceModel(step_base_s=per_row_s + 1e-3, step_per_row_s=per_row_s, prefill_s=prefill_s)
    arrival_rate = 0.9 / service_model.service_time(tokens)
    p99 = {max_batch_size: simulate(arrival_rate, num_requests, max_batch_size, 0.0, service_model, tokens,
                                    seed).latency_percentiles((99,))["p99"] for max_batch_size in (1, 2, 4, 8)}
    assert p99[1] > min(p99[2], p99[4], p99[8])


def test_the_service_model_is_measured_on_the_real_model():
    service_model = measure_service_model(decisive_gpt(), batch_sizes=(1, 3), prompt_length=4, steps=2)
    assert service_model.prefill_s > 0 and service_model.step_base_s >= 0 and service_model.step_per_row_s >= 0
    assert service_model.service_time(5) >= service_model.prefill_s
    with pytest.raises(ValueError, match="max_context"):
        measure_service_model(decisive_gpt(), prompt_length=CONTEXT, steps=1)


def test_policy_arguments_are_checked():
    with pytest.raises(ValueError, match="max_batch_size"):
        BatchingPolicy(0, 0.01)
    with pytest.raises(ValueError, match="max_wait_s"):
        BatchingPolicy(2, -1)


# ------------------------------------------------------------------ the checks catch the broken variants
@pytest.mark.broken
@pytest.mark.parametrize("check, broken_version", [
    (check_policy_serves_every_request_once, broken.BatcherThatDropsARequest),
    (check_policy_serves_every_request_once, broken.BatcherThatDuplicatesARequest),
    (check_ragged_forward_matches_rows, broken.GPTThatIgnoresRowPositions),
], ids=lambda x: getattr(x, "__name__", ""))
def test_the_checks_catch_the_broken_serving_pieces(check, broken_version):
    with pytest.raises(AssertionError):
        check(broken_version)
