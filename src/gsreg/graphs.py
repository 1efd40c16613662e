"""Graphs on neurons: the immutable :class:`Graph` value type, constructors and Laplacians.

Nodes are numbered ``0..n-1``; lattice constructors use row-major order, so neuron ``k``
of an ``h x w`` layout sits at row ``k // w``, column ``k % w``. Every constructed graph is
named by its spec, so ``parse(g.name) == g``.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from ._checks import check_int, is_int

if TYPE_CHECKING:
    import networkx as nx
    import torch

LEARNED = "learned"
"""The graph argument (estimators, ``gsreg fit``, ``gsreg.sc``) that asks for a graph learned
from the layer's co-activations instead of a fixed one."""
LAPLACIAN_KINDS = ("combinatorial", "normalized", "random_walk")


@dataclass(frozen=True, eq=False)
class Graph:
    """A weighted undirected graph on ``n_nodes`` neurons.

    Attributes:
        n_nodes: number of nodes n.
        edges: (E, 2) int64, each undirected edge once with ``i < j``, sorted, unique.
        weights: (E,) float64, positive and finite.
        coords: (n, 2) float64 positions for plotting (x = column, y = -row for lattices);
            ``None`` gives :func:`circle_layout`.
        name: human-readable name, e.g. ``"grid:8x8"``.
        shape: ``(h, w)`` when node ``k`` sits at ``(k // w, k % w)`` of an image-like
            layout, else ``None``.

    The arrays are read-only. Two graphs are equal when they have the same nodes, edges and
    weights; ``coords``, ``name`` and ``shape`` are presentation and do not take part.
    """

    n_nodes: int
    edges: np.ndarray
    weights: np.ndarray
    coords: np.ndarray | None = None
    name: str = "graph"
    shape: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        edges, weights = _validate_edges(self.n_nodes, self.edges, self.weights)
        coords = circle_layout(self.n_nodes) if self.coords is None else self.coords
        coords = _validate_coords(self.n_nodes, coords)
        if not isinstance(self.name, str):
            raise ValueError(f"name must be a string, got {self.name!r}")
        for arr in (edges, weights, coords):
            arr.setflags(write=False)
        object.__setattr__(self, "n_nodes", int(self.n_nodes))
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "coords", coords)
        object.__setattr__(self, "shape", _validate_shape(self.n_nodes, self.shape))

    @property
    def n_edges(self) -> int:
        return int(self.edges.shape[0])

    def degrees(self) -> np.ndarray:
        """(n,) float64 weighted degrees."""
        deg = np.zeros(self.n_nodes)
        np.add.at(deg, self.edges[:, 0], self.weights)
        np.add.at(deg, self.edges[:, 1], self.weights)
        return deg

    def adjacency(self) -> sp.csr_matrix:
        """Symmetric (n, n) scipy CSR weight matrix W."""
        i, j = self.edges[:, 0], self.edges[:, 1]
        rows = np.concatenate([i, j])
        cols = np.concatenate([j, i])
        vals = np.concatenate([self.weights, self.weights])
        return sp.csr_matrix((vals, (rows, cols)), shape=(self.n_nodes, self.n_nodes))

    def laplacian_terms(self, kind: str = "combinatorial") -> tuple[np.ndarray, np.ndarray]:
        """Diagonal and per-edge coefficients of the symmetric quadratic form of a Laplacian.

        Returns ``(diag (n,), coef (E,))`` such that
        ``z^T L z = sum_i diag_i z_i^2 - 2 sum_e coef_e z_{i_e} z_{j_e}``.
        For ``random_walk`` (not symmetric) this is the form of ``(L + L^T) / 2``, which has
        the same quadratic form. Isolated nodes get a zero diagonal in every kind.
        """
        kind = _check_kind(kind)
        deg = self.degrees()
        i, j = self.edges[:, 0], self.edges[:, 1]
        if kind == "combinatorial":
            return deg, self.weights.copy()
        diag = (deg > 0).astype(np.float64)
        safe = _safe_degrees(deg)
        if kind == "normalized":
            # w / (sqrt(d_i) sqrt(d_j)): d_i d_j alone over- or underflows for extreme weights
            root = np.sqrt(safe)
            return diag, self.weights / root[i] / root[j]
        return diag, 0.5 * self.weights * (1.0 / safe[i] + 1.0 / safe[j])

    def laplacian(
        self,
        kind: str = "combinatorial",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """The (n, n) Laplacian as a coalesced torch sparse COO tensor (``dtype`` default
        float32): the entries of :meth:`laplacian_matrix`.

        ``combinatorial``: D - W. ``normalized``: I - D^-1/2 W D^-1/2.
        ``random_walk``: I - D^-1 W (not symmetric). Isolated nodes have zero rows.
        """
        import torch  # here only: parsing and checking graphs needs no torch (fast CLI)

        rows, cols, vals = self._laplacian_entries(kind, symmetric=False)
        lap = torch.sparse_coo_tensor(
            torch.as_tensor(np.stack([rows, cols]), dtype=torch.int64),
            torch.as_tensor(vals, dtype=torch.float32 if dtype is None else dtype),
            (self.n_nodes, self.n_nodes),
            check_invariants=False,
        )
        return lap.coalesce().to(device)

    def laplacian_matrix(
        self, kind: str = "combinatorial", *, symmetric: bool = False
    ) -> sp.csr_array:
        """The (n, n) Laplacian as a float64 scipy CSR array in canonical format (sorted
        indices, no duplicates; every diagonal entry stored, zeros of isolated nodes too).

        ``kind`` as in :meth:`laplacian`. ``symmetric=True`` gives the symmetric matrix
        with the same quadratic form, ``(L + L^T) / 2``, which differs from L only for
        ``random_walk`` (the matrix of :meth:`laplacian_terms`).
        """
        n = self.n_nodes
        rows, cols, vals = self._laplacian_entries(kind, symmetric)
        lap = sp.csr_array((vals, (rows, cols)), shape=(n, n))
        lap.sum_duplicates()  # sorts the indices (there are no duplicates to sum)
        return lap

    def _laplacian_entries(
        self, kind: str, symmetric: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, cols, vals)`` (n + 2E,) of the ``kind`` Laplacian (or its symmetric
        form): the diagonal, then each edge (i, j) as L[i, j] and L[j, i]; the one place
        the Laplacian matrices are assembled, from :meth:`laplacian_terms`."""
        diag, coef = self.laplacian_terms(kind)
        i, j = self.edges[:, 0], self.edges[:, 1]
        if kind == "random_walk" and not symmetric:
            safe = _safe_degrees(self.degrees())
            w_ij, w_ji = self.weights / safe[i], self.weights / safe[j]
        else:
            w_ij = w_ji = coef
        nodes = np.arange(self.n_nodes)
        rows = np.concatenate([nodes, i, j])
        cols = np.concatenate([nodes, j, i])
        return rows, cols, np.concatenate([diag, -w_ij, -w_ji])

    def components(self, by_size: bool = False) -> tuple[int, np.ndarray]:
        """``(n_components, labels (n,) int64)`` of the connected components.

        With ``by_size`` the labels are numbered by component size, largest first (ties:
        the component holding the smaller node index first), as neuron modules are.
        """
        count, labels = connected_components(self.adjacency(), directed=False)
        labels = labels.astype(np.int64)
        return int(count), rank_by_size(labels) if by_size else labels

    def to_networkx(self) -> nx.Graph:
        """A ``networkx.Graph`` on nodes ``0..n-1`` with edge ``weight``, node ``pos`` and
        graph attributes ``name`` and ``shape``."""
        import networkx as nx

        graph = nx.Graph(name=self.name, shape=self.shape)
        graph.add_nodes_from((k, {"pos": tuple(xy)}) for k, xy in enumerate(self.coords.tolist()))
        i, j = self.edges.T.tolist()
        graph.add_weighted_edges_from(zip(i, j, self.weights.tolist(), strict=True))
        return graph

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (plain ints, floats and lists); :meth:`from_dict` inverts it."""
        return {
            "name": self.name,
            "n_nodes": self.n_nodes,
            "shape": None if self.shape is None else list(self.shape),
            "edges": self.edges.tolist(),
            "weights": self.weights.tolist(),
            "coords": self.coords.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Graph:
        """The graph saved by :meth:`to_dict`, validated like any other graph.

        ``n_nodes``, ``edges`` and ``weights`` are required; ``coords`` (default: circle),
        ``name`` and ``shape`` are optional; other keys are an error.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"graph data must be a mapping, got {type(data).__name__}")
        missing = [key for key in ("n_nodes", "edges", "weights") if key not in data]
        if missing:
            raise ValueError(f"graph data lacks key(s) {missing}")
        unknown = sorted(set(data) - {"n_nodes", "edges", "weights", "coords", "name", "shape"})
        if unknown:
            raise ValueError(f"graph data has unknown key(s) {unknown}")
        return cls(
            data["n_nodes"],
            data["edges"],
            data["weights"],
            data.get("coords"),
            name=data.get("name", "graph"),
            shape=data.get("shape"),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return (
            self.n_nodes == other.n_nodes
            and np.array_equal(self.edges, other.edges)
            and np.array_equal(self.weights, other.weights)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, n_nodes={self.n_nodes}, n_edges={self.n_edges})"


# ---------------------------------------------------------------------------- validation


def rank_by_size(labels: np.ndarray) -> np.ndarray:
    """(n,) int64 relabelling of group labels 0.. by group size, largest first; ties go to
    the group holding the smaller index."""
    _, first, inverse, counts = np.unique(
        labels, return_index=True, return_inverse=True, return_counts=True
    )
    order = np.lexsort((first, -counts))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse.reshape(-1)].astype(np.int64)


def _check_kind(kind: str) -> str:
    if kind not in LAPLACIAN_KINDS:
        raise ValueError(f"unknown Laplacian kind {kind!r}; expected one of {LAPLACIAN_KINDS}")
    return kind


def _safe_degrees(deg: np.ndarray) -> np.ndarray:
    """Degrees with isolated nodes set to 1, so that they can divide."""
    return np.where(deg > 0, deg, 1.0)


def _validate_edges(n_nodes, edges, weights) -> tuple[np.ndarray, np.ndarray]:
    """Check and canonicalise an edge list: i < j, sorted, unique, positive finite weights."""
    if not is_int(n_nodes):
        raise ValueError(f"a graph needs at least one node, got n_nodes={n_nodes!r}")
    edges = np.asarray(edges)
    if edges.size == 0:
        edges = edges.reshape(0, 2)
    if edges.ndim != 2 or edges.shape[1] != 2:
        raise ValueError(f"edges must have shape (E, 2), got {edges.shape}")
    if edges.size and not np.issubdtype(edges.dtype, np.integer):
        if not (np.issubdtype(edges.dtype, np.floating) or edges.dtype == bool):
            raise TypeError(f"edges must hold integer node indices, got dtype {edges.dtype}")
        if not np.all(np.isfinite(edges)) or not np.all(edges == np.round(edges)):
            raise ValueError("edges must hold integer node indices")
        big = np.flatnonzero((np.abs(edges) >= n_nodes).any(1))
        if big.size:  # before the cast, which would wrap huge floats
            raise ValueError(
                f"edge {big[0]} = {tuple(edges[big[0]].tolist())} is out of "
                f"range for {n_nodes} nodes"
            )
    edges = edges.astype(np.int64)
    weights = np.ones(len(edges)) if weights is None else np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(edges),):
        raise ValueError(f"weights must have shape ({len(edges)},), got {weights.shape}")
    bad = np.flatnonzero((edges < 0).any(1) | (edges >= n_nodes).any(1))
    if bad.size:
        raise ValueError(
            f"edge {bad[0]} = {tuple(edges[bad[0]].tolist())} is out of range for {n_nodes} nodes"
        )
    loops = np.flatnonzero(edges[:, 0] == edges[:, 1])
    if loops.size:
        raise ValueError(f"edge {loops[0]} is a self-loop on node {edges[loops[0], 0]}")
    bad = np.flatnonzero(~np.isfinite(weights))
    if bad.size:
        raise ValueError(
            f"weight of edge {bad[0]} {tuple(edges[bad[0]].tolist())} is {weights[bad[0]]}; "
            "weights must be finite"
        )
    bad = np.flatnonzero(weights <= 0)
    if bad.size:
        raise ValueError(
            f"weight of edge {bad[0]} {tuple(edges[bad[0]].tolist())} is {weights[bad[0]]}; "
            "weights must be positive (drop zero-weight edges)"
        )
    with np.errstate(over="ignore"):
        degrees = np.bincount(edges.ravel(), np.repeat(weights, 2), minlength=n_nodes)
    bad = np.flatnonzero(~np.isfinite(degrees))
    if bad.size:
        raise ValueError(
            f"the weights of node {bad[0]}'s edges sum to infinity in float64; scale the "
            "weights down (every Laplacian needs the degrees)"
        )
    edges = np.sort(edges, axis=1)
    order = np.lexsort((edges[:, 1], edges[:, 0]))
    edges, weights = edges[order], weights[order]
    dup = np.flatnonzero((np.diff(edges, axis=0) == 0).all(1))
    if dup.size:
        raise ValueError(f"edge {tuple(edges[dup[0]].tolist())} appears more than once")
    return np.ascontiguousarray(edges), np.ascontiguousarray(weights)


def _validate_coords(n_nodes: int, coords) -> np.ndarray:
    """A private (n, 2) float64 copy of finite coords."""
    coords = np.array(coords, dtype=np.float64)
    if coords.shape != (n_nodes, 2):
        raise ValueError(f"coords must have shape ({n_nodes}, 2), got {coords.shape}")
    bad = np.flatnonzero(~np.isfinite(coords).all(1))
    if bad.size:
        raise ValueError(f"coords of node {bad[0]} are {tuple(coords[bad[0]].tolist())}")
    return coords


def _validate_shape(n_nodes: int, shape) -> tuple[int, int] | None:
    if shape is None:
        return None
    if len(shape) != 2 or not all(is_int(s) for s in shape):
        raise ValueError(f"shape must be None or two positive integers (h, w), got {shape!r}")
    h, w = int(shape[0]), int(shape[1])
    if h * w != n_nodes:
        raise ValueError(f"shape {(h, w)} does not hold {n_nodes} nodes")
    return h, w


def _check_dims(name: str, minimum: int = 1, **dims: int) -> None:
    for key, value in dims.items():
        check_int(value, f"{name}: {key}", minimum)


# ---------------------------------------------------------------------------- layouts


def circle_layout(n: int) -> np.ndarray:
    """(n, 2) positions evenly spaced clockwise on the unit circle, node 0 at the top."""
    angle = np.pi / 2 - 2 * np.pi * np.arange(n) / max(n, 1)
    return np.stack([np.cos(angle), np.sin(angle)], axis=1)


def lattice_coords(h: int, w: int) -> np.ndarray:
    """(h*w, 2) row-major lattice positions: x = column, y = -row (row 0 on top)."""
    rows, cols = np.divmod(np.arange(h * w), w)
    return np.stack([cols, -rows], axis=1).astype(np.float64)


def _hexagonal_coords(h: int, w: int) -> np.ndarray:
    """(h*w, 2) row-major positions on the hexagonal (triangular) lattice with unit
    spacing: x = column, shifted right by 1/2 on odd rows; y = -row * sqrt(3)/2."""
    rows, cols = np.divmod(np.arange(h * w), w)
    return np.stack([cols + 0.5 * (rows % 2), -rows * (math.sqrt(3) / 2)], axis=1)


def _grid3d_coords(d: int, h: int, w: int) -> np.ndarray:
    """(d*h*w, 2) the d slices of h x w side by side, left to right, one empty column
    between neighbouring slices: x = k (w + 1) + j, y = -i."""
    k, rest = np.divmod(np.arange(d * h * w), h * w)
    i, j = np.divmod(rest, w)
    return np.stack([k * (w + 1) + j, -i], axis=1).astype(np.float64)


# a planar drawing of the kite: two K4s ({0, 2, 3, 5} on top, {1, 3, 4, 6} below) drawn
# as triangles 0-5-3 and 1-6-3 around 2 and 4, sharing 3, with the tail 7 - 8 - 9 on the right
_KITE_COORDS = np.array(
    [
        [-1.0, 1.5],
        [-1.0, -1.5],
        [0.0, 1.0],
        [0.0, 0.0],
        [0.0, -1.0],
        [1.0, 1.5],
        [1.0, -1.5],
        [2.0, 0.0],
        [3.0, 0.0],
        [4.0, 0.0],
    ]
)
_KITE_COORDS.setflags(write=False)


def _tree_coords(n: int) -> np.ndarray:
    """(n, 2) layered layout of a heap-ordered complete binary tree: y = -depth, leaves at
    x = 0, 1, 2, ... and each parent centred over its children."""
    k = np.arange(n)
    depth = np.floor(np.log2(k + 1)).astype(np.int64)
    levels = int(depth[-1]) + 1
    slot = k - (2**depth - 1)
    x = (slot + 0.5) * 2.0 ** (levels - 1 - depth) - 0.5
    return np.stack([x, -depth], axis=1).astype(np.float64)


def _wishbone_coords(w: int) -> np.ndarray:
    """(2w, 2) Y-shaped layout: the rows run side by side along the stem, then spread."""
    k = np.arange(w)
    spread = 0.5 + 0.5 * np.maximum(0, k - w // 2 + 1)
    return np.concatenate([np.stack([k, spread], 1), np.stack([k, -spread], 1)]).astype(float)


def _place(parts: list[np.ndarray], vertical: bool) -> np.ndarray:
    """Concatenate coordinate blocks, each stacked under (``vertical``) or to the right of
    the previous one with a gap of 1; blocks are aligned on their left or top edge."""
    placed, cursor = [], 0.0
    for xy in parts:
        if vertical:
            shift = np.array([-xy[:, 0].min(), cursor - xy[:, 1].max()])
        else:
            shift = np.array([cursor - xy[:, 0].min(), -xy[:, 1].max()])
        xy = xy + shift
        placed.append(xy)
        cursor = xy[:, 1].min() - 1.0 if vertical else xy[:, 0].max() + 1.0
    return np.concatenate(placed)


# ---------------------------------------------------------------------------- edge patterns


def _path_edges(idx: np.ndarray) -> np.ndarray:
    """(E, 2) edges between neighbours along the last axis of an index array."""
    return np.stack([idx[..., :-1].ravel(), idx[..., 1:].ravel()], axis=1)


def _cycle_edges(idx: np.ndarray) -> np.ndarray:
    """(E, 2) edges of cycles along the last axis; a 'cycle' of 1 or 2 nodes is a path
    (no self-loop, no repeated edge)."""
    if idx.shape[-1] < 3:
        return _path_edges(idx)
    return np.stack([idx.ravel(), np.roll(idx, -1, axis=-1).ravel()], axis=1)


# ---------------------------------------------------------------------------- constructors


def from_edges(
    n_nodes: int,
    edges,
    weights=None,
    *,
    coords=None,
    name: str = "graph",
    shape: tuple[int, int] | None = None,
) -> Graph:
    """A graph from an (E, 2) edge list (any order of the two ends) and optional (E,)
    weights (default 1); coords default to :func:`circle_layout`."""
    return Graph(n_nodes, edges, weights, coords, name=name, shape=shape)


def grid(h: int, w: int) -> Graph:
    """The h x w 4-neighbour lattice, row-major: h(w-1) + w(h-1) edges."""
    _check_dims("grid", h=h, w=w)
    idx = np.arange(h * w).reshape(h, w)
    edges = np.concatenate([_path_edges(idx), _path_edges(idx.T)])
    return from_edges(h * w, edges, coords=lattice_coords(h, w), name=f"grid:{h}x{w}", shape=(h, w))


def torus(h: int, w: int) -> Graph:
    """The h x w periodic lattice (rows and columns are cycles), row-major.

    2hw edges for h, w >= 3. Along a side of length 2 the wrap edge would repeat the lattice
    edge and along a side of length 1 it would be a self-loop: both are left out, so
    ``torus(2, w)`` is ``grid(2, w)`` plus the row wraps.
    """
    _check_dims("torus", h=h, w=w)
    idx = np.arange(h * w).reshape(h, w)
    edges = np.concatenate([_cycle_edges(idx), _cycle_edges(idx.T)])
    return from_edges(
        h * w, edges, coords=lattice_coords(h, w), name=f"torus:{h}x{w}", shape=(h, w)
    )


def hexagonal(h: int, w: int) -> Graph:
    """The h x w hexagonal lattice (6 neighbours, as in hexagonal self-organising maps),
    row-major: odd rows sit half a node to the right, so node (r, c) links to (r, c +- 1)
    and to (r +- 1, c - 1), (r +- 1, c) on even rows, (r +- 1, c), (r +- 1, c + 1) on odd
    rows. h(w-1) + w(h-1) + (h-1)(w-1) edges; interior degree 6, corners 2 or 3.

    Coords are the true lattice positions (unit spacing, rows sqrt(3)/2 apart); ``shape``
    is None because an image of the rows would misplace the offset rows by half a node.
    """
    _check_dims("hexagonal", h=h, w=w)
    idx = np.arange(h * w).reshape(h, w)
    # the diagonal to the next row: down-left from even rows, down-right from odd rows
    from_even = np.stack([idx[0 : h - 1 : 2, 1:].ravel(), idx[1:h:2, :-1].ravel()], axis=1)
    from_odd = np.stack([idx[1 : h - 1 : 2, :-1].ravel(), idx[2:h:2, 1:].ravel()], axis=1)
    edges = np.concatenate([_path_edges(idx), _path_edges(idx.T), from_even, from_odd])
    return from_edges(h * w, edges, coords=_hexagonal_coords(h, w), name=f"hex:{h}x{w}")


def grid3d(d: int, h: int, w: int) -> Graph:
    """The d x h x w 6-neighbour lattice: node (k, i, j) is ``(k*h + i)*w + j``.

    d h (w-1) + d w (h-1) + h w (d-1) edges. Drawn as the d slices side by side, one empty
    column between them, so node values read as d small images (the edges between slices
    run along the rows); ``shape`` is None, as no single image holds the slices.
    """
    _check_dims("grid3d", d=d, h=h, w=w)
    idx = np.arange(d * h * w).reshape(d, h, w)
    edges = np.concatenate(
        [_path_edges(idx), _path_edges(idx.transpose(0, 2, 1)), _path_edges(idx.transpose(1, 2, 0))]
    )
    return from_edges(d * h * w, edges, coords=_grid3d_coords(d, h, w), name=f"grid3d:{d}x{h}x{w}")


# (18, 2) edges of the Krackhardt kite on nodes 0..9 (Andre, Beverly, Carol, Diane, Ed,
# Fernando, Garth, Heather, Ike, Jane), numbered as networkx.krackhardt_kite_graph
_KITE_EDGES = np.array(
    [[0, 1], [0, 2], [0, 3], [0, 5], [1, 3], [1, 4], [1, 6], [2, 3], [2, 5]]
    + [[3, 4], [3, 5], [3, 6], [4, 6], [5, 6], [5, 7], [6, 7], [7, 8], [8, 9]],
    dtype=np.int64,
)
_KITE_EDGES.setflags(write=False)


def kite(copies: int) -> Graph:
    """``copies`` disjoint Krackhardt kites: copy c holds nodes ``10c .. 10c + 9``.

    A kite is a dense core of two 4-cliques sharing node 3, a bridge node 7 and a tail
    7 - 8 - 9: 10 nodes, 18 edges, so the graph has 18 * copies edges and ``copies``
    components. Drawn as planar kites side by side; ``shape`` is None.
    """
    _check_dims("kite", copies=copies)
    offsets = 10 * np.arange(copies)
    edges = (_KITE_EDGES[None] + offsets[:, None, None]).reshape(-1, 2)
    coords = _place([_KITE_COORDS] * copies, vertical=False)
    return from_edges(10 * copies, edges, coords=coords, name=f"kite:{copies}")


def path(n: int) -> Graph:
    """Nodes 0 - 1 - ... - (n-1): n-1 edges, shape (1, n)."""
    _check_dims("path", n=n)
    return from_edges(
        n, _path_edges(np.arange(n)), coords=lattice_coords(1, n), name=f"path:{n}", shape=(1, n)
    )


def ring(n: int) -> Graph:
    """The cycle 0 - 1 - ... - (n-1) - 0 (n >= 3): n edges, shape (1, n), drawn as a circle."""
    _check_dims("ring", 3, n=n)
    return from_edges(
        n, _cycle_edges(np.arange(n)), coords=circle_layout(n), name=f"ring:{n}", shape=(1, n)
    )


def lines(h: int, w: int) -> Graph:
    """h disjoint paths of w nodes, one per row (row-major, shape (h, w)): h(w-1) edges."""
    _check_dims("lines", h=h, w=w)
    idx = np.arange(h * w).reshape(h, w)
    return from_edges(
        h * w, _path_edges(idx), coords=lattice_coords(h, w), name=f"lines:{h}x{w}", shape=(h, w)
    )


def rings(h: int, w: int) -> Graph:
    """h disjoint cycles of w >= 3 nodes, one per row (row-major, shape (h, w)): hw edges.

    Drawn as unit circles side by side, left to right."""
    _check_dims("rings", h=h)
    _check_dims("rings", 3, w=w)
    idx = np.arange(h * w).reshape(h, w)
    coords = np.concatenate([circle_layout(w) + [2.5 * r, 0.0] for r in range(h)])
    return from_edges(h * w, _cycle_edges(idx), coords=coords, name=f"rings:{h}x{w}", shape=(h, w))


def star(n: int) -> Graph:
    """Hub node 0 linked to leaves 1..n-1: n-1 edges; hub at the centre of a circle."""
    _check_dims("star", n=n)
    leaves = np.arange(1, n)
    edges = np.stack([np.zeros_like(leaves), leaves], axis=1)
    coords = np.concatenate([np.zeros((1, 2)), circle_layout(n - 1)])
    return from_edges(n, edges, coords=coords, name=f"star:{n}")


def tree(n: int) -> Graph:
    """The balanced binary tree on n = 2^k - 1 nodes in heap order (children of i are
    2i+1 and 2i+2): n-1 edges, drawn in layers with the root on top."""
    _check_dims("tree", n=n)
    if (n + 1) & n:
        raise ValueError(f"tree: n must be 2^k - 1 (1, 3, 7, 15, 31, ...), got {n}")
    child = np.arange(1, n)
    edges = np.stack([(child - 1) // 2, child], axis=1)
    return from_edges(n, edges, coords=_tree_coords(n), name=f"tree:{n}")


def wishbone(w: int) -> Graph:
    """Two paths of w >= 2 nodes (rows 0 and 1, shape (2, w)) joined by rungs k -- w+k for
    k < w // 2: a shared stem, then two free branches. 2(w-1) + w//2 edges."""
    _check_dims("wishbone", 2, w=w)
    idx = np.arange(2 * w).reshape(2, w)
    stem = np.arange(w // 2)
    edges = np.concatenate([_path_edges(idx), np.stack([stem, stem + w], axis=1)])
    return from_edges(2 * w, edges, coords=_wishbone_coords(w), name=f"wishbone:{w}", shape=(2, w))


def capsules(c: int, d: int) -> Graph:
    """c capsules of d neurons; neuron k of capsule a is node a*d + k (shape (c, d)).

    For every feature index k the c neurons k form a clique (weight 1), so all capsules are
    pulled to order their features the same way, with no order among capsules. There are
    no edges inside a capsule: d c(c-1)/2 edges, d components (for c >= 2).
    """
    _check_dims("capsules", c=c, d=d)
    a, b = np.triu_indices(c, 1)
    k = np.arange(d)
    edges = np.stack([(a[:, None] * d + k).ravel(), (b[:, None] * d + k).ravel()], axis=1)
    return from_edges(
        c * d, edges, coords=lattice_coords(c, d), name=f"capsules:{c}x{d}", shape=(c, d)
    )


def disjoint(*graphs: Graph) -> Graph:
    """The block-diagonal union: nodes of ``graphs[0]`` first, then ``graphs[1]``, ...

    When every part has a shape with the same width w, the union has shape (sum h, w) and the
    parts are drawn top to bottom; otherwise shape is None and they are drawn left to right.
    The name joins the parts' names with ``" + "`` (a spec :func:`parse` reads back).
    """
    if not graphs:
        raise ValueError("disjoint needs at least one graph")
    for k, g in enumerate(graphs):
        if not isinstance(g, Graph):
            raise TypeError(f"disjoint: argument {k} is a {type(g).__name__}, not a Graph")
    offsets = np.cumsum([0] + [g.n_nodes for g in graphs])
    widths = {g.shape[1] if g.shape else None for g in graphs}
    stacked = len(widths) == 1 and None not in widths
    shape = (sum(g.shape[0] for g in graphs), widths.pop()) if stacked else None
    return from_edges(
        int(offsets[-1]),
        np.concatenate([g.edges + off for g, off in zip(graphs, offsets[:-1], strict=True)]),
        np.concatenate([g.weights for g in graphs]),
        coords=_place([g.coords for g in graphs], vertical=stacked),
        name=" + ".join(g.name for g in graphs),
        shape=shape,
    )


def from_adjacency(
    adjacency,
    *,
    coords=None,
    name: str = "graph",
    shape: tuple[int, int] | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-8,
) -> Graph:
    """A graph from an (n, n) weight matrix: numpy / torch (dense or sparse) or scipy sparse.

    The matrix must be square, finite, non-negative, with a zero diagonal and symmetric up
    to ``|A_ij - A_ji| <= atol + rtol * max(|A_ij|, |A_ji|)``. Edge weights are the
    symmetric part (A_ij + A_ji) / 2; zero entries are no edge.
    """
    a = _to_csr(adjacency)
    if a.shape[0] != a.shape[1]:
        raise ValueError(f"adjacency must be square, got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError("adjacency is 0 x 0: a graph needs at least one node")
    rows, cols, vals = _entries(a)
    for bad, what in (
        (~np.isfinite(vals), "not finite"),
        (vals < 0, "negative; weights must be >= 0"),
        (rows == cols, "a self-loop; the diagonal must be zero"),
    ):
        if bad.any():
            k = np.flatnonzero(bad)[0]
            raise ValueError(f"adjacency[{rows[k]}, {cols[k]}] = {vals[k]} is {what}")
    _check_symmetric(a, rtol, atol)
    upper = sp.triu((a + a.T) / 2, k=1).tocoo()
    return from_edges(
        a.shape[0],
        np.stack([upper.row, upper.col], axis=1),
        upper.data,
        coords=coords,
        name=name,
        shape=shape,
    )


def _to_csr(adjacency) -> sp.csr_array:
    """A canonical float64 CSR copy of a dense or sparse matrix (explicit zeros dropped)."""
    torch = sys.modules.get("torch")  # a torch tensor means torch is already imported
    if torch is not None and isinstance(adjacency, torch.Tensor):
        if adjacency.is_complex():
            raise TypeError(f"adjacency must be real, got dtype {adjacency.dtype}")
        if adjacency.layout != torch.strided:
            adjacency = adjacency.to_dense()
        adjacency = adjacency.detach().cpu().numpy()
    dtype = adjacency.dtype if sp.issparse(adjacency) else np.asarray(adjacency).dtype
    if np.issubdtype(dtype, np.complexfloating):
        raise TypeError(f"adjacency must be real, got dtype {dtype}")
    if not sp.issparse(adjacency):
        adjacency = np.asarray(adjacency)
        if adjacency.ndim != 2:
            raise ValueError(f"adjacency must be a 2-d matrix, got shape {adjacency.shape}")
        if not (np.issubdtype(adjacency.dtype, np.number) or adjacency.dtype == bool):
            raise ValueError(f"adjacency must be numeric, got dtype {adjacency.dtype}")
    a = sp.csr_array(adjacency, dtype=np.float64)
    a.sum_duplicates()
    a.eliminate_zeros()
    return a


def _entries(a: sp.csr_array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-major (rows, cols, values) of the stored entries of a canonical CSR matrix."""
    rows = np.repeat(np.arange(a.shape[0]), np.diff(a.indptr))
    return rows, a.indices, a.data


def _check_symmetric(a: sp.csr_array, rtol: float, atol: float) -> None:
    diff = sp.csr_array(a - a.T)
    diff.eliminate_zeros()
    if diff.nnz == 0:
        return
    diff.sort_indices()
    rows, cols, _ = _entries(diff)
    a_ij, a_ji = a[rows, cols], a[cols, rows]
    bad = np.abs(a_ij - a_ji) > atol + rtol * np.maximum(np.abs(a_ij), np.abs(a_ji))
    if bad.any():
        k = np.flatnonzero(bad)[0]
        i, j = rows[k], cols[k]
        raise ValueError(
            f"adjacency is not symmetric: adjacency[{i}, {j}] = {a_ij[k]} but "
            f"adjacency[{j}, {i}] = {a_ji[k]}"
        )


def from_networkx(graph: nx.Graph, *, weight: str = "weight") -> Graph:
    """A graph from an undirected ``networkx.Graph``.

    Nodes are numbered in sorted order when their labels sort, else in insertion order.
    Edge weights come from the ``weight`` attribute (default 1). Node ``pos`` attributes
    (when every node has one), and graph attributes ``name`` and ``shape``, are kept.
    """
    if graph.is_directed() or graph.is_multigraph():
        raise ValueError(
            f"from_networkx needs an undirected simple graph, got {type(graph).__name__}"
        )
    nodes = list(graph.nodes)
    try:
        nodes = sorted(nodes)
    except TypeError:
        pass
    index = {node: k for k, node in enumerate(nodes)}
    edges, weights = [], []
    for u, v, w in graph.edges(data=weight, default=1.0):
        if u == v:
            raise ValueError(f"node {u!r} has a self-loop")
        w = float(w)
        if not (np.isfinite(w) and w > 0):
            raise ValueError(f"edge ({u!r}, {v!r}) has {weight}={w}; weights must be > 0")
        edges.append((index[u], index[v]))
        weights.append(w)
    positions = [graph.nodes[node].get("pos") for node in nodes]
    return from_edges(
        len(nodes),
        np.array(edges, dtype=np.int64).reshape(-1, 2),
        np.array(weights, dtype=np.float64),
        coords=None if any(p is None for p in positions) else positions,
        name=str(graph.graph.get("name") or "graph"),
        shape=graph.graph.get("shape"),
    )


# ---------------------------------------------------------------------------- specs


class _Kind(NamedTuple):
    """A spec kind: its constructor, its form (``"grid:HxW"``: after the colon one letter
    per size) and the number of nodes per unit of the product of its sizes."""

    build: Callable[..., Graph]
    form: str
    nodes_per_unit: int = 1

    @property
    def arity(self) -> int:
        return self.form.split(":")[1].count("x") + 1


_CONSTRUCTORS: dict[str, _Kind] = {
    "grid": _Kind(grid, "grid:HxW"),
    "torus": _Kind(torus, "torus:HxW"),
    "hex": _Kind(hexagonal, "hex:HxW"),
    "grid3d": _Kind(grid3d, "grid3d:DxHxW"),
    "lines": _Kind(lines, "lines:HxW"),
    "rings": _Kind(rings, "rings:HxW"),
    "capsules": _Kind(capsules, "capsules:CxD"),
    "path": _Kind(path, "path:N"),
    "ring": _Kind(ring, "ring:N"),
    "star": _Kind(star, "star:N"),
    "tree": _Kind(tree, "tree:N"),
    "wishbone": _Kind(wishbone, "wishbone:W", nodes_per_unit=2),
    "kite": _Kind(kite, "kite:N", nodes_per_unit=10),
}
_ALIASES = {"hexagonal": "hex"}
SPEC_FORMS = (
    ", ".join(kind.form for kind in _CONSTRUCTORS.values())
    + " (hexagonal:HxW is hex:HxW); join parts with '+' for a disjoint union (path:2 + path:2)"
)
_SPEC = re.compile(r"([a-z][a-z0-9_]*):(\d+(?:x\d+)*)")


MAX_SPEC_NODES = 1 << 24
"""The most nodes a spec may ask for (16,777,216: a 4096 x 4096 grid). Larger graphs are
refused before anything is allocated; build one on purpose with :func:`from_edges`, or
raise this cap (``gsreg.graphs.MAX_SPEC_NODES = ...``) first."""


def parse(spec: str) -> Graph:
    """The graph of a spec such as ``"grid:8x8"``, ``"ring:10"`` or ``"path:2 + path:2"``.

    Kinds are case-insensitive and whitespace is ignored; ``parse(g.name) == g`` for every
    constructed graph. Valid forms: see :data:`SPEC_FORMS`.
    """
    if not isinstance(spec, str):
        raise TypeError(f"a graph spec must be a string, got {type(spec).__name__}")
    sizes = [_spec_sizes(part, spec) for part in spec.split("+")]
    total = sum(_CONSTRUCTORS[kind].nodes_per_unit * math.prod(s) for kind, s in sizes)
    if total > MAX_SPEC_NODES:
        raise ValueError(
            f"graph spec {spec!r} asks for about {total:,} nodes, more than the cap "
            f"gsreg.graphs.MAX_SPEC_NODES = {MAX_SPEC_NODES:,}; build a graph that large on "
            "purpose with graphs.from_edges, or raise the cap"
        )
    parts = [_parse_one(part, spec) for part in spec.split("+")]
    return parts[0] if len(parts) == 1 else disjoint(*parts)


def check_spec(spec: str, learned: bool = False) -> str:
    """``spec`` after checking that :func:`parse` reads it; with ``learned=True`` the word
    :data:`LEARNED` (any case) is accepted too and returned as :data:`LEARNED`."""
    if learned and isinstance(spec, str) and spec.strip().lower() == LEARNED:
        return LEARNED
    parse(spec)
    return spec


def _spec_sizes(part: str, spec: str) -> tuple[str, list[int]]:
    """The canonical kind and the sizes of one part of a spec, checked against the known
    forms (sizes are not yet checked against the constructor's minimum)."""
    match = _SPEC.fullmatch(re.sub(r"\s+", "", part).lower())
    if match is None:
        raise ValueError(f"malformed graph spec {spec!r}; valid forms: {SPEC_FORMS}")
    kind, sizes = match.groups()
    kind = _ALIASES.get(kind, kind)
    if kind not in _CONSTRUCTORS:
        raise ValueError(f"unknown graph kind {kind!r} in {spec!r}; valid forms: {SPEC_FORMS}")
    sizes = [int(s) for s in sizes.split("x")]
    form = _CONSTRUCTORS[kind].form
    if len(sizes) != _CONSTRUCTORS[kind].arity:
        raise ValueError(f"{kind} takes {form}, got {spec!r}; valid forms: {SPEC_FORMS}")
    return kind, sizes


def _parse_one(part: str, spec: str) -> Graph:
    kind, sizes = _spec_sizes(part, spec)
    return _CONSTRUCTORS[kind].build(*sizes)
