"""Experiments of the paper, one module each: config -> run -> result folder.

An experiment module defines a frozen config dataclass with the full run's defaults and
a ``quick()`` classmethod (seconds, for tests and a first look), a function
``run(config, out, device="auto", progress=True) -> dict`` that writes ``out/``
(report.html, metrics.json, config.json, figures/) and returns the metrics, and
``headline(metrics) -> dict[str, str]``: the few numbers an index page shows.
:mod:`gsreg.experiments.registry` names the experiments and runs them into atomic
folders.

What the experiments share lives in named modules: ``_verdicts`` (how a cost to the
primary task and a score against its controls are judged), ``_labels`` (how a λ is
written), ``_config`` (config checks and the JSON round trip), ``_training`` (MNIST
subsets, bottleneck variants, GSR or a budget on one layer, one-thread runs) and
``_figures`` (primary task and structure against λ). The verdict vocabulary is
re-exported here.
"""

from ._labels import lambda_label
from ._verdicts import (
    ACCURACY_CLOSE,
    ACCURACY_WRECKED,
    CLOSE,
    COSTLY,
    MSE_CLOSE,
    MSE_WRECKED,
    WRECKED,
    accuracy_cost,
    against_controls,
    reconstruction_cost,
    verdict_ending,
)

__all__ = [
    "ACCURACY_CLOSE",
    "ACCURACY_WRECKED",
    "CLOSE",
    "COSTLY",
    "MSE_CLOSE",
    "MSE_WRECKED",
    "WRECKED",
    "accuracy_cost",
    "against_controls",
    "lambda_label",
    "reconstruction_cost",
    "verdict_ending",
]
