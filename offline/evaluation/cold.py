"""The cold-item protocol: retrieval over the whole catalogue, scored on the items new to the test period.

Most test items of a sparse log never occur in train (no trained row). The standard protocol retrieves
over the train vocabulary only; this one retrieves over the dataset's catalogue (``core.catalogue``):

- Retrievable items: the warm rows (the item vocabulary, in its order) then the cold rows (catalogue
  items without training behaviour), by *descending* item id: the newest listings first where ids grow
  with listing time (MovieLens movie ids), a fixed order elsewhere. The category baselines break ties by
  row. A category rule gives every cold item of a category the same vector; which of them fill the last
  places of a list is then the index's choice (FAISS keeps the lowest rows of a tie in its top-N map but
  lists them from the highest), so a figure can move by a user or two with the map's ``topn``.
- Users, triggers (the last train item) and ground truth as the standard protocol
  (``offline.evaluation.protocol``); each method's list is retrieved once and scored three times: on
  the cold part of each user's ground truth (items with no train occurrence: users with at least one),
  on the warm part, and on all of it; ``ColdShare@k`` says how much of the lists went to cold items
  (a rule that floods the lists with them wins cold hits and loses warm ones).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from core.catalogue import Catalogue
from core.types import IdArray
from offline.evaluation import metrics as M
from offline.evaluation.config import ProtocolConfig
from offline.evaluation.protocol import EvalData, restrict_truth, score_candidates

#: The parts of the ground truth a list is scored on.
PARTS = ("cold", "warm", "all")


@dataclass(frozen=True)
class ColdCatalogue:
    """Rows of the cold protocol's index: ``items`` int64 ``[n]`` (``n_warm`` warm rows in vocabulary
    order, then the cold ones by descending id), ``attributes`` (side view -> int64 ``[n]`` original
    ids, ``-1`` unknown) and ``counts`` (int64 ``[n]`` training events, 0 for a cold row)."""

    items: IdArray
    n_warm: int
    attributes: dict[str, IdArray]
    counts: IdArray

    @property
    def n_cold(self) -> int:
        return len(self.items) - self.n_warm

    def cold_attributes(self) -> dict[str, IdArray]:
        """Side attributes of the cold rows only (view -> int64 ``[n_cold]``)."""
        return {v: a[self.n_warm :] for v, a in self.attributes.items()}


def cold_catalogue(vocab: IdArray, vocab_counts: IdArray, catalogue: Catalogue) -> ColdCatalogue:
    """The protocol's rows from the item vocabulary (``vocab``, ``vocab_counts``) and the dataset's
    catalogue; raises ``ValueError`` when a vocabulary item is missing from the catalogue (a catalogue
    written from another log)."""
    vocab = np.asarray(vocab, dtype=np.int64)
    missing = catalogue.rows_of(vocab) < 0
    if missing.any():
        raise ValueError(
            f"{int(missing.sum())} vocabulary items are not in the catalogue (e.g. {vocab[missing][:3].tolist()}): "
            "the catalogue and the vocabulary come from different logs"
        )
    cold = np.setdiff1d(catalogue.items, vocab)[::-1]
    items = np.concatenate([vocab, cold]).astype(np.int64)
    counts = np.concatenate([np.asarray(vocab_counts, dtype=np.int64), np.zeros(len(cold), dtype=np.int64)])
    attributes = {v: catalogue.attributes_of(v, items) for v in catalogue.views}
    return ColdCatalogue(items, len(vocab), attributes, counts)


def cold_truth(data: EvalData) -> np.ndarray:
    """Per ground-truth entry of ``data``, whether the item has no train occurrence."""
    return np.asarray(data.truth_train_counts == 0)


def score_parts(data: EvalData, candidates: IdArray, config: ProtocolConfig) -> dict[str, dict[str, float]]:
    """The protocol's metrics of ``[n_users, max_k]`` candidates on each part of the ground truth
    (:data:`PARTS`; a part nobody has is left out)."""
    cold = cold_truth(data)
    masks: Mapping[str, np.ndarray] = {"cold": cold, "warm": ~cold, "all": np.ones_like(cold)}
    out: dict[str, dict[str, float]] = {}
    for part in PARTS:
        sub, rows = restrict_truth(data, masks[part])
        if sub.n_users:
            out[part] = score_candidates(sub, candidates[rows], config)
    return out


def cold_share(candidates: IdArray, cold_items: IdArray, ks: tuple[int, ...]) -> dict[str, float]:
    """``ColdShare@k``: the share of returned (non-pad) top-``k`` candidates that are cold items, pooled
    over users: what a list spends on new items, to read beside the warm part's loss."""
    is_cold = np.isin(candidates, np.asarray(cold_items, dtype=np.int64))
    return {f"ColdShare@{k}": M.candidate_share_at_k(is_cold, candidates, k) for k in ks}
