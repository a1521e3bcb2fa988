"""The real server in a child process, for tests, benchmarks and notebooks: start it, talk to it, stop it.

    with LocalServer("runs/gpt/checkpoint.npz", "--max-batch-size", "4") as server:
        status, headers, answer = server.request("POST", "/v1/completions", {"prompt": "The ", "max_tokens": 20})

It runs exactly what a user runs, `python -m tinygrad_llm serve ... --port 0`, on the loopback interface:
port 0 lets the system pick a free port, and the address is read from the line the server prints once it
accepts connections. Stopping sends SIGTERM (a graceful shutdown, as a process manager would) and kills
the process only if it has not exited after `timeout_s`.
"""
from __future__ import annotations

import http.client
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

_BANNER = re.compile(r"serving .* on http://([\d.]+):(\d+)$")


class LocalServer:
    def __init__(self, checkpoint, *flags: str):
        """Launch `python -m tinygrad_llm serve --checkpoint <checkpoint> --port 0 <flags>` (returns at once)."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tinygrad_llm", "serve", "--checkpoint", str(checkpoint), "--port", "0", *flags],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1")})
        self.output: list[str] = []   # every line the server printed, stdout and stderr together
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read_output, daemon=True).start()
        self.host: str | None = None
        self.port: int | None = None

    def _read_output(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def wait_until_ready(self, timeout_s: float = 120.0) -> LocalServer:
        """Block until the server prints its address; raise with its output if it exits or takes too long."""
        deadline = time.monotonic() + timeout_s
        while self.port is None:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"LocalServer: not ready after {timeout_s} s:\n" + "".join(self.output)) from None
            if line is None:
                raise RuntimeError("LocalServer: the server exited before it was ready:\n" + "".join(self.output))
            match = _BANNER.match(line.strip())
            if match:
                self.host, self.port = match.group(1), int(match.group(2))
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def connect(self, timeout_s: float = 60.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout_s)

    def request(self, method: str, path: str, body=None, timeout_s: float = 60.0) -> tuple[int, dict, object]:
        """(status, headers with lower-case names, the decoded JSON answer or None) of one request.
        body: a dict (sent as JSON), raw bytes (sent as they are), or None."""
        connection = self.connect(timeout_s)
        try:
            payload = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
            connection.request(method, path, payload, {"Content-Type": "application/json"})
            response = connection.getresponse()
            raw = response.read()
            headers = {name.lower(): value for name, value in response.getheaders()}
            return response.status, headers, json.loads(raw) if raw.strip() else None
        finally:
            connection.close()

    def metrics(self) -> dict:
        return self.request("GET", "/metrics")[2]

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM and wait; kill after timeout_s. Returns the exit status (0 after a graceful shutdown)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> LocalServer:
        try:
            return self.wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info) -> None:
        self.stop()
