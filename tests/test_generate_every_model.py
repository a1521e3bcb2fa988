"""For every language model, generating with its cache (KV cache, carried RNN state, the MLP's window)
gives the same tokens and the same logits as recomputing the whole sequence at every step, also past a
GPT's context where both restart their window."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_llm as tgl
from tinygrad_llm.generation import generate
from tinygrad_llm.training import TrainConfig, build_model

pytestmark = pytest.mark.inference

KINDS = ["bigram", "mlp", "rnn", "lstm", "gru", "gpt"]


def small_model(kind: str, vocab_size: int, seed: int, positions: str = "learned"):
    tgl.manual_seed(seed)
    config = TrainConfig(model=kind, context_size=12, embed_dim=16, hidden_dim=16, num_layers=2, num_heads=2,
                         mlp_window=3, positions=positions)
    return build_model(config, vocab_size)


@pytest.mark.parametrize("kind", KINDS)
@given(seed=st.integers(0, 2**16), prompt_length=st.integers(1, 10), new_tokens=st.integers(1, 20),
       temperature=st.sampled_from([0.0, 0.7, 1.3]))
def test_cached_generation_equals_recomputing_everything(kind, seed, prompt_length, new_tokens, temperature):
    model = small_model(kind, vocab_size=11, seed=seed)
    prompt = np.random.default_rng(seed).integers(0, 11, prompt_length)
    fast, fast_logits = generate(model, prompt, new_tokens, temperature=temperature, seed=seed, return_logits=True)
    slow, slow_logits = generate(model, prompt, new_tokens, temperature=temperature, seed=seed, use_cache=False,
                                 return_logits=True)
    np.testing.assert_array_equal(fast, slow)
    np.testing.assert_allclose(fast_logits, slow_logits, rtol=1e-4, atol=1e-5)
    assert len(fast) == prompt_length + new_tokens


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rope"])
def test_gpt_cache_equals_recomputing_past_the_context_for_every_position_kind(positions):
    model = small_model("gpt", vocab_size=11, seed=0, positions=positions)
    prompt = np.arange(8) % 11
    fast, fast_logits = generate(model, prompt, 30, temperature=0.0, return_logits=True)  # context 12: restarts
    slow, slow_logits = generate(model, prompt, 30, temperature=0.0, use_cache=False, return_logits=True)
    np.testing.assert_array_equal(fast, slow)
    np.testing.assert_allclose(fast_logits, slow_logits, rtol=1e-4, atol=1e-5)
