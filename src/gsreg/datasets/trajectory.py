"""Branching data sets with a known pseudotime (both need the ``sc`` extra:
``pip install 'gsreg[sc]'``).

- :func:`dla_tree`: :func:`phate.tree.gen_dla`, a diffusion-limited-aggregation tree.
  Branch 0 is a random walk of ``branch_length`` steps; every other branch is a walk of
  the same length that starts at a random step of branch 0 (gen_dla draws the starting
  index from ``randint(branch_length)``, i.e. always on the first branch), then Gaussian
  noise is added. Samples are stored branch by branch in walk order, so the pseudotime of
  a sample is the number of walk steps from the root: its index within branch 0, or the
  start index + 1 + its index within another branch. The start indices are recovered by
  replaying gen_dla's random draws (:func:`dla_tree` checks the replay reproduces its
  output exactly).
- :func:`krumsiek11`: scanpy's simulated myeloid tree (640 cells x 11 genes). The
  simulation concatenates four runs of a Boolean network from the stem state, each to one
  fate (Mo, Ery, Mk, Neu); a run's cells are in time order, the first half labelled
  ``progenitor`` and the rest with its fate. Pseudotime is the step within the run
  (:func:`krumsiek_runs`).
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["KRUMSIEK_STEM", "Trajectory", "dla_tree", "krumsiek11", "krumsiek_runs", "replay_dla"]


#: the stem cell type of krumsiek11, shared by every run
KRUMSIEK_STEM = "progenitor"


@dataclass(frozen=True, eq=False)
class Trajectory:
    """A branching data set with pseudotime.

    Attributes:
        name: ``"dla"`` or ``"krumsiek11"``.
        X: (N, d) float64 features as generated / shipped.
        pseudotime: (N,) float64, steps from the root.
        lineage: (N,) int64 in ``[0, L)``, the stretch a sample is ordered in.
        lineage_names: (L,) names.
        branch: (N,) int64 in ``[0, B)``, the label modules are scored against.
        branch_names: (B,) names.
    """

    name: str
    X: np.ndarray
    pseudotime: np.ndarray
    lineage: np.ndarray
    lineage_names: tuple[str, ...]
    branch: np.ndarray
    branch_names: tuple[str, ...]


def _require(module: str):
    """Import an optional package, or say which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"the branching data sets need {module!r}: pip install 'gsreg[sc]'"
        ) from err


def replay_dla(
    n_dim: int,
    n_branch: int,
    branch_length: int,
    rand_multiplier: float,
    seed: int,
    sigma: float,
) -> tuple[np.ndarray, np.ndarray]:
    """gen_dla's draws replayed: ``(X (n_branch * branch_length, n_dim), starts (n_branch,))``.

    ``starts[i]`` is the pseudotime of the first sample of branch i: 0 for branch 0,
    else the index of the step of branch 0 it grows from, + 1.
    """
    rng = np.random.RandomState(seed)  # gen_dla seeds numpy's legacy global generator

    def walk() -> np.ndarray:
        return np.cumsum(-1 + rand_multiplier * rng.rand(branch_length, n_dim), 0)

    trunk = walk()
    parts, starts = [trunk], [0]
    for _ in range(n_branch - 1):
        attach = rng.randint(branch_length)
        parts.append(walk() + trunk[attach])
        starts.append(attach + 1)
    clean = np.concatenate(parts)
    return clean + rng.normal(0, sigma, clean.shape), np.array(starts, dtype=np.int64)


def dla_tree(
    n_branch: int = 6,
    branch_length: int = 150,
    n_dim: int = 60,
    seed: int = 0,
    sigma: float = 4.0,
) -> Trajectory:
    """A :func:`phate.tree.gen_dla` tree with the pseudotime of every sample (module doc).

    Raises RuntimeError when replaying gen_dla's draws does not give its output (a
    changed generator), since the pseudotime would then be unknown.
    """
    phate = _require("phate")
    state = np.random.get_state()
    try:
        X, labels = phate.tree.gen_dla(
            n_dim=n_dim, n_branch=n_branch, branch_length=branch_length, seed=seed, sigma=sigma
        )
    finally:
        np.random.set_state(state)  # gen_dla reseeds the global generator
    replayed, starts = replay_dla(n_dim, n_branch, branch_length, 2, seed, sigma)
    if not np.array_equal(X, replayed):
        raise RuntimeError(
            "phate.tree.gen_dla no longer matches its replay; the pseudotime "
            "of its samples cannot be derived"
        )
    lineage = np.asarray(labels, dtype=np.int64)
    step = np.tile(np.arange(branch_length), n_branch)
    names = ("branch 0 (trunk)",) + tuple(f"branch {i}" for i in range(1, n_branch))
    return Trajectory(
        "dla",
        np.asarray(X, dtype=np.float64),
        (starts[lineage] + step).astype(np.float64),
        lineage,
        names,
        lineage.copy(),
        names,
    )


def krumsiek_runs(
    cell_types: Sequence[str], stem: str = KRUMSIEK_STEM
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Split krumsiek11's cell order into simulation runs.

    A run starts at the first cell or where a ``stem`` cell follows a non-stem cell and
    holds stem cells followed by cells of one fate. Returns ``(run (N,) int64, step (N,)
    int64 within the run, fates (R,))``. Raises ValueError for a run without a fate or
    with more than one.
    """
    types = np.asarray(cell_types, dtype=object)
    is_stem = types == stem
    starts = np.flatnonzero(np.r_[True, is_stem[1:] & ~is_stem[:-1]])
    run = np.cumsum(np.isin(np.arange(types.size), starts)) - 1
    step = np.arange(types.size) - starts[run]
    fates = []
    for r in range(len(starts)):
        fate = set(types[(run == r) & ~is_stem])
        if len(fate) != 1:
            raise ValueError(f"run {r} of krumsiek11 has fates {sorted(fate)}, expected one")
        fates.append(str(fate.pop()))
    return run.astype(np.int64), step.astype(np.int64), tuple(fates)


def krumsiek11() -> Trajectory:
    """scanpy's ``krumsiek11`` (shipped with scanpy, no download) with runs and pseudotime."""
    sc = _require("scanpy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # non-unique obs names
        adata = sc.datasets.krumsiek11()
    types = adata.obs["cell_type"].astype(str).to_numpy()
    run, step, fates = krumsiek_runs(types)
    branch_names = (KRUMSIEK_STEM, *fates)
    branch = np.array([branch_names.index(t) for t in types], dtype=np.int64)
    names = tuple(f"stem → {fate}" for fate in fates)
    return Trajectory(
        "krumsiek11",
        np.asarray(adata.X, dtype=np.float64),
        step.astype(np.float64),
        run,
        names,
        branch,
        branch_names,
    )
