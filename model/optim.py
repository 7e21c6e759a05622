"""Row-sparse embedding tables and the optimisers that update only the rows a batch touched.

Why not ``nn.Embedding`` + Adam: dense Adam reads and writes whole tables every step and torch's
``SparseAdam`` is several times slower than plain sparse SGD on CPU. Here a table is a plain buffer;
:meth:`SparseEmbedding.gather` hands out a *leaf copy* of the requested rows, autograd fills its gradient
and the optimiser coalesces the rows (one ``unique`` + ``index_add``) and updates only those rows.

On CPU the ``unique`` of the coalescing goes through numpy on the tensors' own memory (a "mark the
touched rows" unique, far faster than ``torch.unique``'s sort: reports/tuning.md, section "touched-row
unique"), and so do the row gathers and scatters (:func:`take_rows`, :func:`put_rows`) when torch runs
one intra-op thread (``np.take`` / fancy assignment beat the single-threaded ``index_select`` /
``index_copy_``; with more threads the torch ops, which split the rows between threads, are used). On CPU the coalescing sum and the lazy
Adam step run as compiled kernels (:mod:`model.kernels`); other devices use the torch ops.

Optimisers (registry :data:`SPARSE_OPTIMIZERS`):

- ``lazy_adam``: Adam whose moments and step counts are kept per row and advanced only when the row is
  touched (TF's LazyAdam, with per-row bias correction so a rarely seen row takes Adam-sized steps).
- ``row_adagrad``: Adagrad with one accumulator per row (mean squared gradient of the row).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from model.kernels import coalesce_rows, cpu_kernel_ok, lazy_adam_rows, numpy_ok, row_adagrad_rows

# Mark-and-scan unique (O(num_rows)) while the table has at most this many rows per looked-up row,
# a sorting unique (O(n log n)) beyond.
_MARK_UNIQUE_MAX_RATIO = 16


def _numpy_rows_ok(*tensors: Tensor) -> bool:
    """Row gathers/scatters through numpy: CPU tensors and one intra-op thread (numpy's take and fancy
    assignment are serial, torch's ``index_select``/``index_copy_`` split the rows between threads)."""
    return torch.get_num_threads() == 1 and numpy_ok(*tensors)


def take_rows(table: Tensor, rows: Tensor) -> Tensor:
    """``table[rows]`` as a new tensor (``index_select``; numpy's ``take`` on one CPU thread)."""
    if _numpy_rows_ok(table, rows):
        idx = rows.numpy()
        if len(idx) and idx.min() < 0:
            raise IndexError(f"negative row {int(idx.min())} for a table of {table.shape[0]} rows")
        return torch.from_numpy(np.take(table.numpy(), idx, axis=0))
    return table.index_select(0, rows)


def put_rows(table: Tensor, rows: Tensor, values: Tensor) -> None:
    """``table[rows] = values`` in place, ``rows`` unique (``index_copy_``; numpy assignment on one CPU
    thread)."""
    if _numpy_rows_ok(table, rows, values):
        table.numpy()[rows.numpy()] = values.numpy()
    else:
        table.index_copy_(0, rows, values)


@dataclass(frozen=True)
class ClipGroup:
    """Gradients the shared loop clips by their own norm: whole tables (module paths, as
    ``model.trainer.sparse_tables`` names them) and single entries ``(parameter, flat index)`` of dense
    parameters."""

    tables: tuple[str, ...] = ()
    entries: tuple[tuple[nn.Parameter, int], ...] = ()


class SparseEmbedding(nn.Module):
    """An embedding table ``[num_rows, dim]`` updated row-sparsely (see module docstring).

    The weight is a buffer (in ``state_dict`` but not in ``parameters()``), so dense optimisers never
    see it. Each :meth:`gather` records ``(rows, leaf)``; :meth:`take_grad` returns the coalesced
    gradient of the step and clears the record.
    """

    weight: Tensor

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        if weight.dim() != 2:
            raise ValueError(f"weight must be [num_rows, dim], got {tuple(weight.shape)}")
        self.register_buffer("weight", weight.detach().clone())
        self._pending: list[tuple[Tensor, Tensor]] = []
        # Scratch of the mark-and-scan unique (numpy, CPU), allocated on first use.
        self._mark: npt.NDArray[np.bool_] | None = None
        self._slot: npt.NDArray[np.int64] | None = None

    @property
    def num_rows(self) -> int:
        return int(self.weight.shape[0])

    def gather(self, rows: Tensor) -> Tensor:
        """Rows ``[n]`` (int64) -> ``[n, dim]`` vectors that carry gradients back to this table."""
        out = take_rows(self.weight, rows)
        if torch.is_grad_enabled():
            out.requires_grad_(True)
            self._pending.append((rows, out))
        return out

    def take_grad(self) -> tuple[Tensor, Tensor] | None:
        """``(unique_rows [u], grad [u, dim])`` summed over every gather of the step, or ``None``.

        ``unique_rows`` is sorted. Each gather's gradient is added into the coalesced block directly
        (no concatenation of the ``[n, dim]`` gradients).
        """
        pending = [(r, leaf.grad) for r, leaf in self._pending if leaf.grad is not None]
        self._pending.clear()
        if not pending:
            return None
        rows = pending[0][0] if len(pending) == 1 else torch.cat([r for r, _ in pending])
        unique, inverse = self.unique_rows(rows)
        first = pending[0][1]
        coalesced = torch.zeros(len(unique), first.shape[1], dtype=first.dtype, device=first.device)
        start = 0
        for r, g in pending:
            part = inverse[start : start + len(r)]
            if cpu_kernel_ok(coalesced, part, g):
                coalesce_rows(coalesced, part, g)  # parallel; index_add_ runs on one thread
            else:
                coalesced.index_add_(0, part, g)
            start += len(r)
        return unique, coalesced

    def unique_rows(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """``(unique, inverse)`` of ``rows`` as ``torch.unique(rows, return_inverse=True)``: ``unique``
        sorted, ``unique[inverse] == rows``."""
        n = self.num_rows
        if not numpy_ok(rows) or n > _MARK_UNIQUE_MAX_RATIO * max(len(rows), 1):
            unique, inverse = torch.unique(rows, return_inverse=True)
            return unique, inverse
        if self._mark is None or self._slot is None or len(self._mark) != n:
            self._mark = np.zeros(n, dtype=np.bool_)
            self._slot = np.zeros(n, dtype=np.int64)
        idx = rows.numpy()
        mark, slot = self._mark, self._slot
        mark[idx] = True
        found = np.flatnonzero(mark)
        mark[found] = False  # leave the scratch all-False for the next call
        slot[found] = np.arange(len(found))
        return torch.from_numpy(found), torch.from_numpy(slot[idx])

    def clear(self) -> None:
        self._pending.clear()


class RowSparseOptimizer:
    """Base class: ``step(table, rows, grad)`` updates ``table.weight[rows]`` in place."""

    def __init__(self, tables: dict[str, SparseEmbedding], lr: float) -> None:
        self.tables = tables
        self.lr = lr
        self.use_kernel = True
        """Compiled CPU kernel where it applies (``False``: always the torch ops, as on other devices)."""
        self.state: dict[str, dict[str, Tensor]] = {name: self._init_state(t) for name, t in tables.items()}

    def _init_state(self, table: SparseEmbedding) -> dict[str, Tensor]:
        raise NotImplementedError

    def _kernel_applies(self, weight: Tensor, grad: Tensor, *tensors: Tensor) -> bool:
        """Whether this step runs as a compiled kernel (:mod:`model.kernels`): enabled, ``grad`` of the
        table's dtype, and every tensor a contiguous CPU one."""
        return self.use_kernel and grad.dtype == weight.dtype and cpu_kernel_ok(weight, grad, *tensors)

    def step(self, name: str, rows: Tensor, grad: Tensor) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "state": {n: {k: v.clone() for k, v in s.items()} for n, s in self.state.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = set(self.state) - set(state["state"])
        if missing:
            raise ValueError(f"optimiser state has no entry for tables {sorted(missing)}")
        for name, tensors in state["state"].items():
            for key, value in tensors.items():
                self.state[name][key].copy_(value)


class LazyAdam(RowSparseOptimizer):
    """Adam on the touched rows only, with per-row step counts for the bias correction."""

    def __init__(
        self,
        tables: dict[str, SparseEmbedding],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.betas = betas
        self.eps = eps
        super().__init__(tables, lr)

    def _init_state(self, table: SparseEmbedding) -> dict[str, Tensor]:
        w = table.weight
        return {
            "m": torch.zeros_like(w),
            "v": torch.zeros_like(w),
            "t": torch.zeros(w.shape[0], dtype=w.dtype, device=w.device),
        }

    @torch.no_grad()
    def step(self, name: str, rows: Tensor, grad: Tensor) -> None:
        """One Adam step on ``rows`` (unique) with their coalesced gradient ``grad [u, dim]``.

        Per row ``r`` with step count ``t``: ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``,
        ``w -= lr / (1-b1^t) * m / (sqrt(v / (1-b2^t)) + eps)``. The last is computed as
        ``w -= m / (sqrt(v) * a + c)`` with the per-row scalars ``a = (1-b1^t) / (lr sqrt(1-b2^t))`` and
        ``c = eps (1-b1^t) / lr`` (the same quantity): after the gathers, every ``[u, dim]`` pass runs in
        place on the gathered copies and the weight rows get one ``index_add_``.
        """
        b1, b2 = self.betas
        st = self.state[name]
        weight = self.tables[name].weight
        if self._kernel_applies(weight, grad, st["m"], st["v"], st["t"], rows):
            # the same arithmetic in one compiled pass per row (faster on CPU: reports/tuning.md, section
            # "row-sparse kernels")
            lazy_adam_rows(
                weight, st["m"], st["v"], st["t"], rows, grad, lr=self.lr, betas=self.betas, eps=self.eps
            )
            return
        t = take_rows(st["t"], rows).add_(1.0)
        put_rows(st["t"], rows, t)
        m = take_rows(st["m"], rows).lerp_(grad, 1 - b1)
        put_rows(st["m"], rows, m)
        v = take_rows(st["v"], rows).mul_(b2).addcmul_(grad, grad, value=1 - b2)
        put_rows(st["v"], rows, v)
        bias1 = 1 - torch.pow(b1, t)
        scale = (bias1 / (self.lr * torch.sqrt(1 - torch.pow(b2, t)))).unsqueeze(1)
        offset = (bias1 * (self.eps / self.lr)).unsqueeze(1)
        # m and v are copies whose rows are stored already: reuse them for the denominator and update.
        denom = torch.addcmul(offset, v.sqrt_(), scale, out=v)
        weight.index_add_(0, rows, m.div_(denom), alpha=-1.0)  # rows are unique


class RowAdagrad(RowSparseOptimizer):
    """Adagrad with one accumulator per row: ``G_r += mean(g_r^2)``, ``w_r -= lr g_r / sqrt(G_r)``."""

    def __init__(self, tables: dict[str, SparseEmbedding], lr: float, eps: float = 1e-10) -> None:
        self.eps = eps
        super().__init__(tables, lr)

    def _init_state(self, table: SparseEmbedding) -> dict[str, Tensor]:
        w = table.weight
        return {"sum": torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)}

    @torch.no_grad()
    def step(self, name: str, rows: Tensor, grad: Tensor) -> None:
        st = self.state[name]
        weight = self.tables[name].weight
        if self._kernel_applies(weight, grad, st["sum"], rows):
            row_adagrad_rows(
                weight, st["sum"], rows, grad, lr=self.lr, eps=self.eps
            )  # one compiled pass per row
            return
        acc = st["sum"].index_select(0, rows) + grad.pow(2).mean(dim=1)
        st["sum"].index_copy_(0, rows, acc)
        weight.index_add_(0, rows, grad / (acc.sqrt() + self.eps).unsqueeze(1), alpha=-self.lr)


SPARSE_OPTIMIZERS: dict[str, Callable[[dict[str, SparseEmbedding], float], RowSparseOptimizer]] = {
    "lazy_adam": LazyAdam,
    "row_adagrad": RowAdagrad,
}


def make_sparse_optimizer(name: str, tables: dict[str, SparseEmbedding], lr: float) -> RowSparseOptimizer:
    """Build the row-sparse optimiser registered as ``name`` (unknown names list the valid ones)."""
    if name not in SPARSE_OPTIMIZERS:
        raise ValueError(f"unknown sparse optimiser {name!r}; valid: {', '.join(sorted(SPARSE_OPTIMIZERS))}")
    return SPARSE_OPTIMIZERS[name](tables, lr)
