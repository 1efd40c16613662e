"""scripts/results_doc.py: docs/results.md from the full runs' metrics.json."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from gsreg.experiments import registry

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "results_doc.py"


@pytest.fixture(scope="module")
def results_doc():
    spec = importlib.util.spec_from_file_location("results_doc", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class _Fake(registry.Experiment):
    def headline(self, metrics):
        return {
            "score": f"{metrics['score']:.2f}",
            "cost": f"MSE {metrics['ratio']:.2f}x",
            "GSR vs best control": f"{metrics['score']:.2f} vs 0.90: does not help",
        }


@pytest.fixture
def fake_registry(monkeypatch, results_doc):
    fakes = {
        n: _Fake(n, f"{n} does | things", 1.0, "unused", "unused") for n in ("fake-a", "fake-b")
    }
    monkeypatch.setattr(registry, "EXPERIMENTS", fakes)
    monkeypatch.setattr(results_doc, "KEY_FIGURES", {"fake-a": ("curve",)})
    return fakes


def _result(root: Path, name: str, score: float, quick: bool = False) -> Path:
    folder = root / name
    (folder / "figures").mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"score": score, "ratio": 1.04}))
    (folder / "run.json").write_text(
        json.dumps(
            {
                "experiment": name,
                "quick": quick,
                "seed": 0,
                "device": "cpu",
                "seconds": 150.0,
                "finished": "2026-01-01T00:00:00+00:00",
                "rerun": f"gsreg run {name} --seed 0",
                "headline": {"stale": "ignored"},
                "versions": {"torch": "2.13.0"},
            }
        )
    )
    (folder / "figures" / "curve.png").write_bytes(b"\x89PNG fake")
    return folder


def test_page_is_written_from_the_copied_metrics(tmp_path, fake_registry, results_doc):
    runs, results, images = tmp_path / "runs", tmp_path / "docs/results", tmp_path / "docs/img"
    _result(runs, "fake-a", 0.8125)
    assert results_doc.collect(runs, results, images) == ["fake-a"]
    assert json.loads((results / "fake-a" / "metrics.json").read_text())["score"] == 0.8125
    assert (images / "fake-a-curve.png").read_bytes() == b"\x89PNG fake"
    # the runs may go away: the page needs only the copies
    text = results_doc.page(results, images, tmp_path / "docs" / "results.md")
    # the table holds the verdict against the controls; the section every headline entry
    row = "| [`fake-a`](#fake-a) | GSR vs best control: 0.81 vs 0.90: does not help | 2.5 |"
    assert row in text
    assert "- score: 0.81" in text and "- cost: MSE 1.04x" in text
    assert "stale" not in text  # the headline is recomputed from metrics.json
    assert "![fake-a: curve](img/fake-a-curve.png)" in text
    assert "[metrics.json](results/fake-a/metrics.json)" in text
    assert "Not run yet: `fake-b`." in text
    assert "fake-a does \\| things" not in text  # descriptions are prose, not cells
    assert "Fake-a does | things." in text


def test_quick_runs_and_unfinished_folders_are_refused(tmp_path, fake_registry, results_doc):
    runs = tmp_path / "runs"
    _result(runs, "fake-a", 0.5, quick=True)
    with pytest.raises(ValueError, match="quick run"):
        results_doc.collect(runs, tmp_path / "r", tmp_path / "i")
    (runs / "fake-b").mkdir()
    (runs / "fake-a" / "run.json").unlink()
    with pytest.raises(ValueError, match="not a finished result"):
        results_doc.collect(runs, tmp_path / "r", tmp_path / "i")


def test_a_missing_key_figure_is_an_error(tmp_path, fake_registry, results_doc):
    runs = tmp_path / "runs"
    _result(runs, "fake-a", 0.5)
    (runs / "fake-a" / "figures" / "curve.png").unlink()
    with pytest.raises(ValueError, match="update KEY_FIGURES"):
        results_doc.collect(runs, tmp_path / "r", tmp_path / "i")


def test_key_figures_name_registered_experiments(results_doc):
    assert set(results_doc.KEY_FIGURES) == set(registry.EXPERIMENTS)


def test_budget_section_reads_the_benchmark_json(tmp_path, results_doc):
    path = tmp_path / "budget.json"
    assert results_doc.budget_section(path) == []
    summary = {
        "autoencoder": {
            "budgets": {
                "budget 0.05": {
                    "loss_ratio": 1.037,
                    "target": [1.03, 1.07],
                    "loss_met": True,
                    "morans_i": 0.602,
                    "best_fixed_within_budget": "weight 0.001",
                    "best_fixed_morans_i": 0.211,
                    "structure_met": True,
                    "arranged_lambda0_morans_i": 0.535,
                    "helps_in_runs": 3,
                    "runs": 3,
                }
            }
        }
    }
    path.write_text(
        json.dumps(
            {
                "config": {
                    "train": 10000,
                    "test": 10000,
                    "graph": "grid:8x8",
                    "seeds": [0, 1, 2],
                    "tolerance": 0.02,
                },
                "results": {"summary": summary},
            }
        )
    )
    lines = results_doc.budget_section(path)
    assert lines[0] == "## Budgets"
    assert (
        "| autoencoder | 0.05 | 1.037x | 1.03-1.07 | 0.602 | weight 0.001: 0.211 | 0.535 | "
        "3 of 3 | yes |" in lines
    )


def test_targets_section_reads_each_target_from_the_copied_metrics(tmp_path, results_doc):
    assert results_doc.targets_section(tmp_path) == []
    (tmp_path / "mnist-grid-ae").mkdir()
    verdict = {"gsr_score": 0.6, "control_score": 0.45, "margin": 0.15}
    (tmp_path / "mnist-grid-ae" / "metrics.json").write_text(
        json.dumps({"budget": {"verdict_vs_controls": verdict, "cost_ratio": 1.04}})
    )
    (tmp_path / "rotation").mkdir()
    authors = {
        "layout": "authors",
        "weight": 0.1,
        "tracking_fraction": 0.6,
        "median_abs_rho": 0.8,
        "mse_ratio": 1.2,
    }
    (tmp_path / "rotation" / "metrics.json").write_text(
        json.dumps(
            {
                "variants": {
                    "authors_lambda_0.1": authors,
                    "authors_lambda_0": {**authors, "weight": 0.0},
                }
            }
        )
    )
    lines = results_doc.targets_section(tmp_path)
    assert lines[0] == "## Targets of the budget and the defaults"
    rows = lines[4:]
    assert len(rows) == 2
    assert rows[0].endswith("| 0.600 against 0.450 (+0.150) at 1.040x the MSE | yes |")
    assert rows[1].endswith("| 60% of restarts, median \\|ρ\\| 0.80, 1.20x the MSE | no |")
