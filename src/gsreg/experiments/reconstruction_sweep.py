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
from ..report import RunFolder, Section, prose
from ..training import evaluate, fit, seeded
from ._config import check_config, training_checks, tuple_fields, write_config_and_metrics
from ._figures import save_figures
from ._labels import lambda_label
from ._training import load_mnist
from ._verdicts import CLOSE, MSE_CLOSE, WRECKED, against_controls, reconstruction_cost

KINDS = ("l1", "l2", "gsr")
_NAMES = {"none": "none", "l1": "L1", "l2": "L2", "gsr": "GSR"}
_COLORS = {"l1": "tab:green", "l2": "tab:purple", "gsr": "tab:red"}
#: a test MSE at least this fraction of the mean-image MSE: the latent carries nothing
COLLAPSE_FRACTION = 0.9
#: training rows whose latent places the units on the torus post hoc
ARRANGE_SAMPLES = 5000
#: random unit orders in the permutation null of the energy
N_PERMUTATIONS = 999
#: the figures a run writes (``figures/<name>.png``), in report order
FIGURES = ("mse_vs_coefficient",)


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
        1e-5,
        1e-4,
        1e-3,
        1e-2,
        1e-1,
        1.0,
        10.0,
        100.0,
        1e3,
        1e4,
        1e5,
    )
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
            raise ValueError(
                "ReconstructionSweepConfig.coefficients must all be > 0; "
                "the model without a regulariser is always trained"
            )
        for size in self.hidden:
            check_config("ReconstructionSweepConfig", hidden=(size, "positive_int"))
        unknown = [k for k in self.regularizers if k not in KINDS]
        if unknown or not self.regularizers:
            raise ValueError(
                f"ReconstructionSweepConfig.regularizers must be a non-empty "
                f"subset of {KINDS}, got {self.regularizers!r}"
            )
        if graphs.parse(self.graph).n_nodes != self.latent:
            raise ValueError(
                f"ReconstructionSweepConfig.graph {self.graph!r} must have "
                f"latent={self.latent} nodes"
            )

    @classmethod
    def quick(cls, **overrides) -> ReconstructionSweepConfig:
        """Seconds: 500 training and 300 test digits, one epoch, two coefficients."""
        return cls(
            **{
                "epochs": 1,
                "batch_size": 100,
                "n_train": 500,
                "n_test": 300,
                "coefficients": (1e-2, 1e2),
                **overrides,
            }
        )


def title(config: ReconstructionSweepConfig) -> str:
    """The report's title: "Reconstruction cost of L1, L2 and GSR activity regularisation"
    with the config's regularisers."""
    names = [_NAMES[k] for k in config.regularizers]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    return f"Reconstruction cost of {listed} activity regularisation"


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
    figures = save_figures(folder, {"mse_vs_coefficient": _plot(config, metrics)}, FIGURES)
    folder.write_report(title(config), _sections(config, metrics, figures, data.n_features))
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
            fit(
                model,
                data.X_train,
                regularizer=reg,
                epochs=config.epochs,
                batch_size=config.batch_size,
                lr=config.lr,
                device=device,
                seed=config.seed,
                progress=progress,
                desc=label,
            )
        except (RuntimeError, ValueError) as err:
            if "non-finite" not in str(err) and "NaN" not in str(err):
                raise
            failed = {
                "status": "diverged",
                "error": str(err),
                "train_mse": math.nan,
                "test_mse": math.nan,
                "latent_norm": math.nan,
                "latent_energy": math.nan,
                "train_seconds": time.perf_counter() - start,
            }
            if kind in ("none", "gsr"):
                failed |= {
                    "arranged_energy": math.nan,
                    "null_energy": math.nan,
                    "energy_p_value": math.nan,
                }
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
        rows = np.sort(
            np.random.default_rng(config.seed).choice(rows, ARRANGE_SAMPLES, replace=False)
        )
    Z_fit = analysis.activations(model, data.X_train[rows], config.layer)
    # Z and -Z together have zero means: the arrangement then sees the units' uncentred
    # cosine similarities, which the uncentred energy rewards. On standardised activations
    # (the default) it ignores the units' offsets, which dominate this latent, and its
    # placement is often rougher than the units' own order.
    perm = analysis.arrangement(np.concatenate([Z_fit, -Z_fit]), graph, random_state=config.seed)
    null = energy_null(Z, graph, N_PERMUTATIONS, seed=config.seed)
    return {
        "arranged_energy": analysis.dirichlet_energy(Z[:, perm], graph, normalize=True),
        "null_energy": null["null_mean"],
        "energy_p_value": null["p_value"],
    }


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
    degree = np.bincount(
        np.concatenate([i, j]), weights=np.concatenate([graph.weights] * 2), minlength=graph.n_nodes
    )
    diagonal = (np.diag(M)[perms] * degree).sum(axis=1)
    cross = (M[perms[:, i], perms[:, j]] * graph.weights).sum(axis=1)
    null = (diagonal - 2 * cross) / total
    observed = analysis.dirichlet_energy(Z, graph, normalize=True)
    return {
        "observed": observed,
        "null_mean": float(null.mean()),
        "null_std": float(null.std()),
        "p_value": float((1 + np.sum(null <= observed + 1e-12)) / (1 + n_permutations)),
    }


def _metrics(config, data, results: list[dict], mean_image_mse: float) -> dict:
    base = results[0]
    for r in results:
        r.update(reconstruction_cost(r["test_mse"], base["test_mse"]))
        if r["status"] == "ok" and r["test_mse"] >= COLLAPSE_FRACTION * mean_image_mse:
            r["status"] = "collapsed"
    tolerated = {}
    for kind in config.regularizers:
        ok = [
            r["coefficient"] for r in results if r["regularizer"] == kind and r["verdict"] == CLOSE
        ]
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
        r["norm_ratio"] = (
            r["latent_norm"] / base["latent_norm"] if base["latent_norm"] > 0 else math.nan
        )
    gsr = [_gsr_verdict(r, base) for r in results if r["regularizer"] == "gsr"]
    return {
        "data": {
            "name": "mnist",
            "scale": "symmetric",
            "n_train": len(data.X_train),
            "n_test": len(data.X_test),
        },
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
    return {
        "latent_energy": energy,
        "test_mse": base["test_mse"],
        "latent_norm": base["latent_norm"],
    }


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
    pool = (
        [v for v in gsr if v["cost"] == CLOSE and v["status"] == "ok"]
        or [v for v in gsr if v["status"] == "ok"]
        or gsr
    )
    chosen = max(pool, key=lambda v: v["margin"] if math.isfinite(v["margin"]) else -math.inf)
    return chosen | {"sentence": _verdict_sentence(chosen)}


def _verdict_sentence(v: dict) -> str:
    return prose(
        "reconstruction_sweep/verdict.txt", v=v, coefficient=lambda_label(v["coefficient"])
    )


def _tolerated(metrics: dict) -> list[str]:
    """Per regulariser, its largest coefficient whose test MSE stays close to λ = 0."""
    return [
        f"{_NAMES[k]} {'none' if c is None else lambda_label(c)}"
        for k, c in metrics["largest_close_coefficient"].items()
    ]


def headline(metrics: dict) -> dict[str, str]:
    """The numbers an index page shows."""
    out = {
        "test MSE without regulariser": f"{metrics['none']['test_mse']:.4f}",
        f"largest coefficient within {(MSE_CLOSE - 1) * 100:g}% of that": ", ".join(
            _tolerated(metrics)
        ),
        "collapsed runs": str(len(metrics["collapsed"])),
    }
    v = metrics.get("verdict")
    if v is not None:
        out["vs best control"] = (
            f"GSR {lambda_label(v['coefficient'])} energy {v['gsr_score']:.3f} vs "
            f"{v['best_control']} {v['control_score']:.3f} (margin {v['margin']:+.3f}) at "
            f"{v['mse_ratio']:.2f}x MSE, {v['norm_ratio']:.2f}x ‖z‖: "
            f"{'helps' if v['helps'] else 'does not help'}"
        )
    return out


def _plot(config, metrics: dict):
    fig, ax = plt.subplots(figsize=(7.0, 4.2), layout="constrained")
    for kind, series in metrics["by_regularizer"].items():
        color = _COLORS[kind]
        ax.plot(
            series["coefficients"],
            series["test_mse"],
            "o-",
            color=color,
            label=f"{_NAMES[kind]} test",
        )
        ax.plot(
            series["coefficients"],
            series["train_mse"],
            "x--",
            color=color,
            alpha=0.7,
            label=f"{_NAMES[kind]} train",
        )
    none = metrics["none"]
    ax.axhline(none["test_mse"], color="black", lw=1.0, label="none test")
    ax.axhline(none["train_mse"], color="black", lw=1.0, ls="--", label="none train")
    ax.axhline(
        metrics["mean_image_mse"],
        color="grey",
        lw=1.0,
        ls=":",
        label="mean image (nothing learned)",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("coefficient")
    ax.set_ylabel("reconstruction MSE")
    ax.set_title(
        f"MSE against the coefficient ({config.graph} for GSR, latent {config.latent})", fontsize=10
    )
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


def _sections(config, metrics: dict, figures: dict[str, str], n_features: int) -> list[Section]:
    data = metrics["data"]
    summary = prose(
        "reconstruction_sweep/summary.txt",
        layers=[n_features, *config.hidden, config.latent],
        latent=config.latent,
        n_train=data["n_train"],
        n_test=data["n_test"],
        epochs=config.epochs,
        lr=config.lr,
        seed=config.seed,
        graph=config.graph,
        regularizers=list(config.regularizers),
        names=[_NAMES[k] for k in config.regularizers],
        kind_names=_NAMES,
        base=metrics["none"],
        mean_image_mse=metrics["mean_image_mse"],
        close_percent=(MSE_CLOSE - 1) * 100,
        tolerated=_tolerated(metrics),
        verdict=metrics["verdict"],
        arrange_samples=ARRANGE_SAMPLES,
        n_permutations=N_PERMUTATIONS,
        collapsed=metrics["collapsed"],
        diverged=metrics["diverged"],
    )
    return [
        Section("Summary", text=summary),
        Section(
            "MSE against the coefficient",
            text=prose("reconstruction_sweep/mse_figure.txt"),
            figures=[figures["mse_vs_coefficient"]],
        ),
        Section("Train and test MSE", table=_table(config, metrics)),
        Section(
            "Smoothness against the controls",
            text=prose("reconstruction_sweep/controls.txt", graph=config.graph),
            table=_controls_table(metrics),
        ),
    ]


def _controls_table(metrics: dict) -> list[dict]:
    verdicts = {v["coefficient"]: v for v in metrics["gsr_vs_controls"]}
    rows = []
    for r in metrics["runs"]:
        v = verdicts.get(r["coefficient"]) if r["regularizer"] == "gsr" else None
        ordered = "arranged_energy" in r
        rows.append(
            {
                "model": "λ=0 (no regulariser)" if r["regularizer"] == "none" else r["label"],
                "energy": f"{r['latent_energy']:.3f}",
                "energy arranged": f"{r['arranged_energy']:.3f}" if ordered else "",
                "random orders": f"{r['null_energy']:.3f}" if ordered else "",
                "p": f"{r['energy_p_value']:.3f}" if ordered else "",
                "test MSE vs λ=0": f"{r['mse_ratio']:.2f}x",
                "mean ‖z‖ vs λ=0": f"{r['norm_ratio']:.2f}x",
                "margin vs best control": "" if v is None else f"{v['margin']:+.3f}",
                "GSR helps": "" if v is None else ("yes" if v["helps"] else "no"),
            }
        )
    return rows


__all__ = ["FIGURES", "ReconstructionSweepConfig", "headline", "run"]
