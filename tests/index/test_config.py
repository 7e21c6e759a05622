"""IndexConfig validation, the index-type registry and the device switch."""

from __future__ import annotations

import logging

import pytest

from index.config import IndexConfig
from index.device import faiss_threads, resolve_device, to_device
from index.errors import UnknownIndexType
from index.registry import IndexParams, auto_index_type, default_nlist, get_index_type, index_type_names


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("index_type", "annoy"),
        ("device", "tpu"),
        ("hnsw_m", 0),
        ("ef_search", -1),
        ("nprobe", 1.5),
        ("nlist", 0),
        ("pq_nbits", 17),
        ("topn", True),
        ("recall_floor", 1.5),
        ("recall_floor", "high"),
        ("recall_queries", 0),
        ("retention", 0),
        ("threads", 0),
        ("seed", "x"),
    ],
)
def test_bad_config_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        IndexConfig(**{field: value})  # type: ignore[arg-type]


def test_recall_k_cannot_exceed_topn() -> None:
    with pytest.raises(ValueError, match="recall_k: 60 exceeds topn=50"):
        IndexConfig(topn=50, recall_k=60)


def test_config_lists_valid_index_types_and_builds_params() -> None:
    with pytest.raises(ValueError, match="'flat'.*'hnsw'.*'ivf_flat'.*'ivf_pq'.*'auto'"):
        IndexConfig(index_type="annoy")
    config = IndexConfig(hnsw_m=8, nprobe=4, nlist=10)
    assert config.params == IndexParams(hnsw_m=8, ef_construction=200, ef_search=128, nlist=10, nprobe=4)
    assert config.to_dict()["index_type"] == "auto"


def test_registry_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(UnknownIndexType, match=r"valid: \['flat', 'hnsw', 'ivf_flat', 'ivf_pq', 'auto'\]"):
        get_index_type("lsh")
    assert index_type_names() == ["flat", "hnsw", "ivf_flat", "ivf_pq", "auto"]


def test_auto_picks_by_catalogue_size() -> None:
    assert auto_index_type(1_000) == "flat"
    assert auto_index_type(100_000) == "flat"
    assert auto_index_type(100_001) == "hnsw"
    assert auto_index_type(10_000_000) == "ivf_pq"


def test_default_nlist_is_about_four_sqrt_n_and_trainable() -> None:
    assert default_nlist(1_000_000) == 4000
    assert default_nlist(10_000) == 256  # 4 * sqrt = 400, capped at n // 39
    assert default_nlist(10) == 1


def test_index_type_checks_name_the_field() -> None:
    with pytest.raises(ValueError, match="pq_m"):
        get_index_type("ivf_pq").check(10, 10_000, IndexParams(pq_m=4))
    with pytest.raises(ValueError, match="pq_nbits"):
        get_index_type("ivf_pq").check(16, 100, IndexParams(pq_m=4, pq_nbits=8))
    with pytest.raises(ValueError, match="nlist"):
        get_index_type("ivf_flat").check(16, 50, IndexParams(nlist=100))


def test_cuda_without_gpu_falls_back_to_cpu_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="index.device"):
        assert resolve_device("cuda") == "cpu"
    assert "no GPU" in caplog.text
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    index = get_index_type("flat").make(4, "ip", 10, IndexParams())
    assert to_device(index, "cpu", "flat") == (index, None)


def test_faiss_threads_restores_the_previous_count() -> None:
    import faiss

    before = faiss.omp_get_max_threads()
    with faiss_threads(1):
        assert faiss.omp_get_max_threads() == 1
    assert faiss.omp_get_max_threads() == before
