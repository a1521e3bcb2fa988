"""The 2-D classification generators (XOR, two moons, spirals) and the decision-boundary grid.

Properties: the same seed gives the same data, a different seed different data; X is float32 (n, 2),
y int64 (n,); classes are 0..k-1 and balanced to within one point; labels mean what the docstrings say.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygrad_llm.data import synthetic

pytestmark = pytest.mark.mlp

GENERATORS = {
    "xor": (synthetic.make_xor, {"noise": 0.1}, 2),
    "moons": (synthetic.make_moons, {"noise": 0.1}, 2),
    "spirals2": (synthetic.make_spirals, {"num_classes": 2}, 2),
    "spirals3": (synthetic.make_spirals, {"num_classes": 3}, 3),
    "spirals5": (synthetic.make_spirals, {"num_classes": 5, "turns": 1.5}, 5),
}

names = st.sampled_from(sorted(GENERATORS))
sizes = st.integers(5, 400)
seeds = st.integers(0, 2**32 - 1)


@given(name=names, n=sizes, seed=seeds)
def test_shapes_dtypes_and_class_range(name, n, seed):
    make, kwargs, num_classes = GENERATORS[name]
    X, y = make(n, rng=seed, **kwargs)
    assert X.shape == (n, 2) and X.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    assert np.isfinite(X).all()
    assert y.min() >= 0 and y.max() < num_classes


@given(name=names, n=sizes, seed=seeds)
def test_classes_are_balanced(name, n, seed):
    make, kwargs, num_classes = GENERATORS[name]
    _, y = make(n, rng=seed, **kwargs)
    counts = np.bincount(y, minlength=num_classes)
    assert counts.max() - counts.min() <= 1, f"class counts {counts} for n={n}"
    assert counts.sum() == n


@given(name=names, n=sizes, seed=seeds)
def test_deterministic_per_seed(name, n, seed):
    make, kwargs, _ = GENERATORS[name]
    X1, y1 = make(n, rng=seed, **kwargs)
    X2, y2 = make(n, rng=np.random.default_rng(seed), **kwargs)  # an int seed and a Generator agree
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    X3, _ = make(n, rng=seed + 1, **kwargs)
    assert not np.array_equal(X1, X3), "a different seed must give different data"


@given(n=sizes, seed=seeds)
def test_noise_free_xor_labels_are_the_sign_of_the_product(n, seed):
    X, y = synthetic.make_xor(n, noise=0.0, rng=seed)
    np.testing.assert_array_equal(y, (X[:, 0] * X[:, 1] > 0).astype(np.int64))
    assert (np.abs(X) >= 0.05 - 1e-6).all() and (np.abs(X) <= 1 + 1e-6).all()


@given(n=sizes, seed=seeds)
def test_noise_free_moons_lie_on_their_arcs(n, seed):
    X, y = synthetic.make_moons(n, noise=0.0, rng=seed)
    upper, lower = X[y == 0].astype(np.float64), X[y == 1].astype(np.float64)
    np.testing.assert_allclose(np.hypot(upper[:, 0], upper[:, 1]), 1, atol=1e-5)
    np.testing.assert_allclose(np.hypot(lower[:, 0] - 1, lower[:, 1] - 0.5), 1, atol=1e-5)
    assert (upper[:, 1] >= -1e-6).all() and (lower[:, 1] <= 0.5 + 1e-6).all()


@given(n=st.integers(6, 400), seed=seeds, k=st.integers(2, 6))
def test_spiral_points_lie_in_the_unit_disc(n, seed, k):
    X, y = synthetic.make_spirals(n, num_classes=k, noise=0.3, rng=seed)
    assert (np.hypot(X[:, 0], X[:, 1]) <= 1 + 1e-6).all()
    assert set(np.unique(y)) <= set(range(k))


def test_noise_free_spiral_arms_do_not_cross():
    """Each point's angle, unwound by its radius, identifies its arm exactly."""
    k, turns = 4, 1.5
    X, y = synthetic.make_spirals(2000, num_classes=k, noise=0.0, turns=turns, rng=0)
    r = np.hypot(X[:, 0], X[:, 1]).astype(np.float64)
    keep = r > 1e-3  # at the centre the angle is numerically meaningless
    phase = (np.arctan2(X[keep, 1], X[keep, 0]) / (2 * np.pi) - turns * r[keep]) % 1.0
    arm = np.round(phase * k).astype(np.int64) % k
    np.testing.assert_array_equal(arm, y[keep])


def test_named_datasets_and_bad_arguments():
    X, y = synthetic.make_dataset("spirals", 30, rng=3, num_classes=3)
    X2, y2 = synthetic.make_spirals(30, num_classes=3, rng=3)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    with pytest.raises(ValueError, match="unknown dataset"):
        synthetic.make_dataset("circles", 10)
    with pytest.raises(ValueError, match="at least one point per class"):
        synthetic.make_spirals(2, num_classes=3)
    with pytest.raises(ValueError, match="at least 2"):
        synthetic.make_spirals(10, num_classes=1)


@given(n=st.integers(4, 200), seed=seeds, fraction=st.floats(0.1, 0.9))
def test_train_test_split_is_a_partition(n, seed, fraction):
    X, y = synthetic.make_moons(n, rng=seed)
    X_train, y_train, X_test, y_test = synthetic.train_test_split(X, y, fraction, rng=seed)
    assert len(y_train) + len(y_test) == n and len(y_test) == int(round(n * fraction))
    together = np.concatenate([X_train, X_test])
    assert sorted(map(tuple, together.tolist())) == sorted(map(tuple, X.tolist()))


@given(seed=seeds, resolution=st.integers(2, 50))
def test_decision_grid_covers_the_data(seed, resolution):
    X, _ = synthetic.make_spirals(50, rng=seed)
    xx, yy, points = synthetic.decision_grid(X, resolution=resolution, padding=0.1)
    assert xx.shape == yy.shape == (resolution, resolution)
    assert points.shape == (resolution**2, 2) and points.dtype == np.float32
    assert (points.min(axis=0) <= X.min(axis=0) - 0.1 + 1e-5).all()
    assert (points.max(axis=0) >= X.max(axis=0) + 0.1 - 1e-5).all()
    np.testing.assert_array_equal(points[:, 0].reshape(xx.shape), xx.astype(np.float32))
    np.testing.assert_array_equal(points[:, 1].reshape(yy.shape), yy.astype(np.float32))
