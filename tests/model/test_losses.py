"""Each loss against values computed by hand on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from model.alignment import alignment_loss, project
from model.sgns import sgns_loss


def _logsig(x: float) -> float:
    return math.log(1.0 / (1.0 + math.exp(-x)))


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_sgns_per_positive_negatives_matches_equation_3() -> None:
    centre = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    context = torch.tensor([[0.5, 0.5], [1.0, -1.0]])
    negatives = torch.tensor([[[1.0, 1.0]], [[0.0, 0.5]]])  # one negative per positive
    # pair 0: v'.v = 0.5, neg . v = 1.0 ; pair 1: v'.v = -2.0, neg . v = 1.0
    expected = (-(_logsig(0.5) + _logsig(-1.0)) - (_logsig(-2.0) + _logsig(-1.0))) / 2
    assert sgns_loss(centre, context, negatives).item() == pytest.approx(expected, rel=1e-6)


def test_sgns_shared_pool_scores_every_positive_against_every_negative() -> None:
    centre = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    context = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pool = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    # pair 0 scores: pos 1, negs (2, 0); pair 1: pos 1, negs (0, 3); neg_scale 0.5 (k=1 of S=2)
    p0 = -_logsig(1.0) - 0.5 * (_logsig(-2.0) + _logsig(0.0))
    p1 = -_logsig(1.0) - 0.5 * (_logsig(0.0) + _logsig(-3.0))
    got = sgns_loss(centre, context, pool, neg_scale=0.5).item()
    assert got == pytest.approx((p0 + p1) / 2, rel=1e-6)


def test_sgns_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="negatives"):
        sgns_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3, 1, 3))


def test_alignment_loss_hand_computed_and_negatives_through_w() -> None:
    w = torch.tensor([[1.0, 0.0]])  # rel_dim 1: sigma(W e) = sigma(e[0])
    bias = torch.tensor(-0.25)
    item = torch.tensor([[0.0, 5.0]])  # sigma(0) = 0.5
    other = torch.tensor([[2.0, 0.0]])
    negs = torch.tensor([[[-1.0, 0.0], [3.0, 0.0]]])
    s_pos = 0.5 * _sig(2.0) - 0.25
    s_neg = [0.5 * _sig(-1.0) - 0.25, 0.5 * _sig(3.0) - 0.25]
    expected = -_logsig(s_pos) - _logsig(-s_neg[0]) - _logsig(-s_neg[1])
    assert alignment_loss(w, bias, item, other, negs).item() == pytest.approx(expected, rel=1e-6)
    # The mask drops the second negative.
    masked = alignment_loss(w, bias, item, other, negs, torch.tensor([[1.0, 0.0]]))
    assert masked.item() == pytest.approx(-_logsig(s_pos) - _logsig(-s_neg[0]), rel=1e-6)


def test_negatives_go_through_w() -> None:
    """d loss / d W must depend on the negatives (they are projected by W) and negatives get gradients."""
    torch.manual_seed(0)
    item, other = torch.randn(3, 4), torch.randn(3, 4)
    grads = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        w = torch.randn(5, 4, requires_grad=True)
        w.data = torch.ones(5, 4) * 0.1
        negs = torch.randn(3, 2, 4, requires_grad=True)
        alignment_loss(w, torch.tensor(-1.0), item, other, negs).backward()
        assert negs.grad is not None and negs.grad.abs().sum() > 0
        grads.append(w.grad.clone())
    assert not torch.allclose(grads[0], grads[1])


def _alignment_reference(
    w: torch.Tensor,
    bias: torch.Tensor,
    item: torch.Tensor,
    other: torch.Tensor,
    negs: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """The logistic equation 4 written with autograd ops only, on ``[B, k, d]`` draws."""
    p_item = torch.sigmoid(item @ w.T)
    pos = (p_item * torch.sigmoid(other @ w.T)).sum(dim=1) + bias
    neg = (torch.sigmoid(negs @ w.T) @ p_item.unsqueeze(2)).squeeze(2) + bias
    logsig = torch.nn.functional.logsigmoid
    return (-logsig(pos) - (logsig(-neg) * mask).sum(dim=1)).mean()


@pytest.mark.parametrize("distinct", [False, True])
def test_alignment_backward_matches_autograd_of_the_formula(distinct: bool) -> None:
    """Per-draw ``[B, k, d]`` negatives, or distinct rows ``[U, d]`` + index: the same value and
    gradients as the autograd formula on the ``[B, k, d]`` draws (a row drawn twice sums its two)."""
    torch.manual_seed(0)
    f64 = {"dtype": torch.float64, "requires_grad": True}
    w, bias = torch.randn(3, 4, **f64), torch.tensor(-0.7, **f64)
    item, other = torch.randn(5, 4, **f64), torch.randn(5, 4, **f64)
    rows = torch.randn(4, 4, **f64)  # U = 4 distinct negatives
    index = torch.tensor([[0, 1], [1, 1], [3, 0], [2, 3], [0, 0]])
    mask = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    want = _alignment_reference(w, bias, item, other, rows[index], mask)
    if distinct:
        got = alignment_loss(w, bias, item, other, rows, mask, negative_index=index)
        leaves = [w, bias, item, other, rows]
    else:
        draws = rows[index].detach().requires_grad_()
        got = alignment_loss(w, bias, item, other, draws, mask)
        want = _alignment_reference(w, bias, item, other, draws, mask)
        leaves = [w, bias, item, other, draws]
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    g_got = torch.autograd.grad(2.5 * got, leaves)
    g_want = torch.autograd.grad(2.5 * want, leaves)
    for a, b in zip(g_got, g_want, strict=True):
        assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    if distinct:
        check = lambda *xs: alignment_loss(*xs, mask, negative_index=index)  # noqa: E731
    else:
        check = lambda *xs: alignment_loss(*xs, mask)  # noqa: E731
    assert torch.autograd.gradcheck(check, tuple(leaves))


def test_alignment_rejects_bad_shapes() -> None:
    w, bias, e = torch.ones(2, 3), torch.tensor(0.0), torch.zeros(4, 3)
    with pytest.raises(ValueError, match="negatives must be \\[B, k, d\\]"):
        alignment_loss(w, bias, e, e, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="negative_index"):
        alignment_loss(w, bias, e, e, torch.zeros(5, 3), negative_index=torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="negative_mask"):
        alignment_loss(w, bias, e, e, torch.zeros(4, 2, 3), torch.ones(4, 3))


def test_project_is_sigmoid_of_w_e() -> None:
    w = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    e = torch.tensor([[1.0, 1.0]])
    assert torch.allclose(project(w, e), torch.sigmoid(torch.tensor([[3.0, -1.0]])))


def _sgns_reference(
    centre: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor, k: float
) -> torch.Tensor:
    """Equation 3 written with autograd ops only (the hand-written backward must agree with it)."""
    positive = -torch.nn.functional.logsigmoid((centre * context).sum(dim=1))
    shared = negatives.dim() == 2
    logits = centre @ negatives.T if shared else (negatives @ centre.unsqueeze(2)).squeeze(2)
    return (positive - k * torch.nn.functional.logsigmoid(-logits).sum(dim=1)).mean()


@pytest.mark.parametrize("neg_shape", [(5, 4), (6, 3, 4)])
def test_sgns_backward_matches_autograd_of_the_formula(neg_shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    leaves = [
        torch.randn(6, 4, dtype=torch.float64, requires_grad=True),
        torch.randn(6, 4, dtype=torch.float64, requires_grad=True),
        torch.randn(*neg_shape, dtype=torch.float64, requires_grad=True),
    ]
    got = sgns_loss(*leaves, neg_scale=0.4)
    want = _sgns_reference(*leaves, 0.4)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    g_got = torch.autograd.grad(3.0 * got, leaves)
    g_want = torch.autograd.grad(3.0 * want, leaves)
    for a, b in zip(g_got, g_want, strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda c, x, n: sgns_loss(c, x, n, neg_scale=0.4), tuple(leaves))


def test_sgns_gradient_only_for_inputs_that_need_it() -> None:
    centre = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    context = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pool = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    sgns_loss(centre, context, pool, neg_scale=0.5).backward()
    # d/d v_I of the mean over B = 2: (-(1 - sigma(v'_O . v_I)) v'_O + 0.5 sum_n sigma(v'_n . v_I) v'_n) / 2;
    # scores: pair 0 pos 1, negs (2, 0); pair 1 pos 1, negs (0, 3)
    pull = 1.0 - _sig(1.0)
    expected = torch.tensor(
        [
            [(-pull + 0.5 * 2.0 * _sig(2.0)) / 2, 0.5 * 3.0 * _sig(0.0) / 2],
            [0.5 * 2.0 * _sig(0.0) / 2, (-pull + 0.5 * 3.0 * _sig(3.0)) / 2],
        ]
    )
    assert centre.grad is not None and torch.allclose(centre.grad, expected, atol=1e-6)
    assert context.grad is None and pool.grad is None
    # and the other way round: only the context and the pool need one
    centre2 = centre.detach()
    context2, pool2 = context.clone().requires_grad_(), pool.clone().requires_grad_()
    sgns_loss(centre2, context2, pool2, neg_scale=0.5).backward()
    assert centre2.grad is None
    # d/d v'_O = -(1 - sigma(v'_O . v_I)) v_I / 2; d/d v'_n = 0.5 sum_pairs sigma(v'_n . v_I) v_I / 2
    assert context2.grad is not None and torch.allclose(context2.grad, -pull / 2 * centre2, atol=1e-6)
    pool_grad = torch.tensor(
        [[0.5 * _sig(2.0) / 2, 0.5 * _sig(0.0) / 2], [0.5 * _sig(0.0) / 2, 0.5 * _sig(3.0) / 2]]
    )
    assert pool2.grad is not None and torch.allclose(pool2.grad, pool_grad, atol=1e-6)


def test_softplus_sum_from_sigmoid_matches_softplus_and_survives_underflow() -> None:
    from model.sgns import _softplus_sum

    x = torch.tensor([[-3.0, 0.0, 2.5], [40.0, -20.0, 1.0]])
    expected = torch.nn.functional.softplus(x.double()).sum().item()
    assert _softplus_sum(x, torch.sigmoid(x)).item() == pytest.approx(expected, rel=1e-6)
    # sigma(-200) is 0 in float32: log would be -inf; the fallback gives softplus(-200) + softplus(1) = log(1 + e)
    y = torch.tensor([-200.0, 1.0])
    assert _softplus_sum(y, torch.sigmoid(y)).item() == pytest.approx(math.log1p(math.e), rel=1e-6)
