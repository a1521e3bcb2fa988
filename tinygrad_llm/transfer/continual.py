"""Keeping a model up to date (Q29): a stream whose meaning drifts, and three ways to follow it.

A deployed model sees data that changes. Here the change is pure concept drift: 2-D points keep the same
distribution (an isotropic Gaussian), but the label, which side of a line through the origin a point lies on,
follows a line that turns mid-stream (all at once, or a little every step). Three learners see the same stream:

    frozen   trained on the start of the stream, then never updated: it keeps answering the old question
    online   one SGD step on every batch that arrives: it follows the drift, and forgets the old boundary
    replay   the same SGD step on the arriving batch plus a sample from a reservoir of everything seen so far:
             it keeps part of the old boundary (the old examples still vote), at some cost on the current one

Each is scored over time on the CURRENT distribution (labels from today's line) and on the OLD one (labels from
the first line): how far the old score falls is the forgetting. A 90 degree turn makes the two labellings agree
on half of the plane only, so no single classifier scores well on both: replay buys memory with accuracy now.

ReservoirBuffer is Algorithm R: a fixed-size uniform sample of a stream of unknown length, in one pass.
"""
from __future__ import annotations

import math

import numpy as np

from .. import optim
from ..autograd import no_grad
from ..metrics.classification import accuracy
from ..nn import Linear, ReLU, Sequential
from ..nn import functional as F
from ..random import manual_seed
from ..tensor import Tensor

DRIFT_KINDS = ("abrupt", "gradual")
STRATEGIES = ("frozen", "online", "replay")


def boundary_labels(points: np.ndarray, angle: float) -> np.ndarray:
    """1 where a point lies to the left of the line through the origin with direction (cos a, sin a), else 0.

    "Left" is the sign of the 2-D cross product direction x point: cos(a) * y - sin(a) * x.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"boundary_labels: points must have shape (n, 2), got {points.shape}")
    return (math.cos(angle) * points[:, 1] - math.sin(angle) * points[:, 0] > 0).astype(np.int64)


class DriftingStream:
    """`num_batches` batches of `batch_size` Gaussian points labelled by a line that turns by `rotation` radians.

    drift="abrupt": the angle jumps from start_angle to start_angle + rotation at batch `drift_at`.
    drift="gradual": it turns linearly over `drift_length` batches starting at `drift_at`.
    Iterating yields (points (B, 2) float32, labels (B,) int64); the same seed gives the same stream.
    """

    def __init__(self, num_batches: int, batch_size: int = 32, drift_at: int | None = None,
                 rotation: float = math.pi / 2, drift: str = "abrupt", drift_length: int = 1,
                 start_angle: float = 0.0, seed: int = 0):
        drift_at = num_batches // 2 if drift_at is None else drift_at
        if drift not in DRIFT_KINDS:
            raise ValueError(f"DriftingStream: drift must be one of {DRIFT_KINDS}, got {drift!r}")
        if num_batches < 1 or batch_size < 1 or drift_length < 1:
            raise ValueError(f"DriftingStream: num_batches, batch_size and drift_length must be >= 1, got "
                             f"{num_batches}, {batch_size}, {drift_length}")
        if not 0 <= drift_at <= num_batches:
            raise ValueError(f"DriftingStream: drift_at must be in [0, num_batches={num_batches}], got {drift_at}")
        self.num_batches, self.batch_size, self.drift_at = num_batches, batch_size, drift_at
        self.rotation, self.drift, self.drift_length = rotation, drift, drift_length
        self.start_angle, self.seed = start_angle, seed

    def angle_at(self, step: int) -> float:
        """The boundary's angle for batch `step`."""
        if self.drift == "abrupt":
            progress = 1.0 if step >= self.drift_at else 0.0
        else:
            progress = min(max((step - self.drift_at + 1) / self.drift_length, 0.0), 1.0)
        return self.start_angle + progress * self.rotation

    @property
    def final_angle(self) -> float:
        return self.start_angle + self.rotation

    def sample(self, n: int, angle: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n fresh points labelled by the line at `angle` (for held-out evaluation sets)."""
        points = rng.standard_normal((n, 2)).astype(np.float32)
        return points, boundary_labels(points, angle)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self):
        rng = np.random.default_rng(self.seed)
        for step in range(self.num_batches):
            yield self.sample(self.batch_size, self.angle_at(step), rng)


class ReservoirBuffer:
    """A uniform random sample of at most `capacity` items from a stream of unknown length (Algorithm R).

    The first `capacity` items go straight in. Item number n (counting from 1) after that replaces a random slot
    with probability capacity / n. By induction every item seen so far is in the buffer with probability
    capacity / n: the new one by construction, an older one because it was in with probability capacity / (n-1)
    and survives this round with probability 1 - 1/n. Memory stays fixed however long the stream runs.
    """

    def __init__(self, capacity: int, rng: np.random.Generator | int | None = None):
        if not isinstance(capacity, (int, np.integer)) or capacity < 1:
            raise ValueError(f"ReservoirBuffer: capacity must be a positive integer, got {capacity!r}")
        self.capacity = int(capacity)
        self.rng = np.random.default_rng(rng)
        self.items: list = []
        self.seen = 0

    def add(self, item) -> None:
        self.seen += 1
        if len(self.items) < self.capacity:
            self.items.append(item)
            return
        slot = int(self.rng.integers(self.seen))  # uniform in [0, seen): a slot with probability capacity / seen
        if slot < self.capacity:
            self.items[slot] = item

    def extend(self, items) -> None:
        for item in items:
            self.add(item)

    def sample(self, k: int) -> list:
        """k items drawn uniformly from the buffer, with replacement (a replay batch)."""
        if not self.items:
            raise ValueError("ReservoirBuffer.sample: the buffer is empty; add items before replaying them")
        return [self.items[i] for i in self.rng.integers(len(self.items), size=k)]

    def __len__(self) -> int:
        return len(self.items)


def make_classifier(hidden: int = 32, seed: int = 0) -> Sequential:
    """A one-hidden-layer ReLU MLP for 2-D points, two logits out; the seed fixes its initialisation."""
    manual_seed(seed)
    return Sequential(Linear(2, hidden), ReLU(), Linear(hidden, 2))


def predict(model, points: np.ndarray) -> np.ndarray:
    with no_grad():
        return model(Tensor(np.asarray(points, dtype=np.float32))).data.argmax(axis=-1)


def loss_on(model, points: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy without recording a graph (a validation loss)."""
    with no_grad():
        return F.cross_entropy(model(Tensor(np.asarray(points, dtype=np.float32))), labels).item()


def sgd_step(model, optimizer, points: np.ndarray, labels: np.ndarray) -> float:
    """One update on one batch; returns the batch loss measured before the update."""
    loss = F.cross_entropy(model(Tensor(points)), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def follow_stream(model, stream: DriftingStream, strategy: str, lr: float = 0.1, replay_capacity: int = 256,
                  replay_size: int = 32, eval_every: int = 10, eval_size: int = 2000, seed: int = 0) -> dict:
    """Run one learner over the stream and score it every `eval_every` batches.

    strategy: "frozen" (SGD on the batches before the drift, none after), "online" (SGD on every batch) or
    "replay" (SGD on every batch concatenated with `replay_size` items from a reservoir of `replay_capacity`).
    Returns lists indexed by evaluation: "step" (batches seen), "angle", "current" (accuracy with today's
    labels), "old" (accuracy with the first labels), and "batch_loss" (one per batch, 0 when not trained).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"follow_stream: strategy must be one of {STRATEGIES}, got {strategy!r}")
    rng = np.random.default_rng(seed)
    eval_points, old_labels = stream.sample(eval_size, stream.start_angle, rng)
    optimizer = optim.SGD(model.parameters(), lr=lr)
    buffer = ReservoirBuffer(replay_capacity, rng) if strategy == "replay" else None
    history = {"step": [], "angle": [], "current": [], "old": [], "batch_loss": []}
    for step, (points, labels) in enumerate(stream):
        if strategy == "frozen" and step >= stream.drift_at:
            history["batch_loss"].append(0.0)
        elif buffer is not None and len(buffer):
            replayed = buffer.sample(replay_size)
            history["batch_loss"].append(sgd_step(
                model, optimizer, np.concatenate([points, np.stack([p for p, _ in replayed])]),
                np.concatenate([labels, np.array([y for _, y in replayed])])))
        else:
            history["batch_loss"].append(sgd_step(model, optimizer, points, labels))
        if buffer is not None:
            buffer.extend(zip(points, labels))
        if (step + 1) % eval_every == 0 or step + 1 == len(stream):
            angle = stream.angle_at(step)
            predictions = predict(model, eval_points)
            history["step"].append(step + 1)
            history["angle"].append(angle)
            history["current"].append(accuracy(boundary_labels(eval_points, angle), predictions))
            history["old"].append(accuracy(old_labels, predictions))
    return history


def plateau_schedule_run(driven_by: str, steps: int = 600, batch_size: int = 16, lr: float = 0.02,
                         eval_every: int = 10, patience: int = 3, factor: float = 0.5, val_size: int = 2000,
                         label_noise: float = 0.05, seed: int = 0) -> dict:
    """Train on a fixed boundary with ReduceLROnPlateau fed either the batch loss or the validation loss (M13).

    Both versions consult the scheduler at the same moments (every `eval_every` steps, same patience); only
    the number they feed it differs. The batch loss of 16 points jumps around from batch to batch, so it
    "fails to improve" by chance and the lr is cut while the model is still learning; the validation loss on
    2,000 fixed points is smooth and stops improving only when learning really stalls. `label_noise` flips
    that fraction of training labels, as real data has some, so the batch loss never settles at zero.
    Returns the reductions' steps, the lr after each consultation, and the final validation loss and accuracy.
    """
    if driven_by not in ("batch", "validation"):
        raise ValueError(f"plateau_schedule_run: driven_by must be 'batch' or 'validation', got {driven_by!r}")
    stream = DriftingStream(steps, batch_size, drift_at=steps, seed=seed)  # drift_at=steps: it never turns
    model = make_classifier(seed=seed)
    optimizer = optim.SGD(model.parameters(), lr=lr)
    scheduler = optim.ReduceLROnPlateau(optimizer, factor=factor, patience=patience)
    rng = np.random.default_rng(seed + 1)
    val_points, val_labels = stream.sample(val_size, stream.start_angle, rng)
    reductions, lrs = [], []
    for step, (points, labels) in enumerate(stream):
        flips = rng.random(len(labels)) < label_noise
        batch_loss = sgd_step(model, optimizer, points, np.where(flips, 1 - labels, labels))
        if (step + 1) % eval_every == 0:
            before = optimizer.param_groups[0]["lr"]
            scheduler.step(batch_loss if driven_by == "batch" else loss_on(model, val_points, val_labels))
            if optimizer.param_groups[0]["lr"] < before:
                reductions.append(step + 1)
            lrs.append(optimizer.param_groups[0]["lr"])
    return {"driven_by": driven_by, "reductions": reductions, "lr": lrs, "final_lr": lrs[-1],
            "val_loss": loss_on(model, val_points, val_labels),
            "val_accuracy": accuracy(val_labels, predict(model, val_points))}
