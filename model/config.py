"""Typed, frozen configs of M2GRL training, of the section 6.1 metric model and of the shared trainer
(``core.config`` models).

A bad value raises :class:`~core.config.ConfigError` whose message starts with the path of the field,
e.g. ``"window: Input should be greater than or equal to 1, got 0"`` or ``"trainer.lr: ..."``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import Field, model_validator

from core.config import ConfigError, FrozenConfig

__all__ = ["ConfigError", "M2GRLConfig", "MetricConfig", "TrainerConfig"]

Weighting = Literal["adaptive", "bounded", "uniform", "static"]
Device = Literal["auto", "cpu", "cuda"]
SparseOptimizer = Literal["lazy_adam", "row_adagrad"]
LrSchedule = Literal["constant", "linear"]
InstanceInput = Literal["normalized", "raw"]

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
ViewName = Annotated[str, Field(min_length=1)]


class TrainerConfig(FrozenConfig):
    """Optimisation settings of the shared loop (:func:`model.trainer.train`).

    ``lr_schedule="linear"`` decays from ``lr`` at the first step to ``min_lr`` at the last, as word2vec
    and gensim do; the sparse rate follows the same factor (``sparse_lr`` down to ``sparse_lr * min_lr / lr``).
    """

    lr: float = Field(
        0.01, gt=0, allow_inf_nan=False, description="Learning rate of the dense Adam (paper A.3: 0.01)."
    )
    sparse_lr: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="Learning rate of the embedding tables; none = lr."
    )
    lr_schedule: LrSchedule = Field(
        "constant", description="constant, or linear decay to min_lr over the run."
    )
    min_lr: float = Field(1e-4, ge=0, allow_inf_nan=False, description="Last step's rate under linear.")
    grad_clip: float = Field(
        1.0, ge=0, allow_inf_nan=False, description="Global gradient norm clip (paper A.3: 1); 0 disables."
    )
    epochs: int = Field(10, ge=1, description="Passes over the data (paper A.3: 10).")
    seed: int = Field(0, ge=0, description="Seed of torch and the batch functions.")
    device: Device = Field("auto", description="auto, cpu or cuda (auto: CUDA when available).")
    threads: int | None = Field(None, ge=1, description="Torch intra-op threads; none = every core.")
    sparse_optimizer: SparseOptimizer = Field(
        "lazy_adam", description="Row-sparse optimiser of the embedding tables: lazy_adam or row_adagrad."
    )
    weight_decay: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="L2 decay of the dense parameters (tables never)."
    )
    sync_every: int = Field(
        1,
        ge=1,
        description="Under torchrun, average the embedding tables across ranks every this many steps.",
    )

    @model_validator(mode="after")
    def _min_lr_below_lr(self) -> Self:
        if self.min_lr > self.lr:
            raise ConfigError("min_lr", f"must not exceed lr {self.lr}, got {self.min_lr}")
        return self

    @property
    def table_lr(self) -> float:
        """Learning rate of the row-sparse optimiser (``sparse_lr``, else ``lr``)."""
        return self.lr if self.sparse_lr is None else self.sparse_lr


def _m2grl_trainer() -> TrainerConfig:
    # Row-wise Adagrad at 0.05 on the tables, not the paper's Adam: reports/tuning.md, sparse_optimizer.
    return TrainerConfig(sparse_optimizer="row_adagrad", sparse_lr=0.05)


class M2GRLConfig(FrozenConfig):
    """Hyper-parameters of M2GRL (sections 3.3-3.5, 5.3 and appendix A.3 of the paper).

    Why some defaults (figures in reports/tuning.md and reports/quality-research.md):

    - ``dim``: the paper does not state it for M2GRL (its baselines use 64). At 64 the skip-gram tables are
      short of capacity on every log we measured while the baselines are not; 128 gains on all of them,
      larger sizes only on some (``m2grl tune`` searches it).
    - ``shared_negatives``: the authors' TF demo shares negatives across a batch; each positive is scored
      against the pool and the negative term scaled by k/S (an unbiased estimate of eq. 3's k negatives).
      The alignment tasks keep k negatives per positive (a shared pool scored lower).
    - ``relation_dim``: fewer rows only score higher because the alignment stops being learned.
    - ``weighting``: adaptive settles at sigma^2 ~ L_t, so an easy alignment task outweighs the item task;
      "bounded" caps every other task's weight at ``max_weight_ratio`` times the item task's.
    - ``norm_exponent``: the general mode serves ``e / |e|^a``: 0 is the paper's inner product (long,
      frequent rows win), 1 is cosine. Read by the index builder and the harness from the manifest.
    - ``align_item_grad=False``: the alignment trains ``W``, ``b`` and the side-view rows only, so the item
      space stays the item view's own and the side views are aligned into it.
    - ``clip_item_apart``: under one global clip the side views' gradients shrink the item view's steps;
      clipped apart (with ``align_item_grad=False``, adaptive weights and its own random stream), the
      item view trains exactly as it would alone, and the side views are added without moving it.
    - ``trainer``: the shared loop's settings; M2GRL's tables use row-wise Adagrad at 0.05 (a row's step
      shrinks with its own gradient history), the dense parameters Adam at ``lr``.
    """

    dim: int = Field(128, ge=1, description="Embedding dimension of every view.")
    window: int = Field(9, ge=1, description="Skip-gram window c of equation 1 (paper: 9).")
    dynamic_window: bool = Field(
        True,
        description="Draw each centre's window in 1..window as word2vec does (else every pair within c).",
    )
    negatives: int = Field(10, ge=1, description="Negatives per positive k in equations 3 and 4 (paper: 10).")
    neg_power: float = Field(0.75, ge=0, allow_inf_nan=False, description="Exponent of the unigram noise.")
    shared_negatives: int = Field(64, ge=1, description="Negative pool per batch shared by skip-gram pairs.")
    relation_dim: int | None = Field(None, ge=1, description="Rows of each alignment matrix W; none = dim.")
    weighting: Weighting = Field(
        "adaptive", description="Task weighting: adaptive (eq. 10), bounded, uniform or static."
    )
    max_weight_ratio: float = Field(
        0.1,
        gt=0,
        allow_inf_nan=False,
        description="bounded: cap of another task's weight over the item task's.",
    )
    norm_exponent: float = Field(
        1.0, ge=0, le=1, description="Serve e/|e|^a: 0 is the paper's inner product, 1 cosine."
    )
    align_item_grad: bool = Field(
        False, description="Let the alignment's gradient reach the item rows (the paper's setting)."
    )
    clip_item_apart: bool = Field(
        True,
        description="Clip the item view's gradients apart from the other tasks' (paper A.3: one global clip).",
    )
    static_weights: Mapping[str, PositiveFloat] = Field(
        default_factory=dict,
        strict=False,
        description="static: task -> weight; others 0.05 (intra item task) or 1 (section 5.3).",
    )
    min_sigma2: float = Field(
        0.05, gt=0, allow_inf_nan=False, description="Floor of sigma^2 (section 5.3: 0.05, a weight <= 20)."
    )
    init_log_sigma2: float = Field(
        0.0, allow_inf_nan=False, description="Starting log sigma^2 of every task."
    )
    views: tuple[ViewName, ...] | None = Field(
        None, min_length=1, strict=False, description="Views to train, instance view first; none = all."
    )
    relations: tuple[tuple[ViewName, ViewName], ...] | None = Field(
        None, strict=False, description="Relations (item_view, other_view) to align; none = all trained."
    )
    walks: bool = Field(True, description="Also train on the dataset's augmentation random walks, if any.")
    batch_size: int = Field(2048, ge=1, description="Instance-view skip-gram pairs per step (paper: 2048).")
    trainer: TrainerConfig = Field(
        default_factory=_m2grl_trainer, strict=False, description="Settings of the shared training loop."
    )

    @model_validator(mode="before")
    @classmethod
    def _nest_trainer_fields(cls, data: Any) -> Any:
        """Trainer settings given as a partial mapping (a TOML ``[trainer]`` table) or at the top level
        (``M2GRLConfig(epochs=3)``, manifests of models saved before they were nested) apply over
        M2GRL's trainer defaults, not over the plain ``TrainerConfig`` ones."""
        if not isinstance(data, Mapping):
            return data
        values = dict(data)
        flat = {k: values.pop(k) for k in list(values) if k in TrainerConfig.model_fields}
        nested = values.get("trainer")
        if isinstance(nested, Mapping):
            values["trainer"] = _m2grl_trainer().to_dict() | dict(nested) | flat
        elif flat:
            base = nested if isinstance(nested, TrainerConfig) else _m2grl_trainer()
            values["trainer"] = base.to_dict() | flat
        return values

    @model_validator(mode="after")
    def _cross_fields(self) -> Self:
        if math.exp(self.init_log_sigma2) < self.min_sigma2:
            raise ConfigError(
                "init_log_sigma2", f"exp({self.init_log_sigma2}) is below min_sigma2={self.min_sigma2}"
            )
        if self.views is not None and len(set(self.views)) != len(self.views):
            raise ConfigError("views", f"has duplicates: {self.views!r}")
        for i, rel in enumerate(self.relations or ()):
            if rel[0] == rel[1]:
                raise ConfigError(
                    f"relations[{i}]", f"must be a pair of two different view names, got {rel!r}"
                )
            if self.views is not None and not set(rel) <= set(self.views):
                raise ConfigError(f"relations[{i}]", f"{rel!r} uses a view not in views={self.views!r}")
        return self

    @property
    def rel_dim(self) -> int:
        """Rows of every alignment matrix W."""
        return self.dim if self.relation_dim is None else self.relation_dim


class MetricConfig(FrozenConfig):
    """Configuration of the diversity metric job (section 6.1).

    ``instance_input="normalized"`` uses ``e_i / ||e_i||``, so the start geometry (``M_i = s^2 I``) ranks
    neighbours by cosine, the general mode's inner product without its norm (popularity) bias.
    ``init_ic_share``: at the start (``L = s I``) the ic view contributes this share of the median
    random-pair distance, the instance view the rest; the two scales put that median at ``margin``.
    """

    item_view: str = Field("item", min_length=1, description="Instance view (rows of embeddings/<view>.npy).")
    category_view: str = Field(
        "category", min_length=1, description="Category view; e_ic is read from its relational space."
    )
    within_session: bool = Field(
        True, description="Positives between consecutive events of a session (else of a user)."
    )
    dedupe_positives: bool = Field(False, description="Keep each unordered positive pair once.")
    negatives_per_positive: int = Field(4, ge=1, description="Negatives drawn per positive pair.")
    hard_fraction: float = Field(
        0.1, ge=0, le=1, description="Share of negatives from the anchor's category."
    )
    margin: float = Field(1.0, gt=0, allow_inf_nan=False, description="Contrastive margin of equation 12.")
    instance_input: InstanceInput = Field(
        "normalized", description="How e_i enters equation 11: normalized or raw."
    )
    init_ic_share: float = Field(0.5, ge=0, lt=1, description="The ic view's share of the starting distance.")
    rank_i: int | None = Field(None, ge=1, description="Rows of L_i; none = full rank.")
    rank_ic: int | None = Field(None, ge=1, description="Rows of L_ic; none = full rank.")
    epochs: int = Field(5, ge=1, description="Epochs of the shared loop.")
    batch_size: int = Field(1024, ge=1, description="Pairs per step.")
    lr: float = Field(0.001, gt=0, allow_inf_nan=False, description="Adam learning rate.")
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False, description="Adam L2 decay.")
    seed: int = Field(0, ge=0, description="Seed of pairs, negatives and initialisation.")
    max_positives: int | None = Field(None, ge=1, description="Cap on positive pairs (a seeded subsample).")
