"""Do gsreg.sc's gene loadings name the CD34+ progenitor markers of pbmc68k_reduced?

One fit (scaled X, seed 0, 300 epochs, a learned graph with k = 2 that keeps updating:
six modules) and the module most specific to the 13 CD34+ cells (the largest difference
of mean module activity between CD34+ and other cells, in standard deviations). See
docs/scanpy.md ("Gene loadings") for the measurement behind these tests.
"""

import numpy as np
import pytest

anndata = pytest.importorskip("anndata")
sc = pytest.importorskip("scanpy")

import gsreg.sc  # noqa: E402
from gsreg.sc._data import Rows  # noqa: E402
from gsreg.sc._loadings import _mean_jacobian  # noqa: E402

pytestmark = pytest.mark.slow

# CD34+ haematopoietic progenitor markers among the 765 genes of pbmc68k_reduced
# (HOPX and STMN1 are there too but are not CD34+-specific in these cells: HOPX is higher
# in NK cells, STMN1 marks cycling cells of any type)
CD34_MARKERS = ["PRSS57", "SPINK2", "SOX4", "CYTL1", "EGFL7", "GATA2", "IGLL1", "CDK6"]
FIT = dict(epochs=300, learned_options={"k": 2, "stable_updates": None}, device="cpu")


@pytest.fixture(scope="module")
def fitted():
    adata = sc.datasets.pbmc68k_reduced()
    est = gsreg.sc.fit(adata, random_state=0, **FIT)
    gsreg.sc.transform(adata, est, key_added="gsr_corr", loadings="correlation")
    return adata, est


@pytest.fixture(scope="module")
def pbmc(fitted):
    return fitted[0]


def _cd34_module(adata, key):
    """Column name of the module whose mean activity is highest in CD34+ cells relative
    to the others (in standard deviations of that module's activity)."""
    columns = list(adata.uns[key]["module_columns"])
    activity = adata.obs[columns].to_numpy(np.float64)
    cd34 = (adata.obs["bulk_labels"] == "CD34+").to_numpy()
    specificity = (activity[cd34].mean(0) - activity[~cd34].mean(0)) / activity.std(0)
    return int(np.argmax(specificity)), float(specificity.max())


def _markers_in_top(adata, key, n=20):
    module, _ = _cd34_module(adata, key)
    top = gsreg.sc.get.loadings(adata, key=key)[f"module_{module}"].nlargest(n).index
    return [gene for gene in top if gene in CD34_MARKERS]


def test_the_named_markers_are_cd34_specific_in_these_cells():
    adata = sc.datasets.pbmc68k_reduced()
    cd34 = (adata.obs["bulk_labels"] == "CD34+").to_numpy()
    X = adata[:, CD34_MARKERS].X  # scaled: each gene has standard deviation 1
    assert cd34.sum() == 13
    assert (X[cd34].mean(0) - X[~cd34].mean(0) > 2).all()


def test_a_module_is_specific_to_cd34_cells(pbmc):
    assert pbmc.uns["gsr"]["n_modules"] == 6
    _, specificity = _cd34_module(pbmc, "gsr")
    assert specificity > 3


def test_the_cd34_modules_activity_correlates_with_the_markers(pbmc):
    assert len(_markers_in_top(pbmc, "gsr_corr")) >= 2


@pytest.mark.xfail(
    strict=True,
    reason="the module marks CD34+ cells, but the decoder does not reconstruct their "
    "markers through it: raising its units raises B-cell genes (CD79A/B), in CD34+ cells "
    "too; the markers rise when the two large modules fall (docs/scanpy.md)",
)
def test_the_cd34_module_drives_the_markers_in_the_model(pbmc):
    assert len(_markers_in_top(pbmc, "gsr")) >= 2


def test_in_cd34_cells_the_module_raises_b_cell_genes_and_the_markers_follow_the_large_modules(
    fitted,
):
    adata, est = fitted
    cd34 = (adata.obs["bulk_labels"] == "CD34+").to_numpy()
    Z = adata.obsm["X_gsr"].astype(np.float64)
    labels = np.asarray(adata.uns["gsr"]["modules"])
    # (genes, units) gradient of the reconstruction averaged over the 13 CD34+ cells
    jacobian = _mean_jacobian(est, Rows(adata.X[cd34], "X"), Z.shape[1]) * Z.std(axis=0)
    per_module = np.stack([jacobian[:, labels == m].sum(1) for m in np.unique(labels)], 1)
    genes = list(adata.var_names)
    module, _ = _cd34_module(adata, "gsr")
    top = [genes[g] for g in np.argsort(-per_module[:, module])[:20]]
    assert "CD79A" in top and len([g for g in top if g in CD34_MARKERS]) < 2
    for marker in ("SPINK2", "CYTL1", "PRSS57"):
        assert (per_module[genes.index(marker), :2] < 0).all(), marker
