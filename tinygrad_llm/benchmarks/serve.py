"""`bench serve`: the live server's latency and throughput against B, w and the arrival rate, and the same
batching policy on a simulated clock for the rates this machine cannot send (Q22, M41).

    python -m tinygrad_llm bench serve --fast [--checkpoint runs/gpt/checkpoint.npz]

1. The service time S: one request at a time to a server with B = 1, the median latency. A server with
   B = 1 completes at most 1 / S requests per second: its capacity. Every arrival rate is a multiple of it.
2. Live: for each (B, w), the real server in a subprocess (`python -m tinygrad_llm serve`), and for each
   rate a bounded burst of Poisson arrivals from the load generator on the loopback interface.
3. Simulated: the service model of the same checkpoint (prefill time, step time against batch size),
   measured in this process, drives the engine's batching policy on a simulated clock at rates far past
   the live ones, 2,000 requests per point.

What to read in the table and the plot (latency against throughput, one line per B): below capacity every
B gives about the same latency, since a request alone is served no faster by batching (M41). Past the
capacity of B = 1 its queue grows without bound, so its latency shoots up at a throughput of 1 / S (the
knee), while a larger B keeps completing more requests per second, because one decoding step serves up to
B requests for little more than the cost of one.

The live numbers include HTTP and the load generator, which shares this machine's cores with the server;
the simulation includes neither. Single timings on a shared machine swing by tens of percent.
"""
from __future__ import annotations

import datetime
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ..serving.load_generator import run_load
from ..serving.local_server import LocalServer
from ..serving.simulation import measure_service_model, simulate
from ..training import TrainConfig, load_trained_model, train_language_model

MODES = {
    "fast": dict(batch_sizes=(1, 4), waits_ms=(0.0, 10.0), load_factors=(0.5, 1.0, 2.0), requests_per_run=22,
                 max_tokens=16, simulated_batch_sizes=(1, 2, 4, 8), simulated_factors=(0.5, 1, 2, 4, 8, 16),
                 simulated_requests=2000),
    "full": dict(batch_sizes=(1, 2, 4, 8), waits_ms=(0.0, 10.0), load_factors=(0.25, 0.5, 1.0, 1.5, 2.0, 3.0),
                 requests_per_run=60, max_tokens=32, simulated_batch_sizes=(1, 2, 4, 8, 16),
                 simulated_factors=(0.25, 0.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32), simulated_requests=2000),
}
SERVICE_TIME_REQUESTS = 5   # sent one after another to measure S (the first, a warm-up, is not counted)
MAX_QUEUE = 64


def train_small_checkpoint(out_dir) -> Path:
    """The main job's GPT shape (4 layers, 4 heads, 128 wide, context 64), trained briefly: what a request
    costs depends on the model's shape, not on how good its text is."""
    config = TrainConfig(steps=30, warmup_steps=5, eval_every=30, eval_batches=2, max_chars=50_000)
    return train_language_model(config, out_dir=out_dir, progress=False).checkpoint


def sample_prompt(tokenizer, length: int, seed: int) -> str:
    """Text of `length` random ordinary tokens: the content of a prompt does not change what it costs."""
    ordinary = [i for i in range(tokenizer.vocab_size) if not tokenizer.is_special(i)]
    return tokenizer.decode(np.random.default_rng(seed).choice(ordinary, size=length))


def measure_service_time(server: LocalServer, prompt: str, max_tokens: int) -> float:
    """Median seconds of one request with the server to itself, HTTP included (the first, a warm-up, not
    counted)."""
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    latencies = []
    for _ in range(SERVICE_TIME_REQUESTS):
        start = time.perf_counter()
        status, _, answer = server.request("POST", "/v1/completions", body)
        latencies.append(time.perf_counter() - start)
        if status != 200:
            raise RuntimeError(f"bench serve: a lone request failed with {status}: {answer}")
    return statistics.median(latencies[1:])


def _server_flags(batch_size: int, wait_ms: float) -> list[str]:
    return ["--max-batch-size", str(batch_size), "--max-wait-ms", str(wait_ms), "--max-queue", str(MAX_QUEUE)]


def _live_configurations(settings: dict) -> list[tuple[int, float]]:
    """(B, w) pairs; with B = 1 nobody waits for company, so w is swept only for B > 1."""
    return [(b, w) for b in settings["batch_sizes"] for w in (settings["waits_ms"] if b > 1 else (0.0,))]


def run_live(checkpoint, settings: dict, prompt: str, rates: list[float], seed: int, say) -> list[dict]:
    rows = []
    for batch_size, wait_ms in _live_configurations(settings):
        with LocalServer(checkpoint, *_server_flags(batch_size, wait_ms)) as server:
            server.request("POST", "/v1/completions", {"prompt": prompt, "max_tokens": settings["max_tokens"]})
            for rate in rates:  # after one warm-up request: a fresh process's first calls are slower
                count = settings["requests_per_run"]
                result = run_load(server.host, server.port, rate=rate, num_requests=count,
                                  max_tokens=settings["max_tokens"], prompt=prompt, seed=seed,
                                  max_duration_s=2 * count / rate + 5)
                rows.append({"source": "live", "batch_size": batch_size, "max_wait_ms": wait_ms,
                             **result.summary()})
                say(_format_row(rows[-1]))
    return rows


def run_simulated(service_model, settings: dict, rates: list[float], wait_ms: float, seed: int, say) -> list[dict]:
    rows = []
    for batch_size in settings["simulated_batch_sizes"]:
        for rate in rates:
            wait_s = wait_ms / 1000 if batch_size > 1 else 0.0
            result = simulate(rate, settings["simulated_requests"], batch_size, wait_s, service_model,
                              settings["max_tokens"], seed=seed)
            latency = result.latency_percentiles((50, 99))
            first_token = np.nanpercentile(result.times_to_first_token, [50, 99])
            rows.append({"source": "simulated", "batch_size": batch_size,
                         "max_wait_ms": wait_ms if batch_size > 1 else 0.0, "rate": rate,
                         "sent": settings["simulated_requests"],
                         "completed": int(np.isfinite(result.latencies).sum()),
                         "rejected_503": 0, "throughput_rps": result.requests_per_second,
                         "tokens_per_s": result.tokens_per_second, "latency_s": latency,
                         "time_to_first_token_s": {"p50": float(first_token[0]), "p99": float(first_token[1])},
                         "batch_size_mean": float(np.mean(result.batch_sizes)) if result.batch_sizes else None})
            say(_format_row(rows[-1]))
    return rows


HEADER = (f"{'source':<9} {'B':>3} {'w ms':>5} {'rate/s':>8} {'done/s':>8} {'tok/s':>8} {'p50 s':>8} {'p99 s':>8} "
          f"{'TTFT p50':>9} {'503s':>5}")


def _format_row(row: dict) -> str:
    return (f"{row['source']:<9} {row['batch_size']:>3} {row['max_wait_ms']:>5.0f} {row['rate']:>8.1f} "
            f"{row['throughput_rps']:>8.1f} {row['tokens_per_s']:>8.0f} {row['latency_s']['p50']:>8.3f} "
            f"{row['latency_s']['p99']:>8.3f} {row['time_to_first_token_s']['p50']:>9.3f} {row['rejected_503']:>5}")


def plot_latency_against_throughput(rows: list[dict], path) -> None:
    """p50 and p99 latency against completed requests per second, one line per (B, w): live solid, simulated
    dashed. The knee of each line is that B's capacity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), dpi=110, sharey=True)
    batch_sizes = sorted({row["batch_size"] for row in rows})
    colors = {b: plt.cm.viridis(i / max(1, len(batch_sizes) - 1)) for i, b in enumerate(batch_sizes)}
    lines = sorted({(row["source"], row["batch_size"], row["max_wait_ms"]) for row in rows})
    for axis, level in zip(axes, ("p50", "p99")):
        for source, batch_size, wait_ms in lines:
            points = [(r["throughput_rps"], r["latency_s"][level]) for r in sorted(rows, key=lambda r: r["rate"])
                      if (r["source"], r["batch_size"], r["max_wait_ms"]) == (source, batch_size, wait_ms)
                      and r["latency_s"][level] is not None]  # in order of arrival rate
            style = {"live": dict(linestyle="-", marker="o"), "simulated": dict(linestyle="--", marker=".")}[source]
            if source == "live" and wait_ms > 0:
                style = dict(linestyle=":", marker="s")
            axis.plot(*zip(*points), color=colors[batch_size], label=f"B={batch_size}, w={wait_ms:g} ms ({source})",
                      **style)
        axis.set_yscale("log")
        axis.set_xlabel("throughput (completed requests per second)")
        axis.set_title(f"{level} latency against throughput")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("latency (s, log scale)")
    axes[1].legend(fontsize=7, loc="upper left")
    figure.suptitle("Batching raises throughput, not per-request speed: each line bends up at its capacity")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def run_serve_benchmark(mode: str = "full", checkpoint=None, out="bench_serve.json", plot="bench_serve.png",
                        seed: int = 0, print_fn=print) -> dict:
    settings = MODES[mode]
    with tempfile.TemporaryDirectory() as scratch:
        if checkpoint is None:
            print_fn("bench serve: no --checkpoint given; training a small GPT first")
            checkpoint = train_small_checkpoint(scratch)
        model, tokenizer, _ = load_trained_model(checkpoint)
        prompt = sample_prompt(tokenizer, max(1, model.max_context // 4), seed)
        with LocalServer(checkpoint, *_server_flags(1, 0.0)) as server:
            service_time = measure_service_time(server, prompt, settings["max_tokens"])
        rates = [factor / service_time for factor in settings["load_factors"]]
        print_fn(f"service time alone (HTTP included): {service_time * 1000:.1f} ms for {settings['max_tokens']} "
                 f"tokens, so B = 1 completes at most {1 / service_time:.1f} requests/s\n{HEADER}")
        live = run_live(checkpoint, settings, prompt, rates, seed, print_fn)

        service_model = measure_service_model(model, steps=10, seed=seed)
        simulated_service = service_model.service_time(settings["max_tokens"])
        simulated_rates = [factor / simulated_service for factor in settings["simulated_factors"]]
        print_fn(f"\nservice model: prefill {service_model.prefill_s * 1000:.2f} ms, step "
                 f"{service_model.step_base_s * 1000:.2f} ms + {service_model.step_per_row_s * 1000:.3f} ms per row; "
                 f"a request alone {simulated_service * 1000:.1f} ms (no HTTP)\n{HEADER}")
        simulated = run_simulated(service_model, settings, simulated_rates, max(settings["waits_ms"]), seed, print_fn)

    report = {"benchmark": "serve", "mode": mode, "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "checkpoint": str(checkpoint), "settings": {k: list(v) if isinstance(v, tuple) else v
                                                          for k, v in settings.items()},
              "prompt_tokens": len(tokenizer.encode(prompt)), "service_time_s": service_time,
              "service_model": {"prefill_s": service_model.prefill_s, "step_base_s": service_model.step_base_s,
                                "step_per_row_s": service_model.step_per_row_s,
                                "service_time_s": simulated_service},
              "live": live, "simulated": simulated}
    if out:
        Path(out).write_text(json.dumps(report, indent=2))
        print_fn(f"wrote {out}")
    if plot:
        plot_latency_against_throughput(live + simulated, plot)
        print_fn(f"wrote {plot}")
    return report
