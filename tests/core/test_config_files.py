"""TOML config files: fields over a base config, errors naming the file and the field, a round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config_files import read_toml_overrides, toml_text
from model.config import M2GRLConfig
from offline.data.config import PrepareConfig


def test_toml_overrides_name_the_file_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml_text({"window": 4, "norm_exponent": 0.5, "align_item_grad": True}))
    config = read_toml_overrides(path, M2GRLConfig())
    assert (config.window, config.norm_exponent, config.align_item_grad) == (4, 0.5, True)
    path.write_text("windw = 4\n")
    with pytest.raises(ValueError, match=r"c.toml: windw: unknown field; valid: dim, window"):
        read_toml_overrides(path, M2GRLConfig())
    path.write_text("window = 0\n")
    with pytest.raises(ValueError, match="c.toml: window"):
        read_toml_overrides(path, M2GRLConfig())
    path.write_text("window = \n")
    with pytest.raises(ValueError, match="not valid TOML"):
        read_toml_overrides(path, M2GRLConfig())
    path.write_text('views = ["item"]\n')
    assert read_toml_overrides(path, M2GRLConfig()).views == ("item",)


def test_a_trainer_table_changes_only_the_settings_it_names(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("window = 4\n[trainer]\nlr = 0.02\n")
    config = read_toml_overrides(path, M2GRLConfig(epochs=3))
    # epochs from the base, lr from the file, the tables' optimiser from M2GRL's trainer defaults
    assert (config.window, config.trainer.lr, config.trainer.epochs) == (4, 0.02, 3)
    assert (config.trainer.sparse_optimizer, config.trainer.sparse_lr) == ("row_adagrad", 0.05)
    path.write_text("epochs = 5\n")  # the flat layout of files written before the nesting
    assert read_toml_overrides(path, M2GRLConfig()).trainer.epochs == 5
    path.write_text("[trainer]\nlr = -1\n")
    with pytest.raises(ValueError, match="c.toml: trainer.lr: Input should be greater than 0, got -1"):
        read_toml_overrides(path, M2GRLConfig())


def test_toml_text_round_trips_scalars_through_a_prepare_config(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(toml_text({"session_gap_s": 86_400, "split": "per_user", "test_fraction": 0.25}, "a\nb"))
    assert path.read_text().startswith("# a\n# b\n")
    config = read_toml_overrides(path, PrepareConfig())
    assert (config.session_gap_s, config.split, config.test_fraction) == (86_400, "per_user", 0.25)
    assert config.views == PrepareConfig().views  # fields the file does not set keep the base's
    with pytest.raises(TypeError, match="only scalars"):
        toml_text({"views": ["item"]})
