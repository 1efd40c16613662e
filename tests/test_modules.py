import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score  # noqa: E402

from gsreg import analysis, graphs, plotting  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def clique(n: int) -> graphs.Graph:
    return graphs.from_edges(n, list(itertools.combinations(range(n), 2)))


def two_cliques(a: int = 5, b: int = 4, bridge: float = 0.01) -> graphs.Graph:
    """Cliques on nodes 0..a-1 and a..a+b-1 joined by one edge (a-1, a) of weight bridge."""
    edges = [*itertools.combinations(range(a), 2)]
    edges += [(i + a, j + a) for i, j in itertools.combinations(range(b), 2)]
    weights = np.ones(len(edges) + 1)
    weights[-1] = bridge
    return graphs.from_edges(a + b, [*edges, (a - 1, a)], weights)


def planted_activations(seed: int = 0, n_per_module: int = 4, n_samples: int = 300):
    """(N, 12) activations of 3 modules of 4 neurons; sample i drives module truth[i] by +1.

    Module 0 is busy for every sample (baseline 5); the others idle at 0."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, size=n_samples)
    neuron_module = np.repeat(np.arange(3), n_per_module)
    base = np.array([5.0, 0.0, 0.0])[neuron_module]
    Z = base + 0.1 * rng.normal(size=(n_samples, neuron_module.size))
    Z += neuron_module == truth[:, None]
    return Z, neuron_module, truth


# --------------------------------------------------------------------------- modules()


def test_modules_of_disjoint_cliques_are_ordered_by_size():
    g = graphs.disjoint(clique(3), clique(5), clique(4), clique(4))
    labels = analysis.modules(g)
    expected = np.repeat([3, 0, 1, 2], [3, 5, 4, 4])  # equal sizes: smaller first node first
    np.testing.assert_array_equal(labels, expected)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(analysis.modules(g, n_modules=4), expected)


def test_isolated_nodes_are_their_own_modules():
    g = graphs.from_edges(5, [(1, 2), (2, 3)])
    np.testing.assert_array_equal(analysis.modules(g), [1, 0, 0, 0, 2])


def test_modules_splits_weakly_joined_cliques_when_asked():
    g = two_cliques()
    np.testing.assert_array_equal(analysis.modules(g), np.zeros(9))
    np.testing.assert_array_equal(analysis.modules(g, n_modules=2), np.repeat([0, 1], [5, 4]))


def test_modules_cuts_the_weakest_component_and_never_spans_components():
    # a lone 6-clique and a pair of weakly joined cliques: the third module comes from the pair
    g = graphs.disjoint(clique(6), two_cliques(5, 4))
    labels = analysis.modules(g, n_modules=3, seed=1)
    np.testing.assert_array_equal(labels, np.repeat([0, 1, 2], [6, 5, 4]))
    labels = analysis.modules(g, n_modules=5)
    _, components = g.components()
    for m in np.unique(labels):
        assert len(np.unique(components[labels == m])) == 1
    assert len(np.unique(labels)) == 5


def test_modules_with_more_components_than_asked_warns_and_keeps_them():
    g = graphs.disjoint(clique(4), clique(3), graphs.from_edges(2, []))
    with pytest.warns(UserWarning, match="4 connected components, more than n_modules=2"):
        labels = analysis.modules(g, n_modules=2)
    np.testing.assert_array_equal(labels, [0] * 4 + [1] * 3 + [2, 3])


def test_modules_rejects_bad_n_modules():
    for bad in (0, 10, 2.0):
        with pytest.raises(ValueError, match="n_modules"):
            analysis.modules(two_cliques(), n_modules=bad)


# --------------------------------------------------------------------------- read-outs


def test_module_activity_is_the_mean_over_each_modules_neurons():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(7, 6))
    labels = np.array([2, 0, 2, 5, 0, 2])
    activity = analysis.module_activity(Z, labels)
    manual = np.stack([Z[:, [1, 4]].mean(1), Z[:, [0, 2, 5]].mean(1), Z[:, 3]], axis=1)
    np.testing.assert_allclose(activity, manual)
    with pytest.raises(ValueError, match="module of each of the 6 neurons"):
        analysis.module_activity(Z, labels[:5])


def test_module_class_table_matches_manual_means():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(40, 5))
    labels = np.array([1, 1, 0, 0, 0])
    classes = rng.choice(["b", "a", "c"], size=40)
    table, module_ids, class_ids = analysis.module_class_table(Z, labels, classes)
    assert table.shape == (2, 3)
    np.testing.assert_array_equal(module_ids, [0, 1])
    assert list(class_ids) == ["a", "b", "c"]
    for m, neurons in enumerate([[2, 3, 4], [0, 1]]):
        for c, name in enumerate(class_ids):
            expected = Z[classes == name][:, neurons].mean()
            assert table[m, c] == pytest.approx(expected)


def test_indicate_clusters_recovers_planted_assignments():
    Z, neuron_module, truth = planted_activations()
    pred = analysis.indicate_clusters(Z, neuron_module)
    assert pred.dtype == np.int64
    assert adjusted_rand_score(truth, pred) == 1.0
    np.testing.assert_array_equal(pred, truth)  # module ids come back, not column indices
    relabelled = analysis.indicate_clusters(Z, neuron_module * 10 + 7)
    np.testing.assert_array_equal(relabelled, truth * 10 + 7)


def test_indicate_clusters_baseline_matters():
    Z, neuron_module, truth = planted_activations()
    raw = analysis.indicate_clusters(Z, neuron_module, baseline=np.zeros(3), scale=False)
    assert np.all(raw == 0)  # the busy module 0 claims every sample without a baseline
    unscaled = analysis.indicate_clusters(Z, neuron_module, scale=False)
    np.testing.assert_array_equal(unscaled, truth)
    with pytest.raises(ValueError, match=r"baseline must have shape \(3,\)"):
        analysis.indicate_clusters(Z, neuron_module, baseline=np.zeros(2))


def test_indicate_clusters_scaling_makes_modules_comparable():
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 3, size=600)
    # module 1 is noisy and responds strongly; modules 0 and 2 are quiet and respond weakly
    noise, response = np.array([0.1, 3.0, 0.1]), np.array([1.0, 12.0, 1.0])
    Z = noise * rng.normal(size=(600, 3)) + response * (np.arange(3) == truth[:, None])
    labels = np.arange(3)
    scaled = analysis.indicate_clusters(Z, labels)
    assert adjusted_rand_score(truth, scaled) > 0.99
    unscaled = analysis.indicate_clusters(Z, labels, scale=False)
    assert adjusted_rand_score(truth, unscaled) < 0.8


def test_indicate_clusters_ignores_constant_modules():
    Z, neuron_module, truth = planted_activations()
    Z = np.concatenate([Z, np.full((len(Z), 2), 3.0)], axis=1)
    labels = np.concatenate([neuron_module, [9, 9]])
    np.testing.assert_array_equal(analysis.indicate_clusters(Z, labels), truth)
    with pytest.raises(ValueError, match="scale=False"):
        analysis.indicate_clusters(np.ones((5, 3)), np.arange(3))


def test_cluster_scores_match_sklearn_and_hand_purity():
    pred = np.array([0, 0, 0, 1, 1, 2])
    truth = np.array(["x", "x", "y", "y", "y", "y"])
    scores = analysis.cluster_scores(pred, truth)
    assert scores["ari"] == pytest.approx(adjusted_rand_score(truth, pred))
    assert scores["nmi"] == pytest.approx(normalized_mutual_info_score(truth, pred))
    assert scores["purity"] == pytest.approx(5 / 6)  # 2 + 2 + 1 of 6
    perfect = analysis.cluster_scores(np.array([5, 5, 1]), np.array([0, 0, 2]))
    assert perfect == {"ari": 1.0, "nmi": 1.0, "purity": 1.0}
    with pytest.raises(ValueError, match="pred and truth"):
        analysis.cluster_scores(pred, truth[:4])


# --------------------------------------------------------------------------- plots


def _node_offsets(ax) -> np.ndarray:
    return np.asarray(ax.collections[-1].get_offsets())


def _node_colors(ax) -> np.ndarray:
    return np.asarray(ax.collections[-1].get_facecolors())


def _history() -> list[tuple[int, graphs.Graph]]:
    """A graph falling apart: all 9 nodes linked, then ever fewer edges: a ring and a path."""
    final = graphs.disjoint(graphs.ring(5), graphs.path(4))
    dense = clique(9)
    half = graphs.from_edges(9, [*final.edges, (4, 5), (0, 8)])
    return [(0, dense), (100, half), (200, half), (300, final)]


def test_plot_graph_snapshots_shares_layout_and_colours():
    fig = plotting.plot_graph_snapshots(_history())
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    first, last = fig.axes[0], fig.axes[-1]
    assert len(first.collections[0].get_segments()) == 36  # edges of the dense snapshot
    assert len(last.collections[0].get_segments()) == 8
    np.testing.assert_array_equal(_node_offsets(first), _node_offsets(last))
    np.testing.assert_array_equal(_node_colors(first), _node_colors(last))
    colors = _node_colors(first)
    assert len({tuple(c) for c in colors[:5]}) == 1 and len({tuple(c) for c in colors[5:]}) == 1
    assert tuple(colors[0]) != tuple(colors[5])  # final modules coloured apart
    assert first.get_title().startswith("step 0") and "2 components" in last.get_title()


def test_plot_graph_snapshots_picks_evenly_and_accepts_labels_and_axes():
    history = [(10 * k, graphs.path(6)) for k in range(9)]
    fig = plotting.plot_graph_snapshots(history, max_snapshots=3)
    assert [ax.get_title().split("\n")[0] for ax in fig.axes] == ["step 0", "step 40", "step 80"]
    assert len(plotting.plot_graph_snapshots(history[:2], max_snapshots=6).axes) == 2
    fig, axes = plt.subplots(1, 2)
    labels = np.array([0, 0, 0, 1, 1, 1])
    out = plotting.plot_graph_snapshots(
        [graphs.path(6), graphs.path(6)], labels=labels, layout="coords", axes=axes
    )
    assert out is fig and axes[0].get_title().startswith("graph 0")
    np.testing.assert_array_equal(_node_offsets(axes[1]), graphs.path(6).coords)
    with pytest.raises(ValueError, match="same nodes"):
        plotting.plot_graph_snapshots([graphs.path(6), graphs.path(5)])


def test_plot_modules_colours_nodes_by_module():
    g = two_cliques()
    labels = analysis.modules(g, n_modules=2)
    fig = plotting.plot_modules(g, labels)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    colors = _node_colors(ax)
    assert len({tuple(c) for c in colors[:5]}) == 1 and tuple(colors[0]) != tuple(colors[5])
    xy = _node_offsets(ax)
    gap = np.linalg.norm(xy[:5].mean(0) - xy[5:].mean(0))
    spread = max(np.ptp(xy[:5], axis=0).max(), np.ptp(xy[5:], axis=0).max())
    assert gap > spread / 2  # modules are drawn apart
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["module 0", "module 1"]


def test_plot_modules_into_axes_and_bad_layout():
    fig, ax = plt.subplots()
    assert plotting.plot_modules(graphs.grid(2, 3), ax=ax, layout="coords") is fig
    with pytest.raises(ValueError, match="layout"):
        plotting.plot_modules(graphs.grid(2, 3), layout="spring")
    with pytest.raises(ValueError, match=r"\(6, 2\)"):
        plotting.plot_modules(graphs.grid(2, 3), layout=np.zeros((5, 2)))


def test_plot_module_class_heatmap_annotates_every_cell():
    table = np.array([[9.5, 0.1, 0.2], [0.0, 10.2, -0.3]])
    fig = plotting.plot_module_class_heatmap(table, [0, 1], ["a", "b", "c"])
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # heatmap and colorbar
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), table)
    assert [t.get_text() for t in ax.texts] == ["9.50", "0.10", "0.20", "0.00", "10.20", "-0.30"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["module 0", "module 1"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        plotting.plot_module_class_heatmap(table, [0, 1], ["a", "b"])
