"""A training checkpoint: everything needed to continue a run as if it had never stopped.

One .npz file (written atomically, loaded with allow_pickle=False: see tinygrad_llm/checkpoint.py):
    arrays:   model.<parameter name>             the weights (with mixed precision: the float32 master weights)
              optimizer.<param index>.<key>      AdamW's moments and step counts
    metadata: the TrainConfig, the model's class and constructor arguments, the tokenizer, the step,
              the optimizer's groups, the scheduler's counters, the loss scaler's state (fp16), the state of
              both random generators (data order, and the library's: dropout) and the evaluation history.
Restoring all of it is what makes "train N steps, save, resume, train M more" equal, to the bit, to
training N + M steps in one go; forgetting any one piece (say the data generator) breaks that.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from .. import random as library_random
from ..checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ..data import Tokenizer
from .config import TrainConfig
from .model_factory import rebuild_model

FORMAT = "tinygrad_llm.training/1"


@dataclass
class TrainingState:
    """The loop's own counters, saved with the weights."""
    step: int = 0
    history: list = None
    best_val_loss: float = float("inf")
    evals_without_improvement: int = 0
    sampler: dict | None = None  # data parallel: the sampler's (epoch, samples consumed), the same for any K

    def __post_init__(self):
        self.history = [] if self.history is None else self.history


def save_training_checkpoint(path, config: TrainConfig, model, optimizer, scheduler, tokenizer, state: TrainingState,
                             data_rng: np.random.Generator, master_weights=None, scaler=None):
    """master_weights (mixed_precision.MasterWeights): their float32 values are saved as the weights; a
    half-precision model is their rounding. scaler: a GradScaler, whose scale and counters are saved."""
    weights = (master_weights if master_weights is not None else model).state_dict()
    arrays = {f"model.{name}": value for name, value in weights.items()}
    optimizer_state = optimizer.state_dict()
    for index, param_state in optimizer_state["state"].items():
        for key, value in param_state.items():
            arrays[f"optimizer.{index}.{key}"] = value
    metadata = {
        "format": FORMAT,
        "train_config": asdict(config),
        "model_class": type(model).__name__,
        "model_config": model.config,
        "tokenizer": tokenizer.to_dict(),
        "state": asdict(state),
        "optimizer_param_groups": optimizer_state["param_groups"],
        "scheduler": scheduler.state_dict(),
        "grad_scaler": scaler.state_dict() if scaler is not None else {},
        "data_rng": data_rng.bit_generator.state,
        "library_rng": library_random.generator().bit_generator.state,
    }
    return save_checkpoint(path, arrays, metadata)


def read_training_checkpoint(path) -> tuple[dict, dict]:
    """(arrays, metadata) of a training checkpoint, or a clear error for any other file."""
    arrays, metadata = load_checkpoint(path)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a .npz file but not a tinygrad_llm training checkpoint (format {metadata.get('format')!r}, "
            f"expected {FORMAT!r}); use a checkpoint written by `python -m tinygrad_llm train`"
        )
    return arrays, metadata


def _model_weights(arrays: dict) -> dict:
    return {name[len("model."):]: value for name, value in arrays.items() if name.startswith("model.")}


def check_same_run(config: TrainConfig, metadata: dict, path) -> None:
    """Resuming only makes sense with the configuration the checkpoint was trained with. A setting added to
    TrainConfig after the checkpoint was written counts as its default (what that run effectively used)."""
    saved = {**{f.name: f.default for f in fields(TrainConfig)}, **metadata["train_config"]}
    different = {k: (saved.get(k), v) for k, v in asdict(config).items() if saved.get(k) != v}
    if different:
        listed = ", ".join(f"{k}: checkpoint {old!r} vs now {new!r}" for k, (old, new) in different.items())
        raise ValueError(
            f"cannot resume from {path}: it was trained with a different configuration ({listed}). Resume with the "
            "checkpoint's own configuration (the command line's --resume does), or start a new run"
        )


def restore_training_checkpoint(arrays: dict, metadata: dict, model, optimizer, scheduler,
                                data_rng: np.random.Generator, master_weights=None, scaler=None) -> TrainingState:
    """Load weights (into the master weights and the model, when given), optimizer, schedule, loss scaler and
    both generators in place; returns the loop's counters."""
    (master_weights if master_weights is not None else model).load_state_dict(_model_weights(arrays))
    state = {}
    for name, value in arrays.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": metadata["optimizer_param_groups"]})
    scheduler.load_state_dict(metadata["scheduler"])
    if scaler is not None:
        scaler.load_state_dict(metadata.get("grad_scaler", {}))
    data_rng.bit_generator.state = metadata["data_rng"]
    library_random.generator().bit_generator.state = metadata["library_rng"]
    return TrainingState(**metadata["state"])


def load_trained_model(path):
    """(model in eval mode, tokenizer, metadata) from a training checkpoint: what `sample` needs."""
    arrays, metadata = read_training_checkpoint(path)
    tokenizer = Tokenizer.from_dict(metadata["tokenizer"])
    model = rebuild_model(metadata["model_class"], metadata["model_config"])
    if tokenizer.vocab_size != model.vocab_size:
        raise CheckpointError(f"{path}: the tokenizer has {tokenizer.vocab_size} tokens but the model expects "
                              f"{model.vocab_size}; the checkpoint is inconsistent")
    model.load_state_dict(_model_weights(arrays))
    return model.eval(), tokenizer, metadata
