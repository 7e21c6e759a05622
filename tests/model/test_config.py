"""Config validation: errors name the path of the bad field; trainer settings are nested, not copied."""

from __future__ import annotations

import pytest

from model.config import ConfigError, M2GRLConfig, TrainerConfig


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"dim": 0}, "dim"),
        ({"window": -1}, "window"),
        ({"window": True}, "window"),
        ({"negatives": 1.5}, "negatives"),
        ({"weighting": "fancy"}, "weighting"),
        ({"min_sigma2": 0}, "min_sigma2"),
        ({"norm_exponent": 1.5}, "norm_exponent"),
        ({"static_weights": {"intra:item": -1.0}}, "static_weights['intra:item']"),
        ({"views": ("item", "item")}, "views"),
        ({"views": ("item", "")}, "views[1]"),
        ({"relations": (("item", "item"),)}, "relations[0]"),
        ({"views": ("item",), "relations": (("item", "category"),)}, "relations[0]"),
        ({"lr": float("nan")}, "trainer.lr"),
        ({"trainer": {"lr": 0.01, "min_lr": 0.1}}, "trainer.min_lr"),
        ({"device": "tpu"}, "trainer.device"),
        ({"sparse_optimizer": "sgd"}, "trainer.sparse_optimizer"),
        ({"init_log_sigma2": -10.0}, "init_log_sigma2"),
        ({"windw": 3}, "windw"),
    ],
)
def test_bad_fields_are_named(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        M2GRLConfig(**changes)  # type: ignore[arg-type]
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert "\n" not in str(info.value)


def test_defaults() -> None:
    cfg = M2GRLConfig()
    t = cfg.trainer
    assert (cfg.dim, cfg.window, cfg.negatives, t.lr, t.grad_clip, cfg.batch_size, t.epochs) == (
        128,
        9,
        10,
        0.01,
        1.0,
        2048,
        10,
    )
    assert cfg.min_sigma2 == 0.05 and cfg.weighting == "adaptive" and cfg.rel_dim == 128
    assert cfg.replace(relation_dim=8).rel_dim == 8
    assert t.lr_schedule == "constant" and t.min_lr == 1e-4
    # the tables use row-wise Adagrad at 0.05 (not the paper's Adam: see M2GRLConfig.trainer)
    assert t == TrainerConfig(sparse_optimizer="row_adagrad", sparse_lr=0.05)
    assert t.table_lr == 0.05
    linear = cfg.replace(lr_schedule="linear", min_lr=1e-3).trainer
    assert (linear.lr_schedule, linear.min_lr, linear.table_lr) == ("linear", 1e-3, 0.05)


def test_trainer_settings_given_flat_or_nested_land_in_one_place() -> None:
    assert M2GRLConfig(epochs=3).trainer == M2GRLConfig(trainer={"epochs": 3}).trainer
    assert M2GRLConfig(epochs=3).trainer.sparse_optimizer == "row_adagrad"  # over M2GRL's defaults
    explicit = M2GRLConfig(trainer=TrainerConfig(epochs=2), seed=4).trainer
    assert (explicit.epochs, explicit.seed, explicit.sparse_optimizer) == (2, 4, "lazy_adam")
    assert not hasattr(M2GRLConfig(), "epochs")
    stored = M2GRLConfig(epochs=3, window=4).to_dict()
    assert stored["trainer"]["epochs"] == 3 and "epochs" not in stored
    assert M2GRLConfig(**stored) == M2GRLConfig(epochs=3, window=4)  # manifests round-trip


def test_config_is_frozen_and_replace_validates() -> None:
    cfg = M2GRLConfig(static_weights={"intra:item": 0.5})
    with pytest.raises(AttributeError, match="frozen"):
        cfg.window = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.static_weights["intra:item"] = 2.0  # type: ignore[index]
    with pytest.raises(ConfigError, match="^trainer.epochs: "):
        cfg.replace(trainer={"epochs": 0})
    assert cfg.replace(trainer={"epochs": 4}).trainer.sparse_lr == 0.05


def test_unknown_choice_lists_valid_values() -> None:
    with pytest.raises(ConfigError, match="'adaptive', 'bounded', 'uniform' or 'static'"):
        M2GRLConfig(weighting="nope")  # type: ignore[arg-type]
