"""Vectorised pair generation and negative sampling."""

from __future__ import annotations

import numpy as np
import pytest

from model.pairs import (
    UnigramSampler,
    count_pairs,
    select_sequences,
    shard_sequences,
    skipgram_pairs,
    split_even,
    validate_sequences,
)

INDPTR = np.array([0, 3, 4, 6], dtype=np.int64)
TOKENS = np.array([10, 11, 12, 13, 14, 15], dtype=np.int32)  # sequences [10 11 12] [13] [14 15]


def _as_set(c: np.ndarray, x: np.ndarray) -> set[tuple[int, int]]:
    return set(zip(c.tolist(), x.tolist(), strict=True))


def test_full_window_pairs_stay_inside_sequences() -> None:
    c, x = skipgram_pairs(INDPTR, TOKENS, window=2)
    expected = {(10, 11), (11, 10), (11, 12), (12, 11), (10, 12), (12, 10), (14, 15), (15, 14)}
    assert _as_set(c, x) == expected and len(c) == len(expected)
    assert count_pairs(INDPTR, 2) == len(expected)


def test_window_one_keeps_neighbours_only() -> None:
    c, x = skipgram_pairs(INDPTR, TOKENS, window=1)
    assert _as_set(c, x) == {(10, 11), (11, 10), (11, 12), (12, 11), (14, 15), (15, 14)}


def test_dynamic_window_is_a_subset_and_matches_expected_count() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 30, size=300)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = rng.integers(0, 1000, size=indptr[-1]).astype(np.int32)
    full = _as_set(*skipgram_pairs(indptr, tokens, window=5))
    c, x = skipgram_pairs(indptr, tokens, window=5, rng=rng, dynamic=True)
    assert _as_set(c, x) <= full
    assert len(c) == pytest.approx(count_pairs(indptr, 5, dynamic=True), rel=0.05)


def test_select_and_shard_sequences() -> None:
    indptr, tokens = select_sequences(INDPTR, TOKENS, np.array([2, 0]))
    assert indptr.tolist() == [0, 2, 5] and tokens.tolist() == [14, 15, 10, 11, 12]
    ip0, t0 = shard_sequences(INDPTR, TOKENS, 0, 2)
    ip1, t1 = shard_sequences(INDPTR, TOKENS, 1, 2)
    assert t0.tolist() == [10, 11, 12, 14, 15] and t1.tolist() == [13]
    assert ip0.tolist() == [0, 3, 5] and ip1.tolist() == [0, 1]


def test_validate_sequences_names_the_problem() -> None:
    with pytest.raises(ValueError, match="outside the vocabulary"):
        validate_sequences(INDPTR, TOKENS, vocab_size=12)
    with pytest.raises(ValueError, match="end at len"):
        validate_sequences(np.array([0, 2]), TOKENS, vocab_size=100)


def test_unigram_sampler_follows_counts_power_and_skips_zero_counts() -> None:
    sampler = UnigramSampler(np.array([16, 0, 1]), power=0.5)  # weights 4, 0, 1
    draws = sampler.sample(np.random.default_rng(0), 50_000)
    assert not np.any(draws == 1)
    assert np.mean(draws == 0) == pytest.approx(0.8, abs=0.01)
    with pytest.raises(ValueError, match="all zero"):
        UnigramSampler(np.zeros(3))


def test_split_even() -> None:
    assert split_even(10, 3).tolist() == [0, 3, 6, 10]
