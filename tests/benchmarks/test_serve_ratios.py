"""The serving benchmark's ratios: each service row against the bare endpoint of its own round."""

from __future__ import annotations

import pytest

from benchmarks.serve import Result, print_ratios, vs_bare


def row(target: str, workers: int, rps: float, rnd: int, rate: str = "max") -> Result:
    return Result(
        target, workers, "general" if target != "bare FastAPI" else "-", rate, rps, 1.0, 2.0, 0, rnd
    )


def test_each_row_is_compared_with_the_reference_of_its_round(capsys: pytest.CaptureFixture[str]) -> None:
    results = [
        row("bare FastAPI", 2, 10_000, 0),
        row("movielens", 2, 7_000, 0),
        row("movielens", 2, 1_000, 0, rate="1000/s"),  # a fixed-rate row has no ratio
        row("bare FastAPI", 2, 8_000, 1),
        row("movielens", 2, 6_000, 1),
        row("bare FastAPI", 2, 12_000, 2),
        row("movielens", 2, 9_000, 2),
        row("movielens", 1, 5_000, 0),  # no reference for 1 worker in this run: no ratio
    ]
    ratios = vs_bare(results)
    assert ratios == {0: 1.0, 1: 0.7, 3: 1.0, 4: 0.75, 5: 1.0, 6: 0.75}
    print_ratios(results)
    line = capsys.readouterr().out.strip().splitlines()[-1].split()
    # median of 70%, 75%, 75%
    assert line[:4] == ["movielens", "2", "general", "75%"] and line[4:] == ["70%", "75%", "75%"]
