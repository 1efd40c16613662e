"""What the learned-graph reports share: config fields, runs, records, figures, controls.

Both experiments run the learned-graph study of
:mod:`gsreg.experiments.cluster_indication` (its ``train``, ``measure``, ``run_many`` and
``summarize``) on seeds ``seed .. seed + n_seeds - 1`` and turn its rows into a report: per
data set and setting a record of the summary plus the primary-task cost, a weight sweep
of the gsreg setting, and the k-means baselines. A run is identified by its key
``(dataset kind, n_modules, seed, setting, weight)``; runs asked for twice (a sweep weight
equal to the setting's own) are trained once.

The words and tables of the controls of a learned graph's modules (also used by ``pbmc``
and ``trajectory``); :func:`gsreg.analysis.module_controls` and
:func:`gsreg.analysis.module_verdict` compute them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np

from .. import analysis, plotting
from ..report import prose
from . import cluster_indication as ci
from ._config import check_config, tuple_fields
from ._labels import lambda_label
from ._verdicts import MSE_CLOSE, MSE_WRECKED, reconstruction_cost

#: (dataset kind, n_modules, seed, setting, weight of the setting's penalty)
RunKey = tuple[str, int, int, str, float]
SETTING_COLORS = {"gsreg": "tab:blue", "authors": "tab:orange", "defaults": "tab:green"}
SETTING_LABELS = {
    "gsreg": "gsreg setting",
    "authors": "authors' setting",
    "defaults": "estimator defaults",
}
#: k-means restarts of :func:`kmeans_ari`
KMEANS_RESTARTS = 10


@dataclass(frozen=True)
class StudyConfig:
    """Fields shared by the ``modules`` and ``hierarchy`` configs (see their docstrings).

    The two settings are those of :mod:`gsreg.experiments.cluster_indication`
    (``ci.GSREG``, ``ci.AUTHORS``), chosen there on tuning seeds 100-102, never on the
    reported ones; here only their lengths can change (``gsreg_epochs``,
    ``authors_warmup_steps``, ``authors_epochs``), for the quick configuration.
    ``sweep_weights``: penalty weights of the gsreg setting's sweep, fixed in advance
    (λ = 0 learns the graph without penalising: does it fall apart by itself?).
    ``workers``: processes that train the runs (one torch thread each); the results do not
    depend on it. Training always runs on the CPU: the models are small.
    """

    n_seeds: int = 5
    settings: tuple[str, ...] = ci.SETTINGS
    n_samples: int = ci.ClusterIndicationConfig.n_samples
    gsreg_epochs: int = ci.GSREG.epochs
    authors_warmup_steps: int = ci.AUTHORS.warmup_steps
    authors_epochs: int = ci.AUTHORS.epochs
    defaults_epochs: int | None = None  # None: the estimator's "auto"
    sweep_weights: tuple[float, ...] = (0.0, 0.01, 0.03, 0.1, 0.3)
    workers: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        tuple_fields(self)
        name = type(self).__name__
        check_config(
            name,
            n_seeds=(self.n_seeds, "positive_int"),
            n_samples=(self.n_samples, "positive_int"),
            gsreg_epochs=(self.gsreg_epochs, "positive_int"),
            authors_warmup_steps=(self.authors_warmup_steps, "positive_int"),
            authors_epochs=(self.authors_epochs, "positive_int"),
            defaults_epochs=(self.defaults_epochs, "optional_positive_int"),
            sweep_weights=(self.sweep_weights, "weights"),
            workers=(self.workers, "positive_int"),
        )
        if not self.settings or any(s not in ci.SETTINGS for s in self.settings):
            raise ValueError(
                f"{name}.settings must be a non-empty sequence of "
                f"{ci.SETTINGS}, got {self.settings!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"{name}.seed must be an int >= 0, got {self.seed!r}")

    @property
    def seeds(self) -> tuple[int, ...]:
        """The reported seeds: ``seed, seed + 1, ..., seed + n_seeds - 1``."""
        return tuple(range(self.seed, self.seed + self.n_seeds))

    def study(
        self, datasets: Sequence[tuple[str, int]], gsreg_weight: float | None = None
    ) -> ci.ClusterIndicationConfig:
        """The cluster-indication config of these runs, the gsreg weight replaced if given."""
        gsreg = dataclasses.replace(ci.GSREG, epochs=self.gsreg_epochs)
        if gsreg_weight is not None:
            gsreg = dataclasses.replace(gsreg, weight=float(gsreg_weight))
        authors = dataclasses.replace(
            ci.AUTHORS, warmup_steps=self.authors_warmup_steps, epochs=self.authors_epochs
        )
        defaults = dataclasses.replace(ci.DEFAULTS, epochs=self.defaults_epochs or 0)
        return ci.ClusterIndicationConfig(
            seeds=self.seeds,
            datasets=tuple(datasets),
            settings=self.settings,
            n_samples=self.n_samples,
            gsreg=gsreg,
            authors=authors,
            defaults=defaults,
        )

    def setting_weight(self, setting: str) -> float:
        """The penalty weight of ``setting`` in the main runs."""
        return self.study(()).setting(setting).weight


# --------------------------------------------------------------------------- runs


def main_keys(config: StudyConfig, datasets: Sequence[tuple[str, int]]) -> list[RunKey]:
    """Every (data set, seed, setting) of the main runs, at each setting's own weight."""
    return [
        (kind, n, seed, setting, config.setting_weight(setting))
        for kind, n in datasets
        for setting in config.settings
        for seed in config.seeds
    ]


def sweep_keys(config: StudyConfig, datasets: Sequence[tuple[str, int]]) -> list[RunKey]:
    """Every (data set, seed, weight) of the gsreg setting's weight sweep."""
    return [
        (kind, n, seed, "gsreg", float(w))
        for kind, n in datasets
        for w in sorted(set(config.sweep_weights))
        for seed in config.seeds
    ]


def run_keys(
    config: StudyConfig,
    keys: Iterable[RunKey],
    extra: ci.Extra | None,
    progress: bool,
    desc: str,
) -> dict[RunKey, dict]:
    """Train and measure each distinct run once (``ci.run_many``); ``{key: row}``.

    ``extra`` adds read-outs to each row (see ``ci.run_one``); every row also gets its
    ``weight``.
    """
    unique = list(dict.fromkeys(keys))
    datasets = tuple(dict.fromkeys((kind, n) for kind, n, *_ in unique))
    jobs = [
        (kind, n, seed, setting, config.study(datasets, weight if setting == "gsreg" else None))
        for kind, n, seed, setting, weight in unique
    ]
    rows = ci.run_many(jobs, workers=config.workers, desc=desc, progress=progress, extra=extra)
    return {key: {**row, "weight": key[4]} for key, row in zip(unique, rows, strict=True)}


def public(row: Mapping) -> dict:
    """``row`` without its private (``_``-prefixed) read-outs, for metrics.json."""
    return {k: v for k, v in row.items() if not k.startswith("_")}


def typical(rows: Sequence[Mapping], key: str = "ari") -> Mapping:
    """The row at the lower median of ``key`` (a missing value counts lowest), ties broken
    by seed: the run shown as an example."""

    def score(row):
        value = row.get(key)
        return (-np.inf if value is None else value, row["seed"])

    ordered = sorted(rows, key=score)
    return ordered[(len(ordered) - 1) // 2]


# --------------------------------------------------------------------------- records


def cost(rows: Sequence[Mapping]) -> dict:
    """The primary-task cost of a group of runs: mean test MSE, mean MSE of the same models
    trained with weight 0 (same seeds), their ratio and verdict (``reconstruction_cost``),
    and the per-seed ratios."""
    mse = float(np.mean([r["mse"] for r in rows]))
    baseline = float(np.mean([r["mse_baseline"] for r in rows]))
    return {
        "mse_mean": mse,
        "mse_baseline_mean": baseline,
        **reconstruction_cost(mse, baseline),
        "mse_ratios": [r["mse_ratio"] for r in rows],
    }


def group_records(rows: Sequence[Mapping]) -> list[dict]:
    """``ci.summarize`` of the rows (one record per data set and setting) with the
    ``weight`` and the primary-task ``cost`` of each group."""
    records = ci.summarize(rows)
    for record in records:
        group = [
            r
            for r in rows
            if (r["dataset"], r["n_modules"], r["setting"])
            == (record["dataset"], record["n_modules"], record["setting"])
        ]
        record["weight"] = group[0]["weight"]
        record["cost"] = cost(group)
    return records


def sweep_records(rows: Sequence[Mapping]) -> list[dict]:
    """:func:`group_records` per sweep weight, in order of data set then weight."""
    weights = sorted({r["weight"] for r in rows})
    records = [rec for w in weights for rec in group_records([r for r in rows if r["weight"] == w])]
    return sorted(records, key=lambda r: (r["dataset"], r["n_modules"], r["weight"]))


def kmeans_ari(X: np.ndarray, truth: np.ndarray, k: int, seed: int) -> float:
    """ARI against ``truth`` (N,) of k-means (k clusters, :data:`KMEANS_RESTARTS` restarts,
    ``random_state=seed``) on the rows of X (N, d): how separable the clusters are without
    any graph."""
    from sklearn.cluster import KMeans

    pred = KMeans(n_clusters=k, n_init=KMEANS_RESTARTS, random_state=seed).fit_predict(
        np.asarray(X)
    )
    return analysis.cluster_scores(pred, truth)["ari"]


def fmt(value: float | None, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals, ``"n/a"`` for None."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def plural(count: int, noun: str) -> str:
    """``"1 component"``, ``"3 components"``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def mean_of(values: Sequence[float | None]) -> float | None:
    """Mean of the values that are not None; None if there are none."""
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def mean_sd(values: Sequence[float | None], digits: int = 2) -> str:
    """``"m ± sd"`` of the values that are not None (sd with ddof 1), ``"n/a"`` if none."""
    kept = [v for v in values if v is not None]
    if not kept:
        return "n/a"
    sd = float(np.std(kept, ddof=1)) if len(kept) > 1 else 0.0
    return f"{np.mean(kept):.{digits}f} ± {sd:.{digits}f}"


def cost_cell(record: Mapping) -> str:
    """The cost of a record as a table cell: ratio of means, per-seed range, verdict."""
    c = record["cost"]
    return (
        f"{c['mse_ratio']:.2f}x ({min(c['mse_ratios']):.2f}-{max(c['mse_ratios']):.2f}): "
        f"{c['verdict']}"
    )


def cost_rule() -> str:
    """How a cost is judged, in words."""
    return prose("cluster_report/cost_rule.txt", close=MSE_CLOSE, wrecked=MSE_WRECKED)


# --------------------------------------------------------------------------- figures


def lambda_positions(weights: Sequence[float]) -> tuple[np.ndarray, list[float], list[str]]:
    """x positions of weights on a log axis with 0 one decade left of the smallest non-zero
    weight; also the ticks and their labels."""
    nonzero = [w for w in weights if w > 0]
    zero_at = min(nonzero) / 10 if nonzero else 1.0
    xs = np.array([w if w > 0 else zero_at for w in weights], dtype=np.float64)
    ticks = sorted(set(xs.tolist()))
    return xs, ticks, ["0" if t == zero_at else lambda_label(t) for t in ticks]


def plot_sweep(
    records: Sequence[Mapping],
    label_of: Callable[[Mapping], str],
    ari_keys: Sequence[tuple[str, str]] = (("ari_mean", "ARI"),),
) -> plt.Figure:
    """The gsreg setting's weight sweep: ARI (one line per data set and ``ari_keys``
    entry: ``(record key, label)``, solid then dashed), components and the test MSE ratio
    against λ. Dotted lines: the planted numbers and the cost rules (``MSE_CLOSE``,
    ``MSE_WRECKED``)."""
    fig, (ax_ari, ax_comp, ax_mse) = plt.subplots(1, 3, figsize=(12.5, 3.6), layout="constrained")
    groups: dict[str, list[Mapping]] = {}
    for record in records:
        groups.setdefault(label_of(record), []).append(record)
    styles = ["-", "--", ":"]
    for i, (label, group) in enumerate(groups.items()):
        group = sorted(group, key=lambda r: r["weight"])
        xs, ticks, tick_labels = lambda_positions([r["weight"] for r in group])
        color = f"C{i}"
        for (key, name), style in zip(ari_keys, styles, strict=False):
            suffix = "" if len(ari_keys) == 1 else f" ({name})"
            ax_ari.plot(
                xs,
                [r[key] for r in group],
                style,
                marker="o",
                color=color,
                label=f"{label}{suffix}",
            )
        ax_comp.plot(xs, [r["components_mean"] for r in group], "o-", color=color, label=label)
        ax_comp.axhline(group[0]["n_modules"], color=color, ls=":", lw=1)
        ax_mse.plot(xs, [r["cost"]["mse_ratio"] for r in group], "o-", color=color, label=label)
    for rule in (MSE_CLOSE, MSE_WRECKED):
        ax_mse.axhline(rule, color="grey", ls=":", lw=1)
    ax_ari.set_ylim(-0.05, 1.05)
    ax_ari.set_ylabel("ARI (mean over seeds)")
    ax_comp.set_ylabel("components (mean over seeds)")
    ax_mse.set_ylabel("test MSE / same model at λ = 0")
    for ax in (ax_ari, ax_comp, ax_mse):
        ax.set_xscale("log")
        ax.set_xticks(ticks, tick_labels)
        ax.minorticks_off()
        ax.set_xlabel("λ (gsreg setting)")
    ax_ari.legend(fontsize=7)
    ax_ari.set_title("Do the components indicate the clusters?", fontsize=9)
    ax_comp.set_title("Components of the learned graph (dotted: planted)", fontsize=9)
    ax_mse.set_title(f"Cost (dotted: {MSE_CLOSE:g}x close, {MSE_WRECKED:g}x wrecked)", fontsize=9)
    return fig


def plot_heatmaps(
    panels: Sequence[tuple[str, np.ndarray, Sequence, Sequence[str]]], ncols: int, fmt: str = ".1f"
) -> plt.Figure:
    """Module x class mean-activity heatmaps (``plotting.plot_module_class_heatmap``), one
    panel per ``(title, table (M, C), module ids (M,), class names (C,))``."""
    nrows = -(-len(panels) // ncols)
    rows_max = max(len(ids) for _, _, ids, _ in panels)
    cols_max = max(len(names) for *_, names in panels)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        squeeze=False,
        layout="constrained",
        figsize=(ncols * (2.6 + 0.6 * cols_max), nrows * (1.6 + 0.4 * rows_max)),
    )
    for ax, (title, table, ids, names) in zip(axes.flat, panels, strict=False):
        plotting.plot_module_class_heatmap(table, ids, names, ax=ax, fmt=fmt)
        ax.set_title(title, fontsize=9)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    return fig


def dots(
    ax: plt.Axes,
    x: float,
    values: Sequence[float | None],
    color: str,
    label: str | None,
    marker: str = "o",
) -> None:
    """One dot per value (None skipped) at ``x``, spread a little sideways."""
    kept = [v for v in values if v is not None]
    spread = np.linspace(-0.08, 0.08, len(kept)) if len(kept) > 1 else np.zeros(len(kept))
    ax.scatter(x + spread, kept, color=color, s=20, marker=marker, label=label, zorder=3)


# --------------------------------------------------------------------------- controls
# (computed by gsreg.analysis.module_controls / module_verdict; words and tables here)


def verdict_words(verdict: Mapping) -> str:
    """``"helps"`` or ``"does not help"``."""
    return "helps" if verdict["helps"] else "does not help"


def verdict_entry(verdict: Mapping) -> str:
    """The verdict in a headline: ``"GSR 0.47 vs k-means on λ=0 neurons 0.57 (-0.10) at
    1.01x MSE: does not help"``."""
    return (
        f"GSR {verdict['gsr_ari']:.2f} vs {verdict['best_control']} "
        f"{verdict['control_ari']:.2f} ({verdict['margin']:+.2f}) at "
        f"{verdict['mse_ratio']:.2f}x MSE: {verdict_words(verdict)}"
    )


def verdict_sentence(verdict: Mapping, subject: str) -> str:
    """One plain sentence: whether ``subject`` (e.g. "The GSR modules") beats the best
    control, by how much, at what cost, and why it does not help where it does not."""
    return prose(
        "cluster_report/verdict_sentence.txt",
        subject=subject,
        verdict=verdict,
        affordable=verdict.get("affordable", True),
        p_level=analysis.P_LEVEL,
    )


def controls_row(label: str, verdict: Mapping) -> dict[str, str]:
    """One row of a controls table: GSR, the null, every control, the verdict."""
    return {
        "runs": label,
        "k (per run)": ", ".join(map(str, verdict["k"])),
        "GSR modules ARI": f"{verdict['gsr_ari']:.2f}",
        "null mean (largest p)": f"{fmt(verdict['null_mean'])} ({verdict['p_value']:.3f})",
        **{
            analysis.MODULE_CONTROL_LABELS[name]: fmt(verdict["controls"][name])
            for name in analysis.MODULE_CONTROLS
        },
        "margin vs best": f"{verdict['margin']:+.2f}",
        "test MSE vs λ = 0": f"{verdict['mse_ratio']:.2f}x",
        "GSR helps": "yes" if verdict["helps"] else "no",
    }


def controls_rule(k_rule: str) -> str:
    """How the controls and the verdict are defined, in words; ``k_rule`` says how many
    groups the controls get."""
    return prose(
        "cluster_report/controls_rule.txt",
        k_rule=k_rule,
        permutations=analysis.NULL_PERMUTATIONS,
        p_level=analysis.P_LEVEL,
        leiden=analysis.leiden_available(),
    )


#: the targets of the estimator's learned-graph defaults, per data set over its seeds
DEFAULTS_TARGET = {"exact_share": 0.8, "ari": 0.9, "mse_ratio": 1.10}


def defaults_target(rows: Sequence[Mapping]) -> dict[str, dict]:
    """Per data set, the ``"defaults"`` setting's runs against :data:`DEFAULTS_TARGET`:
    the exact module count in at least its ``exact_share`` of runs, mean ARI >= its
    ``ari``, test MSE <= its ``mse_ratio`` times λ = 0, and mean ARI at least that of
    k-means of the samples on the λ = 0 layer (as many groups as modules found). ``{}``
    without such runs."""
    out = {}
    for kind, n in dict.fromkeys(
        (r["dataset"], r["n_modules"]) for r in rows if r["setting"] == "defaults"
    ):
        group = [
            r for r in rows if (r["dataset"], r["n_modules"], r["setting"]) == (kind, n, "defaults")
        ]
        ari = mean_of([r["ari"] if r["ari"] is not None else 0.0 for r in group])
        kmeans = mean_of([(r.get("controls") or {}).get("layer_kmeans") for r in group])
        exact = sum(bool(r["exact"]) for r in group)
        ratio = cost(group)["mse_ratio"]
        checks = {
            "exact": exact >= DEFAULTS_TARGET["exact_share"] * len(group),
            "ari": ari >= DEFAULTS_TARGET["ari"],
            "mse": ratio <= DEFAULTS_TARGET["mse_ratio"],
            "vs_kmeans": kmeans is None or ari >= kmeans,
        }
        out[f"{kind}:{n}"] = {
            "runs": len(group),
            "exact": exact,
            "ari_mean": ari,
            "mse_ratio": ratio,
            "layer_kmeans_ari": kmeans,
            "checks": checks,
            "met": all(checks.values()),
        }
    return out


def defaults_target_text(target: Mapping) -> str:
    """One line per data set: the numbers and met / missed (which parts)."""
    parts = []
    for name, t in target.items():
        missed = [k for k, ok in t["checks"].items() if not ok]
        kmeans = "-" if t["layer_kmeans_ari"] is None else f"{t['layer_kmeans_ari']:.2f}"
        parts.append(
            f"{name}: exact {t['exact']}/{t['runs']}, ARI {t['ari_mean']:.2f} (k-means on "
            f"λ=0 layer {kmeans}), MSE {t['mse_ratio']:.2f}x: "
            + ("met" if t["met"] else f"missed ({', '.join(missed)})")
        )
    return "; ".join(parts)
