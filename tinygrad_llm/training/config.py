"""Everything one training run needs to know, in one dataclass: the command line, the notebooks and the
checkpoints all speak it, so a run can be described, repeated and resumed from its config alone."""
from __future__ import annotations

from dataclasses import dataclass

from ..device import DEVICES

MODEL_KINDS = ("bigram", "mlp", "rnn", "lstm", "gru", "gpt")
OBJECTIVES = ("causal", "mlm")
TOKENIZER_KINDS = ("char", "bpe")
PRECISIONS = ("fp32", "fp16", "bf16")

# What each field means; the command line shows these as --help, the config's repr stays short.
FIELD_HELP = {
    "model": f"which model: {', '.join(MODEL_KINDS)}",
    "objective": "'causal' (predict the next token) or 'mlm' (a bidirectional Transformer encoder predicts the 15%% "
                 "of tokens that were masked, BERT's pretraining; uses the gpt sizes)",
    "mask_rate": "mlm: the share of tokens selected for prediction (80%% of them become [MASK], 10%% a random token, "
                 "10%% stay)",
    "corpus": "'embedded' (Python's own docs, offline), 'shakespeare' (downloaded once), 'zh-en', or a path",
    "tokenizer": "'char' (one token per character) or 'bpe' (byte-level BPE trained on the training split)",
    "bpe_merges": "merges to learn when tokenizer is 'bpe'",
    "max_chars": "use only the first N characters of the corpus (fast runs)",
    "context_size": "tokens per training window: the GPT's context, the RNN's truncated-BPTT length",
    "batch_size": "windows per micro-batch",
    "grad_accum_steps": "micro-batches whose gradients are summed into one optimizer step",
    "embed_dim": "embedding width (GPT: the model width d)",
    "hidden_dim": "hidden width of the MLP and RNN models",
    "num_layers": "GPT blocks or stacked RNN layers",
    "num_heads": "GPT attention heads (must divide embed_dim)",
    "mlp_window": "tokens the MLP model reads to predict the next one",
    "dropout": "dropout probability (0 disables)",
    "positions": "GPT positions: learned, sinusoidal or rope",
    "tie_weights": "GPT: share the token embedding with the output layer",
    "checkpoint_blocks": "GPT: recompute each block's activations in backward instead of keeping them (less memory, "
                         "about one more forward pass of time; the same gradients)",
    "steps": "optimizer steps",
    "lr": "peak learning rate, reached after the warmup",
    "min_lr": "learning rate at the end of the cosine decay",
    "warmup_steps": "steps of linear warmup",
    "weight_decay": "AdamW decoupled weight decay, applied to matrices only",
    "beta1": "AdamW beta1",
    "beta2": "AdamW beta2",
    "clip_norm": "clip the global gradient norm to this (0 disables)",
    "eval_every": "estimate train and val loss every N steps",
    "eval_batches": "batches per loss estimate",
    "early_stopping_patience": "stop after this many evaluations without a better val loss (0: never)",
    "seed": "one seed for data order, initialisation, dropout and sampling",
    "precision": "fp32, or mixed precision: fp16 (with float32 master weights and loss scaling) or bf16 "
                 "(float32 master weights)",
    "device": "'cpu', or 'cuda' for an NVIDIA GPU through CuPy (pip install -e \".[gpu]\")",
    "data_parallel": "train on every process of an MPI job (`mpiexec -n K python -m tinygrad_llm train "
                     "--data-parallel`): each rank takes batch_size windows of each global batch of K * batch_size",
    "log_histograms": "at each evaluation, also log weight and gradient histograms, update-to-weight ratios and the "
                      "losses to <out-dir>/events (JSONL, CSV, and TensorBoard event files where tensorboardX is "
                      "installed: tensorboard --logdir <out-dir>)",
    "dp_sigma": "DP-SGD noise multiplier sigma (0: no noise). With dp_sigma or dp_clip set, training is differentially "
                "private per window: the training split is cut into N non-overlapping windows of context_size + 1 "
                "tokens (one window is the unit protected), each step draws a Poisson batch (rate batch_size / N), "
                "clips every window's gradient to dp_clip, adds N(0, (sigma * clip)^2) noise, and epsilon is printed "
                "at every evaluation (gpt and mlp models)",
    "dp_clip": "DP-SGD: clip each window's gradient to this L2 norm C (it replaces the global clip_norm, which DP "
               "training does not use)",
    "dp_delta": "DP-SGD: the delta epsilon is reported at (0: 1/N, N the number of training windows)",
}


@dataclass
class TrainConfig:
    model: str = "gpt"
    objective: str = "causal"
    mask_rate: float = 0.15
    corpus: str = "embedded"
    tokenizer: str = "char"
    bpe_merges: int = 500
    max_chars: int = 0
    context_size: int = 64
    batch_size: int = 12
    grad_accum_steps: int = 1
    embed_dim: int = 128
    hidden_dim: int = 256
    num_layers: int = 4
    num_heads: int = 4
    mlp_window: int = 8
    dropout: float = 0.0
    positions: str = "learned"
    tie_weights: bool = True
    checkpoint_blocks: bool = False
    steps: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    clip_norm: float = 1.0
    eval_every: int = 250
    eval_batches: int = 20
    early_stopping_patience: int = 0
    seed: int = 0
    precision: str = "fp32"
    device: str = "cpu"
    data_parallel: bool = False
    log_histograms: bool = False
    dp_sigma: float = 0.0
    dp_clip: float = 0.0
    dp_delta: float = 0.0

    def __post_init__(self):
        problems = []
        if self.device not in DEVICES:
            problems.append(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.model not in MODEL_KINDS:
            problems.append(f"model must be one of {MODEL_KINDS}, got {self.model!r}")
        if self.objective not in OBJECTIVES:
            problems.append(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.objective == "mlm" and self.model != "gpt":
            problems.append(f"objective 'mlm' trains a Transformer encoder (the gpt model's blocks without the causal "
                            f"mask, the same size options): use --model gpt, got {self.model!r}")
        if not 0 < self.mask_rate < 1:
            problems.append(f"mask_rate must be in (0, 1), got {self.mask_rate}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.precision == "bf16" and self.device == "cuda":
            problems.append("precision 'bf16' runs on the CPU only (CuPy has no bfloat16 arrays); use fp16 on 'cuda'")
        if self.data_parallel and self.device != "cpu":
            problems.append("data_parallel averages NumPy gradients over MPI, so it runs on device 'cpu' only")
        if self.tokenizer not in TOKENIZER_KINDS:
            problems.append(f"tokenizer must be one of {TOKENIZER_KINDS}, got {self.tokenizer!r}")
        for name in ("context_size", "batch_size", "grad_accum_steps", "steps", "eval_every", "eval_batches"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.warmup_steps < self.steps:
            problems.append(f"warmup_steps must be in [0, steps={self.steps}), got {self.warmup_steps}")
        if self.model == "gpt" and self.embed_dim % self.num_heads:
            problems.append(f"embed_dim {self.embed_dim} must be divisible by num_heads {self.num_heads}")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if self.private:
            problems += self._private_training_problems()
        if problems:
            raise ValueError("TrainConfig: " + "; ".join(problems))

    @property
    def private(self) -> bool:
        """DP-SGD training (training/private_training.py): on as soon as a noise or a clip is asked for (a negative
        one is then refused)."""
        return self.dp_sigma != 0 or self.dp_clip != 0

    def _private_training_problems(self) -> list[str]:
        """Settings DP-SGD needs, and what it cannot be combined with (each message says what to use instead)."""
        problems = []
        if self.dp_sigma < 0 or self.dp_clip <= 0:
            problems.append(f"DP-SGD needs dp_sigma >= 0 and a clip dp_clip > 0 (the noise is sigma * clip: it means "
                            f"nothing without a bound on each window's gradient), got dp_sigma={self.dp_sigma}, "
                            f"dp_clip={self.dp_clip}")
        if not 0 <= self.dp_delta < 1:
            problems.append(f"dp_delta must be in [0, 1) (0: 1 / the number of windows), got {self.dp_delta}")
        if self.model not in ("gpt", "mlp"):
            problems.append(f"DP-SGD needs per-example gradients, whose batched rules cover the gpt and mlp models' "
                            f"layers (Linear, Embedding, LayerNorm, learned positions); model {self.model!r} has "
                            "others: use --model gpt or --model mlp")
        rejected = {"objective 'mlm' (use the causal objective)": self.objective == "mlm",
                    f"grad_accum_steps={self.grad_accum_steps} (use 1: the Poisson batch is drawn whole)":
                        self.grad_accum_steps > 1,
                    f"precision {self.precision!r} (use fp32)": self.precision != "fp32",
                    "data_parallel (train on one process)": self.data_parallel,
                    f"device {self.device!r} (use cpu: the per-example gradients are NumPy's)": self.device != "cpu"}
        problems += [f"DP-SGD does not combine with {what}" for what, present in rejected.items() if present]
        return problems

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.context_size * self.grad_accum_steps

