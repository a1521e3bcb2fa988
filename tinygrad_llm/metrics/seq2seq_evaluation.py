"""How well an encoder-decoder does a task: free-running exact match, and the teacher-forced numbers beside it.

- exact match: decode (greedy or beam) with no gold prefix and compare the WHOLE output, length included;
  the number that says whether the task is solved.
- teacher-forced token accuracy and loss: every position predicted from the GOLD prefix. It is always at
  least as optimistic, since a model never has to recover from its own mistakes; the gap to exact match is
  exposure bias (Q14), and a model that cheats by copying its input (M31) shows ~100% here and
  ~0% free running.

Decoding is capped at the longest target + 1 tokens: an output still going at that point is wrong anyway
(it has not produced EOS where the target ends), so the cap never changes the exact-match score.
"""
from __future__ import annotations

from ..autograd import no_grad
from ..data.seq2seq_tasks import IGNORE_INDEX, exact_match, make_batch
from ..generation.beam_search import beam_search
from ..generation.greedy_decode import greedy_decode
from ..nn import functional as F


def evaluate_seq2seq(model, examples, vocabulary, search: str = "greedy", beam_width: int = 4,
                     length_penalty: float = 0.0, batch_size: int = 256) -> dict:
    """{"exact_match", "token_accuracy", "loss", "predictions"} of `model` on `examples` (list of Seq2SeqExample).

    predictions are symbol lists in the order of `examples`; token_accuracy and loss are teacher-forced over
    the real target tokens and EOS.
    """
    if search not in ("greedy", "beam"):
        raise ValueError(f"evaluate_seq2seq: search must be 'greedy' or 'beam', got {search!r}")
    if not examples:
        raise ValueError("evaluate_seq2seq: got no examples to evaluate")
    was_training = model.training
    model.eval()
    predictions, correct, counted, loss_sum = [], 0, 0, 0.0
    try:
        for start in range(0, len(examples), batch_size):
            batch = make_batch(examples[start:start + batch_size], vocabulary)
            with no_grad():
                logits = model(batch.source, batch.decoder_input, batch.source_padding)
                real = batch.decoder_target != IGNORE_INDEX
                loss_sum += F.cross_entropy(logits, batch.decoder_target, ignore_index=IGNORE_INDEX,
                                            reduction="sum").item()
            correct += int(((logits.data.argmax(axis=-1) == batch.decoder_target) & real).sum())
            counted += int(real.sum())
            options = dict(bos_id=vocabulary.bos_id, eos_id=vocabulary.eos_id, max_length=batch.decoder_input.shape[1])
            if search == "greedy":
                decoded = greedy_decode(model, batch.source, batch.source_padding, **options)
            else:
                decoded = beam_search(model, batch.source, batch.source_padding, beam_width=beam_width,
                                      length_penalty=length_penalty, **options)
            predictions += [vocabulary.decode(tokens) for tokens in decoded.tokens]
    finally:
        model.train(was_training)
    return {"exact_match": exact_match(predictions, examples), "token_accuracy": correct / counted,
            "loss": loss_sum / counted, "predictions": predictions}
