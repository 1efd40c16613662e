"""Batches of activation rows from arrays (memory-mapped or not) or iterators, checked."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import torch

#: row indices shown in an error message about non-finite rows
SHOWN_ROWS = 5


def is_row_array(data: object) -> bool:
    """Whether ``data`` is an indexable (N, d) array: numpy (incl. memmap), torch or
    :class:`gsreg.sae.Activations`, as opposed to an iterator of batches."""
    shape = getattr(data, "shape", None)
    return shape is not None and hasattr(data, "__getitem__") and len(shape) == 2


def check_width(data: object, d_in: int, what: str = "data") -> None:
    """An array's row width must be the SAE's ``d_in``."""
    if is_row_array(data) and int(data.shape[1]) != d_in:
        raise ValueError(
            f"{what} has rows of width d_in={int(data.shape[1])} but the SAE has d_in={d_in}"
        )


def take_rows(data, idx: np.ndarray) -> np.ndarray | torch.Tensor:
    """Rows ``idx`` (sorted, so that a memory map reads forward) of an (N, d) array."""
    if isinstance(data, torch.Tensor):
        return data[torch.from_numpy(idx).to(data.device)]
    return data[idx]


def shuffled_batches(
    data, batch_size: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray | torch.Tensor]]:
    """Endless ``(row indices, rows)`` of an (N, d) array: each pass a new seeded
    permutation cut into batches of ``batch_size`` (the last one of a pass may be smaller);
    only one batch is read into memory at a time."""
    n = int(data.shape[0])
    if n == 0:
        raise ValueError("data has no rows")
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(n)
        for begin in range(0, n, batch_size):
            idx = np.sort(order[begin : begin + batch_size])
            yield idx, take_rows(data, idx)


def ordered_batches(
    data, batch_size: int, max_rows: int | None = None
) -> Iterator[tuple[np.ndarray | None, object]]:
    """``(row indices or None, rows)`` of an array in order, or of an iterable's batches."""
    if is_row_array(data):
        n = int(data.shape[0]) if max_rows is None else min(max_rows, int(data.shape[0]))
        for begin in range(0, n, batch_size):
            idx = np.arange(begin, min(begin + batch_size, n))
            yield idx, data[begin : begin + len(idx)]
        return
    if not isinstance(data, Iterable):
        raise TypeError(
            f"data must be an (N, d_in) array or an iterable of (B, d_in) batches, got "
            f"{type(data).__name__}"
        )
    seen = 0
    for batch in data:
        if max_rows is not None:
            if seen >= max_rows:
                return
            batch = batch[: max_rows - seen]
        yield None, batch
        seen += len(batch)


def as_batch(
    batch, d_in: int, device: torch.device, number: int, rows: np.ndarray | None
) -> torch.Tensor:
    """A batch as float32 (B, d_in) on ``device``; a ValueError names batch ``number`` (from 0)
    and its bad rows (``rows``: their indices in the data, when known) for a wrong shape or
    NaN/Inf."""
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        batch = batch[0]  # (x, y) pairs from a DataLoader
    x = torch.as_tensor(np.asarray(batch) if not isinstance(batch, torch.Tensor) else batch)
    if x.ndim != 2 or x.shape[1] != d_in:
        raise ValueError(
            f"batch {number} has shape {tuple(x.shape)}; the SAE reads (B, d_in={d_in}) rows"
        )
    x = x.to(device=device, dtype=torch.float32)
    finite = torch.isfinite(x).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten().cpu().numpy()
        where = f"rows {bad[:SHOWN_ROWS].tolist()} of the batch"
        if rows is not None:
            where += f" (data rows {rows[bad[:SHOWN_ROWS]].tolist()})"
        more = f" and {len(bad) - SHOWN_ROWS} more" if len(bad) > SHOWN_ROWS else ""
        raise ValueError(f"batch {number} has NaN or Inf in {where}{more}")
    return x


def run_model(model, batch):
    """``model`` on one batch: ``model(**batch)`` for a mapping (keyword inputs, as a
    Hugging Face tokenizer gives), ``model(batch[0])`` for a tuple or list (``(x, y)``),
    else ``model(batch)``. Returns ``(output, batch size)``."""
    if isinstance(batch, Mapping):
        first = next((v for v in batch.values() if isinstance(v, torch.Tensor)), None)
        if first is None:
            raise TypeError("a mapping batch needs at least one tensor value")
        return model(**batch), int(first.shape[0])
    inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
    return model(inputs), int(inputs.shape[0])
