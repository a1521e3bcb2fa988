"""Attention weights read as an explanation: the contrast the attribution methods are measured against (Q32).

A Transformer's attention map says how much each position READ from each other position. It is tempting to
call the weights that the [CLS] (<bos>) position puts on the words "what the classifier looked at", and to rank
words by them. They are not an attribution:
- they describe one layer's mixing, not the path to the output (later layers, the MLP and the value vectors
  decide what the mixed information does, and a heavily attended word can carry nothing useful);
- they have no sign: a word that pushes towards the other class gets a positive weight too;
- they are not complete: nothing ties them to f(x) - f(baseline), as integrated gradients and Shapley values are.
Whether they still rank the planted keywords first is a question to MEASURE
(experiments/attribution_comparison.py), not to assume.

The fused attention kernel never stores the probabilities, so they are recomputed here: forward hooks
(activations.capture_activations) record each block's query and key projections during an ordinary forward
pass, and the NumPy reference softmax(q k^T / sqrt(D) + padding mask) turns them into the maps the model used.

    attention_maps(classifier, sentences)          per layer: (B, H, T, T), rows = queries, columns = keys
    attention_attribution(classifier, words)       one weight per word, from <bos> (or averaged over queries)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..autograd import no_grad
from ..kernels.reference.attention import attention_probabilities
from .activations import capture_activations, find_module
from .text_classifier import TextClassifier, TransformerTextClassifier
from .word_perturbation import check_words

QUERIES = ("first", "mean")


def attention_maps(classifier: TextClassifier, sentences: Sequence[str]) -> list[np.ndarray]:
    """The self-attention probabilities of every layer of a TransformerTextClassifier on a batch of sentences:
    a list (one per layer) of (B, H, T, T) float64 arrays over <bos> + the words, padded on the right; padding
    keys get exactly 0 and every query row sums to 1."""
    model = classifier.model
    if not isinstance(model, TransformerTextClassifier):
        raise TypeError(f"attention_maps: a {type(model).__name__} has no attention to read; use a "
                        "TransformerTextClassifier (a bag of embeddings weighs every word alike)")
    batch = classifier.encode(sentences)
    blocks = [f"base.blocks.{i}.attn" for i in range(len(model.base.blocks))]
    projections = [f"{block}.{name}" for block in blocks for name in ("q_proj", "k_proj")]
    model.eval()
    with no_grad(), capture_activations(model, projections) as captured:
        model(batch.ids, padding_mask=batch.padding_mask)
    maps = []
    for block in blocks:
        split_heads = find_module(model, block).split_heads
        q, k = (split_heads(captured[f"{block}.{name}"]).numpy() for name in ("q_proj", "k_proj"))
        maps.append(attention_probabilities(q.astype(np.float64), k.astype(np.float64),
                                            padding_mask=batch.padding_mask))
    return maps


def attention_attribution(classifier: TextClassifier, words: Sequence[str], query: str = "first",
                          layer: int = -1) -> np.ndarray:
    """One non-negative weight per word: the attention it receives at `layer`, averaged over the heads, from
    the <bos> position that the classification head reads (query="first") or averaged over every query
    position (query="mean"). The weight on <bos> itself is left out, so the words' weights sum to at most 1."""
    words = check_words(words, "attention_attribution")
    if query not in QUERIES:
        raise ValueError(f"attention_attribution: query must be one of {QUERIES}, got {query!r}")
    maps = attention_maps(classifier, [" ".join(words)])
    if not isinstance(layer, (int, np.integer)) or not -len(maps) <= layer < len(maps):
        raise ValueError(f"attention_attribution: layer must be an integer in [{-len(maps)}, {len(maps)}) for this "
                         f"{len(maps)}-layer model, got {layer!r}")
    per_query = maps[layer][0].mean(axis=0)  # (T, T): heads averaged
    weights = per_query[0] if query == "first" else per_query.mean(axis=0)
    return weights[1:]
