"""`python -m tinygrad_llm serve`: load a checkpoint once, start the batching engine, answer HTTP with uvicorn.

    python -m tinygrad_llm serve --checkpoint runs/gpt/checkpoint.npz --port 8000
    python -m tinygrad_llm serve --checkpoint gpt_int8.npz        # a checkpoint written by `quantize`
    curl -s localhost:8000/v1/completions -d '{"prompt": "The ", "max_tokens": 40, "temperature": 0}'

The model is loaded once, before the first request, and stays warm: loading per request would cost more
than generating. Shutdown is graceful on SIGINT (Ctrl+C) and SIGTERM (what process managers send): the
server stops accepting connections, lets in-flight requests finish for up to `shutdown_grace_s`, cancels
what is still running after that, stops the engine and exits with status 0.
"""
from __future__ import annotations

import signal
import socket
import sys

import uvicorn

from ..compression import load_model
from .engine import InferenceEngine
from .http_app import DEFAULT_MAX_TOKENS_LIMIT, build_app
from .loopback import is_loopback_host


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port and listening; port 0 lets the system pick a free port.

    Binding here, before uvicorn starts, gives the real port to announce, and connections that arrive
    while the server is still starting wait in the backlog instead of being refused.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as error:
        sock.close()
        raise ValueError(f"serve: cannot listen on {host}:{port} ({error.strerror}); choose another --port "
                         "(--port 0 picks a free one) or stop the process that holds it") from None
    sock.listen(128)
    return sock


class AnnouncingServer(uvicorn.Server):
    """uvicorn's server, printing one line once it accepts connections: scripts and tests wait for it."""

    def __init__(self, config: uvicorn.Config, banner: str, print_fn):
        super().__init__(config)
        self.banner, self.print_fn = banner, print_fn

    async def startup(self, sockets=None):
        await super().startup(sockets)
        if self.started:
            self.print_fn(self.banner)


def serve(checkpoint, host: str = "127.0.0.1", port: int = 8000, max_batch_size: int = 8, max_wait_s: float = 0.01,
          max_queue: int = 64, max_tokens_limit: int = DEFAULT_MAX_TOKENS_LIMIT, shutdown_grace_s: float = 10.0,
          print_fn=print) -> int:
    """Serve `checkpoint` until SIGINT or SIGTERM; returns the exit status (0 after a graceful shutdown)."""
    if shutdown_grace_s < 0:
        raise ValueError(f"serve: shutdown_grace_s must be >= 0 seconds, got {shutdown_grace_s}")
    if not is_loopback_host(host):
        print(f"warning: serve: binding {host} exposes the server beyond this machine; it has no authentication "
              "or rate limit per client. Use --host 127.0.0.1 unless that is what you want.", file=sys.stderr)
    model, tokenizer, _ = load_model(checkpoint)  # a training checkpoint, or a quantized one written by `quantize`
    if tokenizer is None:
        raise ValueError(f"serve: {checkpoint} holds no tokenizer, so text cannot become token ids; write the "
                         "quantized checkpoint with its tokenizer (python -m tinygrad_llm quantize does)")
    engine = InferenceEngine(model, max_batch_size=max_batch_size, max_wait_s=max_wait_s, max_queue=max_queue)
    app = build_app(engine, tokenizer, model_name=str(checkpoint), max_tokens_limit=max_tokens_limit)
    sock = listening_socket(host, port)
    address = sock.getsockname()
    shown_host = f"[{address[0]}]" if sock.family == socket.AF_INET6 else address[0]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=shutdown_grace_s)
    server = AnnouncingServer(config, f"serving {checkpoint} on http://{shown_host}:{address[1]}",
                              lambda line: print_fn(line, flush=True))

    # uvicorn handles SIGINT/SIGTERM itself, then re-raises the signal after its graceful shutdown so that the
    # handler installed before it runs. The default handlers would turn a requested, clean stop into exit
    # status -15 or a KeyboardInterrupt traceback; these record the signal instead.
    stop_signals = []
    previous = {sig: signal.signal(sig, lambda number, frame: stop_signals.append(number))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    metrics = engine.metrics()
    reason = f" on {signal.Signals(stop_signals[0]).name}" if stop_signals else ""
    print_fn(f"stopped{reason}: {metrics['requests_finished']} requests answered, "
             f"{metrics['tokens_generated']} tokens generated", flush=True)
    return 0
