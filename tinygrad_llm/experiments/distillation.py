"""Chapter 9 experiment: distilling a wide teacher GPT into a narrow student (Q28 experiment A, Q20).

A wide character GPT (the teacher) is trained on the embedded corpus. Then several copies of one narrow
student, from the same initialisation, are trained side by side for the same number of steps on the same
batches, each with its own loss:

    hard labels      cross-entropy against the true next characters only (alpha = 0)
    KD, T = 1..8     distillation_loss with the teacher's logits on the same batch, alpha = 0.5

and each student's validation perplexity and its agreement with the teacher (the fraction of validation
positions where the two predict the same most likely next character) are measured on the whole
validation split. The teacher's logits are computed once per step under no_grad and shared by every KD
student: it is read, never trained.

Every function returns plain numbers; `fast=True` is the CI size (it runs in the notebook).
"""
from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np

from ..autograd import no_grad
from ..compression.distillation import distillation_loss
from ..data import evaluation_windows, random_windows
from ..metrics import evaluate_language_model
from ..nn import functional as F
from ..optim import clip_grad_norm_
from ..random import manual_seed
from ..training import TrainConfig, build_model, build_optimizer, prepare_text_data, train_language_model

TEMPERATURES = (1, 2, 4, 8)


def teacher_config(fast: bool = True, seed: int = 0) -> TrainConfig:
    """The wide teacher: full width 128, 4 layers, 300 kB of text, 1500 steps; fast width 64, 2 layers,
    30 kB, 300 steps. Context 64 (fast 32), batches of 16 windows."""
    size = (dict(max_chars=30_000, steps=300, embed_dim=64, num_layers=2, context_size=32) if fast else
            dict(max_chars=300_000, steps=1500, embed_dim=128, num_layers=4, context_size=64))
    return TrainConfig(model="gpt", corpus="embedded", tokenizer="char", num_heads=4, batch_size=16, lr=3e-3,
                       min_lr=3e-4, warmup_steps=size["steps"] // 20, weight_decay=0.1, clip_norm=1.0,
                       eval_every=size["steps"], eval_batches=4, dropout=0.0, seed=seed, **size)


def student_config(teacher: TrainConfig, fast: bool = True) -> TrainConfig:
    """The narrow student: the teacher's recipe at width 16 (fast) or 32, with 2 heads and 1 layer (fast) or 2."""
    return replace(teacher, embed_dim=16 if fast else 32, num_heads=2, num_layers=1 if fast else 2)


def agreement(student, teacher, ids: np.ndarray, context_size: int) -> float:
    """The fraction of positions in consecutive windows of `ids` where student and teacher put their highest
    probability on the same next token."""
    inputs, _ = evaluation_windows(ids, context_size)
    with no_grad():
        return float(np.mean(student(inputs).data.argmax(-1) == teacher(inputs).data.argmax(-1)))


def train_students(teacher, config: TrainConfig, data, variants: dict, alpha: float) -> dict:
    """Train one student per variant {name: temperature or None for hard labels}, all from the same
    initialisation, in lockstep on the same batches: each step draws one batch, the teacher scores it once,
    and every student takes its step on it (AdamW, warmup and cosine decay, gradient clipping: the training
    loop's recipe). Returns {name: model}."""
    students, optimizers = {}, {}
    for name in variants:
        manual_seed(config.seed)
        students[name] = build_model(config, data.tokenizer.vocab_size).train()
        optimizers[name] = build_optimizer(students[name], config)
    rng = np.random.default_rng([config.seed, 1])
    for _ in range(config.steps):
        inputs, targets = random_windows(data.train_ids, config.context_size, config.batch_size, rng)
        with no_grad():
            teacher_logits = teacher(inputs).data
        for name, temperature in variants.items():
            optimizer, scheduler = optimizers[name]
            optimizer.zero_grad()
            student_logits = students[name](inputs)
            loss = (F.cross_entropy(student_logits, targets) if temperature is None else
                    distillation_loss(student_logits, teacher_logits, targets, temperature, alpha))
            loss.backward()
            clip_grad_norm_(students[name].parameters(), config.clip_norm)
            optimizer.step()
            scheduler.step()
    return {name: student.eval() for name, student in students.items()}


def teacher_vs_students(fast: bool = True, seed: int = 0, temperatures=TEMPERATURES, alpha: float = 0.5) -> dict:
    """Train the teacher, then the hard-label student and one KD student per temperature (same steps, same
    batches, same initialisation). Returns each model's parameter count, validation NLL and perplexity, and
    each student's agreement with the teacher."""
    config = teacher_config(fast, seed)
    data = prepare_text_data(config)
    teacher = train_language_model(config, progress=False, data=data).model.eval()
    student = student_config(config, fast)
    variants = {"hard labels": None, **{f"KD T={t}": t for t in temperatures}}
    students = train_students(teacher, student, data, variants, alpha)

    def scores(model) -> dict:
        evaluation = evaluate_language_model(model, data.val_ids, block_size=config.context_size)
        return {"parameters": model.num_parameters(), "val_loss": evaluation["loss"],
                "val_perplexity": evaluation["perplexity"]}

    results = {name: {**scores(model), "agreement": agreement(model, teacher, data.val_ids, config.context_size)}
               for name, model in students.items()}
    return {"teacher": scores(teacher), "students": results, "alpha": alpha, "temperatures": list(temperatures),
            "teacher_config": asdict(config), "student_config": asdict(student)}
