import numpy as np
import pytest

from gsreg.datasets import (
    Dataset,
    binary_modules,
    binary_patterns,
    coarse_labels,
    hierarchical,
    modules,
)


def _all(data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([data.X_train, data.X_test]), np.concatenate([data.y_train, data.y_test])


def _in_module_correlations(X: np.ndarray, features: np.ndarray) -> np.ndarray:
    corr = np.corrcoef(X[:, features].T)
    return corr[np.triu_indices(len(features), 1)]


# --------------------------------------------------------------------------- modules


def test_modules_shapes_split_and_balance():
    data = modules(n_modules=4, features_per_module=3, n_samples=1000, test_size=0.2)
    assert isinstance(data, Dataset) and data.name == "modules"
    assert data.X_train.shape == (800, 12) and data.X_test.shape == (200, 12)
    assert data.X_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert data.classes == ("module 0", "module 1", "module 2", "module 3")
    assert data.image_shape is None
    np.testing.assert_array_equal(np.bincount(data.y_train), [200] * 4)
    np.testing.assert_array_equal(np.bincount(data.y_test), [50] * 4)


def test_modules_counts_differ_by_at_most_one():
    _, y = _all(modules(n_modules=3, n_samples=1001))
    counts = np.bincount(y)
    assert counts.sum() == 1001 and counts.max() - counts.min() == 1


def test_modules_in_module_correlation_on_the_unshifted_samples():
    X, y = _all(modules(n_samples=6000, correlation=0.6, seed=1))
    for j in range(3):
        features = np.arange(5 * j, 5 * j + 5)
        r = _in_module_correlations(X[y != j], features)
        assert np.all(np.abs(r - 0.6) < 0.08), r
    across = np.corrcoef(X[y == 0][:, [5, 10]].T)[0, 1]  # modules 1 and 2, both unshifted
    assert abs(across) < 0.08


def test_modules_shift_raises_the_labelled_module_only():
    X, y = _all(modules(shift=10.0, noise=1.0, n_samples=3000))
    feature_module = np.repeat(np.arange(3), 5)
    for j in range(3):
        means = X[y == j].mean(axis=0)
        np.testing.assert_allclose(means[feature_module == j], 10.0, atol=0.2)
        np.testing.assert_allclose(means[feature_module != j], 0.0, atol=0.2)
        np.testing.assert_allclose(X[y == j].std(axis=0), 1.0, atol=0.1)


def test_modules_is_deterministic_by_seed():
    a, b, c = modules(seed=3), modules(seed=3), modules(seed=4)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.X_train, c.X_train)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_modules": 0}, "n_modules"),
        ({"features_per_module": 2.5}, "features_per_module"),
        ({"n_samples": True}, "n_samples"),
        ({"correlation": 1.0}, "correlation"),
        ({"correlation": -0.1}, "correlation"),
        ({"shift": 0.0}, "shift"),
        ({"shift": float("nan")}, "shift"),
        ({"noise": -1.0}, "noise"),
        ({"test_size": 1.5}, "test_size"),
        ({"n_samples": 2}, "n_samples"),
    ],
)
def test_modules_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        modules(**kwargs)


# --------------------------------------------------------------------------- hierarchical


def test_hierarchical_labels_and_names():
    data = hierarchical(n_modules=3, subtypes=2, features_per_module=6, n_samples=1200)
    assert data.X_train.shape[1] == 18 and data.n_classes == 6
    assert data.classes[3] == "module 1, subtype 1"
    np.testing.assert_array_equal(np.bincount(data.y_train), [160] * 6)
    np.testing.assert_array_equal(coarse_labels(data.y_train, 2), data.y_train // 2)
    np.testing.assert_array_equal(np.bincount(coarse_labels(data.y_test, 2)), [80] * 3)


def test_hierarchical_shifts_module_then_subtype_group():
    X, y = _all(hierarchical(features_per_module=5, subtypes=2, shift=10.0, subtype_shift=4.0))
    # module 1 covers features 5..9; its sub-type groups are 5..7 and 8..9
    expected = {
        2: [0] * 5 + [14] * 3 + [10] * 2 + [0] * 5,
        3: [0] * 5 + [10] * 3 + [14] * 2 + [0] * 5,
    }
    for label, means in expected.items():
        np.testing.assert_allclose(X[y == label].mean(axis=0), means, atol=0.25)


def test_hierarchical_keeps_in_module_correlation():
    X, y = _all(hierarchical(n_samples=4000, correlation=0.3, seed=2))
    r = _in_module_correlations(X[coarse_labels(y, 2) != 0], np.arange(6))
    assert np.all(np.abs(r - 0.3) < 0.08), r


def test_hierarchical_and_coarse_labels_reject_bad_arguments():
    with pytest.raises(ValueError, match="features_per_module must be an integer >= 3"):
        hierarchical(subtypes=3, features_per_module=2)
    with pytest.raises(ValueError, match="subtype_shift"):
        hierarchical(subtype_shift=-1.0)
    with pytest.raises(ValueError, match="subtypes"):
        coarse_labels(np.arange(4), 0)
    with pytest.raises(ValueError, match="non-negative integers"):
        coarse_labels(np.array([0.5, 1.0]), 2)


# --------------------------------------------------------------------------- binary modules


def test_binary_patterns_are_all_codes_with_module_0_leading():
    bits = binary_patterns(3)
    assert bits.shape == (8, 3) and bits.dtype == np.int64
    assert len({tuple(row) for row in bits}) == 8
    np.testing.assert_array_equal(bits[4], [1, 0, 0])
    np.testing.assert_array_equal(bits @ [4, 2, 1], np.arange(8))


def test_binary_modules_cover_every_pattern_exactly():
    data = binary_modules(k=3, repeats=4, samples_per_pattern=50, noise=0.0, test_size=0.2)
    X, y = _all(data)
    assert X.shape == (400, 12) and data.classes == tuple(format(p, "03b") for p in range(8))
    np.testing.assert_array_equal(np.bincount(y), [50] * 8)
    np.testing.assert_array_equal(np.bincount(data.y_test), [10] * 8)
    np.testing.assert_array_equal(X, np.repeat(binary_patterns(3)[y], 4, axis=1))
    assert {tuple(row) for row in X[:, ::4].astype(int)} == {tuple(b) for b in binary_patterns(3)}


def test_binary_modules_noise_level_and_determinism():
    data = binary_modules(k=2, repeats=10, samples_per_pattern=500, noise=0.1, seed=5)
    X, y = _all(data)
    residual = X - np.repeat(binary_patterns(2)[y], 10, axis=1)
    assert abs(residual.std() - 0.1) < 0.005 and abs(residual.mean()) < 0.005
    again = binary_modules(k=2, repeats=10, samples_per_pattern=500, noise=0.1, seed=5)
    np.testing.assert_array_equal(again.X_test, data.X_test)


@pytest.mark.parametrize(
    "kwargs", [{"k": 0}, {"repeats": -1}, {"samples_per_pattern": 0}, {"noise": float("inf")}]
)
def test_binary_modules_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        binary_modules(**kwargs)
