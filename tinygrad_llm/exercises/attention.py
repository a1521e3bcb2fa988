"""Exercises on attention and the Transformer (chapter 6): the causal mask, scaled dot-product
attention, splitting and merging heads, and a GPT's parameter count in closed form.

Each reference below is the solution a learner sees on request; its def line and docstring are the starter code.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from .. import nn
from .feedback import PropertyFailed, call_learner, expect_close
from .framework import Check, Exercise, has_reference_shapes, matches_reference
from .strategies import float_arrays


def causal_mask(num_queries: int, num_keys: int) -> np.ndarray:
    """Additive causal mask of shape (num_queries, num_keys), float64: 0 where query i may see key j, -inf where not.

    The queries are the LAST num_queries of the num_keys positions (num_queries <= num_keys; equal without a
    KV cache), so query i sits at position i + num_keys - num_queries and sees every key up to that position.
    """
    offset = num_keys - num_queries
    visible = np.arange(num_keys)[None, :] <= np.arange(num_queries)[:, None] + offset
    return np.where(visible, 0.0, -np.inf)


def scaled_dot_product_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray,
                                 mask: np.ndarray | None = None) -> np.ndarray:
    """softmax(q @ k^T / sqrt(D) + mask) @ v, the softmax over the keys, for float64 q (..., Tq, D),
    k (..., Tk, D) and v (..., Tk, Dv) with the same leading (batch, head) axes.

    mask: None, or an additive (Tq, Tk) float64 array (0 = visible, -inf = hidden; every query sees at least
    one key). Returns (..., Tq, Dv).
    """
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores + mask
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True) @ v


def split_heads(x: np.ndarray, num_heads: int) -> np.ndarray:
    """(B, T, d) -> (B, H, T, D) with H = num_heads and D = d // H (d is a multiple of H).

    Head h gets features h*D .. (h+1)*D - 1 of every token, and time stays the axis attention runs over.
    """
    batch, time, dim = x.shape
    return x.reshape(batch, time, num_heads, dim // num_heads).transpose(0, 2, 1, 3)


def merge_heads(x: np.ndarray) -> np.ndarray:
    """(B, H, T, D) -> (B, T, H * D): the inverse of split_heads, every token's heads side by side again
    (head h's D features at positions h*D .. (h+1)*D - 1)."""
    batch, heads, time, head_dim = x.shape
    return x.transpose(0, 2, 1, 3).reshape(batch, time, heads * head_dim)


def gpt_parameter_count(vocab_size: int, context_size: int, embed_dim: int, num_heads: int, num_layers: int,
                        tie_weights: bool) -> int:
    """The number of parameters of a GPT-2-style model (the library's nn.GPT with learned positions and biases).

    Token embedding (V, d); learned positions (context_size, d); per block: LayerNorm, q/k/v/out projections
    d -> d, LayerNorm, MLP d -> 4d -> d (every Linear with a bias, every LayerNorm with a weight and a bias);
    a final LayerNorm; an LM head d -> V without bias, which IS the token embedding when tie_weights.
    """
    d = embed_dim
    per_block = 4 * (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d) + 2 * (2 * d)
    head = 0 if tie_weights else vocab_size * d
    return vocab_size * d + context_size * d + num_layers * per_block + 2 * d + head


# ---- causal_mask -----------------------------------------------------------------------------------------

@st.composite
def mask_inputs(draw, with_cache: bool | None = None) -> dict:
    """num_keys 1..8 and num_queries <= num_keys: equal (no cache), fewer (a cache), or either (None)."""
    num_keys = draw(st.integers(1 if with_cache is not True else 2, 8))
    if with_cache is None:
        num_queries = draw(st.integers(1, num_keys))
    elif with_cache:
        num_queries = draw(st.integers(1, num_keys - 1))
    else:
        num_queries = num_keys
    return {"num_queries": num_queries, "num_keys": num_keys}


ZERO_OR_MINUS_INF = ("holds only 0 (visible) and -inf (hidden): a 0/1 mask added to the scores hides nothing, it "
                     "shifts the visible scores by 1 (M26)")
NO_FUTURE = "query i sees itself and every earlier key but never a later one (num_queries = num_keys)"
LAST_POSITIONS = ("with a KV cache (fewer queries than keys) the queries are the LAST positions: query i sees keys "
                  "0 .. i + num_keys - num_queries")


def _zero_or_minus_inf(learner, drawn: dict) -> None:
    mask = call_learner(learner, drawn, ZERO_OR_MINUS_INF)
    expect_close(ZERO_OR_MINUS_INF, drawn, causal_mask(**drawn), mask, None, None)
    if not np.all((mask == 0) | (mask == -np.inf)):
        raise PropertyFailed(ZERO_OR_MINUS_INF, drawn, causal_mask(**drawn), mask,
                             "after softmax, exp(score + 1) / sum is no mask at all: hidden keys need -inf, so "
                             "that exp(-inf) = 0 (convert a 0/1 or boolean mask with np.where(visible, 0.0, -np.inf))")


# ---- scaled_dot_product_attention ------------------------------------------------------------------------

@st.composite
def attention_inputs(draw, masked: bool | None = None, min_dim: int = 1, low: float = -3.0,
                     high: float = 3.0) -> dict:
    """q (..., Tq, D), k (..., Tk, D), v (..., Tk, Dv) with 0-2 leading axes of size 1-2, sides 1-4, and a
    causal mask (queries aligned to the last keys) when `masked` (None: either)."""
    lead = tuple(draw(st.lists(st.integers(1, 2), max_size=2)))
    queries, keys = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dim, value_dim = draw(st.integers(min_dim, 4)), draw(st.integers(1, 4))
    masked = draw(st.booleans()) if masked is None else masked
    if masked:
        queries = min(queries, keys)
    return {"q": draw(float_arrays(lead + (queries, dim), low, high)),
            "k": draw(float_arrays(lead + (keys, dim), low, high)),
            "v": draw(float_arrays(lead + (keys, value_dim), -3.0, 3.0)),
            "mask": causal_mask(queries, keys) if masked else None}


def _weights_of(learner, drawn: dict, name: str) -> tuple[dict, np.ndarray]:
    """Run the learner with v = the identity (Tk x Tk), so that its output IS the attention weights."""
    keys = drawn["k"].shape[-2]
    probe = {**drawn, "v": np.broadcast_to(np.eye(keys), drawn["k"].shape[:-2] + (keys, keys)).copy()}
    weights = call_learner(learner, probe, name)
    expect_close(name, probe, scaled_dot_product_attention(**probe), weights, None, None)
    return probe, weights


ROWS_SUM_TO_ONE = ("each output row is a weighted average of the rows of v: with v = the identity the output is the "
                   "weights, non-negative and summing to 1 over the KEYS (the last axis of the scores)")
SCALED = "divides the scores by sqrt(D), D = the query/key width (their dot product has variance D, M26)"
HIDDEN_KEYS = "adds the mask to the scores: keys hidden by -inf get weight exactly 0"
STABLE = "stays finite and exact for huge scores (q and k entries up to +-200): subtract each row's max before exp"


def _rows_sum_to_one(learner, drawn: dict) -> None:
    probe, weights = _weights_of(learner, drawn, ROWS_SUM_TO_ONE)
    if not (np.all(weights >= -1e-12) and np.allclose(weights.sum(axis=-1), 1.0, rtol=0, atol=1e-9)):
        raise PropertyFailed(ROWS_SUM_TO_ONE, probe, scaled_dot_product_attention(**probe), weights,
                             "with v = I your output should be the attention weights; each row (one query) must "
                             "sum to 1: normalise over the keys, axis=-1, not over the queries")


def _hidden_keys_get_zero(learner, drawn: dict) -> None:
    probe, weights = _weights_of(learner, drawn, HIDDEN_KEYS)
    hidden = np.broadcast_to(drawn["mask"] == -np.inf, weights.shape)
    if not np.all(weights[hidden] == 0):
        raise PropertyFailed(HIDDEN_KEYS, probe, scaled_dot_product_attention(**probe), weights,
                             "with v = I your output is the weights; where the mask is -inf they must be 0. Setting "
                             "hidden scores to 0 is not hiding them: exp(0) = 1")


# ---- split_heads and merge_heads -------------------------------------------------------------------------

@st.composite
def heads_inputs(draw) -> dict:
    """x (B, T, H * D) with B 1-2, T 1-4, H 1-4, D 1-3, and num_heads = H."""
    batch, time, heads, head_dim = (draw(st.integers(1, n)) for n in (2, 4, 4, 3))
    return {"x": draw(float_arrays((batch, time, heads * head_dim))), "num_heads": heads}


@st.composite
def merge_inputs(draw) -> dict:
    """x (B, H, T, D): what split_heads returns."""
    drawn = draw(heads_inputs())
    return {"x": split_heads(**drawn)}


FEATURE_GROUPS = "head h holds features h*D .. (h+1)*D - 1 of token t: out[b, h, t] == x[b, t, h*D:(h+1)*D]"
INVERSE = "is the inverse of split_heads: merge_heads(split_heads(x, H)) == x for every x and H"


def _feature_groups(learner, drawn: dict) -> None:
    out = call_learner(learner, drawn, FEATURE_GROUPS)
    expect_close(FEATURE_GROUPS, drawn, split_heads(**drawn), out, None, None)
    x, heads = drawn["x"], drawn["num_heads"]
    head_dim = x.shape[-1] // heads
    for h in range(heads):
        for t in range(x.shape[1]):
            if not np.array_equal(out[:, h, t], x[:, t, h * head_dim:(h + 1) * head_dim]):
                raise PropertyFailed(FEATURE_GROUPS, drawn, split_heads(**drawn), out,
                                     f"out[:, {h}, {t}] should be token {t}'s features {h * head_dim}.."
                                     f"{(h + 1) * head_dim - 1}; a reshape straight to (B, H, T, D) cuts the "
                                     "(T, d) block in the wrong place: reshape to (B, T, H, D), then transpose")


def _inverse_of_split(learner, drawn: dict) -> None:
    split = {"x": split_heads(**drawn)}
    merged = call_learner(learner, split, INVERSE)
    expect_close(INVERSE, split, drawn["x"], merged, None, None)
    if not np.array_equal(merged, drawn["x"]):
        raise PropertyFailed(INVERSE, split, drawn["x"], merged,
                             "undo the transpose before the reshape: (B, H, T, D) -> (B, T, H, D) -> (B, T, H * D)")


# ---- gpt_parameter_count ---------------------------------------------------------------------------------

@st.composite
def gpt_sizes(draw) -> dict:
    """Small GPT sizes, embed_dim a multiple of 4 so that 1, 2 and 4 heads all divide it."""
    return {"vocab_size": draw(st.integers(2, 100)), "context_size": draw(st.integers(1, 64)),
            "embed_dim": 4 * draw(st.integers(1, 8)), "num_heads": draw(st.sampled_from([1, 2, 4])),
            "num_layers": draw(st.integers(1, 4)), "tie_weights": draw(st.booleans())}


HEADS_SPLIT_D = ("does not depend on num_heads: the heads split the d features of each projection, they do not "
                 "multiply them")
TIED_HEAD = "untying the LM head adds exactly V * d parameters (a tied head IS the token embedding: count it once)"
PER_BLOCK = "each block adds 12 d^2 + 13 d: four d x d projections, the d -> 4d -> d MLP, their biases, two LayerNorms"
LIBRARY = "equals the library's count for these sizes, nn.GPT.parameter_count (= the built model's num_parameters())"


def _count(learner, drawn: dict, name: str, **changes) -> int:
    arguments = {**drawn, **changes}
    count = call_learner(learner, arguments, name)
    expect_close(name, arguments, gpt_parameter_count(**arguments), count, None, None)
    return int(count)


def _expect_difference(name: str, drawn: dict, expected: int, received: int, detail: str) -> None:
    if received != expected:
        raise PropertyFailed(name, drawn, {"difference": expected}, {"difference": received}, detail)


def _heads_do_not_count(learner, drawn: dict) -> None:
    difference = _count(learner, drawn, HEADS_SPLIT_D) - _count(learner, drawn, HEADS_SPLIT_D, num_heads=1)
    _expect_difference(HEADS_SPLIT_D, drawn, 0, difference,
                       f"count(num_heads={drawn['num_heads']}) - count(num_heads=1) should be 0: W_q is one d x d "
                       "matrix whatever H is; each head reads its own D = d / H columns of it")


def _tied_head(learner, drawn: dict) -> None:
    difference = (_count(learner, drawn, TIED_HEAD, tie_weights=False)
                  - _count(learner, drawn, TIED_HEAD, tie_weights=True))
    _expect_difference(TIED_HEAD, drawn, drawn["vocab_size"] * drawn["embed_dim"], difference,
                       "count(tie_weights=False) - count(tie_weights=True) should be V * d")


def _per_block(learner, drawn: dict) -> None:
    d = drawn["embed_dim"]
    difference = (_count(learner, drawn, PER_BLOCK, num_layers=drawn["num_layers"] + 1)
                  - _count(learner, drawn, PER_BLOCK))
    _expect_difference(PER_BLOCK, drawn, 12 * d * d + 13 * d, difference,
                       "count(L + 1) - count(L) is one block: 4 (d^2 + d) attention + (4 d^2 + 4d) + (4 d^2 + d) "
                       "MLP + 4 d for two LayerNorms")


def _equals_the_library(learner, drawn: dict) -> None:
    count = _count(learner, drawn, LIBRARY)
    config = dict(drawn, tie_weights=drawn["tie_weights"], positions="learned", bias=True)
    expected = nn.GPT.parameter_count(**config)
    if count != expected:
        model = nn.GPT(**config)  # built only to show the learner every parameter's shape
        names = ", ".join(f"{name} {tuple(p.shape)}" for name, p in model.named_parameters()
                          if not name.startswith("blocks.") or name.startswith("blocks.0."))
        raise PropertyFailed(LIBRARY, drawn, expected, count,
                             f"the model's parameters (block 0 stands for every block): {names}")


CAUSAL_MASK = Exercise(
    name="causal_mask",
    title="The causal mask of a decoder, with or without a KV cache (M26)",
    statement=(
        "A decoder's token may attend only to itself and the tokens before it. Implement\n"
        "causal_mask(num_queries, num_keys): the additive mask of shape (num_queries, num_keys), float64,\n"
        "0.0 where query i may see key j and -inf where it may not; it is added to the scores before the\n"
        "softmax. The queries are the LAST num_queries of the num_keys positions (with a KV cache, a step\n"
        "feeds a few new queries against all cached keys), so query i sits at position\n"
        "i + num_keys - num_queries. Examples: causal_mask(3, 3) = [[0, -inf, -inf], [0, 0, -inf], [0, 0, 0]];\n"
        "causal_mask(1, 3) = [[0, 0, 0]] (the newest token sees everything). Exact comparison."
    ),
    reference=causal_mask,
    hints=(
        "Compare positions: key j is visible to query i iff j <= i + (num_keys - num_queries). Build that "
        "boolean matrix with broadcasting (a column of query positions against a row of key positions) or "
        "np.tril(..., k=offset).",
        "Then turn it into an additive mask: 0.0 where the key is visible and minus infinity where it is hidden "
        "(np.where chooses between them). A 0/1 mask cannot be added as it is: softmax would only shift the visible "
        "scores by 1.",
    ),
    checks=(
        has_reference_shapes(causal_mask, mask_inputs(), "returns a (num_queries, num_keys) float64 array"),
        Check(ZERO_OR_MINUS_INF, mask_inputs(), _zero_or_minus_inf),
        matches_reference(causal_mask, mask_inputs(with_cache=False), rtol=0, atol=0, name=NO_FUTURE),
        matches_reference(causal_mask, mask_inputs(with_cache=True), rtol=0, atol=0, name=LAST_POSITIONS),
    ),
)

SCALED_DOT_PRODUCT_ATTENTION = Exercise(
    name="scaled_dot_product_attention",
    title="Scaled dot-product attention in NumPy, with a mask (Q11)",
    statement=(
        "Implement scaled_dot_product_attention(q, k, v, mask=None) = softmax(q @ k^T / sqrt(D) + mask) @ v\n"
        "for float64 q (..., Tq, D), k (..., Tk, D), v (..., Tk, Dv): the leading axes (batch, heads, or\n"
        "none) are the same for all three, and k^T swaps only the last two axes of k. The softmax runs over\n"
        "the keys (the last axis of the (..., Tq, Tk) scores) and must not overflow for large scores. mask is\n"
        "None or an additive (Tq, Tk) array of 0 (visible) and -inf (hidden), as causal_mask returns; every\n"
        "query sees at least one key. Returns (..., Tq, Dv). Tolerance: rtol=1e-9, atol=1e-12."
    ),
    reference=scaled_dot_product_attention,
    hints=(
        "scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(D): k.T would reverse ALL axes of a batched k. Add the "
        "mask (it broadcasts over the leading axes), then softmax over axis=-1.",
        "The stable softmax subtracts each row's max before exp: e = np.exp(s - s.max(axis=-1, keepdims=True)); "
        "weights = e / e.sum(axis=-1, keepdims=True). A masked score is -inf and its exp is exactly 0.",
        "The last step is one matrix product: the normalised weights (..., Tq, Tk) times v (..., Tk, Dv), "
        "contracting over the keys, which gives (..., Tq, Dv).",
    ),
    checks=(
        has_reference_shapes(scaled_dot_product_attention, attention_inputs(), "returns (..., Tq, Dv)"),
        Check(ROWS_SUM_TO_ONE, attention_inputs(), _rows_sum_to_one),
        matches_reference(scaled_dot_product_attention, attention_inputs(masked=False, min_dim=2), rtol=1e-9,
                          atol=1e-12, name=SCALED),
        Check(HIDDEN_KEYS, attention_inputs(masked=True), _hidden_keys_get_zero),
        matches_reference(scaled_dot_product_attention, attention_inputs(low=-200.0, high=200.0), rtol=1e-9,
                          atol=1e-12, name=STABLE),
        matches_reference(scaled_dot_product_attention, attention_inputs(), rtol=1e-9, atol=1e-12),
    ),
)

SPLIT_HEADS = Exercise(
    name="split_heads",
    title="Split the model width into attention heads: (B, T, d) -> (B, H, T, D) (M27)",
    statement=(
        "Multi-head attention runs H heads side by side, each on its own D = d / H features of every token.\n"
        "Implement split_heads(x, num_heads): x is (B, T, d) with d a multiple of H = num_heads; return\n"
        "(B, H, T, D) where out[b, h, t] = x[b, t, h*D:(h+1)*D]. Time must stay the axis that attention runs\n"
        "over. The classic wrong answer reshapes to (-1, heads, depth) = (B*T, H, D): then the softmax runs\n"
        "over the H heads of one token and no token ever sees another. Exact comparison."
    ),
    reference=split_heads,
    hints=(
        "First cut each token's d features into H groups of D: reshape to (B, T, H, D). The data is already in "
        "the right order for that.",
        "Then swap the time and head axes so the shape becomes (B, H, T, D). Reshaping straight to (B, H, T, D) has "
        "the right shape but mixes tokens and features.",
    ),
    checks=(
        has_reference_shapes(split_heads, heads_inputs(), "returns (B, H, T, D) with D = d // H"),
        Check(FEATURE_GROUPS, heads_inputs(), _feature_groups),
        matches_reference(split_heads, heads_inputs(), rtol=0, atol=0),
    ),
)

MERGE_HEADS = Exercise(
    name="merge_heads",
    title="Merge the heads back: (B, H, T, D) -> (B, T, H * D)",
    statement=(
        "After attention each head has produced (B, T, D) outputs, stacked as (B, H, T, D). Before W_o mixes\n"
        "them, every token's heads are put side by side again. Implement merge_heads(x): return\n"
        "(B, T, H * D) with out[b, t, h*D:(h+1)*D] = x[b, h, t], the exact inverse of split_heads.\n"
        "Exact comparison."
    ),
    reference=merge_heads,
    hints=(
        "Undo split_heads in reverse order: first bring time back next to the batch, then join the last two axes.",
        "Swap the head and time axes to get (B, T, H, D), then reshape to (B, T, H * D). Reshaping (B, H, T, D) "
        "directly has the right shape but glues the heads of different tokens together.",
    ),
    checks=(
        has_reference_shapes(merge_heads, merge_inputs(), "returns (B, T, H * D)"),
        Check(INVERSE, heads_inputs(), _inverse_of_split),
        matches_reference(merge_heads, merge_inputs(), rtol=0, atol=0),
    ),
)

GPT_PARAMETER_COUNT = Exercise(
    name="gpt_parameter_count",
    title="Count a GPT's parameters in closed form (Q12, Q39)",
    statement=(
        "Implement gpt_parameter_count(vocab_size, context_size, embed_dim, num_heads, num_layers, tie_weights)\n"
        "for the library's GPT (GPT-2's architecture) with learned positions and biases, d = embed_dim:\n"
        "  token embedding (V, d); learned positions (context_size, d);\n"
        "  per block: LayerNorm; q, k, v and output projections d -> d; LayerNorm; MLP d -> 4d -> d\n"
        "    (every Linear has a weight and a bias, every LayerNorm a weight and a bias of d each);\n"
        "  a final LayerNorm; an LM head d -> V without bias, which IS the token embedding when tie_weights.\n"
        "Return an int. nanoGPT's CPU configuration (V=65, context 64, d=128, 4 heads, 4 layers, tied) has\n"
        "809,856 parameters. Exact comparison, also against the library's own count."
    ),
    reference=gpt_parameter_count,
    hints=(
        "Count one block first: four Linear(d, d) are 4 (d^2 + d); Linear(d, 4d) is 4d^2 + 4d; Linear(4d, d) is "
        "4d^2 + d; two LayerNorms are 4d. That is 12 d^2 + 13 d, whatever num_heads is.",
        "Then add the embeddings (V d + context_size d), the final LayerNorm (2d), and the head: V d more only "
        "when it is not tied (tied, it is the embedding matrix, already counted).",
    ),
    checks=(
        Check(HEADS_SPLIT_D, gpt_sizes(), _heads_do_not_count),
        Check(TIED_HEAD, gpt_sizes(), _tied_head),
        Check(PER_BLOCK, gpt_sizes(), _per_block),
        Check(LIBRARY, gpt_sizes(), _equals_the_library, max_examples=20),
        matches_reference(gpt_parameter_count, gpt_sizes(), rtol=0, atol=0),
    ),
)

EXERCISES = (CAUSAL_MASK, SCALED_DOT_PRODUCT_ATTENTION, SPLIT_HEADS, MERGE_HEADS, GPT_PARAMETER_COUNT)
