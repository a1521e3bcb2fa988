"""Deliberately broken encoder-decoder variants, each named after its bug (Q14-Q15, M31).

Each is the library's TransformerEncoderDecoder with ONE piece swapped for a subclass that overrides one method,
small enough to read next to the correct method in tinygrad_llm/nn/attention.py, cross_attention.py or
transformer_seq2seq.py. tests/test_broken_seq2seq.py proves that the learning checks reject every one of them.
"""
from tinygrad_llm import nn
from tinygrad_llm.nn.kv_cache import KVCache
from tinygrad_llm.nn.transformer_seq2seq import TransformerDecoderCache


class SelfAttentionWithoutCausalMask(nn.MultiHeadAttention):
    def attend(self, q, k, v, causal, padding_mask):
        # BUG (M31): the decoder's self-attention run like an encoder's; position t reads the target tokens after t,
        # including the one it must predict
        return super().attend(q, k, v, False, padding_mask)


class CrossAttentionWithCausalMask(nn.CrossAttention):
    def attend(self, q, k, v, causal, padding_mask):
        # BUG: the decoder's causal mask copied into cross-attention; the first outputs cannot see the end of the
        # source, although the whole source is known before decoding starts
        return super().attend(q, k, v, True, padding_mask)


class CrossAttentionIgnoringPadding(nn.CrossAttention):
    def attend(self, q, k, v, causal, padding_mask):
        # BUG: the source padding mask dropped; the decoder reads the states of pad tokens, so the output depends
        # on how much padding the batch happened to need
        return super().attend(q, k, v, causal, None)


class CacheWithStaleMemory(TransformerDecoderCache):
    def reorder(self, rows):
        # BUG: only the self-attention keys and values follow the beams; the cross-attention keys and values of the
        # source stay in the old row order, so a beam continues while reading another row's source
        KVCache.reorder(self, rows)


def _swap_class(module, cls):
    """The same module (same Parameter objects) with the methods of `cls`, a subclass of its class."""
    module.__class__ = cls
    return module


class TransformerDecoderWithoutCausalMask(nn.TransformerEncoderDecoder):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for block in self.decoder_blocks:
            _swap_class(block.attn, SelfAttentionWithoutCausalMask)


class TransformerCrossAttentionWithCausalMask(nn.TransformerEncoderDecoder):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for block in self.decoder_blocks:
            _swap_class(block.cross_attn, CrossAttentionWithCausalMask)


class TransformerCrossAttentionIgnoringPadding(nn.TransformerEncoderDecoder):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for block in self.decoder_blocks:
            _swap_class(block.cross_attn, CrossAttentionIgnoringPadding)


class TransformerWithStaleMemoryCache(nn.TransformerEncoderDecoder):
    def new_cache(self, encoded):
        return _swap_class(super().new_cache(encoded), CacheWithStaleMemory)
