"""Controls beside every structure score, and the verdict whether GSR beats them.

A structure score of a GSR layer means something only beside the same score of its
controls and a permutation null.

Maps on a fixed graph (:func:`map_controls`, :func:`map_verdict`): the λ = 0 layer as
trained, and with its units arranged post hoc onto the graph
(:func:`gsreg.analysis.arrangement`, fitted on training activations, scored on test
activations). GSR helps when it beats the best control while keeping as many distinct
territories and class patterns and as much class information as the λ = 0 layer.

Modules of a learned graph (:func:`module_controls`, :func:`module_verdict`): the λ = 0
layer's units clustered into modules post hoc (k-means, Leiden) and read out like GSR
modules, and the samples clustered directly on the λ = 0 layer and on the raw input, all
with the same number of groups; the null shuffles the units' module labels. GSR helps
when it beats the best control and the null and has more than one module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import analysis  # the package; its functions are looked up when called
from ..graphs import Graph

#: training rows whose activations place the units and train the decodability probe
ARRANGE_SAMPLES = 5000
#: a GSR layer may decode the class this much (accuracy) worse than λ = 0 and still count
#: as keeping its class information
DECODE_TOLERANCE = 0.01
#: a test MSE above this many times that of λ = 0 wrecks the primary task: structure
#: bought that way is not "almost no cost" and does not count as GSR helping
MSE_WRECKED = 1.5
#: a GSR layer's class-deviation maps must keep this share of the λ = 0 layer's
#: participation ratio (distinct class patterns): one ramp lit by every class, only
#: scaled, has 1; λ = 0 MNIST layers have 2 to 6
PATTERN_SHARE = 0.75


def map_controls(
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
    arranged = _scores(Z_fit[:, perm], y_fit, Z_test[:, perm], y_test, graph, reference_norm, seed)
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
    scores = analysis.map_structure(
        Z_test,
        y_test,
        graph,
        Z_train=Z_fit,
        y_train=y_fit,
        reference_norm=reference_norm,
        seed=seed,
    )
    return scores | {
        key: local[key] for key in ("morans_i_raw", "morans_i_expected", "dirichlet_energy")
    }


def map_control_scores(reference: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The two controls of a λ = 0 result from :func:`map_controls`: as trained and arranged."""
    return {"λ=0": reference, "λ=0 arranged": reference["arranged"]}


def map_verdict(
    gsr: Mapping[str, Any],
    reference: Mapping[str, Any],
    score: str = "morans_i",
) -> dict[str, Any]:
    """Whether a GSR layer's maps beat the best control.

    ``gsr`` and ``reference`` (the λ = 0 model) are :func:`map_controls` results. The GSR
    layer helps when its ``score`` exceeds that of the best control (λ = 0 as trained or
    arranged) and it keeps at least as many territories as the λ = 0 layer (``distinct``),
    :data:`PATTERN_SHARE` of its participation ratio (``patterns``: not one pattern shared
    by every class) and its class decodability within :data:`DECODE_TOLERANCE`
    (``informative``). Returns ``best_control``, ``control_score``, ``gsr_score``,
    ``margin`` (GSR minus best control), ``distinct``, ``patterns``, ``informative`` and
    ``helps``.
    """
    controls = map_control_scores(reference)
    best = max(controls, key=lambda name: _finite(controls[name][score]))
    margin = gsr[score] - controls[best][score]
    distinct = gsr["territories"] >= reference["territories"]
    patterns = not (gsr["participation_ratio"] < PATTERN_SHARE * reference["participation_ratio"])
    informative = not gsr["decodability"] < reference["decodability"] - DECODE_TOLERANCE
    return {
        "best_control": best,
        "control_score": controls[best][score],
        "gsr_score": gsr[score],
        "margin": margin,
        "distinct": bool(distinct),
        "patterns": bool(patterns),
        "informative": bool(informative),
        "helps": bool(margin > 0 and distinct and patterns and informative),
    }


def map_verdict_text(result: Mapping[str, Any], gsr_label: str, cost: str) -> str:
    """One plain sentence: whether ``gsr_label`` beats the best control, by how much, at
    what ``cost`` (e.g. "1.02x the test MSE")."""
    margin = result["margin"]
    head = (
        f"{gsr_label} {'beats' if margin > 0 else 'does not beat'} the best control "
        f"({result['best_control']}): Moran's I {result['gsr_score']:.3f} against "
        f"{result['control_score']:.3f} ({margin:+.3f}), at {cost}"
    )
    if result["helps"]:
        return head + (
            ", with as many territories, distinct class patterns and as much "
            "class information as λ = 0."
        )
    missing = [
        text
        for ok, text in (
            (result["distinct"], "fewer class territories"),
            (result["patterns"], "fewer distinct class patterns"),
            (result["informative"], "less class information"),
        )
        if not ok
    ]
    if margin > 0 and missing:
        return head + f", but with {' and '.join(missing)} than λ = 0: GSR does not help here."
    return head + ": GSR does not help here."


def map_verdict_short(result: Mapping[str, Any], cost: str) -> str:
    """The verdict in a headline's few words: "0.30 vs λ=0 arranged 0.60 (-0.30) at 0.99x
    MSE: does not help"."""
    word = "helps" if result["helps"] else "does not help"
    return (
        f"{result['gsr_score']:.3f} vs {result['best_control']} "
        f"{result['control_score']:.3f} ({result['margin']:+.3f}) at {cost}: {word}"
    )


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


def indicated_modules(Z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) the module each sample of Z (N, n) drives most (``indicate_clusters`` with unit
    modules ``labels`` (n,)); all 0 when no module varies."""
    try:
        return analysis.indicate_clusters(Z, labels)
    except ValueError:  # no module varies: every sample is indicated alike
        return np.zeros(len(Z), dtype=np.int64)


# --------------------------------------------------------------------------- modules

#: the controls of a learned graph's modules, in table order: post-hoc modules of the
#: λ = 0 layer's neurons (read out like GSR modules), and clusterings of the samples on
#: the λ = 0 layer and on the raw input
MODULE_CONTROLS = (
    "neurons_kmeans",
    "neurons_leiden",
    "layer_kmeans",
    "layer_leiden",
    "raw_kmeans",
    "raw_leiden",
)
MODULE_CONTROL_LABELS = {
    "neurons_kmeans": "k-means on λ=0 neurons",
    "neurons_leiden": "Leiden on λ=0 neurons",
    "layer_kmeans": "k-means of samples on the λ=0 layer",
    "layer_leiden": "Leiden of samples on the λ=0 layer",
    "raw_kmeans": "k-means of samples on the raw input",
    "raw_leiden": "Leiden of samples on the raw input",
}
#: permutations of the module ARI null (p-values down to 0.005)
NULL_PERMUTATIONS = 199
#: the null's p-value below which the GSR modules beat "any grouping of their sizes"
P_LEVEL = 0.05


def leiden_available() -> bool:
    """Whether the optional ``igraph`` (Leiden) is installed; without it the Leiden
    controls are recorded as None."""
    try:
        import igraph  # noqa: F401
    except ImportError:
        return False
    return True


def module_control_labels(
    Z0: np.ndarray, X: np.ndarray, k: int, seed: int
) -> dict[str, np.ndarray | None]:
    """The sample labels (N,) of every control in :data:`MODULE_CONTROLS`, ``k`` groups each.

    ``Z0`` (N, n): the λ = 0 layer's activations, ``X`` (N, d): the raw input of the same
    samples. ``neurons_*``: ``analysis.posthoc_modules(Z0, k)`` read out with
    ``indicate_clusters`` exactly like GSR modules; ``layer_*`` and ``raw_*``:
    ``analysis.cluster_samples`` of Z0 and of X. Leiden entries are None without igraph,
    and None where no resolution gives ``k`` groups (e.g. k = 1 on a kNN graph that falls
    apart): a control with another number of groups is not comparable.
    """
    out: dict[str, np.ndarray | None] = {}
    methods = ("kmeans", "leiden") if leiden_available() else ("kmeans",)
    for method in ("kmeans", "leiden"):
        if method not in methods:
            out.update({f"{kind}_{method}": None for kind in ("neurons", "layer", "raw")})
            continue
        modules = analysis.posthoc_modules(Z0, min(k, Z0.shape[1]), method, seed)
        groups = {
            "neurons": modules,
            "layer": analysis.cluster_samples(Z0, min(k, len(Z0)), method, seed),
            "raw": analysis.cluster_samples(X, min(k, len(X)), method, seed),
        }
        for kind, labels in groups.items():
            if method == "leiden" and len(np.unique(labels)) != k:
                out[f"{kind}_{method}"] = None
            elif kind == "neurons":
                out[f"{kind}_{method}"] = indicated_modules(Z0, labels)
            else:
                out[f"{kind}_{method}"] = labels
    return {name: out[name] for name in MODULE_CONTROLS}


def module_null(
    Z: np.ndarray,
    labels: np.ndarray | None,
    truth: np.ndarray,
    seed: int,
    n_permutations: int = NULL_PERMUTATIONS,
) -> dict[str, float | None]:
    """``{"null_mean", "p_value"}`` of ``analysis.module_ari_null`` for GSR modules
    ``labels`` (n,) on activations Z (N, n); both None when there is no graph, a single
    module or no module that varies (no indication to test)."""
    if labels is None or len(np.unique(labels)) < 2:
        return {"null_mean": None, "p_value": None}
    try:
        null = analysis.module_ari_null(Z, labels, truth, n_permutations, seed)
    except ValueError:  # no module varies
        return {"null_mean": None, "p_value": None}
    return {"null_mean": null["null_mean"], "p_value": null["p_value"]}


def module_controls(
    Z: np.ndarray,
    labels: np.ndarray | None,
    Z0: np.ndarray,
    X: np.ndarray,
    truth: np.ndarray,
    k: int,
    seed: int,
) -> dict:
    """The controls of one run's GSR modules, JSON-able.

    ``Z`` (N, n) and ``labels`` (n,) (None without a graph): the GSR layer and its modules;
    ``Z0``: the λ = 0 layer, ``X`` the raw input, ``truth`` (N,) the clusters, all on the
    same N samples; ``k`` groups per control (the caller says whose count). Returns ``k``,
    the ARI against ``truth`` of every control (:func:`module_control_labels`), the module
    null (:func:`module_null`) and ``indicated``: how many distinct modules the samples
    are indicated by (1 or 0: no indication).
    """
    k = max(int(k), 1)
    aris = {
        name: None if pred is None else analysis.cluster_scores(pred, truth)["ari"]
        for name, pred in module_control_labels(Z0, X, k, seed).items()
    }
    indicated = 0 if labels is None else len(np.unique(indicated_modules(Z, labels)))
    return {"k": k, **aris, **module_null(Z, labels, truth, seed), "indicated": indicated}


def module_verdict(rows: Sequence[Mapping], mse_ratio: float) -> dict:
    """Whether a group of runs' GSR modules beat their controls, at test MSE ratio
    ``mse_ratio`` (against λ = 0).

    Each row holds ``ari`` (None without a graph: counted 0), ``components`` and
    ``controls`` (:func:`module_controls`). Scores are means over the rows; the best
    control is the one of highest mean ARI. The p-value is the largest of the rows' (a
    row without a null counts 1): GSR must beat the null in every run. GSR helps when it
    beats the best control (``margin > 0``), the null (``p_value < P_LEVEL``), has more
    than one module that samples are indicated by in every run (``modules``) and does not
    wreck the primary task (``affordable``: ``mse_ratio`` at most :data:`MSE_WRECKED`).
    """
    gsr = float(np.mean([r["ari"] or 0.0 for r in rows]))
    means = {name: _mean_of([r["controls"][name] for r in rows]) for name in MODULE_CONTROLS}
    kept = {name: value for name, value in means.items() if value is not None}
    best = max(kept, key=kept.get)
    p_value = max(
        1.0 if r["controls"]["p_value"] is None else r["controls"]["p_value"] for r in rows
    )
    modules = all(r["components"] > 1 and r["controls"]["indicated"] > 1 for r in rows)
    margin = gsr - kept[best]
    return {
        "best_control": MODULE_CONTROL_LABELS[best],
        "best_control_key": best,
        "control_ari": kept[best],
        "gsr_ari": gsr,
        "margin": margin,
        "p_value": p_value,
        "null_mean": _mean_of([r["controls"]["null_mean"] for r in rows]),
        "modules": modules,
        "mse_ratio": float(mse_ratio),
        "affordable": bool(mse_ratio <= MSE_WRECKED),
        "helps": bool(margin > 0 and p_value < P_LEVEL and modules and mse_ratio <= MSE_WRECKED),
        "controls": means,
        "k": [r["controls"]["k"] for r in rows],
    }


def _mean_of(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None
