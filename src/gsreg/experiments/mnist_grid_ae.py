"""MNIST autoencoder with an 8x8 grid layer, over the paper's lambda grid.

``DenseAutoencoder(784, hidden=(50, 50), latent=16, decoder_hidden=(64, 50))`` is trained
once per lambda in {0, 1e-4, 1e-3, 1e-2, 1e-1} with the plain penalty
``lambda * mean_b z_b^T L z_b`` on the 64 post-activation units of ``decoder.0`` laid out
as an 8x8 grid, and once more with the mean-centred Rayleigh form (``normalize=
"centered"``) at one weight. Same data, same initial weights, same batch order for every
model. Per model: test MSE (the primary task, against lambda = 0), Moran's I of the class
maps (how localised), the normalised Dirichlet energy and the mean activation norm (the
plain penalty can be lowered by shrinking activations).

The helpers for a model with a GSR grid layer (training a variant, its class-map scores,
figures, table columns and the lambda-grid metrics) are shared with the demo and
:mod:`gsreg.experiments.mnist_grid_classifier`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from torch import nn

from .. import analysis, graphs, plotting
from ..datasets import Dataset
from ..graphs import Graph
from ..models import DenseAutoencoder
from ..report import RunFolder, Section, prose
from ..training import evaluate, seeded
from ._config import (
    check_config,
    public_fields,
    training_checks,
    tuple_fields,
    write_config_and_metrics,
)
from ._figures import plot_tradeoff, save_figures
from ._labels import lambda_label
from ._training import fit_variant, load_mnist, train_variants
from ._verdicts import CLOSE, MSE_CLOSE, MSE_WRECKED, WRECKED, reconstruction_cost

#: the class-map figures of the models with a grid layer (:func:`class_map_plots`)
CLASS_MAP_FIGURES = ("class_maps", "class_maps_minus_mean", "segmentation")
#: the figures a run writes (``figures/<name>.png``), in report order
FIGURES = ("tradeoff", *CLASS_MAP_FIGURES, "training")


def title(config: MnistGridAEConfig) -> str:
    """The report's title."""
    return f"MNIST autoencoder with a {config.graph} GSR layer: the lambda grid"


@dataclass(frozen=True)
class MnistGridAEConfig:
    """Everything that defines a run; written to ``config.json``.

    ``n_train``/``n_test`` of ``None`` use the whole split (60 000 / 10 000).
    """

    graph: str = "grid:8x8"
    layer: str = "decoder.0"
    weights: tuple[float, ...] = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)
    centered_weight: float = 1e-2
    budget: float = 0.05  # 0: no budget model
    latent: int = 16
    epochs: int = 40
    batch_size: int = 500
    lr: float = 1e-3
    n_train: int | None = None
    n_test: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        tuple_fields(self)
        check_config(
            "MnistGridAEConfig",
            weights=(self.weights, "weights"),
            centered_weight=(self.centered_weight, "non_negative"),
            budget=(self.budget, "non_negative"),
            latent=(self.latent, "positive_int"),
            **training_checks(self),
        )
        if 0.0 not in self.weights:
            raise ValueError("MnistGridAEConfig.weights must include 0 (the reference model)")
        graphs.parse(self.graph)

    @classmethod
    def quick(cls, **overrides) -> MnistGridAEConfig:
        """Seconds: 600 training and 300 test digits, one epoch."""
        return cls(**{"epochs": 1, "batch_size": 100, "n_train": 600, "n_test": 300, **overrides})


@dataclass(frozen=True)
class Variant:
    """One model of a lambda grid: a fixed ``weight``, or with ``budget`` (weight then 0)
    the estimators' default: the λ = 0 run, its units arranged on the graph, then fine-tuned
    for ``budget_epochs`` with the weight that spends the budget."""

    key: str
    label: str
    weight: float
    normalize: bool | str
    budget: float | None = None


def _variants(config: MnistGridAEConfig) -> list[Variant]:
    out = [
        Variant(f"lambda_{lambda_label(w)}", f"λ={lambda_label(w)}", float(w), False)
        for w in sorted(set(config.weights))
    ]
    if config.centered_weight > 0:
        w = config.centered_weight
        out.append(
            Variant(
                f"centered_{lambda_label(w)}", f"centred λ={lambda_label(w)}", float(w), "centered"
            )
        )
    if config.budget > 0:
        out.append(budget_variant(config.budget))
    return out


def variant_keys(config: MnistGridAEConfig) -> list[str]:
    """The keys of the models a run of ``config`` trains (``metrics["models"]``), in order."""
    return [variant.key for variant in _variants(config)]


def budget_variant(budget: float) -> Variant:
    """The estimators' default model: budget ``budget``, units arranged first."""
    return Variant(
        "budget", f"budget {budget:g} (arranged, fine-tuned)", 0.0, False, budget=float(budget)
    )


def run(config: MnistGridAEConfig, out: str, device: str = "auto", progress: bool = True) -> dict:
    """Train every model, analyse, write ``out/``; returns the metrics."""
    folder = RunFolder(out)
    graph = graphs.parse(config.graph)
    data = load_mnist(config)
    results, histories = train_variants(
        _variants(config), train_variant, config, graph, data, device, progress
    )
    metrics = _metrics(config, data, results)
    write_config_and_metrics(folder, config, metrics)
    figures = _figures(folder, config, graph, data, results, histories)
    folder.write_report(title(config), _sections(config, metrics, figures))
    return metrics


def train_variant(variant, config, graph, data, device, progress):
    """Train one DenseAutoencoder variant; config needs seed, latent, layer, epochs,
    batch_size and lr. Returns (result dict, History)."""
    with seeded(config.seed):
        model = DenseAutoencoder(
            data.n_features,
            hidden=(50, 50),
            latent=config.latent,
            decoder_hidden=(graph.n_nodes, 50),
        )
        history, seconds, budget = fit_variant(
            model, variant, config, graph, data, device, progress, normalize=variant.normalize
        )
        result = {
            "label": variant.label,
            "weight": variant.weight if budget is None else budget["weights"][config.layer],
            "normalize": variant.normalize,
            "budget": budget,
            "epochs": len(history),
            "test_mse": evaluate(model, data.X_test, task="reconstruction")["mse"],
            "train_seconds": seconds,
            **class_map_fields(model, config.layer, data, graph, config.seed),
        }
        return result, history


def class_map_fields(
    model: nn.Module, layer: str, data: Dataset, graph: Graph, seed: int
) -> dict[str, Any]:
    """The grid layer's map scores as trained and arranged post hoc
    (:func:`gsreg.analysis.map_controls`): the arrangement and the decodability probe are
    fitted on at most ``analysis.ARRANGE_SAMPLES`` training digits (drawn with ``seed``),
    every score is on the test digits."""
    rows = np.arange(len(data.X_train))
    if len(rows) > analysis.ARRANGE_SAMPLES:
        rows = np.sort(
            np.random.default_rng(seed).choice(rows, analysis.ARRANGE_SAMPLES, replace=False)
        )
    Z_train = analysis.activations(model, data.X_train[rows], layer)
    Z_test = analysis.activations(model, data.X_test, layer)
    return analysis.map_controls(Z_train, data.y_train[rows], Z_test, data.y_test, graph, seed=seed)


def with_controls(models: dict[str, dict], reference: str = "lambda_0") -> dict[str, dict]:
    """Each model's activation scale against the λ = 0 model ``models[reference]`` and, for
    GSR models, the :func:`gsreg.analysis.map_verdict` against its controls."""
    reference = models[reference]
    out = {}
    for key, m in models.items():
        m = m | {"scale_vs_lambda_0": m["activation_norm"] / reference["activation_norm"]}
        if m["weight"] > 0:
            m["verdict_vs_controls"] = analysis.map_verdict(m, reference)
        out[key] = m
    return out


def control_summary(reference: dict) -> dict[str, dict[str, float]]:
    """The λ = 0 controls' headline scores for ``metrics.json``."""
    keys = (
        "morans_i",
        "morans_i_p",
        "participation_ratio",
        "contiguity",
        "territories",
        "decodability",
    )
    return {
        name: {k: fields[k] for k in keys}
        for name, fields in analysis.map_control_scores(reference).items()
    }


def lambda_grid_metrics(
    config: Any,
    data: Dataset,
    models: dict[str, dict],
    grid: Sequence[dict],
    primary: str,
    cost: str,
    wrecking_among: Sequence[dict],
) -> dict[str, Any]:
    """The metrics every lambda-grid experiment reports, in ``metrics.json`` order.

    ``models`` are the public results with their cost (``"lambda_0"`` the reference),
    ``grid`` those of the plain lambda grid in lambda order, ``primary`` the primary-task
    score ("test_mse", "test_accuracy") and ``cost`` its cost against lambda = 0
    ("mse_ratio", "accuracy_drop"). ``best`` is the most localised (highest Moran's I)
    grid model with lambda > 0 whose cost is :data:`CLOSE`; ``wrecking_lambdas`` the
    lambdas of the ``wrecking_among`` models that wreck the primary task.
    """
    reference = models["lambda_0"]
    candidates = [
        m
        for m in grid
        if m["weight"] > 0 and m["verdict"] == CLOSE and math.isfinite(m["morans_i"])
    ]
    best = max(candidates, key=lambda m: m["morans_i"], default=None)
    return {
        "data": {"name": "mnist", "n_train": len(data.X_train), "n_test": len(data.X_test)},
        "graph": config.graph,
        "layer": config.layer,
        "models": models,
        "controls": control_summary(reference),
        "lambdas": [m["weight"] for m in grid],
        f"{primary}_by_lambda": [m[primary] for m in grid],
        "morans_i_by_lambda": [m["morans_i"] for m in grid],
        f"{primary}_no_gsr": reference[primary],
        "morans_i_no_gsr": reference["morans_i"],
        "morans_i_expected": reference["morans_i_expected"],
        "wrecking_lambdas": [m["weight"] for m in wrecking_among if m["verdict"] == WRECKED],
        "best": None
        if best is None
        else {
            "lambda": best["weight"],
            "morans_i": best["morans_i"],
            cost: best[cost],
            "verdict_vs_controls": best["verdict_vs_controls"],
        },
    }


def _metrics(config: MnistGridAEConfig, data: Dataset, results: dict) -> dict:
    base = results["lambda_0"]["test_mse"]
    models = with_controls(
        {
            key: public_fields(r) | reconstruction_cost(r["test_mse"], base)
            for key, r in results.items()
        }
    )
    plain = [m for m in models.values() if m["normalize"] is False and m["budget"] is None]
    # the centred model counts among the wrecking lambdas too
    shared = lambda_grid_metrics(
        config, data, models, plain, "test_mse", "mse_ratio", list(models.values())
    )
    return shared | {
        "centered": next(
            (
                {
                    "lambda": m["weight"],
                    "morans_i": m["morans_i"],
                    "mse_ratio": m["mse_ratio"],
                    "activation_norm": m["activation_norm"],
                    "verdict": m["verdict"],
                    "verdict_vs_controls": m["verdict_vs_controls"],
                }
                for m in models.values()
                if m["normalize"] == "centered"
            ),
            None,
        ),
        "budget": budget_summary(models),
    }


def budget_summary(models: dict[str, dict]) -> dict | None:
    """The budget model's spend and structure for ``metrics.json`` (None without one):
    the budget, the weight it set, the test cost against λ = 0 (whose target is 1 + budget)
    and the verdict against the controls."""
    m = next((m for m in models.values() if m.get("budget") is not None), None)
    if m is None:
        return None
    ratio = m.get("mse_ratio", m.get("loss_ratio"))
    return {
        "budget": m["budget"]["budget"],
        "lambda": m["weight"],
        "morans_i": m["morans_i"],
        "cost_ratio": ratio,
        "train_cost": m["budget"]["cost"],
        "at_floor": m["budget"]["at_floor"],
        "epochs": m["epochs"],
        "verdict_vs_controls": m.get("verdict_vs_controls"),
    }


def budget_sentence(budget: dict, cost: str) -> str:
    """One plain sentence on the budget model: what it spent and whether it beats the
    controls; ``cost`` names the cost, e.g. "the test MSE"."""
    verdict = budget["verdict_vs_controls"]
    if verdict is not None:
        verdict = analysis.map_verdict_text(
            verdict, "The budget model", f"{budget['cost_ratio']:.3f}x {cost}"
        )
    return prose("mnist_grid_ae/budget.txt", budget=budget, cost=cost, verdict=verdict)


def headline(metrics: dict) -> dict[str, str]:
    """The numbers an index page shows."""
    out = {
        "test MSE at λ=0": f"{metrics['test_mse_no_gsr']:.4f}",
        "Moran's I at λ=0": f"{metrics['morans_i_no_gsr']:.3f}",
    }
    best = metrics["best"]
    if best is None:
        out["best λ"] = f"none keeps the MSE within {_percent(MSE_CLOSE - 1)} of λ=0"
    else:
        out["best λ"] = (
            f"{lambda_label(best['lambda'])}: Moran's I {best['morans_i']:.3f}, "
            f"MSE {best['mse_ratio']:.2f}x"
        )
        out["best λ vs best control"] = analysis.map_verdict_short(
            best["verdict_vs_controls"], f"{best['mse_ratio']:.2f}x MSE"
        )
    centered = metrics.get("centered")
    if centered is not None:
        out["centred form"] = (
            f"λ={lambda_label(centered['lambda'])}: Moran's I "
            f"{centered['morans_i']:.3f}, MSE {centered['mse_ratio']:.2f}x"
        )
        out["centred vs best control"] = analysis.map_verdict_short(
            centered["verdict_vs_controls"], f"{centered['mse_ratio']:.2f}x MSE"
        )
    budget = metrics.get("budget")
    if budget is not None and budget["verdict_vs_controls"] is not None:
        out[f"budget {budget['budget']:g} vs best control"] = analysis.map_verdict_short(
            budget["verdict_vs_controls"], f"{budget['cost_ratio']:.2f}x MSE"
        )
    return out


def _figures(folder, config, graph, data, results, histories) -> dict[str, str]:
    names = list(data.classes)
    rows = list(results.values())
    plain = [r for r in rows if r["normalize"] is False and r["budget"] is None]
    extra = {
        r["label"]: (r["weight"], r["test_mse"], r["morans_i"])
        for r in rows
        if r["normalize"] is not False or r["budget"] is not None
    }
    tradeoff = plot_tradeoff(
        [r["weight"] for r in plain],
        [r["test_mse"] for r in plain],
        [r["morans_i"] for r in plain],
        "test MSE",
        extra=extra,
        structure_reference=rows[0]["morans_i_expected"],
        control=("λ=0 arranged (control)", rows[0]["arranged"]["morans_i"]),
        title="Primary task and localisation against λ",
    )
    plots = {
        "tradeoff": tradeoff,
        **class_map_plots(with_arranged_reference(rows), graph, names),
        "training": plotting.plot_history(histories, keys=("task_loss",), logy=True),
    }
    return save_figures(folder, plots, FIGURES)


def arranged_row(result: dict) -> dict[str, Any]:
    """A figure row (``label``, ``_maps``, ``_deviation_maps``) of a model's layer with its
    units arranged post hoc, from a result with :func:`class_map_fields`."""
    return {
        "label": f"{result['label']} arranged",
        "_maps": result["_arranged_maps"],
        "_deviation_maps": result["_arranged_deviation_maps"],
    }


def with_arranged_reference(rows: Sequence[dict]) -> list[dict]:
    """Figure rows with the λ = 0 layer arranged post hoc right after the λ = 0 row."""
    return [row for r in rows for row in ((r, arranged_row(r)) if r["weight"] == 0 else (r,))]


def class_map_sections(
    class_maps_text: str, figures: Mapping[str, str], unit: str = "neuron"
) -> list[Section]:
    """The report's sections of the :data:`CLASS_MAP_FIGURES`: the class maps (with
    ``class_maps_text``), the maps minus the global mean and the segmentation."""
    texts = (
        class_maps_text,
        prose("mnist_grid_ae/deviation.txt"),
        prose("mnist_grid_ae/segmentation.txt", unit=unit),
    )
    headings = ("Class maps", "Class maps minus the global mean", "Class segmentation")
    return [
        Section(heading, text=text, figures=[figures[name]])
        for heading, text, name in zip(headings, texts, CLASS_MAP_FIGURES, strict=True)
    ]


def class_map_plots(rows: Sequence[dict], graph: Graph, names: Sequence[str]) -> dict[str, Figure]:
    """The class maps, the class maps minus the global mean and the class segmentation of
    the results ``rows`` (one row of panels each, from :func:`class_map_fields`), keyed by
    their names in :data:`CLASS_MAP_FIGURES`."""
    return dict(
        zip(
            CLASS_MAP_FIGURES,
            (
                plotting.plot_class_map_comparison(
                    {r["label"]: r["_maps"] for r in rows},
                    graph,
                    names,
                    title=f"Class-average activations of the {graph.name} layer",
                ),
                plotting.plot_class_map_comparison(
                    {r["label"]: r["_deviation_maps"] for r in rows},
                    graph,
                    names,
                    symmetric=True,
                    title="Class averages minus the global mean",
                ),
                plotting.plot_segmentation(
                    {r["label"]: analysis.segmentation(r["_maps"]) for r in rows}, graph, names
                ),
            ),
            strict=True,
        )
    )


def _sections(config: MnistGridAEConfig, metrics: dict, figures: dict[str, str]) -> list:
    rows = table_rows(
        metrics["models"],
        lambda m: {
            "test MSE": f"{m['test_mse']:.5f}",
            "MSE vs λ=0": f"{m['mse_ratio']:.3f}x",
            "primary task": m["verdict"],
        },
    )
    n_nodes = graphs.parse(config.graph).n_nodes
    return [
        Section("Summary", text=_summary(config, metrics), table=rows),
        Section(
            "Primary task and localisation against λ",
            text=prose("mnist_grid_ae/tradeoff.txt"),
            figures=[figures["tradeoff"]],
        ),
        Section("Controls", text=controls_text(), table=verdict_rows(metrics["models"])),
        *class_map_sections(prose("mnist_grid_ae/class_maps.txt", n_nodes=n_nodes), figures),
        Section(
            "Training",
            text="Reconstruction loss per epoch (the penalty excluded).",
            figures=[figures["training"]],
        ),
    ]


def controls_text() -> str:
    """What the controls are, for every report with class maps on a grid: the thresholds of
    :func:`gsreg.analysis.map_verdict` and the permutations of the Moran's I p-values."""
    # map_controls scores with map_structure's default number of permutations
    n_permutations = inspect.signature(analysis.map_structure).parameters["n_permutations"]
    return prose(
        "mnist_grid_ae/controls.txt",
        pattern_share=analysis.PATTERN_SHARE,
        decode_tolerance=analysis.DECODE_TOLERANCE,
        n_permutations=n_permutations.default,
    )


def _percent(excess: float) -> str:
    """A share above 1 in words: ``0.1`` -> "10%"."""
    return f"{excess * 100:g}%"


def verdict_rows(models: dict[str, dict]) -> list[dict[str, str]]:
    """One table row per GSR model: its Moran's I against the best control and why it
    helps or not."""
    rows = []
    for m in models.values():
        if "verdict_vs_controls" not in m:
            continue
        v = m["verdict_vs_controls"]
        rows.append(
            {
                "model": m["label"],
                "Moran's I": f"{v['gsr_score']:.3f}",
                "best control": f"{v['best_control']} {v['control_score']:.3f}",
                "margin": f"{v['margin']:+.3f}",
                "territories kept": "yes" if v["distinct"] else "no",
                "class patterns kept": "yes" if v["patterns"] else "no",
                "class information kept": "yes" if v["informative"] else "no",
                "GSR helps": "yes" if v["helps"] else "no",
            }
        )
    return rows


def table_rows(models: dict[str, dict], primary) -> list[dict[str, str]]:
    """Report-table rows: per model its ``primary(model)`` columns and structure columns,
    followed by a row of the same layer with its units arranged post hoc (same function,
    so the same primary task)."""
    rows = []
    for m in models.values():
        rows.append({"model": m["label"], **primary(m), **structure_columns(m)})
        rows.append(
            {
                "model": f"{m['label']} arranged",
                **{k: "=" for k in primary(m)},
                **structure_columns(m["arranged"] | {"train_seconds": None}),
            }
        )
    return rows


def structure_columns(model: dict) -> dict[str, str]:
    """A model's report-table columns after its primary task: localisation with its
    permutation p-value, distinct structure (participation ratio, territories, contiguity),
    class information, scale and training seconds."""
    seconds = model.get("train_seconds")
    return {
        "Moran's I (class − mean)": f"{model['morans_i']:.3f}",
        "p": f"{model['morans_i_p']:.3f}",
        "Moran's I (raw maps)": f"{model['morans_i_raw']:.3f}",
        "participation ratio": f"{model['participation_ratio']:.2f}",
        "territories": f"{model['territories']} of {model['n_classes']}",
        "contiguity (null)": f"{model['contiguity']:.2f} ({model['contiguity_null_mean']:.2f})",
        "decodability": f"{model['decodability']:.3f}",
        "mean ||z||": f"{model['activation_norm']:.3f}",
        "train s": "" if seconds is None else f"{seconds:.1f}",
    }


def _summary(config: MnistGridAEConfig, metrics: dict) -> str:
    models = metrics["models"]
    none = models["lambda_0"]
    best, centered = metrics["best"], metrics["centered"]
    norms = [m["activation_norm"] for m in models.values() if m["normalize"] is False]
    return prose(
        "mnist_grid_ae/summary.txt",
        n_models=len(models),
        n_train=metrics["data"]["n_train"],
        n_test=metrics["data"]["n_test"],
        epochs=config.epochs,
        seed=config.seed,
        graph=config.graph,
        layer=config.layer,
        lambdas=[lambda_label(w) for w in metrics["lambdas"]],
        base=none,
        close_percent=(MSE_CLOSE - 1) * 100,
        best=best,
        best_lambda=None if best is None else lambda_label(best["lambda"]),
        best_verdict=None
        if best is None
        else analysis.map_verdict_text(
            best["verdict_vs_controls"],
            f"λ = {lambda_label(best['lambda'])}",
            f"{best['mse_ratio']:.3f}x the MSE",
        ),
        centered=centered,
        centered_lambda=None if centered is None else lambda_label(centered["lambda"]),
        centered_verdict=None
        if centered is None
        else analysis.map_verdict_text(
            centered["verdict_vs_controls"],
            "The centred form",
            f"{centered['mse_ratio']:.3f}x the MSE",
        ),
        budget=(
            None
            if metrics.get("budget") is None
            else budget_sentence(metrics["budget"], "the test MSE")
        ),
        wrecked=[m["label"] for m in models.values() if m["verdict"] == WRECKED],
        wrecked_ratio=MSE_WRECKED,
        shrink=none["activation_norm"] / min(norms) if min(norms) > 0 else float("nan"),
    )


__all__ = ["FIGURES", "MnistGridAEConfig", "headline", "run", "variant_keys"]
