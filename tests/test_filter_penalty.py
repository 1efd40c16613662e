"""GraphPenalty with a spectral filter: mean_b ||h(L) z_b||^2 (or _1) on every path,
against the dense eigendecomposition, with first and second derivatives checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gsreg import GraphPenalty, GraphRegularizer, filters, graphs

RNG = np.random.default_rng(3)
# a graph for each path: the stencil needs >= 32 nodes per offset, the dense path <= 128
PATH_GRAPHS = {"stencil": graphs.grid(8, 8), "dense": graphs.grid(8, 8), "csr": graphs.grid(8, 8)}
FILTERS = {
    "heat": filters.heat(0.4),
    "mexican_hat": filters.mexican_hat(0.7),
    "polynomial": filters.polynomial([0.3, -0.1, 0.02]),
}


def _forced(pen: GraphPenalty, path: str) -> GraphPenalty:
    pen._path = path
    return pen


def _dense_energies(graph, kind, filt, z, norm, order=None):
    """Per-row energies (B,) through eigh with the series the penalty uses: z^T p(L) z for
    p the series of h^2 (l2), ||p(L) z||_1 for p that of h (l1)."""
    coefs, lmax = (filt.squared() if norm == "l2" else filt).series(graph, order, kind, None)
    lam, vecs = np.linalg.eigh(graph.laplacian_matrix(kind).toarray())
    lam = np.clip(lam, 0.0, None)
    p = np.polynomial.chebyshev.chebval(2 * lam / lmax - 1, coefs) - coefs[0] / 2
    y = z @ (vecs * p) @ vecs.T
    return (z * y).sum(axis=1) if norm == "l2" else np.abs(y).sum(axis=1)


@pytest.mark.parametrize("norm", ["l2", "l1"])
@pytest.mark.parametrize("kind", ["combinatorial", "normalized"])
@pytest.mark.parametrize("path", ["stencil", "dense", "csr"])
@pytest.mark.parametrize("name", list(FILTERS))
def test_filter_energies_match_the_dense_eigendecomposition_on_every_path(name, path, kind, norm):
    graph, filt = PATH_GRAPHS[path], FILTERS[name]
    pen = _forced(
        GraphPenalty(graph, laplacian=kind, filter=filt, order=20, norm=norm, reduction="none"),
        path,
    )
    z = RNG.normal(size=(5, graph.n_nodes))
    got = pen(torch.tensor(z)).numpy()
    np.testing.assert_allclose(got, _dense_energies(graph, kind, filt, z, norm, 20), rtol=1e-9)


def test_the_filter_energy_is_close_to_the_exact_filter_and_the_laplacian_squared_is_exact():
    graph = graphs.ring(30)
    z = RNG.normal(size=(4, 30))
    lap = graph.laplacian_matrix().toarray()
    lam, vecs = np.linalg.eigh(lap)
    heat = (vecs * np.exp(-0.5 * np.clip(lam, 0, None))) @ vecs.T
    exact = ((z @ heat) ** 2).sum(axis=1).mean()
    pen = GraphPenalty(graph, filter=filters.heat(0.5), order=24)
    np.testing.assert_allclose(float(pen(torch.tensor(z))), exact, rtol=1e-6)
    # h(λ) = λ: ||L z||^2 = z^T L^2 z, exactly
    square = GraphPenalty(graph, filter=filters.polynomial([0.0, 1.0]))
    np.testing.assert_allclose(
        float(square(torch.tensor(z))), np.einsum("bi,ij,bj->b", z, lap @ lap, z).mean(), rtol=1e-12
    )


@pytest.mark.parametrize("norm", ["l2", "l1"])
@pytest.mark.parametrize("path", ["stencil", "dense", "csr"])
def test_first_and_second_derivatives_are_exact_on_every_path(path, norm):
    graph = graphs.grid(8, 8) if path == "stencil" else graphs.grid(3, 4)
    pen = _forced(GraphPenalty(graph, filter=filters.heat(0.3), order=6, norm=norm), path)
    z = torch.tensor(RNG.normal(size=(3, graph.n_nodes)), requires_grad=True)
    assert torch.autograd.gradcheck(pen, (z,))
    if norm == "l2":  # |y| has no second derivative at 0; away from it, it is 0 anyway
        assert torch.autograd.gradgradcheck(pen, (z,))


@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_the_gradient_is_the_filter_applied_to_the_filtered_signal(norm):
    graph = graphs.grid(8, 8)
    filt = filters.heat(0.3)
    pen = GraphPenalty(graph, filter=filt, order=30, norm=norm, reduction="sum")
    z = torch.randn(4, 64, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(pen(z), z)
    filtered = filt.apply(z.detach(), graph, order=30)
    outer = 2 * filtered if norm == "l2" else torch.sign(filtered)
    torch.testing.assert_close(grad, filt.apply(outer, graph, order=30), rtol=1e-6, atol=1e-9)


def test_a_regularizer_takes_a_filter_penalty_and_training_lowers_it():
    torch.manual_seed(0)
    graph = graphs.grid(6, 6)
    model = torch.nn.Sequential(torch.nn.Linear(10, 36), torch.nn.Tanh(), torch.nn.Linear(36, 10))
    pen = GraphPenalty(graph, filter=filters.mexican_hat(1.0), order=16)
    reg = GraphRegularizer(model, {"1": pen}, weight=1.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.randn(64, 10)
    first = None
    for _ in range(60):
        loss = torch.nn.functional.mse_loss(model(x), x) + reg.penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
        reg.step()
        value = float(reg.logs()["gsr/1"])
        first = value if first is None else first
    assert value < 0.5 * first
    reg.remove()


def test_bad_filter_penalties_are_refused():
    graph = graphs.grid(4, 4)
    with pytest.raises(TypeError, match="filter"):
        GraphPenalty(graph, filter="heat")
    with pytest.raises(ValueError, match="norm"):
        GraphPenalty(graph, filter=filters.heat(1.0), norm="l3")
    with pytest.raises(ValueError, match="symmetric"):
        GraphPenalty(graph, filter=filters.heat(1.0), laplacian="random_walk")
    with pytest.raises(ValueError, match="order"):
        GraphPenalty(graph, filter=filters.heat(1.0), order=0)
    with pytest.raises(ValueError, match="too large"):
        GraphPenalty(graph, filter=filters.heat(1.0), order=16)
    with pytest.raises(ValueError, match="without a filter"):
        GraphPenalty(graph, order=4)
    with pytest.raises(ValueError, match="l1"):
        GraphPenalty(graph, filter=filters.heat(1.0), norm="l1", normalize="centered")
    with pytest.warns(UserWarning, match="raise the order"):
        GraphPenalty(graphs.grid(16, 16), filter=filters.low_pass(0.3, sharpness=4), order=4)


@pytest.mark.parametrize("norm", ["l2", "l1"])
@pytest.mark.parametrize("path", ["stencil", "dense", "csr"])
def test_a_filter_penalty_compiles_without_graph_breaks_and_matches_eager(path, norm):
    dynamo = pytest.importorskip("torch._dynamo")
    torch._dynamo.reset()
    pen = _forced(
        GraphPenalty(graphs.grid(8, 8), filter=filters.heat(0.5), order=8, norm=norm), path
    )
    pen.prepare("cpu")
    z = torch.randn(4, 64, requires_grad=True)
    assert dynamo.explain(pen)(z).graph_break_count == 0
    compiled = torch.compile(pen, fullgraph=True, backend="aot_eager")
    value = compiled(z)
    (grad,) = torch.autograd.grad(value, z)
    (eager_grad,) = torch.autograd.grad(pen(z), z)
    torch.testing.assert_close(value, pen(z))
    torch.testing.assert_close(grad, eager_grad)
