"""The M2GRL model (sections 3.2-3.5): intra-view skip-gram per view, inter-view alignment per relation,
task weights by homoscedastic uncertainty. Pure tensors: batches in, losses out.

Task names (keys of losses, logs and ``task_weights.json``): ``"intra:<view>"`` and ``"inter:<rel>"``
with ``rel = "<item_view>-<other_view>"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from core.layout import relation_name
from model.alignment import alignment_loss, project
from model.optim import ClipGroup, SparseEmbedding
from model.sgns import sgns_loss
from model.weighting import TaskWeighting


def intra_task(view: str) -> str:
    return f"intra:{view}"


def inter_task(rel: str) -> str:
    return f"inter:{rel}"


@dataclass
class ViewBatch:
    """Skip-gram positives of one view: ``centres``/``contexts`` ``[B]`` int64 rows, ``negatives``
    ``[S]`` int64 rows shared by the whole batch."""

    centres: Tensor
    contexts: Tensor
    negatives: Tensor

    def to(self, device: torch.device) -> ViewBatch:
        return ViewBatch(self.centres.to(device), self.contexts.to(device), self.negatives.to(device))


@dataclass
class RelationBatch:
    """Alignment positives of one relation: ``items``/``others`` ``[B]`` rows of the two views,
    ``negatives`` ``[B, k]`` rows of the other view and ``mask`` ``[B, k]`` (0 where a draw hit the
    positive, which is then not a negative)."""

    items: Tensor
    others: Tensor
    negatives: Tensor
    mask: Tensor

    def to(self, device: torch.device) -> RelationBatch:
        return RelationBatch(*(t.to(device) for t in (self.items, self.others, self.negatives, self.mask)))


@dataclass
class M2GRLBatch:
    """One training step: a batch for every task (a task may be absent from a step)."""

    views: dict[str, ViewBatch] = field(default_factory=dict)
    relations: dict[str, RelationBatch] = field(default_factory=dict)

    def __len__(self) -> int:
        """Positive pairs in the step (skip-gram pairs + links): the unit of pairs/s."""
        return sum(len(b.centres) for b in self.views.values()) + sum(
            len(b.items) for b in self.relations.values()
        )

    def to(self, device: torch.device) -> M2GRLBatch:
        return M2GRLBatch(
            {k: v.to(device) for k, v in self.views.items()},
            {k: r.to(device) for k, r in self.relations.items()},
        )


class M2GRL(nn.Module):
    """Multi-task multi-view embedding model.

    Args:
        view_sizes: view name -> vocabulary size; the first view is the instance (item) view.
        relations: ``(item_view, other_view)`` pairs to align (eq. 4), both views in ``view_sizes``.
        weighting: a :class:`TaskWeighting` over exactly :meth:`task_names` (see ``model.weighting``).
        dim: embedding dimension of every view.
        relation_dim: rows of every alignment matrix ``W``.
        negatives: k of equation 3 (used to scale a shared negative pool, see ``sgns_loss``).
        align_item_grad: the alignment's gradient reaches the item-view rows (the paper). ``False`` trains
            ``W``, ``b`` and the other view's rows only: the item space is the item view's own and the
            side views are aligned into it.
        clip_item_apart: the item view's tables and its ``log sigma^2`` form a clip group of their own
            (:meth:`clip_groups`); the paper clips one global norm.
        seed: seeds the initialisation.

    Parameters: per view an input table ``v`` (uniform in ``+-0.5/dim``, as word2vec) and an output
    table ``v'`` (zeros), both :class:`SparseEmbedding` (row-sparse updates); per relation ``W``
    (Xavier) and the offset ``b`` (dense); the weighting's ``log sigma^2`` (dense).
    """

    weighting: TaskWeighting

    def __init__(
        self,
        view_sizes: Mapping[str, int],
        relations: Sequence[tuple[str, str]],
        weighting: TaskWeighting,
        *,
        dim: int = 64,
        relation_dim: int | None = None,
        negatives: int = 10,
        align_item_grad: bool = True,
        clip_item_apart: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.align_item_grad = align_item_grad
        self.clip_item_apart = clip_item_apart
        if not view_sizes:
            raise ValueError("view_sizes must name at least one view")
        for view, size in view_sizes.items():
            if size < 1:
                raise ValueError(f"view {view!r} has an empty vocabulary")
        for a, b in relations:
            if a not in view_sizes or b not in view_sizes:
                raise ValueError(f"relation ({a!r}, {b!r}) uses a view not in {list(view_sizes)}")
        self.views = list(view_sizes)
        self.relations = [relation_name(a, b) for a, b in relations]
        self.relation_views = {relation_name(a, b): (a, b) for a, b in relations}
        self.dim = dim
        self.relation_dim = dim if relation_dim is None else relation_dim
        self.negatives = negatives
        expected = self.task_names()
        if weighting.tasks != expected:
            raise ValueError(f"weighting tasks {weighting.tasks} differ from the model's tasks {expected}")
        self.weighting = weighting
        gen = torch.Generator().manual_seed(seed)
        self.inputs = nn.ModuleDict(
            {
                v: SparseEmbedding((torch.rand(n, dim, generator=gen) - 0.5) / dim)
                for v, n in view_sizes.items()
            }
        )
        self.outputs = nn.ModuleDict({v: SparseEmbedding(torch.zeros(n, dim)) for v, n in view_sizes.items()})
        bound = (6.0 / (dim + self.relation_dim)) ** 0.5
        self.W = nn.ParameterDict(
            {
                rel: nn.Parameter((torch.rand(self.relation_dim, dim, generator=gen) * 2 - 1) * bound)
                for rel in self.relations
            }
        )
        self.bias = nn.ParameterDict(
            {rel: nn.Parameter(torch.tensor(-self.relation_dim / 4.0)) for rel in self.relations}
        )

    def clip_groups(self) -> list[ClipGroup]:
        """The item view clipped apart from the other tasks (with ``clip_item_apart``), so the side
        views' gradients never rescale its steps: with ``align_item_grad=False`` and adaptive weights
        nothing else reaches its rows, and the item space is the one the item view trains alone."""
        if not self.clip_item_apart:
            return []
        item = self.views[0]
        entry = self.weighting.task_parameter(intra_task(item))
        return [ClipGroup(tables=(f"inputs.{item}", f"outputs.{item}"), entries=(entry,) if entry else ())]

    def task_names(self) -> list[str]:
        return [intra_task(v) for v in self.views] + [inter_task(r) for r in self.relations]

    def _table(self, tables: nn.ModuleDict, view: str) -> SparseEmbedding:
        table = tables[view]
        assert isinstance(table, SparseEmbedding)  # construction invariant, not an input check
        return table

    def task_losses(self, batch: M2GRLBatch) -> dict[str, Tensor]:
        """Unweighted loss of every task present in ``batch`` (eq. 3 per view, logistic eq. 4 per relation)."""
        losses: dict[str, Tensor] = {}
        for view, vb in batch.views.items():
            if len(vb.centres) == 0:
                continue
            inp, out = self._table(self.inputs, view), self._table(self.outputs, view)
            losses[intra_task(view)] = sgns_loss(
                inp.gather(vb.centres),
                out.gather(vb.contexts),
                out.gather(vb.negatives),
                neg_scale=self.negatives / max(len(vb.negatives), 1),
            )
        for rel, rb in batch.relations.items():
            if len(rb.items) == 0:
                continue
            a, b = self.relation_views[rel]
            inp_a, inp_b = self._table(self.inputs, a), self._table(self.inputs, b)
            # the distinct negative rows, each projected once (see model.alignment)
            rows, index = inp_b.unique_rows(rb.negatives.reshape(-1))
            items = inp_a.gather(rb.items)
            losses[inter_task(rel)] = alignment_loss(
                self.W[rel],
                self.bias[rel],
                items if self.align_item_grad else items.detach(),
                inp_b.gather(rb.others),
                inp_b.gather(rows),
                rb.mask,
                negative_index=index.view(rb.negatives.shape),
            )
        return losses

    def loss(self, batch: M2GRLBatch) -> tuple[Tensor, dict[str, float]]:
        """Weighted total (eq. 6 with eq. 10 terms) and per-task logs ``{task: loss}``.

        Tasks absent from the step contribute nothing (for ``adaptive`` not even their ``log sigma^2``
        term, which would otherwise be pulled down without data).
        """
        losses = self.task_losses(batch)
        if not losses:
            raise ValueError("the batch holds no positive pair for any task")
        total = self.weighting.combine(losses)
        logs = {t: float(v.detach()) for t, v in losses.items()}
        return total, logs

    def after_step(self) -> None:
        """Clamp ``log sigma^2`` after each optimiser step (section 5.3)."""
        self.weighting.clamp_()

    def task_state(self) -> dict[str, dict[str, float]]:
        """``{task: {"log_sigma2", "sigma2", "weight"}}`` of the weighting (for logs and task_weights.json)."""
        sig = self.weighting.sigma2()
        weights = self.weighting.weights()
        return {t: {"log_sigma2": float(np.log(sig[t])), "sigma2": sig[t], "weight": weights[t]} for t in sig}

    # ----------------------------------------------------------------------------------------- outputs

    @torch.no_grad()
    def embeddings(self, view: str) -> npt.NDArray[np.float32]:
        """Input vectors ``v`` of a view, ``[|vocab|, dim]`` float32."""
        return self._table(self.inputs, view).weight.detach().cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def context(self, view: str) -> npt.NDArray[np.float32]:
        """Output vectors ``v'`` of a view, ``[|vocab|, dim]`` float32."""
        return self._table(self.outputs, view).weight.detach().cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def relational(self, rel: str, chunk: int = 65536) -> dict[str, npt.NDArray[np.float32]]:
        """``sigma(W e)`` for every row of both views of ``rel`` (the relational embeddings of section 3.4)."""
        weight = self.W[rel].detach()
        out: dict[str, npt.NDArray[np.float32]] = {}
        for view in self.relation_views[rel]:
            emb = self._table(self.inputs, view).weight
            parts = [
                project(weight, emb[lo : lo + chunk]).cpu().numpy() for lo in range(0, emb.shape[0], chunk)
            ]
            out[view] = np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)
        return out
