"""Multi-view graphs (section 3.1 "graph construction"): runs, edges, vocabularies and link tables.

For every view, a session's events (train split, view value known, in time order) are turned into
*runs*: consecutive events with the same value of that view collapse into one node (so the item,
category and shop graphs differ, figure 1). Consecutive runs ``a -> b`` give a directed edge; a
self-loop cannot survive the collapse and is filtered anyway. Edge weight is the number of transitions
(``edge_weighting="count"``) or the sum of the behaviour weights of the destination runs, a run weighing
the largest weight among its events (``"behavior"``: buy > cart > fav > view, multi-behaviour).

Relational parts are Ibis expressions (any backend); CSR and vocabulary lookups are numpy.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
import numpy as np
import numpy.typing as npt

from core.vocab import lookup
from offline.data.config import PrepareConfig
from offline.data.sessions import run_column, src_column

Int64Array = npt.NDArray[np.int64]


def behavior_weight(events: ir.Table, config: PrepareConfig) -> ir.FloatingValue:
    """Per-event edge weight: the behaviour's weight, or 1 with ``edge_weighting == "count"``."""
    if config.edge_weighting == "count":
        return ibis.literal(1.0)
    cases = [(events.behavior == b, float(w)) for b, w in sorted(config.behavior_weights.items())]
    return ibis.cases(*cases, else_=1.0).cast("float64")


def view_runs(events: ir.Table, column: str, config: PrepareConfig) -> ir.Table:
    """Train runs of one view: ``session, run (1-based), node, weight`` (see module docstring).

    ``events`` need ``session``, ``pos`` and ``split`` (from sessions and splits).
    """
    train = events.filter((events.split == "train") & events[column].notnull())
    train = train.select(
        session=train.session, pos=train.pos, node=train[column], w=behavior_weight(train, config)
    )
    w = ibis.window(group_by=train.session, order_by=train.pos)
    prev = train.node.lag().over(w)
    flagged = train.mutate(_new=(prev.isnull() | (prev != train.node)).cast("int64"))
    cum = ibis.cumulative_window(group_by=flagged.session, order_by=flagged.pos)
    numbered = flagged.mutate(run=flagged._new.sum().over(cum))
    return numbered.group_by(["session", "run"]).aggregate(node=numbered.node.max(), weight=numbered.w.max())


def view_edges(runs: ir.Table) -> ir.Table:
    """Directed weighted edges ``src, dst, weight (float64), count (int64)`` between consecutive runs."""
    w = ibis.window(group_by=runs.session, order_by=runs.run)
    pairs = runs.select(src=runs.node.lag().over(w), dst=runs.node, weight=runs.weight)
    pairs = pairs.filter(pairs.src.notnull() & (pairs.src != pairs.dst))
    return pairs.group_by(["src", "dst"]).aggregate(weight=pairs.weight.sum(), count=pairs.count())


def presorted_runs(events: ir.Table, column: str, config: PrepareConfig) -> ir.Table:
    """:func:`view_runs` from the run columns of ``offline.data.sessions.sessionise``, plus ``src`` (the node
    of the previous run in the session, null on a session's first run): a hash aggregate, no window.

    ``run`` numbers the runs in the user's history rather than the session: same order, other values.
    """
    train = events.filter((events.split == "train") & events[column].notnull())
    train = train.select(
        session=train.session,
        run=train[run_column(column)],
        node=train[column],
        w=behavior_weight(train, config),
        src=train[src_column(column)],
    )
    return train.group_by(["session", "run"]).aggregate(
        node=train.node.max(), weight=train.w.max(), src=train.src.max()
    )


def presorted_edges(runs: ir.Table) -> ir.Table:
    """:func:`view_edges` of :func:`presorted_runs` (their ``src`` already names the previous run)."""
    pairs = runs.filter(runs.src.notnull() & (runs.src != runs.node))
    return pairs.group_by(src=pairs.src, dst=pairs.node).aggregate(
        weight=pairs.weight.sum(), count=pairs.count()
    )


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


def edges_to_csr(
    src: Int64Array, dst: Int64Array, weight: npt.NDArray[np.float64], n_nodes: int
) -> tuple[Int64Array, npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """CSR ``(indptr int64 [n+1], indices int32, weights float32)`` of edges given as vocabulary rows.

    Rows are sources; within a row, destinations are sorted ascending (samplers binary-search them).
    """
    if len(src) and (src.min() < 0 or dst.min() < 0 or max(src.max(), dst.max()) >= n_nodes):
        raise ValueError(f"edges_to_csr: node rows must lie in [0, {n_nodes})")
    if n_nodes < (1 << 31):
        # One int64 key (src * n + dst) sorts like lexsort((dst, src)) (both stable) at half the cost.
        order = np.argsort(src.astype(np.int64) * n_nodes + dst, kind="stable")
    else:  # pragma: no cover - the combined key could overflow
        order = np.lexsort((dst, src))
    indptr = np.zeros(n_nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n_nodes), out=indptr[1:])
    return indptr, dst[order].astype(np.int32), weight[order].astype(np.float32)


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
