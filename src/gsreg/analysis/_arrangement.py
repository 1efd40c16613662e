"""Post-hoc arrangement: the placement of a layer's units on a graph that makes them smooth.

Given activations Z (N, n) of n units and a graph on n nodes, find the permutation ``perm``
(``perm[node] = unit``) that minimises the graph's Dirichlet energy of the standardised
activations,

    E(perm) = (1/N) sum_b s_b[perm]^T L s_b[perm] = sum_{i,k} L_ik K[perm_i, perm_k],

where ``s`` are the units standardised over the N samples, K = S^T S / N their correlation
matrix (a constant unit has a zero column) and L the combinatorial Laplacian. Off the
diagonal this is minus the summed neighbour correlation; the diagonal term only matters
when some units are constant. It is a quadratic assignment problem (QAP), NP-hard in
general, solved here in three stages:

1. Spectral seriation: the units' spectral embedding (the leading non-trivial eigenvectors
   of their normalised positive-correlation affinity) is matched to the graph's (its
   Laplacian's smallest non-trivial eigenvectors) by one linear assignment, after the
   rotation / reflection that best aligns the two point clouds (scored by the assignment
   cost on at most :data:`ALIGN_SAMPLE` points).
2. For ``n <= FAQ_MAX_NODES``: the Fast Approximate QAP algorithm
   (``scipy.optimize.quadratic_assignment``, Vogelstein et al. 2015) on the summed
   neighbour correlation, started from that placement. Beyond, each of its iterations
   (dense n^3 products and an n x n assignment) costs more than the whole local search.
3. Local search: repeated rounds of unit swaps. Each round evaluates the energy change of
   every pair swap at once (an n x n matrix from one sparse-dense product) and applies,
   best first, every improving swap that does not touch the neighbourhood of another
   swap of the round, so the applied changes add up exactly. It stops when no swap
   improves the energy.

The best of the identity, the seriation and the FAQ placement starts the local search, so
the result never has more energy than the units' own order. Small layers (n <= 362) also
run FAQ and the local search from random starts (32 up to n = 64, fewer above) and keep
the smoothest result. Measured in
``benchmarks/arrange.py``; docs/analysis.md has the numbers.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from scipy.linalg import eigh
from scipy.optimize import linear_sum_assignment, quadratic_assignment
from scipy.sparse.linalg import eigsh

from ..graphs import Graph

#: largest layer for which FAQ runs (at 1,024 units its 15 iterations take about 6 s on one
#: thread and lower the energy of MNIST layers by a further 3%)
FAQ_MAX_NODES = 1024
#: FAQ iterations; on MNIST layers the energy stops improving after about 10
FAQ_MAX_ITER = 15
#: points used to choose the rotation that aligns the two spectral embeddings
ALIGN_SAMPLE = 256
#: rotations tried (each with and without a reflection)
ALIGN_ANGLES = 16
#: random restarts (FAQ, then the local search) for small layers: min(RESTARTS_MAX,
#: RESTART_BUDGET // n^2), so 32 at n <= 64, 4 at n = 181 and none from n = 363
RESTARTS_MAX = 32
RESTART_BUDGET = 2**17
#: largest size for a dense eigendecomposition; sparse Lanczos beyond
DENSE_EIGH_MAX = 1024


def arrangement(
    Z: np.ndarray,
    graph: Graph,
    *,
    random_state: int = 0,
    max_rounds: int = 1000,
    return_energy: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, float]]:
    """The placement of the units of Z (N, n) on ``graph`` that makes them smoothest.

    Args:
        Z: (N, n) activations, N >= 2 samples of n units; any float array.
        graph: a graph on n nodes (at least one edge).
        random_state: seed of the rotation sample and of FAQ; same seed, same result.
        max_rounds: bound on the swap rounds of the local search.
        return_energy: also return ``{"identity", "arranged"}``: the Dirichlet energy of
            the standardised activations (module docstring) in the units' own order and
            after the arrangement, per sample.

    Returns:
        ``perm`` (n,) int64 with ``perm[node] = unit``: ``Z[:, perm]`` puts the units in
        the node order of the graph.
    """
    K = _correlation(Z, graph.n_nodes)
    if graph.n_edges == 0:
        raise ValueError(f"{graph!r} has no edges: every placement on it is equally smooth")
    n = graph.n_nodes
    L = graph.laplacian_matrix()
    identity = np.arange(n)
    if n == 1:
        perm = identity
    else:
        rng = np.random.default_rng(random_state)
        starts = [identity, _seriation(graph, L, K, rng)]
        if n <= FAQ_MAX_NODES:
            starts.append(_faq(graph, K, starts[-1], rng))
        start = min(starts, key=lambda p: energy(L, K, p))
        perm = _swap_search(graph, K, start, max_rounds)
        for _ in range(_restarts(n)):
            candidate = _swap_search(graph, K, _faq(graph, K, None, rng), max_rounds)
            if energy(L, K, candidate) < energy(L, K, perm) - 1e-12:
                perm = candidate
    perm = perm.astype(np.int64)
    if return_energy:
        return perm, {"identity": energy(L, K, identity), "arranged": energy(L, K, perm)}
    return perm


def energy(L: sp.csr_array, K: np.ndarray, perm: np.ndarray) -> float:
    """sum_{i,k} L_ik K[perm_i, perm_k] for a sparse (n, n) L and a dense (n, n) K."""
    coo = L.tocoo()
    return float(np.dot(coo.data, K[perm[coo.row], perm[coo.col]]))


def _correlation(Z: np.ndarray, n_nodes: int) -> np.ndarray:
    """(n, n) correlation of the columns of Z; a constant column has zero correlations."""
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2:
        raise ValueError(f"Z must have shape (N, n), got {Z.shape}")
    if Z.shape[1] != n_nodes:
        raise ValueError(f"Z has {Z.shape[1]} units but the graph has {n_nodes} nodes")
    if len(Z) < 2:
        raise ValueError(f"arranging units needs at least 2 samples, got {len(Z)}")
    bad = ~np.isfinite(Z)
    if bad.any():
        raise ValueError(
            f"Z holds {int(bad.sum())} NaN or Inf values (in "
            f"{int(bad.any(axis=0).sum())} of {Z.shape[1]} units)"
        )
    S = Z - Z.mean(axis=0)
    sd = np.sqrt((S * S).mean(axis=0))
    S = np.divide(S, sd, out=np.zeros_like(S), where=sd > 0)
    return S.T @ S / len(S)


# --------------------------------------------------------------------------- seriation


def _seriation(graph: Graph, L: sp.csr_array, K: np.ndarray, rng: np.random.Generator):
    """A placement that matches the units' 2-D spectral embedding to the graph's."""
    nodes = _whiten(_graph_embedding(graph, L))
    units = _whiten(_unit_embedding(K))
    rotation = _best_rotation(nodes, units, rng)
    cost = _squared_distances(nodes, units @ rotation.T)
    return linear_sum_assignment(cost)[1]


def _graph_embedding(graph: Graph, L: sp.csr_array, dim: int = 2) -> np.ndarray:
    """(n, dim) eigenvectors of L after those of its zero eigenvalues (one per component)."""
    count, _ = graph.components()
    k = min(count + dim, graph.n_nodes)
    if graph.n_nodes <= DENSE_EIGH_MAX or k > graph.n_nodes // 4:
        _, vectors = eigh(L.toarray(), subset_by_index=[0, k - 1])
    else:
        # shift-invert just below 0: L itself is singular
        _, vectors = eigsh(L.tocsc(), k=k, sigma=-1e-3, which="LM")
    return _pad(vectors[:, count:], dim)


def _unit_embedding(K: np.ndarray, dim: int = 2) -> np.ndarray:
    """(n, dim) Laplacian eigenmap of the units' positive correlations."""
    A = np.clip(K, 0.0, None)
    np.fill_diagonal(A, 0.0)
    deg = A.sum(axis=1)
    scale = np.divide(1.0, np.sqrt(deg), out=np.zeros_like(deg), where=deg > 0)
    M = scale[:, None] * A * scale[None, :]
    n = len(K)
    k = min(dim + 1, n)
    if n <= DENSE_EIGH_MAX:
        _, vectors = eigh(M, subset_by_index=[n - k, n - 1])
    else:
        _, vectors = eigsh(M, k=k, which="LA", v0=np.ones(n))
    vectors = vectors[:, ::-1] * scale[:, None]  # largest first; the first is trivial
    return _pad(vectors[:, 1:], dim)


def _pad(X: np.ndarray, dim: int) -> np.ndarray:
    if X.shape[1] < dim:
        X = np.hstack([X, np.zeros((len(X), dim - X.shape[1]))])
    return X


def _whiten(X: np.ndarray) -> np.ndarray:
    X = X - X.mean(axis=0)
    sd = X.std(axis=0)
    return np.divide(X, sd, out=np.zeros_like(X), where=sd > 1e-12)


def _best_rotation(nodes: np.ndarray, units: np.ndarray, rng: np.random.Generator):
    """The 2 x 2 rotation (or rotation-reflection) that best aligns units to nodes."""
    n = len(nodes)
    size = min(n, ALIGN_SAMPLE)
    node_idx = np.sort(rng.choice(n, size, replace=False))
    unit_idx = np.sort(rng.choice(n, size, replace=False))
    best, best_cost = np.eye(2), np.inf
    for reflect in (1.0, -1.0):
        for angle in np.linspace(0.0, 2 * np.pi, ALIGN_ANGLES, endpoint=False):
            c, s = np.cos(angle), np.sin(angle)
            rotation = np.array([[c, -s], [s, c]]) @ np.diag([1.0, reflect])
            cost = _squared_distances(nodes[node_idx], units[unit_idx] @ rotation.T)
            rows, cols = linear_sum_assignment(cost)
            total = cost[rows, cols].sum()
            if total < best_cost - 1e-12:
                best, best_cost = rotation, total
    return best


def _squared_distances(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    return ((A[:, None, :] - B[None, :, :]) ** 2).sum(axis=-1)


# --------------------------------------------------------------------------- FAQ


def _restarts(n: int) -> int:
    """Extra FAQ runs from random doubly stochastic starts, for small layers only."""
    return int(min(RESTARTS_MAX, RESTART_BUDGET // n**2))


def _faq(graph: Graph, K: np.ndarray, start: np.ndarray | None, rng: np.random.Generator):
    """FAQ on max trace(W P K P^T), the summed neighbour correlation, started at the
    permutation matrix of ``start`` (None: a random doubly stochastic matrix near the
    barycentre). On permutations this is the energy up to the degree term of constant
    units; its relaxation moves further from a start than that of trace(L P K P^T)."""
    n = len(K)
    if start is None:
        P0 = "randomized"
    else:
        P0 = np.zeros((n, n))
        P0[np.arange(n), start] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # scipy's notice on the rng option
        result = quadratic_assignment(
            graph.adjacency().toarray(),
            K,
            method="faq",
            options={"P0": P0, "rng": rng, "maxiter": FAQ_MAX_ITER, "maximize": True},
        )
    return np.asarray(result.col_ind)


# --------------------------------------------------------------------------- local search


def _swap_search(graph: Graph, K: np.ndarray, perm: np.ndarray, max_rounds: int):
    """Rounds of independent improving unit swaps until none improves the energy."""
    W = graph.adjacency().tocsr()
    degree = np.asarray(W.sum(axis=1)).ravel()
    edges_i = np.concatenate([graph.edges[:, 0], graph.edges[:, 1]])
    edges_j = np.concatenate([graph.edges[:, 1], graph.edges[:, 0]])
    edge_w = np.concatenate([graph.weights, graph.weights])
    neighbours = np.split(W.indices, W.indptr[1:-1])
    perm = perm.copy()
    tol = 1e-10 * max(1.0, float(np.abs(K).sum()) / len(K))
    for _ in range(max_rounds):
        delta = _swap_deltas(W, degree, K[np.ix_(perm, perm)], edges_i, edges_j, edge_w)
        swaps = _independent_swaps(delta, neighbours, tol)
        if not swaps:
            break
        for a, b in swaps:
            perm[a], perm[b] = perm[b], perm[a]
    return perm


def _swap_deltas(W, degree, Kp, edges_i, edges_j, edge_w) -> np.ndarray:
    """(n, n): the energy change of swapping the units at nodes a and b, for every pair.

    With Kp[i, k] = K[perm_i, perm_k], H = W Kp and E = sum_i d_i Kp[i, i] - sum W * Kp:
    dE[a, b] = (d_a - d_b)(Kp[b, b] - Kp[a, a]) - 2 (H[a, b] + H[b, a] - H[a, a] - H[b, b]
    - W[a, b] (Kp[a, a] + Kp[b, b] - 2 Kp[a, b])).
    """
    H = np.asarray(W @ Kp)
    kd = np.diag(Kp).copy()
    hd = np.diag(H).copy()
    gain = H + H.T
    gain -= hd[:, None]
    gain -= hd[None, :]
    gain[edges_i, edges_j] -= edge_w * (kd[edges_i] + kd[edges_j] - 2 * Kp[edges_i, edges_j])
    gain *= -2.0
    gain += (degree[:, None] - degree[None, :]) * (kd[None, :] - kd[:, None])
    np.fill_diagonal(gain, 0.0)
    return gain


def _independent_swaps(delta: np.ndarray, neighbours: list[np.ndarray], tol: float):
    """Improving swaps, best first, none of which touches another's closed neighbourhood.

    Each node proposes its best partner; a swap (a, b) only changes the energy terms of
    a, b and their neighbours, so swaps whose nodes lie outside each other's closed
    neighbourhoods change the energy by the sum of their own changes.
    """
    partner = delta.argmin(axis=1)
    gains = delta[np.arange(len(delta)), partner]
    order = np.argsort(gains, kind="stable")
    locked = np.zeros(len(delta), dtype=bool)
    swaps = []
    for a in order:
        if gains[a] >= -tol:
            break
        b = partner[a]
        if locked[a] or locked[b]:
            continue
        swaps.append((a, b))
        for node in (a, b):
            locked[node] = True
            locked[neighbours[node]] = True
    return swaps
