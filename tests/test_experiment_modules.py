"""The ``modules`` and ``hierarchy`` experiments: quick runs and the statistics they define."""

from __future__ import annotations

import dataclasses
import html
import json
import math
import statistics
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from gsreg import analysis
from gsreg import report as gsreg_report
from gsreg.experiments import (
    CLOSE,
    COSTLY,
    MSE_CLOSE,
    MSE_WRECKED,
    WRECKED,
    hierarchy,
    modules,
    registry,
)
from gsreg.experiments import _cluster_report as cr
from gsreg.experiments import cluster_indication as ci

#: the figure file stems each experiment promises
FIGURES = {
    "modules": tuple(modules.FIGURES.values()),
    "hierarchy": tuple(hierarchy.FIGURES.values()),
}
CONFIGS = {"modules": modules.ModulesConfig, "hierarchy": hierarchy.HierarchyConfig}
VERDICTS = (CLOSE, COSTLY, WRECKED)


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    """Both experiments, quick, through run_experiment (seed 3)."""
    root = tmp_path_factory.mktemp("runs")
    return {
        name: registry.run_experiment(name, root, quick=True, seed=3, device="cpu", progress=False)
        for name in FIGURES
    }


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


# --------------------------------------------------------------------------- quick runs


@pytest.mark.parametrize("name", list(FIGURES))
def test_quick_run_writes_every_promised_file(quick_runs, name):
    folder = quick_runs[name]
    for file in ("report.html", "metrics.json", "config.json", "run.json"):
        assert (folder / file).stat().st_size > 0
    for figure in FIGURES[name]:
        assert (folder / "figures" / f"{figure}.png").stat().st_size > 1000, figure
    assert len(list((folder / "figures").iterdir())) == len(FIGURES[name])
    html = (folder / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(FIGURES[name])
    assert "Summary" in html and "λ = 0" in html


@pytest.mark.parametrize("name", list(FIGURES))
def test_config_json_rebuilds_the_config(quick_runs, name):
    saved = json.loads((quick_runs[name] / "config.json").read_text())
    config = CONFIGS[name].quick(seed=3)
    assert CONFIGS[name](**saved) == config
    assert config.seeds == (3,)
    run = registry.read_run(quick_runs[name])
    assert run["experiment"] == name and run["seed"] == 3
    assert run["headline"] and all(isinstance(v, str) for v in run["headline"].values())


def _check_cost(cost: dict) -> None:
    assert cost["mse_mean"] > 0 and cost["mse_baseline_mean"] > 0
    assert cost["mse_ratio"] == pytest.approx(cost["mse_mean"] / cost["mse_baseline_mean"])
    assert cost["verdict"] in VERDICTS
    assert all(math.isfinite(r) and r > 0 for r in cost["mse_ratios"])


def test_modules_metrics(quick_runs):
    metrics = _metrics(quick_runs["modules"])
    config = modules.ModulesConfig.quick(seed=3)
    for key in (
        "data",
        "seeds",
        "settings",
        "groups",
        "overall",
        "sweep",
        "sweep_by_weight",
        "weakest_weight_with_modules",
        "wrecked",
        "runs",
        "sweep_runs",
    ):
        assert key in metrics
    assert metrics["seeds"] == list(config.seeds) == [3]
    assert set(metrics["settings"]) == set(config.settings) == set(ci.SETTINGS)
    assert [(g["n_modules"], g["setting"]) for g in metrics["groups"]] == [
        (n, s) for n in config.n_modules for s in config.settings
    ]
    assert set(metrics["defaults_target"]) == {
        f"{kind}:{n}" for kind, n in modules.datasets_of(config)
    }
    for target in metrics["defaults_target"].values():
        assert target["runs"] == config.n_seeds
        assert target["met"] == all(target["checks"].values())
    for group in metrics["groups"]:
        _check_cost(group["cost"])
        assert 0 <= group["purity_mean"] <= 1
        check_verdict(group["verdict"], _group_rows(metrics["runs"], group))
    for row in metrics["runs"]:
        assert not any(key.startswith("_") for key in row)
        check_controls(row)
    gsreg = metrics["overall"]["gsreg"]
    assert gsreg["ari_mean"] > 0.5  # chance is 0; three modules form even in the quick run
    assert metrics["runs"][0]["components"] == 3
    assert metrics["runs"][0]["controls"]["raw_kmeans"] > 0.9  # the clusters are easy to find
    weights = [r["weight"] for r in metrics["sweep_by_weight"]]
    assert weights == sorted(set(config.sweep_weights)) and weights[0] == 0.0
    zero = metrics["sweep_by_weight"][0]
    # weight 0 learns a graph but trains exactly the unpenalised model
    assert zero["cost"]["mse_ratio"] == pytest.approx(1.0, rel=1e-6)
    assert zero["cost"]["verdict"] == CLOSE
    for record in metrics["sweep"]:
        _check_cost(record["cost"])
    # the sweep point at the setting's own weight is the main run, trained once
    main = next(r for r in metrics["runs"] if r["setting"] == "gsreg")
    swept = next(r for r in metrics["sweep_runs"] if r["weight"] == config.setting_weight("gsreg"))
    assert {k: v for k, v in swept.items() if k != "weight"} == {
        k: v for k, v in main.items() if k != "weight"
    }


def test_hierarchy_metrics(quick_runs):
    metrics = _metrics(quick_runs["hierarchy"])
    config = hierarchy.HierarchyConfig.quick(seed=3)
    kinds = [kind for kind, _ in hierarchy.datasets_of(config)]
    for key in (
        "data",
        "groups",
        "hierarchical",
        "binary",
        "kmeans",
        "sweep",
        "wrecked",
        "runs",
        "sweep_runs",
    ):
        assert key in metrics
    assert {(g["dataset"], g["setting"]) for g in metrics["groups"]} == {
        (kind, s) for kind in kinds for s in config.settings
    }
    assert set(metrics["defaults_target"]) == {
        f"{kind}:{n}" for kind, n in hierarchy.datasets_of(config)
    }
    for group in metrics["groups"]:
        _check_cost(group["cost"])
    for h in metrics["hierarchical"].values():
        assert h["level"] in ("coarse", "fine", "neither")
        assert 0 <= h["merged"] <= h["modules"] and 0 <= h["split"] <= h["modules"]
        _check_cost(h["cost"])
    for b in metrics["binary"].values():
        assert b["level"] in ("bits", "patterns", "neither")
        assert -1 <= b["bit_match_mean"] <= 1
        _check_cost(b["cost"])
    gsreg = metrics["hierarchical"]["gsreg"]
    assert gsreg["ari_coarse_mean"] > 0.5  # above chance even in the quick run
    k = metrics["kmeans"]["mean"]
    assert k["k_fine_ari_fine"] > 0.9
    assert 0 < k["coarse_labels_fine_ari"] < 1
    fine = config.n_modules * config.study(()).subtypes
    for row in metrics["runs"]:
        if row["dataset"] == hierarchy.HIERARCHICAL and row["components"] > 0:
            assert len(row["subtypes"]["majority"]) == fine
    assert [r["weight"] for r in metrics["sweep"]] == sorted(set(config.sweep_weights))


def _group_rows(runs, group):
    return [
        r
        for r in runs
        if (r["dataset"], r["n_modules"], r["setting"])
        == (group["dataset"], group["n_modules"], group["setting"])
    ]


def check_controls(row: dict) -> None:
    """A run's controls: every control's ARI (None only for Leiden), the null, k."""
    controls = row["controls"]
    assert set(analysis.MODULE_CONTROLS) <= set(controls)
    for name in analysis.MODULE_CONTROLS:
        value = controls[name]
        if name.endswith("kmeans") or analysis.leiden_available() and value is not None:
            assert -1 <= value <= 1, name
    assert controls["k"] == max(row["components"], 1) or row["components"] == 0
    if row["components"] > 1 and controls["p_value"] is not None:
        assert 0 < controls["p_value"] <= 1 and -1 <= controls["null_mean"] <= 1
    if row["components"] <= 1:
        assert controls["p_value"] is None


def check_verdict(verdict: dict, rows: list[dict]) -> None:
    """A verdict is consistent with the controls of its runs."""
    for key in (
        "best_control",
        "control_ari",
        "gsr_ari",
        "margin",
        "helps",
        "mse_ratio",
        "p_value",
        "null_mean",
        "modules",
        "controls",
    ):
        assert key in verdict
    assert verdict["gsr_ari"] == pytest.approx(np.mean([r["ari"] or 0.0 for r in rows]))
    for name in analysis.MODULE_CONTROLS:
        values = [r["controls"][name] for r in rows if r["controls"][name] is not None]
        if values:
            assert verdict["controls"][name] == pytest.approx(np.mean(values))
    best = max(v for v in verdict["controls"].values() if v is not None)
    assert verdict["control_ari"] == pytest.approx(best)
    assert verdict["best_control"] == analysis.MODULE_CONTROL_LABELS[verdict["best_control_key"]]
    assert verdict["margin"] == pytest.approx(verdict["gsr_ari"] - verdict["control_ari"])
    assert verdict["helps"] == (
        verdict["margin"] > 0 and verdict["p_value"] < analysis.P_LEVEL and verdict["modules"]
    )
    if verdict["margin"] <= 0:
        assert verdict["helps"] is False
    if any(r["components"] <= 1 for r in rows):
        assert verdict["modules"] is False and verdict["helps"] is False


def _report_text(folder: Path) -> str:
    return html.unescape((folder / "report.html").read_text())


def test_modules_results_stand_beside_their_controls_with_a_verdict(quick_runs):
    folder = quick_runs["modules"]
    metrics = _metrics(folder)
    assert metrics["controls"]["permutations"] == analysis.NULL_PERMUTATIONS
    report = _report_text(folder)
    headline = registry.read_run(folder)["headline"]
    for setting, verdict in metrics["verdict"].items():
        rows = [r for r in metrics["runs"] if r["setting"] == setting]
        check_verdict(verdict, rows)
        assert verdict == metrics["overall"][setting]["verdict"]
        assert verdict["mse_ratio"] == metrics["overall"][setting]["cost"]["mse_ratio"]
        assert modules._verdict_sentence(setting, verdict) in report
        label = f"vs best control ({cr.SETTING_LABELS[setting]})"
        assert headline[label] == cr.verdict_entry(verdict)
    # the authors' quick run ends with one component: no indication, GSR cannot help
    assert metrics["verdict"]["authors"]["helps"] is False
    assert "Controls" in report and "GSR does not help here" in report


def test_hierarchy_results_stand_beside_their_controls_with_a_verdict(quick_runs):
    folder = quick_runs["hierarchy"]
    metrics = _metrics(folder)
    report = _report_text(folder)
    headline = registry.read_run(folder)["headline"]
    config = hierarchy.HierarchyConfig.quick(seed=3)
    assert set(metrics["verdict"]) == {kind for kind, _ in hierarchy.datasets_of(config)}
    for row in metrics["runs"]:
        check_controls(row)
    for kind, verdicts in metrics["verdict"].items():
        for setting, verdict in verdicts.items():
            rows = [r for r in metrics["runs"] if r["dataset"] == kind and r["setting"] == setting]
            check_verdict(verdict, rows)
            assert hierarchy._verdict_sentence(kind, setting, verdict) in report
            assert cr.verdict_entry(verdict) in headline.values()


def test_report_prose_is_rendered_from_templates_with_the_run_numbers(quick_runs):
    config = modules.ModulesConfig.quick(seed=3)
    study = config.study(modules.datasets_of(config))
    report = _report_text(quick_runs["modules"])
    history = gsreg_report.prose("modules/history.txt", update_every=study.gsreg.update_every)
    assert f"rebuilds the graph every {study.gsreg.update_every} steps" in history
    assert history in report
    assert (
        f"mean ARI ≥ {modules.ARI_GOOD:g} and the exact count in "
        f"≥ {modules.EXACT_SHARE:.0%} of seeds"
    ) in report
    assert (
        f"warm-up shortened from {ci.PAPER_WARMUP_STEPS} to {config.authors_warmup_steps} steps"
    ) in report
    assert f"learns the graph of a {study.width}-neuron layer" in report
    assert cr.cost_rule() in report
    assert f"Up to {MSE_CLOSE:g}x is close to λ = 0, above {MSE_WRECKED:g}x" in cr.cost_rule()

    config = hierarchy.HierarchyConfig.quick(seed=3)
    subtypes = config.study(()).subtypes
    folder = quick_runs["hierarchy"]
    k = _metrics(folder)["kmeans"]["mean"]
    report = _report_text(folder)
    assert (
        f"{config.n_modules} planted modules x {subtypes} sub-types ({config.n_samples} samples)"
    ) in report
    assert (
        f"with k = {config.n_modules * subtypes} a fine ARI of {k['k_fine_ari_fine']:.2f}"
    ) in report
    assert f"are the {subtypes} sub-types of planted module 0" in report


def test_prose_joins_the_lines_of_a_paragraph_and_keeps_paragraphs():
    text = gsreg_report.prose(
        "modules/controls.txt", rule="The rule.", verdicts=["One\nverdict.", "Two."]
    )
    assert text == (
        "The rule. One row per planted count and setting (means over seeds), then "
        "each setting over all of its runs.\n\nOne verdict.\n\nTwo."
    )


def _verdict_rows(aris, components, controls, p_values):
    keys = dict.fromkeys(analysis.MODULE_CONTROLS)
    return [
        {
            "ari": a,
            "components": c,
            "controls": {**keys, **k, "k": c, "p_value": p, "null_mean": 0.4, "indicated": c},
        }
        for a, c, k, p in zip(aris, components, controls, p_values, strict=True)
    ]


def test_module_verdict_needs_the_best_control_the_null_and_several_modules():
    beaten = [
        {"neurons_kmeans": 0.5, "raw_kmeans": 0.5},
        {"neurons_kmeans": 0.7, "raw_kmeans": 0.6},
    ]
    rows = _verdict_rows([0.9, 0.8], [3, 3], beaten, [0.005, 0.01])
    verdict = analysis.module_verdict(rows, 1.02)
    assert verdict["best_control_key"] == "neurons_kmeans"
    assert verdict["control_ari"] == pytest.approx(0.6)
    assert verdict["gsr_ari"] == pytest.approx(0.85)
    assert verdict["margin"] == pytest.approx(0.25)
    assert verdict["p_value"] == 0.01 and verdict["helps"] is True
    assert verdict["controls"]["layer_leiden"] is None  # a control never scored is left out
    assert cr.verdict_entry(verdict) == (
        "GSR 0.85 vs k-means on λ=0 neurons 0.60 (+0.25) at 1.02x MSE: helps"
    )
    assert "GSR helps here" in cr.verdict_sentence(verdict, "The modules")
    # the null not beaten in one run
    assert not analysis.module_verdict(
        _verdict_rows([0.9, 0.8], [3, 3], beaten, [0.005, 0.2]), 1.0
    )["helps"]
    # one run without a graph (ARI None counts 0, no null) or with one module
    assert not analysis.module_verdict(
        _verdict_rows([0.9, None], [3, 0], beaten, [0.005, None]), 1.0
    )["helps"]
    single = analysis.module_verdict(_verdict_rows([0.9, 0.9], [3, 1], beaten, [0.005, 0.005]), 1.0)
    assert single["modules"] is False and single["helps"] is False
    assert "single module" in cr.verdict_sentence(single, "The modules")
    # a control as good as GSR: no help, said plainly
    tie = analysis.module_verdict(_verdict_rows([0.6, 0.6], [3, 3], beaten, [0.005, 0.005]), 1.0)
    assert tie["margin"] == pytest.approx(0.0) and tie["helps"] is False
    sentence = cr.verdict_sentence(tie, "The modules")
    assert sentence.startswith(
        "The modules do not beat the best control (k-means on λ=0 "
        "neurons): ARI 0.60 against 0.60 (+0.00), at 1.00x"
    )
    assert "GSR does not help here" in sentence


def test_controls_read_posthoc_modules_like_gsr_modules():
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(3), 40)
    X = rng.normal(size=(120, 6)) + 6.0 * np.eye(3, 6)[truth]
    Z0 = np.maximum(X @ rng.normal(size=(6, 12)), 0.0)
    predictions = analysis.module_control_labels(Z0, X, 3, seed=1)
    assert set(predictions) == set(analysis.MODULE_CONTROLS)
    modules_ = analysis.posthoc_modules(Z0, 3, "kmeans", 1)
    np.testing.assert_array_equal(
        predictions["neurons_kmeans"], analysis.indicate_clusters(Z0, modules_)
    )
    np.testing.assert_array_equal(
        predictions["raw_kmeans"], analysis.cluster_samples(X, 3, "kmeans", 1)
    )
    controls = analysis.module_controls(Z0, modules_, Z0, X, truth, 3, seed=1)
    assert controls["raw_kmeans"] == pytest.approx(1.0)
    null = analysis.module_ari_null(Z0, modules_, truth, analysis.NULL_PERMUTATIONS, 1)
    assert controls["p_value"] == null["p_value"] and controls["indicated"] == 3
    assert analysis.module_null(Z0, np.zeros(12, dtype=np.int64), truth, 1)["p_value"] is None


def test_a_leiden_control_with_another_number_of_groups_is_left_out(monkeypatch):
    pytest.importorskip("igraph")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    real = analysis.cluster_samples

    def two_groups_for_leiden(points, k, method="kmeans", seed=0):
        if method == "leiden":
            return np.arange(len(points)) % 2  # as if no resolution gave k groups
        return real(points, k, method, seed)

    monkeypatch.setattr(analysis, "cluster_samples", two_groups_for_leiden)
    predictions = analysis.module_control_labels(np.abs(X), X, 3, seed=0)
    assert predictions["raw_leiden"] is None and predictions["layer_leiden"] is None
    assert len(np.unique(predictions["raw_kmeans"])) == 3


def test_run_keys_trains_each_run_once_and_workers_do_not_change_rows():
    config = modules.ModulesConfig.quick(n_samples=600, gsreg_epochs=8, sweep_weights=(0.1,))
    keys = cr.main_keys(config, [("modules", 3)])[:1] * 2
    assert keys[0][3:] == ("gsreg", 0.1)
    serial = cr.run_keys(config, keys, modules.readout, False, "test")
    parallel = cr.run_keys(
        dataclasses.replace(config, workers=2), keys, modules.readout, False, "test"
    )
    assert list(serial) == keys[:1] == list(parallel)
    a, b = (cr.public(rows[keys[0]]) for rows in (serial, parallel))
    a.pop("seconds"), b.pop("seconds")
    assert a == b and a["weight"] == 0.1 and "controls" in a


def test_configs_reject_bad_values():
    with pytest.raises(ValueError, match="n_seeds"):
        modules.ModulesConfig(n_seeds=0)
    with pytest.raises(ValueError, match="settings"):
        modules.ModulesConfig(settings=("nope",))
    with pytest.raises(ValueError, match="n_modules"):
        modules.ModulesConfig(n_modules=(1,))
    with pytest.raises(ValueError, match="sweep_weights"):
        hierarchy.HierarchyConfig(sweep_weights=(-1.0,))
    with pytest.raises(ValueError, match="bits"):
        hierarchy.HierarchyConfig(bits=1)
    config = modules.ModulesConfig(seed=2, n_seeds=3)
    assert config.seeds == (2, 3, 4)
    study = config.study([("modules", 3)], gsreg_weight=0.03)
    assert study.gsreg.weight == 0.03 and study.authors.weight == config.setting_weight("authors")
    assert modules.ModulesConfig(**json.loads(json.dumps(dataclasses.asdict(config)))) == config


# --------------------------------------------------------------------------- statistics


def _ari_by_pairs(a, b) -> float:
    """Adjusted Rand index from pair counts, by a plain loop over all sample pairs."""
    n = len(a)
    both = only_a = only_b = 0
    for i in range(n):
        for j in range(i + 1, n):
            same_a, same_b = a[i] == a[j], b[i] == b[j]
            both += same_a and same_b
            only_a += same_a and not same_b
            only_b += same_b and not same_a
    pairs = n * (n - 1) / 2
    sum_a, sum_b = both + only_a, both + only_b
    expected = sum_a * sum_b / pairs
    return (both - expected) / ((sum_a + sum_b) / 2 - expected)


def test_kmeans_ari_matches_pair_counting():
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(3), 30)
    X = rng.normal(size=(90, 4)) + 1.2 * truth[:, None]  # overlapping blobs: ARI below 1
    pred = KMeans(n_clusters=3, n_init=10, random_state=5).fit_predict(X)
    value = cr.kmeans_ari(X, truth, 3, seed=5)
    assert value == pytest.approx(_ari_by_pairs(pred, truth))
    assert 0 < value < 1
    separated = rng.normal(size=(90, 4)) + 50 * truth[:, None]
    assert cr.kmeans_ari(separated, truth, 3, seed=0) == pytest.approx(1.0)


def test_majority_modules_matches_a_counting_loop():
    rng = np.random.default_rng(1)
    for _ in range(20):
        n_classes = 5
        classes = rng.integers(0, n_classes - 1, size=40)  # the last class has no samples
        pred = rng.choice([0, 2, 7], size=40)
        expected = []
        for c in range(n_classes):
            counts = Counter(pred[classes == c].tolist())
            if not counts:
                expected.append(-1)
                continue
            top = max(counts.values())
            expected.append(min(m for m, k in counts.items() if k == top))
        assert hierarchy.majority_modules(pred, classes, n_classes).tolist() == expected


def test_subtype_split_matches_a_loop():
    rng = np.random.default_rng(2)
    for subtypes in (2, 3):
        for _ in range(20):
            fine = np.repeat(np.arange(3 * subtypes), 10)
            pred = rng.integers(0, 4, size=fine.size)
            got = hierarchy.subtype_split(pred, fine, subtypes)
            majority = hierarchy.majority_modules(pred, fine, 3 * subtypes)
            merged = split = 0
            for j in range(3):
                owners = {int(majority[j * subtypes + t]) for t in range(subtypes)}
                merged += len(owners) == 1
                split += len(owners) == subtypes
            assert got == {
                "modules": 3,
                "merged": merged,
                "split": split,
                "majority": majority.tolist(),
            }
    fine = np.repeat(np.arange(6), 4)
    coarse_pred = fine // 2
    assert hierarchy.subtype_split(coarse_pred, fine, 2)["merged"] == 3
    assert hierarchy.subtype_split(fine, fine, 2)["split"] == 3


def test_levels():
    assert hierarchy.hierarchy_level(1.0, 0.57) == "coarse"
    assert hierarchy.hierarchy_level(0.57, 1.0) == "fine"
    assert hierarchy.hierarchy_level(0.6, 0.4) == "neither"
    assert hierarchy.hierarchy_level(None, 0.4) == "neither"
    assert hierarchy.binary_level(0.95, 0.3) == "bits"
    assert hierarchy.binary_level(0.5, 0.95) == "patterns"
    assert hierarchy.binary_level(0.5, None) == "neither"


def test_weakest_weight_with_modules():
    records = [
        {"weight": 0.0, "ari_mean": 1.0},
        {"weight": 0.01, "ari_mean": 0.5},
        {"weight": 0.03, "ari_mean": 0.92},
        {"weight": 0.1, "ari_mean": 0.99},
        {"weight": 0.3, "ari_mean": None},
    ]
    assert modules.weakest_weight_with_modules(records)["weight"] == 0.03
    assert modules.weakest_weight_with_modules(records, ari=0.995) is None


def test_indicates_needs_the_ari_and_the_exact_count():
    record = {"exact": 4, "seeds": 5, "ari_mean": 0.95}
    assert modules.indicates(record)
    assert not modules.indicates({**record, "exact": 3})
    assert not modules.indicates({**record, "ari_mean": 0.85})
    assert not modules.indicates({**record, "ari_mean": None})
    assert modules.indicates({"exact": 1, "seeds": 1, "ari_mean": 0.9})


def test_cost_typical_and_mean_sd():
    rows = [
        {"mse": 2.0, "mse_baseline": 1.0, "mse_ratio": 2.0},
        {"mse": 1.0, "mse_baseline": 1.0, "mse_ratio": 1.0},
    ]
    cost = cr.cost(rows)
    assert cost["mse_ratio"] == pytest.approx(1.5) and cost["verdict"] == COSTLY
    assert cost["mse_ratios"] == [2.0, 1.0]
    assert cr.cost(rows[:1])["verdict"] == WRECKED and cr.cost(rows[1:])["verdict"] == CLOSE
    runs = [{"seed": s, "ari": a} for s, a in enumerate([0.9, None, 0.2, 1.0])]
    assert cr.typical(runs)["seed"] == 2  # lower median of (None, 0.2, 0.9, 1.0)
    assert cr.typical(runs[:1])["seed"] == 0
    values = [0.2, None, 0.5, 0.9]
    kept = [0.2, 0.5, 0.9]
    assert cr.mean_sd(values) == f"{statistics.mean(kept):.2f} ± {statistics.stdev(kept):.2f}"
    assert cr.mean_sd([None]) == "n/a" and cr.mean_sd([0.5]) == "0.50 ± 0.00"
    assert cr.mean_of(values) == pytest.approx(statistics.mean(kept))
    assert cr.mean_of([None]) is None


def test_lambda_positions_put_zero_a_decade_left():
    xs, ticks, labels = cr.lambda_positions([0.0, 0.01, 0.1])
    assert xs.tolist() == pytest.approx([0.001, 0.01, 0.1])
    assert labels == ["0", "1e-2", "0.1"] and ticks == pytest.approx([0.001, 0.01, 0.1])
