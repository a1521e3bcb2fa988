"""Text generation: the autoregressive loop (with or without the model's cache) and the decoding rules
that pick each token (greedy, temperature, top-k, top-p); greedy and beam search for encoder-decoders."""
from .beam_search import beam_search, length_penalty_factor
from .generate import generate
from .greedy_decode import DecodedBatch, greedy_decode, sequence_log_prob
from .sampling import apply_temperature, check_sampling_options, sample_next_token, top_k_filter, top_p_filter

__all__ = [
    "generate", "greedy_decode", "beam_search", "sequence_log_prob", "length_penalty_factor", "DecodedBatch",
    "sample_next_token", "apply_temperature", "top_k_filter", "top_p_filter", "check_sampling_options",
]
