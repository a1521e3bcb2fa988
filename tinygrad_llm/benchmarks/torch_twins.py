"""The library's MLP language model and GPT written again in PyTorch, parameter for parameter.

A twin has the same parameter names and shapes as the library's model and starts from a copy of its
weights, so the two can be trained on the same batches in the same order and compared: their losses
must agree (a check of the whole library against PyTorch), and their speeds can be compared fairly.
Only benchmarks and oracle tests use these; torch is never a dependency of the library.
"""
from __future__ import annotations

import math

import numpy as np


def _twin_classes(torch):
    nn, F = torch.nn, torch.nn.functional

    class TorchMLPLanguageModel(nn.Module):
        """tinygrad_llm.nn.MLPLanguageModel: window of block_size ids (row V = before the text) -> tanh -> logits."""

        def __init__(self, vocab_size, block_size, embed_dim, hidden_dim):
            super().__init__()
            self.vocab_size, self.block_size = vocab_size, block_size
            self.token_embedding = nn.Embedding(vocab_size + 1, embed_dim)
            self.hidden = nn.Linear(block_size * embed_dim, hidden_dim)
            self.output = nn.Linear(hidden_dim, vocab_size)

        def forward(self, ids):
            batch, time = ids.shape
            history = torch.full((batch, self.block_size - 1), self.vocab_size, dtype=ids.dtype)
            windows = torch.cat([history, ids], dim=1).unfold(1, self.block_size, 1)  # (B, T, block)
            return self.output(torch.tanh(self.hidden(self.token_embedding(windows).reshape(batch, time, -1))))

    class Attention(nn.Module):
        def __init__(self, embed_dim, num_heads, dropout, bias):
            super().__init__()
            self.num_heads = num_heads
            self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(embed_dim, embed_dim, bias=bias)
                                                                    for _ in range(4))
            self.dropout = nn.Dropout(dropout)

        def forward(self, x):
            batch, time, width = x.shape

            def heads(projection):
                return projection(x).view(batch, time, self.num_heads, -1).transpose(1, 2)

            out = F.scaled_dot_product_attention(heads(self.q_proj), heads(self.k_proj), heads(self.v_proj),
                                                 is_causal=True)
            return self.dropout(self.out_proj(out.transpose(1, 2).reshape(batch, time, width)))

    class Block(nn.Module):
        def __init__(self, embed_dim, num_heads, dropout, bias):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(embed_dim), nn.LayerNorm(embed_dim)
            self.attn = Attention(embed_dim, num_heads, dropout, bias)
            self.mlp_up = nn.Linear(embed_dim, 4 * embed_dim, bias=bias)
            self.mlp_down = nn.Linear(4 * embed_dim, embed_dim, bias=bias)
            self.mlp_dropout = nn.Dropout(dropout)

        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.mlp_dropout(self.mlp_down(F.gelu(self.mlp_up(self.ln2(x)), approximate="tanh")))

    class TorchGPT(nn.Module):
        """tinygrad_llm.nn.GPT with learned positions: pre-LN blocks, GELU (tanh) MLP, optional tied head."""

        def __init__(self, vocab_size, context_size, embed_dim, num_heads, num_layers, dropout, positions,
                     tie_weights, bias, checkpoint_blocks=False):
            super().__init__()  # checkpoint_blocks changes where memory goes, not any value: the twin ignores it
            if positions != "learned":
                raise ValueError(f"TorchGPT: only learned positions have a twin, got {positions!r}")
            self.token_embedding = nn.Embedding(vocab_size, embed_dim)
            self.position_embedding = nn.Embedding(context_size, embed_dim)
            self.embedding_dropout = nn.Dropout(dropout)
            self.blocks = nn.ModuleList(Block(embed_dim, num_heads, dropout, bias) for _ in range(num_layers))
            self.final_norm = nn.LayerNorm(embed_dim)
            self.lm_head = nn.Linear(embed_dim, vocab_size, bias=False)
            if tie_weights:
                self.lm_head.weight = self.token_embedding.weight

        def forward(self, ids):
            x = self.token_embedding(ids) + self.position_embedding(torch.arange(ids.shape[1]))
            x = self.embedding_dropout(x)
            for block in self.blocks:
                x = block(x)
            return self.lm_head(self.final_norm(x))

    return {"MLPLanguageModel": TorchMLPLanguageModel, "GPT": TorchGPT}


def torch_twin(torch, model, device: str = "cpu"):
    """A PyTorch copy of a library MLPLanguageModel or GPT (on the CPU): same architecture, same weights, on `device`."""
    classes = _twin_classes(torch)
    name = type(model).__name__
    if name not in classes:
        raise ValueError(f"torch_twin: no PyTorch twin for {name}; twins exist for {sorted(classes)}")
    twin = classes[name](**model.config)
    ours = dict(model.named_parameters())
    theirs = dict(twin.named_parameters())
    if set(ours) != set(theirs):
        raise AssertionError(f"torch_twin: parameter names differ: {sorted(set(ours) ^ set(theirs))}")
    with torch.no_grad():
        for key, param in theirs.items():
            param.copy_(torch.from_numpy(np.ascontiguousarray(ours[key].data)))
    return twin.to(device)


def torch_optimizer(torch, twin, config):
    """AdamW with decay on matrices only and the library's LinearWarmupCosine, as a LambdaLR factor."""
    decay = [p for p in twin.parameters() if p.ndim >= 2]
    no_decay = [p for p in twin.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2))
    warm, total, ratio = config.warmup_steps, config.steps, config.min_lr / config.lr

    def factor(step):  # tinygrad_llm.optim.LinearWarmupCosine, as a multiple of the peak learning rate
        if step < warm:
            return (step + 1) / (warm + 1)
        if step > total:
            return ratio
        return ratio + (1 - ratio) * (1 + math.cos(math.pi * (step - warm) / (total - warm))) / 2

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _on(torch, array: np.ndarray, device: str):
    return torch.from_numpy(array).to(device)


def torch_training_step(torch, twin, optimizer, scheduler, config, device: str = "cpu"):
    """One optimizer step on (inputs, targets) arrays, in the library loop's order; returns the loss (.item()
    waits for the GPU, so a timed step is a finished step on either device)."""

    def step(inputs: np.ndarray, targets: np.ndarray) -> float:
        optimizer.zero_grad()
        logits = twin(_on(torch, inputs, device))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 _on(torch, targets, device).reshape(-1))
        loss.backward()
        if config.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(twin.parameters(), config.clip_norm)
        optimizer.step()
        scheduler.step()
        return loss.item()

    return step


def torch_loss(torch, twin, inputs: np.ndarray, targets: np.ndarray, device: str = "cpu") -> float:
    """Mean next-token cross-entropy without a graph, in eval mode."""
    was_training = twin.training
    twin.eval()
    with torch.no_grad():
        logits = twin(_on(torch, inputs, device))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 _on(torch, targets, device).reshape(-1)).item()
    twin.train(was_training)
    return loss
