"""Quantize a whole model: every Linear layer's weight becomes int8 or int4, and a report says what did not.

    report = quantize(model, bits=8)            # in place: copy.deepcopy(model) first to keep the float one
    print(report.table())

Only Linear weights become integers (M37): they are the matrix products, nearly all of a Transformer's
bytes and time. What stays float, and why, is listed in the report, one row per stored array:
- embeddings and learned positions: looked up row by row, not multiplied; a tied LM head is the token
  embedding itself (one shared array), so it stays float with it;
- LayerNorm scales and shifts, and every bias: O(d) numbers next to O(d^2), and added after the product;
- weights used by other layers (a recurrent cell's matrices, called through F.linear, not a Linear): this
  function replaces Linear modules only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..nn.layers import Linear
from ..nn.module import Module
from ..nn.parameter import Parameter
from .quantized_linear import QuantizedLinear

KEPT_FLOAT_BECAUSE = {  # by layer class name
    "Embedding": "a lookup table: rows are copied out, not multiplied",
    "LearnedPositionalEmbedding": "a lookup table of positions: rows are added, not multiplied",
    "LayerNorm": "normalisation scale and shift: d numbers each, kept exact",
}
NOT_A_LINEAR = "not a Linear layer: only Linear weights are quantized"
BIAS = "added after the product: one float per output"
QUANTIZED = "a matrix product's weight: integers + float32 scales"
# What `sample --quantize` and `quantize --bits` mean by default: int8 per output channel; int4 per group of 64
# columns (15 levels make a per-row step coarse; a float32 scale per 64 weights costs 4 bytes per 32 of integers).
PRESETS = {
    "int8": dict(bits=8, symmetric=True, granularity="channel", group_size=None),
    "int4": dict(bits=4, symmetric=True, granularity="group", group_size=64),
}


@dataclass
class CoverageRow:
    """One stored array: where it is, its layer's type, how it is kept, why, and its bytes before and after."""
    name: str
    layer_type: str
    stored_as: str
    reason: str
    bytes_before: int
    bytes_after: int


@dataclass
class QuantizationReport:
    rows: list = field(default_factory=list)

    @property
    def bytes_before(self) -> int:
        return sum(row.bytes_before for row in self.rows)

    @property
    def bytes_after(self) -> int:
        return sum(row.bytes_after for row in self.rows)

    @property
    def quantized_layers(self) -> list:
        return [row.name.rsplit(".", 1)[0] for row in self.rows if row.stored_as.startswith("int")]

    def table(self) -> str:
        """The rows and the totals as text, for a terminal."""
        width, type_width = (max(len(getattr(row, key)) for row in self.rows) for key in ("name", "layer_type"))
        lines = [f"{'array':<{width}}  {'layer':<{type_width}}  {'stored as':<34} {'bytes':>20}  why"]
        for row in self.rows:
            change = f"{row.bytes_before:,} -> {row.bytes_after:,}"
            lines.append(f"{row.name:<{width}}  {row.layer_type:<{type_width}}  {row.stored_as:<34} {change:>20}  "
                         f"{row.reason}")
        quantized_bytes = sum(row.bytes_before for row in self.rows if row.stored_as.startswith("int"))
        lines.append(f"total: {self.bytes_before:,} -> {self.bytes_after:,} bytes "
                     f"({self.bytes_before / self.bytes_after:.2f}x smaller); {len(self.quantized_layers)} Linear "
                     f"layers quantized, holding {quantized_bytes / self.bytes_before:.1%} of the float32 bytes")
        return "\n".join(lines)


def quantize(model: Module, bits: int = 8, symmetric: bool = True, granularity: str = "channel",
             group_size: int | None = None, activations: str = "int16") -> QuantizationReport:
    """Replace every Linear of `model` (any Module tree) by a QuantizedLinear, in place; returns the coverage report.

    A Linear whose weight is shared with another layer (a tied LM head) stays float. granularity='group' needs
    group_size; a layer whose in_features it does not divide uses the largest divisor of in_features below it,
    even for int4 (shown in the report's `stored_as`). activations: how the layers multiply (QuantizedLinear):
    'int16' rounds each row of x to int16 and sums integers (fast), 'float32' converts the weights instead.
    """
    if granularity == "group" and group_size is None:
        raise ValueError("quantize: granularity='group' needs a group_size (32, 64 or 128 are usual)")
    if isinstance(model, Linear):
        raise ValueError("quantize: the model is one Linear layer, which cannot replace itself in place; use "
                         "QuantizedLinear.from_linear(layer, ...)")
    owners, parents, report = parameter_owners(model), module_parents(model), QuantizationReport()
    for name, module in list(model.named_modules()):
        for attribute, parameter in list(vars(module).items()):
            if not isinstance(parameter, Parameter):
                continue
            array_name = f"{name}.{attribute}" if name else attribute
            others = [owner for owner in owners[id(parameter)] if owner != array_name]
            if isinstance(module, Linear) and attribute == "weight" and not others:
                report.rows.append(_quantize_linear(name, module, parents[name], bits, symmetric, granularity,
                                                    group_size, activations))
                continue
            counted = owners[id(parameter)][0] == array_name  # a shared array's bytes count once, at its first name
            report.rows.append(CoverageRow(array_name, type(module).__name__, str(parameter.dtype),
                                           _why_float(module, attribute, others, counted),
                                           parameter.data.nbytes * counted, parameter.data.nbytes * counted))
    return report


def _quantize_linear(name, linear, parent, bits, symmetric, granularity, group_size, activations) -> CoverageRow:
    """Put a QuantizedLinear in the Linear's place; its weight's report row."""
    layer_group = _fit_group_size(linear.in_features, group_size, bits) if granularity == "group" else None
    try:
        quantized = QuantizedLinear.from_linear(linear, bits, symmetric, granularity, layer_group, activations)
    except ValueError as error:
        raise ValueError(f"quantize: layer {name!r} ({linear!r}): {error}") from error
    replace_child(parent, linear, quantized)
    return CoverageRow(f"{name}.weight", "Linear", quantized.weight.describe(), QUANTIZED,
                       linear.weight.data.nbytes, quantized.weight.nbytes)


def _why_float(module, attribute, others, counted) -> str:
    if isinstance(module, Linear):
        if attribute == "bias":
            return BIAS
        return f"the same array as {', '.join(others)} (tied): stays float with it" + ("" if counted else
                                                                                     ", its bytes counted there")
    reason = KEPT_FLOAT_BECAUSE.get(type(module).__name__, NOT_A_LINEAR)
    return reason + (f"; also the weight of {', '.join(others)} (tied)" if others else "")


def _fit_group_size(in_features: int, group_size: int, bits: int) -> int:
    """group_size if it divides in_features, else the largest divisor of in_features below it (even for int4, so
    a group fills whole bytes; in_features itself when there is none: then int4 must refuse an odd K anyway)."""
    step = 2 if bits == 4 else 1
    fits = [g for g in range(step, min(group_size, in_features) + 1, step) if in_features % g == 0]
    return max(fits, default=in_features)


def parameter_owners(model: Module) -> dict:
    """id(parameter) -> every dotted name it is stored under, in named_modules order (two for a tied weight)."""
    owners = {}
    for name, module in model.named_modules():
        for attribute, value in vars(module).items():
            if isinstance(value, Parameter):
                owners.setdefault(id(value), []).append(f"{name}.{attribute}" if name else attribute)
    return owners


def module_parents(model: Module) -> dict:
    """dotted module name -> the module that holds it (lists, Sequential and ModuleList included)."""
    return {f"{name}.{child_name}" if name else child_name: module
            for name, module in model.named_modules() for child_name, _ in module.named_children()}


def replace_child(parent: Module, old: Module, new: Module) -> None:
    """Put `new` where `parent` keeps `old`: an attribute, or an entry of a list or tuple attribute."""
    for attribute, value in vars(parent).items():
        if value is old:
            setattr(parent, attribute, new)
            return
        if isinstance(value, (list, tuple)) and any(item is old for item in value):
            replaced = [new if item is old else item for item in value]
            setattr(parent, attribute, type(value)(replaced) if isinstance(value, tuple) else replaced)
            return
    raise ValueError(f"replace_child: {type(parent).__name__} does not hold {old!r} as an attribute or list entry")
