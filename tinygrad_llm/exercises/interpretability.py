"""Exercises on looking inside a model (chapter 12): integrated gradients on a differentiable function, exact Shapley
values for three players, and the logit-lens readout of a residual stream.

The functions to explain are small objects that print their own formula, so a failure message shows exactly which
function broke the learner's answer. Each reference below is the solution a learner sees on request; its def line
and docstring are the starter code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from .feedback import PropertyFailed, call_learner, expect_close
from .framework import Check, Exercise, has_reference_shapes, matches_reference
from .pretraining import grid_arrays, grid_numbers

# ---- functions with a gradient ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearFunction:
    """f(x) = w . x + c. Its integrated gradients are exactly w * (x - baseline), whatever the quadrature."""
    w: np.ndarray
    c: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x @ self.w + self.c

    def gradient(self, x: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.w, np.shape(x)).copy()

    def __repr__(self) -> str:
        return f"w . x + c with w = {self.w.tolist()}, c = {self.c}"


@dataclass(frozen=True)
class QuadraticFunction:
    """f(x) = x^T A x / 2 + b . x with A symmetric. Its gradient A x + b is linear along any straight path, which
    the midpoint rule integrates exactly: integrated gradients are then complete to rounding."""
    A: np.ndarray
    b: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return 0.5 * np.sum((x @ self.A) * x, axis=-1) + x @ self.b

    def gradient(self, x: np.ndarray) -> np.ndarray:
        return x @ self.A + self.b

    def __repr__(self) -> str:
        return f"x^T A x / 2 + b . x with A = {self.A.tolist()}, b = {self.b.tolist()}"


@dataclass(frozen=True)
class TanhNetwork:
    """f(x) = v . tanh(W x + c): a one-hidden-layer network, smooth and saturating like a real classifier."""
    W: np.ndarray
    c: np.ndarray
    v: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x @ self.W.T + self.c) @ self.v

    def gradient(self, x: np.ndarray) -> np.ndarray:
        hidden = np.tanh(x @ self.W.T + self.c)
        return ((1 - hidden**2) * self.v) @ self.W

    def __repr__(self) -> str:
        return f"v . tanh(W x + c) with W = {self.W.tolist()}, c = {self.c.tolist()}, v = {self.v.tolist()}"


# ---- integrated_gradients --------------------------------------------------------------------------------


def integrated_gradients(f, x: np.ndarray, baseline: np.ndarray, steps: int) -> np.ndarray:
    """Integrated gradients of a scalar function f from `baseline` to `x`, by the midpoint rule.

    f(points) takes (d,) or (k, d) float64 points and returns f there; f.gradient(points) returns df/dx, the same
    shape as points. x and baseline are (d,) float64; steps >= 1. Returns the attributions (d,):
        a_j = (x_j - baseline_j) * (1 / steps) * sum_k df/dx_j (baseline + alpha_k (x - baseline))
    with the midpoints alpha_k = (k + 1/2) / steps, k = 0 .. steps - 1.
    """
    alphas = (np.arange(steps) + 0.5) / steps
    path = baseline + alphas[:, None] * (x - baseline)
    return (x - baseline) * f.gradient(path).mean(axis=0)


@st.composite
def ig_inputs(draw, kind: str = "tanh") -> dict:
    """A function of d = 1 to 3 inputs (kind "linear", "quadratic" or "tanh"), x and a baseline on a grid of 0.5
    in +-2, and 1 to 16 steps."""
    d = draw(st.integers(1, 3))
    if kind == "linear":
        f = LinearFunction(draw(grid_arrays(d, -2, 2)), draw(grid_numbers(-2, 2, 0.5)))
    elif kind == "quadratic":
        half = draw(grid_arrays((d, d), -2, 2))
        f = QuadraticFunction(half + half.T, draw(grid_arrays(d, -2, 2)))
    else:
        hidden = draw(st.integers(1, 3))
        f = TanhNetwork(draw(grid_arrays((hidden, d), -2, 2)), draw(grid_arrays(hidden, -1, 1)),
                        draw(grid_arrays(hidden, -2, 2)))
    return {"f": f, "x": draw(grid_arrays(d, -2, 2)), "baseline": draw(grid_arrays(d, -2, 2)),
            "steps": draw(st.integers(1, 16))}


IG_SHAPES = "returns one attribution per input coordinate, a (d,) float64 array"
IG_LINEAR = ("exact for a linear f: attributions = w * (x - baseline), the gradient w times how far each coordinate "
             "moved from the baseline")
IG_COMPLETE = ("complete on a quadratic f: the attributions sum to f(x) - f(baseline) (the gradient is linear along "
               "the path, and the midpoint rule integrates a linear function exactly)")
IG_MIDPOINT = "matches the midpoint rule on a tanh network: alpha_k = (k + 1/2) / steps"


def _complete_on_a_quadratic(learner, drawn: dict) -> None:
    attributions = call_learner(learner, drawn, IG_COMPLETE)
    expect_close(IG_COMPLETE, drawn, integrated_gradients(**drawn), attributions, None, None)
    f = drawn["f"]
    gap = float(f(drawn["x"]) - f(drawn["baseline"]))
    total = float(np.sum(attributions))
    if not abs(total - gap) <= 1e-9 * (1 + abs(gap)):
        raise PropertyFailed(IG_COMPLETE, drawn, {"sum of attributions = f(x) - f(baseline)": gap},
                             {"sum of attributions": total, "attributions": attributions},
                             "integrated gradients add up the gradient along the WHOLE straight path from the baseline "
                             "to x (the fundamental theorem of calculus makes them sum to the change in f). The "
                             "gradient at x alone is a first-order guess; nodes at k / steps or (k + 1) / steps "
                             "(left or right Riemann sums) miss by O(1 / steps) even here")


# ---- shapley_three_players -------------------------------------------------------------------------------


def shapley_three_players(value: dict) -> np.ndarray:
    """Exact Shapley values of players 0, 1, 2 for the value function `value`.

    value maps every coalition, a sorted tuple of players ((), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2),
    (0, 1, 2)), to a float: what that group achieves together. Returns phi (3,) float64: each player's marginal
    contribution value[S + i] - value[S] averaged over the 6 orders in which the three players can arrive.
    """
    orders = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    phi = np.zeros(3)
    for order in orders:
        arrived = ()
        for player in order:
            joined = tuple(sorted(arrived + (player,)))
            phi[player] += value[joined] - value[arrived]
            arrived = joined
    return phi / len(orders)


COALITIONS = ((), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2))


@st.composite
def value_functions(draw, structure: str = "any") -> dict:
    """{"value": a dict coalition -> multiple of 0.5 in +-4}. With structure "dummy", player `dummy` never changes
    the value; with "symmetric", players 0 and 1 can be swapped without changing it."""
    if structure == "dummy":
        dummy = draw(st.integers(0, 2))
        others = {S: draw(grid_numbers(-4, 4, 0.5)) for S in COALITIONS if dummy not in S}
        value = {S: others[tuple(p for p in S if p != dummy)] for S in COALITIONS}
    elif structure == "symmetric":
        by_count = {(count, has_2): draw(grid_numbers(-4, 4, 0.5)) for count in range(3) for has_2 in (False, True)}
        value = {S: by_count[(len(set(S) & {0, 1}), 2 in S)] for S in COALITIONS}
    else:
        value = {S: draw(grid_numbers(-4, 4, 0.5)) for S in COALITIONS}
    return {"value": value}


SHAPLEY_SHAPES = "returns the three values phi, a (3,) float64 array"
SHAPLEY_DUMMY = "dummy: a player who never changes the value gets 0"
SHAPLEY_SYMMETRY = "symmetry: players 0 and 1, interchangeable in value, get the same phi"
SHAPLEY_EFFICIENCY = "efficiency: phi_0 + phi_1 + phi_2 = value[(0, 1, 2)] - value[()]"
SHAPLEY_MATCHES = "matches the average of the marginal contributions over the 6 arrival orders"


def _dummy_gets_nothing(learner, drawn: dict) -> None:
    phi = call_learner(learner, drawn, SHAPLEY_DUMMY)
    expect_close(SHAPLEY_DUMMY, drawn, shapley_three_players(**drawn), phi, None, None)
    value = drawn["value"]
    dummies = [p for p in range(3) if all(value[tuple(sorted(S + (p,)))] == value[S] for S in COALITIONS
                                          if p not in S)]
    if not np.all(np.abs(phi[dummies]) <= 1e-12):
        raise PropertyFailed(SHAPLEY_DUMMY, drawn, {f"phi[{p}]": 0.0 for p in dummies}, {"phi": phi},
                             f"player(s) {dummies} add nothing to any coalition, so every marginal contribution they "
                             "make is 0 and so is any average of them")


def _symmetric_players_share_alike(learner, drawn: dict) -> None:
    phi = call_learner(learner, drawn, SHAPLEY_SYMMETRY)
    expect_close(SHAPLEY_SYMMETRY, drawn, shapley_three_players(**drawn), phi, None, None)
    if not abs(phi[0] - phi[1]) <= 1e-12:
        raise PropertyFailed(SHAPLEY_SYMMETRY, drawn, "phi[0] == phi[1]", {"phi": phi},
                             "swapping players 0 and 1 leaves every coalition's value unchanged, so nothing can "
                             "tell them apart: treat every player by the same rule")


def _efficient(learner, drawn: dict) -> None:
    phi = call_learner(learner, drawn, SHAPLEY_EFFICIENCY)
    expect_close(SHAPLEY_EFFICIENCY, drawn, shapley_three_players(**drawn), phi, None, None)
    total = drawn["value"][(0, 1, 2)] - drawn["value"][()]
    if not abs(float(np.sum(phi)) - total) <= 1e-9:
        raise PropertyFailed(SHAPLEY_EFFICIENCY, drawn, {"sum of phi": total}, {"sum of phi": float(np.sum(phi)),
                                                                                "phi": phi},
                             "along any one arrival order the marginal contributions telescope to value[(0, 1, 2)] - "
                             "value[()], so their average over orders does too. Leave-one-out (value[all] - "
                             "value[all but i]) counts shared credit twice or not at all; a plain average over the 4 "
                             "coalitions without i weights them 1/4 each instead of 1/3, 1/6, 1/6, 1/3 (the share of "
                             "orders in which exactly that coalition came first)")


# ---- logit_lens_readout ----------------------------------------------------------------------------------


def logit_lens_readout(residual: np.ndarray, norm_weight: np.ndarray, norm_bias: np.ndarray,
                       unembedding: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Read a layer's residual stream as if it were the last: final LayerNorm, then the unembedding, then softmax.

    residual (T, d) float64: the stream at T positions after some block; norm_weight, norm_bias (d,): the final
    LayerNorm's scale and shift, and eps its epsilon; unembedding (V, d): the LM head's weight (logits = h W^T, no
    bias). Returns (probabilities (T, V) float64, top_tokens (T,) int): each position's next-token distribution
    and its most probable token.
    """
    centred = residual - residual.mean(axis=-1, keepdims=True)
    normed = centred / np.sqrt((centred**2).mean(axis=-1, keepdims=True) + eps) * norm_weight + norm_bias
    logits = normed @ unembedding.T
    exps = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities = exps / exps.sum(axis=-1, keepdims=True)
    return probabilities, probabilities.argmax(axis=-1)


@st.composite
def lens_inputs(draw, shift: bool = False) -> dict:
    """1 to 3 positions, d = 2 or 3, V = 2 to 4, entries on a grid of 0.5, eps from 1e-5 to 1. With `shift`, also
    a constant per position (multiples of 0.5 in +-4) for the shift-invariance check."""
    positions, d, vocabulary = draw(st.integers(1, 3)), draw(st.integers(2, 3)), draw(st.integers(2, 4))
    drawn = {"residual": draw(grid_arrays((positions, d), -3, 3)), "norm_weight": draw(grid_arrays(d, -2, 2)),
             "norm_bias": draw(grid_arrays(d, -2, 2)), "unembedding": draw(grid_arrays((vocabulary, d), -2, 2)),
             "eps": draw(st.sampled_from([1e-5, 0.01, 1.0]))}
    if shift:
        drawn["shift"] = draw(grid_arrays((positions, 1), -4, 4))
    return drawn


LENS_FIELDS = ("probabilities", "top_tokens")
LENS_SHAPES = "returns (probabilities (T, V) float64, top_tokens (T,) int)"
LENS_NORM_FIRST = ("the final LayerNorm comes first: adding a constant to every coordinate of a position's residual "
                   "changes nothing (the norm subtracts the mean)")
LENS_MATCHES = "matches softmax(LayerNorm(residual) @ unembedding^T), with the norm's weight, bias and eps"
LENS_TOP = "top_tokens[t] is a most probable token at position t"


def _norm_comes_first(learner, drawn: dict) -> None:
    arguments = {key: value for key, value in drawn.items() if key != "shift"}
    shifted = {**arguments, "residual": drawn["residual"] + drawn["shift"]}
    before, after = (call_learner(learner, inputs, LENS_NORM_FIRST) for inputs in (arguments, shifted))
    for output in (before, after):
        expect_close(LENS_NORM_FIRST, drawn, logit_lens_readout(**arguments), output, None, None, LENS_FIELDS)
    if not np.allclose(after[0], before[0], rtol=1e-9, atol=1e-12):
        raise PropertyFailed(LENS_NORM_FIRST, drawn, {"probabilities after the shift": before[0]},
                             {"probabilities after the shift": after[0]},
                             "the unembedding must read the NORMALISED stream: LayerNorm removes each position's mean "
                             "(and scale), which the raw stream carries and which grows from layer to layer. Without "
                             "the final norm an earlier layer is read in units the head was never trained on")


def _matches_the_readout(learner, drawn: dict) -> None:
    probabilities, _ = call_learner(learner, drawn, LENS_MATCHES)
    expect_close(LENS_MATCHES, drawn, logit_lens_readout(**drawn)[0], probabilities, 1e-9, 1e-12)


def _top_token_is_most_probable(learner, drawn: dict) -> None:
    _, top_tokens = call_learner(learner, drawn, LENS_TOP)
    probabilities, expected_tokens = logit_lens_readout(**drawn)
    tokens = np.asarray(top_tokens)
    in_vocabulary = tokens.dtype.kind in "iu" and np.all((tokens >= 0) & (tokens < probabilities.shape[-1]))
    if not (in_vocabulary and np.all(probabilities[np.arange(len(tokens)), tokens if in_vocabulary else 0]
                                     >= probabilities.max(axis=-1) * (1 - 1e-12))):
        raise PropertyFailed(LENS_TOP, drawn, {"top_tokens": expected_tokens}, {"top_tokens": top_tokens},
                             "the top token is an index into the vocabulary: the argmax over the LAST axis (V) of "
                             "each position's probabilities")


# ---- the exercises ---------------------------------------------------------------------------------------

INTEGRATED_GRADIENTS = Exercise(
    name="integrated_gradients",
    title="Integrated gradients: add up the gradient along the path from a baseline (Q32)",
    statement=(
        "Gradient x input explains f(x) with the gradient at x alone, which is nearly 0 wherever a model has\n"
        "saturated, however much each input mattered. Integrated gradients walk the straight line from a baseline\n"
        "x' (an input meaning 'nothing there') to x and average the gradient along it:\n"
        "  a_j = (x_j - x'_j) * integral_0^1 df/dx_j (x' + alpha (x - x')) d alpha\n"
        "so that, by the fundamental theorem of calculus, sum_j a_j = f(x) - f(x') (completeness). Approximate the\n"
        "integral by the midpoint rule with `steps` nodes alpha_k = (k + 1/2) / steps. f.gradient(points) gives\n"
        "df/dx at a (d,) point or at each row of a (k, d) batch. Return the (d,) attributions. Tolerance: 1e-9."
    ),
    reference=integrated_gradients,
    hints=(
        "Build all the points of the path at once: a (steps, d) array whose row k is baseline + alpha_k (x - "
        "baseline), and ask f.gradient for all of them in one call.",
        "The average of the gradients over the rows approximates the integral; it still has to be multiplied by "
        "(x - baseline), coordinate by coordinate. Check completeness yourself: the sum should be f(x) - f(baseline).",
        "Use the midpoints alpha_k = (k + 1/2) / steps for k = 0..steps-1. The path rows are baseline plus alpha_k "
        "times (x - baseline). Average f's gradient over those rows (axis 0) and multiply by (x - baseline).",
    ),
    checks=(
        has_reference_shapes(integrated_gradients, ig_inputs(), IG_SHAPES),
        matches_reference(integrated_gradients, ig_inputs("linear"), rtol=1e-9, atol=1e-9, name=IG_LINEAR),
        Check(IG_COMPLETE, ig_inputs("quadratic"), _complete_on_a_quadratic),
        matches_reference(integrated_gradients, ig_inputs(), rtol=1e-9, atol=1e-9, name=IG_MIDPOINT),
    ),
)

SHAPLEY_THREE_PLAYERS = Exercise(
    name="shapley_three_players",
    title="Exact Shapley values for three players: average over every arrival order (Q32)",
    statement=(
        "Shapley values share out what a group achieves, value[(0, 1, 2)] - value[()], among its players (words of\n"
        "a sentence, features of an input). Let the players arrive one at a time; each is credited with what its\n"
        "arrival added, value[S + i] - value[S] for the set S already there. Player i's Shapley value is that\n"
        "marginal contribution averaged over all 3! = 6 orders. It is the only rule that is efficient (the\n"
        "values add up to the whole), symmetric, gives 0 to a dummy, and is linear in the value function.\n"
        "`value` is a dict from every sorted tuple of players, () to (0, 1, 2), to a float. Return phi (3,)."
    ),
    reference=shapley_three_players,
    hints=(
        "Write out the 6 orders, walk each one, and keep the coalition that has arrived so far as a sorted tuple "
        "so that it is a key of `value`.",
        "Equivalently, player i gets sum over S not containing i of |S|! (2 - |S|)! / 3! * (value[S + i] - "
        "value[S]): weights 1/3 for S = (), 1/6 for each of the two singletons, 1/3 for the pair. Leave-one-out is "
        "not this, nor is a plain average over the 4 coalitions.",
        "For each of the 6 orders, start with nobody; add the players one at a time, keep the coalition as a sorted "
        "tuple, and credit each player with value[with them] minus value[without them]. Average those credits over "
        "the 6 orders.",
    ),
    checks=(
        has_reference_shapes(shapley_three_players, value_functions(), SHAPLEY_SHAPES),
        Check(SHAPLEY_DUMMY, value_functions("dummy"), _dummy_gets_nothing),
        Check(SHAPLEY_SYMMETRY, value_functions("symmetric"), _symmetric_players_share_alike),
        Check(SHAPLEY_EFFICIENCY, value_functions(), _efficient),
        matches_reference(shapley_three_players, value_functions(), rtol=1e-9, atol=1e-12, name=SHAPLEY_MATCHES),
    ),
)

LOGIT_LENS_READOUT = Exercise(
    name="logit_lens_readout",
    title="The logit lens: a middle layer's residual stream through the final norm and the unembedding (Q32)",
    statement=(
        "A pre-LN GPT keeps one running vector per position, the residual stream, and turns only the last one into\n"
        "logits: final LayerNorm, then the LM head (the unembedding). The logit lens applies those same two layers\n"
        "to the stream after an earlier block, to see what the model would predict if it stopped there. Given the\n"
        "stream residual (T, d), the final norm's weight and bias (d,) and eps (LayerNorm: subtract each row's mean,\n"
        "divide by sqrt(its variance + eps), then * weight + bias) and the unembedding (V, d) (logits = h W^T),\n"
        "return (probabilities (T, V), top_tokens (T,)): the softmax of each position's logits and its argmax."
    ),
    reference=logit_lens_readout,
    hints=(
        "Three steps per position: LayerNorm over the d coordinates (axis -1), a matrix product with the "
        "unembedding's transpose, a softmax over the V tokens.",
        "Do not skip the norm: the head was trained on normalised vectors, and the raw stream's size and mean grow "
        "from layer to layer. The variance is the mean of squared deviations (np.var, not the n - 1 version); eps "
        "goes inside the square root.",
        "LayerNorm each position: subtract the mean over the last axis, divide by the square root of (mean of squares "
        "+ eps), then times norm_weight plus norm_bias. Multiply by the unembedding's transpose to get logits; "
        "return their stable softmax and its argmax.",
    ),
    checks=(
        has_reference_shapes(logit_lens_readout, lens_inputs(), LENS_SHAPES, names=LENS_FIELDS),
        Check(LENS_NORM_FIRST, lens_inputs(shift=True), _norm_comes_first),
        Check(LENS_MATCHES, lens_inputs(), _matches_the_readout),
        Check(LENS_TOP, lens_inputs(), _top_token_is_most_probable),
    ),
)

EXERCISES = (INTEGRATED_GRADIENTS, SHAPLEY_THREE_PLAYERS, LOGIT_LENS_READOUT)
