"""``gsreg arrange``: place a saved model's layer on a graph post hoc and write up the result.

Loads a file written by :func:`gsreg.save` (a ``gsreg fit`` run's ``model.safetensors`` or
any gsreg model), reads DATA as ``gsreg fit`` does, runs :func:`gsreg.arrange` on it and
writes a run folder: the arranged model, ``perm.npy``, ``metrics.json``, ``config.json``
and ``report.html`` with the layer's maps before and after. A fitted estimator's file
carries its input scaling, which is applied to DATA first; for any other model DATA must
already be the model's input. The folder is staged next to ``--out`` and swapped in whole
only when everything succeeded (it then holds this run alone).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import analysis, graphs, plotting
from .._files import check_run_folder, staged_folder
from ..datasets.files import load_data
from ..graphs import Graph
from ..report import RunFolder, Section
from .fit_run import MAX_CLASS_PANELS

#: sample maps scored by Moran's I (and its permutation null) when there are no labels;
#: 200 maps x 64 permutations x n units stay near 100 MB at n = 1,024
SAMPLE_MAPS = 200
#: sample maps drawn in the report beside the mean map when there are no labels
SHOWN_SAMPLES = 5
#: permutations of the nulls (p-values down to 1/1000)
N_PERMUTATIONS = 999
OUTPUTS = ("report.html", "metrics.json", "config.json", "model.safetensors", "perm.npy", "figures")


@dataclass(frozen=True)
class ArrangeConfig:
    """Everything that defines a ``gsreg arrange`` run; written to ``config.json``."""

    model: str
    layer: str
    graph: str
    data: str
    labels: str | None = None
    consumer: str | None = None
    seed: int = 0


def default_out(model: str | os.PathLike) -> str:
    """``runs/arrange-<MODEL stem>``; a run folder's ``model.safetensors`` is named after
    its folder (``runs/fit-x/model.safetensors`` -> ``runs/arrange-fit-x``)."""
    path = Path(model)
    stem = path.stem
    if stem == "model" and path.resolve().parent.name:
        stem = path.resolve().parent.name
    return f"runs/arrange-{stem}"


def run(config: ArrangeConfig, out: str | os.PathLike) -> dict:
    """Arrange and write the run folder ``out``; returns the metrics written.

    Raises ValueError / FileNotFoundError with one-line messages on bad input; nothing is
    written then.
    """
    model_path = Path(config.model)
    if not model_path.exists():
        raise FileNotFoundError(f"no such model file: {model_path}")
    if model_path.is_dir():
        raise IsADirectoryError(f"{model_path} is a directory, not a model file")
    labels = [config.labels] if config.labels and Path(config.labels).is_file() else []
    out = check_run_folder(
        out, OUTPUTS, [model_path, config.data, *labels], command="gsreg arrange"
    )
    graph = graphs.parse(config.graph)
    if graph.n_edges == 0:
        raise ValueError(f"graph {config.graph!r} has no edges; there is nothing to be smooth on")
    table = load_data(config.data, config.labels)
    if table.labels is not None and len(np.unique(table.labels)) < 2:
        raise ValueError(f"--labels {config.labels!r} holds a single class; class maps need two")

    from .. import io

    loaded = io.load(model_path)
    X = _model_input(loaded, table.X, config.data)
    Z_before = _unit_maps(loaded.model, X, config.layer, graph.n_nodes)
    from ..placement import arrange

    perm = arrange(
        loaded.model, config.layer, graph, X, consumer=config.consumer, random_state=config.seed
    )
    Z_after = _unit_maps(loaded.model, X, config.layer, graph.n_nodes)
    with staged_folder(out) as staging:
        metrics = _write_run(config, graph, loaded, perm, Z_before, Z_after, table.labels, staging)
    return metrics


# ---------------------------------------------------------------------------- input


def _model_input(loaded, X: np.ndarray, data: str) -> np.ndarray:
    """DATA as the model's input: scaled as the estimator was, if the file holds one."""
    fitted = loaded.metadata.get("fitted")
    if loaded.metadata.get("estimator") and isinstance(fitted, dict):
        mean = np.asarray(fitted["input_mean_"], dtype=np.float64)
        scale = np.asarray(fitted["input_scale_"], dtype=np.float64)
        if X.shape[1] != len(mean):
            raise ValueError(
                f"{Path(data).name} has {X.shape[1]} features but the model was fitted on "
                f"{len(mean)}"
            )
        X = ((X.astype(np.float64) - mean) / scale).astype(np.float32)
    _check_forward(loaded.model, X, data)
    return X


def _check_forward(model, X: np.ndarray, data: str) -> None:
    """One forward pass on two samples, so that a shape mismatch is an input error."""
    import torch

    from ..placement import _as_model_input

    try:
        with torch.no_grad():
            model.eval()(_as_model_input(model, torch.as_tensor(X[:2])))
    except RuntimeError as err:
        message = " ".join(str(err).split())
        raise ValueError(
            f"the model cannot take {Path(data).name} ({X.shape[0]} x "
            f"{X.shape[1]}) as its input: {message}"
        ) from err


def _unit_maps(model, X: np.ndarray, layer: str, n_units: int) -> np.ndarray:
    """(N, n) activations of the layer's units, one map per sample (conv maps averaged
    over their positions; units on the last axis of 2-D/3-D outputs, else on channels, as
    :func:`gsreg.arrange` takes them)."""
    import torch

    shapes = []
    handle = analysis._submodule(model, layer).register_forward_hook(
        lambda m, i, o: shapes.append(tuple((o[0] if isinstance(o, (tuple, list)) else o).shape))
    )
    try:
        with torch.no_grad():
            from ..placement import _as_model_input

            model(_as_model_input(model, torch.as_tensor(X[:1])))
    finally:
        handle.remove()
    shape = shapes[0][1:]
    axis = len(shape) - 1 if len(shape) <= 2 else 0
    if shape[axis] != n_units:
        raise ValueError(
            f"layer {layer!r} has {shape[axis]} units (output {shapes[0]}) but "
            f"the graph has {n_units} nodes"
        )
    Z = analysis.activations(model, X, layer).reshape(len(X), *shape)
    Z = np.moveaxis(Z, axis + 1, -1)
    return Z.reshape(len(X), -1, n_units).mean(axis=1).astype(np.float64)


# ---------------------------------------------------------------------------- output


def _write_run(config, graph, loaded, perm, Z_before, Z_after, y, path: Path) -> dict:
    folder = RunFolder(path)
    metrics = {
        "model": str(config.model),
        "layer": config.layer,
        "graph": graph.name,
        "n_units": graph.n_nodes,
        "n_samples": len(Z_before),
        "perm": perm.tolist(),
        "before": _scores(Z_before, y, graph, config.seed),
        "after": _scores(Z_after, y, graph, config.seed),
    }
    figures = _figures(folder, Z_before, Z_after, y, graph, config.seed)
    np.save(path / "perm.npy", perm)
    _save_model(path / "model.safetensors", loaded, config, graph, perm)
    folder.write_json("config", dataclasses.asdict(config))
    folder.write_metrics(metrics)
    folder.write_report(
        f"gsreg arrange: {config.layer} of {_model_name(config.model)}",
        _sections(config, metrics, figures, y is not None),
    )
    return metrics


def _scores(Z: np.ndarray, y, graph: Graph, seed: int) -> dict:
    """Smoothness of the layer's maps on ``graph``, each beside its control."""
    S = Z - Z.mean(axis=0)
    sd = np.sqrt((S * S).mean(axis=0))
    S = np.divide(S, sd, out=np.zeros_like(S), where=sd > 0)
    rows = np.random.default_rng(seed).permutation(len(Z))[:SAMPLE_MAPS]
    null = analysis.morans_i_null(Z[np.sort(rows)], graph, N_PERMUTATIONS, seed)
    mean_map = Z.mean(axis=0)
    scores = {
        # the energy gsreg.arrange minimises: units standardised over the samples
        "energy_standardised": analysis.dirichlet_energy(S, graph, normalize=False),
        "dirichlet_energy": analysis.dirichlet_energy(Z, graph, normalize=True),
        "morans_i_samples": null["observed"],
        "morans_i_samples_null_mean": null["null_mean"],
        "morans_i_samples_p": null["p_value"],
        "morans_i_mean_map": (
            float("nan") if np.ptp(mean_map) == 0 else analysis.morans_i(mean_map, graph)
        ),
    }
    if y is not None:
        structure = analysis.map_structure(Z, y, graph, n_permutations=N_PERMUTATIONS, seed=seed)
        for key in ("decodability", "scale_vs_reference"):  # NaN without train / reference
            structure.pop(key)
        scores["class_maps"] = structure
    return scores


def _figures(folder: RunFolder, Z_before, Z_after, y, graph: Graph, seed: int) -> list:
    if y is not None:
        classes, counts = np.unique(y, return_counts=True)
        shown = np.sort(classes[np.argsort(-counts, kind="stable")[:MAX_CLASS_PANELS]])
        rows = np.isin(classes, shown)
        before = analysis.class_maps(Z_before, y)[rows]
        after = analysis.class_maps(Z_after, y)[rows]
        fig = plotting.plot_class_map_comparison(
            {
                "before": before,
                "after": after,
                "before − mean": before - Z_before.mean(axis=0),
                "after − mean": after - Z_after.mean(axis=0),
            },
            graph,
            [str(c) for c in shown],
            symmetric=[False, False, True, True],
        )
        note = (
            ""
            if len(shown) == len(classes)
            else (f" Only the {len(shown)} most frequent of {len(classes)} labels are drawn.")
        )
        return [
            (
                "Class maps",
                "Average activation of each unit over the samples of each "
                "label, with unit i on node i before the arrangement and the arranged units "
                "after it (blocks 'before' and 'after'), and the same minus the average over all "
                f"samples ('before − mean', 'after − mean').{note}",
                folder.save_figure(fig, "class_maps"),
            )
        ]
    picks = np.sort(np.random.default_rng(seed).permutation(len(Z_before))[:SHOWN_SAMPLES])
    names = ["mean"] + [f"sample {i}" for i in picks]
    fig = plotting.plot_class_map_comparison(
        {
            "before": np.vstack([Z_before.mean(axis=0), Z_before[picks]]),
            "after": np.vstack([Z_after.mean(axis=0), Z_after[picks]]),
        },
        graph,
        names,
    )
    return [
        (
            "Maps",
            "The mean activation of each unit over all samples and the activations "
            "of a few samples (numbered in DATA's order), with unit i on node i before the "
            "arrangement and the arranged units after it.",
            folder.save_figure(fig, "maps"),
        )
    ]


def _save_model(path: Path, loaded, config, graph: Graph, perm: np.ndarray) -> None:
    """The arranged model with the source file's metadata (a fitted estimator stays
    loadable as one) and its regularizer, with the arranged layer now on ``graph``; a
    learned graph of that layer describes the old unit order and is left out."""
    from .. import io

    metadata = dict(loaded.metadata)
    metadata.pop("arrangement", None)
    layers = (loaded.regularizer or {}).get("layers", {})
    entry = layers.get(config.layer)
    keep = loaded.regularizer is not None and (entry is None or entry["type"] == "graph")
    params = metadata.get("params")
    fitted = metadata.get("fitted")
    if (
        isinstance(params, dict)
        and isinstance(fitted, dict)
        and fitted.get("layer_") == config.layer
        and keep
    ):
        metadata["params"] = {**params, "graph": config.graph}
    metadata["arrangement"] = {
        "source": str(config.model),
        "layer": config.layer,
        "graph": graph.name,
        "data": str(config.data),
        "perm": perm,
        "regularizer": "kept"
        if keep
        else ("none" if loaded.regularizer is None else "dropped (learned graph of the layer)"),
    }
    reg = None
    if keep:
        source = loaded
        if entry is not None:
            source = dataclasses.replace(loaded, graphs={**loaded.graphs, config.layer: graph})
        reg = source.make_regularizer(loaded.model)
    try:
        io.save(path, loaded.model, regularizer=reg, **metadata)
    finally:
        if reg is not None:
            reg.remove()


def _model_name(model: str) -> str:
    """The file's name, with its folder when that names the run (``fit-x/model.safetensors``)."""
    path = Path(model).resolve()
    return f"{path.parent.name}/{path.name}" if path.stem == "model" else path.name


def _sections(config, metrics: dict, figures: list, labelled: bool) -> list[Section]:
    before, after = metrics["before"], metrics["after"]
    text = (
        f"The {metrics['n_units']} units of layer '{config.layer}' of "
        f"{_model_name(config.model)} were placed on the graph {metrics['graph']} so that "
        f"their activations on the {metrics['n_samples']} samples of "
        f"{Path(config.data).name} are smooth on it (gsreg.arrange, seed {config.seed}); "
        "the model computes the same function. Before: unit i on node i. The scores are on "
        "the same samples the placement was chosen on. p-values are from permutation nulls "
        f"({N_PERMUTATIONS} random node orders)."
    )
    n_maps = min(SAMPLE_MAPS, metrics["n_samples"])
    names = {
        "energy_standardised": "Dirichlet energy of the standardised units (minimised)",
        "dirichlet_energy": "Dirichlet energy, normalised",
        "morans_i_samples": f"Moran's I of sample maps (mean of {n_maps})",
        "morans_i_samples_null_mean": "Moran's I of sample maps: null mean",
        "morans_i_samples_p": "Moran's I of sample maps: p-value",
        "morans_i_mean_map": "Moran's I of the mean map",
    }
    table = [
        {"score": label, "before": before[key], "after": after[key]} for key, label in names.items()
    ]
    class_names = {
        "morans_i": "Moran's I of the class maps minus the mean",
        "morans_i_null_mean": "Moran's I of the class maps: null mean",
        "morans_i_p": "Moran's I of the class maps: p-value",
        "participation_ratio": "participation ratio of the class maps",
        "contiguity": "contiguity of the class territories",
        "contiguity_null_mean": "contiguity: null mean",
        "contiguity_p": "contiguity: p-value",
        "territories": "class territories",
        "n_classes": "classes",
    }
    if labelled:
        table += [
            {"score": label, "before": before["class_maps"][key], "after": after["class_maps"][key]}
            for key, label in class_names.items()
        ]
    for row in table:
        for side in ("before", "after"):
            if isinstance(row[side], float):
                row[side] = f"{row[side]:.4g}"
    sections = [Section("Summary", text=text), Section("Scores", table=table)]
    sections += [Section(heading, text=note, figures=[png]) for heading, note, png in figures]
    return sections
