"""Matplotlib figures of structured layers: maps on graphs, segmentations, training curves.

Every function returns the :class:`~matplotlib.figure.Figure` it drew on and never shows
or closes it. Functions that take ``ax``/``axes`` draw into the caller's axes; otherwise
they create a new figure with constrained layout. Maps are drawn as images when the
graph has an image-like ``shape`` and as nodes at ``graph.coords`` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import BoundaryNorm, Colormap, ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from gsreg.graphs import Graph

__all__ = [
    "plot_class_map_comparison",
    "plot_graph",
    "plot_history",
    "plot_maps",
    "plot_segmentation",
]

_PANEL = 1.5  # inches per map panel


def plot_maps(
    maps: np.ndarray,
    graph: Graph,
    titles: Sequence[str] | None = None,
    axes: Sequence[Axes] | None = None,
    cmap: str | Colormap | None = None,
    symmetric: bool = False,
    row_label: str | None = None,
) -> Figure:
    """Draw maps (C, n) or one map (n,) on ``graph``, one panel each, on one colour scale.

    Args:
        titles: C panel titles.
        axes: C axes to draw into; a new one-row figure when omitted.
        cmap: colormap; ``"viridis"``, or ``"RdBu_r"`` when ``symmetric``.
        symmetric: centre the colour scale at 0 (for maps minus a mean).
        row_label: text left of the first panel.
    """
    maps = _maps_matrix(maps, graph)
    axes = _axes_row(axes, len(maps))
    if titles is not None and len(titles) != len(maps):
        raise ValueError(f"got {len(titles)} titles for {len(maps)} maps")
    cmap = cmap or ("RdBu_r" if symmetric else "viridis")
    norm = _shared_norm(maps, symmetric)
    for ax, values in zip(axes, maps, strict=True):
        mappable = _draw_values(ax, graph, values, cmap, norm)
    for ax, text in zip(axes, titles or [], strict=False):
        ax.set_title(text, fontsize=9)
    if row_label is not None:
        axes[0].set_ylabel(row_label, rotation=0, ha="right", va="center", fontsize=9)
    fig = axes[0].figure
    colorbar = fig.colorbar(mappable, ax=list(axes), shrink=0.85, aspect=12, pad=0.02)
    colorbar.ax.tick_params(labelsize=7)
    return fig


def plot_class_map_comparison(
    rows: Mapping[str, np.ndarray],
    graph: Graph,
    class_names: Sequence[str],
    symmetric: bool | Sequence[bool] = False,
    title: str | None = None,
) -> Figure:
    """One row of class maps (C, n) per model, one column per class.

    ``rows`` maps a row label (e.g. ``"GSR lambda=1e-3"``) to its class maps. Each row
    has its own colour scale, since models differ in activation scale. ``symmetric`` is
    one flag for all rows or one per row, so raw maps and maps minus the global mean
    can share a figure.
    """
    if not rows:
        raise ValueError("rows is empty; pass at least one {label: maps}")
    flags = [symmetric] * len(rows) if isinstance(symmetric, bool) else list(symmetric)
    if len(flags) != len(rows):
        raise ValueError(f"got {len(flags)} symmetric flags for {len(rows)} rows")
    n_cols = len(class_names)
    fig, axes = plt.subplots(
        len(rows),
        n_cols,
        figsize=(_PANEL * n_cols + 2.2, _PANEL * len(rows) + 0.4 + 0.3 * bool(title)),
        layout="constrained",
        squeeze=False,
    )
    for r, ((label, maps), flag) in enumerate(zip(rows.items(), flags, strict=True)):
        if len(maps) != n_cols:
            raise ValueError(f"row {label!r} has {len(maps)} maps for {n_cols} class names")
        titles = list(class_names) if r == 0 else None
        plot_maps(maps, graph, titles=titles, axes=axes[r], symmetric=flag, row_label=label)
    if title:
        fig.suptitle(title)
    return fig


def plot_segmentation(
    segmentations: Mapping[str, np.ndarray],
    graph: Graph,
    class_names: Sequence[str],
    axes: Sequence[Axes] | None = None,
) -> Figure:
    """Categorical maps (n,) of class indices side by side, with a legend of classes."""
    if not segmentations:
        raise ValueError("segmentations is empty")
    axes = _axes_row(axes, len(segmentations))
    n_classes = len(class_names)
    cmap = _categorical_cmap(n_classes)
    norm = BoundaryNorm(np.arange(n_classes + 1) - 0.5, n_classes)
    for ax, (label, seg) in zip(axes, segmentations.items(), strict=True):
        seg = np.asarray(seg)
        if seg.shape != (graph.n_nodes,):
            raise ValueError(f"{label!r}: expected shape ({graph.n_nodes},), got {seg.shape}")
        if seg.min() < 0 or seg.max() >= n_classes:
            raise ValueError(f"{label!r}: class indices must lie in [0, {n_classes})")
        _draw_values(ax, graph, seg, cmap, norm)
        ax.set_title(label, fontsize=9)
    handles = [Patch(color=cmap(i), label=str(name)) for i, name in enumerate(class_names)]
    axes[-1].legend(
        handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False, fontsize=8
    )
    return axes[0].figure


def plot_graph(
    graph: Graph,
    values: np.ndarray | None = None,
    ax: Axes | None = None,
    labels: np.ndarray | None = None,
) -> Figure:
    """Nodes at ``graph.coords`` coloured by ``values`` (n,) or categorical ``labels`` (n,).

    Edge opacity grows with edge weight. Pass at most one of ``values`` and ``labels``.
    """
    if values is not None and labels is not None:
        raise ValueError("pass values or labels, not both")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5), layout="constrained")
    _draw_edges(ax, graph, by_weight=True)
    xy = graph.coords
    size = _node_size(graph.n_nodes)
    if values is not None:
        values = _maps_matrix(values, graph)[0]
        points = ax.scatter(*xy.T, c=values, s=size, cmap="viridis", zorder=2)
        ax.figure.colorbar(points, ax=ax, shrink=0.8)
    elif labels is not None:
        _scatter_categories(ax, xy, np.asarray(labels), graph.n_nodes, size)
    else:
        ax.scatter(*xy.T, s=size, color="tab:blue", zorder=2)
    ax.set_title(graph.name, fontsize=10)
    ax.set_aspect("equal")
    _bare(ax, frame=False)
    return ax.figure


def plot_history(
    histories: Mapping[str, Sequence[Mapping[str, float]]],
    keys: Sequence[str] = ("train_loss", "val_mse"),
    axes: Sequence[Axes] | None = None,
    logy: bool = False,
) -> Figure:
    """Training curves: one panel per key, one line per run.

    ``histories`` maps a run label to its records (one dict per epoch or step). The x
    axis is the records' ``"epoch"`` (or ``"step"``) when every record has one, else the
    record number; records without the key are skipped.
    """
    axes = _axes_row(axes, len(keys), figsize=(4.0 * len(keys), 3.0))
    for ax, key in zip(axes, keys, strict=True):
        for label, records in histories.items():
            xlabel, xs, ys = _series(records, key)
            if ys:
                ax.plot(xs, ys, label=label, marker="." if len(ys) < 30 else None)
                ax.set_xlabel(xlabel)
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        if logy and ax.lines:
            ax.set_yscale("log")
        ax.set_title(key)
    return axes[0].figure


# --------------------------------------------------------------------------- helpers


def _maps_matrix(maps: np.ndarray, graph: Graph) -> np.ndarray:
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim == 1:
        maps = maps[None, :]
    if maps.ndim != 2 or maps.shape[1] != graph.n_nodes or len(maps) == 0:
        raise ValueError(
            f"maps must have shape (C, {graph.n_nodes}) for {graph!r}, got {maps.shape}"
        )
    return maps


def _axes_row(
    axes: Sequence[Axes] | None, count: int, figsize: tuple[float, float] | None = None
) -> list[Axes]:
    """The caller's axes (checked) or a new one-row figure of ``count`` panels."""
    if axes is None:
        figsize = figsize or (_PANEL * count + 1.0, _PANEL + 0.5)
        _, grid = plt.subplots(1, count, figsize=figsize, layout="constrained", squeeze=False)
        return list(grid[0])
    axes = list(np.ravel(np.asarray(axes, dtype=object)))
    if len(axes) != count:
        raise ValueError(f"need {count} axes, got {len(axes)}")
    return axes


def _shared_norm(maps: np.ndarray, symmetric: bool) -> Normalize:
    finite = maps[np.isfinite(maps)]
    if finite.size == 0:
        return Normalize(0.0, 1.0)
    if symmetric:
        vmax = float(np.abs(finite).max())
        vmin = -vmax
    else:
        vmin, vmax = float(finite.min()), float(finite.max())
    if vmin == vmax:  # constant maps: widen so the colorbar has a range
        pad = 0.1 * abs(vmax) or 1.0
        vmin, vmax = vmin - pad, vmax + pad
    return Normalize(vmin, vmax)


def _draw_values(
    ax: Axes, graph: Graph, values: np.ndarray, cmap: str | Colormap, norm: Normalize
) -> ScalarMappable:
    """One map: an image for lattice graphs, else coloured nodes over light edges."""
    if graph.shape is not None:
        image = ax.imshow(
            np.reshape(values, graph.shape), cmap=cmap, norm=norm, interpolation="nearest"
        )
        _bare(ax, frame=True)
        return image
    _draw_edges(ax, graph, by_weight=False)
    points = ax.scatter(
        *graph.coords.T,
        c=values,
        cmap=cmap,
        norm=norm,
        s=_node_size(graph.n_nodes) / 2,
        edgecolors="none",
        zorder=2,
    )
    ax.set_aspect("equal")
    _bare(ax, frame=False)
    return points


def _draw_edges(ax: Axes, graph: Graph, by_weight: bool) -> None:
    if graph.n_edges == 0:
        return
    segments = graph.coords[graph.edges]  # (E, 2 ends, 2 coords)
    colors = np.tile([0.45, 0.45, 0.45, 0.35], (graph.n_edges, 1))
    if by_weight:
        colors[:, 3] = 0.15 + 0.85 * graph.weights / graph.weights.max()
    ax.add_collection(LineCollection(segments, colors=colors, linewidths=0.8, zorder=1))
    ax.autoscale_view()


def _scatter_categories(ax: Axes, xy: np.ndarray, labels: np.ndarray, n: int, size: float):
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {labels.shape}")
    categories, codes = np.unique(labels, return_inverse=True)
    cmap = _categorical_cmap(len(categories))
    ax.scatter(*xy.T, c=cmap(codes), s=size, zorder=2)
    handles = [Patch(color=cmap(i), label=str(c)) for i, c in enumerate(categories)]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)


def _categorical_cmap(n_classes: int) -> Colormap:
    base = "tab10" if n_classes <= 10 else "tab20" if n_classes <= 20 else "turbo"
    cmap = plt.get_cmap(base)
    if base == "turbo":
        return cmap.resampled(n_classes)
    return ListedColormap(cmap.colors[:n_classes])


def _node_size(n_nodes: int) -> float:
    return float(np.clip(3000.0 / n_nodes, 8.0, 120.0))


def _bare(ax: Axes, frame: bool) -> None:
    """No ticks; keep the frame around images only. Axis labels stay visible."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(frame)


def _series(records: Sequence[Mapping], key: str) -> tuple[str, list[float], list[float]]:
    xkey = next((k for k in ("epoch", "step") if records and all(k in r for r in records)), None)
    xs, ys = [], []
    for i, record in enumerate(records):
        if record.get(key) is not None:
            xs.append(float(record[xkey]) if xkey else float(i + 1))
            ys.append(float(record[key]))
    return xkey or "record", xs, ys
