"""The experiment registry, the four paper experiments (quick runs) and their statistics."""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import json
import math
import os
from dataclasses import dataclass
from html import escape
from pathlib import Path

import jinja2
import jinja2.meta
import numpy as np
import pytest

import gsreg
from gsreg import analysis, datasets
from gsreg import report as gsreg_report
from gsreg.experiments import (
    CLOSE,
    COSTLY,
    WRECKED,
    accuracy_cost,
    lambda_label,
    mnist_grid_ae,
    reconstruction_cost,
    registry,
)
from gsreg.experiments.rotation import circular_correlation, ring_peak_angle, winding_number
from gsreg.report import RunFolder, Section

NAMES = ("mnist-grid-ae", "mnist-grid-classifier", "reconstruction-sweep", "rotation")
TEMPLATES = Path(gsreg.__file__).parent / "templates"


def _module(name: str):
    """The module of the experiment ``name``."""
    return importlib.import_module(registry.get_experiment(name).module)


def _quick_config(name: str):
    return registry.get_experiment(name).make_config(quick=True, seed=3)


# --------------------------------------------------------------------------- quick runs


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory, recording_prose):
    """Every registered experiment, quick, through run_experiment (seed 3): the root, the
    run folders and the (template, values) each run's report prose was rendered from."""
    root = tmp_path_factory.mktemp("runs")
    folders, rendered = {}, {}
    for name in NAMES:
        with recording_prose() as rendered[name]:
            folders[name] = registry.run_experiment(
                name, root, quick=True, seed=3, device="cpu", progress=False
            )
    return root, folders, rendered


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


@pytest.mark.parametrize("name", NAMES)
def test_quick_run_writes_every_promised_file(quick_runs, name):
    root, folders, _ = quick_runs
    folder = folders[name]
    assert folder == root.absolute() / name
    for file in ("report.html", "metrics.json", "config.json", "run.json"):
        assert (folder / file).stat().st_size > 0
    figures = _module(name).FIGURES
    for figure in figures:
        assert (folder / "figures" / f"{figure}.png").stat().st_size > 1000, figure
    assert sorted(p.stem for p in (folder / "figures").iterdir()) == sorted(figures)
    html = (folder / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(figures)
    assert "Summary" in html
    # no staging folders left next to the result
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("name", NAMES)
def test_config_json_reruns_the_same_config(quick_runs, name):
    _, folders, _ = quick_runs
    experiment = registry.get_experiment(name)
    saved = json.loads((folders[name] / "config.json").read_text())
    assert experiment.config_class(**saved) == experiment.make_config(quick=True, seed=3)
    run = registry.read_run(folders[name])
    assert run["experiment"] == name and run["quick"] is True and run["seed"] == 3
    assert run["rerun"] == f"gsreg run {name} --quick --seed 3 --device cpu"
    assert run["seconds"] > 0 and run["headline"]
    assert all(isinstance(v, str) for v in run["headline"].values())
    text = registry.summary_text(folders[name])
    assert text.startswith(f"{name}: quick run, seed 3")
    assert str((folders[name] / "report.html").resolve()) in text


def test_mnist_grid_ae_metrics(quick_runs):
    metrics = _metrics(quick_runs[1]["mnist-grid-ae"])
    config = _quick_config("mnist-grid-ae")
    keys = mnist_grid_ae.variant_keys(config)
    assert set(metrics["models"]) == set(keys) and len(keys) == len(config.weights) + 2
    assert metrics["lambdas"] == sorted(config.weights)
    centered = f"centered_{lambda_label(config.centered_weight)}"
    for model in metrics["models"].values():
        assert 0 < model["test_mse"] < 0.5
        assert -1 <= model["morans_i"] <= 1
        assert model["activation_norm"] > 0 and model["dirichlet_energy"] >= 0
        assert model["verdict"] in (CLOSE, COSTLY, WRECKED)
    assert metrics["models"]["lambda_0"]["mse_ratio"] == 1.0
    assert metrics["models"][centered]["normalize"] == "centered"
    budget = metrics["models"]["budget"]
    assert budget["budget"]["budget"] == metrics["budget"]["budget"] == config.budget
    assert budget["weight"] == budget["budget"]["weights"][config.layer] > 0
    assert metrics["budget"]["cost_ratio"] == budget["mse_ratio"]
    for key in ("test_mse_no_gsr", "morans_i_no_gsr", "wrecking_lambdas", "best"):
        assert key in metrics


@pytest.mark.parametrize("name", ["mnist-grid-ae", "mnist-grid-classifier"])
def test_mnist_grid_experiments_judge_every_gsr_model_against_the_best_control(quick_runs, name):
    metrics = _metrics(quick_runs[1][name])
    controls = metrics["controls"]
    assert set(controls) == {"λ=0", "λ=0 arranged"}
    reference = metrics["models"]["lambda_0"]
    assert controls["λ=0 arranged"]["morans_i"] == reference["arranged"]["morans_i"]
    for model in metrics["models"].values():
        assert 0 <= model["morans_i_p"] <= 1 and model["participation_ratio"] >= 1
        assert model["arranged"]["decodability"] == model["decodability"]
        if model["weight"] == 0:
            assert "verdict_vs_controls" not in model
            continue
        verdict = model["verdict_vs_controls"]
        assert verdict["margin"] == pytest.approx(verdict["gsr_score"] - verdict["control_score"])
        if verdict["margin"] <= 0:
            assert verdict["helps"] is False
    html = (quick_runs[1][name] / "report.html").read_text()
    assert "Controls" in html and "best control" in html


def test_mnist_grid_classifier_metrics(quick_runs):
    metrics = _metrics(quick_runs[1]["mnist-grid-classifier"])
    config = _quick_config("mnist-grid-classifier")
    assert metrics["test_accuracy_no_gsr"] > 0.3  # chance is 0.1
    keys = _module("mnist-grid-classifier").variant_keys(config)
    assert set(metrics["models"]) == set(keys) and len(keys) == len(config.weights) + 2
    assert {"lambda_0", "conv_head_lambda_0"} <= set(keys)
    for model in metrics["models"].values():
        assert 0 <= model["test_accuracy"] <= 1
        assert -1 <= model["morans_i"] <= 1 or math.isnan(model["morans_i"])
    head = metrics["conv_head"]
    assert head["gain_from_gsr"] == pytest.approx(
        head["test_accuracy_gsr"] - head["test_accuracy_no_gsr"]
    )
    mis = metrics["misclassified"]
    assert mis["n_test"] == config.n_test and 0 <= mis["n_misclassified"] <= config.n_test


def test_reconstruction_sweep_metrics(quick_runs):
    metrics = _metrics(quick_runs[1]["reconstruction-sweep"])
    config = _quick_config("reconstruction-sweep")
    runs = metrics["runs"]
    assert [(r["regularizer"], r["coefficient"]) for r in runs] == [("none", 0.0)] + [
        (k, c) for k in config.regularizers for c in config.coefficients
    ]
    for r in runs:
        assert r["status"] in ("ok", "collapsed")
        assert 0 < r["train_mse"] < 10 and 0 < r["test_mse"] < 10
    assert set(metrics["by_regularizer"]) == set(config.regularizers)
    assert metrics["mean_image_mse"] > 0
    assert set(metrics["largest_close_coefficient"]) == set(config.regularizers)


def test_rotation_metrics(quick_runs):
    metrics = _metrics(quick_runs[1]["rotation"])
    config = _quick_config("rotation")
    keys = _module("rotation").variant_keys(config)
    assert set(metrics["variants"]) == set(keys)
    assert len(keys) == (
        len(config.weights) + len(config.standardised_weights) + len(config.authors_weights)
    )
    for variant in metrics["variants"].values():
        assert 0 <= variant["median_abs_rho"] <= variant["best_abs_rho"] <= 1
        assert 0 <= variant["tracking_fraction"] <= 1
        assert variant["test_mse"] > 0
        (restart,) = variant["restarts"]
        assert restart["seed"] == 3 and isinstance(restart["winding"], int)


# --------------------------------------------------------------------------- report prose


def _with_includes(templates) -> set[str]:
    """The templates and every template they include, recursively."""
    found, todo = set(), list(templates)
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            source = (TEMPLATES / name).read_text(encoding="utf-8")
            todo.extend(jinja2.meta.find_referenced_templates(jinja2.Environment().parse(source)))
    return found


@pytest.mark.parametrize("name", NAMES)
def test_quick_run_report_holds_the_prose_of_every_template_of_its_module(quick_runs, name):
    _, folders, rendered = quick_runs
    folder = registry.get_experiment(name).module.rsplit(".", 1)[1]
    own = {f"{folder}/{path.name}" for path in (TEMPLATES / folder).glob("*.txt")}
    assert own and own <= _with_includes(template for template, _ in rendered[name])
    page = (folders[name] / "report.html").read_text()
    for template, values in rendered[name]:
        for paragraph in gsreg_report.prose(template, **values).split("\n\n"):
            assert escape(paragraph) in page, (template, paragraph)


def test_a_template_missing_a_value_raises():
    values = {"pattern_share": 0.75, "decode_tolerance": 0.01, "n_permutations": 999}
    text = gsreg_report.prose("mnist_grid_ae/controls.txt", **values)
    assert "75% of its participation ratio" in text and "999 random placements" in text
    del values["n_permutations"]
    with pytest.raises(jinja2.UndefinedError, match="n_permutations"):
        gsreg_report.prose("mnist_grid_ae/controls.txt", **values)


def test_report_prose_reads_the_thresholds_it_states(monkeypatch):
    monkeypatch.setattr(analysis, "PATTERN_SHARE", 0.6)
    monkeypatch.setattr(analysis, "DECODE_TOLERANCE", 0.02)
    text = mnist_grid_ae.controls_text()
    assert "60% of its participation ratio" in text and "within 0.02." in text
    monkeypatch.setattr(mnist_grid_ae, "MSE_CLOSE", 1.25)
    headline = mnist_grid_ae.headline(
        {"test_mse_no_gsr": 0.1, "morans_i_no_gsr": 0.0, "best": None}
    )
    assert headline["best λ"] == "none keeps the MSE within 25% of λ=0"


# --------------------------------------------------------------------------- registry


ALL_NAMES = (
    *NAMES,
    "modules",
    "hierarchy",
    "hierarchy-fixed",
    "trajectory",
    "pbmc",
    "capsules",
    "receptive-fields",
    "topographic-sae",
)


def test_list_and_lookup():
    assert [e.name for e in registry.list_experiments()] == list(ALL_NAMES)
    lines = registry.format_list().splitlines()
    assert len(lines) == len(ALL_NAMES)
    for line, name in zip(lines, ALL_NAMES, strict=True):
        assert line.startswith(name) and "min on 2 CPU cores" in line
    for experiment in registry.list_experiments():
        assert experiment.minutes <= 15
        config = experiment.make_config(quick=True, seed=5)
        assert config.seed == 5 and dataclasses.is_dataclass(config)
    with pytest.raises(ValueError, match="did you mean rotation"):
        registry.get_experiment("rotaton")
    with pytest.raises(ValueError, match="gsreg demo"):
        registry.get_experiment("demo")


def _leaves_nothing(tmp_path: Path, before: set[str]) -> None:
    assert {p.name for p in tmp_path.iterdir()} == before


def test_bad_invocations_fail_early_and_leave_nothing(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(registry.Experiment, "run", property(lambda self: calls.append))
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        registry.run_experiment("nope", out)
    for seed in (-1, 2**32, 1.5, True, "3"):
        with pytest.raises(ValueError, match="seed"):
            registry.run_experiment("rotation", out, seed=seed)
    with pytest.raises(ValueError, match="device"):
        registry.run_experiment("rotation", out, device="tpu")
    with pytest.raises(ValueError, match="bad config"):
        registry.run_experiment("rotation", out, overrides={"no_such_field": 1})
    with pytest.raises(ValueError, match="epochs"):
        registry.run_experiment("rotation", out, overrides={"epochs": 0})
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    with pytest.raises(ValueError, match="is a file"):
        registry.run_experiment("rotation", taken)
    with pytest.raises(ValueError, match="is a file"):
        registry.run_experiment("rotation", taken / "below")
    assert taken.read_text() == "keep me"
    assert calls == [] and not out.exists()
    _leaves_nothing(tmp_path, {"taken"})


def test_out_folder_that_is_not_writable(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        registry.os,
        "access",
        lambda path, mode: False if Path(path) == locked else real_access(path, mode),
    )
    with pytest.raises(PermissionError, match="not writable"):
        registry.run_experiment("rotation", locked)
    with pytest.raises(PermissionError, match="not writable"):
        registry.run_experiment("rotation", locked / "new" / "deeper")
    assert list(locked.iterdir()) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_out_folder_without_write_permission(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        with pytest.raises(PermissionError):
            registry.run_experiment("rotation", locked)
    finally:
        locked.chmod(0o755)


# a tiny stand-in experiment for the folder mechanics


@dataclass(frozen=True)
class _FakeConfig:
    score: float = 0.5
    fail: bool = False
    seed: int = 0

    @classmethod
    def quick(cls, **overrides):
        return cls(**{"score": 0.25, **overrides})


def _fake_run(config, out, device="auto", progress=True):
    folder = RunFolder(out)
    folder.write_json("config", dataclasses.asdict(config))
    folder.write_metrics({"score": config.score})
    if config.fail:
        raise RuntimeError("boom")
    folder.write_report("fake", [Section("Summary", text="fine")])
    return {"score": config.score}


@dataclass(frozen=True)
class _FakeExperiment(registry.Experiment):
    @property
    def config_class(self):
        return _FakeConfig

    @property
    def run(self):
        return _fake_run

    def headline(self, metrics):
        return {"score": f"{metrics['score']:.2f}"}


@pytest.fixture
def fakes(monkeypatch):
    for name in ("fake-a", "fake-b"):
        monkeypatch.setitem(
            registry.EXPERIMENTS,
            name,
            _FakeExperiment(name, f"{name} for tests", 0.1, "unused", "unused"),
        )


def test_failed_run_keeps_the_previous_result(tmp_path, fakes):
    out = tmp_path / "runs"
    folder = registry.run_experiment("fake-a", out, overrides={"score": 0.75})
    assert _metrics(folder) == {"score": 0.75}
    record = registry.read_run(folder)
    assert record["overrides"] == {"score": 0.75}
    assert record["rerun"].startswith("registry.run_experiment('fake-a'")
    with pytest.raises(RuntimeError, match="boom"):
        registry.run_experiment("fake-a", out, overrides={"fail": True})
    assert _metrics(folder) == {"score": 0.75}  # the previous result, untouched
    assert {p.name for p in out.iterdir()} == {"fake-a"}  # no staging folder left
    folder = registry.run_experiment("fake-a", out, quick=True, seed=7)
    assert _metrics(folder) == {"score": 0.25}
    assert registry.read_run(folder)["seed"] == 7
    assert {p.name for p in out.iterdir()} == {"fake-a"}


def test_failed_first_run_removes_the_folders_it_created(tmp_path, fakes):
    with pytest.raises(RuntimeError, match="boom"):
        registry.run_experiment("fake-a", tmp_path / "new" / "runs", overrides={"fail": True})
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_a_folder_that_is_not_a_result(tmp_path, fakes):
    target = tmp_path / "fake-a"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="refusing to replace"):
        registry.run_experiment("fake-a", tmp_path)
    assert (target / "notes.txt").read_text() == "mine"


def test_run_all_writes_an_index(tmp_path, fakes):
    index = registry.run_all(tmp_path, names=["fake-a", "fake-b"], progress=False)
    assert index == tmp_path.absolute() / "index.html"
    page = index.read_text()
    for name in ("fake-a", "fake-b"):
        assert f'href="{name}/report.html"' in page
        assert (tmp_path / name / "report.html").exists()
    assert "score: 0.50" in page
    summary = json.loads((tmp_path / "index.json").read_text())
    assert [e["status"] for e in summary["experiments"]] == ["ok", "ok"]


def test_run_all_reports_failures_after_running_the_rest(tmp_path, fakes, monkeypatch):
    monkeypatch.setattr(
        _FakeExperiment,
        "make_config",
        lambda self, quick=False, seed=0, **o: _FakeConfig(fail=self.name == "fake-b", seed=seed),
    )
    with pytest.raises(registry.ExperimentsFailed) as info:
        registry.run_all(tmp_path, names=["fake-b", "fake-a"])
    assert set(info.value.failures) == {"fake-b"}
    assert "boom" in info.value.index.read_text()
    assert (tmp_path / "fake-a" / "report.html").exists()
    assert not (tmp_path / "fake-b").exists()


def test_run_all_checks_everything_before_starting(tmp_path, fakes):
    with pytest.raises(ValueError, match="unknown experiment"):
        registry.run_all(tmp_path, names=["fake-a", "nope"])
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- statistics


def test_circular_correlation_hand_computed_case():
    # pairs (1,2): sin(-pi/2) sin(-pi/2) = 1; (1,3): sin(-pi) ... = 0; (2,3): ... sin(0) = 0
    # spreads: sin^2 over pairs of a = 1 + 0 + 1 = 2, of b = 1 + 1 + 0 = 2 -> 1 / sqrt(4)
    a = np.array([0.0, np.pi / 2, np.pi])
    b = np.array([0.0, np.pi / 2, np.pi / 2])
    assert circular_correlation(a, b) == pytest.approx(0.5)


def test_circular_correlation_properties():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 2 * np.pi, 200)
    assert circular_correlation(a, a + 1.3) == pytest.approx(1.0)
    assert circular_correlation(a, 0.4 - a) == pytest.approx(-1.0)
    b = a + rng.normal(0, 0.6, a.size)
    pairwise_num = pairwise_a = pairwise_b = 0.0
    for i, j in itertools.combinations(range(a.size), 2):
        sa, sb = np.sin(a[i] - a[j]), np.sin(b[i] - b[j])
        pairwise_num += sa * sb
        pairwise_a += sa * sa
        pairwise_b += sb * sb
    expected = pairwise_num / math.sqrt(pairwise_a * pairwise_b)
    assert circular_correlation(a, b) == pytest.approx(expected)
    assert 0.3 < expected < 1
    assert circular_correlation(a, b + 2.0) == pytest.approx(expected)  # rotation invariant
    assert abs(circular_correlation(a, rng.uniform(0, 2 * np.pi, a.size))) < 0.2
    assert math.isnan(circular_correlation(a, np.full(a.size, 0.3)))
    with pytest.raises(ValueError):
        circular_correlation(a, a[:-1])


def test_ring_peak_and_winding():
    n = 20
    nodes = 2 * np.pi * np.arange(n) / n
    centres = np.array([0.0, 1.0, 2.5, 6.0])
    bumps = np.exp(np.cos(nodes[None, :] - centres[:, None]) * 3)
    assert np.allclose(ring_peak_angle(bumps), centres, atol=1e-9)
    turn = np.linspace(0, 2 * np.pi, 50, endpoint=False)
    assert winding_number(turn) == 1
    assert winding_number(-turn) == -1
    assert winding_number(np.mod(2 * turn, 2 * np.pi)) == 2
    assert winding_number(np.full(10, 1.0)) == 0


def test_rotation_dataset():
    data = datasets.rotation(n_frames=12, size=16)
    images, angles = data
    assert images.shape == (12, 16, 16) and images.dtype == np.float32
    assert data.X.shape == (12, 256)
    assert np.allclose(angles, np.arange(12) * 30.0)
    assert 0 <= images.min() and images.max() <= 1 and images.sum() > 0
    flat = data.X
    distances = np.linalg.norm(flat[:, None] - flat[None], axis=-1)
    assert distances[~np.eye(12, dtype=bool)].min() > 0.5  # no two angles look alike
    mirrored = datasets.rotation(n_frames=12, size=16).images[:, :, ::-1]
    assert np.abs(mirrored - images).max() > 0.5  # not mirror-symmetric
    noisy = datasets.rotation(n_frames=4, size=16, noise=0.1, seed=1)
    assert np.array_equal(noisy.images, datasets.rotation(4, 16, noise=0.1, seed=1).images)
    assert not np.array_equal(noisy.images, datasets.rotation(4, 16, noise=0.1, seed=2).images)
    shifted = datasets.rotation(n_frames=4, size=16, offset=45.0)
    assert np.allclose(shifted.angles, [45, 135, 225, 315])
    for bad in ({"n_frames": 1}, {"size": 4}, {"noise": -1.0}, {"n_frames": 2.5}):
        with pytest.raises(ValueError):
            datasets.rotation(**bad)


def test_cost_verdicts_and_labels():
    assert reconstruction_cost(1.05, 1.0)["verdict"] == CLOSE
    assert reconstruction_cost(1.3, 1.0)["verdict"] == COSTLY
    assert reconstruction_cost(2.0, 1.0) == {"mse_ratio": 2.0, "verdict": WRECKED}
    assert reconstruction_cost(float("nan"), 1.0)["verdict"] == WRECKED
    assert accuracy_cost(0.985, 0.99)["verdict"] == CLOSE
    assert accuracy_cost(0.96, 0.99)["verdict"] == COSTLY
    assert accuracy_cost(0.5, 0.99)["verdict"] == WRECKED
    assert [lambda_label(w) for w in (0, 1e-5, 1e-2, 0.1, 1.0, 1e5, 3e-2)] == [
        "0",
        "1e-5",
        "1e-2",
        "0.1",
        "1",
        "1e5",
        "3e-2",
    ]
