import json

import pytest
import torch
import torch.nn.functional as F

from gsreg.models import ConvClassifier, DenseAutoencoder, GaussianNoise


def _capture(model, name):
    store = {}
    model.get_submodule(name).register_forward_hook(lambda m, i, o: store.update(out=o))
    return store


def test_autoencoder_structure_and_shapes():
    torch.manual_seed(0)
    ae = DenseAutoencoder(784, hidden=(50, 50), latent=10, decoder_hidden=(64, 50))
    x = torch.rand(7, 784)
    assert ae(x).shape == (7, 784)
    assert ae.encode(x).shape == (7, 10)
    assert ae.decode(torch.randn(7, 10)).shape == (7, 784)
    assert list(ae.encoder._modules) == ["0", "1", "latent"]
    assert list(ae.decoder._modules) == ["0", "1", "out"]
    assert ae.get_submodule("decoder.0")[0].out_features == 64
    default = DenseAutoencoder(20, hidden=(8, 4), latent=2)
    assert [m[0].out_features for m in list(default.decoder)[:-1]] == [4, 8]


def test_autoencoder_init():
    torch.manual_seed(0)
    ae = DenseAutoencoder(1000, hidden=(400,), latent=300)
    w = ae.encoder[0][0].weight
    gain = (2.0 / (1 + 0.2**2)) ** 0.5
    assert w.std().item() == pytest.approx(gain / 1000**0.5, rel=0.05)
    assert all((m.bias == 0).all() for m in ae.modules() if isinstance(m, torch.nn.Linear))


def test_hook_on_decoder_block_sees_post_activation():
    torch.manual_seed(0)
    ae = DenseAutoencoder(30, hidden=(12,), latent=4, decoder_hidden=(16,))
    out = _capture(ae, "decoder.0")
    pre = _capture(ae, "decoder.0.0")
    ae(torch.randn(5, 30))
    assert out["out"].shape == (5, 16)
    assert (pre["out"] < 0).any()
    torch.testing.assert_close(out["out"], F.leaky_relu(pre["out"], 0.2))


def test_noise_only_in_training_and_latent_hook_is_clean():
    torch.manual_seed(0)
    ae = DenseAutoencoder(12, hidden=(8,), latent=3, noise=0.5)
    latent = _capture(ae, "encoder.latent")
    x = torch.randn(4, 12)
    ae.train()
    a, b = ae(x), ae(x)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(latent["out"], ae.encode(x))
    ae.eval()
    torch.testing.assert_close(ae(x), ae(x))
    torch.testing.assert_close(ae(x), ae.decode(ae.encode(x)))
    noise = GaussianNoise(0.0).train()
    assert torch.equal(noise(x), x)


def test_output_activation():
    ae = DenseAutoencoder(6, hidden=(4,), latent=2, output_activation="sigmoid")
    y = ae(torch.randn(50, 6) * 10)
    assert y.min() >= 0 and y.max() <= 1
    assert list(ae.decoder._modules)[-2:] == ["out", "out_activation"]


def test_config_rebuilds_model():
    for model in (
        DenseAutoencoder(10, hidden=(6,), latent=3, noise=0.1, output_activation="tanh"),
        ConvClassifier(in_shape=(1, 8, 8), n_classes=3, hidden=5),
    ):
        config = json.loads(json.dumps(model.config))
        clone = type(model)(**config)
        assert clone.config == model.config
        assert [p.shape for p in clone.parameters()] == [p.shape for p in model.parameters()]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_features": 0}, "n_features"),
        ({"n_features": 4, "latent": 2.5}, "latent"),
        ({"n_features": 4, "hidden": (3, -1)}, "hidden"),
        ({"n_features": 4, "hidden": 3}, "hidden"),
        ({"n_features": 4, "decoder_hidden": (0,)}, "decoder_hidden"),
        ({"n_features": 4, "noise": -0.1}, "noise"),
        ({"n_features": 4, "output_activation": "relu"}, "output_activation"),
    ],
)
def test_autoencoder_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DenseAutoencoder(**kwargs)


def test_conv_classifier_shapes_and_hook():
    torch.manual_seed(0)
    net = ConvClassifier(in_shape=(1, 28, 28), n_classes=10, hidden=64)
    fc = _capture(net, "fc")
    pre = _capture(net, "fc.0")
    x = torch.randn(3, 1, 28, 28)
    net.eval()
    logits = net(x)
    assert logits.shape == (3, 10) and fc["out"].shape == (3, 64)
    torch.testing.assert_close(fc["out"], F.leaky_relu(pre["out"], 0.2))
    torch.testing.assert_close(net(x.reshape(3, 784)), logits)
    rect = ConvClassifier(in_shape=(3, 10, 12), n_classes=4, hidden=6, negative_slope=0.0)
    assert rect(torch.randn(2, 3, 10, 12)).shape == (2, 4)
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\) or \(B, 784\)"):
        net(torch.randn(3, 28, 28))


def test_conv_classifier_dropout_only_in_training():
    torch.manual_seed(0)
    net = ConvClassifier(in_shape=(1, 8, 8), n_classes=2, hidden=32, dropout=0.5)
    x = torch.randn(4, 64)
    net.train()
    assert not torch.allclose(net(x), net(x))
    net.eval()
    torch.testing.assert_close(net(x), net(x))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"in_shape": (28, 28)}, "in_shape"),
        ({"in_shape": (1, 2, 28)}, "in_shape"),
        ({"n_classes": 0}, "n_classes"),
        ({"hidden": -3}, "hidden"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_conv_classifier_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConvClassifier(**kwargs)


def test_dense_classifier_shapes_and_structured_layer():
    from gsreg.models import DenseClassifier

    torch.manual_seed(0)
    model = DenseClassifier(12, 3, hidden=(8,), width=9)
    x = torch.randn(5, 12)
    assert model(x).shape == (5, 3)
    hidden = model.fc(model.features(x))
    assert hidden.shape == (5, 9)
    assert torch.equal(hidden, torch.nn.functional.leaky_relu(model.fc[0](model.features(x)), 0.2))
    assert DenseClassifier(**model.config).config == model.config
    with pytest.raises(ValueError, match="width"):
        DenseClassifier(12, 3, width=0)
    with pytest.raises(ValueError, match="dropout"):
        DenseClassifier(12, 3, dropout=1.0)


def test_wavelet_dictionary_outputs_softmax_combinations_of_exact_filter_atoms():
    import numpy as np

    from gsreg import filters, graphs
    from gsreg.models import WaveletDictionary

    graph = graphs.ring(20)
    bank = [filters.wavelet(1.0), filters.heat(0.5)]
    layer = WaveletDictionary(graph, bank, in_features=6, temperature=0.5)
    lam, vecs = np.linalg.eigh(graph.laplacian_matrix().toarray())
    for k, f in enumerate(bank):
        atoms = (vecs * f.response(np.clip(lam, 0, None))) @ vecs.T
        atoms /= np.abs(atoms).max(axis=1, keepdims=True)
        np.testing.assert_allclose(layer.atoms[20 * k : 20 * (k + 1)], atoms, atol=1e-6)
    x = torch.randn(5, 6)
    logits = (x @ layer.logits.weight.T + layer.logits.bias).detach().numpy() / 0.5
    w = np.exp(logits - logits.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(layer(x).detach().numpy(), w @ layer.atoms.numpy(), atol=1e-6)
    layer(x).sum().backward()
    assert layer.logits.weight.grad is not None and "atoms" in layer.state_dict()
    assert not any(p is layer.atoms for p in layer.parameters())  # fixed, not trained


def test_wavelet_dictionary_by_chebyshev_matches_the_exact_atoms_and_refuses_bad_atoms():
    from gsreg import filters, graphs
    from gsreg.models import WaveletDictionary

    graph = graphs.grid(6, 6)
    exact = WaveletDictionary(graph, filters.heat(0.3), in_features=3)
    approx = WaveletDictionary(graph, filters.heat(0.3), in_features=3, order=30)
    torch.testing.assert_close(approx.atoms, exact.atoms, atol=1e-5, rtol=0)
    given = WaveletDictionary(graph, torch.eye(36)[:10], in_features=3)
    assert given.atoms.shape == (10, 36)
    with pytest.raises(ValueError, match=r"\(A, 36\)"):
        WaveletDictionary(graph, torch.ones(4, 35), in_features=3)
    with pytest.raises(TypeError, match="atoms"):
        WaveletDictionary(graph, "wavelet", in_features=3)
    with pytest.raises(ValueError, match="temperature"):
        WaveletDictionary(graph, filters.heat(1.0), in_features=3, temperature=0)
    with pytest.raises(ValueError, match="in_features"):
        WaveletDictionary(graph, filters.heat(1.0), in_features=0)
