"""Do the components of a learned co-activation graph indicate planted clusters?

Data: :func:`gsreg.datasets.modules` with 3, 4 and 5 planted modules of 5 correlated
features; each sample raises one module by +10, its label (the cluster) is that module.
An autoencoder learns the graph of a 100-neuron layer from the layer's own
co-activations while GSR smooths the layer on it
(:mod:`gsreg.experiments.cluster_indication`, whose runs this experiment reports). Each
connected component of the final graph is a neuron module, each test sample is assigned
to the module it drives most, and that assignment is scored against the planted clusters
(ARI, NMI, purity). Two settings: ``"gsreg"`` (graphs from a buffer of many batches,
updated all run long) and ``"authors"`` (the original procedure: one-batch graphs, stop at
the first disconnection).

Beside the structure, the cost: the test MSE against the same model trained without the
penalty. A weight sweep of the gsreg setting shows the trade-off between modules and
cost. Every module ARI stands beside its controls (``analysis.module_controls``,
as many groups as the GSR run found modules): the neurons of the same model trained at
λ = 0 clustered into modules after training and read out the same way, the samples
clustered on that layer and on the raw data, and a permutation null of the module ARI;
the verdict says whether GSR beats the best of them, and at what cost.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from .. import analysis, plotting
from ..report import RunFolder, Section
from . import _cluster_report as cr
from . import cluster_indication as ci
from ._labels import lambda_label
from ._verdicts import CLOSE, COSTLY, MSE_CLOSE, MSE_WRECKED, WRECKED

TITLE = "Neuron modules of a learned graph on planted clusters"
#: mean ARI from which the components are said to indicate the clusters
ARI_GOOD = 0.9


@dataclass(frozen=True)
class ModulesConfig(cr.StudyConfig):
    """Everything that defines a run; written to ``config.json``.

    ``n_modules``: the planted module counts (one data set each); ``sweep_modules``: those
    of the gsreg setting's weight sweep over ``sweep_weights``. Seeds ``seed .. seed +
    n_seeds - 1`` give both the data and the initial weights. The settings were chosen on
    tuning seeds 100-102 (``cluster_indication``), the sweep grid fixed in advance; nothing
    here was tuned on the reported seeds. Shared fields: see
    :class:`gsreg.experiments._cluster_report.StudyConfig`.
    """

    n_modules: tuple[int, ...] = (3, 4, 5)
    sweep_modules: tuple[int, ...] = (3, 4, 5)

    def __post_init__(self) -> None:
        super().__post_init__()
        for field in ("n_modules", "sweep_modules"):
            values = getattr(self, field)
            if not values or not all(isinstance(n, int) and n >= 2 for n in values):
                raise ValueError(f"ModulesConfig.{field} must be a non-empty sequence of "
                                 f"integers >= 2, got {values!r}")

    @classmethod
    def quick(cls, **overrides) -> ModulesConfig:
        """Seconds: 3 planted modules, one seed, shorter training, a two-point sweep."""
        quick = {"n_modules": (3,), "sweep_modules": (3,), "n_seeds": 1, "n_samples": 1500,
                 "gsreg_epochs": 30, "authors_warmup_steps": 200, "authors_epochs": 12,
                 "defaults_epochs": 40, "sweep_weights": (0.0, 0.1), "workers": 1}
        return cls(**{**quick, **overrides})




def datasets_of(config: ModulesConfig, field: str = "n_modules") -> list[tuple[str, int]]:
    """``("modules", n)`` for each planted count of ``field``."""
    return [("modules", n) for n in getattr(config, field)]


def readout(run: ci.Trained) -> dict:
    """Read-outs of a trained run beyond ``ci.measure``: the ``controls`` of its modules
    (``analysis.module_controls`` on the test samples, k = the number of modules the run found,
    the planted number when no graph was built), and for the figures (private keys) the
    graph read as modules and its module x cluster mean-activity table."""
    data, truth = run.data, run.data.y_test
    Z = analysis.activations(run.model, data.X_test, run.layer)
    Z0 = analysis.activations(run.baseline, data.X_test, run.layer)
    labels = None if run.graph is None else analysis.modules(run.graph)
    k = run.n_modules if labels is None else int(labels.max()) + 1
    out = {"controls": analysis.module_controls(Z, labels, Z0, data.X_test, truth, k, run.seed),
           "_graph": run.graph, "_table": None}
    if labels is not None:
        out["_table"] = analysis.module_class_table(Z, labels, truth)
    return out


def weakest_weight_with_modules(by_weight: Sequence[Mapping], ari: float = ARI_GOOD
                                ) -> Mapping | None:
    """The record of the smallest weight > 0 whose mean ARI reaches ``ari`` (records with
    ``weight`` and ``ari_mean``); None when none does."""
    good = [r for r in by_weight
            if r["weight"] > 0 and r["ari_mean"] is not None and r["ari_mean"] >= ari]
    return min(good, key=lambda r: r["weight"], default=None)


# --------------------------------------------------------------------------- run


def run(config: ModulesConfig, out: str, device: str = "auto", progress: bool = True) -> dict:
    """Train every run, analyse, write ``out/``; returns the metrics. Training runs on the
    CPU whatever ``device`` (small models; see ``cluster_indication``)."""
    folder = RunFolder(out)
    main = cr.main_keys(config, datasets_of(config))
    sweep = cr.sweep_keys(config, datasets_of(config, "sweep_modules"))
    rows = cr.run_keys(config, main + sweep, readout, progress, "modules")
    main_rows = [rows[k] for k in main]
    sweep_rows = [rows[k] for k in sweep]
    metrics = _metrics(config, main_rows, sweep_rows)
    folder.write_json("config.json", dataclasses.asdict(config))
    folder.write_metrics(metrics)
    figures = _figures(folder, config, main_rows, metrics)
    folder.write_report(TITLE, _sections(config, metrics, figures))
    return metrics


def _metrics(config: ModulesConfig, rows: list[dict], sweep_rows: list[dict]) -> dict:
    groups = cr.group_records(rows)
    for record in groups:
        group = _group_rows(rows, record["n_modules"], record["setting"])
        record["purity_mean"] = cr.mean_of([r["purity"] for r in group])
        record["verdict"] = analysis.module_verdict(group, record["cost"]["mse_ratio"])
    by_weight = [_overall(w, [r for r in sweep_rows if r["weight"] == w])
                 for w in sorted({r["weight"] for r in sweep_rows})]
    weakest = weakest_weight_with_modules(by_weight)
    study = config.study(datasets_of(config))
    overall = {s: _overall(config.setting_weight(s), [r for r in rows if r["setting"] == s])
               for s in config.settings}
    return {
        "data": {"name": "modules", "n_modules": list(config.n_modules),
                 "n_samples": config.n_samples},
        "seeds": list(config.seeds),
        "settings": {s: dataclasses.asdict(study.setting(s)) for s in config.settings},
        "ari_good": ARI_GOOD,
        "groups": groups,
        "overall": overall,
        "controls": _controls_info(),
        "verdict": {s: o["verdict"] for s, o in overall.items()},
        "sweep": cr.sweep_records(sweep_rows),
        "sweep_by_weight": by_weight,
        "weakest_weight_with_modules": None if weakest is None else weakest["weight"],
        "wrecked": [_group_label(r) for r in groups if r["cost"]["verdict"] == WRECKED],
        "defaults_target": cr.defaults_target(rows),
        "runs": [cr.public(r) for r in rows],
        "sweep_runs": [cr.public(r) for r in sweep_rows],
    }


def _overall(weight: float, rows: Sequence[Mapping]) -> dict:
    """Exact matches, mean ARI, cost and the verdict against the controls of all ``rows``
    (one setting or sweep weight)."""
    cost = cr.cost(rows)
    return {"weight": weight, "runs": len(rows), "exact": sum(bool(r["exact"]) for r in rows),
            "ari_mean": cr.mean_of([r["ari"] for r in rows]),
            "components_mean": float(np.mean([r["components"] for r in rows])),
            "cost": cost, "verdict": analysis.module_verdict(rows, cost["mse_ratio"])}


#: how many groups each control gets in this experiment
K_RULE = ("as many groups as the GSR run found modules (the planted number where no graph "
          "was built)")


def _controls_info() -> dict:
    """What the controls are, for metrics.json (their ARIs sit in every run's row)."""
    return {"k": K_RULE, "labels": dict(analysis.MODULE_CONTROL_LABELS),
            "permutations": analysis.NULL_PERMUTATIONS, "p_level": analysis.P_LEVEL,
            "leiden": analysis.leiden_available()}


def _group_rows(rows: Sequence[Mapping], n: int, setting: str) -> list[Mapping]:
    return [r for r in rows if r["n_modules"] == n and r["setting"] == setting]


def _group_label(record: Mapping) -> str:
    return f"{record['n_modules']} planted, {cr.SETTING_LABELS[record['setting']]}"


def headline(metrics: dict) -> dict[str, str]:
    """The numbers an index page shows."""
    out = {}
    for setting, o in metrics["overall"].items():
        out[cr.SETTING_LABELS[setting]] = (
            f"exact module count in {o['exact']}/{o['runs']} runs, mean ARI "
            f"{cr.fmt(o['ari_mean'])}, MSE {o['cost']['mse_ratio']:.2f}x λ = 0 "
            f"({o['cost']['verdict']})")
    weakest = metrics["weakest_weight_with_modules"]
    if weakest is None:
        out["weight sweep"] = f"no weight reaches mean ARI {metrics['ari_good']:g}"
    else:
        w = next(r for r in metrics["sweep_by_weight"] if r["weight"] == weakest)
        out["weight sweep"] = (f"smallest λ with mean ARI ≥ {metrics['ari_good']:g}: "
                               f"{lambda_label(weakest)}, MSE {w['cost']['mse_ratio']:.2f}x "
                               f"({w['cost']['verdict']})")
    for setting, verdict in metrics["verdict"].items():
        out[f"vs best control ({cr.SETTING_LABELS[setting]})"] = cr.verdict_entry(verdict)
    if metrics.get("defaults_target"):
        out["target of the defaults"] = cr.defaults_target_text(metrics["defaults_target"])
    return out


# --------------------------------------------------------------------------- figures


def _figures(folder: RunFolder, config: ModulesConfig, rows: list[dict], metrics: dict
             ) -> dict[str, str]:
    examples = [cr.typical(_group_rows(rows, n, s))
                for s in config.settings for n in config.n_modules]
    ncols = len(config.n_modules)
    return {
        "graphs": folder.save_figure(_plot_graphs(examples, ncols), "learned_graphs"),
        "heatmaps": folder.save_figure(_plot_tables(examples, ncols), "module_cluster_heatmaps"),
        "history": folder.save_figure(_plot_history(config, rows), "components_history"),
        "ari": folder.save_figure(_plot_ari(config, rows), "ari_by_seed"),
        "sweep": folder.save_figure(
            cr.plot_sweep(metrics["sweep"], lambda r: f"{r['n_modules']} planted"),
            "weight_sweep"),
    }


def _example_title(row: Mapping) -> str:
    return (f"{row['n_modules']} planted, {cr.SETTING_LABELS[row['setting']]}, seed "
            f"{row['seed']}\n{cr.plural(row['components'], 'component')}, ARI "
            f"{cr.fmt(row['ari'])}")


def _plot_graphs(examples: Sequence[Mapping], ncols: int) -> plt.Figure:
    nrows = -(-len(examples) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.9 * nrows), squeeze=False,
                             layout="constrained")
    for ax, row in zip(axes.flat, examples, strict=True):
        if row["_graph"] is None:
            ax.set_axis_off()
            ax.text(0.5, 0.5, "no graph was built", ha="center", transform=ax.transAxes)
            continue
        plotting.plot_modules(row["_graph"], ax=ax)
        ax.set_title(_example_title(row), fontsize=9)
    return fig


def _plot_tables(examples: Sequence[Mapping], ncols: int) -> plt.Figure:
    panels = []
    for row in examples:
        if row["_table"] is not None:
            table, ids, classes = row["_table"]
            panels.append((_example_title(row), table, ids, [f"cluster {c}" for c in classes]))
    return cr.plot_heatmaps(panels, ncols)


def _plot_history(config: ModulesConfig, rows: Sequence[Mapping]) -> plt.Figure:
    study = config.study(datasets_of(config))
    ncols = len(config.n_modules)
    fig, axes = plt.subplots(1, ncols, figsize=(4.3 * ncols, 3.3), squeeze=False,
                             layout="constrained")
    for ax, n in zip(axes[0], config.n_modules, strict=True):
        for setting in config.settings:
            s = study.setting(setting)
            for i, row in enumerate(_group_rows(rows, n, setting)):
                steps = s.warmup_steps + s.update_every * np.arange(len(row["components_history"]))
                offset = 0.06 * (i - (config.n_seeds - 1) / 2)  # so equal lines stay visible
                ax.plot(steps, np.asarray(row["components_history"]) + offset, ".-", lw=1,
                        color=cr.SETTING_COLORS[setting],
                        label=cr.SETTING_LABELS[setting] if i == 0 else None)
        ax.axhline(n, color="grey", ls=":", lw=1)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("training step of the graph update")
        ax.set_title(f"{n} planted modules (dotted)", fontsize=9)
    axes[0, 0].set_ylabel("components of the learned graph")
    axes[0, 0].legend(fontsize=8)
    return fig


def _plot_ari(config: ModulesConfig, rows: Sequence[Mapping]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(2.2 + 1.9 * len(config.n_modules), 3.6),
                           layout="constrained")
    series = [(s, cr.SETTING_COLORS[s], cr.SETTING_LABELS[s], "ari", "o")
              for s in config.settings]
    series += [(s, cr.SETTING_COLORS[s], f"best control ({cr.SETTING_LABELS[s]})", None, "x")
               for s in config.settings]
    offsets = np.linspace(-0.3, 0.3, len(series))
    for x, n in enumerate(config.n_modules):
        for (setting, color, label, key, marker), dx in zip(series, offsets, strict=True):
            group = _group_rows(rows, n, setting)
            if key is None:  # the group's best control, per run
                best = analysis.module_verdict(group, 1.0)["best_control_key"]
                values = [r["controls"][best] for r in group]
            else:
                values = [r[key] for r in group]
            cr.dots(ax, x + dx, values, color, label if x == 0 else None, marker)
    ax.set_xticks(range(len(config.n_modules)), [f"{n} planted" for n in config.n_modules])
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("ARI against the planted clusters")
    ax.axhline(ARI_GOOD, color="grey", ls=":", lw=1)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("One dot per seed", fontsize=9)
    return fig


# --------------------------------------------------------------------------- report


def _sections(config: ModulesConfig, metrics: dict, figures: dict[str, str]) -> list[Section]:
    return [
        Section("Summary", text=_summary(config, metrics), table=_group_table(metrics)),
        Section("The learned graphs", text=(
            "The graph read as modules of a typical run (the seed at the median ARI) per "
            "planted count and setting, each component drawn apart and in its own colour. "
            "Components = neuron modules; a run indicates the clusters when it has one "
            "component per planted module."), figures=[figures["graphs"]]),
        Section("What drives each module", text=(
            "For the same runs: the mean activity of each module (rows) over the test "
            "samples of each planted cluster (columns). A module that indicates a cluster is "
            "high in that cluster's column only; a module high in several columns is a "
            "conjunction of clusters, and a cluster without a high cell has no module of its "
            "own."), figures=[figures["heatmaps"]]),
        Section("Components over training", text=(
            "Number of components of each learned graph at every graph update, one line per "
            "seed (lines shifted slightly apart so that equal ones stay visible). The gsreg "
            "setting rebuilds the graph every 100 steps all run long; the authors' setting "
            "stops at the first graph that falls apart, whose components are read as "
            "modules (the last point of its lines)."), figures=[figures["history"]]),
        Section("Controls", text=_controls_text(config, metrics),
                table=_controls_table(metrics)),
        Section("ARI per seed", text=(
            "ARI of the indicated clusters against the planted ones, one dot per seed, per "
            "setting (circles), beside the best control of the same runs (crosses; see "
            f"Controls). Dotted: ARI {ARI_GOOD:g}."), figures=[figures["ari"]]),
        Section("The weight trade-off", text=_sweep_text(metrics),
                table=_sweep_table(metrics), figures=[figures["sweep"]]),
    ]


def _controls_table(metrics: dict) -> list[dict]:
    rows = [cr.controls_row(_group_label(r), r["verdict"]) for r in metrics["groups"]]
    rows += [cr.controls_row(f"all planted counts, {cr.SETTING_LABELS[s]}", v)
             for s, v in metrics["verdict"].items()]
    return rows


def _controls_text(config: ModulesConfig, metrics: dict) -> str:
    lines = [cr.controls_rule(K_RULE) + " One row per planted count and setting (means over "
             "seeds), then each setting over all of its runs."]
    lines += [_verdict_sentence(s, metrics["verdict"][s]) for s in config.settings]
    return "\n\n".join(lines)


def _group_table(metrics: dict) -> list[dict]:
    table = []
    for record in metrics["groups"]:
        group = _group_rows(metrics["runs"], record["n_modules"], record["setting"])
        table.append({
            "planted": record["n_modules"],
            "setting": cr.SETTING_LABELS[record["setting"]],
            "exact": f"{record['exact']}/{record['seeds']}",
            "components per seed": ", ".join(str(c) for c in record["components"]),
            "ARI": cr.mean_sd([r["ari"] for r in group]),
            "NMI": cr.mean_sd([r["nmi"] for r in group]),
            "purity": cr.mean_sd([r["purity"] for r in group]),
            "best control (ARI)": (f"{record['verdict']['best_control']} "
                                   f"({record['verdict']['control_ari']:.2f})"),
            "GSR helps": "yes" if record["verdict"]["helps"] else "no",
            "test MSE vs λ = 0 (per-seed range)": cr.cost_cell(record),
        })
    return table


def indicates(record: Mapping, ari: float = ARI_GOOD, exact: float = 0.8) -> bool:
    """Whether a group's components indicate its clusters: mean ARI >= ``ari`` and the
    exact number of components in at least a fraction ``exact`` of its seeds."""
    return ci.aim_reached(record, min_exact=math.ceil(exact * record["seeds"]), min_ari=ari)


def _claim(metrics: dict) -> str:
    """Whether the paper's claim holds here, group by group, in words."""
    good = [r for r in metrics["groups"] if indicates(r)]
    bad = [r for r in metrics["groups"] if not indicates(r)]
    lines = [f"Is the paper's claim reproduced? The components indicate the clusters (mean "
             f"ARI ≥ {ARI_GOOD:g} and the exact count in ≥ 80% of seeds) in: "
             + ("; ".join(_group_label(r) for r in good) if good else "no case") + "."]
    if bad:
        lines.append(f"They do not in: {'; '.join(_group_label(r) for r in bad)}.")
    affordable = [_group_label(r) for r in good if r["cost"]["verdict"] != WRECKED]
    if good and not affordable:
        lines.append("Wherever they do, the penalty wrecks the primary task: the structure is "
                     "reproduced, \"without significantly impacting performance\" is not.")
    elif affordable:
        lines.append(f"Without wrecking the primary task in: {'; '.join(affordable)}.")
    return " ".join(lines)


def _sweep_table(metrics: dict) -> list[dict]:
    return [{
        "λ": lambda_label(r["weight"]),
        "exact": f"{r['exact']}/{r['runs']}",
        "components (mean)": f"{r['components_mean']:.1f}",
        "mean ARI": cr.fmt(r["ari_mean"]),
        "test MSE vs λ = 0": f"{r['cost']['mse_ratio']:.2f}x",
        "primary task": r["cost"]["verdict"],
    } for r in metrics["sweep_by_weight"]]


def _setting_sentence(setting: str, metrics: dict) -> str:
    o = metrics["overall"][setting]
    groups = [r for r in metrics["groups"] if r["setting"] == setting]
    per = "; ".join(f"{r['n_modules']} planted: {r['exact']}/{r['seeds']} exact, mean ARI "
                    f"{cr.fmt(r['ari_mean'])}" for r in groups)
    ratios = [x for r in groups for x in r["cost"]["mse_ratios"]]
    return (f"The {cr.SETTING_LABELS[setting]} (λ = {lambda_label(o['weight'])}): the "
            f"graph has exactly as many components as planted modules in {o['exact']} of "
            f"{o['runs']} runs ({per}). Its test MSE is {o['cost']['mse_ratio']:.2f}x that of "
            f"the same model trained without the penalty (per run {min(ratios):.2f}x to "
            f"{max(ratios):.2f}x): {o['cost']['verdict']}.")


def _summary(config: ModulesConfig, metrics: dict) -> str:
    seeds = metrics["seeds"]
    lines = [
        f"Data with {', '.join(str(n) for n in config.n_modules)} planted modules, "
        f"{config.n_samples} samples each, seeds {seeds[0]} to {seeds[-1]}. An autoencoder "
        "learns the graph of a 100-neuron layer (64 for the estimator defaults: "
        "GSRAutoencoder(graph=\"learned\"), the centred penalty, the graph frozen and the "
        "penalty released once its modules hold) from its co-activations while GSR smooths "
        "the layer on it; the graph's connected components are the neuron modules, and each test "
        "sample is assigned to the module it drives most. ARI 1 means the modules indicate "
        "the planted clusters exactly, 0 chance.",
        cr.cost_rule(),
    ]
    lines += [_setting_sentence(s, metrics) for s in config.settings]
    if "authors" in config.settings:
        lines.append(
            f"The authors' setting follows the paper's procedure with its warm-up shortened "
            f"from 5000 to {config.authors_warmup_steps} steps (see cluster_indication).")
    if metrics["wrecked"]:
        lines.append(
            f"By the {MSE_WRECKED:g}x rule the penalty wrecks the primary task in: "
            f"{'; '.join(metrics['wrecked'])}. The modules are bought with a reconstruction "
            "that is much worse than without the penalty; the paper's \"without significantly "
            "impacting performance on the primary task\" does not hold for these settings.")
    lines.append(_claim(metrics))
    lines += [_verdict_sentence(s, metrics["verdict"][s]) for s in config.settings]
    return "\n\n".join(lines)


def _verdict_sentence(setting: str, verdict: Mapping) -> str:
    return cr.verdict_sentence(verdict, f"Against its controls, the {cr.SETTING_LABELS[setting]}'s"
                               " modules (all planted counts together)")


def _cost_words(verdict: str) -> str:
    return {CLOSE: "close to λ = 0", COSTLY: "that is noticeable but does not wreck the "
            "primary task"}[verdict]


def _sweep_text(metrics: dict) -> str:
    by_weight = metrics["sweep_by_weight"]
    planted = sorted({r["n_modules"] for r in metrics["sweep"]})
    lines = [
        f"The gsreg setting at each λ on the data with {', '.join(map(str, planted))} planted "
        "modules, every seed (table: all of these runs together; figure: per planted count). "
        "λ = 0 learns the graph the same way but does not penalise the layer.",
    ]
    zero = next((r for r in by_weight if r["weight"] == 0), None)
    if zero is not None:
        lines.append(
            f"Without the penalty the learned graph has {zero['components_mean']:.1f} "
            "components on average" + (
                ": it does not fall apart by itself, the modules come from GSR."
                if zero["components_mean"] < 1.5 else "."))
    weakest = metrics["weakest_weight_with_modules"]
    if weakest is None:
        lines.append(f"No weight reaches a mean ARI of {ARI_GOOD:g}.")
    else:
        w = next(r for r in by_weight if r["weight"] == weakest)
        lines.append(
            f"The smallest λ with a mean ARI ≥ {ARI_GOOD:g} is {lambda_label(weakest)} "
            f"(ARI {cr.fmt(w['ari_mean'])}, exact in {w['exact']}/{w['runs']} runs) at "
            f"{w['cost']['mse_ratio']:.2f}x the MSE of λ = 0: {w['cost']['verdict']}.")
    for verdict in (CLOSE, COSTLY):
        kept = [r for r in by_weight if r["weight"] > 0 and r["cost"]["verdict"] == verdict]
        if kept:
            best = max(kept, key=lambda r: r["ari_mean"] or 0.0)
            lines.append(
                f"The best mean ARI at a cost {_cost_words(verdict)} is "
                f"{cr.fmt(best['ari_mean'])} (λ = {lambda_label(best['weight'])}, exact in "
                f"{best['exact']}/{best['runs']} runs, {best['cost']['mse_ratio']:.2f}x).")
    if not any(r["weight"] > 0 and r["cost"]["verdict"] == CLOSE for r in by_weight):
        lines.append(f"Every λ > 0 here costs more than {MSE_CLOSE:g}x the MSE of λ = 0: "
                     "in this setting the modules always cost reconstruction.")
    return "\n\n".join(lines)


__all__ = ["ModulesConfig", "headline", "readout", "run",
           "weakest_weight_with_modules"]
