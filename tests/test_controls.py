"""gsreg.analysis map controls and verdicts: a layer beside its arranged self and λ = 0."""

import numpy as np
import pytest

from gsreg import analysis, graphs


def fields(morans_i, arranged, territories=4, patterns=3.0, decodability=0.9):
    """A map_controls-like result with the scores map_verdict reads."""
    scores = {
        "morans_i": morans_i,
        "territories": territories,
        "participation_ratio": patterns,
        "decodability": decodability,
    }
    return scores | {"arranged": scores | {"morans_i": arranged}}


def test_gsr_helps_only_above_the_best_control_with_its_territories_patterns_and_information():
    reference = fields(-0.02, 0.45)
    verdict = analysis.map_verdict(fields(0.60, 0.62), reference)
    assert verdict["best_control"] == "λ=0 arranged" and verdict["control_score"] == 0.45
    assert verdict["margin"] == pytest.approx(0.15) and verdict["helps"] is True
    assert "GSR helps" not in analysis.map_verdict_text(verdict, "GSR", "1.01x")
    assert analysis.map_verdict_text(verdict, "GSR", "1.01x").startswith(
        "GSR beats the best control (λ=0 arranged): Moran's I 0.600 against 0.450 (+0.150)"
    )
    below = analysis.map_verdict(fields(0.30, 0.40), reference)
    assert below["margin"] == pytest.approx(-0.15) and below["helps"] is False
    assert "does not help" in analysis.map_verdict_short(below, "0.99x MSE")


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"territories": 3}, "fewer class territories"),
        ({"patterns": 1.05}, "fewer distinct class patterns"),
        ({"decodability": 0.88}, "less class information"),
    ],
)
def test_a_smoother_layer_that_loses_territories_patterns_or_information_does_not_help(
    change, reason
):
    verdict = analysis.map_verdict(fields(0.65, 0.6, **change), fields(0.0, 0.45))
    assert verdict["margin"] > 0 and verdict["helps"] is False
    text = analysis.map_verdict_text(verdict, "The centred form", "1.02x the MSE")
    assert reason in text and text.endswith("GSR does not help here.")


def test_one_ramp_shared_by_every_class_scores_high_but_is_refused():
    rng = np.random.default_rng(0)
    graph = graphs.grid(6, 6)
    ramp = graph.coords[:, 0] + 0.1 * rng.normal(size=36)
    labels = np.repeat(np.arange(4), 50)
    Z_ramp = np.outer(labels + 1.0, ramp) + 0.01 * rng.normal(size=(200, 36))
    Z_plain = np.eye(4)[labels] @ rng.normal(size=(4, 36)) + 0.3 * rng.normal(size=(200, 36))
    ramp_fields = analysis.map_controls(Z_ramp, labels, Z_ramp, labels, graph)
    plain_fields = analysis.map_controls(Z_plain, labels, Z_plain, labels, graph)
    assert ramp_fields["morans_i"] > 0.7 > plain_fields["morans_i"]
    assert ramp_fields["participation_ratio"] < 1.1
    verdict = analysis.map_verdict(ramp_fields, plain_fields)
    assert verdict["margin"] > 0 and verdict["patterns"] is False and not verdict["helps"]


def test_map_controls_scores_the_arranged_layer_on_rows_it_was_not_fitted_on():
    rng = np.random.default_rng(1)
    graph = graphs.grid(4, 4)
    labels = np.repeat(np.arange(4), 60)
    smooth = np.exp(
        -((graph.coords[:, None] - graph.coords[[0, 3, 12, 15]][None]) ** 2).sum(-1) / 2.0
    )  # (16, 4): each class lights one corner
    Z = np.eye(4)[labels] @ smooth.T + 0.2 * rng.normal(size=(240, 16))
    shuffled = Z[:, rng.permutation(16)]
    train, test = slice(0, None, 2), slice(1, None, 2)
    result = analysis.map_controls(
        shuffled[train], labels[train], shuffled[test], labels[test], graph
    )
    energies = result["arranged"]["arrangement_energy"]
    assert energies["arranged"] < energies["identity"]
    assert result["arranged"]["morans_i"] > result["morans_i"] + 0.3
    # the same units, only placed: scale and class information do not change
    assert result["arranged"]["decodability"] == result["decodability"]
    assert result["arranged"]["activation_norm"] == pytest.approx(result["activation_norm"])


def test_a_scalar_score_is_judged_against_its_best_control_and_its_task_cost():
    from gsreg.experiments import CLOSE, WRECKED, against_controls, verdict_ending

    higher = against_controls(0.7, {"λ=0": 0.2, "λ=0 arranged": 0.5, "bad": float("nan")}, CLOSE)
    assert higher["best_control"] == "λ=0 arranged" and higher["margin"] == pytest.approx(0.2)
    assert higher["helps"] is True and verdict_ending(higher, "x") == ": GSR helps here."
    lower = against_controls(0.25, {"λ=0": 4.9, "λ=0 arranged": 1.29}, CLOSE, better="lower")
    assert lower["best_control"] == "λ=0 arranged" and lower["margin"] == pytest.approx(1.04)
    wrecked = against_controls(0.9, {"λ=0": 0.6}, WRECKED)
    assert wrecked["margin"] > 0 and wrecked["helps"] is False
    assert "the reconstruction is wrecked" in verdict_ending(wrecked, "the reconstruction")
    with pytest.raises(ValueError, match="better"):
        against_controls(0.1, {"λ=0": 0.2}, CLOSE, better="smaller")
