"""Serving a trained GPT over HTTP: continuous dynamic batching, streaming, backpressure (chapter 9, Q22)."""
from .batched_decoding import DecodingSequence, RaggedKVCache, decode_step
from .batching_policy import BatchingPolicy
from .engine import CompletionRequest, InferenceEngine, QueueFullError, RequestHandle, check_request
from .simulation import (ServiceModel, SimulationResult, measure_service_model, poisson_arrival_times, simulate,
                         simulate_policy)
# The HTTP app (http_app.build_app) and the server (server.serve) need the `serve` extra (starlette, uvicorn):
# import them from their modules. What follows uses the standard library only.
from .load_generator import LoadResult, RequestRecord, run_load
from .local_server import LocalServer
from .loopback import is_loopback_host
