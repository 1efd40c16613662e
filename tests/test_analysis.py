import itertools
from collections import OrderedDict

import numpy as np
import pytest
import scipy.stats
import torch
from scipy.sparse.csgraph import laplacian as scipy_laplacian
from torch import nn

from gsreg import analysis, graphs


def random_graph(n: int, n_edges: int, seed: int) -> graphs.Graph:
    rng = np.random.default_rng(seed)
    pairs = np.array(list(itertools.combinations(range(n), 2)))
    chosen = pairs[rng.choice(len(pairs), size=n_edges, replace=False)]
    return graphs.from_edges(n, chosen, rng.uniform(0.1, 2.0, size=n_edges))


def checkerboard(h: int, w: int) -> np.ndarray:
    rows, cols = np.divmod(np.arange(h * w), w)
    return np.where((rows + cols) % 2 == 0, 1.0, -1.0)


# --------------------------------------------------------------------------- class maps


def test_class_maps_match_a_manual_groupby():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(50, 6))
    labels = rng.choice(["b", "c", "a"], size=50)
    maps, classes = analysis.class_maps(Z, labels, return_classes=True)
    assert list(classes) == ["a", "b", "c"]
    for c, label in enumerate(classes):
        rows = [Z[i] for i in range(len(Z)) if labels[i] == label]
        np.testing.assert_allclose(maps[c], np.sum(rows, axis=0) / len(rows))
    np.testing.assert_array_equal(analysis.class_maps(Z, labels), maps)


def test_class_deviation_maps_subtract_the_sample_mean():
    Z = np.array([[0.0, 2.0], [2.0, 0.0], [4.0, 4.0]])
    labels = np.array([1, 1, 0])
    deviation, classes = analysis.class_deviation_maps(Z, labels, return_classes=True)
    np.testing.assert_array_equal(classes, [0, 1])
    np.testing.assert_allclose(analysis.global_mean(Z), [2.0, 2.0])
    np.testing.assert_allclose(deviation, [[2.0, 2.0], [-1.0, -1.0]])


def test_class_maps_reject_mismatched_labels():
    with pytest.raises(ValueError, match="labels"):
        analysis.class_maps(np.zeros((4, 3)), np.zeros(5))


def test_segmentation_uses_l1_normalised_class_means():
    # class 0 is large everywhere; without normalisation it would claim every neuron
    means = np.array(
        [
            [100.0, 100.0, 100.0, 120.0],
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 3.0, 0.0],
        ]
    )
    np.testing.assert_array_equal(analysis.segmentation(means), [1, 0, 2, 0])
    assert analysis.segmentation(means).dtype == np.int64


def test_segmentation_leaves_zero_rows_at_zero():
    means = np.array([[0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])
    # the zero row scores 0 everywhere and beats the negative normalised row
    np.testing.assert_array_equal(analysis.segmentation(means), [0, 0, 0])
    assert np.all(np.isfinite(analysis.segmentation(np.zeros((2, 3)))))


# --------------------------------------------------------------------------- Dirichlet energy


@pytest.mark.parametrize("kind, normed", [("combinatorial", False), ("normalized", True)])
def test_dirichlet_energy_matches_dense_quadratic_form(kind, normed):
    g = random_graph(9, 14, seed=1)
    L = scipy_laplacian(g.adjacency().toarray(), normed=normed)
    Z = np.random.default_rng(2).normal(size=(7, 9))
    per_sample = np.array([z @ L @ z for z in Z])
    plain = analysis.dirichlet_energy(Z, g, kind=kind, normalize=False)
    ratio = analysis.dirichlet_energy(Z, g, kind=kind, normalize=True)
    np.testing.assert_allclose(plain, per_sample.mean())
    np.testing.assert_allclose(ratio, per_sample.sum() / np.sum(Z**2))


def test_dirichlet_energy_random_walk_matches_dense():
    g = random_graph(8, 12, seed=3)
    W = g.adjacency().toarray()
    deg = W.sum(1)
    L = np.eye(8) - W / np.where(deg > 0, deg, 1.0)[:, None]
    L[deg == 0] = 0.0
    z = np.random.default_rng(4).normal(size=8)
    np.testing.assert_allclose(
        analysis.dirichlet_energy(z, g, kind="random_walk", normalize=False), z @ L @ z
    )


def test_dirichlet_energy_is_zero_on_the_null_space_of_connected_graphs():
    g = graphs.grid(3, 4)
    constant = np.full((2, 12), 3.5)
    for kind in ("combinatorial", "random_walk"):
        assert analysis.dirichlet_energy(constant, g, kind=kind) == pytest.approx(0, abs=1e-12)
    # the normalised Laplacian's null space is D^1/2 1, not the constant vector
    assert analysis.dirichlet_energy(constant, g, kind="normalized") > 1e-3
    sqrt_deg = np.sqrt(g.degrees())
    assert analysis.dirichlet_energy(sqrt_deg, g, kind="normalized") == pytest.approx(0, abs=1e-12)


def test_normalised_dirichlet_energy_is_scale_invariant():
    g = graphs.grid(4, 4)
    Z = np.random.default_rng(5).normal(size=(5, 16))
    base = analysis.dirichlet_energy(Z, g)
    assert analysis.dirichlet_energy(37.0 * Z, g) == pytest.approx(base)
    plain = analysis.dirichlet_energy(Z, g, normalize=False)
    assert analysis.dirichlet_energy(2.0 * Z, g, normalize=False) == pytest.approx(4 * plain)
    assert np.isnan(analysis.dirichlet_energy(np.zeros((2, 16)), g))


def test_dirichlet_energy_checks_inputs():
    g = graphs.grid(2, 2)
    with pytest.raises(ValueError, match="4 nodes"):
        analysis.dirichlet_energy(np.zeros((2, 5)), g)
    with pytest.raises(ValueError, match="Laplacian kind"):
        analysis.dirichlet_energy(np.zeros((2, 4)), g, kind="lazy")


# --------------------------------------------------------------------------- Moran's I


def morans_i_double_loop(x: np.ndarray, g: graphs.Graph) -> float:
    n = g.n_nodes
    W = np.zeros((n, n))
    for (i, j), w in zip(g.edges, g.weights, strict=True):
        W[i, j] = W[j, i] = w
    mean = sum(x) / n
    num = sum(W[i, j] * (x[i] - mean) * (x[j] - mean) for i in range(n) for j in range(n))
    den = sum((x[i] - mean) ** 2 for i in range(n))
    return n / W.sum() * num / den


@pytest.mark.parametrize("h, w", [(4, 4), (8, 8), (3, 6), (5, 2)])
def test_morans_i_of_a_checkerboard_is_minus_one(h, w):
    # with h*w even the +1 and -1 counts match (mean 0) and every edge joins -1 to +1
    assert analysis.morans_i(checkerboard(h, w), graphs.grid(h, w)) == pytest.approx(-1.0)


def test_morans_i_of_a_smooth_gradient_is_strongly_positive():
    g = graphs.grid(8, 8)
    rows, cols = np.divmod(np.arange(64), 8)
    assert analysis.morans_i(rows + cols, g) > 0.8
    blob = np.exp(-((rows - 2.0) ** 2 + (cols - 5.0) ** 2) / 4.0)
    assert analysis.morans_i(blob, g) > 0.5


def test_morans_i_matches_a_double_loop_on_a_weighted_graph():
    g = random_graph(10, 18, seed=6)
    maps = np.random.default_rng(7).normal(size=(4, 10))
    values = analysis.morans_i(maps, g)
    assert values.shape == (4,)
    expected = [morans_i_double_loop(m, g) for m in maps]
    np.testing.assert_allclose(values, expected)
    assert isinstance(analysis.morans_i(maps[0], g), float)


def test_morans_i_averages_to_its_null_expectation_over_all_permutations():
    g = random_graph(6, 8, seed=8)
    x = np.array([0.3, -1.0, 2.0, 0.5, 4.0, -0.7])
    perms = np.array(list(itertools.permutations(x)))
    assert analysis.morans_i(perms, g).mean() == pytest.approx(-1 / (6 - 1))


def test_morans_i_is_nan_for_a_constant_map_and_needs_edges():
    g = graphs.grid(3, 3)
    values = analysis.morans_i(np.stack([np.full(9, 2.0), np.arange(9.0)]), g)
    assert np.isnan(values[0]) and np.isfinite(values[1])
    with pytest.raises(ValueError, match="edge"):
        analysis.morans_i(np.arange(3.0), graphs.from_edges(3, np.zeros((0, 2))))


def test_localization_scores():
    g = graphs.grid(4, 4)
    rows, cols = np.divmod(np.arange(16), 4)
    left, right = (cols < 2).astype(float), (cols >= 2).astype(float)
    rng = np.random.default_rng(9)
    labels = np.repeat([0, 1], 20)
    Z = np.concatenate([np.tile(left, (20, 1)), np.tile(right, (20, 1))])
    Z = Z + 0.01 * rng.normal(size=Z.shape)
    scores = analysis.localization(Z, labels, g)
    assert set(scores) == {
        "morans_i",
        "morans_i_raw",
        "morans_i_expected",
        "dirichlet_energy",
        "activation_norm",
    }
    assert scores["morans_i"] > 0.6 and scores["morans_i_raw"] > 0.6
    assert scores["morans_i_expected"] == pytest.approx(-1 / 15)
    assert scores["dirichlet_energy"] == pytest.approx(
        analysis.dirichlet_energy(Z, g, normalize=True)
    )
    assert scores["activation_norm"] == pytest.approx(np.mean(np.linalg.norm(Z, axis=1)))
    shuffled = Z[:, rng.permutation(16)]
    assert analysis.localization(shuffled, labels, g)["morans_i"] < scores["morans_i"]


# --------------------------------------------------------------------------- activations


def make_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            encoder=nn.Sequential(nn.Linear(5, 8), nn.LeakyReLU(0.2)),
            dropout=nn.Dropout(0.5),
            decoder=nn.Linear(8, 3),
        )
    )


def test_activations_equal_a_manual_forward():
    model = make_model()
    X = torch.randn(23, 5)
    with torch.no_grad():
        hidden = model.encoder(X)
        out = model.decoder(hidden)  # dropout is off in eval mode
    result = analysis.activations(model, X, ["encoder.1", "decoder"], batch_size=4)
    assert set(result) == {"encoder.1", "decoder"}
    np.testing.assert_allclose(result["encoder.1"], hidden.numpy(), rtol=1e-6)
    np.testing.assert_allclose(result["decoder"], out.numpy(), rtol=1e-6)
    single = analysis.activations(model, X.numpy().astype(np.float64), "encoder.1")
    assert isinstance(single, np.ndarray) and single.dtype == np.float32
    np.testing.assert_allclose(single, hidden.numpy(), rtol=1e-6)


def test_activations_flatten_conv_outputs():
    conv = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1))
    X = torch.randn(3, 1, 4, 5)
    Z = analysis.activations(conv, X, "0")
    assert Z.shape == (3, 2 * 4 * 5)
    with torch.no_grad():
        np.testing.assert_allclose(Z, conv(X).reshape(3, -1).numpy(), rtol=1e-6)


def test_activations_restore_modes_and_remove_hooks():
    model = make_model()
    model.train()
    model.encoder.eval()  # a mixed state must come back as it was
    analysis.activations(model, torch.randn(4, 5), "decoder")
    assert model.training and model.dropout.training and model.decoder.training
    assert not model.encoder.training and not model.encoder[0].training
    assert all(not m._forward_hooks for m in model.modules())


class Exploding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.layer(x)
        raise RuntimeError("boom")


def test_activations_clean_up_on_error():
    model = Exploding().train()
    with pytest.raises(RuntimeError, match="boom"):
        analysis.activations(model, torch.randn(3, 2), "layer")
    assert model.training and model.layer.training
    assert not model.layer._forward_hooks


def test_activations_suggest_close_names():
    model = make_model()
    with pytest.raises(ValueError, match=r"decodr.*did you mean.*'decoder'"):
        analysis.activations(model, torch.randn(2, 5), "decodr")
    with pytest.raises(ValueError, match="encoder.1"):
        analysis.activations(model, torch.randn(2, 5), ["decoder", "encoder.l"])
    assert all(not m._forward_hooks for m in model.modules())


def test_activations_reject_a_layer_called_twice():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(self.layer(x))

    with pytest.raises(ValueError, match="2 times"):
        analysis.activations(Twice(), torch.randn(3, 2), "layer")


def test_activations_check_inputs():
    model = make_model()
    with pytest.raises(ValueError, match="batch_size"):
        analysis.activations(model, torch.randn(2, 5), "decoder", batch_size=0)
    with pytest.raises(ValueError, match="at least one sample"):
        analysis.activations(model, torch.randn(0, 5), "decoder")
    with pytest.raises(ValueError, match="empty"):
        analysis.activations(model, torch.randn(2, 5), [])


def test_column_correlations_matches_scipy():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(40, 5))
    B = rng.normal(size=(40, 3)) + A[:, :3]
    corr = analysis.column_correlations(A, B)
    assert corr.shape == (5, 3)
    for i in range(5):
        for j in range(3):
            assert corr[i, j] == pytest.approx(scipy.stats.pearsonr(A[:, i], B[:, j])[0], abs=1e-12)


def test_column_correlations_is_nan_for_a_constant_column():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(20, 3))
    A[:, 1] = 2.5
    corr = analysis.column_correlations(A, A)
    assert np.isnan(corr[1]).all() and np.isnan(corr[:, 1]).all()
    np.testing.assert_allclose(corr[[0, 2]][:, [0, 2]], np.corrcoef(A[:, [0, 2]].T), atol=1e-12)
    with pytest.raises(ValueError):
        analysis.column_correlations(A, A[:10])
