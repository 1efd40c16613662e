"""Experiments of the paper, one module each: config -> run -> result folder.

An experiment module defines a frozen config dataclass with the full run's defaults and
a ``quick()`` classmethod (seconds, for tests and a first look), a function
``run(config, out, device="auto", progress=True) -> dict`` that writes ``out/``
(report.html, metrics.json, config.json, figures/) and returns the metrics, and
``headline(metrics) -> dict[str, str]``: the few numbers an index page shows.
:mod:`gsreg.experiments.registry` names the experiments and runs them into atomic
folders.

The helpers below are shared by the experiment modules: how a cost to the primary task
is judged, how a lambda is written, configs that survive a JSON round trip, the MNIST
subset of a config, training a list of variants, writing config and metrics, and the
"primary task and structure against lambda" figure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..analysis._controls import MSE_WRECKED

if TYPE_CHECKING:
    from ..datasets import Dataset
    from ..report import RunFolder

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
    best = max(controls, key=lambda name: sign * controls[name]
               if math.isfinite(controls[name]) else -math.inf)
    margin = sign * (gsr_score - controls[best])
    return {"best_control": best, "control_score": controls[best], "gsr_score": gsr_score,
            "margin": margin, "better": better, "cost": cost,
            "helps": bool(margin > 0 and cost != WRECKED)}


def verdict_ending(verdict: Mapping[str, Any], task: str) -> str:
    """How a verdict sentence ends: GSR helps, beats the control but wrecks ``task`` (e.g.
    "the reconstruction"), or does not beat it."""
    if verdict["helps"]:
        return ": GSR helps here."
    if verdict["margin"] > 0:
        return f", but {task} is wrecked: GSR does not help here."
    return ": GSR does not help here."


def lambda_label(value: float) -> str:
    """A weight as a short label: ``0``, ``1e-4``, ``3e-2``, ``1e5``, ``0.25``."""
    if value == 0:
        return "0"
    mantissa, exponent = f"{value:e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    exp = int(exponent)
    if ("." not in mantissa and abs(exp) >= 2) or value >= 1e3:
        return f"{mantissa}e{exp}"
    return f"{value:g}"


def tuple_fields(config: object) -> None:
    """Turn list-valued fields of a frozen dataclass into tuples (after a JSON round trip).

    Call from ``__post_init__`` so that ``Config(**json.load(f)) == config``.
    """
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, list):
            object.__setattr__(config, field.name, tuple(value))


def check_config(name: str, **checks: tuple[object, str]) -> None:
    """Raise ValueError naming the config and field when a check fails.

    Each keyword is a field name with ``(value, rule)``; rules: ``"positive_int"``,
    ``"positive"`` (number > 0), ``"non_negative"``, ``"optional_positive_int"``,
    ``"weights"`` (a non-empty sequence of numbers >= 0).
    """
    for field, (value, rule) in checks.items():
        if rule == "optional_positive_int" and value is None:
            continue
        if rule in ("positive_int", "optional_positive_int"):
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
            expected = "a positive int"
        elif rule in ("positive", "non_negative"):
            ok = _is_number(value) and (value > 0 if rule == "positive" else value >= 0)
            expected = "a number > 0" if rule == "positive" else "a number >= 0"
        elif rule == "weights":
            ok = (
                isinstance(value, Sequence)
                and len(value) > 0
                and all(_is_number(v) and v >= 0 for v in value)
            )
            expected = "a non-empty sequence of numbers >= 0"
        else:
            raise ValueError(f"unknown rule {rule!r}")
        if not ok:
            raise ValueError(f"{name}.{field} must be {expected}, got {value!r}")


def training_checks(config: Any) -> dict[str, tuple[object, str]]:
    """:func:`check_config` entries of the fields every training config has (``epochs``,
    ``batch_size``, ``lr``, ``n_train``, ``n_test``), in that order: unpack them into the
    call, ``check_config(name, ..., **training_checks(self))``."""
    return {
        "epochs": (config.epochs, "positive_int"),
        "batch_size": (config.batch_size, "positive_int"),
        "lr": (config.lr, "positive"),
        "n_train": (config.n_train, "optional_positive_int"),
        "n_test": (config.n_test, "optional_positive_int"),
    }


def _is_number(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def load_mnist(config: Any, scale: str = "unit") -> Dataset:
    """MNIST (:func:`gsreg.datasets.mnist` with ``scale``) cut to the config's ``n_train``
    training and ``n_test`` test images (stratified, drawn with ``config.seed``); both
    ``None`` keep the whole splits."""
    from .. import datasets

    data = datasets.mnist(scale=scale)
    if config.n_train is not None or config.n_test is not None:
        data = data.subset(config.n_train, config.n_test, seed=config.seed)
    return data


def train_variants(
    variants: Iterable[Any], train: Callable[..., tuple[dict, Any]], *args: Any
) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """Train the variants in order, each with ``train(variant, *args) -> (result, History)``.

    A variant has a ``key`` and a ``label``. Returns ``({key: result}, {label:
    history.epochs})``: the results for the metrics, the per-epoch losses for the figure.
    """
    results, histories = {}, {}
    for variant in variants:
        result, history = train(variant, *args)
        results[variant.key] = result
        histories[variant.label] = history.epochs
    return results, histories


def public_fields(result: Mapping[str, Any]) -> dict[str, Any]:
    """``result`` without its private entries (keys starting with ``_``: arrays kept for the
    figures, not for ``metrics.json``)."""
    return {k: v for k, v in result.items() if not k.startswith("_")}


def write_config_and_metrics(
    folder: RunFolder, config: Any, metrics: Mapping[str, Any]
) -> None:
    """Write ``config.json`` (the dataclass ``config`` as a dict) and ``metrics.json``."""
    folder.write_json("config.json", dataclasses.asdict(config))
    folder.write_metrics(metrics)


#: how a structured bottleneck is read: the linear layer itself, or standardised
LAYOUTS = ("plain", "standardised")


@dataclasses.dataclass(frozen=True)
class LayoutVariant:
    """One model of a layout comparison: ``key`` (for metrics), ``label`` (for people),
    ``layout`` (one of :data:`LAYOUTS`) and the GSR ``weight``."""

    key: str
    label: str
    layout: str
    weight: float


def layout_variants(
    weights: Sequence[float], standardised_weights: Sequence[float]
) -> list[LayoutVariant]:
    """The plain bottleneck at each of ``weights``, then the standardised one at each of
    ``standardised_weights`` (each sorted, duplicates dropped)."""
    return [
        LayoutVariant(f"{layout}_lambda_{lambda_label(w)}", f"{layout} λ={lambda_label(w)}",
                      layout, float(w))
        for layout, values in zip(LAYOUTS, (weights, standardised_weights), strict=True)
        for w in sorted(set(values))
    ]


def bottleneck_autoencoder(
    n_features: int,
    hidden: Sequence[int],
    width: int,
    layout: str,
    name: str,
    decoder_hidden: Sequence[int] | None = None,
):
    """A DenseAutoencoder with a ``width``-unit bottleneck for a graph layer, and the name
    of the layer the graph goes on: ``(model, layer)``.

    ``layout="plain"``: the linear bottleneck ``encoder.latent``. ``"standardised"``: the
    bottleneck standardised per neuron over the batch (``BatchNorm1d``) and then per sample
    (``LayerNorm``), neither with learned scales, the last one added as ``encoder.<name>``.
    The plain penalty can be lowered by shrinking activations and ignores the constant
    mode; standardising closes both holes.
    """
    from torch import nn

    from ..models import DenseAutoencoder

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    model = DenseAutoencoder(n_features, hidden=hidden, latent=width,
                             decoder_hidden=decoder_hidden)
    if layout == "plain":
        return model, "encoder.latent"
    model.encoder.add_module("standardize", nn.BatchNorm1d(width, affine=False))
    model.encoder.add_module(name, nn.LayerNorm(width, elementwise_affine=False))
    return model, f"encoder.{name}"


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch and the BLAS / OpenMP pools of numpy and scikit-learn on one thread, then
    restore them. For experiments whose models are tiny: more threads only add
    synchronisation, and on a busy machine they slow training and k-means down many times."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(threads)


def plot_tradeoff(
    weights: Sequence[float],
    primary: Sequence[float],
    structure: Sequence[float],
    primary_label: str,
    structure_label: str = "Moran's I (class − mean maps)",
    extra: Mapping[str, tuple[float, float, float]] | None = None,
    title: str | None = None,
    structure_reference: float | None = None,
    control: tuple[str, float] | None = None,
):
    """The primary task (left axis) and a structure score (right axis) against lambda.

    lambda = 0 is drawn one decade left of the smallest non-zero lambda and labelled
    ``0``. ``extra`` adds single models as open markers: ``{label: (weight, primary,
    structure)}`` (e.g. the centred penalty). ``structure_reference`` draws a dotted
    line (e.g. Moran's I without spatial structure); ``control`` ``(label, value)`` a
    dashed one (e.g. the λ = 0 layer arranged post hoc). Returns the figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    nonzero = [w for w in weights if w > 0] + [e[0] for e in (extra or {}).values() if e[0] > 0]
    zero_at = min(nonzero) / 10 if nonzero else 1.0

    def x_of(w: float) -> float:
        return w if w > 0 else zero_at

    xs = np.array([x_of(w) for w in weights])
    fig, ax = plt.subplots(figsize=(6.4, 3.8), layout="constrained")
    ax.plot(xs, primary, "o-", color="tab:blue", label=primary_label)
    ax.set_xscale("log")
    ax.set_xlabel("λ")
    ax.set_ylabel(primary_label, color="tab:blue")
    twin = ax.twinx()
    twin.plot(xs, structure, "s--", color="tab:orange", label=structure_label)
    twin.set_ylabel(structure_label, color="tab:orange")
    if structure_reference is not None:
        twin.axhline(structure_reference, color="tab:orange", lw=0.8, ls=":")
    if control is not None:
        twin.axhline(control[1], color="tab:red", lw=1.0, ls="--")
        twin.annotate(control[0], (0.01, control[1]), xycoords=("axes fraction", "data"),
                      textcoords="offset points", xytext=(0, 3), fontsize=8, color="tab:red")
    for label, (w, p, s) in (extra or {}).items():
        ax.plot([x_of(w)], [p], "o", mfc="none", color="tab:blue", ms=9)
        twin.plot([x_of(w)], [s], "s", mfc="none", color="tab:orange", ms=9)
        ax.annotate(label, (x_of(w), p), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ticks = sorted(set(xs.tolist()))
    ax.set_xticks(ticks, ["0" if t == zero_at else lambda_label(t) for t in ticks])
    ax.minorticks_off()
    if title:
        ax.set_title(title, fontsize=10)
    return fig


__all__ = [
    "ACCURACY_CLOSE",
    "ACCURACY_WRECKED",
    "CLOSE",
    "COSTLY",
    "MSE_CLOSE",
    "MSE_WRECKED",
    "WRECKED",
    "LAYOUTS",
    "LayoutVariant",
    "accuracy_cost",
    "against_controls",
    "bottleneck_autoencoder",
    "check_config",
    "lambda_label",
    "layout_variants",
    "load_mnist",
    "one_thread",
    "plot_tradeoff",
    "public_fields",
    "reconstruction_cost",
    "train_variants",
    "training_checks",
    "verdict_ending",
    "tuple_fields",
    "write_config_and_metrics",
]
