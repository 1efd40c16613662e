"""L1 and L2 activity penalties on one layer: the baseline GSR is compared with, and the
companion terms the authors of GSR also used (a sparsity or size penalty beside the
graph penalty).

    reg = ActivityRegularizer(model, "encoder.latent", "l1", weight=1e-3)
    loss = task_loss + reg.penalty(); loss.backward(); optimizer.step(); reg.step()

It has :class:`gsreg.GraphRegularizer`'s training interface (``penalty``, ``step``,
``logs``, ``remove``), so :func:`gsreg.training.fit` trains with either.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ActivityRegularizer"]


class ActivityRegularizer:
    """L1 or L2 activity penalty on one layer's output, with GSR's training interface.

    ``penalty()`` is ``weight * mean_b sum_i |z_bi|`` (``"l1"``) or
    ``weight * mean_b sum_i z_bi^2`` (``"l2"``) of the layer's output (B, n) in the last
    forward; like :class:`gsreg.GraphRegularizer` it collects only in training mode with
    autograd on. ``step()`` does nothing; ``logs()`` gives ``{"<kind>/<layer>": value}``.
    """

    def __init__(self, model: nn.Module, layer: str, kind: str, weight: float) -> None:
        if kind not in ("l1", "l2"):
            raise ValueError(f"kind must be 'l1' or 'l2', got {kind!r}")
        self.layer, self.kind, self.weight = layer, kind, float(weight)
        self._z: torch.Tensor | None = None
        self._last: torch.Tensor | float = 0.0
        self._handle = model.get_submodule(layer).register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs, output: torch.Tensor) -> None:
        self._z = output if module.training and torch.is_grad_enabled() else None

    def penalty(self) -> torch.Tensor:
        z, self._z = self._z, None
        if z is None:
            return torch.zeros(())
        value = z.abs().sum(dim=1).mean() if self.kind == "l1" else z.pow(2).sum(dim=1).mean()
        self._last = value.detach()
        return self.weight * value

    def step(self) -> None:
        pass

    def logs(self) -> dict[str, torch.Tensor | float]:
        return {f"{self.kind}/{self.layer}": self._last}

    def remove(self) -> None:
        self._handle.remove()
