"""Making a trained model cheaper to run: quantization, pruning and distillation (chapter 9, Q20)."""
from .outlier_decomposition import decomposed_matmul, outlier_columns, w8a8_matmul
from .quantization import QuantizedTensor, dequantize, quantize_tensor
from .quantize_model import QuantizationReport, quantize
from .quantized_checkpoint import load_model, load_quantized, save_quantized
from .quantized_linear import QuantizedLinear
from .pruning import PruningMasks, magnitude_mask, masked_training_step, prune_magnitude, prunable_weights
from .structured_pruning import (StructuredPlan, choose_structures, head_importance, matmul_flops_per_token,
                                 neuron_importance, prune_structured, shrink)
from .distillation import distillation_loss, soft_targets
