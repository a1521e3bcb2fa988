"""Chapter 2 experiments (Q03): why an MLP needs nonlinearities, a stable softmax and a
scaled initialisation, and a first character-level language model.

    linear_vs_relu(fast)             three Linear layers with and without ReLU on XOR, two moons, spirals
    initialisation_comparison(fast)  N(0, 1) weights vs He: logit std at init, steps to 90% accuracy
    softmax_overflow_gaps()          the logit gap at which the naive softmax overflows, per dtype
    char_mlp_language_model(fast)    the character MLP LM on the embedded corpus vs the uniform baseline

Each returns a dict of plain numbers (and short lists/strings); `fast=True` is the CI size.
"""
from __future__ import annotations

import math
import time

import numpy as np

from .. import optim
from ..autograd import no_grad
from ..data import synthetic
from ..nn import Linear, ReLU, Sequential, init
from ..nn import functional as F
from ..random import manual_seed
from ..tensor import Tensor

DATASET_OPTIONS = {
    "xor": {"noise": 0.0},
    "moons": {"noise": 0.15},
    "spirals": {"num_classes": 3, "noise": 0.15, "turns": 2.0},
}


# ---------------------------------------------------------------------------- models and training
def make_mlp(in_features: int = 2, hidden: int = 64, num_classes: int = 2, depth: int = 3,
             activation: bool = True, weight_init: str = "default") -> Sequential:
    """`depth` Linear layers of width `hidden`, with ReLU between them when `activation` is true.

    weight_init: "default" (Linear's uniform +-1/sqrt(fan_in)), "normal" (N(0, 1), the classic mistake)
    or "he" (N(0, 2/fan_in), Kaiming for ReLU). "normal" and "he" also zero the biases.
    """
    sizes = [in_features] + [hidden] * (depth - 1) + [num_classes]
    layers = []
    for i in range(depth):
        layer = Linear(sizes[i], sizes[i + 1])
        if weight_init == "normal":
            init.normal_(layer.weight, 0.0, 1.0)
        elif weight_init == "he":
            init.kaiming_normal_(layer.weight)
        elif weight_init != "default":
            raise ValueError(f"make_mlp: weight_init must be 'default', 'normal' or 'he', got {weight_init!r}")
        if weight_init != "default":
            init.zeros_(layer.bias)
        layers.append(layer)
        if activation and i < depth - 1:
            layers.append(ReLU())
    return Sequential(*layers)


def predict(model, X: np.ndarray) -> np.ndarray:
    """Class ids (argmax of the logits), without recording a graph."""
    with no_grad():
        return model(Tensor(np.asarray(X, dtype=np.float32))).data.argmax(axis=-1)


def accuracy(model, X: np.ndarray, y: np.ndarray) -> float:
    return float((predict(model, X) == y).mean())


def train_classifier(model, X: np.ndarray, y: np.ndarray, steps: int, lr: float = 1e-2,
                     target_accuracy: float | None = None) -> dict:
    """Full-batch Adam on mean cross-entropy. Returns {"loss": [...], "accuracy": [...], "steps_to_target"}.

    loss[t] and accuracy[t] are measured on the batch BEFORE update t+1 (so index 0 is the initialisation);
    steps_to_target is the number of updates after which training accuracy first reached target_accuracy
    (None if it never did).
    """
    optimizer = optim.Adam(model.parameters(), lr=lr)
    inputs = Tensor(np.asarray(X, dtype=np.float32))
    losses, accuracies, reached = [], [], None
    for step in range(steps + 1):
        logits = model(inputs)
        loss = F.cross_entropy(logits, y)
        losses.append(loss.item())
        accuracies.append(float((logits.data.argmax(axis=-1) == y).mean()))
        if reached is None and target_accuracy is not None and accuracies[-1] >= target_accuracy:
            reached = step
        if step == steps:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {"loss": losses, "accuracy": accuracies, "steps_to_target": reached}


def collapse_linear_stack(model: Sequential) -> tuple[np.ndarray, np.ndarray]:
    """The single affine map (W, b) that a stack of Linear layers WITHOUT activations computes.

    Layer i computes h @ Wi^T + bi, so the stack is x @ (W1^T W2^T W3^T) + ((b1 W2^T + b2) W3^T + b3).
    """
    W, b = None, None
    for layer in model.layers:
        if not isinstance(layer, Linear):
            raise ValueError(f"collapse_linear_stack: only Linear layers collapse, found {type(layer).__name__}")
        Wt = layer.weight.data.astype(np.float64).T
        bias = np.zeros(layer.out_features) if layer.bias is None else layer.bias.data.astype(np.float64)
        W, b = (Wt, bias) if W is None else (W @ Wt, b @ Wt + bias)
    return W, b


def load_split(name: str, n: int, seed: int = 0):
    X, y = synthetic.make_dataset(name, n, rng=seed, **DATASET_OPTIONS[name])
    return synthetic.train_test_split(X, y, test_fraction=0.25, rng=seed + 1)


def xor_least_squares(X: np.ndarray | None = None, y: np.ndarray | None = None) -> dict:
    """The least-squares linear fit y ~ X w + c. On the four XOR corners it is exactly 0.5 everywhere;
    on sampled XOR data nearly so, because XOR's label is uncorrelated with each coordinate."""
    corners = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], dtype=np.float64)
    corner_labels = (corners[:, 0] * corners[:, 1] > 0).astype(np.float64)
    design = np.column_stack([corners, np.ones(4)])
    coef = np.linalg.lstsq(design, corner_labels, rcond=None)[0]
    out = {"corner_predictions": (design @ coef).tolist(), "corner_weights": coef[:2].tolist(), "corner_bias": float(coef[2])}
    if X is not None:
        design = np.column_stack([np.asarray(X, dtype=np.float64), np.ones(len(X))])
        coef = np.linalg.lstsq(design, np.asarray(y, dtype=np.float64), rcond=None)[0]
        predictions = design @ coef
        out.update(
            weights=coef[:2].tolist(), bias=float(coef[2]),
            prediction_mean=float(predictions.mean()), prediction_min=float(predictions.min()),
            prediction_max=float(predictions.max()),
            accuracy=float(((predictions > 0.5) == (y == 1)).mean()),
        )
    return out


# ---------------------------------------------------------------------------- experiments
def linear_vs_relu(fast: bool = True, seed: int = 0, keep_models: bool = False) -> dict:
    """Q03 / M06: (a) three Linear layers, no activation, vs (b) the same stack with ReLU.

    For each dataset: train/test accuracy and final loss of both. Also the least-squares fit to XOR and
    the collapse check on the trained linear spirals stack: its outputs equal x @ (W1^T W2^T W3^T) + b.
    With keep_models=True the result also holds "models" and "splits" (for plotting decision regions).
    """
    n, steps, hidden, lr = (1000, 300, 64, 1e-2) if fast else (2000, 1000, 64, 1e-2)
    result = {"n": n, "steps": steps, "hidden": hidden, "lr": lr}
    models, splits = {}, {}
    start = time.perf_counter()
    for name in DATASET_OPTIONS:
        X_train, y_train, X_test, y_test = splits[name] = load_split(name, n, seed)
        num_classes = int(y_train.max()) + 1
        result[name] = {}
        for variant, activation in (("linear", False), ("relu", True)):
            manual_seed(seed)
            model = make_mlp(2, hidden, num_classes, depth=3, activation=activation)
            history = train_classifier(model, X_train, y_train, steps, lr)
            models[(name, variant)] = model
            result[name][variant] = {
                "train_acc": accuracy(model, X_train, y_train),
                "test_acc": accuracy(model, X_test, y_test),
                "final_loss": history["loss"][-1],
            }
        result[name]["gap"] = result[name]["relu"]["test_acc"] - result[name]["linear"]["test_acc"]
    X_train, _, X_test, _ = splits["spirals"]
    linear_model = models[("spirals", "linear")]
    W, b = collapse_linear_stack(linear_model)
    with no_grad():
        stacked = linear_model(Tensor(X_test)).data.astype(np.float64)
    result["collapse"] = {
        "product_shape": list(W.shape),
        "max_abs_diff": float(np.abs(stacked - (X_test.astype(np.float64) @ W + b)).max()),
        "max_abs_output": float(np.abs(stacked).max()),
    }
    result["xor_least_squares"] = xor_least_squares(*splits["xor"][:2])
    result["seconds"] = time.perf_counter() - start
    if keep_models:
        result["models"], result["splits"] = models, splits
    return result


def initialisation_comparison(fast: bool = True, seed: int = 0, dataset: str = "spirals") -> dict:
    """Q03 / M08: the same ReLU MLP with N(0, 1) weights vs He (N(0, 2/fan_in)) weights, same Adam.

    Reports the std of the logits at initialisation, the initial loss (ln C is "knows nothing"), the
    number of full-batch steps until training accuracy first reaches 90% (None: not within the budget)
    and the final accuracies.
    """
    n, steps, hidden, lr = (1000, 300, 64, 1e-2) if fast else (2000, 1000, 64, 1e-2)
    X_train, y_train, X_test, y_test = load_split(dataset, n, seed)
    num_classes = int(y_train.max()) + 1
    result = {"dataset": dataset, "n": n, "max_steps": steps, "hidden": hidden, "lr": lr,
              "uniform_loss": math.log(num_classes)}
    for weight_init in ("normal", "he"):
        manual_seed(seed)
        model = make_mlp(2, hidden, num_classes, depth=3, activation=True, weight_init=weight_init)
        with no_grad():
            logits = model(Tensor(X_train)).data
        history = train_classifier(model, X_train, y_train, steps, lr, target_accuracy=0.9)
        result[weight_init] = {
            "logit_std": float(logits.std()),
            "initial_loss": history["loss"][0],
            "steps_to_90": history["steps_to_target"],
            "train_acc": accuracy(model, X_train, y_train),
            "test_acc": accuracy(model, X_test, y_test),
            "loss_curve": history["loss"],
            "accuracy_curve": history["accuracy"],
        }
    return result


def naive_softmax(x: np.ndarray) -> np.ndarray:
    """exp(x) / sum(exp(x)) over the last axis, computed in x's own dtype: the textbook formula (M07)."""
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def stable_softmax(x: np.ndarray) -> np.ndarray:
    """The same function after subtracting the row max: the largest exponent is exp(0) = 1."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _naive_fails(gap: float, dtype) -> bool:
    with np.errstate(all="ignore"):
        return not np.isfinite(naive_softmax(np.array([0.0, gap], dtype=dtype))).all()


def _first_failure(fails, low: float, high: float, iterations: int = 60) -> float:
    """Bisection for the boundary between fails(low) = False and fails(high) = True."""
    assert not fails(low) and fails(high)
    for _ in range(iterations):
        mid = (low + high) / 2
        low, high = (low, mid) if fails(mid) else (mid, high)
    return high


def softmax_overflow_gaps(max_gap: int = 10_000) -> dict:
    """For logits [0, g] in float64, float32 and float16: the smallest integer gap g (found by scanning
    0, 1, 2, ...) and the exact boundary (by bisection) at which the naive softmax returns inf/NaN, next
    to ln(max float) where exp overflows. Also: the stable softmax stays finite up to `max_gap`, and the
    naive one gives 0/0 = NaN when every logit is very negative (underflow)."""
    result = {}
    for dtype in (np.float64, np.float32, np.float16):
        name = np.dtype(dtype).name
        integer_gap = next(g for g in range(max_gap + 1) if _naive_fails(g, dtype))
        with np.errstate(all="ignore"):
            naive_at_gap = naive_softmax(np.array([0.0, integer_gap], dtype=dtype))
        stable_finite = all(
            np.isfinite(stable_softmax(np.array([0.0, g], dtype=dtype))).all()
            for g in (integer_gap, 10 * integer_gap, max_gap)
        )

        def underflows(depth, dtype=dtype):
            with np.errstate(all="ignore"):
                return not np.isfinite(naive_softmax(np.array([-depth, -depth - 1.0], dtype=dtype))).all()

        result[name] = {
            "integer_gap": integer_gap,
            "exact_gap": _first_failure(lambda g: _naive_fails(g, dtype), integer_gap - 1, integer_gap),
            "log_max": float(np.log(np.finfo(dtype).max.astype(np.float64))),
            "naive_at_gap": naive_at_gap.astype(np.float64).tolist(),
            "stable_at_gap": stable_softmax(np.array([0.0, integer_gap], dtype=dtype)).astype(np.float64).tolist(),
            "stable_finite": bool(stable_finite),
            "underflow_depth": next(d for d in range(max_gap + 1) if underflows(float(d))),
        }
    return result


def char_mlp_language_model(fast: bool = True, seed: int = 0, temperatures=(0.5, 1.0), sample_length: int = 200) -> dict:
    """The character MLP LM (Bengio et al. 2003) trained with the shared loop on the embedded corpus.

    Reports the loss at initialisation (should be ~ln V), train/val loss after training, the uniform
    baseline ln V, the loss curve and samples at a few temperatures.
    """
    from ..generation import generate
    from ..training import TrainConfig, build_model, estimate_loss, prepare_text_data, train_language_model

    config = TrainConfig(model="mlp", mlp_window=8, embed_dim=24, hidden_dim=256, context_size=32, batch_size=16,
                         lr=3e-3, min_lr=3e-4, weight_decay=0.01, seed=seed,
                         **(dict(max_chars=20_000, steps=300, eval_every=100, warmup_steps=30, eval_batches=10)
                            if fast else dict(steps=3000, eval_every=250, eval_batches=40)))
    # The untrained model the loop starts from: same seed, same construction order.
    data = prepare_text_data(config)
    manual_seed(config.seed)
    untrained = build_model(config, data.tokenizer.vocab_size)
    initial_train = estimate_loss(untrained, data.train_ids, config, np.random.default_rng([seed, 2, 0]))
    initial_val = estimate_loss(untrained, data.val_ids, config, np.random.default_rng([seed, 3, 0]))

    run = train_language_model(config, progress=False)
    prompt = run.val_ids[:config.mlp_window]
    samples = {temperature: run.tokenizer.decode(generate(run.model, prompt, sample_length, temperature=temperature,
                                                          seed=seed + 1))
               for temperature in temperatures}
    history = [{"step": 0, "train_loss": initial_train, "val_loss": initial_val}] + [
        {"step": r["step"], "train_loss": r["train_loss"], "val_loss": r["val_loss"]} for r in run.history
    ]
    return {
        "corpus_chars": len(data.train_ids) + len(data.val_ids),
        "vocab_size": run.tokenizer.vocab_size,
        "uniform_loss": math.log(run.tokenizer.vocab_size),
        "initial_train_loss": initial_train,
        "initial_val_loss": initial_val,
        "train_loss": run.final["train_loss"],
        "val_loss": run.final["val_loss"],
        "val_perplexity": math.exp(run.final["val_loss"]),
        "steps": config.steps,
        "parameters": run.model.num_parameters(),
        "history": history,
        "samples": samples,
        "seconds": run.seconds,
        "config": dict(vars(config)),
    }
