"""Controls beside every map score: the layer as trained and arranged post hoc, and the verdict.

A structure score of a GSR layer means something only beside the same score of its
controls: the λ = 0 layer as trained, the λ = 0 layer with its units arranged post hoc
onto the graph (:func:`gsreg.analysis.arrangement`, fitted on training activations and
scored on test activations), and a permutation null. "GSR helps" is the claim that the
GSR layer beats the best control while keeping as many distinct territories and as much
class information as the λ = 0 layer: :func:`verdict`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import analysis
from ..graphs import Graph

#: training rows whose activations place the units and train the decodability probe
ARRANGE_SAMPLES = 5000
#: a GSR layer may decode the class this much (accuracy) worse than λ = 0 and still count
#: as keeping its class information
DECODE_TOLERANCE = 0.01


def map_fields(
    Z_train: np.ndarray,
    y_train: np.ndarray,
    Z_test: np.ndarray,
    y_test: np.ndarray,
    graph: Graph,
    *,
    reference_norm: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """A model's map scores as trained, and under ``"arranged"`` after the post-hoc
    arrangement of its units.

    ``Z_train`` (M, n) and ``Z_test`` (N, n) are the layer's activations in the unit order
    of the model, ``y_train``/``y_test`` the classes. Returns :func:`gsreg.analysis.
    map_structure` of the test activations plus ``morans_i_raw`` (raw class maps),
    ``morans_i_expected`` and ``dirichlet_energy`` from :func:`gsreg.analysis.localization`;
    ``arranged`` holds the same scores with the units placed by an arrangement fitted on
    at most :data:`ARRANGE_SAMPLES` training rows, and ``arrangement_energy``
    (``{"identity", "arranged"}``). Private keys hold the class maps and deviation maps of
    both orders for the figures.
    """
    rows = _rows(len(Z_train), seed)
    Z_fit, y_fit = Z_train[rows], y_train[rows]
    perm, energies = analysis.arrangement(Z_fit, graph, random_state=seed, return_energy=True)
    trained = _scores(Z_fit, y_fit, Z_test, y_test, graph, reference_norm, seed)
    arranged = _scores(Z_fit[:, perm], y_fit, Z_test[:, perm], y_test, graph,
                       reference_norm, seed)
    maps = analysis.class_maps(Z_test, y_test)
    mean = analysis.global_mean(Z_test)
    return {
        **trained,
        "arranged": {**arranged, "arrangement_energy": energies},
        "_maps": maps,
        "_deviation_maps": maps - mean,
        "_arranged_maps": maps[:, perm],
        "_arranged_deviation_maps": (maps - mean)[:, perm],
    }


def _rows(count: int, seed: int) -> np.ndarray:
    if count <= ARRANGE_SAMPLES:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, ARRANGE_SAMPLES, replace=False))


def _scores(Z_fit, y_fit, Z_test, y_test, graph, reference_norm, seed) -> dict[str, Any]:
    local = analysis.localization(Z_test, y_test, graph)
    scores = analysis.map_structure(Z_test, y_test, graph, Z_train=Z_fit, y_train=y_fit,
                                    reference_norm=reference_norm, seed=seed)
    return scores | {key: local[key] for key in
                     ("morans_i_raw", "morans_i_expected", "dirichlet_energy")}


def controls_of(reference: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The two controls of a λ = 0 result from :func:`map_fields`: as trained and arranged."""
    return {"λ=0": reference, "λ=0 arranged": reference["arranged"]}


def verdict(
    gsr: Mapping[str, Any],
    reference: Mapping[str, Any],
    score: str = "morans_i",
) -> dict[str, Any]:
    """Whether a GSR layer's maps beat the best control.

    ``gsr`` and ``reference`` (the λ = 0 model) are :func:`map_fields` results. The GSR
    layer helps when its ``score`` exceeds that of the best control (λ = 0 as trained or
    arranged) and it keeps at least as many territories as the λ = 0 layer and its class
    decodability within :data:`DECODE_TOLERANCE`. Returns ``best_control``,
    ``control_score``, ``gsr_score``, ``margin`` (GSR minus best control), ``distinct``,
    ``informative`` and ``helps``.
    """
    controls = controls_of(reference)
    best = max(controls, key=lambda name: _finite(controls[name][score]))
    margin = gsr[score] - controls[best][score]
    distinct = gsr["territories"] >= reference["territories"]
    informative = not gsr["decodability"] < reference["decodability"] - DECODE_TOLERANCE
    return {
        "best_control": best,
        "control_score": controls[best][score],
        "gsr_score": gsr[score],
        "margin": margin,
        "distinct": bool(distinct),
        "informative": bool(informative),
        "helps": bool(margin > 0 and distinct and informative),
    }


def verdict_text(result: Mapping[str, Any], gsr_label: str, cost: str) -> str:
    """One plain sentence: whether ``gsr_label`` beats the best control, by how much, at
    what ``cost`` (e.g. "1.02x the test MSE")."""
    margin = result["margin"]
    head = (f"{gsr_label} {'beats' if margin > 0 else 'does not beat'} the best control "
            f"({result['best_control']}): Moran's I {result['gsr_score']:.3f} against "
            f"{result['control_score']:.3f} ({margin:+.3f}), at {cost}")
    if result["helps"]:
        return head + ", with as many territories and as much class information as λ = 0."
    missing = [text for ok, text in ((result["distinct"], "fewer class territories"),
                                     (result["informative"], "less class information"))
               if not ok]
    if margin > 0 and missing:
        return head + f", but with {' and '.join(missing)} than λ = 0: GSR does not help here."
    return head + ": GSR does not help here."


def verdict_short(result: Mapping[str, Any], cost: str) -> str:
    """The verdict in a headline's few words: "0.30 vs λ=0 arranged 0.60 (-0.30) at 0.99x
    MSE: does not help"."""
    word = "helps" if result["helps"] else "does not help"
    return (f"{result['gsr_score']:.3f} vs {result['best_control']} "
            f"{result['control_score']:.3f} ({result['margin']:+.3f}) at {cost}: {word}")


def arranged_row(result: Mapping[str, Any]) -> dict[str, Any]:
    """A figure row (``label``, ``_maps``, ``_deviation_maps``) of a model's layer with its
    units arranged post hoc, from a :func:`map_fields` result with a ``label``."""
    return {"label": f"{result['label']} arranged", "_maps": result["_arranged_maps"],
            "_deviation_maps": result["_arranged_deviation_maps"]}


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


__all__ = ["ARRANGE_SAMPLES", "DECODE_TOLERANCE", "arranged_row", "controls_of", "map_fields",
           "verdict", "verdict_short", "verdict_text"]
