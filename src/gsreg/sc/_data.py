"""Row access to an AnnData matrix without densifying it whole.

The matrix may be a numpy array, a scipy sparse matrix or a backed (on-disk) array of an
AnnData opened with ``backed="r"``. Rows come back dense, as float64, only for the rows
asked for: a training batch or a chunk of at most :data:`CHUNK_ENTRIES` entries.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

CHUNK_ENTRIES = 1 << 22
"""Entries (rows x features) densified at once when streaming over all rows: 4 Mi
float64 entries (32 MiB)."""


class Rows:
    """An (N, d) matrix read row-wise, dense float64 on demand.

    Args:
        X: numpy array, scipy sparse matrix/array (a non-CSR format is converted to CSR
            once, which copies the sparse data, not a dense matrix), pandas DataFrame,
            or a backed array (h5py dataset or AnnData's backed sparse dataset).
        name: how errors name the matrix, e.g. ``"adata.X"``.
    """

    def __init__(self, X, name: str) -> None:
        self.name = name
        if hasattr(X, "to_numpy") and not sp.issparse(X):  # a pandas DataFrame in obsm
            X = X.to_numpy()
        if sp.issparse(X) and X.format != "csr":
            X = X.tocsr()
        shape = getattr(X, "shape", None)
        if shape is None or len(shape) != 2:
            raise ValueError(f"{name} must be a 2-D matrix (n_obs, n_features), got shape {shape}")
        dtype = np.dtype(getattr(X, "dtype", np.float64))
        if dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold numbers, got dtype {dtype}")
        if shape[0] < 1 or shape[1] < 1:
            raise ValueError(f"{name} must have at least one row and one column, got {shape}")
        self.X = X
        self.shape = (int(shape[0]), int(shape[1]))
        self._in_memory = isinstance(X, np.ndarray) or sp.issparse(X)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def chunk_rows(self) -> int:
        """Rows per chunk when streaming over the whole matrix."""
        return max(1, min(len(self), CHUNK_ENTRIES // self.shape[1]))

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Dense float64 rows ``idx`` (B,), in that order: (B, d)."""
        idx = np.asarray(idx, dtype=np.int64)
        if self._in_memory:
            return dense(self.X[idx])
        order = np.argsort(idx, kind="stable")  # backed arrays read increasing indices
        block = dense(self.X[idx[order]])
        out = np.empty_like(block)
        out[order] = block
        return out

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, dense float64 rows start:start+c)`` over the whole matrix, in order."""
        size = self.chunk_rows
        for start in range(0, len(self), size):
            yield start, dense(self.X[start : start + size])

    def scaler(self, scale: str | None) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature ``(mean, scale)`` (d,) float64 in two passes over chunks, checking
        that every entry is finite. ``scale``: "global" (centre each feature, divide all
        by the root mean square of the centred data), "standard" (unit variance per
        feature) or None (zeros and ones)."""
        n, d = self.shape
        total = np.zeros(d)
        for start, block in self.chunks():
            finite = np.isfinite(block)
            if not finite.all():
                row, col = np.argwhere(~finite)[0]
                raise ValueError(
                    f"{self.name} contains NaN or Inf (first at row {start + row}, column "
                    f"{col}); remove or impute those values before fitting"
                )
            total += block.sum(axis=0)
        if scale is None:
            return np.zeros(d), np.ones(d)
        mean = total / n
        squares = np.zeros(d)
        for _, block in self.chunks():
            squares += ((block - mean) ** 2).sum(axis=0)
        if scale == "standard":
            std = np.sqrt(squares / n)
        else:
            std = np.full(d, np.sqrt(squares.sum() / (n * d)))
        return mean, np.where(std > 0, std, 1.0)


def dense(block) -> np.ndarray:
    """A block of rows as a dense float64 array (a sparse block is densified here)."""
    if sp.issparse(block):
        block = block.toarray()
    elif hasattr(block, "to_memory"):  # AnnData's backed sparse datasets
        block = block.to_memory().toarray()
    return np.asarray(block, dtype=np.float64)
