"""Plots of what :func:`gsreg.sc.tl.gsr` (or :func:`gsreg.sc.fit`) wrote into an AnnData
object, in scanpy's style.

    gsreg.sc.pl.modules(adata, groupby="bulk_labels")   # module x group heatmap
    gsreg.sc.pl.maps(adata, groupby="bulk_labels")      # group-average maps of the layer
    gsreg.sc.pl.loadings(adata, module=3)               # top genes of module 3

As in scanpy: ``show=False`` returns the Axes (``modules``: one Axes; ``maps`` and
``loadings``: a list of Axes, one per panel), otherwise the figure is shown (on an
interactive backend; under Agg it is closed) and None is returned; ``show=None`` follows
``scanpy.settings.autoshow``. ``save=True`` or a suffix such as ``"_pbmc.png"`` writes
``gsr_modules_pbmc.png`` (``gsr_maps...``, ``gsr_loadings...``) into scanpy's
``settings.figdir``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .. import analysis, plotting
from ..graphs import Graph
from ._tools import graph_from_uns

__all__ = ["loadings", "maps", "modules"]

STANDARD_SCALES = (None, "module", "group")
_FORMATS = (".pdf", ".png", ".svg")
_NON_INTERACTIVE = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


def modules(
    adata: AnnData,
    groupby: str,
    *,
    key: str = "gsr",
    standard_scale: str | None = None,
    min_size: int = 1,
    cmap: str = "viridis",
    fmt: str = ".2f",
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | None = None,
) -> Axes | None:
    """Heatmap of mean module activity per group of cells (rows: modules, columns: groups).

    Args:
        adata: written by :func:`gsreg.sc.tl.gsr` with a learned graph (it has modules).
        groupby: a column of ``adata.obs``; categories keep their order.
        key: the ``uns`` key of the fit (``key_added``; default "gsr").
        standard_scale: None (mean activities as they are), "module" (each row scaled to
            [0, 1]: which groups drive a module) or "group" (each column to [0, 1]).
        min_size: leave out modules of fewer neurons (e.g. 2 hides single neurons).
        cmap, fmt: colormap and the format of the cell annotations.
        ax: draw into this axes.
        show, save: see the module docstring.
    """
    info = _info(adata, key)
    if "modules" not in info:
        raise ValueError(
            f"adata.uns[{key!r}] has no modules: the graph was fixed "
            f"({info.get('params', {}).get('graph')!r}) or none was learned; fit with "
            "graph='learned', or use gsreg.sc.pl.maps"
        )
    if standard_scale not in STANDARD_SCALES:
        raise ValueError(f"standard_scale must be one of {STANDARD_SCALES}, got {standard_scale!r}")
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) or min_size < 1:
        raise ValueError(f"min_size must be an int >= 1, got {min_size!r}")
    Z = _activations(adata, info, key)
    labels = np.asarray(info["modules"], dtype=np.int64)
    codes, names = _groups(adata, groupby)
    table, module_ids, class_ids = analysis.module_class_table(Z, labels, codes)
    sizes = np.bincount(labels)[module_ids]
    keep = sizes >= min_size
    if not keep.any():
        raise ValueError(f"no module has {min_size} or more neurons (sizes {sizes.tolist()})")
    table, module_ids = table[keep], module_ids[keep]
    if standard_scale is not None:
        table = _min_max(table, axis=1 if standard_scale == "module" else 0)
    fig = plotting.plot_module_class_heatmap(
        table, module_ids, [names[c] for c in class_ids], ax=ax, fmt=fmt, cmap=cmap
    )
    axes = ax if ax is not None else fig.axes[0]
    axes.set_xlabel(groupby)
    if standard_scale is not None:
        fig.axes[-1].set_ylabel(f"mean activity, scaled per {standard_scale}")
    return _finish(fig, axes, "gsr_modules", show, save)


def maps(
    adata: AnnData,
    groupby: str,
    *,
    key: str = "gsr",
    deviation: bool = False,
    cmap: str | None = None,
    show: bool | None = None,
    save: bool | str | None = None,
) -> list[Axes] | None:
    """Group-average maps of the structured layer: one panel per group of cells.

    A grid-like graph (``grid:8x8``, ...) draws each map as an image; other fixed graphs
    draw the units at the graph's coordinates. A learned graph draws the module graph
    first (units coloured by module; each module a seeded spring layout of its own
    edges, the modules side by side, largest first) and then each group's mean activity
    on the same layout. Panels wrap after 6 columns and share one colour scale.

    Args:
        adata: written by :func:`gsreg.sc.tl.gsr`.
        groupby: a column of ``adata.obs``; categories keep their order.
        key: the ``uns`` key of the fit (default "gsr").
        deviation: draw group means minus the mean over all cells (what sets each group
            apart), on a colour scale centred at 0.
        cmap: colormap (default "viridis", or "RdBu_r" with ``deviation``).
        show, save: see the module docstring.

    Returns:
        With ``show=False`` the drawn panels' Axes: the module graph first (learned
        graphs), then one per group in category order.
    """
    info = _info(adata, key)
    if "graph" not in info:
        raise ValueError(f"adata.uns[{key!r}] has no graph (none was learned during fit)")
    graph = graph_from_uns(info)
    Z = _activations(adata, info, key)
    if Z.shape[1] != graph.n_nodes:
        raise ValueError(
            f"adata.obsm has {Z.shape[1]} units but the graph in adata.uns[{key!r}] has "
            f"{graph.n_nodes} nodes"
        )
    codes, names = _groups(adata, groupby)
    fn = analysis.class_deviation_maps if deviation else analysis.class_maps
    values = fn(Z, codes)
    titles = [textwrap.fill(names[c], 18) for c in np.unique(codes)]
    labels = np.asarray(info["modules"], dtype=np.int64) if "modules" in info else None
    if labels is not None:  # learned: units placed module by module, the same in every panel
        graph = Graph(
            graph.n_nodes,
            graph.edges,
            graph.weights,
            _module_positions(graph, labels),
            name=graph.name,
        )
    n_panels = len(titles) + (labels is not None)
    n_cols = min(n_panels, 6)
    n_rows = -(-n_panels // n_cols)
    fig, grid = plt.subplots(
        n_rows,
        n_cols,
        figsize=(2.2 * n_cols + 1.4, 2.4 * n_rows + 0.4),
        layout="constrained",
        squeeze=False,
    )
    axes = list(grid.ravel())
    for extra in axes[n_panels:]:
        extra.set_axis_off()
    drawn = axes[:n_panels]
    if labels is not None:
        plotting.plot_modules(graph, labels, ax=axes[0], layout="coords")
        axes[0].set_title(f"{len(np.unique(labels))} modules", fontsize=9)
        axes = axes[1:]
    plotting.plot_maps(
        values, graph, titles=titles, axes=axes[: len(titles)], cmap=cmap, symmetric=deviation
    )
    what = "mean - all cells" if deviation else "mean activity"
    fig.suptitle(f"{graph.name}: {what} by {groupby}", fontsize=10)
    return _finish(fig, drawn, "gsr_maps", show, save)


def loadings(
    adata: AnnData,
    module: int | list[int] | None = None,
    *,
    unit: int | list[int] | None = None,
    key: str = "gsr",
    n_genes: int = 20,
    include_lowest: bool = False,
    show: bool | None = None,
    save: bool | str | None = None,
) -> list[Axes] | None:
    """Top genes of modules (or units) ranked by their loadings, one panel each, in the
    manner of ``sc.pl.pca_loadings``: loading against rank, each point labelled with its
    gene.

    Args:
        adata: written by :func:`gsreg.sc.tl.gsr` on genes (X or a layer).
        module: a module id or a list of them; None (and no ``unit``): every module.
        unit: instead of modules, a unit (column of ``obsm``) or a list of them.
        key: the ``uns`` key of the fit (default "gsr").
        n_genes: genes per panel, the highest loadings first.
        include_lowest: also the ``n_genes`` lowest (most negative) loadings, after a gap.
        show, save: see the module docstring (files ``gsr_loadings<save>``).

    Returns:
        With ``show=False`` a list of Axes, one per module (unit) in the order asked.
    """
    from . import get

    if module is not None and unit is not None:
        raise ValueError(f"pass module or unit, not both (got {module!r} and {unit!r})")
    if isinstance(n_genes, bool) or not isinstance(n_genes, (int, np.integer)) or n_genes < 1:
        raise ValueError(f"n_genes must be an int >= 1, got {n_genes!r}")
    by = "unit" if unit is not None else "module"
    table = get.loadings(adata, key=key, by=by)
    asked = unit if unit is not None else module
    ids = _panel_ids(asked, table.columns, by)
    n_cols = min(len(ids), 5)
    n_rows = -(-len(ids) // n_cols)
    width = 0.32 * n_genes * (2 if include_lowest else 1) + 1.0
    fig, grid = plt.subplots(
        n_rows, n_cols, figsize=(width * n_cols, 3.2 * n_rows), layout="constrained", squeeze=False
    )
    axes = list(grid.ravel())
    for extra in axes[len(ids) :]:
        extra.set_axis_off()
    method = str(_info(adata, key)["loadings"])
    for ax, i in zip(axes, ids, strict=False):
        _ranked_genes(ax, table[f"{by}_{i}"], n_genes, include_lowest)
        ax.set_title(f"{by} {i}", fontsize=10)
        ax.set_ylabel(f"loading ({method})")
    return _finish(fig, axes[: len(ids)], "gsr_loadings", show, save)


def _panel_ids(asked, columns, by: str) -> list[int]:
    """The module (unit) ids to draw, each checked against the loadings' columns."""
    available = [int(str(c).rsplit("_", 1)[1]) for c in columns]
    if asked is None:
        return available
    ids = [asked] if isinstance(asked, (int, np.integer)) else list(asked)
    if not ids:
        raise ValueError(f"{by} must name at least one {by}, got {asked!r}")
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or i not in available:
            raise ValueError(f"{by} {i!r} is not among the {by}s {available}")
    return [int(i) for i in ids]


def _ranked_genes(ax: Axes, values, n_genes: int, include_lowest: bool) -> None:
    """Loadings (a Series indexed by gene) from the highest down, each point labelled."""
    order = values.sort_values(ascending=False)
    shown = order.iloc[:n_genes]
    if include_lowest and len(order) > n_genes:
        shown = pd.concat([shown, order.iloc[max(n_genes, len(order) - n_genes) :]])
    x = np.arange(len(shown), dtype=float)
    if include_lowest and len(shown) > n_genes:
        x[n_genes:] += 1  # a gap between the highest and the lowest
    y = shown.to_numpy()
    ax.scatter(x, y, s=8, color="black")
    for xi, yi, gene in zip(x, y, shown.index, strict=True):
        ax.text(xi, yi, f" {gene}", rotation=90, ha="center", va="bottom", fontsize=8)
    low, high = float(min(y.min(), 0.0)), float(max(y.max(), 0.0))
    ax.set_ylim(low - 0.05 * (high - low or 1.0), high + 0.45 * (high - low or 1.0))
    ax.set_xlim(-0.8, x[-1] + 0.8)
    ax.set_xticks([])
    ax.set_xlabel("genes, ranked")
    ax.axhline(0.0, color="0.8", linewidth=0.8, zorder=0)


def _module_positions(graph: Graph, labels: np.ndarray) -> np.ndarray:
    """(n, 2) positions: each module a seeded spring layout of its own edges in a disc of
    radius sqrt(size), the discs on a square grid in label order (largest first)."""
    import networkx as nx

    whole = graph.to_networkx()
    ids = np.unique(labels)
    cell = 2.4 * np.sqrt(np.bincount(labels)[ids].max())
    per_row = int(np.ceil(np.sqrt(len(ids))))
    xy = np.zeros((graph.n_nodes, 2))
    for k, module in enumerate(ids):
        nodes = np.flatnonzero(labels == module).tolist()
        radius = np.sqrt(len(nodes))
        pos = nx.spring_layout(whole.subgraph(nodes), weight="weight", seed=0, scale=radius)
        centre = np.array([k % per_row, -(k // per_row)]) * cell
        xy[nodes] = np.array([pos[v] for v in nodes]) + centre
    return xy


# ---------------------------------------------------------------------------- helpers


def _info(adata: AnnData, key: str) -> Mapping[str, Any]:
    if not isinstance(adata, AnnData):
        raise TypeError(f"adata must be an AnnData object, got {type(adata).__name__}")
    info = adata.uns.get(key)
    if not isinstance(info, Mapping):
        raise KeyError(f"adata.uns[{key!r}] not found: run gsreg.sc.tl.gsr(adata) first")
    return info


def _activations(adata: AnnData, info: Mapping[str, Any], key: str) -> np.ndarray:
    obsm_key = info.get("keys", {}).get("obsm", f"X_{key}")
    if obsm_key not in adata.obsm:
        raise KeyError(f"adata.obsm[{obsm_key!r}] not found: run gsreg.sc.tl.gsr(adata) first")
    return np.asarray(adata.obsm[obsm_key], dtype=np.float64)


def _groups(adata: AnnData, groupby: str) -> tuple[np.ndarray, list[str]]:
    """(N,) int codes of ``obs[groupby]`` and the names of all codes (categories keep
    their order; other columns are sorted)."""
    if groupby not in adata.obs.columns:
        raise KeyError(
            f"groupby {groupby!r} is not a column of adata.obs "
            f"(available: {list(adata.obs.columns)})"
        )
    column = adata.obs[groupby]
    if column.isna().any():
        raise ValueError(f"adata.obs[{groupby!r}] has missing values")
    if hasattr(column, "cat"):
        return column.cat.codes.to_numpy(np.int64), [str(c) for c in column.cat.categories]
    names, codes = np.unique(column.to_numpy(), return_inverse=True)
    return codes.astype(np.int64), [str(c) for c in names]


def _min_max(table: np.ndarray, axis: int) -> np.ndarray:
    low = table.min(axis=axis, keepdims=True)
    span = table.max(axis=axis, keepdims=True) - low
    return (table - low) / np.where(span > 0, span, 1.0)


def _finish(fig: Figure, axes, name: str, show: bool | None, save: bool | str | None):
    """Save as scanpy does, then return ``axes`` (``show=False``) or show the figure and
    return None."""
    settings = _scanpy_settings()
    if save:
        suffix = "" if save is True else str(save)
        ext = next((e for e in _FORMATS if suffix.endswith(e)), None)
        stem = suffix[: -len(ext)] if ext else suffix
        fmt = ext[1:] if ext else str(getattr(settings, "file_format_figs", "png"))
        figdir = Path(getattr(settings, "figdir", "figures"))
        figdir.mkdir(parents=True, exist_ok=True)
        fig.savefig(figdir / f"{name}{stem}.{fmt}", bbox_inches="tight")
    if show is None:
        show = bool(getattr(settings, "autoshow", True))
    if not show:
        return axes
    if _interactive():
        plt.show()
    else:
        plt.close(fig)
    return None


def _scanpy_settings() -> object | None:
    try:
        import scanpy
    except ImportError:
        return None
    return scanpy.settings


def _interactive() -> bool:
    """Whether pyplot's backend can show figures (Agg, PDF, SVG, ... cannot)."""
    return matplotlib.get_backend().lower() not in _NON_INTERACTIVE
