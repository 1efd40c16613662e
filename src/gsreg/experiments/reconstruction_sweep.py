"""What each regulariser costs the reconstruction: none, L1, L2 and GSR from 1e-5 to 1e5.

The dense autoencoder 784-128-128-128-32 (LeakyReLU 0.2, linear 32-unit latent, decoder
mirrored) is trained on MNIST scaled to [-1, 1] with Adam (lr 1e-3) once without a
regulariser and once per regulariser and coefficient. All three act on the same tensor,
the latent activations z (B, 32), so the comparison is like for like:

- L1: ``c * mean_b sum_i |z_bi|`` (sparse activity),
- L2: ``c * mean_b sum_i z_bi^2`` (small activity),
- GSR: ``c * mean_b z_b^T L z_b`` with L the Laplacian of a 4x8 torus on the 32 units.

The report plots train and test MSE against the coefficient and tabulates them.

Structure is the normalised Dirichlet energy of the test latent on the torus (lower is
smoother). It stands beside its controls: the latent without a regulariser as trained,
the same latent with its units arranged post hoc onto the torus
(:func:`gsreg.analysis.arrangement`, fitted on at most :data:`ARRANGE_SAMPLES` training
rows and scored on the test rows; fitted on the rows of z and -z, so that it matches the
units' uncentred similarities, which this uncentred energy rewards) and a permutation
null (the energy of the units in random orders). GSR helps at a coefficient when its
latent is smoother than the best control (λ = 0 as trained or arranged) without
wrecking the reconstruction; each GSR latent is also arranged post hoc, to show how much
smoothness its own order leaves on the table. The mean norm of the latent is reported
against λ = 0 beside every energy: L1, L2 and the plain GSR penalty can all lower the
penalty by shrinking the activations, which the normalised energy does not reward.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np

from .. import analysis, graphs
from ..activity import ActivityRegularizer
from ..models import DenseAutoencoder
from ..regularizer import GraphRegularizer
from ..report import RunFolder, Section
from ..training import evaluate, fit, seeded
from ._config import check_config, training_checks, tuple_fields, write_config_and_metrics
from ._labels import lambda_label
from ._training import load_mnist
from ._verdicts import CLOSE, WRECKED, against_controls, reconstruction_cost

TITLE = "Reconstruction cost of L1, L2 and GSR activity regularisation"
KINDS = ("l1", "l2", "gsr")
_NAMES = {"none": "none", "l1": "L1", "l2": "L2", "gsr": "GSR"}
_COLORS = {"l1": "tab:green", "l2": "tab:purple", "gsr": "tab:red"}
#: a test MSE at least this fraction of the mean-image MSE: the latent carries nothing
COLLAPSE_FRACTION = 0.9
#: training rows whose latent places the units on the torus post hoc
ARRANGE_SAMPLES = 5000
#: random unit orders in the permutation null of the energy
N_PERMUTATIONS = 999


@dataclass(frozen=True)
class ReconstructionSweepConfig:
    """Everything that defines a run; written to ``config.json``.

    ``n_train``/``n_test`` of ``None`` use the whole split (60 000 / 10 000).
    """

    graph: str = "torus:4x8"
    layer: str = "encoder.latent"
    hidden: tuple[int, ...] = (128, 128, 128)
    latent: int = 32
    coefficients: tuple[float, ...] = (
        1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5,
    )  # fmt: skip
    regularizers: tuple[str, ...] = KINDS
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    n_train: int | None = None
    n_test: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        tuple_fields(self)
        check_config(
            "ReconstructionSweepConfig",
            latent=(self.latent, "positive_int"),
            **training_checks(self),
            coefficients=(self.coefficients, "weights"),
        )
        if any(c <= 0 for c in self.coefficients):
            raise ValueError("ReconstructionSweepConfig.coefficients must all be > 0; "
                             "the model without a regulariser is always trained")
        for size in self.hidden:
            check_config("ReconstructionSweepConfig", hidden=(size, "positive_int"))
        unknown = [k for k in self.regularizers if k not in KINDS]
        if unknown or not self.regularizers:
            raise ValueError(f"ReconstructionSweepConfig.regularizers must be a non-empty "
                             f"subset of {KINDS}, got {self.regularizers!r}")
        if graphs.parse(self.graph).n_nodes != self.latent:
            raise ValueError(f"ReconstructionSweepConfig.graph {self.graph!r} must have "
                             f"latent={self.latent} nodes")

    @classmethod
    def quick(cls, **overrides) -> ReconstructionSweepConfig:
        """Seconds: 500 training and 300 test digits, one epoch, two coefficients."""
        return cls(**{"epochs": 1, "batch_size": 100, "n_train": 500, "n_test": 300,
                      "coefficients": (1e-2, 1e2), **overrides})




def run(
    config: ReconstructionSweepConfig, out: str, device: str = "auto", progress: bool = True
) -> dict:
    """Train every model, write ``out/``; returns the metrics."""
    folder = RunFolder(out)
    graph = graphs.parse(config.graph)
    data = load_mnist(config, scale="symmetric")
    mean_image = data.X_train.mean(axis=0)
    mean_image_mse = float(np.mean((data.X_test - mean_image) ** 2))
    runs = [("none", 0.0)] + [(k, c) for k in config.regularizers for c in config.coefficients]
    results = [_train(kind, c, config, graph, data, device, progress) for kind, c in runs]
    metrics = _metrics(config, data, results, mean_image_mse)
    write_config_and_metrics(folder, config, metrics)
    figure = folder.save_figure(_plot(config, metrics), "mse_vs_coefficient")
    folder.write_report(TITLE, _sections(config, metrics, figure))
    return metrics


def _train(kind, coefficient, config, graph, data, device, progress) -> dict:
    with seeded(config.seed):
        model = DenseAutoencoder(data.n_features, hidden=config.hidden, latent=config.latent)
        reg = None
        if kind == "gsr":
            reg = GraphRegularizer(model, {config.layer: graph}, weight=coefficient)
        elif kind in ("l1", "l2"):
            reg = ActivityRegularizer(model, config.layer, kind, coefficient)
        label = _NAMES[kind] if kind == "none" else f"{_NAMES[kind]} {lambda_label(coefficient)}"
        result = {"regularizer": kind, "coefficient": coefficient, "label": label}
        start = time.perf_counter()
        try:
            fit(model, data.X_train, regularizer=reg, epochs=config.epochs,
                batch_size=config.batch_size, lr=config.lr, device=device, seed=config.seed,
                progress=progress, desc=label)
        except (RuntimeError, ValueError) as err:
            if "non-finite" not in str(err) and "NaN" not in str(err):
                raise
            failed = {"status": "diverged", "error": str(err), "train_mse": math.nan,
                      "test_mse": math.nan, "latent_norm": math.nan, "latent_energy": math.nan,
                      "train_seconds": time.perf_counter() - start}
            if kind in ("none", "gsr"):
                failed |= {"arranged_energy": math.nan, "null_energy": math.nan,
                           "energy_p_value": math.nan}
            return result | failed
        finally:
            if reg is not None:
                reg.remove()
        seconds = time.perf_counter() - start
        Z = analysis.activations(model, data.X_test, config.layer)
        result |= {
            "status": "ok",
            "train_mse": evaluate(model, data.X_train)["mse"],
            "test_mse": evaluate(model, data.X_test)["mse"],
            "latent_norm": float(np.linalg.norm(Z, axis=1).mean()),
            "latent_energy": analysis.dirichlet_energy(Z, graph, normalize=True),
            "train_seconds": seconds,
        }
        if kind in ("none", "gsr"):
            result |= _order_controls(model, Z, config, graph, data)
        return result


def _order_controls(model, Z, config, graph, data) -> dict:
    """The latent's energy after the post-hoc arrangement and under random unit orders."""
    rows = np.arange(len(data.X_train))
    if len(rows) > ARRANGE_SAMPLES:
        rows = np.sort(np.random.default_rng(config.seed).choice(
            rows, ARRANGE_SAMPLES, replace=False))
    Z_fit = analysis.activations(model, data.X_train[rows], config.layer)
    # Z and -Z together have zero means: the arrangement then sees the units' uncentred
    # cosine similarities, which the uncentred energy rewards. On standardised activations
    # (the default) it ignores the units' offsets, which dominate this latent, and its
    # placement is often rougher than the units' own order.
    perm = analysis.arrangement(np.concatenate([Z_fit, -Z_fit]), graph,
                                random_state=config.seed)
    null = energy_null(Z, graph, N_PERMUTATIONS, seed=config.seed)
    return {"arranged_energy": analysis.dirichlet_energy(Z[:, perm], graph, normalize=True),
            "null_energy": null["null_mean"], "energy_p_value": null["p_value"]}


def energy_null(
    Z: np.ndarray, graph: graphs.Graph, n_permutations: int = N_PERMUTATIONS, seed: int = 0
) -> dict[str, float]:
    """Permutation null of the normalised Dirichlet energy of Z (N, n) on ``graph``.

    A null sample is ``dirichlet_energy(Z[:, p], graph)`` for a random order p of the
    units: ``sum_ik L_ik M[p_i, p_k] / tr(M)`` with M = Z^T Z. Returns ``observed``,
    ``null_mean``, ``null_std`` and ``p_value = (1 + #{null <= observed}) /
    (1 + n_permutations)`` (small when the units' own order is smoother than chance).
    """
    Z = np.asarray(Z, dtype=np.float64)
    M = Z.T @ Z
    total = float(np.trace(M))
    if not total > 0:
        nan = float("nan")
        return {"observed": nan, "null_mean": nan, "null_std": nan, "p_value": nan}
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((n_permutations, graph.n_nodes)), axis=1)
    i, j = graph.edges.T
    degree = np.bincount(np.concatenate([i, j]), weights=np.concatenate([graph.weights] * 2),
                         minlength=graph.n_nodes)
    diagonal = (np.diag(M)[perms] * degree).sum(axis=1)
    cross = (M[perms[:, i], perms[:, j]] * graph.weights).sum(axis=1)
    null = (diagonal - 2 * cross) / total
    observed = analysis.dirichlet_energy(Z, graph, normalize=True)
    return {"observed": observed, "null_mean": float(null.mean()),
            "null_std": float(null.std()),
            "p_value": float((1 + np.sum(null <= observed + 1e-12)) / (1 + n_permutations))}


def _metrics(config, data, results: list[dict], mean_image_mse: float) -> dict:
    base = results[0]
    for r in results:
        r.update(reconstruction_cost(r["test_mse"], base["test_mse"]))
        if r["status"] == "ok" and r["test_mse"] >= COLLAPSE_FRACTION * mean_image_mse:
            r["status"] = "collapsed"
    tolerated = {}
    for kind in config.regularizers:
        ok = [r["coefficient"] for r in results
              if r["regularizer"] == kind and r["verdict"] == CLOSE]
        tolerated[kind] = max(ok, default=None)
    by_kind = {
        kind: {
            "coefficients": [r["coefficient"] for r in results if r["regularizer"] == kind],
            "train_mse": [r["train_mse"] for r in results if r["regularizer"] == kind],
            "test_mse": [r["test_mse"] for r in results if r["regularizer"] == kind],
            "status": [r["status"] for r in results if r["regularizer"] == kind],
        }
        for kind in config.regularizers
    }
    for r in results:
        r["norm_ratio"] = (r["latent_norm"] / base["latent_norm"] if base["latent_norm"] > 0
                           else math.nan)
    gsr = [_gsr_verdict(r, base) for r in results if r["regularizer"] == "gsr"]
    return {
        "data": {"name": "mnist", "scale": "symmetric", "n_train": len(data.X_train),
                 "n_test": len(data.X_test)},
        "graph": config.graph,
        "layer": config.layer,
        "none": {"train_mse": base["train_mse"], "test_mse": base["test_mse"]},
        "controls": {
            "λ=0": _control(base["latent_energy"], base),
            "λ=0 arranged": _control(base["arranged_energy"], base),
            "permutation null": _control(base["null_energy"], base),
        },
        "gsr_vs_controls": gsr,
        "verdict": _overall_verdict(gsr),
        "mean_image_mse": mean_image_mse,
        "runs": results,
        "by_regularizer": by_kind,
        "largest_close_coefficient": tolerated,
        "collapsed": [r["label"] for r in results if r["status"] == "collapsed"],
        "diverged": [r["label"] for r in results if r["status"] == "diverged"],
    }


def _control(energy: float, base: dict) -> dict:
    """A λ = 0 control: its energy and the λ = 0 model's test MSE and latent norm."""
    return {"latent_energy": energy, "test_mse": base["test_mse"],
            "latent_norm": base["latent_norm"]}


def _gsr_verdict(r: dict, base: dict) -> dict:
    """Whether the GSR latent of run ``r`` is smoother than the best control.

    The best control is the smoother of the λ = 0 latent as trained and arranged.
    ``margin`` is the control's energy minus GSR's (positive: GSR smoother); GSR helps
    when the margin is positive, the run neither diverged nor collapsed and its test MSE
    does not wreck the reconstruction (:data:`gsreg.experiments.MSE_WRECKED`).
    """
    controls = {"λ=0": base["latent_energy"], "λ=0 arranged": base["arranged_energy"]}
    cost = r["verdict"] if r["status"] == "ok" else WRECKED  # diverged or collapsed
    verdict = against_controls(r["latent_energy"], controls, cost, better="lower")
    return {
        "coefficient": r["coefficient"],
        "label": r["label"],
        "score": "normalised Dirichlet energy",
        **verdict,
        "cost": r["verdict"],
        "gsr_arranged_score": r["arranged_energy"],
        "energy_p_value": r["energy_p_value"],
        "mse_ratio": r["mse_ratio"],
        "norm_ratio": r["norm_ratio"],
        "status": r["status"],
    }


def _overall_verdict(gsr: list[dict]) -> dict | None:
    """The GSR coefficient the report judges by, with its verdict and sentence.

    The coefficient of largest margin among those whose test MSE stays close to λ = 0; if
    none does, among the runs that neither diverged nor collapsed; else among all.
    """
    if not gsr:
        return None
    pool = ([v for v in gsr if v["cost"] == CLOSE and v["status"] == "ok"]
            or [v for v in gsr if v["status"] == "ok"] or gsr)
    chosen = max(pool, key=lambda v: v["margin"] if math.isfinite(v["margin"]) else -math.inf)
    return chosen | {"sentence": _verdict_sentence(chosen)}


def _verdict_sentence(v: dict) -> str:
    margin = v["margin"]
    beats = margin > 0
    head = (f"GSR {lambda_label(v['coefficient'])} {'beats' if beats else 'does not beat'} "
            f"the best control ({v['best_control']}): normalised Dirichlet energy "
            f"{v['gsr_score']:.3f} against {v['control_score']:.3f} "
            f"({abs(margin):.3f} {'lower' if beats else 'higher'}; lower is smoother), at "
            f"{v['mse_ratio']:.2f}x the test MSE of λ = 0 ({v['cost']}) and "
            f"{v['norm_ratio']:.2f}x its mean latent norm")
    if v["helps"]:
        return head + ": GSR helps here."
    if beats:
        reason = ("the reconstruction is wrecked" if v["status"] == "ok"
                  else f"the run {v['status']}")
        return head + f", but {reason}: GSR does not help here."
    return head + ": GSR does not help here."


def headline(metrics: dict) -> dict[str, str]:
    """The numbers an index page shows."""
    tolerated = ", ".join(
        f"{_NAMES[k]} {'none' if c is None else lambda_label(c)}"
        for k, c in metrics["largest_close_coefficient"].items()
    )
    out = {
        "test MSE without regulariser": f"{metrics['none']['test_mse']:.4f}",
        "largest coefficient within 10% of that": tolerated,
        "collapsed runs": str(len(metrics["collapsed"])),
    }
    v = metrics.get("verdict")
    if v is not None:
        out["vs best control"] = (
            f"GSR {lambda_label(v['coefficient'])} energy {v['gsr_score']:.3f} vs "
            f"{v['best_control']} {v['control_score']:.3f} (margin {v['margin']:+.3f}) at "
            f"{v['mse_ratio']:.2f}x MSE, {v['norm_ratio']:.2f}x ‖z‖: "
            f"{'helps' if v['helps'] else 'does not help'}")
    return out


def _plot(config, metrics: dict):
    fig, ax = plt.subplots(figsize=(7.0, 4.2), layout="constrained")
    for kind, series in metrics["by_regularizer"].items():
        color = _COLORS[kind]
        ax.plot(series["coefficients"], series["test_mse"], "o-", color=color,
                label=f"{_NAMES[kind]} test")
        ax.plot(series["coefficients"], series["train_mse"], "x--", color=color, alpha=0.7,
                label=f"{_NAMES[kind]} train")
    none = metrics["none"]
    ax.axhline(none["test_mse"], color="black", lw=1.0, label="none test")
    ax.axhline(none["train_mse"], color="black", lw=1.0, ls="--", label="none train")
    ax.axhline(metrics["mean_image_mse"], color="grey", lw=1.0, ls=":",
               label="mean image (nothing learned)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("coefficient")
    ax.set_ylabel("reconstruction MSE")
    ax.set_title(f"MSE against the coefficient ({config.graph} for GSR, latent "
                 f"{config.latent})", fontsize=10)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig


def _cell(r: dict) -> tuple[str, str]:
    if r["status"] == "diverged":
        return "diverged", "diverged"
    mark = " (collapsed)" if r["status"] == "collapsed" else ""
    return f"{r['train_mse']:.4f}", f"{r['test_mse']:.4f}{mark}"


def _table(config, metrics: dict) -> list[dict]:
    runs = metrics["runs"]
    none_train, none_test = _cell(runs[0])
    rows = [{"coefficient": "0 (none)"}]
    for kind in config.regularizers:
        rows[0][f"{_NAMES[kind]} train"] = none_train
        rows[0][f"{_NAMES[kind]} test"] = none_test
    for c in config.coefficients:
        row = {"coefficient": lambda_label(c)}
        for kind in config.regularizers:
            r = next(r for r in runs if r["regularizer"] == kind and r["coefficient"] == c)
            row[f"{_NAMES[kind]} train"], row[f"{_NAMES[kind]} test"] = _cell(r)
        rows.append(row)
    return rows


def _sections(config, metrics: dict, figure: str) -> list[Section]:
    data = metrics["data"]
    none = metrics["none"]
    tolerated = metrics["largest_close_coefficient"]
    lines = [
        f"The autoencoder 784-{'-'.join(map(str, config.hidden))}-{config.latent} (mirrored "
        f"decoder) was trained on {data['n_train']} MNIST digits scaled to [-1, 1] "
        f"({config.epochs} epochs, Adam lr {config.lr:g}, seed {config.seed}) once without "
        f"a regulariser and once per regulariser and coefficient; MSE on the training "
        f"digits and on {data['n_test']} test digits.",
        "L1, L2 and GSR all act on the same 32 latent activations (activity "
        "regularisation, not weight decay), so the comparison is like for like: L1 adds "
        "c·mean_b Σ|z|, L2 c·mean_b Σz², GSR c·mean_b zᵀLz on the "
        f"{config.graph} graph.",
        f"Without a regulariser the test MSE is {none['test_mse']:.4f} (train "
        f"{none['train_mse']:.4f}); predicting the mean image gives "
        f"{metrics['mean_image_mse']:.4f}. The largest coefficient whose test MSE stays "
        "within 10% of that without a regulariser: " + ", ".join(
            f"{_NAMES[k]} {'none' if c is None else lambda_label(c)}"
            for k, c in tolerated.items()) + ".",
    ]
    if metrics["verdict"] is not None:
        lines.append(
            "Structure stands beside its controls (table below): the latent without a "
            "regulariser as trained, the same latent with its units arranged post hoc onto "
            f"the torus (fitted on at most {ARRANGE_SAMPLES} training digits, scored on the "
            f"test digits) and {N_PERMUTATIONS} random unit orders. The verdict is drawn at "
            "the GSR coefficient of largest margin over the best control among those whose "
            "test MSE stays within 10% of λ = 0 (else among those that neither diverged nor "
            "collapsed). The normalised energy ignores the scale of the latent; its mean "
            "norm is given against λ = 0 because L1, L2 and the plain GSR penalty can all "
            "be lowered by shrinking it.")
        lines.append(metrics["verdict"]["sentence"])
    if metrics["collapsed"]:
        lines.append(
            f"Runs marked 'collapsed' ({', '.join(metrics['collapsed'])}) reconstruct "
            "hardly better than the mean image: the penalty wrecked the primary task."
        )
    if metrics["diverged"]:
        lines.append(f"Diverged (non-finite loss): {', '.join(metrics['diverged'])}.")
    return [
        Section("Summary", text="\n\n".join(lines)),
        Section("MSE against the coefficient", text=(
            "Solid lines and circles: test MSE; dashed lines and crosses: train MSE; one "
            "colour per regulariser. Black lines: no regulariser; grey dotted: the mean "
            "image. A regulariser is harmless where its curves lie on the black lines; the "
            "coefficient where they leave them shows how much of it the task tolerates."),
            figures=[figure]),
        Section("Train and test MSE", table=_table(config, metrics)),
        Section("Smoothness against the controls", text=(
            "Normalised Dirichlet energy of the test latent on the torus (lower is "
            "smoother) as trained and after the post-hoc arrangement of its units, the "
            "mean energy of random unit orders and the share of them at least as smooth "
            "(p). Margin: the best control's energy minus GSR's."),
            table=_controls_table(metrics)),
    ]


def _controls_table(metrics: dict) -> list[dict]:
    verdicts = {v["coefficient"]: v for v in metrics["gsr_vs_controls"]}
    rows = []
    for r in metrics["runs"]:
        v = verdicts.get(r["coefficient"]) if r["regularizer"] == "gsr" else None
        ordered = "arranged_energy" in r
        rows.append({
            "model": "λ=0 (no regulariser)" if r["regularizer"] == "none" else r["label"],
            "energy": f"{r['latent_energy']:.3f}",
            "energy arranged": f"{r['arranged_energy']:.3f}" if ordered else "",
            "random orders": f"{r['null_energy']:.3f}" if ordered else "",
            "p": f"{r['energy_p_value']:.3f}" if ordered else "",
            "test MSE vs λ=0": f"{r['mse_ratio']:.2f}x",
            "mean ‖z‖ vs λ=0": f"{r['norm_ratio']:.2f}x",
            "margin vs best control": "" if v is None else f"{v['margin']:+.3f}",
            "GSR helps": "" if v is None else ("yes" if v["helps"] else "no"),
        })
    return rows


__all__ = ["ReconstructionSweepConfig", "headline", "run"]
