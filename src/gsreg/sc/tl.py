"""Tools in scanpy's convention: write into ``adata``, return None (or the copy).

    gsreg.sc.tl.gsr(adata)                       # obsm["X_gsr"], uns["gsr"], varm["gsr"], ...
    out = gsreg.sc.tl.gsr(adata, copy=True)      # adata untouched, ``out`` written

Use :func:`gsreg.sc.fit` for the same fit with the trained estimator returned (an
AnnData object cannot hold the torch model, which ``transform`` and ``save`` need).
"""

from __future__ import annotations

from typing import Any

from anndata import AnnData

from ..graphs import Graph
from ._tools import fit

__all__ = ["gsr"]


def gsr(
    adata: AnnData,
    graph: str | Graph = "learned",
    *,
    layer: str | None = None,
    use_rep: str | None = None,
    key_added: str | None = None,
    weight: float | None = None,
    budget: float | str | None = "auto",
    epochs: int | str = "auto",
    random_state: int | None = 0,
    groupby: str | None = None,
    controls: bool = True,
    loadings: str | None = "gradient",
    copy: bool = False,
    verbose: int | str = "auto",
    **estimator_options: Any,
) -> AnnData | None:
    """Graph spectral regularization of an autoencoder's layer on the cells of ``adata``.

    Trains :class:`gsreg.GSRAutoencoder` exactly as :func:`gsreg.sc.fit` (same arguments,
    same model) and writes, with ``key_added=None`` (a string is used verbatim instead
    of each of ``X_gsr``, ``gsr``; the module columns and module loadings add
    ``_module``/``_modules`` to it):

    - ``obsm["X_gsr"]``: (n_obs, n_units) float32 activations of the structured layer;
    - ``uns["gsr"]``: ``params``, ``keys`` (where each entry went), the graph, the
      ``modules`` of a learned graph, training history, ``mse``, ``loadings`` (the
      method) and, with ``groupby`` and ``controls``, ``controls``;
    - ``varm["gsr"]``: (n_vars, n_units) float32 gene loadings of each unit, and
      ``varm["gsr_modules"]``: (n_vars, n_modules) of each module (input X or a layer
      only; "gradient" by default: the change in each gene's reconstruction when the
      unit, or all the module's units, rise by one standard deviation);
    - ``obs["gsr_module_<i>"]``: mean activity of module i per cell, and
      ``obs["gsr_module"]``: the module each cell drives most (learned graphs).

    Args:
        adata: cells x genes (see :func:`gsreg.sc.fit` for the accepted matrices).
        graph, layer, use_rep, weight, budget, epochs, random_state, groupby, controls,
            loadings, verbose, estimator_options: as in :func:`gsreg.sc.fit`.
        key_added: None or the key used verbatim (above).
        copy: return a written copy and leave ``adata`` untouched.

    Returns:
        None, or the written copy when ``copy=True``.
    """
    result = fit(
        adata,
        graph=graph,
        layer=layer,
        use_rep=use_rep,
        key_added=key_added,
        weight=weight,
        budget=budget,
        epochs=epochs,
        random_state=random_state,
        copy=copy,
        verbose=verbose,
        groupby=groupby,
        controls=controls,
        loadings=loadings,
        **estimator_options,
    )
    return result[0] if copy else None
