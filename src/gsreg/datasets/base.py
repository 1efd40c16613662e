"""The `Dataset` value type shared by all loaders, and stratified sampling."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

SCALES = ("unit", "symmetric")


@dataclass(frozen=True, eq=False)
class Dataset:
    """An in-memory classification data set with a train/test (and optional validation) split.

    Features are float32 ``(N, d)`` arrays, labels int64 ``(N,)`` arrays with values in
    ``[0, len(classes))``. ``image_shape`` is ``(h, w)`` with ``h * w == d`` for image data,
    else ``None``. ``X_val``/``y_val`` are both given or both ``None``.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, int] | None
    classes: tuple[str, ...]
    X_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not self.classes:
            raise ValueError(f"dataset {self.name!r}: classes must not be empty")
        if (self.X_val is None) != (self.y_val is None):
            raise ValueError(f"dataset {self.name!r}: give both X_val and y_val or neither")
        d = None
        for split, X, y in self._splits():
            _check_split(self.name, split, X, y, len(self.classes))
            if d is not None and X.shape[1] != d:
                raise ValueError(
                    f"dataset {self.name!r}: X_{split} has {X.shape[1]} features, expected {d}"
                )
            d = X.shape[1]
        if self.image_shape is not None:
            h, w = self.image_shape
            if h * w != d:
                raise ValueError(
                    f"dataset {self.name!r}: image_shape {self.image_shape} has {h * w} pixels,"
                    f" expected {d} features"
                )

    def _splits(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        splits = [("train", self.X_train, self.y_train), ("test", self.X_test, self.y_test)]
        if self.X_val is not None:
            splits.append(("val", self.X_val, self.y_val))
        return splits

    @property
    def n_features(self) -> int:
        """Number of features ``d``."""
        return self.X_train.shape[1]

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def subset(
        self,
        n_train: int | None = None,
        n_test: int | None = None,
        seed: int = 0,
        n_val: int | None = None,
    ) -> Dataset:
        """Stratified random subset of each split (``None`` keeps a split whole).

        Class proportions are kept (every present class gets at least one sample);
        indices are drawn with ``numpy.random.default_rng(seed)`` and kept in their
        original order.
        """
        rng = np.random.default_rng(seed)
        changes = {}
        for split, n in (("train", n_train), ("test", n_test), ("val", n_val)):
            if n is None:
                continue
            if split == "val" and self.X_val is None:
                raise ValueError(f"dataset {self.name!r} has no validation split")
            X, y = getattr(self, f"X_{split}"), getattr(self, f"y_{split}")
            idx = stratified_indices(y, n, rng, what=f"{self.name!r} {split}")
            changes[f"X_{split}"], changes[f"y_{split}"] = X[idx], y[idx]
        return dataclasses.replace(self, **changes)


def _check_split(name: str, split: str, X: np.ndarray, y: np.ndarray, n_classes: int) -> None:
    where = f"dataset {name!r}"
    if not isinstance(X, np.ndarray) or X.ndim != 2 or X.dtype != np.float32:
        raise ValueError(f"{where}: X_{split} must be a 2-D float32 ndarray, got {_describe(X)}")
    if not isinstance(y, np.ndarray) or y.ndim != 1 or y.dtype != np.int64:
        raise ValueError(f"{where}: y_{split} must be a 1-D int64 ndarray, got {_describe(y)}")
    if len(X) != len(y):
        raise ValueError(f"{where}: X_{split} has {len(X)} rows but y_{split} has {len(y)}")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(
            f"{where}: y_{split} must lie in [0, {n_classes}), got [{y.min()}, {y.max()}]"
        )


def _describe(a: object) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.ndim}-D {a.dtype} array of shape {a.shape}"
    return type(a).__name__


def stratified_indices(
    y: np.ndarray, n: int, rng: np.random.Generator, what: str = ""
) -> np.ndarray:
    """Sorted indices of a class-stratified sample of size ``n`` from labels ``y`` (N,).

    Each present class gets one sample, the rest is shared in proportion to the class
    sizes (largest remainder), then members are drawn at random within each class.
    """
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    prefix = f"{what}: " if what else ""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
        raise ValueError(f"{prefix}sample size must be an int, got {type(n).__name__}")
    if n > len(y):
        raise ValueError(f"{prefix}asked for {n} samples, only {len(y)} available")
    if n < len(classes):
        raise ValueError(
            f"{prefix}asked for {n} samples, need at least one per class ({len(classes)} classes)"
        )
    spare = counts - 1
    quota = (n - len(classes)) * spare / max(spare.sum(), 1)
    take = np.floor(quota).astype(np.int64)
    short = (n - len(classes)) - take.sum()
    take[np.argsort(take - quota, kind="stable")[:short]] += 1
    take += 1
    chosen = [rng.permutation(np.flatnonzero(inverse == c))[:k] for c, k in enumerate(take)]
    return np.sort(np.concatenate(chosen))
