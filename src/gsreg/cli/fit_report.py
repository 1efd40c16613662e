"""The report of ``gsreg fit``: its sections (prose from ``templates/fit/``) and the
training figure, from the run's metrics. Every structure score stands in one table beside
its controls, with its p-value and a sentence on what it measures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import plotting
from ..report import Section, prose
from .fit import FitConfig

#: ``(key, name, what it measures)`` of the class-map scores, in table order; a key with
#: ``<key>_p`` and ``<key>_null_mean`` entries gets its p-value and null mean beside it
MAP_SCORES = (
    (
        "morans_i",
        "Moran's I of the class maps",
        "spatial autocorrelation, on the graph, of each class's deviation from the average "
        "map: about -1/(n-1) is no spatial structure, 1 perfectly smooth",
    ),
    (
        "contiguity",
        "contiguity of the segmentation",
        "share of the graph's edge weight whose two neurons are claimed by the same class",
    ),
    (
        "territories",
        "class territories",
        "classes that own a connected patch of neurons in the segmentation",
    ),
    (
        "participation_ratio",
        "distinct class patterns",
        "effective number of distinct class-deviation maps (participation ratio; 1: one "
        "pattern shared by every class, only scaled)",
    ),
    (
        "decodability",
        "class information",
        "test accuracy of a linear probe that reads the label from the layer",
    ),
    (
        "activation_norm",
        "activation scale",
        "mean ||z|| per sample: a penalty that only shrinks the activations shows here",
    ),
    (
        "dirichlet_energy",
        "Dirichlet energy",
        "graph energy of the standardised activations (lower is smoother; scale-free)",
    ),
)
SMOOTHNESS_SCORES = (
    (
        "dirichlet_energy",
        "Dirichlet energy",
        "graph energy of the standardised activations (lower is smoother; scale-free)",
    ),
    (
        "morans_i_mean_map",
        "Moran's I of the mean map",
        "spatial autocorrelation of the average activation on the graph (1 perfectly smooth)",
    ),
)


def sections(
    config: FitConfig,
    metrics: dict,
    figures: list,
    training: tuple[str, str],
    notes: list[str],
) -> list[Section]:
    """The report's sections: summary (with ``notes``: paragraphs on the budget and on
    modules not found), controls, the figures ``(heading, note, png)`` and the training
    curves ``(png, text)``."""
    text = prose("fit/summary.txt", **_summary_values(config, metrics))
    for extra in notes:
        if extra:
            text += "\n\n" + extra
    if "controls" in metrics:
        text += "\n\n" + metrics["controls"]["verdict_text"]
    out = [Section("Summary", text=text, table=_run_table(config, metrics))]
    if "controls" in metrics:
        out.append(controls_section(metrics["controls"]))
    out += [Section(heading, text=note, figures=[png]) for heading, note, png in figures]
    png, note = training
    out.append(Section("Training", text=note, figures=[png]))
    return out


def controls_section(result: dict) -> Section:
    """The GSR layer's scores beside its controls, one row per score."""
    kind = result["kind"]
    text = prose(f"fit/controls_{kind}.txt", **result.get("rows", {}))
    if kind == "maps":
        table = _score_table(result["scores"], MAP_SCORES)
    elif kind == "smoothness":
        table = _score_table(result["scores"], SMOOTHNESS_SCORES)
    else:
        table = _module_table(result)
    return Section("Controls", text=text, table=table or None)


def training_figure(est, twin) -> tuple:
    """The training curves of ``est`` (and its λ = 0 ``twin`` when it was trained apart):
    ``(figure, caption)``. The task loss is shown in the data's units when the
    estimator scales all features by one number (``scale="global"`` or None)."""
    scale = float(np.asarray(est.input_scale_).ravel()[0])
    data_units = est.scale in ("global", None)
    factor = scale**2 if data_units else 1.0
    runs = {"GSR": est.history_.epochs}
    if twin is not None and twin is not est:
        runs["λ = 0"] = twin.history_.epochs
    curves = {
        label: [{**r, "mse": r["task_loss"] * factor} for r in records if "task_loss" in r]
        for label, records in runs.items()
    }
    titles = {
        "mse": "reconstruction MSE (data units)" if data_units else "reconstruction MSE (scaled)",
        "penalty": "GSR penalty (graph energy)",
    }
    fig = plotting.plot_history(curves, keys=("mse", "penalty"), titles=titles)
    text = prose("fit/training.txt", twin=len(runs) > 1, data_units=data_units, scale=scale)
    return fig, text


def _summary_values(config: FitConfig, metrics: dict) -> dict:
    data, controls = metrics["data"], metrics.get("controls") or {}
    lambda0 = controls.get("lambda0") or {}
    return {
        "strength": _strength(config, metrics),
        "n_samples": data["n_samples"],
        "n_features": data["n_features"],
        "data_name": Path(config.data).name,
        "epochs": metrics["epochs"],
        "steps": metrics["steps"],
        "seed": config.seed,
        "layer": metrics["layer"],
        "graph": metrics["graph"],
        "train_mse": metrics["train_mse"],
        "lambda0_mse": lambda0.get("train_mse"),
        "mse_ratio": controls.get("mse_ratio"),
    }


def _strength(config: FitConfig, metrics: dict) -> str:
    if config.weight is not None:
        return prose("fit/strength_weight.txt", weight=config.weight)
    if metrics.get("budget") is not None:
        return prose(
            "fit/strength_budget.txt", budget=metrics["budget"], weight=metrics["final_weight"]
        )
    return prose("fit/strength_learned.txt", weight=metrics["final_weight"])


def _run_table(config: FitConfig, metrics: dict) -> dict:
    """What was run, in words a reader can check against the command."""
    data = metrics["data"]
    table = {
        "data": f"{Path(config.data).name}: {data['n_samples']} samples x "
        f"{data['n_features']} features",
        "labels": data["labels"] or "none",
        "graph": metrics["graph"],
        "structured layer": metrics["layer"],
        "λ (final)": _number(metrics["final_weight"]),
        "budget": "none" if metrics["budget"] is None else f"{metrics['budget']:.0%}",
        "epochs (steps)": f"{metrics['epochs']} ({metrics['steps']})",
        "training time": f"{metrics['train_seconds']:.1f} s",
        "reconstruction MSE (data units)": _number(metrics["train_mse"]),
    }
    lambda0 = (metrics.get("controls") or {}).get("lambda0") or {}
    if lambda0.get("train_mse") is not None:
        table["reconstruction MSE, λ = 0"] = _number(lambda0["train_mse"])
        table["MSE vs λ = 0"] = f"{metrics['controls']['mse_ratio']:.3f}x"
    if metrics.get("n_modules") is not None:
        table["neuron modules"] = str(metrics["n_modules"])
    return table


def _score_table(scores: dict, rows: tuple) -> list[dict]:
    """One row per score: its value for each layer (with the p-value of its permutation
    null where it has one), the null's mean, and what it measures."""
    table = []
    for key, name, meaning in rows:
        if not any(key in layer for layer in scores.values()):
            continue
        row = {"score": name}
        for layer, values in scores.items():
            row[layer] = _with_p(values, key)
        nulls = [values.get(f"{key}_null_mean") for values in scores.values()]
        if any(v is not None for v in nulls):
            row["random placement (mean)"] = _number(next(v for v in nulls if v is not None))
        if key == "territories":
            n_classes = next((v.get("n_classes") for v in scores.values()), None)
            meaning += f" (of {n_classes})" if n_classes else ""
        row["what it measures"] = meaning
        table.append(row)
    return table


def _module_table(result: dict) -> list[dict]:
    if "ari" not in result:
        return []
    null = result.get("null") or {}
    table = []
    for name, value in result["ari"].items():
        row = {"clustering": name, "ARI against the labels": _number(value)}
        if name == "GSR modules" and null.get("p_value") is not None:
            row["ARI against the labels"] += f" (p {null['p_value']:.3f})"
            row["random grouping (mean)"] = _number(null.get("null_mean"))
        table.append(row)
    return table


def _with_p(values: dict, key: str) -> str:
    text = _number(values.get(key))
    p = values.get(f"{key}_p")
    return text if p is None else f"{text} (p {p:.3f})"


def _number(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{value:.4g}"
