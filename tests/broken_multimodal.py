"""Deliberately broken fusion models, each named after its bug; tests/test_multimodal.py proves that its checks
catch every one."""
from tinygrad_llm.nn import Linear, Sequential
from tinygrad_llm.tensor import cat
from tinygrad_llm.transfer.multimodal import NUM_CLASSES, ConcatMLPFusion


class ConcatFusionWithoutNonlinearity(ConcatMLPFusion):
    """Concatenation followed by two Linear layers with no activation between them (M51): the two collapse into
    one linear map, the model is additive in the modalities, and XOR stays out of reach."""

    def __init__(self, vocab_size: int, image_size: int, dim: int = 16, hidden: int = 32):
        super().__init__(vocab_size, image_size, dim=dim, hidden=hidden)
        self.fusion = Sequential(Linear(2 * dim, hidden), Linear(hidden, NUM_CLASSES))  # BUG: no ReLU between


class ConcatMLPWithUnregisteredFusion(ConcatMLPFusion):
    """The fusion MLP kept in a plain dict. Module only looks at Parameters, Modules and lists of Modules, so
    the MLP's weights are missing from parameters() (the optimizer never moves them), num_parameters() and
    state_dict(), while forward still uses them."""

    def __init__(self, vocab_size: int, image_size: int, dim: int = 16, hidden: int = 32):
        super().__init__(vocab_size, image_size, dim=dim, hidden=hidden)
        self.layers = {"fusion": self.fusion}  # BUG: a dict is invisible to Module
        del self.fusion

    def forward(self, tokens, images):
        return self.layers["fusion"](cat([self.text_encoder(tokens), self.image_encoder(images)], axis=-1))
