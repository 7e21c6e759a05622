"""The one training loop shared by M2GRL, the diversity metric model and the learned baselines.

A model plugs in by being an ``nn.Module`` with a ``loss(batch)`` method (see :class:`Trainable`); data
plugs in as a batch function ``epoch -> iterable of batches``. The loop owns everything else:
device placement, threads, seeding, the optimisers (dense Adam for ``parameters()``, a row-sparse
optimiser for every :class:`~model.optim.SparseEmbedding` inside the model), global gradient-norm
clipping, distributed synchronisation, the tqdm bar, the loss/sigma^2 history, per-epoch checkpoints
and resuming.

One step: ``loss(batch).backward()`` -> all-reduce dense gradients (torchrun) -> clip the global norm
of dense + sparse gradients to ``grad_clip`` -> Adam step on dense parameters, row-sparse step on the
touched rows -> ``after_step()`` hook (M2GRL clamps log sigma^2 there) -> every ``sync_every`` steps
average embedding tables across ranks.
"""

from __future__ import annotations

import io
import logging
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from tqdm import tqdm

from core.atomic import atomic_write_bytes
from model import kernels
from model.config import TrainerConfig
from model.distributed import DistInfo, all_reduce_mean_, all_reduce_sum
from model.optim import ClipGroup, SparseEmbedding, make_sparse_optimizer

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "epoch-"
KEEP_CHECKPOINTS = 2


@runtime_checkable
class Trainable(Protocol):
    """What the loop needs from a model (an ``nn.Module`` in practice).

    - ``loss(batch)`` returns the scalar to minimise, or ``(scalar, {task: value})`` for per-task logs.
    - ``parameters()`` are the dense parameters (Adam); tables to update row-sparsely are
      :class:`SparseEmbedding` sub-modules, found through ``modules()``.
    - optional ``after_step()`` (called after every optimiser step) and ``task_state()`` returning
      ``{task: {"sigma2": float, ...}}`` (logged next to the losses).
    - optional ``clip_groups()`` returning :class:`ClipGroup` s: each is clipped to ``grad_clip`` on its
      own, everything outside them together (none: one global norm, the paper's A.3).
    """

    def loss(self, batch: Any) -> Tensor | tuple[Tensor, Mapping[str, float]]: ...

    def parameters(self, recurse: bool = True) -> Iterable[nn.Parameter]: ...

    def modules(self) -> Iterable[nn.Module]: ...

    def state_dict(self, *args: Any, **kwargs: Any) -> Any: ...

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any: ...


BatchFn = Callable[[int], Iterable[Any]]


@dataclass
class TrainResult:
    """What a run did.

    Attributes:
        steps: global step at each logged point (``log_every`` steps apart).
        losses: task -> mean loss over each logged window (key ``"total"`` is the optimised total).
        sigma2: task -> sigma^2 at each logged point (empty for models without ``task_state``).
        epoch_losses: task -> mean loss of each epoch.
        pairs: training examples seen by this rank (``len(batch)`` summed), all epochs of this run.
        pairs_per_s: examples per second over all ranks (this run's epochs only).
        wall_time_s: seconds spent in this call.
        epochs_done: epochs completed, including those restored from a checkpoint.
        resumed_from: epoch count of the checkpoint resumed from, or ``None``.
    """

    steps: list[int] = field(default_factory=list)
    losses: dict[str, list[float]] = field(default_factory=dict)
    sigma2: dict[str, list[float]] = field(default_factory=dict)
    epoch_losses: dict[str, list[float]] = field(default_factory=dict)
    pairs: int = 0
    pairs_per_s: float = 0.0
    wall_time_s: float = 0.0
    epochs_done: int = 0
    resumed_from: int | None = None

    def final_losses(self) -> dict[str, float]:
        """Mean loss of the last epoch per task."""
        return {t: v[-1] for t, v in self.epoch_losses.items() if v}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; ``"cuda"`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' requested but torch sees no CUDA device")
    return torch.device(name)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. under ``taskset`` or a container cpuset),
    not the machine's: more intra-op threads than cores makes OpenMP spin-wait and steps many times slower."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def configure_threads(config: TrainerConfig, info: DistInfo) -> int:
    """Use every usable core, split between the processes of this machine; returns the thread count."""
    threads = config.threads or max(1, usable_cores() // max(info.local_world, 1))
    torch.set_num_threads(threads)
    kernels.set_threads(threads)
    return threads


def sparse_tables(model: Trainable) -> dict[str, SparseEmbedding]:
    """Every :class:`SparseEmbedding` of the model, by module path."""
    if not isinstance(model, nn.Module):
        return {}
    return {name: m for name, m in model.named_modules() if isinstance(m, SparseEmbedding)}


def _split_loss(out: Tensor | tuple[Tensor, Mapping[str, float]]) -> tuple[Tensor, Mapping[str, float]]:
    if isinstance(out, tuple):
        return out[0], out[1]
    return out, {}


def _move(batch: Any, device: torch.device) -> Any:
    if device.type == "cpu":
        return batch
    to = getattr(batch, "to", None)
    return to(device) if callable(to) else batch


def _task_sigma2(model: Trainable) -> dict[str, float]:
    state = getattr(model, "task_state", None)
    if not callable(state):
        return {}
    return {t: float(v["sigma2"]) for t, v in state().items()}


def _checkpoints(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"{CHECKPOINT_PREFIX}*.pt"))


def latest_checkpoint(directory: Path | None) -> Path | None:
    """Newest ``epoch-NNNN.pt`` in ``directory`` (``None`` when there is none)."""
    if directory is None or not directory.exists():
        return None
    found = _checkpoints(directory)
    return found[-1] if found else None


class _Averager:
    """Running sums of logged values over a window and over an epoch."""

    def __init__(self) -> None:
        self.window: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        self.epoch: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])

    def add(self, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            for acc in (self.window, self.epoch):
                acc[key][0] += value
                acc[key][1] += 1

    @staticmethod
    def _means(acc: dict[str, list[float]]) -> dict[str, float]:
        return {k: s / n for k, (s, n) in acc.items() if n}

    def flush_window(self) -> dict[str, float]:
        out = self._means(self.window)
        self.window.clear()
        return out

    def flush_epoch(self) -> dict[str, float]:
        out = self._means(self.epoch)
        self.epoch.clear()
        self.window.clear()
        return out


def train(
    model: Trainable,
    batches: BatchFn,
    config: TrainerConfig,
    *,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    dist_info: DistInfo | None = None,
    log_every: int = 10,
    steps_per_epoch: int | None = None,
    description: str = "train",
) -> TrainResult:
    """Train ``model`` in place for ``config.epochs`` epochs over ``batches(epoch)``.

    Args:
        model: a :class:`Trainable` ``nn.Module``; moved to ``config.device``.
        batches: ``epoch -> iterable of batches``; it must be deterministic in ``epoch`` (and rank) for
            resumed runs to replay the same data. Batches with a ``to(device)`` method are moved.
        config: optimisation settings (lr, clipping, epochs, seed, device, threads, optimisers).
        checkpoint_dir: where rank 0 writes ``epoch-NNNN.pt`` after every epoch (``None``: no checkpoints).
        resume: continue after the newest checkpoint in ``checkpoint_dir`` (fresh start if none).
        progress: show a tqdm bar per epoch (pairs/s, each task's loss and sigma^2) on rank 0.
        dist_info: rank/world when running under torchrun (``None``: single process).
        log_every: steps per point of the loss/sigma^2 history.
        steps_per_epoch: length of the bar, if known.
        description: label of the bar.
    Returns:
        A :class:`TrainResult`; the model holds the trained weights.
    """
    if log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every}")
    info = dist_info or DistInfo()
    device = resolve_device(config.device)
    configure_threads(config, info)
    torch.manual_seed(config.seed)
    if isinstance(model, nn.Module):
        model.to(device)
        model.train()
    tables = sparse_tables(model)
    groups = clip_groups(model, tables)
    dense = [p for p in model.parameters() if p.requires_grad]
    dense_opt = torch.optim.Adam(dense, lr=config.lr, weight_decay=config.weight_decay) if dense else None
    sparse_opt = make_sparse_optimizer(config.sparse_optimizer, tables, config.table_lr) if tables else None
    after_step = getattr(model, "after_step", None)

    result = TrainResult()
    start_epoch = 0
    if resume:
        ckpt = latest_checkpoint(checkpoint_dir)
        if ckpt is None:
            log.info("resume requested but no checkpoint in %s: starting fresh", checkpoint_dir)
        else:
            state = torch.load(ckpt, map_location=device, weights_only=False)
            model.load_state_dict(state["model"])
            if dense_opt is not None and state.get("dense_opt") is not None:
                dense_opt.load_state_dict(state["dense_opt"])
            if sparse_opt is not None and state.get("sparse_opt") is not None:
                sparse_opt.load_state_dict(state["sparse_opt"])
            result = TrainResult(**state["result"])
            start_epoch = int(state["epoch"])
            result.resumed_from = start_epoch
            log.info("resumed from %s (epoch %d done)", ckpt, start_epoch)

    show = progress and info.is_main
    started = time.perf_counter()
    run_pairs = 0
    step = result.steps[-1] if result.steps else 0
    for epoch in range(start_epoch, config.epochs):
        averager = _Averager()
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"{description} {epoch + 1}/{config.epochs}",
            unit="step",
            disable=not show,
            file=sys.stderr,
            leave=True,
        )
        epoch_start, epoch_pairs = time.perf_counter(), 0
        for local_step, raw in enumerate(batches(epoch), start=1):
            if config.lr_schedule != "constant":
                # per step when the epoch length is known, else per epoch
                within = (local_step - 1) / steps_per_epoch if steps_per_epoch else 0.0
                _set_lr(
                    config,
                    scheduled_lr(config, (epoch + min(within, 1.0)) / config.epochs),
                    dense_opt,
                    sparse_opt,
                )
            batch = _move(raw, device)
            total, logs = _split_loss(model.loss(batch))
            if dense_opt is not None:
                dense_opt.zero_grad(set_to_none=True)
            total.backward()
            _optimise(model, tables, dense, dense_opt, sparse_opt, config, info, groups)
            if callable(after_step):
                after_step()
            step += 1
            if info.enabled and local_step % config.sync_every == 0:
                all_reduce_mean_((t.weight for t in tables.values()), info)
            n = len(raw) if hasattr(raw, "__len__") else 1
            epoch_pairs += n
            averager.add({"total": float(total.detach()), **logs})
            if step % log_every == 0:
                _record(result, step, averager.flush_window(), _task_sigma2(model))
            if show and local_step % 20 == 0:
                rate = epoch_pairs * info.world / max(time.perf_counter() - epoch_start, 1e-9)
                bar.set_postfix_str(_postfix(rate, logs, _task_sigma2(model)), refresh=False)
            bar.update(1)
        bar.close()
        if info.enabled:
            all_reduce_mean_((t.weight for t in tables.values()), info)
        for task, value in averager.flush_epoch().items():
            result.epoch_losses.setdefault(task, []).append(value)
        run_pairs += epoch_pairs
        result.pairs += epoch_pairs
        result.epochs_done = epoch + 1
        if checkpoint_dir is not None and info.is_main:
            _save_checkpoint(checkpoint_dir, epoch + 1, model, dense_opt, sparse_opt, result)
    wall = time.perf_counter() - started
    result.wall_time_s += wall
    total_pairs = all_reduce_sum(float(run_pairs), info)
    if wall > 0 and run_pairs:
        result.pairs_per_s = total_pairs / wall
    return result


def scheduled_lr(config: TrainerConfig, done: float) -> float:
    """Learning rate after a share ``done`` (0 at the first step, 1 after the last) of the run."""
    if config.lr_schedule == "constant":
        return config.lr
    return config.min_lr + (config.lr - config.min_lr) * max(0.0, 1.0 - done)


def _set_lr(
    config: TrainerConfig, lr: float, dense_opt: torch.optim.Optimizer | None, sparse_opt: Any
) -> None:
    """Dense rate ``lr``; the sparse rate scaled by the same factor (``table_lr * lr / config.lr``)."""
    if dense_opt is not None:
        for group in dense_opt.param_groups:
            group["lr"] = lr
    if sparse_opt is not None:
        sparse_opt.lr = config.table_lr * lr / config.lr


def clip_groups(model: Trainable, tables: Mapping[str, SparseEmbedding]) -> list[ClipGroup]:
    """The model's own clip groups (none: one global norm), checked against its tables."""
    declared = getattr(model, "clip_groups", None)
    groups: list[ClipGroup] = list(declared()) if callable(declared) else []
    for group in groups:
        unknown = set(group.tables) - set(tables)
        if unknown:
            raise ValueError(f"clip group names tables the model does not have: {sorted(unknown)}")
    return groups


def _clip_scale(sq: float, clip: float) -> float:
    norm = math.sqrt(sq)
    return clip / (norm + 1e-6) if norm > clip else 1.0


def clip_gradients(
    grads: dict[nn.Parameter, Tensor],
    sparse: Mapping[str, tuple[Tensor, Tensor]],
    groups: list[ClipGroup],
    clip: float,
) -> None:
    """Scale every group's gradients (and the rest's) so that each group's norm is at most ``clip``.

    Every squared norm is summed as the global one is (dense terms, plus table terms in ``sparse``'s
    order): a group that holds every gradient of a model is clipped bit for bit like the global norm.
    """
    own: dict[nn.Parameter, dict[int, float]] = {}  # dense parameter -> {grouped entry: its group's scale}
    grouped: set[str] = set()
    for group in groups:
        present = [(p, i) for p, i in group.entries if p in grads]
        sq = sum(_squared_norm(grads[p].reshape(-1)[i : i + 1]) for p, i in present) + sum(
            _squared_norm(sg) for name, (_, sg) in sparse.items() if name in group.tables
        )
        scale = _clip_scale(sq, clip)
        for param, index in present:
            own.setdefault(param, {})[index] = scale
        for name in group.tables:
            if name in sparse and scale != 1.0:
                sparse[name][1].mul_(scale)  # the coalesced block is take_grad's own buffer
        grouped |= set(group.tables)
    positions = {p: torch.tensor(list(entries), device=grads[p].device) for p, entries in own.items()}
    outside = [
        g if p not in own else g.reshape(-1).index_fill(0, positions[p], 0.0) for p, g in grads.items()
    ]
    rest = sum(_squared_norm(g) for g in outside) + sum(
        _squared_norm(sg) for name, (_, sg) in sparse.items() if name not in grouped
    )
    rest_scale = _clip_scale(rest, clip)
    for param, g in grads.items():
        if param in own:  # the rest's scale, its grouped entries their group's (x * 1.0 is x)
            factor = torch.full((g.numel(),), rest_scale, dtype=g.dtype, device=g.device)
            factor[positions[param]] = torch.tensor(list(own[param].values()), dtype=g.dtype, device=g.device)
            g.mul_(factor.view_as(g))
        elif rest_scale != 1.0:
            g.mul_(rest_scale)
    if rest_scale != 1.0:
        for name, (_, sparse_grad) in sparse.items():
            if name not in grouped:
                sparse_grad.mul_(rest_scale)


def _optimise(
    model: Trainable,
    tables: dict[str, SparseEmbedding],
    dense: list[nn.Parameter],
    dense_opt: torch.optim.Optimizer | None,
    sparse_opt: Any,
    config: TrainerConfig,
    info: DistInfo,
    groups: list[ClipGroup],
) -> None:
    """All-reduce, clip (each clip group and the rest by its own norm; no groups: one global norm over
    dense + sparse gradients) and step both optimisers."""
    grads = {p: p.grad for p in dense if p.grad is not None}
    all_reduce_mean_(list(grads.values()), info)
    sparse = {name: rg for name, t in tables.items() if (rg := t.take_grad()) is not None}
    if config.grad_clip > 0:
        clip_gradients(grads, sparse, groups, config.grad_clip)
    if dense_opt is not None:
        dense_opt.step()
    if sparse_opt is not None:
        for name, (rows, sparse_grad) in sparse.items():
            sparse_opt.step(name, rows, sparse_grad)


def _squared_norm(grad: Tensor) -> float:
    """``sum(grad ** 2)`` as a Python float, without a squared copy of ``grad``."""
    flat = grad.reshape(-1)
    return float(torch.dot(flat, flat))


def _record(result: TrainResult, step: int, means: Mapping[str, float], sigma2: Mapping[str, float]) -> None:
    result.steps.append(step)
    for task, value in means.items():
        result.losses.setdefault(task, []).append(value)
    for task, value in sigma2.items():
        result.sigma2.setdefault(task, []).append(value)


def _postfix(rate: float, logs: Mapping[str, float], sigma2: Mapping[str, float]) -> str:
    parts = [f"{rate:,.0f} pairs/s"]
    for task, value in logs.items():
        s2 = f" s2={sigma2[task]:.3g}" if task in sigma2 else ""
        parts.append(f"{task} {value:.3f}{s2}")
    return " | ".join(parts)


def _save_checkpoint(
    directory: Path,
    epoch: int,
    model: Trainable,
    dense_opt: torch.optim.Optimizer | None,
    sparse_opt: Any,
    result: TrainResult,
) -> Path:
    """Write ``epoch-NNNN.pt`` atomically and keep the newest ``KEEP_CHECKPOINTS``."""
    state = {
        "epoch": epoch,
        "model": model.state_dict(),
        "dense_opt": dense_opt.state_dict() if dense_opt is not None else None,
        "sparse_opt": sparse_opt.state_dict() if sparse_opt is not None else None,
        "result": result.to_dict(),
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path = directory / f"{CHECKPOINT_PREFIX}{epoch:04d}.pt"
    atomic_write_bytes(path, buffer.getvalue())
    for old in _checkpoints(directory)[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)
    return path
