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
import scipy.sparse as sp
import torch
from torch import nn

from gsreg.graphs import LAPLACIAN_KINDS, Graph

__all__ = [
    "activations",
    "class_deviation_maps",
    "class_maps",
    "dirichlet_energy",
    "global_mean",
    "localization",
    "morans_i",
    "segmentation",
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
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
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


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


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

    ``L`` is built here with scipy from ``graph.adjacency()`` (``kind`` as in
    :meth:`Graph.laplacian`; isolated nodes have zero rows), independently of the torch
    penalty, so the two can check each other.
    """
    Z = _as_matrix(Z, n_nodes=graph.n_nodes)
    lap = _laplacian_matrix(graph, kind)
    per_sample = np.einsum("bi,ib->b", Z, lap @ Z.T)
    if not normalize:
        return float(per_sample.mean())
    total = float(np.sum(Z * Z))
    return float(per_sample.sum() / total) if total > 0 else float("nan")


def _laplacian_matrix(graph: Graph, kind: str) -> sp.csr_matrix:
    if kind not in LAPLACIAN_KINDS:
        raise ValueError(f"unknown Laplacian kind {kind!r}; expected one of {LAPLACIAN_KINDS}")
    W = graph.adjacency()
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
