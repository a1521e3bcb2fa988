"""Making a trained model cheaper to run: quantization, pruning and distillation (chapter 9, Q20)."""
