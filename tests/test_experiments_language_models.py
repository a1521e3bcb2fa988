"""Chapter 5 (Q08, Q09): the experiments in fast mode, and the learning checks every language model must pass.

The experiments run once per module (fixtures); thresholds were calibrated against full-size (`fast=False`) and
fast runs on a 2-core machine, and the measured values are recorded next to each assertion.

The Q08 checks are properties over every model kind the training loop builds (bigram, MLP, RNN, LSTM, GRU,
GPT). They are written as `check_*` functions so tests/test_broken_language_models.py can prove that they
catch the classic bugs: batch and time swapped (M22) and a loss on unshifted targets (M10).
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygrad_llm import nn
from tinygrad_llm.autograd import no_grad
from tinygrad_llm.data import random_windows
from tinygrad_llm.experiments import language_models as L
from tinygrad_llm.generation import generate
from tinygrad_llm.metrics import evaluate_language_model
from tinygrad_llm.nn import functional as F
from tinygrad_llm.random import manual_seed
from tinygrad_llm.training import MODEL_KINDS, TrainConfig, build_model
from tinygrad_llm.training.loop import language_model_loss

pytestmark = pytest.mark.lm

TINY = dict(embed_dim=8, hidden_dim=8, num_layers=2, num_heads=2, context_size=12, mlp_window=3)
# Six model kinds per property: the CI profile's example count, also in the dev profile (which draws 100), so
# the file stays quick.
FEW = settings(max_examples=25)


def tiny_model(kind: str, vocab_size: int, seed: int = 0) -> nn.LanguageModel:
    """A model of `kind` from the same factory the training loop uses, at toy sizes."""
    manual_seed(seed)
    return build_model(TrainConfig(model=kind, **TINY), vocab_size)


def scrambled_model(kind: str, vocab_size: int, seed: int = 0) -> nn.LanguageModel:
    """A tiny model with every parameter redrawn from N(0, 0.5^2): far from uniform predictions, like a trained
    model. (An untrained bigram predicts uniformly, and a uniform model passes some checks for the wrong reason.)"""
    model = tiny_model(kind, vocab_size, seed)
    rng = np.random.default_rng(seed)
    for parameter in model.parameters():
        parameter.data[...] = rng.normal(0.0, 0.5, parameter.shape)
    return model


# ============================================================================ the checks, on any model
def check_loss_is_mean_cross_entropy_against_the_next_token(model, make_windows, loss_fn, block_size: int,
                                                            batch_size: int, seed: int):
    """The LM loss must equal the mean over every (sample, position) of -log p(the token that FOLLOWS the
    input token in the text). The text is a permutation of the vocabulary, so every token has exactly one
    successor and the expected target of each position is known without trusting the window maker."""
    stream = np.random.default_rng(seed).permutation(model.vocab_size)
    successor = dict(zip(stream[:-1].tolist(), stream[1:].tolist()))
    inputs, targets = make_windows(stream, block_size, batch_size, np.random.default_rng(seed + 1))
    with no_grad():
        loss = loss_fn(model, inputs, targets).item()
        log_probs = F.log_softmax(model(inputs).double(), axis=-1).data
    terms = [-log_probs[b, t, successor[int(inputs[b, t])]] for b in range(inputs.shape[0]) for t in range(block_size)]
    assert loss == pytest.approx(np.mean(terms), rel=1e-5, abs=1e-6), (
        f"loss {loss:.6f} but the mean cross-entropy against the next token is {np.mean(terms):.6f}: "
        "the targets must be the inputs shifted by one"
    )


def check_full_forward_equals_token_by_token(model, ids: np.ndarray):
    gap = L.incremental_decoding_gap(model, ids)
    assert gap < 1e-5, f"{type(model).__name__}: cached token-by-token logits differ from the full forward by {gap:.3g}"


def check_a_sample_depends_only_on_itself(model, ids: np.ndarray, sample: int):
    leak = L.cross_sample_leak(model, ids, sample)
    assert leak <= 1e-6, (f"{type(model).__name__}: changing sample {sample} moved the other samples' logits by "
                          f"{leak:.3g}: batch and time are mixed up")


def random_ids(rng: np.random.Generator, vocab_size: int, batch: int, steps: int) -> np.ndarray:
    return rng.integers(0, vocab_size, size=(batch, steps))


# ============================================================================ Q08 checks (properties)
@given(vocab_size=st.integers(1, 300), constant=st.floats(-50, 50), length=st.integers(2, 80),
       block_size=st.integers(1, 16), seed=st.integers(0, 2**16))
def test_uniform_logits_give_perplexity_equal_to_the_vocabulary_size(vocab_size, constant, length, block_size, seed):
    model = nn.BigramLanguageModel(vocab_size)
    model.table.data[...] = constant  # every logit equal: softmax is uniform whatever the constant
    stream = np.random.default_rng(seed).integers(0, vocab_size, length)
    assert evaluate_language_model(model, stream, block_size)["perplexity"] == pytest.approx(vocab_size, rel=1e-9)


@pytest.mark.parametrize("kind", MODEL_KINDS)
@FEW
@given(seed=st.integers(0, 2**16), block_size=st.integers(1, 12), batch_size=st.integers(1, 4))
def test_the_loss_is_the_mean_cross_entropy_against_the_next_token(kind, seed, block_size, batch_size):
    check_loss_is_mean_cross_entropy_against_the_next_token(scrambled_model(kind, 24, seed), random_windows,
                                                            language_model_loss, block_size, batch_size, seed)


@pytest.mark.parametrize("kind", MODEL_KINDS)
@FEW
@given(vocab_size=st.integers(2, 120), seed=st.integers(0, 2**16))
def test_an_untrained_model_starts_within_0_1_of_ln_v(kind, vocab_size, seed):
    # Hidden width 32, the smallest the ladder uses: the output layer's bias is drawn from +-1/sqrt(hidden), so
    # at width 8 it alone can put a 5-token model 0.11 nats above ln V.
    manual_seed(seed)
    model = build_model(TrainConfig(model=kind, **{**TINY, "embed_dim": 16, "hidden_dim": 32}), vocab_size)
    rng = np.random.default_rng(seed)
    ids = random_ids(rng, vocab_size, 4, TINY["context_size"] + 1)
    loss = language_model_loss(model, ids[:, :-1], ids[:, 1:]).item()
    ln_v = math.log(vocab_size)
    assert abs(loss - ln_v) < 0.1, f"{kind}: initial loss {loss:.3f} vs ln V = {ln_v:.3f}"


@pytest.mark.parametrize("kind", MODEL_KINDS)
@FEW
@given(seed=st.integers(0, 2**16), batch=st.integers(1, 3), steps=st.integers(1, TINY["context_size"]))
def test_the_full_forward_equals_token_by_token_decoding(kind, seed, batch, steps):
    model = scrambled_model(kind, 17, seed)
    check_full_forward_equals_token_by_token(model, random_ids(np.random.default_rng(seed), 17, batch, steps))


@pytest.mark.parametrize("kind", MODEL_KINDS)
@FEW
@given(seed=st.integers(0, 2**16), steps=st.integers(1, TINY["context_size"]), sample=st.integers(0, 2))
def test_a_sample_depends_only_on_itself(kind, seed, steps, sample):
    model = scrambled_model(kind, 17, seed)
    check_a_sample_depends_only_on_itself(model, random_ids(np.random.default_rng(seed), 17, 3, steps), sample)


@pytest.mark.parametrize("kind", MODEL_KINDS)
@FEW
@given(seed=st.integers(0, 2**16), prompt_length=st.integers(1, 6), max_new_tokens=st.integers(0, 20))
def test_generated_length_is_the_prompt_plus_max_new_tokens(kind, seed, prompt_length, max_new_tokens):
    model = tiny_model(kind, 17, seed)
    prompt = np.random.default_rng(seed).integers(0, 17, prompt_length)
    assert len(generate(model, prompt, max_new_tokens, temperature=0.8, seed=seed)) == prompt_length + max_new_tokens


# ============================================================================ Q08: the ladder (fast mode)
@pytest.fixture(scope="module")
def ladder():
    return L.model_ladder(fast=True)


def test_every_neural_model_and_the_bigram_beat_the_unigram_baseline(ladder):
    results = ladder["results"]
    unigram = results["unigram"]["perplexity"]
    # Measured val PPL, fast (5 kB, 200 steps, d = 32): unigram 20.5, count bigram 13.2, bigram 13.8, MLP 14.7,
    # RNN 15.0, GRU 15.4, LSTM 18.4, GPT 13.5. Full (100 kB, 600 steps): unigram 26.0, count bigram 13.0,
    # bigram 13.3, MLP 5.8, RNN 7.6, GRU 7.9, LSTM 9.4, GPT 7.5.
    for name in ("count bigram", *L.TRAINED_MODELS):
        ppl = results[name]["perplexity"]
        assert ppl < unigram, f"{name}: {ppl:.2f} vs unigram {unigram:.2f}"
    # PPL = exp(mean NLL), and every untrained model starts near ln V (PPL near V).
    for name, result in results.items():
        assert result["perplexity"] == pytest.approx(math.exp(result["val_loss"]))
    for name in L.TRAINED_MODELS:
        assert abs(results[name]["initial_loss"] - math.log(ladder["vocab_size"])) < 0.1, name


def test_every_sample_is_the_prompt_plus_max_new_tokens(ladder):
    for name, result in ladder["results"].items():
        for label, length in result["lengths"].items():
            assert length == result["prompt_tokens"] + 120, (name, label)
            assert result["samples"][label].startswith(ladder["prompt"]), (name, label)


def test_the_argmax_over_a_prompt_is_not_a_continuation(ladder):
    result = L.argmax_vs_loop(ladder["models"]["GPT"], ladder["tokenizer"], "The default value of", 30)
    assert result["argmax_tokens"] == result["prompt_tokens"]  # one guess per prompt position, never longer
    assert result["loop_tokens"] == result["prompt_tokens"] + 30
    assert result["loop_text"].startswith(result["prompt"])
    assert result["first_new_token_is_last_guess"]


def test_training_on_unshifted_targets_learns_to_copy_not_to_predict():
    result = L.unshifted_targets(fast=True)
    right, wrong = result["runs"]["shifted targets (correct)"], result["runs"]["targets = inputs (M10)"]
    # Measured, fast: training loss 2.67 (shifted) vs 0.20 (unshifted); val PPL on the next token 15.4 vs 257,
    # unigram 20.5; the unshifted model's greedy continuation of "The" is "Theeeee...".
    assert wrong["train_loss"] < 0.5 * right["train_loss"]
    assert wrong["val_perplexity"] > result["unigram_perplexity"] > right["val_perplexity"]
    assert wrong["greedy_sample"].endswith("e" * 20)


# ============================================================================ Q09 (fast mode)
@pytest.fixture(scope="module")
def exploding():
    return L.exploding_gradients(fast=True)


@pytest.fixture(scope="module")
def vanishing():
    return L.vanishing_gradients(fast=True)


@pytest.fixture(scope="module")
def depth():
    return L.deep_mlp_gradients(fast=True)


def test_clipping_keeps_the_exploding_rnn_finite(exploding):
    threshold = exploding["threshold"]
    unclipped = exploding["runs"]["radius 1.5, no clipping"]
    clipped = exploding["runs"][f"radius 1.5, clipped at {threshold:g}"]
    control = exploding["runs"]["radius 0.9, no clipping (control)"]
    # Measured: fast (T = 50) max norm 6e19, over 100x the threshold from step 18, loss inf at step 96; full
    # (T = 100) max norm 3e33, over 100x from step 1, loss inf at step 177. Clipped: finite, final MSE 0.18 at both
    # sizes (baseline 1/6). Control (radius 0.9): max norm 6.1 fast, 7.7 full.
    assert unclipped["max_grad_norm"] >= 100 * threshold
    assert unclipped["diverged_at"] is not None
    assert clipped["finite"] and all(math.isfinite(v) for v in clipped["loss"])
    assert control["finite"] and control["max_grad_norm"] < 100 * threshold


def test_the_lstm_keeps_at_least_10x_more_of_the_gradient_than_the_rnn(vanishing):
    models = vanishing["models"]
    # Measured ||dL/dh_0|| / ||dL/dh_T||, fast (T = 50): RNN 1.0e-4, GRU 6.6e-11, GRU with update bias 3 0.12,
    # LSTM 0.085; full (T = 100): RNN 3.9e-7, GRU 1.4e-20, GRU with update bias 3 0.020, LSTM 0.095.
    assert models["LSTM (forget bias 3)"]["ratio"] >= 10 * models["RNN (radius 0.9)"]["ratio"]
    assert models["GRU (update-gate bias 3)"]["ratio"] >= 10 * models["RNN (radius 0.9)"]["ratio"]


def test_gradient_curves_are_identical_with_clipping(vanishing, depth):
    """M23: clipping multiplies the whole gradient by one factor <= 1, so no curve changes shape."""
    curves = {**vanishing["models"], **{f"{kind} MLP": c for kind, c in depth["curves"].items()}}
    for name, c in curves.items():
        assert c["clipping_equals_loss_scaling"], name
        assert c["clip_scale"] <= 1.0, name
        np.testing.assert_allclose(np.asarray(c["clipped_curve"]) / c["clipped_curve"][-1],
                                   np.asarray(c["curve"]) / c["curve"][-1], rtol=1e-4, err_msg=name)
    # The vanishing sigmoid net's whole gradient is below the threshold (measured norm 0.05 fast, 0.36 full):
    # clipping is a no-op there.
    sigmoid = depth["curves"]["sigmoid"]
    assert sigmoid["total_norm"] < depth["threshold"] and sigmoid["clipped_curve"] == sigmoid["curve"]


def test_depth_makes_plain_nets_worse_and_residual_nets_do_not_care(depth):
    sweep = depth["depth_sweep"]
    # Measured ||dL/dx_0|| / ||dL/dx_L|| at depths 2, 5, 10, 20, 30: sigmoid 5.5e-2 ... 1.0e-19 fast (width 32),
    # 5.7e-2 ... 2.4e-19 full (width 64); ReLU with 1.5x He std 2.9 ... 1.4e5 fast, 1.8 ... 1.5e5 full;
    # residual + LayerNorm between 1.8 and 3.2 at both sizes.
    assert all(a > b for a, b in zip(sweep["sigmoid"], sweep["sigmoid"][1:]))
    assert sweep["sigmoid"][-1] < 1e-10
    assert sweep["relu x1.5"][-1] > 1e3 and sweep["relu x1.5"][-1] > sweep["relu x1.5"][0]
    assert all(0.1 < r < 10 for r in sweep["residual"])


def test_adam_does_not_rescue_the_deep_sigmoid_mlp_but_residuals_do(depth):
    training = depth["training"]
    chance = depth["chance_loss"]
    # Measured, fast (150 Adam steps): sigmoid 1.094 -> 1.097 (chance ln 3 = 1.099), val acc 0.32; ReLU+He
    # 1.09 -> 0.17; residual 1.24 -> 0.10, val acc 0.99. Full (400 steps): sigmoid 1.12 -> 1.098, val acc 0.32;
    # ReLU+He 1.10 -> 0.021; residual 1.16 -> 0.037, val acc 0.99.
    assert abs(training["sigmoid"]["final_loss"] - chance) < 0.05
    assert training["residual"]["final_loss"] < 0.5 * chance
    assert training["residual"]["val_acc"] > 0.9 > 0.5 > training["sigmoid"]["val_acc"]
