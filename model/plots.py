"""Training pictures written next to the model (matplotlib ``Figure`` objects rendered by Agg: no
display and no global pyplot state).

- :func:`plot_training_curves`: loss and sigma^2 per task over steps (like figure 5 of the paper).
- :func:`plot_pca`: 2-D PCA of item embeddings coloured by their top categories (like figure 6).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure


def pca_2d(x: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """Project rows of ``x [n, d]`` on their first two principal components -> ``[n, 2]``."""
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need a [n >= 2, d] matrix, got {x.shape}")
    centred = x.astype(np.float64) - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    comps = vt[:2]
    if comps.shape[0] < 2:
        comps = np.vstack([comps, np.zeros_like(comps)])
    return np.asarray(centred @ comps.T)


def plot_training_curves(
    steps: Sequence[int],
    losses: Mapping[str, Sequence[float]],
    sigma2: Mapping[str, Sequence[float]],
    path: Path,
    *,
    min_sigma2: float | None = None,
) -> Path:
    """Two panels: loss per task over steps, sigma^2 per task over steps (dashed: the clipping floor)."""
    fig = Figure(figsize=(11, 4))
    ax_loss, ax_sig = fig.subplots(1, 2)
    for task, values in losses.items():
        if task == "total":
            continue
        ax_loss.plot(steps[: len(values)], values, label=task)
    ax_loss.set(title="task loss", xlabel="step", ylabel="loss")
    ax_loss.legend(fontsize=8)
    for task, values in sigma2.items():
        ax_sig.plot(steps[: len(values)], values, label=task)
    if min_sigma2 is not None and sigma2:
        ax_sig.axhline(min_sigma2, linestyle="--", color="grey", label=f"floor {min_sigma2}")
    ax_sig.set(title="uncertainty sigma^2 (weight = 1/sigma^2)", xlabel="step", ylabel="sigma^2")
    if sigma2:
        ax_sig.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def plot_pca(
    embeddings: npt.NDArray[np.floating],
    labels: npt.NDArray[np.integer],
    path: Path,
    *,
    top: int = 5,
    per_label: int = 1000,
    seed: int = 0,
) -> Path:
    """Scatter the 2-D PCA of the items of the ``top`` most frequent labels (at most ``per_label`` each).

    Args:
        embeddings: ``[n_items, dim]`` item vectors.
        labels: ``[n_items]`` category id per item (-1 unknown, ignored).
    """
    if len(embeddings) != len(labels):
        raise ValueError(f"{len(embeddings)} embeddings but {len(labels)} labels")
    rng = np.random.default_rng(seed)
    known = labels >= 0
    values, counts = np.unique(labels[known], return_counts=True)
    chosen = values[np.argsort(-counts, kind="stable")[:top]]
    rows = np.concatenate(
        [rng.permutation(np.nonzero(labels == c)[0])[:per_label] for c in chosen]
        or [np.zeros(0, dtype=np.int64)]
    )
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    if len(rows) >= 2:
        xy = pca_2d(embeddings[rows])
        for c in chosen:
            sel = labels[rows] == c
            ax.scatter(xy[sel, 0], xy[sel, 1], s=6, alpha=0.6, label=f"category {int(c)}")
        ax.legend(fontsize=8, markerscale=2)
    ax.set(title="PCA of item embeddings, top categories", xlabel="PC 1", ylabel="PC 2")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
