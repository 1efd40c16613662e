"""GSR for single-cell data in AnnData objects, in scanpy's tl / pl / get layout.

    import gsreg.sc

    gsreg.sc.tl.gsr(adata)                          # obsm["X_gsr"], uns["gsr"], varm, obs
    gsreg.sc.pl.modules(adata, groupby="bulk_labels")  # module x group mean activity
    gsreg.sc.pl.maps(adata, groupby="bulk_labels")     # group-average maps of the layer
    gsreg.sc.pl.loadings(adata, module=1)           # a module's top genes
    gsreg.sc.get.loadings(adata)                    # genes x modules DataFrame

    est = gsreg.sc.fit(adata)                       # the same fit, the estimator returned
    gsreg.sc.transform(other, est)                  # the trained layer on other cells

Needs the ``sc`` extra (``pip install gsreg[sc]``); ``import gsreg`` never imports it.
"""

from __future__ import annotations

try:
    import anndata  # noqa: F401
    import scanpy  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised with anndata or scanpy hidden
    raise ImportError(
        "gsreg.sc needs the 'anndata' and 'scanpy' packages: pip install gsreg[sc]"
    ) from err

from . import get, pl, tl
from ._tools import fit, transform

__all__ = ["fit", "get", "pl", "tl", "transform"]
