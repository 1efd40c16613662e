"""gsreg.filters against dense eigendecompositions (numpy eigh) and PyGSP."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gsreg import filters, graphs

RNG = np.random.default_rng(0)


def _random_graph(n: int, p: float, seed: int) -> graphs.Graph:
    rng = np.random.default_rng(seed)
    i, j = np.triu_indices(n, 1)
    keep = rng.random(i.size) < p
    edges = np.stack([i[keep], j[keep]], axis=1)
    return graphs.from_edges(n, edges, rng.uniform(0.1, 3.0, len(edges)))


GRAPHS = {
    "grid": graphs.grid(4, 5),
    "ring": graphs.ring(12),
    "weighted": _random_graph(15, 0.3, 1),
    "path": graphs.path(9),
}
FILTERS = {
    "heat": filters.heat(0.7),
    "low_pass": filters.low_pass(1.5),
    "mexican_hat": filters.mexican_hat(1.0),
    "wavelet": filters.wavelet(0.8),
    "polynomial": filters.polynomial([0.5, -0.2, 0.03]),
}


def _dense_filter(graph, kind, response, z):
    """h(L) z (B, n) through the eigendecomposition of the dense symmetric Laplacian."""
    lap = graph.laplacian_matrix(kind).toarray()
    lam, vecs = np.linalg.eigh(lap)
    lam = np.clip(lam, 0.0, None)  # -1e-16 round-off
    return z @ (vecs * response(lam)) @ vecs.T


@pytest.mark.parametrize("kind", ["combinatorial", "normalized"])
@pytest.mark.parametrize("graph_name", list(GRAPHS))
@pytest.mark.parametrize("filter_name", list(FILTERS))
def test_apply_matches_the_dense_eigendecomposition_within_the_stated_error(
    filter_name, graph_name, kind
):
    graph, filt = GRAPHS[graph_name], FILTERS[filter_name]
    z = RNG.normal(size=(6, graph.n_nodes))
    order = min(30, graph.n_nodes - 1)
    exact = _dense_filter(graph, kind, filt.response, z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a low order on a tiny graph may warn; bounded below
        got = filt.apply(torch.tensor(z), graph, order=order, laplacian=kind).numpy()
    lmax = filters.lmax_bound(graph, kind)
    lam = np.linspace(0, lmax, 2001)
    bound = filt.approximation_error(order, lmax) * np.abs(filt.response(lam)).max()
    # per row, ||(h - p)(L) z|| <= max_λ |h - p| ||z||
    gap = np.linalg.norm(got - exact, axis=1)
    assert np.all(gap <= bound * np.linalg.norm(z, axis=1) * (1 + 1e-6) + 1e-9)
    if filter_name == "polynomial":  # Horner's rule is exact
        np.testing.assert_allclose(got, exact, atol=1e-10)


@pytest.mark.parametrize("graph_name", list(GRAPHS))
def test_the_chebyshev_recurrence_is_exactly_the_series_it_evaluates(graph_name):
    graph = GRAPHS[graph_name]
    coefs = RNG.normal(size=9)
    lmax = filters.lmax_bound(graph)

    def series(lam):
        return np.polynomial.chebyshev.chebval(2 * lam / lmax - 1, coefs) - coefs[0] / 2

    z = RNG.normal(size=(3, graph.n_nodes))
    lap = torch.tensor(graph.laplacian_matrix().toarray())
    got = filters.chebyshev_apply(torch.tensor(z), lambda x: x @ lap, coefs, lmax)
    np.testing.assert_allclose(
        got.numpy(), _dense_filter(graph, "combinatorial", series, z), atol=1e-10
    )


@pytest.mark.parametrize("graph_name", ["ring", "weighted"])
def test_heat_wavelet_and_mexican_hat_agree_with_pygsp(graph_name):
    pygsp = pytest.importorskip("pygsp")
    graph = GRAPHS[graph_name]
    pg = pygsp.graphs.Graph(graph.adjacency().toarray())
    pg.compute_fourier_basis()
    z = RNG.normal(size=(graph.n_nodes, 4))
    lam = pg.e.clip(0)
    # PyGSP's heat kernel is exp(-scale λ / lmax); its Abspline is Hammond's cubic spline
    t = 0.6
    theirs = pygsp.filters.Heat(pg, scale=t * pg.lmax)
    np.testing.assert_allclose(theirs.evaluate(lam)[0], filters.heat(t).response(lam), rtol=1e-12)
    spline = pygsp.filters.Abspline(pg, Nf=2, scales=[0.8])
    np.testing.assert_allclose(
        spline.evaluate(lam)[1], filters.wavelet(0.8).response(lam), rtol=1e-12, atol=1e-300
    )
    np.testing.assert_allclose(
        pygsp.filters.MexicanHat(pg, Nf=2, scales=[1.3]).evaluate(lam)[1] * np.e,
        filters.mexican_hat(1.3).response(lam),
        rtol=1e-12,
    )
    for ours, their in [(filters.heat(t), theirs)]:
        expected = their.filter(z, method="exact")
        got = ours.apply(torch.tensor(z.T), graph, order=graph.n_nodes - 1).numpy().T
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_apply_is_differentiable_and_its_gradient_is_the_filter_twice():
    graph = GRAPHS["weighted"]
    filt = filters.heat(0.5)
    z = torch.tensor(RNG.normal(size=(3, graph.n_nodes)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: filt.apply(x, graph, order=8), (z,))
    energy = filt.apply(z, graph, order=14).pow(2).sum()
    (grad,) = torch.autograd.grad(energy, z)
    twice = 2 * filt.apply(filt.apply(z.detach(), graph, order=14), graph, order=14)
    torch.testing.assert_close(grad, twice)  # h(L) is symmetric: d||h z||^2 = 2 h(h z)


def test_a_single_signal_keeps_its_shape_and_float32_stays_float32():
    graph = GRAPHS["grid"]
    z = torch.randn(graph.n_nodes)
    out = filters.heat(1.0).apply(z, graph, order=10)
    assert out.shape == z.shape and out.dtype == torch.float32
    batch = filters.heat(1.0).apply(z[None], graph, order=10)
    torch.testing.assert_close(out, batch[0])


@pytest.mark.filterwarnings("ignore:.*raise the order")  # locality holds at any accuracy
def test_the_atoms_of_a_polynomial_filter_are_local_to_order_hops():
    graph = graphs.path(40)
    delta = torch.zeros(1, 40, dtype=torch.float64)
    delta[0, 20] = 1.0
    atom = filters.wavelet(1.0).apply(delta, graph, order=6)[0].numpy()
    assert np.all(atom[:14] == 0) and np.all(atom[27:] == 0) and atom[20] != 0


@pytest.mark.filterwarnings("ignore:.*raise the order")  # the spline kernel is only C1
def test_smaller_wavelet_scales_are_more_local():
    graph = graphs.grid(15, 15)
    delta = torch.zeros(1, graph.n_nodes, dtype=torch.float64)
    centre = 7 * 15 + 7
    delta[0, centre] = 1.0
    rows, cols = np.divmod(np.arange(graph.n_nodes), 15)
    dist2 = (rows - 7) ** 2 + (cols - 7) ** 2

    def spread(scale):
        atom = filters.wavelet(scale).apply(delta, graph, order=40, lmax="lanczos")[0].numpy()
        weight = atom**2 / (atom**2).sum()
        return float((weight * dist2).sum())

    assert spread(0.5) < spread(2.0) < spread(8.0)


def test_lmax_bounds_hold_and_lanczos_is_tighter():
    for graph in GRAPHS.values():
        for kind in ("combinatorial", "normalized"):
            top = np.linalg.eigvalsh(graph.laplacian_matrix(kind, symmetric=True).toarray())[-1]
            bound, lanczos = filters.lmax_bound(graph, kind), filters.lmax_lanczos(graph, kind)
            assert top <= lanczos * (1 + 1e-9) and lanczos <= bound


def test_a_larger_order_approximates_better_and_a_poor_order_warns():
    graph = graphs.grid(16, 16)
    filt = filters.low_pass(0.5, sharpness=4)
    lmax = filters.lmax_bound(graph)
    errors = [filt.approximation_error(k, lmax) for k in (4, 16, 64)]
    assert errors[0] > errors[1] > errors[2]
    z = torch.randn(2, graph.n_nodes)
    with pytest.warns(UserWarning, match="raise the order"):
        filt.apply(z, graph, order=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        filters.heat(1.0).apply(z, graph, order=20)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: filters.heat(0), ValueError, "t must be"),
        (lambda: filters.heat(-1.0), ValueError, "t must be"),
        (lambda: filters.heat(float("nan")), ValueError, "t must be"),
        (lambda: filters.heat("1"), TypeError, "t must be"),
        (lambda: filters.low_pass(0.0), ValueError, "cutoff"),
        (lambda: filters.wavelet(-2), ValueError, "scale"),
        (lambda: filters.polynomial([]), ValueError, "coefs"),
        (lambda: filters.polynomial([1.0, float("inf")]), ValueError, "coefs"),
        (lambda: filters.get("gabor", scale=1.0), ValueError, "filter"),
    ],
)
def test_bad_filters_are_refused_with_their_parameter_named(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_orders_signals_and_responses_are_refused():
    graph = GRAPHS["ring"]
    z = torch.randn(2, graph.n_nodes)
    with pytest.raises(ValueError, match="order"):
        filters.heat(1.0).apply(z, graph, order=0)
    with pytest.raises(ValueError, match="too large"):
        filters.heat(1.0).apply(z, graph, order=12)
    assert filters.check_order(None, graph) == 11  # the default order, capped at n - 1
    assert filters.check_order(None, graphs.grid(8, 8)) == filters.DEFAULT_ORDER
    with pytest.raises(ValueError, match=r"\(B, 12\)"):
        filters.heat(1.0).apply(torch.randn(2, 5), graph)
    with pytest.raises(TypeError, match="floating-point"):
        filters.heat(1.0).apply(np.zeros((2, 12)), graph)
    with pytest.raises(ValueError, match="not finite"), np.errstate(invalid="ignore"):
        filters.chebyshev_coefficients(lambda lam: np.log(lam - 1.0), 8, 4.0)
    with pytest.raises(ValueError, match="λ"):
        filters.heat(1.0).response([-1.0])


def test_get_builds_each_named_filter_and_str_is_its_spec():
    assert filters.get("heat", t=2.0) == filters.heat(2.0)
    assert str(filters.heat(2.0)) == "heat:t=2"
    assert str(filters.low_pass(1.0, sharpness=3)) == "low_pass:cutoff=1,sharpness=3"
    assert set(filters.FILTERS) == {"heat", "low_pass", "mexican_hat", "wavelet", "polynomial"}


@pytest.mark.filterwarnings("ignore:.*raise the order")  # bounded by the stated error
@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(3, 12),
    p=st.floats(0.2, 1.0),
    seed=st.integers(0, 10_000),
    t=st.floats(0.05, 3.0),
)
def test_heat_of_any_graph_matches_eigh_and_keeps_each_signal_s_sum(n, p, seed, t):
    graph = _random_graph(n, p, seed)
    z = np.random.default_rng(seed).normal(size=(2, n))
    got = filters.heat(t).apply(torch.tensor(z), graph, order=n - 1).numpy()
    exact = _dense_filter(graph, "combinatorial", filters.heat(t).response, z)
    lmax = filters.lmax_bound(graph)
    bound = filters.heat(t).approximation_error(n - 1, lmax)
    assert np.all(np.abs(got - exact).max(axis=1) <= bound * np.linalg.norm(z, axis=1) + 1e-9)
    # the constant vector is an eigenvector of eigenvalue 0: heat keeps every row's sum
    np.testing.assert_allclose(exact.sum(axis=1), z.sum(axis=1), atol=1e-9)
