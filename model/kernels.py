"""Compiled CPU kernels (numba) for the row-sparse optimiser: the two steps torch runs serially or in
many passes.

Why: on CPU, a lazy Adam step written with torch ops gathers the touched rows of ``m``, ``v`` and the
step counts, runs about ten ``[u, dim]`` passes and scatters them back (``index_copy_`` and
``index_add_``, which torch runs on one thread), a large share of an item-view step.
:func:`lazy_adam_rows` does the same arithmetic in one pass over each touched row, in place, rows split
between threads (the rows are unique, so no two threads write one row), a fraction of the time
(reports/tuning.md, section "row-sparse kernels"). :func:`coalesce_rows` sums the per-pair gradients
of a gather into one row per distinct row (what ``index_add_`` did, serially), parallel over the
distinct rows through a counting sort.
:func:`row_adagrad_rows` is the row-wise Adagrad step (M2GRL's default optimiser of the tables) in the
same one-pass form.

Only CPU tensors that numpy can view are handed here (:func:`cpu_kernel_ok`); every other device keeps
the torch ops. Compiled once per process (about 0.7 s per kernel) and cached on disk when the cache
folder is writable (``NUMBA_CACHE_DIR`` sets it; without a writable one numba compiles in memory).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numba
import numpy as np
import numpy.typing as npt
import torch
from numba import prange
from torch import Tensor

F = TypeVar("F", bound=Callable[..., Any])


def _jit(fn: F) -> F:
    """``numba.njit(parallel=True, cache=True)``; caching falls back to none where no cache folder
    is writable (numba raises at decoration then, e.g. on a read-only image without ``NUMBA_CACHE_DIR``)."""
    try:
        return numba.njit(parallel=True, cache=True)(fn)  # type: ignore[return-value]
    except RuntimeError:
        return numba.njit(parallel=True, cache=False)(fn)  # type: ignore[return-value]


def numpy_ok(*tensors: Tensor) -> bool:
    """True when every tensor is a CPU tensor numpy can view without copying or detaching."""
    return all(t.device.type == "cpu" and not t.requires_grad for t in tensors)


def cpu_kernel_ok(*tensors: Tensor) -> bool:
    """True when every tensor is a contiguous tensor that :func:`numpy_ok` accepts."""
    return numpy_ok(*tensors) and all(t.is_contiguous() for t in tensors)


def set_threads(n: int) -> None:
    """Threads of the kernels (like ``torch.set_num_threads``; capped at numba's pool size)."""
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]


@_jit
def _lazy_adam(w, m, v, t, rows, grad, lr, b1, b2, eps, keep1, keep2):  # type: ignore[no-untyped-def]
    for k in prange(len(rows)):
        r = rows[k]
        tr = t[r] + 1.0
        t[r] = tr
        step = lr / (1.0 - b1**tr)
        inv_bias2 = 1.0 / (1.0 - b2**tr)
        for j in range(w.shape[1]):
            g = grad[k, j]
            mj = b1 * m[r, j] + keep1 * g
            vj = b2 * v[r, j] + keep2 * g * g
            m[r, j] = mj
            v[r, j] = vj
            w[r, j] -= step * mj / (np.sqrt(vj * inv_bias2) + eps)


def lazy_adam_rows(
    weight: Tensor,
    m: Tensor,
    v: Tensor,
    t: Tensor,
    rows: Tensor,
    grad: Tensor,
    *,
    lr: float,
    betas: tuple[float, float],
    eps: float,
) -> None:
    """One lazy Adam step, in place, on the unique ``rows`` of ``weight`` with their gradient ``grad``.

    Per row ``r``: ``t += 1``, ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2`` and
    ``w -= lr / (1-b1^t) * m / (sqrt(v / (1-b2^t)) + eps)`` (``model.optim.LazyAdam``'s arithmetic).
    Rows must be unique: threads write rows without locks.
    """
    dtype = weight.numpy().dtype.type
    b1, b2 = betas
    # 1 - b is taken in double before the cast, as torch does with a Python float (1 - float32(0.999)
    # differs from float32(0.001) by 1e-5 relative)
    _lazy_adam(
        weight.numpy(), m.numpy(), v.numpy(), t.numpy(), rows.numpy(), grad.numpy(),
        dtype(lr), dtype(b1), dtype(b2), dtype(eps), dtype(1 - b1), dtype(1 - b2),
    )  # fmt: skip


@_jit
def _row_adagrad(w, acc, rows, grad, lr, eps):  # type: ignore[no-untyped-def]
    dim = w.shape[1]
    for k in prange(len(rows)):
        r = rows[k]
        sq = 0.0
        for j in range(dim):
            sq += grad[k, j] * grad[k, j]
        total = acc[r] + sq / dim
        acc[r] = total
        step = lr / (np.sqrt(total) + eps)
        for j in range(dim):
            w[r, j] -= step * grad[k, j]


def row_adagrad_rows(
    weight: Tensor, acc: Tensor, rows: Tensor, grad: Tensor, *, lr: float, eps: float
) -> None:
    """One row-wise Adagrad step, in place, on the unique ``rows`` of ``weight`` with their gradient ``grad``.

    Per row ``r``: ``G_r += mean_j(g_rj^2)``, ``w_r -= lr g_r / (sqrt(G_r) + eps)``
    (``model.optim.RowAdagrad``'s arithmetic). Rows must be unique: threads write rows without locks.
    """
    dtype = weight.numpy().dtype.type
    _row_adagrad(weight.numpy(), acc.numpy(), rows.numpy(), grad.numpy(), dtype(lr), dtype(eps))


@_jit
def _coalesce(out, inverse, grad):  # type: ignore[no-untyped-def]
    n_unique = out.shape[0]
    # counting sort of the pairs by their distinct row: order[offsets[u]:offsets[u + 1]] are u's pairs
    offsets = np.zeros(n_unique + 1, np.int64)
    for i in range(len(inverse)):
        offsets[inverse[i] + 1] += 1
    for u in range(n_unique):
        offsets[u + 1] += offsets[u]
    fill = offsets[:-1].copy()
    order = np.empty(len(inverse), np.int64)
    for i in range(len(inverse)):
        u = inverse[i]
        order[fill[u]] = i
        fill[u] += 1
    for u in prange(n_unique):
        for p in range(offsets[u], offsets[u + 1]):
            i = order[p]
            for j in range(grad.shape[1]):
                out[u, j] += grad[i, j]


def coalesce_rows(out: Tensor, inverse: Tensor, grad: Tensor) -> None:
    """``out.index_add_(0, inverse, grad)``: add row ``i`` of ``grad`` into row ``inverse[i]`` of ``out``."""
    if len(inverse) != len(grad):
        raise ValueError(f"inverse has {len(inverse)} rows, grad {len(grad)}")
    inv: npt.NDArray[np.int64] = inverse.numpy()
    if len(inv) and (inv.min() < 0 or inv.max() >= out.shape[0]):
        raise IndexError(f"inverse rows must lie in [0, {out.shape[0]})")
    _coalesce(out.numpy(), inv, grad.numpy())


def warm_up() -> None:
    """Compile (or load from the disk cache) every kernel now, so the first training step does not pay it."""
    w = torch.zeros(2, 2)
    lazy_adam_rows(
        w, torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2), torch.tensor([1]), torch.ones(1, 2),
        lr=0.01, betas=(0.9, 0.999), eps=1e-8,
    )  # fmt: skip
    row_adagrad_rows(w, torch.zeros(2), torch.tensor([1]), torch.ones(1, 2), lr=0.1, eps=1e-10)
    coalesce_rows(torch.zeros(1, 2), torch.tensor([0, 0]), torch.ones(2, 2))
