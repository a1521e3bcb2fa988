"""Deliberately broken logit lenses, each named after its bug; test_hooks_logit_lens.py proves that its
checks of the real lens catch every one."""
import numpy as np

import tinygrad_llm as tgl
from tinygrad_llm.interpretability.logit_lens import residual_stream
from tinygrad_llm.tensor import Tensor


def logit_lens_without_the_final_norm(model, ids):
    """Unembeds the raw residual stream: the head was trained on normalised vectors, so even the last
    layer's readout differs from the model's logits."""
    with tgl.no_grad():
        return np.stack([model.lm_head(Tensor(stream)).numpy() for stream in residual_stream(model, ids)])


def logit_lens_that_skips_the_embeddings(model, ids):
    """Reads the blocks' outputs only and repeats the last to keep the count: entry l is after block l + 1,
    one layer late everywhere (the last entry still matches the model, so that check alone misses it)."""
    streams = residual_stream(model, ids)[1:]
    streams = np.concatenate([streams, streams[-1:]])
    with tgl.no_grad():
        return np.stack([model.lm_head(model.final_norm(Tensor(stream))).numpy() for stream in streams])
