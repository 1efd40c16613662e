"""gsreg.arrange: a trained layer's units permuted onto a graph, the model's function kept."""

import numpy as np
import pytest
import torch
from torch import nn

import gsreg
from gsreg import analysis, graphs
from gsreg.analysis._arrangement import _correlation, energy
from gsreg.models import ConvClassifier, DenseAutoencoder


def outputs(model, X):
    model.eval()
    with torch.no_grad():
        return model(X).clone()


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_state(model, saved):
    current = model.state_dict()
    assert all(torch.equal(current[k], v) for k, v in saved.items())


def trained_autoencoder(seed=0):
    torch.manual_seed(seed)
    model = DenseAutoencoder(12, hidden=(10,), latent=3, decoder_hidden=(9, 8))
    X = torch.randn(400, 12) @ torch.randn(12, 12)
    gsreg.training.fit(model, X, epochs=3, batch_size=50, progress=False)
    # float64, so that "the same function" can be checked to 1e-6 whatever the sum order
    return model.double(), X.double()


def test_an_arranged_autoencoder_computes_the_same_function_and_its_layer_is_smoother():
    model, X = trained_autoencoder()
    graph = graphs.grid(3, 3)
    before = outputs(model, X)
    Z_before = analysis.activations(model, X, "decoder.0")
    perm = gsreg.arrange(model, "decoder.0", graph, X)
    torch.testing.assert_close(outputs(model, X), before, atol=1e-6, rtol=0)
    Z_after = analysis.activations(model, X, "decoder.0")
    np.testing.assert_allclose(Z_after, Z_before[:, perm], atol=1e-6)
    K, L = _correlation(Z_before, 9), graph.laplacian_matrix()
    assert energy(L, K, perm) <= energy(L, K, np.arange(9)) + 1e-9


def test_arrange_keeps_the_parameter_tensors_so_an_optimizer_stays_valid():
    model, X = trained_autoencoder(1)
    params = [id(p) for p in model.parameters()]
    gsreg.arrange(model, "decoder.0", "grid:3x3", X)
    assert [id(p) for p in model.parameters()] == params


@pytest.mark.parametrize(
    "layer, spec",
    [("fc", "grid:4x4"), ("features.act2", "grid:8x8"), ("features.conv1", "grid:4x8")],
)
def test_conv_classifier_layers_and_channel_maps_keep_their_function(layer, spec):
    torch.manual_seed(0)
    model = ConvClassifier(hidden=16).double()
    X = torch.randn(40, 1, 28, 28, dtype=torch.float64)
    before = outputs(model, X)
    perm = gsreg.arrange(model, layer, spec, X)
    assert sorted(perm.tolist()) == list(range(graphs.parse(spec).n_nodes))
    torch.testing.assert_close(outputs(model, X), before, atol=1e-6, rtol=1e-6)


def test_a_sequence_layer_with_per_unit_normalisation_keeps_its_function():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.GELU(), nn.LayerNorm(6), nn.Linear(6, 3))
    nn.init.normal_(model[2].weight)
    nn.init.normal_(model[2].bias)
    model = model.double()
    X = torch.randn(40, 7, 5, dtype=torch.float64)  # (B, T, features)
    before = outputs(model, X)
    perm = gsreg.arrange(model, "0", "ring:6", X)
    assert not np.array_equal(perm, np.arange(6))
    torch.testing.assert_close(outputs(model, X), before, atol=1e-6, rtol=0)


def test_batch_norm_statistics_between_producer_and_consumer_are_permuted_too():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
    model = model.double().train()
    X = torch.randn(200, 4, dtype=torch.float64)
    model(X)  # running statistics away from their initial values
    before = outputs(model, X)
    gsreg.arrange(model, "2", "path:6", X)
    torch.testing.assert_close(outputs(model, X), before, atol=1e-6, rtol=0)


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 6)
        self.a = nn.Linear(6, 2)
        self.b = nn.Linear(6, 2)

    def forward(self, x):
        h = self.body(x)
        return self.a(h) + self.b(h)


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 6)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(torch.tanh(self.body(x)) * 2.0)


def test_a_consumer_reached_through_functional_code_is_named_by_the_caller():
    torch.manual_seed(0)
    model, X = Functional().double(), torch.randn(50, 4, dtype=torch.float64)
    before = outputs(model, X)
    with pytest.raises(ValueError, match="consumer="):
        gsreg.arrange(model, "body", "path:6", X)
    gsreg.arrange(model, "body", "path:6", X, consumer="head")
    torch.testing.assert_close(outputs(model, X), before, atol=1e-6, rtol=0)


def test_units_read_by_two_modules_are_refused_and_the_model_is_untouched():
    torch.manual_seed(0)
    model, X = TwoHeads(), torch.randn(50, 4)
    saved = state(model)
    with pytest.raises(ValueError, match="2 modules read"):
        gsreg.arrange(model, "body", "path:6", X)
    with pytest.raises(ValueError, match="changes the model's outputs"):
        gsreg.arrange(model, "body", "path:6", X, consumer="a")
    assert_same_state(model, saved)


def test_tied_weights_are_refused_and_the_model_is_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 4), nn.Linear(4, 6), nn.Linear(6, 2)
    )
    model[3].weight = model[0].weight  # the third Linear reuses the first one's weights
    X = torch.randn(20, 4)
    saved = state(model)
    with pytest.raises(ValueError, match=r"shared with \['3'\]"):
        gsreg.arrange(model, "1", "path:6", X)
    assert_same_state(model, saved)


def test_a_layer_that_runs_twice_in_one_forward_is_refused():
    shared = nn.Sequential(nn.Linear(6, 6), nn.ReLU())
    model = nn.Sequential(nn.Linear(4, 6), shared, shared, nn.Linear(6, 2))
    with pytest.raises(ValueError, match="ran 2 times"):
        gsreg.arrange(model, "1", "path:6", torch.randn(20, 4))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"graph": "grid:2x2"}, ValueError, "has 9 units .* graph has 4 nodes"),
        ({"consumer": "encoder.0.0"}, ValueError, "does not take the layer's 9 units"),
        ({"X": torch.randn(1, 12)}, ValueError, "at least 2 samples"),
        ({"layer": "decoder.7"}, ValueError, "no submodule 'decoder.7'"),
        ({"nodes": "flatten"}, ValueError, "nodes must be"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error_and_the_model_is_untouched(kwargs, error, message):
    model, X = trained_autoencoder()
    saved = state(model)
    args = {"layer": "decoder.0", "graph": "grid:3x3", "X": X} | kwargs
    with pytest.raises(error, match=message):
        gsreg.arrange(model, args.pop("layer"), args.pop("graph"), args.pop("X"), **args)
    assert_same_state(model, saved)


@pytest.mark.filterwarnings("ignore:activations of layer")
def test_nan_activations_are_refused_and_the_model_is_untouched():
    model, X = trained_autoencoder()
    with torch.no_grad():
        model.decoder[0][0].bias[2] = float("nan")
    saved = state(model)
    with pytest.raises(ValueError, match="NaN"):
        gsreg.arrange(model, "decoder.0", "grid:3x3", X)
    current = model.state_dict()
    assert all(torch.equal(current[k].nan_to_num(), v.nan_to_num()) for k, v in saved.items())
