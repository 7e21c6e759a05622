"""Registry of FAISS index types by name (flat, hnsw, ivf_flat, ivf_pq) and the ``auto`` choice.

Each entry knows how to make an empty index for ``(dim, metric, n)``, whether the catalogue is big
enough for it, and which per-query search parameters to pass (``efSearch`` / ``nprobe``). Search
parameters are passed per call (``faiss.SearchParameters*``), never set on the shared index, so
concurrent searches with different breadths are thread-safe.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import faiss

from index.errors import UnknownIndexType

Metric = Literal["ip", "l2"]
METRICS: tuple[Metric, ...] = ("ip", "l2")
AUTO = "auto"

#: ``auto`` thresholds: exact search while an all-pairs top-N map stays cheap, then a graph index.
AUTO_FLAT_MAX_ITEMS = 100_000
AUTO_HNSW_MAX_ITEMS = 5_000_000


@dataclass(frozen=True)
class IndexParams:
    """Parameters of the index types (a subset of ``IndexConfig``, which validates them)."""

    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    nlist: int | None = None
    nprobe: int = 16
    pq_m: int = 16
    pq_nbits: int = 8

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def faiss_metric(metric: Metric) -> int:
    """FAISS metric constant for ``"ip"`` (inner product) or ``"l2"`` (squared L2)."""
    if metric == "ip":
        return int(faiss.METRIC_INNER_PRODUCT)
    if metric == "l2":
        return int(faiss.METRIC_L2)
    raise ValueError(f"unknown metric {metric!r}; valid: {list(METRICS)}")


def default_nlist(n: int) -> int:
    """About ``4 * sqrt(n)`` inverted lists, at least 1 and at most ``n // 39`` (FAISS wants ~39
    training points per centroid) when ``n`` allows."""
    nlist = max(1, int(round(4 * math.sqrt(n))))
    return max(1, min(nlist, n // 39)) if n >= 39 else 1


def effective_nlist(n: int, params: IndexParams) -> int:
    return params.nlist if params.nlist is not None else default_nlist(n)


@dataclass(frozen=True)
class IndexType:
    """One registered index type.

    - ``make(dim, metric, n, params)`` returns an empty (untrained) CPU index.
    - ``check(dim, n, params)`` raises ``ValueError`` naming the bad field when unusable.
    - ``search_params(index, params, k, exhaustive)`` returns per-call search parameters for
      ``k`` results; ``exhaustive`` asks for the widest search (every list / a huge beam).
    - ``exact``: results equal brute force (no recall check needed beyond sanity).
    """

    name: str
    description: str
    make: Callable[[int, Metric, int, IndexParams], faiss.Index]
    check: Callable[[int, int, IndexParams], None]
    search_params: Callable[[faiss.Index, IndexParams, int, bool], Any]
    exact: bool = False


_REGISTRY: dict[str, IndexType] = {}


def register(index_type: IndexType) -> IndexType:
    """Add an index type (a later registration with the same name replaces it)."""
    _REGISTRY[index_type.name] = index_type
    return index_type


def index_type_names() -> list[str]:
    """Registered names, plus ``auto``."""
    return [*sorted(_REGISTRY), AUTO]


def get_index_type(name: str) -> IndexType:
    """The registered type called ``name``; ``UnknownIndexType`` lists the valid names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownIndexType(name, index_type_names()) from None


def auto_index_type(n: int) -> str:
    """Pick by catalogue size: exact ``flat`` up to 100k items, ``hnsw`` up to 5M, ``ivf_pq`` beyond."""
    if n <= AUTO_FLAT_MAX_ITEMS:
        return "flat"
    if n <= AUTO_HNSW_MAX_ITEMS:
        return "hnsw"
    return "ivf_pq"


def resolve_index_type(name: str, n: int) -> IndexType:
    """``auto`` resolved for ``n`` items, other names looked up."""
    return get_index_type(auto_index_type(n) if name == AUTO else name)


def _no_check(dim: int, n: int, params: IndexParams) -> None:
    return None


def _no_params(index: faiss.Index, params: IndexParams, k: int, exhaustive: bool) -> Any:
    return None


def _make_flat(dim: int, metric: Metric, n: int, params: IndexParams) -> faiss.Index:
    return faiss.IndexFlat(dim, faiss_metric(metric))


def _make_hnsw(dim: int, metric: Metric, n: int, params: IndexParams) -> faiss.Index:
    index = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss_metric(metric))
    index.hnsw.efConstruction = params.ef_construction
    index.hnsw.efSearch = params.ef_search
    return index


def _hnsw_params(index: faiss.Index, params: IndexParams, k: int, exhaustive: bool) -> Any:
    # HNSW explores max(efSearch, k) candidates; widening the beam with k keeps refill rounds useful.
    ef = max(params.ef_search, k)
    if exhaustive:
        ef = max(ef, index.ntotal)
    # faiss's bundled type stubs lack SearchParametersHNSW (present at run time since 1.7.3)
    return faiss.SearchParametersHNSW(efSearch=int(ef))  # type: ignore[attr-defined]


def _check_ivf(dim: int, n: int, params: IndexParams) -> None:
    nlist = effective_nlist(n, params)
    if nlist > n:
        raise ValueError(f"nlist: {nlist} inverted lists need at least as many items, got {n}")


def _make_ivf_flat(dim: int, metric: Metric, n: int, params: IndexParams) -> faiss.Index:
    quantizer = faiss.IndexFlat(dim, faiss_metric(metric))
    index = faiss.IndexIVFFlat(quantizer, dim, effective_nlist(n, params), faiss_metric(metric))
    index.nprobe = params.nprobe
    return index


def _ivf_params(index: faiss.Index, params: IndexParams, k: int, exhaustive: bool) -> Any:
    nlist = int(faiss.extract_index_ivf(index).nlist)
    search = faiss.SearchParametersIVF()
    search.nprobe = nlist if exhaustive else min(nlist, params.nprobe)
    return search


def _check_ivf_pq(dim: int, n: int, params: IndexParams) -> None:
    _check_ivf(dim, n, params)
    if dim % params.pq_m != 0:
        raise ValueError(f"pq_m: {params.pq_m} sub-quantizers must divide the dimension {dim}")
    if n < 2**params.pq_nbits:
        raise ValueError(
            f"pq_nbits: {params.pq_nbits} bits need at least {2**params.pq_nbits} items, got {n}"
        )


def _make_ivf_pq(dim: int, metric: Metric, n: int, params: IndexParams) -> faiss.Index:
    quantizer = faiss.IndexFlat(dim, faiss_metric(metric))
    index = faiss.IndexIVFPQ(
        quantizer, dim, effective_nlist(n, params), params.pq_m, params.pq_nbits, faiss_metric(metric)
    )
    index.nprobe = params.nprobe
    return index


register(IndexType("flat", "exact brute-force search (IndexFlat)", _make_flat, _no_check, _no_params, True))
register(
    IndexType(
        "hnsw",
        "graph index (IndexHNSWFlat): M, efConstruction, efSearch",
        _make_hnsw,
        _no_check,
        _hnsw_params,
    )
)
register(
    IndexType(
        "ivf_flat", "inverted lists (IndexIVFFlat): nlist, nprobe", _make_ivf_flat, _check_ivf, _ivf_params
    )
)
register(
    IndexType(
        "ivf_pq",
        "inverted lists + product quantisation (IndexIVFPQ): nlist, nprobe, pq_m, pq_nbits",
        _make_ivf_pq,
        _check_ivf_pq,
        _ivf_params,
    )
)
