"""gsreg.analysis.arrangement: the smoothest placement of a layer's units on a graph."""

import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import quadratic_assignment

from gsreg import analysis, graphs
from gsreg.analysis._arrangement import _correlation, _swap_deltas, energy


def standardised(Z):
    S = Z - Z.mean(axis=0)
    sd = S.std(axis=0)
    return np.divide(S, sd, out=np.zeros_like(S), where=sd > 0)


def low_rank(n, seed, samples=200, constant=None):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(samples, 3)) @ rng.normal(size=(3, n))
    Z += rng.uniform(0.2, 2.0) * rng.normal(size=(samples, n))
    if constant is not None:
        Z[:, constant] = 1.5
    return Z


def brute_force_energies(Z, graph):
    L = graph.laplacian_matrix().tocoo()
    K = _correlation(Z, graph.n_nodes)
    perms = np.array(list(itertools.permutations(range(graph.n_nodes))))
    return (K[perms[:, L.row], perms[:, L.col]] * L.data).sum(axis=1)


@pytest.mark.parametrize("spec", ["grid:2x4", "path:8", "ring:8", "lines:2x4", "tree:7+path:1"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_arranged_energy_is_within_5_percent_of_the_brute_force_optimum_on_8_units(spec, seed):
    graph = graphs.parse(spec)
    Z = low_rank(8, seed, constant=2 if seed == 0 else None)
    best = brute_force_energies(Z, graph).min()
    _, scores = analysis.arrangement(Z, graph, return_energy=True)
    assert scores["arranged"] <= 1.05 * best + 1e-9


def test_energy_is_the_dirichlet_energy_of_the_standardised_activations_in_node_order():
    graph = graphs.from_edges(
        6, [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5)], weights=[1.0, 2.0, 0.5, 1.0, 3.0]
    )
    Z = low_rank(6, 4, constant=3)
    perm = np.random.default_rng(0).permutation(6)
    dense = analysis.dirichlet_energy(standardised(Z)[:, perm], graph, normalize=False)
    assert energy(graph.laplacian_matrix(), _correlation(Z, 6), perm) == pytest.approx(dense)


def test_swap_deltas_equal_the_energy_change_of_each_swap_recomputed():
    graph = graphs.from_edges(
        7,
        [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (0, 6), (2, 6)],
        weights=[1.0, 2.0, 0.5, 1.0, 3.0, 1.5, 0.7],
    )
    Z = low_rank(7, 5, constant=[1, 4])
    K, L = _correlation(Z, 7), graph.laplacian_matrix()
    perm = np.random.default_rng(1).permutation(7)
    W = graph.adjacency().tocsr()
    i = np.concatenate([graph.edges[:, 0], graph.edges[:, 1]])
    j = np.concatenate([graph.edges[:, 1], graph.edges[:, 0]])
    w = np.concatenate([graph.weights, graph.weights])
    delta = _swap_deltas(W, graph.degrees(), K[np.ix_(perm, perm)], i, j, w)
    base = energy(L, K, perm)
    for a, b in itertools.combinations(range(7), 2):
        swapped = perm.copy()
        swapped[[a, b]] = swapped[[b, a]]
        assert delta[a, b] == pytest.approx(energy(L, K, swapped) - base, abs=1e-9)
        assert delta[b, a] == pytest.approx(delta[a, b], abs=1e-9)


def test_scipy_faq_minimises_the_same_energy_as_the_arrangement():
    graph = graphs.grid(3, 3)
    Z = low_rank(9, 6)
    K, L = _correlation(Z, 9), graph.laplacian_matrix()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        result = quadratic_assignment(
            L.toarray(), K, method="faq", options={"rng": np.random.default_rng(0)}
        )
    assert energy(L, K, result.col_ind) == pytest.approx(result.fun)


def test_a_shuffled_smooth_layer_is_put_back_nearly_as_smooth_as_it_was_planted():
    rng = np.random.default_rng(0)
    graph = graphs.grid(8, 8)
    centres = rng.uniform([0, -8], [8, 0], size=(12, 2))
    bumps = np.exp(-((graph.coords[:, None] - centres[None]) ** 2).sum(-1) / 4.0)
    Z = rng.normal(size=(1000, 12)) @ bumps.T + 0.3 * rng.normal(size=(1000, 64))
    shuffle = rng.permutation(64)
    perm, scores = analysis.arrangement(Z[:, shuffle], graph, return_energy=True)
    planted = energy(graph.laplacian_matrix(), _correlation(Z, 64), np.arange(64))
    # a heuristic for an NP-hard problem: close to the planted placement, far from chance
    assert scores["arranged"] <= planted * 1.10
    assert scores["identity"] > 2.5 * planted


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    spec=st.sampled_from(["grid:3x4", "ring:10", "path:9", "star:6", "lines:3x3", "torus:3x4"]),
)
def test_the_arrangement_is_a_permutation_never_rougher_than_the_units_own_order(seed, spec):
    graph = graphs.parse(spec)
    n = graph.n_nodes
    Z = low_rank(n, seed, samples=30, constant=seed % n if seed % 2 else None)
    perm, scores = analysis.arrangement(Z, graph, random_state=seed, return_energy=True)
    assert perm.dtype == np.int64 and sorted(perm.tolist()) == list(range(n))
    assert scores["arranged"] <= scores["identity"] + 1e-9


def test_the_same_random_state_gives_the_same_arrangement():
    Z = low_rank(400, 7, samples=300)
    graph = graphs.grid(20, 20)
    first = analysis.arrangement(Z, graph, random_state=3)
    assert np.array_equal(first, analysis.arrangement(Z, graph, random_state=3))


@pytest.mark.parametrize(
    "Z, graph, message",
    [
        (np.ones((10, 5)), graphs.grid(2, 3), "5 units but the graph has 6 nodes"),
        (np.ones((1, 6)), graphs.grid(2, 3), "at least 2 samples"),
        (np.full((4, 6), np.nan), graphs.grid(2, 3), "24 NaN or Inf"),
        (np.ones((4, 3)), graphs.from_edges(3, np.zeros((0, 2), dtype=int)), "no edges"),
    ],
)
def test_bad_input_is_refused_with_the_sizes(Z, graph, message):
    with pytest.raises(ValueError, match=message):
        analysis.arrangement(Z, graph)
