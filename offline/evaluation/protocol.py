"""The evaluation protocol: test users, triggers, ground truth, and running a retriever.

- Full-catalogue item-to-item retrieval: the catalogue is the dataset's item vocabulary (train items).
- Test user: has at least one catalogue item in train and at least one event in the test split (with
  ``exclude_seen``: at least one test item they did not interact with in train).
- Trigger: the user's last train item (``n_triggers = m``: the last ``m`` distinct items, whose candidate
  lists are merged by score, the best score of an item winning).
- Ground truth ``G_u``: the distinct items of the user's test period (cold items included: a retriever
  that cannot return them is rightly penalised). Option ``exclude_seen`` drops the user's train items
  from both the candidates and the ground truth.
- Discovery: the user's *recent categories* are the categories of their train events in the last
  ``recent_days`` days before their last train event; the discovery ground truth keeps the test items
  whose category is not recent; ``NewCategoryShare@k`` is the share of candidates in non-recent
  categories.

Retrieval goes through the service's code path only (``ServingIndex.batch_neighbours``): this module
never searches neighbours itself, it only merges and filters what the retriever returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from core.types import Float32Array, IntArray
from offline.evaluation import metrics as M
from offline.evaluation.config import ProtocolConfig

SECONDS_PER_DAY = 86_400


class Retriever(Protocol):
    """What the harness needs from ``index.serving.ServingIndex``."""

    def batch_neighbours(self, item_ids: IntArray, mode: str, k: int) -> tuple[IntArray, Float32Array]:
        """Top-``k`` neighbours of each item (trigger excluded): ids int64 ``[n, k]`` ``-1`` padded, scores."""
        ...


def bucket_name(lo: int, hi: int | None) -> str:
    """Metric prefix of a train-frequency bucket: ``"Freq1-2:"``, ``"Freq11+:"``."""
    return f"Freq{lo}+:" if hi is None else f"Freq{lo}-{hi}:"


@dataclass(frozen=True)
class EvalData:
    """Everything the protocol derives from the events, as arrays (one row per test user).

    - ``catalogue``: int64 item ids that can be retrieved (the item vocabulary).
    - ``users``: int64 ``[n]``; ``triggers``: int64 ``[n, m]`` most recent first, ``-1`` padded.
    - CSR sets (``*_indptr`` ``[n + 1]``, values sorted per user): ``truth`` (test items), ``seen``
      (train items), ``recent_cats`` (recent categories), ``new_truth`` (discovery ground truth).
    - ``cat_items``/``cat_values``: item id -> category id lookup (``cat_items`` sorted), -1 unknown.
    - ``truth_train_counts``: train events of each ``truth_items`` entry (0 for an item unseen in train),
      for the long-tail buckets of :func:`score_candidates`.
    """

    catalogue: IntArray
    users: IntArray
    triggers: IntArray
    truth_indptr: IntArray
    truth_items: IntArray
    seen_indptr: IntArray
    seen_items: IntArray
    recent_cats_indptr: IntArray
    recent_cats: IntArray
    new_truth_indptr: IntArray
    new_truth_items: IntArray
    cat_items: IntArray
    cat_values: IntArray
    truth_train_counts: IntArray

    @property
    def n_users(self) -> int:
        return len(self.users)

    def truth_trigger_category_share(self) -> float:
        """Share of ground-truth items (user, item pairs) in the category of the user's latest trigger.

        How category-bound the data is: read it against ``TriggerCategoryShare@k`` (the share of
        *candidates* in that category); a retriever far above it spends its list on category-mates the
        users do not pick. Items of unknown category count as different.
        """
        rows = np.repeat(np.arange(self.n_users), np.diff(self.truth_indptr))
        if len(rows) == 0:
            return 0.0
        trigger_cats = self.categories_of(self.triggers[:, 0])[rows]
        truth_cats = self.categories_of(self.truth_items)
        return float(((truth_cats >= 0) & (truth_cats == trigger_cats)).mean())

    def categories_of(self, items: IntArray) -> IntArray:
        """Category id of each item (any shape), ``-1`` for pads and unknown items."""
        items = np.asarray(items, dtype=np.int64)
        if len(self.cat_items) == 0:
            return np.full(items.shape, -1, dtype=np.int64)
        pos = np.clip(np.searchsorted(self.cat_items, items), 0, len(self.cat_items) - 1)
        found = self.cat_items[pos] == items
        return np.where(found & (items != M.PAD), self.cat_values[pos], -1)


def _csr(user_pos: IntArray, values: IntArray, n_users: int) -> tuple[IntArray, IntArray]:
    """Distinct ``values`` per user as CSR (sorted by user then value)."""
    if len(values) == 0:
        return np.zeros(n_users + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    pairs = np.unique(np.stack([user_pos, values], axis=1), axis=0)
    counts = np.bincount(pairs[:, 0], minlength=n_users)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return indptr, pairs[:, 1].astype(np.int64)


def _filter_csr(indptr: IntArray, values: IntArray, keep: npt.NDArray[np.bool_]) -> tuple[IntArray, IntArray]:
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    counts = np.bincount(rows[keep], minlength=len(indptr) - 1)
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), values[keep]


def build_eval_data(
    events: pd.DataFrame,
    catalogue: IntArray,
    *,
    category_column: str | None,
    config: ProtocolConfig,
) -> EvalData:
    """Derive test users, triggers, ground truths and recent categories from canonical events.

    Args:
        events: columns ``user_id, item_id, timestamp, split`` (+ ``category_column`` when given).
        catalogue: int64 retrievable item ids (the item vocabulary).
        category_column: column holding the item's category (``None``: no discovery metrics).
    Returns:
        :class:`EvalData`; raises ``ValueError`` when no user qualifies.
    """
    missing = {"user_id", "item_id", "timestamp", "split"} - set(events.columns)
    if category_column is not None:
        missing |= {category_column} - set(events.columns)
    if missing:
        raise ValueError(f"events lack columns {sorted(missing)}")
    catalogue = np.asarray(catalogue, dtype=np.int64)
    cats = category_column is not None
    cols = ["user_id", "item_id", "timestamp", "split"] + ([category_column] if cats else [])
    ev = events[cols].copy()
    ev["category"] = ev[category_column].fillna(-1).astype(np.int64) if cats else np.int64(-1)
    train = ev[ev["split"] == "train"]
    test = ev[ev["split"] == "test"]
    if config.exclude_seen:
        # Before choosing the users: one whose test items were all seen in train has no ground truth left
        # (and would make Recall undefined), so they are no test user under this option.
        seen_pairs = train[["user_id", "item_id"]].drop_duplicates()
        flag = test[["user_id", "item_id"]].merge(seen_pairs, how="left", indicator=True)["_merge"]
        test = test[(flag == "left_only").to_numpy()]
    known = train[np.isin(train["item_id"].to_numpy(), catalogue)]

    users = np.intersect1d(known["user_id"].unique(), test["user_id"].unique()).astype(np.int64)
    if len(users) == 0:
        unseen = " (an unseen one, with exclude_seen)" if config.exclude_seen else ""
        raise ValueError(
            f"no test user: nobody has both a catalogue item in train and an event{unseen} in test"
        )
    n = len(users)

    # Triggers: the last m distinct catalogue items, most recent first (ties broken by row order).
    known = known[np.isin(known["user_id"].to_numpy(), users)]
    order = known.sort_values(["user_id", "timestamp"], kind="stable")
    last = order.drop_duplicates(["user_id", "item_id"], keep="last")
    last = last.iloc[::-1].sort_values("user_id", kind="stable")
    rank = last.groupby("user_id").cumcount().to_numpy()
    take = rank < config.n_triggers
    upos = np.searchsorted(users, last["user_id"].to_numpy()[take])
    triggers = np.full((n, config.n_triggers), M.PAD, dtype=np.int64)
    triggers[upos, rank[take]] = last["item_id"].to_numpy()[take]

    tr_u = train[np.isin(train["user_id"].to_numpy(), users)]
    tr_pos = np.searchsorted(users, tr_u["user_id"].to_numpy())
    seen_indptr, seen_items = _csr(tr_pos, tr_u["item_id"].to_numpy(np.int64), n)

    te_u = test[np.isin(test["user_id"].to_numpy(), users)]
    te_pos = np.searchsorted(users, te_u["user_id"].to_numpy())
    truth_indptr, truth_items = _csr(te_pos, te_u["item_id"].to_numpy(np.int64), n)
    counted_items, item_counts = np.unique(train["item_id"].to_numpy(np.int64), return_counts=True)
    truth_train_counts = np.zeros(len(truth_items), dtype=np.int64)
    if len(counted_items):
        at = np.clip(np.searchsorted(counted_items, truth_items), 0, len(counted_items) - 1)
        found = counted_items[at] == truth_items
        truth_train_counts[found] = item_counts[at[found]]

    # Item -> category lookup over every event (test items may be cold, so not in the vocabulary).
    item_cat = ev.loc[ev["category"] >= 0, ["item_id", "category"]].drop_duplicates("item_id")
    item_cat = item_cat.sort_values("item_id")
    cat_items = item_cat["item_id"].to_numpy(np.int64)
    cat_values = item_cat["category"].to_numpy(np.int64)

    last_ts = tr_u.groupby("user_id")["timestamp"].max().reindex(users).to_numpy()
    window = config.recent_days * SECONDS_PER_DAY
    ts = tr_u["timestamp"].to_numpy()
    recent_rows = (ts >= last_ts[tr_pos] - window) & (tr_u["category"].to_numpy() >= 0)
    recent_indptr, recent_cats = _csr(tr_pos[recent_rows], tr_u["category"].to_numpy()[recent_rows], n)

    data = EvalData(
        catalogue=catalogue,
        users=users,
        triggers=triggers,
        truth_indptr=truth_indptr,
        truth_items=truth_items,
        seen_indptr=seen_indptr,
        seen_items=seen_items,
        recent_cats_indptr=recent_indptr,
        recent_cats=recent_cats,
        new_truth_indptr=np.zeros(n + 1, dtype=np.int64),
        new_truth_items=np.zeros(0, dtype=np.int64),
        cat_items=cat_items,
        cat_values=cat_values,
        truth_train_counts=truth_train_counts,
    )
    truth_cats = data.categories_of(truth_items)
    is_recent = M.row_isin(truth_cats[:, None], *_row_view(truth_indptr, recent_indptr, recent_cats))[:, 0]
    new_indptr, new_items = _filter_csr(truth_indptr, truth_items, (truth_cats >= 0) & ~is_recent)
    return EvalData(**{**data.__dict__, "new_truth_indptr": new_indptr, "new_truth_items": new_items})


def restrict_truth(data: EvalData, keep: npt.NDArray[np.bool_]) -> tuple[EvalData, IntArray]:
    """The protocol on part of the ground truth: ``keep`` (bool, one per ``data.truth_items`` entry, e.g.
    the cold items: ``data.truth_train_counts == 0``) filters each user's ground truth (and discovery
    ground truth), and only the users left with some stay. Returns the restricted data and the rows of
    ``data`` its users came from, so one retrieval over ``data`` is scored on several parts
    (``candidates[rows]``)."""
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != data.truth_items.shape:
        raise ValueError(
            f"keep must have one entry per ground-truth item ({len(data.truth_items)}), got {keep.shape}"
        )
    truth_indptr, truth_items = _filter_csr(data.truth_indptr, data.truth_items, keep)
    counts = data.truth_train_counts[keep]
    rows = np.flatnonzero(np.diff(truth_indptr) > 0).astype(np.int64)
    kept_new = M.row_isin(
        data.new_truth_items[:, None], *_row_view(data.new_truth_indptr, truth_indptr, truth_items)
    )[:, 0]
    new_indptr, new_items = _filter_csr(data.new_truth_indptr, data.new_truth_items, kept_new)

    def sub(indptr: IntArray, values: IntArray) -> tuple[IntArray, IntArray]:
        return _subset_csr(indptr, values, rows)

    t_indptr, t_items = sub(truth_indptr, truth_items)
    seen_indptr, seen_items = sub(data.seen_indptr, data.seen_items)
    recent_indptr, recent_cats = sub(data.recent_cats_indptr, data.recent_cats)
    n_indptr, n_items = sub(new_indptr, new_items)
    restricted = EvalData(
        catalogue=data.catalogue,
        users=data.users[rows],
        triggers=data.triggers[rows],
        truth_indptr=t_indptr,
        truth_items=t_items,
        seen_indptr=seen_indptr,
        seen_items=seen_items,
        recent_cats_indptr=recent_indptr,
        recent_cats=recent_cats,
        new_truth_indptr=n_indptr,
        new_truth_items=n_items,
        cat_items=data.cat_items,
        cat_values=data.cat_values,
        truth_train_counts=sub(truth_indptr, counts)[1],
    )
    return restricted, rows


def _row_view(
    value_indptr: IntArray, set_indptr: IntArray, set_values: IntArray
) -> tuple[IntArray, IntArray]:
    """Re-index per-user sets so each *value row* (one per CSR entry of ``value_indptr``) has its user's set.

    Lets :func:`metrics.row_isin` test one column of flattened CSR values against per-user sets.
    """
    rows = np.repeat(np.arange(len(value_indptr) - 1), np.diff(value_indptr))
    sizes = np.diff(set_indptr)[rows]
    indptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    starts = set_indptr[rows]
    offsets = np.arange(indptr[-1]) - np.repeat(indptr[:-1], sizes)
    return indptr, set_values[np.repeat(starts, sizes) + offsets]


def merge_by_score(ids: IntArray, scores: Float32Array, k: int) -> tuple[IntArray, Float32Array]:
    """Merge candidate lists per row: drop pads and duplicate ids (best score kept), top ``k`` by score.

    Args:
        ids: int64 ``[n, c]`` ``-1`` padded; scores: ``[n, c]`` (higher is closer).
    Returns:
        ids int64 ``[n, k]`` and float32 scores ``[n, k]``, best first, ``-1``/``-inf`` padded.
    """
    n, c = ids.shape
    rows = np.repeat(np.arange(n), c)
    flat_ids, flat_scores = ids.ravel(), scores.ravel().astype(np.float64)
    real = flat_ids != M.PAD
    rows, flat_ids, flat_scores = rows[real], flat_ids[real], flat_scores[real]
    order = np.lexsort((-flat_scores, flat_ids, rows))
    rows, flat_ids, flat_scores = rows[order], flat_ids[order], flat_scores[order]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = (rows[1:] != rows[:-1]) | (flat_ids[1:] != flat_ids[:-1])
    rows, flat_ids, flat_scores = rows[first], flat_ids[first], flat_scores[first]
    order = np.lexsort((flat_ids, -flat_scores, rows))
    rows, flat_ids, flat_scores = rows[order], flat_ids[order], flat_scores[order]
    starts = np.searchsorted(rows, np.arange(n))
    rank = np.arange(len(rows)) - starts[rows]
    keep = rank < k
    out_ids = np.full((n, k), M.PAD, dtype=np.int64)
    out_scores = np.full((n, k), -np.inf, dtype=np.float32)
    out_ids[rows[keep], rank[keep]] = flat_ids[keep]
    out_scores[rows[keep], rank[keep]] = flat_scores[keep]
    return out_ids, out_scores


def compact(
    ids: IntArray, scores: Float32Array, keep: npt.NDArray[np.bool_], k: int
) -> tuple[IntArray, Float32Array]:
    """Keep the ``keep`` entries of each row in their order, left-aligned, first ``k``, ``-1`` padded."""
    keep = keep & (ids != M.PAD)
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    out_ids = np.take_along_axis(ids, order, axis=1)
    out_scores = np.take_along_axis(scores, order, axis=1).astype(np.float32)
    kept = np.take_along_axis(keep, order, axis=1)
    out_ids = np.where(kept, out_ids, M.PAD)
    out_scores = np.where(kept, out_scores, -np.inf).astype(np.float32)
    if out_ids.shape[1] < k:
        pad = k - out_ids.shape[1]
        out_ids = np.pad(out_ids, ((0, 0), (0, pad)), constant_values=M.PAD)
        out_scores = np.pad(out_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return out_ids, out_scores


def _query(
    retriever: Retriever, triggers: IntArray, mode: str, k: int, block: int
) -> tuple[IntArray, Float32Array]:
    """Ask the retriever for each user's triggers (blocks of rows) and merge the lists by score."""
    n, m = triggers.shape
    flat = triggers.ravel()
    valid = flat != M.PAD
    ids = np.full((n * m, k), M.PAD, dtype=np.int64)
    scores = np.full((n * m, k), -np.inf, dtype=np.float32)
    where = np.flatnonzero(valid)
    for start in range(0, len(where), block):
        sel = where[start : start + block]
        got_ids, got_scores = retriever.batch_neighbours(flat[sel], mode, k)
        width = min(k, got_ids.shape[1])
        ids[sel, :width] = got_ids[:, :width]
        scores[sel, :width] = got_scores[:, :width]
    ids, scores = ids.reshape(n, m * k), scores.reshape(n, m * k)
    if m == 1:
        return ids, scores
    return merge_by_score(ids, scores, k)


def retrieve(
    retriever: Retriever,
    data: EvalData,
    mode: str,
    config: ProtocolConfig,
    *,
    exclude_trigger_category: bool = False,
    exclude_recent_categories: bool = False,
) -> tuple[IntArray, Float32Array]:
    """Top-``max_k`` candidates per test user after the requested exclusions.

    Exclusions are filters on what the retriever returned; when they leave a row short the rows are
    re-queried with a doubled ``k`` (up to the catalogue size), so only a few rounds run, never a
    loop over users.
    """
    k = config.max_k
    any_filter = config.exclude_seen or exclude_trigger_category or exclude_recent_categories
    limit = max(len(data.catalogue) - 1, 1)
    fetch = min(limit, 2 * k if any_filter else k)
    out_ids = np.full((data.n_users, k), M.PAD, dtype=np.int64)
    out_scores = np.full((data.n_users, k), -np.inf, dtype=np.float32)
    todo = np.arange(data.n_users)
    trig_cats = data.categories_of(data.triggers)
    while len(todo):
        ids, scores = _query(retriever, data.triggers[todo], mode, fetch, config.block_size)
        keep = ids != M.PAD
        if config.exclude_seen:
            ip, vals = _subset_csr(data.seen_indptr, data.seen_items, todo)
            keep &= ~M.row_isin(ids, ip, vals)
        if exclude_trigger_category or exclude_recent_categories:
            cand_cats = data.categories_of(ids)
            if exclude_trigger_category:
                t = trig_cats[todo]
                t_indptr = np.arange(0, t.size + 1, t.shape[1], dtype=np.int64)
                keep &= ~M.row_isin(cand_cats, t_indptr, t.ravel())
            if exclude_recent_categories:
                ip, vals = _subset_csr(data.recent_cats_indptr, data.recent_cats, todo)
                keep &= ~M.row_isin(cand_cats, ip, vals)
        got_ids, got_scores = compact(ids, scores, keep, k)
        out_ids[todo], out_scores[todo] = got_ids, got_scores
        short = (got_ids[:, -1] == M.PAD) & (ids[:, -1] != M.PAD)
        if not any_filter or fetch >= limit or not short.any():
            break
        todo, fetch = todo[short], min(limit, fetch * 2)
    return out_ids, out_scores


def _subset_csr(indptr: IntArray, values: IntArray, rows: IntArray) -> tuple[IntArray, IntArray]:
    sizes = np.diff(indptr)[rows]
    new_indptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    offsets = np.arange(new_indptr[-1]) - np.repeat(new_indptr[:-1], sizes)
    return new_indptr, values[np.repeat(indptr[rows], sizes) + offsets]


def score_candidates(data: EvalData, candidates: IntArray, config: ProtocolConfig) -> dict[str, float]:
    """All metrics of the protocol for ``[n_users, max_k]`` candidates (see :mod:`metrics`).

    Accuracy metrics over every test user; ``New*`` metrics (discovery) over the users whose
    discovery ground truth is non-empty; ``NewCategoryShare@k`` and ``TriggerCategoryShare@k`` (share of
    candidates in the category of the user's latest trigger, to read against
    :meth:`EvalData.truth_trigger_category_share`) over every test user.
    """
    out = M.accuracy_metrics(
        candidates, data.truth_indptr, data.truth_items, config.ks, catalogue_size=len(data.catalogue)
    )
    has_new = np.diff(data.new_truth_indptr) > 0
    if has_new.any():
        ip, vals = _subset_csr(data.new_truth_indptr, data.new_truth_items, np.flatnonzero(has_new))
        out |= M.accuracy_metrics(
            candidates[has_new], ip, vals, config.ks, catalogue_size=len(data.catalogue), prefix="New"
        )
    cand_cats = data.categories_of(candidates)
    recent = M.row_isin(cand_cats, data.recent_cats_indptr, data.recent_cats)
    new_cat = (cand_cats >= 0) & ~recent
    trigger_cats = data.categories_of(data.triggers[:, 0])
    same_cat = (cand_cats >= 0) & (cand_cats == trigger_cats[:, None])
    for k in config.ks:
        out[f"NewCategoryShare@{k}"] = M.candidate_share_at_k(new_cat, candidates, k)
        out[f"TriggerCategoryShare@{k}"] = M.candidate_share_at_k(same_cat, candidates, k)
    out |= _bucket_metrics(data, candidates, config)
    out["users"] = float(data.n_users)
    out["discovery_users"] = float(has_new.sum())
    return out


def per_user_scores(data: EvalData, candidates: IntArray, k: int) -> dict[str, npt.NDArray[np.float64]]:
    """``HitRate@k`` and ``Recall@k`` of each test user (float ``[n_users]``, users in ``data`` order): what
    :func:`score_candidates` averages, kept apart to pair two methods user by user."""
    hits = M.hit_matrix(candidates, data.truth_indptr, data.truth_items)
    hit, recall = M.per_user_at_k(hits, M.truth_sizes(data.truth_indptr), k)
    return {f"HitRate@{k}": hit, f"Recall@{k}": recall}


def _bucket_metrics(data: EvalData, candidates: IntArray, config: ProtocolConfig) -> dict[str, float]:
    """HitRate and Recall per train-frequency bucket of the ground truth (the long tail).

    Each bucket keeps the ground-truth items whose train count is in its range, and scores the users
    left with at least one; ``<bucket>users`` says how many, so a reader can weigh the figure.
    """
    out: dict[str, float] = {}
    counts = data.truth_train_counts
    for lo, hi in config.freq_buckets:
        inside = (counts >= lo) & (counts <= (hi if hi is not None else np.iinfo(np.int64).max))
        indptr, items = _filter_csr(data.truth_indptr, data.truth_items, inside)
        users = np.flatnonzero(np.diff(indptr) > 0)
        prefix = bucket_name(lo, hi)
        out[f"{prefix}users"] = float(len(users))
        if len(users) == 0:
            continue
        ip, vals = _subset_csr(indptr, items, users)
        hits = M.hit_matrix(candidates[users], ip, vals)
        sizes = M.truth_sizes(ip)
        for k in config.ks:
            out[f"{prefix}HitRate@{k}"] = M.hit_rate_at_k(hits, k)
            out[f"{prefix}Recall@{k}"] = M.recall_at_k(hits, sizes, k)
    return out


def evaluate_retriever(
    data: EvalData,
    retriever: Retriever,
    mode: str,
    config: ProtocolConfig | None = None,
    *,
    exclude_trigger_category: bool = False,
    exclude_recent_categories: bool = False,
) -> dict[str, float]:
    """Run the protocol on one retriever and mode; returns ``{metric name: value}``.

    This is the entry point other engineers use (e.g. diversity mode rows): build ``data`` once with
    :func:`build_eval_data` (or ``job.load_eval_data``) and call this for each retriever / mode.
    """
    config = config or ProtocolConfig()
    ids, _ = retrieve(
        retriever,
        data,
        mode,
        config,
        exclude_trigger_category=exclude_trigger_category,
        exclude_recent_categories=exclude_recent_categories,
    )
    return score_candidates(data, ids, config)
