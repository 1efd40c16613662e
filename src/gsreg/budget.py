"""A task-loss budget: penalty weights set during training so that GSR costs at most a
stated share of the task loss.

    reg = GraphRegularizer(model, {"decoder.0": g}, budget=0.05, warmup_steps=500)
    loss = task_loss + reg.penalty(); loss.backward(); opt.step(); reg.step(task_loss)

Training with a budget ``b`` solves the constrained problem

    minimise  penalty(θ)   subject to   task(θ) <= (1 + b) * reference

by its Lagrangian, in the manner of GECO (Rezende & Viola 2018, "Taming VAEs"): the
weight λ of the penalty is the inverse of the constraint's multiplier and moves
multiplicatively against the measured constraint ``c = ema(task) / reference - 1 - b``
(the relative over- or under-spend). As a plain integral update rings when the loss
answers a new weight only after some steps, λ follows a proportional-integral law (the
damped multiplier updates of Sohrabi et al. 2024, "On PI controllers for updating
Lagrange multipliers"): ``I -= clamp(INTEGRAL_GAIN * c, +-MAX_STEP)`` every step and
``log λ = log λ_0 + I - PROPORTIONAL_GAIN * c``. The task loss is averaged by an
exponential moving average over about :data:`EMA_STEPS` steps, as GECO averages its
constraint.

The reference is the task loss of the same model without the penalty: the moving average
of the task loss at the end of a warm-up at λ = 0 (``warmup_steps``, at least
:data:`MIN_WARMUP_STEPS`). A model that is still improving at the end of the warm-up has
a reference above its eventual λ = 0 loss, and the budget is then spent against that
higher loss: warm up until the loss has flattened (the estimators train the whole λ = 0
run first and spend the budget in a fine-tuning phase after it), or pass ``reference=``,
a task loss measured elsewhere.

The first weight of each layer makes its weighted penalty ``b * reference / n_layers``
(the whole budget, spread over the layers, as if the penalty were paid in task loss);
all layers then move by one common factor ``exp(log_scale)``, bounded to
``exp(+-`` :data:`MAX_LOG_SCALE` ``)`` so that the multiplier never diverges. Everything
stays on the device: no host syncs per step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ._checks import check_budget

#: steps over which the task loss is averaged (the moving average's time constant)
EMA_STEPS = 25
#: change of the integral term of log λ per step for an over- or under-spend of the
#: whole task loss (a 4% underspend raises λ by e every 50 steps) ...
INTEGRAL_GAIN = 0.5
#: ... and at most this much per step, however large the spend (a slew limit: the loss
#: answers a new weight only after tens of steps, and a faster multiplier swings)
MAX_STEP = 0.05
#: the proportional term of log λ per unit of over- or under-spend (damps the integral)
PROPORTIONAL_GAIN = 2.0
#: the weights stay within exp(+-MAX_LOG_SCALE) of their first value (about 1e-6 .. 1e6)
MAX_LOG_SCALE = 14.0
#: the least λ = 0 warm-up that measures a reference (a few averaging windows)
MIN_WARMUP_STEPS = 2 * EMA_STEPS
#: a penalty value below this is treated as this when sizing the first weight
_TINY = 1e-12


def reference_loss(epoch_losses: Sequence[float], steps_per_epoch: int) -> float:
    """The task loss at the end of a run without the penalty, from its per-epoch mean task
    losses: the mean over the last epochs that hold at least :data:`EMA_STEPS` steps (all
    epochs of a shorter run)."""
    if not epoch_losses:
        raise ValueError("reference_loss needs the task losses of at least one epoch")
    last = max(1, math.ceil(EMA_STEPS / max(1, steps_per_epoch)))
    tail = list(epoch_losses)[-last:]
    return float(sum(tail) / len(tail))


class TaskBudget:
    """The controller behind ``GraphRegularizer(..., budget=b)``.

    Args:
        budget: the allowed relative increase of the task loss, in (0, 10).
        warmup_steps: steps at λ = 0 whose task loss gives the reference
            (>= :data:`MIN_WARMUP_STEPS` unless ``reference`` is given).
        layers: the names of the penalised layers (each gets its own weight).
        reference: a task loss to budget against instead of the warm-up's (> 0).

    ``update(task_loss)`` once per optimiser step; ``weight(name)`` is the current λ of a
    layer (a 0-d tensor, None before its first penalty); ``size(name, value)`` sets a
    layer's first weight from its first penalty value.
    """

    def __init__(
        self, budget: float, warmup_steps: int, layers: list[str], reference: float | None = None
    ) -> None:
        self.budget = check_budget(budget)
        if reference is not None:
            if (
                isinstance(reference, bool)
                or not isinstance(reference, (int, float))
                or not (math.isfinite(reference) and reference >= 0)
            ):
                raise ValueError(f"reference must be a task loss >= 0, got {reference!r}")
        elif warmup_steps < MIN_WARMUP_STEPS:
            raise ValueError(
                f"a budget measures its reference task loss during a warm-up at weight 0 of "
                f"at least {MIN_WARMUP_STEPS} steps, got warmup_steps={warmup_steps} (or pass "
                "reference=, a task loss measured without the penalty)"
            )
        self.warmup_steps = int(warmup_steps)
        self.layers = list(layers)
        self._fixed_reference = None if reference is None else float(reference)
        self._steps = 0
        self._ema: torch.Tensor | None = None
        self._reference: torch.Tensor | None = None
        self._log_scale: torch.Tensor | None = None
        self._integral: torch.Tensor | None = None
        self._first: dict[str, torch.Tensor] = {}

    # -- state ---------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """Whether the warm-up is over (the penalty is on)."""
        return self._steps >= self.warmup_steps

    @property
    def reference(self) -> torch.Tensor | None:
        return self._reference

    def weight(self, name: str) -> torch.Tensor | None:
        """λ of layer ``name`` (0-d tensor); None during the warm-up or before the layer's
        first penalty."""
        first = self._first.get(name)
        if first is None or not self.active or self._log_scale is None:
            return None
        return first * self._log_scale.exp()

    def size(self, name: str, value: torch.Tensor) -> None:
        """Set layer ``name``'s first weight from its first penalty ``value`` (0-d), so
        that the weighted penalty is ``budget * reference / n_layers``."""
        if name in self._first or self._reference is None:
            return
        share = self.budget * self._reference / len(self.layers)
        self._first[name] = (share / value.detach().float().clamp_min(_TINY)).reshape(())
        if self._log_scale is None:
            self._log_scale = torch.zeros((), device=value.device)
            self._integral = torch.zeros((), device=value.device)

    def update(self, task_loss: torch.Tensor | float) -> None:
        """One optimiser step: average the task loss; at the end of the warm-up fix the
        reference; afterwards move the weights against the constraint."""
        loss = torch.as_tensor(task_loss).detach().float().reshape(())
        self._steps += 1
        if self._ema is None:
            self._ema = torch.nan_to_num(loss, nan=0.0, posinf=0.0)
        else:
            # the plain mean until EMA_STEPS losses are in, then the moving average; a
            # non-finite loss is left out (it must not poison the multiplier)
            alpha = max(1.0 / self._steps, 1.0 / EMA_STEPS)
            self._ema = torch.where(
                torch.isfinite(loss), torch.lerp(self._ema, loss, alpha), self._ema
            )
        if self._reference is None and self._steps >= self.warmup_steps:
            ref = self._fixed_reference
            reference = self._ema.clone() if ref is None else torch.full_like(loss, ref)
            # a task solved exactly leaves nothing to spend: the weights go to their floor
            self._reference = reference.clamp_min(_TINY)
            return
        if self._log_scale is not None and self._steps > self.warmup_steps:
            c = self._ema / self._reference - 1.0 - self.budget
            limit = MAX_LOG_SCALE
            step = (INTEGRAL_GAIN * c).clamp(-MAX_STEP, MAX_STEP)
            self._integral = (self._integral - step).clamp(-limit, limit)
            self._log_scale = (self._integral - PROPORTIONAL_GAIN * c).clamp(-limit, limit)

    def cost(self) -> torch.Tensor | None:
        """The moving average of the task loss over the reference, minus 1 (0-d tensor;
        None before the reference)."""
        if self._reference is None:
            return None
        return self._ema / self._reference - 1.0

    def at_floor(self) -> torch.Tensor | None:
        """1.0 when the weights sit at their lower bound (the budget cannot be met by any
        weight: even the least one costs more), else 0.0 (0-d tensor)."""
        if self._log_scale is None:
            return None
        return (self._log_scale <= -MAX_LOG_SCALE + 1e-6).float()

    def summary(self) -> dict:
        """Plain numbers for reports (reads tensors back: call at the end, not per step)."""
        cost = self.cost()
        floor = self.at_floor()
        return {
            "budget": self.budget,
            "reference": None if self._reference is None else float(self._reference),
            "cost": None if cost is None else float(cost),
            "weights": {n: float(w) for n in self.layers if (w := self.weight(n)) is not None},
            "at_floor": bool(floor) if floor is not None else False,
            "met": None if cost is None else float(cost) <= self.budget,
        }

    def state_dict(self) -> dict:
        def num(t):
            return None if t is None else float(t)

        return {
            "budget": self.budget,
            "warmup_steps": self.warmup_steps,
            "steps": self._steps,
            "ema": num(self._ema),
            "reference": num(self._reference),
            "log_scale": num(self._log_scale),
            "integral": num(self._integral),
            "first": {n: float(v) for n, v in self._first.items()},
        }

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        def ten(x):
            return None if x is None else torch.tensor(float(x), device=device)

        self._steps = int(state["steps"])
        self._ema = ten(state["ema"])
        self._reference = ten(state["reference"])
        self._log_scale = ten(state["log_scale"])
        self._integral = ten(state.get("integral"))
        self._first = {n: ten(v) for n, v in state.get("first", {}).items()}
