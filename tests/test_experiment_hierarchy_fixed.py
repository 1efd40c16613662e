"""The hierarchy-fixed experiment: its read-out on hand-made layers, its config checks and
a quick run's files."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from gsreg import graphs
from gsreg.experiments import hierarchy_fixed as HF
from gsreg.experiments import registry

NAME = "hierarchy-fixed"
MEMBERS = HF.line_members(graphs.lines(3, 2))


def hierarchical_layer(per_class: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A perfect 6-neuron hierarchical layer on lines:3x2: a sample of module j, sub-type t
    drives both nodes of line j by 4 and node t of it by 2 more, plus small noise.
    Returns ``(Z (N, 6), fine labels (N,))``."""
    rng = np.random.default_rng(seed)
    fine = np.repeat(np.arange(6), per_class)
    Z = 0.1 * rng.standard_normal((fine.size, 6))
    module, subtype = fine // 2, fine % 2
    rows = np.arange(fine.size)
    Z[rows, 2 * module] += 4.0
    Z[rows, 2 * module + 1] += 4.0
    Z[rows, 2 * module + subtype] += 2.0
    return Z, fine


def test_line_members_are_the_lines_of_the_graph_in_node_order():
    np.testing.assert_array_equal(MEMBERS, [[0, 1], [2, 3], [4, 5]])
    np.testing.assert_array_equal(HF.line_members(graphs.lines(2, 3)), [[0, 1, 2], [3, 4, 5]])
    with pytest.raises(ValueError, match="same number"):
        HF.line_members(graphs.disjoint(graphs.path(2), graphs.path(3)))
    with pytest.raises(ValueError, match="same number"):
        HF.line_members(graphs.from_edges(3, [[0, 1]]))  # node 2 alone


def test_a_perfect_hierarchical_layer_scores_one_on_every_score():
    Z, fine = hierarchical_layer()
    line, node = HF.hierarchy_readout(Z, MEMBERS)
    np.testing.assert_array_equal(line, fine // 2)
    np.testing.assert_array_equal(node, fine % 2)
    scores = HF.hierarchy_scores(Z, MEMBERS, fine, 2)
    assert scores == pytest.approx(
        {"coarse_ari": 1.0, "fine_ari": 1.0, "hierarchy": 1.0, "subtype_accuracy": 1.0}
    )
    assert HF.line_ownership(Z, MEMBERS, fine, 2) == {"modules": 3, "owned": 3, "split": 3}
    assert HF.reflects(scores) == "both"


def test_lines_and_nodes_are_read_up_to_their_names():
    """Relabelling lines or swapping the nodes of a line changes no score."""
    Z, fine = hierarchical_layer(seed=1)
    reordered = Z[:, [3, 2, 4, 5, 1, 0]]  # lines moved and two of them flipped
    assert HF.hierarchy_scores(reordered, MEMBERS, fine, 2) == pytest.approx(
        HF.hierarchy_scores(Z, MEMBERS, fine, 2)
    )


def test_a_placement_that_mixes_modules_in_a_line_loses_the_hierarchy():
    """Every neuron here carries its sub-type, so each fine class still gets a (line, node)
    cell of its own (fine ARI 1), but the lines no longer follow the modules."""
    Z, fine = hierarchical_layer(seed=2)
    shuffled = Z[:, [0, 2, 1, 4, 3, 5]]  # each line: neurons of two different modules
    scores = HF.hierarchy_scores(shuffled, MEMBERS, fine, 2)
    line, node = HF.hierarchy_readout(shuffled, MEMBERS)
    assert scores["coarse_ari"] == pytest.approx(adjusted_rand_score(fine // 2, line))
    assert scores["fine_ari"] == pytest.approx(adjusted_rand_score(fine, 2 * line + node))
    assert scores["fine_ari"] == pytest.approx(1.0)
    assert scores["coarse_ari"] < 0.6
    assert scores["hierarchy"] == scores["coarse_ari"]
    assert HF.line_ownership(shuffled, MEMBERS, fine, 2)["split"] < 3
    assert HF.reflects(scores) == "fine"


def test_a_layer_that_knows_only_the_modules_reflects_the_coarse_level():
    Z, fine = hierarchical_layer(seed=3)
    coarse_only = Z.copy()
    for j in range(3):  # both nodes of line j equal: no sub-type signal
        coarse_only[:, 2 * j + 1] = coarse_only[:, 2 * j]
    scores = HF.hierarchy_scores(coarse_only, MEMBERS, fine, 2)
    assert scores["coarse_ari"] == pytest.approx(1.0)
    # ties go to the first node: every sample of a line gets node 0, half of them right
    assert scores["subtype_accuracy"] == pytest.approx(0.5)
    assert scores["fine_ari"] == pytest.approx(adjusted_rand_score(fine, fine // 2 * 2))
    assert HF.reflects(scores) == "coarse"


def test_subtype_accuracy_takes_the_best_matching_per_line():
    """Line 0 names its sub-types the other way round from line 1: still all right."""
    line = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    node = np.array([1, 1, 0, 0, 0, 0, 1, 0])
    fine = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    # line 0: 4 of 4 matched (node 1 = sub-type 0); line 1: 3 of 4 (node 0 = sub-type 0)
    assert HF._matched_accuracy(line, node, fine % 2, 2, 2) == pytest.approx(7 / 8)


def test_placement_null_of_a_perfect_layer_lies_below_it():
    Z, fine = hierarchical_layer(seed=4)
    null = HF.placement_null(Z, MEMBERS, fine, 2, n_placements=60, seed=0)
    assert null["hierarchy"]["mean"] < 0.9
    assert null["hierarchy"]["best"] == pytest.approx(1.0)  # the right pairing is drawn
    # only placements that pair the modules' own neurons score 1: 1 of the 15 pairings
    assert 0 < null["hierarchy"]["share_at_least"] < 0.3
    again = HF.placement_null(Z, MEMBERS, fine, 2, n_placements=60, seed=0)
    assert again == null


def test_readout_rejects_activations_of_the_wrong_width():
    with pytest.raises(ValueError, match="n = 6"):
        HF.hierarchy_readout(np.zeros((4, 5)), MEMBERS)


# --------------------------------------------------------------------------- config


def test_config_round_trips_through_json_and_checks_its_fields():
    config = HF.HierarchyFixedConfig()
    assert config.shape == (3, 2) and config.chosen_weight in config.weights
    again = HF.HierarchyFixedConfig(**json.loads(json.dumps(dataclasses.asdict(config))))
    assert again == config
    assert HF.HierarchyFixedConfig.quick().n_seeds == 1
    for bad, field in (
        ({"graph": "grid:3x2"}, "graph"),
        ({"graph": "lines:1x6"}, "graph"),
        ({"graph": "lines:3x1"}, "graph"),
        ({"weights": (0.0, 3e-2)}, "weights"),
        ({"weights": ()}, "weights"),
        ({"chosen_weight": 0.1}, "chosen_weight"),
        ({"budget": -0.1}, "budget"),
        ({"n_seeds": 0}, "n_seeds"),
        ({"epochs": 0}, "epochs"),
        ({"noise": -1.0}, "noise"),
        ({"learned_graph": 1}, "learned_graph"),
        ({"seed": -1}, "seed"),
    ):
        with pytest.raises(ValueError, match=f"HierarchyFixedConfig.{field}"):
            HF.HierarchyFixedConfig(**bad)


def test_variants_are_lambda_0_the_weights_and_the_budget():
    config = HF.HierarchyFixedConfig(weights=(3e-2, 1e-2))
    keys = [v.key for v in HF.variants(config)]
    assert keys == ["lambda_0", "lambda_1e-2", "lambda_3e-2", "budget"]
    assert HF.chosen_key(config) == "lambda_3e-2"
    assert [v.key for v in HF.variants(HF.HierarchyFixedConfig(budget=0))][-1] != "budget"


def test_the_data_follow_the_graph():
    data = HF.make_data(HF.HierarchyFixedConfig.quick(graph="lines:2x3"), seed=0)
    assert len(data.classes) == 6 and data.classes[1] == "module 0, subtype 1"


# --------------------------------------------------------------------------- quick run


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    folder = registry.run_experiment(NAME, root, quick=True, seed=2, device="cpu", progress=False)
    return folder, json.loads((folder / "metrics.json").read_text())


def test_quick_run_writes_the_report_metrics_and_figures(quick_run):
    folder, metrics = quick_run
    assert {p.name for p in (folder / "figures").iterdir()} == {f"{f}.png" for f in HF.FIGURES}
    html = (folder / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(HF.FIGURES)
    assert "GSR against the controls" in html and "learned graph" in html
    assert metrics["seeds"] == [2] and metrics["graph"] == "lines:3x2"
    assert set(metrics["variants"]) == {"lambda_0", "lambda_3e-2", "budget"}
    assert set(metrics["verdict"]) == {"lambda_3e-2", "budget"}
    for v in metrics["variants"].values():
        assert set(v["scores"]) == set(HF.SCORES)
        assert all(-1 <= x <= 1 for x in v["scores"].values())
    assert metrics["variants"]["lambda_0"]["mse_ratio"] == pytest.approx(1.0)
    config = HF.HierarchyFixedConfig(**json.loads((folder / "config.json").read_text()))
    assert config == HF.HierarchyFixedConfig.quick(seed=2)
    assert metrics["learned_graph"]["per_seed"][0]["seed"] == 2


def test_verdict_compares_gsr_with_the_best_lambda_0_control(quick_run):
    _, metrics = quick_run
    zero = metrics["variants"]["lambda_0"]
    for key, verdicts in metrics["verdict"].items():
        record = metrics["variants"][key]
        for score, v in verdicts.items():
            controls = [zero["scores"][score], zero["arranged"][score], zero["null"][score]]
            controls.append(record["null"][score])
            assert v["control_score"] == pytest.approx(max(controls))
            assert v["margin"] == pytest.approx(record["scores"][score] - max(controls))
            wrecked = record["verdict"] == "wrecks the primary task"
            assert v["seeds"] == 1 and v["seeds_won"] == int(v["margin"] > 0)
            assert v["helps"] == (v["margin"] > 0 and not wrecked)
    headline = registry.get_experiment(NAME).headline(metrics)
    assert any("best control" in key for key in headline)


def _record(label: str, per_seed_scores: list[float], verdict: str = "close to λ = 0") -> dict:
    """A variant record whose every field (own order, arranged, null) holds the same
    per-seed scores, for :func:`HF._verdicts`."""
    seeds = [
        {
            "scores": dict.fromkeys(HF.SCORES, x),
            "arranged": dict.fromkeys(HF.SCORES, x),
            "null": {s: {"mean": 0.0} for s in HF.SCORES},
        }
        for x in per_seed_scores
    ]
    mean = float(np.mean(per_seed_scores))
    return {
        "label": label,
        "scores": dict.fromkeys(HF.SCORES, mean),
        "arranged": dict.fromkeys(HF.SCORES, mean),
        "null": dict.fromkeys(HF.SCORES, 0.0),
        "verdict": verdict,
        "mse_ratio": 1.2,
        "per_seed": seeds,
    }


def test_a_mean_margin_carried_by_a_minority_of_seeds_does_not_help():
    zero = _record("λ = 0", [0.6, 0.6, 0.6, 0.6, 0.6])
    controls = HF._controls(zero)
    lucky = HF._verdicts(_record("GSR", [1.0, 1.0, 0.5, 0.5, 0.5]), zero, controls)
    v = lucky["hierarchy"]
    assert v["margin"] == pytest.approx(0.7 - 0.6) and v["seeds_won"] == 2
    assert v["margin_se"] == pytest.approx(np.std([0.4, 0.4, -0.1, -0.1, -0.1], ddof=1) / 5**0.5)
    assert not v["helps"]
    steady = HF._verdicts(_record("GSR", [0.7, 0.7, 0.7, 0.5, 0.7]), zero, controls)
    assert steady["hierarchy"]["seeds_won"] == 4 and steady["hierarchy"]["helps"]
    wrecked = HF._verdicts(
        _record("GSR", [0.9] * 5, verdict="wrecks the primary task"), zero, controls
    )
    assert wrecked["hierarchy"]["margin"] > 0 and not wrecked["hierarchy"]["helps"]
