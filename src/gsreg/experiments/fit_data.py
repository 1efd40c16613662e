"""``gsreg fit``: a GSR autoencoder on the user's own data, written up as a run folder.

Reads a data file (.npy, .csv, .tsv or .h5ad) and optional labels, checks everything,
trains :class:`gsreg.GSRAutoencoder` on it and writes ``report.html``, ``metrics.json``,
``config.json``, ``model.safetensors``, ``embedding.npy``, ``embedding.csv`` and
``figures/`` into a staging folder next to the output, swapped in whole at the end: the
run folder holds one run, and a run that fails leaves it as it was.

Unless ``controls=False``, the same model is also trained with λ = 0 (same seed, same
steps) and the GSR layer's scores stand beside its controls (:func:`gsreg.controls.score`): for a
fixed graph the λ = 0 layer as trained and with its units arranged post hoc onto the
graph, for a learned graph post-hoc modules of the λ = 0 layer and clusterings of the
samples, each with a verdict sentence.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.base import clone

from .. import analysis, graphs, plotting
from .. import controls as twin_controls
from .._files import check_run_folder, staged_folder
from ..estimators import LEARNED, GSRAutoencoder
from ..report import RunFolder, Section

SUFFIXES = (".npy", ".csv", ".tsv", ".h5ad")
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "-nan", "#n/a"})
MAX_CLASS_PANELS = 24  # class maps drawn for at most this many (most frequent) labels
OUTPUTS = ("report.html", "metrics.json", "config.json", "model.safetensors",
           "embedding.npy", "embedding.csv", "figures")  # fmt: skip
@dataclass(frozen=True)
class FitConfig:
    """Everything that defines a ``gsreg fit`` run; written to ``config.json``."""

    data: str
    graph: str = "grid:8x8"
    labels: str | None = None
    epochs: int | None = None  # None: the estimator's "auto"
    weight: float | None = None  # None: the budget sets it
    budget: float | str = "auto"  # share of the task loss GSR may cost (weight None);
    # "auto": 0.05 for a fixed graph, the measured recipe for a learned one
    seed: int = 0
    device: str = "auto"
    controls: bool = True  # train the λ = 0 twin and score the GSR layer against it


@dataclass(frozen=True)
class Table:
    """A loaded data set: X (N, d) float32, optional labels (N,), feature names (d,)."""

    X: np.ndarray
    labels: np.ndarray | None
    feature_names: list[str]
    labels_from: str | None = None

    @property
    def constant_features(self) -> list[str]:
        """Names of the features that take one value in every sample."""
        same = np.all(self.X == self.X[:1], axis=0)
        return [name for name, flag in zip(self.feature_names, same, strict=True) if flag]


# ---------------------------------------------------------------------------- reading


def check_graph(spec: str) -> str:
    """The graph spec, checked: "learned" or anything :func:`gsreg.graphs.parse` reads."""
    if spec.strip().lower() == LEARNED:
        return LEARNED
    graphs.parse(spec)
    return spec


def load_data(path: str | os.PathLike, labels: str | None = None) -> Table:
    """Read and check a data file; ``labels`` is a column of it (CSV/TSV header name or
    .h5ad ``obs`` column) or a file of labels (.npy, or text with one label per line and
    an optional header line). Raises ValueError / FileNotFoundError with one-line messages.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such data file: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a data file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(
            f"{path}: unknown data format {path.suffix or '(no extension)'!r}; gsreg fit reads "
            f"{', '.join(SUFFIXES)}"
        )
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty")
    if suffix == ".npy":
        X, names, column = _read_npy(path), None, None
    elif suffix == ".h5ad":
        X, names, column = _read_h5ad(path, labels)
    else:
        X, names, column = _read_delimited(path, "," if suffix == ".csv" else "\t", labels)
    if X.shape[0] < 2:
        raise ValueError(f"{path} holds {X.shape[0]} sample(s); gsreg fit needs at least 2 "
                         "(one to learn from is not a data set)")
    if X.shape[1] == 0:
        raise ValueError(f"{path} holds no numeric feature columns")
    bad = np.argwhere(~np.isfinite(X))
    if bad.size:
        i, j = bad[0]
        raise ValueError(
            f"{path}: {len(bad)} NaN or infinite value(s), the first in sample {i} "
            f"(row {i + 1}), feature {j}; gsreg fit needs complete, finite data"
        )
    y, source = None, None
    if column is not None:
        y, source = column, f"column {labels!r} of {path.name}"
    elif labels is not None:
        y, source = _read_labels_file(Path(labels), len(X), path), str(labels)
    names = names or [f"feature {j + 1}" for j in range(X.shape[1])]
    return Table(X.astype(np.float32, copy=False), y, list(names), source)


def _read_npy(path: Path) -> np.ndarray:
    try:
        X = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"{path} is not a readable numeric .npy array: {_line(err)}") from err
    if not isinstance(X, np.ndarray) or X.dtype.kind not in "biuf":
        raise ValueError(f"{path} must hold a numeric array, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{path} must hold a 2-D array (samples x features), got {X.shape}")
    return X.astype(np.float64)


def _read_h5ad(path: Path, labels: str | None):
    try:
        import anndata
    except ImportError as err:
        raise ValueError(
            "reading .h5ad needs anndata: pip install 'gsreg[sc]'"
        ) from err
    try:
        adata = anndata.read_h5ad(path)
    except Exception as err:  # h5py / anndata raise many types on a damaged file
        raise ValueError(f"{path} is not a readable .h5ad file: {_line(err)}") from err
    X = adata.X
    if X is None:
        raise ValueError(f"{path} has no X matrix")
    X = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{path}: X must be numeric, got dtype {X.dtype}")
    column = None
    if labels is not None and labels in adata.obs.columns:
        values = adata.obs[labels]
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise ValueError(f"{path}: labels column {labels!r} is missing for cell {row}")
        column = _as_labels([str(v) for v in values.astype(str)])
    elif labels is not None and not Path(labels).exists():
        shown = ", ".join(map(repr, list(adata.obs.columns)[:12])) or "none"
        raise ValueError(
            f"--labels {labels!r} is neither an obs column of {path.name} (columns: {shown}) "
            "nor a file"
        )
    return np.asarray(X, dtype=np.float64), [str(v) for v in adata.var_names], column


def _read_delimited(path: Path, delimiter: str, labels: str | None):
    """(X, names, label column or None) of a CSV/TSV file; see :func:`load_data`."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a UTF-8 text file") from err
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows, lines = [], []
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append([cell.strip() for cell in row])
                lines.append(reader.line_num)
    except csv.Error as err:
        raise ValueError(f"{path}: malformed {path.suffix[1:]} near line {reader.line_num}: "
                         f"{err}") from err  # fmt: skip
    if not rows:
        raise ValueError(f"{path} is empty")
    width = len(rows[0])
    for row, line in zip(rows, lines, strict=True):
        if len(row) != width:
            raise ValueError(
                f"{path}: line {line} has {len(row)} fields, expected {width} like line "
                f"{lines[0]} (a ragged table)"
            )
    cells = np.array(rows, dtype=str).reshape(len(rows), width)
    head = np.array([_cell_kind(str(c)) for c in cells[0]], dtype=np.int8)
    body_numeric, body_missing = _classify(cells[1:])
    numeric = np.vstack([head == _NUMBER, body_numeric])
    missing = np.vstack([head == _MISSING, body_missing])
    body_ok = (numeric[1:] | missing[1:]).all(axis=0) & numeric[1:].any(axis=0)
    has_header = bool(((~numeric[0]) & body_ok).any()) if len(rows) > 1 else not numeric[0].all()
    if has_header:
        names = [str(c) for c in cells[0]]
        cells, numeric, missing, lines = cells[1:], numeric[1:], missing[1:], lines[1:]
    else:
        names = [f"column {j + 1}" for j in range(width)]
    if len(cells) == 0:
        raise ValueError(f"{path} has a header but no data rows")
    keep = list(range(width))
    label_values = None
    if labels is not None and labels in names and has_header:
        j = names.index(labels)
        keep.remove(j)
        empty = np.flatnonzero(missing[:, j] & (cells[:, j] == ""))
        if empty.size:
            raise ValueError(f"{path}: labels column {labels!r} is empty on line "
                             f"{lines[empty[0]]}")  # fmt: skip
        label_values = _as_labels([str(c) for c in cells[:, j]])
    elif labels is not None and not Path(labels).exists():
        hint = f"columns: {', '.join(map(repr, names[:12]))}" if has_header else "no header"
        raise ValueError(
            f"--labels {labels!r} is neither a column of {path.name} ({hint}) nor a file"
        )
    if has_header and names[0] == "" and 0 in keep and not body_ok[0]:
        keep.remove(0)  # an unnamed first column of text: row names (as pandas writes them)
    for j in keep:
        text_cells = np.flatnonzero(~numeric[:, j] & ~missing[:, j])
        if text_cells.size:
            i = text_cells[0]
            raise ValueError(
                f"{path}: column {names[j]!r} is not numeric ({str(cells[i, j])!r} on line "
                f"{lines[i]}); remove it or name it with --labels"
            )
        gaps = np.flatnonzero(missing[:, j])
        if gaps.size:
            i = gaps[0]
            raise ValueError(
                f"{path}: column {names[j]!r} has a missing or non-finite value "
                f"({str(cells[i, j])!r} on line {lines[i]}); gsreg fit needs complete, finite data"
            )
    X = cells[:, keep].astype(np.float64)
    return X, [names[j] for j in keep], label_values


def _read_labels_file(path: Path, n: int, data: Path) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"no such labels file: {path}")
    if path.is_dir():
        raise ValueError(f"labels {path} is a directory, not a file")
    if path.stat().st_size == 0:
        raise ValueError(f"labels file {path} is empty")
    if path.suffix.lower() == ".npy":
        try:
            values = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise ValueError(f"labels file {path} is not a readable .npy: {_line(err)}") from err
        if values.ndim != 1 or len(values) != n:
            raise ValueError(
                f"labels file {path} must hold one label per sample ({n},), got {values.shape}"
            )
        return _as_labels([str(v) for v in values.tolist()])
    try:
        entries = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    except UnicodeDecodeError as err:
        raise ValueError(f"labels file {path} is not a UTF-8 text file") from err
    while entries and not entries[-1]:
        entries.pop()
    if len(entries) == n + 1:
        entries = entries[1:]  # a header line
    if len(entries) != n:
        raise ValueError(
            f"labels file {path} has {len(entries)} lines but {data.name} has {n} samples "
            "(one label per line, optionally after one header line)"
        )
    if "" in entries:
        raise ValueError(f"labels file {path} has an empty line {entries.index('') + 1}")
    return _as_labels(entries)


def _as_labels(values: list[str]) -> np.ndarray:
    """Labels as int64 when all are integers, else as strings."""
    try:
        ints = np.array([int(v) for v in values], dtype=np.int64)
    except ValueError:
        return np.array(values, dtype=str)
    return ints


_NUMBER, _MISSING, _TEXT = 0, 1, 2


def _classify(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks (R, W) of finite numbers and of missing / non-finite cells; a column that
    parses as floats in one go skips the cell-by-cell look."""
    numeric = np.zeros(cells.shape, dtype=bool)
    missing = np.zeros(cells.shape, dtype=bool)
    for j in range(cells.shape[1]):
        try:
            finite = np.isfinite(cells[:, j].astype(np.float64))
        except ValueError:
            kinds = np.array([_cell_kind(str(c)) for c in cells[:, j]], dtype=np.int8)
            numeric[:, j], missing[:, j] = kinds == _NUMBER, kinds == _MISSING
        else:
            numeric[:, j], missing[:, j] = finite, ~finite
    return numeric, missing


def _cell_kind(cell: str) -> int:
    """A finite number, a missing / non-finite value (empty, NA, NaN, inf, ...) or text."""
    try:
        value = float(cell)
    except ValueError:
        return _MISSING if cell.lower() in MISSING else _TEXT
    return _NUMBER if np.isfinite(value) else _MISSING


def _line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


# ---------------------------------------------------------------------------- output folder


def prepare_out(out: str | os.PathLike, data: str | os.PathLike,
                labels: str | None = None) -> Path:
    """Check before any work that ``out`` can hold the run (:func:`gsreg._files.check_run_folder`):
    a missing path or a previous run folder, not holding the data or labels file; nothing
    is created. Returns ``out`` as an absolute path."""
    inputs = [data] + ([labels] if labels is not None and Path(labels).is_file() else [])
    return check_run_folder(out, OUTPUTS, inputs, command="gsreg fit")


def run(config: FitConfig, out: str | os.PathLike, table: Table | None = None,
        progress: bool = True) -> dict:  # fmt: skip
    """Train on ``config.data`` (or the already loaded ``table``) and write the run folder
    ``out``. Returns the metrics written to ``metrics.json``.

    Everything is written into a staging folder next to ``out`` and swapped in whole at
    the end (:func:`gsreg._files.staged_folder`): ``out`` then holds this run and nothing
    else, and a run that fails leaves it as it was.
    """
    check_graph(config.graph)
    out = prepare_out(out, config.data, config.labels)
    if table is None:
        table = load_data(config.data, config.labels)
    with staged_folder(out) as staging:
        return _write_run(config, table, staging, progress)


def _write_run(config: FitConfig, table: Table, folder_path: Path, progress: bool) -> dict:
    folder = RunFolder(folder_path)
    X, y = table.X, table.labels
    est = GSRAutoencoder(
        graph=config.graph, weight=config.weight, budget=config.budget,
        epochs="auto" if config.epochs is None else config.epochs,
        random_state=config.seed, device=config.device, verbose=int(progress),
    )  # fmt: skip
    start = time.perf_counter()
    est.fit(X)
    seconds = time.perf_counter() - start
    Z = est.activations(X)
    embedding = est.transform(X)
    metrics = {
        "data": {"path": str(config.data), "n_samples": int(X.shape[0]),
                 "n_features": int(X.shape[1]), "labels": table.labels_from,
                 "n_labels": None if y is None else int(len(np.unique(y)))},
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
    }  # fmt: skip
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
            twin = clone(est).set_params(weight=0.0, arrange=False)
            start = time.perf_counter()
            twin.fit(X)
            twin_seconds = time.perf_counter() - start
        metrics["controls"] = twin_controls.score(est, twin, X, y, Z=Z, seed=config.seed)
        metrics["controls"]["lambda0"]["train_seconds"] = twin_seconds
    history = est.history_.epochs
    training = folder.save_figure(
        plotting.plot_history({"GSR": history}, keys=("task_loss", "penalty")), "training")
    est.save(folder_path / "model.safetensors")
    np.save(folder_path / "embedding.npy", embedding)
    _write_embedding_csv(folder_path / "embedding.csv", embedding)
    folder.write_json("config.json", {**dataclasses.asdict(config),
                                      "estimator": est.get_params(),
                                      # results are bit-identical at a fixed thread count
                                      "torch_threads": torch.get_num_threads()})  # fmt: skip
    folder.write_metrics(metrics)
    folder.write_report(f"gsreg fit: {Path(config.data).name}",
                        _sections(config, metrics, figures, training))  # fmt: skip
    return metrics


# ---------------------------------------------------------------------------- controls


def budget_text(report: dict) -> str:
    """One plain sentence on what the budget spent, and whether it could be met."""
    b, cost = report["budget"], report["cost"]
    head = (f"The budget allowed {b:.0%} more training loss than without GSR; the fine-tuning "
            f"ended at {cost:+.1%}.")
    if report["at_floor"]:
        return head + (" The budget could not be met: even the least weight cost more. "
                       "Try a larger --budget, or read the λ = 0 layer arranged post hoc "
                       "(gsreg arrange).")
    return head


def single_module_note(n_modules: int | None, steps: int) -> str | None:
    """The plain sentence for a learned graph that found no modules (None when it did)."""
    if n_modules is None:
        return (f"No graph was learned in {steps} steps, so there are no neuron modules; "
                "train longer (a larger --epochs).")
    if n_modules == 1:
        return ("The learned graph stayed in one piece (1 module), so it found no neuron "
                "modules; try a larger --budget (e.g. 0.2: more structure for more task "
                "loss) or more --epochs.")
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
            {"class mean": maps[rows], "minus the global mean": dev[rows]}, graph, names,
            symmetric=[False, True], title=f"Class maps of the {graph.name} layer")
        note = "" if len(shown) == len(classes) else (
            f" Only the {len(shown)} most frequent of {len(classes)} labels are drawn.")
        figures.append(("Class maps", "Average activation of each neuron of the structured "
                        "layer over the samples of each label (top) and the same minus the "
                        f"average over all samples (bottom).{note}",
                        folder.save_figure(fig, "class_maps")))  # fmt: skip
        seg = analysis.segmentation(maps[rows])
        figures.append(("Segmentation", "Per neuron, the label whose L1-normalised average "
                        "map claims it most.", folder.save_figure(
                            plotting.plot_segmentation({"GSR": seg}, graph, names),
                            "segmentation")))  # fmt: skip
        return {"localization": analysis.localization(Z, y, graph)} if scored else {}
    import matplotlib.pyplot as plt

    mean, var = Z.mean(axis=0), Z.var(axis=0)
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.4), layout="constrained")
    plotting.plot_maps(mean, graph, titles=["mean activation"], axes=[axes[0]])
    plotting.plot_maps(var, graph, titles=["variance"], axes=[axes[1]])
    figures.append(("Mean and variance maps", "Mean and variance over all samples of each "
                    "neuron of the structured layer, laid out on the graph.",
                    folder.save_figure(fig, "mean_variance_maps")))  # fmt: skip
    if not scored:
        return {}
    return {"morans_i_mean_map": analysis.morans_i(mean, graph),
            "morans_i_variance_map": analysis.morans_i(var, graph)}  # fmt: skip


def _modules(folder: RunFolder, est, Z: np.ndarray, y, figures: list) -> dict:
    lg = est.coactivation_
    if lg.graph is None:
        return {"n_modules": None}
    labels = est.modules_
    sizes = np.bincount(labels).tolist()
    figures.append(("Neuron modules", "The graph learned from the layer's co-activations; "
                    "each connected component is a neuron module.",
                    folder.save_figure(plotting.plot_modules(lg.graph, labels), "modules")))
    if len(lg.history) > 1:
        figures.append(("Learned graph over training", "", folder.save_figure(
            plotting.plot_graph_snapshots(lg.history, labels), "graph_history")))
    result: dict = {"n_modules": len(sizes), "module_sizes": sizes}
    if y is not None:
        table, module_ids, class_ids = analysis.module_class_table(Z, labels, y)
        classes, counts = np.unique(y, return_counts=True)
        shown = np.isin(class_ids, np.sort(
            classes[np.argsort(-counts, kind="stable")[:MAX_CLASS_PANELS]]))
        fig = plotting.plot_module_class_heatmap(table[:, shown], module_ids,
                                                 [str(c) for c in class_ids[shown]])
        figures.append(("Modules x labels", "Mean activity of each module's neurons over "
                        "the samples of each label.", folder.save_figure(fig, "module_labels")))
        pred = analysis.indicate_clusters(Z, labels)
        result["cluster_indication"] = analysis.cluster_scores(pred, y)
        result["module_label_table"] = {
            f"module {m}": {str(c): float(v) for c, v in zip(class_ids, row, strict=True)}
            for m, row in zip(module_ids, table, strict=True)
        }
    return result


def _write_embedding_csv(path: Path, embedding: np.ndarray) -> None:
    header = ",".join(f"z{k + 1}" for k in range(embedding.shape[1]))
    np.savetxt(path, embedding, delimiter=",", header=header, comments="", fmt="%.9g")


_CONTROL_TEXT = {
    "maps": "The same model trained with λ = 0 (same seed and epochs: under "
            "a budget, the run its fine-tuning starts from) is the control, as "
            "trained and with its units arranged post hoc onto the graph (the smoothest "
            "placement, fitted on {fit} samples). Class-map scores are taken on {score} other "
            "samples: Moran's I of the class-deviation maps and its permutation p-value, "
            "class territories, decodability (a linear probe), activation norm.",
    "smoothness": "The same model trained with λ = 0 (same seed and epochs: under "
                  "a budget, the run its fine-tuning starts from) is the control, "
                  "as trained and with its units arranged post hoc onto the graph (fitted on "
                  "{fit} samples). Scores on {score} other samples: the Dirichlet energy of "
                  "the standardised activations (lower is smoother) and Moran's I of the "
                  "mean map.",
    "modules": "The same model trained with λ = 0 (same seed and epochs: under "
               "a budget, the run its fine-tuning starts from) gives the controls "
               "on {score} samples: its neurons clustered post hoc into as many modules "
               "(k-means, Leiden), and its samples and the raw input clustered by k-means "
               "into as many clusters as labels. ARI against the labels; the GSR modules' "
               "permutation null shuffles which neurons form which module.",
}


def _controls_section(result: dict) -> Section:
    """The report's table of the GSR layer beside its controls."""
    kind = result["kind"]
    text = _CONTROL_TEXT.get(kind, "").format(**result.get("rows", {}))
    text = f"{text}\n\n{result['verdict_text']}".strip()
    table: list[dict] = []
    if kind in ("maps", "smoothness"):
        table = [{"layer": name, **{k: v for k, v in scores.items()
                                    if not isinstance(v, dict)}}
                 for name, scores in result["scores"].items()]
    elif "ari" in result:
        table = [{"clustering": name, "ARI against the labels": value}
                 for name, value in result["ari"].items()]
    return Section("Controls", text=text, table=table or None)


def _sections(config: FitConfig, metrics: dict, figures: list, training: str) -> list[Section]:
    data = metrics["data"]
    if config.weight is not None:
        strength = f"λ={config.weight:g}"
    elif metrics.get("budget") is not None:
        strength = (f"a budget of {metrics['budget']:g}: λ set in training to "
                    f"{metrics['final_weight']:.3g}")
    else:
        strength = ("the learned-graph recipe: centred penalty at λ = "
                    f"{metrics['final_weight']:g}, the graph frozen once its modules hold")
    text = (
        f"A GSR autoencoder ({strength}) was trained on {data['n_samples']} samples "
        f"x {data['n_features']} features of {Path(config.data).name} for {metrics['epochs']} "
        f"epochs ({metrics['steps']} steps, seed {config.seed}); the structured layer "
        f"'{metrics['layer']}' sits on the graph {metrics['graph']}. Training reconstruction "
        f"MSE: {metrics['train_mse']:.5g}."
    )
    summary = {key: value for key, value in metrics.items()
               if not isinstance(value, (dict, list))}  # fmt: skip
    for key, value in (metrics.get("localization") or {}).items():
        summary[key] = value
    for key, value in (metrics.get("cluster_indication") or {}).items():
        summary[f"cluster indication {key}"] = value
    if metrics.get("note"):
        text += "\n\n" + metrics["note"]
    report = metrics.get("budget_report")
    if report is not None:
        text += "\n\n" + budget_text(report)
    if "controls" in metrics:
        text += "\n\n" + metrics["controls"]["verdict_text"]
    sections = [Section("Summary", text=text, table=summary)]
    if "controls" in metrics:
        sections.append(_controls_section(metrics["controls"]))
    sections += [Section(heading, text=note, figures=[png]) for heading, note, png in figures]
    sections.append(Section("Training", figures=[training]))
    return sections
