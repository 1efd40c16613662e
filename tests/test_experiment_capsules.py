"""The capsules experiment (quick run), its statistics and the capsule network."""

from __future__ import annotations

import itertools
import json
import math
from html import escape
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage, stats

import gsreg
from gsreg import GraphRegularizer, graphs
from gsreg import report as gsreg_report
from gsreg.experiments import CLOSE, COSTLY, WRECKED, lambda_label, registry
from gsreg.experiments.capsules import (
    CLAIM_VERDICTS,
    FEATURES,
    FIGURES,
    STRONG,
    CapsulesConfig,
    alignment_pvalue,
    architecture,
    capsule_arrangement,
    claim_verdict,
    consistency_matrix,
    consistency_summary,
    cosine_table,
    margin_loss,
    moment_features,
    permuted_consistency,
    perturbation_slopes,
    perturbed_reconstructions,
    slope_scale,
    split_half_reliability,
    transformation_signatures,
    wrap_half_turn,
)
from gsreg.models import CapsuleNet, DigitCapsules, PrimaryCapsules, squash

NAME = "capsules"


# --------------------------------------------------------------------------- quick run


@pytest.fixture(scope="module")
def quick_run_and_prose(tmp_path_factory, recording_prose):
    """The quick run's folder and the (template, values) its report prose was rendered from."""
    root = tmp_path_factory.mktemp("runs")
    with recording_prose() as calls:
        folder = registry.run_experiment(
            NAME, root, quick=True, seed=3, device="cpu", progress=False
        )
    return folder, calls


@pytest.fixture(scope="module")
def quick_run(quick_run_and_prose):
    return quick_run_and_prose[0]


def test_quick_run_writes_every_promised_file(quick_run):
    for file in ("report.html", "metrics.json", "config.json", "run.json"):
        assert (quick_run / file).stat().st_size > 0
    for figure in FIGURES:
        assert (quick_run / "figures" / f"{figure}.png").stat().st_size > 1000, figure
    assert sorted(p.stem for p in (quick_run / "figures").iterdir()) == sorted(FIGURES)
    html = (quick_run / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(FIGURES)
    assert "Summary" in html and "The claim" in html


def test_quick_run_report_holds_the_prose_of_every_template(quick_run_and_prose):
    folder, calls = quick_run_and_prose
    templates = Path(gsreg.__file__).parent / "templates" / NAME
    assert {f"{NAME}/{path.name}" for path in templates.glob("*.txt")} <= {t for t, _ in calls}
    page = (folder / "report.html").read_text()
    for template, values in calls:
        for paragraph in gsreg_report.prose(template, **values).split("\n\n"):
            assert escape(paragraph) in page, (template, paragraph)


def test_report_states_the_network_sizes_of_the_model():
    torch.manual_seed(0)
    model = CapsuleNet(
        conv_channels=8,
        primary_types=2,
        primary_dim=4,
        capsule_dim=6,
        decoder_hidden=(16,),
        conv_kernel=5,
        primary_kernel=7,
        primary_stride=2,
    )
    net = architecture(model)
    assert net["primary_grid"] == [(28 - 5 + 1 - 7) // 2 + 1] * 2 and net["n_pixels"] == 784
    assert net["conv_kernel"] == 5 and net["primary_stride"] == 2 and net["capsule_dim"] == 6
    text = gsreg_report.prose(
        "capsules/model.txt",
        net=net,
        recon_weight=0.0005,
        epochs=1,
        n_train=10,
        n_test=5,
        graph="capsules:10x6",
        layer="digit_caps",
        n_per_class=2,
        steps=[-0.25, 0.0, 0.25],
        features=list(FEATURES),
        n_permutations=9,
    )
    assert "conv 5x5 (8 channels" in text and "on a 9x9 grid, 7x7 conv with stride 2" in text
    assert "(16 - 784)" in text and "the 60 pose values" in text


def test_config_json_rebuilds_the_config(quick_run):
    saved = json.loads((quick_run / "config.json").read_text())
    assert CapsulesConfig(**saved) == CapsulesConfig.quick(seed=3)
    run = registry.read_run(quick_run)
    assert run["experiment"] == NAME and run["quick"] is True and run["seed"] == 3
    assert run["headline"] and all(isinstance(v, str) for v in run["headline"].values())


def test_quick_run_metrics(quick_run):
    metrics = json.loads((quick_run / "metrics.json").read_text())
    config = CapsulesConfig.quick(seed=3)
    assert metrics["graph"] == "capsules:10x16" and metrics["layer"] == "digit_caps"
    assert metrics["features"] == list(FEATURES)
    assert len(metrics["models"]) == len(config.weights) * config.n_restarts
    for m in metrics["models"].values():
        assert 0.3 < m["test_accuracy"] <= 1.0  # chance is 0.1
        assert 0 < m["test_mse"] < 0.2
        assert 0 < m["mean_true_length"] < 1
        assert len(m["consistency_by_dimension"]) == config.capsule_dim
        for key in ("consistency", "shuffled"):
            assert -1 <= m[key] <= 1
        assert m["alignment"] == pytest.approx(m["consistency"] - m["shuffled"])
        assert np.mean(m["consistency_by_dimension"]) == pytest.approx(m["consistency"])
        assert 1 / (config.n_permutations + 1) <= m["p_value"] <= 1
        assert -1 <= m["reliability"] <= 1
        assert all(math.isfinite(v) and v > 0 for v in m["feature_scale"].values())
        assert len(m["history"]) == config.epochs
        assert m["n_consistent_dims"] == sum(c >= STRONG for c in m["consistency_by_dimension"])
    assert set(metrics["by_weight"]) == {lambda_label(w) for w in config.weights}
    assert metrics["best"]["weight"] > 0
    assert metrics["claim"] in CLAIM_VERDICTS
    assert metrics["capsule_dim"] == config.capsule_dim
    for summary in metrics["by_weight"].values():
        assert summary["verdict"] in (CLOSE, COSTLY, WRECKED)
        assert summary["mse_verdict"] in (CLOSE, COSTLY, WRECKED)
        assert summary["n_restarts"] == config.n_restarts
    assert 0 < metrics["class_mean_mse"] < 0.1


def test_config_validation():
    with pytest.raises(ValueError, match="weights must include 0"):
        CapsulesConfig(weights=(1e-2,))
    with pytest.raises(ValueError, match="n_steps must be odd"):
        CapsulesConfig(n_steps=4)
    with pytest.raises(ValueError, match="grid_classes"):
        CapsulesConfig(grid_classes=(10,))
    with pytest.raises(ValueError, match="epochs"):
        CapsulesConfig(epochs=0)


# --------------------------------------------------------------------------- moments


def _ellipse(angle: float, a: float = 9.0, b: float = 3.0, size: int = 41) -> np.ndarray:
    """Binary ellipse whose major axis points along (cos angle, sin angle) in (x=col, y=row)."""
    y, x = np.mgrid[:size, :size].astype(float) - (size - 1) / 2
    u = x * np.cos(angle) + y * np.sin(angle)
    v = -x * np.sin(angle) + y * np.cos(angle)
    return ((u / a) ** 2 + (v / b) ** 2 <= 1).astype(float)


@pytest.mark.parametrize("angle_deg", [0, 20, 45, 80, 90, 100, 135, 170])
def test_tilt_of_a_rotated_ellipse(angle_deg):
    angle = np.deg2rad(angle_deg)
    tilt = moment_features(_ellipse(angle))[FEATURES.index("tilt")]
    # major axis at `angle` from the x axis (toward the rows) is `angle - 90°` from vertical
    expected = wrap_half_turn(angle - np.pi / 2)
    assert abs(wrap_half_turn(tilt - expected)) < np.deg2rad(1.5)


def test_tilt_sign_top_leaning_right():
    image = np.zeros((30, 30))
    for row in range(5, 25):  # a bar whose top is further right than its bottom
        col = 15 + (15 - row) // 2
        image[row, col - 1 : col + 2] = 1
    tilt = moment_features(image)[FEATURES.index("tilt")]
    assert 0 < tilt < np.pi / 4


def test_mass_centroid_width_height_against_scipy():
    rng = np.random.default_rng(0)
    image = rng.random((28, 28)) * (rng.random((28, 28)) > 0.6)
    f = dict(zip(FEATURES, moment_features(image), strict=True))
    cy, cx = ndimage.center_of_mass(image)
    rows, cols = np.mgrid[:28, :28]
    w = image.ravel()
    assert f["mass"] == pytest.approx(image.sum())
    assert (f["centroid x"], f["centroid y"]) == pytest.approx((cx, cy))
    cov = np.cov(np.stack([cols.ravel(), rows.ravel()]), aweights=w, bias=True)
    assert f["width"] == pytest.approx(math.sqrt(cov[0, 0]))
    assert f["height"] == pytest.approx(math.sqrt(cov[1, 1]))
    assert f["slant"] == pytest.approx(cov[0, 1] / cov[1, 1])


def test_slant_of_a_sheared_bar_and_skew_against_scipy():
    image = np.zeros((40, 40))
    shear = 0.4
    for row in range(6, 34):
        col = int(round(20 + shear * (row - 20)))
        image[row, col - 1 : col + 2] = 1
    f = dict(zip(FEATURES, moment_features(image), strict=True))
    assert f["slant"] == pytest.approx(shear, abs=0.03)
    wedge = np.zeros((30, 30))
    for row in range(5, 25):  # wider at the bottom: mass piles up low, a long tail upward
        wedge[row, 15 - (row - 5) // 2 : 16 + (row - 5) // 2] = 1
    rows, cols = np.nonzero(wedge)
    g = dict(zip(FEATURES, moment_features(wedge), strict=True))
    assert g["skew y"] == pytest.approx(stats.skew(rows))
    assert g["skew x"] == pytest.approx(stats.skew(cols), abs=1e-9)
    assert g["skew y"] < 0


def test_moment_features_batch_shape_and_negative_pixels():
    images = np.random.default_rng(1).random((2, 3, 10, 12))
    out = moment_features(images)
    assert out.shape == (2, 3, len(FEATURES))
    assert np.allclose(out[1, 2], moment_features(images[1, 2]))
    empty = moment_features(images[0, 0] - 2.0)  # every pixel clipped to 0
    assert empty[FEATURES.index("mass")] == 0 and np.all(np.isfinite(empty))
    with pytest.raises(ValueError):
        moment_features(np.zeros(5))


def test_wrap_half_turn():
    angles = np.array([0.0, np.pi / 2, -np.pi / 2, np.pi, 3.0, -3.0])
    wrapped = wrap_half_turn(angles)
    assert np.all((wrapped >= -np.pi / 2) & (wrapped < np.pi / 2))
    assert np.allclose(np.sin(2 * wrapped), np.sin(2 * angles))  # same axis
    assert np.allclose(np.cos(2 * wrapped), np.cos(2 * angles))


# --------------------------------------------------------------------------- signatures


def test_perturbation_slopes_against_polyfit():
    rng = np.random.default_rng(2)
    steps = np.linspace(-0.25, 0.25, 5)
    features = rng.normal(size=(3, 4, 5, len(FEATURES)))
    features[..., FEATURES.index("tilt")] *= 0.1  # far from the wrap
    slopes = perturbation_slopes(features, steps)
    for i, j, f in itertools.product(range(3), range(4), range(len(FEATURES))):
        assert slopes[i, j, f] == pytest.approx(np.polyfit(steps, features[i, j, :, f], 1)[0])


def test_perturbation_slopes_unwraps_the_tilt():
    steps = np.linspace(-0.25, 0.25, 5)
    tilt = wrap_half_turn(np.pi / 2 - 0.02 + 0.2 * steps)  # crosses the wrap at +-pi/2
    features = np.zeros((5, len(FEATURES)))
    features[:, FEATURES.index("tilt")] = tilt
    assert perturbation_slopes(features, steps)[FEATURES.index("tilt")] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="contain 0"):
        perturbation_slopes(features, steps + 0.1)


def test_slope_scale_is_the_root_mean_square():
    rng = np.random.default_rng(8)
    slopes = rng.normal(size=(5, 4, 3))
    slopes[..., 2] = 0
    scale = slope_scale(slopes)
    for f in range(2):
        assert scale[f] == pytest.approx(math.sqrt(np.mean(slopes[..., f].ravel() ** 2)))
    assert scale[2] == 1.0


def test_transformation_signatures_against_a_loop():
    rng = np.random.default_rng(3)
    slopes = rng.normal(size=(12, 4, 3))
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 1])
    scale = np.array([1.0, 2.0, 0.5])
    sig = transformation_signatures(slopes, labels, scale, n_classes=4)
    for c in range(3):
        members = [slopes[i] / scale for i in range(12) if labels[i] == c]
        assert np.allclose(sig[c], sum(members) / len(members))
    assert np.all(np.isnan(sig[3]))


def test_split_half_reliability_against_a_loop():
    rng = np.random.default_rng(9)
    C, D, F = 3, 4, 5
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 2, 1, 1])
    slopes = rng.normal(size=(len(labels), D, F))
    scale = rng.random(F) + 0.5
    values = []
    for c in range(C):
        members = [i for i in range(len(labels)) if labels[i] == c]
        even = np.mean([slopes[i] / scale for i in members[0::2]], axis=0)
        odd = np.mean([slopes[i] / scale for i in members[1::2]], axis=0)
        values += [_cos(even[k], odd[k]) for k in range(D)]
    got = split_half_reliability(slopes, labels, scale, n_classes=C)
    assert got == pytest.approx(np.mean(values))
    same = np.repeat(slopes[:1], len(labels), axis=0)  # every digit responds alike
    assert split_half_reliability(same, labels, scale, n_classes=C) == pytest.approx(1.0)


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_consistency_matrix_against_a_loop():
    rng = np.random.default_rng(4)
    C, D, F = 5, 4, 6
    sig = rng.normal(size=(C, D, F))
    G = cosine_table(sig)
    M = consistency_matrix(sig)
    for k, kk in itertools.product(range(D), range(D)):
        values = [_cos(sig[c, k], sig[d, kk]) for c in range(C) for d in range(C) if c != d]
        assert M[k, kk] == pytest.approx(np.mean(values))
        assert G[1, k, 3, kk] == pytest.approx(_cos(sig[1, k], sig[3, kk]))
    summary = consistency_summary(M)
    diagonal = [M[k, k] for k in range(D)]
    off = [M[k, kk] for k in range(D) for kk in range(D) if k != kk]
    assert summary["consistency"] == pytest.approx(np.mean(diagonal))
    assert summary["shuffled"] == pytest.approx(np.mean(off))
    assert summary["alignment"] == pytest.approx(np.mean(diagonal) - np.mean(off))


def test_cosine_of_a_zero_signature_is_zero():
    sig = np.ones((2, 2, 3))
    sig[0, 1] = 0
    G = cosine_table(sig)
    assert G[0, 1, 1, 1] == 0 and G[0, 0, 1, 0] == pytest.approx(1.0)


def test_permuted_consistency_against_a_loop():
    rng = np.random.default_rng(5)
    C, D = 4, 5
    sig = rng.normal(size=(C, D, 3))
    perms = np.stack([np.stack([rng.permutation(D) for _ in range(C)]) for _ in range(6)])
    got = permuted_consistency(sig, perms)
    for p in range(6):
        values = [
            _cos(sig[c, perms[p, c, k]], sig[d, perms[p, d, k]])
            for k in range(D)
            for c in range(C)
            for d in range(C)
            if c != d
        ]
        assert got[p] == pytest.approx(np.mean(values))
    identity = np.broadcast_to(np.arange(D), (1, C, D))
    assert permuted_consistency(sig, identity)[0] == pytest.approx(
        consistency_summary(consistency_matrix(sig))["consistency"]
    )


def test_alignment_pvalue_detects_alignment_and_is_calibrated():
    rng = np.random.default_rng(6)
    C, D, F = 10, 8, 9
    shared = rng.normal(size=(D, F))
    aligned = shared + 0.3 * rng.normal(size=(C, D, F))
    assert alignment_pvalue(aligned, 200, seed=0) == pytest.approx(1 / 201)
    null = [alignment_pvalue(rng.normal(size=(C, D, F)), 200, seed=s) for s in range(60)]
    assert 0.0 <= np.mean(np.array(null) < 0.1) <= 0.25  # about 10% under the null
    assert 0.3 < np.mean(null) < 0.7


def _summary(alignments, p_values, consistency, verdict="close to λ = 0"):
    return {
        "alignment_by_restart": alignments,
        "consistency_mean": consistency,
        "significant_fraction": float(np.mean(np.array(p_values) < 0.01)),
        "verdict": verdict,
    }


def test_claim_verdict_against_the_best_control():
    none = _summary([-0.02, 0.01], [0.8, 0.4], 0.0)
    assert claim_verdict(_summary([0.6, 0.55], [0.001, 0.001], 0.6), none) == "reproduced"
    assert claim_verdict(_summary([0.1, 0.08], [0.001, 0.001], 0.1), none) == "weak"
    assert claim_verdict(_summary([0.1, 0.0], [0.001, 0.3], 0.1), none) == "not reproduced"
    assert claim_verdict(_summary([0.1, 0.005], [0.001, 0.001], 0.1), none) == "not reproduced"
    wrecked = _summary([0.6, 0.6], [0.001, 0.001], 0.6, "wrecks the primary task")
    assert claim_verdict(wrecked, none) == "not reproduced"


def test_capsule_arrangement_undoes_a_planted_relabelling():
    rng = np.random.default_rng(8)
    C, D, F = 6, 7, 9
    shared = rng.normal(size=(D, F))
    signatures = shared + 0.2 * rng.normal(size=(C, D, F))
    planted = np.argsort(rng.random((C, D)), axis=1)  # capsule c keeps dim k at planted[c, k]
    scrambled = np.empty_like(signatures)
    for c in range(C):
        scrambled[c, planted[c]] = signatures[c]
    perm = capsule_arrangement(cosine_table(scrambled).reshape(C * D, C * D), C, D)
    assert perm.shape == (C, D) and perm.dtype == np.int64
    assert all(sorted(row) == list(range(D)) for row in perm)
    relabelled = np.take_along_axis(scrambled, perm[:, :, None], axis=1)
    # the same labels up to one relabelling shared by every capsule
    assert all(
        (perm[c][np.argsort(perm[0])] == planted[c][np.argsort(planted[0])]).all() for c in range(C)
    )
    summary = consistency_summary(consistency_matrix(relabelled))
    assert summary["alignment"] == pytest.approx(
        consistency_summary(consistency_matrix(signatures))["alignment"]
    )


def test_capsule_arrangement_is_never_worse_than_the_identity():
    rng = np.random.default_rng(9)
    C, D = 5, 6
    for _ in range(5):
        sig = rng.normal(size=(C, D, 9))
        perm = capsule_arrangement(cosine_table(sig).reshape(C * D, C * D), C, D)
        identity = np.broadcast_to(np.arange(D), (1, C, D))
        assert permuted_consistency(sig, perm[None])[0] >= (
            permuted_consistency(sig, identity)[0] - 1e-12
        )


def test_margin_loss_against_a_loop():
    rng = np.random.default_rng(7)
    lengths = rng.random((6, 10))
    labels = rng.integers(0, 10, 6)
    expected = np.mean(
        [
            sum(
                max(0.0, 0.9 - lengths[b, c]) ** 2
                if c == labels[b]
                else 0.5 * max(0.0, lengths[b, c] - 0.1) ** 2
                for c in range(10)
            )
            for b in range(6)
        ]
    )
    got = margin_loss(torch.tensor(lengths), torch.tensor(labels))
    assert float(got) == pytest.approx(expected)


# --------------------------------------------------------------------------- the network


def test_squash_keeps_direction_and_maps_length():
    s = torch.randn(5, 7, 16, dtype=torch.float64)
    v = squash(s)
    norm = s.norm(dim=-1, keepdim=True)
    assert torch.allclose(v, norm**2 / (1 + norm**2) * s / norm)
    assert torch.all(v.norm(dim=-1) < 1)


def test_primary_capsules_layout():
    torch.manual_seed(0)
    layer = PrimaryCapsules(in_channels=3, types=2, dim=4, kernel=3, stride=2)
    x = torch.randn(2, 3, 9, 9)
    u = layer(x)  # grid (9 - 3) // 2 + 1 = 4
    assert u.shape == (2, 2 * 16, 4)
    raw = layer.conv(x)  # (2, 8, 4, 4)
    t, row, col = 1, 2, 3  # capsule of type t at (row, col) is number t*16 + row*4 + col
    assert torch.allclose(
        u[:, t * 16 + row * 4 + col], squash(raw[:, t * 4 : (t + 1) * 4, row, col])
    )


def test_one_routing_round_is_the_squashed_mean_prediction():
    torch.manual_seed(1)
    layer = DigitCapsules(n_in=6, in_dim=3, n_out=4, out_dim=5, iterations=1)
    u = torch.randn(2, 6, 3)
    W = layer.weight.reshape(6, 4, 5, 3)
    predictions = torch.stack(
        [torch.stack([W[i, j] @ u[b, i] for i in range(6)]) for b in range(2) for j in range(4)]
    ).reshape(2, 4, 6, 5)
    # coupling 1/n_out for every (input, output) pair, predictions summed over the inputs
    assert torch.allclose(layer(u), squash(predictions.sum(dim=2) / 4), atol=1e-6)


def test_routing_rounds_raise_the_agreeing_output():
    """All inputs predict the same vector for output 0 and cancelling vectors (pairs of
    opposites) for outputs 1 and 2: routing moves their coupling to output 0, whose
    length then grows with each round while the others stay 0."""
    torch.manual_seed(2)
    half = 20
    scattered = torch.randn(half, 2, 4, 1)
    weight = torch.cat([scattered, -scattered])  # (40, 2, 4, 1): outputs 1 and 2
    agreeing = torch.tensor([0.3, 0.0, 0.0, 0.0]).expand(2 * half, 1, 4)[..., None]
    weight = torch.cat([agreeing, weight], dim=1).reshape(2 * half, 12, 1)
    lengths = []
    for rounds in (1, 2, 3):
        layer = DigitCapsules(n_in=2 * half, in_dim=1, n_out=3, out_dim=4, iterations=rounds)
        with torch.no_grad():
            layer.weight.copy_(weight)
            lengths.append(layer(torch.ones(1, 2 * half, 1)).norm(dim=-1)[0])
    assert lengths[0][0] < lengths[1][0] < lengths[2][0]
    assert float(lengths[2][1:].abs().max()) < 1e-6


def test_capsule_net_shapes_masking_and_flat_input():
    torch.manual_seed(3)
    model = CapsuleNet(
        conv_channels=8, primary_types=2, primary_dim=4, capsule_dim=6, decoder_hidden=(16,)
    )
    model.eval()
    x = torch.rand(3, 784)
    lengths, rec = model(x)
    assert lengths.shape == (3, 10) and rec.shape == (3, 784)
    assert torch.all((rec >= 0) & (rec <= 1))
    assert torch.allclose(model(x.reshape(3, 1, 28, 28))[0], lengths)
    poses = model.poses(x)
    assert torch.allclose(poses.norm(dim=-1), lengths)
    classes = torch.tensor([1, 4, 9])
    other = poses.clone()
    other[:, 0] += 5.0  # capsule 0 is masked for these classes
    assert torch.allclose(model.decode(poses, classes), model.decode(other, classes))
    assert torch.allclose(model(x)[1], model.decode(poses, lengths.argmax(dim=1)))
    assert CapsuleNet(**model.config).config == model.config
    with pytest.raises(ValueError, match="expects input"):
        model(torch.rand(2, 100))
    with pytest.raises(ValueError, match="too small"):
        CapsuleNet(in_shape=(1, 12, 12))


def test_gsr_on_digit_caps_is_the_capsule_graph_energy():
    torch.manual_seed(4)
    model = CapsuleNet(
        conv_channels=8, primary_types=2, primary_dim=4, capsule_dim=6, decoder_hidden=(16,)
    )
    reg = GraphRegularizer(
        model, {"digit_caps": graphs.capsules(10, 6)}, weight=1.0, nodes="flatten"
    )
    model.train()
    x = torch.rand(4, 784)
    model(x, torch.tensor([0, 1, 2, 3]))
    with torch.no_grad():  # the hook collects nothing without autograd
        v = model.poses(x)
    expected = np.mean(
        [
            sum(
                float(v[b, c, k] - v[b, d, k]) ** 2
                for k in range(6)
                for c in range(10)
                for d in range(c + 1, 10)
            )
            for b in range(4)
        ]
    )
    assert float(reg.penalty().detach()) == pytest.approx(expected, rel=1e-5)
    reg.remove()


def test_perturbed_reconstructions_decode_the_shifted_capsule():
    torch.manual_seed(5)
    model = CapsuleNet(
        conv_channels=8, primary_types=2, primary_dim=4, capsule_dim=6, decoder_hidden=(16,)
    ).eval()
    poses = torch.randn(2, 10, 6) * 0.3
    classes = torch.tensor([3, 8])
    steps = np.array([-0.25, 0.0, 0.25])
    out = perturbed_reconstructions(model, poses, classes, np.array([1, 4]), steps)
    assert out.shape == (2, 2, 3, 784)
    shifted = poses[1:2].clone()
    shifted[0, 8, 4] += 0.25
    with torch.no_grad():
        expected = model.decode(shifted, classes[1:2]).numpy()[0]
    assert np.allclose(out[1, 1, 2], expected, atol=1e-6)
