"""Containers: Sequential runs modules one after another; ModuleList just registers a list of them."""
from .module import Module


class Sequential(Module):
    def __init__(self, *layers: Module):
        self.layers = list(layers)

    def named_children(self):
        # Children are named 0, 1, 2, ... (not layers.0), so state_dict keys read like PyTorch's.
        return ((str(i), layer) for i, layer in enumerate(self.layers))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)


class ModuleList(Module):
    def __init__(self, modules=()):
        self.items = list(modules)

    def named_children(self):
        return ((str(i), m) for i, m in enumerate(self.items))

    def append(self, module: Module):
        self.items.append(module)
        return self

    def __getitem__(self, i):
        return self.items[i]

    def __iter__(self):
        return iter(self.items)

    def __len__(self):
        return len(self.items)
