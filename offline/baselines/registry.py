"""One registry of baselines: ``name -> fit(data, seed=...) -> ItemModel``; unknown names list the valid ones."""

from __future__ import annotations

from collections.abc import Callable

from offline.baselines.base import ItemModel, TrainData
from offline.baselines.deepwalk import fit_deepwalk, fit_node2vec
from offline.baselines.eges import fit_eges
from offline.baselines.graphsage import fit_graphsage
from offline.baselines.gru4rec import fit_gru4rec
from offline.baselines.itemcf import fit_itemcf
from offline.baselines.line import fit_line
from offline.baselines.popularity import fit_popularity
from offline.baselines.youtube_dnn import fit_youtube_dnn

FitFn = Callable[..., ItemModel]

BASELINES: dict[str, FitFn] = {
    "popularity": fit_popularity,
    "itemcf": fit_itemcf,
    "deepwalk": fit_deepwalk,
    "node2vec": fit_node2vec,
    "line": fit_line,
    "eges": fit_eges,
    "gru4rec": fit_gru4rec,
    "youtube-dnn": fit_youtube_dnn,
    "graphsage": fit_graphsage,
}


class UnknownBaseline(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown baseline {name!r}; valid: {sorted(BASELINES)}")
        self.name = name


def get_baseline(name: str) -> FitFn:
    """The fit function registered under ``name`` (raises :class:`UnknownBaseline` listing valid names)."""
    try:
        return BASELINES[name]
    except KeyError:
        raise UnknownBaseline(name) from None


def fit_baseline(name: str, data: TrainData, *, seed: int) -> ItemModel:
    """Fit the named baseline on the training data with ``seed``."""
    return get_baseline(name)(data, seed=seed)
