"""The metric model of section 6.1: equations 11 and 12 against hand-computed values, the z identity, PSD."""

from __future__ import annotations

import pytest
import torch

from model.metric import MultiViewMetric, PairBatch, contrastive_loss, mahalanobis_sq, metric_distance


def test_mahalanobis_sq_hand_computed() -> None:
    diff = torch.tensor([[1.0, 2.0], [1.0, -2.0]])
    metric = torch.tensor([[2.0, 1.0], [1.0, 3.0]])
    # [1,2]: 2*1 + 2*1*1*2 + 3*4 = 18 ; [1,-2]: 2 - 4 + 12 = 10
    assert mahalanobis_sq(diff, metric).tolist() == pytest.approx([18.0, 10.0])


def test_metric_distance_is_sum_of_both_views_eq11() -> None:
    a_i, b_i = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    a_ic, b_ic = torch.tensor([[0.5]]), torch.tensor([[0.25]])
    m_i = torch.tensor([[2.0, 1.0], [1.0, 3.0]])
    m_ic = torch.tensor([[4.0]])
    # d_i = 10 (diff [1,-2]), d_ic = 4 * 0.25^2 = 0.25
    assert metric_distance(a_i, b_i, a_ic, b_ic, m_i, m_ic).tolist() == pytest.approx([10.25])


def test_contrastive_loss_hand_computed_eq12() -> None:
    d = torch.tensor([0.5, 2.0, 0.3])
    y = torch.tensor([1.0, 0.0, 0.0])
    # positive: 0.5^2 = 0.25; far negative: max(1-2,0)^2 = 0; near negative: (1-0.3)^2 = 0.49 ; / (2*3)
    assert contrastive_loss(d, y, margin=1.0).item() == pytest.approx(0.74 / 6)
    # a bool label works the same
    assert contrastive_loss(d, y.bool(), margin=1.0).item() == pytest.approx(0.74 / 6)
    assert contrastive_loss(torch.zeros(0), torch.zeros(0), margin=1.0).item() == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(distance=torch.zeros(2), label=torch.zeros(2), margin=0.0), "margin must be > 0"),
        (dict(distance=torch.zeros(2), label=torch.zeros(3), margin=1.0), "shapes differ"),
    ],
)
def test_contrastive_loss_rejects_bad_input(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        contrastive_loss(**kwargs)


def _random_model(
    seed: int = 0, n: int = 30, dim_i: int = 6, dim_ic: int = 4, **kw: object
) -> MultiViewMetric:
    g = torch.Generator().manual_seed(seed)
    model = MultiViewMetric(torch.randn(n, dim_i, generator=g), torch.rand(n, dim_ic, generator=g), **kw)  # type: ignore[arg-type]
    with torch.no_grad():
        model.L_i.copy_(torch.randn(model.L_i.shape, generator=g))
        model.L_ic.copy_(torch.randn(model.L_ic.shape, generator=g))
    return model


@pytest.mark.parametrize(("rank_i", "rank_ic"), [(None, None), (3, 2)])
def test_squared_l2_between_z_equals_eq11_distance(rank_i: int | None, rank_ic: int | None) -> None:
    model = _random_model(rank_i=rank_i, rank_ic=rank_ic)
    a = torch.arange(0, 15)
    b = torch.arange(15, 30)
    m_i, m_ic = model.metric_matrices()
    expected = metric_distance(
        model.item_emb[a], model.item_emb[b], model.rel_emb[a], model.rel_emb[b], m_i, m_ic
    )
    z = model.embed()
    assert z.shape == (30, (rank_i or 6) + (rank_ic or 4))
    got = (z[a] - z[b]).pow(2).sum(1)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(model.distance(a, b), expected, rtol=1e-4, atol=1e-4)


def test_metric_matrices_are_psd_for_any_factor() -> None:
    model = _random_model(seed=3, rank_i=2)
    for m in model.metric_matrices():
        torch.testing.assert_close(m, m.T)
        assert torch.linalg.eigvalsh(m.double()).min().item() >= -1e-6


def test_identity_start_gives_plain_l2_geometry() -> None:
    e_i = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    e_ic = torch.tensor([[0.5], [0.0]])
    model = MultiViewMetric(e_i, e_ic, init_scale_i=1.0, init_scale_ic=2.0)
    # 3^2 + 4^2 + (2 * 0.5)^2
    assert model.distance(torch.tensor([0]), torch.tensor([1])).item() == pytest.approx(26.0)


def test_state_dict_holds_only_the_factors() -> None:
    model = _random_model()
    assert set(model.state_dict()) == {"L_i", "L_ic"}


def test_loss_gradient_pulls_positives_and_pushes_negatives() -> None:
    model = _random_model(seed=1)
    pos = PairBatch(torch.tensor([0]), torch.tensor([1]), torch.tensor([1.0]))
    d0 = model.distance(pos.a, pos.b).item()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    for _ in range(5):
        opt.zero_grad()
        model(pos).backward()
        opt.step()
    assert model.distance(pos.a, pos.b).item() < d0

    model = _random_model(seed=1, margin=1e4)
    neg = PairBatch(torch.tensor([0]), torch.tensor([1]), torch.tensor([0.0]))
    d0 = model.distance(neg.a, neg.b).item()
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)
    opt.zero_grad()
    model(neg).backward()
    opt.step()
    assert model.distance(neg.a, neg.b).item() > d0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(item_emb=torch.zeros(3, 2), rel_emb=torch.zeros(4, 2)), "same rows"),
        (dict(item_emb=torch.zeros(3), rel_emb=torch.zeros(3, 2)), r"\[num_items, dim\]"),
        (dict(item_emb=torch.zeros(3, 2), rel_emb=torch.zeros(3, 2), margin=-1.0), "margin"),
        (dict(item_emb=torch.zeros(3, 2), rel_emb=torch.zeros(3, 2), rank_i=0), "rank_i"),
    ],
)
def test_model_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MultiViewMetric(**kwargs)
