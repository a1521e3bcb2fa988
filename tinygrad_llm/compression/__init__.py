"""Making a trained model cheaper to run: quantization, pruning and distillation (chapter 9, Q20)."""
from .pruning import PruningMasks, magnitude_mask, masked_training_step, prune_magnitude, prunable_weights
from .structured_pruning import (StructuredPlan, choose_structures, head_importance, matmul_flops_per_token,
                                 neuron_importance, prune_structured, shrink)
from .distillation import distillation_loss, soft_targets
