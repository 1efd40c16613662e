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

from ._checks import check_int
from .analysis import modules as graph_modules
from .graphs import Graph

__all__ = [
    "plot_class_map_comparison",
    "plot_graph",
    "plot_graph_snapshots",
    "plot_history",
    "plot_maps",
    "plot_module_class_heatmap",
    "plot_modules",
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
    colorbar.ax.tick_params(labelsize=8)
    return fig


def plot_class_map_comparison(
    rows: Mapping[str, np.ndarray],
    graph: Graph,
    class_names: Sequence[str],
    symmetric: bool | Sequence[bool] = False,
    title: str | None = None,
    columns: int | None = None,
) -> Figure:
    """Class maps (C, n) of several models: one block per model, one panel per class.

    ``rows`` maps a model's label (e.g. ``"GSR lambda=1e-3"``) to its class maps. Each
    block has its own colour scale, since models differ in activation scale, and wraps
    its classes into lines of ``columns`` panels (default: one line up to 6 classes,
    else 5 per line, so that 10 digit maps stay legible at a page's width); the same
    class sits in the same place in every block. ``symmetric`` is one flag for all
    models or one per model, so raw maps and maps minus the global mean can share a
    figure.
    """
    if not rows:
        raise ValueError("rows is empty; pass at least one {label: maps}")
    flags = [symmetric] * len(rows) if isinstance(symmetric, bool) else list(symmetric)
    if len(flags) != len(rows):
        raise ValueError(f"got {len(flags)} symmetric flags for {len(rows)} rows")
    n_classes = len(class_names)
    if columns is None:
        columns = n_classes if n_classes <= 6 else 5
    check_int(columns, "columns", 1)
    columns = min(columns, n_classes)
    lines = -(-n_classes // columns)
    block_height = _PANEL * lines + 0.5
    fig = plt.figure(
        figsize=(_PANEL * columns + 1.2, block_height * len(rows) + 0.4 * bool(title)),
        layout="constrained",
    )
    blocks = np.atleast_1d(fig.subfigures(len(rows), 1))
    for block, (label, maps), flag in zip(blocks, rows.items(), flags, strict=True):
        if len(maps) != n_classes:
            raise ValueError(f"row {label!r} has {len(maps)} maps for {n_classes} class names")
        grid = block.subplots(lines, columns, squeeze=False)
        axes = list(grid.ravel())
        for spare in axes[n_classes:]:
            spare.set_axis_off()
        plot_maps(maps, graph, titles=list(class_names), axes=axes[:n_classes], symmetric=flag)
        block.suptitle(label, x=0.0, ha="left", fontsize=11, fontweight="bold")
    if title:
        fig.suptitle(title, fontsize=12)
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
    titles: Mapping[str, str] | None = None,
) -> Figure:
    """Training curves: one panel per key, one line per run.

    ``histories`` maps a run label to its records (one dict per epoch or step). The x
    axis is the records' ``"epoch"`` (or ``"step"``) when every record has one, else the
    record number; records without the key are skipped. ``titles`` names panels by key
    (default: the key).
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
        ax.set_title((titles or {}).get(key, key))
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


# --------------------------------------------------------------------------- modules

Layout = str | np.ndarray
_MAX_LEGEND = 12  # modules listed in a legend; more are only coloured


def plot_modules(
    graph: Graph,
    labels: np.ndarray | None = None,
    ax: Axes | None = None,
    layout: Layout = "modules",
) -> Figure:
    """The graph with nodes coloured by module, labels (n,) (default: its components).

    ``layout`` places the nodes: ``"modules"`` (each module drawn apart as a networkx
    spring layout, seed 0, of its own edges; modules packed in rows, in label order),
    ``"coords"`` (``graph.coords``) or an (n, 2) array. Edges between modules are drawn
    too. Modules are listed in a legend when there are at most 12.
    """
    labels = graph_modules(graph) if labels is None else labels
    ids, codes = _module_codes(labels, graph.n_nodes)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5), layout="constrained")
    cmap = _categorical_cmap(len(ids))
    _draw_modules(ax, graph, _layout(graph, layout, codes), codes, cmap)
    ax.set_title(f"{graph.name}: {_plural(len(ids), 'module')}", fontsize=10)
    _module_legend(ax, ids, cmap)
    return ax.figure


def plot_graph_snapshots(
    history: Sequence[tuple[int, Graph] | Graph],
    labels: np.ndarray | None = None,
    max_snapshots: int = 6,
    layout: Layout = "modules",
    axes: Sequence[Axes] | None = None,
) -> Figure:
    """Snapshots of a learned graph over training, on one layout and one colouring.

    Args:
        history: ``(step, graph)`` pairs in training order (a bare graph is titled by its
            position); all graphs have the same nodes.
        labels: (n,) module of each node, used for every snapshot; default: the modules
            (components) of the last graph, so one sees them form.
        max_snapshots: at most this many snapshots are drawn, evenly spaced over the
            history and always including the first and the last.
        layout: node positions shared by all panels: ``"modules"`` (as in
            :func:`plot_modules`, from the last graph and ``labels``), ``"coords"`` (the
            last graph's coords) or an (n, 2) array.
        axes: one axes per drawn snapshot; a new one-row figure when omitted.
    """
    snapshots = _snapshots(history, max_snapshots)
    final = snapshots[-1][1]
    labels = graph_modules(final) if labels is None else labels
    ids, codes = _module_codes(labels, final.n_nodes)
    xy = _layout(final, layout, codes)
    cmap = _categorical_cmap(len(ids))
    axes = _axes_row(axes, len(snapshots), figsize=(2.6 * len(snapshots) + 1.2, 2.9))
    for ax, (title, graph) in zip(axes, snapshots, strict=True):
        _draw_modules(ax, graph, xy, codes, cmap)
        ax.set_title(f"{title}\n{_describe_graph(graph)}", fontsize=9)
    _module_legend(axes[-1], ids, cmap)
    return axes[0].figure


def plot_module_class_heatmap(
    table: np.ndarray,
    module_ids: Sequence[object],
    class_names: Sequence[str],
    ax: Axes | None = None,
    fmt: str = ".2f",
    cmap: str | Colormap = "viridis",
) -> Figure:
    """Heatmap of mean module activity per class (rows: modules, columns: classes).

    ``table`` (M, C) and ``module_ids`` (M,) as returned by
    :func:`gsreg.analysis.module_class_table`, ``class_names`` (C,) the names of its
    ``class_ids``. Each cell is annotated with its value (format ``fmt``) in black or
    white, whichever reads better on its colour.
    """
    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2 or table.shape != (len(module_ids), len(class_names)):
        raise ValueError(
            f"table must have shape ({len(module_ids)}, {len(class_names)}) "
            f"(modules, classes), got {table.shape}"
        )
    if ax is None:
        m, c = table.shape
        _, ax = plt.subplots(figsize=(2.4 + 0.8 * c, 1.4 + 0.45 * m), layout="constrained")
    image = ax.imshow(table, cmap=cmap, norm=_shared_norm(table, False), aspect="auto")
    _annotate(ax, image, table, fmt)
    ax.set_xticks(range(table.shape[1]), [str(c) for c in class_names], rotation=45, ha="right")
    ax.set_yticks(range(table.shape[0]), [f"module {m}" for m in module_ids])
    ax.set_xlabel("class")
    ax.figure.colorbar(image, ax=ax, shrink=0.85, label="mean activity")
    return ax.figure


def _describe_graph(graph: Graph) -> str:
    return f"{_plural(graph.n_edges, 'edge')}, {_plural(graph.components()[0], 'component')}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _annotate(ax: Axes, image: ScalarMappable, table: np.ndarray, fmt: str) -> None:
    rgba = image.to_rgba(table)
    luminance = rgba[..., :3] @ np.array([0.299, 0.587, 0.114])
    for (row, col), value in np.ndenumerate(table):
        color = "black" if luminance[row, col] > 0.5 else "white"
        ax.text(col, row, format(value, fmt), ha="center", va="center", color=color, fontsize=8)


def _snapshots(
    history: Sequence[tuple[int, Graph] | Graph], max_snapshots: int
) -> list[tuple[str, Graph]]:
    """Up to ``max_snapshots`` evenly spaced ``(title, graph)`` pairs, first and last kept."""
    check_int(max_snapshots, "max_snapshots")
    if len(history) == 0:
        raise ValueError("history is empty")
    entries = [_snapshot_entry(k, entry) for k, entry in enumerate(history)]
    sizes = {graph.n_nodes for _, graph in entries}
    if len(sizes) != 1:
        raise ValueError(f"all graphs in history must have the same nodes, got sizes {sizes}")
    count = min(max_snapshots, len(entries))
    picks = np.unique(np.round(np.linspace(0, len(entries) - 1, count)).astype(int))
    return [entries[k] for k in picks]


def _snapshot_entry(k: int, entry: tuple[int, Graph] | Graph) -> tuple[str, Graph]:
    """``(title, graph)`` of history entry ``k``: ``(step, graph)`` or a bare graph."""
    if isinstance(entry, Graph):
        return f"graph {k}", entry
    if isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[1], Graph):
        return f"step {entry[0]}", entry[1]
    raise TypeError(f"history[{k}] must be a (step, Graph) pair or a Graph, got {entry!r}")


def _module_codes(labels: np.ndarray, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted module ids and (n,) codes 0..M-1 of node labels (n,)."""
    labels = np.asarray(labels)
    if labels.shape != (n_nodes,):
        raise ValueError(f"labels must have shape ({n_nodes},), got {labels.shape}")
    return np.unique(labels, return_inverse=True)


def _layout(graph: Graph, layout: Layout, codes: np.ndarray) -> np.ndarray:
    """(n, 2) node positions: ``"modules"``, ``"coords"`` or an explicit array."""
    if isinstance(layout, str):
        if layout == "coords":
            return graph.coords
        if layout == "modules":
            return _module_layout(graph, codes)
        raise ValueError(f"layout must be 'modules', 'coords' or an (n, 2) array, got {layout!r}")
    xy = np.asarray(layout, dtype=np.float64)
    if xy.shape != (graph.n_nodes, 2):
        raise ValueError(f"layout must have shape ({graph.n_nodes}, 2), got {xy.shape}")
    return xy


def _module_layout(graph: Graph, codes: np.ndarray) -> np.ndarray:
    """Each module (codes (n,) 0..M-1) as a spring layout (seed 0) of its own edges in a
    disc of radius sqrt(size), the discs packed in rows in code order."""
    import networkx as nx

    whole = graph.to_networkx()
    sizes = np.bincount(codes)
    radii = np.sqrt(sizes)
    gap = max(1.0, 0.5 * radii.max())
    width = 1.2 * np.sqrt(np.sum((2 * radii + gap) ** 2))  # rows of a roughly square block
    xy = np.zeros((graph.n_nodes, 2))
    x = y = row_height = 0.0
    for code, r in enumerate(radii):
        if x > 0 and x + 2 * r > width:
            x, y, row_height = 0.0, y - row_height - gap, 0.0
        nodes = np.flatnonzero(codes == code)
        pos = nx.spring_layout(whole.subgraph(nodes.tolist()), weight="weight", seed=0, scale=r)
        xy[nodes] = [pos[k] for k in nodes.tolist()] + np.array([x + r, y - r])
        x, row_height = x + 2 * r + gap, max(row_height, 2 * r)
    return xy


def _draw_modules(
    ax: Axes, graph: Graph, xy: np.ndarray, codes: np.ndarray, cmap: Colormap
) -> None:
    """Edges (opacity by weight) and nodes at ``xy`` coloured by module code."""
    if graph.n_edges:
        colors = np.tile([0.45, 0.45, 0.45, 0.0], (graph.n_edges, 1))
        colors[:, 3] = 0.15 + 0.6 * graph.weights / graph.weights.max()
        ax.add_collection(LineCollection(xy[graph.edges], colors=colors, linewidths=0.7, zorder=1))
    size = _node_size(graph.n_nodes)
    ax.scatter(*xy.T, c=cmap(codes), s=size, edgecolors="white", linewidths=0.4, zorder=2)
    ax.set_aspect("equal")
    ax.autoscale_view()
    _bare(ax, frame=False)


def _module_legend(ax: Axes, ids: np.ndarray, cmap: Colormap) -> None:
    if len(ids) > _MAX_LEGEND:
        return
    handles = [Patch(color=cmap(i), label=f"module {m}") for i, m in enumerate(ids)]
    ax.legend(
        handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False, fontsize=8
    )
