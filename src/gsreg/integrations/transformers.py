"""GSR in Hugging Face transformers: a callback that holds a :class:`GraphRegularizer` and a
``Trainer`` that adds its penalty to the loss.

    from gsreg.integrations.transformers import GSRCallback, GSRTrainer

    gsr = GSRCallback({model.transformer.h[0].mlp.c_fc: "grid:8x16"}, weight=1e-3)
    trainer = GSRTrainer(model=model, args=args, train_dataset=data, callbacks=[gsr])
    trainer.train()

The callback builds the regularizer when training starts (``on_train_begin``), steps it
after every optimiser step (``on_optimizer_step``: not while gradients accumulate) and
removes its hooks when training ends. :class:`GSRTrainer` adds ``regularizer.penalty()``
to the loss of every training batch, logs the regularizer's values at the Trainer's
logging steps (means since the last log, read from the device only then) and keeps the
regularizer's state in checkpoints. A Trainer of your own gets the same with
:meth:`GSRCallback.add_penalty` in its ``compute_loss``. Needs ``pip install
gsreg[transformers]``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

try:
    import transformers
except ImportError as err:
    raise ImportError(
        "gsreg.integrations.transformers needs the 'transformers' package: "
        "pip install gsreg[transformers]"
    ) from err

from ..coactivation import CoactivationGraph
from ..graphs import Graph
from ..penalty import GraphPenalty
from ..regularizer import GraphRegularizer
from ._arguments import check_regularizer_arguments

__all__ = ["GSRCallback", "GSRTrainer", "STATE_FILE"]

#: the regularizer's state in a checkpoint folder (``torch.save`` of plain tensors and
#: numbers, read back with ``weights_only=True``)
STATE_FILE = "gsr_state.pt"


class GSRCallback(transformers.TrainerCallback):
    """Graph Spectral Regularization of named layers of a Hugging Face model.

    Args:
        layers: ``{dotted layer name or the module itself: target}`` as for
            :class:`GraphRegularizer` (``{model.transformer.h[0].mlp.c_fc: "grid:8x16"}``);
            names are those of ``model.named_modules()``. A layer's output (B, T, n) is n
            nodes and B x T samples.
        weight: lambda, one float or ``{name or module: float}``.
        **regularizer_kwargs: the other keywords of :class:`GraphRegularizer`
            (``laplacian``, ``normalize``, ``nodes``, ``warmup_steps``, ``decay``, ``budget``).

    Lifecycle: ``on_train_begin`` builds ``GraphRegularizer(model, layers, weight, ...)``
    (state from a resumed checkpoint is loaded into it); ``on_optimizer_step`` calls
    ``regularizer.step(task_loss)`` with the mean task loss of the step's batches;
    ``on_train_end`` removes the hooks. :attr:`regularizer` stays readable afterwards.
    """

    def __init__(
        self,
        layers: Mapping[str | nn.Module, Graph | str | GraphPenalty | CoactivationGraph],
        weight: float | Mapping[str | nn.Module, float] | None = None,
        **regularizer_kwargs: Any,
    ) -> None:
        check_regularizer_arguments(layers, weight, regularizer_kwargs, "GSRCallback")
        self.layers = dict(layers)
        self.weight = weight
        self.regularizer_kwargs = dict(regularizer_kwargs)
        #: the regularizer of the current or the last training run (None before the first)
        self.regularizer: GraphRegularizer | None = None
        self._attached = False
        self._state: dict | None = None  # regularizer state waiting for the next attach
        self._reset_running()

    # -- training events -----------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs) -> None:
        if model is None:
            raise ValueError("GSRCallback: the Trainer passed no model to on_train_begin")
        self._detach()
        reg = GraphRegularizer(model, self.layers, self.weight, **self.regularizer_kwargs)
        if self._state is not None:
            reg.load_state_dict(self._state)
            self._state = None
        self.regularizer = reg
        self._attached = True
        self._reset_running()

    def on_optimizer_step(self, args, state, control, **kwargs) -> None:
        if not self._attached:
            return
        task_loss = None
        if self._task_count:
            task_loss = self._task_sum / self._task_count
        self._task_sum, self._task_count = None, 0
        self.regularizer.step(task_loss)

    def on_train_end(self, args, state, control, **kwargs) -> None:
        self._detach()

    # -- the loss and the logs -------------------------------------------------------------
    def add_penalty(self, loss: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """``loss + scale * regularizer.penalty()`` for a training batch (0-d tensors);
        also records the batch's task loss (for a ``budget``) and its logs (on the device,
        for :meth:`pop_logs`). Outside training it returns ``loss`` unchanged."""
        if not self._attached or not self.regularizer.model.training:
            return loss
        reg = self.regularizer
        task = loss.detach()
        self._task_sum = task if self._task_sum is None else self._task_sum + task
        self._task_count += 1
        total = loss + scale * reg.penalty()
        for key, value in reg.logs().items():
            if isinstance(value, torch.Tensor):
                running = self._sums.get(key)
                self._sums[key] = value if running is None else running + value
                self._counts[key] = self._counts.get(key, 0) + 1
            else:
                self._numbers[key] = float(value)
        return total

    def pop_logs(self) -> dict[str, float]:
        """Means of the tensor logs (penalties, RMS activations) over the batches since the
        last call, read from the device now, and the latest numbers (weights, component
        counts); ``{}`` when no training batch ran since."""
        if not self._sums and not self._numbers:
            return {}
        out = {key: float(total / self._counts[key]) for key, total in self._sums.items()}
        out.update(self._numbers)
        self._sums, self._counts, self._numbers = {}, {}, {}
        return out

    # -- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``GraphRegularizer.state_dict()`` of the attached (or last) regularizer, or the
        state loaded for the next run; ``{}`` before any."""
        if self.regularizer is not None and self._attached:
            return self.regularizer.state_dict()
        return {} if self._state is None else dict(self._state)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`: now when attached, else at the next
        ``on_train_begin``."""
        if not state_dict:
            return
        if self._attached:
            self.regularizer.load_state_dict(state_dict)
        else:
            self._state = dict(state_dict)

    def save(self, folder: str | os.PathLike) -> None:
        """Write :meth:`state_dict` to ``folder / STATE_FILE``."""
        torch.save(self.state_dict(), os.path.join(folder, STATE_FILE))

    def load(self, folder: str | os.PathLike) -> None:
        """Read ``folder / STATE_FILE`` (if there is one) with :meth:`load_state_dict`."""
        path = os.path.join(folder, STATE_FILE)
        if os.path.exists(path):
            self.load_state_dict(torch.load(path, weights_only=True))

    # -- helpers -------------------------------------------------------------------------
    def _reset_running(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        self._numbers: dict[str, float] = {}
        self._task_sum: torch.Tensor | None = None
        self._task_count = 0

    def _detach(self) -> None:
        if not self._attached:
            return
        self._state = self.regularizer.state_dict()
        self.regularizer.remove()
        self._attached = False

    def __repr__(self) -> str:
        names = ", ".join(map(repr, self.layers))
        return f"GSRCallback([{names}], weight={self.weight!r})"


class GSRTrainer(transformers.Trainer):
    """A ``transformers.Trainer`` whose training loss includes the GSR penalty of the
    :class:`GSRCallback` in its ``callbacks`` (exactly one).

    - ``compute_loss``: the model's loss plus ``regularizer.penalty()`` of the batch (divided
      by the gradient accumulation steps where the Trainer does not divide the loss itself,
      so that a step's penalty is the mean over its batches);
    - ``log``: adds :meth:`GSRCallback.pop_logs` to the training logs (``gsr/<layer>``,
      ``gsr/<layer>/act_rms``, ``gsr/<layer>/weight``, ...);
    - checkpoints hold the regularizer's state in ``STATE_FILE``, restored by
      ``train(resume_from_checkpoint=...)``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        found = [c for c in self.callback_handler.callbacks if isinstance(c, GSRCallback)]
        if len(found) != 1:
            raise ValueError(
                f"GSRTrainer needs exactly one GSRCallback in callbacks, got {len(found)}"
            )
        self.gsr = found[0]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, True, num_items_in_batch)
        loss, outputs = result
        if model.training:  # evaluation calls compute_loss too
            loss = self.gsr.add_penalty(loss, self._penalty_scale(num_items_in_batch))
        return (loss, outputs) if return_outputs else loss

    def _penalty_scale(self, num_items_in_batch) -> float:
        """1 / gradient accumulation steps when the model's loss is already scaled for them
        (the Trainer then does not divide), else 1 (the Trainer divides the sum)."""
        scaled = self.loss_is_scaled_for_ga
        if scaled is None:
            scaled = (
                self.model_accepts_loss_kwargs and num_items_in_batch is not None
            ) or self.compute_loss_func is not None
        return 1.0 / self.current_gradient_accumulation_steps if scaled else 1.0

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log (evaluation logs carry eval_* keys)
            logs = {**logs, **self.gsr.pop_logs()}
        super().log(logs, start_time)

    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)
        folder = os.path.join(
            self._get_output_dir(trial=trial),
            f"{transformers.trainer_utils.PREFIX_CHECKPOINT_DIR}-{self.state.global_step}",
        )
        if self.args.should_save and os.path.isdir(folder):
            self.gsr.save(folder)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        self.gsr.load(resume_from_checkpoint)
