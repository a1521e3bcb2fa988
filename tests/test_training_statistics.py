"""Learning checks for what a training dashboard measures (Q33).

- Per-parameter histograms count every weight and every gradient: their counts add up to the parameter count.
- The update-to-weight ratio of one plain SGD step is lr * ||g|| / ||W||, parameter by parameter.
- The dead-ReLU fraction is the hand count of units built to be dead; the saturated fraction is the hand count
  of outputs near the asymptotes.
- The embedding PCA agrees with the eigendecomposition of the covariance matrix (np.linalg).
- `train --log-histograms` writes the histograms and ratios at each evaluation, and a resumed run continues the
  same log with the same numbers as an uninterrupted one.
- The dashboard experiment: more dead ReLUs at a larger learning rate (fast mode).
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_llm as tgl
from tinygrad_llm import nn, optim
from tinygrad_llm.__main__ import main
from tinygrad_llm.experiments.training_dashboard import learning_rate_dashboard
from tinygrad_llm.interpretability.embedding_pca import embedding_pca, plot_embedding_pca
from tinygrad_llm.interpretability.run_logger import RunLogger, read_run_log
from tinygrad_llm.interpretability.training_statistics import (activation_health, dead_unit_fraction,
                                                               log_parameter_histograms, parameter_snapshot,
                                                               saturated_fraction, update_to_weight_ratios)
from tinygrad_llm.nn import functional as F
from tinygrad_llm.tensor import Tensor
from tinygrad_llm.training import TrainConfig, train_language_model

pytestmark = pytest.mark.interpretability


@st.composite
def mlps(draw):
    """A random ReLU MLP (Linear, ReLU, ..., Linear), a batch for it and class targets."""
    seed = draw(st.integers(0, 2**31 - 1))
    tgl.manual_seed(seed)
    widths = draw(st.lists(st.integers(1, 9), min_size=2, max_size=4))
    layers = []
    for i in range(len(widths) - 1):
        layers += [nn.Linear(widths[i], widths[i + 1]), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(draw(st.integers(1, 6)), widths[0]))
    return model.double(), x, rng.integers(0, widths[-1], len(x))


def loss_of(model, x, y):
    return F.cross_entropy(model(Tensor(x)), y)


@given(mlps(), st.integers(1, 12))
def test_histograms_count_every_weight_and_gradient(tmp_path_factory, mlp, bins):
    model, x, y = mlp
    loss_of(model, x, y).backward()
    with RunLogger(tmp_path_factory.mktemp("hist"), tensorboard=False) as logger:
        log_parameter_histograms(logger, model, step=1, bins=bins)
    log = read_run_log(logger.log_dir)
    for kind in ("weights", "gradients"):
        counted = {name[len(kind) + 1:]: sum(log.histograms(name)[0]["counts"])
                   for name in log.names("histogram") if name.startswith(kind + "/")}
        assert counted == {name: p.numel() for name, p in model.named_parameters()}
        assert sum(counted.values()) == model.num_parameters()


@given(mlps(), st.floats(1e-4, 1.0))
def test_the_update_ratio_of_plain_sgd_is_lr_times_grad_over_weight(mlp, lr):
    model, x, y = mlp
    loss_of(model, x, y).backward()
    before = parameter_snapshot(model)
    gradients = {name: p.grad.copy() for name, p in model.named_parameters()}
    optim.SGD(model.parameters(), lr=lr).step()
    ratios = update_to_weight_ratios(before, model)
    for name, weight in before.items():
        expected = lr * np.linalg.norm(gradients[name]) / np.linalg.norm(weight)
        assert ratios[name] == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_the_update_ratio_of_an_all_zero_parameter_is_nan():
    layer = nn.Linear(3, 2)
    nn.init.zeros_(layer.bias)
    before = parameter_snapshot(layer)
    layer.bias.data += 1.0
    assert np.isnan(update_to_weight_ratios(before, layer)["bias"])


@given(st.integers(1, 8), st.integers(1, 10), st.integers(0, 2**31 - 1), st.data())
def test_dead_relu_fraction_is_the_hand_count(in_features, units, seed, data):
    """Units built to be dead (weights 0, bias -1: 0 for every input) or alive (weights 0, bias +1)."""
    dead = np.array(data.draw(st.lists(st.booleans(), min_size=units, max_size=units)))
    model = nn.Sequential(nn.Linear(in_features, units), nn.ReLU())
    model.layers[0].weight.data[...] = 0.0
    model.layers[0].bias.data[...] = np.where(dead, -1.0, 1.0)
    x = Tensor(np.random.default_rng(seed).normal(size=(data.draw(st.integers(1, 5)), in_features)))
    assert activation_health(model, x) == {"dead_relu/1": pytest.approx(dead.mean())}


@given(st.integers(0, 2**31 - 1), st.integers(1, 4), st.integers(1, 6))
def test_dead_and_saturated_fractions_against_loops(seed, examples, units):
    rng = np.random.default_rng(seed)
    relu_out = np.maximum(rng.normal(size=(examples, 2, units)) - rng.uniform(0, 2, units), 0)
    per_unit = relu_out.reshape(-1, units)
    assert dead_unit_fraction(relu_out) == sum(all(v == 0 for v in per_unit[:, u]) for u in range(units)) / units
    squashed = np.tanh(3 * rng.normal(size=(examples, units)))
    assert saturated_fraction(squashed, "tanh") == np.mean([abs(v) > 0.99 for v in squashed.ravel()])
    sigmoid = 1 / (1 + np.exp(-3 * rng.normal(size=(examples, units))))
    assert saturated_fraction(sigmoid, "sigmoid", 0.05) == np.mean([v < 0.05 or v > 0.95 for v in sigmoid.ravel()])


def test_activation_health_names_what_to_pass_when_there_is_nothing_to_measure():
    with pytest.raises(ValueError, match="layers="):
        activation_health(nn.Linear(2, 2), Tensor(np.ones((1, 2))))
    model = nn.Sequential(nn.Linear(2, 3), nn.Sigmoid(), nn.Linear(3, 2), nn.Tanh())
    assert set(activation_health(model, Tensor(np.ones((4, 2))))) == {"saturated/1", "saturated/3"}
    with pytest.raises(ValueError, match="'sigmoid' or 'tanh'"):
        saturated_fraction(np.zeros(3), "relu")


@given(st.integers(3, 12), st.integers(2, 6), st.integers(0, 2**31 - 1))
def test_embedding_pca_matches_the_covariance_eigendecomposition(rows, dim, seed):
    table = np.random.default_rng(seed).normal(size=(rows, dim)) * np.linspace(3, 0.5, dim)
    k = min(2, dim)
    pca = embedding_pca(table, k)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(table, rowvar=False))
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    assert pca.explained_variance_ratio == pytest.approx(eigenvalues[:k] / eigenvalues.sum(), rel=1e-6, abs=1e-12)
    projected = (table - table.mean(axis=0)) @ eigenvectors[:, :k]
    signs = np.sign(np.sum(projected * pca.coordinates, axis=0))  # eigenvectors are defined up to sign
    assert pca.coordinates == pytest.approx(projected * signs, abs=1e-8)
    full = embedding_pca(table, min(rows, dim))  # all components: the centred table comes back exactly
    assert full.coordinates @ full.components + full.mean == pytest.approx(table, abs=1e-9)


def test_embedding_pca_of_an_embedding_layer_plots_and_checks_its_input():
    embedding = nn.Embedding(6, 4)
    ax = plot_embedding_pca(embedding_pca(embedding.weight), list("abc\n e"))
    assert len(ax.texts) == 6 and ax.texts[3].get_text() == "\\n"
    with pytest.raises(ValueError, match="num_components"):
        embedding_pca(np.ones((4, 3)), 5)


TINY = ["--max-chars", "4000", "--steps", "12", "--eval-every", "4", "--eval-batches", "1", "--embed-dim", "8",
        "--num-layers", "1", "--num-heads", "2", "--context-size", "8", "--batch-size", "2", "--warmup-steps", "1",
        "--hidden-dim", "8"]


def test_train_log_histograms_writes_them_and_a_resume_continues_the_log(tmp_path, capsys):
    assert main(["train", *TINY, "--log-histograms", "--out-dir", str(tmp_path / "whole"), "--no-progress",
                 "--samples", "0"]) == 0
    whole = read_run_log(tmp_path / "whole" / "events")
    histograms = whole.names("histogram")
    assert {"weights/token_embedding.weight", "gradients/token_embedding.weight"} <= set(histograms)
    assert all([h["step"] for h in whole.histograms(name)] == [4, 8, 12] for name in histograms)
    assert all(whole.scalars(name)[0].tolist() == [4, 8, 12] for name in whole.names("scalar"))
    ratios = [whole.scalars(name)[1] for name in whole.names("scalar") if name.startswith("update_ratio/")]
    assert ratios and all(np.all(r >= 0) for r in ratios)

    config = TrainConfig(max_chars=4000, steps=12, eval_every=4, eval_batches=1, embed_dim=8, num_layers=1,
                         num_heads=2, context_size=8, batch_size=2, warmup_steps=1, hidden_dim=8, log_histograms=True)
    train_language_model(config, out_dir=tmp_path / "resumed", stop_after_step=6, progress=False)
    run = train_language_model(config, out_dir=tmp_path / "resumed",
                               resume_from=tmp_path / "resumed" / "checkpoint.npz", progress=False)
    weights = [name for name in histograms if name.startswith("weights/")]
    assert sum(sum(whole.histograms(name)[-1]["counts"]) for name in weights) == run.model.num_parameters()
    resumed = read_run_log(tmp_path / "resumed" / "events")
    assert resumed.scalars("val_loss")[0].tolist() == [4, 6, 8, 12]  # the interrupted call evaluated at its end
    assert resumed.scalars("val_loss")[1][[0, 2, 3]].tolist() == whole.scalars("val_loss")[1].tolist()
    last = lambda log: log.histograms("weights/token_embedding.weight")[-1]["counts"]
    assert last(resumed) == last(whole)  # bit-exact resume, the same histogram at the end
    with pytest.raises(ValueError, match="out_dir"):
        train_language_model(config, progress=False)
    train_language_model(config, out_dir=tmp_path / "whole", stop_after_step=4, progress=False)
    assert read_run_log(tmp_path / "whole" / "events").scalars("val_loss")[0].tolist() == [4]  # a new run, a new log


def test_dead_relus_grow_with_the_learning_rate(tmp_path):
    result = learning_rate_dashboard(tmp_path, fast=True)
    dead = result["dead_relu_fraction"]
    assert len(dead) == len(result["learning_rates"]) == len(result["median_update_ratio"]) == 3
    assert all(0 <= d <= 1 for d in dead) and dead[-1] > dead[0]
    assert result["median_update_ratio"][-1] > result["median_update_ratio"][0] > 0
    log = read_run_log(tmp_path / "lr=0.1" / "seed=0")
    assert "dead_relu/1" in log.names("scalar") and "weights/0.weight" in log.names("histogram")
