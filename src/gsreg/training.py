"""A lean training loop for reconstruction and classification.

Dense data (arrays, tensors) are moved to the device once; sparse data (scipy sparse
matrices, or any row-indexable matrix whose row blocks have ``.toarray()``) stay on the
host and each batch is densified (rows by index) and moved to the device. Each epoch
draws a permutation from a seeded ``torch.Generator`` and takes batches by index. Losses
and regularizer logs are accumulated as device tensors and read back once per epoch, and
one flag every :data:`GUARD_EVERY` steps (no per-step host syncs).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ._util import check_positive_int as _check_positive_int
from ._util import model_device as _model_device

TASKS = ("reconstruction", "classification")
GUARD_EVERY = 100
"""Optimiser steps between two checks of the loss (one host sync each): a non-finite loss
stops training at the next check, and the model and optimiser go back to their state at
the last good check, at most this many steps (or one epoch) before."""
ArrayLike = np.ndarray | torch.Tensor | sp.spmatrix | sp.sparray
Transform = Callable[[torch.Tensor], torch.Tensor]


class Regularizer(Protocol):
    """What `fit` needs from a regularizer (e.g. ``gsreg.GraphRegularizer``). ``step``
    gets the step's task loss when it takes an argument (a budget needs it); a
    ``step()`` without parameters is called as such."""

    def penalty(self) -> torch.Tensor | float: ...

    def step(self, task_loss: torch.Tensor | None = None) -> None: ...

    def logs(self) -> dict[str, torch.Tensor | float]: ...


@dataclass
class History:
    """Per-epoch records of a `fit` run.

    Each entry of ``epochs`` has ``epoch`` (1-based), ``train_loss`` (task loss + penalty),
    ``task_loss``, ``penalty``, ``seconds``, ``val_*`` metrics when validation data were
    given, and the epoch means of the regularizer's logs under their own names.
    ``History(**h.to_dict())`` round-trips.
    """

    epochs: list[dict[str, Any]] = field(default_factory=list)

    def __getitem__(self, key: str) -> list[Any]:
        """Values of ``key`` over epochs (``None`` where an epoch lacks it)."""
        if not any(key in e for e in self.epochs):
            raise KeyError(f"no epoch records {key!r}")
        return [e.get(key) for e in self.epochs]

    def __len__(self) -> int:
        return len(self.epochs)

    @property
    def last(self) -> dict[str, Any]:
        """The record of the last epoch (empty before training)."""
        return self.epochs[-1] if self.epochs else {}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able copy: ``{"epochs": [...]}``."""
        return {"epochs": [dict(e) for e in self.epochs]}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; other names are checked for availability."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(dev)!r} requested but CUDA is not available")
    return dev


def fit(
    model: nn.Module,
    X: ArrayLike,
    y: ArrayLike | None = None,
    *,
    task: str = "reconstruction",
    regularizer: Regularizer | None = None,
    epochs: int = 10,
    batch_size: int = 500,
    lr: float = 1e-3,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    device: str | torch.device = "auto",
    seed: int = 0,
    X_val: ArrayLike | None = None,
    y_val: ArrayLike | None = None,
    progress: bool = True,
    desc: str | None = None,
    transform: Transform | None = None,
) -> History:
    """Train ``model`` with Adam on X (N, d) or (N, C, H, W) and return its `History`.

    ``task="reconstruction"``: MSE between ``model(x)`` and ``x`` (y is ignored);
    ``"classification"``: cross-entropy between logits (B, K) and labels y (N,).
    With a ``regularizer``, the loss is ``task_loss + regularizer.penalty()`` and
    ``regularizer.step(task_loss)`` runs after every optimizer step (a budget sets its
    weights from the task loss). ``seed`` fixes batch order and
    the global torch RNG (dropout, noise); the model's initial weights are the caller's.
    The model is moved to ``device`` and left in the train/eval mode it had.
    Raises RuntimeError when a loss was not finite (checked every :data:`GUARD_EVERY`
    steps and at the end of each epoch), after putting the model and optimiser back at
    their state at the last good check.

    X may be scipy sparse (or another host matrix whose row blocks have ``.toarray()``):
    it stays on the host and each batch is densified and moved to the device, with the
    same batches and results as for the dense copy of the data. ``transform`` (optional)
    maps each batch on the device before the model sees it (e.g. centring and scaling);
    it gets the batch in X's float dtype (float64 stays float64, else float32) and its
    result is used as float32 (also as the reconstruction target).
    """
    _check_task(task)
    _check_positive_int("epochs", epochs)
    _check_positive_int("batch_size", batch_size)
    dev = resolve_device(device)
    X_t, y_t = _as_batches(X, y, task, dev, "X", "y", transform)
    if X_val is not None:
        X_val, y_val = _as_batches(X_val, y_val, task, dev, "X_val", "y_val", transform)
    model.to(dev)
    was_training = model.training
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, eps=eps, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    history = History()
    bar = tqdm(range(1, epochs + 1), desc=desc or "fit", disable=not progress, unit="epoch")
    step = None if regularizer is None else _step_function(regularizer)
    good = _Snapshot(model, optimizer)
    # dropout and noise draw from torch's global generator: seeded here, and the
    # caller's random stream is restored afterwards
    with seeded(seed, dev):
        try:
            for epoch in bar:
                start = time.perf_counter()
                model.train()
                trace = _train_epoch(
                    model, X_t, y_t, task, regularizer, step, optimizer, batch_size, gen, good
                )
                try:
                    record = {"epoch": epoch, **_finish_epoch(trace, epoch)}
                except RuntimeError as err:
                    good.restore()
                    raise RuntimeError(
                        f"{err}; the model and optimiser are back at their state "
                        f"after step {good.step}"
                    ) from None
                good.take_if_due()
                if X_val is not None:
                    metrics = _evaluate(model, X_val, y_val, task, batch_size, dev)
                    record.update({f"val_{k}": v for k, v in metrics.items()})
                record["seconds"] = time.perf_counter() - start
                history.epochs.append(record)
                bar.set_postfix(_postfix(record), refresh=False)
        finally:
            bar.close()
            model.train(was_training)
    return history


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` intra-op torch threads (None: as they are), then
    restore the previous count."""
    if threads is None:
        yield
        return
    _check_positive_int("threads", threads)
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run the block with torch's global generators (CPU, and ``device``'s if it is a GPU)
    seeded with ``seed``, and restore their previous state afterwards: results are
    reproducible without reseeding the caller's random stream."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


@dataclass
class _EpochTrace:
    """Detached per-step losses (S,), batch sizes and summed regularizer logs of one epoch."""

    task: torch.Tensor
    penalty: torch.Tensor
    batch_sizes: list[int]
    log_sums: dict[str, torch.Tensor]
    log_counts: dict[str, int]


def _train_epoch(
    model: nn.Module,
    X: _Batches,
    y: torch.Tensor | None,
    task: str,
    regularizer: Regularizer | None,
    step: Callable[[torch.Tensor], None] | None,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    gen: torch.Generator,
    good: _Snapshot,
) -> _EpochTrace:
    """One pass over X in random batches. Every :data:`GUARD_EVERY` steps one flag is read
    back: a non-finite loss since the last check ends the pass early (the caller restores
    ``good``), else ``good`` is retaken."""
    perm = torch.randperm(len(X), generator=gen)
    if X.on_device:
        perm = perm.to(X.device)
    task_losses, penalties, batch_sizes = [], [], []
    log_sums: dict[str, torch.Tensor] = {}
    log_counts: dict[str, int] = {}
    for begin in range(0, len(X), batch_size):
        idx = perm[begin : begin + batch_size]
        xb = X.take(idx)
        target = xb if task == "reconstruction" else y[idx.to(y.device)]
        task_loss = _task_loss(model(xb), target, task)
        loss = task_loss
        if regularizer is not None:
            penalty = regularizer.penalty()
            loss = task_loss + penalty
            penalties.append(_detach(penalty, X.device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        task_losses.append(task_loss.detach())
        batch_sizes.append(len(idx))
        if good.count_step():
            recent = torch.stack(task_losses[-GUARD_EVERY:]).sum()
            if penalties:
                recent = recent + torch.stack(penalties[-GUARD_EVERY:]).sum()
            if not bool(torch.isfinite(recent)):
                break
            good.take()
        if regularizer is not None:
            step(task_loss.detach())
            for name, value in regularizer.logs().items():
                value = _detach(value, X.device)
                log_sums[name] = log_sums[name] + value if name in log_sums else value
                log_counts[name] = log_counts.get(name, 0) + 1
    task_t = torch.stack(task_losses)
    return _EpochTrace(
        task=task_t,
        penalty=torch.stack(penalties) if penalties else torch.zeros_like(task_t),
        batch_sizes=batch_sizes,
        log_sums=log_sums,
        log_counts=log_counts,
    )


class _Snapshot:
    """The model's and optimiser's state at the last check whose losses were finite."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model, self.optimizer = model, optimizer
        self.steps = 0
        self.take()

    def count_step(self) -> bool:
        """Count one optimiser step; True when a check is due."""
        self.steps += 1
        return self.steps - self.step >= GUARD_EVERY

    def take(self) -> None:
        self.step = self.steps
        self.params = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.optim = copy.deepcopy(self.optimizer.state_dict())

    def take_if_due(self) -> None:
        """At the end of a checked epoch: retake when the last snapshot is a check old."""
        if self.steps - self.step >= GUARD_EVERY // 2:
            self.take()

    def restore(self) -> None:
        self.model.load_state_dict(self.params)
        self.optimizer.load_state_dict(self.optim)


def _step_function(regularizer: Regularizer) -> Callable[[torch.Tensor], None]:
    """``regularizer.step`` as a function of the task loss (ignored by a ``step()``
    without parameters)."""
    try:
        takes_loss = bool(inspect.signature(regularizer.step).parameters)
    except (TypeError, ValueError):  # no signature to read: assume the documented one
        takes_loss = True
    if takes_loss:
        return regularizer.step
    return lambda task_loss: regularizer.step()


def _finish_epoch(trace: _EpochTrace, epoch: int) -> dict[str, float]:
    """Reads the epoch's tensors back in one go and checks the loss was finite."""
    per_step = torch.stack([trace.task, trace.penalty]).double().cpu()
    names = list(trace.log_sums)
    logs = torch.stack([trace.log_sums[k] for k in names]).double().cpu().tolist() if names else []
    total = per_step.sum(0)
    bad = (~torch.isfinite(total)).nonzero()
    if len(bad):
        step = int(bad[0])
        raise RuntimeError(
            f"non-finite loss in epoch {epoch} at step {step + 1} of {len(total)}"
            f" (task loss {per_step[0, step].item()}, penalty {per_step[1, step].item()})"
        )
    w = torch.tensor(trace.batch_sizes, dtype=torch.float64)
    task_loss, penalty = ((per_step * w).sum(1) / w.sum()).tolist()
    record = {"train_loss": task_loss + penalty, "task_loss": task_loss, "penalty": penalty}
    for name, value in zip(names, logs, strict=True):
        record[name] = value / trace.log_counts[name]
    return record


def evaluate(
    model: nn.Module,
    X: ArrayLike,
    y: ArrayLike | None = None,
    *,
    task: str = "reconstruction",
    batch_size: int = 500,
    device: str | torch.device | None = None,
    transform: Transform | None = None,
) -> dict[str, float]:
    """Metrics of ``model`` on X (N, ...) in eval mode, batch by batch.

    Reconstruction: ``{"mse"}`` (mean over all elements). Classification:
    ``{"accuracy", "loss"}`` (mean cross-entropy). ``device=None`` uses the model's device.
    X and ``transform`` as for :func:`fit` (sparse X is densified batch by batch).
    The model's train/eval mode is restored afterwards.
    """
    _check_task(task)
    _check_positive_int("batch_size", batch_size)
    dev = _model_device(model) if device is None else resolve_device(device)
    X_b, y_t = _as_batches(X, y, task, dev, "X", "y", transform)
    return _evaluate(model, X_b, y_t, task, batch_size, dev)


@torch.no_grad()
def _evaluate(
    model: nn.Module,
    X: _Batches,
    y: torch.Tensor | None,
    task: str,
    batch_size: int,
    dev: torch.device,
) -> dict[str, float]:
    model.to(dev)
    was_training = model.training
    model.eval()
    n_elements = 0
    try:
        total = torch.zeros((), dtype=torch.float64, device=dev)
        correct = torch.zeros((), dtype=torch.int64, device=dev)
        for begin in range(0, len(X), batch_size):
            xb = X.slice(begin, begin + batch_size)
            out = model(xb)
            if task == "reconstruction":
                _check_same_shape(out, xb)
                total += F.mse_loss(out, xb, reduction="sum").double()
                n_elements += xb.numel()
            else:
                yb = y[begin : begin + batch_size]
                total += F.cross_entropy(out, yb, reduction="sum").double()
                correct += (out.argmax(1) == yb).sum()
    finally:
        model.train(was_training)
    if task == "reconstruction":
        return {"mse": total.item() / n_elements}
    return {"accuracy": correct.item() / len(X), "loss": total.item() / len(X)}


def _task_loss(out: torch.Tensor, target: torch.Tensor, task: str) -> torch.Tensor:
    if task == "reconstruction":
        _check_same_shape(out, target)
        return F.mse_loss(out, target)
    return F.cross_entropy(out, target)


def _check_same_shape(out: torch.Tensor, x: torch.Tensor) -> None:
    if out.shape != x.shape:
        raise ValueError(
            f"reconstruction must have the input's shape {tuple(x.shape)}, got {tuple(out.shape)}"
        )


class _Batches:
    """Rows of X by index as float32 tensors on the device: a dense tensor already there
    (``on_device``), or host data (sparse) densified batch by batch."""

    def __init__(self, X, device: torch.device, transform: Transform | None) -> None:
        self.X, self.device, self.transform = X, device, transform
        self.on_device = isinstance(X, torch.Tensor)

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def take(self, idx: torch.Tensor) -> torch.Tensor:
        if self.on_device:
            return self._finish(self.X[idx])
        return self._finish(self._host(idx.numpy()))

    def slice(self, begin: int, end: int) -> torch.Tensor:
        if self.on_device:
            return self._finish(self.X[begin:end])
        return self._finish(self._host(np.arange(begin, min(end, len(self)))))

    def _host(self, idx: np.ndarray) -> torch.Tensor:
        block = dense_rows(self.X, idx)
        keep = self.transform is not None and block.dtype == np.float64
        dtype = np.float64 if keep else np.float32
        return torch.from_numpy(np.ascontiguousarray(block, dtype=dtype)).to(self.device)

    def _finish(self, xb: torch.Tensor) -> torch.Tensor:
        return xb if self.transform is None else self.transform(xb).float()


def is_host_matrix(X: object) -> bool:
    """Whether :func:`fit` keeps X on the host and densifies it batch by batch: scipy
    sparse, or a 2-D row-indexable matrix that is not array-like (e.g. a backed sparse
    dataset whose row blocks have ``.toarray()``)."""
    if sp.issparse(X):
        return True
    if isinstance(X, (np.ndarray, torch.Tensor)) or hasattr(X, "__array__"):
        return False
    return len(getattr(X, "shape", ())) == 2 and hasattr(X, "__getitem__")


def dense_rows(X, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` (B,) of a host matrix X, in that order, as a dense (B, d) array of
    X's dtype; only these rows are densified."""
    idx = np.asarray(idx, dtype=np.int64)
    if sp.issparse(X):
        return _dense(X[idx])
    order = np.argsort(idx, kind="stable")  # backed datasets read increasing indices
    block = _dense(X[idx[order]])
    out = np.empty_like(block)
    out[order] = block
    return out


def _dense(block) -> np.ndarray:
    if hasattr(block, "toarray"):
        return block.toarray()
    if hasattr(block, "to_memory"):  # AnnData's backed sparse datasets
        return block.to_memory().toarray()
    return np.asarray(block)


def _as_batches(
    X: ArrayLike,
    y: ArrayLike | None,
    task: str,
    device: torch.device,
    x_name: str,
    y_name: str,
    transform: Transform | None = None,
) -> tuple[_Batches, torch.Tensor | None]:
    """Validated X (dense: float32 on ``device``; sparse: kept on the host) and, for
    classification, int64 y (N,) on ``device``."""
    if is_host_matrix(X):
        if len(X.shape) != 2:
            raise ValueError(f"{x_name} must be 2-D (N, d), got {len(X.shape)}-D")
        if X.shape[0] == 0:
            raise ValueError(f"{x_name} must contain at least one sample, got shape {X.shape}")
        data = getattr(X, "data", None)
        if sp.issparse(X) and not np.isfinite(data).all():
            raise ValueError(f"{x_name} contains NaN or Inf values")
        return _Batches(X, device, transform), _labels(y, task, device, X.shape[0], x_name, y_name)
    dtype = torch.float32
    if transform is not None and getattr(X, "dtype", None) in (np.float64, torch.float64):
        dtype = torch.float64  # the transform gets full precision, as for sparse batches
    X_t = torch.as_tensor(X, dtype=dtype, device=device)
    if X_t.ndim not in (2, 4):
        raise ValueError(f"{x_name} must be 2-D (N, d) or 4-D (N, C, H, W), got {X_t.ndim}-D")
    if len(X_t) == 0:
        raise ValueError(f"{x_name} must contain at least one sample, got shape {tuple(X_t.shape)}")
    if not torch.isfinite(X_t).all():
        raise ValueError(f"{x_name} contains NaN or Inf values")
    return _Batches(X_t, device, transform), _labels(y, task, device, len(X_t), x_name, y_name)


def _labels(
    y: ArrayLike | None, task: str, device: torch.device, n: int, x_name: str, y_name: str
) -> torch.Tensor | None:
    """For classification, validated int64 labels (n,) on ``device``; else None."""
    if task == "reconstruction":
        return None
    if y is None:
        raise ValueError(f"task 'classification' needs labels {y_name}, got None")
    y_t = torch.as_tensor(y, device=device)
    if y_t.is_floating_point() or y_t.is_complex() or y_t.dtype == torch.bool:
        raise ValueError(f"{y_name} must hold integer class labels, got dtype {y_t.dtype}")
    y_t = y_t.long()
    if y_t.shape != (n,):
        raise ValueError(
            f"{y_name} must have shape ({n},) to match {x_name}, got {tuple(y_t.shape)}"
        )
    if y_t.min() < 0:
        raise ValueError(f"{y_name} must be non-negative class indices, got min {int(y_t.min())}")
    return y_t


def _detach(value: torch.Tensor | float, device: torch.device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().to(device)
    return torch.tensor(float(value), device=device)


def _postfix(record: dict[str, Any]) -> dict[str, str]:
    keys = ["train_loss"] + [k for k in record if k.startswith("val_")]
    return {k: f"{record[k]:.4g}" for k in keys}


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")


__all__ = ["History", "Regularizer", "evaluate", "fit", "resolve_device"]
