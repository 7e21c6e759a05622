"""Task weighting: equation 10, the sigma^2 floor, the registry."""

from __future__ import annotations

import math

import pytest
import torch

from model.weighting import AdaptiveWeighting, make_weighting, paper_static_weights

TASKS = ["intra:item", "intra:category", "inter:item-category"]


def test_adaptive_combine_is_equation_10() -> None:
    w = AdaptiveWeighting(TASKS[:2], min_sigma2=0.05)
    with torch.no_grad():
        w.log_sigma2_param.copy_(torch.tensor([math.log(2.0), math.log(0.5)]))
    total = w.combine({"intra:item": torch.tensor(3.0), "intra:category": torch.tensor(1.0)})
    assert total.item() == pytest.approx(3.0 / 2.0 + math.log(2.0) + 1.0 / 0.5 + math.log(0.5), rel=1e-6)


def test_adaptive_skips_absent_tasks() -> None:
    w = AdaptiveWeighting(TASKS, min_sigma2=0.05, init_log_sigma2=1.0)
    total = w.combine({"intra:category": torch.tensor(2.0)})
    assert total.item() == pytest.approx(2.0 * math.exp(-1.0) + 1.0, rel=1e-6)


def test_sigma2_is_clipped_at_the_floor_after_a_step() -> None:
    w = AdaptiveWeighting(TASKS[:1], min_sigma2=0.05)
    opt = torch.optim.SGD(w.parameters(), lr=10.0)
    # A tiny loss pushes log sigma^2 down hard (gradient 1 - L / sigma^2 > 0).
    w.combine({"intra:item": torch.tensor(1e-4)}).backward()
    opt.step()
    assert w.log_sigma2_param.item() < math.log(0.05)
    w.clamp_()
    assert w.log_sigma2_param.item() == pytest.approx(math.log(0.05))
    assert w.weights()["intra:item"] == pytest.approx(20.0, rel=1e-5)


def test_adaptive_sigma2_converges_towards_the_loss() -> None:
    w = AdaptiveWeighting(TASKS[:1], min_sigma2=0.05)
    opt = torch.optim.Adam(w.parameters(), lr=0.05)
    for _ in range(400):
        opt.zero_grad()
        w.combine({"intra:item": torch.tensor(3.0)}).backward()
        opt.step()
        w.clamp_()
    assert w.sigma2()["intra:item"] == pytest.approx(3.0, rel=0.05)


def test_static_defaults_follow_section_5_3_and_overrides_win() -> None:
    weights = paper_static_weights(TASKS, "intra:item", {"intra:category": 0.5})
    assert weights == {"intra:item": 0.05, "intra:category": 0.5, "inter:item-category": 1.0}
    strat = make_weighting("static", TASKS, instance_task="intra:item")
    total = strat.combine({t: torch.tensor(1.0) for t in TASKS})
    assert total.item() == pytest.approx(2.05)
    with pytest.raises(ValueError, match="unknown tasks"):
        paper_static_weights(TASKS, "intra:item", {"intra:shop": 1.0})


def test_uniform_sums_and_has_no_parameters() -> None:
    strat = make_weighting("uniform", TASKS, instance_task="intra:item")
    assert list(strat.parameters()) == []
    assert strat.combine({t: torch.tensor(2.0) for t in TASKS}).item() == pytest.approx(6.0)


def test_unknown_strategy_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="adaptive, bounded, uniform, static"):
        make_weighting("fancy", TASKS, instance_task="intra:item")


def test_bounded_caps_other_tasks_at_the_ratio_of_the_item_weight() -> None:
    w = make_weighting("bounded", TASKS, instance_task="intra:item", max_weight_ratio=0.1)
    with torch.no_grad():
        # item weight 2, category weight 0.1 (under the cap 0.2), alignment weight 20 (capped at 0.2)
        w.log_sigma2_param.copy_(torch.tensor([math.log(0.5), math.log(10.0), math.log(0.05)]))
    losses = {
        "intra:item": torch.tensor(3.0),
        "intra:category": torch.tensor(1.0),
        "inter:item-category": torch.tensor(4.0),
    }
    total = w.combine(losses)
    expected = 3.0 * 2 + math.log(0.5) + 1.0 * 0.1 + math.log(10.0) + 4.0 * 0.2 + math.log(0.05)
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert w.weights() == pytest.approx(
        {"intra:item": 2.0, "intra:category": 0.1, "inter:item-category": 0.2}
    )
    total.backward()
    grad = w.log_sigma2_param.grad
    assert grad is not None
    # capped task: only its log sigma^2 term has a gradient; the cap does not reach the item's parameter
    assert grad[2].item() == pytest.approx(1.0)
    assert grad[0].item() == pytest.approx(1.0 - 3.0 * 2.0)
    assert grad[1].item() == pytest.approx(1.0 - 1.0 * 0.1)


def test_bounded_rejects_a_bad_ratio_or_instance_task() -> None:
    with pytest.raises(ValueError, match="max_weight_ratio"):
        make_weighting("bounded", TASKS, instance_task="intra:item", max_weight_ratio=0.0)
    with pytest.raises(ValueError, match="instance task"):
        make_weighting("bounded", TASKS, instance_task="intra:shop", max_weight_ratio=0.1)
