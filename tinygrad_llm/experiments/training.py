"""Chapter 3 experiments: optimizers, learning-rate schedules, clipping and regularisation (Q04, Q05).

Every experiment trains small MLPs on the 2-D spirals (`tinygrad_llm.data.synthetic`) with the library's
own optimizers and returns a dict of plain numbers and lists, so a notebook can plot it and a test can assert
on it. `fast=True` shrinks step counts and sweeps for CI; the notebook runs `fast=False`.

All training goes through `fit`, whose body is the loop every chapter uses, in this order:

    zero_grad -> forward -> loss -> backward -> clip (log the norm first) -> step -> schedule

Evaluation (train and validation loss/accuracy) happens every `eval_every` steps in eval mode, without
recording a graph; a ReduceLROnPlateau schedule and early stopping are driven by that validation loss,
never by the noisy loss of one batch.
"""
from __future__ import annotations

import math

import numpy as np

from .. import optim
from ..autograd import no_grad
from ..data.synthetic import make_spirals
from ..nn import Dropout, Linear, ReLU, Sequential
from ..nn import functional as F
from ..random import manual_seed
from ..tensor import Tensor

NUM_CLASSES = 3
OPTIMIZERS = ("SGD", "SGD+momentum", "Nesterov", "Adagrad", "RMSprop", "Adam", "AdamW")
SCHEDULES = ("constant", "step", "warmup+cosine", "plateau")


# ---------------------------------------------------------------------------------------------- data and model
def spirals_split(n_train: int = 1000, n_val: int = 1000, noise: float = 0.2, turns: float = 1.5, seed: int = 0):
    """(X_train, y_train, X_val, y_val): one draw of 3-arm spirals, split into disjoint train and validation sets."""
    X, y = make_spirals(n_train + n_val, num_classes=NUM_CLASSES, noise=noise, turns=turns, rng=seed)
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def make_mlp(hidden: int = 64, depth: int = 2, dropout: float = 0.0, seed: int = 0) -> Sequential:
    """2 -> hidden (x depth, ReLU, optional dropout after each hidden layer) -> 3 logits; `seed` fixes the init."""
    manual_seed(seed)
    layers, width = [], 2
    for _ in range(depth):
        layers += [Linear(width, hidden), ReLU()]
        if dropout > 0:
            layers.append(Dropout(dropout))
        width = hidden
    layers.append(Linear(width, NUM_CLASSES))
    return Sequential(*layers)


def evaluate(model, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(mean NLL, accuracy) in eval mode (dropout off), without building a graph; restores the model's mode."""
    was_training = model.training
    model.eval()
    with no_grad():
        logits = model(Tensor(X))
        nll = F.cross_entropy(logits, y).item()
    model.train(was_training)
    return float(nll), float((logits.data.argmax(axis=1) == y).mean())


def predict_proba(model, X: np.ndarray) -> np.ndarray:
    """Softmax probabilities in eval mode, float64 (so averaging and logs are exact enough)."""
    was_training = model.training
    model.eval()
    with no_grad():
        logits = model(Tensor(X)).data.astype(np.float64)
    model.train(was_training)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)


def global_grad_norm(parameters) -> float:
    """The L2 norm of all gradients together (what clip_grad_norm_ returns), without changing them."""
    squares = [np.sum(p.grad.astype(np.float64) ** 2) for p in parameters if p.grad is not None]
    return float(np.sqrt(sum(squares))) if squares else 0.0


def make_optimizer(name: str, parameters, lr: float | None = None, weight_decay: float = 0.0):
    """One of OPTIMIZERS with a typical learning rate for this problem (not tuned per optimizer)."""
    parameters = list(parameters)
    if name == "SGD":
        return optim.SGD(parameters, lr=lr or 0.1, weight_decay=weight_decay)
    if name == "SGD+momentum":
        return optim.SGD(parameters, lr=lr or 0.05, momentum=0.9, weight_decay=weight_decay)
    if name == "Nesterov":
        return optim.SGD(parameters, lr=lr or 0.05, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    if name == "Adagrad":
        return optim.Adagrad(parameters, lr=lr or 0.05, weight_decay=weight_decay)
    if name == "RMSprop":
        return optim.RMSprop(parameters, lr=lr or 3e-3, weight_decay=weight_decay)
    if name == "Adam":
        return optim.Adam(parameters, lr=lr or 1e-2, weight_decay=weight_decay)
    if name == "AdamW":
        return optim.AdamW(parameters, lr=lr or 1e-2, weight_decay=weight_decay or 1e-2)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")


# ---------------------------------------------------------------------------------------------- the training loop
def fit(model, optimizer, X, y, steps: int, *, X_val=None, y_val=None, batch_size: int | None = 64, seed: int = 0,
        scheduler=None, plateau=None, clip: float | None = None, eval_every: int = 0, early_stopping=None,
        l1: float = 0.0, zero_grad: bool = True, augment=None, fresh_data=None, plateau_metric: str = "val",
        loss_fn=F.cross_entropy) -> dict:
    """Train `model` for `steps` steps and return its history.

    batch_size None means full batch. `loss_fn(output, targets)` defaults to cross-entropy (evaluation assumes a
    classifier, so keep eval_every=0 for anything else). `scheduler.step()` runs after every optimizer step;
    `plateau.step(val_loss)` and `early_stopping.step(val_loss, model)` after every evaluation
    (`plateau_metric="batch"` feeds the plateau the current batch loss instead: the mistake of M13). `l1` > 0
    applies the proximal L1 step (soft thresholding) to the weight matrices after each update. `augment(X, rng)`
    transforms each batch; `fresh_data(n, rng)` draws a new batch every step instead of reusing (X, y), a one-pass
    stream (training metrics are still measured on X). The run stops at the first non-finite loss (`diverged`).
    """
    rng = np.random.default_rng(seed)
    parameters = model.parameters()
    history = {"loss": [], "grad_norm": [], "lr": [], "eval_steps": [], "train_loss": [], "train_acc": [],
               "val_loss": [], "val_acc": [], "diverged": False, "stopped_at": None, "steps_run": 0}
    model.train()
    for step in range(1, steps + 1):
        if fresh_data is not None:
            xb, yb = fresh_data(batch_size, rng)
        elif batch_size is None or batch_size >= len(y):
            xb, yb = X, y
        else:
            index = rng.choice(len(y), size=batch_size, replace=False)
            xb, yb = X[index], y[index]
        if augment is not None:
            xb = augment(xb, rng)
        history["lr"].append(optimizer.param_groups[0]["lr"])  # the rate this step uses

        if zero_grad:
            optimizer.zero_grad()                                        # 1. forget the last step's gradients
        loss = loss_fn(model(Tensor(xb)), yb)                            # 2-3. forward, loss
        loss.backward()                                                  # 4. backward (ADDS into .grad)
        if clip is not None:
            norm = optim.clip_grad_norm_(parameters, clip)               # 5. clip; the norm BEFORE clipping
        else:
            norm = global_grad_norm(parameters)
        history["loss"].append(loss.item())
        history["grad_norm"].append(norm)
        history["steps_run"] = step
        if not math.isfinite(loss.item()):
            history["diverged"] = True
            break
        optimizer.step()                                                 # 6. update
        if l1 > 0:                                                       # proximal L1 on weight matrices
            optim.l1_proximal_step_([p for p in parameters if p.ndim >= 2], lam=l1, lr=optimizer.param_groups[0]["lr"])
        if scheduler is not None:
            scheduler.step()                                             # 7. schedule

        if eval_every and (step % eval_every == 0 or step == steps):
            train_loss, train_acc = evaluate(model, X, y)
            history["eval_steps"].append(step)
            history["train_loss"].append(train_loss)
            history["train_acc"].append(train_acc)
            if X_val is not None:
                val_loss, val_acc = evaluate(model, X_val, y_val)
                history["val_loss"].append(val_loss)
                history["val_acc"].append(val_acc)
                if plateau is not None:
                    plateau.step(val_loss if plateau_metric == "val" else history["loss"][-1])
                if early_stopping is not None and early_stopping.step(val_loss, model):
                    history["stopped_at"] = step
                    break
    return history


def count_spikes(losses, window: int = 20, factor: float = 2.0, min_jump: float = 0.1) -> int:
    """Steps whose loss exceeds `factor` x the median of the previous `window` losses and by >= `min_jump` nats."""
    losses = np.asarray(losses, dtype=np.float64)
    spikes = 0
    for t in range(window, len(losses)):
        median = np.median(losses[t - window:t])
        if losses[t] > factor * median and losses[t] - median >= min_jump:
            spikes += 1
    return spikes


def _final(history: dict) -> dict:
    return {key: history[key][-1] for key in ("train_loss", "train_acc", "val_loss", "val_acc") if history[key]}


# ---------------------------------------------------------------------------------------------- Q04: optimizers
def optimizer_comparison(fast: bool = False, seed: int = 0) -> dict:
    """SGD, SGD+momentum, Nesterov, Adagrad, RMSprop, Adam and AdamW on one problem with one budget.

    Same data, same initial weights and the same sequence of mini-batches for every optimizer; each uses a
    typical learning rate for it (`make_optimizer`). Returns per-step batch-loss curves, validation curves and
    the final train/validation loss and accuracy of each.
    """
    steps, eval_every = (300, 25) if fast else (1500, 50)
    X, y, X_val, y_val = spirals_split(1000, 1000, noise=0.2, turns=1.5, seed=seed)
    result = {"steps": steps, "optimizers": list(OPTIMIZERS), "lr": {}, "loss": {}, "eval_steps": None,
              "val_loss": {}, "final": {}}
    for name in OPTIMIZERS:
        model = make_mlp(64, 2, seed=seed)
        optimizer = make_optimizer(name, model.parameters())
        result["lr"][name] = optimizer.param_groups[0]["lr"]
        history = fit(model, optimizer, X, y, steps, X_val=X_val, y_val=y_val, batch_size=64, seed=seed + 1,
                      eval_every=eval_every)
        result["loss"][name] = history["loss"]
        result["val_loss"][name] = history["val_loss"]
        result["eval_steps"] = history["eval_steps"]
        result["final"][name] = _final(history)
    return result


def adam_first_step(lr: float = 1e-3) -> dict:
    """M14: one step of Adam vs SGD from the same weights, on gradients that span six orders of magnitude.

    SGD moves each coordinate by lr * g; Adam's first step moves each by lr * g / |g|, i.e. about lr.
    """
    from ..nn import Parameter

    grad = np.array([1e-3, -1e-1, 1.0, -10.0, 100.0, 1e3], dtype=np.float32)
    moves = {}
    for name, cls in (("SGD", optim.SGD), ("Adam", optim.Adam)):
        w = Parameter(np.zeros_like(grad))
        optimizer = cls([w], lr=lr)
        w.grad = grad.copy()
        optimizer.step()
        moves[name] = (-w.data).tolist()
    return {"lr": lr, "grad": grad.tolist(), "sgd_move": moves["SGD"], "adam_move": moves["Adam"]}


def zero_grad_ablation(fast: bool = False, seed: int = 0) -> dict:
    """M11: two backward passes without zero_grad double .grad; training without zero_grad falls apart.

    Returns a corner of the output layer's gradient after one and after two backward calls on the same batch
    (the second is exactly twice the first), and the spirals classifier trained with SGD + momentum with and
    without zero_grad (same init and batches). Without it every step uses the SUM of all gradients so far, so the
    steps keep growing and the loss blows up. The run is short, so fast mode is the same.
    """
    X, y, X_val, y_val = spirals_split(1000, 1000, noise=0.2, turns=1.5, seed=seed)
    model = make_mlp(64, 2, seed=seed)
    weight = model[-1].weight
    F.cross_entropy(model(Tensor(X[:64])), y[:64]).backward()
    once = weight.grad.copy()
    F.cross_entropy(model(Tensor(X[:64])), y[:64]).backward()  # no zero_grad in between
    twice = weight.grad.copy()
    steps, lr = 400, 0.05
    runs = {}
    for label, zero in (("with zero_grad", True), ("without zero_grad", False)):
        model = make_mlp(64, 2, seed=seed)
        history = fit(model, optim.SGD(model.parameters(), lr=lr, momentum=0.9), X, y, steps, X_val=X_val, y_val=y_val,
                      batch_size=64, seed=seed + 1, zero_grad=zero, eval_every=steps)
        losses = np.asarray(history["loss"])
        runs[label] = {"loss": history["loss"], "grad_norm": history["grad_norm"], "first_loss": float(losses[0]),
                       "min_loss": float(losses.min()), "min_loss_step": int(losses.argmin()) + 1,
                       "last_loss_avg": float(losses[-20:].mean()), **_final(history)}
    return {"grad_once": once[:2, :3].tolist(), "grad_twice": twice[:2, :3].tolist(),
            "ratio": float(np.abs(twice).sum() / np.abs(once).sum()), "steps": steps, "lr": lr, "runs": runs}


# ---------------------------------------------------------------------------------------------- Q04: schedules
def _schedule(name: str, optimizer, steps: int):
    """The schedule object for one name (None for constant); plateau is created separately (it needs a metric)."""
    if name in ("constant", "plateau"):
        return None
    if name == "step":
        return optim.StepLR(optimizer, step_size=steps // 3, gamma=0.3)
    if name == "exponential":
        return optim.ExponentialLR(optimizer, gamma=0.01 ** (1 / steps))
    if name == "cosine":
        return optim.CosineAnnealingLR(optimizer, T_max=steps)
    if name == "warmup+cosine":
        return optim.LinearWarmupCosine(optimizer, warmup_steps=max(1, steps // 20), total_steps=steps,
                                        min_lr=0.01 * optimizer.param_groups[0]["lr"])
    raise ValueError(f"unknown schedule {name!r}")


def schedule_curves(total_steps: int = 1000, base_lr: float = 1e-2, seed: int = 0) -> dict:
    """The learning rate at every step for constant, StepLR, ExponentialLR, cosine and linear warmup + cosine,
    plus ReduceLROnPlateau runs on the spirals MLP: one driven by the validation loss (right), one by the
    loss of the current batch (M13: wrong; the noisy metric triggers cuts at random)."""
    from ..nn import Parameter

    curves = {}
    for name in ("constant", "step", "exponential", "cosine", "warmup+cosine"):
        optimizer = optim.SGD([Parameter(np.zeros(1, dtype=np.float32))], lr=base_lr)
        schedule = _schedule(name, optimizer, total_steps)
        lrs = []
        for _ in range(total_steps):
            lrs.append(optimizer.param_groups[0]["lr"])
            if schedule is not None:
                schedule.step()
        curves[name] = lrs
    X, y, X_val, y_val = spirals_split(1000, 1000, noise=0.2, turns=1.5, seed=seed)
    eval_every = max(1, total_steps // 50)
    plateau_runs = {}
    for metric in ("val", "batch"):
        model = make_mlp(64, 2, seed=seed)
        optimizer = optim.Adam(model.parameters(), lr=base_lr)
        plateau = optim.ReduceLROnPlateau(optimizer, factor=0.5, patience=3)
        history = fit(model, optimizer, X, y, total_steps, X_val=X_val, y_val=y_val, seed=seed + 1,
                      eval_every=eval_every, plateau=plateau, plateau_metric=metric)
        lrs = np.asarray(history["lr"])
        plateau_runs[metric] = {"lr": history["lr"], "reductions": int(np.sum(lrs[1:] < lrs[:-1])),
                                "first_reduction": int(np.argmax(lrs < base_lr)) if (lrs < base_lr).any() else None,
                                **_final(history)}
    curves["plateau (val loss)"] = plateau_runs["val"]["lr"]
    return {"total_steps": total_steps, "base_lr": base_lr, "curves": curves, "eval_every": eval_every,
            "plateau": plateau_runs}


def schedule_comparison(fast: bool = False, seeds=(0, 1, 2)) -> dict:
    """Q04: Adam under a constant rate, step decay, 5% warmup + cosine and plateau decay, on the spirals MLP.

    The same peak rate for all; 3 seeds (init and batch order; the data is fixed). Returns per schedule the final
    validation loss (mean and std over seeds), the train-validation gap, and the number of loss spikes.
    """
    steps = 400 if fast else 2000
    eval_every = steps // 40
    base_lr = 2e-2
    X, y, X_val, y_val = spirals_split(1000, 1000, noise=0.2, turns=1.5, seed=0)
    runs = {name: [] for name in SCHEDULES}
    for name in SCHEDULES:
        for seed in seeds:
            model = make_mlp(64, 2, seed=seed)
            optimizer = optim.Adam(model.parameters(), lr=base_lr)
            plateau = optim.ReduceLROnPlateau(optimizer, factor=0.3, patience=3) if name == "plateau" else None
            history = fit(model, optimizer, X, y, steps, X_val=X_val, y_val=y_val, seed=100 + seed,
                          scheduler=_schedule(name, optimizer, steps), plateau=plateau, eval_every=eval_every)
            runs[name].append({"loss": history["loss"], "lr": history["lr"], "val_curve": history["val_loss"],
                               "spikes": count_spikes(history["loss"]), **_final(history)})
    summary = {}
    for name, seed_runs in runs.items():
        val = np.array([r["val_loss"] for r in seed_runs])
        gap = np.array([r["val_loss"] - r["train_loss"] for r in seed_runs])
        summary[name] = {"val_loss_mean": float(val.mean()),
                         "val_loss_std": float(val.std(ddof=1)) if len(val) > 1 else 0.0,
                         "gap_mean": float(gap.mean()),
                         "train_loss_mean": float(np.mean([r["train_loss"] for r in seed_runs])),
                         "val_acc_mean": float(np.mean([r["val_acc"] for r in seed_runs])),
                         "spikes": int(sum(r["spikes"] for r in seed_runs))}
    return {"steps": steps, "base_lr": base_lr, "seeds": list(seeds), "eval_every": eval_every,
            "summary": summary, "runs": runs}


# ---------------------------------------------------------------------------------------------- Q04: AdamW vs Adam + L2
def adamw_vs_adam_l2(fast: bool = False, seed: int = 0) -> dict:
    """How fast weight decay actually shrinks weights under Adam + L2 and under AdamW.

    Two groups of weights start at 1 and receive zero-mean noise as their loss gradient (the data does not
    constrain them, so only weight decay should move them on average): std 10 ("large gradients") and std 0.01
    ("small gradients"). Same lr and weight decay for both optimizers. AdamW shrinks both groups at the nominal
    rate lr * wd per step. Adam + L2 adds wd * w to the gradient and then divides by the root-mean-square
    gradient, so the decay rate becomes lr * wd / rms(g): weights with large gradients barely decay, and weights
    with tiny gradients are pushed to 0 at about lr per step.

    `half_life` is the step at which the mean weight falls to 1/2 (extrapolated from the log-slope if the run
    ends first); `relative_decay` is the nominal half-life ln 2 / (lr * wd) divided by it (1 = nominal rate).
    """
    from ..nn import Parameter

    lr, weight_decay = 1e-2, 0.1
    steps, size = (3000, 2000) if fast else (10000, 10000)
    record_every = steps // 100
    scales = {"large": 10.0, "small": 0.01}
    nominal = math.log(2) / (lr * weight_decay)
    result = {"lr": lr, "weight_decay": weight_decay, "steps": steps, "gradient_std": scales,
              "nominal_half_life": nominal,
              "record_steps": list(range(0, steps + 1, record_every)), "mean_weight": {}, "half_life": {},
              "relative_decay": {}, "remaining": {}}
    for method, cls in (("Adam+L2", optim.Adam), ("AdamW", optim.AdamW)):
        rng = np.random.default_rng(seed)
        weights = {group: Parameter(np.ones(size, dtype=np.float32)) for group in scales}
        optimizer = cls(list(weights.values()), lr=lr, weight_decay=weight_decay)
        trajectory = {group: [1.0] for group in scales}
        for step in range(1, steps + 1):
            for group, w in weights.items():
                w.grad = (scales[group] * rng.standard_normal(size)).astype(np.float32)
            optimizer.step()
            for group, w in weights.items():
                trajectory[group].append(float(w.data.mean()))
        for group in scales:
            curve = np.asarray(trajectory[group])  # the mean weight after every step (index = step)
            below = np.flatnonzero(curve <= 0.5)
            if below.size:
                half_life = float(below[0])
            else:  # not reached: extrapolate the exponential decay seen so far
                half_life = steps * math.log(2) / max(-math.log(curve[-1]), 1e-12)
            key = f"{method}, {group} gradients"
            result["mean_weight"][key] = curve[::record_every].tolist()
            result["remaining"][key] = float(curve[-1])
            result["half_life"][key] = half_life
            result["relative_decay"][key] = nominal / half_life
    return result


# ---------------------------------------------------------------------------------------------- Q04: ensembles
def ensemble(fast: bool = False, members: int = 5) -> dict:
    """Q04: `members` MLPs trained with different seeds (init and batch order); average their probabilities.

    NLL is convex in the probabilities, so the ensemble's NLL can never exceed the members' mean NLL (Jensen);
    how much lower it is measures how much the members disagree.
    """
    steps = 300 if fast else 1500
    X, y, X_val, y_val = spirals_split(300, 1000, noise=0.4, turns=1.5, seed=0)
    probabilities, member_nll, member_acc = [], [], []
    for seed in range(members):
        model = make_mlp(64, 2, seed=seed)
        fit(model, optim.Adam(model.parameters(), lr=1e-2), X, y, steps, batch_size=64, seed=100 + seed)
        p = predict_proba(model, X_val)
        probabilities.append(p)
        member_nll.append(float(-np.log(p[np.arange(len(y_val)), y_val] + 1e-12).mean()))
        member_acc.append(float((p.argmax(axis=1) == y_val).mean()))

    def nll_of(p):
        return float(-np.log(p[np.arange(len(y_val)), y_val] + 1e-12).mean())

    running = [nll_of(np.mean(probabilities[:k], axis=0)) for k in range(1, members + 1)]
    average = np.mean(probabilities, axis=0)
    return {"steps": steps, "members": members, "member_nll": member_nll, "member_acc": member_acc,
            "mean_member_nll": float(np.mean(member_nll)), "best_member_nll": float(np.min(member_nll)),
            "ensemble_nll": nll_of(average), "ensemble_acc": float((average.argmax(axis=1) == y_val).mean()),
            "mean_member_acc": float(np.mean(member_acc)), "nll_by_size": running}


# ---------------------------------------------------------------------------------------------- Q04: clipping
def _wave_target(X: np.ndarray) -> np.ndarray:
    """A smooth regression target on the plane, sin(3 x0) cos(3 x1), shape (n, 1)."""
    return (np.sin(3 * X[:, 0]) * np.cos(3 * X[:, 1]))[:, None].astype(np.float32)


def _regression_mlp(seed: int) -> Sequential:
    manual_seed(seed)
    return Sequential(Linear(2, 64), ReLU(), Linear(64, 64), ReLU(), Linear(64, 1))


def gradient_clipping(fast: bool = False, seed: int = 0) -> dict:
    """Q04: the gradient norm (logged before clipping) of a regression MLP trained with plain SGD at a learning
    rate that is too high, with and without clipping by global norm, plus a reference run at a sane rate.

    Regression with MSE, because its gradient grows with the error: one overshoot makes the next gradient
    larger, and without clipping the run overflows to inf/NaN within a few steps. (Cross-entropy's gradient
    with respect to the logits is bounded, so a classifier with too high a rate tends to stall, with dead ReLUs,
    rather than overflow.) The threshold is set near the typical gradient norm of the healthy run.
    """
    steps = 300 if fast else 1500
    too_high, sane, threshold = 1.5, 0.3, 0.25
    X, _, X_val, _ = spirals_split(1000, 1000, noise=0.2, turns=1.5, seed=seed)
    y, y_val = _wave_target(X), _wave_target(X_val)
    runs = {}
    for label, lr, clip in ((f"lr={too_high}, no clipping", too_high, None),
                            (f"lr={too_high}, clipped at {threshold}", too_high, threshold),
                            (f"lr={sane}, no clipping (reference)", sane, None)):
        model = _regression_mlp(seed)
        optimizer = optim.SGD(model.parameters(), lr=lr)
        with np.errstate(over="ignore", invalid="ignore"):
            history = fit(model, optimizer, X, y, steps, batch_size=64, seed=seed + 1, clip=clip, loss_fn=F.mse_loss)
            with no_grad():
                val_mse = float(np.mean((model(Tensor(X_val)).data.astype(np.float64) - y_val) ** 2))
        norms = np.asarray(history["grad_norm"], dtype=np.float64)
        finite = norms[np.isfinite(norms)]
        runs[label] = {"lr": lr, "clip": clip, "grad_norm": history["grad_norm"], "loss": history["loss"],
                       "diverged": history["diverged"], "steps_run": history["steps_run"],
                       "max_grad_norm": float(finite.max()), "median_grad_norm": float(np.median(finite)),
                       "val_mse": val_mse, "finite": bool(np.isfinite(val_mse) and not history["diverged"])}
    return {"steps": steps, "threshold": threshold, "too_high_lr": too_high, "sane_lr": sane,
            "target_variance": float(y_val.var()), "runs": runs}


# ---------------------------------------------------------------------------------------------- Q05: overfitting
def _jitter(std: float):
    def augment(X, rng):
        return (X + std * rng.standard_normal(X.shape)).astype(np.float32)
    return augment


def _random_rotation(X, rng):
    """Rotate every point by a random angle: an image-style augmentation that is wrong here, since rotating a
    spiral arm by 120 degrees turns it into the next class (the transformation does not preserve the label)."""
    angle = rng.uniform(0, 2 * np.pi, size=len(X))
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([c * X[:, 0] - s * X[:, 1], s * X[:, 0] + c * X[:, 1]], axis=1).astype(np.float32)


def _count_zeros(model) -> tuple[int, int]:
    weights = [p.data for p in model.parameters() if p.ndim >= 2]
    return int(sum(int((w == 0).sum()) for w in weights)), int(sum(w.size for w in weights))


def overfitting(fast: bool = False, seed: int = 0, noise: float = 0.8) -> dict:
    """Q05: an over-parameterised MLP (2-128-128-3, about 17k weights) on 200 noisy spiral points.

    Methods: a baseline (Adam, full batch); decoupled weight decay (AdamW) and dropout sweeps; early stopping on
    the validation loss with restore-best; input jitter (a label-preserving augmentation for 2-D points) and
    random rotation (a label-breaking one: M12); a one-pass stream of fresh points (how pretraining sees data:
    M12); the baseline with warmup + cosine (a schedule is not a regulariser: M09); proximal L1.
    Per method: train/validation curves, the best validation accuracy, and the final train-validation gap in
    accuracy (points) and in loss (nats). Also exact zeros in the weight matrices under proximal L1 and L2.
    """
    steps = 600 if fast else 2000
    eval_every = steps // 40
    n_train, turns = 200, 1.5
    X, y, X_val, y_val = spirals_split(n_train, 2000, noise=noise, turns=turns, seed=seed)
    hidden, lr = 128, 1e-2

    methods = {"baseline": {}}
    for wd in ((0.1,) if fast else (0.03, 0.1, 0.3)):
        methods[f"weight decay {wd}"] = {"weight_decay": wd}
    for p in ((0.3,) if fast else (0.1, 0.3, 0.5)):
        methods[f"dropout {p}"] = {"dropout": p}
    methods["early stopping"] = {"early_stopping": True}
    methods["jitter augmentation"] = {"augment": _jitter(0.05)}
    methods["rotation augmentation"] = {"augment": _random_rotation}
    methods["fresh data every step"] = {"fresh": True}
    methods["warmup+cosine schedule"] = {"schedule": True}
    methods["L1 (proximal)"] = {"l1": 3e-2}

    def fresh_data(n, rng):  # a new sample of n_train points from the same distribution, every step
        return make_spirals(n_train, num_classes=NUM_CLASSES, noise=noise, turns=turns, rng=rng)

    results = {}
    for name, config in methods.items():
        model = make_mlp(hidden, 2, dropout=config.get("dropout", 0.0), seed=seed)
        optimizer = optim.AdamW(model.parameters(), lr=lr, weight_decay=config.get("weight_decay", 0.0))
        stopper = optim.EarlyStopping(patience=5, restore_best=True) if config.get("early_stopping") else None
        schedule = (optim.LinearWarmupCosine(optimizer, warmup_steps=steps // 20, total_steps=steps, min_lr=lr / 100)
                    if config.get("schedule") else None)
        history = fit(model, optimizer, X, y, steps, X_val=X_val, y_val=y_val,
                      batch_size=n_train if config.get("fresh") else None, seed=seed + 1, eval_every=eval_every,
                      early_stopping=stopper, scheduler=schedule, l1=config.get("l1", 0.0),
                      augment=config.get("augment"), fresh_data=fresh_data if config.get("fresh") else None)
        train_loss, train_acc = evaluate(model, X, y)  # the model as returned (early stopping: the restored best)
        val_loss, val_acc = evaluate(model, X_val, y_val)
        zeros, total = _count_zeros(model)
        results[name] = {"train_acc": train_acc, "val_acc": val_acc, "train_loss": train_loss, "val_loss": val_loss,
                         "acc_gap": 100 * (train_acc - val_acc), "loss_gap": val_loss - train_loss,
                         "best_val_acc": max(history["val_acc"]), "best_val_loss": min(history["val_loss"]),
                         "exact_zeros": zeros, "weights": total, "stopped_at": history["stopped_at"],
                         "curves": {k: history[k] for k in ("eval_steps", "train_loss", "val_loss", "train_acc",
                                                            "val_acc")}}
        if stopper is not None:
            results[name]["best_step"] = history["eval_steps"][stopper.best_step]
            results[name]["restored_val_loss"] = val_loss
            results[name]["recorded_best_val_loss"] = stopper.best_metric
    base = results["baseline"]
    for name, r in results.items():
        r["acc_gap_cut"] = 1 - r["acc_gap"] / base["acc_gap"] if base["acc_gap"] > 0 else 0.0
        r["loss_gap_cut"] = 1 - r["loss_gap"] / base["loss_gap"] if base["loss_gap"] > 0 else 0.0
    l2_name = max((n for n in results if n.startswith("weight decay")), key=lambda n: float(n.split()[-1]))
    return {"steps": steps, "eval_every": eval_every, "n_train": n_train, "hidden": hidden,
            "parameters": make_mlp(hidden, 2).num_parameters(), "methods": results,
            "l1_zeros": results["L1 (proximal)"]["exact_zeros"], "l2_zeros": results[l2_name]["exact_zeros"],
            "l2_method": l2_name, "weights": results["baseline"]["weights"]}
