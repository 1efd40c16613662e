"""Controls of the fixed-graph experiments (reconstruction sweep, rotation, capsules): quick
runs carry the controls and a verdict that agrees with its own numbers."""

from __future__ import annotations

import html
import json
import math

import numpy as np
import pytest

from gsreg import analysis, graphs
from gsreg.experiments import WRECKED, registry
from gsreg.experiments.reconstruction_sweep import energy_null
from gsreg.experiments.rotation import circular_correlation, rho_null, ring_peak_angle


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The three experiments, quick, through run_experiment (seed 3)."""
    root = tmp_path_factory.mktemp("runs")
    return {
        name: registry.run_experiment(name, root, quick=True, seed=3, device="cpu", progress=False)
        for name in ("reconstruction-sweep", "rotation", "capsules")
    }


def _metrics(folder) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def _check_verdict(verdict: dict) -> None:
    """margin is GSR's advantage over the best control in the score's direction, and GSR
    never helps without a positive margin."""
    sign = 1.0 if verdict["better"] == "higher" else -1.0
    assert verdict["margin"] == pytest.approx(
        sign * (verdict["gsr_score"] - verdict["control_score"])
    )
    if not verdict["margin"] > 0:
        assert verdict["helps"] is False
    assert isinstance(verdict["helps"], bool)


def _check_report(folder, verdict: dict) -> None:
    page = (folder / "report.html").read_text()
    assert html.escape(verdict["sentence"]) in page
    assert ("GSR helps here" in verdict["sentence"]) == verdict["helps"]
    headline = registry.read_run(folder)["headline"]
    assert "vs best control" in headline
    assert headline["vs best control"].endswith(
        "does not help" if not verdict["helps"] else "helps"
    )


# --------------------------------------------------------------------------- reconstruction


def test_reconstruction_sweep_reports_lambda_0_as_trained_arranged_and_shuffled(runs):
    metrics = _metrics(runs["reconstruction-sweep"])
    controls = metrics["controls"]
    assert set(controls) == {"λ=0", "λ=0 arranged", "permutation null"}
    none = metrics["runs"][0]
    assert none["regularizer"] == "none"
    assert controls["λ=0"]["latent_energy"] == none["latent_energy"]
    assert controls["λ=0 arranged"]["latent_energy"] == none["arranged_energy"]
    assert controls["permutation null"]["latent_energy"] == none["null_energy"]
    for r in metrics["runs"]:
        assert r["norm_ratio"] == pytest.approx(r["latent_norm"] / none["latent_norm"])
        if r["regularizer"] in ("none", "gsr"):
            assert r["arranged_energy"] >= 0 and 0 < r["energy_p_value"] <= 1


def test_every_gsr_coefficient_is_judged_against_the_smoother_control(runs):
    metrics = _metrics(runs["reconstruction-sweep"])
    none = metrics["runs"][0]
    gsr = [r for r in metrics["runs"] if r["regularizer"] == "gsr"]
    verdicts = metrics["gsr_vs_controls"]
    assert [v["coefficient"] for v in verdicts] == [r["coefficient"] for r in gsr]
    smoother = min(none["latent_energy"], none["arranged_energy"])
    for v, r in zip(verdicts, gsr, strict=True):
        assert v["better"] == "lower"
        assert v["control_score"] == smoother and v["gsr_score"] == r["latent_energy"]
        assert v["gsr_arranged_score"] == r["arranged_energy"]
        assert v["mse_ratio"] == r["mse_ratio"] and v["norm_ratio"] == r["norm_ratio"]
        _check_verdict(v)
        if r["status"] != "ok" or r["verdict"] == WRECKED:
            assert v["helps"] is False
    assert metrics["verdict"]["coefficient"] in [v["coefficient"] for v in verdicts]
    _check_verdict(metrics["verdict"])


def test_reconstruction_sweep_report_states_the_verdict(runs):
    folder = runs["reconstruction-sweep"]
    verdict = _metrics(folder)["verdict"]
    assert "best control" in verdict["sentence"] and "mean latent norm" in verdict["sentence"]
    _check_report(folder, verdict)
    assert "Smoothness against the controls" in (folder / "report.html").read_text()


def test_energy_null_is_the_energy_of_randomly_ordered_units():
    rng = np.random.default_rng(0)
    graph = graphs.torus(3, 4)
    Z = rng.normal(size=(40, 12)) + np.linspace(0, 2, 12)  # smooth-ish ramp on the nodes
    null = energy_null(Z, graph, 300, seed=5)
    perms = np.argsort(np.random.default_rng(5).random((300, 12)), axis=1)
    energies = np.array([analysis.dirichlet_energy(Z[:, p], graph) for p in perms])
    observed = analysis.dirichlet_energy(Z, graph)
    assert null["observed"] == pytest.approx(observed)
    assert null["null_mean"] == pytest.approx(energies.mean())
    assert null["null_std"] == pytest.approx(energies.std())
    assert null["p_value"] == pytest.approx((1 + np.sum(energies <= observed)) / 301)
    assert math.isnan(energy_null(np.zeros((5, 12)), graph, 10)["p_value"])


# --------------------------------------------------------------------------- rotation


def test_rotation_controls_are_each_lambda_0_ring_as_trained_and_arranged(runs):
    metrics = _metrics(runs["rotation"])
    variants = metrics["variants"]
    references = [v for v in variants.values() if v["weight"] == 0]
    assert set(metrics["controls"]) == {
        name for v in references for name in (v["label"], f"{v['label']} arranged")
    }
    for v in references:
        trained = metrics["controls"][v["label"]]
        arranged = metrics["controls"][f"{v['label']} arranged"]
        assert trained["median_abs_rho"] == v["median_abs_rho"]
        assert arranged["median_abs_rho"] == v["arranged_median_abs_rho"]
        assert arranged["median_abs_rho"] == pytest.approx(
            np.median([abs(r["rho_arranged"]) for r in v["restarts"]])
        )
    for v in variants.values():
        for r in v["restarts"]:
            assert 0 <= r["null_abs_rho"] <= 1 and 0 < r["p_value"] <= 1


def test_rotation_verdict_takes_the_best_lambda_0_control(runs):
    metrics = _metrics(runs["rotation"])
    verdict = metrics["verdict"]
    controls = metrics["controls"]
    assert verdict["better"] == "higher"
    assert verdict["control_score"] == max(c["median_abs_rho"] for c in controls.values())
    assert controls[verdict["best_control"]]["median_abs_rho"] == verdict["control_score"]
    gsr = next(v for v in metrics["variants"].values() if v["label"] == verdict["gsr"])
    assert gsr["weight"] > 0 and verdict["gsr_score"] == gsr["median_abs_rho"]
    assert verdict["gsr_arranged_score"] == gsr["arranged_median_abs_rho"]
    assert verdict["mse_ratio"] == gsr["mse_ratio"]
    _check_verdict(verdict)
    if verdict["cost"] == WRECKED:
        assert verdict["helps"] is False


def test_rotation_report_states_the_verdict(runs):
    folder = runs["rotation"]
    verdict = _metrics(folder)["verdict"]
    _check_report(folder, verdict)
    assert "GSR against the controls" in (folder / "report.html").read_text()


def test_rho_null_shuffles_the_units_of_the_ring():
    angles = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    nodes = 2 * np.pi * np.arange(12) / 12
    bump = np.exp(3 * np.cos(angles[:, None] - nodes[None, :]))  # a bump that follows
    null = rho_null(bump, angles, 99, seed=1)
    assert null["observed"] == pytest.approx(1.0)
    assert null["p_value"] == pytest.approx(1 / 100) and null["null_mean"] < 0.8
    perms = np.argsort(np.random.default_rng(1).random((99, 12)), axis=1)
    by_hand = [abs(circular_correlation(angles, ring_peak_angle(bump[:, p]))) for p in perms]
    assert null["null_mean"] == pytest.approx(np.mean(by_hand))


# --------------------------------------------------------------------------- capsules


def test_capsules_controls_are_lambda_0_as_trained_and_relabelled(runs):
    metrics = _metrics(runs["capsules"])
    none = metrics["by_weight"]["0"]
    controls = metrics["controls"]
    assert set(controls) == {"λ=0", "λ=0 arranged"}
    assert controls["λ=0"]["alignment_mean"] == none["alignment_mean"]
    assert controls["λ=0 arranged"]["alignment_mean"] == none["arranged"]["alignment_mean"]
    for m in metrics["models"].values():
        arranged = m["arranged"]
        assert arranged["alignment"] == pytest.approx(
            arranged["consistency"] - arranged["shuffled"]
        )
        assert 0 < arranged["p_value"] <= 1 and 0 <= arranged["relabelled_fraction"] <= 1
    relabelled = [
        m["arranged"]["alignment"] for m in metrics["models"].values() if m["weight"] == 0
    ]
    assert controls["λ=0 arranged"]["alignment_by_restart"] == relabelled


def test_capsules_verdict_takes_the_best_control(runs):
    metrics = _metrics(runs["capsules"])
    verdict, best = metrics["verdict"], metrics["best"]
    assert verdict["better"] == "higher" and verdict["gsr"] == best["label"]
    assert verdict["control_score"] == max(
        c["alignment_mean"] for c in metrics["controls"].values()
    )
    assert verdict["gsr_score"] == best["alignment_mean"]
    assert verdict["gsr_arranged_score"] == best["arranged"]["alignment_mean"]
    assert verdict["accuracy_drop"] == best["accuracy_drop"]
    _check_verdict(verdict)
    if verdict["cost"] == WRECKED:
        assert verdict["helps"] is False
    if metrics["claim"] != "not reproduced":
        assert verdict["margin"] > 0


def test_capsules_report_states_the_verdict(runs):
    folder = runs["capsules"]
    verdict = _metrics(folder)["verdict"]
    _check_report(folder, verdict)
    assert "GSR against the controls" in (folder / "report.html").read_text()
