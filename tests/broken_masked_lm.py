"""Deliberately broken masked-LM pieces, each named after its bug; test_masked_lm.py and
test_heads_and_pretrained.py prove that their checks catch every one."""
import numpy as np

from tinygrad_llm.nn import TransformerEncoder
from tinygrad_llm.transfer.masking import MaskedTokens, mask_tokens


def mask_tokens_scoring_every_position(ids, mask_id, vocab_size, rng, **options):
    """Corrupts like BERT, but the targets keep every position's original id, so masked_lm_loss scores every
    position and mostly teaches copying the input (M47)."""
    batch = mask_tokens(ids, mask_id, vocab_size, rng, **options)
    return MaskedTokens(batch.inputs, np.asarray(ids, dtype=np.int64), batch.selected)  # BUG: no IGNORE_INDEX anywhere


def mask_tokens_without_the_split(ids, mask_id, vocab_size, rng, **options):
    """Every selected position becomes [MASK]: no random 10%, no kept 10%, so the model never learns to check
    the visible tokens and meets [MASK] only in pretraining."""
    return mask_tokens(ids, mask_id, vocab_size, rng, **{**options, "mask_share": 1.0, "random_share": 0.0})  # BUG


class EncoderThatReturnsLogits(TransformerEncoder):
    """A base model that projects its states onto the vocabulary itself (M49): task logits from a model that
    was meant to hand hidden states to a head."""

    def forward(self, ids, padding_mask=None):
        hidden = super().forward(ids, padding_mask)
        return hidden @ self.token_embedding.weight.T  # BUG: a base model has no output layer
