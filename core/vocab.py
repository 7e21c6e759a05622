"""Vocabulary rows: the one id -> row lookup of the project (a vocabulary is an int64 array of ids
whose position is the row, ``core.layout``); prepare, training jobs, cold placement and evaluation all
map ids through it."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Int64Array = npt.NDArray[np.int64]


def lookup(ids: Int64Array, vocab: Int64Array) -> Int64Array:
    """Vocabulary row of every id, ``-1`` when absent (sorted search, no Python loop)."""
    if len(vocab) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    lo, hi = int(vocab.min()), int(vocab.max())
    if hi - lo < max(8 * len(vocab), len(ids), 1 << 20) and len(vocab) < (1 << 31):
        # Dense ids (the usual case): one gather through an int32 table (at most 4 bytes per id looked
        # up, or per 1/8 vocabulary row) instead of a binary search per id.
        table = np.full(hi - lo + 1, -1, dtype=np.int32)
        # Reversed so that a repeated id maps to its first row, as the binary search below does.
        table[vocab[::-1] - lo] = np.arange(len(vocab) - 1, -1, -1, dtype=np.int32)
        offsets = np.asarray(ids, dtype=np.int64) - lo
        inside = (offsets >= 0) & (offsets <= hi - lo)
        if inside.all():  # the usual case; skips two temporaries as large as ``ids``
            return table[offsets].astype(np.int64)
        offsets[~inside] = 0
        rows = table[offsets]
        rows[~inside] = -1
        return rows.astype(np.int64)
    order = np.argsort(vocab, kind="stable")
    sorted_vocab = vocab[order]
    pos = np.minimum(np.searchsorted(sorted_vocab, ids), len(vocab) - 1)
    return np.where(sorted_vocab[pos] == ids, order[pos], -1).astype(np.int64)
