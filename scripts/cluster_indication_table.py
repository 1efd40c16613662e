"""Run the cluster-indication study and write its results, figures and page.

    python scripts/cluster_indication_table.py              # the full study (minutes)
    python scripts/cluster_indication_table.py --quick      # seconds, into runs/...quick/
    python scripts/cluster_indication_table.py --tune       # also re-run the tuning
    python scripts/cluster_indication_table.py --from-json  # only the page and figures
    python scripts/cluster_indication_table.py --workers 1  # one process (default 2)

Writes ``docs/results/cluster_indication.json`` (config, rows, summary, tuning),
``docs/images/cluster_*.png`` and ``docs/cluster_indication.md``. Every number on the page
comes from the JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gsreg.experiments import cluster_indication as ci  # noqa: E402
from gsreg.report import to_jsonable  # noqa: E402

TUNING_SEEDS = (100, 101, 102)
TUNING_MODULES = (("modules", 3), ("modules", 4), ("modules", 5))
# stage 1: model, features, weight and warm-up of the gsreg setting (30 epochs), modules data
GSREG_GRID = {
    "model": ["leaky", "linear"],
    "features": ["standardized", "raw"],
    "weight": [0.03, 0.1, 0.3, 1.0],
    "warmup_steps": [100, 400],
}
# stages 1 and 2 ran with the paper's graph (kNN, k = 5)
PAPER_GRAPH = {"k": 5, "kernel": "knn"}
GSREG_FIXED = {"epochs": 30, **PAPER_GRAPH}
# stage 2: weight and epochs, with stage 1's model, features and warm-up, on every data set
WEIGHT_EPOCHS_GRID = {"weight": [0.1, 0.3, 1.0], "epochs": [15, 30]}
# stage 3: the graph's neighbour count k and kernel, with the weight again (a lower weight
# costs less reconstruction), with the model, features, warm-up and epochs of stages 1-2
GRAPH_GRID = {
    "kernel": ["knn", "correlation"],
    "k": [5, 10, 15, 20],
    "weight": [0.01, 0.03, 0.1],
}
# the authors' setting: the weight, from the paper's grid (their graph: kNN, k = 5)
AUTHORS_GRID = {"weight": [1e-3, 1e-2, 1e-1]}

NAMES = {"modules": "modules", "hierarchical": "hierarchical", "binary_modules": "binary modules"}


# ----------------------------------------------------------------------------- running


def tune(
    config: ci.ClusterIndicationConfig, previous: dict | None = None, workers: int = 1
) -> dict:
    """The tuning stages on the tuning seeds; returns the JSON-able record of all four.
    A stage recorded in ``previous`` with the same setting, grid, fixed values, data sets
    and seeds is reused (runs are deterministic) instead of being run again."""
    done = {_stage_key(s): s for s in map(_with_graph, (previous or {}).get("stages", []))}

    def stage(setting, grid, datasets, fixed):
        key = _stage_key(
            {
                "setting": setting,
                "grid": grid,
                "fixed": fixed,
                "datasets": [list(d) for d in datasets],
            }
        )
        if key in done:
            return done[key]
        base = config.setting(setting)
        trial = dataclasses.replace(config, **{setting: dataclasses.replace(base, **fixed)})
        records = ci.tune(trial, grid, setting, TUNING_SEEDS, datasets, workers=workers)
        best = _best(records)
        return {
            "setting": setting,
            "grid": grid,
            "fixed": fixed,
            "datasets": [list(d) for d in datasets],
            "records": records,
            "best": {k: best[k] for k in grid},
        }

    first = stage("gsreg", GSREG_GRID, TUNING_MODULES, GSREG_FIXED)
    fixed = {k: v for k, v in first["best"].items() if k not in WEIGHT_EPOCHS_GRID}
    second = stage("gsreg", WEIGHT_EPOCHS_GRID, config.datasets, {**fixed, **PAPER_GRAPH})
    fixed = {**fixed, **{k: v for k, v in second["best"].items() if k not in GRAPH_GRID}}
    third = stage("gsreg", GRAPH_GRID, TUNING_MODULES, fixed)
    fourth = stage("authors", AUTHORS_GRID, TUNING_MODULES, PAPER_GRAPH)
    return {"seeds": list(TUNING_SEEDS), "stages": [first, second, third, fourth]}


def _with_graph(stage: dict) -> dict:
    """A stage recorded before k and kernel were fields of a setting ran with the paper's
    graph for every setting (the study's k = 5 kNN graph): say so in its fixed values."""
    if "k" in stage["grid"] or "k" in stage["fixed"]:
        return stage
    return {**stage, "fixed": {**stage["fixed"], **PAPER_GRAPH}}


def _stage_key(stage: dict) -> str:
    return json.dumps(
        [stage["setting"], stage["grid"], stage["fixed"], stage["datasets"]], sort_keys=True
    )


def _best(records: list[dict]) -> dict:
    """Most exact matches, then highest mean ARI, then lowest MSE ratio."""
    return max(records, key=lambda r: (r["exact"], r["ari_mean"] or 0, -r["mse_ratio_mean"]))


def figures(config: ci.ClusterIndicationConfig, images: Path) -> dict[str, str]:
    """Snapshots of one gsreg run's learned graph and module x cluster heatmaps (modules
    with 3 planted modules, and binary modules); returns {key: file name}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gsreg import analysis, plotting

    images.mkdir(parents=True, exist_ok=True)
    seed = config.seeds[0]
    files = {}
    run = ci.train("modules", 3, seed, "gsreg", config)
    Z = analysis.activations(run.model, run.data.X_test, run.layer)
    # colour each neuron by the planted module (cluster) that drives it most
    maps = analysis.class_maps(Z, run.data.y_test)
    driver = analysis.segmentation(maps)
    fig = plotting.plot_graph_snapshots(run.history, labels=driver, max_snapshots=5)
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None:
            legend.set_title("driven by", prop={"size": 8})
            for text in legend.get_texts():
                text.set_text(text.get_text().replace("module", "cluster"))
    fig.suptitle(f"learned graph, modules with 3 planted, seed {seed}, gsreg setting", fontsize=9)
    files["snapshots"] = _save(fig, images / "cluster_snapshots.png", plt)

    labels = analysis.modules(run.graph)
    table, ids, _ = analysis.module_class_table(Z, labels, run.data.y_test)
    binary = ci.train("binary_modules", 3, seed, "gsreg", config)
    Zb = analysis.activations(binary.model, binary.data.X_test, binary.layer)
    labels_b = analysis.modules(binary.graph)
    table_b, ids_b, classes_b = analysis.module_class_table(Zb, labels_b, binary.data.y_test)
    rows = max(len(ids), len(ids_b))
    fig, axes = plt.subplots(
        1,
        2,
        figsize=(11, 1.6 + 0.42 * rows),
        layout="constrained",
        gridspec_kw={"width_ratios": [3 + 1.5, len(classes_b) + 1.5]},
    )
    clusters = [name.replace("module", "cluster") for name in run.data.classes]
    plotting.plot_module_class_heatmap(table, ids, clusters, ax=axes[0], fmt=".1f")
    axes[0].set_title("modules, 3 planted: mean module activity per cluster", fontsize=9)
    names_b = [binary.data.classes[c] for c in classes_b]
    plotting.plot_module_class_heatmap(table_b, ids_b, names_b, ax=axes[1], fmt=".2f")
    axes[1].set_title("binary modules (k = 3): per on/off pattern", fontsize=9)
    axes[1].set_xlabel("pattern (bits of modules 0, 1, 2)")
    files["heatmap"] = _save(fig, images / "cluster_heatmap.png", plt)
    return files


def _save(fig, path: Path, plt) -> str:
    fig.savefig(path, dpi=75)
    plt.close(fig)
    size = path.stat().st_size
    if size > 150_000:
        warnings.warn(f"{path.name} is {size / 1000:.0f} kB (> 150 kB)", stacklevel=2)
    return path.name


# ----------------------------------------------------------------------------- the page


def fmt(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def pm(record: dict, key: str, digits: int = 2) -> str:
    mean, sd = record.get(f"{key}_mean"), record.get(f"{key}_sd")
    if mean is None:
        return "–"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def data_name(record: dict) -> str:
    kind, n = record["dataset"], record["n_modules"]
    if kind == "modules":
        return f"modules, {n} planted"
    if kind == "hierarchical":
        return f"hierarchical, {n} x 2"
    return f"binary modules, k = {n}"


def render(result: dict, images: dict[str, str], image_dir: str) -> str:
    config, rows, summary = result["config"], result["rows"], result["summary"]
    seeds = config["seeds"]
    g, a = config["gsreg"], config["authors"]
    out = []
    w = out.append
    w("# Cluster indication with learned graphs\n")
    w(
        "A graph learned from a layer's co-activations (`CoactivationGraph`) is meant to fall "
        "apart into *neuron modules*, one per cluster of the data, so that which module a sample "
        "drives tells its cluster. This page measures that on data with planted modules, for "
        "gsreg's learned graphs and for the original procedure of the method's authors. It is "
        "generated by `scripts/cluster_indication_table.py` from "
        "[`docs/results/cluster_indication.json`](results/cluster_indication.json); the study "
        "itself is `gsreg.experiments.cluster_indication`.\n"
    )
    w("## What is measured\n")
    w(
        f"- **Data** (`gsreg.datasets`, {config['n_samples']} samples, 80 % train / 20 % test, "
        f"seeds {', '.join(map(str, seeds))}): `modules` with 3, 4 and 5 planted modules (5 "
        "features each, in-module correlation 0.6, one module per sample raised by +10); "
        f"`hierarchical` (3 modules x {config['subtypes']} sub-types, 6 features per module); "
        "`binary_modules` (k = 3 on/off modules, 50 features each, all 8 patterns).\n"
        f"- **Model**: an autoencoder with a {config['width']}-unit learned-graph layer followed "
        f"by Gaussian noise {config['noise']} (training only). Adam, lr {config['lr']:g}.\n"
        "- **Modules**: the connected components of the graph read out "
        "(`analysis.modules(graph)`); each test sample goes to the module it drives most "
        "(`analysis.indicate_clusters`, median baseline, scaled), scored against the planted "
        "clusters with ARI and NMI (`analysis.cluster_scores`). For `hierarchical` the planted "
        "clusters are the 3 coarse modules; ARI against the 6 fine labels is reported beside. "
        "For `binary_modules` the ARI is against the 8 patterns (a sample drives one module, a "
        "pattern switches on up to 3), so the bit match below is the relevant score.\n"
        "- **Exact**: the graph has as many components as planted modules. When it has fewer, "
        "the modules of a spectral split into the planted number "
        "(`analysis.modules(graph, n_modules=planted)`) are scored separately as *split ARI*; "
        "they never enter the ARI column.\n"
        "- **MSE ratio**: test reconstruction MSE divided by that of the same model, seed and "
        "schedule trained with weight 0.\n"
        "- **Aim**: the exact number of modules in at least 4 of 5 seeds and mean ARI >= 0.9.\n"
    )
    w("## Settings\n")
    w("| | gsreg | authors |")
    w("|---|---|---|")
    model_name = {
        "leaky": "`GraphLayerAutoencoder`: 100 LeakyReLU(0.2) units (`encoder.graph`)",
        "linear": "`DenseAutoencoder(hidden=(50, 50), latent=100)`: linear bottleneck "
        "(`encoder.latent`)",
    }
    for label, key, f in [
        ("learned-graph layer", "model", lambda v: model_name[v]),
        ("batch size", "batch_size", str),
        ("samples per graph (`buffer_size`)", "buffer_size", str),
        ("`on_disconnect`", "on_disconnect", lambda v: f'`"{v}"`'),
        ("neuron features", "features", lambda v: f'`"{v}"`'),
        ("warm-up (steps without penalty)", "warmup_steps", str),
        ("graph update every (steps)", "update_every", str),
        ("graph kernel", "kernel", lambda v: f'`"{v}"`'),
        ("neighbours per neuron k", "k", str),
        ("weight λ", "weight", lambda v: f"{v:g}"),
        ("epochs", "epochs", str),
    ]:
        w(f"| {label} | {f(g[key])} | {f(a[key])} |")
    w(
        "| graph read as modules | the last graph | the graph that fell apart (refused by "
        '`"stop"`, which keeps the last connected one in use) |\n'
    )
    w(
        "Both symmetrise the graph and use the normalised Laplacian and the plain penalty "
        '(`"knn"`: binary edges; `"correlation"`: each neuron\'s k most correlated '
        "neurons, weighted by the correlation). The authors warmed up for 5000 steps at batch 32; "
        f"here {a['warmup_steps']} steps ({a['warmup_steps'] / 5000:.0%} of that), so that the "
        "whole study fits in minutes on two CPU cores; their update interval (100 steps) and "
        "one-batch graphs are kept. Their "
        "layer is the linear bottleneck; in the gsreg setting the same 100 units pass a "
        "LeakyReLU before the noise (see below for why).\n"
    )

    w("## Results\n")
    w(
        "Per data set and setting, over the seeds: exact matches, components (mean, and per "
        "seed), ARI and NMI (mean ± sd), split ARI where a graph had fewer components than "
        "planted (mean over those runs, their count in brackets), and the MSE ratio.\n"
    )
    w("| data | setting | exact | components | ARI | NMI | split ARI | MSE ratio | aim |")
    w("|---|---|---|---|---|---|---|---|---|")
    for record in summary:
        split = "–"
        if record["split_ari_n"]:
            split = f"{pm(record, 'split_ari')} ({record['split_ari_n']})"
        comps = ", ".join(map(str, record["components"]))
        w(
            f"| {data_name(record)} | {record['setting']} | {record['exact']}/{record['seeds']} "
            f"| {fmt(record['components_mean'], 1)} ({comps}) | {pm(record, 'ari')} "
            f"| {pm(record, 'nmi')} | {split} | {pm(record, 'mse_ratio')} "
            f"| {'yes' if ci.aim_reached(record) else 'no'} |"
        )
    w("")
    hier = [r for r in summary if r["dataset"] == "hierarchical"]
    if hier:
        w("### Hierarchical data: what the components capture\n")
        w(
            "3 modules, each with 2 sub-types (6 fine labels). ARI of the indicated modules "
            "against the coarse modules and against the fine labels:\n"
        )
        w("| setting | components | ARI coarse | ARI fine | NMI coarse | NMI fine |")
        w("|---|---|---|---|---|---|")
        for r in hier:
            w(
                f"| {r['setting']} | {fmt(r['components_mean'], 1)} "
                f"({', '.join(map(str, r['components']))}) | {pm(r, 'ari')} "
                f"| {pm(r, 'ari_fine')} | {pm(r, 'nmi')} | {pm(r, 'nmi_fine')} |"
            )
        w("")
    binary = [r for r in summary if r["dataset"] == "binary_modules"]
    if binary:
        w("### Binary modules: how modules map to bits\n")
        w(
            "Per run, the correlation over test samples of each module's mean activity with "
            "each of the 3 bits; modules and bits are paired one to one (largest total "
            "correlation) and the *bit match* is the mean paired correlation (1: each bit owned "
            "by a module of its own). *Owned* counts the bits whose most correlated module is "
            "not the most correlated module of another bit.\n"
        )
        w("| setting | components | bit match | bits owned (per seed) |")
        w("|---|---|---|---|")
        for r in binary:
            owned = [
                x["bits_owned"]
                for x in rows
                if (x["dataset"], x["n_modules"], x["setting"])
                == ("binary_modules", r["n_modules"], r["setting"])
            ]
            w(
                f"| {r['setting']} | {fmt(r['components_mean'], 1)} "
                f"({', '.join(map(str, r['components']))}) | {pm(r, 'bit_match')} "
                f"| {', '.join(map(str, owned))} of 3 |"
            )
        w("")
    conj = [r for r in summary if "conjunction_modules_mean" in r]
    if conj:
        w("### What the modules are\n")
        w(
            "A module is *driven* by the planted clusters whose mean module activity lies above "
            "the midpoint of its lowest and highest cluster mean. Mean per run: modules driven "
            "by a single cluster, *conjunction* modules driven by several, and clusters that "
            "have a module of their own:\n"
        )
        w(
            "| data | setting | components | single-cluster modules | conjunction modules "
            "| clusters with a module |"
        )
        w("|---|---|---|---|---|---|")
        for r in conj:
            w(
                f"| {data_name(r)} | {r['setting']} | {fmt(r['components_mean'], 1)} "
                f"| {fmt(r['single_modules_mean'], 1)} | {fmt(r['conjunction_modules_mean'], 1)} "
                f"| {fmt(r['clusters_indicated_mean'], 1)} of {r['n_modules']} |"
            )
        w("")
    if images:
        w("### Figures\n")
        if "snapshots" in images:
            w(
                f"![learned graph snapshots]({image_dir}/{images['snapshots']})\n\n"
                f"The learned graph of one gsreg run (3 planted modules, seed {seeds[0]}) from "
                "its first update to the end, drawn on the module layout of the last graph. "
                "Each neuron is coloured by the cluster that drives it most "
                "(`analysis.segmentation` of the class-average activations). This run ends "
                f"with {_row(rows, 'modules', 3, seeds[0])['components']} components; the "
                "other seeds are in the table above.\n"
            )
        if "heatmap" in images:
            w(
                f"![module x cluster heatmaps]({image_dir}/{images['heatmap']})\n\n"
                "Mean activity of each module of the final graph per planted cluster (left) "
                f"and per on/off pattern of `binary_modules` (right), seed {seeds[0]}, gsreg "
                f"setting (bit match of the binary run "
                f"{fmt(_row(rows, 'binary_modules', 3, seeds[0])['bit_match'])}).\n"
            )
    w("## Is the aim reached?\n")
    w(verdict(summary, rows, config))
    tuning = result.get("tuning")
    if tuning:
        w(render_tuning(tuning, config))
    w("## Reproduce\n")
    w(
        "```bash\npython scripts/cluster_indication_table.py           # this page, "
        f"{result['seconds'] / 60:.1f} min here\n"
        "python scripts/cluster_indication_table.py --quick   # seconds, "
        "into runs/cluster_indication_quick/\n"
        "python scripts/cluster_indication_table.py --tune    # also re-run the tuning\n```\n"
    )
    w(
        "```python\nfrom gsreg.experiments import cluster_indication as ci\n\n"
        "config = ci.ClusterIndicationConfig.quick()   # seconds; ClusterIndicationConfig(): "
        "this study\n"
        'row = ci.run_one("modules", 3, seed=0, setting="gsreg", config=config)\n'
        'print(row["components"], row["ari"], row["mse_ratio"])   # modules found, ARI, MSE / '
        "weight 0\n"
        "# ci.run_study(config): every run of the study, {config, rows, summary, seconds}\n"
        "```\n"
    )
    w(
        f"The full study ran in {result['seconds']:.0f} s ({len(rows)} runs, each with its "
        "weight-0 twin) in 2 processes with one torch thread each (`--workers 2`, the "
        "default) on a two-core CPU.\n"
    )
    return "\n".join(out)


def _row(rows: list[dict], kind: str, n: int, seed: int, setting: str = "gsreg") -> dict:
    return next(
        r
        for r in rows
        if (r["dataset"], r["n_modules"], r["seed"], r["setting"]) == (kind, n, seed, setting)
    )


def verdict(summary: list[dict], rows: list[dict], config: dict) -> str:
    """The honest paragraph: which aims are met, by how much the others miss, and why."""
    lines = []
    met = [r for r in summary if ci.aim_reached(r)]
    missed = [r for r in summary if not ci.aim_reached(r)]
    total = len(summary)
    lines.append(
        f"The aim (exact module count in >= 4 of 5 seeds and mean ARI >= 0.9) is reached in "
        f"{len(met)} of {total} data set / setting pairs"
        + (": " + "; ".join(f"{data_name(r)} ({r['setting']})" for r in met) if met else "")
        + ".\n"
    )
    if missed:
        lines.append("Where it is missed:\n")
        for r in missed:
            short = []
            if r["exact"] < 4:
                more = sum(c > r["n_modules"] for c in r["components"])
                fewer = sum(c < r["n_modules"] for c in r["components"])
                short.append(
                    f"exact in {r['exact']}/{r['seeds']} seeds (the aim needs 4; "
                    f"{more} with more components than planted, {fewer} with fewer)"
                )
            if r["ari_mean"] is None or r["ari_mean"] < 0.9:
                short.append(
                    f"mean ARI {fmt(r['ari_mean'])} ({fmt(0.9 - (r['ari_mean'] or 0))} below 0.9)"
                )
            else:
                short.append(f"mean ARI {fmt(r['ari_mean'])}")
            lines.append(f"- {data_name(r)}, {r['setting']}: " + "; ".join(short) + ".")
        lines.append("")
    lines.append(explanation(summary, rows, config))
    return "\n".join(lines) + "\n"


def explanation(summary: list[dict], rows: list[dict], config: dict) -> str:
    """Why: read from the component counts and module drivers of the runs."""
    warmup, width = config["authors"]["warmup_steps"], config["width"]
    k_gs = config["gsreg"]["k"]
    by = {(r["dataset"], r["n_modules"], r["setting"]): r for r in summary}
    parts = []
    gs = [r for r in summary if r["setting"] == "gsreg" and r["dataset"] == "modules"]
    au = [r for r in summary if r["setting"] == "authors" and r["dataset"] == "modules"]
    if gs:
        over = sum(c > r["n_modules"] for r in gs for c in r["components"])
        under = sum(c < r["n_modules"] for r in gs for c in r["components"])
        runs = sum(len(r["components"]) for r in gs)

        def mean(key: str) -> float:
            return sum(r[key] * r["seeds"] for r in gs) / runs

        planted = sum(r["n_modules"] * r["seeds"] for r in gs) / runs
        ari = mean("ari_mean")
        per_data = "; ".join(
            f"{r['n_modules']} planted: {r['exact']}/{r['seeds']} exact "
            f"({sum(c > r['n_modules'] for c in r['components'])} more, "
            f"{sum(c < r['n_modules'] for c in r['components'])} fewer)"
            for r in gs
        )
        text = (
            f"**Why, gsreg setting.** Of {runs} runs on `modules`, {over} end with more "
            f"components than planted modules and {under} with fewer ({per_data}). Per run, "
            f"{mean('single_modules_mean'):.1f} modules are driven by a single cluster and "
            f"{mean('conjunction_modules_mean'):.1f} by two or more (conjunctions); "
            f"{mean('clusters_indicated_mean'):.1f} of the {planted:.1f} planted clusters have "
            "a single-cluster module of their own"
        )
        text += (
            f". Mean ARI over these runs: {ari:.2f}; a run with too many components can still "
            "score high (a cluster with a module of its own drives it more than any "
            "conjunction), a run with too few cannot (two clusters share a module). "
        )
        if under:
            text += (
                "Too few components means that the neurons of two planted modules were still "
                "linked when the penalty set in, and GSR then pulls linked neurons together, so "
                f"the link stays; a larger k (here {k_gs}) makes such links more likely, the "
                "price of making spurious groups less likely to split off. "
            )
        text += (
            'The mechanism: with `"continue"` the graph is rebuilt every 100 steps and GSR '
            "makes the neurons of each component alike, so once a group of at least "
            f"k + 1 = {k_gs + 1} similar neurons exists it closes into a component of its own "
            "and does not "
            "merge back (no edge links components, and the reconstruction gains nothing from "
            "making two components alike). A unit that fires for two clusters is as useful to the"
            " decoder as one that fires for one, and a freshly initialised layer has many of "
            "both, so conjunction groups close as readily as cluster groups; with more planted "
            "modules there are more possible conjunctions. Collapsing each component onto one "
            "signal is also what costs reconstruction: what the features of a module do not share"
            " (their independent noise) is no longer carried, hence the MSE ratio."
        )
        parts.append(text)
    if au:
        fewer = sum(c < r["n_modules"] for r in au for c in r["components"])
        runs = sum(len(r["components"]) for r in au)
        au_rows = [x for x in rows if x["setting"] == "authors" and x["dataset"] == "modules"]
        short = [x for x in au_rows if x["components"] < x["n_modules"]]
        largest = sum(x["module_sizes"][0] for x in short) / max(1, len(short))
        after = [x["graph_step"] - warmup for x in au_rows if x["graph_step"] is not None]
        text = (
            f"**Why, authors' setting.** Stopping at the first disconnection reads the graph "
            f"when it has just fallen apart ({min(after)} to {max(after)} steps after the "
            f"warm-up here): in {fewer} of {runs} `modules` runs it has *fewer* components than "
            f"planted, and in those runs the largest component holds {largest:.0f} of the "
            f"{width} neurons on average: one big module and a small group split off. A graph "
            "from one batch of 32 samples is also noisy, so the first cut need not follow a "
            "module boundary."
        )
        split = [r for r in au if r["split_ari_n"]]
        if split:
            better = sum((r["split_ari_mean"] or 0) > (r["ari_mean"] or 0) for r in split)
            text += (
                f" Splitting its graph spectrally into the planted number raises the ARI in "
                f"{better} of {len(split)} `modules` data sets (split ARI column), but not to 0.9."
                if all((r["split_ari_mean"] or 0) < 0.9 for r in split)
                else f" Splitting its graph spectrally into the planted number raises the ARI "
                f"in {better} of {len(split)} `modules` data sets (split ARI column)."
            )
        parts.append(text)
    h = by.get(("hierarchical", 3, "gsreg"))
    if h:
        finer = (
            h["ari_fine_mean"] is not None
            and h["ari_mean"] is not None
            and (h["ari_fine_mean"] > h["ari_mean"])
        )
        parts.append(
            f"**Hierarchical data.** The gsreg graphs have {fmt(h['components_mean'], 1)} "
            f"components on average for 3 modules x 2 sub-types; their modules agree "
            + ("more with the 6 fine labels" if finer else "more with the 3 coarse modules")
            + f" (ARI {pm(h, 'ari_fine')} fine vs {pm(h, 'ari')} coarse)."
        )
    b = by.get(("binary_modules", 3, "gsreg"))
    if b:
        fewer = sum(c < 3 for c in b["components"])
        text = (
            f"**Binary modules.** The gsreg graphs have {fmt(b['components_mean'], 1)} "
            f"components on average for 3 bits ({fewer} of {b['seeds']} runs fewer than 3); "
            f"the best one-to-one pairing of modules and bits has a mean correlation of "
            f"{pm(b, 'bit_match')}"
        )
        if (b["bit_match_mean"] or 0) >= 0.8:
            text += ": the bits are owned by modules; further modules are copies or mixtures."
        else:
            text += (
                ": the modules do not separate the bits. The bits are independent, so every "
                "neuron mixes them and the first graphs have no module boundary to follow; the "
                "penalty then pulls whole components onto one signal, a mixture of the bits."
            )
        parts.append(text)
    return "\n\n".join(parts) + "\n"


def render_tuning(tuning: dict, config: dict) -> str:
    out = ["## How the settings were chosen\n"]
    out.append(
        f"Tuned on seeds {', '.join(map(str, tuning['seeds']))} (data and initial weights "
        "different from the reported seeds), by the number of exact matches, then mean ARI, "
        "then MSE ratio. Each row is one combination over all its runs. Stage 2 tunes the "
        "weight again, on all five data sets, because a weight that suits `modules` need not "
        "suit the others. Stages 1 and 2 use the paper's graph (kNN, k = 5); stage 3 tunes "
        "the graph itself, its kernel and neighbour count k, with the weight again: a "
        "group of similar neurons splits off only once it holds k + 1 neurons, so a larger k "
        "needs larger groups to disconnect (fewer spurious conjunction modules), while "
        f"{config['width']} neurons over at most 5 modules still leave about 20 per module. "
        "The authors' setting keeps the paper's graph (stage 4 tunes only its weight).\n"
    )
    for i, stage in enumerate(tuning["stages"], 1):
        grid = list(stage["grid"])
        data = ", ".join(f"{k}:{n}" for k, n in stage["datasets"])
        fixed = ", ".join(f"{k}={v}" for k, v in stage["fixed"].items())
        out.append(
            f"**Stage {i}** ({stage['setting']} setting; data {data}"
            + (f"; with {fixed}" if fixed else "")
            + f"). Best: {', '.join(f'{k}={v}' for k, v in stage['best'].items())}.\n"
        )
        out.append("| " + " | ".join(grid) + " | exact | mean ARI | MSE ratio | components |")
        out.append("|" + "---|" * (len(grid) + 4))
        for r in sorted(stage["records"], key=lambda r: (-r["exact"], -(r["ari_mean"] or 0))):
            comps = "; ".join(f"{k}: {','.join(map(str, v))}" for k, v in r["components"].items())
            out.append(
                "| "
                + " | ".join(str(r[k]) for k in grid)
                + f" | {r['exact']}/{r['runs']} | {fmt(r['ari_mean'])} "
                f"| {fmt(r['mse_ratio_mean'])} | {comps} |"
            )
        out.append("")
    g = config["gsreg"]
    out.append(
        "Why a LeakyReLU layer rather than the linear bottleneck in the gsreg setting: a linear "
        "unit and its negative carry the same information, so the linear layer forms modules "
        "in sign-flipped pairs (a module that is high for one cluster and another that is low "
        "for it), which adds components; standardised features make two neurons near exactly "
        "when they are correlated, so neurons of one module join whatever their scale. The "
        f"chosen values: model {g['model']}, features {g['features']}, graph "
        f'`"{g["kernel"]}"` with k = {g["k"]}, weight {g["weight"]:g}, '
        f"warm-up {g['warmup_steps']} steps, {g['epochs']} epochs at batch {g['batch_size']}.\n"
    )
    return "\n".join(out)


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, few steps (seconds)")
    parser.add_argument("--tune", action="store_true", help="re-run the tuning stages too")
    parser.add_argument(
        "--from-json",
        action="store_true",
        help="do not run the study: rewrite the page (and figures) from the JSON",
    )
    parser.add_argument("--no-figures", action="store_true")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="processes to run the runs in (one torch thread each)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the JSON, page and images (default: docs/, or "
        "runs/cluster_indication_quick/ with --quick)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message=".*n_modules.*")
    if args.out is None:
        args.out = ROOT / ("runs/cluster_indication_quick" if args.quick else "docs")
    json_path = args.out / "results" / "cluster_indication.json"
    page_path = args.out / "cluster_indication.md"
    image_dir = args.out / "images"
    config = ci.ClusterIndicationConfig.quick() if args.quick else ci.ClusterIndicationConfig()

    if args.from_json:
        result = json.loads(json_path.read_text())
    else:
        previous = json.loads(json_path.read_text()) if json_path.exists() else {}
        tuning = previous.get("tuning")
        if args.tune:
            start = time.perf_counter()
            spent = (tuning or {}).get("seconds") or 0.0  # reused stages keep their time
            tuning = tune(config, tuning, workers=args.workers)
            tuning["seconds"] = spent + time.perf_counter() - start
        result = ci.run_study(config, progress=True, workers=args.workers)
        if tuning is not None:
            result["tuning"] = tuning
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(to_jsonable(result), indent=1) + "\n")
        result = json.loads(json_path.read_text())
    images = {}
    if not args.no_figures:
        images = figures(config, image_dir)
    elif image_dir.exists():
        images = {
            k: f"cluster_{k}.png"
            for k in ("snapshots", "heatmap")
            if (image_dir / f"cluster_{k}.png").exists()
        }
    page_path.write_text(render(result, images, "images"))
    written = [page_path] if args.from_json else [json_path, page_path]
    if images and not args.no_figures:
        written.append(image_dir / "cluster_*.png")
    print("wrote " + ", ".join(map(str, written)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
