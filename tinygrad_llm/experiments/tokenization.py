"""Chapter 4 experiments: tokenization, padding and training-data processing (Q06, Q07).

Each function returns a dict of plain numbers, lists and strings, so a notebook can print and plot it and a
test can assert on it. `fast=True` shrinks the text and the training budget for CI; the notebook runs
`fast=False`.

Q06 (inputs and outputs)
- `tokens_per_character`: byte-level BPE with more and more merges, cost per character in English and
  Chinese (the committed parallel sample), and no UNK anywhere.
- `whitespace_oov`: a whitespace "word" vocabulary on the same parallel text: Chinese has no spaces.
- `normalisation_effect`: the same small language model trained on raw text and on lowercased,
  punctuation- and stopword-stripped text (M15): what the text loses and what the samples can contain.
- `padding_masks`: appending or prepending PAD changes real positions unless attention masks it, and PAD
  targets must be left out of the loss (M19).

Q07 (training data)
- `duplication_effect`: 5% of the lines repeated 20 times against the deduplicated text, same compute:
  held-out perplexity, the train-validation gap, and regurgitation (lines recited verbatim).
- `minhash_quality`: precision and recall of MinHash + LSH near-duplicate detection on perturbed copies.

The two language-model experiments train the MLP language model (a fixed window of previous characters
predicts the next; notebook 05 builds it) with `train_on_ids`, the shared training loop's steps on token ids
the experiment prepares itself (its own train/validation split, its own tokenizer).
"""
from __future__ import annotations

import math
import re

import numpy as np

from ..autograd import no_grad
from ..data import ByteBPETokenizer, CharTokenizer, load_text, multilingual_sample, pad_batch
from ..data.deduplication import MinHash, exact_deduplicate, jaccard, lsh_candidate_pairs, shingles
from ..data.normalization import NOT_WORD_OR_SPACE, classic_nlp_normalise
from ..generation import generate
from ..nn import GPT
from ..nn import functional as F
from ..random import manual_seed
from ..tensor import Tensor
from ..training import TextData, TrainConfig, train_language_model

CJK = re.compile(r"[\u3400-\u9fff]")
IGNORE_INDEX = -100
# Flag a pair as a near duplicate when its MinHash estimate is >= 0.75: about 1.5 standard deviations
# (sqrt(0.8 * 0.2 / 128) ≈ 0.035) below the target similarity 0.8, so pairs at the target are rarely missed.
DECISION_THRESHOLD = 0.75


# ---------------------------------------------------------------------------------------------- shared helpers
def parallel_sample(test_fraction: float = 0.25) -> dict[str, list[str]]:
    """The Chinese/English sample as aligned line lists, split by pair: the last `test_fraction` held out.

    Returns {"zh_train", "en_train", "zh_test", "en_test"}; zh_train[i] and en_train[i] say the same thing.
    """
    lines = [line for line in multilingual_sample().split("\n") if line.strip()]
    chinese = [line for line in lines if CJK.search(line)]
    english = [line for line in lines if not CJK.search(line)]
    if len(chinese) != len(english):
        raise ValueError(f"parallel_sample: expected Chinese and English lines in pairs, got {len(chinese)} and "
                         f"{len(english)}")
    cut = round(len(chinese) * (1 - test_fraction))
    return {"zh_train": chinese[:cut], "en_train": english[:cut], "zh_test": chinese[cut:], "en_test": english[cut:]}


def tokens_per_char(tokenizer, lines) -> float:
    """Tokens per character over `lines`, each encoded on its own (as documents would be)."""
    return sum(len(tokenizer.encode(line)) for line in lines) / sum(len(line) for line in lines)


def complete_text(piece: bytes) -> str | None:
    """A token's bytes as text, or None when they are part of a character (not valid UTF-8 on their own)."""
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError:
        return None


def piece_label(piece: bytes) -> str:
    """A token for display: its text, or its bytes in hex ("<e4 bd>") when it holds part of a character."""
    text = complete_text(piece)
    return text if text is not None else f"<{piece.hex(' ')}>"


def uppercase_share(text: str) -> float:
    """Uppercase letters as a fraction of all letters."""
    letters = [c for c in text if c.isalpha()]
    return sum(c.isupper() for c in letters) / max(1, len(letters))


def punctuation_share(text: str) -> float:
    """Punctuation and symbols (what classic_nlp_normalise deletes) as a fraction of all characters."""
    return len(NOT_WORD_OR_SPACE.findall(text)) / max(1, len(text))


def train_on_ids(config: TrainConfig, tokenizer, train_ids: np.ndarray, val_ids: np.ndarray):
    """(model, {"train_loss", "val_loss"}) after the shared training loop on ids this experiment prepared itself."""
    run = train_language_model(config, progress=False, data=TextData(tokenizer, train_ids, val_ids))
    return run.model, {"train_loss": run.final["train_loss"], "val_loss": run.final["val_loss"]}


def char_lm_config(fast: bool, seed: int) -> TrainConfig:
    """The small character-level MLP language model both LM experiments train (16 characters of context)."""
    return TrainConfig(model="mlp", tokenizer="char", mlp_window=16, embed_dim=24, hidden_dim=256,
                       context_size=64, batch_size=16, steps=400 if fast else 1500, warmup_steps=40, lr=3e-3,
                       min_lr=3e-4, eval_batches=10 if fast else 40, seed=seed)


# ---------------------------------------------------------------------------------------------- Q06, experiment 1
def tokens_per_character(fast: bool = True) -> dict:
    """Byte-level BPE trained on English text plus the training half of the Chinese/English sample.

    Measures tokens per character on held-out sample lines, per language, for each merge count; the
    token cost of the same sentences in Chinese vs English; how many merges produce non-ASCII (here:
    Chinese, emoji) pieces; and that no text needs UNK. English: the first 200 kB of the built-in corpus
    (fast: 20 kB in all); merges 0/100/500/1000 (fast: 0/100/200/300). BPE training is greedy, so the
    first m merges of the largest run are exactly what training with m merges gives: one run serves all.
    """
    sample = parallel_sample()
    sample_chars = sum(len(line) + 1 for line in sample["zh_train"] + sample["en_train"])
    english_chars = 20_000 - sample_chars if fast else 200_000
    training_text = "\n".join([load_text("embedded")[:english_chars], *sample["zh_train"], *sample["en_train"]])
    merge_counts = [0, 100, 200, 300] if fast else [0, 100, 500, 1000]
    largest = ByteBPETokenizer.train(training_text, num_merges=merge_counts[-1])
    result = {"training_chars": len(training_text), "english_chars": english_chars, "merge_counts": merge_counts,
              "merges_learned": len(largest.merges), "held_out_lines": len(sample["zh_test"]),
              "zh_chars": sum(map(len, sample["zh_test"])), "en_chars": sum(map(len, sample["en_test"])),
              "zh": [], "en": [], "all": [], "zh_train": [], "en_train": [], "zh_over_en_tokens": [],
              "non_ascii_merges": [], "unk_ids": 0, "round_trips": True}
    held_out = sample["zh_test"] + sample["en_test"]
    for count in merge_counts:
        tokenizer = ByteBPETokenizer(largest.merges[:count])
        result["zh"].append(tokens_per_char(tokenizer, sample["zh_test"]))
        result["en"].append(tokens_per_char(tokenizer, sample["en_test"]))
        result["all"].append(tokens_per_char(tokenizer, held_out))
        result["zh_train"].append(tokens_per_char(tokenizer, sample["zh_train"]))
        result["en_train"].append(tokens_per_char(tokenizer, sample["en_train"]))
        zh_tokens = sum(len(tokenizer.encode(line)) for line in sample["zh_test"])
        en_tokens = sum(len(tokenizer.encode(line)) for line in sample["en_test"])
        result["zh_over_en_tokens"].append(zh_tokens / en_tokens)
        result["non_ascii_merges"].append(sum(max(tokenizer.token_bytes(m.new_id)) > 127 for m in tokenizer.merges))
        result["unk_ids"] += sum(int(np.sum(tokenizer.encode(line) == tokenizer.unk_id)) for line in held_out)
        result["round_trips"] &= all(tokenizer.decode(tokenizer.encode(line)) == line for line in held_out)
    pieces = [complete_text(largest.token_bytes(merge.new_id)) for merge in largest.merges]
    result["chinese_tokens"] = [piece for piece in pieces if piece is not None and CJK.search(piece)]
    example = sample["zh_test"][0]
    pieces = [largest.token_bytes(i) for i in largest.encode(example)]
    result["example"] = {"text": example, "tokens": len(pieces), "chars": len(example),
                         "pieces": [piece_label(p) for p in pieces]}
    return result


# ---------------------------------------------------------------------------------------------- Q06, experiment 2
def whitespace_oov() -> dict:
    """Out-of-vocabulary rates when the vocabulary is the set of whitespace-separated words of the training lines.

    On the parallel sample (same content in both languages, split by pair): a Chinese "word" is a whole
    clause, so nearly every test word is new. Also the character tokenizer's unknown characters (a closed
    alphabet) and byte-level BPE's (none: 256 bytes cover everything).
    """
    sample = parallel_sample()
    result = {}
    for language in ("en", "zh"):
        train, test = sample[f"{language}_train"], sample[f"{language}_test"]
        vocabulary = {word for line in train for word in line.split()}
        test_words = [word for line in test for word in line.split()]
        oov = [word for word in test_words if word not in vocabulary]
        characters = CharTokenizer.train("\n".join(train), unknown="unk")
        test_ids = np.concatenate([characters.encode(line) for line in test])
        bpe = ByteBPETokenizer.train("\n".join(train), num_merges=100)
        result[language] = {
            "vocabulary": len(vocabulary), "test_words": len(test_words), "oov_words": len(oov),
            "word_oov_rate": len(oov) / len(test_words),
            "chars_per_word": sum(map(len, test_words)) / len(test_words),
            "char_oov_rate": float(np.mean(test_ids == characters.unk_id)),
            "bpe_unk_rate": float(np.mean(np.concatenate([bpe.encode(line) for line in test]) == bpe.unk_id)),
            "example_words": test[0].split()[:6], "example_oov": oov[:4],
        }
    return result


# ---------------------------------------------------------------------------------------------- Q06, experiment 3
def normalisation_effect(fast: bool = True, seed: int = 0) -> dict:
    """The same character-level LM trained on raw text and on classic_nlp_normalise(raw text) (M15).

    Measures what normalising removes (characters deleted, letters whose case changed, alphabet size),
    the uppercase and punctuation shares of the training texts and of sampled text (temperature 1), and
    how much of the raw text the normalised model's vocabulary cannot even read. The first 100 kB of the
    built-in corpus (fast: 20 kB); the same model, steps and seed for both runs.
    """
    raw = load_text("embedded")[:20_000 if fast else 100_000]
    texts = {"raw": raw, "normalised": classic_nlp_normalise(raw)}
    config = char_lm_config(fast, seed)
    result = {"chars": len(raw), "steps": config.steps,
              "deleted_share": 1 - len(texts["normalised"]) / len(raw),
              "case_changed_share": sum(c.isupper() for c in raw) / len(raw),
              "raw_excerpt": raw[1000:1200], "normalised_excerpt": classic_nlp_normalise(raw[1000:1200]), "runs": {}}
    for name, text in texts.items():
        tokenizer = CharTokenizer.train(text)
        ids = tokenizer.encode(text)
        cut = int(0.9 * len(ids))
        model, losses = train_on_ids(config, tokenizer, ids[:cut], ids[cut:])
        prompt = tokenizer.encode("\n")
        samples = [tokenizer.decode(generate(model, prompt, 300 if fast else 600, temperature=1.0, seed=seed + i)[1:])
                   for i in range(3)]
        joined = "".join(samples)
        result["runs"][name] = {
            "alphabet": len(tokenizer.chars), "uppercase_in_vocab": sum(c.isupper() for c in tokenizer.chars),
            "train_uppercase_share": uppercase_share(text), "train_punctuation_share": punctuation_share(text),
            "sample_uppercase_share": uppercase_share(joined), "sample_punctuation_share": punctuation_share(joined),
            "unreadable_raw_share": sum(c not in set(tokenizer.chars) for c in raw) / len(raw),
            "samples": samples, **losses,
        }
    return result


# ---------------------------------------------------------------------------------------------- Q06, experiment 4
def padding_masks(seed: int = 0) -> dict:
    """Does padding change the outputs at real positions? Three set-ups, each with and without the mask.

    - "encoder": bidirectional attention (scaled_dot_product_attention, not causal); PAD keys appended on
      the right are attended to unless masked.
    - "decoder, right": a causal GPT with PAD appended on the right: real tokens never see later tokens,
      so the pads are invisible either way; they still create positions whose targets must be ignored.
    - "decoder, left": a causal GPT with rotary positions (relative, so shifting a sequence does not move
      its outputs) and PAD prepended, as batched generation needs: every real token sees the pads unless
      masked. Also the same with learned absolute positions, where left padding moves every position.
    Plus the loss: PAD targets set to ignore_index contribute nothing; counted as targets they change it,
    and pad queries that see no key at all give zeros, not NaN.
    Max |difference| of logits (or outputs) at real positions, float32.
    """
    rng = np.random.default_rng(seed)
    vocab, pad_id, lengths = 40, 0, (9, 5, 3)
    sequences = [rng.integers(1, vocab, size=n) for n in lengths]
    result = {"lengths": list(lengths), "pad_id": pad_id, "diff": {}}

    # encoder-style attention over token vectors: the pads are keys every real query can see
    embeddings = rng.standard_normal((vocab, 16)).astype(np.float32)

    def attend(ids, mask):
        x = Tensor(embeddings[ids][:, None])  # (B, 1 head, T, 16)
        return F.scaled_dot_product_attention(x, x, x, padding_mask=mask).data[:, 0]

    def gpt_logits(positions):
        manual_seed(seed)
        gpt = GPT(vocab, context_size=16, embed_dim=32, num_heads=4, num_layers=2, positions=positions)
        gpt.eval()

        def logits(ids, mask):
            return gpt(ids, padding_mask=mask).data
        return logits

    with no_grad():
        setups = {"encoder": ("right", attend), "decoder, right": ("right", gpt_logits("learned")),
                  "decoder, left": ("left", gpt_logits("rope")),
                  "decoder, left, learned positions": ("left", gpt_logits("learned"))}
        for name, (side, outputs) in setups.items():
            batch = pad_batch(sequences, pad_id, side=side)
            worst = {"masked": 0.0, "unmasked": 0.0}
            for row, sequence in enumerate(sequences):
                alone = outputs(sequence[None], None)[0]
                real = ~batch.padding_mask[row]
                for label, mask in (("masked", batch.padding_mask), ("unmasked", None)):
                    worst[label] = max(worst[label], float(np.abs(outputs(batch.ids, mask)[row][real] - alone).max()))
            result["diff"][name] = worst
            if name == "decoder, left":
                result["left_pad_outputs_finite"] = bool(np.isfinite(outputs(batch.ids, batch.padding_mask)).all())

        # the loss: targets at pad positions ignored, or (the bug) counted
        manual_seed(seed)
        gpt = GPT(vocab, context_size=16, embed_dim=32, num_heads=4, num_layers=2)
        gpt.eval()
        batch = pad_batch(sequences, pad_id, side="right")
        inputs, targets = batch.ids[:, :-1], batch.ids[:, 1:].copy()
        logits = gpt(inputs, padding_mask=batch.padding_mask[:, :-1])
        ignored = targets.copy()
        ignored[batch.padding_mask[:, 1:]] = IGNORE_INDEX
        per_sequence = [F.cross_entropy(gpt(s[None, :-1]), s[None, 1:], reduction="sum").item() for s in sequences]
        result["loss"] = {
            "unpadded": sum(per_sequence) / sum(n - 1 for n in lengths),
            "pads_ignored": F.cross_entropy(logits, ignored, ignore_index=IGNORE_INDEX).item(),
            "pads_counted": F.cross_entropy(logits, targets).item(),
            "pad_targets": int(batch.padding_mask[:, 1:].sum()), "real_targets": sum(n - 1 for n in lengths),
        }
        # a query that is itself padding and sees only padding keys (left padding, causal): zeros, not NaN
        q = Tensor(rng.standard_normal((1, 1, 4, 8)).astype(np.float32))
        fully_masked = F.scaled_dot_product_attention(q, q, q, causal=True,
                                                      padding_mask=np.array([[True, True, False, False]])).data
        result["fully_masked_rows"] = fully_masked[0, 0, :2].tolist()
    return result


# ---------------------------------------------------------------------------------------------- Q07, experiment 1
def corpus_lines(min_length: int = 30, max_length: int = 80) -> list[str]:
    """Distinct lines of the built-in corpus with min_length..max_length characters and some letters, in order."""
    lines = [line for line in load_text("embedded").split("\n")
             if min_length <= len(line) <= max_length and sum(c.isalpha() for c in line) >= len(line) // 2]
    return exact_deduplicate(lines)


def regurgitation(model, tokenizer, lines, prompt_chars: int = 10) -> dict:
    """Greedy continuations of each line's first `prompt_chars` characters (after a newline, where lines start).

    Returns the fraction of lines reproduced exactly to their end, the mean fraction of continuation
    characters that match before the first mistake, and the first three (prompt, continuation, truth).
    """
    exact, matched, examples = 0, [], []
    for line in lines:
        prompt = tokenizer.encode("\n" + line[:prompt_chars])
        rest = line[prompt_chars:]
        continuation = tokenizer.decode(generate(model, prompt, len(rest), temperature=0)[len(prompt):])
        agree = next((i for i, (a, b) in enumerate(zip(continuation, rest)) if a != b), len(rest))
        exact += continuation == rest
        matched.append(agree / len(rest))
        if len(examples) < 3:
            examples.append((line[:prompt_chars], continuation, rest))
    return {"exact": exact / len(lines), "prefix_match": float(np.mean(matched)), "examples": examples}


def duplication_effect(fast: bool = True, seed: int = 0) -> dict:
    """Train the same model on text where 5% of the lines are repeated 20 times, and on its deduplication.

    Lines: distinct corpus lines of 30-80 characters; 2,000 for training (fast: 400) and 300 held out (fast:
    100). The duplicated corpus adds 19 more copies of a random 5% of the training lines at random places;
    `exact_deduplicate` of it gives back the training lines. Both runs take the same number of steps (the
    same compute). Measured: validation loss and perplexity on the held-out lines, the train-validation gap
    (train loss on each run's own training text), and regurgitation of the repeated lines and of as many
    lines seen once (the control), by greedy decoding from their first 10 characters.
    """
    rng = np.random.default_rng(seed)
    lines = corpus_lines()
    n_train, n_val = (400, 100) if fast else (2000, 300)
    order = rng.permutation(len(lines))
    train_lines = [lines[i] for i in sorted(order[:n_train])]
    val_lines = [lines[i] for i in sorted(order[n_train:n_train + n_val])]
    repeated = sorted(rng.choice(n_train, size=n_train // 20, replace=False).tolist())
    seen_once = sorted(set(range(n_train)) - set(repeated))
    control = sorted(rng.choice(seen_once, size=len(repeated), replace=False).tolist())
    duplicated = list(train_lines)
    for index in repeated:
        for _ in range(19):
            duplicated.insert(int(rng.integers(0, len(duplicated) + 1)), train_lines[index])
    deduplicated = exact_deduplicate(duplicated)
    tokenizer = CharTokenizer.train("\n".join(lines))
    val_ids = tokenizer.encode("\n" + "\n".join(val_lines) + "\n")
    config = char_lm_config(fast, seed)
    result = {"train_lines": n_train, "val_lines": n_val, "repeated_lines": len(repeated), "copies": 20,
              "duplicated_lines": len(duplicated), "deduplicated_lines": len(deduplicated),
              "dedup_keeps_each_line_once": sorted(deduplicated) == sorted(train_lines), "steps": config.steps,
              "tokens_seen": config.steps * config.tokens_per_step, "runs": {}}
    for name, corpus in (("duplicated", duplicated), ("deduplicated", deduplicated)):
        train_ids = tokenizer.encode("\n" + "\n".join(corpus) + "\n")
        model, losses = train_on_ids(config, tokenizer, train_ids, val_ids)
        result["runs"][name] = {
            **losses, "gap": losses["val_loss"] - losses["train_loss"], "val_ppl": math.exp(losses["val_loss"]),
            "train_chars": len(train_ids), "epochs": result["tokens_seen"] / len(train_ids),
            "repeated": regurgitation(model, tokenizer, [train_lines[i] for i in repeated]),
            "seen_once": regurgitation(model, tokenizer, [train_lines[i] for i in control]),
        }
    return result


# ---------------------------------------------------------------------------------------------- Q07, experiment 2
def perturb(text: str, rate: float, vocabulary: list[str], rng: np.random.Generator) -> str:
    """`text` with each word, with probability `rate`, replaced by a random word, deleted, or followed by one."""
    words = []
    for word in text.split():
        if rng.random() >= rate:
            words.append(word)
            continue
        action = rng.integers(3)
        if action == 0:
            words.append(str(rng.choice(vocabulary)))
        elif action == 2:
            words += [word, str(rng.choice(vocabulary))]
    return " ".join(words)


def minhash_quality(fast: bool = True, seed: int = 0) -> dict:
    """Near-duplicate detection on perturbed copies: MinHash estimates, LSH candidates, precision and recall.

    Documents: distinct paragraphs of the built-in corpus (200-800 characters, pairwise true Jaccard < 0.5),
    each in 6 versions: words re-joined by single spaces (edit rate 0) and copies with word-edit rates up to
    0.5, so true similarities spread over [0, 1]. Every pair of documents is a question "is this a near
    duplicate (true Jaccard of character 5-gram sets >= 0.8)?".
    Measured, with 128 hashes: the estimate's error against the exact Jaccard (all pairs, vs the predicted
    sqrt(J (1 - J) / k)); precision and recall of "estimate >= threshold" over all pairs and of the LSH
    pipeline (32 bands of 4 rows: only colliding pairs are compared), for several thresholds and for
    DECISION_THRESHOLD ("pipeline"); the fraction of pairs LSH compares.
    `mean_true_by_rate` is the mean true Jaccard between each version and the rate-0 version.
    60 sources (fast: 25).
    """
    rng = np.random.default_rng(seed)
    num_hashes, bands, truth_threshold = 128, 32, 0.8
    rates = [0.0, 0.02, 0.05, 0.1, 0.2, 0.5]
    paragraphs = exact_deduplicate(paragraph.strip() for paragraph in load_text("embedded").split("\n\n")
                                   if 200 <= len(paragraph.strip()) <= 800)
    sources, source_sets = [], []
    for index in rng.permutation(len(paragraphs)):
        candidate = shingles(paragraphs[index])
        if all(jaccard(candidate, other) < 0.5 for other in source_sets):
            sources.append(paragraphs[index])
            source_sets.append(candidate)
        if len(sources) == (25 if fast else 60):
            break
    vocabulary = sorted({word for text in sources for word in text.split()})
    documents = [perturb(text, rate, vocabulary, rng) for text in sources for rate in rates]
    sets = [shingles(text) for text in documents]

    # exact Jaccard of every pair through one matrix product of 0/1 shingle indicators
    index_of = {s: i for i, s in enumerate(sorted(set().union(*sets)))}
    indicators = np.zeros((len(sets), len(index_of)), dtype=np.float32)
    for row, s in enumerate(sets):
        indicators[row, [index_of[x] for x in s]] = 1.0
    intersection = indicators @ indicators.T
    sizes = indicators.sum(axis=1)
    true_j = intersection / (sizes[:, None] + sizes[None, :] - intersection)
    signatures = MinHash(num_hashes, seed).signatures(sets)
    estimate = (signatures[:, None, :] == signatures[None, :, :]).mean(axis=2)
    upper = np.triu_indices(len(sets), k=1)
    true_pairs, estimated_pairs = true_j[upper], estimate[upper]
    errors = estimated_pairs - true_pairs
    predicted_std = np.sqrt(true_pairs * (1 - true_pairs) / num_hashes)
    candidates = lsh_candidate_pairs(signatures, bands)
    in_lsh = np.array([(int(i), int(j)) in candidates for i, j in zip(*upper)])
    positive = true_pairs >= truth_threshold

    def precision_recall(flagged):
        hits = int(np.sum(flagged & positive))
        return {"flagged": int(flagged.sum()), "precision": hits / max(1, int(flagged.sum())),
                "recall": hits / max(1, int(positive.sum())),
                "lowest_true_flagged": float(true_pairs[flagged].min()) if flagged.any() else float("nan")}

    thresholds = [0.6, 0.7, DECISION_THRESHOLD, 0.8, 0.85, 0.9]
    return {
        "sources": len(sources), "documents": len(documents), "pairs": len(true_pairs), "num_hashes": num_hashes,
        "bands": bands, "rows_per_band": num_hashes // bands, "rates": rates, "truth_threshold": truth_threshold,
        "positives": int(positive.sum()),
        "true_jaccard": true_pairs.tolist(), "estimated_jaccard": estimated_pairs.tolist(),
        "rmse": float(np.sqrt(np.mean(errors ** 2))),
        "within_3_std": float(np.mean(np.abs(errors) <= 3 * predicted_std + 1e-12)),
        "mean_true_by_rate": [float(np.mean(true_j[::len(rates), r::len(rates)].diagonal())) for r in range(len(rates))],
        "thresholds": thresholds, "decision_threshold": DECISION_THRESHOLD,
        "pipeline": precision_recall(in_lsh & (estimated_pairs >= DECISION_THRESHOLD)),
        "all_pairs": [precision_recall(estimated_pairs >= t) for t in thresholds],
        "lsh": [precision_recall(in_lsh & (estimated_pairs >= t)) for t in thresholds],
        "lsh_compared_share": float(in_lsh.mean()),
        "lsh_recall_of_candidates": float(np.mean(in_lsh[positive])) if positive.any() else float("nan"),
    }
