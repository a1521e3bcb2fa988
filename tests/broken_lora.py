"""Deliberately broken LoRA layers, each named after its bug; test_lora.py proves that its checks catch every one."""
import math

from tinygrad_llm.nn import init
from tinygrad_llm.transfer.lora import LoRALinear


class LoRALinearWithoutScaling(LoRALinear):
    """Adds B A without the alpha / rank factor (in the forward and in merge alike): the update's size then grows
    with the rank, and alpha does nothing."""

    @property
    def scale(self) -> float:
        return 1.0  # BUG: should be alpha / rank


class LoRALinearWithSwappedInit(LoRALinear):
    """A starts at zero and B random: B A is still 0, so the model is unchanged at first, but x A^T = 0 gives B
    no gradient; the update then starts in A, the side that sees the input, in directions B picked at random."""

    def __init__(self, base, rank, alpha):
        super().__init__(base, rank, alpha)
        self.lora_A.data[...] = 0  # BUG: A and B initialised the other way round
        init.kaiming_uniform_(self.lora_B, gain=1 / math.sqrt(3))


class LoRALinearWithRandomB(LoRALinear):
    """Both A and B random: the 'adapted' model is no longer the pretrained one before it has seen any data."""

    def __init__(self, base, rank, alpha):
        super().__init__(base, rank, alpha)
        init.kaiming_uniform_(self.lora_B, gain=1 / math.sqrt(3))  # BUG: B must start at zero


class LoRALinearThatUnmergesBySubtraction(LoRALinear):
    """Unmerges by W -= scale B A instead of restoring the saved weight: (W + D) - D rounds, so W drifts."""

    def unmerge(self):
        if not self.merged:
            raise RuntimeError("unmerge: not merged")
        self.base.weight.data[...] = self.base.weight.data - self.delta_weight()  # BUG: rounding, not exact
        self._weight_before_merge = None


class LoRALinearWithTrainableBase(LoRALinear):
    """Forgets to freeze the base layer: the optimizer then updates the pretrained weight too (full fine-tuning
    with extra steps), and the base model is lost."""

    def __init__(self, base, rank, alpha):
        super().__init__(base, rank, alpha)
        for parameter in base.parameters():
            parameter.requires_grad_(True)  # BUG: the base must stay frozen
