"""Layer normalisation over the last axis of a 2-D array (N, D), with scale w and shift b (D,).

forward:  x_hat = (x - mean) * rstd,  rstd = 1 / sqrt(var + eps)  (var the BIASED variance: divide by D)
          y = x_hat * w + b
backward: dw = sum over rows of g * x_hat,  db = sum over rows of g
          dx = rstd * (gx - mean(gx) - x_hat * mean(gx * x_hat)),  gx = g * w

The mean and rstd of each row are returned by the forward and reused by the backward.
"""
import numpy as np


def layer_norm_forward(x, weight, bias, eps=1e-5):
    """(y, mean (N,), rstd (N,))."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt(var + eps)
    y = (x - mean) * rstd * weight + bias
    return y.astype(x.dtype), mean[:, 0].astype(x.dtype), rstd[:, 0].astype(x.dtype)


def layer_norm_backward(g, x, weight, mean, rstd):
    """(dx, dweight, dbias)."""
    x_hat = (x - mean[:, None]) * rstd[:, None]
    gx = g * weight
    dx = rstd[:, None] * (gx - gx.mean(axis=-1, keepdims=True) - x_hat * (gx * x_hat).mean(axis=-1, keepdims=True))
    return dx.astype(x.dtype), (g * x_hat).sum(axis=0).astype(x.dtype), g.sum(axis=0).astype(x.dtype)
