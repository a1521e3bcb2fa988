"""Text generation: the autoregressive loop (with or without the model's cache) and the decoding rules
that pick each token (greedy, temperature, top-k, top-p)."""
from .generate import generate
from .sampling import apply_temperature, check_sampling_options, sample_next_token, top_k_filter, top_p_filter

__all__ = [
    "generate", "sample_next_token", "apply_temperature", "top_k_filter", "top_p_filter", "check_sampling_options",
]
