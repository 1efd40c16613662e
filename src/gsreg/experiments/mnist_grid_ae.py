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

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import analysis, graphs, plotting
from ..datasets import Dataset
from ..graphs import Graph
from ..models import DenseAutoencoder
from ..regularizer import GraphRegularizer
from ..report import RunFolder, Section
from ..training import History, evaluate, fit
from . import (
    CLOSE,
    WRECKED,
    check_config,
    lambda_label,
    load_mnist,
    plot_tradeoff,
    public_fields,
    reconstruction_cost,
    train_variants,
    training_checks,
    tuple_fields,
    write_config_and_metrics,
)

TITLE = "MNIST autoencoder with an 8x8 GSR layer: the lambda grid"


@dataclass(frozen=True)
class MnistGridAEConfig:
    """Everything that defines a run; written to ``config.json``.

    ``n_train``/``n_test`` of ``None`` use the whole split (60 000 / 10 000).
    """

    graph: str = "grid:8x8"
    layer: str = "decoder.0"
    weights: tuple[float, ...] = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)
    centered_weight: float = 1e-2
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
            latent=(self.latent, "positive_int"),
            **training_checks(self),
        )
        if 0.0 not in self.weights:
            raise ValueError("MnistGridAEConfig.weights must include 0 (the reference model)")
        graphs.parse(self.graph)

    @classmethod
    def quick(cls, **overrides) -> MnistGridAEConfig:
        """Seconds: 600 training and 300 test digits, one epoch."""
        return cls(**{"epochs": 1, "batch_size": 100, "n_train": 600, "n_test": 300,
                      **overrides})


Config = MnistGridAEConfig


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    weight: float
    normalize: bool | str


def _variants(config: MnistGridAEConfig) -> list[Variant]:
    out = [
        Variant(f"lambda_{lambda_label(w)}", f"λ={lambda_label(w)}", float(w), False)
        for w in sorted(set(config.weights))
    ]
    if config.centered_weight > 0:
        w = config.centered_weight
        out.append(Variant(f"centered_{lambda_label(w)}", f"centred λ={lambda_label(w)}",
                            float(w), "centered"))
    return out


def run(
    config: MnistGridAEConfig, out: str, device: str = "auto", progress: bool = True
) -> dict:
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
    folder.write_report(TITLE, _sections(config, metrics, figures))
    return metrics


def train_variant(variant, config, graph, data, device, progress):
    """Train one DenseAutoencoder variant; config needs seed, latent, layer, epochs,
    batch_size and lr. Returns (result dict, History)."""
    torch.manual_seed(config.seed)
    model = DenseAutoencoder(
        data.n_features, hidden=(50, 50), latent=config.latent,
        decoder_hidden=(graph.n_nodes, 50),
    )
    history, seconds = fit_with_gsr(
        model, variant, config, graph, data, device, progress, normalize=variant.normalize
    )
    Z = analysis.activations(model, data.X_test, config.layer)
    result = {
        "label": variant.label,
        "weight": variant.weight,
        "normalize": variant.normalize,
        "test_mse": evaluate(model, data.X_test, task="reconstruction")["mse"],
        "train_seconds": seconds,
        **class_map_fields(Z, data.y_test, graph),
    }
    return result, history


def fit_with_gsr(
    model: nn.Module,
    variant: Any,
    config: Any,
    graph: Graph,
    data: Dataset,
    device: str,
    progress: bool,
    *,
    task: str = "reconstruction",
    normalize: bool | str = False,
) -> tuple[History, float]:
    """Train ``model`` on ``data``'s training split with GSR of ``variant.weight`` on
    ``config.layer`` laid out on ``graph`` (none at weight 0), the hook removed afterwards.

    ``config`` needs layer, epochs, batch_size, lr and seed; ``task="classification"``
    trains on the labels ``data.y_train``. Returns the History and the training seconds.
    """
    reg = None
    if variant.weight > 0:
        reg = GraphRegularizer(
            model, {config.layer: graph}, weight=variant.weight, normalize=normalize
        )
    labels = data.y_train if task == "classification" else None
    start = time.perf_counter()
    history = fit(
        model, data.X_train, labels, task=task, regularizer=reg, epochs=config.epochs,
        batch_size=config.batch_size, lr=config.lr, device=device, seed=config.seed,
        progress=progress, desc=variant.label,
    )
    seconds = time.perf_counter() - start
    if reg is not None:
        reg.remove()
    return history, seconds


def class_map_fields(Z: np.ndarray, labels: np.ndarray, graph: Graph) -> dict[str, Any]:
    """A result's scores of the grid layer's test activations Z (N, n) with class labels
    (N,): :func:`gsreg.analysis.localization`, plus the private ``_maps`` (K, n) (class
    means) and ``_deviation_maps`` (K, n) (class means minus the global mean) drawn by
    :func:`class_map_figures`."""
    maps = analysis.class_maps(Z, labels)
    return {
        **analysis.localization(Z, labels, graph),
        "_maps": maps,
        "_deviation_maps": maps - analysis.global_mean(Z),
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
    candidates = [m for m in grid if m["weight"] > 0 and m["verdict"] == CLOSE
                  and math.isfinite(m["morans_i"])]
    best = max(candidates, key=lambda m: m["morans_i"], default=None)
    return {
        "data": {"name": "mnist", "n_train": len(data.X_train), "n_test": len(data.X_test)},
        "graph": config.graph,
        "layer": config.layer,
        "models": models,
        "lambdas": [m["weight"] for m in grid],
        f"{primary}_by_lambda": [m[primary] for m in grid],
        "morans_i_by_lambda": [m["morans_i"] for m in grid],
        f"{primary}_no_gsr": reference[primary],
        "morans_i_no_gsr": reference["morans_i"],
        "morans_i_expected": reference["morans_i_expected"],
        "wrecking_lambdas": [m["weight"] for m in wrecking_among if m["verdict"] == WRECKED],
        "best": None if best is None else {
            "lambda": best["weight"], "morans_i": best["morans_i"], cost: best[cost],
        },
    }


def _metrics(config: MnistGridAEConfig, data: Dataset, results: dict) -> dict:
    base = results["lambda_0"]["test_mse"]
    models = {
        key: public_fields(r) | reconstruction_cost(r["test_mse"], base)
        for key, r in results.items()
    }
    plain = [m for m in models.values() if m["normalize"] is False]
    # the centred model counts among the wrecking lambdas too
    shared = lambda_grid_metrics(
        config, data, models, plain, "test_mse", "mse_ratio", list(models.values())
    )
    return shared | {
        "centered": next(({
            "lambda": m["weight"], "morans_i": m["morans_i"], "mse_ratio": m["mse_ratio"],
            "activation_norm": m["activation_norm"], "verdict": m["verdict"],
        } for m in models.values() if m["normalize"] == "centered"), None),
    }


def headline(metrics: dict) -> dict[str, str]:
    """The numbers an index page shows."""
    out = {
        "test MSE at λ=0": f"{metrics['test_mse_no_gsr']:.4f}",
        "Moran's I at λ=0": f"{metrics['morans_i_no_gsr']:.3f}",
    }
    best = metrics["best"]
    if best is None:
        out["best λ"] = "none keeps the MSE within 10% of λ=0"
    else:
        out["best λ"] = (f"{lambda_label(best['lambda'])}: Moran's I {best['morans_i']:.3f}, "
                         f"MSE {best['mse_ratio']:.2f}x")
    centered = metrics.get("centered")
    if centered is not None:
        out["centred form"] = (f"λ={lambda_label(centered['lambda'])}: Moran's I "
                               f"{centered['morans_i']:.3f}, MSE {centered['mse_ratio']:.2f}x")
    return out


def _figures(folder, config, graph, data, results, histories) -> dict[str, str]:
    names = list(data.classes)
    rows = list(results.values())
    plain = [r for r in rows if r["normalize"] is False]
    extra = {
        r["label"]: (r["weight"], r["test_mse"], r["morans_i"])
        for r in rows if r["normalize"] is not False
    }
    tradeoff = plot_tradeoff(
        [r["weight"] for r in plain], [r["test_mse"] for r in plain],
        [r["morans_i"] for r in plain], "test MSE", extra=extra,
        structure_reference=rows[0]["morans_i_expected"],
        title="Primary task and localisation against λ",
    )
    return {
        "tradeoff": folder.save_figure(tradeoff, "tradeoff"),
        **class_map_figures(folder, rows, graph, names),
        "history": folder.save_figure(
            plotting.plot_history(histories, keys=("task_loss",), logy=True), "training"),
    }


def class_map_figures(
    folder: RunFolder, rows: Sequence[dict], graph: Graph, names: Sequence[str]
) -> dict[str, str]:
    """Save the class maps, the class maps minus the global mean and the class segmentation
    of the results ``rows`` (one row of panels each, from :func:`class_map_fields`).

    Returns ``{"raw", "deviation", "segmentation": figure file}``.
    """
    return {
        "raw": folder.save_figure(plotting.plot_class_map_comparison(
            {r["label"]: r["_maps"] for r in rows}, graph, names,
            title="Class-average activations of the 8x8 layer"), "class_maps"),
        "deviation": folder.save_figure(plotting.plot_class_map_comparison(
            {r["label"]: r["_deviation_maps"] for r in rows}, graph, names, symmetric=True,
            title="Class averages minus the global mean"), "class_maps_minus_mean"),
        "segmentation": folder.save_figure(plotting.plot_segmentation(
            {r["label"]: analysis.segmentation(r["_maps"]) for r in rows}, graph, names),
            "segmentation"),
    }


def _sections(config: MnistGridAEConfig, metrics: dict, figures: dict[str, str]) -> list:
    models = metrics["models"]
    rows = [
        {
            "model": m["label"],
            "test MSE": f"{m['test_mse']:.5f}",
            "MSE vs λ=0": f"{m['mse_ratio']:.3f}x",
            "primary task": m["verdict"],
            **structure_columns(m),
        }
        for m in models.values()
    ]
    return [
        Section("Summary", text=_summary(config, metrics), table=rows),
        Section("Primary task and localisation against λ", text=(
            "Blue: test MSE (left axis); orange: Moran's I of the class maps minus the "
            "global mean (right axis). λ = 0 sits at the left end; open markers are the "
            "centred Rayleigh penalty. The dotted line is Moran's I without any spatial "
            "structure. A useful λ raises the orange curve while the blue one stays flat."),
            figures=[figures["tradeoff"]]),
        Section("Class maps", text=(
            "Each panel is the average activation of the 64 grid neurons over the test "
            "images of one digit; each row is one model, with its own colour scale. With "
            "GSR, neighbouring neurons take similar values, so the maps become blobs "
            "rather than salt and pepper."), figures=[figures["raw"]]),
        Section("Class maps minus the global mean", text=(
            "What sets each digit apart: red above, blue below the average map. Localised "
            "classes show one or two compact red regions."), figures=[figures["deviation"]]),
        Section("Class segmentation", text=(
            "Per neuron, the digit whose L1-normalised average map claims it most. "
            "Contiguous patches mean that each digit owns a region of the grid."),
            figures=[figures["segmentation"]]),
        Section("Training", text="Reconstruction loss per epoch (the penalty excluded).",
                figures=[figures["history"]]),
    ]


def structure_columns(model: dict) -> dict[str, str]:
    """A model's report-table columns after its primary task: localisation, energy, mean
    activation norm and training seconds."""
    return {
        "Moran's I (class − mean)": f"{model['morans_i']:.3f}",
        "Moran's I (raw maps)": f"{model['morans_i_raw']:.3f}",
        "normalised Dirichlet energy": f"{model['dirichlet_energy']:.3f}",
        "mean ||z||": f"{model['activation_norm']:.3f}",
        "train s": f"{model['train_seconds']:.1f}",
    }


def _summary(config: MnistGridAEConfig, metrics: dict) -> str:
    models = metrics["models"]
    data = metrics["data"]
    none = models["lambda_0"]
    lines = [
        f"The autoencoder was trained {len(models)} times on {data['n_train']} MNIST digits "
        f"({config.epochs} epochs, seed {config.seed}) with GSR on the {config.graph} layer "
        f"'{config.layer}' at λ in {{{', '.join(lambda_label(w) for w in metrics['lambdas'])}}}"
        f", plus the centred Rayleigh form at λ = {lambda_label(config.centered_weight)}. "
        f"Scores are on {data['n_test']} test digits.",
        f"Without GSR the test MSE is {none['test_mse']:.5f} and Moran's I of the class maps "
        f"is {none['morans_i']:.3f} ({none['morans_i_expected']:.3f} means no spatial "
        "structure, 1 perfectly smooth).",
    ]
    best = metrics["best"]
    if best is None:
        lines.append("No λ of the plain penalty keeps the test MSE within 10% of λ = 0.")
    else:
        lines.append(
            f"The most localised model whose MSE stays within 10% of λ = 0 is λ = "
            f"{lambda_label(best['lambda'])}: Moran's I {best['morans_i']:.3f} at "
            f"{best['mse_ratio']:.3f}x the MSE."
        )
    centered = metrics["centered"]
    if centered is not None:
        lines.append(
            f"The centred Rayleigh form at λ = {lambda_label(centered['lambda'])} reaches "
            f"Moran's I {centered['morans_i']:.3f} at {centered['mse_ratio']:.3f}x the MSE "
            f"({centered['verdict']}), with a mean ||z|| of {centered['activation_norm']:.3f} "
            f"against {none['activation_norm']:.3f} without GSR."
        )
    wrecked = [m["label"] for m in models.values() if m["verdict"] == WRECKED]
    if wrecked:
        lines.append(
            f"{', '.join(wrecked)} wreck{'s' if len(wrecked) == 1 else ''} the primary task "
            f"(test MSE more than 1.5x that at λ = 0): the structure there is bought with "
            "the reconstruction, not added to it."
        )
    norms = [m["activation_norm"] for m in models.values() if m["normalize"] is False]
    shrink = none["activation_norm"] / min(norms) if min(norms) > 0 else float("nan")
    lines.append(
        f"The plain penalty is also lowered by shrinking activations: the mean ||z|| falls up "
        f"to {shrink:.1f}x below that at λ = 0 (table). The normalised Dirichlet energy and "
        "Moran's I ignore the scale; the centred Rayleigh form cannot be lowered that way."
    )
    return "\n\n".join(lines)


__all__ = ["Config", "MnistGridAEConfig", "headline", "run"]
