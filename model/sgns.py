"""The intra-view task: skip-gram with negative sampling (equations 1-3 of the paper), as pure tensors.

The loss is one :class:`torch.autograd.Function` with a hand-written backward. Autograd through
``logsigmoid`` would keep and re-read several ``[B, S]`` buffers; the derivative of
``-log sigma(-x)`` is just ``sigma(x)``, so the forward keeps that one ``[B, S]`` matrix (already
scaled by ``neg_scale / B``) and the backward is two matrix products and two row scalings.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def sgns_loss(centre: Tensor, context: Tensor, negatives: Tensor, *, neg_scale: float = 1.0) -> Tensor:
    """Negative of equation 3 averaged over the positives of a batch.

    ``-log sigma(v'_O . v_I) - neg_scale * sum_n log sigma(-v'_n . v_I)`` per positive pair, where ``v_I``
    are input ("v") vectors of the centres and ``v'`` output ("v'") vectors of contexts and negatives.

    Args:
        centre: ``[B, d]`` input vectors v_I.
        context: ``[B, d]`` output vectors v'_O of the true contexts.
        negatives: either ``[S, d]`` output vectors of a pool *shared* by every positive of the batch
            (each positive is scored against all S), or ``[B, k, d]`` negatives per positive.
        neg_scale: weight of the negative sum. With a shared pool of S, ``k / S`` makes the sum an
            unbiased estimate of the k-sample expectation of equation 3; 1 for per-positive negatives.
    Returns:
        Scalar mean loss (0-dim tensor); ``0`` for an empty batch.
    """
    if centre.shape != context.shape or centre.dim() != 2:
        raise ValueError(
            f"centre and context must both be [B, d]; got {tuple(centre.shape)}, {tuple(context.shape)}"
        )
    if centre.shape[0] == 0:
        return centre.sum() * 0.0
    shared = negatives.dim() == 2 and negatives.shape[1] == centre.shape[1]
    per_positive = negatives.dim() == 3 and negatives.shape[0] == centre.shape[0]
    if not (shared or per_positive):
        raise ValueError(
            f"negatives must be [S, d] or [B, k, d] with B={centre.shape[0]}; got {tuple(negatives.shape)}"
        )
    out: Tensor = _SGNSLoss.apply(centre, context, negatives, float(neg_scale))
    return out


def _neg_logits(centre: Tensor, negatives: Tensor) -> Tensor:
    """``[B, S]`` (shared pool) or ``[B, k]`` (per positive) scores ``v'_n . v_I``."""
    if negatives.dim() == 2:
        return centre @ negatives.T.contiguous()  # a contiguous [d, S] operand is the faster GEMM
    return torch.bmm(negatives, centre.unsqueeze(2)).squeeze(2)


def _softplus_sum(x: Tensor, sigmoid_x: Tensor) -> Tensor:
    """``softplus(x).sum()`` from ``sigmoid(x)``, which the backward needs anyway.

    ``softplus(x) = x - log sigma(x)``: one ``log`` pass instead of softplus's kernel, which takes about
    twice as long on the ``[B, S]`` negative scores (reports/tuning.md, section "SGNS negative term").
    Where ``sigma(x)`` underflows to 0 (``x < -87`` in float32) the identity gives ``inf``; that case
    falls back to softplus.
    """
    total = x.sum() - torch.log(sigmoid_x).sum()
    if not bool(torch.isfinite(total)):
        total = F.softplus(x).sum()
    return total


class _SGNSLoss(torch.autograd.Function):
    """Forward: the value of :func:`sgns_loss`. Backward, with ``g`` the incoming scalar gradient:

    - ``d/d s_pos = -sigma(-s_pos) / B`` for the positive score ``s_pos = v'_O . v_I``;
    - ``d/d s_neg = neg_scale * sigma(s_neg) / B`` for every negative score;
    - ``dv_I = dpos * v'_O + dneg @ v'_n``, ``dv'_O = dpos * v_I``, ``dv'_n = dneg^T @ v_I`` (shared pool)
      or ``dneg * v_I`` per positive.
    """

    @staticmethod
    def forward(ctx: Any, centre: Tensor, context: Tensor, negatives: Tensor, neg_scale: float) -> Tensor:
        b = centre.shape[0]
        pos_score = (centre * context).sum(dim=1)
        neg_score = _neg_logits(centre, negatives)
        # -log sigma(s) = softplus(-s); -log sigma(-s) = softplus(s).
        d_neg = torch.sigmoid(neg_score)
        total = F.softplus(-pos_score).sum() + neg_scale * _softplus_sum(neg_score, d_neg)
        d_pos = torch.sigmoid(pos_score).sub_(1.0).mul_(1.0 / b)
        d_neg.mul_(neg_scale / b)
        ctx.save_for_backward(centre, context, negatives, d_pos, d_neg)
        return total / b

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        centre, context, negatives, d_pos, d_neg = ctx.saved_tensors
        d_pos = (d_pos * grad).unsqueeze(1)
        need_c, need_x, need_n = ctx.needs_input_grad[:3]
        g_centre = g_context = g_neg = None
        if negatives.dim() == 2:
            # the incoming gradient scales the small [S, d] factors, not the [B, S] d_neg (a pass saved)
            if need_c:
                g_centre = torch.addmm(context * d_pos, d_neg, negatives * grad)
            if need_n:
                g_neg = (centre.T @ d_neg).T.mul_(grad).contiguous()  # (d x B)(B x S): the faster GEMM
        else:
            d_neg = d_neg * grad
            if need_c:
                g_centre = torch.bmm(d_neg.unsqueeze(1), negatives).squeeze(1).add_(context * d_pos)
            if need_n:
                g_neg = d_neg.unsqueeze(2) * centre.unsqueeze(1)
        if need_x:
            g_context = centre * d_pos
        return g_centre, g_context, g_neg, None
