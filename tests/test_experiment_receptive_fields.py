"""The receptive-fields experiment: its read-outs on hand-made fields, the projective
field against finite differences, the verdict rule, its config checks and a quick run's
files."""

from __future__ import annotations

import dataclasses
import json
from html import escape
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

import gsreg
from gsreg import graphs, report
from gsreg.experiments import receptive_fields as RF
from gsreg.experiments import registry
from gsreg.models import DenseAutoencoder

NAME = "receptive-fields"
GRID = graphs.grid(8, 8)
TEMPLATES = Path(gsreg.__file__).parent / "templates"


def gaussian_field(sigma: float, centre: tuple[float, float], shape=(28, 28)) -> np.ndarray:
    """exp(-||r - centre||^2 / (2 sigma^2)) on an image of ``shape``."""
    rows, cols = np.indices(shape, dtype=float)
    return np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2 * sigma**2))


def grid_fields(spacing: float = 3.0, offset: float = 2.0) -> np.ndarray:
    """64 small blobs whose centres follow the 8x8 grid: node k = (i, j) row-major has
    its blob at pixel (offset + spacing i, offset + spacing j). Returns (64, 28, 28)."""
    return np.stack(
        [
            gaussian_field(0.8, (offset + spacing * (k // 8), offset + spacing * (k % 8)))
            for k in range(64)
        ]
    )


# --------------------------------------------------------------------------- spread


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.5])
def test_a_gaussian_blob_of_width_sigma_has_spread_sigma_about_its_centre(sigma):
    # |f|^2 = exp(-r^2 / sigma^2): variance sigma^2 / 2 per axis, sigma^2 over both
    field = gaussian_field(sigma, (13.0, 15.0))
    spread, centres = RF.field_spread(field[None])
    assert spread[0] == pytest.approx(sigma, rel=3e-3)  # sampled on integer pixels
    np.testing.assert_allclose(centres[0], [13.0, 15.0], atol=1e-6)


def test_spread_ignores_sign_and_scale_of_a_field():
    field = gaussian_field(2.0, (10.0, 9.0)) - gaussian_field(1.0, (18.0, 12.0))
    spread, centres = RF.field_spread(np.stack([field, -7.5 * field]))
    assert spread[0] == pytest.approx(spread[1])
    np.testing.assert_allclose(centres[0], centres[1])


def test_a_uniform_field_has_the_uniform_spread_of_the_pixel_coordinates():
    spread, centres = RF.field_spread(np.ones((1, 28, 28)))
    rows, cols = np.indices((28, 28))
    direct = np.sqrt(rows.var() + cols.var())
    assert spread[0] == pytest.approx(direct)
    assert RF.uniform_spread((28, 28)) == pytest.approx(direct)
    np.testing.assert_allclose(centres[0], [13.5, 13.5])


def test_field_spread_refuses_a_flat_field_array():
    with pytest.raises(ValueError, match=r"\(n, H, W\)"):
        RF.field_spread(np.ones((64, 784)))


# --------------------------------------------------------------------------- topography


def test_fields_whose_centres_follow_the_grid_have_topography_one():
    _, centres = RF.field_spread(grid_fields())
    exact = 2.0 + 3.0 * np.stack([np.arange(64) // 8, np.arange(64) % 8], axis=1)
    np.testing.assert_allclose(centres, exact, atol=1e-4)  # blobs cut by the border
    # exact centres: the tied grid distances stay tied in the image (rounding noise in
    # estimated centres would break the ties at random and give 0.999)
    assert RF.topography(exact, GRID) == pytest.approx(1.0)
    assert RF.topography(centres, GRID) > 0.99
    null = RF.topography_null(centres, GRID, n_permutations=200, seed=0)
    assert null["p"] == pytest.approx(1 / 201)
    assert abs(null["mean"]) < 0.05 and null["q95"] < 0.3


def test_shuffled_fields_have_topography_near_zero():
    _, centres = RF.field_spread(grid_fields())
    rhos = [
        RF.topography(centres[np.random.default_rng(seed).permutation(64)], GRID)
        for seed in range(20)
    ]
    assert abs(np.mean(rhos)) < 0.05
    assert max(abs(r) for r in rhos) < 0.25


def test_topography_is_the_spearman_correlation_of_pairwise_distances():
    centres = np.random.default_rng(3).uniform(0, 27, size=(64, 2))
    grid_d, image_d = [], []
    for i in range(64):
        for j in range(i + 1, 64):
            grid_d.append(np.hypot(*(GRID.coords[i] - GRID.coords[j])))
            image_d.append(np.hypot(*(centres[i] - centres[j])))
    assert RF.topography(centres, GRID) == pytest.approx(spearmanr(grid_d, image_d)[0])


def test_topography_refuses_centres_of_the_wrong_shape_or_nan():
    with pytest.raises(ValueError, match=r"\(64, 2\)"):
        RF.topography(np.zeros((10, 2)), GRID)
    centres = np.zeros((64, 2))
    centres[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        RF.topography(centres, GRID)


def test_the_mosaic_puts_node_k_at_row_k_div_w_and_column_k_mod_w():
    fields = np.zeros((64, 28, 28))
    fields[10, 0, 0] = 2.0  # node 10: row 1, column 2
    mosaic = RF.field_mosaic(fields, GRID, gap=2)
    assert mosaic.shape == (8 * 30, 8 * 30)
    assert mosaic[30, 60] == 1.0  # scaled to its peak
    assert np.nansum(np.abs(mosaic)) == 1.0
    assert np.isnan(mosaic[28, 0])  # a gap


# --------------------------------------------------------------------------- projective field


def test_projective_fields_are_the_mean_jacobian_of_the_decoder_after_the_grid_layer():
    torch.manual_seed(0)
    model = DenseAutoencoder(784, hidden=(50, 50), latent=16, decoder_hidden=(64, 50)).double()
    Z = torch.rand(5, 64, dtype=torch.float64)
    fields = RF.projective_fields(model, Z.numpy(), batch_size=2)
    assert fields.shape == (64, 784)
    tail = lambda z: model.decoder.out(model.decoder[1](z))  # noqa: E731
    eps = 1e-6
    with torch.no_grad():
        for k in (0, 17, 63):
            step = torch.zeros(64, dtype=torch.float64)
            step[k] = eps
            difference = (tail(Z + step) - tail(Z - step)) / (2 * eps)
            np.testing.assert_allclose(fields[k], difference.mean(0).numpy(), atol=1e-6)


# --------------------------------------------------------------------------- verdict


def _seed_runs(spread: float, topo: float, mse_ratio: float) -> dict:
    """One seed's models: λ = 0 with spread 8 and topography controls 0.1 / 0.3 / 0.4, a
    penalty "p" with the given numbers and a null whose 95th percentile is 0.2."""
    null = {"mean": 0.0, "sd": 0.1, "q95": 0.2, "p": 0.01}
    return {
        RF.REFERENCE: {
            "spread": 8.0,
            "topography": 0.1,
            "topography_arranged": 0.3,
            "topography_field_arranged": 0.4,
            "null": null,
            "mse_ratio": 1.0,
        },
        "p": {"spread": spread, "topography": topo, "null": null, "mse_ratio": mse_ratio},
    }


def test_the_claim_holds_only_local_topographic_and_cheap():
    def verdict(spread, topo, mse):
        runs = {str(s): _seed_runs(spread, topo, mse) for s in range(3)}
        return RF.claim_verdict("p", runs, [0, 1, 2])

    good = verdict(4.0, 0.6, 1.02)
    assert good["holds"]
    assert good["topography"]["best_control"] == "λ = 0 arranged by fields"
    assert good["topography"]["margin"] == pytest.approx(0.2)
    assert good["spread"]["ratio"] == pytest.approx(0.5)
    assert good["spread"]["seeds_won"] == 3 and good["topography"]["seeds_won"] == 3
    assert not verdict(4.0, 0.6, 1.2)["holds"]  # costly
    assert not verdict(7.8, 0.6, 1.02)["holds"]  # barely more local than λ = 0
    assert not verdict(4.0, 0.35, 1.02)["holds"]  # behind the field-arranged control


def test_the_claim_needs_most_seeds_not_only_the_mean():
    runs = {"0": _seed_runs(2.0, 0.9, 1.0), "1": _seed_runs(7.9, 0.35, 1.0)}
    runs["2"] = _seed_runs(7.9, 0.35, 1.0)
    v = RF.claim_verdict("p", runs, [0, 1, 2])
    assert v["spread"]["margin"] > 0 and v["topography"]["margin"] > 0  # the means are ahead
    assert v["spread"]["seeds_won"] == 1 and not v["holds"]


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("graph", "ring:10", "grid"),
        ("filter_order", 64, "filter_order"),
        ("n_seeds", 0, "n_seeds"),
        ("budget", 0.0, "budget"),
        ("heat_t", -1.0, "heat_t"),
        ("l1", 1, "l1"),
        ("centered", "yes", "centered"),
        ("epochs", 0, "epochs"),
    ],
)
def test_config_refuses_bad_values_naming_the_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        RF.ReceptiveFieldsConfig(**{field: value})


def test_config_round_trips_through_json_and_lists_its_seeds():
    config = RF.ReceptiveFieldsConfig.quick(seed=4, n_seeds=2)
    again = RF.ReceptiveFieldsConfig(**json.loads(json.dumps(dataclasses.asdict(config))))
    assert again == config and config.seeds == [4, 5]
    keys = ["lambda_0", "gsr", "heat", "band", "band_centered", "heat_l1"]
    assert [v.key for v in RF.variants(config)] == keys
    fewer = RF.ReceptiveFieldsConfig.quick(l1=False, centered=False)
    assert [v.key for v in RF.variants(fewer)] == keys[:4]


# --------------------------------------------------------------------------- quick run


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, recording_prose):
    root = tmp_path_factory.mktemp("runs")
    with recording_prose() as rendered:
        folder = registry.run_experiment(
            NAME, root, quick=True, seed=1, device="cpu", progress=False
        )
    return folder, json.loads((folder / "metrics.json").read_text()), rendered


def test_quick_run_writes_the_report_metrics_and_figures(quick_run):
    folder, metrics, _ = quick_run
    assert {p.name for p in (folder / "figures").iterdir()} == {f"{f}.png" for f in RF.FIGURES}
    html = (folder / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(RF.FIGURES)
    assert "Verdicts" in html and "The claim" in html
    assert metrics["seeds"] == [1] and metrics["graph"] == "grid:8x8"
    penalties = {"gsr", "heat", "band", "band_centered", "heat_l1"}
    assert set(metrics["models"]) == {"lambda_0", *penalties}
    assert set(metrics["verdicts"]) == penalties
    assert metrics["models"]["lambda_0"]["mse_ratio"] == pytest.approx(1.0)
    for m in metrics["models"].values():
        assert 0 < m["spread"] <= metrics["uniform_spread"] + 1e-9
        assert -1 <= m["topography"] <= 1
    for key in penalties:
        assert metrics["models"][key]["weight"] > 0  # the budget set a weight
    config = RF.ReceptiveFieldsConfig(**json.loads((folder / "config.json").read_text()))
    assert config == RF.ReceptiveFieldsConfig.quick(seed=1)
    headline = registry.get_experiment(NAME).headline(metrics)
    assert sum("best control" in key for key in headline) == len(penalties)


def test_quick_run_report_holds_the_prose_of_every_receptive_fields_template(quick_run):
    folder, _, rendered = quick_run
    own = {f"receptive_fields/{p.name}" for p in (TEMPLATES / "receptive_fields").glob("*.txt")}
    assert own and own <= {template for template, _ in rendered}
    page = (folder / "report.html").read_text()
    for template, values in rendered:
        for paragraph in report.prose(template, **values).split("\n\n"):
            assert escape(paragraph) in page, (template, paragraph)
