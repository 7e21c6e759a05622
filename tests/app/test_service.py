"""Pure retrieval rules: exclusions per mode, strategy -> index mode, merging, list parsing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import ApiError
from app.query import RetrievalQuery, parse_retrieval_query, query_params
from app.service import exclusions, index_mode, merge_candidates
from app.settings import VariantConfig
from app.stores import Recent
from core.types import Candidate, NeighbourResult

RECENT = Recent(frozenset({4, 5}), (1, 2))


def test_diversity_excludes_own_and_recent_categories_always() -> None:
    got = exclusions(mode="diversity", explicit=[9], recent=RECENT, exclude_recent=False, own_categories=[1])
    assert got == {1, 4, 5, 9}


def test_general_excludes_recent_only_when_asked() -> None:
    plain = exclusions(mode="general", explicit=[9], recent=RECENT, exclude_recent=False, own_categories=[1])
    asked = exclusions(mode="general", explicit=[9], recent=RECENT, exclude_recent=True, own_categories=[1])
    assert plain == {9}
    assert asked == {4, 5, 9}


def test_unknown_category_is_never_excluded() -> None:
    got = exclusions(mode="diversity", explicit=[], recent=RECENT, exclude_recent=False, own_categories=[-1])
    assert got == {4, 5}


def test_index_mode_follows_strategy() -> None:
    metric = VariantConfig(name="m", weight=1, strategy="metric")
    filt = VariantConfig(name="f", weight=1, strategy="filter")
    assert index_mode("diversity", metric) == "diversity"
    assert index_mode("diversity", filt) == "general"
    assert index_mode("general", metric) == "general"


def test_merge_keeps_best_score_per_item() -> None:
    r1 = NeighbourResult.from_candidates(
        1, [Candidate(10, 0.9, {"category": 1}), Candidate(11, 0.5, {"category": 2})], exhausted=False
    )
    r2 = NeighbourResult.from_candidates(
        2, [Candidate(11, 0.8, {"category": 2}), Candidate(12, 0.1, {"category": 3})], exhausted=False
    )
    merged = merge_candidates([r1, r2], k=2)
    assert merged == [{"item_id": 10, "score": 0.9, "attributes": {"category": 1}, "cold": False},
                      {"item_id": 11, "score": 0.8, "attributes": {"category": 2}, "cold": False}]  # fmt: skip
    assert [c["item_id"] for c in merge_candidates([r1, r2], k=10)] == [10, 11, 12]


def test_query_params_decode_like_starlette() -> None:
    from starlette.datastructures import QueryParams

    raw = b"mode=diversity&k=5&exclude_categories=3%2C7&exclude_recent=&k=9&x=a+b"
    parsed = query_params(raw)
    assert parsed == {
        "mode": "diversity",
        "k": "9",
        "exclude_categories": "3,7",
        "exclude_recent": "",
        "x": "a b",
    }
    assert parsed == dict(QueryParams(raw.decode()))  # the last of a repeated name wins in both
    assert query_params(b"") == {}
    # the split path: empty parts skipped, the first "=" splits, a bare name reads as ""
    assert query_params(b"k=5&&mode=a=b&flag") == {"k": "5", "mode": "a=b", "flag": ""}


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ab=&;+%2Ck_é", max_size=24))
def test_query_params_agree_with_starlette_on_any_query_string(text: str) -> None:
    from starlette.datastructures import QueryParams

    # the split fast path (no % or +) and the parse_qsl path both read what Starlette reads
    assert query_params(text.encode("latin-1")) == dict(QueryParams(text))


def test_parse_retrieval_query() -> None:
    q = parse_retrieval_query(
        {"k": "7", "exclude_categories": "1, 2,3,", "exclude_recent": "TRUE"}, default_k=5, max_k=10
    )
    assert q == RetrievalQuery("general", 7, (1, 2, 3), True, ())
    q = parse_retrieval_query({"mode": "diversity", "recent_items": "4,5"}, default_k=5, max_k=10)
    assert (q.mode, q.k, q.exclude_recent, q.recent_items) == ("diversity", 5, False, (4, 5))


@pytest.mark.parametrize(
    ("params", "allowed"),
    [
        ({"mode": "x"}, {"mode": ["general", "diversity"]}),
        ({"k": "0"}, {"k": {"ge": 1, "le": 10}}),
        ({"k": "11"}, {"k": {"ge": 1, "le": 10}}),
        ({"k": "1.5"}, {"k": {"ge": 1, "le": 10}}),
        ({"exclude_categories": "1,a"}, {"exclude_categories": "comma-separated integers"}),
        ({"recent_items": "x"}, {"recent_items": "comma-separated integers"}),
        ({"exclude_recent": "maybe"}, {"exclude_recent": ["true", "false"]}),
    ],
)
def test_bad_query_names_field_and_allowed(params: dict[str, str], allowed: object) -> None:
    with pytest.raises(ApiError) as err:
        parse_retrieval_query(params, default_k=5, max_k=10)
    assert err.value.status == 422 and err.value.allowed == allowed
    assert f"query.{next(iter(params))}" in err.value.detail
