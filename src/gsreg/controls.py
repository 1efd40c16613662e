"""A fitted GSR estimator beside its controls: its λ = 0 twin as trained, arranged or
clustered post hoc, and a permutation null.

:func:`score` is what ``gsreg fit`` and :func:`gsreg.sc.fit` report. The twin
(:func:`twin`) is the same estimator fitted with ``weight=0`` for as many epochs as the
GSR model trained in all (under a budget, warm-up and fine-tuning), so that the cost
compares equal training; the computations are those
of :mod:`gsreg.analysis` (:func:`~gsreg.analysis.map_controls`,
:func:`~gsreg.analysis.module_controls` and their verdicts) on at most
:data:`CONTROL_ROWS` samples.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from . import analysis

CONTROL_ROWS = analysis.ARRANGE_SAMPLES
"""Samples (at most, a seeded draw) on which each control is fitted and each score taken:
fixed graphs fit the arrangement (and the decodability probe) on one such set and score on
another, so that the arrangement is not scored on the samples it was fitted to."""
MIN_CONTROL_SAMPLES = 4
"""Fewer samples than this get no controls (two per set to fit and score on)."""


def twin(est):
    """The unfitted λ = 0 control of a fitted estimator: the same parameters and seed,
    ``weight=0``, no arrangement, and ``epochs`` the number of epochs ``est`` trained in
    all (a budget's fine-tuning adds epochs after its warm-up)."""
    from sklearn.base import clone

    return clone(est).set_params(weight=0.0, arrange=False, epochs=int(est.n_iter_))


def score(
    est, twin, X: np.ndarray, y: np.ndarray | None, *, Z: np.ndarray | None = None, seed: int = 0
) -> dict:
    """The GSR layer of ``est`` beside its controls, from its λ = 0 ``twin`` (the same
    estimator fitted with ``weight=0``), on the training data X (N, d) and labels y (N,)
    or None; X may be scipy sparse (only a sample of at most :data:`CONTROL_ROWS` rows is
    densified). JSON-able.

    Always: ``lambda0`` (the twin's ``train_mse`` and ``steps``) and ``mse_ratio`` (GSR's
    training MSE over the twin's). Then by ``kind``:

    - ``"maps"`` (fixed graph, labels): :func:`gsreg.analysis.map_controls` of both layers
      (arrangement and decodability probe fitted on one set of rows, scored on another,
      :data:`CONTROL_ROWS` each at most) under ``scores`` ("GSR", "λ=0", "λ=0
      arranged") and :func:`gsreg.analysis.map_verdict` on Moran's I under ``verdict``;
    - ``"smoothness"`` (fixed graph, no labels, or one class in a set of rows): ``scores``
      hold ``dirichlet_energy`` (per sample, of the units standardised over the samples;
      lower is smoother) and ``morans_i_mean_map``; ``verdict`` compares the energies:
      ``margin`` = best control's energy minus GSR's, ``helps`` when it is > 0;
    - ``"modules"`` (learned graph): post-hoc modules of the λ = 0 neurons (k-means and,
      with igraph, Leiden, as many as GSR found; as many as labels when GSR found fewer
      than 2) and, with labels, k-means of the samples on the λ = 0 layer and on the raw
      input, the ARI of each against the labels, the GSR modules' ARI permutation null and
      ``verdict`` (``helps``: beats the best control and the null, with > 1 module).

    ``verdict_text`` is one plain sentence. ``kind="none"`` (fewer than
    :data:`MIN_CONTROL_SAMPLES` samples, or a graph without edges) has only that sentence.
    """
    Z = est.activations(X) if Z is None else Z
    Z0 = Z if twin is est else twin.activations(X)
    mse, mse0 = -est.score(X), -twin.score(X)
    ratio = mse / mse0 if mse0 > 0 else float("nan")
    out: dict = {
        "lambda0": {
            "weight": 0.0,
            "seed": int(twin.seed_),
            "steps": int(twin.n_steps_),
            "train_mse": mse0,
            "same_model": twin is est,
        },
        "mse_ratio": ratio,
    }
    cost = f"{ratio:.2f}x the training MSE of λ = 0"
    if len(X) < MIN_CONTROL_SAMPLES:
        out.update(
            kind="none",
            verdict_text=f"With {len(X)} samples there are too few to fit "
            f"and score the controls (at least {MIN_CONTROL_SAMPLES}).",
        )
    elif est.coactivation_ is not None:
        out.update(_module_controls(est, Z, Z0, X, y, seed, cost, ratio))
    elif est.graph_.n_edges == 0:
        out.update(
            kind="none",
            verdict_text=f"{est.graph_.name} has no edges: there is no "
            "structure to compare with controls.",
        )
    elif y is not None and all(len(np.unique(y[rows])) > 1 for rows in _split(len(X), seed)):
        out.update(_map_controls(est.graph_, Z, Z0, y, seed, cost))
    else:
        out.update(_smoothness_controls(est.graph_, Z, Z0, seed, cost))
    verdict = out.get("verdict")
    if verdict is not None and not verdict.get("helps", False):
        out["next_step"] = NEXT_STEPS[out["kind"]]
        out["verdict_text"] += " " + out["next_step"]
    return out


NEXT_STEPS = {
    "maps": "Next: a larger budget (e.g. 0.1 or 0.2) buys more structure at more cost; "
    "the λ = 0 layer arranged post hoc (gsreg.arrange) costs nothing.",
    "smoothness": "Next: a larger budget (e.g. 0.1 or 0.2) buys more structure at more "
    "cost; the λ = 0 layer arranged post hoc (gsreg.arrange) costs nothing.",
    "modules": "Next: a larger budget (e.g. 0.2) or more epochs may separate the modules; "
    "until they beat the controls, the post-hoc clustering that beat them is "
    "the better read-out.",
}
"""What to try when GSR does not beat its controls, by kind of result."""


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint sorted row sets of a seeded shuffle (halves, :data:`CONTROL_ROWS` each
    at most): one fits the controls, the other scores them."""
    order = np.random.default_rng(seed).permutation(n)
    half = max(1, n // 2)
    return np.sort(order[:half][:CONTROL_ROWS]), np.sort(order[half:][:CONTROL_ROWS])


def _sample(n: int, seed: int) -> np.ndarray:
    """All n rows, or a seeded sorted draw of :data:`CONTROL_ROWS` of them."""
    if n <= CONTROL_ROWS:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, CONTROL_ROWS, replace=False))


def _public(result: dict) -> dict:
    return {k: v for k, v in result.items() if not k.startswith("_") and k != "arranged"}


def _map_controls(graph, Z, Z0, y, seed: int, cost: str) -> dict:
    fit_rows, score_rows = _split(len(Z), seed)
    norm0 = float(np.linalg.norm(Z0[score_rows], axis=1).mean())
    fields = [
        analysis.map_controls(
            A[fit_rows],
            y[fit_rows],
            A[score_rows],
            y[score_rows],
            graph,
            reference_norm=norm0,
            seed=seed,
        )
        for A in (Z, Z0)
    ]
    gsr, reference = fields
    result = analysis.map_verdict(gsr, reference)
    scores = {
        "GSR": _public(gsr),
        **{name: _public(value) for name, value in analysis.map_control_scores(reference).items()},
    }
    return {
        "kind": "maps",
        "rows": {"fit": len(fit_rows), "score": len(score_rows)},
        "scores": scores,
        "verdict": result,
        "verdict_text": analysis.map_verdict_text(result, "The GSR layer", cost),
    }


def standardised_energy(Z: np.ndarray, graph) -> float:
    """Dirichlet energy per sample of the columns of Z (N, n) standardised over the
    samples (constant columns as zeros): the energy :func:`gsreg.analysis.arrangement`
    minimises, a smoothness that scaling the activations cannot change."""
    Z = np.asarray(Z, dtype=np.float64)
    sd = Z.std(axis=0)
    S = np.divide(Z - Z.mean(axis=0), sd, out=np.zeros_like(Z), where=sd > 0)
    return analysis.dirichlet_energy(S, graph, normalize=False)


def _smoothness_controls(graph, Z, Z0, seed: int, cost: str) -> dict:
    fit_rows, score_rows = _split(len(Z), seed)
    perm = analysis.arrangement(Z0[fit_rows], graph, random_state=seed)
    layers = {"GSR": Z[score_rows], "λ=0": Z0[score_rows], "λ=0 arranged": Z0[score_rows][:, perm]}
    scores = {
        name: {
            "dirichlet_energy": standardised_energy(A, graph),
            "morans_i_mean_map": _morans_i(A.mean(axis=0), graph),
        }
        for name, A in layers.items()
    }
    best = min(("λ=0", "λ=0 arranged"), key=lambda name: scores[name]["dirichlet_energy"])
    control, gsr = scores[best]["dirichlet_energy"], scores["GSR"]["dirichlet_energy"]
    margin = control - gsr
    result = {
        "score": "dirichlet_energy",
        "best_control": best,
        "control_score": control,
        "gsr_score": gsr,
        "margin": margin,
        "helps": bool(margin > 0),
    }
    text = (
        f"The GSR layer is {'smoother' if margin > 0 else 'not smoother'} than the best "
        f"control ({best}): Dirichlet energy of its standardised activations {gsr:.3g} "
        f"against {control:.3g} (lower is smoother), at {cost}"
        + (": GSR helps here." if margin > 0 else ": GSR does not help here.")
    )
    return {
        "kind": "smoothness",
        "rows": {"fit": len(fit_rows), "score": len(score_rows)},
        "scores": scores,
        "verdict": result,
        "verdict_text": text,
    }


def _morans_i(values: np.ndarray, graph) -> float:
    return float(analysis.morans_i(values, graph)) if np.ptp(values) > 0 else float("nan")


def _module_controls(est, Z, Z0, X, y, seed: int, cost: str, ratio: float) -> dict:
    """:func:`gsreg.analysis.module_controls` and :func:`~gsreg.analysis.module_verdict` of
    the learned modules, with as many groups as modules (as labels when there is < 2)."""
    n_modules = None if est.modules_ is None else int(len(np.unique(est.modules_)))
    rows = _sample(len(Z), seed)
    Zs, Z0s, Xs = Z[rows], Z0[rows], X[rows]
    Xs = Xs.toarray() if sp.issparse(Xs) else np.asarray(Xs)
    n_labels = None if y is None else int(len(np.unique(y)))
    k = n_modules if n_modules is not None and n_modules > 1 else (n_labels or 2)
    k = min(k, Z0.shape[1], len(rows))
    out: dict = {
        "kind": "modules",
        "rows": {"score": len(rows)},
        "n_modules": n_modules,
        "k": k,
        "leiden": analysis.leiden_available(),
    }
    if y is None:
        out["verdict_text"] = (
            "Without labels the modules cannot be scored against their "
            "controls; pass --labels to compare them."
        )
        return out
    ys = y[rows]
    found = analysis.module_controls(Zs, est.modules_, Z0s, Xs, ys, k, seed)
    gsr = 0.0
    if n_modules is not None and n_modules > 1:
        gsr = analysis.cluster_scores(analysis.indicated_modules(Zs, est.modules_), ys)["ari"]
    verdict = analysis.module_verdict(
        [{"ari": gsr, "components": n_modules or 0, "controls": found}], ratio
    )
    aris = {
        analysis.MODULE_CONTROL_LABELS[name]: found[name]
        for name in analysis.MODULE_CONTROLS
        if found[name] is not None
    }
    null = {"null_mean": found["null_mean"], "p_value": found["p_value"]}
    margin = verdict["margin"]
    text = (
        f"The GSR modules {'beat' if margin > 0 else 'do not beat'} the best control "
        f"({verdict['best_control']}): ARI against the labels {gsr:.2f} against "
        f"{verdict['control_ari']:.2f} ({margin:+.2f}), at {cost}"
    )
    if verdict["helps"]:
        text += f", and their permutation null (p = {null['p_value']:.3f}): GSR helps here."
    elif not verdict["modules"]:
        text += ": with fewer than 2 modules GSR does not help here."
    elif margin > 0:
        text += (
            f", but not their permutation null (p = {verdict['p_value']:.3f}): GSR "
            "does not help here."
        )
    else:
        text += ": GSR does not help here."
    out.update(ari={"GSR modules": gsr, **aris}, null=null, verdict=verdict, verdict_text=text)
    return out
