"""Tests for gsreg.graphs: Laplacians against independent references, constructor
invariants, conversions and round-trips, and error messages on bad input."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import warnings

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.csgraph import connected_components
from scipy.sparse.csgraph import laplacian as scipy_laplacian

from gsreg import graphs
from gsreg.graphs import Graph

FAST = settings(max_examples=40, deadline=None)


# ---------------------------------------------------------------------------- helpers


@st.composite
def weighted_graphs(draw, max_nodes: int = 30) -> Graph:
    """Random graphs: n in 1..max_nodes, a random subset of pairs, weights in (0.01, 10)."""
    n = draw(st.integers(1, max_nodes))
    density = draw(st.floats(0.0, 1.0))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    i, j = np.triu_indices(n, 1)
    keep = rng.random(i.size) < density
    weights = rng.uniform(0.01, 10.0, size=int(keep.sum()))
    return graphs.from_edges(n, np.stack([i[keep], j[keep]], axis=1), weights)


def dense_w(g: Graph) -> np.ndarray:
    """(n, n) dense weight matrix built directly from the edge list."""
    w = np.zeros((g.n_nodes, g.n_nodes))
    for (i, j), weight in zip(g.edges, g.weights, strict=True):
        w[i, j] = w[j, i] = weight
    return w


def dense_laplacian(g: Graph, kind: str) -> np.ndarray:
    return g.laplacian(kind, dtype=torch.float64).to_dense().numpy()


def random_walk_reference(w: np.ndarray) -> np.ndarray:
    """I - D^-1 W with zero rows for isolated nodes."""
    d = w.sum(1)
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d > 0)
    return np.diag((d > 0).astype(float)) - inv[:, None] * w


def dense_references(g: Graph) -> dict[str, np.ndarray]:
    """The three Laplacians from the dense weight matrix built from the edge list:
    scipy.sparse.csgraph.laplacian for D - W and I - D^-1/2 W D^-1/2, and
    :func:`random_walk_reference`."""
    w = dense_w(g)
    return {
        "combinatorial": scipy_laplacian(w),
        "normalized": scipy_laplacian(w, normed=True),
        "random_walk": random_walk_reference(w),
    }


def sparse_reference(g: Graph, kind: str) -> sp.csr_matrix:
    """The Laplacian by scipy.sparse algebra on ``g.adjacency()`` (the copy analysis kept
    until Graph.laplacian_matrix replaced it): D - W, I - D^-1/2 W D^-1/2 or I - D^-1 W,
    with zero rows for isolated nodes."""
    W = g.adjacency()
    deg = np.asarray(W.sum(axis=1)).ravel()
    if kind == "combinatorial":
        return (sp.diags(deg) - W).tocsr()
    connected = deg > 0
    inv = np.zeros_like(deg)
    if kind == "normalized":
        inv[connected] = deg[connected] ** -0.5
        return (sp.diags(connected.astype(float)) - sp.diags(inv) @ W @ sp.diags(inv)).tocsr()
    inv[connected] = 1.0 / deg[connected]
    return (sp.diags(connected.astype(float)) - sp.diags(inv) @ W).tocsr()


SPECS = [
    "grid:3x4",
    "torus:4x8",
    "lines:3x2",
    "rings:2x5",
    "path:10",
    "ring:10",
    "star:7",
    "tree:15",
    "wishbone:10",
    "capsules:10x16",
    "hex:4x5",
    "grid3d:2x3x4",
    "kite:2",
]


@st.composite
def specs(draw) -> str:
    """A canonical spec of any constructor, with small valid sizes."""
    kind = draw(
        st.sampled_from(
            ["grid", "torus", "lines", "rings", "capsules", "path"]
            + ["ring", "star", "tree", "wishbone", "hex", "grid3d", "kite"]
        )
    )
    size = st.integers(1, 7)
    if kind == "grid3d":
        return f"grid3d:{draw(size)}x{draw(size)}x{draw(size)}"
    if kind == "kite":
        return f"kite:{draw(st.integers(1, 4))}"
    if kind == "tree":
        return f"tree:{2 ** draw(st.integers(1, 6)) - 1}"
    if kind == "ring":
        return f"ring:{draw(st.integers(3, 20))}"
    if kind == "wishbone":
        return f"wishbone:{draw(st.integers(2, 20))}"
    if kind in ("path", "star"):
        return f"{kind}:{draw(st.integers(1, 20))}"
    h, w = draw(size), draw(st.integers(3, 7) if kind == "rings" else size)
    return f"{kind}:{h}x{w}"


def assert_same_presentation(a: Graph, b: Graph) -> None:
    assert a == b
    assert a.name == b.name and a.shape == b.shape
    np.testing.assert_array_equal(a.coords, b.coords)


# ---------------------------------------------------------------------------- Laplacians


ISOLATED = graphs.from_edges(6, [[0, 1], [1, 2], [4, 2]], [1.0, 2.5, 0.5])  # 3, 5 isolated


@pytest.mark.parametrize("g", [ISOLATED, graphs.grid(3, 4), graphs.star(5), graphs.path(1)])
def test_laplacians_match_references(g: Graph) -> None:
    w = dense_w(g)
    np.testing.assert_allclose(dense_laplacian(g, "combinatorial"), scipy_laplacian(w))
    np.testing.assert_allclose(
        dense_laplacian(g, "normalized"), scipy_laplacian(w, normed=True), atol=1e-12
    )
    np.testing.assert_allclose(
        dense_laplacian(g, "random_walk"), random_walk_reference(w), atol=1e-12
    )


def test_isolated_nodes_have_zero_rows() -> None:
    for kind in graphs.LAPLACIAN_KINDS:
        lap = dense_laplacian(ISOLATED, kind)
        assert not lap[[3, 5]].any() and not lap[:, [3, 5]].any()
        diag, _ = ISOLATED.laplacian_terms(kind)
        assert diag[3] == diag[5] == 0


@FAST
@given(weighted_graphs())
def test_laplacians_match_references_on_random_graphs(g: Graph) -> None:
    w = dense_w(g)
    np.testing.assert_allclose(dense_laplacian(g, "combinatorial"), scipy_laplacian(w), atol=1e-12)
    np.testing.assert_allclose(
        dense_laplacian(g, "normalized"), scipy_laplacian(w, normed=True), atol=1e-12
    )
    np.testing.assert_allclose(
        dense_laplacian(g, "random_walk"), random_walk_reference(w), atol=1e-12
    )


@FAST
@given(weighted_graphs(), st.integers(0, 2**32 - 1))
def test_laplacian_terms_give_the_quadratic_form(g: Graph, seed: int) -> None:
    z = np.random.default_rng(seed).normal(size=g.n_nodes)
    w = dense_w(g)
    references = {
        "combinatorial": scipy_laplacian(w),
        "normalized": scipy_laplacian(w, normed=True),
        "random_walk": random_walk_reference(w),
    }
    i, j = g.edges.T
    for kind, lap in references.items():
        diag, coef = g.laplacian_terms(kind)
        form = diag @ z**2 - 2 * coef @ (z[i] * z[j])
        assert form == pytest.approx(z @ lap @ z, rel=1e-9, abs=1e-9)
    # the paper's edge form: z^T L z = sum_e w_e (z_i - z_j)^2
    assert z @ references["combinatorial"] @ z == pytest.approx(
        g.weights @ (z[i] - z[j]) ** 2, rel=1e-9, abs=1e-9
    )


@FAST
@given(weighted_graphs())
def test_spectral_properties(g: Graph) -> None:
    n_components = connected_components(dense_w(g), directed=False)[0]
    assert g.components()[0] == n_components
    for kind in ("combinatorial", "normalized"):
        lap = dense_laplacian(g, kind)
        np.testing.assert_array_equal(lap, lap.T)
        eig = np.linalg.eigvalsh(lap)
        assert eig.min() >= -1e-9
        assert int((eig < 1e-8).sum()) == n_components
        if kind == "normalized":
            assert eig.max() <= 2 + 1e-9
        else:
            np.testing.assert_allclose(lap.sum(1), 0, atol=1e-9)


def assert_laplacian_matrices_match_references(g: Graph) -> None:
    """Graph.laplacian_matrix against the dense references from the edges and the sparse
    one from the adjacency; its symmetric form is (L + L^T) / 2; the torch Laplacian holds
    the same entries."""
    for kind, dense in dense_references(g).items():
        lap = g.laplacian_matrix(kind)
        assert isinstance(lap, sp.csr_array) and lap.dtype == np.float64
        assert lap.shape == (g.n_nodes, g.n_nodes) and lap.has_canonical_format
        np.testing.assert_allclose(lap.toarray(), dense, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(
            lap.toarray(), sparse_reference(g, kind).toarray(), rtol=1e-12, atol=1e-12
        )
        sym = g.laplacian_matrix(kind, symmetric=True)
        np.testing.assert_allclose(sym.toarray(), (dense + dense.T) / 2, rtol=1e-12, atol=1e-12)
        if kind != "random_walk":
            np.testing.assert_array_equal(sym.toarray(), lap.toarray())
        np.testing.assert_array_equal(dense_laplacian(g, kind), lap.toarray())


@pytest.mark.parametrize(
    "g",
    [ISOLATED, graphs.grid(3, 4), graphs.star(5), graphs.path(1), graphs.capsules(2, 3)]
    + [graphs.hexagonal(4, 5), graphs.grid3d(2, 3, 4), graphs.kite(2)],
)
def test_laplacian_matrix_matches_references(g: Graph) -> None:
    assert_laplacian_matrices_match_references(g)


@FAST
@given(weighted_graphs())
def test_laplacian_matrix_matches_references_on_random_graphs(g: Graph) -> None:
    assert_laplacian_matrices_match_references(g)


def test_laplacian_matrix_of_the_symmetric_form_is_the_matrix_of_laplacian_terms() -> None:
    g = graphs.from_edges(5, [[0, 1], [1, 2], [2, 3], [0, 3]], [1.0, 3.0, 0.25, 2.0])
    z = np.random.default_rng(0).normal(size=5)
    i, j = g.edges.T
    for kind in graphs.LAPLACIAN_KINDS:
        diag, coef = g.laplacian_terms(kind)
        sym = g.laplacian_matrix(kind, symmetric=True)
        np.testing.assert_array_equal(sym.diagonal(), diag)
        np.testing.assert_array_equal(sym[i, j], -coef)
        assert z @ sym @ z == pytest.approx(z @ g.laplacian_matrix(kind) @ z, rel=1e-12)


def test_graphs_and_their_laplacian_matrices_need_no_torch() -> None:
    code = (
        "import sys; from gsreg import graphs; "
        "graphs.parse('torus:4x8').laplacian_matrix('normalized'); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_laplacian_matrix_rejects_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown Laplacian kind 'sym'"):
        graphs.path(3).laplacian_matrix("sym")


def test_laplacian_tensor_format() -> None:
    g = graphs.grid(2, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lap = g.laplacian("normalized", device="cpu", dtype=torch.float64)
    assert lap.is_sparse and lap.is_coalesced()
    assert lap.shape == (6, 6) and lap.dtype == torch.float64
    assert g.laplacian().dtype == torch.float32


# ---------------------------------------------------------------------------- constructors


def _cycle_edge_count(n: int) -> int:
    return {1: 0, 2: 1}.get(n, n)


@FAST
@given(st.integers(1, 9), st.integers(1, 9))
def test_lattice_edge_and_component_counts(h: int, w: int) -> None:
    assert graphs.grid(h, w).n_edges == h * (w - 1) + w * (h - 1)
    torus = graphs.torus(h, w)
    assert torus.n_edges == h * _cycle_edge_count(w) + w * _cycle_edge_count(h)
    if h >= 3 and w >= 3:
        assert torus.n_edges == 2 * h * w
        np.testing.assert_array_equal(torus.degrees(), 4)
    lines = graphs.lines(h, w)
    assert lines.n_edges == h * (w - 1) and lines.components()[0] == (h if w > 1 else h * w)
    capsules = graphs.capsules(h, w)
    assert capsules.n_edges == w * h * (h - 1) // 2 and capsules.components()[0] == w
    for g in (graphs.grid(h, w), torus, lines, capsules):
        assert g.n_nodes == h * w and g.shape == (h, w)
    assert graphs.grid(h, w).components()[0] == torus.components()[0] == 1


@FAST
@given(st.integers(1, 6), st.integers(3, 12))
def test_rings_counts(h: int, w: int) -> None:
    g = graphs.rings(h, w)
    assert g.n_edges == h * w and g.components()[0] == h and g.shape == (h, w)
    np.testing.assert_array_equal(g.degrees(), 2)


@FAST
@given(st.integers(1, 40))
def test_path_star_ring_counts(n: int) -> None:
    assert graphs.path(n).n_edges == n - 1 and graphs.path(n).components()[0] == 1
    star = graphs.star(n)
    assert star.n_edges == n - 1 and star.components()[0] == 1
    assert star.degrees()[0] == n - 1
    if n >= 3:
        ring = graphs.ring(n)
        assert ring.n_edges == n and ring.components()[0] == 1 and ring.shape == (1, n)
        assert ring == graphs.rings(1, n)


@pytest.mark.parametrize("k", range(1, 8))
def test_tree_is_a_heap_ordered_binary_tree(k: int) -> None:
    n = 2**k - 1
    g = graphs.tree(n)
    assert g.n_edges == n - 1 and g.components()[0] == 1
    parents = {int(j): int(i) for i, j in g.edges}
    assert all(parents[c] == (c - 1) // 2 for c in range(1, n))
    depth = np.floor(np.log2(np.arange(n) + 1))
    np.testing.assert_array_equal(g.coords[:, 1], -depth)  # layered, root on top


def test_tree_coords_centre_parents_over_children() -> None:
    g = graphs.tree(15)
    for parent in range(7):
        children = g.coords[[2 * parent + 1, 2 * parent + 2], 0]
        assert g.coords[parent, 0] == children.mean()
    np.testing.assert_array_equal(g.coords[7:, 0], np.arange(8))


@FAST
@given(st.integers(2, 30))
def test_wishbone_structure(w: int) -> None:
    g = graphs.wishbone(w)
    assert g.shape == (2, w) and g.n_nodes == 2 * w
    assert g.n_edges == 2 * (w - 1) + w // 2 and g.components()[0] == 1
    edges = {tuple(e) for e in g.edges.tolist()}
    rungs = {(i, j) for i, j in edges if j - i == w}
    assert rungs == {(k, w + k) for k in range(w // 2)}
    # removing the rungs leaves the two rows as paths
    assert edges - rungs == {tuple(e) for e in graphs.lines(2, w).edges.tolist()}


def test_wishbone_example() -> None:
    assert graphs.wishbone(5).edges.tolist() == [
        [0, 1],
        [0, 5],
        [1, 2],
        [1, 6],
        [2, 3],
        [3, 4],
        [5, 6],
        [6, 7],
        [7, 8],
        [8, 9],
    ]


def test_capsules_link_the_same_feature_of_every_capsule() -> None:
    c, d = 4, 3
    g = graphs.capsules(c, d)
    i, j = g.edges.T
    np.testing.assert_array_equal(i % d, j % d)  # same feature index, no intra-capsule edge
    assert np.all(i // d != j // d)
    labels = g.components()[1]
    assert all(len(set(labels[k::d])) == 1 for k in range(d))  # each feature is one clique
    assert graphs.capsules(10, 16).n_edges == 16 * 45


def test_small_torus_has_no_repeated_or_loop_edges() -> None:
    assert graphs.torus(1, 1).n_edges == 0
    assert graphs.torus(1, 5) == graphs.ring(5)
    assert graphs.torus(2, 2) == graphs.grid(2, 2)
    wraps = {(i, i + 3) for i in (0, 4)}  # row wraps of torus 2x4
    assert {tuple(e) for e in graphs.torus(2, 4).edges.tolist()} == (
        {tuple(e) for e in graphs.grid(2, 4).edges.tolist()} | wraps
    )


def test_row_major_grid_neighbours() -> None:
    g = graphs.grid(3, 4)
    w = g.adjacency()
    assert set(w[5].indices.tolist()) == {1, 4, 6, 9}
    np.testing.assert_array_equal(g.coords[5], [1, -1])  # column 1, row 1


def test_star_layout_has_the_hub_in_the_middle() -> None:
    g = graphs.star(7)
    np.testing.assert_array_equal(g.coords[0], [0, 0])
    np.testing.assert_allclose(np.linalg.norm(g.coords[1:], axis=1), 1)
    assert g.shape is None


def test_rings_are_drawn_side_by_side() -> None:
    g = graphs.rings(3, 6)
    boxes = [g.coords[6 * r : 6 * r + 6, 0] for r in range(3)]
    assert all(a.max() < b.min() for a, b in zip(boxes, boxes[1:], strict=False))


# ---------------------------------------------------------------------------- hex, grid3d, kite


def path_laplacian_eigenvalues(n: int) -> np.ndarray:
    """(n,) the known spectrum of the path on n nodes: 2 - 2 cos(pi k / n), k = 0..n-1."""
    return 2 - 2 * np.cos(np.pi * np.arange(n) / n)


def laplacian_spectrum(g: Graph) -> np.ndarray:
    """Sorted eigenvalues of D - W from scipy.sparse.csgraph on the edge-list matrix."""
    return np.linalg.eigvalsh(scipy_laplacian(dense_w(g)))


def segments_cross(p: np.ndarray, q: np.ndarray, r: np.ndarray, s: np.ndarray) -> bool:
    """Whether the closed segments p-q and r-s meet (no three of the points collinear)."""

    def side(a, b, c) -> float:
        return float(np.sign((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])))

    return side(p, q, r) != side(p, q, s) and side(r, s, p) != side(r, s, q)


@FAST
@given(st.integers(2, 8), st.integers(2, 8))
def test_hexagonal_is_networkx_triangular_lattice_in_row_major_order(h: int, w: int) -> None:
    # networkx's triangular lattice of m rows and n columns of triangles has m + 1 rows of
    # (n + 1) // 2 + 1 nodes, odd rows shifted right, nodes (column, row), y pointing up
    reference = nx.triangular_lattice_graph(h - 1, 2 * w - 2)
    g = graphs.hexagonal(h, w)
    relabelled = nx.relabel_nodes(reference, {(c, r): r * w + c for c, r in reference.nodes})
    assert graphs.from_networkx(relabelled) == g
    for (c, r), (x, y) in nx.get_node_attributes(reference, "pos").items():
        np.testing.assert_allclose(g.coords[r * w + c], [x, -y], atol=1e-12)


@FAST
@given(st.integers(1, 9), st.integers(1, 9))
def test_hexagonal_counts_and_degrees(h: int, w: int) -> None:
    g = graphs.hexagonal(h, w)
    assert g.n_nodes == h * w and g.shape is None and g.components()[0] == 1
    assert g.n_edges == h * (w - 1) + w * (h - 1) + (h - 1) * (w - 1)
    degrees = g.degrees().reshape(h, w)
    if h >= 3 and w >= 3:
        np.testing.assert_array_equal(degrees[1:-1, 1:-1], 6)
        corners = [degrees[0, 0], degrees[0, -1], degrees[-1, 0], degrees[-1, -1]]
        # left corners of even rows and right corners of odd rows have 2 neighbours
        assert corners == [2, 3, 2 if h % 2 else 3, 3 if h % 2 else 2]


def test_hexagonal_neighbours_of_even_and_odd_rows() -> None:
    g = graphs.hexagonal(4, 5)
    adjacency = g.adjacency()
    # row 1 (odd, shifted right), column 2: node 7 has 6, 8 beside, 2, 3 above, 12, 13 below
    assert set(adjacency[7].indices.tolist()) == {6, 8, 2, 3, 12, 13}
    # row 2 (even), column 2: node 12 has 11, 13 beside, 6, 7 above, 16, 17 below
    assert set(adjacency[12].indices.tolist()) == {11, 13, 6, 7, 16, 17}


@pytest.mark.parametrize(("h", "w"), [(1, 1), (1, 6), (5, 1), (2, 2), (6, 7)])
def test_hexagonal_coords_are_the_unit_triangular_lattice(h: int, w: int) -> None:
    g = graphs.hexagonal(h, w)
    rows, cols = np.divmod(np.arange(h * w), w)
    np.testing.assert_allclose(g.coords[:, 1], -rows * np.sqrt(3) / 2)
    np.testing.assert_allclose(g.coords[:, 0], cols + 0.5 * (rows % 2))
    # every edge has length 1, and no two nodes are closer than an edge
    i, j = g.edges.T
    np.testing.assert_allclose(np.linalg.norm(g.coords[i] - g.coords[j], axis=1), 1.0)
    gaps = np.linalg.norm(g.coords[:, None] - g.coords[None], axis=2)
    assert np.all(gaps[~np.eye(h * w, dtype=bool)] >= 1.0 - 1e-12)


@FAST
@given(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5))
def test_grid3d_is_networkx_grid_graph_in_row_major_order(d: int, h: int, w: int) -> None:
    reference = nx.grid_graph(dim=[w, h, d])  # nodes (k, i, j): sorted, that is row-major
    g = graphs.grid3d(d, h, w)
    assert graphs.from_networkx(reference) == g
    assert g.n_nodes == d * h * w and g.shape is None
    assert g.n_edges == d * h * (w - 1) + d * w * (h - 1) + h * w * (d - 1)


def test_grid3d_indexes_nodes_as_k_h_plus_i_times_w_plus_j() -> None:
    d, h, w = 3, 4, 5
    g = graphs.grid3d(d, h, w)
    assert nx.is_isomorphic(g.to_networkx(), nx.grid_graph(dim=[w, h, d]))
    node = (1 * h + 2) * w + 3  # (k, i, j) = (1, 2, 3)
    expected = {(k * h + i) * w + j for k, i, j in [(0, 2, 3), (2, 2, 3), (1, 1, 3)]}
    expected |= {(k * h + i) * w + j for k, i, j in [(1, 3, 3), (1, 2, 2), (1, 2, 4)]}
    assert set(g.adjacency()[node].indices.tolist()) == expected
    assert graphs.grid3d(1, h, w) == graphs.grid(h, w)


@pytest.mark.parametrize(("d", "h", "w"), [(2, 3, 4), (3, 3, 3), (1, 2, 5), (4, 1, 1)])
def test_grid3d_spectrum_is_the_sum_of_three_path_spectra(d: int, h: int, w: int) -> None:
    a, b, c = (path_laplacian_eigenvalues(n) for n in (d, h, w))
    expected = np.sort((a[:, None, None] + b[None, :, None] + c[None, None, :]).ravel())
    np.testing.assert_allclose(laplacian_spectrum(graphs.grid3d(d, h, w)), expected, atol=1e-9)


def test_grid3d_draws_the_slices_side_by_side() -> None:
    d, h, w = 3, 4, 5
    g = graphs.grid3d(d, h, w)
    slices = g.coords.reshape(d, h * w, 2)
    for k in range(d):  # slice k is an h x w lattice moved right by w + 1 per slice before it
        np.testing.assert_array_equal(slices[k], graphs.lattice_coords(h, w) + [k * (w + 1), 0])


def test_kite_is_networkx_krackhardt_kite() -> None:
    reference = nx.krackhardt_kite_graph()
    assert reference.number_of_nodes() == 10 and reference.number_of_edges() == 18
    assert graphs.from_networkx(reference) == graphs.kite(1)


@pytest.mark.parametrize("copies", [1, 2, 5])
def test_kite_copies_are_disjoint_kites(copies: int) -> None:
    g = graphs.kite(copies)
    reference = nx.disjoint_union_all([nx.krackhardt_kite_graph()] * copies)
    assert graphs.from_networkx(reference) == g
    assert g.n_nodes == 10 * copies and g.n_edges == 18 * copies and g.shape is None
    count, labels = g.components()
    assert count == copies
    np.testing.assert_array_equal(labels, np.repeat(np.arange(copies), 10))
    one = laplacian_spectrum(graphs.from_networkx(nx.krackhardt_kite_graph()))
    np.testing.assert_allclose(laplacian_spectrum(g), np.sort(np.tile(one, copies)), atol=1e-9)


def test_kites_are_drawn_planar_side_by_side() -> None:
    g = graphs.kite(3)
    xy = g.coords
    boxes = [xy[10 * c : 10 * c + 10, 0] for c in range(3)]
    assert all(a.max() < b.min() for a, b in zip(boxes, boxes[1:], strict=False))
    edges = g.edges[:18].tolist()
    for a, (p, q) in enumerate(edges):
        for r, s in edges[a + 1 :]:
            if len({p, q, r, s}) == 4:
                assert not segments_cross(xy[p], xy[q], xy[r], xy[s]), (p, q, r, s)
        others = np.setdiff1d(np.arange(10), [p, q])  # no edge passes through a node
        t = np.clip((xy[others] - xy[p]) @ (xy[q] - xy[p]) / np.sum((xy[q] - xy[p]) ** 2), 0, 1)
        closest = xy[p] + t[:, None] * (xy[q] - xy[p])
        assert np.linalg.norm(xy[others] - closest, axis=1).min() > 0.1


def test_new_specs_parse_with_their_aliases_and_any_case() -> None:
    assert_same_presentation(graphs.parse("hex:3x4"), graphs.hexagonal(3, 4))
    assert_same_presentation(graphs.parse(" Hexagonal : 3 x 4"), graphs.hexagonal(3, 4))
    assert graphs.parse("hexagonal:3x4").name == "hex:3x4"
    assert_same_presentation(graphs.parse("GRID3D:2x3x4"), graphs.grid3d(2, 3, 4))
    assert_same_presentation(graphs.parse("kite:3"), graphs.kite(3))
    union = graphs.parse("kite:1 + hex:2x2")
    assert union == graphs.disjoint(graphs.kite(1), graphs.hexagonal(2, 2))
    for form in ("hex:HxW", "grid3d:DxHxW", "kite:N"):
        assert form in graphs.SPEC_FORMS


@pytest.mark.parametrize(
    ("allowed", "refused"),
    [("hex:10x10", "hex:10x11"), ("grid3d:4x5x5", "grid3d:4x5x6"), ("kite:10", "kite:11")],
)
def test_the_node_cap_counts_the_nodes_of_each_new_kind(monkeypatch, allowed, refused) -> None:
    monkeypatch.setattr(graphs, "MAX_SPEC_NODES", 100)
    assert graphs.parse(allowed).n_nodes == 100
    with pytest.raises(ValueError, match=r"about 1\d\d nodes.*MAX_SPEC_NODES = 100"):
        graphs.parse(refused)


@pytest.mark.parametrize("spec", ["hex:5x6", "grid3d:2x3x4", "kite:2"])
def test_new_graphs_draw_with_plot_graph(spec: str, tmp_path) -> None:
    import matplotlib.pyplot as plt

    from gsreg import plotting

    g = graphs.parse(spec)
    fig = plotting.plot_graph(g)
    try:
        fig.savefig(tmp_path / "graph.png")
    finally:
        plt.close(fig)
    assert (tmp_path / "graph.png").stat().st_size > 0
    assert len(np.unique(g.coords.round(9), axis=0)) == g.n_nodes


@pytest.mark.parametrize("spec", SPECS)
def test_layouts_are_deterministic_and_distinct(spec: str) -> None:
    a, b = graphs.parse(spec), graphs.parse(spec)
    np.testing.assert_array_equal(a.coords, b.coords)
    assert len(np.unique(a.coords.round(9), axis=0)) == a.n_nodes


# ---------------------------------------------------------------------------- disjoint


def test_disjoint_stacks_parts_of_equal_width() -> None:
    g = graphs.disjoint(graphs.path(2), graphs.path(2), graphs.path(2))
    assert_same_presentation(g, graphs.parse(g.name))
    assert g == graphs.lines(3, 2) and g.shape == (3, 2)
    np.testing.assert_array_equal(g.coords, graphs.lines(3, 2).coords)
    stacked = graphs.disjoint(graphs.grid(2, 3), graphs.grid(1, 3))
    assert stacked.shape == (3, 3) and stacked.components()[0] == 2
    np.testing.assert_array_equal(stacked.coords, graphs.lattice_coords(3, 3))


def test_disjoint_places_other_parts_side_by_side() -> None:
    parts = [graphs.grid(2, 2), graphs.ring(5), graphs.star(4)]
    g = graphs.disjoint(*parts)
    assert g.shape is None and g.name == "grid:2x2 + ring:5 + star:4"
    assert g.components()[0] == 3 and g.n_edges == sum(p.n_edges for p in parts)
    xs = np.split(g.coords[:, 0], [4, 9])
    assert all(a.max() < b.min() for a, b in zip(xs, xs[1:], strict=False))
    np.testing.assert_array_equal(g.edges[4:9], parts[1].edges + 4)
    assert_same_presentation(g, graphs.parse(g.name))


@FAST
@given(st.lists(weighted_graphs(max_nodes=8), min_size=1, max_size=4))
def test_disjoint_is_block_diagonal(parts: list[Graph]) -> None:
    g = graphs.disjoint(*parts)
    assert g.n_nodes == sum(p.n_nodes for p in parts)
    assert g.components()[0] == sum(p.components()[0] for p in parts)
    blocks = sp.block_diag([p.adjacency() for p in parts]).toarray()
    np.testing.assert_array_equal(g.adjacency().toarray(), blocks)


# ---------------------------------------------------------------------------- round-trips


@FAST
@given(specs())
def test_parse_round_trips_every_kind(spec: str) -> None:
    g = graphs.parse(spec)
    assert g.name == spec
    assert_same_presentation(graphs.parse(g.name), g)


def test_parse_is_tolerant_of_case_and_whitespace() -> None:
    assert_same_presentation(graphs.parse("  Grid : 8 X 8 "), graphs.grid(8, 8))
    assert_same_presentation(graphs.parse("TREE:15"), graphs.tree(15))
    assert graphs.parse("grid:08x8").name == "grid:8x8"
    for spec in SPECS:
        assert graphs.parse(spec).name == spec


@FAST
@given(specs())
def test_conversions_round_trip_constructed_graphs(spec: str) -> None:
    g = graphs.parse(spec)
    assert graphs.from_adjacency(g.adjacency()) == g
    assert graphs.from_adjacency(g.adjacency().toarray()) == g
    assert_same_presentation(graphs.from_networkx(g.to_networkx()), g)
    assert_same_presentation(Graph.from_dict(json.loads(json.dumps(g.to_dict()))), g)


@FAST
@given(weighted_graphs())
def test_conversions_round_trip_random_graphs(g: Graph) -> None:
    assert graphs.from_adjacency(g.adjacency()) == g
    assert graphs.from_adjacency(torch.as_tensor(g.adjacency().toarray())) == g
    assert graphs.from_networkx(g.to_networkx()) == g
    assert_same_presentation(Graph.from_dict(json.loads(json.dumps(g.to_dict()))), g)


def test_from_adjacency_symmetrises_within_tolerance() -> None:
    a = torch.tensor([[0.0, 1.0, 0.0], [1.0 + 1e-7, 0.0, 2.0], [0.0, 2.0, 0.0]])
    g = graphs.from_adjacency(a)
    assert g.edges.tolist() == [[0, 1], [1, 2]]
    np.testing.assert_allclose(g.weights, [1.0 + 0.5e-7, 2.0], rtol=1e-7)


def test_from_adjacency_sparse_inputs() -> None:
    a = sp.coo_matrix(
        ([1.0, 1.0, 0.0, 0.0, 2.0, 3.0], ([0, 1, 0, 2, 1, 1], [1, 0, 2, 0, 2, 2])), shape=(3, 3)
    )  # explicit zeros and a duplicate (1, 2): 2 + 3
    with pytest.raises(ValueError, match=r"adjacency\[1, 2\] = 5.0 but adjacency\[2, 1\] = 0.0"):
        graphs.from_adjacency(a)
    g = graphs.from_adjacency(a + sp.coo_matrix(([5.0], ([2], [1])), shape=(3, 3)))
    assert g.edges.tolist() == [[0, 1], [1, 2]] and g.weights.tolist() == [1.0, 5.0]
    dense_bool = np.array([[0, 1], [1, 0]], dtype=bool)
    assert graphs.from_adjacency(dense_bool) == graphs.path(2)
    torch_sparse = torch.as_tensor(graphs.ring(5).adjacency().toarray()).to_sparse()
    assert graphs.from_adjacency(torch_sparse) == graphs.ring(5)


def test_from_adjacency_keeps_isolated_nodes() -> None:
    g = graphs.from_adjacency(np.zeros((4, 4)), name="empty")
    assert g.n_nodes == 4 and g.n_edges == 0 and g.components()[0] == 4 and g.name == "empty"


def test_from_networkx_orders_nodes() -> None:
    assert graphs.from_networkx(nx.grid_2d_graph(3, 4)) == graphs.grid(3, 4)  # (row, col) sort
    shuffled = nx.Graph([(3, 2), (0, 1), (2, 1)])  # inserted 3, 2, 0, 1: sorted to 0..3
    assert graphs.from_networkx(shuffled) == graphs.path(4)
    g = nx.Graph()
    g.add_edge("b", 1, weight=2.0)
    g.add_edge(1, "a")
    out = graphs.from_networkx(g)  # labels do not sort: insertion order b, 1, a
    assert out.edges.tolist() == [[0, 1], [1, 2]] and out.weights.tolist() == [2.0, 1.0]
    assert out.name == "graph" and out.shape is None
    np.testing.assert_array_equal(out.coords, graphs.circle_layout(3))


def test_to_networkx_attributes() -> None:
    g = graphs.grid(2, 3).to_networkx()
    assert sorted(g.nodes) == list(range(6)) and g.number_of_edges() == 7
    assert g.graph["name"] == "grid:2x3" and g.graph["shape"] == (2, 3)
    assert g.nodes[5]["pos"] == (2.0, -1.0) and g.edges[0, 1]["weight"] == 1.0
    assert graphs.from_networkx(nx.path_graph(4)) == graphs.path(4)


def test_to_dict_is_plain_json() -> None:
    d = graphs.wishbone(4).to_dict()
    assert set(d) == {"name", "n_nodes", "shape", "edges", "weights", "coords"}
    assert json.loads(json.dumps(d)) == d
    assert isinstance(d["edges"][0][0], int) and isinstance(d["weights"][0], float)


# ---------------------------------------------------------------------------- immutability


def test_graph_is_immutable() -> None:
    g = graphs.grid(2, 2)
    for arr in (g.edges, g.weights, g.coords):
        assert not arr.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.n_nodes = 5  # type: ignore[misc]


def test_graph_copies_caller_arrays() -> None:
    coords = np.zeros((2, 2))
    edges = np.array([[1, 0]])
    g = graphs.from_edges(2, edges, coords=coords)
    assert coords.flags.writeable and edges.flags.writeable
    coords[0, 0] = 7.0
    assert g.coords[0, 0] == 0.0 and g.edges.tolist() == [[0, 1]]


def test_equality_is_structural() -> None:
    assert graphs.ring(6) == graphs.rings(1, 6)
    assert graphs.path(3) != graphs.from_edges(3, [[0, 1], [1, 2]], [1.0, 2.0])
    assert graphs.path(3) != graphs.path(4)
    assert graphs.path(3) != "path:3"


# ---------------------------------------------------------------------------- bad input


BAD_INPUTS = {
    "negative weight": (lambda: graphs.from_edges(3, [[0, 1]], [-1.0]), r"-1\.0.*positive"),
    "zero weight": (lambda: graphs.from_edges(3, [[0, 1]], [0.0]), r"edge 0 \(0, 1\).*positive"),
    "nan weight": (lambda: graphs.from_edges(3, [[0, 1]], [np.nan]), r"is nan.*finite"),
    "inf weight": (lambda: graphs.from_edges(3, [[1, 2]], [np.inf]), r"\(1, 2\) is inf"),
    "self-loop": (lambda: graphs.from_edges(3, [[0, 1], [2, 2]]), "self-loop on node 2"),
    "out of range": (lambda: graphs.from_edges(3, [[0, 3]]), r"\(0, 3\) is out of range for 3"),
    "negative index": (lambda: graphs.from_edges(3, [[-1, 0]]), "out of range"),
    "duplicate": (lambda: graphs.from_edges(3, [[0, 1], [1, 0]]), r"\(0, 1\) appears more"),
    "zero nodes": (lambda: graphs.from_edges(0, []), "at least one node"),
    "bool nodes": (lambda: graphs.from_edges(True, []), "at least one node"),
    "fractional edge": (lambda: graphs.from_edges(3, [[0.5, 1]]), "integer node indices"),
    "edge shape": (lambda: graphs.from_edges(3, [[0, 1, 2]]), r"shape \(E, 2\)"),
    "weight shape": (lambda: graphs.from_edges(3, [[0, 1]], [1.0, 2.0]), r"shape \(1,\)"),
    "coords shape": (lambda: graphs.from_edges(3, [], coords=np.zeros((2, 2))), r"\(3, 2\)"),
    "nan coords": (lambda: graphs.from_edges(2, [], coords=[[0, 0], [np.nan, 1]]), "node 1"),
    "shape size": (lambda: graphs.from_edges(6, [], shape=(2, 2)), "does not hold 6"),
    "shape form": (lambda: graphs.from_edges(6, [], shape=(6,)), "two positive integers"),
    "name": (lambda: Graph(2, [], [], name=3), "name must be a string"),
    "laplacian kind": (lambda: graphs.path(3).laplacian("sym"), "unknown Laplacian kind 'sym'"),
    "terms kind": (lambda: graphs.path(3).laplacian_terms("rw"), "unknown Laplacian kind"),
    # from_adjacency
    "not square": (lambda: graphs.from_adjacency(np.zeros((2, 3))), r"square.*\(2, 3\)"),
    "empty matrix": (lambda: graphs.from_adjacency(np.zeros((0, 0))), "at least one node"),
    "not 2-d": (lambda: graphs.from_adjacency(np.zeros(4)), "2-d"),
    "not numeric": (lambda: graphs.from_adjacency(np.array([["a"]])), "numeric"),
    "asymmetric": (
        lambda: graphs.from_adjacency(np.array([[0, 1.0, 0], [2.0, 0, 0], [0, 0, 0]])),
        r"not symmetric: adjacency\[0, 1\] = 1\.0 but adjacency\[1, 0\] = 2\.0",
    ),
    "one-sided": (
        lambda: graphs.from_adjacency(sp.csr_matrix(([3.0], ([2], [0])), shape=(3, 3))),
        r"adjacency\[0, 2\] = 0\.0 but adjacency\[2, 0\] = 3\.0",
    ),
    "negative entry": (
        lambda: graphs.from_adjacency(np.array([[0, -1.0], [-1.0, 0]])),
        r"adjacency\[0, 1\] = -1\.0 is negative",
    ),
    "nan entry": (
        lambda: graphs.from_adjacency(np.array([[0, 1.0], [np.nan, 0]])),
        r"adjacency\[1, 0\] = nan is not finite",
    ),
    "diagonal": (
        lambda: graphs.from_adjacency(torch.tensor([[0, 1.0], [1.0, 0.5]])),
        r"adjacency\[1, 1\] = 0\.5 is a self-loop",
    ),
    # constructors
    "tree size": (lambda: graphs.tree(14), r"2\^k - 1.*got 14"),
    "grid zero": (lambda: graphs.grid(0, 3), "grid: h must be an integer >= 1, got 0"),
    "grid negative": (lambda: graphs.grid(2, -1), "grid: w must be"),
    "grid float": (lambda: graphs.grid(2.5, 3), "got 2.5"),
    "torus zero": (lambda: graphs.torus(3, 0), "torus: w"),
    "lines zero": (lambda: graphs.lines(0, 3), "lines: h"),
    "path zero": (lambda: graphs.path(0), "path: n"),
    "star zero": (lambda: graphs.star(0), "star: n"),
    "ring two": (lambda: graphs.ring(2), "ring: n must be an integer >= 3, got 2"),
    "rings two": (lambda: graphs.rings(2, 2), "rings: w must be an integer >= 3"),
    "wishbone one": (lambda: graphs.wishbone(1), "wishbone: w must be an integer >= 2"),
    "capsules zero": (lambda: graphs.capsules(0, 16), "capsules: c"),
    "hexagonal zero": (lambda: graphs.hexagonal(0, 3), "hexagonal: h must be an integer >= 1"),
    "hexagonal negative": (lambda: graphs.hexagonal(3, -2), "hexagonal: w must be .*got -2"),
    "hexagonal float": (lambda: graphs.hexagonal(2.5, 3), "hexagonal: h .*got 2.5"),
    "grid3d zero": (lambda: graphs.grid3d(0, 2, 2), "grid3d: d must be an integer >= 1, got 0"),
    "grid3d negative": (lambda: graphs.grid3d(2, -1, 2), "grid3d: h must be"),
    "grid3d float": (lambda: graphs.grid3d(2, 2, 2.0), "grid3d: w .*got 2.0"),
    "kite zero": (lambda: graphs.kite(0), "kite: copies must be an integer >= 1, got 0"),
    "kite negative": (lambda: graphs.kite(-3), "kite: copies .*got -3"),
    "kite bool": (lambda: graphs.kite(True), "kite: copies .*got True"),
    "kite text": (lambda: graphs.kite("2"), "kite: copies .*got '2'"),
    "disjoint empty": (lambda: graphs.disjoint(), "at least one graph"),
    # parse
    "unknown kind": (
        lambda: graphs.parse("hexgrid:3x3"),
        r"unknown graph kind 'hexgrid'.*grid:HxW",
    ),
    "missing size": (lambda: graphs.parse("grid:8"), r"grid takes grid:HxW, got 'grid:8'"),
    "extra size": (lambda: graphs.parse("ring:3x3"), "ring takes ring:N"),
    "no colon": (lambda: graphs.parse("grid 8x8"), r"malformed graph spec 'grid 8x8'.*tree:N"),
    "empty spec": (lambda: graphs.parse(""), "malformed graph spec"),
    "dangling plus": (lambda: graphs.parse("grid:8x8 +"), "malformed graph spec"),
    "negative size": (lambda: graphs.parse("path:-3"), "malformed"),
    "zero size": (lambda: graphs.parse("grid:0x3"), "h must be an integer >= 1"),
    "bad tree spec": (lambda: graphs.parse("tree:10"), r"2\^k - 1"),
    "hex one size": (lambda: graphs.parse("hex:6"), r"hex takes hex:HxW, got 'hex:6'"),
    "hexagonal one size": (lambda: graphs.parse("hexagonal:6"), r"hex takes hex:HxW"),
    "grid3d two sizes": (
        lambda: graphs.parse("grid3d:4x4"),
        r"grid3d takes grid3d:DxHxW, got 'grid3d:4x4'",
    ),
    "grid three sizes": (lambda: graphs.parse("grid:2x3x4"), "grid takes grid:HxW"),
    "kite two sizes": (lambda: graphs.parse("kite:2x2"), r"kite takes kite:N.*kite:N"),
    "hex zero size": (lambda: graphs.parse("hex:0x4"), "hexagonal: h must be an integer >= 1"),
    "grid3d zero size": (lambda: graphs.parse("grid3d:2x0x2"), "grid3d: h must be"),
    "kite zero copies": (lambda: graphs.parse("kite:0"), "kite: copies must be"),
    "hex negative size": (lambda: graphs.parse("hex:-2x3"), "malformed graph spec"),
    "grid3d fractional": (lambda: graphs.parse("grid3d:2x2.5x2"), "malformed graph spec"),
    "kite fractional": (lambda: graphs.parse("kite:1.5"), "malformed graph spec"),
    # from_dict
    "dict missing": (lambda: Graph.from_dict({"n_nodes": 2, "edges": []}), r"lacks.*weights"),
    "dict unknown": (
        lambda: Graph.from_dict({"n_nodes": 2, "edges": [], "weights": [], "nodes": 2}),
        r"unknown key.*nodes",
    ),
    "dict not mapping": (lambda: Graph.from_dict([1, 2]), "must be a mapping"),
    "dict bad edge": (
        lambda: Graph.from_dict({"n_nodes": 2, "edges": [[0, 2]], "weights": [1.0]}),
        "out of range",
    ),
    "dict bad weight": (
        lambda: Graph.from_dict({"n_nodes": 2, "edges": [[0, 1]], "weights": [-2.0]}),
        "positive",
    ),
    # from_networkx
    "directed": (lambda: graphs.from_networkx(nx.DiGraph([(0, 1)])), "undirected.*DiGraph"),
    "multigraph": (lambda: graphs.from_networkx(nx.MultiGraph([(0, 1)])), "MultiGraph"),
    "nx self-loop": (lambda: graphs.from_networkx(nx.Graph([("a", "a")])), "'a' has a self-loop"),
    "nx weight": (
        lambda: graphs.from_networkx(nx.Graph([("a", "b", {"weight": 0})])),
        r"edge \('a', 'b'\) has weight=0.0",
    ),
    "nx empty": (lambda: graphs.from_networkx(nx.Graph()), "at least one node"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_value_error(case: str) -> None:
    build, match = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=match):
        build()


def test_type_errors() -> None:
    with pytest.raises(TypeError, match="argument 1 is a str"):
        graphs.disjoint(graphs.path(2), "path:2")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a string"):
        graphs.parse(8)  # type: ignore[arg-type]


def test_components_by_size_numbers_the_largest_first():
    g = graphs.disjoint(graphs.path(2), graphs.path(4), graphs.path(2), graphs.path(1))
    count, labels = g.components(by_size=True)
    assert count == 4
    # sizes 2, 4, 2, 1 -> the 4-path is 0, the first 2-path 1, the second 2, the singleton 3
    np.testing.assert_array_equal(labels, [1, 1, 0, 0, 0, 0, 2, 2, 3])
    np.testing.assert_array_equal(graphs.rank_by_size(np.array([5, 5, 9])), [0, 0, 1])


@pytest.mark.parametrize("weight", [1e308, 1e-200, 1e-310])
def test_normalized_laplacian_stays_finite_for_extreme_weights(weight):
    """w / (sqrt(d_i) sqrt(d_j)), not w / sqrt(d_i d_j): the product of two degrees
    overflows (1e308) or underflows to 0 (1e-200) while each root is fine."""
    g = graphs.from_edges(4, [[0, 1], [2, 3]], [weight, weight])
    L = g.laplacian("normalized").to_dense().double().numpy()
    assert np.isfinite(L).all()
    # the normalised Laplacian does not depend on a common scale of the weights
    ref = graphs.from_edges(4, [[0, 1], [2, 3]], [1.0, 1.0]).laplacian("normalized")
    np.testing.assert_allclose(L, ref.to_dense().double().numpy(), rtol=1e-6, atol=1e-7)


def test_weights_whose_degree_overflows_are_refused():
    with pytest.raises(ValueError, match="sum to infinity"):
        graphs.from_edges(3, [[0, 1], [1, 2]], [1.5e308, 1.5e308])


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a.astype(np.complex128),
        lambda a: torch.as_tensor(a, dtype=torch.complex64),
        lambda a: sp.csr_matrix(a.astype(np.complex128)),
    ],
)
def test_a_complex_adjacency_is_refused_not_truncated(make):
    a = np.array([[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(TypeError, match="must be real"):
        graphs.from_adjacency(make(a))


@pytest.mark.parametrize(
    "spec",
    [
        "grid:100000x100000",
        "path:2000000000",
        "path:10000000000000000000000",
        "grid:4096x4096 + path:1",
        "hex:4097x4096",
        "hexagonal:100000x100000",
        "grid3d:256x256x257",
        "grid3d:100000x100000x100000",
        "kite:1677722",
        "kite:10000000000000000000000",
    ],
)
def test_specs_beyond_the_node_cap_are_refused_before_allocating(spec):
    with pytest.raises(ValueError, match="MAX_SPEC_NODES"):
        graphs.parse(spec)


def test_edges_of_text_or_huge_floats_get_one_clear_message_each():
    with pytest.raises(TypeError, match="integer node indices, got dtype <U1"):
        graphs.from_edges(3, [["a", "b"]])
    with pytest.raises(ValueError, match=r"edge 0 = \(0.0, 1e\+30\) is out of range for 3"):
        graphs.from_edges(3, [[0.0, 1e30]])
