"""Learning checks for tinygrad_llm.nn modules: the parameter registry, modes, checkpoints, initialisation,
and the two facts of Q03: a stack of linear layers is one affine map (M06), and an MLP with a
nonlinearity actually trains on a problem a linear model cannot solve (M08: a forward pass proves nothing).
"""
import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_llm as tgl
from tinygrad_llm import nn
from tinygrad_llm.nn import functional as F
from tinygrad_llm.nn import init
from tinygrad_llm.testing import gradcheck


class Block(nn.Module):
    def __init__(self, width):
        self.norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, width)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.fc(self.norm(x)).relu()) + x


class Net(nn.Module):
    """Nested modules of every kind the registry knows: a direct child, a Sequential, a ModuleList and a
    plain Python list of modules."""

    def __init__(self):
        self.embed = nn.Embedding(10, 4)
        self.stem = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4, bias=False))
        self.blocks = nn.ModuleList([Block(4), Block(4)])
        self.heads = [nn.Linear(4, 3), nn.Linear(4, 2)]

    def forward(self, ids):
        x = self.stem(self.embed(ids))
        for block in self.blocks:
            x = block(x)
        return self.heads[0](x)


NET_NAMES = [
    "embed.weight",
    "stem.0.weight", "stem.0.bias", "stem.2.weight",
    "blocks.0.norm.weight", "blocks.0.norm.bias", "blocks.0.fc.weight", "blocks.0.fc.bias",
    "blocks.1.norm.weight", "blocks.1.norm.bias", "blocks.1.fc.weight", "blocks.1.fc.bias",
    "heads.0.weight", "heads.0.bias", "heads.1.weight", "heads.1.bias",
]


# ============================================================================ the registry
@pytest.mark.mlp
class TestRegistry:
    def test_named_parameters_order_and_dotted_names(self):
        net = Net()
        names = [name for name, _ in net.named_parameters()]
        assert names == NET_NAMES
        assert [id(p) for p in net.parameters()] == [id(p) for _, p in net.named_parameters()]
        assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())

    def test_sequential_names_like_pytorch(self):
        model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
        assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
        assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
        assert len(model) == 3 and isinstance(model[1], nn.ReLU)

    def test_module_list(self):
        layers = nn.ModuleList([nn.Linear(2, 2)]).append(nn.Linear(2, 3))
        assert len(layers) == 2 and [type(m) for m in layers] == [nn.Linear, nn.Linear]
        assert [n for n, _ in layers.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias"]
        assert layers[1].out_features == 3

    def test_named_modules(self):
        names = [name for name, _ in Net().named_modules()]
        assert names[:5] == ["", "embed", "stem", "stem.0", "stem.1"]
        assert "blocks.1.drop" in names and "heads.1" in names

    def test_tied_parameters_appear_once(self):
        class TiedLM(nn.Module):
            def __init__(self, vocab, dim):
                self.embed = nn.Embedding(vocab, dim)
                self.head = nn.Linear(dim, vocab, bias=False)
                self.head.weight = self.embed.weight  # weight tying, as in GPT-2

            def forward(self, ids):
                return self.head(self.embed(ids))

        model = TiedLM(7, 3)
        assert [n for n, _ in model.named_parameters()] == ["embed.weight"]
        assert model.num_parameters() == 7 * 3
        # The one tensor collects gradient from both uses.
        F.cross_entropy(model(np.array([1, 2])), np.array([2, 3])).backward()
        assert model.embed.weight.grad is not None and (model.embed.weight.grad[[0, 4, 5, 6]] != 0).any()

    @given(st.lists(st.integers(1, 20), min_size=2, max_size=6), st.booleans())
    def test_num_parameters_closed_form(self, widths, bias):
        layers = [nn.Linear(a, b, bias=bias) for a, b in zip(widths, widths[1:])]
        model = nn.Sequential(*layers)
        expected = sum(a * b + (b if bias else 0) for a, b in zip(widths, widths[1:]))
        assert model.num_parameters() == expected
        assert len(model.parameters()) == len(layers) * (2 if bias else 1)

    def test_children_are_found_in_assignment_order(self):
        net = Net()
        assert [name for name, _ in net.named_children()][:3] == ["embed", "stem", "blocks"]
        assert net.children()[0] is net.embed


# ============================================================================ modes and gradients
@pytest.mark.training
class TestModes:
    def test_train_and_eval_propagate_to_every_child(self):
        net = Net()
        assert all(m.training for m in net.modules())
        assert net.eval() is net
        assert not any(m.training for m in net.modules())
        net.train()
        assert all(m.training for m in net.modules())
        net.train(False)
        assert not net.blocks[1].drop.training

    def test_eval_switches_dropout_off(self):
        model = nn.Sequential(nn.Identity(), nn.Sequential(nn.Dropout(0.5)))
        x = tgl.ones(1000)
        tgl.manual_seed(0)
        train_out = model.train()(x).data
        assert (train_out == 0).any() and set(np.unique(train_out)) <= {0.0, 2.0}
        eval_out = model.eval()(x).data
        np.testing.assert_array_equal(eval_out, x.data)

    def test_zero_grad_sets_grads_to_none(self):
        model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        F.cross_entropy(model(tgl.randn(5, 3)), np.array([0, 1, 0, 1, 1])).backward()
        assert all(p.grad is not None for p in model.parameters())
        model.zero_grad()
        assert all(p.grad is None for p in model.parameters())

    def test_gradients_accumulate_until_zeroed(self):
        model = nn.Linear(3, 2)
        x = tgl.randn(4, 3)
        model(x).sum().backward()
        first = model.weight.grad.copy()
        model(x).sum().backward()
        np.testing.assert_allclose(model.weight.grad, 2 * first, rtol=1e-6)


# ============================================================================ checkpoints
@pytest.mark.mlp
class TestStateDict:
    def test_round_trip_gives_identical_outputs(self):
        tgl.manual_seed(0)
        a = Net().eval()
        tgl.manual_seed(1)
        b = Net().eval()
        ids = np.array([[1, 2, 3], [4, 5, 9]])
        assert not np.array_equal(a(ids).data, b(ids).data)
        state = a.state_dict()
        assert list(state) == NET_NAMES
        assert b.load_state_dict(state) is b
        np.testing.assert_array_equal(b(ids).data, a(ids).data)

    def test_state_dict_holds_copies(self):
        model = nn.Linear(2, 2)
        state = model.state_dict()
        state["weight"][...] = 123.0
        assert not (model.weight.data == 123.0).any()
        before = model.weight.data
        model.load_state_dict(state)
        assert model.weight.data is before  # loaded in place: optimizers holding the parameter still see it
        state["weight"][...] = 0.0
        assert (model.weight.data == 123.0).all()

    def test_errors_list_every_missing_unexpected_and_mismatched_key(self):
        model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        state = model.state_dict()
        del state["0.bias"], state["2.weight"]
        state["extra.weight"] = np.zeros(3)
        state["1.weight"] = np.zeros(3)
        state["0.weight"] = np.zeros((4, 5))
        with pytest.raises(KeyError) as error:
            model.load_state_dict(state)
        message = str(error.value)
        for key in ["0.bias", "2.weight", "extra.weight", "1.weight", "0.weight"]:
            assert key in message, f"{key!r} is not named in: {message}"
        assert "missing" in message and "unexpected" in message
        assert re.search(r"\(4, 5\).*\(4, 3\)", message), message  # checkpoint shape vs model shape

    def test_strict_false_ignores_missing_and_unexpected(self):
        model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        source = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        state = source.state_dict()
        del state["2.bias"]
        state["head.weight"] = np.zeros((1, 1))
        old_bias = model[2].bias.data.copy()
        model.load_state_dict(state, strict=False)
        np.testing.assert_array_equal(model[0].weight.data, source[0].weight.data)
        np.testing.assert_array_equal(model[2].weight.data, source[2].weight.data)
        np.testing.assert_array_equal(model[2].bias.data, old_bias)  # missing: left as it was
        with pytest.raises(KeyError, match="missing keys"):
            model.load_state_dict(state)

    def test_strict_false_still_rejects_wrong_shapes(self):
        model = nn.Linear(3, 4)
        with pytest.raises(KeyError, match="weight"):
            model.load_state_dict({"weight": np.zeros((3, 4))}, strict=False)


# ============================================================================ repr
@pytest.mark.mlp
def test_repr_is_readable_and_nested():
    model = nn.Sequential(
        nn.Linear(3, 8), nn.ReLU(), nn.Sequential(nn.LayerNorm(8), nn.Dropout(0.1)), nn.Linear(8, 2, bias=False)
    )
    text = repr(model)
    assert text.startswith("Sequential(\n")
    assert "(0): Linear(in_features=3, out_features=8, bias=True)" in text
    assert "(1): ReLU()" in text
    assert "(3): Linear(in_features=8, out_features=2, bias=False)" in text
    nested = (
        "  (2): Sequential(\n"
        "    (0): LayerNorm((8,), eps=1e-05, elementwise_affine=True)\n"
        "    (1): Dropout(p=0.1)\n"
        "  )"
    )
    assert nested in text
    assert "Embedding(10, 4)" in repr(Net())
    assert "(blocks): ModuleList(" in repr(Net())


# ============================================================================ initialisation
# Statistical tolerances on a 400 x 600 matrix (n = 240,000 draws): the sample variance has relative
# standard error sqrt(2/n) ~ 0.3% for normals and sqrt(0.8/n) ~ 0.2% for uniforms, so 3% is > 10 sigma.
ROWS, COLS = 400, 600
VAR_RTOL = 0.03


def big_parameter(rows=ROWS, cols=COLS):
    return nn.Parameter(np.zeros((rows, cols), dtype=np.float64))


@pytest.mark.mlp
class TestInit:
    @given(st.integers(1, 300), st.integers(1, 50))
    def test_linear_default_within_one_over_sqrt_fan_in(self, n_in, n_out):
        layer = nn.Linear(n_in, n_out)
        bound = 1 / math.sqrt(n_in)
        assert np.abs(layer.weight.data).max() <= bound and np.abs(layer.bias.data).max() <= bound
        assert layer.weight.shape == (n_out, n_in) and layer.bias.shape == (n_out,)

    def test_linear_default_variance(self):
        layer = nn.Linear(COLS, ROWS)
        np.testing.assert_allclose(layer.weight.data.var(), (1 / COLS) / 3, rtol=VAR_RTOL)

    def test_layers_default_to_float32(self):
        # Training runs in float32 (the project's convention); float64 is for gradient checks only.
        assert nn.Linear(3, 2).weight.dtype == np.float32
        assert nn.Embedding(5, 2).weight.dtype == np.float32
        assert nn.LayerNorm(4).bias.dtype == np.float32
        assert nn.Linear(3, 2)(tgl.randn(4, 3)).dtype == np.float32

    @pytest.mark.parametrize(
        "fill,bound,variance",
        [
            (lambda p: init.xavier_uniform_(p), math.sqrt(6 / (ROWS + COLS)), 2 / (ROWS + COLS)),
            (lambda p: init.xavier_uniform_(p, gain=2.0), 2 * math.sqrt(6 / (ROWS + COLS)), 8 / (ROWS + COLS)),
            (lambda p: init.xavier_normal_(p), None, 2 / (ROWS + COLS)),
            (lambda p: init.kaiming_uniform_(p), math.sqrt(6 / COLS), 2 / COLS),
            (lambda p: init.kaiming_normal_(p), None, 2 / COLS),
            (lambda p: init.uniform_(p, -0.5, 0.5), 0.5, 1 / 12),
            (lambda p: init.normal_(p, 0.0, 0.2), None, 0.04),
        ],
        ids=["xavier_uniform", "xavier_uniform_gain2", "xavier_normal", "kaiming_uniform", "kaiming_normal",
             "uniform", "normal"],
    )
    def test_variance_and_bounds(self, fill, bound, variance):
        # fan_in is the number of columns (Linear stores weights as (out, in)).
        tgl.manual_seed(0)
        p = fill(big_parameter())
        assert isinstance(p, nn.Parameter)
        np.testing.assert_allclose(p.data.var(), variance, rtol=VAR_RTOL)
        assert abs(p.data.mean()) < 5 * math.sqrt(variance / p.numel())
        if bound is not None:
            assert np.abs(p.data).max() <= bound
            assert np.abs(p.data).max() > 0.99 * bound  # it fills the range, not a narrower one

    @pytest.mark.parametrize("shape", [(50, 20), (20, 50), (30, 30)])
    @pytest.mark.parametrize("gain", [1.0, 0.5])
    def test_orthogonal(self, shape, gain):
        p = init.orthogonal_(nn.Parameter(np.zeros(shape)), gain=gain)
        q = p.data / gain
        small = min(shape)
        gram = q.T @ q if shape[0] >= shape[1] else q @ q.T
        np.testing.assert_allclose(gram, np.eye(small), atol=1e-10)
        np.testing.assert_allclose(np.linalg.svd(p.data, compute_uv=False), gain, atol=1e-10)

    def test_constants(self):
        p = nn.Parameter(np.full((3, 4), 7.0))
        assert (init.zeros_(p).data == 0).all()
        assert (init.ones_(p).data == 1).all()
        assert (init.constant_(p, 2.5).data == 2.5).all()

    def test_init_is_in_place(self):
        p = big_parameter(4, 5)
        array = p.data
        init.kaiming_normal_(p)
        assert p.data is array

    def test_seed_fixes_initialisation(self):
        tgl.manual_seed(7)
        a = Net().state_dict()
        tgl.manual_seed(7)
        b = Net().state_dict()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])

    def test_fans_need_two_dimensions(self):
        with pytest.raises(ValueError, match="at least 2 dimensions"):
            init.xavier_uniform_(nn.Parameter(np.zeros(5)))


# ============================================================================ Q03
@pytest.mark.mlp
@given(st.lists(st.integers(1, 6), min_size=4, max_size=4), st.integers(1, 5), st.integers(0, 2**16))
def test_linear_stack_is_one_affine_map(widths, batch, seed):
    # M06: without activations, Linear(W3) . Linear(W2) . Linear(W1) is x @ (W1^T W2^T W3^T) + b.
    tgl.manual_seed(seed)
    layers = [nn.Linear(a, b) for a, b in zip(widths, widths[1:])]
    for p in nn.Sequential(*layers).parameters():
        p.data = p.data.astype(np.float64)
    (w1, b1), (w2, b2), (w3, b3) = [(l.weight.data, l.bias.data) for l in layers]
    product = w1.T @ w2.T @ w3.T
    offset = b1 @ w2.T @ w3.T + b2 @ w3.T + b3
    x = np.random.default_rng(seed).standard_normal((batch, widths[0]))
    out = nn.Sequential(*layers)(tgl.tensor(x)).data
    np.testing.assert_allclose(out, x @ product + offset, rtol=1e-10, atol=1e-12)


def xor_points(n, rng):
    """Points in the square, labelled by the sign of x*y (the XOR of two half-planes); a margin band
    around the axes is left out so the classes are cleanly separable by a nonlinear boundary."""
    x = rng.uniform(-1, 1, (4 * n, 2))
    x = x[np.abs(x).min(axis=1) > 0.1][:n]
    return x.astype(np.float32), (x[:, 0] * x[:, 1] > 0).astype(np.int64)


def train_full_batch(model, x, y, steps, lr):
    """Plain gradient descent, by hand: p <- p - lr * dL/dp."""
    for _ in range(steps):
        model.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        for p in model.parameters():
            p.data -= lr * p.grad
    with tgl.no_grad():
        accuracy = (model(x).data.argmax(axis=-1) == y).mean()
    return loss.item(), accuracy


@pytest.mark.mlp
@pytest.mark.training
def test_mlp_with_relu_learns_xor_where_a_linear_stack_cannot():
    rng = np.random.default_rng(0)
    x, y = xor_points(400, rng)
    tgl.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
    linear = nn.Sequential(nn.Linear(2, 16), nn.Linear(16, 16), nn.Linear(16, 2))
    initial_loss = F.cross_entropy(mlp(tgl.tensor(x)), y).item()
    mlp_loss, mlp_accuracy = train_full_batch(mlp, tgl.tensor(x), y, steps=400, lr=0.5)
    _, linear_accuracy = train_full_batch(linear, tgl.tensor(x), y, steps=400, lr=0.5)
    assert mlp_loss < initial_loss / 4
    assert mlp_accuracy >= 0.97, mlp_accuracy
    # A linear classifier can at best cut off one quadrant's worth of points: ~75% in theory, and gradient
    # descent from small weights stays near chance.
    assert linear_accuracy < 0.8, linear_accuracy


@pytest.mark.mlp
def test_gradcheck_whole_mlp_with_cross_entropy():
    tgl.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4))
    params = model.parameters()
    for p in params:
        p.data = p.data.astype(np.float64)
    x = tgl.tensor(np.random.default_rng(0).standard_normal((6, 3)), requires_grad=True)
    y = np.array([0, 3, 1, 1, 2, 0])
    # gradcheck perturbs each input's array in place, so the model sees the perturbed parameters.
    assert gradcheck(lambda x, *_: F.cross_entropy(model(x), y), x, *params)
