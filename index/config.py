"""``IndexConfig``: the frozen, validated options of ``m2grl build-index`` (a ``core.config`` model)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Self

from pydantic import Field, field_validator, model_validator

from core.config import ConfigError, FrozenConfig

if TYPE_CHECKING:
    from index.registry import IndexParams

Device = Literal["auto", "cpu", "cuda"]
#: ``index.registry.AUTO`` (the registry imports faiss, which this module leaves to the build).
AUTO = "auto"


class IndexConfig(FrozenConfig):
    """Options of the index build. The build refuses to publish when the map's recall@``recall_k``
    against exact search, on ``recall_queries`` sampled items, is below ``recall_floor``."""

    index_type: str = Field(AUTO, description="flat, hnsw, ivf_flat, ivf_pq or auto (by catalogue size).")
    hnsw_m: int = Field(32, ge=1, description="HNSW graph degree.")
    ef_construction: int = Field(200, ge=1, description="HNSW beam width while building.")
    ef_search: int = Field(128, ge=1, description="HNSW beam width while searching.")
    nlist: int | None = Field(None, ge=1, description="IVF lists; none = about 4 sqrt(N).")
    nprobe: int = Field(16, ge=1, description="IVF lists visited per query.")
    pq_m: int = Field(16, ge=1, description="Product-quantiser sub-vectors (must divide the dimension).")
    pq_nbits: int = Field(8, ge=1, le=16, description="Bits per product-quantiser code.")
    topn: int = Field(200, ge=1, description="Precomputed neighbours per item.")
    recall_k: int = Field(50, ge=1, description="K of the recall check against exact search.")
    recall_floor: float = Field(
        0.95, ge=0, le=1, description="Refuse to publish below this recall@K vs exact."
    )
    recall_queries: int = Field(1000, ge=1, description="Items sampled for the recall check.")
    retention: int = Field(
        5, ge=1, description="Versions kept for rollback (plus CURRENT and every pinned one)."
    )
    device: Device = Field("auto", description="auto, cpu or cuda (faiss-gpu when present; else CPU).")
    threads: int | None = Field(None, ge=1, description="OpenMP threads of FAISS; none = its default.")
    batch_size: int = Field(4096, ge=1, description="Queries per batched search of the map.")
    seed: int = Field(0, description="Seed of IVF/PQ training and of the recall sample.")

    @field_validator("index_type", mode="after")
    @classmethod
    def _registered(cls, value: str) -> str:
        from index.registry import index_type_names

        names = index_type_names()
        if value not in names:
            raise ValueError(f"{value!r} is not one of {names}")
        return value

    @model_validator(mode="after")
    def _recall_on_the_map(self) -> Self:
        if self.recall_k > self.topn:
            raise ConfigError(
                "recall_k", f"{self.recall_k} exceeds topn={self.topn} (recall is measured on the map)"
            )
        return self

    @property
    def params(self) -> IndexParams:
        """The index-type parameters (for ``index.registry``)."""
        from index.registry import IndexParams

        return IndexParams(
            hnsw_m=self.hnsw_m,
            ef_construction=self.ef_construction,
            ef_search=self.ef_search,
            nlist=self.nlist,
            nprobe=self.nprobe,
            pq_m=self.pq_m,
            pq_nbits=self.pq_nbits,
        )
