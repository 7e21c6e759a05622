"""Where FAISS runs: the ``--device`` switch (GPU through faiss-gpu when present, CPU otherwise) and the
OpenMP thread count during a build."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import faiss

log = logging.getLogger(__name__)

#: Index types with a FAISS GPU implementation (HNSW has none).
GPU_INDEX_TYPES = frozenset({"flat", "ivf_flat", "ivf_pq"})


def gpu_available() -> bool:
    """True when this FAISS build has GPU support and sees at least one device."""
    get = getattr(faiss, "get_num_gpus", None)
    return hasattr(faiss, "StandardGpuResources") and get is not None and int(get()) > 0


def resolve_device(requested: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is usable else ``cpu``; ``cuda`` without a GPU falls back to ``cpu``
    with a warning (the suite and CI have no GPU)."""
    if requested == "cpu":
        return "cpu"
    if gpu_available():
        return "cuda"
    if requested == "cuda":
        log.warning("device=cuda requested but FAISS sees no GPU (faiss-gpu missing or no device): using CPU")
    return "cpu"


def to_device(index: faiss.Index, device: str, index_type: str) -> tuple[faiss.Index, Any]:
    """Move ``index`` to GPU 0 when ``device == "cuda"`` and the type has a GPU implementation.

    Returns ``(index to use, GPU resources to keep alive or None)``.
    """
    if device != "cuda":
        return index, None
    if index_type not in GPU_INDEX_TYPES:
        log.info("index type %s has no FAISS GPU implementation: building it on CPU", index_type)
        return index, None
    resources = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(resources, 0, index), resources


def to_cpu(index: faiss.Index, resources: Any) -> faiss.Index:
    """The CPU copy of ``index`` (itself when it already is on CPU)."""
    return index if resources is None else faiss.index_gpu_to_cpu(index)


@contextlib.contextmanager
def faiss_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` OpenMP threads in FAISS (None = leave as is), restored afterwards."""
    if threads is None:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)
