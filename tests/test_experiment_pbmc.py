"""The pbmc experiment: a quick run through the registry, and its statistics."""

from __future__ import annotations

import html
import json
import math

import numpy as np
import pytest

pytest.importorskip("scanpy")

from gsreg import analysis  # noqa: E402
from gsreg import report as gsreg_report  # noqa: E402
from gsreg.datasets.pbmc import (  # noqa: E402
    COARSE_GROUPS,
    coarse_labels,
    load_pbmc,
    scale_inputs,
    split,
)
from gsreg.experiments import MSE_CLOSE, MSE_WRECKED, pbmc, registry  # noqa: E402
from gsreg.experiments import _cluster_report as cr  # noqa: E402
from gsreg.experiments.pbmc import (  # noqa: E402
    METHODS,
    PbmcConfig,
    indication_table,
    mean_predictor_mse,
)

#: the figure file stems the experiment promises
FIGURES = tuple(pbmc.FIGURES.values())
SCORE_KEYS = {"ari", "nmi", "purity", "ari_coarse", "nmi_coarse", "purity_coarse"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    folder = registry.run_experiment("pbmc", root, quick=True, seed=3, device="cpu", progress=False)
    metrics = json.loads((folder / "metrics.json").read_text())
    return folder, metrics


@pytest.fixture(scope="module")
def data():
    return load_pbmc("X")


# --------------------------------------------------------------------------- quick run


def test_quick_run_writes_every_promised_file(quick_run):
    folder, _ = quick_run
    for name in ("report.html", "metrics.json", "config.json", "run.json"):
        assert (folder / name).is_file(), name
    for stem in FIGURES:
        png = folder / "figures" / f"{stem}.png"
        assert png.is_file() and png.stat().st_size > 1000, stem
    assert sorted(p.stem for p in (folder / "figures").iterdir()) == sorted(FIGURES)
    report = (folder / "report.html").read_text()
    assert report.count("data:image/png;base64,") == len(FIGURES)


def test_config_round_trips_through_json(quick_run):
    folder, _ = quick_run
    config = PbmcConfig(**json.loads((folder / "config.json").read_text()))
    assert config == PbmcConfig.quick(seed=3)
    assert PbmcConfig(**registry.read_run(folder)["config"]) == config


def test_metrics_have_the_promised_keys_and_sane_values(quick_run):
    _, metrics = quick_run
    assert {
        "data",
        "seeds",
        "methods",
        "louvain",
        "n_modules",
        "components_without_gsr",
        "test_mse",
        "test_mse_no_gsr",
        "test_mse_mean_predictor",
        "cost",
        "typical",
    } <= set(metrics)
    assert metrics["data"]["n_cells"] == 700 and metrics["data"]["n_genes"] == 765
    assert sum(metrics["data"]["cell_types"].values()) == 700
    (row,) = metrics["seeds"]
    assert row["seed"] == 3
    assert set(row["scores"]) == set(METHODS)
    for method, values in row["scores"].items():
        if values is None:  # a Leiden control without igraph or at another count
            assert method.endswith("leiden"), method
            continue
        assert set(values) == SCORE_KEYS, method
        assert all(math.isfinite(v) and -1 <= v <= 1 for v in values.values()), method
    assert sum(row["module_sizes"]) == PbmcConfig().width
    assert row["n_modules"] == len(row["module_sizes"]) >= 1
    assert row["components_without_gsr"] >= 1
    # well above chance even in the quick run: the cell types are separable
    assert row["n_modules"] > 1
    assert row["scores"]["raw_kmeans"]["ari"] > 0.2
    assert row["scores"]["layer_kmeans"]["ari"] > 0.2
    for key in ("test_mse", "test_mse_no_gsr", "test_mse_mean_predictor"):
        assert math.isfinite(metrics[key]) and metrics[key] > 0, key
    assert math.isfinite(metrics["cost"]["mse_ratio"])
    assert metrics["cost"]["verdict"] in (
        "close to λ = 0",
        "noticeable cost",
        "wrecks the primary task",
    )
    typical = metrics["typical"]
    table = np.array(typical["module_cell_type_activity"])
    assert table.shape == (row["n_modules"], 10) and np.isfinite(table).all()
    assert [m["size"] for m in typical["modules"]] == row["module_sizes"]


def test_the_modules_stand_beside_their_controls_with_a_verdict(quick_run):
    folder, metrics = quick_run
    (row,) = metrics["seeds"]
    verdict = metrics["verdict"]
    names = analysis.MODULE_CONTROLS
    controls = {m: row["scores"][m] and row["scores"][m]["ari"] for m in names}
    kept = {m: v for m, v in controls.items() if v is not None}
    assert set(names) - set(kept) <= {"neurons_leiden", "layer_leiden", "raw_leiden"}
    best = max(kept, key=kept.get)
    assert verdict["best_control_key"] == best
    assert verdict["control_ari"] == pytest.approx(kept[best])
    assert verdict["gsr_ari"] == pytest.approx(row["scores"]["gsr"]["ari"])
    assert verdict["margin"] == pytest.approx(verdict["gsr_ari"] - verdict["control_ari"])
    assert verdict["mse_ratio"] == pytest.approx(metrics["cost"]["mse_ratio"])
    assert verdict["p_value"] == row["null"]["p_value"] and 0 < verdict["p_value"] <= 1
    assert verdict["helps"] == (
        verdict["margin"] > 0
        and verdict["p_value"] < analysis.P_LEVEL
        and row["n_modules"] > 1
        and row["indicated"] > 1
    )
    if verdict["margin"] <= 0:
        assert verdict["helps"] is False
    report = html.unescape((folder / "report.html").read_text())
    assert cr.verdict_sentence(verdict, "Against the cell types, the GSR modules") in report
    headline = registry.read_run(folder)["headline"]
    assert headline["vs best control"] == cr.verdict_entry(verdict)


def test_report_prose_is_rendered_from_templates_with_the_run_numbers(quick_run):
    folder, metrics = quick_run
    config = PbmcConfig.quick(seed=3)
    report = html.unescape((folder / "report.html").read_text())
    n_types = len(metrics["data"]["cell_types"])
    t_subsets = sum(group == "T" for group in COARSE_GROUPS.values())
    assert (
        f"Over {config.n_seeds} seed(s) the learned graph (λ = {config.weight:g}) fell apart into"
    ) in report
    assert (
        f"a stratified {config.test_fraction:.0%} of the cells per seed is held out for "
        "the test MSE"
    ) in report
    assert f"The {n_types} labels (obs['bulk_labels'])" in report
    assert f"The {t_subsets} T-cell subsets overlap strongly" in report
    assert f"ARI against the {n_types} cell types, means over seeds." in report
    assert (
        f"Test MSE up to {MSE_CLOSE:g}x that of λ = 0 is close to λ = 0, above "
        f"{MSE_WRECKED:g}x the penalty wrecks the primary task."
    ) in report
    assert (
        f"at least that of k-means (k = {pbmc.DEFAULTS_K}) and of Leiden (as many groups) "
        f"on the cells' PCA scores, at most {pbmc.DEFAULTS_MSE_RATIO:g}x the test MSE "
        "of λ = 0"
    ) in report
    assert gsreg_report.prose("pbmc/ari.txt", n_types=n_types) in report
    for paragraph in pbmc._module_text(metrics["typical"]).split("\n\n"):
        assert f"<p>{paragraph}</p>" in report
    assert f"score at least {pbmc.CLEAR_SCORE:g} on average" in report


def test_headline_names_the_scores(quick_run):
    folder, metrics = quick_run
    headline = registry.read_run(folder)["headline"]
    assert "GSR modules ARI (cell types / coarse groups)" in headline
    assert "test MSE vs λ = 0" in headline
    assert headline == registry.get_experiment("pbmc").headline(metrics)


# --------------------------------------------------------------------------- data


def test_data_and_coarse_groups(data):
    assert data.X.shape == data.expression.shape == (700, 765)
    assert len(set(data.cell_types)) == 10 == pbmc.DEFAULTS_K  # one PCA group per type
    assert set(data.cell_types) == set(COARSE_GROUPS)
    assert (data.expression >= 0).all()  # log-normalised counts
    # scaled per gene (to about zero mean and unit variance)
    assert np.abs(data.X.mean(axis=0)).max() < 0.1
    assert 0.5 < data.X.std(axis=0).min() and data.X.std(axis=0).max() < 1.5
    assert np.count_nonzero(data.coarse == "T") == sum(
        np.count_nonzero(data.cell_types == t) for t, g in COARSE_GROUPS.items() if g == "T"
    )


def test_coarse_labels_rejects_an_unknown_type():
    assert coarse_labels(np.array(["CD19+ B", "CD56+ NK"])).tolist() == ["B", "NK"]
    with pytest.raises(ValueError, match="Megakaryocyte"):
        coarse_labels(np.array(["CD19+ B", "Megakaryocyte"]))


def test_split_is_stratified_and_disjoint(data):
    train, test = split(data.cell_types, 0.2, seed=5)
    assert len(train) + len(test) == 700
    assert np.intersect1d(train, test).size == 0
    for cell_type in set(data.cell_types):
        share = np.mean(data.cell_types[test] == cell_type)
        assert abs(share - np.mean(data.cell_types == cell_type)) < 0.02, cell_type


def test_config_checks():
    with pytest.raises(ValueError, match="matrix"):
        PbmcConfig(matrix="counts")
    with pytest.raises(ValueError, match="k must be < width"):
        PbmcConfig(k=64)
    with pytest.raises(ValueError, match="test_fraction"):
        PbmcConfig(test_fraction=0.7)
    assert PbmcConfig(seed=4, n_seeds=3).seeds == (4, 5, 6)


# --------------------------------------------------------------------------- statistics


def test_indication_table_matches_a_loop_and_indicate_clusters():
    rng = np.random.default_rng(2)
    Z = rng.gamma(1.0, size=(60, 7))
    modules = np.array([0, 0, 1, 1, 1, 2, 2])
    classes = rng.choice(["a", "b", "c", "d"], size=60)
    activity = analysis.module_activity(Z, modules)
    table, ids = indication_table(activity, classes)
    assert ids.tolist() == ["a", "b", "c", "d"]
    score = np.empty_like(activity)
    for n in range(len(Z)):
        for m in range(3):
            column = activity[:, m]
            score[n, m] = (activity[n, m] - np.median(column)) / np.std(column)
    for m in range(3):
        for c, name in enumerate(ids):
            assert table[m, c] == pytest.approx(score[classes == name, m].mean(), abs=1e-12)
    # the score is the one cells are assigned by
    np.testing.assert_array_equal(score.argmax(axis=1), analysis.indicate_clusters(Z, modules))


def test_indication_table_scores_a_constant_module_zero():
    activity = np.column_stack([np.arange(6.0), np.full(6, 3.0)])
    table, _ = indication_table(activity, np.array([0, 0, 0, 1, 1, 1]))
    np.testing.assert_array_equal(table[1], [0.0, 0.0])


def test_mean_predictor_mse_and_input_scale():
    rng = np.random.default_rng(3)
    X = rng.normal(2.0, 3.0, size=(50, 4)).astype(np.float32)
    train, test = np.arange(40), np.arange(40, 50)
    expected = np.mean(
        [(X[n, g] - X[train, g].astype(np.float64).mean()) ** 2 for n in test for g in range(4)]
    )
    assert mean_predictor_mse(X[train], X[test]) == pytest.approx(expected, rel=1e-12)
    Xs, scale = scale_inputs(X, train)
    # an MSE on the scaled inputs times scale**2 is the MSE in the original units
    assert mean_predictor_mse(Xs[train], Xs[test]) * scale**2 == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(Xs[train].mean(axis=0), 0, atol=1e-5)
    assert np.mean(Xs[train].astype(np.float64) ** 2) == pytest.approx(1.0, rel=1e-5)
