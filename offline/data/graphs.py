"""Multi-view graphs (section 3.1 "graph construction"): runs, edges, vocabularies and link tables.

For every view, a session's events (train split, view value known, in time order) are turned into
*runs*: consecutive events with the same value of that view collapse into one node (so the item,
category and shop graphs differ, figure 1). Consecutive runs ``a -> b`` give a directed edge; a
self-loop cannot survive the collapse and is filtered anyway. Edge weight is the number of transitions
(``edge_weighting="count"``) or the sum of the behaviour weights of the destination runs, a run weighing
the largest weight among its events (``"behavior"``: buy > cart > fav > view, multi-behaviour).

Runs are Ibis expressions (any backend). Edges are counted in numpy from the sequences (vocabulary rows,
:func:`sequence_edges`): the job fetches the runs in order for the sequences anyway, and one sort of an
int64 key per transition, already in CSR order, costs less than a group-by in the engine followed by
fetching, looking up and re-sorting every edge. Vocabulary order, lookups and CSR are numpy too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from core.vocab import lookup
from offline.data.config import PrepareConfig
from offline.data.sessions import ragged_from_sorted, run_column

Int64Array = npt.NDArray[np.int64]


def weight_levels(config: PrepareConfig) -> npt.NDArray[np.float64] | None:
    """The edge weights a run can carry, ascending and distinct (None with ``edge_weighting == "count"``).

    Runs carry the *level* (:func:`behavior_level`), an index into these: a small integer is cheaper to
    aggregate and fetch than a float, and the largest level is the largest weight. 1.0 is always a level:
    it weighs a behaviour without a weight, which the config's validation rules out for kept behaviours.
    """
    if config.edge_weighting == "count":
        return None
    return np.unique(np.array([1.0, *map(float, config.behavior_weights.values())], dtype=np.float64))


def behavior_level(
    events: ir.Table, config: PrepareConfig, levels: npt.NDArray[np.float64]
) -> ir.IntegerValue:
    """Per-event index of its behaviour's weight in ``levels`` (:func:`weight_levels`)."""
    index = {float(w): i for i, w in enumerate(levels)}
    cases = [(events.behavior == b, index[float(w)]) for b, w in sorted(config.behavior_weights.items())]
    return ibis.cases(*cases, else_=index[1.0]).cast("int8")


def _train_nodes(events: ir.Table, column: str, config: PrepareConfig, **extra: str) -> ir.Table:
    """Train events with a known ``column``: ``session, node``, ``level`` (behaviour weighting) and the
    columns ``extra`` names, under their new names."""
    train = events.filter((events.split == "train") & events[column].notnull())
    levels = weight_levels(config)
    level = {} if levels is None else {"level": behavior_level(train, config, levels)}
    return train.select(
        session=train.session, node=train[column], **level, **{k: train[c] for k, c in extra.items()}
    )


def _run_aggregates(table: ir.Table) -> dict[str, ir.Value]:
    out: dict[str, ir.Value] = {"node": table.node.max()}
    if "level" in table.columns:
        out["level"] = table.level.max()
    return out


def view_runs(events: ir.Table, column: str, config: PrepareConfig) -> ir.Table:
    """Train runs of one view: ``session, run (1-based), node`` and, with behaviour weighting, ``level``
    (the largest :func:`behavior_level` among the run's events); see the module docstring.

    ``events`` need ``session``, ``pos`` and ``split`` (from sessions and splits).
    """
    train = _train_nodes(events, column, config, pos="pos")
    w = ibis.window(group_by=train.session, order_by=train.pos)
    prev = train.node.lag().over(w)
    flagged = train.mutate(_new=(prev.isnull() | (prev != train.node)).cast("int64"))
    cum = ibis.cumulative_window(group_by=flagged.session, order_by=flagged.pos)
    numbered = flagged.mutate(run=flagged._new.sum().over(cum))
    return numbered.group_by(["session", "run"]).aggregate(**_run_aggregates(numbered))


def presorted_runs(events: ir.Table, column: str, config: PrepareConfig) -> ir.Table:
    """:func:`view_runs` from the run columns of ``offline.data.sessions.sessionise``: a hash aggregate,
    no window.

    ``run`` numbers the runs in the user's history rather than the session: same order, other values.
    """
    train = _train_nodes(events, column, config, run=run_column(column))
    return train.group_by(["session", "run"]).aggregate(**_run_aggregates(train))


def view_counts(events: ir.Table, column: str) -> ir.Table:
    """Train event counts per id of one view: ``id, count``."""
    train = events.filter((events.split == "train") & events[column].notnull())
    return train.group_by(id=train[column]).aggregate(count=train.count())


def item_values(events: ir.Table, column: str) -> ir.Table:
    """Each item's value in another view: ``item_id, value, n_values`` (most frequent; ties: smallest).

    ``n_values > 1`` flags items seen with several values (adapters already resolve them; this keeps the
    link table well defined for inputs that did not go through an adapter).
    """
    known = events.filter(events[column].notnull())
    pairs = known.group_by(item_id=known.item_id, value=known[column]).aggregate(n=known.count())
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
    key = tokens[:-1][keep].astype(np.int64)
    key *= n_nodes
    key += tokens[1:][keep]
    if shift:
        assert levels is not None
        key <<= shift
        key |= levels[1:][keep]
    key.sort()
    bounds = ragged_from_sorted(key)
    per_key = np.diff(bounds)
    key = key[bounds[:-1]]
    if not shift:
        pair, count, weight = key, per_key, per_key.astype(np.float64)
    else:
        assert level_weights is not None
        pair = key >> shift
        starts = ragged_from_sorted(pair)[:-1]
        pair = pair[starts]
        empty = len(starts) == 0
        count = per_key if empty else np.add.reduceat(per_key, starts)
        # Within an edge its keys come by ascending level: a fixed order of the float additions.
        per_level = per_key * np.asarray(level_weights, dtype=np.float64)[key & ((1 << shift) - 1)]
        weight = per_level if empty else np.add.reduceat(per_level, starts)
    return Edges(pair // max(n_nodes, 1), pair % max(n_nodes, 1), weight, count)


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
