"""Which level of a hierarchy do the components of a learned graph indicate?

Two data sets with more than one level of structure, the learned-graph runs of
:mod:`gsreg.experiments.cluster_indication` on each (settings ``"gsreg"`` and
``"authors"``):

- :func:`gsreg.datasets.hierarchical`: 3 planted modules, each split into 2 sub-types
  (6 fine classes). Do the neuron modules follow the 3 coarse modules or the 6 sub-types?
  Scored by the ARI of the indicated clusters against either level, and per planted
  module by whether its sub-types drive the same component (:func:`subtype_split`).
- :func:`gsreg.datasets.binary_modules`: k = 3 independent on/off modules, all 8
  patterns. A sample can switch on several modules, so the natural read-out is one
  neuron module per bit: the correlation of each module's activity with each bit and the
  bit match (modules and bits paired one to one), beside the ARI against the 8 patterns.

The cost to the primary task (test MSE against the same model trained without the
penalty) is reported beside; a weight sweep of the gsreg setting on the hierarchical data
shows whether a weaker penalty lets the sub-types split; k-means on the raw data with
k = coarse and k = fine says how separable each level is without any graph. Every module
ARI (coarse, or patterns) stands beside its controls (``analysis.module_controls``,
as many groups as the GSR run found modules): the λ = 0 layer's neurons clustered into
modules and read out the same way, the samples clustered on that layer and on the raw
data, and a permutation null; the verdict says whether GSR beats the best of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np

from .. import analysis, datasets
from ..report import RunFolder, Section, prose
from . import _cluster_report as cr
from . import cluster_indication as ci
from ._labels import lambda_label
from ._verdicts import MSE_WRECKED, WRECKED

TITLE = "Coarse or fine: which level do learned-graph modules indicate?"
#: mean ARI (or bit match) from which the components are said to indicate a level
ARI_GOOD = 0.9
HIERARCHICAL = "hierarchical"
BINARY = "binary_modules"
#: the figures a run writes: ``{key: file stem}`` (``figures/<stem>.png``)
FIGURES = {
    "heatmaps": "module_fine_heatmaps",
    "bits": "bit_module_correlation",
    "levels": "ari_coarse_vs_fine",
    "sweep": "weight_sweep",
}


@dataclass(frozen=True)
class HierarchyConfig(cr.StudyConfig):
    """Everything that defines a run; written to ``config.json``.

    ``n_modules``: the coarse modules of the hierarchical data (each with the study's
    ``subtypes``); ``bits``: the on/off modules k of the binary data (``n_samples // 2**k``
    samples per pattern). The weight sweep runs on the hierarchical data. The settings were
    chosen on tuning seeds 100-102 (``cluster_indication``), the sweep grid fixed in
    advance; nothing here was tuned on the reported seeds. Shared fields: see
    :class:`gsreg.experiments._cluster_report.StudyConfig`.
    """

    n_modules: int = 3
    bits: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        for field in ("n_modules", "bits"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ValueError(f"HierarchyConfig.{field} must be an integer >= 2, got {value!r}")

    @classmethod
    def quick(cls, **overrides) -> HierarchyConfig:
        """Seconds: one seed, shorter training, a two-point sweep."""
        quick = {
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


def datasets_of(config: HierarchyConfig) -> list[tuple[str, int]]:
    """The two data sets: ``(kind, n_modules)`` pairs."""
    return [(HIERARCHICAL, config.n_modules), (BINARY, config.bits)]


# --------------------------------------------------------------------------- statistics


def majority_modules(pred: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes,) per class, the module most of its samples are indicated by (the
    smallest label on ties; -1 for a class without samples). ``pred``, ``classes`` (N,)."""
    pred, classes = np.asarray(pred), np.asarray(classes)
    ids, codes = np.unique(pred, return_inverse=True)
    counts = np.zeros((n_classes, len(ids)), dtype=np.int64)
    np.add.at(counts, (classes, codes), 1)
    out = ids[counts.argmax(axis=1)].astype(np.int64)
    return np.where(counts.sum(axis=1) > 0, out, -1)


def subtype_split(pred: np.ndarray, fine: np.ndarray, subtypes: int) -> dict:
    """Do the sub-types of each planted module drive the same neuron module?

    ``pred`` (N,): the module each sample is indicated by; ``fine`` (N,): fine labels
    ``module * subtypes + subtype`` (:func:`gsreg.datasets.hierarchical`). Each sub-type
    is represented by its majority module (:func:`majority_modules`). Returns
    ``modules`` (planted modules), ``merged`` (those whose sub-types all share one
    majority module: the coarse level), ``split`` (those whose sub-types all have
    different ones: the fine level) and ``majority`` (per fine class).
    """
    fine = np.asarray(fine)
    n_modules = int(fine.max()) // subtypes + 1
    majority = majority_modules(pred, fine, n_modules * subtypes)
    distinct = [
        len(set(majority[j * subtypes : (j + 1) * subtypes].tolist())) for j in range(n_modules)
    ]
    return {
        "modules": n_modules,
        "merged": sum(d == 1 for d in distinct),
        "split": sum(d == subtypes for d in distinct),
        "majority": majority.tolist(),
    }


def hierarchy_level(
    ari_coarse: float | None, ari_fine: float | None, good: float = ARI_GOOD
) -> str:
    """``"coarse"`` or ``"fine"``: the level whose ARI reaches ``good`` and beats the
    other's; ``"neither"`` otherwise."""
    if ari_coarse is None or ari_fine is None:
        return "neither"
    if ari_coarse >= good and ari_coarse > ari_fine:
        return "coarse"
    if ari_fine >= good and ari_fine > ari_coarse:
        return "fine"
    return "neither"


def binary_level(
    bit_match: float | None, ari_patterns: float | None, good: float = ARI_GOOD
) -> str:
    """``"bits"`` (one module per on/off module: bit match >= ``good``), ``"patterns"``
    (one module per pattern: ARI >= ``good``) or ``"neither"``."""
    if bit_match is not None and bit_match >= good:
        return "bits"
    if ari_patterns is not None and ari_patterns >= good:
        return "patterns"
    return "neither"


# --------------------------------------------------------------------------- runs


def readout(run: ci.Trained) -> dict:
    """Read-outs of a trained run beyond ``ci.measure``: the ``controls`` of its modules
    against the labels its ARI is scored on (coarse modules, or patterns), k = the number
    of modules the run found (the number of labels when no graph was built); for
    hierarchical data the :func:`subtype_split` of the indicated modules and (private, for
    the figures) the module x fine-class mean-activity table."""
    data = run.data
    Z = analysis.activations(run.model, data.X_test, run.layer)
    Z0 = analysis.activations(run.baseline, data.X_test, run.layer)
    truth = data.y_test
    if run.dataset_kind == HIERARCHICAL:
        truth = datasets.coarse_labels(data.y_test, len(data.classes) // run.n_modules)
    labels = None if run.graph is None else analysis.modules(run.graph)
    k = len(np.unique(truth)) if labels is None else int(labels.max()) + 1
    out = {
        "controls": analysis.module_controls(Z, labels, Z0, data.X_test, truth, k, run.seed),
        "subtypes": None,
        "_table": None,
    }
    if run.dataset_kind != HIERARCHICAL or labels is None:
        return out
    pred = analysis.indicated_modules(Z, labels)
    subtypes = len(data.classes) // run.n_modules
    return {
        **out,
        "subtypes": subtype_split(pred, data.y_test, subtypes),
        "_table": analysis.module_class_table(Z, labels, data.y_test),
    }


def raw_kmeans(config: HierarchyConfig) -> dict[int, dict]:
    """Per seed, k-means on the raw hierarchical test data with k = coarse and k = fine,
    the ARI of each against both levels (how separable each level is), and the fine ARI of
    the coarse labels themselves (what a perfect coarse indication scores)."""
    study = config.study(datasets_of(config))
    out = {}
    for seed in config.seeds:
        hier = ci.make_dataset(HIERARCHICAL, config.n_modules, seed, study)
        fine = hier.y_test
        coarse = datasets.coarse_labels(fine, len(hier.classes) // config.n_modules)
        record = {"coarse_labels_fine_ari": analysis.cluster_scores(coarse, fine)["ari"]}
        for name, k in (("coarse", config.n_modules), ("fine", len(hier.classes))):
            record[f"k_{name}_ari_coarse"] = cr.kmeans_ari(hier.X_test, coarse, k, seed)
            record[f"k_{name}_ari_fine"] = cr.kmeans_ari(hier.X_test, fine, k, seed)
        out[seed] = record
    return out


def run(config: HierarchyConfig, out: str, device: str = "auto", progress: bool = True) -> dict:
    """Train every run, analyse, write ``out/``; returns the metrics. Training runs on the
    CPU whatever ``device`` (small models; see ``cluster_indication``)."""
    folder = RunFolder(out)
    main = cr.main_keys(config, datasets_of(config))
    sweep = cr.sweep_keys(config, [(HIERARCHICAL, config.n_modules)])
    rows = cr.run_keys(config, main + sweep, readout, progress, "hierarchy")
    main_rows, sweep_rows = [rows[k] for k in main], [rows[k] for k in sweep]
    metrics = _metrics(config, main_rows, sweep_rows, raw_kmeans(config))
    folder.write_json("config.json", dataclasses.asdict(config))
    folder.write_metrics(metrics)
    figures = _figures(folder, config, main_rows, metrics)
    folder.write_report(TITLE, _sections(config, metrics, figures))
    return metrics


def _metrics(
    config: HierarchyConfig, rows: list[dict], sweep_rows: list[dict], kmeans: dict[int, dict]
) -> dict:
    groups = cr.group_records(rows)
    study = config.study(datasets_of(config))
    mean_k = {
        key: float(np.mean([k[key] for k in kmeans.values()]))
        for key in next(iter(kmeans.values()))
    }
    return {
        "data": {
            "hierarchical": {
                "n_modules": config.n_modules,
                "subtypes": study.subtypes,
                "n_samples": config.n_samples,
            },
            "binary_modules": {
                "bits": config.bits,
                "samples_per_pattern": config.n_samples // 2**config.bits,
            },
        },
        "seeds": list(config.seeds),
        "settings": {s: dataclasses.asdict(study.setting(s)) for s in config.settings},
        "ari_good": ARI_GOOD,
        "groups": groups,
        "hierarchical": {s: _hierarchical(_rows(rows, HIERARCHICAL, s)) for s in config.settings},
        "binary": {s: _binary(_rows(rows, BINARY, s)) for s in config.settings},
        "kmeans": {"per_seed": {str(seed): k for seed, k in kmeans.items()}, "mean": mean_k},
        "controls": {
            "k": K_RULE,
            "labels": dict(analysis.MODULE_CONTROL_LABELS),
            "permutations": analysis.NULL_PERMUTATIONS,
            "p_level": analysis.P_LEVEL,
            "leiden": analysis.leiden_available(),
        },
        "verdict": {
            kind: {s: _verdict(_rows(rows, kind, s)) for s in config.settings}
            for kind in (HIERARCHICAL, BINARY)
        },
        "sweep": cr.sweep_records(sweep_rows),
        "wrecked": [
            f"{_data_label(r['dataset'])}, {cr.SETTING_LABELS[r['setting']]}"
            for r in groups
            if r["cost"]["verdict"] == WRECKED
        ],
        "defaults_target": cr.defaults_target(rows),
        "runs": [cr.public(r) for r in rows],
        "sweep_runs": [cr.public(r) for r in sweep_rows],
    }


#: how many groups each control gets in this experiment
K_RULE = (
    "as many groups as the GSR run found modules (the number of labels where no graph was built)"
)


def _verdict(rows: Sequence[Mapping]) -> dict:
    """:func:`gsreg.analysis.module_verdict` of one data set and setting, scored on the ARI
    of the rows (coarse modules, or patterns)."""
    return analysis.module_verdict(rows, cr.cost(rows)["mse_ratio"])


def _rows(rows: Sequence[Mapping], kind: str, setting: str) -> list[Mapping]:
    return [r for r in rows if r["dataset"] == kind and r["setting"] == setting]


def _hierarchical(rows: Sequence[Mapping]) -> dict:
    """Which level one setting's hierarchical runs indicate, and at what cost."""
    coarse, fine = cr.mean_of([r["ari"] for r in rows]), cr.mean_of([r["ari_fine"] for r in rows])
    splits = [r["subtypes"] for r in rows if r["subtypes"] is not None]
    return {
        "ari_coarse_mean": coarse,
        "ari_fine_mean": fine,
        "components": [r["components"] for r in rows],
        "modules": sum(s["modules"] for s in splits),
        "merged": sum(s["merged"] for s in splits),
        "split": sum(s["split"] for s in splits),
        "level": hierarchy_level(coarse, fine),
        "cost": cr.cost(rows),
    }


def _binary(rows: Sequence[Mapping]) -> dict:
    """How one setting's modules map to the bits, and at what cost."""
    match, ari = cr.mean_of([r["bit_match"] for r in rows]), cr.mean_of([r["ari"] for r in rows])
    return {
        "bit_match_mean": match,
        "ari_patterns_mean": ari,
        "bits_owned": [r["bits_owned"] for r in rows],
        "components": [r["components"] for r in rows],
        "level": binary_level(match, ari),
        "cost": cr.cost(rows),
    }


def _data_label(kind: str) -> str:
    return "hierarchical" if kind == HIERARCHICAL else "binary modules"


def headline(metrics: dict) -> dict[str, str]:
    """The numbers an index page shows."""
    out = {}
    for setting, h in metrics["hierarchical"].items():
        b = metrics["binary"][setting]
        out[cr.SETTING_LABELS[setting]] = (
            f"hierarchical: level {h['level']}, ARI coarse {cr.fmt(h['ari_coarse_mean'])} / "
            f"fine {cr.fmt(h['ari_fine_mean'])}, MSE {h['cost']['mse_ratio']:.2f}x; binary: "
            f"bit match {cr.fmt(b['bit_match_mean'])}, MSE {b['cost']['mse_ratio']:.2f}x"
        )
    for kind, verdicts in metrics["verdict"].items():
        for setting, verdict in verdicts.items():
            key = f"vs best control ({_data_label(kind)}, {cr.SETTING_LABELS[setting]})"
            out[key] = cr.verdict_entry(verdict)
    if metrics.get("defaults_target"):
        out["target of the defaults"] = cr.defaults_target_text(metrics["defaults_target"])
    return out


# --------------------------------------------------------------------------- figures


def _figures(
    folder: RunFolder, config: HierarchyConfig, rows: list[dict], metrics: dict
) -> dict[str, str]:
    subtypes = config.study(()).subtypes
    plots = {
        "heatmaps": lambda: _plot_tables(config, rows),
        "bits": lambda: _plot_bits(config, rows),
        "levels": lambda: _plot_levels(config, rows, metrics),
        "sweep": lambda: cr.plot_sweep(
            metrics["sweep"],
            lambda r: f"{r['n_modules']} x {subtypes} hierarchical",
            ari_keys=(("ari_mean", "coarse"), ("ari_fine_mean", "fine")),
        ),
    }
    return {key: folder.save_figure(plots[key](), stem) for key, stem in FIGURES.items()}


def _subtype_names(module: int, subtypes: int) -> list[str]:
    """``["0a", "0b", ...]``: the sub-types of planted module ``module``."""
    return [f"{module}{'abcdefghij'[t]}" for t in range(subtypes)]


def _fine_names(n_modules: int, subtypes: int) -> list[str]:
    return [f"cluster {name}" for j in range(n_modules) for name in _subtype_names(j, subtypes)]


def _plot_tables(config: HierarchyConfig, rows: Sequence[Mapping]) -> plt.Figure:
    names = _fine_names(config.n_modules, config.study(()).subtypes)
    panels = []
    for setting in config.settings:
        row = cr.typical(_rows(rows, HIERARCHICAL, setting))
        if row["_table"] is not None:
            table, ids, classes = row["_table"]
            title = (
                f"{cr.SETTING_LABELS[setting]}, seed {row['seed']}: "
                f"{cr.plural(row['components'], 'component')}, ARI coarse "
                f"{cr.fmt(row['ari'])}, fine {cr.fmt(row['ari_fine'])}"
            )
            panels.append((title, table, ids, [names[c] for c in classes]))
    if not panels:
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.text(0.5, 0.5, "no graph was built", ha="center")
        ax.set_axis_off()
        return fig
    return cr.plot_heatmaps(panels, ncols=1)


def _plot_bits(config: HierarchyConfig, rows: Sequence[Mapping]) -> plt.Figure:
    nrows, ncols = len(config.settings), config.n_seeds
    fig, axes = plt.subplots(
        nrows, ncols, squeeze=False, layout="constrained", figsize=(1.1 + 2.0 * ncols, 2.7 * nrows)
    )
    image = None
    for axes_row, setting in zip(axes, config.settings, strict=True):
        for ax, row in zip(axes_row, _rows(rows, BINARY, setting), strict=True):
            corr = np.asarray(row["bit_corr"], dtype=np.float64).reshape(-1, config.bits)
            if corr.size == 0:  # no graph was built
                ax.set_axis_off()
                continue
            image = ax.imshow(corr, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
            for (i, j), value in np.ndenumerate(corr):
                ax.text(
                    j,
                    i,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if abs(value) > 0.6 else "black",
                )
            ax.set_xticks(range(config.bits), [f"bit {j}" for j in range(config.bits)], fontsize=7)
            ax.set_yticks(range(len(corr)), [f"module {m}" for m in range(len(corr))], fontsize=7)
            ax.set_title(
                f"{cr.SETTING_LABELS[setting]}, seed {row['seed']}\nbit match "
                f"{row['bit_match']:.2f}",
                fontsize=8,
            )
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="correlation over test samples")
    return fig


def _plot_levels(config: HierarchyConfig, rows: Sequence[Mapping], metrics: dict) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5.4, 4.6), layout="constrained")
    for setting in config.settings:
        group = [r for r in _rows(rows, HIERARCHICAL, setting) if r["ari"] is not None]
        ax.scatter(
            [r["ari"] for r in group],
            [r["ari_fine"] for r in group],
            s=30,
            color=cr.SETTING_COLORS[setting],
            label=cr.SETTING_LABELS[setting],
            alpha=0.7,
            zorder=3,
        )
    k = metrics["kmeans"]["mean"]
    ref = k["coarse_labels_fine_ari"]
    ax.scatter(
        [1, ref],
        [ref, 1],
        marker="*",
        s=260,
        facecolors="none",
        edgecolors="black",
        zorder=4,
        label="perfect coarse / perfect fine",
    )
    ax.scatter(
        [k["k_coarse_ari_coarse"], k["k_fine_ari_coarse"]],
        [k["k_coarse_ari_fine"], k["k_fine_ari_fine"]],
        marker="x",
        s=50,
        color="grey",
        label="k-means on raw data (k = coarse, fine)",
        zorder=2,
    )
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel(f"ARI against the {config.n_modules} coarse modules")
    ax.set_ylabel("ARI against the fine sub-types")
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("One dot per seed (hierarchical data)", fontsize=9)
    return fig


# --------------------------------------------------------------------------- report


def _sections(config: HierarchyConfig, metrics: dict, figures: dict[str, str]) -> list[Section]:
    return [
        Section("Summary", text=_summary(config, metrics), table=_group_table(metrics)),
        Section("Controls", text=_controls_text(config, metrics), table=_controls_table(metrics)),
        Section(
            "Coarse or fine (hierarchical data)",
            text=prose(
                "hierarchy/levels.txt",
                reference=metrics["kmeans"]["mean"]["coarse_labels_fine_ari"],
            ),
            table=_hierarchical_table(metrics),
            figures=[figures["levels"]],
        ),
        Section(
            "What drives each module (hierarchical data)",
            text=prose(
                "hierarchy/drivers.txt", subtypes=_subtype_names(0, config.study(()).subtypes)
            ),
            figures=[figures["heatmaps"]],
        ),
        Section(
            "Bits and modules (binary data)",
            text=prose("hierarchy/bits.txt"),
            table=_binary_table(metrics),
            figures=[figures["bits"]],
        ),
        Section(
            "The weight trade-off (hierarchical data)",
            text=_sweep_text(metrics),
            figures=[figures["sweep"]],
        ),
    ]


def _verdict_sentence(kind: str, setting: str, verdict: Mapping) -> str:
    target = "coarse modules" if kind == HIERARCHICAL else "patterns"
    return cr.verdict_sentence(
        verdict,
        f"On the {_data_label(kind)} data (ARI against the {target}), the "
        f"{cr.SETTING_LABELS[setting]}'s modules",
    )


def _controls_table(metrics: dict) -> list[dict]:
    return [
        cr.controls_row(f"{_data_label(kind)}, {cr.SETTING_LABELS[s]}", v)
        for kind, verdicts in metrics["verdict"].items()
        for s, v in verdicts.items()
    ]


def _verdict_sentences(metrics: dict) -> list[str]:
    return [
        _verdict_sentence(kind, s, v)
        for kind, verdicts in metrics["verdict"].items()
        for s, v in verdicts.items()
    ]


def _controls_text(config: HierarchyConfig, metrics: dict) -> str:
    return prose(
        "hierarchy/controls.txt",
        rule=cr.controls_rule(K_RULE),
        verdicts=_verdict_sentences(metrics),
    )


def _group_table(metrics: dict) -> list[dict]:
    table = []
    for record in metrics["groups"]:
        group = _rows(metrics["runs"], record["dataset"], record["setting"])
        table.append(
            {
                "data": _data_label(record["dataset"]),
                "setting": cr.SETTING_LABELS[record["setting"]],
                "components per seed": ", ".join(str(c) for c in record["components"]),
                "ARI (coarse / patterns)": cr.mean_sd([r["ari"] for r in group]),
                "ARI fine": cr.mean_sd([r.get("ari_fine") for r in group]),
                "bit match": cr.mean_sd([r.get("bit_match") for r in group]),
                "test MSE vs λ = 0 (per-seed range)": cr.cost_cell(record),
            }
        )
    return table


def _hierarchical_table(metrics: dict) -> list[dict]:
    return [
        {
            "setting": cr.SETTING_LABELS[s],
            "components per seed": ", ".join(map(str, h["components"])),
            "mean ARI coarse": cr.fmt(h["ari_coarse_mean"]),
            "mean ARI fine": cr.fmt(h["ari_fine_mean"]),
            "modules with sub-types merged": f"{h['merged']}/{h['modules']}",
            "modules with sub-types split": f"{h['split']}/{h['modules']}",
            "level indicated": h["level"],
        }
        for s, h in metrics["hierarchical"].items()
    ]


def _binary_table(metrics: dict) -> list[dict]:
    return [
        {
            "setting": cr.SETTING_LABELS[s],
            "components per seed": ", ".join(map(str, b["components"])),
            "mean bit match": cr.fmt(b["bit_match_mean"]),
            "bits owned per seed": ", ".join(map(str, b["bits_owned"])),
            "mean ARI vs patterns": cr.fmt(b["ari_patterns_mean"]),
            "level indicated": b["level"],
        }
        for s, b in metrics["binary"].items()
    ]


def _summary(config: HierarchyConfig, metrics: dict) -> str:
    settings = [
        {
            "label": cr.SETTING_LABELS[s],
            "hierarchical": metrics["hierarchical"][s],
            "level": _level_words(metrics["hierarchical"][s]["level"]),
            "binary": metrics["binary"][s],
            "binary_level": _binary_words(metrics["binary"][s]["level"]),
        }
        for s in config.settings
    ]
    return prose(
        "hierarchy/summary.txt",
        n_modules=config.n_modules,
        subtypes=config.study(()).subtypes,
        n_samples=config.n_samples,
        bits=config.bits,
        seeds=metrics["seeds"],
        cost_rule=cr.cost_rule(),
        settings=settings,
        kmeans=metrics["kmeans"]["mean"],
        verdicts=_verdict_sentences(metrics),
        wrecked=metrics["wrecked"],
        mse_wrecked=MSE_WRECKED,
    )


def _level_words(level: str) -> str:
    return {
        "coarse": "the coarse level (one component per planted module)",
        "fine": "the fine level (one component per sub-type)",
        "neither": "neither level clearly",
    }[level]


def _binary_words(level: str) -> str:
    return {
        "bits": "one module per on/off module",
        "patterns": "one module per pattern, not per bit",
        "neither": "the modules do not reliably separate the bits",
    }[level]


def _sweep_text(metrics: dict) -> str:
    records = [{**r, "label": lambda_label(r["weight"])} for r in metrics["sweep"]]
    penalised = [r for r in records if r["weight"] > 0]
    levels = {r["weight"]: hierarchy_level(r["ari_mean"], r["ari_fine_mean"]) for r in penalised}
    coarse = [r for r in penalised if levels[r["weight"]] == "coarse"]
    return prose(
        "hierarchy/sweep.txt",
        records=records,
        no_fine=bool(penalised) and "fine" not in levels.values(),
        cheapest=min(coarse, key=lambda r: r["cost"]["mse_ratio"]) if coarse else None,
    )


__all__ = [
    "FIGURES",
    "HierarchyConfig",
    "binary_level",
    "headline",
    "hierarchy_level",
    "majority_modules",
    "readout",
    "run",
    "subtype_split",
]
