"""Random walks (DeepWalk, node2vec) and the numpy graph helpers."""

from __future__ import annotations

import numpy as np
import pytest

from core.vocab import lookup
from offline.data.graphs import Edges, link_tables, sequence_edges, sort_vocab
from offline.data.walks import random_walks


def csr(edges: list[tuple[int, int, float]], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of distinct edges given in any order."""
    src, dst, w = (np.array(c) for c in zip(*edges, strict=True))
    order = np.lexsort((dst, src))
    return Edges(src[order], dst[order], w[order].astype(np.float64), np.ones(len(src), np.int64)).to_csr(n)


def test_csr_rows_and_destinations() -> None:
    indptr, indices, weights = csr([(2, 0, 1.0), (0, 2, 5.0), (0, 1, 3.0)], 4)
    assert indptr.tolist() == [0, 2, 2, 3, 3]
    assert indices.tolist() == [1, 2, 0] and weights.tolist() == [3.0, 5.0, 1.0]
    assert indices.dtype == np.int32 and weights.dtype == np.float32


def test_sequence_edges_hand_computed() -> None:
    vocab = np.array([30, 10, 20])  # original ids of rows 0, 1, 2
    # Sequences (ids): [30 10 30 10], [10 20], [20], [20 20 10]; the pairs 10 -> 10 and 20 -> 20 across
    # sequence starts and the self-loop 20 -> 20 inside the last one are not edges.
    indptr = np.array([0, 4, 6, 7, 10])
    tokens = np.array([0, 1, 0, 1, 1, 2, 2, 2, 2, 1], dtype=np.int32)
    levels = np.array([0, 2, 1, 0, 0, 1, 2, 0, 0, 0], dtype=np.int8)
    edges = sequence_edges(indptr, tokens, 3, levels, np.array([1.0, 2.5, 4.0]))
    # CSR order: source row, then destination row.
    assert edges.src_rows.tolist() == [0, 1, 1, 2] and edges.dst_rows.tolist() == [1, 0, 2, 1]
    assert edges.count.tolist() == [2, 1, 1, 1]
    assert edges.weight.tolist() == [5.0, 2.5, 2.5, 1.0]  # 30 -> 10 enters a level-2 run, then a level-0 one
    table = edges.to_arrow(vocab)
    assert table.column_names == ["src", "dst", "weight", "count"]
    assert table.column("src").to_pylist() == [30, 10, 10, 20] and table.column("dst").to_pylist() == [
        10,
        30,
        20,
        10,
    ]
    indptr_csr, indices, weights = edges.to_csr(3)
    assert indptr_csr.tolist() == [0, 1, 3, 4] and indices.tolist() == [1, 0, 2, 1]
    assert weights.tolist() == [5.0, 2.5, 2.5, 1.0]
    by_count = sequence_edges(indptr, tokens, 3)
    assert by_count.count.tolist() == [2, 1, 1, 1] and by_count.weight.tolist() == [2.0, 1.0, 1.0, 1.0]
    empty = sequence_edges(
        np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int32), 3, levels[:0], np.ones(3)
    )
    assert len(empty.count) == 0 and empty.to_csr(3)[0].tolist() == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="one entry per token"):
        sequence_edges(indptr, tokens, 3, levels[:3], np.array([1.0, 2.5, 4.0]))


def test_sequence_edges_match_a_pair_count() -> None:
    rng = np.random.default_rng(7)
    lengths = rng.integers(1, 9, 300)
    indptr = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    tokens = rng.integers(0, 40, int(indptr[-1])).astype(np.int32)
    levels = rng.integers(0, 3, len(tokens)).astype(np.int8)
    level_weights = np.array([1.0, 2.0, 5.0])
    expected: dict[tuple[int, int], list[float]] = {}
    for a, b in zip(indptr[:-1], indptr[1:], strict=True):
        for i in range(a, b - 1):
            if tokens[i] != tokens[i + 1]:
                entry = expected.setdefault((int(tokens[i]), int(tokens[i + 1])), [0, 0.0])
                entry[0] += 1
                entry[1] += level_weights[levels[i + 1]]
    edges = sequence_edges(indptr, tokens, 40, levels, level_weights)
    rows = list(zip(edges.src_rows.tolist(), edges.dst_rows.tolist(), strict=True))
    got = {pair: [c, w] for pair, c, w in zip(rows, edges.count, edges.weight, strict=True)}
    assert got == expected and len(expected) > 100
    assert rows == sorted(expected)


def test_vocab_lookup_and_links() -> None:
    vocab, counts = sort_vocab(np.array([5, 3, 9]), np.array([2, 7, 2]))
    assert vocab.tolist() == [3, 5, 9] and counts.tolist() == [7, 2, 2]
    assert lookup(np.array([9, 4, 3]), vocab).tolist() == [2, -1, 0]
    attributes, links = link_tables(
        np.array([3, 5, 9]), np.array([3, 9]), np.array([70, 80]), np.array([80, 70])
    )
    assert attributes.tolist() == [70, -1, 80] and links.tolist() == [1, -1, 0]


CYCLE = [(0, 1, 1.0), (1, 2, 1.0), (2, 0, 1.0), (1, 0, 1.0), (2, 1, 1.0), (0, 2, 1.0)]


def test_walks_are_seeded_and_follow_edges() -> None:
    g = csr(CYCLE + [(3, 0, 1.0)], 5)  # node 4 has no out-edge: no walk starts there
    a = random_walks(*g, walks_per_node=3, walk_length=6, seed=7)
    b = random_walks(*g, walks_per_node=3, walk_length=6, seed=7)
    c = random_walks(*g, walks_per_node=3, walk_length=6, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])
    indptr, tokens = a
    assert len(indptr) - 1 == 3 * 4 and tokens.dtype == np.int32
    starts = tokens[indptr[:-1]]
    assert starts.tolist() == [0, 1, 2, 3] * 3
    edges = {(s, d) for s, d, _ in CYCLE} | {(3, 0)}
    for i in range(len(indptr) - 1):
        walk = tokens[indptr[i] : indptr[i + 1]].tolist()
        assert len(walk) == 6
        assert all((s, d) in edges for s, d in zip(walk, walk[1:], strict=False))


def test_walk_stops_at_dead_end() -> None:
    indptr, tokens = random_walks(*csr([(0, 1, 1.0), (1, 2, 1.0)], 3), walks_per_node=1, walk_length=5)
    assert indptr.tolist() == [0, 3, 5] and tokens.tolist() == [0, 1, 2, 1, 2]


def test_weighted_transitions() -> None:
    g = csr([(0, 1, 1.0), (0, 2, 3.0), (1, 0, 1.0), (2, 0, 1.0)], 3)
    indptr, tokens = random_walks(*g, walks_per_node=4000, walk_length=2, seed=1)
    second = tokens[indptr[:-1] + 1][tokens[indptr[:-1]] == 0]
    share = float(np.mean(second == 2))
    assert 0.72 < share < 0.78  # expected 3 / 4


def test_node2vec_return_parameter() -> None:
    # On a triangle, after 0 -> 1 the walker returns to 0 or goes to 2 (a neighbour of 0): small p
    # favours returning, large p avoids it; p = q = 1 picks each half of the time.
    g = csr(CYCLE, 3)

    def return_rate(p: float) -> float:
        indptr, tokens = random_walks(*g, walks_per_node=3000, walk_length=3, p=p, q=1.0, seed=3)
        walks = tokens.reshape(-1, 3)
        return float(np.mean(walks[:, 2] == walks[:, 0]))

    low, mid, high = return_rate(0.1), return_rate(1.0), return_rate(10.0)
    assert low > 0.85 and 0.45 < mid < 0.55 and high < 0.15


def test_node2vec_in_out_parameter() -> None:
    # Path-like graph 0 -> 1 -> {0, 2, 3}; 1 -> 2 where 0 -> 2 is an edge (distance 1), 3 is not.
    g = csr([(0, 1, 1.0), (0, 2, 1.0), (1, 0, 1.0), (1, 2, 1.0), (1, 3, 1.0), (2, 1, 1.0), (3, 1, 1.0)], 4)
    indptr, tokens = random_walks(*g, walks_per_node=6000, walk_length=3, p=1.0, q=0.1, seed=5)
    first = tokens[indptr[:-1]]
    walks = tokens.reshape(-1, 3)[(first == 0)]
    walks = walks[walks[:, 1] == 1]
    # alpha: back to 0 -> 1, to 2 -> 1, to 3 -> 1/q = 10: expected share of 3 = 10 / 12.
    assert 0.78 < float(np.mean(walks[:, 2] == 3)) < 0.89


def test_bad_walk_arguments() -> None:
    g = csr(CYCLE, 3)
    with pytest.raises(ValueError, match="p and q"):
        random_walks(*g, walks_per_node=1, walk_length=3, p=0.0)
    assert random_walks(*g, walks_per_node=0, walk_length=3)[0].tolist() == [0]
