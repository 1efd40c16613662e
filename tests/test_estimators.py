"""The scikit-learn estimators GSRAutoencoder and GSRClassifier."""

import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

import gsreg
from gsreg import GSRAutoencoder, GSRClassifier, analysis, estimators, graphs
from gsreg.estimators import (
    BUDGET,
    CLASSIFIER_WEIGHT,
    MAX_EPOCHS,
    MIN_EPOCHS,
    arrange_epochs,
    auto_epochs,
    budget_epochs,
)
from gsreg.models import DenseAutoencoder
from gsreg.training import fit

FAST = dict(epochs=3, batch_size=64, lr=1e-2, random_state=0, device="cpu")
# a fixed weight unless a test says budget: most tests here check the training mechanics
FIXED = dict(weight=3e-3, arrange=False)


def fast_ae(**kw):
    return GSRAutoencoder(
        **{"graph": "grid:2x3", "hidden": (8,), "latent": 3, **FAST, **FIXED, **kw}
    )


def fast_clf(**kw):
    return GSRClassifier(
        **{"graph": "grid:2x3", "hidden": (8,), **FAST, **FIXED, "epochs": 10, "lr": 3e-2, **kw}
    )


# scikit-learn's estimator checks run in tests/test_sklearn_checks.py


@pytest.fixture(scope="module")
def digits():
    from gsreg.datasets import digits as load

    data = load()
    return data.subset(600, 300, seed=0)


# --------------------------------------------------------------------------- parameters


def test_parameters_are_stored_verbatim_and_checked_in_fit():
    est = GSRAutoencoder(weight=-1.0, epochs=0, scale="bogus", learned_options={"k": 3})
    assert est.get_params()["weight"] == -1.0
    assert est.get_params()["epochs"] == 0
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    X = np.random.default_rng(0).normal(size=(20, 4))
    with pytest.raises(ValueError, match="weight must be None .* or a finite number >= 0"):
        est.fit(X)
    with pytest.raises(ValueError, match="epochs must be 'auto'"):
        fast_ae(epochs=0).fit(X)
    with pytest.raises(ValueError, match="scale must be one of"):
        fast_ae(scale="bogus").fit(X)
    with pytest.raises(ValueError, match="layer must be"):
        fast_ae(layer="decoder.7").fit(X)
    with pytest.raises(TypeError, match="graph must be a spec string"):
        fast_ae(graph=3).fit(X)
    with pytest.raises(ValueError, match="valid forms"):
        fast_ae(graph="hexagon:3").fit(X)
    with pytest.raises(TypeError, match="bad learned_options"):
        fast_ae(graph="learned", learned_options={"colour": 1}).fit(X)
    with pytest.raises(ValueError, match="give a weight or a budget"):
        fast_ae(weight=None, budget=None).fit(X)
    with pytest.raises(ValueError, match="budget must be"):
        fast_ae(weight=None, budget=0.0).fit(X)
    with pytest.raises(TypeError, match="arrange must be 'auto', True or False"):
        fast_ae(arrange="yes").fit(X)
    with pytest.raises(ValueError, match="arrange=True needs a fixed graph"):
        fast_ae(graph="learned", arrange=True).fit(X)
    with pytest.raises(ValueError, match="needs epochs >= 2"):
        fast_clf(arrange=True, epochs=1).fit(X, np.arange(20) % 2)


def test_auto_epochs_scale_with_the_data():
    assert auto_epochs(60_000, 500) == 25  # 120 steps an epoch
    assert auto_epochs(1_437, 500) == 1000
    assert auto_epochs(1_000, 500) == MAX_EPOCHS
    assert auto_epochs(10, 500) == MAX_EPOCHS
    assert auto_epochs(10_000_000, 500) == MIN_EPOCHS
    est = fast_ae(epochs="auto", batch_size=64).fit(np.random.default_rng(0).normal(size=(30, 4)))
    assert est.n_iter_ == MAX_EPOCHS and len(est.history_) == MAX_EPOCHS


# --------------------------------------------------------------------------- shapes


def test_structured_width_follows_the_graph(digits):
    X = digits.X_train[:100]
    est = fast_ae(graph="torus:4x5").fit(X)
    assert est.activations(X).shape == (100, 20)
    assert est.transform(X).shape == (100, 3)
    assert est.model_.config["decoder_hidden"] == [20]
    assert est.graph_ == graphs.torus(4, 5)
    latent = fast_ae(graph=graphs.ring(7), layer="encoder.latent").fit(X)
    assert latent.transform(X).shape == (100, 7)
    np.testing.assert_array_equal(latent.transform(X), latent.activations(X))
    assert latent.activations(X, layer="encoder.0").shape == (100, 8)
    enc = fast_ae(graph="grid:2x2", layer="encoder.0", hidden=(8, 6)).fit(X)
    assert enc.model_.config["hidden"] == [4, 6]


def test_readouts(digits):
    X, y = digits.X_train, digits.y_train
    est = fast_ae(graph="grid:3x3").fit(X)
    maps = est.class_maps(X, y)
    assert maps.shape == (10, 9)
    Z = est.activations(X)
    np.testing.assert_allclose(maps[4], Z[y == 4].mean(axis=0), rtol=1e-5)
    dev = est.class_maps(X, y, deviation=True)
    np.testing.assert_allclose(dev, maps - Z.mean(axis=0), rtol=1e-4, atol=1e-5)
    recon = est.reconstruct(X)
    assert recon.shape == X.shape and recon.dtype == np.float32
    assert est.score(X) == pytest.approx(-np.mean((recon.astype(float) - X) ** 2), rel=1e-5)
    assert est.get_feature_names_out().tolist() == [f"gsrautoencoder{i}" for i in range(3)]
    assert len(est.history_) == est.n_iter_ == 3


def test_sparse_input_is_accepted(digits):
    X = digits.X_train[:80]
    dense = fast_ae().fit(X)
    sparse = fast_ae().fit(sp.csr_matrix(X))
    np.testing.assert_allclose(sparse.transform(sp.csr_matrix(X)), dense.transform(X), atol=1e-6)


@pytest.mark.parametrize("scale", ["global", "standard", None])
def test_sparse_input_stays_sparse_and_matches_dense(digits, scale, monkeypatch):
    X = digits.X_train[:300].copy()
    X[X < 0.5 * X.max()] = 0.0
    y = digits.y_train[:300]
    dense_ae = fast_ae(scale=scale).fit(X)
    dense_clf = fast_clf(scale=scale).fit(X, y)
    Xs = sp.csr_matrix(X)
    densified = []
    to_array = sp.csr_matrix.toarray

    def spy(self, *args, **kwargs):
        densified.append(self.shape[0])
        return to_array(self, *args, **kwargs)

    monkeypatch.setattr(sp.csr_matrix, "toarray", spy)
    monkeypatch.setattr(gsreg.estimators, "_PREDICT_BATCH", 100)
    ae = fast_ae(scale=scale).fit(sp.csc_matrix(X))
    clf = fast_clf(scale=scale).fit(Xs, y)
    np.testing.assert_allclose(ae.input_mean_, dense_ae.input_mean_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ae.input_scale_, dense_ae.input_scale_, rtol=1e-12)
    np.testing.assert_allclose(ae.transform(Xs), dense_ae.transform(X), atol=1e-5)
    np.testing.assert_allclose(ae.activations(Xs), dense_ae.activations(X), atol=1e-5)
    np.testing.assert_allclose(ae.reconstruct(Xs), dense_ae.reconstruct(X), atol=1e-4)
    assert ae.score(Xs) == pytest.approx(dense_ae.score(X), rel=1e-5)
    np.testing.assert_allclose(clf.predict_proba(Xs), dense_clf.predict_proba(X), atol=1e-5)
    assert densified and max(densified) <= 100  # batches only, never the whole matrix


def test_all_zero_sparse_input():
    X = sp.csr_matrix((30, 4))
    est = fast_ae().fit(X)
    np.testing.assert_array_equal(est.input_mean_, np.zeros(4))
    np.testing.assert_array_equal(est.input_scale_, np.ones(4))
    assert est.transform(X).shape == (30, 3)


def test_sparse_nan_is_rejected():
    X = sp.random(20, 4, density=0.5, format="csr", random_state=0)
    X.data[2] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        fast_ae().fit(X)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda X: X[:, 0], "Expected 2D array"),
        (lambda X: X[:0], "0 sample"),
        (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X), "NaN"),
        (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 5, np.inf, X), "infinity"),
    ],
)
def test_bad_data_fails_clearly(make, match):
    X = np.random.default_rng(0).normal(size=(20, 4))
    with pytest.raises(ValueError, match=match):
        fast_ae().fit(make(X))
    est = fast_ae().fit(X)
    with pytest.raises(ValueError, match=match):
        est.transform(make(X))


def test_wrong_number_of_features_and_unfitted():
    X = np.random.default_rng(0).normal(size=(20, 4))
    with pytest.raises(NotFittedError):
        fast_ae().transform(X)
    with pytest.raises(NotFittedError):
        fast_clf().predict(X)
    est = fast_ae().fit(X)
    with pytest.raises(ValueError, match="X has 5 features, but GSRAutoencoder is expecting 4"):
        est.transform(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="at least 2 classes"):
        fast_clf().fit(X, np.zeros(20))


# --------------------------------------------------------------------------- training


def test_weight_zero_is_the_same_model_without_gsr(digits):
    """Same initial weights, same batches: weight=0 trains exactly the plain model."""
    X = digits.X_train[:200]
    est = fast_ae(weight=0.0, random_state=7).fit(X)
    torch.manual_seed(7)
    model = DenseAutoencoder(64, hidden=[8], latent=3, decoder_hidden=[6])
    Xs = torch.from_numpy(((X - est.input_mean_) / est.input_scale_).astype(np.float32))
    fit(model, Xs, epochs=3, batch_size=64, lr=1e-2, seed=7, progress=False, device="cpu")
    for (name, a), b in zip(
        est.model_.state_dict().items(), model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    gsr = fast_ae(weight=1.0, random_state=7).fit(X)
    assert not torch.equal(gsr.model_.decoder[0][0].weight, model.decoder[0][0].weight)


def test_gsr_structures_the_layer_at_little_cost(digits):
    settings = dict(
        graph="grid:6x6",
        hidden=(32,),
        latent=8,
        epochs=150,
        batch_size=200,
        lr=3e-3,
        random_state=0,
        device="cpu",
    )
    plain = GSRAutoencoder(weight=0.0, **settings).fit(digits.X_train)
    gsr = GSRAutoencoder(weight=1e-2, **settings).fit(digits.X_train)
    g = graphs.grid(6, 6)
    scores = [
        analysis.localization(e.activations(digits.X_test), digits.y_test, g)["morans_i"]
        for e in (plain, gsr)
    ]
    assert scores[1] > scores[0] + 0.2
    assert -gsr.score(digits.X_test) < 1.5 * -plain.score(digits.X_test)


def test_random_state_makes_fits_repeatable_and_leaves_torch_rng_alone(digits):
    X = digits.X_train[:100]
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = fast_ae(random_state=3).fit(X).transform(X)
    assert torch.equal(torch.rand(3), before)
    b = fast_ae(random_state=3).fit(X).transform(X)
    c = fast_ae(random_state=4).fit(X).transform(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    rng = np.random.RandomState(0)
    assert fast_ae(random_state=rng).fit(X).seed_ != fast_ae(random_state=rng).fit(X).seed_


def test_learned_graph_gives_modules(digits):
    X = digits.X_train[:300]
    est = fast_ae(
        graph="learned",
        n_structured=12,
        epochs=20,
        learned_options={"k": 3, "on_disconnect": "continue"},
    ).fit(X)
    assert est.activations(X).shape == (300, 12)
    assert isinstance(est.graph_, gsreg.Graph) and est.graph_.n_nodes == 12
    assert est.modules_.shape == (12,)
    np.testing.assert_array_equal(est.modules_, est.coactivation_.modules())
    assert est.coactivation_.warmup_steps == est.n_steps_ // 4
    with pytest.warns(RuntimeWarning, match="no graph was learned"):
        none = fast_ae(
            graph="learned", n_structured=12, learned_options={"k": 3, "warmup_steps": 10_000}
        ).fit(X)
    assert none.modules_ is None and none.graph_ is None


def test_verbose_zero_prints_nothing(capsys):
    fast_ae(verbose=0).fit(np.random.default_rng(0).normal(size=(20, 4)))
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_verbose_zero_stays_silent_for_a_long_fit_at_a_terminal(monkeypatch, capsys):
    monkeypatch.setattr(estimators, "_interactive_stderr", lambda: True)
    monkeypatch.setattr(estimators, "AUTO_PROGRESS_STEPS", 1)
    fast_ae(verbose=0).fit(np.random.default_rng(0).normal(size=(20, 4)))
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


@pytest.mark.parametrize(
    "interactive, epochs, shown",
    [(True, 6, True), (True, 5, False), (False, 6, False), (False, 1000, False)],
)
def test_verbose_auto_draws_a_bar_only_for_long_fits_where_a_person_watches(
    monkeypatch, capsys, interactive, epochs, shown
):
    monkeypatch.setattr(estimators, "_interactive_stderr", lambda: interactive)
    monkeypatch.setattr(estimators, "AUTO_PROGRESS_STEPS", 6)
    X = np.random.default_rng(0).normal(size=(20, 4))  # one batch: one step an epoch
    est = fast_ae(epochs=epochs, batch_size=20)
    assert est.verbose == "auto" == GSRAutoencoder().verbose == GSRClassifier().verbose
    est.fit(X)
    out = capsys.readouterr()
    assert out.out == ""
    assert ("GSRAutoencoder" in out.err) is shown
    assert (f"{epochs}/{epochs}" in out.err) is shown


def test_verbose_auto_counts_the_budget_fine_tuning_steps(monkeypatch, capsys):
    monkeypatch.setattr(estimators, "_interactive_stderr", lambda: True)
    monkeypatch.setattr(estimators, "AUTO_PROGRESS_STEPS", 5)
    X = np.random.default_rng(0).normal(size=(20, 4))
    # 4 epochs of one step, then budget_epochs(4) = 1 more: 5 steps planned
    fast_ae(weight=None, budget=0.05, epochs=4, batch_size=20).fit(X)
    assert "GSRAutoencoder" in capsys.readouterr().err


def test_verbose_one_draws_a_bar_wherever_stderr_goes(capsys):
    # the CLI passes verbose=int(progress)
    fast_ae(verbose=1).fit(np.random.default_rng(0).normal(size=(20, 4)))
    assert "GSRAutoencoder" in capsys.readouterr().err


def test_interactive_stderr_means_a_terminal_or_a_notebook(monkeypatch):
    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    Kernel = type("OutStream", (), {"__module__": "ipykernel.iostream"})
    for stream, expected in [(Stream(True), True), (Stream(False), False), (Kernel(), True)]:
        monkeypatch.setattr(sys, "stderr", stream)
        assert estimators._interactive_stderr() is expected
    monkeypatch.setattr(sys, "stderr", None)
    assert estimators._interactive_stderr() is False
    monkeypatch.setattr(sys, "stderr", object())  # no isatty at all
    assert estimators._interactive_stderr() is False


@pytest.mark.parametrize("verbose", ["loud", -1, 1.5])
def test_verbose_must_be_auto_or_a_count(verbose):
    with pytest.raises((ValueError, TypeError), match="verbose"):
        fast_ae(verbose=verbose).fit(np.random.default_rng(0).normal(size=(20, 4)))


# --------------------------------------------------------------------------- feature names


def labelled_frame(digits):
    import pandas as pd

    columns = [f"pixel_{i}" for i in range(digits.X_train.shape[1])]
    return pd.DataFrame(digits.X_train[:200], columns=columns), digits.y_train[:200]


def readouts(est, X, y):
    """Every method that takes X after fit, called once each."""
    calls = {
        "score": lambda: est.score(X, y),
        "activations": lambda: est.activations(X),
        "class_maps": lambda: est.class_maps(X, y),
    }
    if isinstance(est, GSRAutoencoder):
        calls.update(transform=lambda: est.transform(X), reconstruct=lambda: est.reconstruct(X))
    else:
        calls.update(
            predict=lambda: est.predict(X),
            predict_proba=lambda: est.predict_proba(X),
            predict_log_proba=lambda: est.predict_log_proba(X),
        )
    return calls


@pytest.mark.parametrize("make", [fast_ae, fast_clf])
def test_a_dataframe_fitted_estimator_reads_dataframes_without_warnings(digits, make):
    frame, y = labelled_frame(digits)
    est = make().fit(frame, y)
    assert est.feature_names_in_.tolist() == frame.columns.tolist()
    for name, call in readouts(est, frame, y).items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            call()  # any warning fails here, naming the method in the traceback
        assert name


@pytest.mark.parametrize("make", [fast_ae, fast_clf])
def test_an_array_after_a_dataframe_fit_warns_once_as_scikit_learn_does(digits, make):
    from sklearn.preprocessing import StandardScaler

    frame, y = labelled_frame(digits)
    est = make().fit(frame, y)
    reference = StandardScaler().fit(frame)
    with warnings.catch_warnings(record=True) as expected:
        warnings.simplefilter("always")
        reference.transform(frame.to_numpy())
    assert len(expected) == 1
    message = str(expected[0].message).replace("StandardScaler", type(est).__name__)
    for name, call in readouts(est, frame.to_numpy(), y).items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        got = [(w.category, str(w.message)) for w in caught]
        assert got == [(expected[0].category, message)], name


# --------------------------------------------------------------------------- batch independence


def test_a_rows_outputs_do_not_depend_on_the_other_rows_in_the_call():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 50))
    y = np.arange(60) % 3  # three logits: the narrow product whose float32 kernel varies
    clf = fast_clf(hidden=(50,), graph="ring:10").fit(X, y)
    ae = fast_ae(hidden=(50,), latent=3, graph="ring:10").fit(X)
    order = rng.permutation(60)
    for method in (clf.predict_proba, clf.predict_log_proba, clf.predict, clf.activations,
                   ae.transform, ae.reconstruct, ae.activations):  # fmt: skip
        full = method(X)
        alone = np.concatenate([method(X[i : i + 1]) for i in range(len(X))])
        np.testing.assert_array_equal(alone, full, err_msg=method.__name__)
        np.testing.assert_array_equal(method(X[order]), full[order], err_msg=method.__name__)
        np.testing.assert_array_equal(method(X[7:20]), full[7:20], err_msg=method.__name__)


def test_read_outs_match_the_float32_model_and_probabilities_are_float64():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 6))
    y = np.arange(40) % 4
    clf = fast_clf().fit(X, y)
    ae = fast_ae().fit(X)
    scaled = torch.from_numpy(((X - clf.input_mean_) / clf.input_scale_).astype(np.float32))
    with torch.no_grad():
        logits = clf.model_(scaled).double()
        latent = ae.model_.encode(
            torch.from_numpy(((X - ae.input_mean_) / ae.input_scale_).astype(np.float32))
        )
    proba = clf.predict_proba(X)
    assert proba.dtype == np.float64 and clf.predict_log_proba(X).dtype == np.float64
    np.testing.assert_allclose(proba, torch.softmax(logits, 1).numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.log(proba), clf.predict_log_proba(X), rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])
    Z = ae.transform(X)
    assert Z.dtype == np.float32
    np.testing.assert_allclose(Z, latent.numpy(), rtol=1e-5, atol=1e-6)


def test_classifier(digits):
    labels = np.array([f"digit {v}" for v in range(10)])
    y = labels[digits.y_train]
    clf = GSRClassifier(
        graph="grid:4x4",
        hidden=(32,),
        epochs=60,
        batch_size=200,
        lr=3e-3,
        random_state=0,
        device="cpu",
    ).fit(digits.X_train, y)
    assert clf.classes_.tolist() == sorted(labels.tolist())
    proba = clf.predict_proba(digits.X_test)
    assert proba.shape == (300, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert set(clf.predict(digits.X_test)) <= set(labels)
    assert clf.score(digits.X_test, labels[digits.y_test]) > 0.85
    assert clf.activations(digits.X_test).shape == (300, 16)
    assert clf.class_maps(digits.X_test, digits.y_test).shape == (10, 16)
    assert clf.layer_ == "fc"


def test_estimators_work_in_pipelines(digits):
    pipe = make_pipeline(FunctionTransformer(lambda X: X * 16.0), fast_ae()).fit(digits.X_train)
    assert pipe.transform(digits.X_test).shape == (300, 3)


def standardised_energy(Z, graph):
    """Dirichlet energy per sample of the units standardised over the samples."""
    S = (Z - Z.mean(axis=0)) / np.where(Z.std(axis=0) > 0, Z.std(axis=0), 1.0)
    return analysis.dirichlet_energy(S, graph, normalize=False)


def test_arrange_trains_a_quarter_without_gsr_then_arranges_in_place_and_trains_on(
    digits, monkeypatch
):
    X = digits.X_train[:256]
    calls = []
    real = gsreg.placement.arrange

    def spy(model, layer, graph, rows, **kw):
        before = model(rows).detach().clone()
        perm = real(model, layer, graph, rows, **kw)
        calls.append(
            dict(
                layer=layer,
                graph=graph,
                n_rows=len(rows),
                perm=perm,
                weight=model.decoder[0][0].weight.detach().clone(),
            )
        )
        torch.testing.assert_close(model(rows).detach(), before, rtol=1e-5, atol=1e-5)
        return perm

    monkeypatch.setattr(gsreg.placement, "arrange", spy)
    est = fast_ae(arrange=True, epochs=8, batch_size=64).fit(X)
    assert len(calls) == 1
    call = calls[0]
    assert call["layer"] == "decoder.0" and call["graph"] == graphs.grid(2, 3)
    assert call["n_rows"] == 256
    assert arrange_epochs(8) == 2 and est.arrange_step_ == 2 * 4 and est.n_steps_ == 8 * 4
    np.testing.assert_array_equal(est.arrangement_, call["perm"])
    weights = est.history_["gsr/decoder.0/weight"]
    assert weights[:2] == [0.0, 0.0] and all(w == pytest.approx(3e-3) for w in weights[2:])
    assert est.history_["epoch"] == list(range(1, 9))
    # training went on after the arrangement
    assert not torch.equal(est.model_.decoder[0][0].weight, call["weight"])


def test_arrange_gives_a_smoother_layer_than_training_with_gsr_alone(digits):
    settings = dict(
        graph="grid:4x4",
        weight=1e-2,
        hidden=(16,),
        latent=4,
        epochs=12,
        batch_size=100,
        lr=1e-2,
        random_state=0,
        device="cpu",
    )
    plain = GSRAutoencoder(**settings).fit(digits.X_train)
    arranged = GSRAutoencoder(arrange=True, **settings).fit(digits.X_train)
    assert plain.n_steps_ == arranged.n_steps_ and plain.arrangement_ is None
    g = graphs.grid(4, 4)
    energy = [standardised_energy(e.activations(digits.X_test), g) for e in (plain, arranged)]
    assert energy[1] < 0.8 * energy[0]


# --------------------------------------------------------------------------- saving


@pytest.mark.parametrize("graph", ["grid:2x3", "learned", graphs.ring(5)])
def test_autoencoder_save_load_reproduces_transform_exactly(tmp_path, digits, graph):
    X = digits.X_train[:150]
    est = fast_ae(graph=graph, n_structured=8, learned_options={"k": 2}).fit(X)
    path = est.save(tmp_path / "ae.safetensors")
    again = GSRAutoencoder.load(path)
    np.testing.assert_array_equal(again.transform(digits.X_test), est.transform(digits.X_test))
    np.testing.assert_array_equal(again.activations(X), est.activations(X))
    np.testing.assert_array_equal(again.reconstruct(X), est.reconstruct(X))
    assert again.get_params() == est.get_params()
    assert again.graph_ == est.graph_
    assert again.history_.epochs == est.history_.epochs
    assert again.n_features_in_ == 64 and again.n_iter_ == est.n_iter_
    if est.modules_ is not None:
        np.testing.assert_array_equal(again.modules_, est.modules_)
    assert again.arrangement_ is None and again.arrange_step_ is None
    with pytest.raises(ValueError, match="not a GSRClassifier"):
        GSRClassifier.load(path)


def test_classifier_save_load_reproduces_predictions_exactly(tmp_path, digits):
    import pandas as pd

    X = pd.DataFrame(digits.X_train[:150], columns=[f"px{i}" for i in range(64)])
    y = np.array(["odd", "even"])[digits.y_train[:150] % 2]
    clf = fast_clf(arrange=True).fit(X, y)
    again = GSRClassifier.load(clf.save(tmp_path / "clf.safetensors"))
    np.testing.assert_array_equal(again.arrangement_, clf.arrangement_)
    assert again.arrange_step_ == clf.arrange_step_ == 2 * 3
    Xt = pd.DataFrame(digits.X_test, columns=X.columns)
    np.testing.assert_array_equal(again.predict_proba(Xt), clf.predict_proba(Xt))
    np.testing.assert_array_equal(again.predict(Xt), clf.predict(Xt))
    assert again.classes_.dtype == clf.classes_.dtype
    assert again.feature_names_in_.tolist() == X.columns.tolist()
    loaded = gsreg.load(tmp_path / "clf.safetensors")
    assert type(loaded.model).__name__ == "DenseClassifier"
    assert loaded.graphs["fc"] == graphs.grid(2, 3)


# --------------------------------------------------------------------------- budget


def test_budget_default_trains_the_weight_zero_run_then_fine_tunes_within_the_budget(digits):
    """With the default budget (learned graph: no arrangement) the first ``epochs`` are the
    weight=0 run step for step; the fine-tuning epochs that follow carry the weight the
    budget sets, and the report states the reference and the spend."""
    X = digits.X_train[:300]
    kw = dict(
        graph="learned",
        n_structured=12,
        learned_options={"k": 3},
        epochs=40,
        batch_size=64,
        lr=1e-2,
        random_state=0,
        device="cpu",
        hidden=(8,),
        latent=3,
    )
    twin = GSRAutoencoder(weight=0.0, **kw).fit(X)
    est = GSRAutoencoder(budget=BUDGET, **kw).fit(X)
    assert est.weight is None and est.budget == BUDGET
    extra = budget_epochs(40)
    assert est.n_iter_ == 40 + extra == len(est.history_)
    assert est.history_["task_loss"][:40] == twin.history_["task_loss"]
    weights = est.history_["gsr/decoder.0/weight"]
    assert weights[:40] == [0.0] * 40 and all(w > 0 for w in weights[41:])
    report = est.budget_report_
    assert report["budget"] == BUDGET and report["reference"] > 0
    assert report["weights"]["decoder.0"] == pytest.approx(est._final_weight())
    assert est.arrangement_ is None


def test_learned_graph_default_is_the_measured_recipe(digits):
    """graph="learned" with the defaults: a fixed weight, the centred penalty and the
    recipe's graph options, scheduled on the run's length (learned_options still win)."""
    X = digits.X_train[:300]
    est = fast_ae(
        graph="learned", weight=None, n_structured=12, epochs=60, learned_options={"k": 3}
    ).fit(X)
    lg = est.coactivation_
    assert est.budget == "auto" and est.budget_report_ is None
    assert est.n_iter_ == 60 and est.n_steps_ == 60 * 5
    assert lg.features == "standardized" and lg.k == 3 and lg.normalize == "centered"
    assert lg.stable_updates == 3 and lg.release_steps == 0
    assert lg.warmup_steps == est.n_steps_ // 10 and lg.update_every == est.n_steps_ // 60
    assert est._final_weight() == gsreg.coactivation.RECOMMENDED_WEIGHT
    weights = est.history_["gsr/decoder.0/weight"]
    assert set(weights) == {gsreg.coactivation.RECOMMENDED_WEIGHT}


def test_budget_with_a_fixed_graph_arranges_the_units_before_fine_tuning(digits, tmp_path):
    X = digits.X_train[:256]
    est = fast_ae(weight=None, arrange="auto", epochs=6).fit(X)
    assert est.arrangement_ is not None and est.arrange_step_ == 6 * 4
    assert est.n_steps_ == (6 + budget_epochs(6)) * 4
    again = GSRAutoencoder.load(est.save(tmp_path / "b.safetensors"))
    assert again.budget_report_ == est.budget_report_
    np.testing.assert_array_equal(again.transform(X), est.transform(X))
    # the classifier's default is a fixed weight, without an arrangement
    clf = GSRClassifier()
    assert clf.weight == CLASSIFIER_WEIGHT and clf.budget is None and clf.arrange == "auto"
    # an explicit weight keeps the fixed-weight training, no arrangement under "auto"
    fixed = fast_ae(weight=1e-3, arrange="auto", epochs=6).fit(X)
    assert fixed.arrangement_ is None and fixed.budget_report_ is None


def test_threads_hold_while_fitting_and_are_restored(monkeypatch):
    import gsreg.estimators as est_module

    seen = []
    real_fit = est_module.fit

    def recording_fit(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(est_module, "fit", recording_fit)
    before = torch.get_num_threads()
    target = 2 if before == 1 else 1
    X = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
    GSRAutoencoder(graph="grid:2x2", weight=1e-3, epochs=1, threads=target).fit(X)
    assert seen and set(seen) == {target}
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"):
        GSRAutoencoder(graph="grid:2x2", threads=0).fit(X)
