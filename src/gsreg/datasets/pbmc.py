"""scanpy's ``pbmc68k_reduced`` (700 peripheral blood mononuclear cells, 765 genes, 10
cell types in ``obs["bulk_labels"]``), shipped with scanpy (the ``sc`` extra), with a
coarse grouping of the cell types, a stratified split and the input scaling.

    data = load_pbmc()                  # PbmcData: X (700, 765), cell_types, coarse, ...
    train, test = split(data.cell_types, 0.2, seed=0)
    Xs, scale = scale_inputs(data.X, train)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "COARSE_GROUPS",
    "MATRICES",
    "PbmcData",
    "coarse_labels",
    "load_pbmc",
    "scale_inputs",
    "split",
]


MATRICES = ("X", "raw")


#: the coarse group of each bulk label; the data hold no megakaryocyte label
COARSE_GROUPS = {
    "CD4+/CD25 T Reg": "T",
    "CD4+/CD45RA+/CD25- Naive T": "T",
    "CD4+/CD45RO+ Memory": "T",
    "CD8+ Cytotoxic T": "T",
    "CD8+/CD45RA+ Naive Cytotoxic": "T",
    "CD56+ NK": "NK",
    "CD19+ B": "B",
    "CD14+ Monocyte": "myeloid",
    "Dendritic": "dendritic",
    "CD34+": "stem",
}


def coarse_labels(cell_types: np.ndarray) -> np.ndarray:
    """(N,) coarse group (:data:`COARSE_GROUPS`) of each bulk label in ``cell_types`` (N,)."""
    cell_types = np.asarray(cell_types).astype(str)
    unknown = sorted(set(cell_types) - set(COARSE_GROUPS))
    if unknown:
        raise ValueError(f"no coarse group for the cell type(s) {unknown}")
    return np.array([COARSE_GROUPS[t] for t in cell_types])


@dataclass(frozen=True)
class PbmcData:
    """The cells: ``X`` (N, G) float32 autoencoder input, ``expression`` (N, G) float32
    log-normalised values, ``genes`` (G,), ``cell_types``, ``coarse``, ``louvain`` (N,)
    str (the Louvain clusters shipped with the data)."""

    X: np.ndarray
    expression: np.ndarray
    genes: tuple[str, ...]
    cell_types: np.ndarray
    coarse: np.ndarray
    louvain: np.ndarray


def load_pbmc(matrix: str = "X") -> PbmcData:
    """``pbmc68k_reduced`` from scanpy (shipped with it, nothing is downloaded)."""
    try:
        import scanpy as sc
    except ImportError as err:
        raise ImportError("pbmc68k_reduced needs scanpy: pip install 'gsreg[sc]'") from err
    if matrix not in MATRICES:
        raise ValueError(f"matrix must be one of {MATRICES}, got {matrix!r}")
    adata = sc.datasets.pbmc68k_reduced()
    raw = adata.raw.to_adata()[:, adata.var_names]
    expression = _dense(raw.X)
    cell_types = adata.obs["bulk_labels"].astype(str).to_numpy()
    return PbmcData(
        X=_dense(adata.X) if matrix == "X" else expression,
        expression=expression,
        genes=tuple(str(g) for g in adata.var_names),
        cell_types=cell_types,
        coarse=coarse_labels(cell_types),
        louvain=adata.obs["louvain"].astype(str).to_numpy(),
    )


def _dense(matrix) -> np.ndarray:
    return np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix, np.float32)


def split(cell_types: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified ``(train (N_train,), test (N_test,))`` cell indices, drawn with ``seed``."""
    from sklearn.model_selection import train_test_split

    cells = np.arange(len(cell_types))
    train, test = train_test_split(
        cells, test_size=test_fraction, stratify=cell_types, random_state=seed
    )
    return np.sort(train), np.sort(test)


def scale_inputs(X: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, float]:
    """``(Xs (N, G) float32, scale)``: X centred per gene and divided by one common scale,
    both from the training cells; an MSE on Xs times ``scale**2`` is in X's units."""
    mean = X[train].astype(np.float64).mean(axis=0)
    scale = float(np.sqrt(np.mean((X[train] - mean) ** 2)))
    return ((X - mean) / scale).astype(np.float32), scale
