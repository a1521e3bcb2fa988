"""A load generator: requests at random times, as real users send them, to a live server on this machine.

    result = run_load("127.0.0.1", 8000, rate=5.0, num_requests=50, max_tokens=16, prompt="The ")
    result.summary()   # throughput, p50/p99 latency and time to first token, status counts

Open loop, Poisson arrivals. Users do not wait for each other: request i+1 arrives whether or not request i
has been answered. The gaps between arrivals are drawn from an exponential distribution of mean 1/rate,
which makes the arrival count in any interval Poisson(rate x interval): the textbook model of many
independent users. A closed loop (send, wait for the answer, send again) would slow down exactly when the
server does, and hide the queueing delay that a benchmark of a server is meant to show.

Each request is sent on its own thread at its arrival time with the standard library's http.client,
streamed, so two times are taken from the moment it is sent: the time to the first token and the latency
to the last. A 503 (queue full) is an answer too, counted by status.

Bounded and local only: at most `num_requests` requests, none sent after `max_duration_s`, each given up
after `request_timeout_s` without a byte from the server, and only to a loopback address. A load generator
aimed at someone else's machine is a denial-of-service tool.
"""
from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np

from .loopback import is_loopback_host
from .simulation import poisson_arrival_times


@dataclass
class RequestRecord:
    """What happened to one request; exactly one of `status` (the server answered) or `error` is set."""
    sent_at_s: float                       # when it was sent, seconds after the run started
    status: int | None = None              # the HTTP status of the answer
    latency_s: float | None = None         # sent -> last byte of the answer
    time_to_first_token_s: float | None = None  # sent -> the first token's event (streamed 200s only)
    tokens: int = 0                        # tokens received
    error: str | None = None               # no answer: refused connection, timeout, broken stream


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p99": None}
    return {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99))}


@dataclass
class LoadResult:
    rate: float              # requested arrival rate, requests per second
    duration_s: float        # start of the run -> last answer
    records: list            # one RequestRecord per request sent, in sending order

    def summary(self) -> dict:
        """Plain JSON types: counts by status, completed requests and tokens per second, latency percentiles."""
        completed = [r for r in self.records if r.status == 200]
        duration = max(self.duration_s, 1e-9)
        return {
            "rate": self.rate, "sent": len(self.records), "completed": len(completed),
            "rejected_503": sum(r.status == 503 for r in self.records),
            "errors": sum(r.error is not None for r in self.records),
            "status_counts": {str(k): v for k, v in sorted(Counter(r.status for r in self.records
                                                                   if r.status is not None).items())},
            "duration_s": self.duration_s,
            "throughput_rps": len(completed) / duration,
            "tokens_per_s": sum(r.tokens for r in completed) / duration,
            "latency_s": _percentiles([r.latency_s for r in completed]),
            "time_to_first_token_s": _percentiles([r.time_to_first_token_s for r in completed
                                                   if r.time_to_first_token_s is not None]),
        }

    def as_dict(self) -> dict:
        return {"summary": self.summary(), "records": [asdict(r) for r in self.records]}


def _send(host: str, port: int, body: bytes, record: RequestRecord, timeout_s: float) -> None:
    """Send one streamed completion and fill `record` (on this request's own thread)."""
    start = time.perf_counter()
    connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        connection.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        if response.status == 200:
            _read_events(response, record, start)
        else:
            response.read()
        record.latency_s = time.perf_counter() - start
        record.status = response.status
    except (OSError, http.client.HTTPException, ValueError) as error:
        record.error = f"{type(error).__name__}: {error}"
    finally:
        connection.close()


def _read_events(response, record: RequestRecord, start: float) -> None:
    """Read server-sent events up to [DONE]; a chunk whose finish_reason is null carries one token."""
    for line in response:
        if not line.startswith(b"data: "):
            continue
        payload = line[len(b"data: "):].strip()
        if payload == b"[DONE]":
            return
        if json.loads(payload)["choices"][0]["finish_reason"] is None:
            if record.tokens == 0:
                record.time_to_first_token_s = time.perf_counter() - start
            record.tokens += 1
    raise ValueError("the stream ended before data: [DONE]")


def run_load(host: str, port: int, rate: float, num_requests: int, max_tokens: int, prompt: str,
             max_duration_s: float = 60.0, request_timeout_s: float = 60.0, temperature: float = 0.0,
             seed: int = 0) -> LoadResult:
    """Send up to `num_requests` completions with Poisson arrivals at `rate` per second; wait for every answer.

    Requests whose arrival time falls after `max_duration_s` are not sent. Every request sent gets exactly
    one RequestRecord, answered or failed, in the order they were sent.
    """
    if not is_loopback_host(host):
        raise ValueError(f"run_load: host {host!r} is not a loopback address; the load generator only sends to "
                         "this machine (127.0.0.1, ::1 or localhost). Run it on the server's own machine.")
    for name, value in (("rate", rate), ("max_duration_s", max_duration_s), ("request_timeout_s", request_timeout_s)):
        if not value > 0:
            raise ValueError(f"run_load: {name} must be > 0, got {value}")
    if num_requests < 1 or max_tokens < 1:
        raise ValueError(f"run_load: num_requests and max_tokens must be >= 1, got {num_requests} and {max_tokens}")
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "temperature": temperature,
                       "stream": True}).encode()
    arrivals = poisson_arrival_times(rate, num_requests, np.random.default_rng(seed))
    records, threads = [], []
    start = time.perf_counter()
    for arrival in arrivals[arrivals <= max_duration_s]:
        time.sleep(max(0.0, arrival - (time.perf_counter() - start)))
        record = RequestRecord(sent_at_s=time.perf_counter() - start)
        thread = threading.Thread(target=_send, args=(host, port, body, record, request_timeout_s), daemon=True)
        thread.start()
        records.append(record)
        threads.append(thread)
    for thread in threads:  # each thread ends within request_timeout_s of its last byte (the socket timeout)
        thread.join()
    return LoadResult(rate=rate, duration_s=time.perf_counter() - start, records=records)
