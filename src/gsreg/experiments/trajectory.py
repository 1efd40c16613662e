"""Trajectories: does a line layer order its neurons along pseudotime, do learned graphs
separate branches?

Two branching data sets with known pseudotime, ``dla`` and ``krumsiek11``
(:mod:`gsreg.datasets.trajectory`; both need the ``sc`` extra).

A *lineage* is a stretch of samples ordered by pseudotime (a DLA branch; a krumsiek11
run, stem to fate); a *branch* is the label modules are compared with (DLA: the branch;
krumsiek11: the cell type, progenitor being the shared stem).

(a) Line layer. A dense autoencoder with a 10-neuron layer that carries GSR on
``graphs.path(10)``, two variants of it (as in the rotation experiment): ``plain``, the
linear bottleneck, and ``standardised``, the bottleneck standardised per neuron over the
batch and then per sample (BatchNorm then LayerNorm, no learned scales), which closes
the penalty's loopholes of shrinking and of the free constant mode. For every held-out
sample the position on the line is read as the most active neuron (:func:`peak_position`)
and as the centre of mass of the activity above the sample's mean
(:func:`centre_of_mass`); per lineage the Spearman correlation of position and
pseudotime (:func:`lineage_spearman`) says whether the line orders its neurons along
the trajectory. The median |rho| over lineages and restarts is compared with and
without GSR, beside a chance level, the same read-outs with the neurons put on the line
in random orders (:func:`shuffled_order_rho`: what the neurons' tuning gives without
their order), the λ = 0 layer's neurons arranged onto the line after training
(:func:`gsreg.analysis.arrangement` fitted on the training samples, scored on the
held-out ones), and a linear reference, the |rho| of each lineage's own first principal
component (:func:`reference_spearman`). The verdict: does the best GSR line (centre
read-out) beat the best of λ = 0 as trained, λ = 0 arranged and the shuffled chance?

(b) Learned graph. A 100-unit LeakyReLU layer (:class:`~gsreg.experiments.
models.GraphLayerAutoencoder`) learns its graph from co-activations
(:class:`gsreg.CoactivationGraph`, kNN on standardised activations, updated all run
long) while GSR smooths it; the components are neuron modules, each held-out sample is
assigned to the module it drives most (:func:`gsreg.analysis.indicate_clusters`) and the
assignment is scored against the branches (ARI, NMI). The same model without GSR gives
the controls (``analysis.module_controls``, as many groups as the GSR run found
modules): its neurons clustered into modules after training and read out the same way,
and the held-out samples clustered on its layer and on the raw input; beside them a
permutation null of the module ARI and the verdict. The co-activation graph of the model
without GSR, built after training, says whether the layer falls apart by itself.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.base import clone
from torch import nn

from .. import analysis, graphs, plotting
from ..coactivation import CoactivationGraph
from ..datasets.base import stratified_indices
from ..datasets.trajectory import KRUMSIEK_STEM, Trajectory, dla_tree, krumsiek11
from ..estimators import GSRAutoencoder
from ..models import GraphLayerAutoencoder
from ..regularizer import GraphRegularizer
from ..report import RunFolder, Section, prose
from ..training import evaluate, fit, seeded
from . import _cluster_report as cr
from ._config import check_config, tuple_fields
from ._labels import lambda_label
from ._training import LAYOUTS, LayoutVariant, bottleneck_autoencoder, layout_variants, one_thread
from ._verdicts import MSE_WRECKED, WRECKED, against_controls, reconstruction_cost, verdict_ending
from .cluster_indication import module_drivers

TITLE = "Trajectories: a line layer and a learned graph on branching data"
DATASETS = ("dla", "krumsiek11")
#: how much higher a median |rho| must be than at lambda = 0 to count as an improvement
IMPROVEMENT = 0.1
#: an unordered GSR line whose normalised Dirichlet energy is below this fraction of that
#: at lambda = 0 is said to meet the penalty with flatter profiles
FLATTER = 0.5
#: the key of the reference line variant: the plain line at lambda = 0
BASELINE_KEY = layout_variants((0.0,), ())[0].key
#: the figures a run writes: ``{key: file stem}`` (``figures/<stem>.png``)
FIGURES = {
    "data": "data",
    "peak": "peak_vs_pseudotime",
    "activity": "line_activity",
    "summary": "correlation_by_restart",
    "modules": "module_branch",
    "graph": "learned_graph",
}


# --------------------------------------------------------------------------- data


def load(name: str, config: TrajectoryConfig) -> Trajectory:
    """The data set ``name`` (one of :data:`DATASETS`) of a run."""
    if name == "dla":
        return dla_tree(
            config.dla_branches,
            config.dla_length,
            config.dla_dims,
            seed=config.seed,
            sigma=config.dla_sigma,
        )
    if name == "krumsiek11":
        return krumsiek11()
    raise ValueError(f"unknown data set {name!r}; expected one of {DATASETS}")


@dataclass(frozen=True, eq=False)
class Split:
    """A data set z-scored with its training statistics and split in two.

    ``train`` and ``test`` are sorted index arrays into the data set; ``X`` (N, d)
    float32 holds every sample, z-scored.
    """

    data: Trajectory
    X: np.ndarray
    train: np.ndarray
    test: np.ndarray


def split(data: Trajectory, test_fraction: float, seed: int) -> Split:
    """Hold out ``test_fraction`` of every lineage (at random, ``seed``); z-score features."""
    n_test = max(len(data.lineage_names), int(round(test_fraction * len(data.X))))
    test = stratified_indices(data.lineage, n_test, np.random.default_rng(seed))
    train = np.setdiff1d(np.arange(len(data.X)), test)
    mean, std = data.X[train].mean(axis=0), data.X[train].std(axis=0)
    X = (data.X - mean) / np.where(std > 0, std, 1.0)
    return Split(data, X.astype(np.float32), train, test)


# --------------------------------------------------------------------------- statistics


def peak_position(Z: np.ndarray) -> np.ndarray:
    """(N,) int64 index of the most active neuron of each row of Z (N, n) (lowest on ties)."""
    return np.asarray(Z).argmax(axis=1).astype(np.int64)


def centre_of_mass(Z: np.ndarray) -> np.ndarray:
    """(N,) position of each profile of Z (N, n) along the line of neurons 0..n-1.

    The activity above the profile's mean is the mass: ``w_k = max(z_k - mean(z), 0)``,
    position ``sum_k k w_k / sum_k w_k``. It is unchanged by adding a constant to a
    profile or scaling it, lies between neurons when the bump does, and is (n-1)/2
    (the middle) for a constant profile, which has no peak.
    """
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2:
        raise ValueError(f"Z must have shape (N, n), got {Z.shape}")
    mass = np.maximum(Z - Z.mean(axis=1, keepdims=True), 0.0)
    total = mass.sum(axis=1)
    middle = (Z.shape[1] - 1) / 2
    moment = mass @ np.arange(Z.shape[1], dtype=np.float64)
    return np.where(total > 0, moment / np.where(total > 0, total, 1.0), middle)


def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x)  # average ranks for ties


def lineage_spearman(
    pseudotime: np.ndarray, position: np.ndarray, lineage: np.ndarray, n_lineages: int
) -> np.ndarray:
    """(n_lineages,) Spearman correlation of ``position`` (N,) with ``pseudotime`` (N,)
    within each lineage (``lineage`` (N,) in ``[0, n_lineages)``).

    Pearson correlation of the average ranks (ties share their mean rank). NaN for a
    lineage with fewer than 2 samples or where either variable is constant (e.g. the
    peak never leaves one neuron).
    """
    pseudotime, position = np.asarray(pseudotime, float), np.asarray(position, float)
    lineage = np.asarray(lineage)
    if not pseudotime.shape == position.shape == lineage.shape or pseudotime.ndim != 1:
        raise ValueError("pseudotime, position and lineage must be (N,) arrays of one length")
    rho = np.full(n_lineages, np.nan)
    for k in range(n_lineages):
        member = lineage == k
        if member.sum() < 2:
            continue
        a, b = _ranks(pseudotime[member]), _ranks(position[member])
        a, b = a - a.mean(), b - b.mean()
        norm = math.sqrt(float(a @ a) * float(b @ b))
        if norm > 0:
            rho[k] = float(a @ b) / norm
    return rho


def reference_spearman(
    X: np.ndarray, pseudotime: np.ndarray, lineage: np.ndarray, n_lineages: int
) -> np.ndarray:
    """(n_lineages,) |Spearman rho| of pseudotime with each lineage's own first principal
    component (of its samples in X (N, d), centred within the lineage): how well one
    linear direction of the data orders the lineage, a reference for the line layer."""
    X = np.asarray(X, dtype=np.float64)
    pc1 = np.zeros(len(X))
    for k in range(n_lineages):
        member = lineage == k
        if member.sum() < 2:
            continue
        centred = X[member] - X[member].mean(axis=0)
        u, s, _ = np.linalg.svd(centred, full_matrices=False)
        pc1[member] = u[:, 0] * s[0]
    return np.abs(lineage_spearman(pseudotime, pc1, lineage, n_lineages))


def pseudotime_bins(pseudotime: np.ndarray, lineage: np.ndarray, n_bins: int) -> np.ndarray:
    """(N,) int64 bin of each sample within its lineage: ``n_bins`` bins of (almost) equal
    counts in pseudotime order (ties broken by sample order)."""
    pseudotime, lineage = np.asarray(pseudotime), np.asarray(lineage)
    bins = np.zeros(len(pseudotime), dtype=np.int64)
    for k in np.unique(lineage):
        idx = np.flatnonzero(lineage == k)
        order = idx[np.argsort(pseudotime[idx], kind="stable")]
        bins[order] = np.arange(len(idx)) * n_bins // len(idx)
    return bins


def stratified_means(
    Z: np.ndarray, pseudotime: np.ndarray, lineage: np.ndarray, n_lineages: int, n_bins: int
) -> np.ndarray:
    """(n_lineages, n_bins, n) mean activation of Z (N, n) per lineage and pseudotime bin
    (:func:`pseudotime_bins`); NaN for an empty bin."""
    Z = np.asarray(Z, dtype=np.float64)
    cell = np.asarray(lineage) * n_bins + pseudotime_bins(pseudotime, lineage, n_bins)
    sums = np.zeros((n_lineages * n_bins, Z.shape[1]))
    np.add.at(sums, cell, Z)
    counts = np.bincount(cell, minlength=n_lineages * n_bins)[:, None]
    with np.errstate(invalid="ignore"):
        means = sums / np.where(counts > 0, counts, np.nan)
    return means.reshape(n_lineages, n_bins, Z.shape[1])


def _abs_or_zero(rho: np.ndarray) -> np.ndarray:
    """|rho|, a NaN (no order at all) counting as 0."""
    return np.where(np.isfinite(rho), np.abs(rho), 0.0)


def shuffled_order_rho(
    Z: np.ndarray,
    pseudotime: np.ndarray,
    lineage: np.ndarray,
    n_lineages: int,
    n_shuffles: int = 20,
    seed: int = 0,
) -> tuple[float, float]:
    """Chance level of the line read-outs of Z (N, n): ``(peak, centre)``, each the median
    over ``n_shuffles`` random orders of the neurons (``default_rng(seed)``) and over the
    lineages of |Spearman rho| (NaN counting as 0) between pseudotime and the position
    read from the reordered profiles. Far below the unshuffled |rho| when the order of
    the neurons along the line carries pseudotime; about equal when only which neurons
    respond does, whatever their place on the line."""
    Z = np.asarray(Z)
    rng = np.random.default_rng(seed)
    peak, com = [], []
    for _ in range(n_shuffles):
        shuffled = Z[:, rng.permutation(Z.shape[1])]
        for values, out in ((peak_position(shuffled), peak), (centre_of_mass(shuffled), com)):
            out.extend(_abs_or_zero(lineage_spearman(pseudotime, values, lineage, n_lineages)))
    return float(np.median(peak)), float(np.median(com))


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class TrajectoryConfig:
    """Everything that defines a run; written to ``config.json``.

    Data: ``dla_*`` shape the gen_dla tree (generated with the run's ``seed``); krumsiek11
    is fixed. ``test_fraction`` of every lineage is held out (drawn with ``seed``).

    Line layer: ``weights`` (plain) and ``standardised_weights`` are the lambdas on
    ``graphs.path(line)``; every (layout, lambda) is trained ``n_restarts`` times (seeds
    ``seed, seed + 1, ...``), ``epochs`` epochs of batches of ``batch_size``.

    Learned graph: a ``width``-unit layer, kNN graph with ``k`` neighbours, GSR weight
    ``learned_weight``, graph rebuilt from a buffer of ``buffer_size`` samples at steps
    ``learned_warmup + m * learned_update_every``; ``learned_restarts`` restarts of
    ``learned_epochs`` epochs (batch ``learned_batch_size``), each beside the same model
    without GSR.

    The lambdas, the learned-graph weight and ``k`` were chosen on tuning seeds 100-102,
    not on the reported ones: on the standardised line, lambda 0.03 and 0.1 raised the
    centre-of-mass |rho| over lambda = 0 on both data sets, on the plain line no lambda
    did so consistently; for the learned graph weight 0.01 with k = 5 gave higher ARI
    than 0.003 and as high as 0.03 or 0.1 (k = 10) at a lower reconstruction cost.
    """

    datasets: tuple[str, ...] = DATASETS
    dla_branches: int = 6
    dla_length: int = 150
    dla_dims: int = 60
    dla_sigma: float = 4.0
    test_fraction: float = 0.25
    line: int = 10
    hidden: tuple[int, ...] = (64,)
    weights: tuple[float, ...] = (0.0, 1e-2, 1e-1)
    standardised_weights: tuple[float, ...] = (0.0, 3e-2, 1e-1)
    n_restarts: int = 5
    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    width: int = 100
    k: int = 5
    learned_hidden: int = 50
    noise: float = 0.5
    learned_weight: float = 1e-2
    learned_restarts: int = 5
    learned_epochs: int = 100
    learned_batch_size: int = 64
    learned_warmup: int = 100
    learned_update_every: int = 100
    buffer_size: int = 1024
    defaults_epochs: int | None = None  # of the estimator defaults' run; None: "auto"
    n_bins: int = 8
    n_shuffles: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        tuple_fields(self)
        positive_ints = (
            "dla_branches",
            "dla_length",
            "dla_dims",
            "line",
            "n_restarts",
            "epochs",
            "batch_size",
            "width",
            "k",
            "learned_hidden",
            "learned_restarts",
            "learned_epochs",
            "learned_batch_size",
            "learned_update_every",
            "buffer_size",
            "n_bins",
            "n_shuffles",
        )
        check_config(
            "TrajectoryConfig",
            **{name: (getattr(self, name), "positive_int") for name in positive_ints},
            dla_sigma=(self.dla_sigma, "non_negative"),
            lr=(self.lr, "positive"),
            noise=(self.noise, "non_negative"),
            learned_weight=(self.learned_weight, "positive"),
            weights=(self.weights, "weights"),
        )
        if self.standardised_weights:
            check_config(
                "TrajectoryConfig", standardised_weights=(self.standardised_weights, "weights")
            )
        for size in self.hidden:
            check_config("TrajectoryConfig", hidden=(size, "positive_int"))
        if not self.datasets or any(d not in DATASETS for d in self.datasets):
            raise ValueError(
                f"TrajectoryConfig.datasets must be a non-empty subset of "
                f"{DATASETS}, got {self.datasets!r}"
            )
        if 0.0 not in self.weights:
            raise ValueError("TrajectoryConfig.weights must include 0 (the reference model)")
        if not 0 < self.test_fraction < 1:
            raise ValueError(
                f"TrajectoryConfig.test_fraction must lie in (0, 1), got {self.test_fraction!r}"
            )
        if self.line < 3 or self.dla_branches < 2 or self.dla_length < 8:
            raise ValueError(
                "TrajectoryConfig needs line >= 3, dla_branches >= 2 and dla_length >= 8"
            )
        if isinstance(self.learned_warmup, bool) or not (
            isinstance(self.learned_warmup, int) and self.learned_warmup >= 0
        ):
            raise ValueError(
                f"TrajectoryConfig.learned_warmup must be an int >= 0, got {self.learned_warmup!r}"
            )
        if self.k >= self.width:
            raise ValueError(f"TrajectoryConfig.k must be below width={self.width}, got {self.k}")
        check_config(
            "TrajectoryConfig", defaults_epochs=(self.defaults_epochs, "optional_positive_int")
        )

    @classmethod
    def quick(cls, **overrides) -> TrajectoryConfig:
        """Seconds: a small DLA tree, one restart, a few epochs, an early learned graph."""
        return cls(
            **{
                "dla_branches": 3,
                "dla_length": 40,
                "dla_dims": 20,
                "n_restarts": 1,
                "epochs": 4,
                "width": 30,
                "learned_restarts": 1,
                "learned_epochs": 6,
                "learned_warmup": 10,
                "learned_update_every": 10,
                "n_bins": 4,
                "defaults_epochs": 20,
                **overrides,
            }
        )


# --------------------------------------------------------------------------- models


def variants(config: TrajectoryConfig) -> list[LayoutVariant]:
    """The line layers a run trains: each layout at each of its weights (the keys of
    ``metrics["datasets"][name]["line"]["variants"]``)."""
    return layout_variants(config.weights, config.standardised_weights)


def line_autoencoder(
    n_features: int, config: TrajectoryConfig, layout: str
) -> tuple[nn.Module, str]:
    """The autoencoder with a ``config.line``-neuron line layer and that layer's name
    (``layout``: plain or standardised, see :func:`bottleneck_autoencoder`)."""
    return bottleneck_autoencoder(n_features, config.hidden, config.line, layout, "line")


# --------------------------------------------------------------------------- run


def run(config: TrajectoryConfig, out: str, device: str = "auto", progress: bool = True) -> dict:
    """Train the line layers and learned graphs on every data set, analyse, write ``out/``;
    returns the metrics."""
    folder = RunFolder(out)
    results = {}
    with one_thread():
        for name in config.datasets:
            data = split(load(name, config), config.test_fraction, config.seed)
            results[name] = {
                "split": data,
                "line": {
                    v.key: {
                        "variant": v,
                        "restarts": [
                            _train_line(v, data, config, config.seed + r, device, progress)
                            for r in range(config.n_restarts)
                        ],
                    }
                    for v in variants(config)
                },
                "learned": [
                    _train_learned(data, config, config.seed + r, device, progress)
                    for r in range(config.learned_restarts)
                ],
                "defaults": [
                    _train_defaults(data, config, config.seed + r)
                    for r in range(config.learned_restarts)
                ],
            }
    metrics = _metrics(config, results)
    folder.write_json("config.json", dataclasses.asdict(config))
    folder.write_metrics(metrics)
    figures = _figures(folder, config, results, metrics)
    folder.write_report(TITLE, _sections(config, metrics, figures))
    return metrics


def _train_line(variant, data: Split, config, seed, device, progress) -> dict:
    with seeded(seed):
        model, layer = line_autoencoder(data.X.shape[1], config, variant.layout)
        graph = graphs.path(config.line)
        reg = None
        if variant.weight:
            reg = GraphRegularizer(model, {layer: graph}, weight=variant.weight)
        start = time.perf_counter()
        try:
            fit(
                model,
                data.X[data.train],
                regularizer=reg,
                epochs=config.epochs,
                batch_size=config.batch_size,
                lr=config.lr,
                device=device,
                seed=seed,
                progress=progress,
                desc=f"{data.data.name} {variant.label} seed {seed}",
            )
        finally:
            if reg is not None:
                reg.remove()
        seconds = time.perf_counter() - start
        Z_all = analysis.activations(model, data.X, layer)
        Z = Z_all[data.test]
        d = data.data
        n = len(d.lineage_names)
        test_time, test_lineage = d.pseudotime[data.test], d.lineage[data.test]
        rho_peak = lineage_spearman(test_time, peak_position(Z), test_lineage, n)
        rho_com = lineage_spearman(test_time, centre_of_mass(Z), test_lineage, n)
        chance_peak, chance_com = shuffled_order_rho(
            Z, test_time, test_lineage, n, config.n_shuffles, seed
        )
        arranged = {"arranged_rho_peak": None, "arranged_rho_com": None}
        if variant.weight == 0:  # the post-hoc control: λ = 0 units arranged onto the line
            perm = analysis.arrangement(Z_all[data.train], graph, random_state=seed)
            Z_arranged = Z[:, perm]
            arranged = {
                key: lineage_spearman(test_time, read(Z_arranged), test_lineage, n).tolist()
                for key, read in (
                    ("arranged_rho_peak", peak_position),
                    ("arranged_rho_com", centre_of_mass),
                )
            }
        return {
            "seed": seed,
            "rho_peak": rho_peak.tolist(),
            "rho_com": rho_com.tolist(),
            "median_abs_rho_peak": float(np.median(_abs_or_zero(rho_peak))),
            "median_abs_rho_com": float(np.median(_abs_or_zero(rho_com))),
            "shuffled_abs_rho_peak": chance_peak,
            "shuffled_abs_rho_com": chance_com,
            **arranged,
            "test_mse": evaluate(model, data.X[data.test])["mse"],
            "dirichlet_energy": analysis.dirichlet_energy(Z, graph, normalize=True),
            "activation_norm": float(np.linalg.norm(Z, axis=1).mean()),
            "train_seconds": seconds,
            "_Z": Z,
            "_means": stratified_means(Z_all, d.pseudotime, d.lineage, n, config.n_bins),
        }


def _learned_model(data: Split, config: TrajectoryConfig, seed: int) -> GraphLayerAutoencoder:
    with seeded(seed):
        return GraphLayerAutoencoder(
            data.X.shape[1], config.width, config.learned_hidden, config.noise
        )


def _coactivation(config: TrajectoryConfig) -> CoactivationGraph:
    return CoactivationGraph(
        kernel="knn",
        k=config.k,
        features="standardized",
        warmup_steps=config.learned_warmup,
        update_every=config.learned_update_every,
        buffer_size=config.buffer_size,
        laplacian="normalized",
        on_disconnect="continue",
    )


def _train_learned(data: Split, config: TrajectoryConfig, seed, device, progress) -> dict:
    """A learned-graph run and the same model without GSR; scores against the branches."""
    kwargs = dict(
        epochs=config.learned_epochs,
        batch_size=config.learned_batch_size,
        lr=config.lr,
        device=device,
        seed=seed,
        progress=progress,
    )
    model, learned = _learned_model(data, config, seed), _coactivation(config)
    reg = GraphRegularizer(
        model, {GraphLayerAutoencoder.layer: learned}, weight=config.learned_weight
    )
    try:
        fit(
            model,
            data.X[data.train],
            regularizer=reg,
            desc=f"{data.data.name} learned graph seed {seed}",
            **kwargs,
        )
    finally:
        reg.remove()
    baseline = _learned_model(data, config, seed)
    fit(baseline, data.X[data.train], desc=f"{data.data.name} no GSR seed {seed}", **kwargs)

    layer, X_test = GraphLayerAutoencoder.layer, data.X[data.test]
    truth = data.data.branch[data.test]
    Z, Z_base = (analysis.activations(m, X_test, layer) for m in (model, baseline))
    base_graph = _coactivation(config).build(
        torch.as_tensor(analysis.activations(baseline, data.X[data.train], layer))
    )
    row = {
        "seed": seed,
        "test_mse": evaluate(model, X_test)["mse"],
        "test_mse_no_gsr": evaluate(baseline, X_test)["mse"],
        "n_updates": learned.n_updates,
        "_graph": learned.graph,
        "_Z": Z,
    }
    row.update(_module_scores(Z, learned.graph, truth, data.data.branch_names, seed))
    row["no_gsr_components"] = int(analysis.modules(base_graph).max()) + 1
    k = row["components"] or len(data.data.branch_names)
    row["controls"] = analysis.module_controls(Z, row["_labels"], Z_base, X_test, truth, k, seed)
    return row


def _train_defaults(data: Split, config: TrajectoryConfig, seed: int) -> dict:
    """``GSRAutoencoder(graph="learned")`` with its defaults (the learned-graph recipe) and its
    weight=0 twin; its modules against the branches beside their controls."""
    epochs = config.defaults_epochs or "auto"
    X_train, X_test = data.X[data.train], data.X[data.test]
    est = GSRAutoencoder(graph="learned", epochs=epochs, random_state=seed, device="cpu")
    est.fit(X_train)
    twin = clone(est).set_params(weight=0.0, arrange=False).fit(X_train)
    truth = data.data.branch[data.test]
    Z, Z_base = est.activations(X_test), twin.activations(X_test)
    row = {
        "seed": seed,
        "test_mse": -est.score(X_test),
        "test_mse_no_gsr": -twin.score(X_test),
        "budget": est.budget_report_,
    }
    row.update(_module_scores(Z, est.graph_, truth, data.data.branch_names, seed))
    k = max(row["components"], 2) if row["components"] > 1 else len(data.data.branch_names)
    row["controls"] = analysis.module_controls(Z, row["_labels"], Z_base, X_test, truth, k, seed)
    return row


def _module_scores(Z, graph, truth, branch_names, seed) -> dict:
    """Modules of the learned graph, their ARI/NMI/purity against the branches and the
    module x branch table (None where no graph was learned)."""
    if graph is None:  # training shorter than the warm-up
        return {
            "components": 0,
            "module_sizes": [],
            "ari": None,
            "nmi": None,
            "purity": None,
            "drivers": [],
            "_labels": None,
            "_table": None,
        }
    labels = analysis.modules(graph)
    table, _, classes = analysis.module_class_table(Z, labels, truth)
    names = [branch_names[c] for c in classes]
    return {
        "components": int(labels.max()) + 1,
        "module_sizes": np.bincount(labels).tolist(),
        **analysis.cluster_scores(analysis.indicated_modules(Z, labels), truth),
        "drivers": [[branch_names[c] for c in d] for d in module_drivers(Z, labels, truth)],
        "_labels": labels,
        "_table": (table, names),
    }


# --------------------------------------------------------------------------- metrics


def _public(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def _median(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(kept)) if kept else None


def _line_metrics(line: dict) -> dict:
    base = float(np.mean([r["test_mse"] for r in line[BASELINE_KEY]["restarts"]]))
    out = {}
    for key, entry in line.items():
        variant, restarts = entry["variant"], entry["restarts"]
        peak = np.concatenate([_abs_or_zero(np.array(r["rho_peak"])) for r in restarts])
        com = np.concatenate([_abs_or_zero(np.array(r["rho_com"])) for r in restarts])
        mse = float(np.mean([r["test_mse"] for r in restarts]))
        arranged = {}
        if variant.weight == 0:
            for k in ("peak", "com"):
                values = np.concatenate(
                    [_abs_or_zero(np.array(r[f"arranged_rho_{k}"])) for r in restarts]
                )
                arranged[f"arranged_median_abs_rho_{k}"] = float(np.median(values))
        out[key] = {
            "label": variant.label,
            "layout": variant.layout,
            "weight": variant.weight,
            "median_abs_rho_peak": float(np.median(peak)),
            "median_abs_rho_com": float(np.median(com)),
            "mean_abs_rho_peak": float(peak.mean()),
            "mean_abs_rho_com": float(com.mean()),
            "shuffled_abs_rho_peak": float(
                np.median([r["shuffled_abs_rho_peak"] for r in restarts])
            ),
            "shuffled_abs_rho_com": float(np.median([r["shuffled_abs_rho_com"] for r in restarts])),
            **arranged,
            "test_mse": mse,
            **reconstruction_cost(mse, base),
            "dirichlet_energy": float(np.mean([r["dirichlet_energy"] for r in restarts])),
            "activation_norm": float(np.mean([r["activation_norm"] for r in restarts])),
            "restarts": [_public(r) for r in restarts],
        }
    return out


def _best(variants: dict) -> dict | None:
    """The GSR variant with the highest median centre-of-mass |rho|, against its layout's
    lambda = 0."""
    gsr = [v for v in variants.values() if v["weight"] > 0]
    if not gsr:
        return None
    best = max(gsr, key=lambda v: v["median_abs_rho_com"])
    own = next(
        (v for v in variants.values() if v["layout"] == best["layout"] and v["weight"] == 0), None
    )
    return {
        "variant": best["label"],
        "median_abs_rho_com": best["median_abs_rho_com"],
        "median_abs_rho_peak": best["median_abs_rho_peak"],
        "shuffled_abs_rho_com": best["shuffled_abs_rho_com"],
        "shuffled_abs_rho_peak": best["shuffled_abs_rho_peak"],
        "no_gsr_median_abs_rho_com": None if own is None else own["median_abs_rho_com"],
        "no_gsr_median_abs_rho_peak": None if own is None else own["median_abs_rho_peak"],
        "mse_ratio": best["mse_ratio"],
        "verdict": best["verdict"],
        "controls_verdict": line_verdict(best, own),
    }


#: the controls of a line layer's centre-of-mass |rho|, by their key in the variant records
LINE_CONTROLS = {
    "median_abs_rho_com": "λ=0 as trained",
    "arranged_median_abs_rho_com": "λ=0 arranged",
    "shuffled_abs_rho_com": "neurons shuffled",
}


def line_verdict(best: dict, own: dict | None) -> dict:
    """Whether the best GSR line (median centre-of-mass |rho|) beats its controls: the
    λ = 0 model of its layout as trained and with its units arranged onto the line post
    hoc, and the GSR model with its neurons shuffled along the line (chance). ``helps``
    when it beats the best of them without wrecking the reconstruction; ``mse_ratio``
    against plain λ = 0."""
    controls = {LINE_CONTROLS["shuffled_abs_rho_com"]: best["shuffled_abs_rho_com"]}
    if own is not None:
        controls |= {
            LINE_CONTROLS[k]: own[k] for k in ("median_abs_rho_com", "arranged_median_abs_rho_com")
        }
    verdict = against_controls(best["median_abs_rho_com"], controls, best["verdict"])
    return {
        "score": "median |ρ| centre",
        "best_control": verdict["best_control"],
        "control_rho": verdict["control_score"],
        "gsr_rho": verdict["gsr_score"],
        "margin": verdict["margin"],
        "helps": verdict["helps"],
        "mse_ratio": best["mse_ratio"],
        "controls": controls,
    }


def line_verdict_entry(verdict: dict) -> str:
    """The line verdict in a headline, as :func:`cr.verdict_entry` for |rho|."""
    return (
        f"GSR {verdict['gsr_rho']:.2f} vs {verdict['best_control']} "
        f"{verdict['control_rho']:.2f} ({verdict['margin']:+.2f}) at "
        f"{verdict['mse_ratio']:.2f}x MSE: {cr.verdict_words(verdict)}"
    )


def _learned_metrics(rows: list[dict]) -> dict:
    gsr = float(np.mean([r["test_mse"] for r in rows]))
    none = float(np.mean([r["test_mse_no_gsr"] for r in rows]))
    extra = {}
    if all("no_gsr_components" in r for r in rows):
        extra["no_gsr_components_median"] = float(np.median([r["no_gsr_components"] for r in rows]))
    return {
        "ari_median": _median([r["ari"] for r in rows]),
        "nmi_median": _median([r["nmi"] for r in rows]),
        "components_median": float(np.median([r["components"] for r in rows])),
        **extra,
        "test_mse": gsr,
        "test_mse_no_gsr": none,
        **reconstruction_cost(gsr, none),
        "controls_verdict": analysis.module_verdict(rows, gsr / none),
        "restarts": [_public(r) for r in rows],
    }


def _metrics(config: TrajectoryConfig, results: dict) -> dict:
    out = {}
    for name, result in results.items():
        data: Split = result["split"]
        d = data.data
        n = len(d.lineage_names)
        reference = reference_spearman(
            data.X[data.test], d.pseudotime[data.test], d.lineage[data.test], n
        )
        variants = _line_metrics(result["line"])
        out[name] = {
            "data": {
                "n_samples": len(d.X),
                "n_features": d.X.shape[1],
                "n_test": len(data.test),
                "lineages": list(d.lineage_names),
                "branches": list(d.branch_names),
            },
            "reference_abs_rho": reference.tolist(),
            "reference_median_abs_rho": float(np.median(reference)),
            "line": {"graph": f"path:{config.line}", "variants": variants, "best": _best(variants)},
            "learned": {
                "width": config.width,
                "k": config.k,
                "weight": config.learned_weight,
                **_learned_metrics(result["learned"]),
            },
            "defaults": _learned_metrics(result["defaults"]),
        }
    return {"datasets": out}


def headline(metrics: dict) -> dict[str, str]:
    """The numbers an index page shows: per data set the line layer and the modules."""
    out = {}
    for name, m in metrics["datasets"].items():
        none = m["line"]["variants"][BASELINE_KEY]
        best = m["line"]["best"]
        text = (
            f"median |ρ| (peak / centre) no GSR {none['median_abs_rho_peak']:.2f} / "
            f"{none['median_abs_rho_com']:.2f}"
        )
        if best is not None:
            text += (
                f"; best {best['variant']} {best['median_abs_rho_peak']:.2f} / "
                f"{best['median_abs_rho_com']:.2f} (neurons shuffled "
                f"{best['shuffled_abs_rho_peak']:.2f} / {best['shuffled_abs_rho_com']:.2f})"
                f", MSE {best['mse_ratio']:.2f}x"
            )
        out[f"{name} line layer"] = text
        learned = m["learned"]
        ari = learned["ari_median"]
        out[f"{name} learned modules"] = (
            f"{learned['components_median']:.0f} modules, ARI vs branches "
            f"{'n/a' if ari is None else f'{ari:.2f}'}, MSE {learned['mse_ratio']:.2f}x"
        )
        if best is not None:
            out[f"{name} line layer vs best control"] = line_verdict_entry(best["controls_verdict"])
        out[f"{name} learned modules vs best control"] = cr.verdict_entry(
            learned["controls_verdict"]
        )
        defaults = m.get("defaults")
        if defaults is not None:
            ari = defaults["ari_median"]
            out[f"{name} estimator defaults"] = (
                f"{defaults['components_median']:.0f} modules, ARI vs branches "
                f"{'n/a' if ari is None else f'{ari:.2f}'}, MSE {defaults['mse_ratio']:.2f}x"
            )
            out[f"{name} estimator defaults vs best control"] = cr.verdict_entry(
                defaults["controls_verdict"]
            )
    return out


# --------------------------------------------------------------------------- figures


def _typical(rows: list[dict], key) -> dict:
    """The row at the (lower) median of ``key(row)``."""
    order = sorted(rows, key=key)
    return order[(len(order) - 1) // 2]


def _typical_line(entry: dict) -> dict:
    return _typical(entry["restarts"], lambda r: r["median_abs_rho_com"])


def _typical_learned(rows: list[dict]) -> dict:
    return _typical(rows, lambda r: -1.0 if r["ari"] is None else r["ari"])


def _figures(folder, config, results, metrics) -> dict[str, str]:
    plots = {
        "data": lambda: _plot_data(results),
        "peak": lambda: _plot_peaks(results),
        "activity": lambda: _plot_activity(results, config),
        "summary": lambda: _plot_summary(results, metrics),
        "modules": lambda: _plot_module_tables(results),
        "graph": lambda: _plot_learned_graphs(results),
    }
    return {key: folder.save_figure(plots[key](), stem) for key, stem in FIGURES.items()}


def _pca2(X: np.ndarray) -> np.ndarray:
    """(N, 2) scores of the first two principal components of X (N, d)."""
    centred = X - X.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    return u[:, :2] * s[:2]


def _scatter_labels(ax, xy, labels, names) -> None:
    cmap = plt.get_cmap("tab10")
    for k, name in enumerate(names):
        member = labels == k
        ax.scatter(*xy[member].T, s=5, color=cmap(k % 10), label=name)
    ax.legend(fontsize=6, markerscale=2.5, loc="best", framealpha=0.6)


def _plot_data(results) -> plt.Figure:
    fig, axes = plt.subplots(
        len(results), 2, figsize=(9.0, 3.6 * len(results)), layout="constrained", squeeze=False
    )
    for row, (name, result) in zip(axes, results.items(), strict=True):
        data: Split = result["split"]
        d = data.data
        xy = _pca2(data.X.astype(np.float64))
        _scatter_labels(row[0], xy, d.branch, d.branch_names)
        points = row[1].scatter(*xy.T, c=d.pseudotime, s=5, cmap="viridis")
        fig.colorbar(points, ax=row[1], label="pseudotime")
        row[0].set_title(f"{name}: branches", fontsize=9)
        row[1].set_title(f"{name}: pseudotime", fontsize=9)
        for ax in row:
            ax.set_xlabel("PC 1")
            ax.set_ylabel("PC 2")
    return fig


def _plot_peaks(results) -> plt.Figure:
    count = max(len(r["line"]) for r in results.values())
    fig, axes = plt.subplots(
        len(results),
        count,
        figsize=(2.6 * count, 2.8 * len(results)),
        layout="constrained",
        squeeze=False,
        sharey=True,
    )
    cmap = plt.get_cmap("tab10")
    jitter = np.random.default_rng(0)
    for row, (name, result) in zip(axes, results.items(), strict=True):
        data: Split = result["split"]
        d = data.data
        time_, lineage = d.pseudotime[data.test], d.lineage[data.test]
        for ax, entry in zip(row, result["line"].values(), strict=False):
            typical = _typical_line(entry)
            peak = peak_position(typical["_Z"]) + jitter.uniform(-0.15, 0.15, len(time_))
            com = centre_of_mass(typical["_Z"])
            for k, lineage_name in enumerate(d.lineage_names):
                member = lineage == k
                order = np.argsort(time_[member])
                ax.plot(
                    time_[member], peak[member], ".", ms=2.5, color=cmap(k % 10), label=lineage_name
                )
                ax.plot(
                    time_[member][order],
                    com[member][order],
                    "-",
                    lw=0.8,
                    color=cmap(k % 10),
                    alpha=0.8,
                )
            ax.set_title(
                f"{name}: {entry['variant'].label}\n|ρ| peak "
                f"{typical['median_abs_rho_peak']:.2f}, centre "
                f"{typical['median_abs_rho_com']:.2f}",
                fontsize=8,
            )
            ax.set_xlabel("pseudotime")
        row[0].set_ylabel("line position")
        row[0].legend(fontsize=6, markerscale=3, loc="best", framealpha=0.6)
    return fig


def _plot_activity(results, config) -> plt.Figure:
    count = max(len(r["line"]) for r in results.values())
    fig, axes = plt.subplots(
        len(results),
        count,
        figsize=(2.3 * count, 4.2 * len(results)),
        layout="constrained",
        squeeze=False,
    )
    for row, (name, result) in zip(axes, results.items(), strict=True):
        names = result["split"].data.lineage_names
        for ax, entry in zip(row, result["line"].values(), strict=False):
            means = _typical_line(entry)["_means"]
            image = ax.imshow(
                means.reshape(-1, means.shape[-1]),
                aspect="auto",
                cmap="viridis",
                interpolation="nearest",
            )
            for k in range(1, len(names)):
                ax.axhline(k * config.n_bins - 0.5, color="white", lw=1.2)
            ax.set_yticks(
                (np.arange(len(names)) + 0.5) * config.n_bins - 0.5,
                names if ax is row[0] else [""] * len(names),
                fontsize=7,
            )
            ax.set_xticks([0, config.line - 1])
            ax.set_xlabel("line neuron")
            ax.set_title(f"{name}\n{entry['variant'].label}", fontsize=8)
            fig.colorbar(image, ax=ax, shrink=0.6)
    return fig


def _plot_summary(results, metrics) -> plt.Figure:
    fig, axes = plt.subplots(
        len(results), 2, figsize=(10.0, 3.2 * len(results)), layout="constrained", squeeze=False
    )
    for (left, right), (name, result) in zip(axes, results.items(), strict=True):
        entries = list(result["line"].values())
        for x, entry in enumerate(entries):
            restarts = entry["restarts"]
            spread = np.linspace(-0.15, 0.15, len(restarts)) if len(restarts) > 1 else [0.0]
            left.scatter(
                x + np.asarray(spread) - 0.05,
                [r["median_abs_rho_peak"] for r in restarts],
                color="tab:blue",
                s=14,
                label="peak" if x == 0 else None,
            )
            left.scatter(
                x + np.asarray(spread) + 0.05,
                [r["median_abs_rho_com"] for r in restarts],
                color="tab:orange",
                s=14,
                marker="s",
                label="centre of mass" if x == 0 else None,
            )
            left.scatter(
                x + np.asarray(spread),
                [r["shuffled_abs_rho_com"] for r in restarts],
                color="grey",
                s=14,
                marker="x",
                label="centre, neurons shuffled" if x == 0 else None,
            )
            right.scatter(
                x + np.asarray(spread), [r["test_mse"] for r in restarts], color="tab:red", s=14
            )
        left.axhline(
            metrics["datasets"][name]["reference_median_abs_rho"],
            color="grey",
            ls=":",
            lw=1,
            label="first PC of each lineage",
        )
        left.set_ylim(-0.02, 1.02)
        left.set_ylabel("median |ρ| over lineages")
        left.legend(fontsize=7)
        right.set_ylabel("test MSE")
        right.set_ylim(bottom=0)
        labels = [e["variant"].label for e in entries]
        for ax in (left, right):
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        left.set_title(
            f"{name}: does the line position follow pseudotime? (one dot per restart)", fontsize=9
        )
        right.set_title(f"{name}: primary task, reconstruction of held-out samples", fontsize=9)
    return fig


def _plot_module_tables(results) -> plt.Figure:
    def draw(ax, name, typical):
        table, names = typical["_table"]
        plotting.plot_module_class_heatmap(table, list(range(len(table))), names, ax=ax)
        ax.set_xlabel("branch")
        ax.set_title(f"{name} (seed {typical['seed']}, ARI {typical['ari']:.2f})", fontsize=9)

    return _per_data_set_learned(results, (5.2, 4.4), draw)


def _plot_learned_graphs(results) -> plt.Figure:
    def draw(ax, name, typical):
        plotting.plot_modules(typical["_graph"], typical["_labels"], ax=ax)
        count = typical["components"]
        ax.set_title(
            f"{name}: learned graph of seed {typical['seed']}, {count} "
            f"module{'' if count == 1 else 's'}",
            fontsize=9,
        )

    return _per_data_set_learned(results, (5.6, 4.6), draw)


def _per_data_set_learned(results, size, draw) -> plt.Figure:
    """One panel per data set: ``draw(ax, name, typical)`` with the typical learned-graph
    run, or "no graph learned" where that run never built a graph."""
    width, height = size
    fig, axes = plt.subplots(
        1, len(results), figsize=(width * len(results), height), layout="constrained", squeeze=False
    )
    for ax, (name, result) in zip(axes[0], results.items(), strict=True):
        typical = _typical_learned(result["learned"])
        if typical["_graph"] is None:
            ax.text(0.5, 0.5, "no graph learned", ha="center", va="center")
            ax.set_axis_off()
        else:
            draw(ax, name, typical)
    return fig


# --------------------------------------------------------------------------- report


def _line_rows(metrics: dict) -> list[dict]:
    rows = []
    for name, m in metrics["datasets"].items():
        for v in m["line"]["variants"].values():
            rows.append(
                {
                    "data": name,
                    "line layer": v["label"],
                    "median |ρ| peak": f"{v['median_abs_rho_peak']:.3f}",
                    "median |ρ| centre": f"{v['median_abs_rho_com']:.3f}",
                    "shuffled order: peak / centre": (
                        f"{v['shuffled_abs_rho_peak']:.3f} / {v['shuffled_abs_rho_com']:.3f}"
                    ),
                    "λ=0 arranged: peak / centre": (
                        f"{v['arranged_median_abs_rho_peak']:.3f} / "
                        f"{v['arranged_median_abs_rho_com']:.3f}"
                        if v["weight"] == 0
                        else ""
                    ),
                    "first-PC reference": f"{m['reference_median_abs_rho']:.3f}",
                    "test MSE": f"{v['test_mse']:.4f}",
                    "MSE vs plain λ=0": f"{v['mse_ratio']:.2f}x",
                    "primary task": v["verdict"],
                    "normalised Dirichlet energy": f"{v['dirichlet_energy']:.3f}",
                }
            )
    return rows


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _learned_rows(metrics: dict) -> list[dict]:
    rows = []
    for name, m in metrics["datasets"].items():
        for r in m["learned"]["restarts"]:
            rows.append(
                {
                    "data": name,
                    "seed": r["seed"],
                    "modules": r["components"],
                    "module sizes": ", ".join(map(str, r["module_sizes"])),
                    "ARI": _fmt(r["ari"]),
                    "NMI": _fmt(r["nmi"]),
                    "no GSR: components": r["no_gsr_components"],
                    "null mean (p)": (
                        f"{_fmt(r['controls']['null_mean'])} ({_fmt(r['controls']['p_value'])})"
                    ),
                    "k-means on λ=0 neurons: ARI": _fmt(r["controls"]["neurons_kmeans"]),
                    "test MSE": f"{r['test_mse']:.4f}",
                    "MSE no GSR": f"{r['test_mse_no_gsr']:.4f}",
                    "modules driven by": "; ".join("/".join(d) for d in r["drivers"]),
                }
            )
    return rows


def _sections(config: TrajectoryConfig, metrics: dict, figures: dict[str, str]) -> list:
    data = {name: m["data"] for name, m in metrics["datasets"].items()}
    return [
        Section("Summary", text=_summary(config, metrics), table=_line_rows(metrics)),
        Section(
            "The data",
            text=prose("trajectory/data.txt", data=data, stem=KRUMSIEK_STEM),
            figures=[figures["data"]],
        ),
        Section(
            "Line position against pseudotime",
            text=prose("trajectory/peaks.txt"),
            figures=[figures["peak"]],
        ),
        Section(
            "Mean activations by branch and pseudotime",
            text=prose("trajectory/activity.txt", line=config.line, n_bins=config.n_bins),
            figures=[figures["activity"]],
        ),
        Section(
            "Every restart", text=prose("trajectory/restarts.txt"), figures=[figures["summary"]]
        ),
        Section(
            "Learned graph: modules against branches",
            text=prose(
                "trajectory/learned.txt",
                width=config.width,
                k=config.k,
                weight=lambda_label(config.learned_weight),
            ),
            table=_learned_rows(metrics),
            figures=[figures["modules"], figures["graph"]],
        ),
        Section("Controls", text=_controls_text(metrics), table=_controls_rows(metrics)),
    ]


def _controls_rows(metrics: dict) -> list[dict]:
    return [
        cr.controls_row(f"{name}, learned graph", m["learned"]["controls_verdict"])
        for name, m in metrics["datasets"].items()
    ]


def _line_verdict_sentences(metrics: dict) -> dict[str, str]:
    """``{data set: line verdict sentence}`` of the data sets with a GSR line."""
    return {
        name: _line_verdict_sentence(name, m["line"]["best"]["controls_verdict"])
        for name, m in metrics["datasets"].items()
        if m["line"]["best"] is not None
    }


def _controls_text(metrics: dict) -> str:
    return prose(
        "trajectory/controls.txt",
        mse_wrecked=MSE_WRECKED,
        line=list(_line_verdict_sentences(metrics).values()),
        rule=cr.controls_rule(K_RULE),
        learned=[_learned_verdict_sentence(name, m) for name, m in metrics["datasets"].items()],
    )


#: how many groups each learned-graph control gets in this experiment
K_RULE = (
    "as many groups as the GSR run found modules (the number of branches where no graph was built)"
)


def _line_verdict_sentence(name: str, verdict: dict) -> str:
    return prose(
        "trajectory/line_verdict.txt",
        name=name,
        verdict=verdict,
        ending=verdict_ending(verdict, "the reconstruction"),
    )


def _learned_verdict_sentence(name: str, m: dict) -> str:
    return cr.verdict_sentence(
        m["learned"]["controls_verdict"], f"{name}, learned graph: the GSR modules"
    )


def _line_verdict(name: str, m: dict) -> str:
    """One data set's line layers: every variant's |rho| and cost, and per layout whether
    GSR orders the line."""
    variants_ = m["line"]["variants"]
    reference = m["reference_median_abs_rho"]
    layouts = []
    for layout in LAYOUTS:
        own = [v for v in variants_.values() if v["layout"] == layout]
        base = next((v for v in own if v["weight"] == 0), None)
        layouts.append(
            {
                "variants": own,
                "conclusion": _line_conclusion(layout, base, own, reference)
                if base is not None and len(own) > 1
                else None,
            }
        )
    return prose(
        "trajectory/line_dataset.txt",
        name=name,
        data=m["data"],
        reference=reference,
        layouts=layouts,
    )


def _line_conclusion(layout: str, base: dict, own: list[dict], reference: float) -> str:
    """Whether GSR orders the ``layout`` line: its best lambda against lambda = 0 and
    against the same model with its neurons shuffled along the line."""
    best = max((v for v in own if v is not base), key=lambda v: v["median_abs_rho_com"])
    readouts = {"peak": "peak", "centre": "com"}
    order = {
        r: best[f"median_abs_rho_{k}"] - best[f"shuffled_abs_rho_{k}"] for r, k in readouts.items()
    }
    ordered = [
        r
        for r, k in readouts.items()
        if best[f"median_abs_rho_{k}"] - base[f"median_abs_rho_{k}"] >= IMPROVEMENT
        and order[r] >= IMPROVEMENT
    ]
    return prose(
        "trajectory/line_conclusion.txt",
        layout=layout,
        base=base,
        best=best,
        order=order,
        ordered=ordered,
        all_ordered=len(ordered) == len(readouts),
        reference=reference,
        improvement=IMPROVEMENT,
        flatter=best["dirichlet_energy"] < FLATTER * base["dirichlet_energy"],
    )


def _learned_verdict(name: str, m: dict) -> str:
    return prose(
        "trajectory/learned_verdict.txt",
        name=name,
        learned=m["learned"],
        branches=len(m["data"]["branches"]),
        verdict=_learned_verdict_sentence(name, m),
    )


def _summary(config: TrajectoryConfig, metrics: dict) -> str:
    line_verdicts = _line_verdict_sentences(metrics)
    datasets = [
        {
            "line": _line_verdict(name, m),
            "line_verdict": line_verdicts.get(name),
            "learned": _learned_verdict(name, m),
            "cost": _cost_note(name, m),
        }
        for name, m in metrics["datasets"].items()
    ]
    return prose(
        "trajectory/summary.txt",
        line=config.line,
        restarts=config.n_restarts,
        epochs=config.epochs,
        datasets=datasets,
    )


def _cost_note(name: str, m: dict) -> str:
    """The models of ``name`` that wreck the primary task, in ratio and in variance."""
    line = m["line"]["variants"]
    wrecked = [(v["label"], v["test_mse"]) for v in line.values() if v["verdict"] == WRECKED]
    learned = m["learned"]
    if learned["verdict"] == WRECKED:
        wrecked.append(("learned graph", learned["test_mse"]))
    if not wrecked:
        return ""
    return prose(
        "trajectory/cost_note.txt",
        name=name,
        labels=[label for label, _ in wrecked],
        mse_wrecked=MSE_WRECKED,
        wrecked=WRECKED,
        line_mse=line[BASELINE_KEY]["test_mse"],
        learned_mse=learned["test_mse_no_gsr"],
        worst=max(mse for _, mse in wrecked),
    )


__all__ = [
    "BASELINE_KEY",
    "FIGURES",
    "TrajectoryConfig",
    "centre_of_mass",
    "headline",
    "line_autoencoder",
    "lineage_spearman",
    "peak_position",
    "pseudotime_bins",
    "reference_spearman",
    "run",
    "shuffled_order_rho",
    "split",
    "stratified_means",
    "variants",
]
