import copy
import json
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from gsreg.datasets import digits
from gsreg.models import ConvClassifier, DenseAutoencoder
from gsreg.training import History, evaluate, fit, resolve_device


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny models run faster on one thread and do not stall when the cores are shared.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return digits().subset(n_train=400, n_test=100, seed=0)


def _ae(seed=0):
    torch.manual_seed(seed)
    return DenseAutoencoder(64, hidden=(32,), latent=8)


class FakeRegularizer:
    """Constant penalty plus an optional weight-norm term; counts steps."""

    def __init__(self, model=None, value=0.5, strength=0.0, nan_at=None):
        self.model, self.value, self.strength, self.nan_at = model, value, strength, nan_at
        self.steps = 0
        self.updated_between = []

    def penalty(self):
        self._snapshot = [p.detach().clone() for p in self.model.parameters()]
        if self.nan_at is not None and self.steps + 1 == self.nan_at:
            return torch.tensor(float("nan"))
        norm = sum((p**2).sum() for p in self.model.parameters())
        return self.value + self.strength * norm - self.strength * norm.detach()

    def step(self):
        self.steps += 1
        changed = any(
            not torch.equal(a, p)
            for a, p in zip(self._snapshot, self.model.parameters(), strict=True)
        )
        self.updated_between.append(changed)

    def logs(self):
        return {"fake/steps": torch.tensor(float(self.steps)), "fake/const": 2.0}


def test_fit_reconstruction_decreases_loss(data):
    model = _ae()
    before = evaluate(model, data.X_test)["mse"]
    h = fit(
        model,
        data.X_train,
        epochs=8,
        batch_size=50,
        lr=3e-3,
        X_val=data.X_test,
        progress=False,
        device="cpu",
    )
    assert len(h) == 8 and h["epoch"] == list(range(1, 9))
    assert h["train_loss"][-1] < 0.7 * h["train_loss"][0]
    assert h.last["val_mse"] < 0.7 * before
    assert h.last["val_mse"] == pytest.approx(evaluate(model, data.X_test)["mse"])
    assert h["penalty"] == [0.0] * 8 and h["train_loss"] == h["task_loss"]
    assert all(s > 0 for s in h["seconds"])


def test_fit_classification_beats_chance(data):
    torch.manual_seed(0)
    net = ConvClassifier(in_shape=(1, 8, 8), n_classes=10, hidden=32, dropout=0.2)
    X = data.X_train.reshape(-1, 1, 8, 8)
    h = fit(
        net,
        X,
        data.y_train,
        task="classification",
        epochs=6,
        batch_size=32,
        lr=2e-3,
        X_val=data.X_test,
        y_val=data.y_test,
        progress=False,
    )
    assert h["train_loss"][-1] < h["train_loss"][0]
    assert h.last["val_accuracy"] > 0.5
    metrics = evaluate(net, data.X_test, data.y_test, task="classification")
    assert set(metrics) == {"accuracy", "loss"}
    assert metrics["accuracy"] == pytest.approx(h.last["val_accuracy"])
    assert metrics["loss"] == pytest.approx(h.last["val_loss"])


def _strip_time(h):
    return [{k: v for k, v in e.items() if k != "seconds"} for e in h.epochs]


def test_fit_same_seed_same_history(data):
    torch.manual_seed(0)
    model = DenseAutoencoder(64, hidden=(32,), latent=8, noise=0.3)
    twin = copy.deepcopy(model)
    other = copy.deepcopy(model)
    kw = dict(epochs=3, batch_size=64, X_val=data.X_test, progress=False)
    h1, h2 = fit(model, data.X_train, seed=5, **kw), fit(twin, data.X_train, seed=5, **kw)
    assert _strip_time(h1) == _strip_time(h2)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)
    assert _strip_time(fit(other, data.X_train, seed=6, **kw)) != _strip_time(h1)


def test_regularizer_protocol(data):
    model = _ae()
    reg = FakeRegularizer(model, value=0.5)
    n, bs = len(data.X_train), 64
    steps = math.ceil(n / bs)
    h = fit(model, data.X_train, regularizer=reg, epochs=2, batch_size=bs, progress=False)
    assert reg.steps == 2 * steps
    assert all(reg.updated_between)  # step() runs after optimizer.step()
    assert h["penalty"] == pytest.approx([0.5, 0.5])
    for e in h.epochs:
        assert e["train_loss"] == pytest.approx(e["task_loss"] + 0.5)
        assert e["fake/const"] == 2.0
    assert h["fake/steps"] == pytest.approx([(steps + 1) / 2, steps + (steps + 1) / 2])


def test_regularizer_penalty_is_backpropagated(data):
    plain, shrunk = _ae(), _ae()
    kw = dict(epochs=3, batch_size=50, lr=1e-2, progress=False)
    fit(plain, data.X_train, **kw)
    fit(shrunk, data.X_train, regularizer=FakeRegularizer(shrunk, 0.0, strength=1.0), **kw)
    norm = lambda m: sum((p**2).sum().item() for p in m.parameters())  # noqa: E731
    assert norm(shrunk) < 0.5 * norm(plain)


def test_non_finite_loss_names_epoch_and_step(data):
    model = _ae()
    reg = FakeRegularizer(model, nan_at=3)
    with pytest.raises(RuntimeError, match="epoch 1 at step 3 of 8"):
        fit(model, data.X_train, regularizer=reg, epochs=2, batch_size=50, progress=False)


def test_fit_and_evaluate_restore_mode(data):
    model = _ae().eval()
    fit(model, data.X_train[:50], epochs=1, progress=False)
    assert not model.training
    model.train()
    evaluate(model, data.X_test)
    assert model.training


def test_fit_accepts_tensors_and_progress(data, capsys):
    model = _ae()
    X = torch.from_numpy(data.X_train[:100])
    fit(model, X, epochs=2, batch_size=30, progress=True, desc="demo-ae")
    assert "demo-ae" in capsys.readouterr().err
    fit(model, X, epochs=1, progress=False)
    assert capsys.readouterr().err == ""


def _sparse_digits(data, n=200):
    X = data.X_train[:n].copy()
    X[X < 0.5 * X.max()] = 0.0  # about half the entries zero
    return X, data.y_train[:n]


@pytest.mark.parametrize("fmt", [sp.csr_matrix, sp.csc_matrix, sp.csr_array])
def test_sparse_input_trains_exactly_as_its_dense_copy(data, fmt, monkeypatch):
    X, y = _sparse_digits(data)
    kw = dict(epochs=2, batch_size=48, progress=False, device="cpu", seed=3)
    dense, sparse = _ae(), _ae()
    reg_d, reg_s = FakeRegularizer(dense, strength=1e-3), FakeRegularizer(sparse, strength=1e-3)
    h_dense = fit(dense, X, regularizer=reg_d, X_val=X[:50], **kw)
    Xs = fmt(X)
    densified = []
    to_array = type(Xs).toarray

    def spy(self, *args, **kwargs):
        densified.append(self.shape[0])
        return to_array(self, *args, **kwargs)

    monkeypatch.setattr(type(Xs), "toarray", spy)
    h_sparse = fit(sparse, Xs, regularizer=reg_s, X_val=fmt(X[:50]), **kw)
    assert densified and max(densified) <= 48  # batches only, never the whole matrix
    assert _strip_time(h_sparse) == _strip_time(h_dense)
    for a, b in zip(dense.parameters(), sparse.parameters(), strict=True):
        assert torch.equal(a, b)
    assert evaluate(sparse, Xs, batch_size=64) == evaluate(dense, X, batch_size=64)


def test_sparse_classification_matches_dense(data):
    X, y = _sparse_digits(data)
    kw = dict(task="classification", epochs=2, batch_size=64, progress=False, seed=1)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    twin = copy.deepcopy(net)
    h1 = fit(net, X, y, X_val=X, y_val=y, **kw)
    h2 = fit(twin, sp.csr_matrix(X), y, X_val=sp.csr_matrix(X), y_val=y, **kw)
    assert _strip_time(h1) == _strip_time(h2)


def test_transform_hook_is_applied_per_batch(data):
    X, _ = _sparse_digits(data, 100)
    X64 = X.astype(np.float64)
    mean, scale = X64.mean(0), X64.std(0) + 1.0
    Xs = ((X64 - mean) / scale).astype(np.float32)
    m_t, s_t = torch.from_numpy(mean), torch.from_numpy(scale)
    seen = []

    def scaled(xb):
        seen.append(xb.dtype)
        return (xb - m_t) / s_t

    kw = dict(epochs=2, batch_size=32, progress=False, device="cpu", seed=0)
    ref, dense, sparse = _ae(), _ae(), _ae()
    h_ref = fit(ref, Xs, **kw)
    h_dense = fit(dense, X64, transform=scaled, **kw)
    h_sparse = fit(sparse, sp.csr_matrix(X64), transform=scaled, **kw)
    assert set(seen) == {torch.float64}  # float64 data reach the transform unrounded
    assert _strip_time(h_dense) == _strip_time(h_ref) == _strip_time(h_sparse)
    assert evaluate(sparse, sp.csr_matrix(X64), transform=scaled) == evaluate(ref, Xs)


def test_sparse_bad_inputs():
    bad = sp.csr_matrix(np.eye(4, 64, dtype=np.float32))
    bad.data[1] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        fit(_ae(), bad, progress=False, device="cpu")
    with pytest.raises(ValueError, match="at least one sample"):
        fit(_ae(), sp.csr_matrix((0, 64)), progress=False, device="cpu")
    with pytest.raises(ValueError, match="needs labels"):
        fit(_ae(), sp.csr_matrix((4, 64)), task="classification", progress=False)


def test_history_helpers():
    h = History([{"epoch": 1, "train_loss": 2.0}, {"epoch": 2, "train_loss": 1.0, "x": 3.0}])
    assert h["train_loss"] == [2.0, 1.0] and h["x"] == [None, 3.0]
    assert h.last["epoch"] == 2 and History().last == {}
    with pytest.raises(KeyError, match="val_mse"):
        h["val_mse"]
    d = json.loads(json.dumps(h.to_dict()))
    assert History(**d).epochs == h.epochs


@pytest.mark.parametrize(
    "X, y, kwargs, match",
    [
        (np.zeros((4, 2, 64), np.float32), None, {}, "2-D .* or 4-D .*, got 3-D"),
        (np.full((4, 64), np.nan, np.float32), None, {}, "NaN or Inf"),
        (np.zeros((0, 64), np.float32), None, {}, "at least one sample"),
        (np.zeros((4, 64), np.float32), None, {"epochs": 0}, "epochs"),
        (np.zeros((4, 64), np.float32), None, {"batch_size": 0}, "batch_size"),
        (np.zeros((4, 64), np.float32), None, {"task": "regression"}, "task"),
        (np.zeros((4, 64), np.float32), None, {"task": "classification"}, "needs labels"),
        (
            np.zeros((4, 64), np.float32),
            np.zeros(3, np.int64),
            {"task": "classification"},
            r"shape \(4,\) to match X, got \(3,\)",
        ),
        (np.zeros((4, 64), np.float32), np.zeros(4), {"task": "classification"}, "integer"),
        (
            np.zeros((4, 64), np.float32),
            -np.ones(4, np.int64),
            {"task": "classification"},
            "non-negative",
        ),
    ],
)
def test_fit_bad_inputs(X, y, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit(_ae(), X, y, progress=False, device="cpu", **kwargs)


def test_reconstruction_shape_mismatch():
    with pytest.raises(ValueError, match=r"input's shape \(4, 64\), got \(4, 10\)"):
        fit(nn.Linear(64, 10), np.zeros((4, 64), np.float32), progress=False)


def test_bad_validation_inputs(data):
    with pytest.raises(ValueError, match="X_val"):
        fit(_ae(), data.X_train, X_val=np.zeros((3, 64, 1), np.float32), progress=False)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_module_without_parameters_evaluates():
    assert evaluate(nn.Identity(), np.ones((3, 5), np.float32)) == {"mse": 0.0}


def test_a_non_finite_loss_leaves_the_model_as_it_was_before_it(data):
    """The loss turns NaN at step 3: training stops at the next check and the model's
    parameters are those it had before the bad step (here: the caller's), all finite."""
    model = _ae()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reg = FakeRegularizer(model, nan_at=3)
    with pytest.raises(RuntimeError, match="back at their state after step 0"):
        fit(model, data.X_train, regularizer=reg, epochs=2, batch_size=50, progress=False)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_a_check_inside_a_long_epoch_stops_it_early(data, monkeypatch):
    """With a check every 2 steps, a NaN at step 3 ends the epoch at step 4, not at its
    end; the model goes back to its state after step 2."""
    import gsreg.training as training

    monkeypatch.setattr(training, "GUARD_EVERY", 2)
    model = _ae()
    reg = FakeRegularizer(model, nan_at=3)
    with pytest.raises(RuntimeError, match=r"at step 3 of 4.*after step 2"):
        fit(model, data.X_train, regularizer=reg, epochs=1, batch_size=50, progress=False)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_fit_leaves_the_callers_random_stream_alone_and_is_still_reproducible():
    def train(seed):
        torch.manual_seed(123)
        model = torch.nn.Sequential(
            torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 4)
        )
        X = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
        torch.manual_seed(7)
        expected = torch.rand(3)
        torch.manual_seed(7)
        fit(model, X, epochs=2, batch_size=8, seed=seed, progress=False)
        after = torch.rand(3)  # the caller's stream continues where it was
        return expected, after, [p.detach().clone() for p in model.parameters()]

    expected, after, first = train(seed=5)
    torch.testing.assert_close(after, expected)
    _, _, again = train(seed=5)
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    _, _, other = train(seed=6)
    assert any(not torch.equal(a, b) for a, b in zip(first, other, strict=True))
