"""The rotation experiment's authors' ring: config, model, and a quick run's metrics."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from gsreg import analysis
from gsreg.experiments import registry
from gsreg.experiments import rotation as R

NAME = "rotation"
AUTHORS = set(R.variant_keys(R.RotationConfig.quick(), "authors"))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The quick run, seed 3, through run_experiment: (folder, metrics)."""
    root = tmp_path_factory.mktemp("runs")
    folder = registry.run_experiment(NAME, root, quick=True, seed=3, device="cpu", progress=False)
    return folder, json.loads((folder / "metrics.json").read_text())


def test_rotation_authors_model_puts_the_ring_on_the_first_decoder_layer():
    config = R.RotationConfig.quick()
    torch.manual_seed(0)
    model, layer = R.ring_autoencoder(config, "authors")
    assert layer == "decoder.0"
    assert model.config["latent"] == config.authors_latent == 3
    assert model.config["negative_slope"] == config.authors_slope
    assert model.config["decoder_hidden"][0] == config.authors_ring == 10
    assert R.ring_graph(config, "authors").n_nodes == 10
    assert R.ring_graph(config, "plain").n_nodes == config.ring
    X = torch.rand(5, config.size * config.size)
    Z = analysis.activations(model, X.numpy(), layer)
    assert Z.shape == (5, 10)
    # after the LeakyReLU: negative pre-activations are scaled by the slope
    pre = model.decoder[0][0](model.encoder(X)).detach().numpy()
    np.testing.assert_allclose(
        Z, np.where(pre > 0, pre, config.authors_slope * pre), rtol=1e-5, atol=1e-6
    )
    # same seed, same initial weights: the λ = 0 twin starts where the GSR model starts
    torch.manual_seed(0)
    twin, _ = R.ring_autoencoder(config, "authors")
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)


def test_rotation_authors_config_checks_and_round_trip():
    config = R.RotationConfig()
    assert 0.0 in config.authors_weights and config.authors_decay == (0.99, 100)
    assert config.authors_ring == 10 and config.authors_latent == 3
    again = R.RotationConfig(**json.loads(json.dumps(dataclasses.asdict(config))))
    assert again == config
    assert R.RotationConfig.quick().authors_epochs <= 5
    for bad in (
        {"authors_weights": (1e-2,)},
        {"authors_ring": 2},
        {"authors_decay": (1.5, 100)},
        {"authors_decay": (0.99, 0)},
        {"authors_epochs": 0},
        {"authors_latent": 0},
        {"authors_slope": -0.1},
        {"authors_lr": 0.0},
    ):
        with pytest.raises(ValueError, match="authors"):
            R.RotationConfig(**bad)
    without = R.RotationConfig.quick(authors_weights=())
    assert AUTHORS and R.variant_keys(without, "authors") == []
    assert R.variant_keys(without) == [
        key for key in R.variant_keys(R.RotationConfig.quick()) if key not in AUTHORS
    ]


def test_rotation_quick_run_has_the_authors_variant_and_its_controls(quick_run):
    folder, metrics = quick_run
    variants = metrics["variants"]
    assert AUTHORS <= set(variants)
    for key in AUTHORS:
        v = variants[key]
        assert v["layer"] == "decoder.0" and v["graph"] == "ring:10"
        assert v["mse_reference"] == "authors λ=0"
        assert v["epochs"] == R.RotationConfig.quick().authors_epochs
        assert 0 <= v["median_abs_rho"] <= v["best_abs_rho"] <= 1
        assert 0 <= v["arranged_median_abs_rho"] <= 1
        (restart,) = v["restarts"]
        assert restart["seed"] == 3 and isinstance(restart["winding"], int)
        assert restart["mse_ratio"] == pytest.approx(
            restart["test_mse"] / variants["authors_lambda_0"]["restarts"][0]["test_mse"]
        )
    assert variants["authors_lambda_0"]["mse_ratio"] == pytest.approx(1.0)
    assert variants["plain_lambda_0.1"]["mse_reference"] == "plain λ=0"
    controls = metrics["controls"]
    assert {"authors λ=0", "authors λ=0 arranged", "plain λ=0", "standardised λ=0"} <= set(controls)
    assert controls["authors λ=0"]["mse_ratio"] == pytest.approx(1.0)
    verdict = metrics["verdict"]
    best = max(controls, key=lambda k: controls[k]["median_abs_rho"])
    assert verdict["control_score"] == pytest.approx(controls[best]["median_abs_rho"])
    assert verdict["mse_reference"] in {"plain λ=0", "authors λ=0"}
    assert metrics["authors_graph"] == "ring:10"
    html = (folder / "report.html").read_text()
    assert "authors λ=" in html and "first decoder layer" in html
    headline = registry.read_run(folder)["headline"]
    assert all(isinstance(v, str) for v in headline.values())


def test_rotation_only_the_authors_ring_decays_its_weight(monkeypatch):
    seen = {}
    real = R.GraphRegularizer

    def spy(model, layers, **kwargs):
        seen[next(iter(layers))] = kwargs
        return real(model, layers, **kwargs)

    monkeypatch.setattr(R, "GraphRegularizer", spy)
    config = R.RotationConfig.quick(
        n_frames=16, epochs=1, authors_epochs=1, standardised_weights=()
    )
    train = R.datasets.rotation(16, config.size, seed=0)
    test = R.datasets.rotation(16, config.size, seed=1, offset=180.0 / 16)
    for variant in R._variants(config):
        if variant.weight > 0:
            result = R._train(
                variant, config, train, test, np.deg2rad(test.angles), 0, "cpu", False
            )
            assert result["_Z"].shape[1] == R.ring_graph(config, variant.layout).n_nodes
    assert seen["decoder.0"]["decay"] == (0.99, 100)
    assert seen["decoder.0"]["weight"] == config.authors_weights[-1]
    assert seen["encoder.latent"]["decay"] is None
