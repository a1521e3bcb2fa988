"""Federated learning (Q37, M58): FedSGD equals centralised gradient descent, the non-IID splits cover every example
once, secure-aggregation masks cancel exactly (also after dropouts) while one masked vector is uniform whatever the
update, and a one-example update gives its input away exactly. The mask and privacy checks also run against
tests/broken_federated.py and must catch every variant."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import broken_federated as broken
from tinygrad_llm.experiments.federated import fedavg_against_rounds, gradient_leakage, secure_aggregation_check
from tinygrad_llm.nn import functional as F
from tinygrad_llm.nn.layers import Linear
from tinygrad_llm.nn.module import Module
from tinygrad_llm.optim import SGD
from tinygrad_llm.random import manual_seed
from tinygrad_llm.responsible import federated_averaging as fedavg
from tinygrad_llm.responsible import secure_aggregation as secure
from tinygrad_llm.responsible.gradient_leakage import candidate_inputs, nearest_input_error, reconstruct_linear_input
from tinygrad_llm.tensor import Tensor

pytestmark = pytest.mark.responsible

# Pearson's statistic over 16 equally likely bins follows chi-square with 15 degrees of freedom (4096 draws, 256
# expected per bin: the approximation is excellent); it exceeds 56.49 with probability 1e-6
# (scipy.stats.chi2.isf(1e-6, 15)), so a correct mask fails a check about once in a million.
CHI_SQUARE_15_ONE_IN_A_MILLION = 56.49


class TanhNet(Module):
    """Linear -> tanh -> Linear: tanh' > 0, so every first-layer row gets a gradient."""

    def __init__(self, features: int, hidden: int, classes: int):
        self.first, self.second = Linear(features, hidden), Linear(hidden, classes)

    def forward(self, x):
        return self.second(self.first(x).tanh())


def pair_seeds_for(client_id: int, num_clients: int, seeds: list[int]) -> dict[int, int]:
    """Client i's view of a symmetric table of distinct pair seeds s_ij = s_ji (seeds lists them pair by pair)."""
    pairs = [(i, j) for i in range(num_clients) for j in range(i + 1, num_clients)]
    table = dict(zip(pairs, seeds))
    return {j: table[min(client_id, j), max(client_id, j)] for j in range(num_clients) if j != client_id}


def draw_residues(seed: int, num_clients: int, length: int) -> np.ndarray:
    """Quantised updates, with the extremes 0 and 2^32 - 1 planted (where wrap-around bugs live)."""
    rng = np.random.default_rng(seed)
    residues = rng.integers(0, 2**32, (num_clients, length), dtype=np.uint32)
    residues[rng.random(residues.shape) < 0.2] = 2**32 - 1
    residues[rng.random(residues.shape) < 0.2] = 0
    return residues


distinct_seeds = st.lists(st.integers(0, 2**64), min_size=15, max_size=15, unique=True)  # enough for 6 clients


# ------------------------------------------------------------------ masks cancel, and hide
def check_masks_cancel(mask, residues, seeds):
    num_clients = len(residues)
    masked = {i: mask(i, residues[i], pair_seeds_for(i, num_clients, seeds)) for i in range(num_clients)}
    expected = np.sum(residues, axis=0, dtype=np.uint32)
    np.testing.assert_array_equal(np.sum(list(masked.values()), axis=0, dtype=np.uint32), expected)
    np.testing.assert_array_equal(secure.unmask_sum(masked, num_clients), expected)


def check_masked_vector_is_uniform(mask, update_pattern, num_clients, seeds):
    """Whatever the update, client 0's masked vector must look uniform on [0, 2^32): x + m is uniform when m is.
    Tested on its top 4 bits and its low 4 bits (each a 16-bin histogram of 4096 coordinates)."""
    masked = mask(0, np.resize(np.asarray(update_pattern, dtype=np.uint32), 4096),
                  pair_seeds_for(0, num_clients, seeds))
    for bins in (masked >> np.uint32(28), masked & np.uint32(15)):
        counts = np.bincount(bins, minlength=16)
        statistic = float(((counts - 256.0) ** 2 / 256.0).sum())
        assert statistic < CHI_SQUARE_15_ONE_IN_A_MILLION, f"masked values not uniform: chi-square {statistic:.1f}"


@settings(max_examples=20)
@given(seed=st.integers(0, 2**32), num_clients=st.integers(1, 6), length=st.integers(1, 16), seeds=distinct_seeds)
def test_masks_cancel_exactly_for_any_clients_and_vectors(seed, num_clients, length, seeds):
    check_masks_cancel(secure.mask, draw_residues(seed, num_clients, length), seeds)


@settings(max_examples=10)
@given(update_pattern=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=8),
       num_clients=st.integers(2, 5), seeds=distinct_seeds)
def test_a_masked_vector_alone_is_uniform_whatever_the_update(update_pattern, num_clients, seeds):
    check_masked_vector_is_uniform(secure.mask, update_pattern, num_clients, seeds)


def test_broken_masks_are_caught():
    residues, seeds = draw_residues(0, 4, 16), list(range(1, 16))
    with pytest.raises(AssertionError):
        check_masks_cancel(broken.mask_added_by_both_clients, residues, seeds)
    check_masks_cancel(broken.mask_with_small_masks, residues, seeds)  # they do cancel ...
    with pytest.raises(AssertionError, match="not uniform"):  # ... but the update shows through
        check_masked_vector_is_uniform(broken.mask_with_small_masks, secure.quantize([0.5, -2.0, 3.25]), 3, seeds)


@settings(max_examples=15)
@given(seed=st.integers(0, 2**32), num_clients=st.integers(2, 6), length=st.integers(4, 16), seeds=distinct_seeds,
       data=st.data())
def test_dropped_clients_masks_are_removed_exactly_once_their_seeds_are_revealed(seed, num_clients, length, seeds,
                                                                                 data):
    dropped = data.draw(st.sets(st.integers(0, num_clients - 1), min_size=1, max_size=num_clients - 1))
    residues = draw_residues(seed, num_clients, length)
    views = [pair_seeds_for(i, num_clients, seeds) for i in range(num_clients)]
    survivors = [i for i in range(num_clients) if i not in dropped]
    masked = {i: secure.mask(i, residues[i], views[i]) for i in survivors}
    survivors_sum = np.sum(residues[survivors], axis=0, dtype=np.uint32)
    assert not np.array_equal(np.sum(list(masked.values()), axis=0, dtype=np.uint32), survivors_sum)
    with pytest.raises(ValueError, match="dropped"):
        secure.unmask_sum(masked, num_clients)
    revealed = {(i, d): views[i][d] for i in survivors for d in dropped}
    np.testing.assert_array_equal(secure.unmask_sum(masked, num_clients, revealed), survivors_sum)


# ------------------------------------------------------------------ key agreement, fixed point, the whole round
def test_diffie_hellman_gives_both_ends_of_a_pair_the_same_seed():
    seeds = secure.agree_pair_seeds(3, np.random.default_rng(0))
    assert all(seeds[i][j] == seeds[j][i] for i in range(3) for j in range(3) if i != j)
    assert len({seeds[0][1], seeds[0][2], seeds[1][2]}) == 3
    for trivial_key in (1, secure.MODP_2048_PRIME - 1):
        with pytest.raises(ValueError, match="public key"):
            secure.shared_seed(12345, trivial_key)


@settings(max_examples=25)
@given(values=st.lists(st.floats(-1000, 1000), min_size=1, max_size=20), fractional_bits=st.integers(0, 20))
def test_fixed_point_round_trip_is_within_half_a_step(values, fractional_bits):
    residues = secure.quantize(values, fractional_bits)
    assert residues.dtype == np.uint32
    np.testing.assert_allclose(secure.dequantize(residues, fractional_bits), values, rtol=0,
                               atol=2.0 ** -(fractional_bits + 1))


def test_fixed_point_refuses_values_whose_sum_could_wrap():
    with pytest.raises(ValueError, match="fixed point"):
        secure.quantize([20000.0], 16, num_clients=2)  # 2 * 20000 * 2^16 > 2^31
    with pytest.raises(ValueError, match="fixed point"):
        secure.quantize([math.nan])


@settings(max_examples=4)
@given(seed=st.integers(0, 2**32), num_clients=st.integers(1, 4), length=st.integers(1, 8), drop=st.booleans())
def test_secure_sum_returns_the_plain_sum_up_to_quantisation(seed, num_clients, length, drop):
    rng = np.random.default_rng(seed)
    vectors = list(rng.normal(0, 10, (num_clients, length)))
    dropped = (num_clients - 1,) if drop and num_clients > 1 else ()
    result = secure.secure_sum(vectors, rng=seed, dropped=dropped)
    arrived = [v for i, v in enumerate(vectors) if i not in dropped]
    np.testing.assert_allclose(result.total, np.sum(arrived, axis=0), rtol=0, atol=len(arrived) * 2.0**-17)
    assert len(result.received) == len(arrived) and all(m.dtype == np.uint32 for m in result.received)


def test_secure_sum_explains_a_bad_dropout_list():
    with pytest.raises(ValueError, match="leave at least one"):
        secure.secure_sum([np.zeros(2), np.zeros(2)], dropped=(0, 1))


# ------------------------------------------------------------------ splits and FedAvg
@settings(max_examples=20)
@given(seed=st.integers(0, 2**32), num_examples=st.integers(1, 200), num_classes=st.integers(1, 5),
       num_clients=st.integers(1, 8), alpha=st.sampled_from([0.01, 0.1, 1.0, 100.0, math.inf]))
def test_dirichlet_split_gives_every_example_to_exactly_one_client(seed, num_examples, num_classes, num_clients,
                                                                   alpha):
    labels = np.random.default_rng(seed).integers(0, num_classes, num_examples)
    split = fedavg.dirichlet_label_split(labels, num_clients, alpha, rng=seed)
    assert len(split) == num_clients
    np.testing.assert_array_equal(np.sort(np.concatenate(split)), np.arange(num_examples))
    if math.isinf(alpha):  # IID: every class shared as equally as its count allows
        for label in np.unique(labels):
            counts = [np.sum(labels[rows] == label) for rows in split]
            assert max(counts) - min(counts) <= 1


@settings(max_examples=10)
@given(seed=st.integers(0, 2**32), num_clients=st.integers(1, 6), shards=st.integers(1, 3))
def test_shard_split_gives_every_example_to_exactly_one_client(seed, num_clients, shards):
    labels = np.random.default_rng(seed).integers(0, 4, 40)
    split = fedavg.shard_split(labels, num_clients, shards, rng=seed)
    np.testing.assert_array_equal(np.sort(np.concatenate(split)), np.arange(40))
    assert all(len(rows) >= 40 // (num_clients * shards) * shards for rows in split)


@settings(max_examples=6)
@given(seed=st.integers(0, 2**32), num_examples=st.integers(3, 40), num_clients=st.integers(1, 5),
       alpha=st.sampled_from([0.1, 1.0, math.inf]), rounds=st.integers(1, 3), lr=st.floats(0.01, 1.0))
def test_fedsgd_with_every_client_equals_centralised_full_batch_gradient_descent(seed, num_examples, num_clients,
                                                                                 alpha, rounds, lr):
    rng = np.random.default_rng(seed)
    inputs, labels = rng.normal(size=(num_examples, 3)), rng.integers(0, 3, num_examples)
    clients = fedavg.make_clients(inputs, labels, fedavg.dirichlet_label_split(labels, num_clients, alpha, rng=seed))
    manual_seed(seed)
    federated, central = TanhNet(3, 4, 3).double(), TanhNet(3, 4, 3).double()
    central.load_state_dict(federated.state_dict())
    fedavg.federated_sgd(federated, clients, rounds, lr, rng=seed)
    optimizer = SGD(central.parameters(), lr=lr)
    for _ in range(rounds):
        optimizer.zero_grad()
        F.cross_entropy(central(Tensor(inputs)), labels).backward()
        optimizer.step()
    np.testing.assert_allclose(fedavg.flat_weights(federated), fedavg.flat_weights(central), rtol=0, atol=1e-12)


def test_federated_averaging_explains_bad_arguments():
    model, clients = TanhNet(2, 2, 2), [fedavg.ClientData(np.zeros((0, 2)), np.zeros(0, dtype=int))]
    with pytest.raises(ValueError, match="client_fraction"):
        fedavg.federated_averaging(model, clients, 1, SGD, client_fraction=0)
    with pytest.raises(ValueError, match="none of the 1 clients"):
        fedavg.federated_averaging(model, clients, 1, SGD)


# ------------------------------------------------------------------ what an update gives away
@settings(max_examples=10)
@given(seed=st.integers(0, 2**32), features=st.integers(1, 8), hidden=st.integers(1, 6), lr=st.floats(0.01, 1.0))
def test_one_examples_gradient_and_its_fedsgd_update_give_the_input_exactly(seed, features, hidden, lr):
    rng = np.random.default_rng(seed)
    x, label = rng.normal(size=(1, features)), rng.integers(0, 3, 1)
    manual_seed(seed)
    model = TanhNet(features, hidden, 3).double()
    F.cross_entropy(model(Tensor(x)), label).backward()
    np.testing.assert_allclose(reconstruct_linear_input(model.first.weight.grad, model.first.bias.grad), x[0],
                               rtol=1e-8, atol=1e-10)
    model.zero_grad()
    start = {name: value.copy() for name, value in model.state_dict().items()}
    fedavg.train_locally(model, fedavg.ClientData(x, label), lambda p: SGD(p, lr=lr), 1, None,
                         fedavg.classification_loss, rng)
    after = model.state_dict()
    change = {name: after[name] - start[name] for name in start}
    np.testing.assert_allclose(reconstruct_linear_input(change["first.weight"], change["first.bias"]), x[0],
                               rtol=1e-6, atol=1e-8)


def test_reconstruction_explains_bad_inputs():
    with pytest.raises(ValueError, match="every bias gradient is 0"):
        reconstruct_linear_input(np.ones((2, 3)), np.zeros(2))
    with pytest.raises(ValueError, match=r"\(out, in\)"):
        reconstruct_linear_input(np.ones((2, 3)), np.ones(3))


def closest_input_the_server_can_rebuild(aggregate, seed: int) -> float:
    """Five clients with one example each send a softmax-regression FedSGD change through `aggregate`; the server
    tries every row of every message it received (dequantised when masked) and of the total. Returns the best
    nearest_input_error: 0 means it rebuilt some client's example."""
    manual_seed(seed)
    model = Linear(6, 4).double()  # no ReLU: every example reaches every row, so the sum has only mixes
    rng = np.random.default_rng(seed)
    inputs, labels = rng.normal(size=(5, 6)), rng.integers(0, 4, 5)
    start, changes = fedavg.flat_weights(model), []
    for k in range(5):
        fedavg.train_locally(model, fedavg.ClientData(inputs[k:k + 1], labels[k:k + 1]), lambda p: SGD(p, lr=0.1), 1,
                             None, fedavg.classification_loss, rng)
        changes.append(fedavg.flat_weights(model) - start)
        fedavg.load_flat_weights(model, start)
    seen = aggregate(changes)
    views = [secure.dequantize(m) if m.dtype == np.uint32 else m for m in seen.received] + [seen.total]
    return min(nearest_input_error(candidate, inputs)
               for view in views for candidate in candidate_inputs(view[:24].reshape(4, 6), view[24:]))


def test_averaging_in_the_clear_called_private_is_caught_and_secure_aggregation_is_not():
    """M58: the server rebuilds a client's input from what a 'private' average received, but, for this model,
    from neither the masked messages nor their sum."""
    for seed in range(3):
        assert closest_input_the_server_can_rebuild(broken.average_called_private, seed) < 1e-9
        assert closest_input_the_server_can_rebuild(secure.secure_sum, seed) > 0.1


# ------------------------------------------------------------------ the experiment, fast mode
def test_fedavg_experiment_runs_every_setting_from_the_same_start():
    result = fedavg_against_rounds(fast=True)
    curves = [run["accuracy"] for run in result["runs"].values()] + [result["centralised_accuracy"]]
    assert {len(curve) for curve in curves} == {result["rounds"] + 1}
    assert len({curve[0] for curve in curves}) == 1  # the same initial weights everywhere
    assert all(0 <= a <= 1 for curve in curves for a in curve)
    assert result["centralised_accuracy"][-1] > 0.5  # ten classes: chance is 0.1
    skewed, iid = result["runs"]["alpha=0.1,E=5"], result["runs"]["alpha=100.0,E=5"]
    assert skewed["mean_labels_per_client"] < iid["mean_labels_per_client"] == 10
    assert iid["accuracy"][-1] > skewed["accuracy"][-1]  # client drift; held for seeds 0-3 in fast mode


def test_secure_aggregation_experiment_matches_the_clear_run_and_shows_dropout_recovery():
    result = secure_aggregation_check(fast=True)
    assert result["max_weight_difference"] < 1e-4  # fixed-point rounding only
    assert result["dropout_sum_error_with_recovery"] < 1e-4
    assert result["dropout_sum_error_without_recovery"] > 1


def test_leakage_experiment_recovers_batch_one_and_blurs_batch_32():
    result = gradient_leakage(fast=True)
    assert result["batch_1"]["largest_row"] < 1e-4  # exact up to float32 weights
    assert result["batch_32"]["largest_row"] > 0.1
    assert result["one_masked_message"]["best_row"] > 0.1
    # ... but the sum is no shield: a ReLU row only one client switched on gives its input (seeds 0-3: 4e-4 to
    # 1.2e-3, fixed-point rounding)
    assert result["secure_sum"]["best_row"] < 0.01
