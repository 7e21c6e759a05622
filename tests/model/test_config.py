"""Config validation: errors name the bad field."""

from __future__ import annotations

import dataclasses

import pytest

from model.config import ConfigError, M2GRLConfig, TrainerConfig


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"dim": 0}, "dim"),
        ({"window": -1}, "window"),
        ({"negatives": 1.5}, "negatives"),
        ({"weighting": "fancy"}, "weighting"),
        ({"min_sigma2": 0}, "min_sigma2"),
        ({"static_weights": {"intra:item": -1.0}}, "static_weights['intra:item']"),
        ({"views": ("item", "item")}, "views"),
        ({"relations": (("item", "item"),)}, "relations[0]"),
        ({"views": ("item",), "relations": (("item", "category"),)}, "relations[0]"),
        ({"lr": float("nan")}, "lr"),
        ({"device": "tpu"}, "device"),
        ({"sparse_optimizer": "sgd"}, "sparse_optimizer"),
        ({"init_log_sigma2": -10.0}, "init_log_sigma2"),
    ],
)
def test_bad_fields_are_named(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        M2GRLConfig(**changes)  # type: ignore[arg-type]
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_paper_defaults() -> None:
    cfg = M2GRLConfig()
    assert (cfg.dim, cfg.window, cfg.negatives, cfg.lr, cfg.grad_clip, cfg.batch_size, cfg.epochs) == (
        64,
        9,
        10,
        0.01,
        1.0,
        2048,
        10,
    )
    assert cfg.min_sigma2 == 0.05 and cfg.weighting == "adaptive" and cfg.rel_dim == 64
    assert dataclasses.replace(cfg, relation_dim=8).rel_dim == 8
    assert cfg.lr_schedule == "constant" and cfg.min_lr == 1e-4
    # the tables use row-wise Adagrad at 0.05 (not the paper's Adam: see M2GRLConfig.sparse_optimizer)
    assert cfg.trainer() == TrainerConfig(sparse_optimizer="row_adagrad", sparse_lr=0.05)
    assert cfg.trainer().table_lr == 0.05
    linear = dataclasses.replace(cfg, lr_schedule="linear", min_lr=1e-3).trainer()
    assert (linear.lr_schedule, linear.min_lr) == ("linear", 1e-3)


def test_unknown_choice_lists_valid_values() -> None:
    with pytest.raises(ConfigError, match="valid: adaptive, bounded, uniform, static"):
        M2GRLConfig(weighting="nope")  # type: ignore[arg-type]
