"""Cluster indication: do learned co-activation graphs fall apart into the planted modules?

An autoencoder with a 100-unit layer learns the graph of that layer from its own
co-activations (:class:`gsreg.CoactivationGraph`) while GSR smooths the layer on it. Each
connected component of the final graph is a neuron module; every test sample is assigned
to the module it drives most (:func:`gsreg.analysis.indicate_clusters`) and the assignment
is scored against the planted clusters. Two settings are compared on the same data and
seeds:

- ``"gsreg"``: a graph from a bounded buffer of many batches (``buffer_size=1024``),
  updated every 100 steps for the whole run (``on_disconnect="continue"``);
- ``"authors"``: the procedure of the original paper: batch 32, a graph from the current
  batch only (``buffer_size=32``), updates every 100 steps until the graph falls apart
  (``on_disconnect="stop"``). The graph that fell apart is the one read as modules.

Data sets: :func:`gsreg.datasets.modules` with 3, 4 and 5 planted modules,
:func:`gsreg.datasets.hierarchical` (3 modules x 2 sub-types) and
:func:`gsreg.datasets.binary_modules` (k = 3 on/off modules, all 8 patterns).

    from gsreg.experiments import cluster_indication as ci
    row = ci.run_one("modules", 3, seed=0, setting="gsreg", config=ci.ClusterIndicationConfig())
    result = ci.run_study(ci.ClusterIndicationConfig.quick())     # {"rows": [...], ...}
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.base import clone
from torch import nn

from .. import analysis, datasets
from ..coactivation import RECOMMENDED, RECOMMENDED_WEIGHT, CoactivationGraph
from ..estimators import GSRAutoencoder
from ..graphs import Graph
from ..models import DenseAutoencoder, GraphLayerAutoencoder
from ..regularizer import GraphRegularizer
from ..training import evaluate, fit, seeded

DATASET_KINDS = ("modules", "hierarchical", "binary_modules")
SETTINGS = ("gsreg", "authors", "defaults")
MODELS = ("leaky", "linear", "estimator")
#: graph kernels a setting may use (those with a neighbour count k)
KERNELS = ("knn", "adaptive", "correlation")

#: keys of every row returned by :func:`run_one`
ROW_KEYS = (
    "dataset",
    "n_modules",
    "seed",
    "setting",
    "planted",
    "components",
    "exact",
    "module_sizes",
    "ari",
    "nmi",
    "purity",
    "split_ari",
    "split_nmi",
    "mse",
    "mse_baseline",
    "mse_ratio",
    "graph_step",
    "n_updates",
    "components_history",
    "components_in_use",
    "module_drivers",
    "seconds",
)
#: further keys of hierarchical rows
HIERARCHICAL_KEYS = ("n_fine", "ari_fine", "nmi_fine")
#: further keys of binary_modules rows
BINARY_KEYS = ("bit_corr", "bit_owner", "bit_match", "bits_owned")


@dataclass(frozen=True)
class Setting:
    """How the model is trained and its graph learned in one setting.

    ``model``: ``"leaky"`` (:class:`GraphLayerAutoencoder`: the 100 units pass a LeakyReLU
    before the latent noise), ``"linear"`` (``DenseAutoencoder(noise=...)``: the 100 units
    are the linear bottleneck ``encoder.latent``) or ``"estimator"``
    (``GSRAutoencoder(graph="learned")`` with every default, the learned-graph recipe; only
    ``epochs`` is used, 0 meaning the estimator's "auto", and the other fields record the
    defaults). The graph is rebuilt at steps
    ``warmup_steps + m * update_every``; the penalty ``weight * mean_b z_b^T L z_b`` with the
    normalised Laplacian starts with the first graph. ``kernel`` and ``k``: the neuron graph
    (:class:`gsreg.CoactivationGraph`), each neuron joined to its ``k`` nearest neighbours
    (symmetrised); a group of similar neurons can only split off as a component of its own
    once it holds at least ``k + 1`` neurons.
    """

    model: str
    batch_size: int
    buffer_size: int
    on_disconnect: str
    features: str
    warmup_steps: int
    update_every: int
    weight: float
    epochs: int
    k: int = 5
    kernel: str = "knn"


#: chosen on tuning seeds 100-102 (see docs/cluster_indication.md, "How the settings were chosen")
GSREG = Setting(
    model="leaky",
    batch_size=64,
    buffer_size=1024,
    on_disconnect="continue",
    features="standardized",
    warmup_steps=100,
    update_every=100,
    weight=0.1,
    epochs=15,
    k=10,
    kernel="knn",
)
#: the warm-up of the original paper's procedure, in training steps
PAPER_WARMUP_STEPS = 5000
#: the paper's procedure, warm-up shrunk from PAPER_WARMUP_STEPS to 1000 steps (batch 32)
AUTHORS = Setting(
    model="linear",
    batch_size=32,
    buffer_size=32,
    on_disconnect="stop",
    features="raw",
    warmup_steps=1000,
    update_every=100,
    weight=0.01,
    epochs=27,
    k=5,
    kernel="knn",
)


#: what a user gets from GSRAutoencoder(graph="learned") with no other argument (the
#: recipe of gsreg.coactivation.RECOMMENDED on the estimator's 64-unit layer; warm-up and
#: update interval are a tenth and a sixtieth of the run, 0 here)
DEFAULTS = Setting(
    model="estimator",
    batch_size=500,
    buffer_size=1024,
    on_disconnect="continue",
    features=RECOMMENDED["features"],
    warmup_steps=0,
    update_every=0,
    weight=RECOMMENDED_WEIGHT,
    epochs=0,
    k=RECOMMENDED["k"],
    kernel="knn",
)


@dataclass(frozen=True)
class ClusterIndicationConfig:
    """Everything that defines the study; written with its results.

    ``datasets``: ``(kind, n_modules)`` pairs; for ``"hierarchical"`` ``n_modules`` is the
    number of coarse modules (each with ``subtypes`` sub-types), for ``"binary_modules"``
    the number of on/off modules ``k``. ``n_samples`` is the size of every data set
    (80 % train, 20 % test); ``binary_modules`` gets ``n_samples // 2**k`` samples per
    pattern.
    """

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    datasets: tuple[tuple[str, int], ...] = (
        ("modules", 3),
        ("modules", 4),
        ("modules", 5),
        ("hierarchical", 3),
        ("binary_modules", 3),
    )
    settings: tuple[str, ...] = SETTINGS
    n_samples: int = 3000
    subtypes: int = 2
    width: int = 100
    hidden: int = 50
    noise: float = 0.5
    lr: float = 1e-3
    gsreg: Setting = GSREG
    authors: Setting = AUTHORS
    defaults: Setting = DEFAULTS

    def __post_init__(self) -> None:
        for kind, n in self.datasets:
            if kind not in DATASET_KINDS:
                raise ValueError(f"unknown dataset kind {kind!r}; expected one of {DATASET_KINDS}")
            if not isinstance(n, int) or n < 2:
                raise ValueError(f"{kind}: n_modules must be an integer >= 2, got {n!r}")
        for name in self.settings:
            if name not in SETTINGS:
                raise ValueError(f"unknown setting {name!r}; expected one of {SETTINGS}")
        for name in SETTINGS:
            s = self.setting(name)
            if s.model not in MODELS:
                raise ValueError(f"setting {name!r}: model must be one of {MODELS}")
            if s.kernel not in KERNELS:
                raise ValueError(f"setting {name!r}: kernel must be one of {KERNELS}")
            if not isinstance(s.k, int) or not 1 <= s.k < self.width:
                raise ValueError(f"setting {name!r}: k must be an integer in [1, width)")

    @classmethod
    def quick(cls, **overrides) -> ClusterIndicationConfig:
        """One seed, small data, few steps: seconds (for tests and a first look)."""
        quick = {
            "seeds": (0,),
            "n_samples": 1200,
            "gsreg": dataclasses.replace(GSREG, epochs=8),
            "authors": dataclasses.replace(AUTHORS, warmup_steps=200, epochs=12),
            "defaults": dataclasses.replace(DEFAULTS, epochs=30),
        }
        return cls(**{**quick, **overrides})

    def setting(self, name: str) -> Setting:
        """The :class:`Setting` called ``name`` ("gsreg" or "authors")."""
        if name not in SETTINGS:
            raise ValueError(f"unknown setting {name!r}; expected one of {SETTINGS}")
        return getattr(self, name)


class _RecordingGraph(CoactivationGraph):
    """A CoactivationGraph that also remembers the last graph it built on schedule, so the
    graph refused by ``on_disconnect="stop"`` (the one that fell apart) can be read."""

    built: tuple[int, Graph] | None = None

    def build(self, activations=None, *, step=None):
        graph = super().build(activations, step=step)
        if step is not None:
            self.built = (step, graph)
        return graph


@dataclass
class Trained:
    """A trained run: everything :func:`measure` needs (and the figures)."""

    dataset_kind: str
    n_modules: int
    seed: int
    setting: str
    data: datasets.Dataset
    model: nn.Module
    layer: str
    learned: CoactivationGraph
    graph: Graph | None  # the graph read as modules
    graph_step: int | None
    history: list[tuple[int, Graph]] = field(default_factory=list)
    mse: float = math.nan
    mse_baseline: float = math.nan
    seconds: float = 0.0
    baseline: nn.Module | None = None  # the same model trained with weight 0


def make_dataset(kind: str, n_modules: int, seed: int, config: ClusterIndicationConfig):
    """The data set of a run: ``kind`` with ``n_modules`` planted modules, seeded."""
    if kind == "modules":
        return datasets.modules(n_modules=n_modules, n_samples=config.n_samples, seed=seed)
    if kind == "hierarchical":
        return datasets.hierarchical(
            n_modules=n_modules, subtypes=config.subtypes, n_samples=config.n_samples, seed=seed
        )
    if kind == "binary_modules":
        per_pattern = max(1, config.n_samples // 2**n_modules)
        return datasets.binary_modules(k=n_modules, samples_per_pattern=per_pattern, seed=seed)
    raise ValueError(f"unknown dataset kind {kind!r}; expected one of {DATASET_KINDS}")


def make_model(n_features: int, setting: Setting, config: ClusterIndicationConfig, seed: int):
    """``(model, hooked layer name)`` with seeded initial weights."""
    with seeded(seed):
        if setting.model == "leaky":
            model = GraphLayerAutoencoder(n_features, config.width, config.hidden, config.noise)
            return model, GraphLayerAutoencoder.layer
        model = DenseAutoencoder(
            n_features,
            hidden=(config.hidden, config.hidden),
            latent=config.width,
            noise=config.noise,
        )
        return model, "encoder.latent"


def train(
    dataset_kind: str, n_modules: int, seed: int, setting: str, config: ClusterIndicationConfig
) -> Trained:
    """Train one run with its learned graph, and the same model with weight 0 (baseline)."""
    s = config.setting(setting)
    start = time.perf_counter()
    data = make_dataset(dataset_kind, n_modules, seed, config)
    if s.model == "estimator":
        return _train_estimator(dataset_kind, n_modules, seed, setting, s, data, start)
    model, layer = make_model(data.n_features, s, config, seed)
    learned = _RecordingGraph(
        kernel=s.kernel,
        k=s.k,
        features=s.features,
        warmup_steps=s.warmup_steps,
        update_every=s.update_every,
        buffer_size=s.buffer_size,
        laplacian="normalized",
        on_disconnect=s.on_disconnect,
    )
    reg = GraphRegularizer(model, {layer: learned}, weight=s.weight)
    kwargs = dict(
        epochs=s.epochs,
        batch_size=s.batch_size,
        lr=config.lr,
        seed=seed,
        device="cpu",
        progress=False,
    )
    try:
        fit(model, data.X_train, regularizer=reg, **kwargs)
    finally:
        reg.remove()
    baseline, _ = make_model(data.n_features, s, config, seed)
    fit(baseline, data.X_train, **kwargs)

    history = learned.history
    graph, step = learned.graph, (history[-1][0] if history else None)
    if learned.frozen and s.on_disconnect == "stop" and learned.built is not None:
        step, graph = learned.built  # the graph that fell apart (refused by "stop")
        history = [*history, learned.built]
    mse, mse_baseline = (evaluate(m, data.X_test)["mse"] for m in (model, baseline))
    return Trained(
        dataset_kind,
        n_modules,
        seed,
        setting,
        data,
        model,
        layer,
        learned,
        graph,
        step,
        history,
        mse=mse,
        mse_baseline=mse_baseline,
        seconds=time.perf_counter() - start,
        baseline=baseline,
    )


class ScaledInput(nn.Module):
    """A fitted estimator's model behind its input scaling: ``model((x - mean) / scale)``,
    so that read-outs on raw data see what the estimator sees (the structured layer is
    ``"model." + est.layer_``)."""

    def __init__(self, est) -> None:
        super().__init__()
        self.model = est.model_
        self.register_buffer("mean", torch.as_tensor(est.input_mean_, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(est.input_scale_, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.scale)


def _train_estimator(dataset_kind, n_modules, seed, setting, s: Setting, data, start) -> Trained:
    """A run of ``GSRAutoencoder(graph="learned")`` with its defaults, and its weight=0
    twin; test MSEs in the data's units (``-est.score``)."""
    epochs = "auto" if s.epochs == 0 else s.epochs
    est = GSRAutoencoder(graph="learned", epochs=epochs, random_state=seed, device="cpu")
    est.fit(data.X_train)
    twin = clone(est).set_params(weight=0.0, arrange=False).fit(data.X_train)
    learned = est.coactivation_
    history = learned.history
    return Trained(
        dataset_kind,
        n_modules,
        seed,
        setting,
        data,
        ScaledInput(est).eval(),
        "model." + est.layer_,
        learned,
        learned.graph,
        history[-1][0] if history else None,
        history,
        mse=-est.score(data.X_test),
        mse_baseline=-twin.score(data.X_test),
        seconds=time.perf_counter() - start,
        baseline=ScaledInput(twin).eval(),
    )


def measure(run: Trained) -> dict:
    """The JSON-able row of a trained run (keys :data:`ROW_KEYS`, plus
    :data:`HIERARCHICAL_KEYS` or :data:`BINARY_KEYS` for those data sets)."""
    data, graph = run.data, run.graph
    truth = data.y_test
    if run.dataset_kind == "hierarchical":
        truth = datasets.coarse_labels(data.y_test, len(data.classes) // run.n_modules)
    Z = analysis.activations(run.model, data.X_test, run.layer)
    row: dict = {
        "dataset": run.dataset_kind,
        "n_modules": run.n_modules,
        "seed": run.seed,
        "setting": run.setting,
        "planted": run.n_modules,
    }
    if graph is None:  # no graph was ever built (training shorter than the warm-up)
        labels = None
        row.update(components=0, exact=False, module_sizes=[], ari=None, nmi=None, purity=None)
    else:
        labels = analysis.modules(graph)
        count = int(labels.max()) + 1
        row.update(
            components=count,
            exact=count == run.n_modules,
            module_sizes=np.bincount(labels).tolist(),
            **_indication_scores(Z, labels, truth),
        )
    row["split_ari"] = row["split_nmi"] = None
    if labels is not None and row["components"] < run.n_modules:
        split = analysis.modules(graph, n_modules=run.n_modules, seed=run.seed)
        scores = _indication_scores(Z, split, truth)
        row.update(split_ari=scores["ari"], split_nmi=scores["nmi"])
    row.update(
        mse=run.mse,
        mse_baseline=run.mse_baseline,
        mse_ratio=run.mse / run.mse_baseline,
        graph_step=run.graph_step,
        n_updates=run.learned.n_updates,
        components_history=[int(g.components()[0]) for _, g in run.history],
        components_in_use=run.learned.n_components,
        module_drivers=[] if labels is None else module_drivers(Z, labels, truth),
        seconds=run.seconds,
    )
    if run.dataset_kind == "hierarchical":
        fine = (
            _indication_scores(Z, labels, data.y_test)
            if labels is not None
            else {"ari": None, "nmi": None}
        )
        row.update(n_fine=len(data.classes), ari_fine=fine["ari"], nmi_fine=fine["nmi"])
    if run.dataset_kind == "binary_modules":
        bits = datasets.binary_patterns(run.n_modules)[data.y_test]
        row.update(bit_scores(Z, labels, bits))
    return row


#: ``extra(trained) -> dict``: further read-outs of a trained run, added to its row
Extra = Callable[[Trained], dict]


def run_one(
    dataset_kind: str,
    n_modules: int,
    seed: int,
    setting: str,
    config: ClusterIndicationConfig,
    extra: Extra | None = None,
) -> dict:
    """Train and measure one run: a JSON-able row (see :func:`measure`). ``extra`` adds
    the keys it returns (read-outs that need the trained models; the row is JSON-able
    only if they are)."""
    run = train(dataset_kind, n_modules, seed, setting, config)
    row = measure(run)
    if extra is not None:
        row.update(extra(run))
    return row


def jobs(config: ClusterIndicationConfig) -> list[tuple[str, int, int, str]]:
    """``(dataset_kind, n_modules, seed, setting)`` of every run of the study, in order."""
    return [
        (kind, n, seed, setting)
        for kind, n in config.datasets
        for seed in config.seeds
        for setting in config.settings
    ]


def _run_job(job: tuple, extra: Extra | None = None) -> dict:
    kind, n, seed, setting, config = job
    return run_one(kind, n, seed, setting, config, extra)


def _one_thread() -> None:
    torch.set_num_threads(1)


def run_many(
    jobs_: Sequence[tuple],
    workers: int = 1,
    desc: str = "runs",
    progress: bool = True,
    extra: Extra | None = None,
) -> list[dict]:
    """:func:`run_one` of every ``(kind, n_modules, seed, setting, config)`` job, rows in job
    order. ``workers > 1`` runs them in that many processes (one torch thread each); runs
    are seeded, so the rows do not depend on ``workers``. ``extra`` (see :func:`run_one`)
    must then be a module-level function, and what it returns must pickle."""
    from tqdm.auto import tqdm

    jobs_ = list(jobs_)
    run_job = functools.partial(_run_job, extra=extra)
    with tqdm(total=len(jobs_), desc=desc, disable=not progress, unit="run") as bar:
        if workers <= 1 or len(jobs_) <= 1:
            rows = []
            for job in jobs_:
                rows.append(run_job(job))
                bar.update()
            return rows
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread) as pool:
            rows = []
            for row in pool.map(run_job, jobs_):
                rows.append(row)
                bar.update()
            return rows


def run_study(config: ClusterIndicationConfig, progress: bool = True, workers: int = 1) -> dict:
    """Every run of the study: ``{"config", "rows", "summary", "seconds"}`` (JSON-able).
    ``workers``: processes to run them in (see :func:`run_many`)."""
    start = time.perf_counter()
    todo = [(*job, config) for job in jobs(config)]
    rows = run_many(todo, workers, "cluster indication", progress)
    return {
        "config": dataclasses.asdict(config),
        "rows": rows,
        "summary": summarize(rows),
        "seconds": time.perf_counter() - start,
    }


# ----------------------------------------------------------------------------- read-outs


def _indication_scores(Z: np.ndarray, labels: np.ndarray, truth: np.ndarray) -> dict:
    """ARI, NMI and purity of the samples' modules (indicate_clusters) against ``truth``."""
    return analysis.cluster_scores(analysis.indicated_modules(Z, labels), truth)


def module_drivers(Z: np.ndarray, labels: np.ndarray, truth: np.ndarray) -> list[list[int]]:
    """Per module (in label order), the clusters that drive it: those whose mean module
    activity lies above the midpoint of the module's lowest and highest cluster mean. A
    module driven by one cluster indicates it; one driven by several is a conjunction."""
    table, _, classes = analysis.module_class_table(Z, labels, truth)
    lo, hi = table.min(axis=1, keepdims=True), table.max(axis=1, keepdims=True)
    high = (table > (lo + hi) / 2) & (hi > lo)
    return [classes[row].tolist() for row in high]


def bit_scores(Z: np.ndarray, labels: np.ndarray | None, bits: np.ndarray) -> dict:
    """How the modules of a ``binary_modules`` run map to its k on/off bits.

    ``bit_corr`` (M, k): Pearson correlation over the test samples of each module's mean
    activity with each bit (0 for a module that never varies). ``bit_owner`` (k,): per bit,
    the module most correlated with it. ``bit_match``: the modules and bits paired one to
    one (Hungarian assignment, maximal total correlation), the mean over the k bits of the
    paired correlation (a bit left without a module counts 0): 1 when each bit is owned
    by its own module. ``bits_owned``: how many bits have a distinct owner.
    """
    from scipy.optimize import linear_sum_assignment

    k = bits.shape[1]
    if labels is None:
        return {"bit_corr": [], "bit_owner": [], "bit_match": 0.0, "bits_owned": 0}
    activity = analysis.module_activity(Z, labels)
    corr = np.nan_to_num(analysis.column_correlations(activity, bits), nan=0.0)
    rows, cols = linear_sum_assignment(-corr)
    owner = corr.argmax(axis=0)
    distinct = sum(int(np.sum(owner == owner[j]) == 1) for j in range(k))
    return {
        "bit_corr": np.round(corr, 4).tolist(),
        "bit_owner": owner.tolist(),
        "bit_match": float(corr[rows, cols].sum() / k),
        "bits_owned": distinct,
    }


# ----------------------------------------------------------------------------- summary


def summarize(rows: Iterable[dict]) -> list[dict]:
    """One record per (dataset, n_modules, setting), in order of first appearance: seeds,
    exact-match rate, mean components, mean / sd of ARI, NMI, MSE ratio and, where they
    apply, the split ARI, the fine-label ARI (hierarchical) and the bit match (binary).
    Outside binary_modules also the mean numbers of modules driven by one cluster
    (``single_modules_mean``), by several (``conjunction_modules_mean``) and of clusters
    that have a module of their own (``clusters_indicated_mean``)."""
    groups: dict[tuple, list[dict]] = OrderedDict()
    for row in rows:
        groups.setdefault((row["dataset"], row["n_modules"], row["setting"]), []).append(row)
    out = []
    for (kind, n, setting), group in groups.items():
        record = {
            "dataset": kind,
            "n_modules": n,
            "setting": setting,
            "seeds": len(group),
            "exact": sum(bool(r["exact"]) for r in group),
            "exact_rate": _mean([float(bool(r["exact"])) for r in group]),
            "components_mean": _mean([r["components"] for r in group]),
            "components": [r["components"] for r in group],
        }
        if kind != "binary_modules":
            drivers = [r["module_drivers"] for r in group]
            record["single_modules_mean"] = _mean([sum(len(d) == 1 for d in m) for m in drivers])
            record["conjunction_modules_mean"] = _mean(
                [sum(len(d) > 1 for d in m) for m in drivers]
            )
            record["clusters_indicated_mean"] = _mean(
                [len({d[0] for d in m if len(d) == 1}) for m in drivers]
            )
        keys = ["ari", "nmi", "mse_ratio", "split_ari"]
        keys += ["ari_fine", "nmi_fine"] if kind == "hierarchical" else []
        keys += ["bit_match"] if kind == "binary_modules" else []
        for key in keys:
            values = [r.get(key) for r in group if r.get(key) is not None]
            record[f"{key}_mean"], record[f"{key}_sd"] = _mean(values), _sd(values)
            record[f"{key}_n"] = len(values)
        out.append(record)
    return out


def aim_reached(record: dict, min_exact: int = 4, min_ari: float = 0.9) -> bool:
    """The study's aim for one summary record: the exact number of modules in at least
    ``min_exact`` seeds (of 5) and mean ARI >= ``min_ari``."""
    ari = record.get("ari_mean")
    return record["exact"] >= min_exact and ari is not None and ari >= min_ari


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _sd(values: Sequence[float]) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else (0.0 if values else None)


# ----------------------------------------------------------------------------- tuning


def tune(
    config: ClusterIndicationConfig,
    candidates: dict[str, Sequence],
    setting: str = "gsreg",
    seeds: Sequence[int] = (100, 101, 102),
    datasets: Sequence[tuple[str, int]] | None = None,
    progress: bool = True,
    workers: int = 1,
) -> list[dict]:
    """Grid search of ``setting``'s fields on tuning seeds (kept apart from the reported
    ones). ``candidates`` maps :class:`Setting` field names to the values to try; every
    combination is run on every data set and seed. Returns one record per combination:
    the values, exact matches, mean ARI, mean MSE ratio and the per-run components.
    ``workers``: processes to run them in (see :func:`run_many`)."""
    import itertools

    datasets = tuple(config.datasets if datasets is None else datasets)
    names = list(candidates)
    combos = list(itertools.product(*(candidates[k] for k in names)))
    todo = []
    for combo in combos:
        values = dict(zip(names, combo, strict=True))
        trial = dataclasses.replace(
            config, **{setting: dataclasses.replace(config.setting(setting), **values)}
        )
        todo += [
            (kind, n, seed, setting, trial)
            for (kind, n), seed in itertools.product(datasets, seeds)
        ]
    all_rows = run_many(todo, workers, f"tuning {setting}", progress)
    per = len(datasets) * len(seeds)
    out = []
    for i, combo in enumerate(combos):
        values = dict(zip(names, combo, strict=True))
        rows = all_rows[i * per : (i + 1) * per]
        out.append(
            {
                **values,
                "runs": len(rows),
                "exact": sum(bool(r["exact"]) for r in rows),
                "ari_mean": _mean([r["ari"] for r in rows if r["ari"] is not None]),
                "mse_ratio_mean": _mean([r["mse_ratio"] for r in rows]),
                "components": {
                    f"{kind}:{n}": [
                        r["components"] for r in rows if (r["dataset"], r["n_modules"]) == (kind, n)
                    ]
                    for kind, n in datasets
                },
            }
        )
    return out
