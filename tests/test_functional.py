"""Learning checks for tinygrad_llm.nn.functional: the functions a classifier and a language model are made of.

Each check is a property that the classic wrong version breaks: softmax over the whole array (M07),
no max-subtraction (NaN at logits of 1e4), random reals accepted as labels (M08), Huber constant outside
delta (M56), dropout without the 1/(1-p) rescaling, LayerNorm with the unbiased variance, an embedding
gradient written with `grad[ids] += g` instead of a scatter-add.

Reference values are computed independently in NumPy; PyTorch, where installed, is a second oracle.
"""
import re
import zlib

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_llm as tgl
from tinygrad_llm.nn import functional as F
from tinygrad_llm.testing import gradcheck

# ---------------------------------------------------------------------------- strategies and helpers
SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)
MATRIX_SHAPES = hnp.array_shapes(min_dims=2, max_dims=2, min_side=2, max_side=5)


def floats64(low=-10.0, high=10.0):
    return st.floats(low, high, allow_nan=False, allow_infinity=False, width=64)


def arrays64(shape, low=-10.0, high=10.0):
    return hnp.arrays(np.float64, shape, elements=floats64(low, high))


def huge_arrays(dtype, shape):
    """Logits of magnitude up to 1e4, with the extremes +-1e4 themselves drawn often."""
    width = np.dtype(dtype).itemsize * 8
    elements = st.one_of(
        st.sampled_from([-1e4, 1e4]), st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=width)
    )
    return hnp.arrays(dtype, shape, elements=elements)


@st.composite
def array_and_axis(draw, shapes=SHAPES, low=-10.0, high=10.0):
    x = draw(arrays64(draw(shapes), low, high))
    axis = draw(st.integers(-x.ndim, x.ndim - 1))
    return x, axis


@st.composite
def logits_and_targets(draw, min_classes=2, leading_dims=(1, 2)):
    """(logits of shape (*lead, C), integer targets of shape lead, C)."""
    ndim = draw(st.sampled_from(leading_dims))
    lead = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    classes = draw(st.integers(min_classes, 6))
    logits = draw(arrays64(lead + (classes,)))
    targets = draw(hnp.arrays(np.int64, lead, elements=st.integers(0, classes - 1)))
    return logits, targets, classes


def t64(a, requires_grad=True):
    return tgl.tensor(np.array(a, dtype=np.float64), requires_grad=requires_grad)


def np_log_softmax(x, axis=-1):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def np_softmax(x, axis=-1):
    return np.exp(np_log_softmax(x, axis))


def one_hot(targets, classes):
    return np.eye(classes)[targets]


# ============================================================================ softmax and log_softmax
@pytest.mark.mlp
class TestSoftmax:
    @given(array_and_axis())
    def test_rows_are_distributions(self, case):
        x, axis = case
        y = F.softmax(t64(x, False), axis=axis).data
        assert (y >= 0).all()
        np.testing.assert_allclose(y.sum(axis=axis), 1.0, rtol=0, atol=1e-12)

    @given(array_and_axis(), st.data())
    def test_shift_invariant_per_row(self, case, data):
        x, axis = case
        shift_shape = tuple(1 if i == axis % x.ndim else n for i, n in enumerate(x.shape))
        shift = data.draw(arrays64(shift_shape, -100, 100), label="per-row constant")
        y = F.softmax(t64(x, False), axis=axis).data
        y_shifted = F.softmax(t64(x + shift, False), axis=axis).data
        np.testing.assert_allclose(y_shifted, y, rtol=1e-9, atol=1e-12)

    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    @given(data=st.data())
    def test_finite_at_huge_logits(self, dtype, data):
        x = data.draw(huge_arrays(dtype, data.draw(SHAPES)), label="logits")
        y = F.softmax(tgl.tensor(x), axis=-1).data
        log_y = F.log_softmax(tgl.tensor(x), axis=-1).data
        assert y.dtype == dtype and np.isfinite(y).all() and np.isfinite(log_y).all()
        np.testing.assert_allclose(y.sum(axis=-1), 1.0, atol=1e-5 if dtype == np.float32 else 1e-12)
        assert (log_y <= 0).all()

    def test_naive_softmax_is_what_overflows(self):
        # The contrast the stability check is about: exp(1e4) is inf, and inf / inf is NaN.
        x = np.array([[1e4, 0.0, -1e4]])
        with np.errstate(over="ignore", invalid="ignore"):
            naive = np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True)
        assert np.isnan(naive).any()
        np.testing.assert_allclose(F.softmax(t64(x, False)).data, [[1.0, 0.0, 0.0]])

    @given(arrays64(MATRIX_SHAPES))
    def test_along_the_given_axis_only(self, x):
        # Each row is its own distribution: changing row 0 leaves every other row alone (M07: softmax over
        # the whole array couples them).
        y = F.softmax(t64(x, False), axis=-1).data
        x2 = x.copy()
        x2[0] += np.arange(x.shape[1]) + 1.0
        y2 = F.softmax(t64(x2, False), axis=-1).data
        # Not bit-equal: a compiled kernel's vectorised sum may round differently with the array's memory
        # alignment; the bug this guards against changes the other rows by far more than an ulp.
        np.testing.assert_allclose(y2[1:], y[1:], rtol=1e-12, atol=0)
        for i in range(x.shape[0]):
            np.testing.assert_allclose(y[i], np_softmax(x[i]), atol=1e-12)

    def test_other_axis_gives_other_rows(self):
        x = np.random.default_rng(0).standard_normal((3, 4))
        over_rows = F.softmax(t64(x, False), axis=-1).data
        over_columns = F.softmax(t64(x, False), axis=0).data
        whole_array = np.exp(x) / np.exp(x).sum()
        assert not np.allclose(over_rows, over_columns)
        assert not np.allclose(over_rows, whole_array)
        np.testing.assert_allclose(over_columns.sum(axis=0), 1.0)
        assert not np.allclose(over_columns.sum(axis=1), 1.0)

    @given(array_and_axis())
    def test_matches_numpy(self, case):
        x, axis = case
        np.testing.assert_allclose(F.softmax(t64(x, False), axis=axis).data, np_softmax(x, axis), atol=1e-12)
        np.testing.assert_allclose(F.log_softmax(t64(x, False), axis=axis).data, np_log_softmax(x, axis), atol=1e-12)

    @pytest.mark.parametrize("dtype,atol", [(np.float32, 1e-4), (np.float64, 1e-8)])
    @given(data=st.data())
    def test_log_softmax_is_log_of_softmax(self, dtype, atol, data):
        x = data.draw(huge_arrays(dtype, data.draw(SHAPES)), label="logits")
        y = F.softmax(tgl.tensor(x)).data
        log_y = F.log_softmax(tgl.tensor(x)).data
        finite = y > np.finfo(dtype).tiny  # log(softmax) is -inf (or imprecise, in denormals) where softmax underflows
        with np.errstate(divide="ignore"):
            np.testing.assert_allclose(log_y[finite], np.log(y[finite]), rtol=1e-6, atol=atol)

    @given(array_and_axis())
    def test_gradcheck_softmax(self, case):
        x, axis = case
        assert gradcheck(lambda t: F.softmax(t, axis=axis), t64(x))

    @given(array_and_axis())
    def test_gradcheck_log_softmax(self, case):
        x, axis = case
        assert gradcheck(lambda t: F.log_softmax(t, axis=axis), t64(x))


# ============================================================================ cross-entropy
def np_nll(logits, targets):
    """-log p(target) per position, classes on the last axis."""
    log_p = np_log_softmax(logits)
    return -np.take_along_axis(log_p, targets[..., None], axis=-1)[..., 0]


@pytest.mark.mlp
class TestCrossEntropy:
    @given(logits_and_targets())
    def test_is_mean_negative_log_likelihood(self, case):
        logits, targets, _ = case
        loss = F.cross_entropy(t64(logits, False), targets).item()
        np.testing.assert_allclose(loss, np_nll(logits, targets).mean(), rtol=1e-10, atol=1e-12)
        assert loss >= 0

    @given(logits_and_targets(leading_dims=(1,)))
    def test_gradient_is_softmax_minus_one_hot_over_n(self, case):
        logits, targets, classes = case
        z = t64(logits)
        F.cross_entropy(z, targets).backward()
        expected = (np_softmax(logits) - one_hot(targets, classes)) / len(targets)
        np.testing.assert_allclose(z.grad, expected, atol=1e-12)

    @given(logits_and_targets(), st.data())
    def test_ignore_index(self, case, data):
        logits, targets, _ = case
        ignored = data.draw(hnp.arrays(bool, targets.shape), label="ignored positions")
        assume(not ignored.all())
        targets = np.where(ignored, -100, targets)
        z = t64(logits)
        loss = F.cross_entropy(z, targets)
        loss.backward()
        kept = ~ignored
        # The mean divides by the number of kept positions, not by all of them.
        expected = np_nll(logits[kept], targets[kept]).mean()
        np.testing.assert_allclose(loss.item(), expected, rtol=1e-10, atol=1e-12)
        assert (z.grad[ignored] == 0).all()  # exactly zero, not just small
        per_position = F.cross_entropy(t64(logits, False), targets, reduction="none").data
        assert (per_position[ignored] == 0).all()

    def test_every_position_ignored_gives_zero_loss_and_gradient(self):
        z = t64(np.random.default_rng(0).standard_normal((3, 4)))
        loss = F.cross_entropy(z, np.full(3, -100))
        loss.backward()
        assert loss.item() == 0 and np.isfinite(loss.item())
        np.testing.assert_array_equal(z.grad, 0)

    def test_custom_ignore_index(self):
        logits = np.random.default_rng(1).standard_normal((4, 5))
        targets = np.array([1, 0, 3, 0])
        loss = F.cross_entropy(t64(logits, False), targets, ignore_index=0).item()
        np.testing.assert_allclose(loss, np_nll(logits[[0, 2]], targets[[0, 2]]).mean())

    @given(logits_and_targets(), st.data())
    def test_class_weights(self, case, data):
        logits, targets, classes = case
        w = data.draw(arrays64((classes,), 0.1, 5.0), label="class weights")
        loss = F.cross_entropy(t64(logits, False), targets, weight=w).item()
        nll = np_nll(logits, targets)
        np.testing.assert_allclose(loss, (w[targets] * nll).sum() / w[targets].sum(), rtol=1e-10, atol=1e-12)

    @given(logits_and_targets(), floats64(0.0, 1.0))
    def test_label_smoothing(self, case, eps):
        logits, targets, classes = case
        loss = F.cross_entropy(t64(logits, False), targets, label_smoothing=eps).item()
        q = (1 - eps) * one_hot(targets, classes) + eps / classes
        expected = -(q * np_log_softmax(logits)).sum(axis=-1).mean()
        np.testing.assert_allclose(loss, expected, rtol=1e-10, atol=1e-12)

    @given(logits_and_targets(), st.data())
    def test_soft_targets(self, case, data):
        logits, _, _ = case
        raw = data.draw(arrays64(logits.shape, 0.01, 1.0), label="unnormalised target")
        q = raw / raw.sum(axis=-1, keepdims=True)
        z = t64(logits)
        loss = F.cross_entropy(z, q)
        loss.backward()
        n = int(np.prod(logits.shape[:-1]))
        np.testing.assert_allclose(loss.item(), -(q * np_log_softmax(logits)).sum() / n, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(z.grad, (np_softmax(logits) - q) / n, atol=1e-12)

    @given(logits_and_targets(leading_dims=(1,)))
    def test_one_hot_soft_targets_equal_class_ids(self, case):
        logits, targets, classes = case
        a = F.cross_entropy(t64(logits, False), targets).item()
        b = F.cross_entropy(t64(logits, False), one_hot(targets, classes)).item()
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)

    @given(logits_and_targets(leading_dims=(2,)))
    def test_sequence_logits_equal_flattened(self, case):
        logits, targets, classes = case  # (B, T, V) logits, (B, T) targets: classes on the LAST axis
        z3, z2 = t64(logits), t64(logits.reshape(-1, classes))
        loss3 = F.cross_entropy(z3, targets)
        loss2 = F.cross_entropy(z2, targets.reshape(-1))
        loss3.backward()
        loss2.backward()
        np.testing.assert_allclose(loss3.item(), loss2.item(), rtol=1e-12)
        np.testing.assert_allclose(z3.grad.reshape(-1, classes), z2.grad, atol=1e-15)

    @given(logits_and_targets())
    def test_reductions(self, case):
        logits, targets, _ = case
        nll = np_nll(logits, targets)
        none = F.cross_entropy(t64(logits, False), targets, reduction="none")
        assert none.shape == targets.shape
        np.testing.assert_allclose(none.data, nll, atol=1e-12)
        total = F.cross_entropy(t64(logits, False), targets, reduction="sum").item()
        np.testing.assert_allclose(total, nll.sum(), atol=1e-10)

    def test_bad_reduction_raises(self):
        with pytest.raises(ValueError, match="reduction"):
            F.cross_entropy(t64(np.zeros((2, 3)), False), np.array([0, 1]), reduction="avg")

    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    @pytest.mark.parametrize("variant", ["plain", "weights", "ignore", "smoothing", "soft", "sequence"])
    def test_gradcheck_variants(self, variant, reduction):
        rng = np.random.default_rng(zlib.crc32(f"{variant}/{reduction}".encode()))
        shape = (2, 3, 5) if variant == "sequence" else (4, 5)
        logits = t64(rng.standard_normal(shape) * 3)
        targets = rng.integers(0, 5, shape[:-1])
        options = {"reduction": reduction}
        if variant == "weights":
            options["weight"] = rng.uniform(0.2, 3.0, 5)
        if variant == "ignore":
            targets[..., 1] = -100
        if variant == "smoothing":
            options["label_smoothing"] = 0.2
        if variant == "soft":
            targets = np_softmax(rng.standard_normal(shape))
        assert gradcheck(lambda z: F.cross_entropy(z, targets, **options), logits)

    @given(logits_and_targets(leading_dims=(2,)), st.data())
    def test_out_of_range_target_names_position_and_value(self, case, data):
        logits, targets, classes = case
        position = tuple(data.draw(st.integers(0, n - 1)) for n in targets.shape)
        value = data.draw(st.one_of(st.integers(classes, classes + 50), st.integers(-50, -1)), label="bad id")
        targets = targets.copy()
        targets[position] = value
        with pytest.raises(IndexError, match=re.escape(f"target[{position[0]}, {position[1]}] = {value}")):
            F.cross_entropy(t64(logits, False), targets)

    @given(logits_and_targets(leading_dims=(1,)), st.data())
    def test_random_real_arrays_are_not_labels(self, case, data):
        # M08: neither real numbers the shape of the ids, nor real arrays that are not distributions.
        logits, targets, _ = case
        reals = data.draw(arrays64(targets.shape), label="real labels")
        with pytest.raises(TypeError, match="integer class ids.*Random real numbers are not labels"):
            F.cross_entropy(t64(logits, False), reals)
        real_matrix = data.draw(arrays64(logits.shape), label="real matrix")
        is_distribution = (real_matrix >= 0).all() and np.allclose(real_matrix.sum(axis=-1), 1, atol=1e-3)
        assume(not is_distribution)
        with pytest.raises(ValueError, match="probability distributions"):
            F.cross_entropy(t64(logits, False), real_matrix)

    @pytest.mark.parametrize(
        "bad_target",
        [
            np.array([0.0, 1.0, 2.0]),  # float class ids: ambiguous, rejected
            np.array([[0.5, 0.5, 0.5], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),  # a row sums to 1.5
            np.array([[1.5, -0.5, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),  # sums to 1 but has a negative
            np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]),  # distributions over the wrong number of classes
            np.array([True, False, True]),
        ],
    )
    def test_non_label_targets_raise(self, bad_target):
        with pytest.raises((TypeError, ValueError), match="cross_entropy"):
            F.cross_entropy(t64(np.zeros((3, 3)), False), bad_target)

    def test_wrong_target_shape_raises(self):
        with pytest.raises(ValueError, match=re.escape("(2, 3)")):
            F.cross_entropy(t64(np.zeros((2, 3, 5)), False), np.zeros((3, 2), dtype=np.int64))


@pytest.mark.mlp
class TestBinaryCrossEntropy:
    @given(arrays64(st.integers(1, 8).map(lambda n: (n,)), -20, 20), st.data())
    def test_equals_softmax_cross_entropy_on_zero_and_z(self, z, data):
        # Q01: sigmoid(z) = softmax([0, z])[1], so BCE(sigmoid(z), y) = CE([0, z], y).
        y = data.draw(hnp.arrays(np.int64, z.shape, elements=st.integers(0, 1)), label="labels")
        z_bce, z_ce = t64(z), t64(z)
        bce = F.binary_cross_entropy_with_logits(z_bce, y.astype(np.float64))
        two_class = tgl.stack([tgl.zeros_like(z_ce), z_ce], axis=-1)
        ce = F.cross_entropy(two_class, y)
        bce.backward()
        ce.backward()
        np.testing.assert_allclose(bce.item(), ce.item(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(z_bce.grad, z_ce.grad, atol=1e-12)

    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    def test_finite_at_huge_logits(self, dtype):
        z = tgl.tensor(np.array([1e4, -1e4, 1e4, -1e4], dtype=dtype), requires_grad=True)
        y = np.array([0.0, 1.0, 1.0, 0.0])
        loss = F.binary_cross_entropy_with_logits(z, y, reduction="none")
        np.testing.assert_allclose(loss.data, [1e4, 1e4, 0.0, 0.0])
        F.binary_cross_entropy_with_logits(z, y).backward()
        np.testing.assert_allclose(z.grad, np.array([1.0, -1.0, 0.0, 0.0]) / 4)

    @given(arrays64(SHAPES, -5, 5), st.data())
    def test_matches_numpy_and_gradcheck(self, z, data):
        y = data.draw(arrays64(z.shape, 0.0, 1.0), label="targets")
        p = 1 / (1 + np.exp(-z))
        expected = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()
        np.testing.assert_allclose(F.binary_cross_entropy_with_logits(t64(z, False), y).item(), expected, rtol=1e-9)
        assert gradcheck(lambda t: F.binary_cross_entropy_with_logits(t, y), t64(z))


# ============================================================================ regression losses
@pytest.mark.training
class TestRegressionLosses:
    @given(arrays64(SHAPES), st.data())
    def test_mse_matches_numpy(self, prediction, data):
        target = data.draw(arrays64(prediction.shape), label="target")
        e = prediction - target
        np.testing.assert_allclose(F.mse_loss(t64(prediction, False), target).item(), (e**2).mean(), rtol=1e-12)
        total = F.mse_loss(t64(prediction, False), target, reduction="sum").item()
        np.testing.assert_allclose(total, (e**2).sum(), rtol=1e-12)
        np.testing.assert_allclose(F.mse_loss(t64(prediction, False), target, reduction="none").data, e**2)
        assert gradcheck(lambda p: F.mse_loss(p, target), t64(prediction))

    @given(arrays64(SHAPES), st.data(), floats64(0.1, 3.0))
    def test_huber_matches_numpy(self, prediction, data, delta):
        target = data.draw(arrays64(prediction.shape), label="target")
        a = np.abs(prediction - target)
        expected = np.where(a <= delta, 0.5 * a**2, delta * (a - delta / 2))
        out = F.huber_loss(t64(prediction, False), target, delta=delta, reduction="none").data
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
        mean = F.huber_loss(t64(prediction, False), target, delta=delta).item()
        np.testing.assert_allclose(mean, expected.mean(), rtol=1e-12)

    @given(arrays64(SHAPES), st.data(), floats64(0.1, 3.0))
    def test_huber_gradient_is_error_inside_and_delta_sign_outside(self, prediction, data, delta):
        # M56: outside delta the loss is linear, not constant, so outliers still get a gradient delta*sign(e).
        target = data.draw(arrays64(prediction.shape), label="target")
        e = prediction - target
        p = t64(prediction)
        F.huber_loss(p, target, delta=delta, reduction="sum").backward()
        outside = np.abs(e) > delta
        np.testing.assert_allclose(p.grad[outside], delta * np.sign(e[outside]), rtol=1e-12)
        assert (p.grad[outside] != 0).all()
        np.testing.assert_allclose(p.grad[~outside], e[~outside], rtol=1e-12, atol=1e-15)

    @given(arrays64(SHAPES), st.data(), floats64(0.1, 3.0))
    def test_huber_gradcheck_away_from_the_kink(self, prediction, data, delta):
        target = data.draw(arrays64(prediction.shape), label="target")
        assume(np.abs(np.abs(prediction - target) - delta).min() > 1e-3)
        assert gradcheck(lambda p: F.huber_loss(p, target, delta=delta), t64(prediction))

    def test_huber_is_continuous_at_delta(self):
        delta = 1.5
        e = np.array([delta - 1e-9, delta + 1e-9])
        out = F.huber_loss(t64(e, False), np.zeros(2), delta=delta, reduction="none").data
        np.testing.assert_allclose(out[0], out[1], atol=1e-8)

    def test_shape_mismatch_raises(self):
        with pytest.raises(ValueError, match=re.escape("(3,)")):
            F.mse_loss(t64(np.zeros(3), False), np.zeros((3, 1)))
        with pytest.raises(ValueError, match="same shape"):
            F.huber_loss(t64(np.zeros(3), False), np.zeros((3, 1)))


# ============================================================================ dropout
@pytest.mark.training
class TestDropout:
    @given(arrays64(SHAPES), floats64(0.0, 0.99))
    def test_eval_is_identity(self, x, p):
        t = t64(x)
        out = F.dropout(t, p, training=False)
        assert out is t or np.array_equal(out.data, x)

    @given(st.floats(0.05, 0.9), st.integers(0, 2**16))
    def test_zeroes_about_p_and_keeps_the_expectation(self, p, seed):
        # 100,000 independent elements. Fraction zeroed ~ Binomial: std sqrt(p(1-p)/n). Each output of
        # dropout(ones) is 0 or 1/(1-p), with mean 1 and variance p/(1-p), so the sample mean has std
        # sqrt(p/((1-p) n)). Tolerance: 5 standard deviations (a false alarm about once in 1.7 million).
        n = 100_000
        tgl.manual_seed(seed)
        out = F.dropout(tgl.ones(n, dtype=np.float64), p, training=True).data
        zero_fraction = (out == 0).mean()
        assert abs(zero_fraction - p) < 5 * np.sqrt(p * (1 - p) / n)
        assert abs(out.mean() - 1.0) < 5 * np.sqrt(p / ((1 - p) * n))

    @given(arrays64(SHAPES, 0.5, 10.0), st.floats(0.05, 0.9))
    def test_survivors_are_scaled_by_one_over_keep_probability(self, x, p):
        t = t64(x)
        out = F.dropout(t, p, training=True)
        kept = out.data != 0
        np.testing.assert_allclose(out.data[kept], x[kept] / (1 - p), rtol=1e-12)
        out.sum().backward()  # the same mask routes the gradient
        np.testing.assert_allclose(t.grad, kept / (1 - p), rtol=1e-12)

    @pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
    def test_p_outside_unit_interval_raises(self, p):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            F.dropout(tgl.ones(3), p)
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            tgl.nn.Dropout(p)

    def test_manual_seed_makes_masks_reproducible(self):
        x = tgl.ones(1000)
        tgl.manual_seed(123)
        a = F.dropout(x, 0.5).data
        tgl.manual_seed(123)
        b = F.dropout(x, 0.5).data
        c = F.dropout(x, 0.5).data  # the generator moved on: a fresh mask
        tgl.manual_seed(124)
        d = F.dropout(x, 0.5).data
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(b, c) and not np.array_equal(a, d)


# ============================================================================ layer norm
@st.composite
def layer_norm_case(draw):
    num_axes = draw(st.sampled_from([1, 2]))
    shape = draw(hnp.array_shapes(min_dims=num_axes, max_dims=3, min_side=2, max_side=4))
    x = draw(arrays64(shape, -5, 5))
    axes = tuple(range(x.ndim - num_axes, x.ndim))
    assume(x.var(axis=axes).min() > 0.1)  # a constant row has no scale to normalise (and a huge 1/sigma)
    return x, num_axes


def np_layer_norm(x, num_axes, weight=None, bias=None, eps=1e-5):
    axes = tuple(range(x.ndim - num_axes, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)  # ddof=0: the biased variance
    out = (x - mean) / np.sqrt(var + eps)
    return out * (1 if weight is None else weight) + (0 if bias is None else bias)


@pytest.mark.attention
class TestLayerNorm:
    @given(layer_norm_case())
    def test_rows_have_mean_zero_and_biased_variance_one(self, case):
        x, num_axes = case
        axes = tuple(range(x.ndim - num_axes, x.ndim))
        eps = 1e-5
        out = F.layer_norm(t64(x, False), x.shape[x.ndim - num_axes:], eps=eps).data
        np.testing.assert_allclose(out.mean(axis=axes), 0, atol=1e-12)
        v = x.var(axis=axes)
        # var(ddof=0) is exactly v / (v + eps): 1 up to the eps effect. The unbiased (ddof=1) variance would be
        # n/(n-1) times larger, which this tolerance rejects for every n <= 16 used here.
        np.testing.assert_allclose(out.var(axis=axes), v / (v + eps), rtol=1e-10)
        np.testing.assert_allclose(out.var(axis=axes), 1, atol=1e-3)

    @given(layer_norm_case(), st.data())
    def test_matches_numpy(self, case, data):
        x, num_axes = case
        normalized = x.shape[x.ndim - num_axes:]
        w = data.draw(arrays64(normalized, -2, 2), label="weight")
        b = data.draw(arrays64(normalized, -2, 2), label="bias")
        out = F.layer_norm(t64(x, False), normalized, t64(w, False), t64(b, False)).data
        np.testing.assert_allclose(out, np_layer_norm(x, num_axes, w, b), rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize("affine", [False, True])
    @given(case=layer_norm_case(), data=st.data())
    def test_gradcheck(self, affine, case, data):
        x, num_axes = case
        normalized = x.shape[x.ndim - num_axes:]
        if affine:
            w, b = t64(data.draw(arrays64(normalized, -2, 2))), t64(data.draw(arrays64(normalized, -2, 2)))
            assert gradcheck(lambda t, w, b: F.layer_norm(t, normalized, w, b), t64(x), w, b)
        else:
            assert gradcheck(lambda t: F.layer_norm(t, normalized), t64(x))

    def test_module_starts_as_plain_normalisation(self):
        x = np.random.default_rng(0).standard_normal((3, 6))
        layer = tgl.nn.LayerNorm(6)
        np.testing.assert_array_equal(layer.weight.data, 1)
        np.testing.assert_array_equal(layer.bias.data, 0)
        np.testing.assert_allclose(layer(t64(x, False)).data, np_layer_norm(x, 1), rtol=1e-6, atol=1e-6)

    def test_shape_mismatch_raises(self):
        with pytest.raises(ValueError, match=re.escape("(2, 3)")):
            F.layer_norm(t64(np.zeros((2, 3)), False), 4)


# ============================================================================ embedding
@pytest.mark.lm
class TestEmbedding:
    @given(st.integers(1, 6), st.integers(1, 4), st.data())
    def test_picks_rows(self, vocab, dim, data):
        table = data.draw(arrays64((vocab, dim)), label="table")
        ids = data.draw(hnp.arrays(np.int64, data.draw(SHAPES), elements=st.integers(0, vocab - 1)), label="ids")
        out = F.embedding(ids, t64(table, False))
        assert out.shape == ids.shape + (dim,)
        np.testing.assert_array_equal(out.data, table[ids])

    @given(st.integers(1, 4), st.integers(1, 3), st.data())
    def test_repeated_ids_accumulate_gradient(self, vocab, dim, data):
        table = t64(np.zeros((vocab, dim)))
        ids = data.draw(hnp.arrays(np.int64, data.draw(SHAPES), elements=st.integers(0, vocab - 1)), label="ids")
        upstream = data.draw(arrays64(ids.shape + (dim,)), label="upstream gradient")
        F.embedding(ids, table).backward(upstream)
        expected = np.zeros((vocab, dim))
        np.add.at(expected, ids, upstream)  # scatter-add: every occurrence of an id contributes
        np.testing.assert_allclose(table.grad, expected, atol=1e-12)

    def test_repeated_id_gradient_counts_occurrences(self):
        table = t64(np.zeros((3, 2)))
        F.embedding(np.array([1, 1, 1, 2]), table).sum().backward()
        np.testing.assert_array_equal(table.grad, [[0, 0], [3, 3], [1, 1]])

    @pytest.mark.parametrize("bad", [3, 7, -1])
    def test_out_of_range_id_raises(self, bad):
        with pytest.raises(IndexError, match=f"id {bad} is out of range for a table of 3 rows"):
            F.embedding(np.array([0, bad]), t64(np.zeros((3, 2)), False))

    def test_float_ids_raise(self):
        with pytest.raises(TypeError, match="ids must be integers"):
            F.embedding(np.array([0.0, 1.0]), t64(np.zeros((3, 2)), False))

    def test_module(self):
        layer = tgl.nn.Embedding(5, 3)
        ids = np.array([[4, 0], [1, 1]])
        np.testing.assert_array_equal(layer(ids).data, layer.weight.data[ids])
        assert "5, 3" in repr(layer)


# ============================================================================ linear
@st.composite
def linear_case(draw, bias=None):
    lead = draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=3))
    n_in, n_out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    x = draw(arrays64(lead + (n_in,)))
    w = draw(arrays64((n_out, n_in), -2, 2))
    has_bias = draw(st.booleans()) if bias is None else bias
    b = draw(arrays64((n_out,), -2, 2)) if has_bias else None
    return x, w, b


@pytest.mark.mlp
class TestLinear:
    @given(linear_case())
    def test_is_x_times_w_transpose_plus_b(self, case):
        x, w, b = case
        out = F.linear(t64(x, False), t64(w, False), None if b is None else t64(b, False)).data
        np.testing.assert_allclose(out, x @ w.T + (0 if b is None else b), rtol=1e-12, atol=1e-12)

    @given(linear_case(bias=True))
    def test_gradcheck(self, case):
        x, w, b = case
        assert gradcheck(F.linear, t64(x), t64(w), t64(b))

    def test_feature_mismatch_names_both_shapes(self):
        with pytest.raises(ValueError, match=r"\(4, 5\).*\(2, 3\)"):
            F.linear(tgl.randn(4, 5), tgl.randn(2, 3))
        with pytest.raises(ValueError, match=r"\(4, 5\).*\(2, 3\)"):
            tgl.nn.Linear(3, 2)(tgl.randn(4, 5))


# ============================================================================ PyTorch oracle
@pytest.mark.oracle
class TestAgainstTorch:
    @pytest.fixture(autouse=True)
    def _torch(self):
        self.torch = pytest.importorskip("torch")
        self.TF = self.torch.nn.functional

    def _both(self, ours, theirs, *arrays, upstream_seed=0):
        """Values and input gradients of ours(*tensors) and theirs(*torch tensors), for a random upstream."""
        mine = [t64(a) for a in arrays]
        out = ours(*mine)
        upstream = np.random.default_rng(upstream_seed).standard_normal(out.shape)
        out.backward(upstream)
        torch_in = [self.torch.tensor(a, dtype=self.torch.float64, requires_grad=True) for a in arrays]
        ref = theirs(*torch_in)
        ref.backward(self.torch.tensor(upstream))
        np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=1e-9, atol=1e-11)
        for a, b in zip(mine, torch_in):
            np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=1e-8, atol=1e-10)

    @pytest.mark.mlp
    @given(array_and_axis())
    def test_softmax_and_log_softmax(self, case):
        x, axis = case
        self._both(lambda t: F.softmax(t, axis), lambda t: self.TF.softmax(t, dim=axis), x)
        self._both(lambda t: F.log_softmax(t, axis), lambda t: self.TF.log_softmax(t, dim=axis), x)

    @pytest.mark.mlp
    @given(logits_and_targets(), st.data())
    def test_cross_entropy(self, case, data):
        logits, targets, classes = case
        ignored = data.draw(hnp.arrays(bool, targets.shape), label="ignored")
        targets = np.where(ignored, -100, targets)
        weight = data.draw(st.none() | arrays64((classes,), 0.1, 5.0), label="weight")
        smoothing = data.draw(st.sampled_from([0.0, 0.1, 0.5]), label="label_smoothing")
        reduction = data.draw(st.sampled_from(["mean", "sum", "none"]), label="reduction")
        assume(reduction != "mean" or not ignored.all())  # torch gives NaN (0/0) there; we give 0
        torch_weight = None if weight is None else self.torch.tensor(weight)
        flat = targets.reshape(-1)

        def theirs(z):
            out = self.TF.cross_entropy(z.reshape(-1, classes), self.torch.tensor(flat), weight=torch_weight,
                                        label_smoothing=smoothing, reduction=reduction)
            return out.reshape(targets.shape) if reduction == "none" else out

        self._both(
            lambda z: F.cross_entropy(z, targets, weight=weight, label_smoothing=smoothing, reduction=reduction),
            theirs, logits,
        )

    @pytest.mark.mlp
    @given(logits_and_targets(leading_dims=(1,)), st.data())
    def test_cross_entropy_soft_targets(self, case, data):
        logits, _, classes = case
        q = np_softmax(data.draw(arrays64(logits.shape, -3, 3), label="target logits"))
        weight = data.draw(st.none() | arrays64((classes,), 0.1, 5.0), label="weight")
        smoothing = data.draw(st.sampled_from([0.0, 0.3]), label="label_smoothing")
        torch_weight = None if weight is None else self.torch.tensor(weight)
        self._both(
            lambda z: F.cross_entropy(z, q, weight=weight, label_smoothing=smoothing),
            lambda z: self.TF.cross_entropy(z, self.torch.tensor(q), weight=torch_weight, label_smoothing=smoothing),
            logits,
        )

    @pytest.mark.attention
    @given(layer_norm_case(), st.data())
    def test_layer_norm(self, case, data):
        x, num_axes = case
        normalized = x.shape[x.ndim - num_axes:]
        w, b = data.draw(arrays64(normalized, -2, 2)), data.draw(arrays64(normalized, -2, 2))
        self._both(
            lambda t, w, b: F.layer_norm(t, normalized, w, b),
            lambda t, w, b: self.TF.layer_norm(t, normalized, w, b, eps=1e-5),
            x, w, b,
        )

    @pytest.mark.mlp
    @pytest.mark.parametrize("approximate", ["none", "tanh"])
    @given(x=arrays64(SHAPES, -6, 6))
    def test_gelu(self, approximate, x):
        self._both(lambda t: F.gelu(t, approximate), lambda t: self.TF.gelu(t, approximate=approximate), x)

    @pytest.mark.training
    @given(arrays64(SHAPES), st.data(), floats64(0.1, 3.0))
    def test_mse_and_huber(self, prediction, data, delta):
        target = data.draw(arrays64(prediction.shape), label="target")
        assume(np.abs(np.abs(prediction - target) - delta).min() > 1e-6)
        tt = self.torch.tensor(target)
        self._both(lambda p: F.mse_loss(p, target), lambda p: self.TF.mse_loss(p, tt), prediction)
        self._both(lambda p: F.huber_loss(p, target, delta=delta),
                   lambda p: self.TF.huber_loss(p, tt, delta=delta), prediction)

    @pytest.mark.mlp
    @given(arrays64(SHAPES, -30, 30), st.data())
    def test_binary_cross_entropy_with_logits(self, z, data):
        y = data.draw(arrays64(z.shape, 0.0, 1.0), label="targets")
        self._both(lambda t: F.binary_cross_entropy_with_logits(t, y),
                   lambda t: self.TF.binary_cross_entropy_with_logits(t, self.torch.tensor(y)), z)
