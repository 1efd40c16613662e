"""Neuron modules on blood cells: do a learned graph's components indicate cell types?

Data: scanpy's ``pbmc68k_reduced`` (700 peripheral blood mononuclear cells, 765 genes,
``obs["bulk_labels"]``: 10 cell types). An autoencoder learns the graph of a 64-unit
layer from the layer's own co-activations (:class:`gsreg.CoactivationGraph`, the
``"gsreg"`` setting of :mod:`gsreg.experiments.cluster_indication`: graphs from a buffer
of many batches, z-scored co-activation profiles, kNN, updated all run long) while GSR
smooths the layer on it. The connected components of the final graph are the neuron
modules; every cell is assigned to the module it drives most
(:func:`gsreg.analysis.indicate_clusters`), and that assignment is scored against the
cell types (ARI, NMI) and against a coarser grouping (:data:`COARSE_GROUPS`).

Which matrix the autoencoder reads: ``adata.X``, each gene scaled to about zero mean and
unit variance (over these 700 cells the gene means lie within 0.1 of 0, the standard
deviations between 0.57 and 1.40). ``adata.raw`` holds the log-normalised values of the
same 765 genes (this reduced object keeps no others). On the scaled matrix every gene
weighs about the same in the reconstruction loss, so the lowly expressed genes that set
small populations apart count as much as the highly expressed ones; the controls that
cluster the input read the same matrix, so both see the same numbers. On the tuning seeds
both matrices gave modules of about the same quality (see :class:`PbmcConfig`). The marker-gene
correlations use the log-normalised values: they are the expression levels.

Read-outs: the module x cell-type table of mean module activity, the Pearson
correlation of every neuron with the usual PBMC marker genes (neurons ordered by
module), and the controls on the same cells (``analysis.module_controls``, as
many groups as the GSR run found modules): the neurons of the same autoencoder trained
at lambda = 0 (with the same weight-0 learned graph attached: it shows whether the graph
falls apart without the penalty) clustered into modules after training and read out the
same way, the cells clustered on that layer and on the input matrix (k-means and
Leiden), and a permutation null of the module ARI. The verdict says whether the modules
beat the best control against the cell types. The cost: the test MSE on held-out cells
against that lambda = 0 model.

The 10 labels are "bulk" labels (Zheng et al. 2017): each cell got the label of the
purified reference population whose expression profile its own resembled most. Several
populations overlap strongly (five T-cell subsets: CD4+/CD25 T Reg, CD4+/CD45RO+ memory,
CD4+/CD45RA+/CD25- naive, CD8+ cytotoxic and CD8+/CD45RA+ naive cytotoxic), so no
unsupervised clustering can be expected to separate all 10; the coarse grouping pools
them.

    from gsreg.experiments import pbmc
    metrics = pbmc.run(pbmc.PbmcConfig.quick(), "runs/pbmc", device="cpu")
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from sklearn.base import clone

from .. import analysis, plotting
from ..coactivation import CoactivationGraph
from ..datasets.pbmc import (
    COARSE_GROUPS,
    MATRICES,
    PbmcData,
    load_pbmc,
    scale_inputs,
    split,
)
from ..estimators import GSRAutoencoder
from ..models import GraphLayerAutoencoder
from ..regularizer import GraphRegularizer
from ..report import RunFolder, Section, prose
from ..training import evaluate, fit, seeded
from . import _cluster_report as cr
from ._config import check_config, tuple_fields
from ._training import one_thread
from ._verdicts import MSE_CLOSE, MSE_WRECKED, WRECKED, reconstruction_cost

TITLE = "Neuron modules on blood cells (pbmc68k_reduced)"

#: the usual PBMC marker genes and the cells they mark
MARKER_CELLS = {
    "CD3E": "T",
    "CD8A": "CD8 T",
    "IL7R": "CD4 T",
    "MS4A1": "B",
    "CD79A": "B",
    "CD14": "monocyte",
    "LYZ": "myeloid",
    "FCGR3A": "NK, FCGR3A+ monocyte",
    "NKG7": "NK",
    "GNLY": "NK",
    "PPBP": "megakaryocyte",
    "FCER1A": "dendritic",
    "CST3": "myeloid, dendritic",
    "HBB": "erythrocyte",
}

#: clusterings compared with the cell types, in figure order: GSR, then its controls
METHODS = ("gsr", *analysis.MODULE_CONTROLS)
#: how many groups each control gets in this experiment
K_RULE = "as many groups as the GSR run found modules"
#: mean indication score from which a module points clearly to a cell type
CLEAR_SCORE = 1.0
#: the layer of :class:`GraphLayerAutoencoder` that carries the learned graph
LAYER = GraphLayerAutoencoder.layer
#: the figures a run writes: ``{key: file stem}`` (``figures/<stem>.png``)
FIGURES = {
    "cells": "cells_pca",
    "types": "modules_by_cell_type",
    "markers": "neurons_by_marker",
    "ari": "ari_by_seed",
}


def method_labels() -> dict[str, str]:
    """Plain names of the clusterings of :data:`METHODS`."""
    return {"gsr": "GSR modules (indicated)", **analysis.MODULE_CONTROL_LABELS}


# --------------------------------------------------------------------------- statistics


def indication_table(activity: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean indication score of each module per class: ``(table (M, C), class_ids (C,))``.

    A cell's score for module m is ``(a_m - median_m) / sd_m``: its module activity
    ``activity`` (N, M) minus the module's median over the N cells, over the module's
    standard deviation (the score :func:`gsreg.analysis.indicate_clusters` assigns by;
    a module that never varies scores 0). ``table[m, c]`` averages it over the cells of
    class ``class_ids[c]`` (sorted).
    """
    activity = np.asarray(activity, dtype=np.float64)
    spread = activity.std(axis=0)
    score = (activity - np.median(activity, axis=0)) / np.where(spread > 0, spread, np.inf)
    maps, class_ids = analysis.class_maps(score, classes, return_classes=True)
    return maps.T, class_ids


def mean_predictor_mse(X_train: np.ndarray, X_test: np.ndarray) -> float:
    """MSE on X_test (N, d) of predicting every gene's mean over X_train (M, d): the error
    of a model that has learnt nothing about the cells."""
    mean = np.asarray(X_train, dtype=np.float64).mean(axis=0)
    return float(np.mean((np.asarray(X_test, dtype=np.float64) - mean) ** 2))


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class PbmcConfig:
    """Everything that defines a run; written to ``config.json``.

    ``matrix``: the autoencoder's input, ``"X"`` (scaled, the default) or ``"raw"``
    (log-normalised). Seeds ``seed .. seed + n_seeds - 1`` each draw a stratified split
    (``test_fraction`` of the cells held out for the test MSE), the initial weights and
    the batch order; the modules are read on all cells (the labels are never used in
    training, and clusterings see every cell too).

    Model: :class:`GraphLayerAutoencoder` ``genes -> hidden -> width (LeakyReLU, learned
    graph) -> Gaussian noise -> hidden -> genes`` on inputs centred per gene and divided
    by one common scale (training cells only); Adam, ``epochs`` of ``batch_size``. The
    graph: kNN (``k``) of the neurons' z-scored activation profiles over a buffer of
    ``buffer_size`` samples, first built at step ``warmup_steps`` and rebuilt every
    ``update_every`` steps, normalised Laplacian, weight ``weight``.

    How the settings were chosen: on seeds 100-102 only (never on the reported ones),
    mean ARI against the bulk labels and test MSE ratio (scaled input unless said):
    λ = 0.01 (k = 5): 0.55, 1.01x; λ = 0.03: 0.49, 1.02x; λ = 0.1: 0.42, 1.04x (3-4
    modules); λ = 0.3 and 1: the graph stays connected (one module); λ = 0.1 with k = 10:
    2-3 modules, 0.20; with k = 3: 0.30; 100 units: 0.31. Log-normalised input: 0.47
    (λ = 0.01), 0.51 (λ = 0.03). Latent noise 0.5 was taken because without it (or weight
    decay) the autoencoder overfits the 560 training cells: its test MSE was no better
    than predicting each gene's mean. At λ = 0 the learned graph stayed connected.
    """

    matrix: str = "X"
    n_seeds: int = 10
    test_fraction: float = 0.2
    width: int = 64
    hidden: int = 50
    noise: float = 0.5
    weight: float = 0.01
    k: int = 5
    warmup_steps: int = 300
    update_every: int = 100
    buffer_size: int = 1024
    epochs: int = 200
    batch_size: int = 64
    lr: float = 1e-3
    n_pcs: int = 50
    defaults_epochs: int | None = None  # of the defaults' read-out; None: "auto"
    markers: tuple[str, ...] = tuple(MARKER_CELLS)
    seed: int = 0

    def __post_init__(self) -> None:
        tuple_fields(self)
        check_config(
            "PbmcConfig",
            n_seeds=(self.n_seeds, "positive_int"),
            width=(self.width, "positive_int"),
            hidden=(self.hidden, "positive_int"),
            noise=(self.noise, "non_negative"),
            weight=(self.weight, "positive"),
            k=(self.k, "positive_int"),
            warmup_steps=(self.warmup_steps, "positive_int"),
            update_every=(self.update_every, "positive_int"),
            buffer_size=(self.buffer_size, "positive_int"),
            epochs=(self.epochs, "positive_int"),
            batch_size=(self.batch_size, "positive_int"),
            lr=(self.lr, "positive"),
            n_pcs=(self.n_pcs, "positive_int"),
            defaults_epochs=(self.defaults_epochs, "optional_positive_int"),
        )
        if self.matrix not in MATRICES:
            raise ValueError(f"PbmcConfig.matrix must be one of {MATRICES}, got {self.matrix!r}")
        if not (isinstance(self.test_fraction, float) and 0 < self.test_fraction < 0.5):
            raise ValueError(
                f"PbmcConfig.test_fraction must be a float in (0, 0.5), got {self.test_fraction!r}"
            )
        if self.k >= self.width:
            raise ValueError(f"PbmcConfig.k must be < width ({self.width}), got {self.k}")
        if not self.markers or not all(isinstance(g, str) for g in self.markers):
            raise ValueError(f"PbmcConfig.markers must be gene names, got {self.markers!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"PbmcConfig.seed must be an int >= 0, got {self.seed!r}")

    @classmethod
    def quick(cls, **overrides) -> PbmcConfig:
        """Seconds: one seed, 80 epochs, the graph built from step 150 on."""
        quick = {
            "n_seeds": 1,
            "epochs": 80,
            "warmup_steps": 150,
            "update_every": 50,
            "defaults_epochs": 40,
        }
        return cls(**{**quick, **overrides})

    @property
    def seeds(self) -> tuple[int, ...]:
        """The reported seeds: ``seed, seed + 1, ..., seed + n_seeds - 1``."""
        return tuple(range(self.seed, self.seed + self.n_seeds))


# --------------------------------------------------------------------------- data


# --------------------------------------------------------------------------- training


def train_model(
    Xs: np.ndarray,
    train: np.ndarray,
    config: PbmcConfig,
    weight: float,
    seed: int,
    device: str,
    progress: bool,
) -> tuple[torch.nn.Module, CoactivationGraph]:
    """The autoencoder trained on ``Xs[train]`` with the learned graph at ``weight``.

    At weight 0 the graph is still learnt from the layer (it observes every batch) but
    does not act on training: the model is exactly the one trained without it.
    """
    with seeded(seed):
        model = GraphLayerAutoencoder(Xs.shape[1], config.width, config.hidden, config.noise)
        learned = CoactivationGraph(
            kernel="knn",
            k=config.k,
            features="standardized",
            warmup_steps=config.warmup_steps,
            update_every=config.update_every,
            buffer_size=config.buffer_size,
            laplacian="normalized",
            on_disconnect="continue",
        )
        reg = GraphRegularizer(model, {LAYER: learned}, weight=weight)
        try:
            fit(
                model,
                Xs[train],
                regularizer=reg,
                epochs=config.epochs,
                batch_size=config.batch_size,
                lr=config.lr,
                seed=seed,
                device=device,
                progress=progress,
                desc=f"pbmc λ={weight:g} seed {seed}",
            )
        finally:
            reg.remove()
        return model, learned


def pca_scores(X: np.ndarray, n_pcs: int) -> np.ndarray:
    """(N, n_pcs) principal-component scores of X (N, G) (exact SVD, deterministic)."""
    from sklearn.decomposition import PCA

    n = min(n_pcs, *X.shape)
    return PCA(n_components=n, svd_solver="full").fit_transform(X.astype(np.float64))


def module_labels(learned: CoactivationGraph) -> np.ndarray:
    """(n,) neuron modules of the final graph (one module when no graph was built)."""
    if learned.graph is None:
        return np.zeros(learned.n_nodes, dtype=np.int64)
    return analysis.modules(learned.graph)


def indicate(Z: np.ndarray, modules: np.ndarray) -> np.ndarray:
    """(N,) the module each cell drives most; all cells in module 0 when there is one."""
    if modules.max() == 0:
        return np.zeros(len(Z), dtype=np.int64)
    return analysis.indicate_clusters(Z, modules)


def scores(pred: np.ndarray, data: PbmcData) -> dict[str, float]:
    """ARI, NMI and purity of a clustering (N,) against the cell types and the coarse
    groups (keys with ``_coarse``)."""
    fine = analysis.cluster_scores(pred, data.cell_types)
    coarse = analysis.cluster_scores(pred, data.coarse)
    return {**fine, **{f"{key}_coarse": value for key, value in coarse.items()}}


#: groups of the PCA controls of the defaults' target: one per cell type
DEFAULTS_K = len(COARSE_GROUPS)
#: the defaults' target allows at most this test MSE, as a multiple of that at λ = 0
DEFAULTS_MSE_RATIO = 1.05


def defaults_seed(
    data: PbmcData, pcs: np.ndarray, config: PbmcConfig, seed: int, epochs: int | str = "auto"
) -> dict:
    """What ``gsreg.sc.fit(adata)`` gives with its defaults (``GSRAutoencoder(graph=
    "learned")``, the learned-graph recipe) on this seed's training cells, scored on every cell
    against the cell types beside the two controls of its target, k-means (k =
    :data:`DEFAULTS_K`) and Leiden (as many groups) on the PCA scores, and its test MSE
    against its weight=0 twin."""
    train, test = split(data.cell_types, config.test_fraction, seed)
    est = GSRAutoencoder(graph="learned", epochs=epochs, random_state=seed, device="cpu")
    est.fit(data.X[train])
    twin = clone(est).set_params(weight=0.0, arrange=False).fit(data.X[train])
    modules = np.zeros(est.n_structured, dtype=np.int64) if est.modules_ is None else est.modules_
    pred = indicate(est.activations(data.X), modules)
    controls = {"pca_kmeans": analysis.cluster_samples(pcs, DEFAULTS_K, "kmeans", seed)}
    if analysis.leiden_available():
        controls["pca_leiden"] = analysis.cluster_samples(pcs, DEFAULTS_K, "leiden", seed)
    mse, mse0 = -est.score(data.X[test]), -twin.score(data.X[test])
    return {
        "n_modules": int(modules.max()) + 1,
        "ari": scores(pred, data)["ari"],
        "controls": {k: scores(v, data)["ari"] for k, v in controls.items()},
        "mse_ratio": mse / mse0,
        "budget": est.budget_report_,
        "epochs": est.n_iter_,
    }


def defaults_summary(rows: list[dict]) -> dict:
    """Mean ARI, controls and MSE ratio of :func:`defaults_seed` over seeds, and whether the
    target is met: ARI at least each control's, MSE at most :data:`DEFAULTS_MSE_RATIO`
    times that at λ = 0."""
    ari = float(np.mean([r["ari"] for r in rows]))
    controls = {k: float(np.mean([r["controls"][k] for r in rows])) for k in rows[0]["controls"]}
    ratio = float(np.mean([r["mse_ratio"] for r in rows]))
    return {
        "ari": ari,
        "controls": controls,
        "mse_ratio": ratio,
        "n_modules": [r["n_modules"] for r in rows],
        "met": all(ari >= c for c in controls.values()) and ratio <= DEFAULTS_MSE_RATIO,
        "seeds": rows,
    }


def run_seed(
    data: PbmcData,
    config: PbmcConfig,
    seed: int,
    device: str,
    progress: bool,
) -> dict:
    """Train both models of one seed and score GSR's modules and their controls (None for
    a control that was not run); keys starting with ``_`` hold arrays for the figures."""
    start = time.perf_counter()
    train, test = split(data.cell_types, config.test_fraction, seed)
    Xs, scale = scale_inputs(data.X, train)
    model, learned = train_model(Xs, train, config, config.weight, seed, device, progress)
    model0, learned0 = train_model(Xs, train, config, 0.0, seed, device, progress)
    Z = analysis.activations(model, Xs, LAYER)
    Z0 = analysis.activations(model0, Xs, LAYER)
    modules = module_labels(learned)
    n_modules = int(modules.max()) + 1
    indicated = indicate(Z, modules)
    predictions = {"gsr": indicated, **analysis.module_control_labels(Z0, data.X, n_modules, seed)}
    null = analysis.module_null(Z, modules, data.cell_types, seed)
    mse, mse0 = (evaluate(m, Xs[test])["mse"] * scale**2 for m in (model, model0))
    return {
        "seed": seed,
        "n_modules": n_modules,
        "module_sizes": np.bincount(modules).tolist(),
        "components_without_gsr": int(module_labels(learned0).max()) + 1,
        "graph_updates": learned.n_updates,
        "scores": {
            method: None if pred is None else scores(pred, data)
            for method, pred in predictions.items()
        },
        "null": null,
        "indicated": len(np.unique(indicated)),
        "test_mse": mse,
        "test_mse_no_gsr": mse0,
        "test_mse_mean_predictor": mean_predictor_mse(data.X[train], data.X[test]),
        **reconstruction_cost(mse, mse0),
        "seconds": time.perf_counter() - start,
        "_Z": Z,
        "_modules": modules,
        "_indicated": indicated,
    }


# --------------------------------------------------------------------------- run


def run(config: PbmcConfig, out: str, device: str = "auto", progress: bool = True) -> dict:
    """Train and measure every seed, write ``out/``; returns the metrics."""
    folder = RunFolder(out)
    data = load_pbmc(config.matrix)
    with one_thread():
        pcs = pca_scores(data.X, config.n_pcs)
        rows = [run_seed(data, config, seed, device, progress) for seed in config.seeds]
        defaults = defaults_summary(
            [
                defaults_seed(data, pcs, config, seed, config.defaults_epochs or "auto")
                for seed in config.seeds
            ]
        )
    typical = _typical(rows)
    markers = [g for g in config.markers if g in data.genes]
    detail = _typical_detail(typical, data, markers)
    metrics = _metrics(config, data, rows, typical, detail, markers)
    metrics["defaults"] = defaults
    folder.write_json("config.json", dataclasses.asdict(config))
    folder.write_metrics(metrics)
    plots = {
        "cells": lambda: _plot_cells(pcs, data, typical),
        "types": lambda: _plot_module_types(detail),
        "markers": lambda: _plot_markers(detail, markers),
        "ari": lambda: _plot_ari(config, metrics),
    }
    figures = {key: folder.save_figure(plots[key](), stem) for key, stem in FIGURES.items()}
    folder.write_report(TITLE, _sections(config, metrics, figures))
    return metrics


def _typical(rows: list[dict]) -> dict:
    """The seed at the (lower) median ARI of the GSR modules against the cell types."""
    order = sorted(rows, key=lambda r: r["scores"]["gsr"]["ari"])
    return order[(len(order) - 1) // 2]


def _typical_detail(row: dict, data: PbmcData, markers: list[str]) -> dict:
    """What the module and marker figures of the typical seed show (JSON-able parts and
    ``_``-prefixed arrays)."""
    Z, modules = row["_Z"], row["_modules"]
    table, module_ids, classes = analysis.module_class_table(Z, modules, data.cell_types)
    activity = analysis.module_activity(Z, modules)
    scores_, _ = indication_table(activity, data.cell_types)
    columns = [data.genes.index(g) for g in markers]
    corr = analysis.column_correlations(Z, data.expression[:, columns])
    order = np.lexsort((np.arange(len(modules)), modules))
    summary = []
    for m in module_ids:
        mean_r = _mean_over_varying(corr[modules == m])
        best = int(np.nanargmax(mean_r)) if np.isfinite(mean_r).any() else None
        top = int(np.argmax(scores_[m]))
        summary.append(
            {
                "module": int(m),
                "size": int(np.sum(modules == m)),
                "top_cell_type": str(classes[top]),
                "top_score": float(scores_[m, top]),
                "top_marker": None if best is None else markers[best],
                "top_marker_r": None if best is None else float(mean_r[best]),
            }
        )
    return {
        "seed": row["seed"],
        "classes": [str(c) for c in classes],
        "module_cell_type_activity": table,
        "module_cell_type_score": scores_,
        "modules": summary,
        "_corr": corr[order],
        "_neuron_modules": modules[order],
        "_module_ids": module_ids,
    }


def _mean_over_varying(corr: np.ndarray) -> np.ndarray:
    """(q,) mean over rows of corr (p, q), skipping NaN (neurons that never vary); NaN for
    a column without any value."""
    finite = np.isfinite(corr)
    total = np.where(finite, corr, 0.0).sum(axis=0)
    count = finite.sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _metrics(config, data, rows, typical, detail, markers) -> dict:
    public_rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    mse = float(np.mean([r["test_mse"] for r in rows]))
    mse0 = float(np.mean([r["test_mse_no_gsr"] for r in rows]))
    labels = method_labels()
    methods = {
        m: {"label": labels[m], **_mean_scores([r["scores"][m] for r in rows])} for m in METHODS
    }
    louvain = scores(data.louvain, data)
    cost = reconstruction_cost(mse, mse0)
    counts = dict(zip(*np.unique(data.cell_types, return_counts=True), strict=True))
    return {
        "data": {
            "name": "pbmc68k_reduced",
            "matrix": config.matrix,
            "n_cells": len(data.X),
            "n_genes": len(data.genes),
            "cell_types": {str(k): int(v) for k, v in counts.items()},
            "coarse_groups": dict(COARSE_GROUPS),
            "markers": markers,
            "markers_missing": [g for g in config.markers if g not in data.genes],
        },
        "seeds": public_rows,
        "methods": methods,
        "louvain": louvain,
        "n_modules": [r["n_modules"] for r in rows],
        "components_without_gsr": [r["components_without_gsr"] for r in rows],
        "test_mse": mse,
        "test_mse_no_gsr": mse0,
        "test_mse_mean_predictor": float(np.mean([r["test_mse_mean_predictor"] for r in rows])),
        "cost": cost,
        "controls": {
            "k": K_RULE,
            "labels": dict(analysis.MODULE_CONTROL_LABELS),
            "permutations": analysis.NULL_PERMUTATIONS,
            "p_level": analysis.P_LEVEL,
            "leiden": analysis.leiden_available(),
            "raw_input": f"adata.{config.matrix}",
        },
        "verdict": analysis.module_verdict(_verdict_rows(rows), cost["mse_ratio"]),
        "typical": {k: v for k, v in detail.items() if not k.startswith("_")},
    }


def _verdict_rows(rows: list[dict]) -> list[dict]:
    """The seeds as ``analysis.module_verdict`` reads them: ARI against the cell types."""
    return [
        {
            "ari": r["scores"]["gsr"]["ari"],
            "components": r["n_modules"],
            "controls": {
                "k": r["n_modules"],
                **r["null"],
                "indicated": r["indicated"],
                **{
                    m: None if r["scores"][m] is None else r["scores"][m]["ari"]
                    for m in analysis.MODULE_CONTROLS
                },
            },
        }
        for r in rows
    ]


def _mean_scores(per_seed: list[dict | None]) -> dict[str, float | None]:
    """Mean and standard deviation (ddof 1; 0 for one seed) over seeds of every score,
    seeds without scores (None) left out; None when no seed has them."""
    kept = [s for s in per_seed if s is not None]
    out: dict[str, float | None] = {}
    for key in SCORE_KEYS:
        values = np.array([s[key] for s in kept])
        out[f"{key}_mean"] = float(values.mean()) if len(values) else None
        out[f"{key}_sd"] = (
            float(values.std(ddof=1)) if len(values) > 1 else (0.0 if len(values) else None)
        )
    return out


#: the scores of every clustering (:func:`scores`)
SCORE_KEYS = ("ari", "nmi", "purity", "ari_coarse", "nmi_coarse", "purity_coarse")


def headline(metrics: dict) -> dict[str, str]:
    """The numbers an index page shows."""
    gsr = metrics["methods"]["gsr"]
    counts = metrics["n_modules"]
    cost = metrics["cost"]
    return {
        "GSR modules ARI (cell types / coarse groups)": (
            f"{gsr['ari_mean']:.2f} ± {gsr['ari_sd']:.2f} / "
            f"{gsr['ari_coarse_mean']:.2f} ± {gsr['ari_coarse_sd']:.2f}"
        ),
        "vs best control": cr.verdict_entry(metrics["verdict"]),
        "modules found": f"{min(counts)}-{max(counts)} (median {np.median(counts):g})",
        "test MSE vs λ = 0": f"{cost['mse_ratio']:.2f}x ({cost['verdict']})",
        **(
            {"gsreg.sc.fit defaults": defaults_sentence(metrics["defaults"])}
            if "defaults" in metrics
            else {}
        ),
    }


def defaults_sentence(d: dict) -> str:
    """The defaults' target in a few words."""
    controls = ", ".join(f"{DEFAULTS_LABELS[k]} {v:.2f}" for k, v in d["controls"].items())
    return (
        f"module ARI {d['ari']:.2f} vs {controls}, at {d['mse_ratio']:.2f}x MSE: target "
        f"{'met' if d['met'] else 'missed'}"
    )


DEFAULTS_LABELS = {
    "pca_kmeans": f"PCA + k-means (k = {DEFAULTS_K})",
    "pca_leiden": "Leiden on PCA neighbours",
}


# --------------------------------------------------------------------------- figures


def _plot_cells(pcs: np.ndarray, data: PbmcData, row: dict) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.6), layout="constrained")
    panels = [
        (axes[0], data.cell_types, "cell type (bulk label)"),
        (
            axes[1],
            np.array([f"module {m}" for m in row["_indicated"]]),
            f"indicated module (seed {row['seed']})",
        ),
    ]
    for ax, labels, title in panels:
        names, codes = np.unique(labels, return_inverse=True)
        cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
        ax.scatter(pcs[:, 0], pcs[:, 1], c=[cmap(c % cmap.N) for c in codes], s=7, lw=0)
        handles = [Patch(color=cmap(i % cmap.N), label=n) for i, n in enumerate(names)]
        ax.legend(
            handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False
        )
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        ax.set_title(title, fontsize=10)
    return fig


def _plot_module_types(detail: dict) -> plt.Figure:
    classes, ids = detail["classes"], detail["_module_ids"]
    sizes = {m["module"]: m["size"] for m in detail["modules"]}
    fig, axes = plt.subplots(1, 2, figsize=(15, 1.9 + 0.45 * len(ids)), layout="constrained")
    panels = (
        ("module_cell_type_activity", "mean module activity", "mean activity"),
        (
            "module_cell_type_score",
            "mean indication score: (activity − module median) / module sd",
            "mean score",
        ),
    )
    for ax, (key, title, unit) in zip(axes, panels, strict=True):
        plotting.plot_module_class_heatmap(detail[key], ids, classes, ax=ax)
        fig.axes[-1].set_ylabel(unit)  # the colour bar just added
        ax.set_yticks(range(len(ids)), [f"module {m} ({sizes[m]} n.)" for m in ids])
        ax.set_xlabel("cell type")
        ax.set_title(title, fontsize=10)
    return fig


def _plot_markers(detail: dict, markers: list[str]) -> plt.Figure:
    corr, modules = detail["_corr"], detail["_neuron_modules"]
    fig, ax = plt.subplots(figsize=(2.5 + 0.45 * max(1, len(markers)), 7.5), layout="constrained")
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.8")
    image = ax.imshow(
        np.ma.masked_invalid(corr),
        cmap=cmap,
        vmin=-1,
        vmax=1,
        aspect="auto",
        interpolation="nearest",
    )
    bounds = np.flatnonzero(np.diff(modules)) + 0.5
    for y in bounds:
        ax.axhline(y, color="black", lw=0.8)
    edges = np.concatenate([[-0.5], bounds, [len(modules) - 0.5]])
    centres = (edges[:-1] + edges[1:]) / 2
    ax.set_yticks(centres, [f"module {m}" for m in np.unique(modules)], fontsize=8)
    ax.set_xticks(
        range(len(markers)),
        [f"{g}\n({MARKER_CELLS.get(g, '')})" for g in markers],
        rotation=60,
        ha="right",
        fontsize=7,
    )
    ax.set_ylabel("neurons of the learned-graph layer, grouped by module")
    ax.set_title(f"Pearson r, neuron vs marker gene (seed {detail['seed']})", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.6, label="r")
    return fig


def _plot_ari(config: PbmcConfig, metrics: dict) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained", sharey=True)
    labels = method_labels()
    seeds = metrics["seeds"]
    colours = plt.get_cmap("tab10")
    n_types = len(metrics["data"]["cell_types"])
    for ax, key, title in (
        (axes[0], "ari", f"against the {n_types} cell types"),
        (axes[1], "ari_coarse", "against the coarse groups"),
    ):
        for x, method in enumerate(METHODS):
            values = [s["scores"][method][key] for s in seeds if s["scores"][method]]
            if not values:
                continue
            jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else [0.0]
            ax.scatter(
                x + np.asarray(jitter),
                values,
                s=22,
                zorder=3,
                c=[colours(i % 10) for i in range(len(values))],
            )
            ax.hlines(np.mean(values), x - 0.3, x + 0.3, color="black", lw=1.5)
        ax.axhline(metrics["louvain"][key], color="grey", ls=":", lw=1)
        ax.set_xticks(
            range(len(METHODS)), [labels[m] for m in METHODS], rotation=25, ha="right", fontsize=8
        )
        ax.set_title(f"ARI {title}", fontsize=10)
    axes[0].set_ylabel("adjusted Rand index")
    handles = [Patch(color=colours(i % 10), label=f"seed {s['seed']}") for i, s in enumerate(seeds)]
    handles.append(Line2D([], [], color="black", lw=1.5, label="mean over seeds"))
    handles.append(
        Line2D([], [], color="grey", ls=":", lw=1, label="Louvain clusters shipped with the data")
    )
    fig.legend(handles=handles, loc="outside right center", fontsize=8, frameon=False)
    return fig


# --------------------------------------------------------------------------- report


def _sections(config: PbmcConfig, metrics: dict, figures: dict[str, str]) -> list[Section]:
    typical = metrics["typical"]
    n_types = len(metrics["data"]["cell_types"])
    return [
        Section("Summary", text=_summary(config, metrics), table=_method_table(metrics)),
        Section(
            "The cells",
            text=_data_text(config, metrics),
            table=_coarse_table(metrics),
            figures=[figures["cells"]],
        ),
        Section(
            "Every seed",
            text=prose("pbmc/seeds.txt", n_types=n_types, close=MSE_CLOSE, wrecked=MSE_WRECKED),
            table=_seed_table(metrics),
        ),
        Section(
            "Modules against cell types",
            text=_module_text(typical),
            table=_module_table(typical),
            figures=[figures["types"]],
        ),
        Section(
            "Neurons against marker genes",
            text=prose("pbmc/markers.txt", missing=metrics["data"]["markers_missing"]),
            figures=[figures["markers"]],
        ),
        Section(
            "Controls",
            text=prose(
                "pbmc/controls.txt",
                rule=cr.controls_rule(K_RULE),
                n_types=n_types,
                verdict=_verdict_sentence(metrics),
            ),
            table=[cr.controls_row("all seeds", metrics["verdict"])],
        ),
        *([_defaults_section(metrics)] if "defaults" in metrics else []),
        Section(
            "ARI per seed", text=prose("pbmc/ari.txt", n_types=n_types), figures=[figures["ari"]]
        ),
    ]


def _defaults_section(metrics: dict) -> Section:
    """What ``gsreg.sc.fit(adata)`` gives with no other argument, against its target."""
    d = metrics["defaults"]
    rows = [
        {
            "clustering": "gsreg.sc.fit defaults (modules)",
            "ARI (cell types)": f"{d['ari']:.3f}",
            "MSE vs λ = 0": f"{d['mse_ratio']:.3f}x",
        }
    ]
    rows += [
        {"clustering": DEFAULTS_LABELS[k], "ARI (cell types)": f"{v:.3f}", "MSE vs λ = 0": "-"}
        for k, v in d["controls"].items()
    ]
    text = prose(
        "pbmc/defaults.txt",
        n_types=len(metrics["data"]["cell_types"]),
        k=DEFAULTS_K,
        mse_ratio=DEFAULTS_MSE_RATIO,
        counts=d["n_modules"],
        sentence=defaults_sentence(d),
        met=d["met"],
    )
    return Section("gsreg.sc.fit defaults", text=text, table=rows)


def _t_subsets() -> int:
    """How many of the bulk labels are T-cell subsets (coarse group T)."""
    return sum(group == "T" for group in COARSE_GROUPS.values())


def _summary(config: PbmcConfig, metrics: dict) -> str:
    return prose(
        "pbmc/summary.txt",
        n_seeds=config.n_seeds,
        weight=config.weight,
        counts=metrics["n_modules"],
        n_types=len(metrics["data"]["cell_types"]),
        without_gsr=metrics["components_without_gsr"],
        gsr=metrics["methods"]["gsr"],
        verdict=_verdict_sentence(metrics),
        t_subsets=_t_subsets(),
        metrics=metrics,
        cost=metrics["cost"],
        wrecked=metrics["cost"]["verdict"] == WRECKED,
    )


def _verdict_sentence(metrics: dict) -> str:
    """Whether the modules beat the best control against the cell types, in words."""
    return cr.verdict_sentence(metrics["verdict"], "Against the cell types, the GSR modules")


def _data_text(config: PbmcConfig, metrics: dict) -> str:
    return prose(
        "pbmc/data.txt",
        data=metrics["data"],
        matrix=config.matrix,
        test_fraction=config.test_fraction,
        n_types=len(metrics["data"]["cell_types"]),
        t_subsets=_t_subsets(),
    )


def _coarse_table(metrics: dict) -> list[dict]:
    counts = metrics["data"]["cell_types"]
    return [
        {"cell type": t, "cells": counts.get(t, 0), "coarse group": g}
        for t, g in COARSE_GROUPS.items()
    ]


def _method_table(metrics: dict) -> list[dict]:
    rows = [{"clustering": v["label"], **_score_cells(v)} for v in metrics["methods"].values()]
    louvain = metrics["louvain"]
    rows.append(
        {
            "clustering": "Louvain clusters shipped with the data (one clustering)",
            "ARI": f"{louvain['ari']:.2f}",
            "NMI": f"{louvain['nmi']:.2f}",
            "ARI coarse": f"{louvain['ari_coarse']:.2f}",
            "NMI coarse": f"{louvain['nmi_coarse']:.2f}",
        }
    )
    return rows


def _score_cells(v: dict) -> dict[str, str]:
    return {
        name: (
            "n/a" if v[key + "_mean"] is None else f"{v[key + '_mean']:.2f} ± {v[key + '_sd']:.2f}"
        )
        for name, key in (
            ("ARI", "ari"),
            ("NMI", "nmi"),
            ("ARI coarse", "ari_coarse"),
            ("NMI coarse", "nmi_coarse"),
        )
    }


def _seed_table(metrics: dict) -> list[dict]:
    return [
        {
            "seed": r["seed"],
            "modules (sizes)": f"{r['n_modules']} ({', '.join(map(str, r['module_sizes']))})",
            "components at λ = 0": r["components_without_gsr"],
            "ARI GSR (null p)": (
                f"{r['scores']['gsr']['ari']:.2f} ({cr.fmt(r['null']['p_value'], 3)})"
            ),
            **{
                f"ARI {analysis.MODULE_CONTROL_LABELS[m]}": cr.fmt(
                    r["scores"][m] and r["scores"][m]["ari"]
                )
                for m in analysis.MODULE_CONTROLS
            },
            "test MSE": f"{r['test_mse']:.3f}",
            "test MSE λ = 0": f"{r['test_mse_no_gsr']:.3f}",
            "ratio": f"{r['mse_ratio']:.2f}x",
            "primary task": r["verdict"],
        }
        for r in metrics["seeds"]
    ]


def _module_table(typical: dict) -> list[dict]:
    return [
        {
            "module": m["module"],
            "neurons": m["size"],
            "highest mean score in": f"{m['top_cell_type']} ({m['top_score']:.2f})",
            "most correlated marker (mean r over its neurons)": "n/a"
            if m["top_marker"] is None
            else f"{m['top_marker']} ({m['top_marker_r']:.2f})",
        }
        for m in typical["modules"]
    ]


def _module_text(typical: dict) -> str:
    """The typical seed's modules against the cell types: which point clearly to one."""
    clear = [
        {**m, "group": COARSE_GROUPS.get(m["top_cell_type"], "?")}
        for m in typical["modules"]
        if m["top_score"] >= CLEAR_SCORE
    ]
    pointed = {m["top_cell_type"] for m in clear}
    return prose(
        "pbmc/modules.txt",
        seed=typical["seed"],
        clear=clear,
        modules=typical["modules"],
        clear_score=CLEAR_SCORE,
        vague=[m["module"] for m in typical["modules"] if m["top_score"] < CLEAR_SCORE],
        missing=sorted(set(typical["classes"]) - pointed),
    )


__all__ = [
    "FIGURES",
    "MARKER_CELLS",
    "METHODS",
    "PbmcConfig",
    "headline",
    "indication_table",
    "mean_predictor_mse",
    "run",
    "run_seed",
    "train_model",
]
