"""Task weighting strategies (section 3.5, equation 10; section 5.3), chosen by name from a registry.

Every strategy is an ``nn.Module`` with ``combine(losses) -> total``:

- ``adaptive``: one learned ``log sigma_t^2`` per task, ``total = sum_t L_t / sigma_t^2 + log sigma_t^2``
  (equation 10). After every optimiser step :meth:`clamp_` sets ``log sigma^2 := max(log sigma^2,
  log min_sigma2)`` (section 5.3: "similar to gradient clipping", weights at most ``1 / 0.05 = 20``).
- ``bounded``: ``adaptive`` whose every other task's weight is capped at ``max_weight_ratio`` times the
  instance-view task's current weight. Uncertainty weighting gives a task the weight ``~1 / L_t``, so an
  easy task (the alignment, a near-separable classification) ends up outweighing the item task it is
  meant to help; the cap keeps the learned weights but bounds how far an auxiliary task can lead.
- ``uniform``: ``total = sum_t L_t``.
- ``static``: ``total = sum_t w_t L_t`` with fixed weights (section 5.3: 0.05 for the instance-view task,
  1 for the others).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn


class TaskWeighting(nn.Module):
    """Base class; ``tasks`` fixes the order of the tasks."""

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__()
        if not tasks or len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks must be non-empty and unique, got {list(tasks)}")
        self.tasks = list(tasks)

    def _stack(self, losses: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Losses of the tasks present (a step may lack a task) and their positions in ``tasks``."""
        unknown = [t for t in losses if t not in self.tasks]
        if unknown:
            raise KeyError(f"losses for unknown tasks {unknown}; valid: {self.tasks}")
        present = [i for i, t in enumerate(self.tasks) if t in losses]
        if not present:
            raise ValueError("combine() needs the loss of at least one task")
        stacked = torch.stack([losses[self.tasks[i]] for i in present])
        return stacked, torch.tensor(present, dtype=torch.long, device=stacked.device)

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        """Weighted total over the tasks present in ``losses`` (absent tasks add nothing)."""
        raise NotImplementedError

    def clamp_(self) -> None:
        """Project parameters back to their allowed range (no-op unless learned)."""

    def sigma2(self) -> dict[str, float]:
        """sigma_t^2 per task (1 / weight for fixed strategies)."""
        return {t: 1.0 / w for t, w in self.weights().items()}

    def log_sigma2(self) -> dict[str, float]:
        return {t: math.log(s) for t, s in self.sigma2().items()}

    def weights(self) -> dict[str, float]:
        raise NotImplementedError

    def task_parameter(self, task: str) -> tuple[nn.Parameter, int] | None:
        """The learned entry ``(parameter, flat index)`` of ``task``'s weight, or ``None`` if fixed."""
        return None


class AdaptiveWeighting(TaskWeighting):
    """Equation 10 with learned ``log sigma^2`` clamped at ``log(min_sigma2)``."""

    def __init__(
        self, tasks: Sequence[str], *, min_sigma2: float = 0.05, init_log_sigma2: float = 0.0
    ) -> None:
        super().__init__(tasks)
        if min_sigma2 <= 0:
            raise ValueError(f"min_sigma2 must be > 0, got {min_sigma2}")
        self.min_log_sigma2 = math.log(min_sigma2)
        start = max(init_log_sigma2, self.min_log_sigma2)
        self.log_sigma2_param = nn.Parameter(torch.full((len(self.tasks),), float(start)))

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        stacked, idx = self._stack(losses)
        log_sigma2 = self.log_sigma2_param[idx]
        return (stacked * torch.exp(-log_sigma2) + log_sigma2).sum()

    @torch.no_grad()
    def clamp_(self) -> None:
        self.log_sigma2_param.clamp_(min=self.min_log_sigma2)

    def task_parameter(self, task: str) -> tuple[nn.Parameter, int] | None:
        return self.log_sigma2_param, self.tasks.index(task)

    def weights(self) -> dict[str, float]:
        values = torch.exp(-self.log_sigma2_param.detach()).tolist()
        return dict(zip(self.tasks, values, strict=True))

    def sigma2(self) -> dict[str, float]:
        values = torch.exp(self.log_sigma2_param.detach()).tolist()
        return dict(zip(self.tasks, values, strict=True))


class BoundedWeighting(AdaptiveWeighting):
    """:class:`AdaptiveWeighting` with ``w_t <= max_weight_ratio * w_instance`` for every other task.

    The cap uses the instance task's weight without its gradient, so the cap never pushes the instance
    task's own ``log sigma^2``; a capped task's ``L_t`` term has no gradient into its ``log sigma^2``.
    """

    def __init__(
        self,
        tasks: Sequence[str],
        *,
        instance_task: str,
        max_weight_ratio: float,
        min_sigma2: float = 0.05,
        init_log_sigma2: float = 0.0,
    ) -> None:
        super().__init__(tasks, min_sigma2=min_sigma2, init_log_sigma2=init_log_sigma2)
        if instance_task not in self.tasks:
            raise ValueError(f"instance task {instance_task!r} is not among {self.tasks}")
        if not max_weight_ratio > 0:
            raise ValueError(f"max_weight_ratio must be > 0, got {max_weight_ratio}")
        self.instance_index = self.tasks.index(instance_task)
        self.max_weight_ratio = float(max_weight_ratio)

    def _effective(self) -> Tensor:
        """Weights of every task after the cap, ``[n_tasks]``."""
        weights = torch.exp(-self.log_sigma2_param)
        cap = self.max_weight_ratio * weights[self.instance_index].detach()
        is_other = torch.ones_like(weights, dtype=torch.bool)
        is_other[self.instance_index] = False
        return torch.where(is_other, torch.minimum(weights, cap), weights)

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        stacked, idx = self._stack(losses)
        return (stacked * self._effective()[idx] + self.log_sigma2_param[idx]).sum()

    def weights(self) -> dict[str, float]:
        return dict(zip(self.tasks, self._effective().detach().tolist(), strict=True))

    # sigma^2 of the effective (capped) weights, as for fixed strategies
    sigma2 = TaskWeighting.sigma2


class FixedWeighting(TaskWeighting):
    """``sum_t w_t L_t`` with constant weights (``uniform``: all 1; ``static``: from config)."""

    fixed: Tensor

    def __init__(self, tasks: Sequence[str], weights: Mapping[str, float]) -> None:
        super().__init__(tasks)
        for t in self.tasks:
            if not weights.get(t, 0) > 0:
                raise ValueError(f"static weight of task {t!r} must be > 0, got {weights.get(t)}")
        self.register_buffer("fixed", torch.tensor([float(weights[t]) for t in self.tasks]))

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        stacked, idx = self._stack(losses)
        return (stacked * self.fixed[idx]).sum()

    def weights(self) -> dict[str, float]:
        return dict(zip(self.tasks, self.fixed.tolist(), strict=True))


def paper_static_weights(
    tasks: Sequence[str], instance_task: str, overrides: Mapping[str, float]
) -> dict[str, float]:
    """Section 5.3: 0.05 for the instance-view task, 1 for every other task; ``overrides`` win."""
    unknown = set(overrides) - set(tasks)
    if unknown:
        raise ValueError(f"static_weights names unknown tasks {sorted(unknown)}; valid: {list(tasks)}")
    weights = {t: (0.05 if t == instance_task else 1.0) for t in tasks}
    weights.update(overrides)
    return weights


WeightingFactory = Callable[..., TaskWeighting]


def _adaptive(
    tasks: Sequence[str], *, min_sigma2: float, init_log_sigma2: float, **_: object
) -> TaskWeighting:
    return AdaptiveWeighting(tasks, min_sigma2=min_sigma2, init_log_sigma2=init_log_sigma2)


def _bounded(
    tasks: Sequence[str],
    *,
    instance_task: str,
    max_weight_ratio: float,
    min_sigma2: float,
    init_log_sigma2: float,
    **_: object,
) -> TaskWeighting:
    return BoundedWeighting(
        tasks,
        instance_task=instance_task,
        max_weight_ratio=max_weight_ratio,
        min_sigma2=min_sigma2,
        init_log_sigma2=init_log_sigma2,
    )


def _uniform(tasks: Sequence[str], **_: object) -> TaskWeighting:
    return FixedWeighting(tasks, {t: 1.0 for t in tasks})


def _static(
    tasks: Sequence[str], *, instance_task: str, static_weights: Mapping[str, float], **_: object
) -> TaskWeighting:
    return FixedWeighting(tasks, paper_static_weights(tasks, instance_task, static_weights))


WEIGHTINGS: dict[str, WeightingFactory] = {
    "adaptive": _adaptive,
    "bounded": _bounded,
    "uniform": _uniform,
    "static": _static,
}


def make_weighting(
    name: str,
    tasks: Sequence[str],
    *,
    instance_task: str,
    static_weights: Mapping[str, float] | None = None,
    min_sigma2: float = 0.05,
    init_log_sigma2: float = 0.0,
    max_weight_ratio: float = 0.1,
) -> TaskWeighting:
    """Build the strategy registered as ``name``; an unknown name lists the valid ones."""
    if name not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {name!r}; valid: {', '.join(WEIGHTINGS)}")
    return WEIGHTINGS[name](
        tasks,
        instance_task=instance_task,
        static_weights=dict(static_weights or {}),
        min_sigma2=min_sigma2,
        init_log_sigma2=init_log_sigma2,
        max_weight_ratio=max_weight_ratio,
    )
