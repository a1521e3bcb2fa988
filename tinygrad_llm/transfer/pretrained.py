"""save_pretrained and from_pretrained: reuse a base model's weights under a new head (Q27, M49).

    save_pretrained(model, "mlm.npz", tokenizer)                     a base model, or a ModelWithHead
    model, report = from_pretrained("mlm.npz", head="sequence_classification", strict=False, num_classes=2)

One .npz file through tinygrad_llm/checkpoint.py (atomic write, loaded with allow_pickle=False):
    arrays:   base.<name>    the base model's weights
              head.<name>    the head's own weights (a tied MLM decoder weight is base.token_embedding.weight)
    metadata: the base's class and constructor arguments, the head's name and options, the tokenizer.

Loading into a different head is the point of transfer learning, and it leaves two kinds of keys over:
    missing keys      in the new model, not in the file: the new head, which starts freshly initialised
    unexpected keys   in the file, not in the new model: the old head, dropped
strict=True (the default) refuses either, listing them: a silent mismatch is how a model ends up with a
random layer nobody meant to train. strict=False accepts them and reports them in the LoadReport. A
shape mismatch (a base of another size) is an error either way.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ..data import Tokenizer
from ..nn.transformer_encoder import TransformerEncoder
from .heads import ModelWithHead, build_head, head_name

FORMAT = "tinygrad_llm.pretrained/1"
BASE_MODELS = {cls.__name__: cls for cls in (TransformerEncoder,)}


@dataclass
class LoadReport:
    """What from_pretrained did not load one to one."""
    missing_keys: list = field(default_factory=list)  # the model's, absent from the file: freshly initialised
    unexpected_keys: list = field(default_factory=list)  # the file's, with no place in the model: ignored
    tokenizer: Tokenizer | None = None  # the tokenizer saved with the weights, if any


def _checkpoint_arrays(model) -> dict:
    """Weights by the names the file uses: base.* and head.* (a bare base model gets the base. prefix)."""
    if isinstance(model, ModelWithHead):
        return dict(model.state_dict())
    return {f"base.{name}": value for name, value in model.state_dict().items()}


def save_pretrained(model, path, tokenizer: Tokenizer | None = None):
    """Write a base model (or a ModelWithHead) with what rebuilds it; returns the path."""
    base = model.base if isinstance(model, ModelWithHead) else model
    if type(base).__name__ not in BASE_MODELS:
        raise TypeError(f"save_pretrained: the base model must be one of {sorted(BASE_MODELS)}, got {type(base).__name__}")
    head = ({"name": head_name(model.head), "config": model.head.config} if isinstance(model, ModelWithHead) else None)
    metadata = {"format": FORMAT, "base_class": type(base).__name__, "base_config": base.config, "head": head,
                "tokenizer": tokenizer.to_dict() if tokenizer is not None else None}
    return save_checkpoint(path, _checkpoint_arrays(model), metadata)


def _read_pretrained(path) -> tuple[dict, dict]:
    """(arrays, metadata) in save_pretrained's layout, from a save_pretrained file or from the training
    checkpoint of `python -m tinygrad_llm train --objective mlm` (a MaskedLanguageModel: its weights are the
    base's and the MLM head's; the optimizer's state is left out)."""
    arrays, metadata = load_checkpoint(path)
    if metadata.get("format") == FORMAT:
        return arrays, metadata
    if metadata.get("model_class") == "MaskedLanguageModel":
        config = dict(metadata["model_config"])
        head = {"name": "masked_lm", "config": {"tie_weights": config.pop("tie_weights")}}
        weights = {name[len("model."):]: value for name, value in arrays.items() if name.startswith("model.")}
        return weights, {"base_class": "TransformerEncoder", "base_config": config, "head": head,
                         "tokenizer": metadata.get("tokenizer")}
    raise CheckpointError(f"from_pretrained: {path} was written neither by save_pretrained (format "
                          f"{metadata.get('format')!r}, expected {FORMAT!r}) nor by `train --objective mlm` (model "
                          f"{metadata.get('model_class')!r}); a causal GPT checkpoint is not a base model for these heads")


def from_pretrained(path, head: str | None = None, strict: bool = True, **head_options):
    """(model in eval mode, LoadReport): the saved base model's weights, with `head` on top.

    head=None gives the base model alone (hidden states only). A head name (a key of heads.HEADS) builds that
    head for the base with **head_options; when it is the head the file was saved with, the saved options are
    the defaults, so the same model comes back whole.
    """
    arrays, metadata = _read_pretrained(path)
    base = BASE_MODELS[metadata["base_class"]](**metadata["base_config"])
    saved_head = metadata["head"]
    if head is None:
        if head_options:
            raise ValueError(f"from_pretrained: head options {sorted(head_options)} were given without a head; "
                             "pass head=... too")
        model = base
    else:
        defaults = saved_head["config"] if saved_head and saved_head["name"] == head else {}
        model = ModelWithHead(base, build_head(head, base, **{**defaults, **head_options}))
    expected = _checkpoint_arrays(model)
    report = LoadReport(missing_keys=[k for k in expected if k not in arrays],
                        unexpected_keys=[k for k in arrays if k not in expected],
                        tokenizer=Tokenizer.from_dict(metadata["tokenizer"]) if metadata["tokenizer"] else None)
    if strict and (report.missing_keys or report.unexpected_keys):
        saved = f"head {saved_head['name']!r}" if saved_head else "no head"
        raise KeyError(
            f"from_pretrained: {path} (saved with {saved}) does not match the requested model (head {head!r}): "
            f"missing keys {report.missing_keys} would stay freshly initialised, unexpected keys "
            f"{report.unexpected_keys} would be dropped. A new head is missing by nature: pass strict=False to accept "
            "it (and fine-tune it), or ask for the saved head"
        )
    found = {name: arrays[name] for name in expected if name in arrays}
    if isinstance(model, ModelWithHead):
        model.load_state_dict(found, strict=False)
    else:
        model.load_state_dict({name[len("base."):]: value for name, value in found.items()}, strict=False)
    return model.eval(), report
