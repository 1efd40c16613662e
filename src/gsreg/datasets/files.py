"""Reading a user's data table: .npy, .csv / .tsv (read by ``pandas.read_csv``; header,
row names and label column detected) and .h5ad, checked cell by cell with one-line errors
that name the line and column.

    table = load_data("cells.csv", labels="cell_type")
    table.X (N, d) float32, table.labels (N,) or None, table.feature_names (d,)
    table.row_names.names (N,) when the file names its rows, else table.row_names is None

Only numpy and pandas are imported (anndata when an .h5ad file is read), so a command
line can check its input before torch loads.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["MISSING", "SUFFIXES", "RowNames", "Table", "load_data"]

SUFFIXES = (".npy", ".csv", ".tsv", ".h5ad")
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "-nan", "#n/a"})
_UNNAMED = re.compile(r"Unnamed: \d+")  # pandas' name for a column without a header


@dataclass(frozen=True)
class RowNames:
    """The samples' names (N,) from a data file, and the header of the column that held
    them ("" when it had none, as for the index ``DataFrame.to_csv`` writes)."""

    names: list[str]
    header: str = ""


@dataclass(frozen=True)
class Table:
    """A loaded data set: X (N, d) float32, optional labels (N,), feature names (d,),
    and the samples' names when the file had them (:class:`RowNames`, else None)."""

    X: np.ndarray
    labels: np.ndarray | None
    feature_names: list[str]
    labels_from: str | None = None
    row_names: RowNames | None = None

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
        X, names, column, rows = _read_npy(path), None, None, None
    elif suffix == ".h5ad":
        X, names, column, rows = _read_h5ad(path, labels)
    else:
        X, names, column, rows = _read_delimited(path, "," if suffix == ".csv" else "\t", labels)
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
    return Table(X.astype(np.float32, copy=False), y, list(names), source, rows)


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
    rows = RowNames([str(v) for v in adata.obs_names], adata.obs_names.name or "")
    return np.asarray(X, dtype=np.float64), [str(v) for v in adata.var_names], column, rows


def _read_delimited(path: Path, delimiter: str, labels: str | None):
    """(X, names, label column or None, row names or None) of a CSV/TSV file; see
    :func:`load_data`."""
    cells, lines = _read_cells(path, delimiter)
    width = cells.shape[1]
    head = np.array([_cell_kind(str(c)) for c in cells[0]], dtype=np.int8)
    body_numeric, body_missing = _classify(cells[1:])
    numeric = np.vstack([head == _NUMBER, body_numeric])
    missing = np.vstack([head == _MISSING, body_missing])
    body_ok = (numeric[1:] | missing[1:]).all(axis=0) & numeric[1:].any(axis=0)
    has_header = bool(((~numeric[0]) & body_ok).any()) if len(cells) > 1 else not numeric[0].all()
    if len(cells) > 1 and bool((cells[1:, 0] != "").all()):
        # DataFrame.to_csv's header above named rows: an empty or "Unnamed: 0" corner, or
        # a corner above text with pandas' default column names 0, 1, ... beside it
        corner_text = bool((~numeric[1:, 0] & ~missing[1:, 0]).any())
        has_header |= _is_unnamed(cells[0, 0]) or (corner_text and _range_names(cells[0, 1:]))
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
    row_names = None
    text = ~numeric[:, 0] & ~missing[:, 0]
    if 0 in keep and _is_row_names(names[0] if has_header else None, text):
        keep.remove(0)
        row_names = RowNames([str(c) for c in cells[:, 0]], names[0] if has_header else "")
        while has_header and keep and keep[0] == width - len(keep) and _is_unnamed(names[keep[0]]):
            keep.pop(0)  # an older index, written again by a second DataFrame.to_csv
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
    return X, [names[j] for j in keep], label_values, row_names


def _is_row_names(header: str | None, text: np.ndarray) -> bool:
    """Whether the first column holds row names, not a feature: its header is empty or
    pandas' ``Unnamed: 0`` (the index ``DataFrame.to_csv`` writes), or some of its cells
    are text (``text`` (R,) marks them)."""
    return (header is not None and _is_unnamed(header)) or bool(text.any())


def _range_names(cells: np.ndarray) -> bool:
    """Whether ``cells`` are "0", "1", ...: pandas' default column names."""
    return [str(c) for c in cells] == [str(k) for k in range(len(cells))]


def _is_unnamed(header: str) -> bool:
    """An empty header cell, or pandas' name for one (``Unnamed: 0``)."""
    return header == "" or _UNNAMED.fullmatch(header) is not None


def _read_cells(path: Path, delimiter: str) -> tuple[np.ndarray, list[int]]:
    """The non-blank rows of a CSV/TSV file as a (R, W) array of stripped strings (read by
    ``pandas.read_csv``, every cell as text) and each row's line number (1-based)."""
    import pandas as pd

    try:
        frame = pd.read_csv(
            path,
            sep=delimiter,
            header=None,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            encoding="utf-8-sig",
        )
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a UTF-8 text file") from err
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty") from None
    except pd.errors.ParserError as err:
        _check_ragged(path, delimiter)
        raise ValueError(f"{path}: malformed {path.suffix[1:]}: {_line(err)}") from err
    cells = np.char.strip(frame.to_numpy(dtype=str))
    filled = (cells != "").any(axis=1)
    if not filled.any():
        raise ValueError(f"{path} is empty")
    if not filled.all() or (cells[filled] == "").any():
        _check_ragged(path, delimiter)  # pandas pads a short row with empty cells
    # a quoted cell holding a line break shifts later numbers; such files are rare here
    lines = (np.flatnonzero(filled) + 1).tolist()
    return cells[filled], lines


def _check_ragged(path: Path, delimiter: str) -> None:
    """Raise a ValueError naming the first line whose number of fields differs from the
    first non-blank line's (a ragged table); blank lines are skipped."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        width, first = None, None
        try:
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if width is None:
                    width, first = len(row), reader.line_num
                elif len(row) != width:
                    raise ValueError(
                        f"{path}: line {reader.line_num} has {len(row)} fields, expected "
                        f"{width} like line {first} (a ragged table)"
                    )
        except csv.Error:
            return  # pandas' own message says what is wrong


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
