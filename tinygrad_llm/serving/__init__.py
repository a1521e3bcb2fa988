"""Serving a trained GPT over HTTP: continuous dynamic batching, streaming, backpressure (chapter 9, Q22)."""
from .batched_decoding import DecodingSequence, RaggedKVCache, decode_step
from .batching_policy import BatchingPolicy
from .engine import CompletionRequest, InferenceEngine, QueueFullError, RequestHandle, check_request
from .simulation import ServiceModel, SimulationResult, measure_service_model, simulate, simulate_policy
