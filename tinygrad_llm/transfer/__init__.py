"""Pretraining and transfer (chapter 11): how a pretrained model becomes useful for a task.

A masked-LM encoder and the heads that sit on a base model, fine-tuning and low-rank adapters, instruction and
preference tuning, knowledge graphs and retrieval, keeping a model up to date, and learning across languages and
modalities: each written on the library's autograd, each held to the simple version it stands for.
"""
