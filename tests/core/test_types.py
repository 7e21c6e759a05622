"""NeighbourResult keeps candidates column-wise; records() and candidates must agree with the columns."""

from __future__ import annotations

import pytest

from core.types import Candidate, NeighbourResult


@pytest.mark.parametrize(
    "attributes",
    [
        {},
        {"category": [7, 8]},
        {"category": [7, 8], "shop": [1, 2]},
        {"category": [7, 8], "shop": [1, 2], "brand": [5, 6]},
    ],
)
def test_records_and_candidates_for_any_number_of_views(attributes: dict[str, list[int]]) -> None:
    result = NeighbourResult(3, [10, 11], [0.5, 0.25], attributes, exhausted=False)
    expected = [
        {
            "item_id": 10,
            "score": 0.5,
            "attributes": {v: col[0] for v, col in attributes.items()},
            "cold": False,
        },
        {
            "item_id": 11,
            "score": 0.25,
            "attributes": {v: col[1] for v, col in attributes.items()},
            "cold": False,
        },
    ]
    assert result.records() == expected
    assert result.candidates == [Candidate(r["item_id"], r["score"], r["attributes"]) for r in expected]
    assert len(result) == 2


def test_records_carry_the_cold_flag_with_and_without_channels() -> None:
    plain = NeighbourResult(3, [10, 11], [0.5, 0.25], {}, exhausted=False, cold=[False, True])
    assert [r["cold"] for r in plain.records()] == [False, True]
    merged = NeighbourResult(
        3, [10, 11], [0.5, 0.25], {}, exhausted=False, channels=[["m2grl"]] * 2, cold=[True, False]
    )
    assert [(r["cold"], r["channels"]) for r in merged.records()] == [(True, ["m2grl"]), (False, ["m2grl"])]


def test_from_candidates_round_trips() -> None:
    cands = [Candidate(10, 0.5, {"category": 7, "shop": 1}), Candidate(11, 0.25, {"category": 8, "shop": 2})]
    result = NeighbourResult.from_candidates(3, cands, exhausted=True, filtered_out=4)
    assert result.candidates == cands
    assert result.attributes == {"category": [7, 8], "shop": [1, 2]}
    assert result.exhausted and result.filtered_out == 4
    empty = NeighbourResult.from_candidates(3, [], exhausted=True)
    assert empty.records() == [] and len(empty) == 0
