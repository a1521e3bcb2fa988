"""A 2-D picture of an embedding table: principal component analysis by a singular value decomposition (Q33).

Each row of the table is one token's vector (d numbers). After centring (subtracting the mean row), the SVD
X - mean = U S V^T gives the directions along which the rows vary most (the rows of V^T, the principal
components) and how much (S^2 / (n - 1) is the variance along each). Projecting every row onto the first two
components gives the 2-D coordinates of the plot; the explained-variance ratio S_k^2 / sum(S^2) says how much
of the table's spread the picture keeps: tokens the model treats alike land close together.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class EmbeddingPCA:
    coordinates: np.ndarray               # (n, k): each row projected on the first k components
    explained_variance_ratio: np.ndarray  # (k,): the share of the total variance along each component
    components: np.ndarray                # (k, d): unit directions, largest variance first
    mean: np.ndarray                      # (d,): the row mean that was subtracted


def embedding_pca(table, num_components: int = 2) -> EmbeddingPCA:
    """PCA of an (n, d) table (an array, a Tensor or an Embedding's weight). Each component's sign is fixed so
    that its largest-magnitude entry is positive: the same table always gives the same picture."""
    table = np.asarray(getattr(table, "data", table), dtype=np.float64)
    if table.ndim != 2 or table.shape[0] < 2:
        raise ValueError(f"embedding_pca: expected an (n, d) table with n >= 2 rows, got shape {table.shape}")
    if not 1 <= num_components <= min(table.shape):
        raise ValueError(f"embedding_pca: num_components must be in [1, {min(table.shape)}] for a table of shape "
                         f"{table.shape}, got {num_components}")
    mean = table.mean(axis=0)
    _, singular_values, components = np.linalg.svd(table - mean, full_matrices=False)
    components = components[:num_components]
    signs = np.sign(components[np.arange(num_components), np.abs(components).argmax(axis=1)])
    components = components * signs[:, None]
    variances = singular_values ** 2
    total = variances.sum()
    ratio = variances[:num_components] / total if total > 0 else np.zeros(num_components)
    return EmbeddingPCA(coordinates=(table - mean) @ components.T, explained_variance_ratio=ratio,
                        components=components, mean=mean)


def plot_embedding_pca(pca: EmbeddingPCA, labels, ax=None, title: str = ""):
    """Each row as its label (e.g. the character) at its first two coordinates, on `ax` or a new Figure."""
    from matplotlib.figure import Figure

    if pca.coordinates.shape[1] < 2:
        raise ValueError("plot_embedding_pca: the plot needs two components; use embedding_pca(table, 2)")
    if ax is None:
        ax = Figure(figsize=(6, 6)).subplots()
    x, y = pca.coordinates[:, 0], pca.coordinates[:, 1]
    ax.scatter(x, y, s=0)  # sets the limits; the labels are the marks
    for label, xi, yi in zip(labels, x, y):
        ax.annotate(repr(label)[1:-1] if isinstance(label, str) else str(label), (xi, yi), ha="center",
                    va="center", fontsize=8)
    ratio = pca.explained_variance_ratio
    ax.set_xlabel(f"PC1 ({ratio[0]:.0%} of the variance)")
    ax.set_ylabel(f"PC2 ({ratio[1]:.0%} of the variance)")
    ax.set_title(title)
    return ax
