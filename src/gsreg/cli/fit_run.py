"""``gsreg fit``'s work: train :class:`gsreg.GSRAutoencoder` (and its λ = 0 twin for the
controls, :func:`gsreg.controls.score`) and write the run folder's files and report.

Unless ``controls=False``, the same model is also trained with λ = 0 (same seed, as many
epochs as the GSR model trained in all: :func:`gsreg.controls.twin`) and the GSR layer's
scores stand beside its controls: for a fixed graph the λ = 0 layer as trained and with its
units arranged post hoc onto the graph, for a learned graph post-hoc modules of the λ = 0
layer and clusterings of the samples, each with a verdict sentence. The report is written
by :mod:`gsreg.cli.fit_report`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from .. import analysis, plotting
from .. import controls as twin_controls
from ..datasets.files import RowNames, Table
from ..estimators import LEARNED, GSRAutoencoder
from ..report import RunFolder
from . import fit_report
from .fit import FitConfig

MAX_CLASS_PANELS = 24  # class maps drawn for at most this many (most frequent) labels


def write_run(config: FitConfig, table: Table, folder_path: Path, progress: bool) -> dict:
    """Train on ``table`` as ``config`` says and write every file of the run into
    ``folder_path``; returns the metrics."""
    folder = RunFolder(folder_path)
    X, y = table.X, table.labels
    est = GSRAutoencoder(**estimator_params(config), verbose=int(progress))
    start = time.perf_counter()
    est.fit(X)
    seconds = time.perf_counter() - start
    Z = est.activations(X)
    embedding = est.transform(X)
    metrics = {
        "data": {
            "path": str(config.data),
            "n_samples": int(X.shape[0]),
            "n_features": int(X.shape[1]),
            "labels": table.labels_from,
            "n_labels": None if y is None else int(len(np.unique(y))),
        },
        "graph": config.graph if est.coactivation_ is None else LEARNED,
        "layer": est.layer_,
        "weight": config.weight,
        "budget": None if est.budget_report_ is None else est.budget_report_["budget"],
        "final_weight": est._final_weight(),
        "epochs": est.n_iter_,
        "steps": est.n_steps_,
        "train_mse": -est.score(X),
        "train_seconds": seconds,
        "activation_norm": float(np.linalg.norm(Z, axis=1).mean()),
    }
    figures = []
    if est.budget_report_ is not None:
        metrics["budget_report"] = est.budget_report_
    if est.coactivation_ is None:
        metrics.update(_maps(folder, est, Z, y, figures))
    else:
        metrics.update(_modules(folder, est, Z, y, figures))
        note = single_module_note(metrics["n_modules"], est.n_steps_)
        if note:
            metrics["note"] = note
    if config.controls:
        twin, twin_seconds = est, 0.0
        if config.weight != 0:
            twin = twin_controls.twin(est)
            start = time.perf_counter()
            twin.fit(X)
            twin_seconds = time.perf_counter() - start
        metrics["controls"] = twin_controls.score(est, twin, X, y, Z=Z, seed=config.seed)
        metrics["controls"]["lambda0"]["train_seconds"] = twin_seconds
    fig, caption = fit_report.training_figure(est, twin if config.controls else None)
    training = (folder.save_figure(fig, "training"), caption)
    est.save(folder_path / "model.safetensors")
    np.save(folder_path / "embedding.npy", embedding)
    rows = table.row_names
    write_csv(folder_path / "embedding.csv", embedding, _names("z", embedding.shape[1]), rows)
    write_csv(folder_path / "activations.csv", Z, _names("unit", Z.shape[1]), rows)
    unit_modules = _unit_modules(est)
    if unit_modules is not None:
        sample_modules = analysis.indicated_modules(Z, unit_modules)
        write_csv(folder_path / "modules.csv", sample_modules[:, None], ["module"], rows)
    folder.write_json(
        "config.json",
        {
            **dataclasses.asdict(config),
            "estimator": est.get_params(),
            # results are bit-identical at a fixed thread count
            "torch_threads": torch.get_num_threads(),
        },
    )
    folder.write_metrics(metrics)
    report = metrics.get("budget_report")
    notes = [metrics.get("note"), None if report is None else budget_text(report)]
    folder.write_report(
        f"gsreg fit: {Path(config.data).name}",
        fit_report.sections(config, metrics, figures, training, notes),
    )
    return metrics


# ---------------------------------------------------------------------------- controls


def budget_text(report: dict) -> str:
    """One plain sentence on what the budget spent, and whether it could be met."""
    b, cost = report["budget"], report["cost"]
    head = (
        f"The budget allowed {b:.0%} more training loss than without GSR; the fine-tuning "
        f"ended at {cost:+.1%}."
    )
    if report["at_floor"]:
        return head + (
            " The budget could not be met: even the least weight cost more. "
            "Try a larger --budget, or read the λ = 0 layer arranged post hoc "
            "(gsreg arrange)."
        )
    return head


def single_module_note(n_modules: int | None, steps: int) -> str | None:
    """The plain sentence for a learned graph that found no modules (None when it did)."""
    if n_modules is None:
        return (
            f"No graph was learned in {steps} steps, so there are no neuron modules; "
            "train longer (a larger --epochs)."
        )
    if n_modules == 1:
        return (
            "The learned graph stayed in one piece (1 module), so it found no neuron "
            "modules; try a larger --budget (e.g. 0.2: more structure for more task "
            "loss) or more --epochs."
        )
    return None


def _maps(folder: RunFolder, est, Z: np.ndarray, y, figures: list) -> dict:
    graph = est.graph_
    scored = graph.n_edges > 0
    if y is not None:
        classes, counts = np.unique(y, return_counts=True)
        shown = np.sort(classes[np.argsort(-counts, kind="stable")[:MAX_CLASS_PANELS]])
        maps, dev = analysis.class_maps(Z, y), analysis.class_deviation_maps(Z, y)
        rows = np.isin(classes, shown)
        names = [str(c) for c in shown]
        fig = plotting.plot_class_map_comparison(
            {"class mean": maps[rows], "minus the global mean": dev[rows]},
            graph,
            names,
            symmetric=[False, True],
            title=f"Class maps of the {graph.name} layer",
        )
        note = (
            ""
            if len(shown) == len(classes)
            else (f" Only the {len(shown)} most frequent of {len(classes)} labels are drawn.")
        )
        figures.append(
            (
                "Class maps",
                "Average activation of each neuron of the structured "
                "layer over the samples of each label ('class mean') and the same minus the "
                f"average over all samples ('minus the global mean').{note}",
                folder.save_figure(fig, "class_maps"),
            )
        )
        seg = analysis.segmentation(maps[rows])
        figures.append(
            (
                "Segmentation",
                "Per neuron, the label whose L1-normalised average map claims it most.",
                folder.save_figure(
                    plotting.plot_segmentation({"GSR": seg}, graph, names), "segmentation"
                ),
            )
        )
        return {"localization": analysis.localization(Z, y, graph)} if scored else {}
    import matplotlib.pyplot as plt

    mean, var = Z.mean(axis=0), Z.var(axis=0)
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.4), layout="constrained")
    plotting.plot_maps(mean, graph, titles=["mean activation"], axes=[axes[0]])
    plotting.plot_maps(var, graph, titles=["variance"], axes=[axes[1]])
    figures.append(
        (
            "Mean and variance maps",
            "Mean and variance over all samples of each "
            "neuron of the structured layer, laid out on the graph.",
            folder.save_figure(fig, "mean_variance_maps"),
        )
    )
    if not scored:
        return {}
    return {
        "morans_i_mean_map": analysis.morans_i(mean, graph),
        "morans_i_variance_map": analysis.morans_i(var, graph),
    }


def _modules(folder: RunFolder, est, Z: np.ndarray, y, figures: list) -> dict:
    lg = est.coactivation_
    if lg.graph is None:
        return {"n_modules": None}
    labels = est.modules_
    sizes = np.bincount(labels).tolist()
    figures.append(
        (
            "Neuron modules",
            "The graph learned from the layer's co-activations; "
            "each connected component is a neuron module.",
            folder.save_figure(plotting.plot_modules(lg.graph, labels), "modules"),
        )
    )
    if len(lg.history) > 1:
        figures.append(
            (
                "Learned graph over training",
                "",
                folder.save_figure(
                    plotting.plot_graph_snapshots(lg.history, labels), "graph_history"
                ),
            )
        )
    result: dict = {"n_modules": len(sizes), "module_sizes": sizes}
    if y is not None:
        table, module_ids, class_ids = analysis.module_class_table(Z, labels, y)
        classes, counts = np.unique(y, return_counts=True)
        shown = np.isin(
            class_ids, np.sort(classes[np.argsort(-counts, kind="stable")[:MAX_CLASS_PANELS]])
        )
        fig = plotting.plot_module_class_heatmap(
            table[:, shown], module_ids, [str(c) for c in class_ids[shown]]
        )
        figures.append(
            (
                "Modules x labels",
                "Mean activity of each module's neurons over the samples of each label.",
                folder.save_figure(fig, "module_labels"),
            )
        )
        pred = analysis.indicate_clusters(Z, labels)
        result["cluster_indication"] = analysis.cluster_scores(pred, y)
        result["module_label_table"] = {
            f"module {m}": {str(c): float(v) for c, v in zip(class_ids, row, strict=True)}
            for m, row in zip(module_ids, table, strict=True)
        }
    return result


def estimator_params(config: FitConfig) -> dict:
    """The :class:`gsreg.GSRAutoencoder` parameters of a run (all but ``verbose``)."""
    return dict(
        graph=config.graph,
        weight=config.weight,
        budget=config.budget,
        layer=config.layer,
        hidden=tuple(config.hidden),
        latent=config.latent,
        decoder_hidden=None if config.decoder_hidden is None else tuple(config.decoder_hidden),
        n_structured=config.n_structured,
        laplacian=config.laplacian,
        normalize=config.normalize,
        arrange=config.arrange,
        epochs="auto" if config.epochs is None else config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        scale=config.scale,
        random_state=config.seed,
        device=config.device,
    )


def _unit_modules(est) -> np.ndarray | None:
    """(n,) the neuron module of each unit of the structured layer: a learned graph's
    modules, a fixed graph's connected components when it has several; else None."""
    if est.coactivation_ is not None:
        return est.modules_
    labels = analysis.modules(est.graph_)
    return labels if labels.max() > 0 else None


def _names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{k + 1}" for k in range(count)]


def write_csv(path: Path, values: np.ndarray, columns: list[str], rows: RowNames | None) -> None:
    """``values`` (N, k) as a CSV file with a header of ``columns``; with ``rows``, the
    samples' names come first, under their own header, as ``DataFrame.to_csv`` writes
    them (``pandas.read_csv(path, index_col=0)`` reads the table back)."""
    import pandas as pd

    index = None if rows is None else pd.Index(rows.names, name=rows.header or None)
    frame = pd.DataFrame(values, columns=columns, index=index)
    frame.to_csv(path, index=rows is not None, float_format="%.9g", lineterminator="\n")
