"""Read-outs of a structured layer: activations, class maps, segmentation and smoothness.

Torch goes in (a model and its inputs); numpy comes out. ``Z`` is always an (N, n)
activation matrix: N samples, n neurons in the node order of the layer's graph.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from scipy.linalg import eigh
from torch import nn

from .._checks import check_int
from .._util import model_device as _model_device
from ..graphs import Graph, rank_by_size
from ._arrangement import arrangement
from ._controls import (
    ARRANGE_SAMPLES,
    DECODE_TOLERANCE,
    MODULE_CONTROL_LABELS,
    MODULE_CONTROLS,
    NULL_PERMUTATIONS,
    P_LEVEL,
    PATTERN_SHARE,
    indicated_modules,
    leiden_available,
    map_control_scores,
    map_controls,
    map_verdict,
    map_verdict_short,
    map_verdict_text,
    module_control_labels,
    module_controls,
    module_null,
    module_verdict,
)
from ._structure import (
    cluster_samples,
    contiguity_null,
    decodability,
    map_structure,
    module_ari_null,
    morans_i_null,
    participation_ratio,
    posthoc_modules,
    segmentation_contiguity,
    territories,
)

__all__ = [
    "activations",
    "class_deviation_maps",
    "class_maps",
    "cluster_samples",
    "cluster_scores",
    "column_correlations",
    "contiguity_null",
    "decodability",
    "dirichlet_energy",
    "global_mean",
    "indicate_clusters",
    "localization",
    "map_structure",
    "module_activity",
    "module_ari_null",
    "module_class_table",
    "modules",
    "morans_i",
    "morans_i_null",
    "participation_ratio",
    "posthoc_modules",
    "segmentation",
    "segmentation_contiguity",
    "territories",
    "arrangement",
    "ARRANGE_SAMPLES",
    "DECODE_TOLERANCE",
    "MODULE_CONTROLS",
    "MODULE_CONTROL_LABELS",
    "NULL_PERMUTATIONS",
    "P_LEVEL",
    "PATTERN_SHARE",
    "indicated_modules",
    "leiden_available",
    "map_control_scores",
    "map_controls",
    "map_verdict",
    "map_verdict_short",
    "map_verdict_text",
    "module_control_labels",
    "module_controls",
    "module_null",
    "module_verdict",
]


# --------------------------------------------------------------------------- activations


def activations(
    model: nn.Module,
    X: torch.Tensor | np.ndarray,
    layers: str | Sequence[str],
    batch_size: int = 1024,
    device: torch.device | str | None = None,
) -> np.ndarray | dict[str, np.ndarray]:
    """Outputs of the named submodules of ``model`` on inputs ``X``, flattened per sample.

    The model runs in eval mode under ``torch.no_grad`` in batches of ``batch_size``;
    forward hooks capture each layer's output, reshaped to (N, n) (a conv output
    (N, C, H, W) becomes (N, C*H*W), channel-major). The train/eval mode of every
    submodule is restored and the hooks are removed afterwards, also on error.

    Args:
        model: any module; layers are addressed by dotted names (``"decoder.0"``).
        X: (N, ...) inputs (tensor or array); float inputs are cast to the dtype of the
            model's parameters, batch by batch.
        layers: one name (returns an array) or a list of names (returns a dict).
        batch_size: samples per forward pass.
        device: where the batches are sent; defaults to the device of the model's
            parameters (CPU for a model without any). The model itself is not moved.

    Returns:
        (N, n) float array, or ``{name: (N, n_name)}`` when ``layers`` is a list.
    """
    names = [layers] if isinstance(layers, str) else list(dict.fromkeys(layers))
    if not names:
        raise ValueError("layers is empty; name at least one submodule")
    check_int(batch_size, "batch_size")
    modules = {name: _submodule(model, name) for name in names}
    X = _as_input(X)
    device = _model_device(model) if device is None else torch.device(device)
    dtype = _input_dtype(model, X)

    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    with _eval_mode(model), _capture(modules) as captured, torch.no_grad():
        for start in range(0, len(X), batch_size):
            model(X[start : start + batch_size].to(device=device, dtype=dtype))
            for name in names:
                chunks[name].append(_take_single_output(name, captured[name]))
                captured[name].clear()

    result = {name: _to_numpy(torch.cat(chunks[name])) for name in names}
    for name, Z in result.items():
        if not np.all(np.isfinite(Z)):
            warnings.warn(f"activations of layer {name!r} contain NaN or Inf", stacklevel=2)
    return result[names[0]] if isinstance(layers, str) else result


def _submodule(model: nn.Module, name: str) -> nn.Module:
    """``model.get_submodule(name)`` with an error that suggests close names."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        pass
    available = [n for n, _ in model.named_modules() if n]
    close = difflib.get_close_matches(name, available, n=5, cutoff=0.5)
    hint = f"did you mean {close}?" if close else f"available: {available[:20]}"
    raise ValueError(f"model has no submodule {name!r}; {hint}")


def _as_input(X: torch.Tensor | np.ndarray) -> torch.Tensor:
    X = torch.as_tensor(X)
    if X.ndim == 0 or len(X) == 0:
        raise ValueError(f"X must hold at least one sample, got shape {tuple(X.shape)}")
    return X


def _input_dtype(model: nn.Module, X: torch.Tensor) -> torch.dtype | None:
    """The model's float dtype for float inputs (float64 numpy arrays are common)."""
    param = next(model.parameters(), None)
    if param is not None and X.is_floating_point() and param.is_floating_point():
        return param.dtype
    return None


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode; restore each submodule's own mode on exit."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@contextmanager
def _capture(modules: dict[str, nn.Module]) -> Iterator[dict[str, list]]:
    """Forward hooks that append each module's output to ``captured[name]``."""
    captured: dict[str, list] = {name: [] for name in modules}
    handles = [
        module.register_forward_hook(lambda _m, _i, out, name=name: captured[name].append(out))
        for name, module in modules.items()
    ]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def _take_single_output(name: str, outputs: list) -> torch.Tensor:
    """The one output of layer ``name`` in a forward pass, flattened to (B, n)."""
    if len(outputs) != 1:
        raise ValueError(
            f"layer {name!r} ran {len(outputs)} times in one forward pass; expected once"
        )
    out = outputs[0]
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"layer {name!r} returned {type(out).__name__}, expected a Tensor")
    return out.detach().reshape(out.shape[0], -1).cpu()


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
        t = t.float()  # half and bfloat16 have no (or no exact) numpy dtype
    return t.numpy()


# --------------------------------------------------------------------------- class maps


def class_maps(
    Z: np.ndarray, labels: np.ndarray, *, return_classes: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Class-mean activations.

    Args:
        Z: (N, n) activations.
        labels: (N,) class labels of any sortable dtype.
        return_classes: also return the (C,) sorted class labels, the row order.

    Returns:
        (C, n) float64 means, row c for the c-th class in sorted label order;
        with ``return_classes`` the tuple ``(maps, classes)``.
    """
    Z, labels = _check_samples(Z, labels)
    classes, inverse = np.unique(labels, return_inverse=True)
    sums = np.zeros((len(classes), Z.shape[1]))
    np.add.at(sums, inverse, Z)
    maps = sums / np.bincount(inverse)[:, None]
    return (maps, classes) if return_classes else maps


def global_mean(Z: np.ndarray) -> np.ndarray:
    """(n,) mean activation over all N samples of Z (N, n)."""
    return _as_matrix(Z).mean(axis=0)


def class_deviation_maps(
    Z: np.ndarray, labels: np.ndarray, *, return_classes: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """(C, n) class means minus the global sample mean (what sets each class apart).

    The global mean is over samples, so with unbalanced classes it leans towards the
    larger classes. ``return_classes`` as in :func:`class_maps`.
    """
    maps, classes = class_maps(Z, labels, return_classes=True)
    deviation = maps - global_mean(Z)
    return (deviation, classes) if return_classes else deviation


def segmentation(class_means: np.ndarray) -> np.ndarray:
    """(n,) int64: per neuron, the index of the class that claims it.

    Each class's mean map (row of ``class_means`` (C, n)) is first divided by its L1
    norm over neurons, so every class distributes the same total mass; a class whose
    activations are large everywhere then does not claim every neuron. A neuron goes to
    the class with the largest normalised value (lowest index on ties). An all-zero row
    cannot be normalised and is left at zero. Indices refer to the rows, i.e. to the
    sorted classes of :func:`class_maps`.
    """
    means = _as_matrix(class_means, name="class_means")
    norms = np.abs(means).sum(axis=1, keepdims=True)
    normalised = np.divide(means, norms, out=np.zeros_like(means), where=norms > 0)
    return normalised.argmax(axis=0).astype(np.int64)


# --------------------------------------------------------------------------- smoothness


def dirichlet_energy(
    Z: np.ndarray, graph: Graph, kind: str = "combinatorial", normalize: bool = True
) -> float:
    """Graph Dirichlet energy of activations Z (N, n) or a single signal (n,).

    ``normalize=True``: tr(Z L Z^T) / tr(Z Z^T), a Rayleigh quotient that ignores the
    scale of the activations (NaN when Z is all zeros). A constant offset lowers it
    without making maps smoother; :func:`morans_i` centres each map and has no such
    hole. ``normalize=False``: mean_b z_b^T L z_b, the plain GSR penalty.

    ``L`` is :meth:`Graph.laplacian_matrix` (``kind`` as in :meth:`Graph.laplacian`;
    isolated nodes have zero rows), the matrix the penalty uses; the tests check it
    against independent references.
    """
    Z = _as_matrix(Z, n_nodes=graph.n_nodes)
    lap = graph.laplacian_matrix(kind)
    per_sample = np.einsum("bi,ib->b", Z, lap @ Z.T)
    if not normalize:
        return float(per_sample.mean())
    total = float(np.sum(Z * Z))
    return float(per_sample.sum() / total) if total > 0 else float("nan")


def morans_i(maps: np.ndarray, graph: Graph) -> float | np.ndarray:
    """Moran's I spatial autocorrelation of maps (C, n) or a single map (n,).

    I = (n / S0) * sum_ij w_ij (x_i - xbar)(x_j - xbar) / sum_i (x_i - xbar)^2 with the
    graph's weights, S0 = sum_ij w_ij over ordered pairs (each undirected edge twice).
    I near 1: neighbours carry similar values (smooth, localised maps); near -1: they
    alternate (a checkerboard on a grid gives exactly -1). With no spatial structure the
    expected value is -1/(n-1), not 0. A constant map has no variance: its I is NaN.

    Returns a float for a single map, else a (C,) array.
    """
    single = np.ndim(maps) == 1
    X = _as_matrix(maps, name="maps", n_nodes=graph.n_nodes)
    s0 = 2.0 * graph.weights.sum()
    if s0 == 0:
        raise ValueError(f"Moran's I needs at least one edge; {graph!r} has none")
    centred = X - X.mean(axis=1, keepdims=True)
    cross = np.einsum("ci,ic->c", centred, graph.adjacency() @ centred.T)
    variance = np.sum(centred**2, axis=1)
    constant = np.ptp(X, axis=1) == 0
    safe = np.where(constant, 1.0, variance)
    values = np.where(constant, np.nan, graph.n_nodes / s0 * cross / safe)
    return float(values[0]) if single else values


def localization(
    Z: np.ndarray, labels: np.ndarray, graph: Graph, kind: str = "combinatorial"
) -> dict[str, float]:
    """Summary scores of how localised a layer's class structure is on ``graph``.

    Returns:
        ``morans_i``: mean Moran's I of the class deviation maps (class mean minus global
        mean), the headline localisation score; ``morans_i_raw``: the same for the raw
        class-mean maps; ``morans_i_expected``: -1/(n-1), the value without spatial
        structure; ``dirichlet_energy``: normalised energy of Z (``kind`` Laplacian);
        ``activation_norm``: mean over samples of ||z||_2. Report the norm beside the
        plain penalty, which can be lowered by shrinking activations. Means skip NaN
        (constant maps); a score is NaN when every map is constant.
    """
    Z, labels = _check_samples(Z, labels)
    maps = class_maps(Z, labels)
    n = graph.n_nodes
    return {
        "morans_i": _nanmean(morans_i(maps - global_mean(Z), graph)),
        "morans_i_raw": _nanmean(morans_i(maps, graph)),
        "morans_i_expected": -1.0 / (n - 1) if n > 1 else float("nan"),
        "dirichlet_energy": dirichlet_energy(Z, graph, kind=kind, normalize=True),
        "activation_norm": float(np.linalg.norm(Z, axis=1).mean()),
    }


# --------------------------------------------------------------------------- helpers


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _as_matrix(x: np.ndarray, name: str = "Z", n_nodes: int | None = None) -> np.ndarray:
    """``x`` as a 2-D float64 array; a 1-D input becomes one row."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {x.shape}")
    if n_nodes is not None and x.shape[1] != n_nodes:
        raise ValueError(f"{name} has {x.shape[1]} columns but the graph has {n_nodes} nodes")
    return x


def _check_samples(Z: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    Z = np.asarray(Z, dtype=np.float64)
    labels = np.asarray(labels)
    if Z.ndim != 2:
        raise ValueError(f"Z must have shape (N, n), got {Z.shape}")
    if labels.shape != (len(Z),):
        raise ValueError(f"labels must have shape ({len(Z)},), got {labels.shape}")
    if len(Z) == 0:
        raise ValueError("Z holds no samples")
    return Z, labels


# --------------------------------------------------------------------------- modules


def modules(graph: Graph, n_modules: int | None = None, seed: int = 0) -> np.ndarray:
    """(n,) int64 neuron-module labels of ``graph``, numbered by size (largest is 0).

    Modules are the connected components; an isolated node is a module of its own. Labels
    are ordered by module size, largest first, ties by the smallest node index.

    ``n_modules`` asks for a number of modules:

    - fewer components than asked: components are split by spectral clustering. Each
      component keeps its zero eigenvalue of the normalised Laplacian; the
      ``n_modules - n_components`` smallest of all remaining eigenvalues (the weakest
      cuts) decide how many parts each component gets, and a component with ``k > 1``
      parts is cut by k-means (``random_state=seed``) on its first ``k`` eigenvectors
      with rows scaled to unit length. Modules therefore never span two components.
      k-means can, rarely, return fewer distinct parts than asked.
    - more components than asked: the components are returned unchanged with a warning
      (nodes are never put together without an edge between them); labels
      ``>= n_modules`` are then the smallest components, often isolated nodes.
    """
    count, labels = graph.components()
    if n_modules is None:
        return rank_by_size(labels)
    if not isinstance(n_modules, (int, np.integer)) or isinstance(n_modules, bool):
        raise ValueError(f"n_modules must be an integer or None, got {n_modules!r}")
    if not 1 <= n_modules <= graph.n_nodes:
        raise ValueError(f"n_modules must lie in [1, {graph.n_nodes}], got {n_modules}")
    if count > n_modules:
        warnings.warn(
            f"the graph has {count} connected components, more than n_modules={n_modules}; "
            "returning the components",
            stacklevel=2,
        )
    elif count < n_modules:
        labels = _split_components(graph, labels, count, n_modules, seed)
    return rank_by_size(labels)


def _split_components(
    graph: Graph, components: np.ndarray, count: int, n_modules: int, seed: int
) -> np.ndarray:
    """Labels that cut ``count`` components into ``n_modules`` parts (spectral clustering)."""
    lap = graph.laplacian_matrix("normalized")
    extra = n_modules - count
    members = [np.flatnonzero(components == c) for c in range(count)]
    spectra = []
    for idx in members:
        size = min(len(idx), extra + 1)
        spectra.append(eigh(lap[idx][:, idx].toarray(), subset_by_index=[0, size - 1]))
    # each component keeps its first (zero) eigenvalue; the smallest of the rest pick the cuts
    values = np.concatenate([vals[1:] for vals, _ in spectra])
    owner = np.concatenate([np.full(len(vals) - 1, c) for c, (vals, _) in enumerate(spectra)])
    parts = 1 + np.bincount(owner[np.argsort(values, kind="stable")[:extra]], minlength=count)
    labels = np.empty(graph.n_nodes, dtype=np.int64)
    offset = 0
    for idx, (_, vectors), k in zip(members, spectra, parts, strict=True):
        labels[idx] = offset + _spectral_kmeans(vectors[:, :k], seed)
        offset += k
    return labels


def _spectral_kmeans(vectors: np.ndarray, seed: int) -> np.ndarray:
    """k-means labels of the rows of (m, k) eigenvectors scaled to unit length."""
    k = vectors.shape[1]
    if k == 1:
        return np.zeros(len(vectors), dtype=np.int64)
    from sklearn.cluster import KMeans

    rows = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(rows).astype(np.int64)


def module_activity(activations: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N, M) mean activation of each module's neurons per sample.

    ``activations`` is (N, n), ``labels`` (n,) the module of each neuron; columns follow
    the sorted distinct labels (``0..M-1`` for labels from :func:`modules`).
    """
    Z, labels = _check_modules(activations, labels)
    ids, inverse = np.unique(labels, return_inverse=True)
    member = np.zeros((labels.size, ids.size))
    member[np.arange(labels.size), inverse] = 1.0
    return Z @ member / member.sum(axis=0)


def indicate_clusters(
    activations: np.ndarray,
    labels: np.ndarray,
    baseline: np.ndarray | None = None,
    scale: bool = True,
) -> np.ndarray:
    """(N,) int64 cluster indication: per sample, the module it drives most.

    Module activities ``a`` (N, M) (:func:`module_activity`) are compared with each
    module's own baseline, so a module that is busy for every sample does not claim
    them all: ``score = (a - baseline) / spread``, and each sample goes to the module of
    the highest score (lowest on ties). The result holds module labels (values of
    ``labels``).

    Args:
        activations: (N, n) activations.
        labels: (n,) module of each neuron.
        baseline: (M,) reference activity per module (columns as in
            :func:`module_activity`); default: each module's median over the N samples.
        scale: divide by each module's standard deviation over the samples, so modules
            of different activation scales compete on equal terms. A module that never
            varies carries no signal and is never chosen; if no module varies a
            ``ValueError`` asks for ``scale=False``.
    """
    activity = module_activity(activations, labels)
    ids = np.unique(labels)
    if baseline is None:
        baseline = np.median(activity, axis=0)
    baseline = np.asarray(baseline, dtype=np.float64)
    if baseline.shape != (ids.size,):
        raise ValueError(
            f"baseline must have shape ({ids.size},), one value per module, got {baseline.shape}"
        )
    score = activity - baseline
    if scale:
        spread = activity.std(axis=0)
        varies = spread > 0
        if not varies.any():
            raise ValueError("no module varies across the samples; use scale=False")
        score = np.where(varies, score / np.where(varies, spread, 1.0), -np.inf)
    return ids[score.argmax(axis=1)].astype(np.int64)


def module_class_table(
    activations: np.ndarray, module_labels: np.ndarray, classes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean module activity per class.

    Args:
        activations: (N, n) activations.
        module_labels: (n,) module of each neuron.
        classes: (N,) class of each sample.

    Returns:
        ``(table (M, C), module_ids (M,), class_ids (C,))``: ``table[m, c]`` is the mean
        over the samples of class ``class_ids[c]`` of the mean activation of the neurons
        of module ``module_ids[m]``; both id arrays are sorted.
    """
    activity = module_activity(activations, module_labels)
    maps, class_ids = class_maps(activity, classes, return_classes=True)
    return maps.T, np.unique(module_labels), class_ids


def cluster_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Agreement of a predicted clustering (N,) with true clusters (N,).

    Returns ``ari`` (adjusted Rand index, 1 for a perfect match, about 0 by chance),
    ``nmi`` (normalised mutual information, arithmetic mean, in [0, 1]) and ``purity``
    (the fraction of samples whose true cluster is the most common one of their
    predicted cluster; 1 also when every sample is its own cluster).
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.ndim != 1 or pred.shape != truth.shape or pred.size == 0:
        raise ValueError(
            f"pred and truth must be non-empty (N,) arrays, got {pred.shape} and {truth.shape}"
        )
    _, pred_codes = np.unique(pred, return_inverse=True)
    _, truth_codes = np.unique(truth, return_inverse=True)
    counts = np.zeros((pred_codes.max() + 1, truth_codes.max() + 1), dtype=np.int64)
    np.add.at(counts, (pred_codes, truth_codes), 1)
    return {
        "ari": float(adjusted_rand_score(truth, pred)),
        "nmi": float(normalized_mutual_info_score(truth, pred)),
        "purity": float(counts.max(axis=1).sum() / pred.size),
    }


def column_correlations(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """(p, q) Pearson correlations between the columns of A (N, p) and B (N, q).

    Entry (i, j) is the correlation over the N rows of column i of A with column j of B
    (e.g. neurons against marker genes, or module activity against known factors); NaN
    where either column is constant (no variance, no correlation).
    """
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if A.ndim != 2 or B.ndim != 2 or len(A) != len(B) or len(A) < 2:
        raise ValueError(f"need (N, p) and (N, q) with N >= 2, got {A.shape} and {B.shape}")
    a = A - A.mean(axis=0)
    b = B - B.mean(axis=0)
    norm_a = np.sqrt((a * a).sum(axis=0))
    norm_b = np.sqrt((b * b).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (a.T @ b) / np.outer(norm_a, norm_b)
    corr[(norm_a == 0)[:, None] | (norm_b == 0)[None, :]] = np.nan
    return np.clip(corr, -1.0, 1.0)


def _check_modules(activations: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    Z = np.asarray(activations, dtype=np.float64)
    labels = np.asarray(labels)
    if Z.ndim != 2 or len(Z) == 0:
        raise ValueError(f"activations must have shape (N, n) with N >= 1, got {Z.shape}")
    if labels.shape != (Z.shape[1],):
        raise ValueError(
            f"labels must give the module of each of the {Z.shape[1]} neurons, "
            f"got shape {labels.shape}"
        )
    return Z, labels
