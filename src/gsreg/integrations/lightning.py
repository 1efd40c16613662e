"""GSR in Lightning: a callback that puts a :class:`GraphRegularizer` on a LightningModule.

    from gsreg.integrations.lightning import GSRCallback

    class AE(L.LightningModule):
        def training_step(self, batch, batch_idx):
            loss = F.mse_loss(self.model(batch[0]), batch[0])
            return loss + self.gsr.penalty()       # the one line GSR needs

    trainer = L.Trainer(callbacks=[GSRCallback({"model.decoder.0": "grid:8x8"}, weight=1e-3)])

The callback builds the regularizer when fitting starts (``setup``, in every process of a
distributed run), sets it as ``pl_module.gsr``, steps it once per optimiser step, logs its
per-layer values and saves its state in checkpoints. Needs ``pip install gsreg[lightning]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

try:
    import lightning.pytorch as pl
except ImportError as err:
    raise ImportError(
        "gsreg.integrations.lightning needs the 'lightning' package: pip install gsreg[lightning]"
    ) from err

from ..coactivation import CoactivationGraph
from ..graphs import Graph
from ..penalty import GraphPenalty
from ..regularizer import GraphRegularizer
from ._arguments import check_regularizer_arguments

__all__ = ["GSRCallback"]

_FIT = "fit"


class GSRCallback(pl.Callback):
    """Graph Spectral Regularization of named layers of a LightningModule.

    Args:
        layers: ``{dotted layer name: target}`` as for :class:`GraphRegularizer`; names are
            those of ``pl_module.named_modules()`` (e.g. ``"model.decoder.0"`` for a network
            held as ``self.model``). A target is a :class:`Graph`, a spec string
            (``"grid:8x8"``), a :class:`GraphPenalty` or a :class:`CoactivationGraph`.
        weight: lambda, one float or ``{name: float}``.
        attribute: the LightningModule attribute that holds the regularizer during fitting
            (default ``"gsr"``: ``training_step`` adds ``self.gsr.penalty()`` to its loss).
        **regularizer_kwargs: the other keywords of :class:`GraphRegularizer`
            (``laplacian``, ``normalize``, ``nodes``, ``warmup_steps``, ``decay``).

    Lifecycle (fit only; validate/test/predict leave the module untouched):

    - ``setup``: builds ``GraphRegularizer(pl_module, layers, weight, ...)`` and sets it as
      ``pl_module.<attribute>``; state from a checkpoint, or from an earlier fit of this
      callback, is loaded into it.
    - ``on_train_batch_start``: starts a fresh collection of penalties (``training_step``
      need not call ``pl_module.forward``).
    - ``on_train_batch_end``: logs ``regularizer.logs()`` with ``pl_module.log`` (on_step,
      not on the progress bar, not synchronised across ranks): the tensors (penalties,
      RMS activations) as they are, so no host syncs, and the numbers (weights, component
      counts) when they change; then calls ``regularizer.step(task_loss)`` if
      ``trainer.global_step`` advanced, i.e. if an optimiser stepped on this batch (not
      while gradients accumulate). ``task_loss`` is ``outputs["task_loss"]`` when
      ``training_step`` returns a dict with it, which a ``budget=`` needs.
    - ``teardown`` (or an exception): removes the hooks and the attribute. The regularizer
      stays readable as :attr:`regularizer` (learned graphs, step count).

    ``state_dict()`` / ``load_state_dict()`` carry ``GraphRegularizer.state_dict()`` (the
    step count and the learned graphs with their buffers) in Lightning checkpoints.
    """

    def __init__(
        self,
        layers: Mapping[str, Graph | str | GraphPenalty | CoactivationGraph],
        weight: float | Mapping[str, float] | None = None,
        *,
        attribute: str = "gsr",
        **regularizer_kwargs: Any,
    ) -> None:
        check_regularizer_arguments(layers, weight, regularizer_kwargs, "GSRCallback")
        if not (isinstance(attribute, str) and attribute.isidentifier()):
            raise ValueError(f"GSRCallback: attribute must be an identifier, got {attribute!r}")
        self.layers = dict(layers)
        self.weight = weight
        self.attribute = attribute
        self.regularizer_kwargs = dict(regularizer_kwargs)
        #: the regularizer of the current or the last fit (None before the first)
        self.regularizer: GraphRegularizer | None = None
        self._attached = False
        self._state: dict | None = None  # regularizer state waiting for the next attach
        self._last_global_step = 0
        self._numbers: dict[str, float] = {}  # last logged weights and component counts

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def state_key(self) -> str:
        return self._generate_state_key(layers=sorted(self.layers), attribute=self.attribute)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == _FIT:
            self._attach(pl_module)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == _FIT:
            self._detach(pl_module)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._detach(pl_module)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after checkpoint restore: global_step is the resumed one
        self._last_global_step = trainer.global_step

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._attached:
            _start_collection(self.regularizer)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if not self._attached:
            return
        reg = self.regularizer
        for key, value in reg.logs().items():
            if not isinstance(value, torch.Tensor):
                # a Python number becomes a device tensor inside pl_module.log (a blocking
                # copy on CUDA): log weights and component counts only when they change
                value = float(value)
                if self._numbers.get(key) == value:
                    continue
                self._numbers[key] = value
            pl_module.log(key, value, on_step=True, on_epoch=False, prog_bar=False)
        # global_step counts optimiser steps: it stands still while gradients accumulate,
        # and is the same on every rank, so learned graphs (collectives) update in lockstep
        if trainer.global_step > self._last_global_step:
            self._last_global_step = trainer.global_step
            task_loss = outputs.get("task_loss") if isinstance(outputs, Mapping) else None
            reg.step(task_loss)

    # -- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``GraphRegularizer.state_dict()`` of the attached (or last) regularizer, or the
        state loaded for the next fit; ``{}`` before any."""
        if self._attached:
            return self.regularizer.state_dict()
        return {} if self._state is None else dict(self._state)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`: now when attached, else at the next ``setup``."""
        if not state_dict:
            return
        if self._attached:
            self.regularizer.load_state_dict(state_dict)
        else:
            self._state = dict(state_dict)

    def __getstate__(self) -> dict[str, Any]:
        # pickled for spawned processes (strategy="ddp_spawn"): hooks do not travel, state does
        state = self.__dict__.copy()
        state["_state"] = self.state_dict() or None
        state["regularizer"] = None
        state["_attached"] = False
        return state

    # -- helpers -------------------------------------------------------------------------
    def _attach(self, pl_module: pl.LightningModule) -> None:
        existing = getattr(pl_module, self.attribute, None)
        if existing is not None and not (
            self.regularizer is not None and existing is self.regularizer
        ):
            raise ValueError(
                f"GSRCallback: the LightningModule already has an attribute "
                f"{self.attribute!r} ({type(existing).__name__}); pass GSRCallback(..., "
                "attribute='another_name')"
            )
        if self._attached:  # a fit that ended without teardown
            self._detach(pl_module)
        reg = GraphRegularizer(pl_module, self.layers, self.weight, **self.regularizer_kwargs)
        if self._state is not None:
            reg.load_state_dict(self._state)
            self._state = None
        setattr(pl_module, self.attribute, reg)
        self.regularizer = reg
        self._numbers = {}
        self._attached = True

    def _detach(self, pl_module: pl.LightningModule) -> None:
        if not self._attached:
            return
        reg = self.regularizer
        self._state = reg.state_dict()
        reg.remove()
        if getattr(pl_module, self.attribute, None) is reg:
            delattr(pl_module, self.attribute)
        self._attached = False

    def __repr__(self) -> str:
        names = ", ".join(map(repr, self.layers))
        return f"GSRCallback([{names}], weight={self.weight!r}, attribute={self.attribute!r})"


def _start_collection(reg: GraphRegularizer) -> None:
    """Drop the penalties of the previous batch. The regularizer does this itself when the
    module it is attached to is called; Lightning calls ``training_step`` instead."""
    reg.clear()
