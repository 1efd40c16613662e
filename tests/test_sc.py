"""gsreg.sc: GSR on AnnData objects (tl.gsr, fit, transform, plots) on scanpy's pbmc68k_reduced."""

import importlib
import io
import re
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from matplotlib.axes import Axes

anndata = pytest.importorskip("anndata")
sc = pytest.importorskip("scanpy")

import gsreg.sc  # noqa: E402
from gsreg import GSRAutoencoder, analysis  # noqa: E402
from gsreg.sc import _data  # noqa: E402

# a small learned graph that falls apart into modules within 40 optimiser steps
QUICK = dict(epochs=20, n_structured=16, learned_options={"k": 1}, device="cpu")


@pytest.fixture(scope="module")
def pbmc():
    return sc.datasets.pbmc68k_reduced()  # 700 cells x 765 genes, X scaled log data


@pytest.fixture(scope="module")
def fitted(pbmc):
    adata = pbmc.copy()
    est = gsreg.sc.fit(adata, **QUICK)
    return adata, est


# ---------------------------------------------------------------------------- imports


def test_importing_gsreg_does_not_import_anndata_or_scanpy():
    code = (
        "import sys, gsreg, gsreg.plotting; gsreg.GSRAutoencoder; "
        "print(sorted(m for m in ('anndata', 'scanpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("hidden", ["anndata", "scanpy"])
def test_import_without_anndata_or_scanpy_names_the_extra(monkeypatch, hidden):
    for name in [m for m in sys.modules if m == "gsreg.sc" or m.startswith("gsreg.sc.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, hidden, None)
    with pytest.raises(ImportError, match=r"pip install gsreg\[sc\]"):
        importlib.import_module("gsreg.sc")


# ---------------------------------------------------------------------------- fit


def test_fit_writes_obsm_uns_and_module_columns(fitted):
    adata, est = fitted
    assert isinstance(est, GSRAutoencoder) and est.modules_ is not None
    Z = adata.obsm["X_gsr"]
    assert Z.shape == (700, 16) and Z.dtype == np.float32
    np.testing.assert_allclose(Z, est.activations(adata.X), rtol=1e-6, atol=1e-6)
    assert est.transform(adata.X).shape == (700, est.latent)
    info = adata.uns["gsr"]
    keys = (
        "params",
        "graph",
        "modules",
        "n_modules",
        "module_sizes",
        "history",
        "graph_history",
        "mse",
        "n_steps",
        "n_epochs",
        "structured_layer",
        "keys",
        "loadings",
    )
    assert set(keys) <= set(info), set(keys) - set(info)
    assert info["keys"] == {
        "obsm": "X_gsr",
        "uns": "gsr",
        "varm": "gsr",
        "varm_modules": "gsr_modules",
        "obs_prefix": "gsr_module",
    }
    assert info["loadings"] == "gradient"
    assert adata.varm["gsr"].shape == (765, 16) and adata.varm["gsr"].dtype == np.float32
    assert adata.varm["gsr_modules"].shape == (765, info["n_modules"])
    assert info["params"]["graph"] == "learned" and info["params"]["budget"] == "auto"
    assert info["params"]["input"] == "X" and info["structured_layer"] == "decoder.0"
    # a learned graph's default is the recipe: a fixed weight over all 20 epochs
    assert info["n_steps"] == 2 * 20 and len(info["history"]["train_loss"]) == 20
    assert "budget" not in info
    assert info["graph"]["edges"].shape[1] == 2
    assert len(info["graph"]["weights"]) == len(info["graph"]["edges"])
    np.testing.assert_array_equal(info["modules"], est.modules_)
    n_modules = info["n_modules"]
    assert n_modules > 1 and info["module_sizes"].sum() == 16
    columns = [f"gsr_module_{i}" for i in range(n_modules)]
    assert [c for c in adata.obs.columns if c.startswith("gsr_module_")] == columns
    activity = analysis.module_activity(Z, est.modules_)
    np.testing.assert_allclose(adata.obs[columns].to_numpy(), activity, rtol=1e-5, atol=1e-6)
    pred = analysis.indicate_clusters(Z, est.modules_)
    assert adata.obs["gsr_module"].dtype == "category"
    np.testing.assert_array_equal(adata.obs["gsr_module"].astype(int).to_numpy(), pred)
    assert 0 < info["mse"] < 2


def test_same_model_as_the_estimator(pbmc, fitted):
    adata, est = fitted
    ref = GSRAutoencoder(graph="learned", random_state=0, **QUICK).fit(pbmc.X)
    np.testing.assert_allclose(adata.obsm["X_gsr"], ref.activations(pbmc.X), atol=1e-5)
    np.testing.assert_array_equal(est.modules_, ref.modules_)


def test_h5ad_round_trip(fitted, tmp_path):
    adata, _ = fitted
    adata.write_h5ad(tmp_path / "pbmc.h5ad")
    back = anndata.read_h5ad(tmp_path / "pbmc.h5ad")
    np.testing.assert_array_equal(back.obsm["X_gsr"], adata.obsm["X_gsr"])
    a, b = adata.uns["gsr"], back.uns["gsr"]
    np.testing.assert_array_equal(b["modules"], a["modules"])
    np.testing.assert_array_equal(b["graph"]["edges"], a["graph"]["edges"])
    np.testing.assert_allclose(b["graph"]["weights"], a["graph"]["weights"])
    np.testing.assert_allclose(b["history"]["train_loss"], a["history"]["train_loss"])
    assert b["params"]["learned_options"] == {"k": 1}
    assert list(b["params"]["hidden"]) == [50, 50]
    cols = list(a["module_columns"])
    np.testing.assert_allclose(back.obs[cols].to_numpy(), adata.obs[cols].to_numpy())
    np.testing.assert_array_equal(back.varm["gsr"], adata.varm["gsr"])
    np.testing.assert_array_equal(back.varm["gsr_modules"], adata.varm["gsr_modules"])
    ax = gsreg.sc.pl.modules(back, groupby="bulk_labels", show=False)
    assert isinstance(ax, Axes)
    axes = gsreg.sc.pl.loadings(back, module=0, show=False)
    assert len(axes) == 1 and isinstance(axes[0], Axes)


def test_sparse_input_matches_dense_and_is_densified_only_by_batches(pbmc, monkeypatch):
    dense = pbmc.copy()
    gsreg.sc.fit(dense, **QUICK, batch_size=128)
    sparse = pbmc.copy()
    sparse.X = sp.csr_matrix(sparse.X)
    monkeypatch.setattr(_data, "CHUNK_ENTRIES", 200 * sparse.n_vars)
    rows_densified = []
    to_array = type(sparse.X).toarray

    def spy(self, *args, **kwargs):
        rows_densified.append(self.shape[0])
        return to_array(self, *args, **kwargs)

    monkeypatch.setattr(type(sparse.X), "toarray", spy)
    gsreg.sc.fit(sparse, **QUICK, batch_size=128)
    assert rows_densified and max(rows_densified) <= 200 < sparse.n_obs
    np.testing.assert_array_equal(sparse.obsm["X_gsr"], dense.obsm["X_gsr"])
    np.testing.assert_array_equal(sparse.uns["gsr"]["modules"], dense.uns["gsr"]["modules"])


def test_layer_and_backed_inputs(pbmc, fitted, tmp_path):
    adata = pbmc.copy()
    adata.layers["scaled"] = sp.csc_matrix(adata.X)
    adata.X = np.zeros_like(adata.X)
    gsreg.sc.fit(adata, layer="scaled", **QUICK)
    np.testing.assert_array_equal(adata.obsm["X_gsr"], fitted[0].obsm["X_gsr"])
    assert adata.uns["gsr"]["params"]["input_key"] == "scaled"
    pbmc.write_h5ad(tmp_path / "in.h5ad")
    backed = anndata.read_h5ad(tmp_path / "in.h5ad", backed="r")
    gsreg.sc.fit(backed, **QUICK)
    np.testing.assert_array_equal(backed.obsm["X_gsr"], fitted[0].obsm["X_gsr"])
    backed.file.close()


def test_fixed_graph_on_a_representation_replaces_old_module_columns(fitted):
    adata = fitted[0].copy()
    est = gsreg.sc.fit(adata, graph="grid:2x3", use_rep="X_pca", epochs=5, device="cpu")
    assert est.modules_ is None and adata.obsm["X_gsr"].shape == (700, 6)
    assert not [c for c in adata.obs.columns if c.startswith("gsr_module")]
    info = adata.uns["gsr"]
    assert "modules" not in info and list(info["graph"]["shape"]) == [2, 3]
    # PCA scores are not genes: no loadings in varm
    assert "loadings" not in info and "gsr" not in adata.varm and "gsr_modules" not in adata.varm
    assert info["params"]["budget"] == "auto" and "weight" not in info["params"]
    assert info["budget"]["budget"] == 0.05 and info["budget"]["reference"] > 0
    assert info["params"]["input"] == "obsm" and info["params"]["input_key"] == "X_pca"
    axes = gsreg.sc.pl.maps(adata, groupby="bulk_labels", deviation=True, show=False)
    assert len(axes) == adata.obs["bulk_labels"].nunique()
    assert all(isinstance(a, Axes) and a.images for a in axes)
    with pytest.raises(ValueError, match="no modules"):
        gsreg.sc.pl.modules(adata, groupby="bulk_labels", show=False)


def test_fit_copy_returns_the_written_copy_and_the_estimator_with_key_added_verbatim(pbmc):
    adata = pbmc.copy()
    out, est = gsreg.sc.fit(adata, key_added="gsr16", copy=True, **QUICK)
    assert "gsr16" not in adata.obsm and "gsr16" not in adata.uns and "gsr16" not in adata.varm
    assert out.obsm["gsr16"].shape == (700, 16) and "gsr16_module_0" in out.obs
    assert out.varm["gsr16"].shape == (765, 16) and "gsr16_modules" in out.varm
    assert "X_gsr16" not in out.obsm and "gsr" not in out.uns
    assert isinstance(est, GSRAutoencoder)
    ax = gsreg.sc.pl.modules(out, groupby="bulk_labels", key="gsr16", show=False)
    assert isinstance(ax, Axes)


def test_tl_gsr_returns_none_and_writes_what_fit_writes(pbmc, fitted):
    adata = pbmc.copy()
    assert gsreg.sc.tl.gsr(adata, **QUICK) is None
    ref = fitted[0]
    np.testing.assert_array_equal(adata.obsm["X_gsr"], ref.obsm["X_gsr"])
    np.testing.assert_array_equal(adata.varm["gsr"], ref.varm["gsr"])
    np.testing.assert_array_equal(adata.varm["gsr_modules"], ref.varm["gsr_modules"])
    np.testing.assert_array_equal(adata.uns["gsr"]["modules"], ref.uns["gsr"]["modules"])
    assert list(adata.obs.columns) == list(ref.obs.columns)


def test_tl_gsr_copy_leaves_the_input_untouched(pbmc):
    adata = pbmc.copy()
    before = (list(adata.obs.columns), set(adata.obsm), set(adata.varm), set(adata.uns))
    out = gsreg.sc.tl.gsr(adata, key_added="my_gsr", copy=True, **QUICK)
    assert isinstance(out, anndata.AnnData) and out is not adata
    assert (list(adata.obs.columns), set(adata.obsm), set(adata.varm), set(adata.uns)) == before
    assert {"my_gsr"} <= set(out.obsm) & set(out.uns) & set(out.varm)
    assert "my_gsr_modules" in out.varm and "my_gsr_module_0" in out.obs
    assert out.uns["my_gsr"]["keys"]["obsm"] == "my_gsr"


def test_tl_gsr_logs_like_scanpy_tools(pbmc):
    log = io.StringIO()
    logfile, verbosity = sc.settings.logfile, sc.settings.verbosity
    sc.settings.logfile, sc.settings.verbosity = log, "debug"
    try:
        gsreg.sc.tl.gsr(pbmc.copy(), **QUICK)
    finally:
        sc.settings.logfile, sc.settings.verbosity = logfile, verbosity
    text = log.getvalue()
    assert text.startswith("computing GSR (graph='learned')\n")
    assert re.search(r"\n    finished \(\d:\d\d:\d\d\)\n    and added\n", text)
    assert "    varm['gsr_modules'], the modules' gene loadings (gradient)" in text


def test_transform_other_cells(fitted):
    adata, est = fitted
    subset = adata[:100].copy()
    del subset.obsm["X_gsr"]
    assert gsreg.sc.transform(subset, est) is None
    np.testing.assert_allclose(subset.obsm["X_gsr"], adata.obsm["X_gsr"][:100], atol=1e-6)
    with pytest.raises(ValueError, match="765"):
        gsreg.sc.transform(adata[:, :10].copy(), est)


# ---------------------------------------------------------------------------- plots


def test_plots_return_axes_and_save_like_scanpy(fitted, tmp_path):
    adata, _ = fitted
    heat = gsreg.sc.pl.modules(adata, groupby="bulk_labels", show=False)
    assert isinstance(heat, Axes)
    assert len(heat.get_xticklabels()) == adata.obs["bulk_labels"].nunique()
    assert heat.get_xticklabels()[0].get_text() == adata.obs["bulk_labels"].cat.categories[0]
    heat = gsreg.sc.pl.modules(
        adata, groupby="phase", standard_scale="module", min_size=2, show=False
    )
    sizes = adata.uns["gsr"]["module_sizes"]
    assert len(heat.get_yticklabels()) == int((sizes >= 2).sum())
    axes = gsreg.sc.pl.maps(adata, groupby="bulk_labels", show=False)
    assert len(axes) == 1 + adata.obs["bulk_labels"].nunique()
    assert all(isinstance(a, Axes) for a in axes)
    assert axes[1].get_title() == adata.obs["bulk_labels"].cat.categories[0]
    figdir = sc.settings.figdir
    sc.settings.figdir = tmp_path
    try:
        assert gsreg.sc.pl.maps(adata, groupby="phase", save="_pbmc.png", show=True) is None
        assert gsreg.sc.pl.modules(adata, groupby="phase", show=True) is None
        assert gsreg.sc.pl.loadings(adata, module=0, save="_m0.pdf", show=True) is None
        gsreg.sc.pl.modules(adata, groupby="phase", save=True, show=False)
    finally:
        sc.settings.figdir = figdir
    assert (tmp_path / "gsr_maps_pbmc.png").stat().st_size > 0
    assert (tmp_path / "gsr_loadings_m0.pdf").stat().st_size > 0
    assert (tmp_path / f"gsr_modules.{sc.settings.file_format_figs}").exists()


# ---------------------------------------------------------------------------- bad input


def test_groupby_writes_the_gsr_modules_beside_their_controls_into_uns(pbmc, fitted, tmp_path):
    adata = pbmc.copy()
    est = gsreg.sc.fit(adata, groupby="bulk_labels", **QUICK)
    controls = adata.uns["gsr"]["controls"]
    assert controls["groupby"] == "bulk_labels" and controls["kind"] == "modules"
    assert controls["lambda0"]["weight"] == 0.0 and controls["lambda0"]["steps"] == est.n_steps_
    assert controls["n_modules"] == len(np.unique(est.modules_)) == controls["k"]
    ari, verdict = controls["ari"], controls["verdict"]
    best = max((name for name in ari if name != "GSR modules"), key=ari.get)
    assert verdict["best_control"] == best and verdict["gsr_ari"] == ari["GSR modules"]
    assert verdict["margin"] == pytest.approx(ari["GSR modules"] - ari[best])
    assert verdict["helps"] == (verdict["margin"] > 0 and verdict["p_value"] < 0.05)
    # the same model as without controls: the twin does not touch the GSR fit
    np.testing.assert_array_equal(adata.obsm["X_gsr"], fitted[0].obsm["X_gsr"])
    adata.write_h5ad(tmp_path / "controls.h5ad")
    again = anndata.read_h5ad(tmp_path / "controls.h5ad").uns["gsr"]["controls"]
    assert again["verdict_text"] == controls["verdict_text"]
    assert again["ari"]["GSR modules"] == pytest.approx(ari["GSR modules"])
    assert "controls" not in fitted[0].uns["gsr"]  # no groupby: no controls
    gsreg.sc.fit(adata, groupby="bulk_labels", controls=False, **QUICK)
    assert "controls" not in adata.uns["gsr"]


def test_groupby_on_a_fixed_graph_scores_maps_as_trained_and_arranged(pbmc):
    adata = pbmc.copy()
    gsreg.sc.fit(adata, graph="grid:3x3", groupby="bulk_labels", epochs=20, device="cpu")
    controls = adata.uns["gsr"]["controls"]
    assert controls["kind"] == "maps"
    scores, verdict = controls["scores"], controls["verdict"]
    assert set(scores) == {"GSR", "λ=0", "λ=0 arranged"}
    assert verdict["control_score"] == max(
        scores["λ=0"]["morans_i"], scores["λ=0 arranged"]["morans_i"]
    )
    assert verdict["margin"] == pytest.approx(scores["GSR"]["morans_i"] - verdict["control_score"])
    assert verdict["helps"] is False or verdict["margin"] > 0
    assert controls["verdict_text"].startswith("The GSR layer")


def test_bad_inputs_give_clear_errors(pbmc):
    adata = pbmc.copy()
    with pytest.raises(KeyError, match="layer 'counts' is not in adata.layers"):
        gsreg.sc.fit(adata, layer="counts", **QUICK)
    with pytest.raises(KeyError, match="structured_layer="):
        gsreg.sc.fit(adata, layer="decoder.1", **QUICK)
    with pytest.raises(KeyError, match=r"use_rep 'X_scvi' is not in adata.obsm.*X_pca"):
        gsreg.sc.fit(adata, use_rep="X_scvi", **QUICK)
    with pytest.raises(ValueError, match="not both"):
        gsreg.sc.fit(adata, layer="a", use_rep="X_pca", **QUICK)
    with pytest.raises(TypeError, match="unknown option"):
        gsreg.sc.fit(adata, n_neurons=3, **QUICK)
    with pytest.raises(ValueError, match="loadings must be None or one of"):
        gsreg.sc.tl.gsr(adata, loadings="pca", **QUICK)
    with pytest.raises(ValueError, match="key_added must be None or a non-empty string"):
        gsreg.sc.tl.gsr(adata, key_added="", **QUICK)
    with pytest.raises(TypeError, match="AnnData"):
        gsreg.sc.fit(adata.X, **QUICK)
    with pytest.raises(KeyError, match="groupby 'cell_type' is not a column of adata.obs"):
        gsreg.sc.fit(adata, groupby="cell_type", **QUICK)
    bad = adata.copy()
    bad.X[3, 5] = np.nan
    with pytest.raises(ValueError, match=r"adata.X contains NaN or Inf \(first at row 3, column 5"):
        gsreg.sc.fit(bad, **QUICK)
    bad.X = sp.csr_matrix(bad.X)
    with pytest.raises(ValueError, match="NaN"):
        gsreg.sc.fit(bad, **QUICK)
    assert "X_gsr" not in bad.obsm
    with pytest.raises(KeyError, match=r"run gsreg.sc.tl.gsr\(adata\) first"):
        gsreg.sc.pl.modules(adata, groupby="bulk_labels", show=False)


def test_bad_plot_arguments(fitted):
    adata, _ = fitted
    with pytest.raises(KeyError, match="groupby 'cell_type' is not a column"):
        gsreg.sc.pl.modules(adata, groupby="cell_type", show=False)
    with pytest.raises(ValueError, match="standard_scale"):
        gsreg.sc.pl.modules(adata, groupby="phase", standard_scale="var", show=False)
    with pytest.raises(ValueError, match="min_size"):
        gsreg.sc.pl.modules(adata, groupby="phase", min_size=0, show=False)
