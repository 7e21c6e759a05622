"""Reading and writing the M2GRL model folder (``core.layout.ModelLayout``).

``M2GRLArtifact.save`` writes the folder atomically (``core.atomic.atomic_dir``); ``M2GRLArtifact.load``
reads it back and validates it (every file present, shapes consistent with the vocabularies, finite
values), raising :class:`ArtifactError` that names the broken file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.atomic import atomic_dir, atomic_write_json, read_json
from core.layout import ModelLayout, relation_name
from core.manifests import MODEL_FORMAT_VERSION, ModelManifest

Array = npt.NDArray[Any]


class ArtifactError(ValueError):
    """A model folder is missing a file or holds inconsistent arrays."""


@dataclass
class M2GRLArtifact:
    """Everything a trained M2GRL folder holds.

    Attributes:
        views: view names, instance view first.
        relations: ``(item_view, other_view)`` pairs; named ``"<a>-<b>"`` in the folder.
        embeddings: view -> ``[|vocab|, dim]`` float32 input vectors (what retrieval uses).
        context: view -> ``[|vocab|, dim]`` float32 output vectors.
        relation_matrices: relation name -> ``W [rel_dim, dim]`` float32.
        relational: relation name -> view -> ``[|vocab|, rel_dim]`` float32 ``sigma(W e)``.
        vocab: view -> int64 original ids (row ``i`` is ``vocab[i]``).
        attributes: view -> int64 per item row, the item's original id in that view (-1 unknown).
        task_weights: task -> ``{"log_sigma2", "weight", ...}``.
        manifest: config, dataset checksum, versions, timings, final losses (its views and relations are
            the artifact's own when saved).
    """

    views: list[str]
    relations: list[tuple[str, str]]
    embeddings: dict[str, Array]
    context: dict[str, Array]
    relation_matrices: dict[str, Array]
    relational: dict[str, dict[str, Array]]
    vocab: dict[str, Array]
    attributes: dict[str, Array] = field(default_factory=dict)
    task_weights: dict[str, dict[str, float]] = field(default_factory=dict)
    manifest: ModelManifest = field(default_factory=ModelManifest)

    @property
    def relation_names(self) -> list[str]:
        return [relation_name(a, b) for a, b in self.relations]

    def validate(self) -> None:
        """Raise :class:`ArtifactError` unless every array exists with consistent shapes and finite values."""
        if not self.views:
            raise ArtifactError("the model has no view")
        dim: int | None = None
        for view in self.views:
            for kind, table in (("embeddings", self.embeddings), ("context", self.context)):
                if view not in table:
                    raise ArtifactError(f"{kind}/{view}.npy is missing")
                arr = table[view]
                _check_matrix(f"{kind}/{view}.npy", arr, rows=len(self._vocab(view)))
                if dim is None:
                    dim = arr.shape[1]
                elif arr.shape[1] != dim:
                    raise ArtifactError(f"{kind}/{view}.npy has dim {arr.shape[1]}, other views {dim}")
        n_items = len(self._vocab(self.views[0]))
        for view, attr in self.attributes.items():
            if attr.shape != (n_items,):
                raise ArtifactError(f"attributes/{view}.npy has shape {attr.shape}, expected ({n_items},)")
        for a, b in self.relations:
            rel = relation_name(a, b)
            if rel not in self.relation_matrices:
                raise ArtifactError(f"relational/{rel}/W.npy is missing")
            w = self.relation_matrices[rel]
            _check_matrix(f"relational/{rel}/W.npy", w, cols=dim)
            for view in (a, b):
                if view not in self.relational.get(rel, {}):
                    raise ArtifactError(f"relational/{rel}/{view}.npy is missing")
                _check_matrix(
                    f"relational/{rel}/{view}.npy",
                    self.relational[rel][view],
                    rows=len(self._vocab(view)),
                    cols=w.shape[0],
                )

    def _vocab(self, view: str) -> Array:
        if view not in self.vocab:
            raise ArtifactError(f"vocab/{view}.npy is missing")
        return self.vocab[view]

    def save(
        self, path: Path, *, overwrite: bool = False, extra: Callable[[ModelLayout], None] | None = None
    ) -> Path:
        """Validate, then write the folder atomically; ``extra(layout)`` may add files (plots) inside."""
        self.validate()
        path = Path(path)
        with atomic_dir(path, overwrite=overwrite) as tmp:
            layout = ModelLayout(tmp)
            for view in self.views:
                _save(layout.embeddings(view), self.embeddings[view].astype(np.float32))
                _save(layout.context(view), self.context[view].astype(np.float32))
                _save(layout.vocab(view), self.vocab[view].astype(np.int64))
            for view, attr in self.attributes.items():
                _save(layout.attributes(view), attr.astype(np.int64))
            for rel, w in self.relation_matrices.items():
                _save(layout.relation_matrix(rel), w.astype(np.float32))
                for view, arr in self.relational[rel].items():
                    _save(layout.relational(rel, view), arr.astype(np.float32))
            atomic_write_json(layout.task_weights, self.task_weights)
            if extra is not None:
                layout.plots.mkdir(parents=True, exist_ok=True)
                extra(layout)
            self.manifest.model_copy(
                update={
                    "kind": "m2grl",
                    "format_version": MODEL_FORMAT_VERSION,
                    "views": list(self.views),
                    "relations": list(self.relations),
                }
            ).write(layout.manifest)
        return path

    @classmethod
    def load(cls, path: Path, *, mmap: bool = False) -> M2GRLArtifact:
        """Read and validate a model folder; :class:`ArtifactError` names what is broken."""
        layout = ModelLayout(Path(path))
        if not layout.root.is_dir():
            raise ArtifactError(f"{layout.root} is not a folder")
        try:
            manifest = ModelManifest.read(layout.root)
        except (FileNotFoundError, ValueError) as exc:
            raise ArtifactError(str(exc)) from None
        views, relations = list(manifest.views), [(a, b) for a, b in manifest.relations]
        mode = "r" if mmap else None
        emb = {v: _load(layout.embeddings(v), mode) for v in views}
        ctx = {v: _load(layout.context(v), mode) for v in views}
        vocab = {v: _load(layout.vocab(v), None) for v in views}
        attr_dir = layout.root / "attributes"
        attributes = (
            {p.stem: _load(p, None) for p in sorted(attr_dir.glob("*.npy"))} if attr_dir.exists() else {}
        )
        names = [relation_name(a, b) for a, b in relations]
        matrices = {r: _load(layout.relation_matrix(r), None) for r in names}
        relational = {
            relation_name(a, b): {v: _load(layout.relational(relation_name(a, b), v), mode) for v in (a, b)}
            for a, b in relations
        }
        weights: dict[str, dict[str, float]] = (
            read_json(layout.task_weights) if layout.task_weights.exists() else {}
        )
        artifact = cls(views, relations, emb, ctx, matrices, relational, vocab, attributes, weights, manifest)
        artifact.validate()
        return artifact


def _check_matrix(name: str, arr: Array, *, rows: int | None = None, cols: int | None = None) -> None:
    if arr.ndim != 2:
        raise ArtifactError(f"{name} must be 2-D, has shape {arr.shape}")
    if rows is not None and arr.shape[0] != rows:
        raise ArtifactError(f"{name} has {arr.shape[0]} rows, its vocabulary {rows}")
    if cols is not None and arr.shape[1] != cols:
        raise ArtifactError(f"{name} has {arr.shape[1]} columns, expected {cols}")
    if not np.all(np.isfinite(arr)):
        raise ArtifactError(f"{name} holds NaN or infinite values")


def _save(path: Path, arr: Array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.ascontiguousarray(arr))


def _load(path: Path, mmap_mode: Any) -> Array:
    if not path.exists():
        raise ArtifactError(f"{path} is missing")
    try:
        arr: Array = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ArtifactError(f"{path} is not a readable .npy file: {exc}") from exc
    return arr
