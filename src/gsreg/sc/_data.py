"""Row access to an AnnData matrix without densifying it whole.

The matrix may be a numpy array, a scipy sparse matrix or a backed (on-disk) array of an
AnnData opened with ``backed="r"``. Rows come back dense, as float64, a chunk of at most
:data:`CHUNK_ENTRIES` entries at a time (training itself densifies batch by batch in
:func:`gsreg.training.fit`).
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

    def matrix(self):
        """The matrix in memory for :meth:`gsreg.GSRAutoencoder.fit`: a numpy array or
        CSR matrix as it is; a backed sparse dataset is read as a sparse matrix, a backed
        dense one as an array."""
        if self._in_memory:
            return self.X
        if hasattr(self.X, "to_memory"):  # AnnData's backed sparse datasets
            return sp.csr_matrix(self.X.to_memory())
        return np.asarray(self.X[:])

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, dense float64 rows start:start+c)`` over the whole matrix, in order."""
        size = self.chunk_rows
        for start in range(0, len(self), size):
            yield start, dense(self.X[start : start + size])

    def check_finite(self) -> None:
        """Raise a ValueError naming the first NaN or Inf entry (row, column), if any;
        a sparse matrix is checked on its stored values, others chunk by chunk."""
        if sp.issparse(self.X):
            bad = np.flatnonzero(~np.isfinite(self.X.data))
            if bad.size:
                row = int(np.searchsorted(self.X.indptr, bad[0], side="right") - 1)
                self._not_finite(row, int(self.X.indices[bad[0]]))
            return
        for start, block in self.chunks():
            finite = np.isfinite(block)
            if not finite.all():
                row, col = np.argwhere(~finite)[0]
                self._not_finite(start + int(row), int(col))

    def _not_finite(self, row: int, col: int) -> None:
        raise ValueError(
            f"{self.name} contains NaN or Inf (first at row {row}, column {col}); remove "
            "or impute those values before fitting"
        )


def dense(block) -> np.ndarray:
    """A block of rows as a dense float64 array (a sparse block is densified here)."""
    if sp.issparse(block):
        block = block.toarray()
    elif hasattr(block, "to_memory"):  # AnnData's backed sparse datasets
        block = block.to_memory().toarray()
    return np.asarray(block, dtype=np.float64)
