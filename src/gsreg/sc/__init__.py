"""GSR for single-cell data in AnnData objects, in the style of scanpy.

    import gsreg.sc

    est = gsreg.sc.fit(adata, graph="learned")       # writes obsm["X_gsr"], uns["gsr"], obs
    gsreg.sc.pl.modules(adata, groupby="bulk_labels")  # module x group mean activity
    gsreg.sc.pl.maps(adata, groupby="bulk_labels")     # group-average maps of the layer
    gsreg.sc.transform(other, est)                   # the trained layer on other cells

Needs the ``sc`` extra (``pip install gsreg[sc]``); ``import gsreg`` never imports it.
"""

from __future__ import annotations

try:
    import anndata  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised with anndata hidden
    raise ImportError(
        "gsreg.sc needs the 'anndata' package (and scanpy for the walkthrough): "
        "pip install gsreg[sc]"
    ) from err

from . import pl
from ._tools import fit, transform

__all__ = ["fit", "pl", "transform"]
