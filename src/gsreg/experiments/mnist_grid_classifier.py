"""MNIST classifier with an 8x8 grid on its dense layer, and a head that reads it as an image.

The paper's classifier, :class:`gsreg.models.ConvClassifier`
(conv5x5(32)-pool-conv5x5(64)-pool-dense(64)-dropout 0.4-dense(10)), is trained once per
lambda with the plain penalty on the 64 post-activation units of ``fc`` laid out as an
8x8 grid. Per model: test accuracy (the primary task, against lambda = 0) and the
localisation of the class maps (Moran's I). For one GSR model the digits it gets wrong
are drawn as maps next to the classes they were taken for.

The "image-like layer" claim is checked with :class:`GridHeadClassifier`: the same network
whose output reads the 8x8 layer through a 3x3 convolution and 2x2 max pooling, as if it
were a small image. A convolution and pooling only suit a map whose neighbouring units
mean similar things, so the head should profit from GSR; it is trained with and without.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from .. import analysis, graphs, plotting
from ..models import ConvClassifier
from ..report import RunFolder, Section, prose
from ..training import seeded
from ._config import (
    check_config,
    public_fields,
    training_checks,
    tuple_fields,
    write_config_and_metrics,
)
from ._figures import plot_tradeoff, save_figures
from ._labels import lambda_label
from ._training import fit_variant, load_mnist, train_variants
from ._verdicts import ACCURACY_CLOSE, ACCURACY_WRECKED, WRECKED, accuracy_cost
from .mnist_grid_ae import (
    CLASS_MAP_FIGURES,
    class_map_fields,
    class_map_plots,
    class_map_sections,
    controls_text,
    lambda_grid_metrics,
    table_rows,
    verdict_rows,
    with_arranged_reference,
    with_controls,
)

#: the figures a run writes (``figures/<name>.png``), in report order
FIGURES = (
    "tradeoff",
    *CLASS_MAP_FIGURES,
    "misclassified_maps",
    "misclassified_examples",
    "training",
)
#: the conv head's convolution kernel and max-pooling window (:class:`GridHeadClassifier`)
HEAD_KERNEL = 3
HEAD_POOL = 2
#: a conv-head accuracy change within this many points counts as no change
HEAD_EVEN_POINTS = 0.5
#: a GSR layer whose mean ||z|| falls below this share of λ = 0's counts as shrunk
SHRUNK = 0.5


def title(config: MnistGridClassifierConfig) -> str:
    """The report's title."""
    return f"MNIST classifier with a {config.graph} GSR layer"


@dataclass(frozen=True)
class MnistGridClassifierConfig:
    """Everything that defines a run; written to ``config.json``.

    ``head_weight`` is the lambda of the conv-head comparison and of the model whose
    mistakes are drawn. ``n_train``/``n_test`` of ``None`` use the whole split.
    """

    graph: str = "grid:8x8"
    layer: str = "fc"
    weights: tuple[float, ...] = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)
    head_weight: float = 1e-2
    head_channels: int = 8
    dropout: float = 0.4
    epochs: int = 3
    batch_size: int = 100
    lr: float = 1e-3
    n_train: int | None = 12000
    n_test: int | None = 5000
    n_examples: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        tuple_fields(self)
        check_config(
            "MnistGridClassifierConfig",
            weights=(self.weights, "weights"),
            head_weight=(self.head_weight, "positive"),
            head_channels=(self.head_channels, "positive_int"),
            dropout=(self.dropout, "non_negative"),
            **training_checks(self),
            n_examples=(self.n_examples, "positive_int"),
        )
        if 0.0 not in self.weights:
            raise ValueError(
                "MnistGridClassifierConfig.weights must include 0 (the reference model)"
            )
        if not self.dropout < 1:
            raise ValueError(f"MnistGridClassifierConfig.dropout must be < 1, got {self.dropout}")
        if graphs.parse(self.graph).shape is None:
            raise ValueError(
                f"MnistGridClassifierConfig.graph must be image-like, got {self.graph!r}"
            )

    @classmethod
    def quick(cls, **overrides) -> MnistGridClassifierConfig:
        """Seconds: 600 training and 300 test digits, one epoch."""
        return cls(**{"epochs": 1, "batch_size": 50, "n_train": 600, "n_test": 300, **overrides})


class GridHeadClassifier(nn.Module):
    """:class:`ConvClassifier` whose output reads the dense layer as a 1 x h x w image.

    ``features`` and ``fc`` (h*w units, LeakyReLU; hook ``"fc"``) and ``dropout`` are
    those of ``ConvClassifier(hidden=h*w)``; then ``head``: conv :data:`HEAD_KERNEL` x
    :data:`HEAD_KERNEL` (``channels``, same padding)-LeakyReLU-maxpool :data:`HEAD_POOL`
    on the map reshaped row-major to (B, 1, h, w), and ``out``: Linear to the logits.
    """

    def __init__(
        self,
        grid_shape: Sequence[int] = (8, 8),
        channels: int = 8,
        n_classes: int = 10,
        dropout: float = 0.4,
        negative_slope: float = 0.2,
        in_shape: Sequence[int] = (1, 28, 28),
    ) -> None:
        super().__init__()
        h, w = grid_shape
        if h < HEAD_POOL or w < HEAD_POOL:
            raise ValueError(
                f"grid_shape must be at least {HEAD_POOL}x{HEAD_POOL}, got {tuple(grid_shape)}"
            )
        base = ConvClassifier(
            in_shape, n_classes, hidden=h * w, dropout=dropout, negative_slope=negative_slope
        )
        self.in_shape = tuple(in_shape)
        self.grid_shape = (h, w)
        self.features, self.fc, self.dropout = base.features, base.fc, base.dropout
        self.head = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(1, channels, HEAD_KERNEL, padding=HEAD_KERNEL // 2),
                act=nn.LeakyReLU(negative_slope),
                pool=nn.MaxPool2d(HEAD_POOL),
            )
        )
        self.out = nn.Linear(channels * (h // HEAD_POOL) * (w // HEAD_POOL), n_classes)
        for layer in (self.head.conv, self.out):
            nn.init.kaiming_normal_(layer.weight, a=negative_slope, nonlinearity="leaky_relu")
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) or (B, C*H*W) -> logits (B, n_classes)."""
        if x.ndim == 2:
            x = x.reshape(-1, *self.in_shape)
        z = self.dropout(self.fc(self.features(x).flatten(1)))
        return self.out(self.head(z.reshape(-1, 1, *self.grid_shape)).flatten(1))


@dataclass(frozen=True)
class _Variant:
    key: str
    label: str
    weight: float
    head: str  # "dense" or "conv"


def _variants(config: MnistGridClassifierConfig) -> list[_Variant]:
    dense = [
        _Variant(f"lambda_{lambda_label(w)}", f"λ={lambda_label(w)}", float(w), "dense")
        for w in sorted(set(config.weights))
    ]
    conv = [
        _Variant(
            f"conv_head_lambda_{lambda_label(w)}",
            f"conv head λ={lambda_label(w)}",
            float(w),
            "conv",
        )
        for w in (0.0, config.head_weight)
    ]
    return dense + conv


def variant_keys(config: MnistGridClassifierConfig) -> list[str]:
    """The keys of the models a run of ``config`` trains (``metrics["models"]``), in order."""
    return [variant.key for variant in _variants(config)]


def run(
    config: MnistGridClassifierConfig, out: str, device: str = "auto", progress: bool = True
) -> dict:
    """Train every model, analyse, write ``out/``; returns the metrics."""
    folder = RunFolder(out)
    graph = graphs.parse(config.graph)
    data = load_mnist(config)
    results, histories = train_variants(
        _variants(config), _train, config, graph, data, device, progress
    )
    showcase = _showcase(config, results, data)
    metrics = _metrics(config, data, results, showcase)
    write_config_and_metrics(folder, config, metrics)
    figures = _figures(folder, config, graph, data, results, histories, showcase)
    folder.write_report(title(config), _sections(config, metrics, figures))
    return metrics


def _model(variant: _Variant, config: MnistGridClassifierConfig, graph) -> nn.Module:
    if variant.head == "conv":
        return GridHeadClassifier(graph.shape, config.head_channels, dropout=config.dropout)
    return ConvClassifier(hidden=graph.n_nodes, dropout=config.dropout)


def _train(variant, config, graph, data, device, progress):
    with seeded(config.seed):
        model = _model(variant, config, graph)
        history, seconds, _ = fit_variant(
            model, variant, config, graph, data, device, progress, task="classification"
        )
        outputs = analysis.activations(model, data.X_test, [config.layer, "out"], batch_size=500)
        Z, logits = outputs[config.layer], outputs["out"]
        pred = logits.argmax(axis=1)
        result = {
            "label": variant.label,
            "weight": variant.weight,
            "head": variant.head,
            "test_accuracy": float(np.mean(pred == data.y_test)),
            "train_seconds": seconds,
            **class_map_fields(model, config.layer, data, graph, config.seed),
            "_Z": Z,
            "_pred": pred,
        }
        return result, history


def _showcase(config, results, data) -> dict:
    """The dense-head model at ``head_weight`` (else the strongest GSR), and its mistakes."""
    dense = [r for r in results.values() if r["head"] == "dense" and r["weight"] > 0]
    chosen = next((r for r in dense if r["weight"] == config.head_weight), None)
    if chosen is None:
        chosen = max(dense, key=lambda r: r["weight"], default=results["lambda_0"])
    Z, pred, y = chosen["_Z"], chosen["_pred"], data.y_test
    n_classes = len(data.classes)
    deviation = Z - analysis.global_mean(Z)
    wrong = np.flatnonzero(pred != y)
    correct_maps = np.full((n_classes, Z.shape[1]), np.nan)
    wrong_maps = np.full((n_classes, Z.shape[1]), np.nan)
    for c in range(n_classes):
        ok = (y == c) & (pred == c)
        if ok.any():
            correct_maps[c] = deviation[ok].mean(axis=0)
        taken = (pred == c) & (y != c)
        if taken.any():
            wrong_maps[c] = deviation[taken].mean(axis=0)
    like_pred = []
    for i in wrong:
        r_true = _correlation(deviation[i], correct_maps[y[i]])
        r_pred = _correlation(deviation[i], correct_maps[pred[i]])
        if math.isfinite(r_true) and math.isfinite(r_pred):
            like_pred.append(r_pred > r_true)
    return {
        "label": chosen["label"],
        "weight": chosen["weight"],
        "n_test": len(y),
        "n_misclassified": len(wrong),
        "like_predicted": float(np.mean(like_pred)) if like_pred else float("nan"),
        "_wrong": wrong,
        "_correct_maps": correct_maps,
        "_wrong_maps": wrong_maps,
        "_deviation": deviation,
        "_pred": pred,
    }


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    if not np.all(np.isfinite(b)):
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / denom) if denom > 0 else float("nan")


def _metrics(config, data, results: dict, showcase: dict) -> dict:
    base = results["lambda_0"]["test_accuracy"]
    head_base = results["conv_head_lambda_0"]["test_accuracy"]
    models = {}
    for key, r in results.items():
        reference = base if r["head"] == "dense" else head_base
        models[key] = public_fields(r) | accuracy_cost(r["test_accuracy"], reference)
        models[key]["accuracy_vs_dense_lambda_0"] = r["test_accuracy"] - base
    models = with_controls(
        {k: m for k, m in models.items() if m["head"] == "dense"}
    ) | with_controls(
        {k: m for k, m in models.items() if m["head"] == "conv"}, reference="conv_head_lambda_0"
    )
    dense = [m for m in models.values() if m["head"] == "dense"]
    head_gsr = models[f"conv_head_lambda_{lambda_label(config.head_weight)}"]
    shared = lambda_grid_metrics(
        config, data, models, dense, "test_accuracy", "accuracy_drop", dense
    )
    return shared | {
        "conv_head": {
            "lambda": config.head_weight,
            "test_accuracy_no_gsr": head_base,
            "test_accuracy_gsr": head_gsr["test_accuracy"],
            "gain_from_gsr": head_gsr["test_accuracy"] - head_base,
            "morans_i_no_gsr": models["conv_head_lambda_0"]["morans_i"],
            "morans_i_gsr": head_gsr["morans_i"],
        },
        "misclassified": public_fields(showcase),
    }


def headline(metrics: dict) -> dict[str, str]:
    """The numbers an index page shows."""
    head = metrics["conv_head"]
    best = metrics["best"]
    out = {
        "accuracy at λ=0": f"{metrics['test_accuracy_no_gsr']:.4f}",
        "Moran's I at λ=0": f"{metrics['morans_i_no_gsr']:.3f}",
        "best λ": (
            f"none keeps the accuracy within {_in_points(ACCURACY_CLOSE)} of λ=0"
            if best is None
            else f"{lambda_label(best['lambda'])}: Moran's I {best['morans_i']:.3f}, "
            f"accuracy {_points(best['accuracy_drop'])} points"
        ),
        **(
            {}
            if best is None
            else {
                "best λ vs best control": analysis.map_verdict_short(
                    best["verdict_vs_controls"], f"{_points(best['accuracy_drop'])} points accuracy"
                )
            }
        ),
        "conv head": (
            f"{head['test_accuracy_no_gsr']:.4f} without, "
            f"{head['test_accuracy_gsr']:.4f} with GSR λ={lambda_label(head['lambda'])}"
        ),
    }
    return out


def _figures(folder, config, graph, data, results, histories, showcase) -> dict[str, str]:
    names = list(data.classes)
    rows = list(results.values())
    dense = [r for r in rows if r["head"] == "dense"]
    tradeoff = plot_tradeoff(
        [r["weight"] for r in dense],
        [r["test_accuracy"] for r in dense],
        [r["morans_i"] for r in dense],
        "test accuracy",
        structure_reference=rows[0]["morans_i_expected"],
        control=("λ=0 arranged (control)", rows[0]["arranged"]["morans_i"]),
        title="Primary task and localisation against λ",
    )
    mistakes = plotting.plot_class_map_comparison(
        {
            "correct": showcase["_correct_maps"],
            "taken for": showcase["_wrong_maps"],
        },
        graph,
        names,
        symmetric=True,
        title=f"{showcase['label']}: mean maps (minus the global mean) of digits correctly "
        "classified as each class, and of digits wrongly taken for it",
    )
    plots = {
        "tradeoff": tradeoff,
        **class_map_plots(with_arranged_reference(rows), graph, names),
        "misclassified_maps": mistakes,
        "misclassified_examples": _plot_examples(showcase, data, graph, config.n_examples),
        "training": plotting.plot_history(histories, keys=("task_loss",), logy=True),
    }
    return save_figures(folder, plots, FIGURES)


def _plot_examples(showcase: dict, data, graph, n_examples: int):
    """Misclassified test digits (top) and their 8x8 maps minus the global mean (bottom)."""
    picks = _diverse(showcase["_wrong"], data.y_test, showcase["_pred"], n_examples)
    count = max(len(picks), 1)
    fig, axes = plt.subplots(
        2, count, figsize=(1.5 * count + 0.6, 3.6), layout="constrained", squeeze=False
    )
    if len(picks) == 0:
        for ax in axes.ravel():
            ax.axis("off")
        axes[0, 0].text(0.5, 0.5, "no misclassified test digits", ha="center", va="center")
        return fig
    deviation = showcase["_deviation"]
    vmax = float(np.abs(deviation[picks]).max()) or 1.0
    for col, i in enumerate(picks):
        axes[0, col].imshow(data.X_test[i].reshape(data.image_shape), cmap="gray_r")
        axes[0, col].set_title(
            f"true {data.classes[data.y_test[i]]} → {data.classes[showcase['_pred'][i]]}",
            fontsize=9,
        )
        axes[1, col].imshow(
            deviation[i].reshape(graph.shape),
            cmap="RdBu_r",
            vmin=-vmax,
            vmax=vmax,
            interpolation="nearest",
        )
        for ax in axes[:, col]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("digit", fontsize=9)
    axes[1, 0].set_ylabel("its map", fontsize=9)
    fig.suptitle(f"{showcase['label']}: misclassified test digits (true → predicted)", fontsize=10)
    return fig


def _diverse(wrong: np.ndarray, y: np.ndarray, pred: np.ndarray, n: int) -> list[int]:
    """Up to ``n`` of the ``wrong`` indices, each (true, predicted) pair first once."""
    seen, first, rest = set(), [], []
    for i in wrong:
        pair = (int(y[i]), int(pred[i]))
        (rest if pair in seen else first).append(int(i))
        seen.add(pair)
    return (first + rest)[:n]


def _sections(config, metrics: dict, figures: dict[str, str]) -> list[Section]:
    rows = table_rows(
        metrics["models"],
        lambda m: {
            "test accuracy": f"{m['test_accuracy']:.4f}",
            "vs λ=0 (points)": _points(m["accuracy_drop"]),
            "primary task": m["verdict"],
        },
    )
    mis = metrics["misclassified"]
    return [
        Section("Summary", text=_summary(config, metrics), table=rows),
        Section(
            "Primary task and localisation against λ",
            text=prose("mnist_grid_classifier/tradeoff.txt"),
            figures=[figures["tradeoff"]],
        ),
        Section("Controls", text=controls_text(), table=verdict_rows(metrics["models"])),
        *class_map_sections(
            prose(
                "mnist_grid_classifier/class_maps.txt", n_nodes=graphs.parse(config.graph).n_nodes
            ),
            figures,
            unit="unit",
        ),
        Section(
            "Misclassified digits",
            text=prose(
                "mnist_grid_classifier/misclassified.txt",
                mis=mis,
                like_predicted=_percent(mis["like_predicted"]),
            ),
            figures=[figures["misclassified_maps"], figures["misclassified_examples"]],
        ),
        Section(
            "Training",
            text="Cross-entropy per epoch (the penalty excluded).",
            figures=[figures["training"]],
        ),
    ]


def _points(drop: float) -> str:
    """An accuracy change in percentage points, signed: ``+0.12``, ``-3.40``."""
    return f"{-drop * 100 + 0.0:+.2f}"


def _in_points(share: float) -> str:
    """An accuracy share as a count of percentage points: ``0.01`` -> "1 point"."""
    points = share * 100
    return f"{points:g} point{'' if points == 1 else 's'}"


def _percent(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value * 100:.0f}%"


def _summary(config, metrics: dict) -> str:
    models = metrics["models"]
    none = models["lambda_0"]
    best = metrics["best"]
    dense = [m for m in models.values() if m["head"] == "dense"]
    smallest = min(dense, key=lambda m: m["activation_norm"])
    shrunk = (
        smallest["weight"] > 0 and smallest["activation_norm"] < SHRUNK * none["activation_norm"]
    )
    head = metrics["conv_head"]
    h, w = graphs.parse(config.graph).shape
    return prose(
        "mnist_grid_classifier/summary.txt",
        n_train=metrics["data"]["n_train"],
        n_test=metrics["data"]["n_test"],
        epochs=config.epochs,
        seed=config.seed,
        graph=config.graph,
        layer=config.layer,
        lambdas=[lambda_label(w) for w in metrics["lambdas"]],
        base=none,
        close=_in_points(ACCURACY_CLOSE),
        best=best,
        best_lambda=None if best is None else lambda_label(best["lambda"]),
        best_points=None if best is None else _points(best["accuracy_drop"]),
        best_verdict=None
        if best is None
        else analysis.map_verdict_text(
            best["verdict_vs_controls"],
            f"λ = {lambda_label(best['lambda'])}",
            f"{_points(best['accuracy_drop'])} points of accuracy",
        ),
        wrecked=[m["label"] for m in models.values() if m["verdict"] == WRECKED],
        wrecked_by=_in_points(ACCURACY_WRECKED),
        shrunk=smallest if shrunk else None,
        head=head,
        head_lambda=lambda_label(head["lambda"]),
        gain=head["gain_from_gsr"] * 100,
        even_points=HEAD_EVEN_POINTS,
        head_kernel=HEAD_KERNEL,
        head_pool=HEAD_POOL,
        grid=f"{h}x{w}",
    )


__all__ = ["GridHeadClassifier", "MnistGridClassifierConfig", "headline", "run"]
