"""Federated averaging (FedAvg, McMahan et al. 2017): training on data that never leaves its owners (Q37).

K clients (phones, hospitals) each keep their own examples. Every round the server
  1. picks a fraction C of the clients (at least one),
  2. sends them the current global weights w,
  3. each client trains from w for E local epochs of minibatch training (batch B) on its own data only,
  4. each sends back its change n_k * (w_k - w) and its example count n_k, and the server moves to the
     data-weighted average:  w <- w + sum_k n_k (w_k - w) / sum_k n_k   (which is sum_k n_k w_k / sum_k n_k).

FedSGD is the case "one full-batch gradient step per client". The gradient of the mean loss over all data is
sum_k (n_k / n) g_k, so averaging the clients' one-step weights IS one step of full-batch gradient descent on
the pooled data, whatever the partition. More local work (E > 1, small B) saves communication rounds but lets
every client drift toward the optimum of its own data; when clients are non-IID (each holds mostly a few
labels) those optima disagree and the average pays for it ("client drift").

Two standard ways to make non-IID clients for experiments:
  - dirichlet_label_split: each class is shared among the clients in proportions drawn from Dirichlet(alpha):
    alpha = 0.1 gives each client one or two dominant labels, alpha = 100 is close to IID, and alpha = inf gives
    equal shares of every class (Hsu et al. 2019).
  - shard_split: sort by label, cut into equal shards of consecutive examples and deal a few shards to each
    client (McMahan et al.'s "pathological" split: with 2 shards a client sees at most about 2 labels).

The data stays home, but the updates travel, and that is not privacy (M58): one client's update can give its
examples away (gradient_leakage.py). Secure aggregation (secure_aggregation.py) lets the server learn only the
sum of the updates; bounding what even the sum reveals takes differential privacy (clip each client's
contribution, add noise, keep an account), as DP-SGD does for single examples.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..nn import functional as F
from ..optim import SGD
from ..tensor import Tensor


@dataclass(frozen=True)
class ClientData:
    inputs: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Aggregate:
    """One round's aggregation: the sum the server needs, and everything it was sent to compute it."""
    total: np.ndarray  # float64, the sum of the clients' vectors
    received: list  # the messages the server saw: its whole view of the clients this round


def sum_in_the_clear(vectors: list[np.ndarray]) -> Aggregate:
    """Every client sends its vector as it is; the server adds them up (and has seen each one)."""
    return Aggregate(total=np.sum(vectors, axis=0, dtype=np.float64), received=[v.copy() for v in vectors])


# ---------------------------------------------------------------------------- non-IID partitions
def dirichlet_label_split(labels, num_clients: int, alpha: float, rng=0) -> list[np.ndarray]:
    """Example indices for each client: every class is cut among the clients in Dirichlet(alpha) proportions.

    Every example goes to exactly one client. Small alpha concentrates each class on few clients (a client may
    get no example at all); alpha = math.inf shares every class equally (IID up to rounding).
    """
    labels = np.asarray(labels)
    if num_clients < 1 or not alpha > 0:
        raise ValueError(f"dirichlet_label_split: need num_clients >= 1 and alpha > 0 (inf for IID), got "
                         f"num_clients={num_clients}, alpha={alpha}")
    rng = np.random.default_rng(rng)
    pieces = [[] for _ in range(num_clients)]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        equal = np.full(num_clients, 1 / num_clients)
        shares = equal if np.isinf(alpha) else rng.dirichlet(np.full(num_clients, alpha))
        cuts = np.round(np.cumsum(shares)[:-1] * len(members)).astype(int)
        for client, piece in enumerate(np.split(members, cuts)):
            pieces[client].append(piece)
    return [np.sort(np.concatenate(p)).astype(np.int64) for p in pieces]


def shard_split(labels, num_clients: int, shards_per_client: int = 2, rng=0) -> list[np.ndarray]:
    """Example indices for each client: sort by label, cut into num_clients * shards_per_client shards of
    consecutive examples, deal shards_per_client random shards to each client."""
    labels = np.asarray(labels)
    num_shards = num_clients * shards_per_client
    if num_clients < 1 or shards_per_client < 1 or num_shards > len(labels):
        raise ValueError(f"shard_split: need num_clients >= 1, shards_per_client >= 1 and at most one shard per "
                         f"example; got {num_clients} clients x {shards_per_client} shards for {len(labels)} examples")
    shards = np.array_split(np.argsort(labels, kind="stable"), num_shards)
    deal = np.random.default_rng(rng).permutation(num_shards).reshape(num_clients, shards_per_client)
    return [np.sort(np.concatenate([shards[s] for s in hand])).astype(np.int64) for hand in deal]


def make_clients(inputs: np.ndarray, labels: np.ndarray, split: list[np.ndarray]) -> list[ClientData]:
    return [ClientData(inputs[rows], labels[rows]) for rows in split]


# ---------------------------------------------------------------------------- the algorithm
def classification_loss(model, inputs, labels):
    """Mean cross-entropy of the batch: the default local objective."""
    return F.cross_entropy(model(Tensor(inputs)), labels)


def train_locally(model, client: ClientData, make_optimizer, local_epochs: int, batch_size: int | None, loss,
                  rng: np.random.Generator) -> None:
    """E epochs of minibatch training on one client's data, from the model's current weights, in place.
    A fresh optimizer each time: a client keeps no momentum from its last round. batch_size None = full batch."""
    optimizer = make_optimizer(model.parameters())
    batch_size = batch_size or len(client)
    for _ in range(local_epochs):
        order = rng.permutation(len(client))
        for start in range(0, len(client), batch_size):
            rows = order[start:start + batch_size]
            optimizer.zero_grad()
            loss(model, client.inputs[rows], client.labels[rows]).backward()
            optimizer.step()


def federated_averaging(model, clients: list[ClientData], rounds: int, make_optimizer, local_epochs: int = 1,
                        batch_size: int | None = None, client_fraction: float = 1.0, loss=classification_loss,
                        aggregate=sum_in_the_clear, rng=0, evaluate=None) -> list[dict]:
    """FedAvg on `model` (its weights are the global weights; trained in place). Returns one record per round,
    after round 0 = the start: {"round", "clients": the ids that took part, "evaluation": evaluate(model)}.

    make_optimizer(parameters) builds each client's local optimizer. Each round max(1, round(C * K)) clients are
    drawn without replacement among those that have data. aggregate(vectors) -> Aggregate sums the clients'
    weighted changes n_k (w_k - w): sum_in_the_clear, or secure_aggregation.secure_sum for a server that must
    learn only the sum.
    """
    if not 0 < client_fraction <= 1 or rounds < 0 or local_epochs < 1:
        raise ValueError(f"federated_averaging: need 0 < client_fraction <= 1, rounds >= 0 and local_epochs >= 1, "
                         f"got {client_fraction}, {rounds} and {local_epochs}")
    with_data = [k for k, client in enumerate(clients) if len(client)]
    if not with_data:
        raise ValueError(f"federated_averaging: none of the {len(clients)} clients has any example")
    rng = np.random.default_rng(rng)
    per_round = min(len(with_data), max(1, round(client_fraction * len(clients))))
    history = [{"round": 0, "clients": [], "evaluation": evaluate(model) if evaluate else None}]
    for round_number in range(1, rounds + 1):
        chosen = sorted(rng.choice(with_data, size=per_round, replace=False).tolist())
        start = flat_weights(model)
        changes = []
        for k in chosen:
            load_flat_weights(model, start)
            train_locally(model, clients[k], make_optimizer, local_epochs, batch_size, loss, rng)
            changes.append(len(clients[k]) * (flat_weights(model) - start))
        examples = sum(len(clients[k]) for k in chosen)
        load_flat_weights(model, start + aggregate(changes).total / examples)
        history.append({"round": round_number, "clients": chosen, "evaluation": evaluate(model) if evaluate else None})
    return history


def federated_sgd(model, clients: list[ClientData], rounds: int, lr: float, client_fraction: float = 1.0,
                  loss=classification_loss, aggregate=sum_in_the_clear, rng=0, evaluate=None) -> list[dict]:
    """FedSGD: FedAvg where each client takes exactly one plain gradient step on all its data."""
    return federated_averaging(model, clients, rounds, lambda parameters: SGD(parameters, lr=lr), local_epochs=1,
                               batch_size=None, client_fraction=client_fraction, loss=loss, aggregate=aggregate,
                               rng=rng, evaluate=evaluate)


def flat_weights(model) -> np.ndarray:
    """Every parameter, raveled and concatenated in named_parameters order, in float64 (what clients send)."""
    return np.concatenate([p.data.ravel().astype(np.float64) for p in model.parameters()])


def load_flat_weights(model, flat: np.ndarray) -> None:
    """The inverse of flat_weights: copy the vector back into the parameters (each keeps its dtype)."""
    parameters = model.parameters()
    size = sum(p.data.size for p in parameters)
    if size != len(flat):
        raise ValueError(f"load_flat_weights: the model has {size} numbers, the vector {len(flat)}")
    offset = 0
    for p in parameters:
        p.data[...] = flat[offset:offset + p.data.size].reshape(p.shape)
        offset += p.data.size
