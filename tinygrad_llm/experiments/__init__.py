"""Experiments behind the notebooks: `tinygrad_llm.experiments.<chapter>.<name>(fast)` returns a dict of metrics.

Notebooks run them at full size; the tests run them in fast mode (fast=True) and assert on the metrics.
"""
