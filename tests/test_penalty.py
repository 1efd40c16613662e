"""GraphPenalty against an independent dense computation, gradients, and its errors."""

import numpy as np
import pytest
import scipy.sparse.csgraph as csgraph
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gsreg import graphs
from gsreg.penalty import GraphPenalty


def random_graph(rng: np.random.Generator, n: int, density: float = 0.4) -> graphs.Graph:
    upper = np.triu(rng.random((n, n)) < density, 1)
    i, j = np.nonzero(upper)
    return graphs.from_edges(n, np.stack([i, j], 1), rng.uniform(0.1, 5.0, len(i)))


def dense_laplacian(g: graphs.Graph, kind: str) -> np.ndarray:
    A = g.adjacency().toarray()
    if kind == "random_walk":
        d = A.sum(1)
        inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), 0.0)
        return np.diag((d > 0).astype(float)) - inv[:, None] * A
    return csgraph.laplacian(A, normed=kind == "normalized")


@pytest.mark.parametrize("kind", ["combinatorial", "normalized", "random_walk"])
@pytest.mark.parametrize("seed", range(4))
def test_penalty_matches_dense_quadratic_form(kind, seed):
    rng = np.random.default_rng(seed)
    g = random_graph(rng, int(rng.integers(2, 40)))
    z = rng.normal(size=(7, g.n_nodes))
    L = dense_laplacian(g, kind)
    expected = np.einsum("bi,ij,bj->b", z, L, z)
    zt = torch.tensor(z)
    got = GraphPenalty(g, laplacian=kind, reduction="none")(zt).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
    mean = GraphPenalty(g, laplacian=kind)(zt).item()
    total = GraphPenalty(g, laplacian=kind, reduction="sum")(zt).item()
    assert mean == pytest.approx(expected.mean(), rel=1e-10, abs=1e-10)
    assert total == pytest.approx(expected.sum(), rel=1e-10, abs=1e-10)


def test_penalty_equals_edge_sum_of_squared_differences():
    g = graphs.grid(3, 5)
    z = torch.randn(4, 15, dtype=torch.float64)
    i, j = torch.as_tensor(g.edges.copy()).unbind(1)
    by_edge = ((z[:, i] - z[:, j]) ** 2).sum(1).mean()
    assert GraphPenalty(g)(z).item() == pytest.approx(by_edge.item(), rel=1e-12)


@pytest.mark.parametrize("kind", ["combinatorial", "normalized", "random_walk"])
@pytest.mark.parametrize("normalize", [False, "rayleigh", "centered"])
def test_gradcheck(kind, normalize):
    g = random_graph(np.random.default_rng(3), 12, 0.3)
    z = torch.randn(5, 12, dtype=torch.float64, requires_grad=True)
    pen = GraphPenalty(g, laplacian=kind, normalize=normalize, reduction="none")
    assert torch.autograd.gradcheck(pen, (z,))


def test_rayleigh_forms_against_numpy():
    g = graphs.grid(4, 4)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 16)) + 3.0
    L = dense_laplacian(g, "combinatorial")
    num = np.einsum("bi,ij,bj->b", z, L, z)
    ray = GraphPenalty(g, normalize=True, reduction="none", eps=0)(torch.tensor(z)).numpy()
    np.testing.assert_allclose(ray, num / (z * z).sum(1))
    centred = z - z.mean(1, keepdims=True)
    cen = GraphPenalty(g, normalize="centered", reduction="none", eps=0)(torch.tensor(z))
    np.testing.assert_allclose(cen.numpy(), num / (centred * centred).sum(1))


def test_rayleigh_has_constant_offset_hole_centered_does_not():
    g = graphs.grid(4, 4)
    z = torch.randn(3, 16, dtype=torch.float64)
    ray = GraphPenalty(g, normalize="rayleigh")
    cen = GraphPenalty(g, normalize="centered")
    assert ray(z + 100.0) < 0.01 * ray(z)
    assert cen(z + 100.0).item() == pytest.approx(cen(z).item(), rel=1e-9)


def test_scale_behaviour():
    g = graphs.ring(10)
    z = torch.randn(8, 10, dtype=torch.float64)
    assert GraphPenalty(g)(3 * z).item() == pytest.approx(9 * GraphPenalty(g)(z).item())
    ray = GraphPenalty(g, normalize=True, eps=0)
    assert ray(3 * z).item() == pytest.approx(ray(z).item())


def test_leading_dimensions_are_samples():
    g = graphs.path(6)
    z = torch.randn(2, 3, 6, dtype=torch.float64)
    pen = GraphPenalty(g, reduction="none")
    assert pen(z).shape == (2, 3)
    np.testing.assert_allclose(pen(z).reshape(-1), pen(z.reshape(6, 6)))


def test_follows_dtype_and_half_precision_is_computed_in_float32():
    g = graphs.grid(3, 3)
    z = torch.randn(4, 9)
    assert GraphPenalty(g)(z).dtype == torch.float32
    assert GraphPenalty(g)(z.double()).dtype == torch.float64
    half = GraphPenalty(g)(z.bfloat16())
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(GraphPenalty(g)(z.bfloat16().float()).item())


def test_width_mismatch_names_both_sizes():
    pen = GraphPenalty(graphs.grid(8, 8))
    with pytest.raises(ValueError, match=r"\(B, 64\).*grid:8x8.*\(5, 50\)"):
        pen(torch.randn(5, 50))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_activations_raise(bad):
    z = torch.randn(4, 9)
    z[2, 3] = bad
    with pytest.raises(ValueError, match="NaN|Inf"):
        GraphPenalty(graphs.grid(3, 3))(z)


@pytest.mark.parametrize("kind", ["combinatorial", "normalized", "random_walk"])
def test_symmetric_operator_is_the_symmetric_part_of_the_laplacian(kind):
    from gsreg.penalty import symmetric_operator

    g = graphs.disjoint(random_graph(np.random.default_rng(3), 12), graphs.path(1))  # isolated
    L = dense_laplacian(g, kind)
    S = symmetric_operator(g, kind, torch.device("cpu"), torch.float64)
    assert S.layout == torch.sparse_csr and S.dtype == torch.float64
    np.testing.assert_allclose(S.to_dense().numpy(), (L + L.T) / 2, rtol=1e-12, atol=1e-12)


def test_bad_arguments():
    g = graphs.grid(2, 2)
    with pytest.raises(ValueError, match="laplacian"):
        GraphPenalty(g, laplacian="signless")
    with pytest.raises(ValueError, match="reduction"):
        GraphPenalty(g, reduction="max")
    with pytest.raises(ValueError, match="normalize"):
        GraphPenalty(g, normalize="yes")
    with pytest.raises(TypeError, match="Graph"):
        GraphPenalty(np.eye(3))
    with pytest.raises(TypeError, match="floating"):
        GraphPenalty(g)(torch.ones(2, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="empty"):
        GraphPenalty(g)(torch.ones(0, 4))


@pytest.mark.parametrize("normalize", [0, 1, np.bool_(True), "Rayleigh"])
def test_normalize_takes_only_the_listed_options(normalize):
    # 0 and 1 equal False and True but are not the bools NORMALIZATIONS lists
    with pytest.raises(ValueError, match=r"GraphPenalty: normalize must be one of \(False, True"):
        GraphPenalty(graphs.grid(2, 2), normalize=normalize)


@pytest.mark.parametrize("eps", [-1e-9, float("nan"), float("inf"), True, "0"])
def test_eps_must_be_a_finite_number_at_least_zero(eps):
    with pytest.raises(ValueError, match="GraphPenalty: eps must be a finite number >= 0"):
        GraphPenalty(graphs.grid(2, 2), eps=eps)


def test_an_unknown_forced_path_names_the_paths():
    pen = GraphPenalty(graphs.grid(2, 2))
    pen._path = "sparse"
    with pytest.raises(ValueError, match=r"GraphPenalty: path must be one of \('stencil', "):
        pen(torch.ones(2, 4))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 25),
    density=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
    kind=st.sampled_from(["combinatorial", "normalized", "random_walk"]),
)
def test_penalty_is_non_negative_and_zero_on_the_null_space(n, density, seed, kind):
    rng = np.random.default_rng(seed)
    g = random_graph(rng, n, density)
    z = torch.tensor(rng.normal(size=(5, n)))
    values = GraphPenalty(g, laplacian=kind, reduction="none")(z)
    if kind == "random_walk":
        # the symmetric part of I - D^-1 W is not positive semi-definite when degrees
        # differ, so the form can be negative: check it against a dense computation
        W = g.adjacency().toarray()
        degree = W.sum(axis=1)
        connected = degree > 0  # isolated nodes contribute nothing
        L = np.diag(connected.astype(float)) - W / np.where(connected, degree, 1.0)[:, None]
        expected = torch.einsum("bi,ij,bj->b", z, torch.tensor((L + L.T) / 2), z)
        torch.testing.assert_close(values, expected, rtol=1e-9, atol=1e-9)
    else:
        assert (values >= -1e-9).all()
    # the null space: constant per component (combinatorial), D^1/2 1 (normalized)
    const = torch.ones(1, n, dtype=torch.float64)
    if kind == "normalized":
        const = torch.tensor(np.sqrt(g.degrees()))[None]
    assert GraphPenalty(g, laplacian=kind)(const).item() == pytest.approx(0.0, abs=1e-9)


# ---------------------------------------------------------------- computation paths
# GraphPenalty computes L z by a stencil over edge offsets ("stencil"), a dense product
# ("dense") or a CSR product ("csr"), picked from the graph; every path must give the same
# values and gradients, whichever graph it is forced on.

PATHS = ("stencil", "dense", "csr")


def forced(g: graphs.Graph, path: str, **kwargs) -> GraphPenalty:
    pen = GraphPenalty(g, **kwargs)
    pen._path = path
    return pen


def lattice_subgraph(rng: np.random.Generator, h: int, w: int, keep: float) -> graphs.Graph:
    """A random weighted subgraph of the h x w grid, possibly with isolated nodes."""
    full = graphs.grid(h, w)
    mask = rng.random(full.n_edges) < keep
    return graphs.from_edges(
        h * w, full.edges[mask], rng.uniform(0.2, 3.0, int(mask.sum())), shape=(h, w)
    )


def offset_graph(rng: np.random.Generator, n: int, offsets: tuple[int, ...]) -> graphs.Graph:
    """Random weighted edges (i, i + d) for the given offsets d."""
    edges = [(i, i + d) for d in offsets for i in range(n - d) if rng.random() < 0.6]
    return graphs.from_edges(n, edges, rng.uniform(0.2, 3.0, len(edges)))


PATH_GRAPHS = {
    "grid": lambda rng: graphs.grid(5, 7),
    "torus": lambda rng: graphs.torus(4, 5),
    "lines": lambda rng: graphs.lines(4, 6),
    "rings": lambda rng: graphs.rings(3, 5),
    "path": lambda rng: graphs.path(9),
    "one node": lambda rng: graphs.grid(1, 1),
    "no edges": lambda rng: graphs.from_edges(5, np.zeros((0, 2), dtype=np.int64)),
    "weighted grid subgraph": lambda rng: lattice_subgraph(rng, 6, 5, 0.7),
    "sparse grid subgraph": lambda rng: lattice_subgraph(rng, 4, 4, 0.3),
    "offsets 2, 3, 11": lambda rng: offset_graph(rng, 20, (2, 3, 11)),
    "random": lambda rng: random_graph(rng, 18, 0.3),
}


@pytest.mark.parametrize("name", list(PATH_GRAPHS))
@pytest.mark.parametrize("kind", ["combinatorial", "normalized", "random_walk"])
@pytest.mark.parametrize("normalize", [False, "centered"])
def test_all_paths_agree_with_the_dense_quadratic_form(name, kind, normalize):
    rng = np.random.default_rng(7)
    g = PATH_GRAPHS[name](rng)
    z = rng.normal(size=(6, g.n_nodes))
    L = dense_laplacian(g, kind)
    expected = np.einsum("bi,ij,bj->b", z, L, z)
    if normalize == "centered":
        centred = z - z.mean(1, keepdims=True)
        expected = expected / ((centred * centred).sum(1) + 1e-8)
    grads = []
    for path in PATHS:
        zt = torch.tensor(z, requires_grad=True)
        pen = forced(g, path, laplacian=kind, normalize=normalize, reduction="none")
        got = pen(zt)
        np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-10, atol=1e-10)
        got.sum().backward()
        grads.append(zt.grad.numpy())
    for grad in grads[1:]:
        np.testing.assert_allclose(grad, grads[0], rtol=1e-10, atol=1e-10)
    if normalize is False:  # d/dz z^T L z = z (L + L^T)
        np.testing.assert_allclose(grads[0], z @ (L + L.T), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", ["combinatorial", "normalized", "random_walk"])
def test_gradcheck_every_path(path, kind):
    g = lattice_subgraph(np.random.default_rng(1), 3, 4, 0.8)
    z = torch.randn(4, 12, dtype=torch.float64, requires_grad=True)
    pen = forced(g, path, laplacian=kind, reduction="none")
    assert torch.autograd.gradcheck(pen, (z,))


@pytest.mark.parametrize("path", PATHS)
def test_float32_paths_agree(path):
    g = graphs.grid(16, 16)
    z = torch.randn(32, 256)
    expected = forced(g, "csr", reduction="none")(z.double())
    got = forced(g, path, reduction="none")(z)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-3)


def test_path_choice():
    from gsreg.penalty import DENSE_MAX_NODES, STENCIL_MAX_OFFSETS, STENCIL_NODES_PER_OFFSET

    per = STENCIL_NODES_PER_OFFSET
    assert GraphPenalty(graphs.grid(16, 16))._path == "stencil"  # offsets 1, 16
    assert GraphPenalty(graphs.lines(4, 16))._path == "stencil"
    assert GraphPenalty(graphs.torus(16, 16))._path == "stencil"  # offsets 1, 15, 16, 240
    assert GraphPenalty(graphs.path(per))._path == "stencil"
    assert GraphPenalty(graphs.path(per - 1))._path == "dense"  # too small for the stencil
    assert GraphPenalty(graphs.torus(4, 4))._path == "dense"
    assert GraphPenalty(graphs.grid(2, 2))._path == "dense"
    many = offset_graph(np.random.default_rng(0), 300, tuple(range(1, STENCIL_MAX_OFFSETS + 2)))
    assert GraphPenalty(many)._path == "csr"
    big = random_graph(np.random.default_rng(0), DENSE_MAX_NODES + 1, 0.05)
    assert GraphPenalty(big)._path == "csr"
    small = random_graph(np.random.default_rng(0), DENSE_MAX_NODES, 0.05)
    assert GraphPenalty(small)._path == "dense"


@pytest.mark.parametrize("path", PATHS)
def test_gradient_keeps_the_activation_layout(path):
    # a transposed gradient would make every later backward operation strided
    g = graphs.grid(4, 4)
    x = torch.randn(5, 16, requires_grad=True)
    z = x * 2.0
    seen = []
    z.register_hook(lambda grad: seen.append(grad.is_contiguous()))
    forced(g, path)(z).backward()
    assert seen == [True]


def test_operators_are_cached_per_path_device_and_dtype():
    pen = GraphPenalty(graphs.grid(3, 3))
    z = torch.randn(2, 9)
    pen(z)
    pen(z)
    pen(z.double())
    assert len(pen._operators) == 2
    assert pen.operator(torch.device("cpu"), torch.float32).layout == torch.sparse_csr


def test_finite_energies_whose_sum_overflows_do_not_raise():
    g = graphs.path(2)
    z = torch.tensor([[0.0, 1e19]] * 8)  # each energy 1e38 is finite, their sum is not
    energies = GraphPenalty(g, reduction="none")(z)
    assert torch.isfinite(energies).all()
    assert not torch.isfinite(energies.sum())


@pytest.mark.parametrize("normalize", ["rayleigh", "centered"])
@pytest.mark.parametrize("laplacian", ["combinatorial", "normalized"])
def test_scale_free_forms_with_eps_zero_give_zero_rows_energy_zero(normalize, laplacian):
    """A zero row (and, centred, a constant row) has a zero denominator: energy 0 and a
    finite gradient instead of NaN; other rows are unchanged."""
    g = graphs.grid(2, 3)
    z = torch.tensor([[0.0] * 6, [2.0] * 6, [1.0, 0.0, 3.0, 2.0, 5.0, 1.0]], requires_grad=True)
    pen = GraphPenalty(g, laplacian=laplacian, normalize=normalize, reduction="none", eps=0)
    energy = pen(z)
    assert torch.isfinite(energy).all()
    assert energy[0] == 0
    if normalize == "centered":
        assert energy[1] == 0
    other = GraphPenalty(g, laplacian=laplacian, normalize=normalize, reduction="none", eps=0)(
        z[2:].detach()
    )
    torch.testing.assert_close(energy[2:].detach(), other)
    energy.sum().backward()
    assert torch.isfinite(z.grad).all()


def _graph_for(path: str) -> graphs.Graph:
    """A graph GraphPenalty computes on ``path``."""
    from gsreg.penalty import choose_path

    graph = {
        "stencil": graphs.grid(8, 8),
        "dense": random_graph(np.random.default_rng(1), 12),
        "csr": random_graph(np.random.default_rng(2), 140, density=0.05),
    }[path]
    assert choose_path(graph) == path
    return graph


@pytest.mark.parametrize("path", ["stencil", "dense", "csr"])
@pytest.mark.parametrize("laplacian", ["combinatorial", "normalized", "random_walk"])
@pytest.mark.parametrize("normalize", [False, "rayleigh", "centered"])
def test_second_derivatives_are_exact_on_every_path(path, laplacian, normalize):
    """gradgradcheck (finite differences of the gradient) on every computation path."""
    graph = _graph_for(path)
    pen = GraphPenalty(graph, laplacian=laplacian, normalize=normalize, check_finite=False)
    z = torch.randn(
        3,
        graph.n_nodes,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(0),
        requires_grad=True,
    )
    assert torch.autograd.gradgradcheck(pen, (z,), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("path", ["stencil", "dense", "csr"])
def test_hessian_vector_product_matches_the_dense_laplacian(path):
    """The plain penalty mean_b z_b^T L z_b has Hessian 2 L / B per row: a double backward
    (create_graph=True) against the dense einsum."""
    graph = _graph_for(path)
    L = graph.laplacian(dtype=torch.float64).to_dense()
    z = torch.randn(4, graph.n_nodes, dtype=torch.float64, requires_grad=True)
    v = torch.randn(4, graph.n_nodes, dtype=torch.float64)
    (grad,) = torch.autograd.grad(GraphPenalty(graph)(z), z, create_graph=True)
    (hvp,) = torch.autograd.grad(grad, z, grad_outputs=v)
    torch.testing.assert_close(hvp, 2 * v @ L / 4)


def test_torch_func_grad_matches_autograd():
    graph = graphs.grid(8, 8)
    pen = GraphPenalty(graph)
    z = torch.randn(5, 64, dtype=torch.float64, requires_grad=True)
    (expected,) = torch.autograd.grad(pen(z), z)
    torch.testing.assert_close(torch.func.grad(pen)(z.detach()), expected)


def test_the_compilable_entries_form_equals_the_csr_product():
    from gsreg.penalty import COMPILED_CSR, csr_apply, entries_apply

    g = graphs.torus(3, 5)
    pen = GraphPenalty(g, laplacian="random_walk")
    pen._path = "csr"
    pen.prepare("cpu", torch.float64)
    z = torch.randn(4, g.n_nodes, dtype=torch.float64)
    (csr,) = pen._operators[("csr", torch.device("cpu"), torch.float64)]
    entries = pen._operators[(COMPILED_CSR, torch.device("cpu"), torch.float64)]
    dense = torch.as_tensor(g.laplacian_matrix("random_walk", symmetric=True).toarray())
    torch.testing.assert_close(entries_apply(z, *entries), z @ dense)
    torch.testing.assert_close(csr_apply(z, csr), z @ dense)


def test_energies_without_grad_equal_energies_with_grad():
    g = graphs.grid(4, 8)
    z = torch.randn(5, 32, dtype=torch.float64)
    pen = GraphPenalty(g, reduction="none")
    with_grad = pen(z.clone().requires_grad_())
    torch.testing.assert_close(pen(z), with_grad.detach())
    L = torch.as_tensor(g.laplacian_matrix().toarray())
    torch.testing.assert_close(pen(z), torch.einsum("bi,ij,bj->b", z, L, z))
