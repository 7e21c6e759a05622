"""``IndexConfig``: the frozen, validated options of ``m2grl build-index``.

Every field is checked in ``__post_init__``; a bad value raises ``ValueError`` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from index.registry import AUTO, IndexParams, index_type_names

Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class IndexConfig:
    """Options of the index build.

    - ``index_type``: a registered index type (``flat``, ``hnsw``, ``ivf_flat``, ``ivf_pq``) or ``auto``
      (picked by catalogue size, see ``index.registry.auto_index_type``).
    - ``hnsw_m``, ``ef_construction``, ``ef_search``: HNSW graph degree and beam widths.
    - ``nlist`` (None = about ``4 * sqrt(N)``), ``nprobe``: IVF lists and lists visited per query.
    - ``pq_m``, ``pq_nbits``: product quantiser sub-vectors (must divide the dimension) and bits each.
    - ``topn``: neighbours per item in the precomputed item-to-item map.
    - ``recall_k``, ``recall_floor``, ``recall_queries``: the build refuses to publish when the map's
      recall@``recall_k`` against exact search, on ``recall_queries`` sampled items, is below the floor.
    - ``retention``: complete versions kept for rollback after a publish (CURRENT is always kept).
    - ``device``: ``auto`` (GPU when faiss-gpu sees one), ``cpu`` or ``cuda`` (falls back to CPU with a log
      line when no GPU is usable).
    - ``threads``: OpenMP threads for FAISS during the build (None = FAISS default).
    - ``batch_size``: queries per batched search when computing the map.
    - ``seed``: seeds IVF / PQ training and the recall sample.
    """

    index_type: str = AUTO
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    nlist: int | None = None
    nprobe: int = 16
    pq_m: int = 16
    pq_nbits: int = 8
    topn: int = 200
    recall_k: int = 50
    recall_floor: float = 0.95
    recall_queries: int = 1000
    retention: int = 5
    device: str = "auto"
    threads: int | None = None
    batch_size: int = 4096
    seed: int = 0

    def __post_init__(self) -> None:
        names = index_type_names()
        if self.index_type not in names:
            raise ValueError(f"index_type: {self.index_type!r} is not one of {names}")
        if self.device not in DEVICES:
            raise ValueError(f"device: {self.device!r} is not one of {list(DEVICES)}")
        for name in ("hnsw_m", "ef_construction", "ef_search", "nprobe", "pq_m", "topn", "recall_k"):
            _positive_int(name, getattr(self, name))
        for name in ("recall_queries", "retention", "batch_size"):
            _positive_int(name, getattr(self, name))
        if self.nlist is not None:
            _positive_int("nlist", self.nlist)
        if self.threads is not None:
            _positive_int("threads", self.threads)
        if (
            not isinstance(self.pq_nbits, int)
            or isinstance(self.pq_nbits, bool)
            or not 1 <= self.pq_nbits <= 16
        ):
            raise ValueError(f"pq_nbits: must be an int in [1, 16], got {self.pq_nbits!r}")
        if isinstance(self.recall_floor, bool) or not isinstance(self.recall_floor, int | float):
            raise ValueError(f"recall_floor: must be a number in [0, 1], got {self.recall_floor!r}")
        if not 0.0 <= float(self.recall_floor) <= 1.0:
            raise ValueError(f"recall_floor: must be in [0, 1], got {self.recall_floor!r}")
        if self.recall_k > self.topn:
            raise ValueError(
                f"recall_k: {self.recall_k} exceeds topn={self.topn} (recall is measured on the map)"
            )
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed: must be an int, got {self.seed!r}")

    @property
    def params(self) -> IndexParams:
        """The index-type parameters (for ``index.registry``)."""
        return IndexParams(
            hnsw_m=self.hnsw_m,
            ef_construction=self.ef_construction,
            ef_search=self.ef_search,
            nlist=self.nlist,
            nprobe=self.nprobe,
            pq_m=self.pq_m,
            pq_nbits=self.pq_nbits,
        )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}: must be a positive int, got {value!r}")
