"""gsreg.sc gene loadings (varm), gsreg.sc.get.loadings and gsreg.sc.pl.loadings, each
read-out checked against a direct computation on the trained network."""

import numpy as np
import pytest
import torch

anndata = pytest.importorskip("anndata")
sc = pytest.importorskip("scanpy")

import gsreg.sc  # noqa: E402
from gsreg import analysis  # noqa: E402
from gsreg.sc import _loadings  # noqa: E402
from gsreg.sc._data import Rows  # noqa: E402

QUICK = dict(epochs=20, n_structured=16, learned_options={"k": 1}, device="cpu")


@pytest.fixture(scope="module")
def fitted():
    adata = sc.datasets.pbmc68k_reduced()
    est = gsreg.sc.fit(adata, **QUICK)
    return adata, est


def _reconstruct_with_layer(est, X, change):
    """(N, d) float64 reconstruction of X in input units with the structured layer's
    output replaced by ``change(output)``."""
    model = est.model_.eval()
    handle = model.get_submodule(est.layer_).register_forward_hook(lambda m, i, o: change(o))
    try:
        xs = torch.as_tensor((X - est.input_mean_) / est.input_scale_, dtype=torch.float64)
        with torch.no_grad():
            out = model.double()(xs).numpy()
    finally:
        handle.remove()
        model.float()
    return out * est.input_scale_ + est.input_mean_


def test_gradient_loadings_match_central_finite_differences(fitted):
    adata, est = fitted
    X = np.asarray(adata.X, dtype=np.float64)
    Z = adata.obsm["X_gsr"].astype(np.float64)
    sd, eps = Z.std(axis=0), 1e-4
    for unit in (0, 7, 15):
        step = torch.zeros(Z.shape[1], dtype=torch.float64)
        step[unit] = eps
        up = _reconstruct_with_layer(est, X, lambda o, s=step: o + s)
        down = _reconstruct_with_layer(est, X, lambda o, s=step: o - s)
        expected = (up - down).mean(axis=0) / (2 * eps) * sd[unit]
        np.testing.assert_allclose(adata.varm["gsr"][:, unit], expected, rtol=2e-3, atol=2e-4)


def test_module_gradient_loading_is_the_response_to_raising_all_its_units(fitted):
    adata, est = fitted
    X = np.asarray(adata.X, dtype=np.float64)
    Z = adata.obsm["X_gsr"].astype(np.float64)
    labels = adata.uns["gsr"]["modules"]
    eps = 1e-4
    for j, module in enumerate(np.unique(labels)):
        step = torch.as_tensor(np.where(labels == module, Z.std(axis=0), 0.0) * eps)
        up = _reconstruct_with_layer(est, X, lambda o, s=step: o + s)
        down = _reconstruct_with_layer(est, X, lambda o, s=step: o - s)
        expected = (up - down).mean(axis=0) / (2 * eps)
        np.testing.assert_allclose(adata.varm["gsr_modules"][:, j], expected, rtol=2e-3, atol=2e-4)


def test_contribution_is_the_mean_drop_when_the_units_are_switched_off(fitted):
    adata, est = fitted
    X = np.asarray(adata.X, dtype=np.float64)
    Z = adata.obsm["X_gsr"].astype(np.float64)
    labels = adata.uns["gsr"]["modules"]
    rows = Rows(X, "X")
    units = _loadings.loadings(est, rows, Z, "contribution")
    modules = _loadings.module_loadings(est, rows, Z, labels, units, "contribution")
    full = _reconstruct_with_layer(est, X, lambda o: o)
    off = torch.ones(Z.shape[1], dtype=torch.float64)
    off[3] = 0
    expected = (full - _reconstruct_with_layer(est, X, lambda o: o * off)).mean(axis=0)
    np.testing.assert_allclose(units[:, 3], expected, rtol=1e-3, atol=1e-4)
    keep = torch.as_tensor(labels != 0, dtype=torch.float64)
    expected = (full - _reconstruct_with_layer(est, X, lambda o: o * keep)).mean(axis=0)
    np.testing.assert_allclose(modules[:, 0], expected, rtol=1e-3, atol=1e-4)


def test_correlation_and_weight_loadings_match_numpy(fitted):
    adata, est = fitted
    X = np.asarray(adata.X, dtype=np.float64)
    Z = adata.obsm["X_gsr"].astype(np.float64)
    labels = adata.uns["gsr"]["modules"]
    rows = Rows(X, "X")
    corr = _loadings.loadings(est, rows, Z, "correlation")
    for gene, unit in [(0, 0), (100, 5), (764, 15)]:
        expected = np.corrcoef(X[:, gene], Z[:, unit])[0, 1]
        assert corr[gene, unit] == pytest.approx(expected, abs=1e-9)
    activity = analysis.module_activity(Z, labels)
    per_module = _loadings.module_loadings(est, rows, Z, labels, corr, "correlation")
    assert per_module[42, 1] == pytest.approx(np.corrcoef(X[:, 42], activity[:, 1])[0, 1])
    weights = _loadings.loadings(est, rows, Z, "weights")
    dec = est.model_.decoder  # structured layer decoder.0, then decoder.1 and decoder.out
    w1 = dec.get_submodule("1.0").weight.detach().double().numpy()
    w_out = dec.get_submodule("out").weight.detach().double().numpy()
    expected = (w_out @ w1) * est.input_scale_[:, None] * Z.std(axis=0)[None, :]
    np.testing.assert_allclose(weights, expected, rtol=1e-10)


def test_get_loadings_is_a_genes_by_module_table(fitted):
    adata, _ = fitted
    table = gsreg.sc.get.loadings(adata)
    n_modules = adata.uns["gsr"]["n_modules"]
    assert list(table.columns) == [f"module_{i}" for i in range(n_modules)]
    assert list(table.index) == list(adata.var_names)
    np.testing.assert_array_equal(table.to_numpy(), adata.varm["gsr_modules"])
    units = gsreg.sc.get.loadings(adata, by="unit")
    assert units.shape == (765, 16) and units.columns[-1] == "unit_15"
    with pytest.raises(ValueError, match="by must be one of"):
        gsreg.sc.get.loadings(adata, by="gene")


def test_pl_loadings_labels_the_top_genes_in_rank_order(fitted):
    adata, _ = fitted
    axes = gsreg.sc.pl.loadings(adata, module=[1, 0], n_genes=10, show=False)
    assert [ax.get_title() for ax in axes] == ["module 1", "module 0"]
    top = gsreg.sc.get.loadings(adata)["module_1"].nlargest(10).index
    assert [t.get_text().strip() for t in axes[0].texts] == list(top)
    both = gsreg.sc.pl.loadings(adata, unit=4, n_genes=5, include_lowest=True, show=False)
    column = gsreg.sc.get.loadings(adata, by="unit")["unit_4"]
    expected = list(column.nlargest(5).index) + list(column.sort_values().index[:5][::-1])
    assert [t.get_text().strip() for t in both[0].texts] == expected
    every = gsreg.sc.pl.loadings(adata, show=False)
    assert len(every) == adata.uns["gsr"]["n_modules"]


def test_pl_loadings_bad_arguments(fitted):
    adata, _ = fitted
    with pytest.raises(ValueError, match="module 99 is not among the modules"):
        gsreg.sc.pl.loadings(adata, module=99, show=False)
    with pytest.raises(ValueError, match="not both"):
        gsreg.sc.pl.loadings(adata, module=0, unit=0, show=False)
    with pytest.raises(ValueError, match="n_genes"):
        gsreg.sc.pl.loadings(adata, module=0, n_genes=0, show=False)
    bare = adata.copy()
    del bare.uns["gsr"]["loadings"]
    with pytest.raises(KeyError, match="no loadings"):
        gsreg.sc.pl.loadings(bare, module=0, show=False)
    with pytest.raises(KeyError, match=r"run gsreg.sc.tl.gsr\(adata\) first"):
        gsreg.sc.get.loadings(sc.datasets.pbmc68k_reduced())
