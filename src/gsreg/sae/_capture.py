"""Capture a layer's activations to disk in .npy chunks, and read them back memory-mapped.

A capture folder holds ``chunk_00000.npy``, ``chunk_00001.npy``, ... (float rows
(rows, d_in)) and ``manifest.json`` (``layer``, ``d_in``, ``rows``, ``dtype`` and each
chunk's file and rows). The folder is written as a whole: :func:`capture` writes into a
hidden staging folder beside ``out_dir``, the manifest last (atomically), and renames the
staging folder to ``out_dir`` only once everything is written
(:func:`gsreg._files.staged_folder`). An interrupted capture (an error, Ctrl-C, a kill)
therefore never leaves a half-written ``out_dir``: what it wrote is discarded whole (the
next capture removes a killed one's staging folder) and a previous capture in ``out_dir``
stays as it was. A folder without a complete manifest is never read
(:func:`open_activations` refuses it) and a new capture into it replaces it whole.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .._checks import check_choice, check_int
from .._files import atomic_write, check_run_folder, staged_folder
from ._data import run_model

MANIFEST = "manifest.json"
FORMAT = "gsreg.sae.activations"
DTYPES = ("float32", "float16")
CHUNK_PATTERN = re.compile(r"chunk_\d{5,}\.npy")


def module_named(model: nn.Module, layer: str) -> nn.Module:
    """The submodule ``layer`` (dotted name) of ``model``; a ValueError lists close names."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    modules = dict(model.named_modules())
    if isinstance(layer, str) and layer in modules:
        return modules[layer]
    names = [name for name in modules if name]
    close = difflib.get_close_matches(str(layer), names, n=5, cutoff=0.4)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ValueError(f"model has no layer named {layer!r}{hint}")


def capture(
    model: nn.Module,
    layer: str,
    batches: Iterable,
    out_dir: str | Path,
    *,
    chunk_rows: int = 65536,
    dtype: str = "float32",
    max_rows: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Activations:
    """Run ``model`` on ``batches`` and write the output of its submodule ``layer`` to
    ``out_dir`` as rows: an output (B, d) gives B rows, (B, T, d) gives B*T rows (the
    first item of a tuple output is read). A batch is the model's input, a tuple or list
    whose first item is, or a mapping of keyword inputs (``model(**batch)``). At most
    ``chunk_rows`` rows are held in memory; ``max_rows`` stops early. The model runs in
    evaluation mode without gradients and is left in the mode it had. Returns
    :func:`open_activations` of the written folder.

    ``out_dir`` may be missing, hold an incomplete capture (replaced whole) or, with
    ``overwrite=True``, a complete one; anything else in it is refused. NaN/Inf in the
    activations raises ValueError naming the batch and rows (nothing is written).
    """
    module = module_named(model, layer)
    check_int(chunk_rows, "capture: chunk_rows")
    check_choice(dtype, "capture: dtype", DTYPES)
    if max_rows is not None:
        check_int(max_rows, "capture: max_rows")
    out = _check_out_dir(Path(out_dir), overwrite)
    writes = [MANIFEST, *(p.name for p in _chunk_files(out))]
    outputs: list[torch.Tensor] = []

    def hook(mod, inputs, output):
        first = output[0] if isinstance(output, (tuple, list)) else output
        if not isinstance(first, torch.Tensor) or first.ndim < 2:
            what = tuple(first.shape) if isinstance(first, torch.Tensor) else type(first)
            raise ValueError(f"layer {layer!r} outputs {what}; capture needs (B, ..., d) tensors")
        outputs.append(first.detach().reshape(-1, first.shape[-1]))

    handle = module.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    total = len(batches) if hasattr(batches, "__len__") else None
    bar = tqdm(batches, total=total, desc=f"capture {layer}", unit="batch", disable=not progress)
    try:
        with staged_folder(out, writes, "capture") as run:
            writer = _ChunkWriter(run, chunk_rows, dtype, layer)
            with torch.no_grad():
                for number, batch in enumerate(bar):
                    outputs.clear()
                    run_model(model, batch)
                    if not outputs:
                        raise ValueError(f"layer {layer!r} did not run in the model's forward")
                    rows = torch.cat(outputs) if len(outputs) > 1 else outputs[0]
                    if max_rows is not None:
                        rows = rows[: max_rows - writer.rows]
                    writer.add(rows, number)
                    if max_rows is not None and writer.rows >= max_rows:
                        break
            writer.finish()
    finally:
        bar.close()
        handle.remove()
        model.train(was_training)
    return open_activations(out)


class _ChunkWriter:
    """Buffers rows and writes full chunks; :meth:`finish` writes the rest and the manifest."""

    def __init__(self, folder: Path, chunk_rows: int, dtype: str, layer: str) -> None:
        self.folder, self.chunk_rows, self.dtype, self.layer = folder, chunk_rows, dtype, layer
        self.buffer: list[np.ndarray] = []
        self.buffered = 0
        self.rows = 0
        self.d_in: int | None = None
        self.chunks: list[dict] = []

    def add(self, rows: torch.Tensor, number: int) -> None:
        if self.d_in is None:
            self.d_in = int(rows.shape[1])
        elif rows.shape[1] != self.d_in:
            raise ValueError(
                f"layer {self.layer!r}: batch {number} gives rows of width {rows.shape[1]}, "
                f"earlier batches {self.d_in}"
            )
        finite = torch.isfinite(rows).all(1)
        if not bool(finite.all()):
            bad = torch.nonzero(~finite).flatten()[:5].tolist()
            raise ValueError(
                f"layer {self.layer!r}: NaN or Inf in the activations of batch {number} "
                f"(rows {bad} of its {len(rows)}); nothing was written"
            )
        self.buffer.append(rows.float().cpu().numpy().astype(self.dtype, copy=False))
        self.buffered += len(rows)
        self.rows += len(rows)
        while self.buffered >= self.chunk_rows:
            self._write(self.chunk_rows)

    def _write(self, n: int) -> None:
        block = np.concatenate(self.buffer) if len(self.buffer) > 1 else self.buffer[0]
        name = f"chunk_{len(self.chunks):05d}.npy"
        np.save(self.folder / name, np.ascontiguousarray(block[:n]))
        self.chunks.append({"file": name, "rows": int(n)})
        rest = block[n:]
        self.buffer = [rest] if len(rest) else []
        self.buffered = len(rest)

    def finish(self) -> None:
        if self.rows == 0:
            raise ValueError(f"capture of layer {self.layer!r}: batches gave no rows")
        if self.buffered:
            self._write(self.buffered)
        manifest = {
            "format": FORMAT,
            "version": 1,
            "layer": self.layer,
            "d_in": self.d_in,
            "rows": self.rows,
            "dtype": self.dtype,
            "chunks": self.chunks,
        }
        atomic_write(self.folder / MANIFEST, json.dumps(manifest, indent=1) + "\n")


def _chunk_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if CHUNK_PATTERN.fullmatch(p.name))


def _check_out_dir(out: Path, overwrite: bool) -> Path:
    if (out / MANIFEST).is_file() and not overwrite:
        raise ValueError(
            f"{out} already holds a capture (manifest.json); pass overwrite=True to replace it"
        )
    writes = [MANIFEST, *(p.name for p in _chunk_files(out))]
    return check_run_folder(out, writes, command="capture")


class Activations:
    """Captured rows (rows, d_in) read through memory maps of their chunks, one index at a
    time: ``acts[idx]`` (an int, a slice or an int array) reads only those rows into a new
    array. Usable as ``data`` by :func:`gsreg.sae.fit_sae` and :func:`gsreg.sae.evaluate`.
    Attributes: ``shape``, ``d_in``, ``dtype``, ``layer``, ``path``, ``manifest``."""

    def __init__(self, path: Path, manifest: dict, chunks: list[np.ndarray]) -> None:
        self.path, self.manifest, self._chunks = path, manifest, chunks
        self.layer = manifest["layer"]
        self.d_in = int(manifest["d_in"])
        self.dtype = np.dtype(manifest["dtype"])
        self.shape = (int(manifest["rows"]), self.d_in)
        self._starts = np.cumsum([0] + [len(c) for c in chunks])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        n = self.shape[0]
        if isinstance(key, slice):
            idx = np.arange(*key.indices(n))
        elif isinstance(key, (int, np.integer)):
            return self[np.array([key])][0]
        else:
            idx = np.asarray(key)
            if idx.dtype == bool or idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
                raise TypeError("Activations index must be an int, a slice or a 1-D int array")
        idx = np.where(idx < 0, idx + n, idx)
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        out = np.empty((len(idx), self.d_in), dtype=self.dtype)
        which = np.searchsorted(self._starts, idx, side="right") - 1
        for c in np.unique(which):
            mask = which == c
            out[mask] = self._chunks[c][idx[mask] - self._starts[c]]
        return out

    def __repr__(self) -> str:
        return f"Activations({str(self.path)!r}, layer={self.layer!r}, shape={self.shape})"


def open_activations(out_dir: str | Path) -> Activations:
    """The capture in ``out_dir`` as :class:`Activations`; every chunk's file, shape and
    dtype are checked against the manifest first (a ValueError names the chunk)."""
    path = Path(out_dir)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ValueError(
            f"{path} has no {MANIFEST}: not a capture, or an interrupted one (captures are "
            "written whole; run capture again into it to replace it)"
        )
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{manifest_path} is not a gsreg activation manifest")
    d_in, dtype = int(manifest["d_in"]), np.dtype(manifest["dtype"])
    chunks = []
    for chunk in manifest["chunks"]:
        file = path / chunk["file"]
        if not file.is_file():
            raise ValueError(f"{path}: chunk {chunk['file']} named by the manifest is missing")
        try:
            array = np.load(file, mmap_mode="r", allow_pickle=False)
        except ValueError as err:
            raise ValueError(f"{path}: chunk {chunk['file']} is not readable: {err}") from None
        if array.shape != (chunk["rows"], d_in) or array.dtype != dtype:
            raise ValueError(
                f"{path}: chunk {chunk['file']} holds {array.shape} {array.dtype}, the manifest "
                f"says ({chunk['rows']}, {d_in}) {dtype}"
            )
        chunks.append(array)
    if sum(len(c) for c in chunks) != manifest["rows"]:
        raise ValueError(f"{path}: the chunks' rows do not add up to the manifest's rows")
    return Activations(path, manifest, chunks)
