"""Synthetic data sets with planted feature modules (cluster indication benchmarks).

Features are numbered module-major: features ``j*f .. (j+1)*f - 1`` belong to module ``j``
(``f`` features per module). Every generator returns a :class:`Dataset` whose train/test
split is stratified by class; all randomness comes from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_int, check_real
from .base import Dataset, stratified_indices
from .digits import _n_test

__all__ = ["binary_modules", "binary_patterns", "coarse_labels", "hierarchical", "modules"]


def modules(
    n_modules: int = 3,
    features_per_module: int = 5,
    n_samples: int = 3000,
    correlation: float = 0.6,
    shift: float = 10.0,
    noise: float = 1.0,
    test_size: float | int = 0.2,
    seed: int = 0,
) -> Dataset:
    """Modules of correlated features; each sample raises exactly one module.

    ``X`` is ``(n_samples, n_modules * features_per_module)``. The background of a feature
    in module ``j`` is ``noise * (sqrt(rho) s_j + sqrt(1 - rho) e)`` with one standard
    normal factor ``s_j`` per sample and module and independent standard normal ``e``, so
    features of one module correlate with ``rho = correlation`` and modules are
    independent. A sample of label ``j`` ("module j") has ``shift`` added to every feature
    of module ``j``. Labels are balanced (counts differ by at most one).
    """
    _check_int(
        "modules", n_modules=n_modules, features_per_module=features_per_module, n_samples=n_samples
    )
    _check_module_args("modules", correlation, shift, noise)
    rng = np.random.default_rng(seed)
    y = _balanced_labels(n_samples, n_modules, rng)
    feature_module = np.repeat(np.arange(n_modules), features_per_module)
    X = _background(rng, y.size, n_modules, feature_module, correlation, noise)
    X += shift * (feature_module == y[:, None])
    names = tuple(f"module {j}" for j in range(n_modules))
    return _split("modules", X, y, names, test_size, rng)


def hierarchical(
    n_modules: int = 3,
    subtypes: int = 2,
    features_per_module: int = 6,
    n_samples: int = 3000,
    correlation: float = 0.6,
    shift: float = 10.0,
    subtype_shift: float = 5.0,
    noise: float = 1.0,
    test_size: float | int = 0.2,
    seed: int = 0,
) -> Dataset:
    """:func:`modules` with every module split into ``subtypes`` sub-types: two label levels.

    The features of each module are cut into ``subtypes`` contiguous groups (sizes differ
    by at most one, ``numpy.array_split``). A sample of module ``j`` and sub-type ``t``
    gets ``shift`` on all features of module ``j`` (the coarse level) and a further
    ``subtype_shift`` on group ``t`` of that module (the fine level); the background
    noise is that of :func:`modules`.

    Labels ``y`` are fine: ``y = j * subtypes + t``, classes ``"module j, subtype t"``.
    The coarse label is ``coarse_labels(y, subtypes) == y // subtypes`` and the sub-type is
    ``y % subtypes``. Fine labels are balanced.
    """
    _check_int("hierarchical", n_modules=n_modules, subtypes=subtypes, n_samples=n_samples)
    _check_int("hierarchical", subtypes, features_per_module=features_per_module)
    _check_module_args("hierarchical", correlation, shift, noise)
    _check_shift("hierarchical", "subtype_shift", subtype_shift)
    rng = np.random.default_rng(seed)
    y = _balanced_labels(n_samples, n_modules * subtypes, rng)
    feature_module = np.repeat(np.arange(n_modules), features_per_module)
    groups = np.array_split(np.arange(features_per_module), subtypes)
    feature_group = np.concatenate([np.full(len(g), t) for t, g in enumerate(groups)])
    feature_fine = feature_module * subtypes + np.tile(feature_group, n_modules)
    X = _background(rng, y.size, n_modules, feature_module, correlation, noise)
    X += shift * (feature_module == (y // subtypes)[:, None])
    X += subtype_shift * (feature_fine == y[:, None])
    names = tuple(f"module {j}, subtype {t}" for j in range(n_modules) for t in range(subtypes))
    return _split("hierarchical", X, y, names, test_size, rng)


def coarse_labels(y: np.ndarray, subtypes: int) -> np.ndarray:
    """(N,) int64 module labels ``y // subtypes`` of fine :func:`hierarchical` labels (N,)."""
    _check_int("coarse_labels", subtypes=subtypes)
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"coarse_labels: y must hold non-negative integers, got {y.dtype}")
    if y.size and y.min() < 0:
        raise ValueError(f"coarse_labels: y must hold non-negative integers, got {y.min()}")
    return (y // subtypes).astype(np.int64)


def binary_modules(
    k: int = 3,
    repeats: int = 50,
    samples_per_pattern: int = 1000,
    noise: float = 0.1,
    test_size: float | int = 0.2,
    seed: int = 0,
) -> Dataset:
    """All ``2**k`` on/off patterns of ``k`` modules, each module repeated over features.

    ``X`` is ``(2**k * samples_per_pattern, k * repeats)``: feature ``i`` of module
    ``j = i // repeats`` is 1 when module ``j`` is on and 0 when off, plus independent
    normal noise of standard deviation ``noise``. Label ``p`` is the pattern
    ``binary_patterns(k)[p]``, whose class name is ``p`` in binary with module 0 as the
    leading digit (``"101"``: modules 0 and 2 on). Every pattern has
    ``samples_per_pattern`` samples.
    """
    _check_int("binary_modules", k=k, repeats=repeats, samples_per_pattern=samples_per_pattern)
    _check_noise("binary_modules", noise)
    rng = np.random.default_rng(seed)
    patterns = binary_patterns(k)
    y = rng.permutation(np.repeat(np.arange(len(patterns)), samples_per_pattern))
    X = np.repeat(patterns[y], repeats, axis=1) + noise * rng.standard_normal((y.size, k * repeats))
    names = tuple(format(p, f"0{k}b") for p in range(len(patterns)))
    return _split("binary_modules", X, y, names, test_size, rng)


def binary_patterns(k: int) -> np.ndarray:
    """(2**k, k) int64 bits: row ``p`` is ``p`` in binary, module 0 the most significant."""
    _check_int("binary_patterns", k=k)
    shifts = np.arange(k - 1, -1, -1)
    return (np.arange(2**k, dtype=np.int64)[:, None] >> shifts) & 1


# --------------------------------------------------------------------------- helpers


def _background(
    rng: np.random.Generator,
    n_samples: int,
    n_modules: int,
    feature_module: np.ndarray,
    correlation: float,
    noise: float,
) -> np.ndarray:
    """(N, d) noise with correlation ``correlation`` inside modules, none across them."""
    shared = rng.standard_normal((n_samples, n_modules))[:, feature_module]
    own = rng.standard_normal((n_samples, feature_module.size))
    return noise * (np.sqrt(correlation) * shared + np.sqrt(1.0 - correlation) * own)


def _balanced_labels(n_samples: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """(n_samples,) int64 labels in random order whose class counts differ by at most one."""
    if n_samples < n_classes:
        raise ValueError(f"n_samples={n_samples} is fewer than the {n_classes} classes")
    return rng.permutation(np.arange(n_samples, dtype=np.int64) % n_classes)


def _split(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    classes: tuple[str, ...],
    test_size: float | int,
    rng: np.random.Generator,
) -> Dataset:
    """A :class:`Dataset` with a class-stratified test split of ``test_size``."""
    n_test = _n_test(test_size, len(y))
    test = np.zeros(len(y), dtype=bool)
    test[stratified_indices(y, n_test, rng, what=f"{name} test")] = True
    X = X.astype(np.float32)
    y = y.astype(np.int64)
    return Dataset(
        name=name,
        X_train=X[~test],
        y_train=y[~test],
        X_test=X[test],
        y_test=y[test],
        image_shape=None,
        classes=classes,
    )


def _check_int(where: str, minimum: int = 1, **values: object) -> None:
    for key, value in values.items():
        check_int(value, f"{where}: {key}", minimum)


def _check_module_args(where: str, correlation: float, shift: float, noise: float) -> None:
    check_real(correlation, f"{where}: correlation", 0.0, 1.0, strict_max=True)
    _check_shift(where, "shift", shift)
    _check_noise(where, noise)


def _check_shift(where: str, key: str, value: float) -> None:
    check_real(value, f"{where}: {key}", 0.0, strict_min=True)


def _check_noise(where: str, noise: float) -> None:
    check_real(noise, f"{where}: noise", 0.0)
