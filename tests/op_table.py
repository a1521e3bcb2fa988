"""The one table of reference functions that drives the op checks in test_ops.py.

Each row (an `Op`) says, for one differentiable op:

- `name` and `arity` (how many tensor inputs; "n" for cat/stack);
- `lib`: the library version, taking Tensors (and keyword options);
- `ref`: the NumPy reference, taking arrays (and the same options): the plainest correct formula,
  written independently of the library's numerical tricks;
- `domain`: where the inputs' values come from, one `Domain` per input (or one for all): log and sqrt
  need positive inputs, relu/abs/clamp stay a margin away from their kinks, max/min draw distinct values
  on a coarse grid so that no tie sits within a finite-difference step;
- `cases`: a hypothesis strategy of `Case`s, i.e. the input shapes plus the op's options (axis,
  keepdims, an index, a split size...), drawn together because the options depend on the shapes;
- `torch`: the PyTorch equivalent, taking torch tensors (None where there is none).

Adding an op means adding a row: test_ops.py then checks its forward values against `ref` (float32,
contiguous and non-contiguous inputs), its backward with `tgl.testing.gradcheck` (float64) and, where
torch is installed, values and gradients against `torch`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_llm as tgl
from tinygrad_llm.nn import functional as F

MAX_SIDE = 4  # gradcheck runs two forward passes per input element: keep arrays small


# ------------------------------------------------------------------------------------------ domains
def _floats(low, high):
    return st.floats(low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False)


@dataclass(frozen=True)
class Domain:
    """The values an input may take; `arrays(shape)` is a hypothesis strategy of float64 (or bool) arrays."""

    description: str
    arrays: Callable[[tuple], st.SearchStrategy]

    def __repr__(self):
        return self.description


def real(low=-3.0, high=3.0) -> Domain:
    return Domain(f"real[{low}, {high}]", lambda shape: hnp.arrays(np.float64, shape, elements=_floats(low, high)))


def positive(low=0.1, high=5.0) -> Domain:
    return real(low, high)


def away_from(*points, margin=0.02, low=-3.0, high=3.0) -> Domain:
    """Values at least `margin` from every kink in `points` (so x +- h never crosses one)."""
    elements = _floats(low, high).filter(lambda v: all(abs(v - p) >= margin for p in points))
    return Domain(f"real[{low}, {high}] away from {points}", lambda shape: hnp.arrays(np.float64, shape, elements=elements))


def distinct(low=-3.0, high=3.0, step=1 / 64) -> Domain:
    """Distinct values on a grid (step is exact in float32): no ties for max/min to split the gradient between."""
    grid = st.integers(int(low / step), int(high / step)).map(lambda k: k * step)
    return Domain(f"distinct multiples of {step} in [{low}, {high}]",
                  lambda shape: hnp.arrays(np.float64, shape, elements=grid, unique=True))


def float32_exact(low=-4.0, high=4.0, step=1 / 64) -> Domain:
    """Grid values exact in float32, for casts: with gradcheck's step also on the grid, x +- h is exact too."""
    grid = st.integers(int(low / step), int(high / step)).map(lambda k: k * step)
    return Domain(f"multiples of {step} in [{low}, {high}]", lambda shape: hnp.arrays(np.float64, shape, elements=grid))


BOOLEAN = Domain("bool", lambda shape: hnp.arrays(np.bool_, shape))


# ------------------------------------------------------------------------------------------ cases
@dataclass
class Case:
    """The input shapes of one example, and the op's options (passed as keyword arguments)."""

    shapes: tuple
    options: dict = field(default_factory=dict)


def unary(min_dims=0, max_dims=3, min_side=0, options=None) -> st.SearchStrategy:
    """Any shape, including 0-d and size-0/size-1 dimensions."""
    shapes = hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=MAX_SIDE)
    return st.builds(lambda s, o: Case((s,), o), shapes, options if options is not None else st.just({}))


def broadcasting(num_shapes=2, options=None) -> st.SearchStrategy:
    shapes = hnp.mutually_broadcastable_shapes(num_shapes=num_shapes, min_dims=0, max_dims=3, min_side=0, max_side=MAX_SIDE)
    return st.builds(lambda s, o: Case(tuple(s.input_shapes), o), shapes, options if options is not None else st.just({}))


def matmul_shapes() -> st.SearchStrategy:
    """2-D, batched, broadcast batch dims, and 1-D operands (the `?` dimensions of NumPy's matmul signature)."""
    def shapes(min_side):
        return hnp.mutually_broadcastable_shapes(
            signature="(m?,n),(n,p?)->(m?,p?)", min_dims=0, max_dims=2, min_side=min_side, max_side=MAX_SIDE
        )

    # size-0 sides are worth checking, but drawn everywhere they would make most examples empty
    return st.one_of(shapes(min_side=1), shapes(min_side=0)).map(lambda s: Case(tuple(s.input_shapes)))


@st.composite
def axis_and_keepdims(draw, ndim: int) -> dict:
    """axis as None, an int (negative allowed) or a non-empty tuple; keepdims True/False."""
    choices = [st.none()]
    if ndim:
        choices += [st.integers(-ndim, ndim - 1), hnp.valid_tuple_axes(ndim, min_size=1)]
    return {"axis": draw(st.one_of(*choices)), "keepdims": draw(st.booleans())}


@st.composite
def reduction(draw, min_side=0, min_dims=0) -> Case:
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=3, min_side=min_side, max_side=MAX_SIDE))
    return Case((shape,), draw(axis_and_keepdims(len(shape))))


@st.composite
def along_axis(draw) -> Case:
    """softmax/log_softmax: one axis, which must be non-empty (other axes may have size 0)."""
    shape = list(draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=MAX_SIDE)))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    shape[axis] = max(shape[axis], 1)
    return Case((tuple(shape),), {"axis": axis})


@st.composite
def reshape_case(draw) -> Case:
    """A target with the same number of elements: the input's prime factors regrouped, maybe one -1."""
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))
    factors = [p for n in shape for p in _prime_factors(n)]
    factors = draw(st.permutations(factors + [1] * draw(st.integers(0, 2))))
    cuts = sorted(draw(st.lists(st.integers(0, len(factors)), max_size=3)))
    groups = [factors[a:b] for a, b in zip([0] + cuts, cuts + [len(factors)])]
    target = [math.prod(g) for g in groups if g]  # [] only for a 0-d input: shape () holds one element
    if target and math.prod(shape) > 0 and draw(st.booleans()):
        target[draw(st.integers(0, len(target) - 1))] = -1
    return Case((shape,), {"shape": tuple(target)})


def _prime_factors(n):
    if n <= 1:
        return [n]
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


@st.composite
def flatten_case(draw) -> Case:
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=3))
    ndim = len(shape)
    start = draw(st.integers(0, ndim - 1))
    end = draw(st.integers(start, ndim - 1))
    # negative spellings of the same axes
    start = start - ndim if draw(st.booleans()) else start
    end = end - ndim if draw(st.booleans()) else end
    return Case((shape,), {"start": start, "end": end})


@st.composite
def squeeze_case(draw) -> Case:
    shape = draw(st.lists(st.sampled_from([0, 1, 1, 2, 3]), min_size=0, max_size=4).map(tuple))
    ones = [i for i, n in enumerate(shape) if n == 1]
    choices = [st.none()]
    if ones:
        choices += [st.sampled_from(ones + [i - len(shape) for i in ones]),
                    st.lists(st.sampled_from(ones), min_size=1, unique=True).map(tuple)]
    return Case((shape,), {"axis": draw(st.one_of(*choices))})


@st.composite
def unsqueeze_case(draw) -> Case:
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=MAX_SIDE))
    return Case((shape,), {"axis": draw(st.integers(-len(shape) - 1, len(shape)))})


@st.composite
def transpose_case(draw) -> Case:
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=MAX_SIDE))
    axes = st.integers(-len(shape), len(shape) - 1)
    return Case((shape,), {"axis0": draw(axes), "axis1": draw(axes)})


@st.composite
def permute_case(draw) -> Case:
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=3))
    return Case((shape,), {"axes": tuple(draw(st.permutations(range(len(shape)))))})


@st.composite
def expand_case(draw) -> Case:
    """A target the input broadcasts to (new leading dims, size-1 dims grown); -1 keeps an existing size."""
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=MAX_SIDE))
    other = draw(hnp.broadcastable_shapes(shape, min_dims=0, max_dims=4, min_side=0, max_side=MAX_SIDE))
    target = list(np.broadcast_shapes(shape, other))
    offset = len(target) - len(shape)
    keep = [i for i in range(offset, len(target)) if target[i] == shape[i - offset]]
    for i in draw(st.lists(st.sampled_from(keep), unique=True)) if keep else []:
        target[i] = -1
    return Case((shape,), {"shape": tuple(target)})


@st.composite
def basic_index_case(draw) -> Case:
    """Integers, slices (negative steps included), None and Ellipsis."""
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=MAX_SIDE))
    index = draw(hnp.basic_indices(shape, min_dims=0, allow_newaxis=True, allow_ellipsis=True))
    return Case((shape,), {"index": index})


@st.composite
def integer_array_index_case(draw) -> Case:
    """Integer arrays that pick some element twice, so backward must scatter-ADD (np.add.at), not assign."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=MAX_SIDE))
    if draw(st.booleans()):
        axis = draw(st.integers(0, len(shape) - 1))
        n = shape[axis]
        ids = draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=5))
        ids = draw(st.permutations(ids + [ids[0]]))  # a guaranteed repeat
        shape_of_ids = draw(st.sampled_from([(len(ids),), (1, len(ids))] + ([(2, len(ids) // 2)] if len(ids) % 2 == 0 else [])))
        index = (slice(None),) * axis + (np.array(ids, dtype=np.int64).reshape(shape_of_ids),)
    else:
        index = draw(hnp.integer_array_indices(shape, result_shape=hnp.array_shapes(min_dims=1, max_dims=2, min_side=2, max_side=4)))
    return Case((shape,), {"index": index})


@st.composite
def boolean_mask_case(draw) -> Case:
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=MAX_SIDE))
    k = draw(st.integers(1, len(shape)))
    return Case((shape,), {"index": draw(hnp.arrays(np.bool_, shape[:k]))})


@st.composite
def cat_case(draw) -> Case:
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=3))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    sizes = draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
    shapes = tuple(shape[:axis % len(shape)] + (n,) + shape[axis % len(shape) + 1:] for n in sizes)
    return Case(shapes, {"axis": axis})


@st.composite
def stack_case(draw) -> Case:
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))
    count = draw(st.integers(1, 3))
    return Case((shape,) * count, {"axis": draw(st.integers(-len(shape) - 1, len(shape)))})


@st.composite
def split_case(draw) -> Case:
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    length = shape[axis]
    if draw(st.booleans()):
        sections = draw(st.integers(1, length))
    else:
        cuts = sorted(draw(st.lists(st.integers(0, length), max_size=3)))
        sections = [b - a for a, b in zip([0] + cuts, cuts + [length])]
    return Case((shape,), {"sections": sections, "axis": axis})


@st.composite
def masked_fill_case(draw) -> Case:
    """The mask broadcasts to the input's shape (a suffix of it, some dims set to 1)."""
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=MAX_SIDE))
    suffix = list(shape[len(shape) - draw(st.integers(0, len(shape))):])
    mask_shape = tuple(1 if draw(st.booleans()) else n for n in suffix)
    return Case((shape, mask_shape), {"value": draw(st.sampled_from([0.0, -2.5, 1e4]))})


def _options(**strategies):
    return st.fixed_dictionaries(strategies)


# ------------------------------------------------------------------------------------------ references
def _gelu_ref(x, approximate):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return (0.5 * x * (1 + erf(x / math.sqrt(2)))).astype(x.dtype)


def _count(shape, axis):
    axes = range(len(shape)) if axis is None else (axis,) if isinstance(axis, int) else axis
    return math.prod(shape[a] for a in axes)


def _flatten_ref(x, start, end):
    if x.ndim == 0:
        return x.reshape(1)
    start, end = start % x.ndim, end % x.ndim
    return x.reshape(x.shape[:start] + (math.prod(x.shape[start:end + 1]),) + x.shape[end + 1:])


def _split_ref(x, sections, axis):
    length = x.shape[axis]
    sizes = [sections] * (length // sections) + ([length % sections] if length % sections else []) if isinstance(sections, int) else sections
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


def _expand_ref(x, shape):
    offset = len(shape) - x.ndim
    return np.broadcast_to(x, tuple(x.shape[i - offset] if n == -1 else n for i, n in enumerate(shape)))


# ------------------------------------------------------------------------------------------ torch versions
def _torch():
    import torch

    return torch


def _dims(x, axis):
    """torch spelling of a NumPy axis: None means every dimension."""
    return tuple(range(x.dim())) if axis is None else axis


def _torch_index(x, index):
    """NumPy indices in torch. torch has no negative slice steps, so basic indices become a gather of the
    flat positions NumPy selects (still differentiated by torch's own index backward)."""
    torch = _torch()
    parts = index if isinstance(index, tuple) else (index,)
    if any(isinstance(p, slice) and p.step is not None and p.step < 0 for p in parts):
        positions = np.arange(x.numel()).reshape(tuple(x.shape))[index]
        return x.reshape(-1)[torch.as_tensor(positions.copy())]
    return x[tuple(torch.as_tensor(p) if isinstance(p, np.ndarray) else p for p in parts)]


def _torch_split(x, sections, axis):
    return x.split(sections, dim=axis)


# ------------------------------------------------------------------------------------------ the table
@dataclass(frozen=True)
class Op:
    name: str
    arity: int | str
    lib: Callable[..., Any]
    ref: Callable[..., Any]
    domain: Domain | tuple
    cases: st.SearchStrategy
    torch: Callable[..., Any] | None = None
    marks: tuple = ()
    gradcheck_eps: float = 1e-6
    rtol: float = 1e-5  # float32 forward tolerances against the NumPy reference
    atol: float = 1e-5

    def domain_of(self, i: int) -> Domain:
        return self.domain[i] if isinstance(self.domain, tuple) else self.domain

    def __repr__(self):
        return f"Op({self.name})"


NONZERO = away_from(0.0, margin=0.5)
T = _torch  # short alias inside the lambdas below

TABLE = [
    # -------------------------------------------------------------- arithmetic (broadcasting)
    Op("add", 2, lambda a, b: a + b, np.add, real(), broadcasting(), lambda a, b: a + b),
    Op("sub", 2, lambda a, b: a - b, np.subtract, real(), broadcasting(), lambda a, b: a - b),
    Op("mul", 2, lambda a, b: a * b, np.multiply, real(), broadcasting(), lambda a, b: a * b),
    Op("div", 2, lambda a, b: a / b, np.divide, (real(), NONZERO), broadcasting(), lambda a, b: a / b),
    Op("neg", 1, lambda a: -a, np.negative, real(), unary(), lambda a: -a),
    Op("scalar_rsub", 1, lambda a, c: c - a, lambda a, c: c - a, real(),
       unary(options=_options(c=_floats(-2, 2))), lambda a, c: c - a),
    Op("scalar_rdiv", 1, lambda a, c: c / a, lambda a, c: c / a, NONZERO,
       unary(options=_options(c=_floats(-2, 2))), lambda a, c: c / a),
    Op("pow_scalar", 1, lambda a, p: a**p, lambda a, p: a**p, positive(0.2, 3.0),
       unary(options=_options(p=st.sampled_from([2, 3, -1, 0.5, -1.5, 2.5, 1 / 3]))), lambda a, p: a**p),
    Op("pow_tensor", 2, lambda a, b: a**b, np.power, (positive(0.3, 2.5), real(-2, 2)), broadcasting(), lambda a, b: a**b),
    Op("rpow_scalar", 1, lambda a, c: c**a, lambda a, c: c**a, real(-2, 2),
       unary(options=_options(c=st.sampled_from([0.5, 2.0, math.e]))), lambda a, c: c**a),
    Op("matmul", 2, lambda a, b: a @ b, np.matmul, real(-2, 2), matmul_shapes(), lambda a, b: a @ b, rtol=1e-4),
    # -------------------------------------------------------------- elementwise
    Op("exp", 1, lambda a: a.exp(), np.exp, real(), unary(), lambda a: a.exp()),
    Op("log", 1, lambda a: a.log(), np.log, positive(), unary(), lambda a: a.log()),
    Op("sqrt", 1, lambda a: a.sqrt(), np.sqrt, positive(), unary(), lambda a: a.sqrt()),
    Op("abs", 1, lambda a: a.abs(), np.abs, away_from(0.0), unary(), lambda a: a.abs()),
    Op("tanh", 1, lambda a: a.tanh(), np.tanh, real(), unary(), lambda a: a.tanh()),
    Op("sigmoid", 1, lambda a: a.sigmoid(), lambda a: 1 / (1 + np.exp(-a)), real(-6, 6), unary(), lambda a: a.sigmoid()),
    Op("relu", 1, lambda a: a.relu(), lambda a: np.maximum(a, 0), away_from(0.0), unary(), lambda a: a.relu()),
    Op("gelu", 1, lambda a: a.gelu(), lambda a: _gelu_ref(a, "none"), real(-4, 4), unary(),
       lambda a: T().nn.functional.gelu(a)),
    Op("gelu_tanh", 1, lambda a: a.gelu(approximate="tanh"), lambda a: _gelu_ref(a, "tanh"), real(-4, 4), unary(),
       lambda a: T().nn.functional.gelu(a, approximate="tanh")),
    Op("clamp", 1, lambda a, low, high: a.clamp(min=low, max=high), lambda a, low, high: np.clip(a, low, high),
       away_from(-0.5, 0.5), unary(options=st.sampled_from([(-0.5, 0.5), (-0.5, None), (None, 0.5)]).map(
           lambda b: {"low": b[0], "high": b[1]})),
       lambda a, low, high: a.clamp(min=low, max=high)),
    # -------------------------------------------------------------- casts (linear, so any finite-difference step is exact)
    Op("float", 1, lambda a: a.float(), lambda a: a.astype(np.float32), float32_exact(), unary(),
       lambda a: a.float(), gradcheck_eps=1 / 64),
    Op("double", 1, lambda a: a.double(), lambda a: a.astype(np.float64), float32_exact(), unary(),
       lambda a: a.double(), gradcheck_eps=1 / 64),
    Op("astype_flip", 1, lambda a: a.astype(np.float64 if a.dtype == np.float32 else np.float32),
       lambda a: a.astype(np.float64 if a.dtype == np.float32 else np.float32), float32_exact(), unary(),
       lambda a: a.double() if a.dtype == T().float32 else a.float(), gradcheck_eps=1 / 64),
    # -------------------------------------------------------------- reductions (axis: None / int / tuple, keepdims)
    Op("sum", 1, lambda a, axis, keepdims: a.sum(axis=axis, keepdims=keepdims),
       lambda a, axis, keepdims: np.sum(a, axis=axis, keepdims=keepdims), real(), reduction(),
       lambda a, axis, keepdims: a.sum(dim=_dims(a, axis), keepdim=keepdims)),
    Op("mean", 1, lambda a, axis, keepdims: a.mean(axis=axis, keepdims=keepdims),
       lambda a, axis, keepdims: np.mean(a, axis=axis, keepdims=keepdims), real(), reduction(min_side=1),
       lambda a, axis, keepdims: a.mean(dim=_dims(a, axis), keepdim=keepdims)),
    Op("max", 1, lambda a, axis, keepdims: a.max(axis=axis, keepdims=keepdims),
       lambda a, axis, keepdims: np.max(a, axis=axis, keepdims=keepdims), distinct(), reduction(min_side=1),
       lambda a, axis, keepdims: a.amax(dim=_dims(a, axis), keepdim=keepdims)),
    Op("min", 1, lambda a, axis, keepdims: a.min(axis=axis, keepdims=keepdims),
       lambda a, axis, keepdims: np.min(a, axis=axis, keepdims=keepdims), distinct(), reduction(min_side=1),
       lambda a, axis, keepdims: a.amin(dim=_dims(a, axis), keepdim=keepdims)),
    Op("var_correction0", 1, lambda a, axis, keepdims: a.var(axis=axis, keepdims=keepdims, correction=0),
       lambda a, axis, keepdims: np.var(a, axis=axis, keepdims=keepdims, ddof=0), real(), reduction(min_side=1),
       lambda a, axis, keepdims: a.var(dim=_dims(a, axis), keepdim=keepdims, correction=0), rtol=1e-4),
    Op("var_correction1", 1, lambda a, axis, keepdims: a.var(axis=axis, keepdims=keepdims, correction=1),
       lambda a, axis, keepdims: np.var(a, axis=axis, keepdims=keepdims, ddof=1), real(), reduction(min_side=2, min_dims=1),
       lambda a, axis, keepdims: a.var(dim=_dims(a, axis), keepdim=keepdims, correction=1), rtol=1e-4),
    Op("logsumexp", 1, lambda a, axis, keepdims: a.logsumexp(axis=axis, keepdims=keepdims),
       lambda a, axis, keepdims: np.log(np.sum(np.exp(a), axis=axis, keepdims=keepdims)), real(), reduction(min_side=1),
       lambda a, axis, keepdims: a.logsumexp(dim=_dims(a, axis), keepdim=keepdims)),
    # -------------------------------------------------------------- movement
    Op("reshape", 1, lambda a, shape: a.reshape(shape), lambda a, shape: a.reshape(shape), real(), reshape_case(),
       lambda a, shape: a.reshape(shape)),
    Op("view", 1, lambda a, shape: a.view(*shape), lambda a, shape: a.reshape(shape), real(), reshape_case(),
       lambda a, shape: a.reshape(shape)),
    Op("flatten", 1, lambda a, start, end: a.flatten(start, end), _flatten_ref, real(), flatten_case(),
       lambda a, start, end: a.flatten(start, end)),
    Op("squeeze", 1, lambda a, axis: a.squeeze(axis), lambda a, axis: np.squeeze(a, axis), real(), squeeze_case(),
       lambda a, axis: a.squeeze() if axis is None else a.squeeze(axis)),
    Op("unsqueeze", 1, lambda a, axis: a.unsqueeze(axis), lambda a, axis: np.expand_dims(a, axis), real(), unsqueeze_case(),
       lambda a, axis: a.unsqueeze(axis)),
    Op("transpose", 1, lambda a, axis0, axis1: a.transpose(axis0, axis1), lambda a, axis0, axis1: np.swapaxes(a, axis0, axis1),
       real(), transpose_case(), lambda a, axis0, axis1: a.transpose(axis0, axis1)),
    Op("permute", 1, lambda a, axes: a.permute(*axes), lambda a, axes: np.transpose(a, axes), real(), permute_case(),
       lambda a, axes: a.permute(axes)),
    Op("T", 1, lambda a: a.T, lambda a: a.T, real(), unary(), lambda a: a.permute(tuple(reversed(range(a.dim()))))),
    Op("expand", 1, lambda a, shape: a.expand(*shape), _expand_ref, real(), expand_case(), lambda a, shape: a.expand(shape)),
    # -------------------------------------------------------------- indexing
    Op("index_basic", 1, lambda a, index: a[index], lambda a, index: a[index], real(), basic_index_case(), _torch_index),
    Op("index_int_array", 1, lambda a, index: a[index], lambda a, index: a[index], real(), integer_array_index_case(),
       _torch_index),
    Op("index_bool_mask", 1, lambda a, index: a[tgl.tensor(index)], lambda a, index: a[index], real(), boolean_mask_case(),
       _torch_index),
    # -------------------------------------------------------------- several tensors
    Op("cat", "n", lambda *ts, axis: tgl.cat(ts, axis=axis), lambda *xs, axis: np.concatenate(xs, axis=axis), real(),
       cat_case(), lambda *ts, axis: T().cat(ts, dim=axis)),
    Op("stack", "n", lambda *ts, axis: tgl.stack(ts, axis=axis), lambda *xs, axis: np.stack(xs, axis=axis), real(),
       stack_case(), lambda *ts, axis: T().stack(ts, dim=axis)),
    Op("split", 1, lambda a, sections, axis: a.split(sections, axis=axis), _split_ref, real(), split_case(), _torch_split),
    Op("where", 3, lambda c, a, b: tgl.where(c, a, b), np.where, (BOOLEAN, real(), real()), broadcasting(3),
       lambda c, a, b: T().where(c, a, b)),
    Op("masked_fill", 2, lambda a, mask, value: a.masked_fill(mask, value),
       lambda a, mask, value: np.where(mask, np.asarray(value, a.dtype), a), (real(), BOOLEAN), masked_fill_case(),
       lambda a, mask, value: a.masked_fill(mask, value)),
    # -------------------------------------------------------------- nn.functional
    Op("softmax", 1, lambda a, axis: F.softmax(a, axis=axis),
       lambda a, axis: np.exp(a) / np.exp(a).sum(axis=axis, keepdims=True), real(), along_axis(),
       lambda a, axis: a.softmax(dim=axis), marks=(pytest.mark.mlp,)),
    Op("log_softmax", 1, lambda a, axis: F.log_softmax(a, axis=axis),
       lambda a, axis: a - np.log(np.exp(a).sum(axis=axis, keepdims=True)), real(), along_axis(),
       lambda a, axis: a.log_softmax(dim=axis), marks=(pytest.mark.mlp,)),
]

assert len({op.name for op in TABLE}) == len(TABLE), "op names must be unique (they are the test ids)"


BY_NAME = {op.name: op for op in TABLE}


def params(where=lambda op: True):
    """Op names as pytest parameters (look the row up in BY_NAME), with each op's own chapter marks.

    Names rather than rows keep hypothesis' failure reports short: `name='matmul'`.
    """
    return [pytest.param(op.name, id=op.name, marks=op.marks) for op in TABLE if where(op)]
