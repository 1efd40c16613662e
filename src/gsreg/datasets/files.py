"""Reading a user's data table: .npy, .csv / .tsv (header and label column detected) and
.h5ad, checked cell by cell with one-line errors that name the line and column.

    table = load_data("cells.csv", labels="cell_type")
    table.X (N, d) float32, table.labels (N,) or None, table.feature_names (d,)

Only numpy is imported (anndata when an .h5ad file is read), so a command line can check
its input before torch loads.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["MISSING", "SUFFIXES", "Table", "load_data"]

SUFFIXES = (".npy", ".csv", ".tsv", ".h5ad")
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "-nan", "#n/a"})


@dataclass(frozen=True)
class Table:
    """A loaded data set: X (N, d) float32, optional labels (N,), feature names (d,)."""

    X: np.ndarray
    labels: np.ndarray | None
    feature_names: list[str]
    labels_from: str | None = None

    @property
    def constant_features(self) -> list[str]:
        """Names of the features that take one value in every sample."""
        same = np.all(self.X == self.X[:1], axis=0)
        return [name for name, flag in zip(self.feature_names, same, strict=True) if flag]


def load_data(path: str | os.PathLike, labels: str | None = None) -> Table:
    """Read and check a data file; ``labels`` is a column of it (CSV/TSV header name or
    .h5ad ``obs`` column) or a file of labels (.npy, or text with one label per line and
    an optional header line). Raises ValueError / FileNotFoundError with one-line messages.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such data file: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a data file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(
            f"{path}: unknown data format {path.suffix or '(no extension)'!r}; gsreg reads "
            f"{', '.join(SUFFIXES)}"
        )
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty")
    if suffix == ".npy":
        X, names, column = _read_npy(path), None, None
    elif suffix == ".h5ad":
        X, names, column = _read_h5ad(path, labels)
    else:
        X, names, column = _read_delimited(path, "," if suffix == ".csv" else "\t", labels)
    if X.shape[0] < 2:
        raise ValueError(
            f"{path} holds {X.shape[0]} sample(s); gsreg needs at least 2 "
            "(one to learn from is not a data set)"
        )
    if X.shape[1] == 0:
        raise ValueError(f"{path} holds no numeric feature columns")
    bad = np.argwhere(~np.isfinite(X))
    if bad.size:
        i, j = bad[0]
        raise ValueError(
            f"{path}: {len(bad)} NaN or infinite value(s), the first in sample {i} "
            f"(row {i + 1}), feature {j}; gsreg needs complete, finite data"
        )
    y, source = None, None
    if column is not None:
        y, source = column, f"column {labels!r} of {path.name}"
    elif labels is not None:
        y, source = _read_labels_file(Path(labels), len(X), path), str(labels)
    names = names or [f"feature {j + 1}" for j in range(X.shape[1])]
    return Table(X.astype(np.float32, copy=False), y, list(names), source)


def _read_npy(path: Path) -> np.ndarray:
    try:
        X = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"{path} is not a readable numeric .npy array: {_line(err)}") from err
    if not isinstance(X, np.ndarray) or X.dtype.kind not in "biuf":
        raise ValueError(f"{path} must hold a numeric array, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{path} must hold a 2-D array (samples x features), got {X.shape}")
    return X.astype(np.float64)


def _read_h5ad(path: Path, labels: str | None):
    try:
        import anndata
    except ImportError as err:
        raise ValueError("reading .h5ad needs anndata: pip install 'gsreg[sc]'") from err
    try:
        adata = anndata.read_h5ad(path)
    except Exception as err:  # h5py / anndata raise many types on a damaged file
        raise ValueError(f"{path} is not a readable .h5ad file: {_line(err)}") from err
    X = adata.X
    if X is None:
        raise ValueError(f"{path} has no X matrix")
    X = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{path}: X must be numeric, got dtype {X.dtype}")
    column = None
    if labels is not None and labels in adata.obs.columns:
        values = adata.obs[labels]
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise ValueError(f"{path}: labels column {labels!r} is missing for cell {row}")
        column = _as_labels([str(v) for v in values.astype(str)])
    elif labels is not None and not Path(labels).exists():
        shown = ", ".join(map(repr, list(adata.obs.columns)[:12])) or "none"
        raise ValueError(
            f"--labels {labels!r} is neither an obs column of {path.name} (columns: {shown}) "
            "nor a file"
        )
    return np.asarray(X, dtype=np.float64), [str(v) for v in adata.var_names], column


def _read_delimited(path: Path, delimiter: str, labels: str | None):
    """(X, names, label column or None) of a CSV/TSV file; see :func:`load_data`."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a UTF-8 text file") from err
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows, lines = [], []
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append([cell.strip() for cell in row])
                lines.append(reader.line_num)
    except csv.Error as err:
        raise ValueError(
            f"{path}: malformed {path.suffix[1:]} near line {reader.line_num}: {err}"
        ) from err
    if not rows:
        raise ValueError(f"{path} is empty")
    width = len(rows[0])
    for row, line in zip(rows, lines, strict=True):
        if len(row) != width:
            raise ValueError(
                f"{path}: line {line} has {len(row)} fields, expected {width} like line "
                f"{lines[0]} (a ragged table)"
            )
    cells = np.array(rows, dtype=str).reshape(len(rows), width)
    head = np.array([_cell_kind(str(c)) for c in cells[0]], dtype=np.int8)
    body_numeric, body_missing = _classify(cells[1:])
    numeric = np.vstack([head == _NUMBER, body_numeric])
    missing = np.vstack([head == _MISSING, body_missing])
    body_ok = (numeric[1:] | missing[1:]).all(axis=0) & numeric[1:].any(axis=0)
    has_header = bool(((~numeric[0]) & body_ok).any()) if len(rows) > 1 else not numeric[0].all()
    if has_header:
        names = [str(c) for c in cells[0]]
        cells, numeric, missing, lines = cells[1:], numeric[1:], missing[1:], lines[1:]
    else:
        names = [f"column {j + 1}" for j in range(width)]
    if len(cells) == 0:
        raise ValueError(f"{path} has a header but no data rows")
    keep = list(range(width))
    label_values = None
    if labels is not None and labels in names and has_header:
        j = names.index(labels)
        keep.remove(j)
        empty = np.flatnonzero(missing[:, j] & (cells[:, j] == ""))
        if empty.size:
            raise ValueError(f"{path}: labels column {labels!r} is empty on line {lines[empty[0]]}")
        label_values = _as_labels([str(c) for c in cells[:, j]])
    elif labels is not None and not Path(labels).exists():
        hint = f"columns: {', '.join(map(repr, names[:12]))}" if has_header else "no header"
        raise ValueError(
            f"--labels {labels!r} is neither a column of {path.name} ({hint}) nor a file"
        )
    if has_header and names[0] == "" and 0 in keep and not body_ok[0]:
        keep.remove(0)  # an unnamed first column of text: row names (as pandas writes them)
    for j in keep:
        text_cells = np.flatnonzero(~numeric[:, j] & ~missing[:, j])
        if text_cells.size:
            i = text_cells[0]
            raise ValueError(
                f"{path}: column {names[j]!r} is not numeric ({str(cells[i, j])!r} on line "
                f"{lines[i]}); remove it or name it with --labels"
            )
        gaps = np.flatnonzero(missing[:, j])
        if gaps.size:
            i = gaps[0]
            raise ValueError(
                f"{path}: column {names[j]!r} has a missing or non-finite value "
                f"({str(cells[i, j])!r} on line {lines[i]}); gsreg needs complete, finite data"
            )
    X = cells[:, keep].astype(np.float64)
    return X, [names[j] for j in keep], label_values


def _read_labels_file(path: Path, n: int, data: Path) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"no such labels file: {path}")
    if path.is_dir():
        raise ValueError(f"labels {path} is a directory, not a file")
    if path.stat().st_size == 0:
        raise ValueError(f"labels file {path} is empty")
    if path.suffix.lower() == ".npy":
        try:
            values = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise ValueError(f"labels file {path} is not a readable .npy: {_line(err)}") from err
        if values.ndim != 1 or len(values) != n:
            raise ValueError(
                f"labels file {path} must hold one label per sample ({n},), got {values.shape}"
            )
        return _as_labels([str(v) for v in values.tolist()])
    try:
        entries = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    except UnicodeDecodeError as err:
        raise ValueError(f"labels file {path} is not a UTF-8 text file") from err
    while entries and not entries[-1]:
        entries.pop()
    if len(entries) == n + 1:
        entries = entries[1:]  # a header line
    if len(entries) != n:
        raise ValueError(
            f"labels file {path} has {len(entries)} lines but {data.name} has {n} samples "
            "(one label per line, optionally after one header line)"
        )
    if "" in entries:
        raise ValueError(f"labels file {path} has an empty line {entries.index('') + 1}")
    return _as_labels(entries)


def _as_labels(values: list[str]) -> np.ndarray:
    """Labels as int64 when all are integers, else as strings."""
    try:
        ints = np.array([int(v) for v in values], dtype=np.int64)
    except ValueError:
        return np.array(values, dtype=str)
    return ints


_NUMBER, _MISSING, _TEXT = 0, 1, 2


def _classify(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks (R, W) of finite numbers and of missing / non-finite cells; a column that
    parses as floats in one go skips the cell-by-cell look."""
    numeric = np.zeros(cells.shape, dtype=bool)
    missing = np.zeros(cells.shape, dtype=bool)
    for j in range(cells.shape[1]):
        try:
            finite = np.isfinite(cells[:, j].astype(np.float64))
        except ValueError:
            kinds = np.array([_cell_kind(str(c)) for c in cells[:, j]], dtype=np.int8)
            numeric[:, j], missing[:, j] = kinds == _NUMBER, kinds == _MISSING
        else:
            numeric[:, j], missing[:, j] = finite, ~finite
    return numeric, missing


def _cell_kind(cell: str) -> int:
    """A finite number, a missing / non-finite value (empty, NA, NaN, inf, ...) or text."""
    try:
        value = float(cell)
    except ValueError:
        return _MISSING if cell.lower() in MISSING else _TEXT
    return _NUMBER if np.isfinite(value) else _MISSING


def _line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
