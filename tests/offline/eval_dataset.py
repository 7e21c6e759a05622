"""A tiny synthetic dataset folder in the ``core.layout.DatasetLayout`` format, plus an exact test retriever.

Items 100..123 form 4 categories of 6 (category = (item - 100) // 6). Each user browses one category in
train and then the same category in test, so co-occurrence methods should find the test items.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from core.layout import DatasetLayout
from offline.baselines.base import ItemModel


def write_tiny_dataset(root: Path, *, n_users: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        cat = u % 4
        items = 100 + cat * 6 + rng.permutation(6)
        for t, item in enumerate(items):
            rows.append((u, int(item), t * 3600, "view", cat, u, "train" if t < 4 else "test"))
    ev = pd.DataFrame(
        rows, columns=["user_id", "item_id", "timestamp", "behavior", "category_id", "session", "split"]
    )
    layout = DatasetLayout(root)
    for sub in ("vocab", "sequences", "graphs", "attributes", "links"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ev.to_parquet(layout.events)
    train = ev[ev["split"] == "train"]
    counts = train["item_id"].value_counts()
    order = sorted(counts.index, key=lambda i: (-counts[i], i))
    vocab = np.array(order, dtype=np.int64)
    np.save(layout.vocab("item"), vocab)
    np.save(layout.vocab_counts("item"), counts[vocab].to_numpy(np.int64))
    cats = np.arange(4, dtype=np.int64)
    np.save(layout.vocab("category"), cats)
    np.save(layout.vocab_counts("category"), np.ones(4, dtype=np.int64))
    row_of = {int(i): r for r, i in enumerate(vocab)}
    seqs = [np.array([row_of[i] for i in g["item_id"]], dtype=np.int32) for _, g in train.groupby("user_id")]
    indptr = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
    np.savez(layout.sequences("item"), indptr=indptr, tokens=np.concatenate(seqs))
    src = np.concatenate([s[:-1] for s in seqs])
    dst = np.concatenate([s[1:] for s in seqs])
    adj: dict[int, list[int]] = {}
    for a, b in zip(src.tolist(), dst.tolist(), strict=True):
        adj.setdefault(a, []).append(b)
    g_indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
    g_ind: list[int] = []
    for r in range(len(vocab)):
        nb = sorted(set(adj.get(r, [])))
        g_ind += nb
        g_indptr[r + 1] = len(g_ind)
    np.savez(
        layout.graph("item"),
        indptr=g_indptr,
        indices=np.array(g_ind, dtype=np.int32),
        weights=np.ones(len(g_ind), dtype=np.float32),
    )
    item_cat = (vocab - 100) // 6
    np.save(layout.attributes("category"), item_cat)
    np.save(layout.link("item", "category"), item_cat)
    manifest = {
        "name": "tiny",
        "views": ["item", "category"],
        "relations": [["item", "category"]],  # as prepare writes them
        "target": "test",
    }
    layout.manifest.write_text(json.dumps(manifest))
    return root


class ExactRetriever:
    """Test double for ``ServingIndex``: exact search over a model's vectors or its top-N map."""

    def __init__(self, items: np.ndarray, model: ItemModel) -> None:
        self.items = items
        self.row = {int(i): r for r, i in enumerate(items.tolist())}
        if model.topn_ids is not None and model.topn_scores is not None:
            self.ids, self.scores = model.topn_ids.astype(np.int64), model.topn_scores
        else:
            v = np.asarray(model.vectors, dtype=np.float64)
            if model.metric == "cosine":
                v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
            sims = v @ v.T
            np.fill_diagonal(sims, -np.inf)
            self.ids = np.argsort(-sims, axis=1, kind="stable")
            self.scores = np.take_along_axis(sims, self.ids, axis=1).astype(np.float32)

    def batch_neighbours(self, item_ids: np.ndarray, mode: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        rows = np.array([self.row[int(i)] for i in item_ids])
        ids, scores = self.ids[rows], self.scores[rows]
        keep = ids != rows[:, None]
        out_ids = np.full((len(rows), k), -1, dtype=np.int64)
        out_sc = np.full((len(rows), k), -np.inf, dtype=np.float32)
        for r in range(len(rows)):
            got = ids[r][keep[r] & (ids[r] >= 0)][:k]
            out_ids[r, : len(got)] = self.items[got]
            out_sc[r, : len(got)] = scores[r][keep[r] & (ids[r] >= 0)][:k]
        return out_ids, out_sc


def exact_factory(items, attributes, model, topn):  # type: ignore[no-untyped-def]
    return ExactRetriever(items, model)
