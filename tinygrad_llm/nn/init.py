"""Weight initialisation, in place on a parameter, from the library's seeded generator.

The scale matters: with N(0, 1) weights each layer multiplies the activation variance by fan_in, so
after a few layers activations explode and softmaxes saturate. Xavier/Glorot keeps the variance about
constant for tanh-like layers (Var = 2 / (fan_in + fan_out)); He/Kaiming for ReLU (Var = 2 / fan_in,
because ReLU zeroes half the signal).
"""
import math

import numpy as np

from ..random import generator


def _fans(shape):
    if len(shape) < 2:
        raise ValueError(f"fan in/out need a weight with at least 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive  # (out, in, ...) layout, as Linear stores it


def _fill(param, values):
    param.data[...] = values
    return param


def zeros_(param):
    return _fill(param, 0)


def ones_(param):
    return _fill(param, 1)


def constant_(param, value):
    return _fill(param, value)


def uniform_(param, low=0.0, high=1.0):
    return _fill(param, generator().uniform(low, high, param.shape))


def normal_(param, mean=0.0, std=1.0):
    return _fill(param, generator().normal(mean, std, param.shape))


def xavier_uniform_(param, gain=1.0):
    fan_in, fan_out = _fans(param.shape)
    bound = gain * math.sqrt(6 / (fan_in + fan_out))
    return uniform_(param, -bound, bound)


def xavier_normal_(param, gain=1.0):
    fan_in, fan_out = _fans(param.shape)
    return normal_(param, 0.0, gain * math.sqrt(2 / (fan_in + fan_out)))


def kaiming_uniform_(param, gain=math.sqrt(2)):
    """He initialisation for ReLU layers (gain sqrt(2)); Linear's default uses gain 1/sqrt(3) like PyTorch."""
    fan_in, _ = _fans(param.shape)
    bound = gain * math.sqrt(3 / fan_in)
    return uniform_(param, -bound, bound)


def kaiming_normal_(param, gain=math.sqrt(2)):
    fan_in, _ = _fans(param.shape)
    return normal_(param, 0.0, gain / math.sqrt(fan_in))


def orthogonal_(param, gain=1.0):
    """A (scaled) orthogonal matrix: every singular value is `gain`, so repeated multiplication (an RNN's
    recurrent weight) neither explodes nor vanishes at initialisation."""
    rows, cols = param.shape[0], int(np.prod(param.shape[1:]))
    a = generator().standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))  # make the decomposition unique, so the distribution is uniform
    q = q if rows >= cols else q.T
    return _fill(param, gain * q.reshape(param.shape))
