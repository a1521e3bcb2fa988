"""Chapter 6 experiments: attention and the Transformer (Q10-Q13).

Q10. `retrieval_vs_rnn`: a value token sits k positions before the end of a sequence of random fillers and
must be reported at the last step. One attention layer reads it in one hop whatever k is; a tanh RNN must
carry it through k sequential updates. `step_time_vs_length` times a training step of both against T.

Q11. `softmax_saturation` draws q, k ~ N(0, 1) and measures what the softmax of q.k looks like with and
without 1/sqrt(d_k) (entropy, largest weight, Jacobian norm); `copy_task_scaling` trains a copy task at
d_k = 256 with both; `head_split` trains multi-head attention with the right head split and with M27's.

Q12. `training_step_by_hand` runs one GPT iteration op by op with a shape assert at every stage;
`first_iterations` trains 100 iterations from ln V; `causal_mask_contrast` trains on a tiny grammar with
and without the causal mask and checks what each model generates.

Q13. `length_generalisation` trains on length <= 64 and measures the loss at every position up to 128;
`score_memory` measures the memory of the (T x T) score matrix and of the KV cache against T.

The broken variants that M26 and M27 need (attention without 1/sqrt(d_k), heads split across tokens) are
kept in tests/broken_transformer.py, where the test suite proves its checks catch them; the experiments
that train them take the class as an argument. `attention_weights` recomputes the probabilities that the
fused attention kernel never stores, for the attention maps.

Every function returns plain numbers and lists (and, where a notebook plots them, weights or models);
`fast=True` is the CI size.
"""
from __future__ import annotations

import math
import time
import tracemalloc

import numpy as np

from .. import nn, optim
from ..autograd import no_grad
from ..data import random_windows
from ..generation import generate
from ..metrics import evaluate_language_model
from ..nn import functional as F
from ..random import manual_seed
from ..tensor import Tensor
from ..training import TrainConfig, build_model, build_optimizer, estimate_loss, prepare_text_data, train_language_model

IGNORE = -100  # the cross-entropy's ignore_index: positions that carry no loss


# ================================================================================================ attention maps
def attention_probabilities(q: np.ndarray, k: np.ndarray, causal: bool) -> np.ndarray:
    """softmax(q k^T / sqrt(D) + mask) over the keys, float64, for q (B, H, Tq, D) and k (B, H, Tk, D).

    causal: query i (the last Tq positions) sees keys j <= i + Tk - Tq, the library's convention; masked
    weights are exactly 0 (exp(-inf)). This materialises the (B, H, Tq, Tk) matrix the fused kernel avoids.
    """
    q, k = np.asarray(q, dtype=np.float64), np.asarray(k, dtype=np.float64)
    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:
        tq, tk = scores.shape[-2:]
        scores = np.where(np.tril(np.ones((tq, tk), dtype=bool), k=tk - tq), scores, -np.inf)
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


def layer_attention_weights(attention: nn.MultiHeadAttention, x, causal: bool = True, rotary=None) -> np.ndarray:
    """(B, H, T, T) probabilities of every head of `attention` reading x (B, T, d), from its own projections."""
    with no_grad():
        x = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
        q, k = (attention.split_heads(project(x)) for project in (attention.q_proj, attention.k_proj))
        if rotary is not None:
            q, k = rotary(q, k, 0)
    return attention_probabilities(q.data, k.data, causal)


def residual_stream(model: nn.GPT, ids, layer: int) -> Tensor:
    """The GPT's residual stream (B, T, d) entering block `layer` (layer = num_layers: after the last block),
    recomputed as GPT.forward does in eval mode (token embedding + positions, then the earlier blocks)."""
    if not 0 <= layer <= model.num_layers:
        raise ValueError(f"residual_stream: layer must be in 0..{model.num_layers}, got {layer}")
    ids = model.check_ids(ids)
    was_training = model.training
    model.eval()  # dropout off, as at inference (embedding dropout is then the identity)
    with no_grad():
        x = model.token_embedding(ids)
        if model.position_embedding is not None:
            x = x + model.position_embedding(ids.shape[1])
        for block in model.blocks[:layer]:
            x = block(x, causal=True, rotary=model.rotary)
    model.train(was_training)
    return x


def attention_weights(model: nn.GPT, ids, layer: int, causal: bool = True) -> np.ndarray:
    """(B, H, T, T): what every head of block `layer` of a GPT attends to on ids (B, T), rows = queries.

    The fused kernel never stores these probabilities; this recomputes them from the block's q and k
    projections (with rotary positions when the model uses them). tests/test_experiments_attention.py
    checks that weights @ v, merged and projected, is the layer's output. causal=False for a model whose
    attention ignores the mask (BidirectionalAttention).
    """
    if not 0 <= layer < model.num_layers:
        raise ValueError(f"attention_weights: layer must be in 0..{model.num_layers - 1}, got {layer}")
    block = model.blocks[layer]
    with no_grad():
        normalised = block.ln1(residual_stream(model, ids, layer))
    return layer_attention_weights(block.attn, normalised, causal=causal, rotary=model.rotary)


def with_attention(model: nn.GPT, attention_class: type) -> nn.GPT:
    """The model, in place, with every block's attention turned into `attention_class` (a MultiHeadAttention
    subclass) that keeps the very same projection layers: same weights, same dtype, same Parameter objects."""
    for block in model.blocks:
        old = block.attn
        new = attention_class(old.embed_dim, old.num_heads)
        for name in ("q_proj", "k_proj", "v_proj", "out_proj", "dropout"):
            setattr(new, name, getattr(old, name))
        block.attn = new
    return model


class BidirectionalAttention(nn.MultiHeadAttention):
    """Attention that ignores `causal`: every token sees every other, the future included.

    Right for an encoder (BERT reads the whole sentence), wrong for next-token prediction: position t can
    read token t + 1, the very token it is asked to predict (Q12's contrast).
    """

    def attend(self, q, k, v, causal, padding_mask):
        return super().attend(q, k, v, False, padding_mask)


# ================================================================================================ a training loop
def fit(model, next_batch, steps: int, lr: float, seed: int = 0, solved_at: float = 0.99, window: int = 20,
        stop_when_solved: bool = False, clip: float = 1.0) -> dict:
    """Adam on fresh batches; cross-entropy of model(inputs) against targets (IGNORE positions carry no loss).

    next_batch(rng) -> (inputs, targets). Per step: loss and accuracy (argmax = target, over the scored
    positions). The task counts as solved at the first step where the mean accuracy of the last `window`
    batches reaches `solved_at` (solved_step, None if never); stop_when_solved ends the run there.
    Returns the curves, steps_run and solved_step.
    """
    optimizer = optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng([seed, 1])
    losses, accuracies, solved_step = [], [], None
    model.train()
    for step in range(1, steps + 1):
        inputs, targets = next_batch(rng)
        optimizer.zero_grad()
        logits = model(inputs)
        loss = F.cross_entropy(logits, targets, ignore_index=IGNORE)
        loss.backward()
        optim.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        scored = targets != IGNORE
        losses.append(loss.item())
        accuracies.append(float((logits.data.argmax(axis=-1) == targets)[scored].mean()))
        if solved_step is None and step >= window and np.mean(accuracies[-window:]) >= solved_at:
            solved_step = step
            if stop_when_solved:
                break
    model.eval()
    return {"loss": losses, "accuracy": accuracies, "steps_run": len(losses), "solved_step": solved_step}


# ================================================================================================ Q10: retrieval
NUM_VALUES = 16  # tokens 0..15 are the values to retrieve (chance accuracy 1/16)
NUM_FILLERS = 16  # tokens 16..31 are random filler
RETRIEVAL_VOCAB = NUM_VALUES + NUM_FILLERS


def retrieval_batch(batch_size: int, length: int, distance: int, rng: np.random.Generator):
    """(ids (B, length), values (B,)): random fillers, and one value token `distance` positions before the
    last one (ids[:, length - 1 - distance] = value). The answer is due at the last position."""
    if not 0 <= distance < length:
        raise ValueError(f"retrieval_batch: distance must be in 0..{length - 1} for length {length}, got {distance}")
    ids = rng.integers(NUM_VALUES, RETRIEVAL_VOCAB, (batch_size, length))
    values = rng.integers(0, NUM_VALUES, batch_size)
    ids[:, length - 1 - distance] = values
    return ids, values


class AttentionRetriever(nn.Module):
    """One attention layer, read out at the last position (about 20k parameters at d = 64):

        ids -> Embedding(32, d) -> x + attention(LayerNorm(x)) -> LayerNorm -> Linear(d, 16) at position T - 1

    No positional encoding: finding the one value token among fillers needs its content, not its position,
    and the path from any position to the last is one attention hop, whatever the distance.
    attention_class: MultiHeadAttention, or a variant with its constructor (the broken ones of M26, M27).
    """

    def __init__(self, embed_dim: int = 64, num_heads: int = 1, attention_class: type = nn.MultiHeadAttention):
        self.embedding = nn.Embedding(RETRIEVAL_VOCAB, embed_dim)
        self.norm = nn.LayerNorm(embed_dim)
        self.attention = attention_class(embed_dim, num_heads)
        self.final_norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, NUM_VALUES)

    def attention_input(self, ids) -> Tensor:
        return self.norm(self.embedding(ids))

    def forward(self, ids) -> Tensor:
        x = self.embedding(ids)
        x = x + self.attention(self.norm(x), causal=True)
        return self.head(self.final_norm(x[:, -1]))

    def last_query_weights(self, ids) -> np.ndarray:
        """(B, H, T): the attention of the last position (the one that answers) over every position."""
        return layer_attention_weights(self.attention, self.attention_input(ids), causal=True)[:, :, -1]


class RNNRetriever(nn.Module):
    """Embedding(32, 16) -> tanh RNN (hidden 128) -> Linear(128, 16) on the last hidden state (about 21k
    parameters): the value must survive `distance` recurrent updates to reach the output."""

    def __init__(self, embed_dim: int = 16, hidden_size: int = 128):
        self.embedding = nn.Embedding(RETRIEVAL_VOCAB, embed_dim)
        self.rnn = nn.RNN(embed_dim, hidden_size)
        self.head = nn.Linear(hidden_size, NUM_VALUES)

    def forward(self, ids) -> Tensor:
        outputs, _ = self.rnn(self.embedding(ids))
        return self.head(outputs[:, -1])


RETRIEVAL_LR = 3e-3


def _retrieval_size(fast: bool) -> dict:
    return (dict(length=64, distances=[4, 16, 48], steps=400, batch_size=16) if fast else
            dict(length=128, distances=[5, 15, 40, 120], steps=400, batch_size=32))


def _held_out(length: int, distance: int, seed: int, count: int = 1024):
    """The same `count` held-out sequences for every model evaluated at this (length, distance, seed)."""
    return retrieval_batch(count, length, distance, np.random.default_rng([seed, 7, distance]))


def retrieval_accuracy(model, length: int, distance: int, seed: int) -> float:
    """Accuracy of the answer at the last position on held-out sequences."""
    ids, values = _held_out(length, distance, seed)
    with no_grad():
        return float((model(ids).data.argmax(axis=-1) == values).mean())


def value_mass(model: AttentionRetriever, length: int, distance: int, seed: int) -> float:
    """The attention weight that the last position puts on the value token, averaged over the held-out
    sequences and the heads."""
    ids, _ = _held_out(length, distance, seed)
    return float(model.last_query_weights(ids)[:, :, length - 1 - distance].mean())


def retrieval_vs_rnn(fast: bool = True, seed: int = 0, steps: int | None = None) -> dict:
    """Q10: train a 1-layer attention model and a tanh RNN (about 20k parameters each) on the retrieval task
    at every distance k (Adam, lr 3e-3, fresh batches); report held-out accuracy, the attention mass on the
    value, and the step at which each solved the task (99% over 20 batches), where the run stops.

    Fast (CI): T = 64, k in {4, 16, 48}, batch 16; full: T = 128, k in {5, 15, 40, 120}, batch 32; up to 400
    steps (`steps` overrides it). Also returns, for the largest k, the last position's attention over 4 held-out
    sequences (for the attention-map plot).
    """
    size = _retrieval_size(fast)
    length, steps, batch_size = size["length"], steps or size["steps"], size["batch_size"]
    result = {"length": length, "distances": size["distances"], "steps": steps, "batch_size": batch_size,
              "chance": 1 / NUM_VALUES, "lr": RETRIEVAL_LR, "attention": {}, "rnn": {}}
    for kind, make in (("attention", AttentionRetriever), ("rnn", RNNRetriever)):
        runs = {"accuracy": [], "steps_run": [], "solved_step": [], "loss": [], "value_mass": []}
        for distance in size["distances"]:
            manual_seed(seed)
            model = make()
            history = fit(model, lambda rng, k=distance: retrieval_batch(batch_size, length, k, rng), steps,
                          RETRIEVAL_LR, seed, stop_when_solved=True)
            runs["accuracy"].append(retrieval_accuracy(model, length, distance, seed))
            runs["value_mass"].append(value_mass(model, length, distance, seed) if kind == "attention" else None)
            for key in ("steps_run", "solved_step", "loss"):
                runs[key].append(history[key])
        runs["parameters"] = model.num_parameters()
        result[kind] = runs
        if kind == "attention":
            example, _ = retrieval_batch(4, length, size["distances"][-1], np.random.default_rng([seed, 8]))
            result["example_ids"] = example
            result["example_weights"] = model.last_query_weights(example)[:, 0]
    return result


def step_time_vs_length(fast: bool = True, seed: int = 0, repeats: int | None = None) -> dict:
    """Q10: seconds per training step (forward, backward, update; batch 16) of the retrieval models against
    T. Attention does O(T^2 d) work in a few big parallel operations; the RNN does O(T d^2) work in T
    sequential steps. Each time is the fastest of `repeats` steps after one warm-up step (the least
    disturbed by other jobs on a shared machine)."""
    lengths = [16, 32, 64] if fast else [16, 32, 64, 128, 256]
    repeats = repeats or (3 if fast else 5)
    result = {"lengths": lengths, "repeats": repeats}
    for kind, make in (("attention", AttentionRetriever), ("rnn", RNNRetriever)):
        manual_seed(seed)
        model = make()
        optimizer = optim.Adam(model.parameters(), lr=1e-3)
        times = []
        for length in lengths:
            ids, values = retrieval_batch(16, length, length // 2, np.random.default_rng(seed))
            samples = []
            for _ in range(repeats + 1):
                start = time.perf_counter()
                optimizer.zero_grad()
                F.cross_entropy(model(ids), values).backward()
                optimizer.step()
                samples.append(time.perf_counter() - start)
            times.append(min(samples[1:]))
        result[f"{kind}_seconds"] = times
        result[f"{kind}_ratio"] = [t / times[0] for t in times]
    return result


# ================================================================================================ Q11: 1/sqrt(d_k)
def row_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy (nats) of every distribution along the last axis of p (0 log 0 = 0)."""
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=-1)


def softmax_jacobian_norm(p: np.ndarray) -> np.ndarray:
    """Frobenius norm of d softmax / d scores = diag(p) - p p^T, for each row of p (N, K) -> (N,).

    It measures how much gradient reaches the scores (and from them q and k): 0 for a one-hot p."""
    jacobian = p[:, :, None] * np.eye(p.shape[1]) - p[:, :, None] * p[:, None, :]
    return np.linalg.norm(jacobian, axis=(1, 2))


def softmax_saturation(fast: bool = True, seed: int = 0, num_keys: int = 64,
                       dims: tuple = (16, 64, 256, 1024)) -> dict:
    """Q11 experiment A: q, k ~ N(0, 1) in d_k dimensions, one query against `num_keys` keys.

    q . k is a sum of d_k unit-variance products, so its variance is d_k. For every d_k, with and without
    dividing by sqrt(d_k): the mean entropy of softmax(scores) (max ln num_keys, uniform), the mean largest
    weight and the mean Frobenius norm of the softmax Jacobian. Fast: 200 queries per d_k; full: 1000.
    """
    rng = np.random.default_rng(seed)
    queries = 200 if fast else 1000
    result = {"dims": list(dims), "num_keys": num_keys, "queries": queries, "max_entropy": math.log(num_keys),
              "scaled": {"entropy": [], "max_weight": [], "jacobian_norm": [], "score_std": []},
              "unscaled": {"entropy": [], "max_weight": [], "jacobian_norm": [], "score_std": []}}
    for dim in dims:
        q = rng.standard_normal((queries, 1, dim))
        k = rng.standard_normal((queries, num_keys, dim))
        raw = (q @ np.swapaxes(k, 1, 2))[:, 0]  # (queries, num_keys), variance dim
        for label, scores in (("unscaled", raw), ("scaled", raw / math.sqrt(dim))):
            p = np.exp(scores - scores.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            row = result[label]
            row["entropy"].append(float(row_entropy(p).mean()))
            row["max_weight"].append(float(p.max(axis=1).mean()))
            row["jacobian_norm"].append(float(softmax_jacobian_norm(p).mean()))
            row["score_std"].append(float(scores.std()))
    return result


COPY_SYMBOLS = 16


def copy_batch(batch_size: int, half: int, rng: np.random.Generator):
    """A random string of `half` symbols followed by itself, as (inputs, targets) for next-token prediction;
    only the second copy is scored (each of its tokens can be read `half` positions back). Length 2 half - 1."""
    string = rng.integers(0, COPY_SYMBOLS, (batch_size, half))
    sequence = np.concatenate([string, string], axis=1)
    targets = sequence[:, 1:].copy()
    targets[:, :half - 1] = IGNORE
    return sequence[:, :-1], targets


class CopyModel(nn.Module):
    """Embedding + learned positions -> x + attention(LayerNorm(x)) (one head of width d_k) -> LayerNorm -> logits.

    W_q and W_k are Xavier-normal (variance 1/d), so q and k have unit-variance entries: the assumption
    under which q . k has variance d_k. Positions start at the token embeddings' scale N(0, 1), so after the
    LayerNorm both are visible from the first step.
    """

    def __init__(self, length: int, head_dim: int, attention_class: type = nn.MultiHeadAttention):
        self.embedding = nn.Embedding(COPY_SYMBOLS, head_dim)
        self.positions = nn.LearnedPositionalEmbedding(length, head_dim)
        nn.init.normal_(self.positions.weight, std=1.0)
        self.norm = nn.LayerNorm(head_dim)
        self.attention = attention_class(head_dim, 1)
        for projection in (self.attention.q_proj, self.attention.k_proj):
            nn.init.xavier_normal_(projection.weight)
        self.final_norm = nn.LayerNorm(head_dim)
        self.head = nn.Linear(head_dim, COPY_SYMBOLS)

    def embed(self, ids) -> Tensor:
        return self.embedding(ids) + self.positions(ids.shape[1])

    def attention_input(self, ids) -> Tensor:
        return self.norm(self.embed(ids))

    def forward(self, ids) -> Tensor:
        x = self.embed(ids)
        x = x + self.attention(self.norm(x), causal=True)
        return self.head(self.final_norm(x))


def _copy_weights(model: CopyModel, ids: np.ndarray, scaled: bool) -> np.ndarray:
    """(B, T, T) probabilities as the model computes them: with 1/sqrt(d_k), or without (q k^T alone)."""
    with no_grad():
        x = model.attention_input(ids)
        q, k = (model.attention.split_heads(p(x)).data for p in (model.attention.q_proj, model.attention.k_proj))
    scale = 1.0 if scaled else math.sqrt(q.shape[-1])  # attention_probabilities divides by sqrt(D)
    return attention_probabilities(q * scale, k, causal=True)[:, 0]


def copy_task_scaling(fast: bool = True, seed: int = 0, *, unscaled_attention: type, head_dim: int = 256,
                      steps: int | None = None) -> dict:
    """Q11 / M26: train the copy task at d_k = 256 with the library's attention and with `unscaled_attention`
    (the same layer without 1/sqrt(d_k), tests/broken_transformer.AttentionWithoutScaling).

    Per variant: the initial attention entropy and largest weight on the scored rows (same initial weights for
    both), loss and accuracy curves, the step at which it solved the task (99% over 20 batches; None if not
    within the budget), and the attention map of one held-out string after training.
    Fast: strings of 16 (length 31), up to 150 steps, batch 16. Full: strings of 32 (length 63), up to 400
    steps, batch 32. `steps` overrides the number of steps.
    """
    half, default_steps, batch_size = (16, 150, 16) if fast else (32, 400, 32)
    steps = steps or default_steps
    length = 2 * half - 1
    example, _ = copy_batch(1, half, np.random.default_rng([seed, 9]))
    result = {"head_dim": head_dim, "half": half, "length": length, "steps": steps, "batch_size": batch_size,
              "example_ids": example, "runs": {}}
    for label, attention_class, scaled in (("scaled (library)", nn.MultiHeadAttention, True),
                                           ("unscaled (M26)", unscaled_attention, False)):
        manual_seed(seed)
        model = CopyModel(length, head_dim, attention_class)
        probe, _ = copy_batch(64, half, np.random.default_rng([seed, 10]))
        initial = _copy_weights(model, probe, scaled)[:, half - 1:]  # the rows that must find their copy
        history = fit(model, lambda rng: copy_batch(batch_size, half, rng), steps, 1e-3, seed, stop_when_solved=True)
        result["runs"][label] = {
            "initial_entropy": float(row_entropy(initial).mean()), "initial_max_weight": float(initial.max(axis=-1).mean()),
            **history, "final_accuracy": float(np.mean(history["accuracy"][-10:])),
            "map": _copy_weights(model, example, scaled)[0],
        }
    return result


def head_split(fast: bool = True, seed: int = 0, *, wrong_split: type, num_heads: int = 4,
               steps: int | None = None) -> dict:
    """Q11 experiment B / M27: the Q10 task with 4-head attention, heads split correctly (B, H, T, D) and with
    `wrong_split` (tests/broken_transformer.AttentionWithHeadsSplitAcrossTokens: reshape to (B*T, H, D), so
    the softmax runs over the heads of one token and no token sees another). Same initial weights.

    Fast: T = 64, k = 16, batch 16; full: T = 128, k = 60, batch 32; up to 400 steps (a run stops once solved;
    `steps` overrides the limit).
    """
    size = _retrieval_size(fast)
    length, steps, batch_size = size["length"], steps or size["steps"], size["batch_size"]
    distance = 16 if fast else 60
    result = {"length": length, "distance": distance, "steps": steps, "num_heads": num_heads,
              "chance": 1 / NUM_VALUES, "runs": {}}
    for label, attention_class in (("correct (B, H, T, D)", nn.MultiHeadAttention),
                                   ("wrong (B*T, H, D) (M27)", wrong_split)):
        manual_seed(seed)
        model = AttentionRetriever(num_heads=num_heads, attention_class=attention_class)
        history = fit(model, lambda rng: retrieval_batch(batch_size, length, distance, rng), steps,
                      RETRIEVAL_LR, seed, stop_when_solved=True)
        result["runs"][label] = {"accuracy": retrieval_accuracy(model, length, distance, seed),
                                 "steps_run": history["steps_run"], "loss": history["loss"],
                                 "solved_step": history["solved_step"]}
    return result


# ================================================================================================ Q12: the LLM pipeline
def _small_gpt_config(fast: bool, seed: int, steps: int = 100) -> TrainConfig:
    """The character-level GPT of Q12 on the bundled English corpus (fast: 20 kB, d = 32; full: 100 kB, d = 64)."""
    size = (dict(max_chars=20_000, embed_dim=32, num_heads=2, context_size=32) if fast else
            dict(max_chars=100_000, embed_dim=64, num_heads=4, context_size=64))
    return TrainConfig(model="gpt", corpus="embedded", tokenizer="char", num_layers=2, batch_size=16, steps=steps,
                       lr=3e-3, min_lr=3e-4, warmup_steps=steps // 10, weight_decay=0.1, clip_norm=1.0,
                       eval_every=10, eval_batches=8, dropout=0.0, seed=seed, **size)


def training_step_by_hand(fast: bool = True, seed: int = 0) -> dict:
    """Q12: one training iteration of a GPT written out op by op, asserting every shape on the way:

        ids (B, T) -> embeddings + positions (B, T, d) -> per block: q, k, v (B, H, T, D) -> scores and
        weights (B, H, T, T) -> context (B, H, T, D) -> merged (B, T, d) -> MLP -> logits (B, T, V)
        -> cross-entropy against the inputs shifted by one (a scalar) -> backward -> AdamW step

    Returns the shapes seen, the loss against ln V, the largest gap between these logits and model(ids),
    which parameters got a nonzero gradient and changed, and the key biases' largest gradient relative to the
    largest of all (mathematically 0, see MultiHeadAttention; float32 rounding leaves ~1e-7).
    """
    config = _small_gpt_config(fast, seed)
    data = prepare_text_data(config)
    manual_seed(seed)
    model = build_model(config, data.tokenizer.vocab_size)
    optimizer, _ = build_optimizer(model, config)
    rng = np.random.default_rng(seed)
    inputs, targets = random_windows(data.train_ids, config.context_size, config.batch_size, rng)
    B, T = inputs.shape
    d, H, V = config.embed_dim, config.num_heads, data.tokenizer.vocab_size
    D = d // H
    shapes = {}

    def seen(name, tensor, expected):
        assert tensor.shape == expected, f"{name}: expected shape {expected}, got {tensor.shape}"
        shapes[name] = tuple(tensor.shape)
        return tensor

    seen("ids", inputs, (B, T))
    x = seen("token embeddings", model.token_embedding(inputs), (B, T, d))
    x = seen("+ positions", x + model.position_embedding(T), (B, T, d))
    visible = np.tril(np.ones((T, T), dtype=bool))  # key j visible to query i iff j <= i
    for index, block in enumerate(model.blocks):
        attention = block.attn
        h = block.ln1(x)
        q, k, v = (seen(f"block {index}: {name}", attention.split_heads(project(h)), (B, H, T, D))
                   for name, project in (("q", attention.q_proj), ("k", attention.k_proj), ("v", attention.v_proj)))
        scores = seen(f"block {index}: scores", (q @ k.transpose(-2, -1)) * (1 / math.sqrt(D)), (B, H, T, T))
        weights = seen(f"block {index}: weights", F.softmax(scores.masked_fill(~visible, -np.inf), axis=-1),
                       (B, H, T, T))
        context = seen(f"block {index}: context", weights @ v, (B, H, T, D))
        merged = seen(f"block {index}: heads merged", attention.merge_heads(context), (B, T, d))
        x = seen(f"block {index}: + attention", x + attention.out_proj(merged), (B, T, d))
        x = seen(f"block {index}: + MLP", x + block.mlp(block.ln2(x)), (B, T, d))
    logits = seen("logits", model.lm_head(model.final_norm(x)), (B, T, V))
    loss = F.cross_entropy(logits, targets)
    assert loss.shape == (), f"loss: expected a scalar, got shape {loss.shape}"
    shapes["loss"] = ()
    with no_grad():
        gap = float(np.abs(model(inputs).data.astype(np.float64) - logits.data).max())

    before = {name: p.data.copy() for name, p in model.named_parameters()}
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    named = list(model.named_parameters())
    largest = max(float(np.abs(p.grad).max()) for _, p in named)
    with_gradient = [name for name, p in named if p.grad is not None and np.abs(p.grad).max() > 0]
    key_bias = max(float(np.abs(b.attn.k_proj.bias.grad).max()) for b in model.blocks) / largest
    changed = [name for name, p in named if not np.array_equal(p.data, before[name])]
    with no_grad():
        after = F.cross_entropy(model(inputs), targets).item()
    return {"shapes": shapes, "batch_size": B, "context_size": T, "embed_dim": d, "num_heads": H, "head_dim": D,
            "vocab_size": V, "loss": loss.item(), "ln_vocab": math.log(V), "loss_after_step": after,
            "max_gap_to_model": gap, "parameters": [name for name, _ in named], "with_gradient": with_gradient,
            "changed": changed, "key_bias_relative_gradient": key_bias}


def first_iterations(fast: bool = True, seed: int = 0, steps: int = 100) -> dict:
    """Q12: train the character GPT for `steps` iterations (AdamW, warmup + cosine) with the shared loop.

    Returns ln V, the untrained model's validation loss (estimated on the same windows as the first
    evaluation), the validation curve every 10 steps, and the trained model and tokenizer (for the
    attention maps).
    """
    config = _small_gpt_config(fast, seed, steps)
    run = train_language_model(config, progress=False)
    manual_seed(config.seed)  # the initial weights train_language_model started from
    untrained = build_model(config, run.tokenizer.vocab_size)
    initial = estimate_loss(untrained, run.val_ids, config, np.random.default_rng([config.seed, 3, 0]))
    return {"ln_vocab": math.log(run.tokenizer.vocab_size), "vocab_size": run.tokenizer.vocab_size,
            "initial_loss": initial, "steps": [0] + [row["step"] for row in run.history],
            "val_loss": [initial] + [row["val_loss"] for row in run.history], "final_loss": run.history[-1]["val_loss"],
            "tokens_per_s": run.tokens_per_s, "config": config, "model": run.model, "tokenizer": run.tokenizer,
            "val_ids": run.val_ids}


# The grammar of Q12's contrast: every sentence is "DET [ADJ] NOUN VERB DET [ADJ] NOUN ." (each adjective
# present with probability 1/2, every word chosen uniformly in its class).
GRAMMAR = {"DET": ("the", "a"), "ADJ": ("big", "small", "red"), "NOUN": ("cat", "dog", "bird"),
           "VERB": ("sees", "chases", "likes")}
END = "."
WORDS = [word for words in GRAMMAR.values() for word in words] + [END]
WORD_ID = {word: index for index, word in enumerate(WORDS)}


def grammar_sentence(rng: np.random.Generator) -> list[str]:
    def noun_phrase():
        words = [rng.choice(GRAMMAR["DET"])]
        if rng.random() < 0.5:
            words.append(rng.choice(GRAMMAR["ADJ"]))
        return words + [rng.choice(GRAMMAR["NOUN"])]

    return [str(w) for w in noun_phrase() + [rng.choice(GRAMMAR["VERB"])] + noun_phrase() + [END]]


def grammar_stream(num_sentences: int, rng: np.random.Generator) -> np.ndarray:
    """Token ids of `num_sentences` sentences, one after the other (each ends with ".")."""
    return np.array([WORD_ID[w] for _ in range(num_sentences) for w in grammar_sentence(rng)], dtype=np.int64)


def is_grammatical(words: list[str]) -> bool:
    """True iff words (without the final ".") are DET [ADJ] NOUN VERB DET [ADJ] NOUN."""
    def noun_phrase(position):
        if position >= len(words) or words[position] not in GRAMMAR["DET"]:
            return None
        position += 1
        if position < len(words) and words[position] in GRAMMAR["ADJ"]:
            position += 1
        return position + 1 if position < len(words) and words[position] in GRAMMAR["NOUN"] else None

    position = noun_phrase(0)
    if position is None or position >= len(words) or words[position] not in GRAMMAR["VERB"]:
        return False
    return noun_phrase(position + 1) == len(words)


def grammar_entropy_per_token() -> float:
    """The grammar's entropy rate, nats per token: the lowest loss any model that predicts the NEXT token
    (without seeing it) can reach. Per noun phrase: ln|DET| + ln 2 (adjective or not) + (1/2) ln|ADJ| +
    ln|NOUN|; a sentence has two, a verb and the end (which is certain)."""
    noun_phrase = (math.log(len(GRAMMAR["DET"])) + math.log(2) + 0.5 * math.log(len(GRAMMAR["ADJ"]))
                   + math.log(len(GRAMMAR["NOUN"])))
    mean_length = 2 * (2 + 0.5) + 1 + 1
    return (2 * noun_phrase + math.log(len(GRAMMAR["VERB"]))) / mean_length


def sentence_validity(ids: np.ndarray) -> dict:
    """Cut generated streams (B, T) at every "." and parse the complete sentences (the words between two
    ends): {"sentences": how many, "valid": fraction grammatical, "empty": fraction with no word at all
    (". ."), "examples": the first few non-empty ones}."""
    sentences = []
    for row in np.atleast_2d(ids):
        words = [WORDS[i] for i in row]
        ends = [i for i, w in enumerate(words) if w == END]
        sentences += [words[a + 1:b] for a, b in zip(ends, ends[1:])]
    valid = [is_grammatical(s) for s in sentences]
    return {"sentences": len(sentences), "valid": float(np.mean(valid)) if valid else 0.0,
            "empty": float(np.mean([not s for s in sentences])) if sentences else 0.0,
            "examples": [" ".join(s) + " ." for s in sentences if s][:4]}


def causal_mask_contrast(fast: bool = True, seed: int = 0, steps: int | None = None) -> dict:
    """Q12 / M28: the same GPT trained on the grammar twice, once causal (a decoder) and once with
    BidirectionalAttention (no causal mask, an encoder's attention used for next-token prediction).

    Per model: teacher-forced validation loss (the unmasked one reads token t + 1 at position t, so its
    loss drops below the grammar's entropy rate, which no honest predictor can), then generation: 32
    streams of 48 words sampled at temperature 1 from "." and the fraction of complete sentences that parse.
    Also each model's attention maps on the first 16 validation words, and the mean weight a query puts on
    the NEXT word (0 for a causal model by construction).
    The GPTs (context 16, d = 32, one block, 2 heads) use rotary positions: "read the next token" is then a
    fixed relative offset, which the unmasked model finds within the fast budget (with learned positions it
    took about 300 steps). Adam, lr 1e-2, batch 32; fast: 150 steps, full: 400 (`steps` overrides it).
    """
    steps = steps or (150 if fast else 400)
    context, batch_size = 16, 32
    rng = np.random.default_rng([seed, 11])
    train_ids, val_ids = grammar_stream(2000, rng), grammar_stream(200, rng)
    prompts = np.full((32, 1), WORD_ID[END])
    example = val_ids[None, :context]
    result = {"steps": steps, "entropy_per_token": grammar_entropy_per_token(), "vocab_size": len(WORDS),
              "ln_vocab": math.log(len(WORDS)), "samples": len(prompts), "sample_words": 48,
              "example_words": [WORDS[i] for i in example[0]], "runs": {}}
    for label, attention_class in (("causal (decoder)", None), ("no causal mask", BidirectionalAttention)):
        manual_seed(seed)
        model = nn.GPT(len(WORDS), context_size=context, embed_dim=32, num_heads=2, num_layers=1, positions="rope")
        if attention_class is not None:
            with_attention(model, attention_class)
        history = fit(model, lambda rng: random_windows(train_ids, context, batch_size, rng), steps, 1e-2, seed)
        val_loss = evaluate_language_model(model, val_ids, block_size=context)["loss"]
        generated = generate(model, prompts, 47, temperature=1.0, seed=seed)
        maps = attention_weights(model, example, 0, causal=attention_class is None)[0]
        result["runs"][label] = {"train_loss": history["loss"], "val_loss": val_loss, **sentence_validity(generated),
                                 "maps": maps,
                                 "next_word_weight": float(np.mean([np.diag(m, 1).mean() for m in maps]))}
    return result


# ================================================================================================ Q13: long inputs
def length_generalisation(fast: bool = True, seed: int = 0, kinds: tuple = ("learned", "sinusoidal", "rope"),
                          steps: int | None = None) -> dict:
    """Q13: character GPTs (2 layers, 4 heads) with a 128-position context trained on windows of 64 only
    (learned positions: rows 65-128 never receive a gradient), then scored at every position of held-out
    windows of 128. Same data, initial seed and steps for every position kind in `kinds`.

    Per kind: the mean loss at positions 1-64 and 65-128 and the whole per-position curve. Adam, lr 3e-3,
    batch 16. Fast: 20 kB of text, d = 32, 400 steps, 8 evaluation windows; full: 100 kB, d = 64, 500 steps, 32.
    `steps` overrides the number of steps.
    """
    train_length, eval_length = 64, 128
    size = (dict(max_chars=20_000, embed_dim=32, steps=steps or 400, windows=8) if fast else
            dict(max_chars=100_000, embed_dim=64, steps=steps or 500, windows=32))
    config = TrainConfig(model="gpt", max_chars=size["max_chars"], context_size=train_length, seed=seed)
    data = prepare_text_data(config)
    vocab = data.tokenizer.vocab_size
    starts = np.random.default_rng([seed, 12]).integers(0, len(data.val_ids) - eval_length - 1, size["windows"])
    inputs = np.stack([data.val_ids[s:s + eval_length] for s in starts])
    targets = np.stack([data.val_ids[s + 1:s + eval_length + 1] for s in starts])
    result = {"train_length": train_length, "eval_length": eval_length, "steps": size["steps"],
              "vocab_size": vocab, "runs": {}}
    for kind in kinds:
        manual_seed(seed)
        model = nn.GPT(vocab, context_size=eval_length, embed_dim=size["embed_dim"], num_heads=4, num_layers=2,
                       positions=kind)
        fit(model, lambda rng: random_windows(data.train_ids, train_length, 16, rng), size["steps"], 3e-3, seed)
        with no_grad():
            log_probs = F.log_softmax(model(inputs).double(), axis=-1).data
        per_position = -np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0].mean(axis=0)
        result["runs"][kind] = {"per_position": per_position.tolist(),
                                "trained_positions": float(per_position[:train_length].mean()),
                                "unseen_positions": float(per_position[train_length:].mean())}
    return result


def score_memory(fast: bool = True, seed: int = 0, num_heads: int = 4, head_dim: int = 16) -> dict:
    """Q13: bytes against T for the two things attention stores.

    - The (B, H, T, T) scores: the peak memory (tracemalloc) of the textbook attention_probabilities at
      batch 1, float32 q and k; O(T^2), so doubling T quadruples it.
    - The KV cache of a 2-layer GPT (d = 32) after reading T tokens: 2 L T d values, O(T).
    Fast: T in 128..1024; full: 128..2048.
    """
    lengths = [128, 256, 512, 1024] if fast else [128, 256, 512, 1024, 2048]
    rng = np.random.default_rng(seed)
    score_bytes = []
    for length in lengths:
        q, k = (rng.standard_normal((1, num_heads, length, head_dim)).astype(np.float32) for _ in range(2))
        tracemalloc.start()
        attention_probabilities(q, k, causal=True)
        score_bytes.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    manual_seed(seed)
    layers, width = 2, 32
    model = nn.GPT(16, context_size=lengths[-1], embed_dim=width, num_heads=2, num_layers=layers,
                   positions="sinusoidal")
    cache_bytes = []
    for length in lengths:
        cache = model.new_cache(1)
        with no_grad():
            model(rng.integers(0, 16, (1, length)), cache=cache)
        cache_bytes.append(cache.nbytes)
    return {"lengths": lengths, "num_heads": num_heads, "cache_layers": layers, "cache_embed_dim": width,
            "score_bytes": score_bytes,
            "score_growth": [b / a for a, b in zip(score_bytes, score_bytes[1:])],
            "float64_matrix_bytes": [num_heads * t * t * 8 for t in lengths],
            "cache_bytes": cache_bytes, "cache_growth": [b / a for a, b in zip(cache_bytes, cache_bytes[1:])]}
