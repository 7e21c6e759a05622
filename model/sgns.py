"""The intra-view task: skip-gram with negative sampling (equations 1-3 of the paper), as pure tensors."""

from __future__ import annotations

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
    positive = -F.logsigmoid((centre * context).sum(dim=1))
    if negatives.dim() == 2:
        neg_logits = centre @ negatives.T
    elif negatives.dim() == 3 and negatives.shape[0] == centre.shape[0]:
        neg_logits = (negatives @ centre.unsqueeze(2)).squeeze(2)
    else:
        raise ValueError(
            f"negatives must be [S, d] or [B, k, d] with B={centre.shape[0]}; got {tuple(negatives.shape)}"
        )
    negative = -F.logsigmoid(-neg_logits).sum(dim=1)
    return (positive + neg_scale * negative).mean()
