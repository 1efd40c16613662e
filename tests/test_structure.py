"""Structure scores, permutation nulls and post-hoc module controls (analysis._structure)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score

from gsreg import analysis, graphs

GRID = graphs.grid(6, 6)


def _halves(h: int = 6, w: int = 6) -> np.ndarray:
    """Labels of a grid split into a left (0) and a right (1) half."""
    return np.tile(np.arange(w) >= w // 2, h).astype(np.int64)


def _checkerboard(h: int = 6, w: int = 6) -> np.ndarray:
    rows, cols = np.divmod(np.arange(h * w), w)
    return (rows + cols) % 2


def _ramp(h: int = 6, w: int = 6) -> np.ndarray:
    """A smooth map on the grid: the column index of each node."""
    return np.tile(np.arange(w, dtype=float), h)


def _planted_neurons(n_modules=4, per_module=25, n_samples=2000, seed=0):
    """Activations (N, n) whose neurons form correlated blocks; each sample raises one block."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_modules, n_samples)
    modules = np.repeat(np.arange(n_modules), per_module)
    factor = rng.normal(size=(n_samples, n_modules))[:, modules]
    Z = factor + 0.5 * rng.normal(size=factor.shape) + 3.0 * (modules == truth[:, None])
    return Z, modules, truth


# --------------------------------------------------------------------------- participation ratio


def test_participation_ratio_equals_the_ratio_of_the_gram_eigenvalues():
    maps = np.random.default_rng(0).normal(size=(5, 36))
    eig = np.linalg.eigvalsh(maps @ maps.T)
    assert analysis.participation_ratio(maps) == pytest.approx(eig.sum() ** 2 / np.sum(eig**2))


def test_one_pattern_only_scaled_has_participation_ratio_one():
    maps = np.outer([1.0, -2.0, 0.5, 3.0], _ramp())
    assert analysis.participation_ratio(maps) == pytest.approx(1.0)


def test_two_orthogonal_patterns_of_equal_norm_have_participation_ratio_two():
    a, b = _halves().astype(float), 1.0 - _halves()
    maps = np.stack([a, 2 * a, b, -2 * b])
    assert analysis.participation_ratio(maps) == pytest.approx(2.0)


def test_participation_ratio_of_zeros_is_nan():
    assert np.isnan(analysis.participation_ratio(np.zeros((3, 36))))


# --------------------------------------------------------------------------- contiguity


def _loop_contiguity(labels, graph):
    same = total = 0.0
    for (i, j), w in zip(graph.edges, graph.weights, strict=True):
        total += w
        same += w if labels[i] == labels[j] else 0.0
    return same / total


def test_contiguity_equals_a_loop_over_weighted_edges():
    rng = np.random.default_rng(1)
    W = np.triu(rng.random((20, 20)) * (rng.random((20, 20)) < 0.3), 1)
    graph = graphs.from_adjacency(W + W.T)
    labels = rng.integers(0, 3, 20)
    assert analysis.segmentation_contiguity(labels, graph) == pytest.approx(
        _loop_contiguity(labels, graph)
    )


def test_halves_are_almost_contiguous_and_a_checkerboard_not_at_all():
    # 6 rows each cut once between columns 2 and 3: 6 of 60 edges cross
    assert analysis.segmentation_contiguity(_halves(), GRID) == pytest.approx(54 / 60)
    assert analysis.segmentation_contiguity(_checkerboard(), GRID) == 0.0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=36, max_size=36), st.permutations(range(5)))
def test_contiguity_lies_in_the_unit_interval_and_ignores_label_names(labels, renaming):
    labels = np.asarray(labels)
    value = analysis.segmentation_contiguity(labels, GRID)
    assert 0.0 <= value <= 1.0
    renamed = np.asarray(renaming)[labels]
    assert analysis.segmentation_contiguity(renamed, GRID) == value
    assert value == pytest.approx(_loop_contiguity(labels, GRID))


def test_contiguity_rejects_labels_of_the_wrong_length():
    with pytest.raises(ValueError, match=r"\(36,\)"):
        analysis.segmentation_contiguity(np.zeros(35), GRID)


# --------------------------------------------------------------------------- territories


def test_two_halves_own_two_territories():
    assert analysis.territories(_halves(), GRID) == 2


def test_a_checkerboard_owns_no_territory():
    assert analysis.territories(_checkerboard(), GRID) == 0


def test_a_class_scattered_over_single_nodes_owns_no_territory():
    labels = _halves()
    labels[[0, 14, 28]] = 2  # three isolated nodes in the left half
    assert analysis.territories(labels, GRID) == 2
    assert analysis.territories(labels, GRID, min_size=1) == 3


def test_the_default_territory_size_is_half_a_fair_share_of_the_nodes():
    # four 3x3 quadrants of 9 nodes on a 6x6 grid
    rows, cols = np.divmod(np.arange(36), 6)
    labels = 2 * (rows >= 3) + (cols >= 3)
    assert analysis.territories(labels, GRID) == 4  # 4 classes: min_size = round(36 / 8)
    assert analysis.territories(labels, GRID, n_classes=2) == 4  # min_size = 9
    assert analysis.territories(labels, GRID, n_classes=1) == 0  # min_size = 18
    assert analysis.territories(labels, GRID, min_size=10) == 0


# --------------------------------------------------------------------------- Moran's I null


def _cliff_ord_moments(x: np.ndarray, graph) -> tuple[float, float]:
    """Mean and variance of Moran's I under randomisation (Cliff & Ord 1981)."""
    n = graph.n_nodes
    W = graph.adjacency().toarray()
    s0 = W.sum()
    s1 = 0.5 * np.sum((W + W.T) ** 2)
    s2 = np.sum((W.sum(axis=0) + W.sum(axis=1)) ** 2)
    z = x - x.mean()
    b2 = n * np.sum(z**4) / np.sum(z**2) ** 2
    mean = -1.0 / (n - 1)
    second = (
        n * ((n * n - 3 * n + 3) * s1 - n * s2 + 3 * s0**2)
        - b2 * ((n * n - n) * s1 - 2 * n * s2 + 6 * s0**2)
    ) / ((n - 1) * (n - 2) * (n - 3) * s0**2)
    return mean, second - mean**2


def test_morans_i_null_matches_the_moments_under_randomisation():
    x = np.random.default_rng(2).exponential(size=36)  # skewed: the kurtosis term matters
    result = analysis.morans_i_null(x, GRID, n_permutations=20000, seed=0)
    mean, variance = _cliff_ord_moments(x, GRID)
    se = np.sqrt(variance / 20000)
    assert result["null_mean"] == pytest.approx(mean, abs=4 * se)
    assert result["null_std"] ** 2 == pytest.approx(variance, rel=0.05)


def test_the_observed_value_is_the_mean_morans_i_of_the_maps():
    maps = np.random.default_rng(3).normal(size=(4, 36))
    maps[2] = 1.0  # constant: NaN Moran's I, skipped
    result = analysis.morans_i_null(maps, GRID, n_permutations=9)
    assert result["observed"] == pytest.approx(np.nanmean(analysis.morans_i(maps, GRID)))


def test_a_null_sample_shuffles_the_columns_of_all_maps_together():
    maps = np.random.default_rng(4).normal(size=(3, 36))
    result = analysis.morans_i_null(maps, GRID, n_permutations=5, seed=7)
    # the same draws as the function: one generator, one batch of five permutations
    perms = np.random.default_rng(7).permuted(np.tile(np.arange(36), (5, 1)), axis=1)
    null = [np.mean(analysis.morans_i(maps[:, p], GRID)) for p in perms]
    assert result["null_mean"] == pytest.approx(np.mean(null))
    assert result["null_std"] == pytest.approx(np.std(null))


def test_a_smooth_map_has_a_small_p_value_and_random_maps_do_not():
    smooth = np.stack([_ramp(), _ramp()[::-1] ** 2])
    assert analysis.morans_i_null(smooth, GRID, n_permutations=199)["p_value"] == 0.005
    p_values = [
        analysis.morans_i_null(np.random.default_rng(s).normal(size=(3, 36)), GRID, 199)["p_value"]
        for s in range(20)
    ]
    assert np.median(p_values) > 0.2


def test_morans_i_null_is_deterministic_with_the_seed():
    maps = np.random.default_rng(5).normal(size=(3, 36))
    first = analysis.morans_i_null(maps, GRID, n_permutations=99, seed=3)
    assert analysis.morans_i_null(maps, GRID, n_permutations=99, seed=3) == first
    assert analysis.morans_i_null(maps, GRID, n_permutations=99, seed=4) != first


def test_constant_maps_give_a_nan_null():
    result = analysis.morans_i_null(np.ones((2, 36)), GRID, n_permutations=9)
    assert all(np.isnan(value) for value in result.values())


# --------------------------------------------------------------------------- contiguity null


def test_contiguity_null_shuffles_labels_with_their_counts_kept():
    labels = _halves()
    result = analysis.contiguity_null(labels, GRID, n_permutations=2000, seed=0)
    # two labels of 18 nodes each: an edge's ends agree with probability 2 * (18*17)/(36*35)
    assert result["null_mean"] == pytest.approx(2 * 18 * 17 / (36 * 35), abs=0.01)
    assert result["observed"] == pytest.approx(54 / 60)
    assert result["p_value"] == pytest.approx(1 / 2001)


def test_contiguity_null_is_deterministic_with_the_seed():
    labels = np.random.default_rng(6).integers(0, 3, 36)
    assert analysis.contiguity_null(labels, GRID, 50, seed=1) == analysis.contiguity_null(
        labels, GRID, 50, seed=1
    )


# --------------------------------------------------------------------------- decodability


def test_perfectly_separable_classes_decode_perfectly():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    Z = 0.1 * rng.normal(size=(600, 8)) + 5.0 * np.eye(8)[y]
    assert analysis.decodability(Z[:400], y[:400], Z[400:], y[400:]) == 1.0


def test_noise_decodes_near_chance():
    rng = np.random.default_rng(1)
    Z, y = rng.normal(size=(2000, 16)), rng.integers(0, 4, 2000)
    assert analysis.decodability(Z[:1500], y[:1500], Z[1500:], y[1500:]) == pytest.approx(
        0.25, abs=0.07
    )


def test_decodability_caps_and_seeds_the_training_rows(monkeypatch):
    from gsreg.analysis import _structure

    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 400)
    Z = rng.normal(size=(400, 4)) + y[:, None]
    monkeypatch.setattr(_structure, "DECODE_MAX_TRAIN", 50)
    scores = {analysis.decodability(Z[:300], y[:300], Z[300:], y[300:], seed=s) for s in range(5)}
    assert len(scores) > 1  # different draws of 50 rows
    again = analysis.decodability(Z[:300], y[:300], Z[300:], y[300:], seed=0)
    assert again == analysis.decodability(Z[:300], y[:300], Z[300:], y[300:], seed=0)


def test_decodability_rejects_layers_of_different_widths():
    with pytest.raises(ValueError, match="columns"):
        analysis.decodability(np.zeros((4, 3)), np.arange(4) % 2, np.zeros((2, 5)), np.arange(2))


# --------------------------------------------------------------------------- map_structure


def _localised_layer(n_samples=600, seed=0):
    """Activations on GRID: class 0 lights the left half, class 1 the right half."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n_samples)
    patterns = np.stack([1.0 - _halves(), _halves()]).astype(float)
    return patterns[y] + 0.3 * rng.normal(size=(n_samples, 36)), y


def test_map_structure_reports_localised_class_maps_beside_their_controls():
    Z, y = _localised_layer()
    result = analysis.map_structure(
        Z[300:],
        y[300:],
        GRID,
        Z_train=Z[:300],
        y_train=y[:300],
        reference_norm=2.0,
        n_permutations=99,
    )
    assert json.loads(json.dumps(result)) == result
    assert result["morans_i"] == pytest.approx(
        analysis.localization(Z[300:], y[300:], GRID)["morans_i"]
    )
    assert result["morans_i"] > 0.5 > result["morans_i_null_mean"]
    assert result["morans_i_p"] == 0.01
    assert result["contiguity"] == pytest.approx(54 / 60)
    assert result["contiguity_p"] == 0.01
    assert result["territories"] == 2 == result["n_classes"]
    assert result["decodability"] == 1.0
    norm = np.linalg.norm(Z[300:], axis=1).mean()
    assert result["activation_norm"] == pytest.approx(norm)
    assert result["scale_vs_reference"] == pytest.approx(norm / 2.0)


def test_a_shared_ramp_scores_high_morans_i_but_participation_ratio_one():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    Z = np.outer(y + 1.0, _ramp()) + 0.01 * rng.normal(size=(400, 36))
    result = analysis.map_structure(Z, y, GRID, n_permutations=49)
    assert result["morans_i"] > 0.8
    assert result["participation_ratio"] == pytest.approx(1.0, abs=0.01)
    assert np.isnan(result["decodability"]) and np.isnan(result["scale_vs_reference"])


def test_map_structure_wants_train_activations_with_their_labels():
    Z, y = _localised_layer(100)
    with pytest.raises(ValueError, match="together"):
        analysis.map_structure(Z, y, GRID, Z_train=Z)


# --------------------------------------------------------------------------- post-hoc modules


@pytest.mark.parametrize("method", ["kmeans", "leiden"])
def test_posthoc_modules_recover_planted_neuron_modules(method):
    if method == "leiden":
        pytest.importorskip("igraph")
    Z, modules, _ = _planted_neurons()
    labels = analysis.posthoc_modules(Z, 4, method=method, seed=0)
    assert labels.dtype == np.int64 and labels.shape == (100,)
    assert adjusted_rand_score(modules, labels) == 1.0
    assert np.array_equal(labels, analysis.posthoc_modules(Z, 4, method=method, seed=0))


@pytest.mark.parametrize("method", ["kmeans", "leiden"])
def test_cluster_samples_recovers_separated_blobs_numbered_by_size(method):
    if method == "leiden":
        pytest.importorskip("igraph")
    rng = np.random.default_rng(0)
    truth = np.repeat([0, 1, 2], [300, 200, 100])
    centres = 10.0 * rng.normal(size=(3, 5))
    X = centres[truth] + rng.normal(size=(600, 5))
    labels = analysis.cluster_samples(X, 3, method=method, seed=0)
    assert np.array_equal(labels, truth)  # largest cluster is 0


def test_leiden_reports_the_closest_count_when_the_graph_forbids_the_asked_one():
    pytest.importorskip("igraph")
    rng = np.random.default_rng(0)
    X = np.repeat(10.0 * rng.normal(size=(2, 3)), 40, axis=0) + 0.01 * rng.normal(size=(80, 3))
    # two blobs of 40 with k = 15 neighbours: two disconnected kNN components, never one
    labels = analysis.cluster_samples(X, 1, method="leiden")
    assert len(np.unique(labels)) == 2


def test_cluster_methods_are_validated():
    with pytest.raises(ValueError, match="method"):
        analysis.cluster_samples(np.zeros((5, 2)), 2, method="dbscan")
    with pytest.raises(ValueError, match=r"n_modules must lie in \[1, 3\]"):
        analysis.posthoc_modules(np.zeros((5, 3)), 4)


def test_leiden_without_igraph_asks_to_install_it(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_igraph(name, *args, **kwargs):
        if name == "igraph":
            raise ImportError("no igraph")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_igraph)
    with pytest.raises(ImportError, match="pip install igraph"):
        analysis.cluster_samples(np.random.default_rng(0).normal(size=(20, 2)), 2, "leiden")


def test_planted_modules_indicate_clusters_far_above_the_null():
    Z, modules, truth = _planted_neurons()
    result = analysis.module_ari_null(Z, modules, truth, n_permutations=99, seed=0)
    assert result["observed"] > 0.9
    assert result["observed"] > result["null_mean"] + 5 * result["null_std"]
    assert result["p_value"] == 0.01
    shuffled = np.random.default_rng(1).permutation(modules)
    assert analysis.module_ari_null(Z, shuffled, truth, n_permutations=99)["p_value"] > 0.05
