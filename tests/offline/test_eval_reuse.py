"""Reuse of trained folders: only a manifest with the same config and the same input checksums counts."""

from __future__ import annotations

from pathlib import Path

from core.manifests import MetricManifest, ModelManifest
from offline.evaluation.reuse import metric_trained_on, model_trained_on


def test_a_folder_is_reused_only_for_the_same_config_and_inputs(tmp_path: Path) -> None:
    model, metric = tmp_path / "model", tmp_path / "metric"
    assert not model_trained_on(model, {"window": 9}, "ab")  # nothing there yet
    model.mkdir()
    metric.mkdir()
    ModelManifest(config={"window": 9, "views": ("item",)}, dataset_sha256="ab").write(
        model / "manifest.json"
    )
    MetricManifest(config={"seed": 0}, inputs_sha256={"events": "cd"}).write(metric / "manifest.json")
    # a tuple in the config compares as the list the manifest stores
    assert model_trained_on(model, {"window": 9, "views": ("item",)}, "ab")
    assert not model_trained_on(model, {"window": 9, "views": ("item",)}, "other")
    assert not model_trained_on(model, {"window": 5, "views": ("item",)}, "ab")
    assert metric_trained_on(metric, {"seed": 0}, {"events": "cd"})
    assert not metric_trained_on(metric, {"seed": 1}, {"events": "cd"})
    (model / "manifest.json").write_text("{broken")
    assert not model_trained_on(model, {"window": 9, "views": ("item",)}, "ab")  # retrained, not a crash
