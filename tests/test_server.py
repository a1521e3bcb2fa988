"""The HTTP server, tested as a user meets it: `python -m tinygrad_llm serve` in a subprocess on a free local port,
spoken to over real HTTP. Every completion is held to `generate` alone on the same checkpoint; every error
answer to its status and the field it names; the load generator to one answer per request, on loopback only.

Each server is stopped in every case by its fixture's finalizer (SIGTERM, wait, then kill).
"""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygrad_llm.benchmarks.serve import MODES, plot_latency_against_throughput, run_simulated
from tinygrad_llm.compression import load_model, quantize, save_quantized
from tinygrad_llm.generation import generate
from tinygrad_llm.serving.load_generator import run_load
from tinygrad_llm.serving.simulation import poisson_arrival_times
from tinygrad_llm.serving.local_server import LocalServer
from tinygrad_llm.serving.loopback import is_loopback_host
from tinygrad_llm.serving.server import serve
from tinygrad_llm.serving.simulation import ServiceModel
from tinygrad_llm.training import TrainConfig, load_trained_model, train_language_model

pytestmark = pytest.mark.compression

MAX_TOKENS_LIMIT = 512


class ServerProcess(LocalServer):
    """The real server in a subprocess, with the few requests these tests repeat."""

    def complete(self, **body) -> dict:
        status, _, answer = self.request("POST", "/v1/completions", body)
        assert status == 200, answer
        return answer

    def stream(self, **body) -> list[dict]:
        """Every event of a streamed completion, up to and without [DONE] (which must end it)."""
        connection = self.connect()
        try:
            connection.request("POST", "/v1/completions", json.dumps({**body, "stream": True}).encode())
            response = connection.getresponse()
            assert response.status == 200 and response.getheader("content-type").startswith("text/event-stream")
            events = [line[len(b"data: "):].strip() for line in response if line.startswith(b"data: ")]
        finally:
            connection.close()
        assert events[-1] == b"[DONE]"
        return [json.loads(event) for event in events[:-1]]

    def wait_for(self, condition, timeout_s: float = 15.0) -> dict:
        """Poll /metrics until condition(metrics) holds; returns those metrics."""
        deadline = time.monotonic() + timeout_s
        while True:
            metrics = self.metrics()
            if condition(metrics):
                return metrics
            assert time.monotonic() < deadline, f"metrics never satisfied the condition: {metrics}"
            time.sleep(0.02)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A GPT trained for 2 steps: barely trained, so greedy continuations still vary with the prompt."""
    config = TrainConfig(max_chars=5000, steps=2, warmup_steps=0, context_size=32, embed_dim=32, num_layers=1,
                         num_heads=2, batch_size=4, eval_every=2, eval_batches=1)
    return train_language_model(config, out_dir=tmp_path_factory.mktemp("served"), progress=False).checkpoint


@pytest.fixture(scope="module")
def model_and_tokenizer(checkpoint):
    model, tokenizer, _ = load_trained_model(checkpoint)
    return model, tokenizer


@pytest.fixture(scope="module")
def quantized_checkpoint(checkpoint, tmp_path_factory):
    """The same GPT with int8 weights, saved as `python -m tinygrad_llm quantize` saves it."""
    model, tokenizer, _ = load_trained_model(checkpoint)
    quantize(model, bits=8)
    return save_quantized(model, tmp_path_factory.mktemp("quantized") / "gpt_int8.npz", tokenizer)


@pytest.fixture(scope="module")
def servers(checkpoint, quantized_checkpoint):
    """Two servers, started together (each start is seconds of imports and loading), stopped in every case.

    "batched": B = 4, the one most tests talk to. "single_slot": the int8 checkpoint with B = 1 and room for
    one waiting request, so the third concurrent request finds the queue full.
    """
    started = {"batched": ServerProcess(checkpoint, "--max-batch-size", "4", "--max-wait-ms", "2", "--max-queue",
                                        "32", "--max-tokens-limit", str(MAX_TOKENS_LIMIT)),
               "single_slot": ServerProcess(quantized_checkpoint, "--max-batch-size", "1", "--max-wait-ms", "0",
                                            "--max-queue", "1")}
    try:
        for process in started.values():
            process.wait_until_ready()
        yield started
    finally:
        for process in started.values():
            process.stop()


@pytest.fixture(scope="module")
def server(servers):
    return servers["batched"]


@pytest.fixture(scope="module")
def single_slot_server(servers):
    return servers["single_slot"]


def prompts(tokenizer, max_size: int):
    return st.text(alphabet=tokenizer.chars, min_size=1, max_size=max_size)


def alone(model, tokenizer, prompt: str, max_tokens: int, **sampling) -> str:
    ids = generate(model, tokenizer.encode(prompt), max_tokens, **sampling)
    return tokenizer.decode(ids[len(prompt):])


# --------------------------------------------------------------------------------------------- completions
@given(data=st.data())
def test_greedy_json_completion_equals_generate_alone(server, model_and_tokenizer, data):
    model, tokenizer = model_and_tokenizer
    prompt = data.draw(prompts(tokenizer, model.max_context), label="prompt")
    max_tokens = data.draw(st.integers(1, 40), label="max_tokens")  # beyond the context of 32: restarts included
    answer = server.complete(prompt=prompt, max_tokens=max_tokens, temperature=0)
    assert answer["object"] == "text_completion" and answer["id"].startswith("cmpl-")
    assert answer["choices"][0]["text"] == alone(model, tokenizer, prompt, max_tokens, temperature=0)
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"] == {"prompt_tokens": len(prompt), "completion_tokens": max_tokens,
                               "total_tokens": len(prompt) + max_tokens}


@given(data=st.data())
def test_streamed_deltas_concatenate_to_the_json_text_of_the_same_seed(server, model_and_tokenizer, data):
    model, tokenizer = model_and_tokenizer
    body = dict(prompt=data.draw(prompts(tokenizer, 8), label="prompt"), max_tokens=data.draw(st.integers(1, 12)),
                temperature=data.draw(st.sampled_from([0.0, 0.7, 1.0, 1.5])), seed=data.draw(st.integers(0, 2**31)),
                top_k=data.draw(st.none() | st.integers(1, 20)), top_p=data.draw(st.none() | st.floats(0.05, 1.0)))
    chunks = server.stream(**body)
    assert len(chunks) == body["max_tokens"] + 1  # one event per token, then the one carrying the finish reason
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * body["max_tokens"] + ["length"]
    streamed = "".join(c["choices"][0]["text"] for c in chunks)
    sampling = {k: body[k] for k in ("temperature", "seed", "top_k", "top_p")}
    assert streamed == server.complete(**body)["choices"][0]["text"]
    assert streamed == alone(model, tokenizer, body["prompt"], body["max_tokens"], **sampling)


def test_a_burst_of_concurrent_clients_gets_exactly_one_answer_each(server, model_and_tokenizer):
    """12 clients at once share batches; each gets one answer, and it is the one it would get alone."""
    model, tokenizer = model_and_tokenizer
    rng = np.random.default_rng(0)
    bodies = [dict(prompt="".join(rng.choice(tokenizer.chars, size=int(rng.integers(1, 20)))),
                   max_tokens=int(rng.integers(1, 30)), temperature=0) for _ in range(12)]
    before = server.metrics()
    answers = [[] for _ in bodies]
    threads = [threading.Thread(target=lambda i=i: answers[i].append(server.request("POST", "/v1/completions",
                                                                                    bodies[i])))
               for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for body, answer in zip(bodies, answers):
        assert len(answer) == 1
        status, _, completion = answer[0]
        assert status == 200
        assert completion["choices"][0]["text"] == alone(model, tokenizer, body["prompt"], body["max_tokens"],
                                                         temperature=0)
    after = server.metrics()
    assert after["requests_submitted"] - before["requests_submitted"] == len(bodies)
    assert after["requests_finished"] - before["requests_finished"] == len(bodies)
    assert after["tokens_generated"] - before["tokens_generated"] == sum(b["max_tokens"] for b in bodies)


# --------------------------------------------------------------------------------------------- bad requests
BAD_REQUESTS = [  # (body, the field the error names, words the message must hold)
    (b'{"prompt": "ab", ', None, "not valid JSON"),
    (b"\xff\xfe", None, "not valid JSON"),
    (b'["ab"]', None, "must be a JSON object"),
    ({"prompt": "ab", "n": 2}, "n", "unknown field"),
    ({"prompt": "ab", "max_token": 2}, "max_token", "check the spelling"),
    ({"max_tokens": 3}, "prompt", "required"),
    ({"prompt": ["ab"]}, "prompt", "must be a string"),
    ({"prompt": ""}, "prompt", "empty"),
    ({"prompt": "ab", "max_tokens": "8"}, "max_tokens", "must be an integer"),
    ({"prompt": "ab", "max_tokens": 2.5}, "max_tokens", "must be an integer"),
    ({"prompt": "ab", "max_tokens": True}, "max_tokens", "a boolean"),
    ({"prompt": "ab", "max_tokens": 0}, "max_tokens", f"between 1 and {MAX_TOKENS_LIMIT}"),
    ({"prompt": "ab", "max_tokens": MAX_TOKENS_LIMIT + 1}, "max_tokens", f"between 1 and {MAX_TOKENS_LIMIT}"),
    ({"prompt": "ab", "temperature": -0.5}, "temperature", ">= 0"),
    ({"prompt": "ab", "temperature": "hot"}, "temperature", "finite number"),
    (b'{"prompt": "ab", "temperature": NaN}', "temperature", "finite number"),
    ({"prompt": "ab", "top_k": 0}, "top_k", ">= 1"),
    ({"prompt": "ab", "top_k": 1.5}, "top_k", "must be an integer"),
    ({"prompt": "ab", "top_p": 0}, "top_p", "(0, 1]"),
    ({"prompt": "ab", "top_p": 1.5}, "top_p", "(0, 1]"),
    ({"prompt": "ab", "seed": -1}, "seed", ">= 0"),
    ({"prompt": "ab", "stream": "yes"}, "stream", "true or false"),
    ({"prompt": "ab", "model": 3}, "model", "must be a string"),
]


@pytest.mark.parametrize("body, field, words", BAD_REQUESTS, ids=[str(b)[:40] for b, _, _ in BAD_REQUESTS])
def test_a_bad_request_gets_400_naming_the_field_and_the_fix(server, body, field, words):
    status, _, answer = server.request("POST", "/v1/completions", body)
    assert status == 400
    error = answer["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == field
    assert words in error["message"]
    if field is not None:
        assert f"'{field}'" in error["message"] or f"['{field}']" in error["message"]


def test_a_prompt_longer_than_the_context_gets_400_with_both_lengths(server, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    prompt = tokenizer.chars[0] * (model.max_context + 5)
    status, _, answer = server.request("POST", "/v1/completions", {"prompt": prompt})
    assert status == 400 and answer["error"]["param"] == "prompt"
    assert f"{model.max_context + 5} tokens" in answer["error"]["message"]
    assert f"last {model.max_context} tokens" in answer["error"]["message"]


@given(data=st.data())
def test_a_character_outside_the_vocabulary_is_named_with_its_position(server, model_and_tokenizer, data):
    model, tokenizer = model_and_tokenizer
    known = data.draw(prompts(tokenizer, 10), label="known prefix")
    unknown = data.draw(st.characters(blacklist_characters=tokenizer.chars, blacklist_categories=("Cs",)),
                        label="unknown character")
    prompt = known + unknown + data.draw(prompts(tokenizer, 5))
    status, _, answer = server.request("POST", "/v1/completions", {"prompt": prompt})
    assert status == 400 and answer["error"]["param"] == "prompt"
    assert f"{unknown!r}" in answer["error"]["message"]
    assert f"at position {len(known)}" in answer["error"]["message"]


# --------------------------------------------------------------------------------------------- health, metrics
def test_health_and_metrics_answer_plain_json(server):
    status, _, health = server.request("GET", "/health")
    assert status == 200 and health["status"] == "ok" and health["max_context"] == 32
    server.complete(prompt="ab", max_tokens=3, temperature=0)
    status, _, metrics = server.request("GET", "/metrics")
    assert status == 200
    for counter in ("requests_submitted", "requests_finished", "requests_rejected", "tokens_generated",
                    "queue_length", "active_requests"):
        assert isinstance(metrics[counter], int) and metrics[counter] >= 0
    assert metrics["requests_finished"] >= 1 and metrics["tokens_generated"] >= 3
    assert 0 < metrics["latency_s"]["p50"] <= metrics["latency_s"]["p99"]
    assert metrics["uptime_s"] > 0


def test_a_client_that_disconnects_mid_stream_frees_its_slot(server):
    before = server.wait_for(lambda m: m["active_requests"] == 0)
    connection = server.connect()
    connection.request("POST", "/v1/completions",
                       json.dumps({"prompt": "ab", "max_tokens": MAX_TOKENS_LIMIT, "stream": True}).encode())
    response = connection.getresponse()
    events = 0
    while events < 2:
        events += response.readline().startswith(b"data: ")
    connection.close()  # the client goes away after two tokens
    after = server.wait_for(lambda m: m["active_requests"] == 0
                            and m["requests_finished"] == before["requests_finished"] + 1)
    assert 2 <= after["tokens_generated"] - before["tokens_generated"] < MAX_TOKENS_LIMIT


def test_a_client_that_leaves_before_its_json_answer_frees_its_slot(server):
    before = server.wait_for(lambda m: m["active_requests"] == 0)
    connection = server.connect()
    connection.request("POST", "/v1/completions", json.dumps({"prompt": "ab", "max_tokens": MAX_TOKENS_LIMIT}).encode())
    server.wait_for(lambda m: m["tokens_generated"] > before["tokens_generated"])
    connection.close()  # gone before the answer, which only comes once all tokens are generated
    after = server.wait_for(lambda m: m["active_requests"] == 0
                            and m["requests_finished"] == before["requests_finished"] + 1)
    assert after["tokens_generated"] - before["tokens_generated"] < MAX_TOKENS_LIMIT


# --------------------------------------------------------------------------------------------- backpressure
def _send_in_background(server, body: dict) -> list:
    answers = []
    threading.Thread(target=lambda: answers.append(server.request("POST", "/v1/completions", body)),
                     daemon=True).start()
    return answers


def test_a_full_queue_answers_503_with_retry_after_and_a_freed_slot_serves_the_queue(single_slot_server):
    server = single_slot_server
    running = server.connect()  # fills the one slot and streams, so the test can free it when it wants
    running.request("POST", "/v1/completions",
                    json.dumps({"prompt": "ab", "max_tokens": 200, "stream": True}).encode())
    stream = running.getresponse()
    assert stream.readline().startswith(b"data: ")
    waiting = _send_in_background(server, {"prompt": "ab", "max_tokens": 3, "temperature": 0})
    server.wait_for(lambda m: m["queue_length"] == 1)

    status, headers, answer = server.request("POST", "/v1/completions", {"prompt": "ab", "max_tokens": 3})
    assert status == 503
    assert int(headers["retry-after"]) >= 1
    assert "retry" in answer["error"]["message"]
    assert server.metrics()["requests_rejected"] == 1

    running.close()  # the streaming client leaves: its slot goes to the waiting request
    server.wait_for(lambda m: m["active_requests"] == 0 and m["queue_length"] == 0)
    deadline = time.monotonic() + 15
    while not waiting and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [status for status, _, _ in waiting] == [200]
    assert waiting[0][2]["usage"]["completion_tokens"] == 3


def test_a_quantized_checkpoint_is_served_as_it_generates_alone(single_slot_server, quantized_checkpoint):
    model, tokenizer, _ = load_model(quantized_checkpoint)
    for prompt, max_tokens in (("ab", 5), (tokenizer.chars[-1] * 10, 20)):
        answer = single_slot_server.complete(prompt=prompt, max_tokens=max_tokens, temperature=0)
        assert answer["choices"][0]["text"] == alone(model, tokenizer, prompt, max_tokens, temperature=0)


def test_sigterm_lets_the_in_flight_request_finish_and_exits_cleanly(checkpoint):
    """SIGTERM stops accepting, the running request completes, exit status 0. The server is this test's own: under
    pytest -n auto the module's other tests may run after it on the same worker."""
    server = ServerProcess(checkpoint, "--max-batch-size", "1", "--max-wait-ms", "0").wait_until_ready()
    try:
        in_flight = _send_in_background(server, {"prompt": "ab", "max_tokens": 100, "temperature": 0})
        server.wait_for(lambda m: m["active_requests"] == 1)
        assert server.stop() == 0
    finally:
        server.stop()
    assert [status for status, _, _ in in_flight] == [200]
    assert in_flight[0][2]["usage"]["completion_tokens"] == 100
    assert any(line.startswith("stopped on SIGTERM") for line in server.output), server.output


def test_binding_beyond_loopback_prints_a_warning(tmp_path, capsys):
    with pytest.raises(FileNotFoundError):  # a missing checkpoint: it stops before anything listens
        serve(tmp_path / "missing.npz", host="0.0.0.0")
    warning = capsys.readouterr().err
    assert "warning" in warning and "0.0.0.0" in warning


# --------------------------------------------------------------------------------------------- load generator
def test_load_generator_records_exactly_one_answer_per_request(server):
    result = run_load(server.host, server.port, rate=40.0, num_requests=6, max_tokens=4, prompt="ab", seed=1)
    assert len(result.records) == 6
    for record in result.records:
        assert (record.status is None) != (record.error is None)
        assert record.status == 200 and record.tokens == 4
        assert 0 <= record.time_to_first_token_s <= record.latency_s
    assert [r.sent_at_s for r in result.records] == sorted(r.sent_at_s for r in result.records)
    summary = result.summary()
    assert summary["sent"] == summary["completed"] == 6 and summary["status_counts"] == {"200": 6}
    assert summary["rejected_503"] == summary["errors"] == 0
    assert 0 < summary["latency_s"]["p50"] <= summary["latency_s"]["p99"]
    assert summary["throughput_rps"] > 0 and summary["tokens_per_s"] == pytest.approx(4 * summary["throughput_rps"])
    json.dumps(result.as_dict())  # plain JSON types


@pytest.mark.parametrize("host", ["example.com", "0.0.0.0", "10.0.0.7", "192.168.1.2", "::", "8.8.8.8"])
def test_load_generator_refuses_hosts_beyond_loopback(host):
    with pytest.raises(ValueError, match="loopback"):
        run_load(host, 8000, rate=1.0, num_requests=1, max_tokens=1, prompt="a")


@given(st.ip_addresses(v=4))
def test_only_127_slash_8_counts_as_loopback_among_ipv4_addresses(address):
    assert is_loopback_host(str(address)) == (int(address) >> 24 == 127)


@pytest.mark.parametrize("host, loopback", [("localhost", True), ("LOCALHOST", True), ("::1", True), ("[::1]", True),
                                            ("::", False), ("localhost.example.com", False), ("", False)])
def test_loopback_names(host, loopback):
    assert is_loopback_host(host) == loopback


@given(rate=st.floats(0.5, 500.0), seed=st.integers(0, 2**32 - 1))
def test_poisson_arrivals_increase_with_mean_gap_one_over_rate(rate, seed):
    times = poisson_arrival_times(rate, 20_000, np.random.default_rng(seed))
    gaps = np.diff(times, prepend=0.0)
    assert (gaps > 0).all()
    assert np.mean(gaps) == pytest.approx(1 / rate, rel=0.05)  # 5% is over 7 standard errors at n = 20,000


# --------------------------------------------------------------------------------------------- bench serve
def test_bench_serve_simulated_rows_and_plot_have_every_field(tmp_path):
    """The harness of `bench serve` past the live part (which needs minutes): rows, the table and the plot."""
    settings = {**MODES["fast"], "simulated_batch_sizes": (1, 4), "simulated_requests": 100}
    service_model = ServiceModel(step_base_s=0.005, step_per_row_s=0.001, prefill_s=0.008)
    lines = []
    rows = run_simulated(service_model, settings, [5.0, 500.0], 10.0, 0, lines.append)
    assert [(r["batch_size"], r["rate"]) for r in rows] == [(1, 5.0), (1, 500.0), (4, 5.0), (4, 500.0)]
    assert all(r["completed"] == 100 and 0 < r["latency_s"]["p50"] <= r["latency_s"]["p99"] for r in rows)
    assert rows[3]["throughput_rps"] > rows[1]["throughput_rps"]  # overloaded: B = 4 completes more per second
    assert len(lines) == len(rows) and all(line.startswith("simulated") for line in lines)
    plot_latency_against_throughput(rows, tmp_path / "serve.png")
    assert (tmp_path / "serve.png").stat().st_size > 0
