"""Results of :func:`gsreg.sc.tl.gsr` as pandas tables, as scanpy's ``sc.get``.

gsreg.sc.get.loadings(adata)                     # genes x modules DataFrame
gsreg.sc.get.loadings(adata, by="unit")          # genes x units
gsreg.sc.get.loadings(adata)["module_3"].nlargest(20)   # module 3's top genes
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

__all__ = ["loadings"]

BY = ("module", "unit")


def loadings(adata: AnnData, *, key: str = "gsr", by: str = "module") -> pd.DataFrame:
    """The gene loadings written by :func:`gsreg.sc.tl.gsr` (like scvi-tools'
    ``LinearSCVI.get_loadings``): a DataFrame (n_vars, n_modules) with columns
    ``module_<i>`` (``by="module"``) or (n_vars, n_units) with columns ``unit_<j>``
    (``by="unit"``), indexed by ``adata.var_names``. Higher means the gene's
    reconstruction rises more with the module (unit); see ``uns[key]["loadings"]`` for
    the method."""
    info, varm_key = loadings_key(adata, key, by)
    values = np.asarray(adata.varm[varm_key], dtype=np.float64)
    if by == "module":
        ids = np.unique(np.asarray(info["modules"]))
        columns = [f"module_{i}" for i in ids]
    else:
        columns = [f"unit_{j}" for j in range(values.shape[1])]
    return pd.DataFrame(values, index=adata.var_names.copy(), columns=columns)


def loadings_key(adata: AnnData, key: str, by: str) -> tuple[Mapping[str, Any], str]:
    """``(uns[key], the varm key of the loadings by module or unit)``; a KeyError or
    ValueError says what is missing."""
    if not isinstance(adata, AnnData):
        raise TypeError(f"adata must be an AnnData object, got {type(adata).__name__}")
    if by not in BY:
        raise ValueError(f"by must be one of {BY}, got {by!r}")
    info = adata.uns.get(key)
    if not isinstance(info, Mapping):
        raise KeyError(f"adata.uns[{key!r}] not found: run gsreg.sc.tl.gsr(adata) first")
    if "loadings" not in info:
        raise KeyError(
            f"adata.uns[{key!r}] has no loadings: the fit was on an obsm representation "
            "(its features are not genes) or had loadings=None"
        )
    if by == "module" and "modules" not in info:
        raise ValueError(
            f"adata.uns[{key!r}] has no modules (a fixed graph): use by='unit' (unit=...)"
        )
    names = info.get("keys", {})
    varm_key = names.get("varm_modules" if by == "module" else "varm")
    if varm_key not in adata.varm:
        raise KeyError(f"adata.varm[{varm_key!r}] not found: run gsreg.sc.tl.gsr(adata) again")
    return info, varm_key
