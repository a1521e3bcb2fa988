"""Chapter 7 experiments: sequence-to-sequence encoder-decoders (Q14-Q16).

Q14. `bottleneck` trains three models on reversing digit strings with the same budget: a GRU whose decoder
sees only the encoder's final state (the fixed-length bottleneck, M30), a GRU with additive attention, and a
Transformer encoder-decoder. It tests exact match at every length, longer than trained included, and the
gap between teacher-forced and free-running token accuracy (exposure bias).

Q15. `label_leak` builds M31's "decoder": a stack of encoder layers (no causal mask, no cross-attention),
fed either the shifted target (it copies the token it must predict: perfect teacher forcing, useless free
running) or the source (one output per source token: reversal works, "duplicate each token" cannot).

Q14/Q19. `decoding_comparison` decodes a toy-translation model with greedy search and beam search of
several widths, at checkpoints during training: exact match, corpus BLEU, and on how many sources beam
search found a sequence the model scores higher (or lower) than greedy's.

Q16. `knowledge_table` asks for the value of an entity in a table drawn fresh for every example: a model
that gets the table as encoder input tokens can answer; a question-only model can only guess (M32).

`error_analysis` groups the failures of any of them by length and by where the first wrong token sits.
Every function returns plain numbers and lists, plus the trained models where the notebook plots them;
`fast=True` is the CI size.
"""
from __future__ import annotations

import time
from collections import defaultdict

import numpy as np

from ..data.seq2seq_tasks import EOS_ID, Seq2SeqExample, Seq2SeqTask, make_batch, make_task, sample_examples
from ..generation.beam_search import beam_search
from ..generation.greedy_decode import greedy_decode
from ..metrics.bleu import corpus_bleu
from ..metrics.seq2seq_evaluation import evaluate_seq2seq
from ..nn import init
from ..nn import (Embedding, LayerNorm, LearnedPositionalEmbedding, Linear, RecurrentEncoderDecoder,
                  TransformerBlock, TransformerEncoderDecoder)
from ..nn.seq2seq_model import EncodedSource, Seq2SeqCache, Seq2SeqModel
from ..random import manual_seed
from ..tensor import Tensor, cat, where
from ..training.seq2seq_training import Seq2SeqTrainConfig, train_seq2seq

BOTTLENECK_MODELS = ("GRU, final state only", "GRU + attention", "Transformer")
LEAK_VARIANTS = ("(a) encoder-decoder", "(b) encoder layers fed the shifted target", "(c) encoder layers fed the source")


# ================================================================================================ shared helpers
def held_out_by_length(task: Seq2SeqTask, lengths, per_length: int, seed: int) -> list[Seq2SeqExample]:
    """`per_length` distinct examples at every length (fewer where fewer exist), excluded from training later."""
    rng = np.random.default_rng([seed, 7])
    examples = []
    for length in lengths:
        examples += sample_examples(task, min(per_length, task.num_examples(length)), length, length, rng)
    return examples


def train(model, task: Seq2SeqTask, lengths: tuple[int, int], steps: int, batch_size: int, lr: float,
          held_out, seed: int, evaluate=None, eval_every: int = 0):
    """train_seq2seq with a 10% warmup; the held-out examples never appear in a training batch."""
    config = Seq2SeqTrainConfig(steps=steps, batch_size=batch_size, min_length=lengths[0], max_length=lengths[1],
                                lr=lr, warmup_steps=max(1, steps // 10), eval_every=eval_every, seed=seed)
    return train_seq2seq(model, task, config, held_out=held_out, evaluate=evaluate, progress=False)


def free_running_token_accuracy(predictions, examples) -> float:
    """Fraction of target positions (each target's tokens and its EOS) where the greedy output holds the right token.

    The same positions as the teacher-forced token accuracy, but the decoder read its OWN earlier outputs: the
    gap between the two is what exposure bias costs. The EOS position counts as right when the output stops there.
    """
    correct = counted = 0
    for predicted, example in zip(predictions, examples):
        target = example.target
        correct += sum(p == t for p, t in zip(predicted, target)) + (len(predicted) == len(target))
        counted += len(target) + 1
    return correct / counted


def evaluate_by_length(model, task: Seq2SeqTask, examples) -> dict:
    """Greedy exact match, teacher-forced and free-running token accuracy per task length, and the predictions
    (in the order of `examples`)."""
    groups = defaultdict(list)
    for index, example in enumerate(examples):
        groups[task.length_of(example.source)].append(index)
    lengths = sorted(groups)
    result = {"lengths": lengths, "exact_match": [], "token_accuracy": [], "free_token_accuracy": []}
    predictions = [None] * len(examples)
    for length in lengths:
        chosen = [examples[i] for i in groups[length]]
        scores = evaluate_seq2seq(model, chosen, task.vocabulary)
        result["exact_match"].append(scores["exact_match"])
        result["token_accuracy"].append(scores["token_accuracy"])
        result["free_token_accuracy"].append(free_running_token_accuracy(scores["predictions"], chosen))
        for index, predicted in zip(groups[length], scores["predictions"]):
            predictions[index] = predicted
    result["predictions"] = predictions
    return result


def error_analysis(task: Seq2SeqTask, examples, predictions) -> dict:
    """Where the failures are: per length the error rate and the share of errors with the wrong output length,
    and for every wrong output the relative position (0 = first token, 1 = the end) of its first wrong token."""
    per_length = defaultdict(lambda: {"count": 0, "errors": 0, "wrong_length": 0})
    first_error = []
    for example, predicted in zip(examples, predictions):
        entry = per_length[task.length_of(example.source)]
        entry["count"] += 1
        target = tuple(example.target)
        if tuple(predicted) == target:
            continue
        entry["errors"] += 1
        entry["wrong_length"] += len(predicted) != len(target)
        position = next((i for i, (p, t) in enumerate(zip(predicted, target)) if p != t), min(len(predicted), len(target)))
        first_error.append(position / len(target))
    lengths = sorted(per_length)
    return {"lengths": lengths,
            "error_rate": [per_length[n]["errors"] / per_length[n]["count"] for n in lengths],
            "wrong_length_share": [per_length[n]["wrong_length"] / max(per_length[n]["errors"], 1) for n in lengths],
            "errors": [per_length[n]["errors"] for n in lengths],
            "first_error_relative_position": first_error}


# ================================================================================================ Q14: the bottleneck
def build_bottleneck_model(name: str, vocab_size: int, max_length: int, width: int, layers: int):
    """One of BOTTLENECK_MODELS, with about the same number of parameters: the Transformer has d = width and
    learned positions for `max_length` source tokens (and max_length + 1 decoder inputs); the GRUs have hidden
    size 2 * width and embeddings of width `width` (60.9k, 60.3k and 52.0k parameters at width 32)."""
    if name == "Transformer":
        return TransformerEncoderDecoder(vocab_size, max_length, max_length + 1, embed_dim=width, num_heads=4,
                                         num_encoder_layers=layers, num_decoder_layers=layers)
    if name not in BOTTLENECK_MODELS:
        raise ValueError(f"build_bottleneck_model: unknown model {name!r}; choose one of {BOTTLENECK_MODELS}")
    return RecurrentEncoderDecoder(vocab_size, "gru", embed_dim=width, hidden_dim=2 * width,
                                   attention=name == "GRU + attention")


def bottleneck(fast: bool = True, seed: int = 0, models=BOTTLENECK_MODELS, steps: int | None = None) -> dict:
    """Reverse digit strings: train on lengths 3..10 (full: 5..20), test exact match at 3..14 (full: 5..40).

    Every model gets the same steps (400, full 1000; `steps` overrides it), batch, learning rate and width. The
    Transformer's learned positions are built for the longest TEST length, so it runs there; but the rows for
    positions beyond the training lengths never received a gradient, and what it does there is measured, not assumed.
    """
    size = (dict(train=(3, 10), test=(3, 14), steps=steps or 400, batch_size=32, lr=3e-3, width=32, layers=2,
                 per_length=30)
            if fast else
            dict(train=(5, 20), test=(5, 40), steps=steps or 1000, batch_size=32, lr=3e-3, width=32, layers=2,
                 per_length=40))
    task = make_task("reverse")
    test_lengths = list(range(size["test"][0], size["test"][1] + 1))
    held_out = held_out_by_length(task, test_lengths, size["per_length"], seed)
    result = {"train_lengths": list(size["train"]), "test_lengths": test_lengths, "steps": size["steps"],
              "batch_size": size["batch_size"], "held_out": held_out, "models": {}, "results": {}}
    for name in models:
        manual_seed(seed)
        model = build_bottleneck_model(name, task.vocabulary.size, size["test"][1], size["width"], size["layers"])
        run = train(model, task, size["train"], size["steps"], size["batch_size"], size["lr"], held_out, seed)
        scores = evaluate_by_length(model, task, held_out)
        result["models"][name] = model
        result["results"][name] = {"parameters": model.num_parameters(), "train_seconds": run.seconds,
                                   "final_train_loss": run.history[-1]["train_loss"], **scores}
    longest = test_lengths.index(size["train"][1])
    result["exact_match_at_longest_train_length"] = {name: scores["exact_match"][longest]
                                                     for name, scores in result["results"].items()}
    return result


# ================================================================================================ Q15: the label leak
class PrefixCache(Seq2SeqCache):
    """What EncoderLayerStack needs between calls: every token fed so far (it recomputes all of them each step,
    since without a causal mask an old position's output changes when a new token arrives)."""

    def __init__(self, batch_size: int):
        super().__init__(batch_size)
        self.tokens = np.zeros((batch_size, 0), dtype=np.int64)

    def reorder(self, rows) -> None:
        self.tokens = self.tokens[np.asarray(rows)]
        self.batch_size = len(self.tokens)


class EncoderLayerStack(Seq2SeqModel):
    """Misconception M31 as a model: embeddings + positions -> TransformerBlocks with causal=False -> head.

    No causal mask and no cross-attention, so it reads ONE sequence, and `reads` says which:
    - "shifted_target": the decoder input [BOS, y_0, .., y_{n-1}]. Position t must predict y_t, and without the
      mask it can read it at position t + 1: teacher forcing looks perfect. Generating, the next token does not
      exist yet, and the source is never read at all.
    - "source": the source plus one EOS slot, one output per slot: output t is the prediction for target
      token t. That is a tagger, not a decoder: its output is exactly as long as its input (plus EOS), so a
      target of another length ("duplicate each token") cannot come out. Past its last slot it emits EOS.
    """

    def __init__(self, vocab_size: int, max_length: int, embed_dim: int = 32, num_heads: int = 4,
                 num_layers: int = 1, reads: str = "shifted_target"):
        if reads not in ("shifted_target", "source"):
            raise ValueError(f"EncoderLayerStack: reads must be 'shifted_target' or 'source', got {reads!r}")
        self._config = dict(vocab_size=vocab_size, max_length=max_length, embed_dim=embed_dim, num_heads=num_heads,
                            num_layers=num_layers, reads=reads)
        self.vocab_size, self.reads = vocab_size, reads
        if reads == "source":
            self.max_source_length = max_length - 1          # one slot is the EOS after the source
        else:
            self.max_target_length = max_length
        self.embedding = Embedding(vocab_size, embed_dim)
        self.positions = LearnedPositionalEmbedding(max_length, embed_dim)
        self.blocks = [TransformerBlock(embed_dim, num_heads) for _ in range(num_layers)]
        self.norm = LayerNorm(embed_dim)
        self.head = Linear(embed_dim, vocab_size)
        for parameter in self.parameters():   # TransformerEncoderDecoder's N(0, 0.02), so only the wiring differs
            if parameter.ndim >= 2:
                init.normal_(parameter, std=0.02)
        eos_only = np.full(vocab_size, -30.0, dtype=np.float32)
        eos_only[EOS_ID] = 0.0
        self._eos_logits = eos_only

    @property
    def config(self) -> dict:
        return dict(self._config)

    def _run(self, ids: np.ndarray, padding=None) -> Tensor:
        """(B, L) ids -> (B, L, V) logits, every position reading every other one (causal=False)."""
        x = self.embedding(ids) + self.positions(ids.shape[1])
        for block in self.blocks:
            x = block(x, causal=False, padding_mask=padding)
        return self.head(self.norm(x))

    def encode(self, source, source_padding=None) -> EncodedSource:
        source, padding = self.check_source(source, source_padding)
        if self.reads == "shifted_target":
            # Nothing of the source is kept: this "decoder" has no cross-attention to read it with.
            return EncodedSource(Tensor(np.zeros((*source.shape, 1), dtype=np.float32)), padding)
        lengths = (~padding).sum(axis=1)
        slots = np.concatenate([source, np.zeros((len(source), 1), dtype=np.int64)], axis=1)
        slots[np.arange(len(source)), lengths] = EOS_ID
        slot_padding = np.arange(slots.shape[1])[None, :] > lengths[:, None]
        # Its "states" are already its outputs: one row of logits per slot.
        return EncodedSource(self._run(slots, slot_padding), slot_padding)

    def new_cache(self, encoded: EncodedSource) -> PrefixCache:
        return PrefixCache(encoded.batch_size)

    def decode(self, decoder_input, encoded: EncodedSource, cache: PrefixCache | None = None) -> Tensor:
        ids = self.check_decoder_input(decoder_input, encoded, cache)
        start = cache.length if cache is not None else 0
        if self.reads == "shifted_target":
            tokens = ids if cache is None else np.concatenate([cache.tokens, ids], axis=1)
            logits = self._run(tokens)[:, start:]
        else:
            logits = self._slot_outputs(encoded, start, ids.shape[1])
        if cache is not None:
            cache.tokens = np.concatenate([cache.tokens, ids], axis=1)
            cache.length += ids.shape[1]
        return logits

    def _slot_outputs(self, encoded: EncodedSource, start: int, count: int) -> Tensor:
        """Outputs start .. start + count - 1: slot t's logits, or EOS where a row has no slot t."""
        positions = start + np.arange(count)
        available = int((positions < encoded.states.shape[1]).sum())
        tail = Tensor(np.broadcast_to(self._eos_logits, (encoded.batch_size, count - available, self.vocab_size)).copy())
        logits = cat([encoded.states[:, start:start + available], tail], axis=1) if available else tail
        slots_per_row = (~encoded.padding).sum(axis=1)
        return where((positions[None, :] >= slots_per_row[:, None])[..., None], self._eos_logits, logits)


def build_leak_model(variant: str, vocab_size: int, length: int, width: int, layers: int):
    """One of LEAK_VARIANTS, sized for sources of `length` and targets up to 2 * length (duplicate)."""
    if variant == LEAK_VARIANTS[0]:
        return TransformerEncoderDecoder(vocab_size, length, 2 * length + 1, embed_dim=width, num_heads=4,
                                         num_encoder_layers=layers, num_decoder_layers=layers)
    if variant == LEAK_VARIANTS[1]:
        return EncoderLayerStack(vocab_size, 2 * length + 1, width, 4, 2 * layers, reads="shifted_target")
    if variant == LEAK_VARIANTS[2]:
        return EncoderLayerStack(vocab_size, length + 1, width, 4, 2 * layers, reads="source")
    raise ValueError(f"build_leak_model: unknown variant {variant!r}; choose one of {LEAK_VARIANTS}")


def label_leak(fast: bool = True, seed: int = 0, steps: int | None = None) -> dict:
    """Q15: (a) the encoder-decoder, (b) encoder layers fed the shifted target, (c) encoder layers fed the source,
    on reversal and on "duplicate each token", all strings of one length (8; full 12), 500 steps each (full 800;
    `steps` overrides it).

    Each stack gets as many layers as the encoder-decoder has in all (1 + 1 -> 2). Reported per variant and task:
    teacher-forced token accuracy and loss, free-running (greedy) exact match and token accuracy.
    """
    size = (dict(length=8, width=32, layers=1, steps=steps or 500, batch_size=32, lr=3e-3, held_out=200) if fast else
            dict(length=12, width=32, layers=1, steps=steps or 800, batch_size=32, lr=3e-3, held_out=300))
    runs = [(LEAK_VARIANTS[0], "reverse"), (LEAK_VARIANTS[0], "duplicate"), (LEAK_VARIANTS[1], "reverse"),
            (LEAK_VARIANTS[2], "reverse"), (LEAK_VARIANTS[2], "duplicate")]
    length = size["length"]
    result = {"length": length, "steps": size["steps"], "results": defaultdict(dict), "models": defaultdict(dict)}
    for variant, task_name in runs:
        task = make_task(task_name)
        held_out = held_out_by_length(task, [length], size["held_out"], seed)
        manual_seed(seed)
        model = build_leak_model(variant, task.vocabulary.size, length, size["width"], size["layers"])
        run = train(model, task, (length, length), size["steps"], size["batch_size"], size["lr"], held_out, seed)
        scores = evaluate_seq2seq(model, held_out, task.vocabulary)
        result["models"][variant][task_name] = model
        result["results"][variant][task_name] = {
            "parameters": model.num_parameters(), "train_seconds": run.seconds,
            "final_train_loss": run.history[-1]["train_loss"], "teacher_forced_loss": scores["loss"],
            "token_accuracy": scores["token_accuracy"], "exact_match": scores["exact_match"],
            "free_token_accuracy": free_running_token_accuracy(scores["predictions"], held_out),
            "example": (held_out[0].source, held_out[0].target, tuple(scores["predictions"][0]))}
    result["results"], result["models"] = dict(result["results"]), dict(result["models"])
    return result


# ================================================================================================ greedy vs beam
def compare_searches(model, task: Seq2SeqTask, examples, widths=(1, 2, 4, 8)) -> dict:
    """Decode `examples` greedily and with beam search of each width (no length penalty).

    Per search: exact match, corpus BLEU (references first), the mean model score (summed log-probability of the
    output and its EOS) and the time. Per width: on how many sources beam search returned a sequence the MODEL
    scores higher than greedy's, lower, or the same; and whether width 1 gave exactly greedy's outputs.
    """
    batch = make_batch(examples, task.vocabulary)
    options = dict(bos_id=task.vocabulary.bos_id, eos_id=task.vocabulary.eos_id, max_length=batch.decoder_input.shape[1])
    references = [[list(example.target)] for example in examples]

    def summary(decoded, seconds: float) -> dict:
        predictions = [task.vocabulary.decode(tokens) for tokens in decoded.tokens]
        return {"exact_match": float(np.mean([tuple(p) == e.target for p, e in zip(predictions, examples)])),
                "bleu": corpus_bleu(references, predictions).score, "mean_log_prob": float(np.mean(decoded.scores)),
                "seconds": seconds, "predictions": predictions}

    start = time.perf_counter()
    greedy = greedy_decode(model, batch.source, batch.source_padding, **options)
    searches = {"greedy": summary(greedy, time.perf_counter() - start)}
    comparison = {}
    for width in widths:
        start = time.perf_counter()
        beam = beam_search(model, batch.source, batch.source_padding, beam_width=width, **options)
        searches[f"beam {width}"] = summary(beam, time.perf_counter() - start)
        difference = beam.scores - greedy.scores
        comparison[width] = {"higher": int((difference > 1e-6).sum()), "lower": int((difference < -1e-6).sum()),
                             "same": int((np.abs(difference) <= 1e-6).sum())}
        if width == 1:
            comparison[width]["equals_greedy"] = bool(beam.tokens == greedy.tokens
                                                      and np.allclose(beam.scores, greedy.scores, atol=1e-9))
    return {"searches": searches, "beam_vs_greedy": comparison,
            "teacher_forced_token_accuracy": evaluate_seq2seq(model, examples, task.vocabulary)["token_accuracy"]}


def decoding_comparison(fast: bool = True, seed: int = 0, widths=(1, 2, 4, 8), steps: int | None = None) -> dict:
    """Train a Transformer on toy translation (A -> B) and run `compare_searches` on the held-out sources at several
    checkpoints: early on, while the model is still unsure, and at the end, when it may be confidently right.
    500 steps with a checkpoint every 100 (full: 1000, every 200); `steps` overrides the number of steps."""
    size = (dict(lengths=(1, 1), steps=steps or 500, eval_every=100, batch_size=32, lr=3e-3, width=64, layers=1,
                 held_out=150)
            if fast else
            dict(lengths=(1, 2), steps=steps or 1000, eval_every=200, batch_size=32, lr=3e-3, width=64, layers=1,
                 held_out=400))
    task = make_task("translation")
    low, high = size["lengths"]
    held_out = held_out_by_length(task, range(low, high + 1), size["held_out"] // (high - low + 1), seed)
    manual_seed(seed)
    model = TransformerEncoderDecoder(task.vocabulary.size, task.max_source_length(high), task.max_target_length(high) + 1,
                                      embed_dim=size["width"], num_heads=4, num_encoder_layers=size["layers"],
                                      num_decoder_layers=size["layers"])
    snapshots = []

    def evaluate(trained) -> dict:
        snapshots.append(compare_searches(trained, task, held_out, widths))
        return {"greedy_exact_match": snapshots[-1]["searches"]["greedy"]["exact_match"]}

    run = train(model, task, size["lengths"], size["steps"], size["batch_size"], size["lr"], held_out, seed,
                evaluate=evaluate, eval_every=size["eval_every"])
    checkpoints = [{"step": entry["step"], **snapshot} for entry, snapshot in zip(run.history, snapshots)]
    return {"lengths": list(size["lengths"]), "steps": size["steps"], "held_out": held_out,
            "parameters": model.num_parameters(), "train_seconds": run.seconds, "checkpoints": checkpoints,
            "model": model}


# ================================================================================================ Q16: knowledge as input
class KnowledgeTableTask(Seq2SeqTask):
    """Look a value up in a table that is new for every example: "e2=v5 e0=v1 e3=v7 ? e0" -> "e0 v1".

    Each fact is ONE token "entity=value". `length` = number of facts, each entity at most once, in random
    order; the question asks for one of them. The reply names the entity, then its value. Values are uniform
    and independent of the entity, so the value is in the table and nowhere else: no amount of training can
    put it into the weights. (Naming the entity first lets the decoder's own input hold it when the value is
    looked up: one cross-attention hop, which a small model learns in a few hundred steps.)
    """

    name = "knowledge_table"
    QUESTION = "?"

    def __init__(self, num_entities: int = 4, num_values: int = 8):
        for label, value in (("num_entities", num_entities), ("num_values", num_values)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"KnowledgeTableTask: {label} must be an int >= 1, got {value!r}")
        self.entities = tuple(f"e{i}" for i in range(num_entities))
        self.values = tuple(f"v{i}" for i in range(num_values))
        self.facts = tuple(f"{entity}={value}" for entity in self.entities for value in self.values)
        super().__init__((*self.entities, *self.values, *self.facts, self.QUESTION))

    def _check_length(self, length):
        length = super()._check_length(length)
        if length > len(self.entities):
            raise ValueError(f"KnowledgeTableTask: a table holds at most {len(self.entities)} facts (one per entity), "
                             f"got length {length}; build the task with more entities")
        return length

    def _sample_source(self, rng, length):
        entities = [self.entities[i] for i in rng.choice(len(self.entities), size=length, replace=False)]
        facts = [f"{entity}={self.values[int(rng.integers(len(self.values)))]}" for entity in entities]
        return (*facts, self.QUESTION, entities[int(rng.integers(length))])

    def _table(self, source) -> dict:
        source = self._check_symbols(source, self.vocabulary.symbols)
        facts, question = source[:-2], source[-2:]
        table = dict(fact.split("=") for fact in facts if fact in self.facts)
        if question[0] != self.QUESTION or len(table) != len(facts) or question[1] not in table:
            raise ValueError(f"KnowledgeTableTask: a source reads 'entity=value ... ? entity' with distinct entities "
                             f"and the asked entity in the table, got {list(source)}")
        return table

    def target_for(self, source):
        return source[-1], self._table(source)[source[-1]]

    def length_of(self, source):
        return len(self._table(source))

    def num_examples(self, length):
        length = self._check_length(length)
        tables = int(np.prod(range(len(self.entities) - length + 1, len(self.entities) + 1))) * len(self.values) ** length
        return tables * length

    def max_source_length(self, length):
        return self._check_length(length) + 2

    def max_target_length(self, length):
        self._check_length(length)
        return 2


class QuestionOnlyEncoderDecoder(TransformerEncoderDecoder):
    """The same encoder-decoder, blind to the table: every source token before the question mark counts as padding,
    so neither the encoder nor cross-attention can read it. Same parameters, same training, one input less."""

    def __init__(self, *args, question_id: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.question_id = question_id
        self._config["question_id"] = question_id

    def encode(self, source, source_padding=None) -> EncodedSource:
        source, padding = self.check_source(source, source_padding)
        before_question = np.cumsum(source == self.question_id, axis=1) == 0
        return super().encode(source, padding | before_question)


def knowledge_table(fast: bool = True, seed: int = 0, steps: int | None = None) -> dict:
    """Q16: the same Transformer encoder-decoder with the table as encoder input tokens, and blind to it.

    The question-only model can do no better than guess among the values (1 / num_values); the model that reads
    the table can look the answer up. Reported: held-out exact match of both, and chance (the entity in the reply
    is copied from the question, so the question-only model's exact match is its value accuracy).
    600 steps each (full 1500; `steps` overrides it).
    """
    size = (dict(entities=4, values=8, steps=steps or 600, batch_size=32, lr=5e-3, width=32, layers=1, held_out=300)
            if fast else
            dict(entities=4, values=8, steps=steps or 1500, batch_size=32, lr=5e-3, width=32, layers=1, held_out=500))
    task = KnowledgeTableTask(size["entities"], size["values"])
    length = size["entities"]
    held_out = held_out_by_length(task, [length], size["held_out"], seed)
    question_id = task.vocabulary.encode([task.QUESTION])[0]
    result = {"entities": size["entities"], "values": size["values"], "steps": size["steps"],
              "chance": 1 / size["values"], "results": {}, "models": {}}
    for name, model_class, extra in (("question only", QuestionOnlyEncoderDecoder, {"question_id": question_id}),
                                     ("question + table tokens", TransformerEncoderDecoder, {})):
        manual_seed(seed)
        model = model_class(task.vocabulary.size, task.max_source_length(length), task.max_target_length(length) + 1,
                            embed_dim=size["width"],
                            num_heads=4, num_encoder_layers=size["layers"], num_decoder_layers=size["layers"], **extra)
        run = train(model, task, (length, length), size["steps"], size["batch_size"], size["lr"], held_out, seed)
        scores = evaluate_seq2seq(model, held_out, task.vocabulary)
        result["models"][name] = model
        result["results"][name] = {"exact_match": scores["exact_match"], "teacher_forced_loss": scores["loss"],
                                   "train_seconds": run.seconds, "parameters": model.num_parameters()}
    result["example"] = held_out[0]
    return result
