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
from ..estimators import GSRAutoencoder
from ..report import RunFolder, Section, prose
from . import _cluster_report as cr
from . import cluster_indication as ci
from ._labels import lambda_label
from ._verdicts import CLOSE, COSTLY, MSE_CLOSE, MSE_WRECKED, WRECKED

TITLE = "Neuron modules of a learned graph on planted clusters"
#: mean ARI from which the components are said to indicate the clusters
ARI_GOOD = 0.9
#: share of a group's seeds that must find the exact module count (:func:`indicates`)
EXACT_SHARE = 0.8
#: mean components below which the graph learnt at λ = 0 counts as connected
CONNECTED_MEAN = 1.5
#: the figures a run writes: ``{key: file stem}`` (``figures/<stem>.png``)
FIGURES = {
    "graphs": "learned_graphs",
    "heatmaps": "module_cluster_heatmaps",
    "history": "components_history",
    "ari": "ari_by_seed",
    "sweep": "weight_sweep",
}


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
                raise ValueError(
                    f"ModulesConfig.{field} must be a non-empty sequence of "
                    f"integers >= 2, got {values!r}"
                )

    @classmethod
    def quick(cls, **overrides) -> ModulesConfig:
        """Seconds: 3 planted modules, one seed, shorter training, a two-point sweep."""
        quick = {
            "n_modules": (3,),
            "sweep_modules": (3,),
            "n_seeds": 1,
            "n_samples": 1500,
            "gsreg_epochs": 30,
            "authors_warmup_steps": 200,
            "authors_epochs": 12,
            "defaults_epochs": 40,
            "sweep_weights": (0.0, 0.1),
            "workers": 1,
        }
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
    out = {
        "controls": analysis.module_controls(Z, labels, Z0, data.X_test, truth, k, run.seed),
        "_graph": run.graph,
        "_table": None,
    }
    if labels is not None:
        out["_table"] = analysis.module_class_table(Z, labels, truth)
    return out


def weakest_weight_with_modules(
    by_weight: Sequence[Mapping], ari: float = ARI_GOOD
) -> Mapping | None:
    """The record of the smallest weight > 0 whose mean ARI reaches ``ari`` (records with
    ``weight`` and ``ari_mean``); None when none does."""
    good = [
        r
        for r in by_weight
        if r["weight"] > 0 and r["ari_mean"] is not None and r["ari_mean"] >= ari
    ]
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
    by_weight = [
        _overall(w, [r for r in sweep_rows if r["weight"] == w])
        for w in sorted({r["weight"] for r in sweep_rows})
    ]
    weakest = weakest_weight_with_modules(by_weight)
    study = config.study(datasets_of(config))
    overall = {
        s: _overall(config.setting_weight(s), [r for r in rows if r["setting"] == s])
        for s in config.settings
    }
    return {
        "data": {
            "name": "modules",
            "n_modules": list(config.n_modules),
            "n_samples": config.n_samples,
        },
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
    return {
        "weight": weight,
        "runs": len(rows),
        "exact": sum(bool(r["exact"]) for r in rows),
        "ari_mean": cr.mean_of([r["ari"] for r in rows]),
        "components_mean": float(np.mean([r["components"] for r in rows])),
        "cost": cost,
        "verdict": analysis.module_verdict(rows, cost["mse_ratio"]),
    }


#: how many groups each control gets in this experiment
K_RULE = "as many groups as the GSR run found modules (the planted number where no graph was built)"


def _controls_info() -> dict:
    """What the controls are, for metrics.json (their ARIs sit in every run's row)."""
    return {
        "k": K_RULE,
        "labels": dict(analysis.MODULE_CONTROL_LABELS),
        "permutations": analysis.NULL_PERMUTATIONS,
        "p_level": analysis.P_LEVEL,
        "leiden": analysis.leiden_available(),
    }


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
            f"({o['cost']['verdict']})"
        )
    weakest = metrics["weakest_weight_with_modules"]
    if weakest is None:
        out["weight sweep"] = f"no weight reaches mean ARI {metrics['ari_good']:g}"
    else:
        w = next(r for r in metrics["sweep_by_weight"] if r["weight"] == weakest)
        out["weight sweep"] = (
            f"smallest λ with mean ARI ≥ {metrics['ari_good']:g}: "
            f"{lambda_label(weakest)}, MSE {w['cost']['mse_ratio']:.2f}x "
            f"({w['cost']['verdict']})"
        )
    for setting, verdict in metrics["verdict"].items():
        out[f"vs best control ({cr.SETTING_LABELS[setting]})"] = cr.verdict_entry(verdict)
    if metrics.get("defaults_target"):
        out["target of the defaults"] = cr.defaults_target_text(metrics["defaults_target"])
    return out


# --------------------------------------------------------------------------- figures


def _figures(
    folder: RunFolder, config: ModulesConfig, rows: list[dict], metrics: dict
) -> dict[str, str]:
    examples = [
        cr.typical(_group_rows(rows, n, s)) for s in config.settings for n in config.n_modules
    ]
    ncols = len(config.n_modules)
    plots = {
        "graphs": lambda: _plot_graphs(examples, ncols),
        "heatmaps": lambda: _plot_tables(examples, ncols),
        "history": lambda: _plot_history(config, rows),
        "ari": lambda: _plot_ari(config, rows),
        "sweep": lambda: cr.plot_sweep(metrics["sweep"], lambda r: f"{r['n_modules']} planted"),
    }
    return {key: folder.save_figure(plots[key](), stem) for key, stem in FIGURES.items()}


def _example_title(row: Mapping) -> str:
    return (
        f"{row['n_modules']} planted, {cr.SETTING_LABELS[row['setting']]}, seed "
        f"{row['seed']}\n{cr.plural(row['components'], 'component')}, ARI "
        f"{cr.fmt(row['ari'])}"
    )


def _plot_graphs(examples: Sequence[Mapping], ncols: int) -> plt.Figure:
    nrows = -(-len(examples) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.6 * ncols, 3.9 * nrows), squeeze=False, layout="constrained"
    )
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
    fig, axes = plt.subplots(
        1, ncols, figsize=(4.3 * ncols, 3.3), squeeze=False, layout="constrained"
    )
    for ax, n in zip(axes[0], config.n_modules, strict=True):
        for setting in config.settings:
            s = study.setting(setting)
            for i, row in enumerate(_group_rows(rows, n, setting)):
                steps = s.warmup_steps + s.update_every * np.arange(len(row["components_history"]))
                offset = 0.06 * (i - (config.n_seeds - 1) / 2)  # so equal lines stay visible
                ax.plot(
                    steps,
                    np.asarray(row["components_history"]) + offset,
                    ".-",
                    lw=1,
                    color=cr.SETTING_COLORS[setting],
                    label=cr.SETTING_LABELS[setting] if i == 0 else None,
                )
        ax.axhline(n, color="grey", ls=":", lw=1)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("training step of the graph update")
        ax.set_title(f"{n} planted modules (dotted)", fontsize=9)
    axes[0, 0].set_ylabel("components of the learned graph")
    axes[0, 0].legend(fontsize=8)
    return fig


def _plot_ari(config: ModulesConfig, rows: Sequence[Mapping]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(2.2 + 1.9 * len(config.n_modules), 3.6), layout="constrained")
    series = [(s, cr.SETTING_COLORS[s], cr.SETTING_LABELS[s], "ari", "o") for s in config.settings]
    series += [
        (s, cr.SETTING_COLORS[s], f"best control ({cr.SETTING_LABELS[s]})", None, "x")
        for s in config.settings
    ]
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
    study = config.study(datasets_of(config))
    return [
        Section("Summary", text=_summary(config, metrics), table=_group_table(metrics)),
        Section(
            "The learned graphs",
            text=prose("modules/learned_graphs.txt"),
            figures=[figures["graphs"]],
        ),
        Section(
            "What drives each module",
            text=prose("modules/drivers.txt"),
            figures=[figures["heatmaps"]],
        ),
        Section(
            "Components over training",
            text=prose("modules/history.txt", update_every=study.gsreg.update_every),
            figures=[figures["history"]],
        ),
        Section("Controls", text=_controls_text(config, metrics), table=_controls_table(metrics)),
        Section(
            "ARI per seed",
            text=prose("modules/ari.txt", ari_good=ARI_GOOD),
            figures=[figures["ari"]],
        ),
        Section(
            "The weight trade-off",
            text=_sweep_text(metrics),
            table=_sweep_table(metrics),
            figures=[figures["sweep"]],
        ),
    ]


def _controls_table(metrics: dict) -> list[dict]:
    rows = [cr.controls_row(_group_label(r), r["verdict"]) for r in metrics["groups"]]
    rows += [
        cr.controls_row(f"all planted counts, {cr.SETTING_LABELS[s]}", v)
        for s, v in metrics["verdict"].items()
    ]
    return rows


def _controls_text(config: ModulesConfig, metrics: dict) -> str:
    return prose(
        "modules/controls.txt",
        rule=cr.controls_rule(K_RULE),
        verdicts=[_verdict_sentence(s, metrics["verdict"][s]) for s in config.settings],
    )


def _group_table(metrics: dict) -> list[dict]:
    table = []
    for record in metrics["groups"]:
        group = _group_rows(metrics["runs"], record["n_modules"], record["setting"])
        table.append(
            {
                "planted": record["n_modules"],
                "setting": cr.SETTING_LABELS[record["setting"]],
                "exact": f"{record['exact']}/{record['seeds']}",
                "components per seed": ", ".join(str(c) for c in record["components"]),
                "ARI": cr.mean_sd([r["ari"] for r in group]),
                "NMI": cr.mean_sd([r["nmi"] for r in group]),
                "purity": cr.mean_sd([r["purity"] for r in group]),
                "best control (ARI)": (
                    f"{record['verdict']['best_control']} ({record['verdict']['control_ari']:.2f})"
                ),
                "GSR helps": "yes" if record["verdict"]["helps"] else "no",
                "test MSE vs λ = 0 (per-seed range)": cr.cost_cell(record),
            }
        )
    return table


def indicates(record: Mapping, ari: float = ARI_GOOD, exact: float = EXACT_SHARE) -> bool:
    """Whether a group's components indicate its clusters: mean ARI >= ``ari`` and the
    exact number of components in at least a fraction ``exact`` of its seeds."""
    return ci.aim_reached(record, min_exact=math.ceil(exact * record["seeds"]), min_ari=ari)


def _claim(metrics: dict) -> str:
    """Whether the paper's claim holds here, group by group, in words."""
    good = [r for r in metrics["groups"] if indicates(r)]
    return prose(
        "modules/claim.txt",
        ari_good=ARI_GOOD,
        exact_share=EXACT_SHARE,
        good=[_group_label(r) for r in good],
        bad=[_group_label(r) for r in metrics["groups"] if not indicates(r)],
        affordable=[_group_label(r) for r in good if r["cost"]["verdict"] != WRECKED],
    )


def _sweep_table(metrics: dict) -> list[dict]:
    return [
        {
            "λ": lambda_label(r["weight"]),
            "exact": f"{r['exact']}/{r['runs']}",
            "components (mean)": f"{r['components_mean']:.1f}",
            "mean ARI": cr.fmt(r["ari_mean"]),
            "test MSE vs λ = 0": f"{r['cost']['mse_ratio']:.2f}x",
            "primary task": r["cost"]["verdict"],
        }
        for r in metrics["sweep_by_weight"]
    ]


def _setting_facts(setting: str, metrics: dict) -> dict:
    """What the summary says about one setting: its overall record, its groups and the
    range of its per-run MSE ratios."""
    overall = metrics["overall"][setting]
    groups = [r for r in metrics["groups"] if r["setting"] == setting]
    ratios = [x for r in groups for x in r["cost"]["mse_ratios"]]
    return {
        "label": cr.SETTING_LABELS[setting],
        "weight": lambda_label(overall["weight"]),
        "overall": overall,
        "groups": groups,
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def _summary(config: ModulesConfig, metrics: dict) -> str:
    study = config.study(datasets_of(config))
    return prose(
        "modules/summary.txt",
        n_modules=config.n_modules,
        n_samples=config.n_samples,
        seeds=metrics["seeds"],
        width=study.width,
        defaults_width=GSRAutoencoder().n_structured,
        cost_rule=cr.cost_rule(),
        settings=[_setting_facts(s, metrics) for s in config.settings],
        authors_warmup=config.authors_warmup_steps if "authors" in config.settings else None,
        paper_warmup=ci.PAPER_WARMUP_STEPS,
        wrecked=metrics["wrecked"],
        mse_wrecked=MSE_WRECKED,
        claim=_claim(metrics),
        verdicts=[_verdict_sentence(s, metrics["verdict"][s]) for s in config.settings],
    )


def _verdict_sentence(setting: str, verdict: Mapping) -> str:
    return cr.verdict_sentence(
        verdict,
        f"Against its controls, the {cr.SETTING_LABELS[setting]}'s"
        " modules (all planted counts together)",
    )


def _cost_words(verdict: str) -> str:
    return {
        CLOSE: "close to λ = 0",
        COSTLY: "that is noticeable but does not wreck the primary task",
    }[verdict]


def _sweep_text(metrics: dict) -> str:
    by_weight = metrics["sweep_by_weight"]
    zero = next((r for r in by_weight if r["weight"] == 0), None)
    weakest = metrics["weakest_weight_with_modules"]
    best = []
    for verdict in (CLOSE, COSTLY):
        kept = [r for r in by_weight if r["weight"] > 0 and r["cost"]["verdict"] == verdict]
        if kept:
            record = max(kept, key=lambda r: r["ari_mean"] or 0.0)
            best.append(
                {
                    "words": _cost_words(verdict),
                    "weight": lambda_label(record["weight"]),
                    "record": record,
                }
            )
    return prose(
        "modules/sweep.txt",
        planted=sorted({r["n_modules"] for r in metrics["sweep"]}),
        zero=zero,
        connected=zero is not None and zero["components_mean"] < CONNECTED_MEAN,
        ari_good=ARI_GOOD,
        weakest=None
        if weakest is None
        else {
            "weight": lambda_label(weakest),
            "record": next(r for r in by_weight if r["weight"] == weakest),
        },
        best=best,
        mse_close=MSE_CLOSE,
        any_close=any(r["weight"] > 0 and r["cost"]["verdict"] == CLOSE for r in by_weight),
    )


__all__ = ["FIGURES", "ModulesConfig", "headline", "readout", "run", "weakest_weight_with_modules"]
