"""Structure scores that shrinking or a shared ramp cannot inflate, their permutation nulls,
and post-hoc module controls.

A high Moran's I alone can be gamed: activations shrunk towards zero, or one smooth ramp
that every class only scales, score high without being maps anyone learns from. The scores
here stand beside it: the effective rank of the class-deviation maps
(:func:`participation_ratio`), how contiguous and how many the class territories are
(:func:`segmentation_contiguity`, :func:`territories`), whether the class can still be read
out linearly (:func:`decodability`), and permutation nulls that place each number against
"the same values on randomly ordered nodes". :func:`map_structure` returns them in one call.

The post-hoc controls cluster neurons (:func:`posthoc_modules`) or samples
(:func:`cluster_samples`) of a layer trained without the penalty, the baseline that learned
graph modules must beat. ``method="leiden"`` needs the optional ``igraph`` package.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from .. import analysis as base  # the package imports this module: names resolve at call time
from .._checks import check_int
from ..graphs import Graph, rank_by_size

__all__ = [
    "cluster_samples",
    "contiguity_null",
    "decodability",
    "map_structure",
    "module_ari_null",
    "morans_i_null",
    "participation_ratio",
    "posthoc_modules",
    "segmentation_contiguity",
    "territories",
]

#: training rows used by :func:`decodability` (drawn with the seed), which bounds its cost
DECODE_MAX_TRAIN = 5000
#: L-BFGS iterations of the logistic regression, a fixed budget: class-structured activations
#: (5,000 x 1,024, 10 classes) converge in about 10 (0.5 s); pure noise uses all 100 (4 s)
DECODE_MAX_ITER = 100
#: permutations evaluated together; fixed, so the random draws do not depend on the input size
PERMUTATION_BATCH = 64
#: neighbours per sample in the kNN graph that Leiden clusters samples on
SAMPLE_NEIGHBOURS = 15
#: neighbours per neuron in the kNN graph that Leiden clusters neurons on
NEURON_NEIGHBOURS = 10
#: bisection steps on the Leiden resolution that look for the asked number of communities
LEIDEN_BISECTION_STEPS = 30
#: largest resolution tried; modularity at 2^20 leaves every node alone on any real graph
LEIDEN_MAX_RESOLUTION = 2.0**20
CLUSTER_METHODS = ("kmeans", "leiden")


# --------------------------------------------------------------------------- scores


def participation_ratio(maps: np.ndarray) -> float:
    """Effective rank of maps (C, n): (sum_i s_i^2)^2 / sum_i s_i^4 over singular values s.

    1 when every row is a scaled copy of one pattern, up to min(C, n) for orthogonal rows of
    equal norm (C - 1 at most for class-deviation maps, whose rows weighted by class size sum
    to zero). NaN for an all-zero matrix.
    """
    s2 = np.linalg.svd(base._as_matrix(maps, name="maps"), compute_uv=False) ** 2
    total = s2.sum()
    return float(total**2 / np.sum(s2**2)) if total > 0 else float("nan")


def segmentation_contiguity(labels: np.ndarray, graph: Graph) -> float:
    """Share of the graph's edge weight whose two nodes carry the same label, in [0, 1].

    ``labels`` is (n,), e.g. from :func:`segmentation`; 1 when every edge stays inside one
    label's region.
    """
    labels = _check_node_labels(labels, graph)
    total = _total_weight(graph)
    same = labels[graph.edges[:, 0]] == labels[graph.edges[:, 1]]
    return float(graph.weights[same].sum() / total)


def territories(
    labels: np.ndarray,
    graph: Graph,
    min_size: int | None = None,
    n_classes: int | None = None,
) -> int:
    """How many labels own a territory: a connected patch of at least ``min_size`` nodes.

    A patch is a connected component of the subgraph induced by one label's nodes. The
    default ``min_size = max(2, round(n / (2 * n_classes)))`` is half of a class's fair
    share of the n nodes, so a class that holds half its share in one piece counts, and a
    scattered class (a checkerboard: every patch is one node) does not. ``n_classes``
    defaults to the number of distinct labels; pass it when some class may claim no node
    (as :func:`map_structure` does), which keeps the threshold the same for every layer.
    An explicit ``min_size`` overrides the default and ``n_classes``.
    """
    labels = _check_node_labels(labels, graph)
    if min_size is None:
        count = len(np.unique(labels)) if n_classes is None else n_classes
        check_int(count, "n_classes")
        min_size = max(2, round(graph.n_nodes / (2 * count)))
    check_int(min_size, "min_size")
    same = labels[graph.edges[:, 0]] == labels[graph.edges[:, 1]]
    i, j = graph.edges[same].T
    inside = sp.coo_matrix((np.ones(len(i)), (i, j)), shape=(graph.n_nodes,) * 2)
    _, patch = connected_components(inside, directed=False)
    patch_size = np.bincount(patch)
    patch_label = np.empty(len(patch_size), dtype=labels.dtype)
    patch_label[patch] = labels
    return int(len(np.unique(patch_label[patch_size >= min_size])))


def decodability(
    Z_train: np.ndarray,
    y_train: np.ndarray,
    Z_test: np.ndarray,
    y_test: np.ndarray,
    seed: int = 0,
) -> float:
    """Test accuracy of a linear read-out of the class from activations (N, n).

    A multinomial logistic regression (L-BFGS, :data:`DECODE_MAX_ITER` iterations, default
    L2 penalty) on activations standardised with the training statistics. At most
    :data:`DECODE_MAX_TRAIN` training rows are used, drawn without replacement with
    ``seed``. Activations shrunk towards zero but still separable decode as well as before;
    maps that lost the class do not.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    Z_train, y_train = base._check_samples(Z_train, y_train)
    Z_test, y_test = base._check_samples(Z_test, y_test)
    if Z_test.shape[1] != Z_train.shape[1]:
        raise ValueError(
            f"Z_test has {Z_test.shape[1]} columns, Z_train has {Z_train.shape[1]}; "
            "they must be the same layer"
        )
    if len(np.unique(y_train)) < 2:
        raise ValueError("y_train holds a single class; decoding needs at least two")
    if len(Z_train) > DECODE_MAX_TRAIN:
        rows = np.random.default_rng(seed).choice(len(Z_train), DECODE_MAX_TRAIN, replace=False)
        Z_train, y_train = Z_train[rows], y_train[rows]
    scaler = StandardScaler().fit(Z_train)
    model = LogisticRegression(max_iter=DECODE_MAX_ITER)
    with warnings.catch_warnings():
        # the iteration budget is fixed on purpose; the score is the accuracy at that budget
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(scaler.transform(Z_train), y_train)
    return float(np.mean(model.predict(scaler.transform(Z_test)) == y_test))


# --------------------------------------------------------------------------- nulls


def morans_i_null(
    maps: np.ndarray, graph: Graph, n_permutations: int = 999, seed: int = 0
) -> dict[str, float]:
    """Permutation null of the mean Moran's I of maps (C, n).

    ``observed`` is the mean of :func:`morans_i` over the rows (NaN rows, i.e. constant
    maps, skipped). A null sample applies one random permutation of the nodes to every
    row (columns shuffled together) and recomputes that mean. Returns ``observed``,
    ``null_mean``, ``null_std`` and ``p_value = (1 + #{null >= observed}) /
    (1 + n_permutations)``; all NaN when every map is constant.
    """
    X = base._as_matrix(maps, name="maps", n_nodes=graph.n_nodes)
    _check_permutations(n_permutations)
    values = np.atleast_1d(base.morans_i(X, graph))
    X = X[~np.isnan(values)]
    if len(X) == 0:
        return _null_summary(float("nan"), np.full(n_permutations, np.nan))
    centred = X - X.mean(axis=1, keepdims=True)
    scale = graph.n_nodes / (2.0 * graph.weights.sum()) / np.sum(centred**2, axis=1)
    W = graph.adjacency()
    null = []
    for perms in _permutation_batches(seed, graph.n_nodes, n_permutations):
        shuffled = centred[:, perms].reshape(-1, graph.n_nodes)  # (C * b, n)
        cross = np.einsum("ri,ir->r", shuffled, W @ shuffled.T).reshape(len(X), len(perms))
        null.append((scale[:, None] * cross).mean(axis=0))
    return _null_summary(base._nanmean(values), np.concatenate(null))


def contiguity_null(
    labels: np.ndarray, graph: Graph, n_permutations: int = 999, seed: int = 0
) -> dict[str, float]:
    """Permutation null of :func:`segmentation_contiguity` under shuffled node labels.

    Keys as in :func:`morans_i_null`; the label counts are kept.
    """
    labels = _check_node_labels(labels, graph)
    _check_permutations(n_permutations)
    total = _total_weight(graph)
    i, j = graph.edges.T
    null = []
    for perms in _permutation_batches(seed, graph.n_nodes, n_permutations):
        shuffled = labels[perms]  # (b, n)
        null.append((shuffled[:, i] == shuffled[:, j]) @ graph.weights / total)
    return _null_summary(segmentation_contiguity(labels, graph), np.concatenate(null))


def module_ari_null(
    activations: np.ndarray,
    module_labels: np.ndarray,
    truth: np.ndarray,
    n_permutations: int = 199,
    seed: int = 0,
) -> dict[str, float]:
    """Permutation null of the ARI of module cluster indication against ``truth`` (N,).

    ``observed`` is the adjusted Rand index of ``indicate_clusters(activations,
    module_labels)`` against ``truth``. A null sample shuffles which neurons form which
    module (module sizes kept): "any grouping of neurons of these sizes would indicate the
    clusters as well". Keys as in :func:`morans_i_null`.
    """
    from sklearn.metrics import adjusted_rand_score

    Z, module_labels = base._check_modules(activations, module_labels)
    truth = np.asarray(truth)
    if truth.shape != (len(Z),):
        raise ValueError(f"truth must have shape ({len(Z)},), got {truth.shape}")
    _check_permutations(n_permutations)
    observed = adjusted_rand_score(truth, base.indicate_clusters(Z, module_labels))
    null = [
        adjusted_rand_score(truth, base.indicate_clusters(Z, module_labels[perm]))
        for perms in _permutation_batches(seed, len(module_labels), n_permutations)
        for perm in perms
    ]
    return _null_summary(float(observed), np.asarray(null))


def _permutation_batches(seed: int, n: int, n_permutations: int) -> Iterator[np.ndarray]:
    """Random permutations of ``range(n)`` as (b, n) int arrays, b <= PERMUTATION_BATCH."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_permutations, PERMUTATION_BATCH):
        size = min(PERMUTATION_BATCH, n_permutations - start)
        yield rng.permuted(np.tile(np.arange(n), (size, 1)), axis=1)


def _null_summary(observed: float, null: np.ndarray) -> dict[str, float]:
    if np.isnan(observed):
        p_value = float("nan")
    else:
        p_value = float((1 + np.sum(null >= observed)) / (1 + len(null)))
    return {
        "observed": float(observed),
        "null_mean": float(np.mean(null)),
        "null_std": float(np.std(null)),
        "p_value": p_value,
    }


def _check_permutations(n_permutations: int) -> None:
    check_int(n_permutations, "n_permutations")


def _check_node_labels(labels: np.ndarray, graph: Graph) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (graph.n_nodes,):
        raise ValueError(
            f"labels must have shape ({graph.n_nodes},), one per node of {graph!r}, "
            f"got {labels.shape}"
        )
    return labels


def _total_weight(graph: Graph) -> float:
    total = float(graph.weights.sum())
    if total <= 0:
        raise ValueError(f"contiguity needs at least one edge of positive weight; {graph!r}")
    return total


# --------------------------------------------------------------------------- one call


def map_structure(
    Z_test: np.ndarray,
    y_test: np.ndarray,
    graph: Graph,
    *,
    Z_train: np.ndarray | None = None,
    y_train: np.ndarray | None = None,
    reference_norm: float | None = None,
    n_permutations: int = 999,
    seed: int = 0,
) -> dict[str, float | int]:
    """The structure of a layer's class maps on ``graph``, each score beside its control.

    ``Z_test`` (N, n) holds activations in the node order of ``graph``, ``y_test`` (N,) the
    classes. Returns JSON-friendly numbers:

    - ``morans_i``: mean Moran's I of the class-deviation maps (as :func:`localization`),
      with ``morans_i_null_mean`` and ``morans_i_p`` from :func:`morans_i_null`;
    - ``participation_ratio`` of the deviation maps (1: one shared pattern only scaled);
    - ``contiguity``, ``contiguity_null_mean``, ``contiguity_p`` and ``territories`` of
      ``segmentation(class_maps)``; ``n_classes``;
    - ``decodability``: :func:`decodability` trained on ``Z_train``, ``y_train`` (NaN
      when they are not given);
    - ``activation_norm``: mean ||z||_2 over the test samples; ``scale_vs_reference``: it
      divided by ``reference_norm`` (e.g. the norm of the λ = 0 layer) when given, else NaN.
    """
    Z_test, y_test = base._check_samples(Z_test, y_test)
    base._as_matrix(Z_test, name="Z_test", n_nodes=graph.n_nodes)
    if (Z_train is None) != (y_train is None):
        raise ValueError("give Z_train and y_train together, or neither")
    maps = base.class_maps(Z_test, y_test)
    deviation = maps - base.global_mean(Z_test)
    smooth = morans_i_null(deviation, graph, n_permutations, seed)
    regions = base.segmentation(maps)
    contiguous = contiguity_null(regions, graph, n_permutations, seed)
    norm = float(np.linalg.norm(Z_test, axis=1).mean())
    decode = float("nan")
    if Z_train is not None:
        decode = decodability(Z_train, y_train, Z_test, y_test, seed=seed)
    return {
        "morans_i": smooth["observed"],
        "morans_i_null_mean": smooth["null_mean"],
        "morans_i_p": smooth["p_value"],
        "participation_ratio": participation_ratio(deviation),
        "contiguity": contiguous["observed"],
        "contiguity_null_mean": contiguous["null_mean"],
        "contiguity_p": contiguous["p_value"],
        "territories": territories(regions, graph, n_classes=len(maps)),
        "n_classes": len(maps),
        "decodability": decode,
        "activation_norm": norm,
        "scale_vs_reference": norm / reference_norm if reference_norm else float("nan"),
    }


# --------------------------------------------------------------------------- post-hoc modules


def posthoc_modules(
    Z: np.ndarray, n_modules: int, method: str = "kmeans", seed: int = 0
) -> np.ndarray:
    """(n,) int64 modules of the n neurons of activations Z (N, n), clustered after training.

    Each neuron is described by its standardised activation profile over the N samples
    (a constant neuron by zeros). ``method="kmeans"``: k-means on those profiles.
    ``method="leiden"``: Leiden modularity communities of the neurons' kNN graph (k =
    min(:data:`NEURON_NEIGHBOURS`, n - 1) by correlation; the euclidean distance between
    standardised profiles orders neighbours the same way), resolution bisected to give
    ``n_modules`` communities (the closest count when none gives it exactly). Labels are
    numbered by size, largest first.
    """
    Z = base._as_matrix(Z)
    _check_groups("n_modules", n_modules, Z.shape[1])
    return _cluster_rows(_standardise(Z).T, n_modules, method, NEURON_NEIGHBOURS, seed)


def cluster_samples(
    X: np.ndarray, n_clusters: int, method: str = "kmeans", seed: int = 0
) -> np.ndarray:
    """(N,) int64 clusters of the samples (rows) of X (N, d), e.g. a λ = 0 layer or raw input.

    Features are standardised first. ``method="kmeans"``: k-means; ``method="leiden"``:
    Leiden modularity communities of the samples' euclidean kNN graph (k = min(
    :data:`SAMPLE_NEIGHBOURS`, N - 1)), resolution bisected as in :func:`posthoc_modules`.
    Labels are numbered by size, largest first.
    """
    X = base._as_matrix(X, name="X")
    _check_groups("n_clusters", n_clusters, len(X))
    return _cluster_rows(_standardise(X), n_clusters, method, SAMPLE_NEIGHBOURS, seed)


def _standardise(X: np.ndarray) -> np.ndarray:
    """Columns of X centred and scaled to unit variance; constant columns become zeros."""
    std = X.std(axis=0)
    return np.divide(X - X.mean(axis=0), std, out=np.zeros_like(X), where=std > 0)


def _cluster_rows(
    points: np.ndarray, n_groups: int, method: str, neighbours: int, seed: int
) -> np.ndarray:
    """Labels (m,) of the rows of points (m, d) in ``n_groups`` groups, numbered by size."""
    if method == "kmeans":
        from sklearn.cluster import KMeans

        labels = KMeans(n_clusters=n_groups, n_init=10, random_state=seed).fit_predict(points)
    elif method == "leiden":
        k = min(neighbours, len(points) - 1)
        labels = _leiden(_knn_edges(points, k), len(points), n_groups, seed)
    else:
        raise ValueError(f"method must be one of {CLUSTER_METHODS}, got {method!r}")
    return rank_by_size(labels)


def _knn_edges(points: np.ndarray, k: int) -> np.ndarray:
    """(E, 2) edges i < j of the symmetrised (union) kNN graph of the rows of points."""
    from sklearn.neighbors import NearestNeighbors

    if k < 1:
        return np.zeros((0, 2), dtype=np.int64)
    neighbours = NearestNeighbors(n_neighbors=k).fit(points).kneighbors(return_distance=False)
    rows = np.repeat(np.arange(len(points)), k)
    pairs = np.sort(np.column_stack([rows, neighbours.ravel()]), axis=1)
    return np.unique(pairs, axis=0)


def _leiden(edges: np.ndarray, n: int, n_groups: int, seed: int) -> np.ndarray:
    """Leiden modularity communities, the resolution bisected towards ``n_groups`` of them.

    The number of communities grows (not strictly) with the resolution: the upper end is
    doubled from 1 until it gives at least ``n_groups``, then the interval is halved
    :data:`LEIDEN_BISECTION_STEPS` times. The membership whose count is closest wins.
    """
    try:
        import igraph
    except ImportError as error:
        raise ImportError("method='leiden' needs igraph: pip install igraph") from error

    network = igraph.Graph(n=n, edges=edges.tolist())
    igraph.set_random_number_generator(random.Random(seed))
    try:
        return _bisect_resolution(network, n_groups)
    finally:
        igraph.set_random_number_generator(random)  # igraph's default generator


def _bisect_resolution(network, n_groups: int) -> np.ndarray:
    best = _leiden_membership(network, 1.0)
    low, high = 0.0, 1.0
    while _count(best) < n_groups and high < LEIDEN_MAX_RESOLUTION:
        low, high = high, 2 * high
        best = _closer(best, _leiden_membership(network, high), n_groups)
    for _ in range(LEIDEN_BISECTION_STEPS):
        if _count(best) == n_groups:
            break
        middle = (low + high) / 2
        labels = _leiden_membership(network, middle)
        low, high = (middle, high) if _count(labels) < n_groups else (low, middle)
        best = _closer(best, labels, n_groups)
    return best


def _leiden_membership(network, resolution: float) -> np.ndarray:
    partition = network.community_leiden(
        objective_function="modularity", resolution=resolution, n_iterations=-1
    )
    return np.asarray(partition.membership, dtype=np.int64)


def _count(labels: np.ndarray) -> int:
    return len(np.unique(labels))


def _closer(current: np.ndarray, candidate: np.ndarray, n_groups: int) -> np.ndarray:
    """The labelling whose number of groups is closer to ``n_groups`` (``current`` on ties)."""
    closer = abs(_count(candidate) - n_groups) < abs(_count(current) - n_groups)
    return candidate if closer else current


def _check_groups(name: str, value: int, n_items: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not 1 <= value <= n_items:
        raise ValueError(f"{name} must lie in [1, {n_items}], got {value}")
