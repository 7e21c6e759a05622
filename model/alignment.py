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

Without ``b`` (as the authors' TF demo) the loss is bounded below by ``k log 2`` and the alignment is
barely learned, so M2GRL degrades to one view; with ``b`` it is learned (its cost to the item view is
``M2GRLConfig.weighting``'s concern). Hence ``b``: measured on the MovieLens validation split,
reports/tuning.md, section "alignment offset".

Speed: a batch draws ``B k`` negatives from the other view, whose vocabulary is often far smaller
(categories). :func:`alignment_loss` therefore takes the *distinct* negative rows ``[U, d]`` and an
index ``[B, k]`` into them, so only ``U`` rows are projected through ``W`` (forward and both backward
products) instead of ``B k``; the value and gradients are those of ``B k`` separate draws. On the
synthetic 1M-event log (B ~ 2,700 links, k = 10, 250 categories) that is ~26,800 -> 250 rows.

The loss is one :class:`torch.autograd.Function` with a hand-written backward (as ``model.sgns``): the
inputs are projected by one matrix product over their stacked rows, and the backward reuses the saved
projections ``p = sigma(W e)`` (``dp/dz = p (1 - p)``).
"""

from __future__ import annotations

from typing import Any

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
    *,
    negative_index: Tensor | None = None,
) -> Tensor:
    """Logistic form of equation 4 (see module docstring), averaged over the positive links.

    Args:
        weight: ``W [r, d]`` alignment matrix of the relation.
        bias: 0-dim learned offset ``b``.
        item: ``[B, d]`` embeddings ``e_i`` of the items of the positive links.
        other: ``[B, d]`` embeddings ``e_c`` of their linked nodes in the other view.
        negatives: embeddings ``e_c'`` of the sampled nodes of the other view: ``[B, k, d]``, one per
            draw, or ``[U, d]`` distinct rows when ``negative_index`` is given.
        negative_mask: ``[B, k]`` 1 to keep a negative, 0 to drop one (a draw that hit the positive).
        negative_index: ``[B, k]`` int64 row of ``negatives`` for each draw.
    Returns:
        Scalar mean loss; ``0`` for an empty batch.
    """
    if item.shape != other.shape or item.dim() != 2:
        raise ValueError(f"item and other must both be [B, d]; got {tuple(item.shape)}, {tuple(other.shape)}")
    b, d = item.shape
    if negative_index is None:
        if negatives.dim() != 3 or negatives.shape[0] != b or negatives.shape[2] != d:
            raise ValueError(f"negatives must be [B, k, d] = [{b}, k, {d}]; got {tuple(negatives.shape)}")
        draws = negatives.shape[:2]
        index = torch.arange(b * negatives.shape[1], device=item.device).view(draws)
        negatives = negatives.reshape(-1, d)
    else:
        if negatives.dim() != 2 or negatives.shape[1] != d:
            raise ValueError(f"negatives must be [U, {d}] with negative_index; got {tuple(negatives.shape)}")
        if negative_index.dim() != 2 or negative_index.shape[0] != b:
            raise ValueError(f"negative_index must be [{b}, k]; got {tuple(negative_index.shape)}")
        draws, index = negative_index.shape, negative_index
    if negative_mask is None:
        negative_mask = item.new_ones(draws)
    elif tuple(negative_mask.shape) != tuple(draws):
        raise ValueError(f"negative_mask must be {tuple(draws)}; got {tuple(negative_mask.shape)}")
    if b == 0:
        return item.sum() * 0.0 + weight.sum() * 0.0 + negatives.sum() * 0.0
    out: Tensor = _AlignmentLoss.apply(weight, bias, item, other, negatives, index, negative_mask)
    return out


class _AlignmentLoss(torch.autograd.Function):
    """Forward: the value of :func:`alignment_loss` on distinct negative rows ``[U, d]`` and the draws'
    index ``[B, k]``. Backward, with ``g`` the incoming gradient, ``B`` positives, ``p = sigma(W e)`` and
    ``s`` the scores (offset included):

    - ``dL/ds_pos = (sigma(s_pos) - 1) g / B``, ``dL/ds_neg = mask sigma(s_neg) g / B``; ``dL/db`` their sum;
    - ``dp_item = ds_pos p_other + sum_j ds_neg p_neg``, ``dp_other = ds_pos p_item``, and every draw adds
      ``ds_neg p_item`` to the ``dp`` of its distinct row (``index_add``);
    - ``dz = dp p (1 - p)``, then ``de = dz W`` and ``dW = dz^T e`` over the stacked rows.
    """

    @staticmethod
    def forward(
        ctx: Any, weight: Tensor, bias: Tensor, item: Tensor, other: Tensor, negatives: Tensor, index: Tensor,
        mask: Tensor,
    ) -> Tensor:  # fmt: skip
        b = item.shape[0]
        stacked = torch.cat([item, other, negatives])
        proj = project(weight, stacked)
        p_item, p_other = proj[:b], proj[b : 2 * b]
        p_draws = proj[2 * b :].index_select(0, index.reshape(-1)).view(*index.shape, -1)  # [B, k, r]
        pos_score = (p_item * p_other).sum(dim=1) + bias
        neg_score = torch.bmm(p_draws, p_item.unsqueeze(2)).squeeze(2) + bias
        # -log sigma(s) = softplus(-s); -log sigma(-s) = softplus(s)
        total = F.softplus(-pos_score).sum() + (F.softplus(neg_score) * mask).sum()
        d_pos = torch.sigmoid(pos_score).sub_(1.0).mul_(1.0 / b)
        d_neg = torch.sigmoid(neg_score).mul_(mask).mul_(1.0 / b)
        ctx.save_for_backward(weight, stacked, proj, p_draws, index, d_pos, d_neg)
        return total / b

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        weight, stacked, proj, p_draws, index, d_pos, d_neg = ctx.saved_tensors
        b = d_pos.shape[0]
        d_pos = (d_pos * grad).unsqueeze(1)
        d_neg = d_neg * grad
        p_item, p_other = proj[:b], proj[b : 2 * b]
        d_proj = torch.zeros_like(proj)
        d_proj[:b] = torch.bmm(d_neg.unsqueeze(1), p_draws).squeeze(1).add_(p_other * d_pos)
        d_proj[b : 2 * b] = p_item * d_pos
        per_draw = (d_neg.unsqueeze(2) * p_item.unsqueeze(1)).view(-1, proj.shape[1])
        d_proj[2 * b :].index_add_(0, index.reshape(-1), per_draw)
        d_z = d_proj.mul_(proj).mul_(1.0 - proj)  # through the sigmoid
        g_stacked = d_z @ weight
        g_weight = d_z.T @ stacked if ctx.needs_input_grad[0] else None
        g_bias = (d_pos.sum() + d_neg.sum()).reshape(()) if ctx.needs_input_grad[1] else None
        return g_weight, g_bias, g_stacked[:b], g_stacked[b : 2 * b], g_stacked[2 * b :], None, None
