"""A small two-view M2GRL input (item sequences, their categories, the item -> category link)."""

from __future__ import annotations

import numpy as np

from model.batches import M2GRLInputs


def toy_inputs(sequences: int = 60, items: int = 30, categories: int = 5) -> M2GRLInputs:
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 12, size=sequences)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = rng.integers(0, items, size=indptr[-1]).astype(np.int32)
    link = np.arange(items) % categories
    cats = link[tokens].astype(np.int32)
    return M2GRLInputs(
        {"item": (indptr, tokens), "category": (indptr, cats)},
        {"item": np.bincount(tokens, minlength=items), "category": np.bincount(cats, minlength=categories)},
        {"item-category": link},
        [("item", "category")],
    )


def item_view_alone(inputs: M2GRLInputs) -> M2GRLInputs:
    """The same data with the item view only (no side view, no relation)."""
    return M2GRLInputs({"item": inputs.sequences["item"]}, {"item": inputs.counts["item"]}, {}, [])
