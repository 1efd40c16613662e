"""``gsreg.sc.fit``, ``gsreg.sc.tl.gsr`` and ``gsreg.sc.transform``: a GSR autoencoder
on an AnnData object.

Training is :meth:`gsreg.GSRAutoencoder.fit` on the cells' matrix: a sparse matrix stays
sparse and only a batch (or a chunk of at most ``_data.CHUNK_ENTRIES`` entries) is ever
dense. ``fit`` returns the estimator; ``tl.gsr`` (scanpy's convention) returns None, or
the written copy.

Where results go (scanpy's ``pp.pca`` layout; ``key_added`` is used verbatim):

============================  ===================  =======================
                              ``key_added=None``   ``key_added="k"``
============================  ===================  =======================
activations (n_obs, n_units)  ``obsm["X_gsr"]``    ``obsm["k"]``
parameters, graph, modules    ``uns["gsr"]``       ``uns["k"]``
unit loadings (n_vars, n)     ``varm["gsr"]``      ``varm["k"]``
module loadings (n_vars, m)   ``varm["gsr_modules"]`` ``varm["k_modules"]``
module activity per cell      ``obs["gsr_module_<i>"]`` ``obs["k_module_<i>"]``
module each cell drives most  ``obs["gsr_module"]``  ``obs["k_module"]``
============================  ===================  =======================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg

from .. import analysis
from ..controls import score as score_controls
from ..controls import twin as control_twin
from ..estimators import GSRAutoencoder
from ..graphs import Graph
from ..training import History
from ._data import Rows
from ._loadings import LOADINGS, loadings, module_loadings

__all__ = ["Keys", "fit", "keys", "transform"]

_RENAMED = {"structured_layer": "layer"}  # gsreg.sc name -> GSRAutoencoder parameter
_FIXED = {"graph", "weight", "budget", "epochs", "random_state", "verbose"}


@dataclass(frozen=True)
class Keys:
    """Where one fit is written in an AnnData object (see the module docstring)."""

    obsm: str
    uns: str
    varm: str
    varm_modules: str
    obs_prefix: str

    def as_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


def keys(key_added: str | None) -> Keys:
    """The AnnData keys of a fit: ``None`` -> ``X_gsr``/``gsr``; any string verbatim."""
    if key_added is None:
        return Keys("X_gsr", "gsr", "gsr", "gsr_modules", "gsr_module")
    if not isinstance(key_added, str) or not key_added or "/" in key_added:
        raise ValueError(
            f"key_added must be None or a non-empty string without '/', got {key_added!r}"
        )
    return Keys(key_added, key_added, key_added, f"{key_added}_modules", f"{key_added}_module")


# ---------------------------------------------------------------------------- public API


def fit(
    adata: AnnData,
    graph: str | Graph = "learned",
    layer: str | None = None,
    use_rep: str | None = None,
    key_added: str | None = None,
    weight: float | None = None,
    budget: float | str | None = "auto",
    epochs: int | str = "auto",
    random_state: int | None = 0,
    copy: bool = False,
    verbose: int | str = "auto",
    groupby: str | None = None,
    controls: bool = True,
    loadings: str | None = "gradient",
    **estimator_options: Any,
) -> GSRAutoencoder | tuple[AnnData, GSRAutoencoder]:
    """Train a GSR autoencoder on the cells of ``adata``, write its structured layer and
    return the estimator (:func:`gsreg.sc.tl.gsr` is the same, in scanpy's convention).

    Args:
        adata: cells x features. Trains on ``adata.X``, ``adata.layers[layer]`` or
            ``adata.obsm[use_rep]``: dense, scipy sparse or backed (read into memory,
            sparse data as sparse); sparse rows are densified batch by batch, never the
            whole matrix.
        graph: ``"learned"`` (a co-activation graph whose connected components become
            neuron modules), a spec such as ``"grid:8x8"``, or a :class:`gsreg.Graph`.
        layer, use_rep: train on a layer or an ``obsm`` representation instead of X.
        key_added: None (``obsm["X_gsr"]``, ``uns["gsr"]``, ``varm["gsr"]``, ...) or a key
            used verbatim everywhere (see the module docstring's table).
        weight: a fixed lambda; None (default) lets ``budget`` set it.
        budget: the share of the reconstruction loss GSR may cost: the model is trained
            without GSR, then fine-tuned with the lambda that spends it. "auto" (the
            estimator's default): 0.05 for a fixed graph; a learned graph uses the
            measured learned-graph recipe (:data:`gsreg.coactivation.RECOMMENDED`: the
            centred penalty at a fixed weight, the graph frozen once its modules hold).
        epochs: ``"auto"`` (about 3,000 optimiser steps, see
            :func:`gsreg.estimators.auto_epochs`) or a number.
        random_state: seed of initial weights and batch order (int), or None.
        copy: write into a copy of ``adata`` and return ``(copy, estimator)``.
        verbose: "auto" (a progress bar for long fits in a terminal or notebook, as the
            estimators), 1 always, 0 never.
        groupby: a column of ``adata.obs`` with a label per cell (cell types, clusters);
            with ``controls`` the GSR layer is scored against its controls on these labels.
        controls: with ``groupby``, also train the same model with weight 0 (same seed,
            same steps: twice the training time) and write the GSR layer beside its
            controls into ``uns[key]["controls"]`` (see docs/scanpy.md).
        loadings: the gene loadings written into ``varm`` (when the input is X or a
            layer, so that its features are ``adata.var``): "gradient" (default: the
            mean Jacobian of the reconstruction, times each unit's standard deviation),
            "weights" or "correlation" (see :mod:`gsreg.sc._loadings`), or None.
        **estimator_options: other :class:`gsreg.GSRAutoencoder` parameters (``hidden``,
            ``latent``, ``n_structured``, ``learned_options``, ``batch_size``, ``lr``,
            ``scale``, ``device``, ...); the network layer that carries the graph is
            ``structured_layer`` (the estimator's ``layer``).

    Returns:
        The fitted :class:`gsreg.GSRAutoencoder` (``copy=True``: ``(adata copy,
        estimator)``). Its ``transform``, ``activations``, ``save`` work as usual.

    Writes ``obsm``, ``uns``, ``varm`` and ``obs`` entries as in the module docstring; with
    ``groupby`` and ``controls``, ``uns[key]["controls"]``.
    """
    _check_adata(adata)
    names = keys(key_added)
    _check_loadings(loadings)
    rows = _input_rows(adata, layer, use_rep)
    options = _estimator_options(estimator_options)
    labels = _labels(adata, groupby)
    start = logg.info(f"computing GSR (graph={_graph_name(graph)!r})")
    est = GSRAutoencoder(
        graph=graph,
        weight=weight,
        budget=budget,
        epochs=epochs,
        random_state=random_state,
        verbose=verbose,
        **options,
    )
    rows.check_finite()
    X = rows.matrix()
    est.fit(X)
    if copy:
        adata = adata.copy()
    written = _write(adata, est, rows, names, _input_params(layer, use_rep), loadings)
    if labels is not None and controls:
        twin = est if weight == 0 and est.arrange is not True else control_twin(est).fit(X)
        result = score_controls(est, twin, X, labels, Z=adata.obsm[names.obsm], seed=int(est.seed_))
        adata.uns[names.uns]["controls"] = {"groupby": groupby, **_h5ad_tree(result)}
        written.append(f"uns[{names.uns!r}]['controls'], the GSR layer beside its controls")
    logg.info("    finished", time=start)
    logg.debug("and added\n    " + "\n    ".join(written))
    return (adata, est) if copy else est


def _graph_name(graph: str | Graph) -> str:
    return graph.name if isinstance(graph, Graph) else str(graph)


def _check_loadings(method: str | None) -> None:
    if method is not None and method not in LOADINGS:
        raise ValueError(f"loadings must be None or one of {LOADINGS}, got {method!r}")


def _estimator_options(estimator_options: dict[str, Any]) -> dict[str, Any]:
    """``GSRAutoencoder`` keyword arguments from gsreg.sc's (``structured_layer`` ->
    ``layer``); a TypeError lists the valid names."""
    options = {_RENAMED.get(k, k): v for k, v in estimator_options.items()}
    allowed = set(GSRAutoencoder().get_params()) - _FIXED
    unknown = sorted(set(options) - allowed)
    if unknown:
        names = sorted((allowed - set(_RENAMED.values())) | set(_RENAMED))
        raise TypeError(f"gsreg.sc: unknown option(s) {unknown}; GSRAutoencoder takes {names}")
    return options


def _labels(adata: AnnData, groupby: str | None) -> np.ndarray | None:
    """The cells' labels (n_obs,) as strings from ``obs[groupby]``, or None."""
    if groupby is None:
        return None
    if groupby not in adata.obs.columns:
        raise KeyError(
            f"groupby {groupby!r} is not a column of adata.obs (columns: "
            f"{list(adata.obs.columns)[:12]})"
        )
    values = adata.obs[groupby]
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise ValueError(f"groupby column {groupby!r} has no label for cell {row}")
    return values.astype(str).to_numpy()


def _h5ad_tree(value: Any) -> Any:
    """A JSON-like result as h5ad-writable values: dicts of str keys, lists as arrays, None
    left out (a missing key means None)."""
    if isinstance(value, dict):
        items = {str(k): _h5ad_tree(v) for k, v in value.items()}
        return {k: v for k, v in items.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return np.asarray(value)
    return value


def transform(
    adata: AnnData,
    estimator: GSRAutoencoder,
    layer: str | None = None,
    use_rep: str | None = None,
    key_added: str | None = None,
    copy: bool = False,
    loadings: str | None = "gradient",
) -> AnnData | None:
    """Write a fitted estimator's structured layer for the cells of ``adata``.

    The estimator may come from :func:`fit` on other cells, or from
    ``GSRAutoencoder.load``; ``adata`` must have the features it was trained on (same
    number, same order). Cells are processed in chunks (sparse rows densified chunk by
    chunk). Writes the same entries as :func:`fit` (module docstring): ``obsm`` (n_obs,
    n_units) float32 activations; ``uns`` parameters, the graph, modules, training
    history and the reconstruction error on these cells (h5ad-writable types only);
    ``varm`` loadings averaged over these cells; for graphs with modules the ``obs``
    columns of module activity and the module each cell drives most relative to its
    usual level (:func:`gsreg.analysis.indicate_clusters`). Older module columns of the
    same key are removed first.

    Returns None, or the written copy when ``copy=True``.
    """
    _check_adata(adata)
    if not isinstance(estimator, GSRAutoencoder) or not hasattr(estimator, "model_"):
        raise TypeError(
            f"estimator must be a fitted GSRAutoencoder, got {type(estimator).__name__}"
        )
    names = keys(key_added)
    _check_loadings(loadings)
    rows = _input_rows(adata, layer, use_rep)
    if rows.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"{rows.name} has {rows.shape[1]} features, the estimator was trained on "
            f"{estimator.n_features_in_}"
        )
    if copy:
        adata = adata.copy()
        rows = _input_rows(adata, layer, use_rep)
    _write(adata, estimator, rows, names, _input_params(layer, use_rep), loadings)
    return adata if copy else None


# ---------------------------------------------------------------------------- inputs


def _check_adata(adata: object) -> None:
    if not isinstance(adata, AnnData):
        raise TypeError(f"adata must be an AnnData object, got {type(adata).__name__}")


def _input_rows(adata: AnnData, layer: str | None, use_rep: str | None) -> Rows:
    """The matrix to train on or embed: X, a layer or an obsm representation."""
    if layer is not None and use_rep is not None:
        raise ValueError(f"pass layer or use_rep, not both (got {layer!r} and {use_rep!r})")
    if layer is not None:
        if layer not in adata.layers:
            hint = ""
            if re.match(r"^(encoder|decoder)\.", str(layer)):
                hint = "; the network layer that carries the graph is structured_layer="
            raise KeyError(
                f"layer {layer!r} is not in adata.layers (available: {sorted(adata.layers)}){hint}"
            )
        return Rows(adata.layers[layer], f"adata.layers[{layer!r}]")
    if use_rep is not None:
        if use_rep not in adata.obsm:
            raise KeyError(
                f"use_rep {use_rep!r} is not in adata.obsm (available: {sorted(adata.obsm)})"
            )
        return Rows(adata.obsm[use_rep], f"adata.obsm[{use_rep!r}]")
    if adata.X is None:
        raise ValueError("adata.X is None; pass layer= or use_rep=")
    return Rows(adata.X, "adata.X")


def _input_params(layer: str | None, use_rep: str | None) -> dict[str, str]:
    if layer is not None:
        return {"input": "layers", "input_key": layer}
    if use_rep is not None:
        return {"input": "obsm", "input_key": use_rep}
    return {"input": "X"}


# ---------------------------------------------------------------------------- writing


def _write(
    adata: AnnData,
    est: GSRAutoencoder,
    rows: Rows,
    names: Keys,
    input_params: dict[str, str],
    loadings_method: str | None,
) -> list[str]:
    """Write activations, ``uns``, loadings and module columns; returns what was added
    (one line each, for scanpy's log)."""
    prefix = names.obs_prefix
    n = len(rows)
    parts, sq_error = [], 0.0
    for _, block in rows.chunks():
        parts.append(est.activations(block))
        sq_error += float(((est.reconstruct(block).astype(np.float64) - block) ** 2).sum())
    Z = np.concatenate(parts).astype(np.float32, copy=False)
    adata.obsm[names.obsm] = Z
    written = [f"obsm[{names.obsm!r}], the structured layer's activations"]
    pattern = re.compile(rf"^{re.escape(prefix)}(_\d+)?$")
    stale = [c for c in adata.obs.columns if pattern.match(str(c))]
    if stale:
        adata.obs.drop(columns=stale, inplace=True)
    adata.uns.pop(f"{prefix}_colors", None)  # scanpy's colours of an older module column
    for key in (names.varm, names.varm_modules):
        if key in adata.varm:
            del adata.varm[key]
    info: dict[str, Any] = {
        "params": {**_params(est), **input_params},
        "keys": names.as_dict(),
        "structured_layer": est.layer_,
        "n_units": int(Z.shape[1]),
        "n_epochs": int(est.n_iter_),
        "n_steps": int(est.n_steps_),
        "seed": int(est.seed_),
        "mse": sq_error / (n * rows.shape[1]),
        "history": _history(est.history_, est.layer_),
    }
    if getattr(est, "budget_report_", None) is not None:
        info["budget"] = _h5ad_tree(est.budget_report_)
    if est.graph_ is not None:
        info["graph"] = _graph_dict(est.graph_)
    if est.coactivation_ is not None and est.coactivation_.history:
        hist = est.coactivation_.history
        info["graph_history"] = {
            "step": np.array([step for step, _ in hist], dtype=np.int64),
            "n_edges": np.array([g.n_edges for _, g in hist], dtype=np.int64),
            "n_components": np.array([g.components()[0] for _, g in hist], dtype=np.int64),
        }
    if est.modules_ is not None:
        labels = np.asarray(est.modules_, dtype=np.int64)
        ids = np.unique(labels)
        activity = analysis.module_activity(Z, labels).astype(np.float32)
        columns = [f"{prefix}_{i}" for i in ids]
        for j, column in enumerate(columns):
            adata.obs[column] = activity[:, j]
        info["modules"] = labels
        info["n_modules"] = int(ids.size)
        info["module_sizes"] = np.bincount(labels).astype(np.int64)
        info["module_columns"] = np.array(columns, dtype=object)
        written.append(f"obs[{prefix + '_<i>'!r}], each module's mean activity")
        if ids.size > 1 and (activity.std(axis=0) > 0).any():
            pred = analysis.indicate_clusters(Z, labels)
            used = np.unique(pred)  # categories in module order, only those indicated
            adata.obs[prefix] = pd.Categorical(pred.astype(str), categories=used.astype(str))
            written.append(f"obs[{prefix!r}], the module each cell drives most")
    if loadings_method is not None and input_params["input"] != "obsm":
        info["loadings"] = loadings_method
        written += _write_loadings(adata, est, rows, Z, names, loadings_method)
    adata.uns[names.uns] = info
    written.append(f"uns[{names.uns!r}], parameters, graph, modules and history")
    return written


def _write_loadings(
    adata: AnnData, est: GSRAutoencoder, rows: Rows, Z: np.ndarray, names: Keys, method: str
) -> list[str]:
    """``varm[names.varm]`` (n_vars, n_units) and, with modules, ``varm[names.varm_modules]``
    (n_vars, n_modules) float32 loadings (:mod:`gsreg.sc._loadings`)."""
    units = loadings(est, rows, Z, method)
    adata.varm[names.varm] = units.astype(np.float32)
    written = [f"varm[{names.varm!r}], the units' gene loadings ({method})"]
    if est.modules_ is not None:
        per_module = module_loadings(est, rows, Z, est.modules_, units, method)
        adata.varm[names.varm_modules] = per_module.astype(np.float32)
        written.append(f"varm[{names.varm_modules!r}], the modules' gene loadings ({method})")
    return written


def _params(est: GSRAutoencoder) -> dict[str, Any]:
    """The estimator's parameters as h5ad-writable values; None values are left out (a
    missing key means None); the network ``layer`` is stored as ``structured_layer``."""
    out: dict[str, Any] = {}
    for key, value in est.get_params(deep=False).items():
        key = {"layer": "structured_layer"}.get(key, key)
        value = _h5ad_value(value)
        if value is not None:
            out[key] = value
    return out


def _h5ad_value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Graph):
        return value.name
    if isinstance(value, np.random.RandomState):
        return None
    if isinstance(value, dict):
        items = {str(k): _h5ad_value(v) for k, v in value.items()}
        return {k: v for k, v in items.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return np.asarray(value)
    return value


def _graph_dict(graph: Graph) -> dict[str, Any]:
    """A graph as arrays: ``edges`` (E, 2) int64, ``weights`` (E,), ``coords`` (n, 2),
    ``n_nodes``, ``name`` and, for image-like graphs, ``shape`` (2,)."""
    out: dict[str, Any] = {
        "name": graph.name,
        "n_nodes": int(graph.n_nodes),
        "edges": np.array(graph.edges, dtype=np.int64).reshape(-1, 2),
        "weights": np.array(graph.weights, dtype=np.float64),
        "coords": np.array(graph.coords, dtype=np.float64),
    }
    if graph.shape is not None:
        out["shape"] = np.array(graph.shape, dtype=np.int64)
    return out


def graph_from_uns(info: dict[str, Any]) -> Graph:
    """The graph stored by :func:`_graph_dict` (also after an h5ad round trip)."""
    g = info["graph"]
    shape = g.get("shape")
    return Graph(
        int(g["n_nodes"]),
        np.asarray(g["edges"], dtype=np.int64).reshape(-1, 2),
        np.asarray(g["weights"], dtype=np.float64),
        np.asarray(g["coords"], dtype=np.float64),
        name=str(g["name"]),
        shape=None if shape is None else tuple(int(s) for s in shape),
    )


def _history(history: History, layer: str) -> dict[str, np.ndarray]:
    """Per-epoch metrics as float arrays (NaN where an epoch lacks one). The GSR logs lose
    their ``gsr/<layer>`` prefix: ``gsr`` (penalty), ``act_rms``, ``weight``,
    ``components``."""
    keys = list(dict.fromkeys(k for record in history.epochs for k in record))
    out = {}
    for key in keys:
        name = key
        if key == f"gsr/{layer}":
            name = "gsr"
        elif key.startswith(f"gsr/{layer}/"):
            name = key[len(f"gsr/{layer}/") :]
        name = name.replace("/", "_")
        values = [r.get(key) for r in history.epochs]
        out[name] = np.array([np.nan if v is None else float(v) for v in values])
    if "epoch" in out:
        out["epoch"] = out["epoch"].astype(np.int64)
    return out
