"""Chapter 9 experiments: post-training quantization of a trained GPT (Q20 experiment A, M35, M37).

`scheme_sweep` quantizes every Linear weight of the trained GPT under each scheme, int8 and int4 x symmetric
and affine x per tensor, per output channel and per group of 32, 64 and 128 columns, and reports the bytes
(of the Linear weights, and of the whole model, whose embeddings and LayerNorms stay float32: M37), the ratio
to float32, the validation perplexity with its change, and the KL divergence of the quantized model's
predictions from the float model's. The number of parameters never changes (M35).

`planted_outliers` builds the case that breaks W8A8 (int8 weights AND activations): inputs to one Linear
layer where a few features are 20-100x larger than the rest, in every row, as large Transformers grow them.
It reports the relative error of the product with a per-tensor activation scale, with per-row scales, and
with the outlier columns taken out and multiplied in float (compression/outlier_decomposition.py).

    python -m tinygrad_llm.experiments.quantization --checkpoint runs/gpt/checkpoint.npz    # the main job
    python -m tinygrad_llm.experiments.quantization --fast                                  # a small GPT, trained now

Every function returns plain numbers and lists; `fast=True` is the CI size.
"""
from __future__ import annotations

import argparse
import copy

import numpy as np

from ..autograd import no_grad
from ..compression import decomposed_matmul, quantize, quantize_tensor, w8a8_matmul
from ..compression.outlier_decomposition import LLM_INT8_THRESHOLD
from ..metrics import evaluate_language_model
from .pruning import trained_gpt

GROUP_SIZES = (32, 64, 128)
GRANULARITIES = [("tensor", None), ("channel", None)] + [("group", size) for size in GROUP_SIZES]
SCHEMES = [dict(bits=bits, symmetric=symmetric, granularity=granularity, group_size=group_size)
           for bits in (8, 4) for symmetric in (True, False) for granularity, group_size in GRANULARITIES]
OUTLIER_MAGNITUDES = (1.0, 20.0, 50.0, 100.0)


def scheme_name(bits: int, symmetric: bool, granularity: str, group_size: int | None) -> str:
    """e.g. 'int8 symmetric per channel', 'int4 affine per group 64'."""
    where = f"group {group_size}" if granularity == "group" else granularity
    return f"int{bits} {'symmetric' if symmetric else 'affine'} per {where}"


def log_probabilities(model, windows: np.ndarray) -> np.ndarray:
    """log p(next token) at every position of every window (B, T) -> (B, T, V), float32."""
    with no_grad():
        return model(windows).log_softmax(axis=-1).data


def kl_from_float(float_log_probs: np.ndarray, log_probs: np.ndarray) -> float:
    """Mean over positions of KL(p_float || p_quantized) in nats: how far quantization moved the predictions.
    Unlike a change of perplexity it has no sign, so rounding luck cannot make a worse model look better."""
    return float(np.mean(np.sum(np.exp(float_log_probs) * (float_log_probs - log_probs), axis=-1)))


def scheme_sweep(model, val_ids: np.ndarray, context_size: int, schemes=SCHEMES, batch_size: int = 32,
                 kl_windows: int = 64) -> dict:
    """The float32 model's perplexity and bytes, and one row per scheme: bytes (Linear weights and whole model),
    ratios to float32, perplexity and its relative change, and the KL divergence of the predictions from the
    float model's on the first `kl_windows` validation windows. `model` itself is left float."""
    def perplexity(candidate) -> float:
        return evaluate_language_model(candidate, val_ids, context_size, batch_size)["perplexity"]

    count = min(kl_windows, len(val_ids) // context_size)
    windows = val_ids[:count * context_size].reshape(count, context_size)
    float_perplexity, float_log_probs = perplexity(model), log_probabilities(model, windows)
    rows = []
    for scheme in schemes:
        quantized = copy.deepcopy(model)
        report = quantize(quantized, **scheme)
        linear = [row for row in report.rows if row.stored_as.startswith("int")]
        linear_before, linear_after = (sum(getattr(row, key) for row in linear) for key in ("bytes_before",
                                                                                           "bytes_after"))
        ppl = perplexity(quantized)
        rows.append({"scheme": scheme_name(**scheme), **scheme, "perplexity": ppl,
                     "perplexity_change": ppl / float_perplexity - 1,
                     "kl_from_float": kl_from_float(float_log_probs, log_probabilities(quantized, windows)),
                     "linear_bytes": linear_after, "linear_ratio": linear_before / linear_after,
                     "model_bytes": report.bytes_after, "model_ratio": report.bytes_before / report.bytes_after})
    return {"float_perplexity": float_perplexity, "float_bytes": sum(p.data.nbytes for p in model.parameters()),
            "parameters": model.num_parameters(), "rows": rows}


def planted_outlier_inputs(rows: int, features: int, outlier_features: int, magnitude: float,
                           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(x (rows, features) ~ N(0, 1) with `outlier_features` random columns scaled by `magnitude`, their indices)."""
    x = rng.standard_normal((rows, features)).astype(np.float32)
    columns = rng.choice(features, size=outlier_features, replace=False)
    x[:, columns] *= np.float32(magnitude)
    return x, np.sort(columns)


def relative_error(approximate: np.ndarray, exact: np.ndarray) -> float:
    """||approximate - exact|| / ||exact|| (Frobenius)."""
    return float(np.linalg.norm(approximate - exact) / np.linalg.norm(exact))


def planted_outliers(fast: bool = True, seed: int = 0, magnitudes=OUTLIER_MAGNITUDES, outlier_features: int = 4,
                     threshold: float = LLM_INT8_THRESHOLD) -> dict:
    """Relative error of x @ W.T under W8A8 with a per-tensor activation scale, per-row scales, and per-row scales
    with the outlier columns in float, for each outlier magnitude. Also: the fraction of the ORDINARY activations
    that a per-tensor int8 scale rounds to 0, and how many columns the threshold sends to float."""
    features, rows = (128, 32) if fast else (1024, 256)
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((features, features)) / np.sqrt(features)).astype(np.float32)  # a Linear(d, d)
    results = []
    for magnitude in magnitudes:
        x, columns = planted_outlier_inputs(rows, features, outlier_features, magnitude, rng)
        exact = x.astype(np.float64) @ w.T.astype(np.float64)
        ordinary = np.delete(quantize_tensor(x, 8, granularity="tensor").values, columns, axis=1)
        results.append({
            "magnitude": magnitude,
            "per_tensor": relative_error(w8a8_matmul(x, w, activations="tensor", weights="tensor"), exact),
            "per_row": relative_error(w8a8_matmul(x, w), exact),
            "outliers_in_float": relative_error(decomposed_matmul(x, w, threshold), exact),
            "ordinary_zeroed_per_tensor": float(np.mean(ordinary == 0)),
            "float_columns": int((np.abs(x) > threshold).any(axis=0).sum()),
        })
    return {"features": features, "rows": rows, "outlier_features": outlier_features, "threshold": threshold,
            "results": results}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tinygrad_llm.experiments.quantization", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="a GPT checkpoint written by `train` (default: train one)")
    parser.add_argument("--fast", action="store_true", help="the CI size: a small GPT and a small outlier layer")
    args = parser.parse_args(argv)
    trained = trained_gpt(fast=args.fast, checkpoint=args.checkpoint)
    sweep = scheme_sweep(trained["model"], trained["val_ids"], trained["config"].context_size)
    print(f"float32: perplexity {sweep['float_perplexity']:.4f}, {sweep['parameters']:,} parameters, "
          f"{sweep['float_bytes']:,} bytes (the parameter count is the same under every scheme)")
    print(f"{'scheme':<30} {'Linear bytes':>13} {'x smaller':>9} {'model bytes':>12} {'x smaller':>9} "
          f"{'perplexity':>10} {'change':>8} {'KL (nats)':>10}")
    for row in sweep["rows"]:
        print(f"{row['scheme']:<30} {row['linear_bytes']:>13,} {row['linear_ratio']:>9.2f} {row['model_bytes']:>12,} "
              f"{row['model_ratio']:>9.2f} {row['perplexity']:>10.4f} {row['perplexity_change']:>+8.2%} "
              f"{row['kl_from_float']:>10.2e}")
    outliers = planted_outliers(fast=args.fast)
    print(f"\nPlanted outliers: x ({outliers['rows']} x {outliers['features']}) with {outliers['outlier_features']} "
          f"features scaled up, through a Linear({outliers['features']}, {outliers['features']}); relative error of "
          f"x @ W.T (threshold {outliers['threshold']})")
    print(f"{'magnitude':>9} {'per tensor':>11} {'per row':>9} {'outliers float':>15} {'ordinary -> 0':>14} "
          f"{'float cols':>10}")
    for row in outliers["results"]:
        print(f"{row['magnitude']:>9.0f} {row['per_tensor']:>11.4%} {row['per_row']:>9.4%} "
              f"{row['outliers_in_float']:>15.4%} {row['ordinary_zeroed_per_tensor']:>14.1%} "
              f"{row['float_columns']:>10}")


if __name__ == "__main__":
    main()
