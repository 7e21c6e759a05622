"""The contrastive multi-view metric model of section 6.1 (diversity recommendation).

Two fixed representations per item come from a trained M2GRL artifact: ``e_i`` (instance view) and
``e_ic = sigma(W_ic e_i)`` (instance-category relational space). The model learns two metric
matrices kept positive semi-definite by construction, ``M_i = L_i^T L_i`` and ``M_ic = L_ic^T L_ic``:

    d_i(a, b)  = (e_i^a - e_i^b)^T M_i (e_i^a - e_i^b)
    d_ic(a, b) = (e_ic^a - e_ic^b)^T M_ic (e_ic^a - e_ic^b)
    d(a, b)    = d_i(a, b) + d_ic(a, b)                                   (equation 11)

trained with the contrastive loss

    L = 1 / (2N) * sum_n  y d^2 + (1 - y) max(margin - d, 0)^2            (equation 12)

Because ``d_i = ||L_i (e_i^a - e_i^b)||^2``, the diversity embedding ``z(a) = [L_i e_i^a ; L_ic e_ic^a]``
satisfies ``||z(a) - z(b)||^2 = d(a, b)``: an exact L2 nearest-neighbour search over ``z`` ranks items
by ``d``, which is how the index builder serves the diversity mode.

Pure tensors only: no file I/O, no FAISS, no pandas.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


def mahalanobis_sq(diff: Tensor, metric: Tensor) -> Tensor:
    """Squared Mahalanobis length ``diff^T M diff`` of every row.

    Args:
        diff: ``[n, dim]`` differences ``e^a - e^b``.
        metric: ``[dim, dim]`` matrix ``M`` (PSD for a distance).
    Returns:
        ``[n]`` values ``diff_n^T M diff_n`` (one term of equation 11).
    """
    if diff.dim() != 2 or metric.shape != (diff.shape[1], diff.shape[1]):
        raise ValueError(
            f"diff must be [n, dim] and metric [dim, dim]; got {tuple(diff.shape)}, {tuple(metric.shape)}"
        )
    return torch.einsum("nd,de,ne->n", diff, metric, diff)


def metric_distance(
    a_i: Tensor, b_i: Tensor, a_ic: Tensor, b_ic: Tensor, metric_i: Tensor, metric_ic: Tensor
) -> Tensor:
    """Equation 11: ``d(a, b) = d_i(a, b) + d_ic(a, b)`` for ``n`` item pairs.

    Args:
        a_i, b_i: ``[n, dim_i]`` instance-view embeddings of the two items of each pair.
        a_ic, b_ic: ``[n, dim_ic]`` instance-category relational embeddings ``sigma(W_ic e_i)``.
        metric_i, metric_ic: the metric matrices ``M_i [dim_i, dim_i]`` and ``M_ic [dim_ic, dim_ic]``.
    Returns:
        ``[n]`` distances (squared Mahalanobis lengths, not their roots, as in the paper).
    """
    return mahalanobis_sq(a_i - b_i, metric_i) + mahalanobis_sq(a_ic - b_ic, metric_ic)


def contrastive_loss(distance: Tensor, label: Tensor, margin: float) -> Tensor:
    """Equation 12: ``1/(2N) sum y d^2 + (1 - y) max(margin - d, 0)^2``.

    Args:
        distance: ``[N]`` distances ``d`` of equation 11.
        label: ``[N]`` 1 for a positive pair, 0 for a negative one (any float dtype or bool).
        margin: negatives closer than ``margin`` are pushed out to it; must be > 0.
    Returns:
        The scalar loss (0-dim tensor); 0 for an empty batch.
    """
    if margin <= 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    if distance.shape != label.shape:
        raise ValueError(f"distance and label shapes differ: {tuple(distance.shape)} vs {tuple(label.shape)}")
    if distance.numel() == 0:
        return distance.sum()
    y = label.to(distance.dtype)
    per_pair = y * distance.pow(2) + (1.0 - y) * torch.clamp(margin - distance, min=0.0).pow(2)
    return per_pair.sum() / (2.0 * distance.numel())


def _eye_factor(rank: int, dim: int, scale: float) -> Tensor:
    """``[rank, dim]`` scaled (rectangular) identity: with ``rank == dim`` the start metric is ``scale^2 I``,
    so training starts from the plain L2 geometry of the M2GRL spaces (the general-mode neighbours)."""
    return scale * torch.eye(rank, dim)


@dataclass(frozen=True)
class PairBatch:
    """One training batch of item pairs (vocabulary rows of the item view).

    ``a``, ``b``: ``[n]`` int64 rows; ``label``: ``[n]`` float32, 1 positive / 0 negative.
    """

    a: Tensor
    b: Tensor
    label: Tensor

    def __len__(self) -> int:
        return int(self.a.shape[0])

    def to(self, device: torch.device) -> PairBatch:
        """The same pairs on ``device`` (the shared trainer moves batches with this)."""
        return PairBatch(self.a.to(device), self.b.to(device), self.label.to(device))


class MultiViewMetric(nn.Module):
    """Learned metric ``d = d_i + d_ic`` over frozen M2GRL item representations (section 6.1).

    Args:
        item_emb: ``[num_items, dim_i]`` instance-view embeddings ``e_i`` (kept frozen, not saved in the
            state dict: the M2GRL artifact already holds them).
        rel_emb: ``[num_items, dim_ic]`` relational embeddings ``e_ic`` of the same rows.
        margin: contrastive margin of equation 12.
        rank_i, rank_ic: rows of ``L_i`` / ``L_ic`` (``None`` = full rank, the dimension of the view).
        init_scale_i, init_scale_ic: ``L`` starts as ``scale * I`` (see ``_eye_factor``).

    Trainable parameters are only the factors ``L_i [rank_i, dim_i]`` and ``L_ic [rank_ic, dim_ic]``;
    ``M = L^T L`` is PSD for any value of them, so no projection step is needed during training.
    """

    item_emb: Tensor
    rel_emb: Tensor

    def __init__(
        self,
        item_emb: Tensor,
        rel_emb: Tensor,
        *,
        margin: float = 1.0,
        rank_i: int | None = None,
        rank_ic: int | None = None,
        init_scale_i: float = 1.0,
        init_scale_ic: float = 1.0,
    ) -> None:
        super().__init__()
        if item_emb.dim() != 2 or rel_emb.dim() != 2 or item_emb.shape[0] != rel_emb.shape[0]:
            raise ValueError(
                f"item_emb and rel_emb must be [num_items, dim] with the same rows; "
                f"got {tuple(item_emb.shape)} and {tuple(rel_emb.shape)}"
            )
        if margin <= 0:
            raise ValueError(f"margin must be > 0, got {margin}")
        dim_i, dim_ic = int(item_emb.shape[1]), int(rel_emb.shape[1])
        rank_i = dim_i if rank_i is None else rank_i
        rank_ic = dim_ic if rank_ic is None else rank_ic
        for name, rank in (("rank_i", rank_i), ("rank_ic", rank_ic)):
            if rank < 1:
                raise ValueError(f"{name} must be >= 1, got {rank}")
        self.margin = float(margin)
        self.register_buffer("item_emb", item_emb.detach().float(), persistent=False)
        self.register_buffer("rel_emb", rel_emb.detach().float(), persistent=False)
        self.L_i = nn.Parameter(_eye_factor(rank_i, dim_i, init_scale_i))
        self.L_ic = nn.Parameter(_eye_factor(rank_ic, dim_ic, init_scale_ic))

    @property
    def num_items(self) -> int:
        return int(self.item_emb.shape[0])

    def metric_matrices(self) -> tuple[Tensor, Tensor]:
        """``(M_i, M_ic)`` with ``M = L^T L`` (PSD by construction)."""
        return self.L_i.T @ self.L_i, self.L_ic.T @ self.L_ic

    def embed_rows(self, e_i: Tensor, e_ic: Tensor) -> Tensor:
        """``z = [L_i e_i ; L_ic e_ic]`` for ``[n, dim_i]`` and ``[n, dim_ic]`` inputs -> ``[n, rank_i + rank_ic]``."""
        return torch.cat([e_i @ self.L_i.T, e_ic @ self.L_ic.T], dim=1)

    def embed(self, rows: Tensor | None = None) -> Tensor:
        """Diversity embeddings ``z`` of the given item rows (all items when ``None``)."""
        if rows is None:
            return self.embed_rows(self.item_emb, self.rel_emb)
        return self.embed_rows(self.item_emb[rows], self.rel_emb[rows])

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        """Equation 11 for item rows ``a``, ``b`` (``[n]`` int64) -> ``[n]``, computed as ``||z(a) - z(b)||^2``."""
        return (self.embed(a) - self.embed(b)).pow(2).sum(dim=1)

    def loss(self, batch: PairBatch) -> Tensor:
        """Equation 12 over one batch of labelled pairs."""
        return contrastive_loss(self.distance(batch.a, batch.b), batch.label, self.margin)

    def forward(self, batch: PairBatch) -> Tensor:
        return self.loss(batch)
