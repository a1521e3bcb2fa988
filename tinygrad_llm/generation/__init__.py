"""Text generation: the autoregressive loop (with or without the model's cache) and the decoding rules
that pick each token (greedy, temperature, top-k, top-p); greedy and beam search for encoder-decoders;
speculative decoding (a draft model proposes, the target verifies several tokens per forward pass)."""
from .beam_search import beam_search, length_penalty_factor
from .generate import generate
from .greedy_decode import DecodedBatch, greedy_decode, sequence_log_prob
from .sampling import (apply_temperature, check_sampling_options, draw_tokens, next_token_probs, sample_next_token,
                       top_k_filter, top_p_filter)
from .speculative import SpeculativeResult, speculative_accept, speculative_generate

__all__ = [
    "generate", "greedy_decode", "beam_search", "sequence_log_prob", "length_penalty_factor", "DecodedBatch",
    "sample_next_token", "apply_temperature", "top_k_filter", "top_p_filter", "check_sampling_options",
    "next_token_probs", "draw_tokens", "speculative_generate", "speculative_accept", "SpeculativeResult",
]
