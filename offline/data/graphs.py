"""Multi-view graphs (section 3.1 "graph construction"): runs, edges, vocabularies and link tables.

For every view, a session's events (train split, view value known, in time order) are turned into
*runs*: consecutive events with the same value of that view collapse into one node (so the item,
category and shop graphs differ, figure 1). Consecutive runs ``a -> b`` give a directed edge; a
self-loop cannot survive the collapse and is filtered anyway. Edge weight is the number of transitions
(``edge_weighting="count"``) or the sum of the behaviour weights of the destination runs, a run weighing
the largest weight among its events (``"behavior"``: buy > cart > fav > view, multi-behaviour).

Runs and edges are numpy. The runs are cut from the prepared events file (:func:`session_runs`), which
the job writes sorted by user and time, with sessions and splits: the file gives a view's train rows in
session order in one sequential read, where the engine would need a window or an aggregate followed by
an ``ORDER BY``. Edges are counted from the sequences (vocabulary rows, :func:`sequence_edges`): one sort
of an int64 key per transition, already in CSR order. The engine keeps what it does best here, the
vocabulary counts and the link tables (hash aggregates).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from core.vocab import lookup
from offline.data.config import PrepareConfig

Int64Array = npt.NDArray[np.int64]


def weight_levels(config: PrepareConfig) -> npt.NDArray[np.float64] | None:
    """The edge weights a run can carry, ascending and distinct (None with ``edge_weighting == "count"``).

    Runs carry the *level* (:func:`behavior_levels`), an index into these: a small integer is cheaper to
    carry and reduce than a float, and the largest level is the largest weight. 1.0 is always a level:
    it weighs a behaviour without a weight, which the config's validation rules out for kept behaviours.
    """
    if config.edge_weighting == "count":
        return None
    return np.unique(np.array([1.0, *map(float, config.behavior_weights.values())], dtype=np.float64))


def behavior_levels(config: PrepareConfig, levels: npt.NDArray[np.float64]) -> dict[str, int]:
    """Each kept behaviour's index of its weight in ``levels`` (:func:`weight_levels`), its *level*."""
    index = {float(w): i for i, w in enumerate(levels)}
    return {b: index[float(config.behavior_weights.get(b, 1.0))] for b in config.behaviors}


def view_counts(events: ir.Table, column: str) -> ir.Table:
    """Train event counts per id of one view: ``id, count``."""
    train = events.filter((events.split == "train") & events[column].notnull())
    return train.group_by(id=train[column]).aggregate(count=train.count())


def item_value_counts(events: ir.Table, columns: Sequence[str]) -> ir.Table:
    """Events per item and combination of values of ``columns``: ``item_id, <columns>, n``. One scan of
    the events serves :func:`item_values` of every column (there are about as many combinations as
    items, so a cached result is small)."""
    return events.group_by(["item_id", *columns]).aggregate(n=events.count())


def item_values(counts: ir.Table, column: str) -> ir.Table:
    """Each item's value in another view, from :func:`item_value_counts`: ``item_id, value, n_values``
    (most frequent; ties: smallest).

    ``n_values > 1`` flags items seen with several values (adapters already resolve them; this keeps the
    link table well defined for inputs that did not go through an adapter).
    """
    known = counts.filter(counts[column].notnull())
    pairs = known.group_by(item_id=known.item_id, value=known[column]).aggregate(n=known.n.sum())
    ranked = pairs.mutate(
        _rank=ibis.row_number().over(group_by=pairs.item_id, order_by=[ibis.desc(pairs.n), pairs.value]),
        n_values=pairs.count().over(group_by=pairs.item_id),
    )
    return ranked.filter(ranked._rank == 0).select("item_id", "value", "n_values")


# ------------------------------------------------------------------------------------------------- numpy


def sort_vocab(ids: Int64Array, counts: Int64Array) -> tuple[Int64Array, Int64Array]:
    """Vocabulary order: descending count, ties by ascending id (core.layout convention)."""
    order = np.lexsort((ids, -counts))
    return ids[order].astype(np.int64), counts[order].astype(np.int64)


@dataclass(frozen=True)
class Edges:
    """A view's directed edges, one per distinct ``(src, dst)``, in CSR order (source vocabulary row, then
    destination row): ``src_rows``/``dst_rows`` (int64), ``weight`` (float64), ``count`` (int64,
    transitions). :meth:`to_arrow` adds the original ids."""

    src_rows: Int64Array
    dst_rows: Int64Array
    weight: npt.NDArray[np.float64]
    count: Int64Array

    def to_arrow(self, vocab: Int64Array) -> pa.Table:
        """The edge table of a dataset folder: ``src, dst`` (original ids of ``vocab``), ``weight, count``."""
        return pa.table(
            {
                "src": vocab[self.src_rows],
                "dst": vocab[self.dst_rows],
                "weight": self.weight,
                "count": self.count,
            }
        )

    def to_csr(self, n_nodes: int) -> tuple[Int64Array, npt.NDArray[np.int32], npt.NDArray[np.float32]]:
        """CSR ``(indptr int64 [n+1], indices int32, weights float32)``: rows are sources, and within a row
        destinations come ascending (samplers binary-search them)."""
        indptr = np.zeros(n_nodes + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.src_rows, minlength=n_nodes), out=indptr[1:])
        return indptr, self.dst_rows.astype(np.int32), self.weight.astype(np.float32)


def session_runs(
    session: Int64Array, node: Int64Array, level: npt.NDArray[np.int8] | None = None
) -> tuple[Int64Array, Int64Array, npt.NDArray[np.int8] | None]:
    """The runs of one view's train rows (those with a known value), given in session order, whole
    sessions: per session its number of runs, then each run's node and level (the largest level of its
    rows, with behaviour weighting). A run starts at a session's first row and wherever the value changes.
    """
    if len(node) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, None if level is None else level[:0]
    new_session = np.empty(len(node), dtype=bool)
    new_session[0] = True
    np.not_equal(session[1:], session[:-1], out=new_session[1:])
    starts = new_session.copy()
    starts[1:] |= node[1:] != node[:-1]
    run_starts = np.flatnonzero(starts)
    per_session = np.diff(np.r_[np.flatnonzero(new_session[run_starts]), len(run_starts)])
    levels = None if level is None else np.maximum.reduceat(level, run_starts)
    return per_session.astype(np.int64), node[run_starts], levels


def sequence_edges(
    indptr: Int64Array,
    tokens: npt.NDArray[np.integer[Any]],
    n_nodes: int,
    levels: npt.NDArray[np.integer[Any]] | None = None,
    level_weights: npt.NDArray[np.float64] | None = None,
) -> Edges:
    """Edges between consecutive tokens of the same sequence (ragged ``indptr``/``tokens``, rows of a
    vocabulary of ``n_nodes``), self-loops dropped.

    ``levels`` (one per token, with ``level_weights``): the weight of a transition is
    ``level_weights[levels[dst token]]``, and an edge's weight is the sum over its transitions, added up
    per level (``count of level l * weight l``, levels ascending): the same float on every engine and
    in every run. Without ``levels`` the weight is the count. One sort of an int64 key per transition.
    """
    if levels is not None and (level_weights is None or len(levels) != len(tokens)):
        raise ValueError("sequence_edges: levels need one entry per token, and level_weights")
    # The level goes in the key's low bits (shifts and masks are cheaper than division by the count).
    shift = 0 if level_weights is None or levels is None else max(1, (len(level_weights) - 1).bit_length())
    if n_nodes * n_nodes << shift >= 2**62:  # pragma: no cover - the key would overflow
        raise ValueError(f"sequence_edges: a vocabulary of {n_nodes} rows is too large for one int64 key")
    # Transition i links tokens i and i + 1: not across a sequence start, and never a self-loop.
    keep = tokens[:-1] != tokens[1:]
    inner = indptr[1:-1]
    keep[inner[(inner > 0) & (inner < len(tokens))] - 1] = False
    # Temporaries are few and written in place: on a large view, mapping new pages costs more than the
    # arithmetic.
    key = np.multiply(tokens[:-1][keep], n_nodes, dtype=np.int64)
    key += tokens[1:][keep]
    if shift:
        assert levels is not None
        key <<= shift
        key |= levels[1:][keep]
    del keep
    if len(key) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Edges(empty, empty, np.zeros(0, dtype=np.float64), empty)
    key.sort()
    change = np.empty(len(key), dtype=bool)
    change[0] = True
    np.not_equal(key[1:], key[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    per_key = np.empty(len(starts), dtype=np.int64)  # np.diff(starts, append=...) would copy starts
    np.subtract(starts[1:], starts[:-1], out=per_key[:-1])
    per_key[-1] = len(key) - starts[-1]
    if not shift:
        pair, count, weight = key[starts], per_key, per_key.astype(np.float64)
    else:
        assert level_weights is not None
        key = key[starts]
        pair = key >> shift
        change = change[: len(pair)]
        np.not_equal(pair[1:], pair[:-1], out=change[1:])
        starts = np.flatnonzero(change)
        count = np.add.reduceat(per_key, starts)
        # Within an edge its keys come by ascending level: a fixed order of the float additions.
        key &= (1 << shift) - 1
        per_level = per_key * np.asarray(level_weights, dtype=np.float64)[key]
        weight = np.add.reduceat(per_level, starts)
        pair = pair[starts]
    src, dst = np.divmod(pair, max(n_nodes, 1))
    return Edges(src, dst, weight, count)


def link_tables(
    item_vocab: Int64Array, items: Int64Array, values: Int64Array, view_vocab: Int64Array
) -> tuple[Int64Array, Int64Array]:
    """Per item-vocabulary row: the original id in the view (``attributes``) and its row in the view
    vocabulary (``links``), both ``-1`` when unknown. ``items``/``values`` is the item -> value map."""
    rows = lookup(item_vocab, items)
    known = rows >= 0
    attributes = np.where(known, values[np.maximum(rows, 0)], -1).astype(np.int64)
    links = np.where(known, lookup(attributes, view_vocab), -1).astype(np.int64)
    return attributes, links
