"""Write docs/results.md from the full runs of the paper's experiments.

    python scripts/results_doc.py --run                # run every experiment in full, then write
    python scripts/results_doc.py --runs runs/full     # write from existing result folders
    python scripts/results_doc.py                      # rewrite from the copies in docs/results/

For every experiment the result folder's ``metrics.json`` and ``run.json`` are copied to
``docs/results/experiments/NAME/`` and its key figures to ``docs/images/results/``; the
page is then written from those copies alone, so every number on it comes from a
``metrics.json`` and the page can be regenerated without rerunning anything. The
headline numbers are recomputed from ``metrics.json`` by the experiment's own
``headline`` function. Quick runs are refused: their numbers mean little.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gsreg.experiments import registry  # noqa: E402

#: figures (stems of figures/*.png) shown on the page, per experiment
KEY_FIGURES = {
    "mnist-grid-ae": ("tradeoff", "class_maps_minus_mean"),
    "mnist-grid-classifier": ("tradeoff", "class_maps_minus_mean"),
    "reconstruction-sweep": ("mse_vs_coefficient",),
    "rotation": ("peak_polar",),
    "modules": ("weight_sweep", "module_cluster_heatmaps"),
    "hierarchy": ("module_fine_heatmaps",),
    "hierarchy-fixed": ("scores", "class_maps"),
    "trajectory": ("line_activity", "module_branch"),
    "pbmc": ("neurons_by_marker", "ari_by_seed"),
    "capsules": ("consistency_matrix",),
    "receptive-fields": ("fields", "tradeoff"),
    "topographic-sae": ("class_maps", "morans_i"),
}
RESULTS = ROOT / "docs" / "results" / "experiments"
BUDGET = ROOT / "benchmarks" / "results" / "budget.json"
IMAGES = ROOT / "docs" / "images" / "results"
PAGE = ROOT / "docs" / "results.md"


def collect(runs: Path, results: Path = RESULTS, images: Path = IMAGES) -> list[str]:
    """Copy metrics.json, run.json and the key figures of every full run under ``runs``
    into ``results``/NAME/ and ``images``; returns the names copied.

    Raises ValueError for a quick run or a folder that is not a finished result."""
    copied = []
    for experiment in registry.list_experiments():
        folder = runs / experiment.name
        if not folder.exists():
            continue
        if not (folder / "run.json").is_file() or not (folder / "metrics.json").is_file():
            raise ValueError(
                f"{folder} is not a finished result folder (no run.json or metrics.json)"
            )
        record = registry.read_run(folder)
        if record["quick"]:
            raise ValueError(f"{folder} holds a quick run; the results page shows full runs")
        target = results / experiment.name
        target.mkdir(parents=True, exist_ok=True)
        for name in ("metrics.json", "run.json"):
            shutil.copyfile(folder / name, target / name)
        images.mkdir(parents=True, exist_ok=True)
        for stem in KEY_FIGURES.get(experiment.name, ()):
            source = folder / "figures" / f"{stem}.png"
            if not source.is_file():
                raise ValueError(
                    f"{source} is missing: the experiment no longer draws "
                    f"{stem!r}; update KEY_FIGURES"
                )
            shutil.copyfile(source, images / f"{experiment.name}-{stem}.png")
        copied.append(experiment.name)
    return copied


def page(results: Path = RESULTS, images: Path = IMAGES, page_path: Path = PAGE) -> str:
    """docs/results.md as text, from the copies in ``results`` and ``images``."""
    rel_images = _relative(images, page_path.parent)
    rel_results = _relative(results, page_path.parent)
    rows, sections, missing = [], [], []
    for experiment in registry.list_experiments():
        folder = results / experiment.name
        if not (folder / "metrics.json").is_file():
            missing.append(experiment.name)
            continue
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        record = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        headline = experiment.headline(metrics)
        verdicts = {k: v for k, v in headline.items() if "best control" in k}
        minutes = record["seconds"] / 60
        rows.append(
            f"| [`{experiment.name}`](#{experiment.name}) | "
            + (
                "<br>".join(f"{_cell(k)}: {_cell(v)}" for k, v in verdicts.items())
                or "no comparison with controls in this run"
            )
            + f" | {minutes:.1f} |"
        )
        sections.append(_section(experiment, record, headline, rel_images, rel_results))
    lines = [
        "# Results of the full runs",
        "",
        "Every number below is read from the `metrics.json` of a full run of "
        "`gsreg run NAME` (seed 0), copied with its `run.json` to "
        f"`{rel_results}/NAME/`; `python scripts/results_doc.py` writes this page from "
        "them (`--run` reruns every experiment first). What each experiment measures: "
        "[experiments.md](experiments.md). Each experiment's report.html says in words "
        "what its figures show. *minutes* is the wall-clock time of that run; a run made "
        "while other work shared the machine's cores takes longer than the idle-machine "
        "estimate `gsreg list` gives.",
        "",
        "Every structure score stands beside its controls, and the table says whether GSR "
        "beats the best of them, by how much and at what cost to the primary task. For a "
        "fixed graph the controls are the λ = 0 model as trained and the same model with "
        "its units arranged post hoc onto the graph (`gsreg.arrange`: the same function, "
        "so no cost); for learned modules, the λ = 0 layer's units clustered post hoc "
        "(k-means, Leiden) and the samples clustered on the λ = 0 layer and on the raw "
        'input. A permutation null stands beside each score in the reports. "does not '
        'help" means a model trained without GSR, read with the same care, shows at '
        "least as much structure.",
        "",
        "| experiment | GSR against the best control | minutes |",
        "|---|---|---|",
        *rows,
    ]
    if missing:
        lines += ["", "Not run yet: " + ", ".join(f"`{name}`" for name in missing) + "."]
    lines += ["", *budget_section(BUDGET), "", *targets_section(results)]
    return "\n".join(lines + [""] + sections).rstrip() + "\n"


def _read(results: Path, name: str) -> dict | None:
    path = results / name / "metrics.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


#: the structure margin the budget model must reach over the arranged λ = 0 layer
BUDGET_MARGIN = 0.1
#: the share of the authors' rotation restarts whose peak must follow the angle
ROTATION_SHARE = 0.8


def targets_section(results: Path = RESULTS) -> list[str]:
    """One row per target of the budget and the defaults, read from the copied runs:
    the measured number and met / missed (runs that are missing are left out)."""
    rows = []
    ae = _read(results, "mnist-grid-ae")
    if ae is not None and ae.get("budget") is not None:
        v = ae["budget"]["verdict_vs_controls"]
        rows.append(
            (
                "mnist-grid-ae: the 5% budget's Moran's I at least "
                f"{BUDGET_MARGIN:g} above the arranged λ = 0 layer",
                f"{v['gsr_score']:.3f} against {v['control_score']:.3f} "
                f"({v['margin']:+.3f}) at {ae['budget']['cost_ratio']:.3f}x the MSE",
                v["margin"] >= BUDGET_MARGIN,
            )
        )
    for name in ("modules", "hierarchy"):
        m = _read(results, name)
        for data, t in ((m or {}).get("defaults_target") or {}).items():
            rows.append(
                (
                    f"{name}, {data}: the estimator's learned-graph defaults (exact count "
                    "in 4 of 5 seeds, ARI >= 0.9, MSE <= 1.10x, ARI >= k-means on the "
                    "λ = 0 layer)",
                    f"exact {t['exact']}/{t['runs']}, ARI {t['ari_mean']:.2f}, MSE "
                    f"{t['mse_ratio']:.2f}x",
                    t["met"],
                )
            )
    pbmc = _read(results, "pbmc")
    if pbmc is not None and "defaults" in pbmc:
        d = pbmc["defaults"]
        controls = ", ".join(f"{k} {v:.2f}" for k, v in d["controls"].items())
        rows.append(
            (
                "pbmc: gsreg.sc.fit defaults' module ARI >= PCA + k-means and Leiden on "
                "PCA neighbours, MSE <= 1.05x",
                f"ARI {d['ari']:.2f} ({controls}), MSE {d['mse_ratio']:.2f}x",
                d["met"],
            )
        )
    rotation = _read(results, "rotation")
    authors = [
        v
        for v in ((rotation or {}).get("variants") or {}).values()
        if v.get("layout") == "authors" and v.get("weight", 0) > 0
    ]
    for v in authors:
        rows.append(
            (
                f"rotation: the authors' ring follows the angle (|ρ| >= 0.9) in "
                f"{ROTATION_SHARE:.0%} of restarts",
                f"{v['tracking_fraction']:.0%} of restarts, median |ρ| "
                f"{v['median_abs_rho']:.2f}, {v['mse_ratio']:.2f}x the MSE",
                v["tracking_fraction"] >= ROTATION_SHARE,
            )
        )
    if not rows:
        return []
    return [
        "## Targets of the budget and the defaults",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        *(f"| {_cell(t)} | {_cell(m)} | {'yes' if ok else 'no'} |" for t, m, ok in rows),
    ]


def budget_section(path: Path) -> list[str]:
    """The budget's targets from ``benchmarks/budget.py``'s JSON (nothing without it):
    per model and budget, the test task loss against its target and Moran's I against
    the best fixed weight within the same cost and the arranged λ = 0 layer."""
    if not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    config = data["config"]
    out = [
        "## Budgets",
        "",
        f"`benchmarks/budget.py` on MNIST ({config['train']:,} training and "
        f"{config['test']:,} test digits, {config['graph']} layer, seeds "
        f"{', '.join(map(str, config['seeds']))}; means). Target: the test task loss "
        f"within (1 + b) +- {config['tolerance']:g} of λ = 0's, and Moran's I at least "
        "that of the best fixed weight whose cost is within the same budget.",
        "",
        "| model | budget | test loss vs λ = 0 | target | Moran's I | best fixed weight "
        "within budget | λ = 0 arranged | beats best control | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, summary in data["results"]["summary"].items():
        for name, b in summary["budgets"].items():
            fixed = (
                "none"
                if b["best_fixed_within_budget"] is None
                else f"{b['best_fixed_within_budget']}: {b['best_fixed_morans_i']:.3f}"
            )
            met = b["loss_met"] and b["structure_met"]
            low, high = b["target"]
            out.append(
                f"| {kind} | {name.split()[-1]} | {b['loss_ratio']:.3f}x | {low:.2f}-{high:.2f} "
                f"| {b['morans_i']:.3f} | {fixed} | {b['arranged_lambda0_morans_i']:.3f} | "
                f"{b['helps_in_runs']} of {b['runs']} | {'yes' if met else 'no'} |"
            )
    return out


def _section(experiment, record, headline, rel_images, rel_results) -> str:
    versions = record.get("versions", {})
    out = [
        f"## {experiment.name}",
        "",
        experiment.description[0].upper() + experiment.description[1:] + ".",
        "",
        *(f"- {k}: {v}" for k, v in headline.items()),
        "",
        f"Run: `{record['rerun']}`, {record['seconds'] / 60:.1f} min on "
        f"{record['device']}, finished {record['finished']}, torch "
        f"{versions.get('torch')}. Numbers: "
        f"[metrics.json]({rel_results}/{experiment.name}/metrics.json).",
        "",
    ]
    for stem in KEY_FIGURES.get(experiment.name, ()):
        out += [f"![{experiment.name}: {stem}]({rel_images}/{experiment.name}-{stem}.png)", ""]
    return "\n".join(out)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _relative(path: Path, start: Path) -> str:
    import os

    return Path(os.path.relpath(path, start)).as_posix()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, help="folder holding the full runs' NAME/ folders")
    parser.add_argument(
        "--run",
        action="store_true",
        help="run every experiment in full into --runs (default runs/full) first",
    )
    parser.add_argument("--device", default="auto", help="device of --run (default auto)")
    args = parser.parse_args(argv)
    status = 0
    if args.run:
        args.runs = args.runs or ROOT / "runs" / "full"
        try:
            registry.run_all(args.runs, device=args.device)
        except registry.ExperimentsFailed as err:  # the others still go on the page
            print(err, file=sys.stderr)
            status = 1
    if args.runs is not None:
        names = collect(args.runs)
        print(f"copied {len(names)} run(s): {', '.join(names)}")
    PAGE.write_text(page(), encoding="utf-8")
    print(f"wrote {PAGE}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
