"""Folder layouts of the artifacts passed between stages (see ARCHITECTURE.md).

Every stage reads only the folder before it:

    raw logs --prepare--> DatasetLayout --train--> ModelLayout (+ MetricLayout) --build-index-->
    IndexRoot/versions/<v>/ (IndexVersionLayout) --serve--> GET /i2i

Conventions shared by all layouts
- ``manifest.json`` describes the folder (config, input checksums, counts, versions, timings).
- Vocabulary arrays ``vocab/<view>.npy`` hold the *original* int64 ids; a row/vocabulary index
  ``i`` everywhere else means ``vocab[i]``.  Vocabularies are built from the training split only
  and sorted by descending training frequency (ties by id).
- ``attributes/<view>.npy`` (int64, one row per item of the item vocabulary) holds the item's
  original id in another view (e.g. its category id), ``-1`` when unknown.
- Views are a list in the dataset manifest (``views``); the first one is the instance (item) view.
  Relations are pairs ``(item_view, other_view)`` named ``"<item_view>-<other_view>"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.json"
COMPLETE_MARKER = "_COMPLETE"


def relation_name(a: str, b: str) -> str:
    return f"{a}-{b}"


@dataclass(frozen=True)
class DatasetLayout:
    """Output of ``m2grl prepare``.

    - ``events.parquet``: canonical cleaned events, columns ``user_id, item_id, timestamp, behavior,
      <view>_id for every non-item view, session (int64, global session number), split
      ('train'|'test')``, rows sorted by user then time (so sessions ascend). The ``test`` split is the
      real test period, or the validation period when the manifest says ``"target": "valid"`` (the
      dataset used for tuning).
    - ``vocab/<view>.npy`` (int64 ids) and ``vocab/<view>_counts.npy`` (int64 train counts).
    - ``sequences/<view>.npz``: ragged training sequences of vocabulary indices, arrays
      ``indptr`` (int64, n_seq + 1) and ``tokens`` (int32); consecutive duplicates collapsed.
    - ``graphs/<view>.npz``: CSR adjacency of the view graph (directed: src -> next), arrays
      ``indptr`` (int64), ``indices`` (int32), ``weights`` (float32); ``graphs/<view>_edges.parquet``
      the same edges in the same order (source row, then destination row) as ``src, dst, weight, count``
      with original ids.
    - ``attributes/<view>.npy``: per item row, original id in that view (-1 unknown).
    - ``links/<item>-<view>.npy``: per item row, *vocabulary index* in that view (-1 unknown).
    - ``labels/<view>.parquet`` (and ``labels/user.parquet``): ``id, label`` of a view whose source ids
      are strings: its ids everywhere else are dense ``0..n-1`` (``core.id_labels``).
    - ``titles.parquet``: ``item_id, title`` of the catalogue's items, only for sources with titles
      (MovieLens; ``core.titles``).
    - ``catalogue.parquet``: every item the source knows, with or without training behaviour, and its
      side attributes (and title): ``core.catalogue``.
    """

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def events(self) -> Path:
        return self.root / "events.parquet"

    def vocab(self, view: str) -> Path:
        return self.root / "vocab" / f"{view}.npy"

    def vocab_counts(self, view: str) -> Path:
        return self.root / "vocab" / f"{view}_counts.npy"

    def sequences(self, view: str) -> Path:
        return self.root / "sequences" / f"{view}.npz"

    def graph(self, view: str) -> Path:
        return self.root / "graphs" / f"{view}.npz"

    def edges(self, view: str) -> Path:
        return self.root / "graphs" / f"{view}_edges.parquet"

    def attributes(self, view: str) -> Path:
        return self.root / "attributes" / f"{view}.npy"

    def link(self, item_view: str, view: str) -> Path:
        return self.root / "links" / f"{relation_name(item_view, view)}.npy"

    def labels(self, view: str) -> Path:
        return self.root / "labels" / f"{view}.parquet"

    @property
    def titles(self) -> Path:
        return self.root / "titles.parquet"

    @property
    def catalogue(self) -> Path:
        return self.root / "catalogue.parquet"


@dataclass(frozen=True)
class ModelLayout:
    """Output of ``m2grl train`` (M2GRL).

    - ``embeddings/<view>.npy``: float32 ``[|vocab|, dim]`` input ("v") vectors per view.
    - ``context/<view>.npy``: float32 output ("v'") vectors per view.
    - ``relational/<rel>/W.npy``: float32 ``[rel_dim, dim]`` alignment matrix; ``relational/<rel>/
      <view>.npy``: sigma(W e) for every row of that view (float32).
    - ``vocab/`` and ``attributes/``: copied from the dataset so later stages need only this folder.
    - ``task_weights.json``: ``{task: {"log_sigma2": float, "weight": float}}``.
    - ``plots/``: PNG pictures (loss and sigma^2 curves, PCA of item embeddings).
    """

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    def embeddings(self, view: str) -> Path:
        return self.root / "embeddings" / f"{view}.npy"

    def context(self, view: str) -> Path:
        return self.root / "context" / f"{view}.npy"

    def relation_matrix(self, rel: str) -> Path:
        return self.root / "relational" / rel / "W.npy"

    def relational(self, rel: str, view: str) -> Path:
        return self.root / "relational" / rel / f"{view}.npy"

    def vocab(self, view: str) -> Path:
        return self.root / "vocab" / f"{view}.npy"

    def attributes(self, view: str) -> Path:
        return self.root / "attributes" / f"{view}.npy"

    @property
    def task_weights(self) -> Path:
        return self.root / "task_weights.json"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def checkpoints(self) -> Path:
        return self.root.parent / f".{self.root.name}.checkpoints"


@dataclass(frozen=True)
class MetricLayout:
    """Output of the diversity metric model (section 6.1).

    - ``diversity.npy``: float32 ``[|item vocab|, d_z]`` embeddings z(a) such that squared L2
      distance between rows equals d(a, b) of equation 11.
    - ``L_i.npy``, ``L_ic.npy``: factors of the PSD metric matrices (M = L^T L).
    - ``manifest.json`` names the source model folder.
    """

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def diversity(self) -> Path:
        return self.root / "diversity.npy"

    def factor(self, name: str) -> Path:
        return self.root / f"L_{name}.npy"


@dataclass(frozen=True)
class IndexVersionLayout:
    """One published index version under ``<index root>/versions/<version>/``.

    - ``items.npy``: int64 original item ids, one per row (shared by every mode).
    - ``attributes/<view>.npy``: int64 side attribute per row (-1 unknown).
    - ``<mode>/index.faiss``: FAISS index over that mode's vectors (general: inner product over
      instance-view embeddings; diversity: L2 over the metric model's z).
    - ``<mode>/topn_ids.npy`` (int32 rows, -1 padded) and ``<mode>/topn_scores.npy`` (float16),
      the precomputed item-to-item map, memory-mapped when served.
    - ``<channel>/topn_ids.npy`` / ``topn_scores.npy``: a map-only retrieval channel (``cooc``), and
      ``fused/`` the default mix's merged map (float32 scores, ``topn_sources.npy`` uint8 channel masks).
    - ``labels/<view>.parquet`` (``core.id_labels``), only for views whose dataset ids were strings (the
      item view and/or side views, listed in the manifest's ``labels``): the user's own ids, which the
      service takes and returns instead of the dense ids stored everywhere else (``index.labels``).
    - ``cold.npy``: bool ``[N]``, True for a catalogue item without training behaviour whose vectors were
      placed from its side views (``index.cold``); only in a version that holds such items (manifest ``cold``).
    - ``explorer/``: what the explorer page (``/explore``) reads, never the lookups: ``map.npy`` (float32
      ``[N, 2]``, a 2-D projection of the general-mode vectors), ``train_counts.npy`` (int64 ``[N]``,
      training events per item, -1 unknown) and, when the dataset has them, ``titles.parquet``
      (``core.titles``).
    - ``manifest.json`` then ``_COMPLETE`` written last: a folder without it is never loaded.
    """

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def complete_marker(self) -> Path:
        return self.root / COMPLETE_MARKER

    @property
    def items(self) -> Path:
        return self.root / "items.npy"

    def attributes(self, view: str) -> Path:
        return self.root / "attributes" / f"{view}.npy"

    def labels(self, view: str) -> Path:
        """The user's own ids of ``view`` (only views whose dataset ids were strings)."""
        return self.root / "labels" / f"{view}.parquet"

    @property
    def cold(self) -> Path:
        """Per row, whether the item is cold (placed from its side views, no trained row)."""
        return self.root / "cold.npy"

    def faiss_index(self, mode: str) -> Path:
        return self.root / mode / "index.faiss"

    def topn_ids(self, mode: str) -> Path:
        return self.root / mode / "topn_ids.npy"

    def topn_scores(self, mode: str) -> Path:
        return self.root / mode / "topn_scores.npy"

    def topn_sources(self, mode: str) -> Path:
        """Per map entry, the bit mask of the channels that listed it (the ``fused`` map only)."""
        return self.root / mode / "topn_sources.npy"

    @property
    def explorer_map(self) -> Path:
        return self.root / "explorer" / "map.npy"

    @property
    def explorer_train_counts(self) -> Path:
        return self.root / "explorer" / "train_counts.npy"

    @property
    def explorer_titles(self) -> Path:
        return self.root / "explorer" / "titles.parquet"


@dataclass(frozen=True)
class IndexRoot:
    """Index versions side by side; ``CURRENT`` is a one-line file naming the served version,
    replaced atomically (``os.replace``) only after the new version validated."""

    root: Path

    @property
    def versions(self) -> Path:
        return self.root / "versions"

    def version(self, name: str) -> IndexVersionLayout:
        return IndexVersionLayout(self.versions / name)

    @property
    def current(self) -> Path:
        return self.root / "CURRENT"
