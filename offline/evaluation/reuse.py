"""Reuse of trained folders across evaluation runs: a model or metric folder whose manifest records
the same config and the same input checksums is what training would write again, so a second run on
the same data (another protocol, a re-render) reads it instead of retraining."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.manifests import MetricManifest, ModelManifest


def _same(written: dict[str, Any], config: dict[str, Any]) -> bool:
    # through JSON, as the manifest was written: tuples become lists
    return written == json.loads(json.dumps(config))


def model_trained_on(model_dir: Path, config: dict[str, Any], dataset_sha256: str) -> bool:
    """Whether ``model_dir`` holds a model trained with ``config`` on inputs of checksum ``dataset_sha256``
    (False when it holds none, or a manifest that does not read)."""
    try:
        manifest = ModelManifest.read(model_dir)
    except (FileNotFoundError, ValueError):
        return False
    return _same(manifest.config, config) and manifest.dataset_sha256 == dataset_sha256


def metric_trained_on(metric_dir: Path, config: dict[str, Any], inputs_sha256: dict[str, str]) -> bool:
    """Whether ``metric_dir`` holds a metric model trained with ``config`` on inputs of checksums
    ``inputs_sha256`` (False when it holds none, or a manifest that does not read)."""
    try:
        manifest = MetricManifest.read(metric_dir)
    except (FileNotFoundError, ValueError):
        return False
    return _same(manifest.config, config) and manifest.inputs_sha256 == inputs_sha256
