"""The trajectory experiment: a quick run through the registry and its statistics."""

from __future__ import annotations

import html
import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from gsreg import analysis
from gsreg import report as gsreg_report
from gsreg.datasets import trajectory as branching
from gsreg.experiments import CLOSE, COSTLY, MSE_WRECKED, WRECKED, lambda_label, registry
from gsreg.experiments import _cluster_report as cr
from gsreg.experiments import trajectory as T

NAME = "trajectory"
#: the figure file stems the experiment promises
FIGURES = tuple(T.FIGURES.values())
QUICK = T.TrajectoryConfig.quick(seed=3)
#: the line layers of the quick run, by metrics key
VARIANTS = {v.key for v in T.variants(QUICK)}


# --------------------------------------------------------------------------- quick run


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The quick run, seed 3, through run_experiment: (folder, metrics)."""
    pytest.importorskip("scanpy")
    pytest.importorskip("phate")
    root = tmp_path_factory.mktemp("runs")
    folder = registry.run_experiment(NAME, root, quick=True, seed=3, device="cpu", progress=False)
    return folder, json.loads((folder / "metrics.json").read_text())


def test_quick_run_writes_every_promised_file(quick_run):
    folder, _ = quick_run
    for file in ("report.html", "metrics.json", "config.json", "run.json"):
        assert (folder / file).stat().st_size > 0, file
    for figure in FIGURES:
        assert (folder / "figures" / f"{figure}.png").stat().st_size > 1000, figure
    assert sorted(p.stem for p in (folder / "figures").iterdir()) == sorted(FIGURES)
    html = (folder / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(FIGURES)
    assert "Summary" in html


def test_config_json_rebuilds_the_config(quick_run):
    folder, _ = quick_run
    saved = json.loads((folder / "config.json").read_text())
    config = T.TrajectoryConfig(**saved)
    assert config == T.TrajectoryConfig.quick(seed=3)
    assert config == registry.get_experiment(NAME).make_config(quick=True, seed=3)
    run = registry.read_run(folder)
    assert run["experiment"] == NAME and run["quick"] is True and run["seed"] == 3
    assert run["headline"] and all(isinstance(v, str) for v in run["headline"].values())


def _in_unit(value) -> bool:
    return value is not None and math.isfinite(value) and 0 <= value <= 1


def test_quick_metrics(quick_run):
    _, metrics = quick_run
    assert set(metrics["datasets"]) == set(QUICK.datasets) == set(T.DATASETS)
    for name, m in metrics["datasets"].items():
        n_lineages = len(m["data"]["lineages"])
        assert len(m["reference_abs_rho"]) == n_lineages
        # one principal component per lineage orders it far above chance (|rho| ~ 0)
        assert m["reference_median_abs_rho"] > 0.5, name
        variants = m["line"]["variants"]
        assert set(variants) == VARIANTS
        assert len(VARIANTS) == len(set(QUICK.weights)) + len(set(QUICK.standardised_weights))
        baseline = variants[T.BASELINE_KEY]
        assert baseline["mse_ratio"] == 1.0
        assert (baseline["weight"], baseline["layout"]) == (0.0, "plain")
        for v in variants.values():
            for key in (
                "median_abs_rho_peak",
                "median_abs_rho_com",
                "mean_abs_rho_peak",
                "mean_abs_rho_com",
            ):
                assert _in_unit(v[key]), (name, key)
            assert v["test_mse"] > 0 and math.isfinite(v["test_mse"])
            assert v["verdict"] in (CLOSE, COSTLY, WRECKED)
            assert v["dirichlet_energy"] >= 0 and v["activation_norm"] > 0
            (restart,) = v["restarts"]
            assert restart["seed"] == QUICK.seed
            assert len(restart["rho_peak"]) == len(restart["rho_com"]) == n_lineages
            assert _in_unit(v["shuffled_abs_rho_peak"]) and _in_unit(v["shuffled_abs_rho_com"])
        best = m["line"]["best"]
        assert best["variant"] in {v["label"] for v in variants.values() if v["weight"] > 0}
        learned = m["learned"]
        assert learned["mse_ratio"] > 0 and learned["verdict"] in (CLOSE, COSTLY, WRECKED)
        (row,) = learned["restarts"]
        assert row["components"] >= 1 and sum(row["module_sizes"]) == QUICK.width
        assert -1 <= row["ari"] <= 1 and _in_unit(row["nmi"]) and _in_unit(row["purity"])
        assert row["no_gsr_components"] >= 1
        assert len(row["drivers"]) == row["components"]
    # krumsiek11's line orders its neurons along pseudotime above chance even in 4 epochs
    krumsiek = metrics["datasets"]["krumsiek11"]["line"]["variants"]
    assert max(v["median_abs_rho_com"] for v in krumsiek.values()) > 0.3


def test_headline_names_both_data_sets(quick_run):
    _, metrics = quick_run
    lines = T.headline(metrics)
    assert set(lines) == {
        f"{name} {part}"
        for name in QUICK.datasets
        for part in (
            "line layer",
            "learned modules",
            "line layer vs best control",
            "learned modules vs best control",
            "estimator defaults",
            "estimator defaults vs best control",
        )
    }
    for name in QUICK.datasets:
        defaults = metrics["datasets"][name]["defaults"]
        assert defaults["test_mse"] > 0 and defaults["controls_verdict"]["helps"] in (True, False)


def test_line_and_modules_stand_beside_their_controls_with_a_verdict(quick_run):
    folder, metrics = quick_run
    report = html.unescape((folder / "report.html").read_text())
    headline = registry.read_run(folder)["headline"]
    for name, m in metrics["datasets"].items():
        variants = m["line"]["variants"]
        for v in variants.values():
            if v["weight"] == 0:  # the λ = 0 units arranged onto the line post hoc
                assert _in_unit(v["arranged_median_abs_rho_peak"])
                assert _in_unit(v["arranged_median_abs_rho_com"])
                (restart,) = v["restarts"]
                assert len(restart["arranged_rho_com"]) == len(m["data"]["lineages"])
            else:
                assert "arranged_median_abs_rho_com" not in v
        best = m["line"]["best"]
        line = best["controls_verdict"]
        own = next(
            v
            for v in variants.values()
            if v["weight"] == 0 and v["label"].split()[0] == best["variant"].split()[0]
        )
        expected = {
            "λ=0 as trained": own["median_abs_rho_com"],
            "λ=0 arranged": own["arranged_median_abs_rho_com"],
            "neurons shuffled": best["shuffled_abs_rho_com"],
        }
        assert line["controls"] == pytest.approx(expected)
        assert line["control_rho"] == pytest.approx(max(expected.values()))
        assert line["gsr_rho"] == best["median_abs_rho_com"]
        assert line["margin"] == pytest.approx(line["gsr_rho"] - line["control_rho"])
        assert line["helps"] == (line["margin"] > 0)
        assert line["mse_ratio"] == best["mse_ratio"]
        assert T._line_verdict_sentence(name, line) in report
        assert headline[f"{name} line layer vs best control"] == T.line_verdict_entry(line)

        learned = m["learned"]
        verdict = learned["controls_verdict"]
        (row,) = learned["restarts"]
        controls = row["controls"]
        assert controls["k"] == max(row["components"], 1)
        kept = {c: controls[c] for c in analysis.MODULE_CONTROLS if controls[c] is not None}
        assert {"neurons_kmeans", "layer_kmeans", "raw_kmeans"} <= set(kept)
        assert verdict["control_ari"] == pytest.approx(max(kept.values()))
        assert verdict["gsr_ari"] == pytest.approx(row["ari"])
        assert verdict["margin"] == pytest.approx(verdict["gsr_ari"] - verdict["control_ari"])
        assert verdict["mse_ratio"] == pytest.approx(learned["mse_ratio"])
        if verdict["margin"] <= 0 or row["components"] <= 1:
            assert verdict["helps"] is False
        if row["components"] > 1:
            assert 0 < controls["p_value"] <= 1
        assert T._learned_verdict_sentence(name, m) in report
        assert headline[f"{name} learned modules vs best control"] == cr.verdict_entry(verdict)


def test_report_prose_is_rendered_from_templates_with_the_run_numbers(quick_run):
    folder, metrics = quick_run
    report = html.unescape((folder / "report.html").read_text())
    activity = gsreg_report.prose("trajectory/activity.txt", line=QUICK.line, n_bins=QUICK.n_bins)
    assert (
        f"Mean activation of the {QUICK.line} line neurons (columns, in line order) over "
        f"all samples of each lineage, split into {QUICK.n_bins} pseudotime bins"
    ) in activity
    assert f"<p>{activity}</p>" in report
    assert (
        f"A line layer of {QUICK.line} neurons (GSR on path:{QUICK.line}) was trained "
        f"{QUICK.n_restarts} time(s) per λ ({QUICK.epochs} epochs)."
    ) in report
    assert (
        f"A {QUICK.width}-unit layer learned its graph from co-activations (kNN, "
        f"k = {QUICK.k}) with GSR weight {lambda_label(QUICK.learned_weight)}."
    ) in report
    assert (
        f"without wrecking the reconstruction (test MSE above {MSE_WRECKED:g}x that of λ = 0)"
    ) in report
    runs = len(metrics["datasets"]["krumsiek11"]["data"]["lineages"])
    assert f"krumsiek11: {runs} simulated runs from the stem state" in report
    for name, m in metrics["datasets"].items():
        data = m["data"]
        assert (
            f"{name} ({data['n_samples']} samples, {data['n_features']} features, "
            f"{len(data['lineages'])} lineages;"
        ) in report


# --------------------------------------------------------------------------- statistics


def _spearman_loop(pseudotime, position, lineage, n):
    out = []
    for k in range(n):
        member = lineage == k
        a, b = pseudotime[member], position[member]
        if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
            out.append(np.nan)
        else:
            out.append(spearmanr(a, b).statistic)
    return np.array(out)


def test_lineage_spearman_matches_scipy():
    rng = np.random.default_rng(0)
    lineage = rng.integers(0, 4, 200)
    pseudotime = rng.uniform(0, 50, 200)
    position = np.round(pseudotime / 10 + rng.normal(0, 1.5, 200)).clip(0, 9)  # with ties
    position[lineage == 2] = 4.0  # a constant position: no order
    got = T.lineage_spearman(pseudotime, position, lineage, 5)  # lineage 4 is empty
    expected = _spearman_loop(pseudotime, position, lineage, 5)
    np.testing.assert_allclose(got, expected, equal_nan=True)
    assert np.isnan(got[2]) and np.isnan(got[4])
    assert T.lineage_spearman(np.arange(5.0), -np.arange(5.0), np.zeros(5, int), 1)[0] == -1.0
    with pytest.raises(ValueError):
        T.lineage_spearman(np.arange(3.0), np.arange(4.0), np.zeros(3, int), 1)


def test_centre_of_mass_matches_a_loop():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(50, 10))
    Z[0] = 3.0  # constant profile
    expected = []
    for z in Z:
        mass = [max(v - z.mean(), 0.0) for v in z]
        total = sum(mass)
        expected.append(sum(k * w for k, w in enumerate(mass)) / total if total > 0 else 4.5)
    np.testing.assert_allclose(T.centre_of_mass(Z), expected)
    np.testing.assert_allclose(T.centre_of_mass(2.5 * Z + 7.0), T.centre_of_mass(Z))
    bump = np.zeros((1, 10))
    bump[0, 6] = 1.0
    assert T.centre_of_mass(bump)[0] == 6.0


def test_shuffled_order_rho_matches_a_loop():
    rng = np.random.default_rng(4)
    lineage = np.repeat([0, 1, 2], 30)
    pseudotime = np.tile(np.arange(30.0), 3)
    # a bump travelling along neurons 0..7 with pseudotime: ordered, far above chance
    centre = pseudotime / 29 * 7
    Z = np.exp(-((np.arange(8)[None, :] - centre[:, None]) ** 2)) + rng.normal(0, 0.05, (90, 8))
    got = T.shuffled_order_rho(Z, pseudotime, lineage, 3, n_shuffles=5, seed=9)
    perms = np.random.default_rng(9)
    peak, com = [], []
    for _ in range(5):
        order = perms.permutation(8)
        for k in range(3):
            member = lineage == k
            zs = Z[member][:, order]
            mass = np.maximum(zs - zs.mean(axis=1, keepdims=True), 0)
            positions = (np.argmax(zs, axis=1), mass @ np.arange(8) / mass.sum(axis=1))
            for values, out in zip(positions, (peak, com), strict=True):
                out.append(abs(spearmanr(pseudotime[member], values).statistic))
    assert got == pytest.approx((np.median(peak), np.median(com)))
    ordered = T.lineage_spearman(pseudotime, T.centre_of_mass(Z), lineage, 3)
    assert np.all(ordered > 0.95) and got[1] < 0.9


def test_peak_position_is_the_argmax():
    Z = np.array([[0.0, 2.0, 1.0], [5.0, 5.0, 1.0], [-3.0, -2.0, -1.0]])
    assert T.peak_position(Z).tolist() == [1, 0, 2]


def test_reference_spearman_matches_sklearn_pca():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(2)
    lineage = np.repeat([0, 1], 40)
    pseudotime = np.tile(np.arange(40.0), 2)
    direction = rng.normal(size=(2, 6))
    X = pseudotime[:, None] * direction[lineage] / 10 + rng.normal(0, 1.0, (80, 6))
    expected = [
        abs(
            spearmanr(
                pseudotime[lineage == k], PCA(1).fit_transform(X[lineage == k])[:, 0]
            ).statistic
        )
        for k in range(2)
    ]
    np.testing.assert_allclose(T.reference_spearman(X, pseudotime, lineage, 2), expected)


def test_stratified_means_match_a_loop():
    rng = np.random.default_rng(3)
    lineage = rng.integers(0, 3, 90)
    pseudotime = rng.permutation(90).astype(float)
    Z = rng.normal(size=(90, 5))
    means = T.stratified_means(Z, pseudotime, lineage, 3, 4)
    assert means.shape == (3, 4, 5)
    for k in range(3):
        idx = np.flatnonzero(lineage == k)
        idx = idx[np.argsort(pseudotime[idx])]
        for b in range(4):
            members = [i for r, i in enumerate(idx) if r * 4 // len(idx) == b]
            np.testing.assert_allclose(means[k, b], Z[members].mean(axis=0))
    bins = T.pseudotime_bins(pseudotime, lineage, 4)
    for k in range(3):
        counts = np.bincount(bins[lineage == k], minlength=4)
        assert counts.max() - counts.min() <= 1


# --------------------------------------------------------------------------- data


def test_dla_pseudotime_counts_steps_from_the_root():
    pytest.importorskip("phate")
    import phate

    data = branching.dla_tree(n_branch=4, branch_length=30, n_dim=8, seed=5, sigma=0.0)
    X, labels = phate.tree.gen_dla(n_dim=8, n_branch=4, branch_length=30, seed=5, sigma=0.0)
    np.testing.assert_array_equal(data.X, X)
    np.testing.assert_array_equal(data.lineage, labels)
    trunk = X[labels == 0]
    assert data.pseudotime[labels == 0].tolist() == list(range(30))
    for k in range(1, 4):
        time_k, X_k = data.pseudotime[labels == k], X[labels == k]
        assert np.all(np.diff(time_k) == 1) and 1 <= time_k[0] <= 30
        # without noise a branch's first sample is one step (each coordinate in [-1, 1])
        # from the trunk sample it grows from
        assert np.abs(X_k[0] - trunk[int(time_k[0]) - 1]).max() <= 1.0
    assert data.branch_names[0] == "branch 0 (trunk)"


def test_dla_tree_leaves_the_global_numpy_generator_alone():
    pytest.importorskip("phate")
    np.random.seed(11)
    expected = np.random.rand()
    np.random.seed(11)
    branching.dla_tree(n_branch=2, branch_length=10, n_dim=3, seed=0)
    assert np.random.rand() == expected


def test_krumsiek_runs_split_the_simulation():
    types = ["progenitor"] * 3 + ["Mo"] * 2 + ["progenitor"] * 2 + ["Ery"] * 3
    run, step, fates = branching.krumsiek_runs(types)
    assert run.tolist() == [0] * 5 + [1] * 5
    assert step.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    assert fates == ("Mo", "Ery")
    with pytest.raises(ValueError, match="fates"):
        branching.krumsiek_runs(["progenitor", "Mo", "Ery"])


def test_krumsiek11_has_four_runs_from_the_stem():
    pytest.importorskip("scanpy")
    data = branching.krumsiek11()
    assert data.X.shape == (640, 11)
    assert data.lineage_names == ("stem → Mo", "stem → Ery", "stem → Mk", "stem → Neu")
    assert data.branch_names == ("progenitor", "Mo", "Ery", "Mk", "Neu")
    assert np.bincount(data.lineage).tolist() == [160] * 4
    starts = data.X[data.pseudotime == 0]
    assert np.abs(starts - starts[0]).max() < 0.05  # every run starts in the stem state


def test_split_holds_out_every_lineage_and_zscores():
    data = branching.Trajectory(
        "toy",
        np.random.default_rng(0).normal(3, 2, (40, 3)),
        np.tile(np.arange(20.0), 2),
        np.repeat([0, 1], 20),
        ("a", "b"),
        np.repeat([0, 1], 20),
        ("a", "b"),
    )
    s = T.split(data, 0.25, seed=0)
    assert len(s.test) == 10 and np.bincount(data.lineage[s.test]).tolist() == [5, 5]
    assert not set(s.test) & set(s.train) and len(s.train) + len(s.test) == 40
    np.testing.assert_allclose(s.X[s.train].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(s.X[s.train].std(axis=0), 1, atol=1e-5)


# --------------------------------------------------------------------------- config, model


@pytest.mark.parametrize(
    "bad",
    [
        {"weights": (1e-2,)},
        {"epochs": 0},
        {"test_fraction": 1.0},
        {"datasets": ("mnist",)},
        {"k": 100},
        {"line": 2},
        {"learned_weight": 0.0},
        {"hidden": (0,)},
        {"learned_warmup": 1.5},
        {"n_shuffles": 0},
    ],
)
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        T.TrajectoryConfig(**bad)


def test_line_autoencoder_layouts():
    config = T.TrajectoryConfig()
    x = torch.randn(16, 7)
    plain, layer = T.line_autoencoder(7, config, "plain")
    assert layer == "encoder.latent" and plain(x).shape == (16, 7)
    model, layer = T.line_autoencoder(7, config, "standardised")
    assert layer == "encoder.line"
    Z = model.encoder(x).detach()
    assert Z.shape == (16, config.line)
    torch.testing.assert_close(Z.mean(dim=1), torch.zeros(16), atol=1e-5, rtol=0)
    with pytest.raises(ValueError):
        T.line_autoencoder(7, config, "ring")
