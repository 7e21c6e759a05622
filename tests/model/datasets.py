"""Writers of small dataset folders in the ``core.layout.DatasetLayout`` format (only what training reads:
manifest, vocab + counts, sequences, links, attributes), from item sequences and an item -> category map;
and the neighbour check of the trained vectors (``same_category_rate`` against ``random_rate``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from core.layout import DatasetLayout
from core.types import IntArray


def _vocab(ids: IntArray) -> tuple[IntArray, IntArray, IntArray]:
    """Vocabulary sorted by descending count (ties by id), its counts, and each id's row."""
    values, counts = np.unique(ids, return_counts=True)
    order = np.lexsort((values, -counts))
    vocab, counts = values[order], counts[order]
    rows = np.empty(len(vocab), dtype=np.int64)
    rows[order] = np.arange(len(vocab))
    return vocab, counts, rows[np.searchsorted(values, ids)]


def _collapse(seq_ids: IntArray, tokens: IntArray) -> tuple[IntArray, IntArray]:
    """Drop consecutive duplicates inside each sequence; return ``(indptr, tokens)``."""
    keep = np.ones(len(tokens), dtype=bool)
    keep[1:] = (tokens[1:] != tokens[:-1]) | (seq_ids[1:] != seq_ids[:-1])
    seq_ids, tokens = seq_ids[keep], tokens[keep]
    _, lengths = np.unique(seq_ids, return_counts=True)
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), tokens


def write_dataset(
    root: Path, seq_ids: IntArray, item_ids: IntArray, item_category: dict[int, int] | pd.Series
) -> Path:
    """Write a two-view (item, category) dataset folder.

    Args:
        root: folder to create.
        seq_ids: ``[n]`` sequence number of every event (events of a sequence are contiguous, in order).
        item_ids: ``[n]`` original item id of every event.
        item_category: original item id -> original category id.
    """
    layout = DatasetLayout(root)
    for sub in ("vocab", "sequences", "attributes", "links"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    cat_of = pd.Series(item_category)
    item_vocab, item_counts, item_rows = _vocab(item_ids)
    cat_ids = cat_of.loc[item_ids].to_numpy(np.int64)
    cat_vocab, cat_counts, cat_rows = _vocab(cat_ids)
    np.save(layout.vocab("item"), item_vocab)
    np.save(layout.vocab_counts("item"), item_counts)
    np.save(layout.vocab("category"), cat_vocab)
    np.save(layout.vocab_counts("category"), cat_counts)
    for view, rows in (("item", item_rows), ("category", cat_rows)):
        indptr, tokens = _collapse(seq_ids, rows)
        np.savez(layout.sequences(view), indptr=indptr, tokens=tokens.astype(np.int32))
    item_cat = cat_of.loc[item_vocab].to_numpy(np.int64)
    np.save(layout.attributes("category"), item_cat)
    # searchsorted with a sorter returns positions in the sorted order: map them back to vocabulary rows.
    sorter = np.argsort(cat_vocab)
    np.save(layout.link("item", "category"), sorter[np.searchsorted(cat_vocab, item_cat, sorter=sorter)])
    manifest = {"views": ["item", "category"], "relations": [["item", "category"]], "source": "tests"}
    layout.manifest.write_text(json.dumps(manifest))
    return root


def planted_dataset(
    root: Path, *, n_categories: int = 5, items_per_category: int = 20, n_seq: int = 400, seed: int = 0
) -> Path:
    """Items in ``n_categories`` blocks; each sequence browses category c then category c + 1 (mod n),
    8 items in each, so item neighbours share a category and category c neighbours c +- 1."""
    rng = np.random.default_rng(seed)
    start = rng.integers(0, n_categories, size=n_seq)
    first = start[:, None] * items_per_category + rng.integers(0, items_per_category, size=(n_seq, 8))
    second = ((start + 1) % n_categories)[:, None] * items_per_category + rng.integers(
        0, items_per_category, size=(n_seq, 8)
    )
    items = np.concatenate([first, second], axis=1).reshape(-1) + 1000
    seq_ids = np.repeat(np.arange(n_seq), 16)
    all_items = np.arange(n_categories * items_per_category) + 1000
    category = {int(i): int((i - 1000) // items_per_category) + 50 for i in all_items}
    return write_dataset(root, seq_ids, items, category)


def movielens_dataset(root: Path, ml_dir: Path, *, max_len: int = 50) -> Path:
    """MovieLens as in appendix A.1: ratings >= 3, time-ordered per user, sessions cut at ``max_len``
    (the one-year idle split is left out: the sample has few such gaps); category = first genre."""
    ratings = pd.read_csv(ml_dir / "ratings.csv")
    movies = pd.read_csv(ml_dir / "movies.csv")
    ratings = ratings[ratings["rating"] >= 3].sort_values(["userId", "timestamp", "movieId"], kind="stable")
    genre = movies.set_index("movieId")["genres"].str.split("|").str[0]
    genre_id = pd.Series(pd.factorize(genre)[0], index=genre.index)
    position = ratings.groupby("userId").cumcount().to_numpy()
    user_codes = pd.factorize(ratings["userId"])[0]
    seq_ids = user_codes.astype(np.int64) * 10_000 + position // max_len
    _, seq_ids = np.unique(seq_ids, return_inverse=True)
    return write_dataset(root, seq_ids.astype(np.int64), ratings["movieId"].to_numpy(np.int64), genre_id)


def same_category_rate(emb: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Share of each item's k nearest (cosine) neighbours that have its label."""
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    nn = np.argpartition(-sim, k, axis=1)[:, :k]
    return float((labels[nn] == labels[:, None]).mean())


def random_rate(labels: np.ndarray, k: int = 10) -> float:
    """Share of k uniformly drawn items (seed 0) that have each item's label: the chance level."""
    rng = np.random.default_rng(0)
    return float((labels[rng.integers(0, len(labels), (len(labels), k))] == labels[:, None]).mean())
