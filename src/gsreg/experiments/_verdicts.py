"""How an experiment judges a result: the cost to the primary task against λ = 0, and a
structure score against its best control (the verdict sentences reports end with)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..analysis._controls import MSE_WRECKED

#: test MSE at most this many times that at lambda = 0: "close to lambda = 0"
MSE_CLOSE = 1.1


#: accuracy lower by at most this much (absolute) than at lambda = 0: "close"
ACCURACY_CLOSE = 0.01


#: accuracy lower by more than this: the lambda wrecks the primary task
ACCURACY_WRECKED = 0.05


CLOSE = "close to λ = 0"


COSTLY = "noticeable cost"


WRECKED = "wrecks the primary task"


def reconstruction_cost(mse: float, baseline: float) -> dict[str, float | str]:
    """``{"mse_ratio", "verdict"}`` of a test MSE against the MSE at lambda = 0.

    The verdict is :data:`CLOSE` up to :data:`MSE_CLOSE` times the baseline, :data:`WRECKED`
    above :data:`MSE_WRECKED` times (or when the MSE is not finite), else :data:`COSTLY`.
    """
    ratio = mse / baseline if baseline > 0 else float("nan")
    if not math.isfinite(ratio) or ratio > MSE_WRECKED:
        verdict = WRECKED
    elif ratio <= MSE_CLOSE:
        verdict = CLOSE
    else:
        verdict = COSTLY
    return {"mse_ratio": ratio, "verdict": verdict}


def accuracy_cost(accuracy: float, baseline: float) -> dict[str, float | str]:
    """``{"accuracy_drop", "verdict"}``: how much lower than at lambda = 0 (absolute).

    :data:`CLOSE` for a drop of at most :data:`ACCURACY_CLOSE`, :data:`WRECKED` above
    :data:`ACCURACY_WRECKED`, else :data:`COSTLY`. A gain counts as a negative drop.
    """
    drop = baseline - accuracy
    if not math.isfinite(drop) or drop > ACCURACY_WRECKED:
        verdict = WRECKED
    elif drop <= ACCURACY_CLOSE:
        verdict = CLOSE
    else:
        verdict = COSTLY
    return {"accuracy_drop": drop, "verdict": verdict}


def against_controls(
    gsr_score: float, controls: Mapping[str, float], cost: str, better: str = "higher"
) -> dict[str, Any]:
    """The verdict rule of a scalar structure score (|ρ|, alignment, energy) against its
    controls: the best control (highest score, or lowest with ``better="lower"``; NaN never
    wins), ``margin`` (how far GSR is ahead of it: positive is better) and ``helps``
    (margin > 0 and ``cost``, a primary-task verdict, not :data:`WRECKED`).

    Returns ``{"best_control", "control_score", "gsr_score", "margin", "better",
    "cost", "helps"}``.
    """
    if better not in ("higher", "lower"):
        raise ValueError(f"better must be 'higher' or 'lower', got {better!r}")
    sign = 1.0 if better == "higher" else -1.0
    best = max(
        controls,
        key=lambda name: sign * controls[name] if math.isfinite(controls[name]) else -math.inf,
    )
    margin = sign * (gsr_score - controls[best])
    return {
        "best_control": best,
        "control_score": controls[best],
        "gsr_score": gsr_score,
        "margin": margin,
        "better": better,
        "cost": cost,
        "helps": bool(margin > 0 and cost != WRECKED),
    }


def verdict_ending(verdict: Mapping[str, Any], task: str) -> str:
    """How a verdict sentence ends: GSR helps, beats the control but wrecks ``task`` (e.g.
    "the reconstruction"), or does not beat it."""
    if verdict["helps"]:
        return ": GSR helps here."
    if verdict["margin"] > 0:
        return f", but {task} is wrecked: GSR does not help here."
    return ": GSR does not help here."
