"""The inter-view task: alignment of two views in a relational space (equation 4 of the paper).

Equation 4 as printed is a difference of scores, ``sum_pos s(i, c) - sum_neg s(i, c')`` with
``s(i, c) = sigma(W e_i)^T sigma(W e_c)``, which is unbounded and not the classification loss that
section 3.5 (eqs. 6-10) assumes for every task. We therefore train it as a logistic classification of
positive links against sampled negatives, on the same score:

    L = -log sigma(s(i, c) + b) - sum_{c'} log sigma(-(s(i, c') + b))

Negatives ``c'`` go through the same ``W`` and sigmoid as positives. Because the sigmoid outputs are
positive, ``s >= 0`` always, so without an offset no pair could ever be classified negative; ``b`` is one
learned scalar per relation (started at ``-rel_dim / 4``, minus the score of two all-0.5 vectors).
The relational embeddings ``sigma(W e)`` (:func:`project`) are model outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def project(weight: Tensor, emb: Tensor) -> Tensor:
    """``sigma(W e)`` for every row: ``[..., d]`` embeddings and ``W [r, d]`` -> ``[..., r]``."""
    return torch.sigmoid(emb @ weight.T)


def alignment_loss(
    weight: Tensor,
    bias: Tensor,
    item: Tensor,
    other: Tensor,
    negatives: Tensor,
    negative_mask: Tensor | None = None,
) -> Tensor:
    """Logistic form of equation 4 (see module docstring), averaged over the positive links.

    Args:
        weight: ``W [r, d]`` alignment matrix of the relation.
        bias: 0-dim learned offset ``b``.
        item: ``[B, d]`` embeddings ``e_i`` of the items of the positive links.
        other: ``[B, d]`` embeddings ``e_c`` of their linked nodes in the other view.
        negatives: ``[B, k, d]`` embeddings ``e_c'`` of sampled non-linked nodes.
        negative_mask: ``[B, k]`` 1 to keep a negative, 0 to drop one (a draw that hit the positive).
    Returns:
        Scalar mean loss; ``0`` for an empty batch.
    """
    if item.shape != other.shape or item.dim() != 2:
        raise ValueError(f"item and other must both be [B, d]; got {tuple(item.shape)}, {tuple(other.shape)}")
    if negatives.dim() != 3 or negatives.shape[0] != item.shape[0] or negatives.shape[2] != item.shape[1]:
        raise ValueError(
            f"negatives must be [B, k, d] = [{item.shape[0]}, k, {item.shape[1]}]; got {tuple(negatives.shape)}"
        )
    if item.shape[0] == 0:
        return item.sum() * 0.0 + weight.sum() * 0.0
    p_item = project(weight, item)
    pos_score = (p_item * project(weight, other)).sum(dim=1) + bias
    neg_score = (project(weight, negatives) @ p_item.unsqueeze(2)).squeeze(2) + bias
    neg_terms = -F.logsigmoid(-neg_score)
    if negative_mask is not None:
        neg_terms = neg_terms * negative_mask
    return (-F.logsigmoid(pos_score) + neg_terms.sum(dim=1)).mean()
