"""``gsreg fit``: what a run is (its config and the files it writes) and the checks made
before any work; :func:`run` then trains and writes through :mod:`gsreg.cli.fit_run`.

This module imports nothing heavy, so that bad arguments fail within a second, before
torch and scikit-learn load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .. import graphs
from .._files import check_run_folder, staged_folder
from ..datasets.files import Table, load_data

OUTPUTS = (
    "report.html",
    "metrics.json",
    "config.json",
    "model.safetensors",
    "embedding.npy",
    "embedding.csv",
    "figures",
)


@dataclass(frozen=True)
class FitConfig:
    """Everything that defines a ``gsreg fit`` run; written to ``config.json``."""

    data: str
    graph: str = "grid:8x8"
    labels: str | None = None
    epochs: int | None = None  # None: the estimator's "auto"
    weight: float | None = None  # None: the budget sets it
    budget: float | str = "auto"  # share of the task loss GSR may cost (weight None);
    # "auto": 0.05 for a fixed graph, the measured recipe for a learned one
    seed: int = 0
    device: str = "auto"
    controls: bool = True  # train the λ = 0 twin and score the GSR layer against it


def prepare_out(out: str | os.PathLike, data: str | os.PathLike, labels: str | None = None) -> Path:
    """Check before any work that ``out`` can hold the run (:func:`gsreg._files.check_run_folder`):
    a missing path or a previous run folder, not holding the data or labels file; nothing
    is created. Returns ``out`` as an absolute path."""
    inputs = [data] + ([labels] if labels is not None and Path(labels).is_file() else [])
    return check_run_folder(out, OUTPUTS, inputs, command="gsreg fit")


def run(
    config: FitConfig, out: str | os.PathLike, table: Table | None = None, progress: bool = True
) -> dict:
    """Train on ``config.data`` (or the already loaded ``table``) and write the run folder
    ``out``. Returns the metrics written to ``metrics.json``.

    Everything is written into a staging folder next to ``out`` and swapped in whole at
    the end (:func:`gsreg._files.staged_folder`): ``out`` then holds this run and nothing
    else, and a run that fails leaves it as it was.
    """
    graphs.check_spec(config.graph, learned=True)
    out = prepare_out(out, config.data, config.labels)
    if table is None:
        table = load_data(config.data, config.labels)
    from .fit_run import write_run  # torch, scikit-learn: only now that the input is checked

    with staged_folder(out) as staging:
        return write_run(config, table, staging, progress)
