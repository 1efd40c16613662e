"""Streaming SAE training: :func:`fit_sae` and the single :func:`train_step` it repeats."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from .._checks import check_int, check_real
from ..training import resolve_device
from ._data import as_batch, check_width, is_row_array, ordered_batches, shuffled_batches
from ._model import TopographicSAE


@dataclass
class SAEHistory:
    """Training records of :func:`fit_sae`, one every ``log_every`` steps.

    Each record has ``step`` (the last step it covers), ``rows`` (rows seen so far), the
    means over its steps of ``loss``, ``mse``, ``l1`` and ``penalty``, the regularizer's
    logs (``gsr/latents``, ``gsr/latents/weight``, ...) at its last step, and ``seconds``.
    """

    records: list[dict[str, Any]] = field(default_factory=list)

    def __getitem__(self, key: str) -> list[Any]:
        if not any(key in r for r in self.records):
            raise KeyError(f"no record has {key!r}")
        return [r.get(key) for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def last(self) -> dict[str, Any]:
        return self.records[-1] if self.records else {}

    def to_dict(self) -> dict[str, Any]:
        return {"records": [dict(r) for r in self.records]}


def train_step(
    sae: TopographicSAE, optimizer: torch.optim.Optimizer, x: torch.Tensor
) -> dict[str, torch.Tensor]:
    """One optimiser step on the batch x (B, d_in): loss, backward, step, decoder columns
    back to unit norm, regularizer step. Returns :meth:`TopographicSAE.loss`'s detached
    terms (no host sync)."""
    terms = sae.loss(x)
    optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    optimizer.step()
    sae.normalize_decoder_()
    if sae.regularizer is not None:
        sae.regularizer.step(terms["task"].detach())
    return {name: value.detach() for name, value in terms.items()}


def fit_sae(
    sae: TopographicSAE,
    data,
    *,
    steps: int | None = None,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    device: str | torch.device = "auto",
    log_every: int = 50,
    init_bias: bool = True,
    progress: bool = True,
) -> SAEHistory:
    """Train ``sae`` with Adam on streamed activation rows; returns an :class:`SAEHistory`.

    ``data``: an (N, d_in) array read one batch at a time in a seeded random order
    (a numpy array, a memory map ``np.load(path, mmap_mode="r")``, a torch tensor or
    :func:`gsreg.sae.open_activations`; ``steps=None``: one pass), or an iterable of
    (B, d_in) batches used as they come (``batch_size`` is then theirs; ``steps=None``:
    until it ends). ``init_bias``: when ``b_dec`` is still all zero, set it to the mean of
    the first batch (the standard start: the encoder then reads centred rows). A batch
    with NaN/Inf raises ValueError naming the batch and its rows; a non-finite loss
    raises RuntimeError at the next record. The SAE is moved to ``device`` and left in
    training mode.
    """
    if not isinstance(sae, TopographicSAE):
        raise TypeError(f"fit_sae trains a TopographicSAE, got {type(sae).__name__}")
    if steps is not None:
        check_int(steps, "fit_sae: steps")
    check_int(batch_size, "fit_sae: batch_size")
    check_int(log_every, "fit_sae: log_every")
    check_real(lr, "fit_sae: lr", 0, strict_min=True)
    dev = resolve_device(device)
    check_width(data, sae.d_in)
    if is_row_array(data):
        total = steps if steps is not None else math.ceil(int(data.shape[0]) / batch_size)
        batches = shuffled_batches(data, batch_size, seed)
    else:
        total = steps
        batches = ordered_batches(data, batch_size)
    sae.to(dev).train()
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr)
    history = SAEHistory()
    sums: dict[str, torch.Tensor] = {}
    rows, since, step, start = 0, 0, 0, time.perf_counter()
    bar = tqdm(total=total, desc="fit_sae", unit="step", disable=not progress)
    try:
        for step, (idx, batch) in enumerate(batches, start=1):
            x = as_batch(batch, sae.d_in, dev, step - 1, idx)
            if step == 1 and init_bias and not bool(sae.b_dec.detach().any()):
                with torch.no_grad():
                    sae.b_dec.copy_(x.mean(0))
            terms = train_step(sae, optimizer, x)
            for name in ("loss", "mse", "l1", "penalty"):
                sums[name] = sums.get(name, 0.0) + terms[name]
            rows, since = rows + len(x), since + 1
            if since == log_every or step == total:
                record = _record(sae, sums, since, step, rows, time.perf_counter() - start)
                history.records.append(record)
                bar.set_postfix(mse=f"{record['mse']:.4g}", refresh=False)
                sums, since = {}, 0
            bar.update()
            if step == total:
                break
        if step == 0:
            raise ValueError("fit_sae: data gave no batches")
        if since:
            history.records.append(
                _record(sae, sums, since, step, rows, time.perf_counter() - start)
            )
    finally:
        bar.close()
    return history


def _record(sae, sums, count, step, rows, seconds) -> dict[str, Any]:
    record: dict[str, Any] = {"step": step, "rows": rows}
    record.update({name: float(total) / count for name, total in sums.items()})
    if not math.isfinite(record["loss"]):
        raise RuntimeError(
            f"fit_sae: the loss became {record['loss']} by step {step} (try a lower lr)"
        )
    if sae.regularizer is not None:
        for name, value in sae.regularizer.logs().items():
            record[name] = float(value)
    record["seconds"] = seconds
    return record
