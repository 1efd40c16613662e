"""What each regulariser costs the reconstruction: none, L1, L2 and GSR from 1e-5 to 1e5.

The dense autoencoder 784-128-128-128-32 (LeakyReLU 0.2, linear 32-unit latent, decoder
mirrored) is trained on MNIST scaled to [-1, 1] with Adam (lr 1e-3) once without a
regulariser and once per regulariser and coefficient. All three act on the same tensor,
the latent activations z (B, 32), so the comparison is like for like:

- L1: ``c * mean_b sum_i |z_bi|`` (sparse activity),
- L2: ``c * mean_b sum_i z_bi^2`` (small activity),
- GSR: ``c * mean_b z_b^T L z_b`` with L the Laplacian of a 4x8 torus on the 32 units.

The report plots train and test MSE against the coefficient and tabulates them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from .. import analysis, graphs
from ..models import DenseAutoencoder
from ..regularizer import GraphRegularizer
from ..report import RunFolder, Section
from ..training import evaluate, fit
from . import (
    CLOSE,
    check_config,
    lambda_label,
    load_mnist,
    reconstruction_cost,
    training_checks,
    tuple_fields,
    write_config_and_metrics,
)

TITLE = "Reconstruction cost of L1, L2 and GSR activity regularisation"
KINDS = ("l1", "l2", "gsr")
_NAMES = {"none": "none", "l1": "L1", "l2": "L2", "gsr": "GSR"}
_COLORS = {"l1": "tab:green", "l2": "tab:purple", "gsr": "tab:red"}
#: a test MSE at least this fraction of the mean-image MSE: the latent carries nothing
COLLAPSE_FRACTION = 0.9


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


Config = ReconstructionSweepConfig


class ActivityRegularizer:
    """L1 or L2 activity penalty on one layer's output, with GSR's training interface.

    ``penalty()`` is ``weight * mean_b sum_i |z_bi|`` (``"l1"``) or
    ``weight * mean_b sum_i z_bi^2`` (``"l2"``) of the layer's output (B, n) in the last
    forward; like :class:`gsreg.GraphRegularizer` it collects only in training mode with
    autograd on. ``step()`` does nothing; ``logs()`` gives ``{"<kind>/<layer>": value}``.
    """

    def __init__(self, model: nn.Module, layer: str, kind: str, weight: float) -> None:
        if kind not in ("l1", "l2"):
            raise ValueError(f"kind must be 'l1' or 'l2', got {kind!r}")
        self.layer, self.kind, self.weight = layer, kind, float(weight)
        self._z: torch.Tensor | None = None
        self._last: torch.Tensor | float = 0.0
        self._handle = model.get_submodule(layer).register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs, output: torch.Tensor) -> None:
        self._z = output if module.training and torch.is_grad_enabled() else None

    def penalty(self) -> torch.Tensor:
        z, self._z = self._z, None
        if z is None:
            return torch.zeros(())
        value = z.abs().sum(dim=1).mean() if self.kind == "l1" else z.pow(2).sum(dim=1).mean()
        self._last = value.detach()
        return self.weight * value

    def step(self) -> None:
        pass

    def logs(self) -> dict[str, torch.Tensor | float]:
        return {f"{self.kind}/{self.layer}": self._last}

    def remove(self) -> None:
        self._handle.remove()


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
    torch.manual_seed(config.seed)
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
        return result | {"status": "diverged", "error": str(err), "train_mse": math.nan,
                         "test_mse": math.nan, "latent_norm": math.nan,
                         "latent_energy": math.nan,
                         "train_seconds": time.perf_counter() - start}
    finally:
        if reg is not None:
            reg.remove()
    seconds = time.perf_counter() - start
    Z = analysis.activations(model, data.X_test, config.layer)
    return result | {
        "status": "ok",
        "train_mse": evaluate(model, data.X_train)["mse"],
        "test_mse": evaluate(model, data.X_test)["mse"],
        "latent_norm": float(np.linalg.norm(Z, axis=1).mean()),
        "latent_energy": analysis.dirichlet_energy(Z, graph, normalize=True),
        "train_seconds": seconds,
    }


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
    return {
        "data": {"name": "mnist", "scale": "symmetric", "n_train": len(data.X_train),
                 "n_test": len(data.X_test)},
        "graph": config.graph,
        "layer": config.layer,
        "none": {"train_mse": base["train_mse"], "test_mse": base["test_mse"]},
        "mean_image_mse": mean_image_mse,
        "runs": results,
        "by_regularizer": by_kind,
        "largest_close_coefficient": tolerated,
        "collapsed": [r["label"] for r in results if r["status"] == "collapsed"],
        "diverged": [r["label"] for r in results if r["status"] == "diverged"],
    }


def headline(metrics: dict) -> dict[str, str]:
    """The numbers an index page shows."""
    tolerated = ", ".join(
        f"{_NAMES[k]} {'none' if c is None else lambda_label(c)}"
        for k, c in metrics["largest_close_coefficient"].items()
    )
    return {
        "test MSE without regulariser": f"{metrics['none']['test_mse']:.4f}",
        "largest coefficient within 10% of that": tolerated,
        "collapsed runs": str(len(metrics["collapsed"])),
    }


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
    runs = metrics["runs"]
    gsr_c = tolerated.get("gsr")
    if gsr_c is not None:
        gsr = next(r for r in runs if r["regularizer"] == "gsr" and r["coefficient"] == gsr_c)
        others = "".join(
            f"; {_NAMES[r['regularizer']]}: {r['latent_energy']:.3f} and {r['latent_norm']:.3f}"
            for r in runs
            if r["regularizer"] in ("l1", "l2") and r["coefficient"] == gsr_c
            and r["status"] != "diverged"
        )
        lines.append(
            f"What the penalties do to the latent at coefficient {lambda_label(gsr_c)}: with "
            f"GSR its normalised Dirichlet energy on the torus is {gsr['latent_energy']:.3f} "
            f"and its mean norm {gsr['latent_norm']:.3f} (without a regulariser "
            f"{runs[0]['latent_energy']:.3f} and {runs[0]['latent_norm']:.3f}{others}). "
            "A lower energy means neighbours on the torus carry similar values; a lower "
            "norm alone only means smaller activations."
        )
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
    ]


__all__ = ["ActivityRegularizer", "Config", "ReconstructionSweepConfig", "headline", "run"]
