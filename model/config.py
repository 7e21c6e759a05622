"""Typed, frozen configs of M2GRL training and of the shared trainer, validated at construction.

Every validation error is a :class:`ConfigError` (a ``ValueError``) whose message starts with the name
of the bad field, e.g. ``"window: must be >= 1, got 0"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Weighting = Literal["adaptive", "bounded", "uniform", "static"]
Device = Literal["auto", "cpu", "cuda"]
SparseOptimizer = Literal["lazy_adam", "row_adagrad"]
LrSchedule = Literal["constant", "linear"]

WEIGHTINGS: tuple[str, ...] = ("adaptive", "bounded", "uniform", "static")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
SPARSE_OPTIMIZERS: tuple[str, ...] = ("lazy_adam", "row_adagrad")
LR_SCHEDULES: tuple[str, ...] = ("constant", "linear")


class ConfigError(ValueError):
    """A config field has an invalid value; ``field`` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


def _positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(name, f"must be an int >= {minimum}, got {value!r}")


def _positive_float(name: str, value: Any, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(name, f"must be a finite number {bound}, got {value!r}")


def _choice(name: str, value: Any, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(name, f"unknown value {value!r}; valid: {', '.join(valid)}")


@dataclass(frozen=True)
class TrainerConfig:
    """Optimisation settings of the shared loop (:func:`model.trainer.train`).

    Attributes:
        lr: learning rate of the dense Adam, and of the row-sparse optimiser unless ``sparse_lr`` is set
            (paper A.3: Adam, 0.01).
        sparse_lr: learning rate of the row-sparse optimiser of the embedding tables; ``None`` = ``lr``.
        lr_schedule: "constant" (the paper states none) or "linear": from ``lr`` at the first step down
            to ``min_lr`` at the last, as word2vec and gensim decay theirs. The sparse rate follows the
            same factor (from ``sparse_lr`` down to ``sparse_lr * min_lr / lr``).
        min_lr: the last step's learning rate under "linear" (gensim's ``min_alpha``: 1e-4).
        grad_clip: global gradient L2 norm above which gradients are rescaled (paper A.3: 1); 0 disables.
        epochs: passes over the data (paper A.3: 10).
        seed: seeds torch and the batch functions; a run is reproducible for a fixed seed and world size.
        device: "cpu", "cuda" or "auto" (CUDA when available).
        threads: torch intra-op threads; ``None`` = every core.
        sparse_optimizer: row-sparse optimiser of embedding tables, "lazy_adam" or "row_adagrad".
        weight_decay: L2 decay of the dense parameters (Adam); embedding tables are never decayed.
        sync_every: under torchrun, average embedding tables across ranks every this many steps
            (dense parameters have their gradients all-reduced every step).
    """

    lr: float = 0.01
    sparse_lr: float | None = None
    lr_schedule: LrSchedule = "constant"
    min_lr: float = 1e-4
    grad_clip: float = 1.0
    epochs: int = 10
    seed: int = 0
    device: Device = "auto"
    threads: int | None = None
    sparse_optimizer: SparseOptimizer = "lazy_adam"
    weight_decay: float = 0.0
    sync_every: int = 1

    def __post_init__(self) -> None:
        _positive_float("lr", self.lr)
        if self.sparse_lr is not None:
            _positive_float("sparse_lr", self.sparse_lr)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _positive_float("min_lr", self.min_lr, allow_zero=True)
        if self.min_lr > self.lr:
            raise ConfigError("min_lr", f"must not exceed lr {self.lr}, got {self.min_lr}")
        _positive_float("grad_clip", self.grad_clip, allow_zero=True)
        _positive_int("epochs", self.epochs)
        _positive_int("seed", self.seed, minimum=0)
        _choice("device", self.device, DEVICES)
        if self.threads is not None:
            _positive_int("threads", self.threads)
        _choice("sparse_optimizer", self.sparse_optimizer, SPARSE_OPTIMIZERS)
        _positive_float("weight_decay", self.weight_decay, allow_zero=True)
        _positive_int("sync_every", self.sync_every)

    @property
    def table_lr(self) -> float:
        """Learning rate of the row-sparse optimiser (``sparse_lr``, else ``lr``)."""
        return self.lr if self.sparse_lr is None else self.sparse_lr


@dataclass(frozen=True)
class M2GRLConfig:
    """Hyper-parameters of M2GRL (sections 3.3-3.5, 5.3 and appendix A.3 of the paper).

    Attributes:
        dim: embedding dimension of every view. The paper does not state it for M2GRL; its baselines
            (DeepWalk, LINE, YouTube-DNN) use 64, so we do too.
        window: skip-gram window c of equation 1 (paper: 9).
        dynamic_window: draw each centre's effective window uniformly in ``1..window`` as word2vec and
            gensim do (closer contexts weigh more, half the pairs); ``False`` uses every pair within c.
        negatives: k negatives per positive in equations 3 and 4 (paper A.3: 10).
        neg_power: exponent of the unigram noise distribution P_n (word2vec: 0.75).
        shared_negatives: size S of the negative pool drawn once per batch and shared by all its
            skip-gram positives (the authors' TF demo shares negatives across a batch). Each positive is
            scored against all S and the negative term is scaled by k/S, an unbiased estimate of the k
            negatives of equation 3. The alignment tasks always draw k negatives per positive (a shared
            pool scored lower on the MovieLens validation split: reports/tuning.md, section shared_negatives).
        relation_dim: rows of each alignment matrix W (eq. 4); ``None`` = ``dim`` (the paper does not
            state it). Smaller values raise the validation HitRate@50 of the instance view only because
            the alignment then stops being learned, i.e. M2GRL degrades to one view: rejected
            (reports/tuning.md, section relation_dim).
        weighting: task weighting strategy, "adaptive" (eq. 10), "bounded", "uniform" or "static".
            Adaptive settles at sigma^2 ~ L_t, a weight ~ 1 / L_t, so the easy alignment task outweighs
            the item task; "bounded" is adaptive with every other task's weight capped at
            ``max_weight_ratio`` times the item task's. Validation figures: reports/quality-research.md.
        max_weight_ratio: the cap of "bounded".
        norm_exponent: the general mode serves ``e / |e|^a`` by inner product, so a trigger ranks
            candidates by ``e_t . e_j / |e_j|^a``: 0 is the paper's raw inner product (long, frequent rows
            win), 1 is cosine (the norm, which grows with a row's training signal, is ignored). Read by
            the index builder and the harness from the model's manifest (missing: 0).
        align_item_grad: let the alignment's gradient reach the item-view rows (the paper). ``False``
            (default) trains ``W``, ``b`` and the side-view rows only: the item space stays the item
            view's own and the side views are aligned into it, so the multi-view model ranks warm items
            as its single view does while its side views are trained into that space.
        static_weights: task name -> weight for "static"; tasks not listed use the paper's rule
            (section 5.3): 0.05 for the instance-view intra task, 1 for every other task.
        min_sigma2: floor of sigma^2 (section 5.3: 0.05, i.e. a weight of at most 20).
        init_log_sigma2: starting log sigma^2 of every task (0: weight 1).
        views: views to train (first = instance view); ``None`` = every view of the dataset.
        relations: relations to align as ``(item_view, other_view)``; ``None`` = every relation of the
            dataset whose two views are trained.
        walks: also train on the augmentation random walks of each view's graph when the dataset has
            them (``m2grl prepare`` with ``walks_per_node`` > 0; none by default); session sequences only
            otherwise.
        batch_size: positive skip-gram pairs of the instance view per step (paper A.3: 2048). Every other
            task is cut into the same number of steps per epoch, so each task sees its data once an epoch.
        lr_schedule: "constant" (the paper's) or "linear" (decay from lr to min_lr over the run). Linear
            helps long runs on large vocabularies and costs short ones, hence opt-in (validation and
            benchmark figures: reports/tuning.md, section lr_schedule).
        sparse_optimizer: row-sparse optimiser of the embedding tables. "row_adagrad" (default): one
            Adagrad accumulator per row, so a row's step shrinks with its own gradient history (frequent
            rows settle, rare rows keep large steps) and keeps the gradient's direction; lazy Adam's
            first step of a row is lr * sign(g) per coordinate whatever the gradient. Chosen on both
            validation splits and the synthetic logs: reports/tuning.md, section sparse_optimizer.
        sparse_lr: learning rate of the row-sparse optimiser (0.05 for row_adagrad; 0.1 scored lower:
            reports/tuning.md, section sparse_lr); ``None`` = ``lr``. The dense parameters (alignment
            matrices, log sigma^2) keep Adam at ``lr``.
        lr, min_lr, grad_clip, epochs, seed, device, threads, sync_every: see TrainerConfig.
    """

    dim: int = 64
    window: int = 9
    dynamic_window: bool = True
    negatives: int = 10
    neg_power: float = 0.75
    shared_negatives: int = 64
    relation_dim: int | None = None
    weighting: Weighting = "adaptive"
    max_weight_ratio: float = 0.1
    norm_exponent: float = 1.0
    align_item_grad: bool = False
    static_weights: Mapping[str, float] = field(default_factory=dict)
    min_sigma2: float = 0.05
    init_log_sigma2: float = 0.0
    views: tuple[str, ...] | None = None
    relations: tuple[tuple[str, str], ...] | None = None
    walks: bool = True
    batch_size: int = 2048
    lr: float = 0.01
    sparse_lr: float | None = 0.05
    lr_schedule: LrSchedule = "constant"
    min_lr: float = 1e-4
    grad_clip: float = 1.0
    epochs: int = 10
    seed: int = 0
    device: Device = "auto"
    threads: int | None = None
    sparse_optimizer: SparseOptimizer = "row_adagrad"
    sync_every: int = 1

    def __post_init__(self) -> None:
        _positive_int("dim", self.dim)
        if not isinstance(self.walks, bool):
            raise ConfigError("walks", f"must be a bool, got {self.walks!r}")
        _positive_int("window", self.window)
        if not isinstance(self.dynamic_window, bool):
            raise ConfigError("dynamic_window", f"must be a bool, got {self.dynamic_window!r}")
        _positive_int("negatives", self.negatives)
        _positive_float("neg_power", self.neg_power, allow_zero=True)
        _positive_int("shared_negatives", self.shared_negatives)
        if self.relation_dim is not None:
            _positive_int("relation_dim", self.relation_dim)
        _choice("weighting", self.weighting, WEIGHTINGS)
        _positive_float("max_weight_ratio", self.max_weight_ratio)
        _positive_float("norm_exponent", self.norm_exponent, allow_zero=True)
        if self.norm_exponent > 1:
            raise ConfigError("norm_exponent", f"must be in [0, 1], got {self.norm_exponent!r}")
        if not isinstance(self.align_item_grad, bool):
            raise ConfigError("align_item_grad", f"must be a bool, got {self.align_item_grad!r}")
        if not isinstance(self.static_weights, Mapping):
            raise ConfigError(
                "static_weights", f"must be a mapping task -> weight, got {self.static_weights!r}"
            )
        for task, weight in self.static_weights.items():
            _positive_float(f"static_weights[{task!r}]", weight)
        _positive_float("min_sigma2", self.min_sigma2)
        if not isinstance(self.init_log_sigma2, int | float) or not math.isfinite(self.init_log_sigma2):
            raise ConfigError("init_log_sigma2", f"must be a finite number, got {self.init_log_sigma2!r}")
        if math.exp(self.init_log_sigma2) < self.min_sigma2:
            raise ConfigError(
                "init_log_sigma2", f"exp({self.init_log_sigma2}) is below min_sigma2={self.min_sigma2}"
            )
        if self.views is not None:
            if not self.views or not all(isinstance(v, str) and v for v in self.views):
                raise ConfigError("views", f"must be a non-empty tuple of view names, got {self.views!r}")
            if len(set(self.views)) != len(self.views):
                raise ConfigError("views", f"has duplicates: {self.views!r}")
        if self.relations is not None:
            for i, rel in enumerate(self.relations):
                if len(rel) != 2 or not all(isinstance(v, str) and v for v in rel) or rel[0] == rel[1]:
                    raise ConfigError(
                        f"relations[{i}]", f"must be a pair of two different view names, got {rel!r}"
                    )
                if self.views is not None and not set(rel) <= set(self.views):
                    raise ConfigError(f"relations[{i}]", f"{rel!r} uses a view not in views={self.views!r}")
        _positive_int("batch_size", self.batch_size)
        # The optimisation fields are validated once, by the trainer config they describe.
        self.trainer()

    @property
    def rel_dim(self) -> int:
        """Rows of every alignment matrix W."""
        return self.dim if self.relation_dim is None else self.relation_dim

    def trainer(self) -> TrainerConfig:
        """The shared-loop settings carried by this config."""
        return TrainerConfig(
            lr=self.lr,
            sparse_lr=self.sparse_lr,
            lr_schedule=self.lr_schedule,
            min_lr=self.min_lr,
            grad_clip=self.grad_clip,
            epochs=self.epochs,
            seed=self.seed,
            device=self.device,
            threads=self.threads,
            sparse_optimizer=self.sparse_optimizer,
            sync_every=self.sync_every,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view of the config (for manifests and checkpoints)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, Mapping):
                value = dict(value)
            elif isinstance(value, tuple):
                value = [list(v) if isinstance(v, tuple) else v for v in value]
            out[name] = value
        return out
