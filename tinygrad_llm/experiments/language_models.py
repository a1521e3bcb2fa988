"""Chapter 5 experiments: language models from counting to attention (Q08), and why gradients vanish or
explode (Q09).

Q08. `model_ladder` trains the whole ladder on the same corpus with the same recipe and the same number of
steps (unigram and count-bigram baselines, then a bigram table, an MLP over a fixed window, RNN, GRU and
LSTM, and a 2-layer GPT) and reports validation loss, perplexity, throughput and samples. The smaller
functions measure the learning checks every model must pass (full forward = token-by-token decoding, a
sample depends only on itself, the loss is the mean per-position cross-entropy against the NEXT token) and
the two classic mistakes: reading a prompt's argmax as a continuation (M20) and training on unshifted
targets (M10).

Q09. Backpropagation multiplies one Jacobian per time step (or per layer). `exploding_gradients` trains a
tanh RNN whose recurrent matrix has spectral radius 1.5 on the adding problem, with and without clipping;
`vanishing_gradients` measures ||dL/dh_t|| along time for an RNN (radius 0.9), a GRU and an LSTM (forget
bias 3); `deep_mlp_gradients` measures ||dL/dx_l|| along depth for 30-layer sigmoid, ReLU+He and
residual+LayerNorm MLPs and trains them with Adam. Clipping is shown for what it is: one factor <= 1 on the
whole gradient, exactly like multiplying that step's loss by the factor, so it cannot change a curve's shape.

Every function returns plain numbers and lists (the ladder also returns its trained models, so a notebook
can keep using them); `fast=True` is the CI size.
"""
from __future__ import annotations

import math
import time

import numpy as np

from .. import nn, optim
from ..autograd import no_grad
from ..data import random_windows
from ..data.synthetic import make_spirals
from ..generation import generate
from ..metrics import evaluate_language_model
from ..nn import functional as F
from ..random import manual_seed
from ..tensor import Tensor
from ..training import TrainConfig, build_model, build_optimizer, estimate_loss, prepare_text_data, train_language_model

# ================================================================================================ Q08: the ladder
TRAINED_MODELS = {"bigram": "bigram", "MLP": "mlp", "RNN": "rnn", "GRU": "gru", "LSTM": "lstm", "GPT": "gpt"}
SAMPLING = {"tau = 0 (greedy)": {"temperature": 0.0}, "tau = 0.8": {"temperature": 0.8},
            "tau = 1.2": {"temperature": 1.2}, "top-k 5": {"temperature": 1.0, "top_k": 5}}
PROMPT = "The "
COUNT_SMOOTHING = (1e-3, 1e-2, 0.1, 1.0, 10.0)
# The best of COUNT_SMOOTHING on this corpus at both sizes; Laplace's k = 1 over-smooths the rare rows.
COUNT_BIGRAM_ADD_K = 0.1

# What differs between models: the bigram table has one free logit per (token, next token) pair, each
# updated only when its pair occurs, so it needs a far larger step and no weight decay (which would pull
# its log-probabilities back to uniform). The GPT stacks 2 blocks; the recurrent models use one layer.
MODEL_OVERRIDES = {"bigram": dict(lr=0.1, min_lr=0.01, weight_decay=0.0), "gpt": dict(num_layers=2),
                   "rnn": dict(num_layers=1), "gru": dict(num_layers=1), "lstm": dict(num_layers=1)}


def ladder_config(model: str, fast: bool = True, seed: int = 0) -> TrainConfig:
    """The one recipe every rung trains with: same corpus slice, batches, steps and schedule.

    Fast (CI): 5 kB of text, width d = 32, 200 steps. Full: 100 kB, embeddings 64, hidden 128, 600 steps.
    """
    size = (dict(max_chars=5_000, steps=200, embed_dim=32, hidden_dim=32, context_size=32, eval_every=20)
            if fast else
            dict(max_chars=100_000, steps=600, embed_dim=64, hidden_dim=128, context_size=64, eval_every=50))
    recipe = dict(model=model, corpus="embedded", tokenizer="char", batch_size=16, num_heads=4, mlp_window=8,
                  lr=3e-3, min_lr=3e-4, warmup_steps=size["steps"] // 20, weight_decay=0.1, clip_norm=1.0,
                  eval_batches=8, seed=seed, dropout=0.0)
    return TrainConfig(**{**recipe, **size, **MODEL_OVERRIDES.get(model, {})})


def unigram_model(train_ids: np.ndarray, vocab_size: int, add_k: float = 1.0) -> nn.BigramLanguageModel:
    """The unigram baseline as a bigram table whose rows are all the same: log P(token) from add-k counts.

    Its prediction ignores the input entirely, so it is the best a model can do without reading context;
    every model that reads context has to beat it.
    """
    counts = np.bincount(np.asarray(train_ids).reshape(-1), minlength=vocab_size) + add_k
    model = nn.BigramLanguageModel(vocab_size)
    model.table.data[...] = np.log(counts / counts.sum())[None, :]
    return model


def sample_texts(model, tokenizer, prompt: str = PROMPT, max_new_tokens: int = 120, seed: int = 0) -> dict:
    """One continuation of `prompt` per decoding rule in SAMPLING, plus generation speed (new tokens per second)."""
    prompt_ids = tokenizer.encode(prompt)
    samples, lengths, seconds = {}, {}, 0.0
    for label, options in SAMPLING.items():
        start = time.perf_counter()
        ids = generate(model, prompt_ids, max_new_tokens, seed=seed, **options)
        seconds += time.perf_counter() - start
        samples[label], lengths[label] = tokenizer.decode(ids), len(ids)
    return {"samples": samples, "lengths": lengths, "prompt_tokens": len(prompt_ids),
            "generate_tokens_per_s": len(SAMPLING) * max_new_tokens / seconds}


def model_ladder(fast: bool = True, seed: int = 0) -> dict:
    """Q08: every rung of the ladder on the same text, for the same number of steps, with the same batches.

    Returns, per model: validation loss (nats/token) and perplexity over the whole validation split (same
    block size for all), parameter count, training throughput (tokens/s, forward + backward + update),
    generation throughput, the validation-perplexity curve (step 0 = untrained), and samples at
    tau = 0, 0.8, 1.2 and top-k 5. Also the count bigram's validation perplexity for several add-k, and the
    trained models and tokenizer under "models" and "tokenizer".
    """
    base = ladder_config("gpt", fast, seed)
    data = prepare_text_data(base)
    vocab, block = data.tokenizer.vocab_size, base.context_size
    result = {"fast": fast, "vocab_size": vocab, "train_tokens": len(data.train_ids), "val_tokens": len(data.val_ids),
              "steps": base.steps, "batch_size": base.batch_size, "context_size": block,
              "tokens_per_step": base.tokens_per_step, "prompt": PROMPT, "results": {}, "models": {},
              "tokenizer": data.tokenizer}

    def record(name, model, **extra):
        scores = evaluate_language_model(model, data.val_ids, block_size=block)
        result["models"][name] = model
        result["results"][name] = {"val_loss": scores["loss"], "perplexity": scores["perplexity"],
                                   "parameters": model.num_parameters(), **extra,
                                   **sample_texts(model, data.tokenizer, seed=seed)}

    record("unigram", unigram_model(data.train_ids, vocab))
    record("count bigram", nn.BigramLanguageModel.from_counts(data.train_ids, vocab, add_k=COUNT_BIGRAM_ADD_K))
    result["count_bigram_smoothing"] = {
        k: evaluate_language_model(nn.BigramLanguageModel.from_counts(data.train_ids, vocab, add_k=k), data.val_ids,
                                   block)["perplexity"] for k in COUNT_SMOOTHING}
    for name, kind in TRAINED_MODELS.items():
        config = ladder_config(kind, fast, seed)
        manual_seed(config.seed)  # the same initial weights train_language_model will start from
        untrained = build_model(config, vocab)
        initial = estimate_loss(untrained, data.val_ids, config, np.random.default_rng([config.seed, 3, 0]))
        run = train_language_model(config, progress=False)
        record(name, run.model, tokens_per_s=run.tokens_per_s, train_seconds=run.seconds, initial_loss=initial,
               curve_steps=[0] + [row["step"] for row in run.history],
               curve_perplexity=[math.exp(loss) for loss in [initial] + [row["val_loss"] for row in run.history]],
               embedding_change=_embedding_change(untrained, run.model))
    return result


def _embedding_change(untrained, trained) -> float | None:
    """||E_trained - E_init|| / ||E_init|| of the token embedding (None for the bigram, which has none)."""
    if not hasattr(trained, "token_embedding"):
        return None
    before, after = untrained.token_embedding.weight.data, trained.token_embedding.weight.data
    return float(np.linalg.norm(after - before) / np.linalg.norm(before))


def nearest_tokens(model, tokenizer, queries: str, candidates: str, k: int = 5) -> dict:
    """M17: for each query character, the k characters of `candidates` whose learned input embeddings are
    closest to its own (cosine similarity)."""
    candidate_ids = tokenizer.encode(candidates)
    table = model.token_embedding.weight.data.astype(np.float64)
    unit = table / np.linalg.norm(table, axis=1, keepdims=True)
    neighbours = {}
    for char in queries:
        query = int(tokenizer.encode(char)[0])
        similarity = unit[candidate_ids] @ unit[query]
        order = [i for i in np.argsort(-similarity) if candidate_ids[i] != query][:k]
        neighbours[char] = [(candidates[i], float(similarity[i])) for i in order]
    return neighbours


# ================================================================================================ Q08: checks
def incremental_decoding_gap(model, ids: np.ndarray) -> float:
    """max |full-forward logits - logits from feeding the same ids one token at a time through the cache|."""
    ids = np.asarray(ids)
    with no_grad():
        full = model(ids).data
        cache = model.new_cache(ids.shape[0])
        stepwise = np.concatenate([model(ids[:, t:t + 1], cache=cache).data for t in range(ids.shape[1])], axis=1)
    return float(np.abs(full.astype(np.float64) - stepwise).max())


def cross_sample_leak(model, ids: np.ndarray, sample: int = 0, seed: int = 0) -> float:
    """Replace every token of one sample: max change of the OTHER samples' logits (0 for a correct model; a
    layer that reads (B, T) as (T, B) mixes samples and leaks, M22)."""
    ids = np.asarray(ids)
    changed = ids.copy()
    shift = np.random.default_rng(seed).integers(1, model.vocab_size, ids.shape[1])  # never 0: every token changes
    changed[sample] = (ids[sample] + shift) % model.vocab_size
    others = [b for b in range(len(ids)) if b != sample]
    with no_grad():
        before, after = model(ids).data[others], model(changed).data[others]
    return float(np.abs(before.astype(np.float64) - after).max())


def per_position_loss(model, ids: np.ndarray, starts, block_size: int) -> dict:
    """M10: the LM loss three ways on windows ids[s : s + block_size] of the text.

    "library": F.cross_entropy on (B, T, V) logits against (B, T) targets shifted by one; "flattened": the
    same on (B*T, V) and (B*T,); "per position": the mean over every (sample, position) of -log p(next
    token in the text), written as a loop; "unshifted": the mistake, targets = the inputs themselves.
    """
    ids = np.asarray(ids)
    inputs = np.stack([ids[s:s + block_size] for s in starts])
    targets = np.stack([ids[s + 1:s + block_size + 1] for s in starts])
    with no_grad():
        logits = model(inputs)
        library = F.cross_entropy(logits, targets).item()
        flattened = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).item()
        unshifted = F.cross_entropy(logits, inputs).item()
    log_probs = F.log_softmax(logits.detach().double(), axis=-1).data
    terms = [-log_probs[b, t, ids[s + t + 1]] for b, s in enumerate(starts) for t in range(block_size)]
    return {"library": library, "flattened": flattened, "per_position": float(np.mean(terms)), "unshifted": unshifted,
            "positions": len(terms)}


def argmax_vs_loop(model, tokenizer, prompt: str, max_new_tokens: int = 60) -> dict:
    """M20: the argmax of one forward pass over a prompt against the autoregressive loop.

    The argmax gives one token per PROMPT position (a guess at the prompt's own next character, already
    known), so it never gets longer than the prompt. Only the loop, which appends each choice and reads it
    back, extends the text; its first new token is the argmax at the last prompt position.
    """
    prompt_ids = tokenizer.encode(prompt)
    was_training = model.training
    model.eval()
    with no_grad():
        guesses = model(prompt_ids[None]).data[0].argmax(axis=-1)
    model.train(was_training)
    continued = generate(model, prompt_ids, max_new_tokens, temperature=0.0)
    return {"prompt": prompt, "prompt_tokens": len(prompt_ids), "argmax_text": tokenizer.decode(guesses),
            "argmax_tokens": len(guesses),
            "guesses_matching_the_prompt": float(np.mean(guesses[:-1] == prompt_ids[1:])),
            "loop_text": tokenizer.decode(continued), "loop_tokens": len(continued), "max_new_tokens": max_new_tokens,
            "first_new_token_is_last_guess": bool(continued[len(prompt_ids)] == guesses[-1])}


def unshifted_targets(fast: bool = True, seed: int = 0) -> dict:
    """M10 (bug): train the same GPT twice, identically except that one run's targets are the inputs.

    The unshifted run only has to copy the token it is looking at, so its training loss collapses towards 0;
    on the real task (the NEXT token) it is worse than the unigram baseline, and greedy generation repeats
    the prompt's last character.
    """
    prompt = PROMPT.strip()  # a prompt that does not end in a space, so a repeated last character shows
    config = ladder_config("gpt", fast, seed)
    config.steps = config.steps // 2 if fast else config.steps // 3
    config.warmup_steps = config.steps // 20
    data = prepare_text_data(config)
    runs = {}
    for label, shifted in (("shifted targets (correct)", True), ("targets = inputs (M10)", False)):
        manual_seed(config.seed)
        model = build_model(config, data.tokenizer.vocab_size)
        optimizer, schedule = build_optimizer(model, config)
        rng = np.random.default_rng([config.seed, 1])
        losses = []
        for _ in range(config.steps):
            inputs, targets = random_windows(data.train_ids, config.context_size, config.batch_size, rng)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(inputs), targets if shifted else inputs)
            loss.backward()
            optim.clip_grad_norm_(model.parameters(), config.clip_norm)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        scores = evaluate_language_model(model, data.val_ids, block_size=config.context_size)
        continuation = generate(model, data.tokenizer.encode(prompt), 60, temperature=0.0)
        runs[label] = {"train_loss": float(np.mean(losses[-10:])), "losses": losses, "val_loss": scores["loss"],
                       "val_perplexity": scores["perplexity"], "greedy_sample": data.tokenizer.decode(continuation)}
    unigram = evaluate_language_model(unigram_model(data.train_ids, data.tokenizer.vocab_size), data.val_ids,
                                      config.context_size)
    return {"steps": config.steps, "prompt": prompt, "runs": runs, "unigram_perplexity": unigram["perplexity"],
            "vocab_size": data.tokenizer.vocab_size}


# ================================================================================================ Q09: recurrent
def adding_problem(batch_size: int, steps: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem (Hochreiter & Schmidhuber 1997): a long-range dependency in its purest form.

    x (B, T, 2): channel 0 holds random values in [0, 1), channel 1 marks two positions, one in each half of
    the sequence. The target (B, 1) is the sum of the two marked values; to predict it the network must
    carry information across up to T steps. Predicting the mean (1.0) gives MSE 1/6: the no-memory baseline.
    """
    values = rng.uniform(0.0, 1.0, (batch_size, steps))
    markers = np.zeros((batch_size, steps))
    rows = np.arange(batch_size)
    markers[rows, rng.integers(0, steps // 2, batch_size)] = 1.0
    markers[rows, rng.integers(steps // 2, steps, batch_size)] = 1.0
    x = np.stack([values, markers], axis=-1).astype(np.float32)
    return x, (values * markers).sum(axis=1, keepdims=True).astype(np.float32)


class AddingRegressor(nn.Module):
    """A one-layer RNN/GRU/LSTM reading the adding problem, with a linear read-out of its last hidden state.

    radius: for the tanh RNN, W_hh is set to an orthogonal matrix times `radius`, so every singular value
    (and the spectral radius) is exactly `radius`. gate_bias: added at initialisation to the bias of the gate
    that decides how much of the old state is kept: the LSTM's forget gate (default 1), the GRU's update gate
    z (default 0, PyTorch's init).
    """

    def __init__(self, cell: str, hidden_size: int, radius: float | None = None, gate_bias: float | None = None):
        if cell == "lstm":
            self.cell = nn.LSTMCell(2, hidden_size, forget_bias=1.0 if gate_bias is None else gate_bias)
        else:
            self.cell = {"rnn": nn.RNNCell, "gru": nn.GRUCell}[cell](2, hidden_size)
        if cell == "gru" and gate_bias is not None:
            self.cell.bias_ih.data[hidden_size:2 * hidden_size] += gate_bias  # blocks (r, z, n): z is the second
        if radius is not None:
            nn.init.orthogonal_(self.cell.weight_hh, gain=radius)
        self.head = nn.Linear(hidden_size, 1)

    def hidden_states(self, x) -> list:
        """h_t for every step t (each keeps its gradient after backward, so ||dL/dh_t|| can be read)."""
        projected = self.cell.project_input(Tensor(x))
        state = self.cell.zero_state(x.shape[0], projected.dtype)
        states = []
        for t in range(x.shape[1]):
            state = self.cell.step(projected[:, t], state)
            h = state[0] if isinstance(state, tuple) else state
            h.retain_grad()
            states.append(h)
        return states

    def forward(self, x):
        return self.head(self.hidden_states(x)[-1])


def _global_norm(parameters) -> float:
    squares = [float(np.sum(p.grad.astype(np.float64) ** 2)) for p in parameters if p.grad is not None]
    return math.sqrt(sum(squares))


def exploding_gradients(fast: bool = True, seed: int = 0, threshold: float = 1.0) -> dict:
    """Q09: a tanh RNN with spectral radius 1.5 on the adding problem, trained by SGD with and without
    clipping the global gradient norm at `threshold`; a radius-0.9 RNN at the same rate is the control.

    Per run: the gradient norm before clipping at every step, the loss, the step at which the loss stopped
    being finite (the unclipped run "diverges"), and the first step whose norm exceeded 100 x threshold.
    Fast: T = 50, hidden 32, 150 steps; full: T = 100, hidden 64, 300 steps.
    """
    steps_in_time, hidden, steps = (50, 32, 150) if fast else (100, 64, 300)
    lr, batch = 0.05, 32
    runs = {}
    for label, radius, clip in (("radius 1.5, no clipping", 1.5, None),
                                (f"radius 1.5, clipped at {threshold:g}", 1.5, threshold),
                                ("radius 0.9, no clipping (control)", 0.9, None)):
        manual_seed(seed)
        model = AddingRegressor("rnn", hidden, radius=radius)
        parameters = model.parameters()
        optimizer = optim.SGD(parameters, lr=lr)
        rng = np.random.default_rng([seed, 1])
        norms, losses, diverged_at = [], [], None
        with np.errstate(over="ignore", invalid="ignore"):
            for step in range(1, steps + 1):
                x, y = adding_problem(batch, steps_in_time, rng)
                optimizer.zero_grad()
                loss = F.mse_loss(model(x), y)
                loss.backward()
                norm = optim.clip_grad_norm_(parameters, clip) if clip is not None else _global_norm(parameters)
                norms.append(norm)
                losses.append(loss.item())
                if not (math.isfinite(loss.item()) and math.isfinite(norm)):
                    diverged_at = step
                    break
                optimizer.step()
        finite = np.asarray([n for n in norms if math.isfinite(n)])
        over = np.flatnonzero(finite > 100 * threshold)
        runs[label] = {"radius": radius, "clip": clip, "grad_norm": norms, "loss": losses, "diverged_at": diverged_at,
                       "max_grad_norm": float(finite.max()),
                       "first_step_over_100x": int(over[0]) + 1 if over.size else None,
                       "final_loss": float(np.mean(losses[-20:])), "finite": diverged_at is None}
    return {"T": steps_in_time, "hidden": hidden, "steps": steps, "lr": lr, "threshold": threshold,
            "baseline_mse": 1 / 6, "runs": runs}


def _gradients_with_and_without_clipping(run_forward, parameters, threshold: float) -> dict:
    """Gradient norms along a chain (time steps or layers), as backpropagated and under clipping.

    run_forward() does a fresh forward pass and returns (loss, [tensors along the chain]). Clipping multiplies
    every parameter gradient by one factor s <= 1; that is exactly the gradient of s * loss. So the clipped
    curve is measured by backpropagating s * loss (and we check that this reproduces clip_grad_norm_'s
    gradients): whatever s is, it multiplies every point of the curve, so the curve's shape (the ratio of its
    first to its last point) cannot change.
    """
    def backward(scale: float):
        for p in parameters:
            p.grad = None
        loss, chain = run_forward()
        (loss * scale).backward()
        return [float(np.linalg.norm(t.grad.astype(np.float64))) for t in chain]

    curve = backward(1.0)
    total = optim.clip_grad_norm_(parameters, threshold)
    clipped_grads = [p.grad.copy() for p in parameters]
    scale = _global_norm(parameters) / total if total > threshold else 1.0
    clipped_curve = backward(scale)
    difference = math.sqrt(sum(float(np.sum((p.grad.astype(np.float64) - g) ** 2))
                               for p, g in zip(parameters, clipped_grads)))
    same = difference <= 1e-5 * max(_global_norm(parameters), 1e-30)  # float32 rounding of two backward passes
    return {"curve": curve, "clipped_curve": clipped_curve, "total_norm": total, "clip_scale": scale,
            "ratio": curve[0] / curve[-1], "clipped_ratio": clipped_curve[0] / clipped_curve[-1],
            "clipping_equals_loss_scaling": bool(same)}


def vanishing_gradients(fast: bool = True, seed: int = 0, threshold: float = 1.0) -> dict:
    """Q09: ||dL/dh_t|| at every step t for the loss on the LAST step of the adding problem, at initialisation.

    Models: tanh RNN with spectral radius 0.9, GRU (default init, and with update-gate bias 3), LSTM with
    forget bias 3. "ratio" is
    ||dL/dh_0|| / ||dL/dh_T||: the fraction of the gradient that survives the trip back to the first step.
    Each curve is also measured under clipping at `threshold` (see _gradients_with_and_without_clipping).
    """
    steps_in_time, hidden, batch = (50, 32, 32) if fast else (100, 64, 32)
    x, y = adding_problem(batch, steps_in_time, np.random.default_rng([seed, 2]))
    models = {"RNN (radius 0.9)": ("rnn", dict(radius=0.9)), "GRU": ("gru", {}),
              "GRU (update-gate bias 3)": ("gru", dict(gate_bias=3.0)),
              "LSTM (forget bias 3)": ("lstm", dict(gate_bias=3.0))}
    curves = {}
    for label, (cell, options) in models.items():
        manual_seed(seed)
        model = AddingRegressor(cell, hidden, **options)

        def run_forward(model=model):
            states = model.hidden_states(x)
            return F.mse_loss(model.head(states[-1]), y), states

        curves[label] = _gradients_with_and_without_clipping(run_forward, model.parameters(), threshold)
    return {"T": steps_in_time, "hidden": hidden, "threshold": threshold, "models": curves}


# ================================================================================================ Q09: depth
class DeepMLP(nn.Module):
    """2 -> width, then `depth` hidden layers of width -> width, then a 3-class head (the spirals task).

    kind: "sigmoid" (Xavier init, the classic saturating net), "relu" (He init), "relu x1.5" (He init with
    1.5x the standard deviation: a plain net that explodes), or "residual" (pre-LayerNorm blocks
    x + W relu(LN(x)), branch weights scaled by 1/sqrt(depth), then a final LayerNorm).
    """

    KINDS = ("sigmoid", "relu", "relu x1.5", "residual")

    def __init__(self, kind: str, depth: int, width: int):
        if kind not in self.KINDS:
            raise ValueError(f"DeepMLP: kind must be one of {self.KINDS}, got {kind!r}")
        self.kind = kind
        self.input = nn.Linear(2, width)
        self.layers = [nn.Linear(width, width) for _ in range(depth)]
        self.norms = [nn.LayerNorm(width) for _ in range(depth)] if kind == "residual" else []
        self.final_norm = nn.LayerNorm(width) if kind == "residual" else None
        self.head = nn.Linear(width, 3)
        for layer in self.layers:
            if kind == "sigmoid":
                nn.init.xavier_uniform_(layer.weight)
            else:
                nn.init.kaiming_normal_(layer.weight, gain=math.sqrt(2) * (1.5 if kind == "relu x1.5" else 1.0))
            if kind == "residual":  # depth branches add into one stream: keep its variance about constant
                layer.weight.data /= math.sqrt(depth)
            nn.init.zeros_(layer.bias)

    def forward_with_inputs(self, x):
        """(logits, [x_0, ..., x_L]): the input of every hidden layer and the last hidden output, gradients kept."""
        x = self.input(Tensor(x))
        chain = []
        for index, layer in enumerate(self.layers):
            x.retain_grad()
            chain.append(x)
            if self.kind == "residual":
                x = x + layer(self.norms[index](x).relu())
            else:
                x = layer(x).sigmoid() if self.kind == "sigmoid" else layer(x).relu()
        x.retain_grad()
        chain.append(x)
        return self.head(self.final_norm(x) if self.final_norm is not None else x), chain

    def forward(self, x):
        return self.forward_with_inputs(x)[0]


def _spirals(seed: int):
    X, y = make_spirals(2000, num_classes=3, noise=0.2, turns=1.5, rng=seed)
    return X[:1000], y[:1000], X[1000:], y[1000:]


def deep_mlp_gradients(fast: bool = True, seed: int = 0, threshold: float = 1.0, depth: int = 30) -> dict:
    """Q09 in depth: ||dL/dx_l|| for every layer l of 30-layer MLPs (sigmoid, ReLU+He, residual+LayerNorm)
    at initialisation, with and without clipping; the same ratio for depths 2..30 (M25, plus an exploding
    ReLU net with too large an init); and Adam training of the three 30-layer nets (M24).
    """
    width, steps = (32, 150) if fast else (64, 400)
    X, y, X_val, y_val = _spirals(seed)
    batch = slice(0, 256)
    result = {"depth": depth, "width": width, "steps": steps, "threshold": threshold, "curves": {}, "training": {},
              "depth_sweep": {}, "depths": [2, 5, 10, 20, 30]}

    def gradients(kind, layers):
        manual_seed(seed)
        model = DeepMLP(kind, layers, width)

        def run_forward():
            logits, chain = model.forward_with_inputs(X[batch])
            return F.cross_entropy(logits, y[batch]), chain

        return _gradients_with_and_without_clipping(run_forward, model.parameters(), threshold)

    for kind in ("sigmoid", "relu", "residual"):
        result["curves"][kind] = gradients(kind, depth)
    for kind in DeepMLP.KINDS:
        result["depth_sweep"][kind] = [gradients(kind, layers)["ratio"] for layers in result["depths"]]

    for kind in ("sigmoid", "relu", "residual"):
        manual_seed(seed)
        model = DeepMLP(kind, depth, width)
        optimizer = optim.Adam(model.parameters(), lr=1e-3)
        rng = np.random.default_rng([seed, 1])
        losses = []
        for _ in range(steps):
            index = rng.choice(len(y), size=128, replace=False)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(X[index]), y[index])
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        with no_grad():
            logits = model(X_val)
            val_loss = F.cross_entropy(logits, y_val).item()
        result["training"][kind] = {"loss": losses, "first_loss": losses[0], "final_loss": float(np.mean(losses[-20:])),
                                    "val_loss": val_loss,
                                    "val_acc": float((logits.data.argmax(axis=1) == y_val).mean())}
    result["chance_loss"] = math.log(3)
    return result
