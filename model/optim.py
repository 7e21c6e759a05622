"""Row-sparse embedding tables and the optimisers that update only the rows a batch touched.

Why not ``nn.Embedding`` + Adam: dense Adam reads and writes whole tables every step and torch's
``SparseAdam`` is several times slower than plain sparse SGD on CPU. Here a table is a plain buffer;
:meth:`SparseEmbedding.gather` hands out a *leaf copy* of the requested rows, autograd fills its gradient
and the optimiser coalesces the rows (one ``unique`` + ``index_add``) and updates only those rows.

Optimisers (registry :data:`SPARSE_OPTIMIZERS`):

- ``lazy_adam``: Adam whose moments and step counts are kept per row and advanced only when the row is
  touched (TF's LazyAdam, with per-row bias correction so a rarely seen row takes Adam-sized steps).
- ``row_adagrad``: Adagrad with one accumulator per row (mean squared gradient of the row).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn


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

    @property
    def num_rows(self) -> int:
        return int(self.weight.shape[0])

    def gather(self, rows: Tensor) -> Tensor:
        """Rows ``[n]`` (int64) -> ``[n, dim]`` vectors that carry gradients back to this table."""
        out = self.weight.index_select(0, rows)
        if torch.is_grad_enabled():
            out.requires_grad_(True)
            self._pending.append((rows, out))
        return out

    def take_grad(self) -> tuple[Tensor, Tensor] | None:
        """``(unique_rows [u], grad [u, dim])`` summed over every gather of the step, or ``None``."""
        pending = [(r, leaf.grad) for r, leaf in self._pending if leaf.grad is not None]
        self._pending.clear()
        if not pending:
            return None
        rows = torch.cat([r for r, _ in pending])
        grads = torch.cat([g for _, g in pending])
        unique, inverse = torch.unique(rows, return_inverse=True)
        coalesced = torch.zeros(len(unique), grads.shape[1], dtype=grads.dtype, device=grads.device)
        coalesced.index_add_(0, inverse, grads)
        return unique, coalesced

    def clear(self) -> None:
        self._pending.clear()


class RowSparseOptimizer:
    """Base class: ``step(table, rows, grad)`` updates ``table.weight[rows]`` in place."""

    def __init__(self, tables: dict[str, SparseEmbedding], lr: float) -> None:
        self.tables = tables
        self.lr = lr
        self.state: dict[str, dict[str, Tensor]] = {name: self._init_state(t) for name, t in tables.items()}

    def _init_state(self, table: SparseEmbedding) -> dict[str, Tensor]:
        raise NotImplementedError

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
        b1, b2 = self.betas
        st = self.state[name]
        t = st["t"].index_select(0, rows) + 1
        m = st["m"].index_select(0, rows).mul_(b1).add_(grad, alpha=1 - b1)
        v = st["v"].index_select(0, rows).mul_(b2).addcmul_(grad, grad, value=1 - b2)
        st["t"].index_copy_(0, rows, t)
        st["m"].index_copy_(0, rows, m)
        st["v"].index_copy_(0, rows, v)
        step_size = (self.lr / (1 - b1**t)).unsqueeze(1)
        denom = (v / (1 - b2**t).unsqueeze(1)).sqrt_().add_(self.eps)
        w = self.tables[name].weight
        w.index_copy_(0, rows, w.index_select(0, rows).addcdiv_(m * step_size, denom, value=-1.0))


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
        acc = st["sum"].index_select(0, rows) + grad.pow(2).mean(dim=1)
        st["sum"].index_copy_(0, rows, acc)
        w = self.tables[name].weight
        w.index_add_(0, rows, grad / (acc.sqrt() + self.eps).unsqueeze(1), alpha=-self.lr)


SPARSE_OPTIMIZERS: dict[str, Callable[[dict[str, SparseEmbedding], float], RowSparseOptimizer]] = {
    "lazy_adam": LazyAdam,
    "row_adagrad": RowAdagrad,
}


def make_sparse_optimizer(name: str, tables: dict[str, SparseEmbedding], lr: float) -> RowSparseOptimizer:
    """Build the row-sparse optimiser registered as ``name`` (unknown names list the valid ones)."""
    if name not in SPARSE_OPTIMIZERS:
        raise ValueError(f"unknown sparse optimiser {name!r}; valid: {', '.join(sorted(SPARSE_OPTIMIZERS))}")
    return SPARSE_OPTIMIZERS[name](tables, lr)
