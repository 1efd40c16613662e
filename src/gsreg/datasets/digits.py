"""The scikit-learn 8x8 handwritten digits (1797 images), split into train and test."""

from __future__ import annotations

import numpy as np

from .base import SCALES, Dataset, stratified_indices


def digits(scale: str = "unit", test_size: float | int = 0.2, seed: int = 0) -> Dataset:
    """sklearn digits as flat (N, 64) float32 images, image_shape (8, 8).

    Pixel values 0..16 are divided by 16 (``"unit"``, [0, 1]) and mapped to [-1, 1] for
    ``"symmetric"``. ``test_size`` is a fraction in (0, 1) or a number of samples; the
    split is stratified by class and drawn with ``numpy.random.default_rng(seed)``.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    from sklearn.datasets import load_digits  # scikit-learn loads in a second: only here

    raw = load_digits()
    X = (raw.data / 16.0).astype(np.float32)
    if scale == "symmetric":
        X = X * np.float32(2) - np.float32(1)
    y = raw.target.astype(np.int64)
    n_test = _n_test(test_size, len(y))
    test = np.zeros(len(y), dtype=bool)
    test[stratified_indices(y, n_test, np.random.default_rng(seed), what="digits test")] = True
    return Dataset(
        name="digits",
        X_train=X[~test],
        y_train=y[~test],
        X_test=X[test],
        y_test=y[test],
        image_shape=(8, 8),
        classes=tuple(str(i) for i in range(10)),
    )


def _n_test(test_size: float | int, n: int) -> int:
    if isinstance(test_size, (int, np.integer)) and not isinstance(test_size, bool):
        if not 0 < test_size < n:
            raise ValueError(f"test_size must lie in (0, {n}) samples, got {test_size}")
        return int(test_size)
    if isinstance(test_size, float) and 0.0 < test_size < 1.0:
        return int(round(test_size * n))
    raise ValueError(f"test_size must be a fraction in (0, 1) or an int, got {test_size!r}")
