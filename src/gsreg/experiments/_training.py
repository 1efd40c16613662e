"""Training shared by the experiments: MNIST subsets, bottleneck variants, a list of
variants trained in order, GSR or a budget on one grid layer, and one-thread runs."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from .. import datasets, placement
from ..budget import reference_loss
from ..datasets import Dataset
from ..estimators import ARRANGE_ROWS, budget_epochs
from ..graphs import Graph
from ..models import DenseAutoencoder
from ..regularizer import GraphRegularizer
from ..training import History, fit
from ._labels import lambda_label


def load_mnist(config: Any, scale: str = "unit") -> Dataset:
    """MNIST (:func:`gsreg.datasets.mnist` with ``scale``) cut to the config's ``n_train``
    training and ``n_test`` test images (stratified, drawn with ``config.seed``); both
    ``None`` keep the whole splits."""
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
        LayoutVariant(
            f"{layout}_lambda_{lambda_label(w)}", f"{layout} λ={lambda_label(w)}", layout, float(w)
        )
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
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    model = DenseAutoencoder(n_features, hidden=hidden, latent=width, decoder_hidden=decoder_hidden)
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
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(threads)


def fit_variant(
    model: nn.Module,
    variant: Any,
    config: Any,
    graph: Graph,
    data: Dataset,
    device: str,
    progress: bool,
    *,
    task: str = "reconstruction",
    normalize: bool | str = False,
) -> tuple[History, float, dict | None]:
    """Train ``model`` on ``data``'s training split as ``variant`` says, on ``config.layer``
    laid out on ``graph``; returns the History, the training seconds and the budget's
    summary (None without a budget).

    With ``variant.budget`` (when the variant has one and it is not None) training follows
    the estimators' default: ``config.epochs`` without the penalty (the λ = 0 model), its
    units arranged on ``graph`` (:func:`gsreg.arrange`, fitted on at most
    ``estimators.ARRANGE_ROWS`` training rows), then :func:`estimators.budget_epochs` more
    with the weight that spends ``variant.budget`` of the λ = 0 run's final task loss (a
    fresh optimiser and the next seed's batches). Otherwise GSR of ``variant.weight``
    (none at weight 0). ``config`` needs layer, epochs, batch_size, lr and seed;
    ``task="classification"`` trains on the labels ``data.y_train``. The hook is removed
    afterwards.
    """
    labels = data.y_train if task == "classification" else None
    common = dict(
        task=task,
        batch_size=config.batch_size,
        lr=config.lr,
        device=device,
        progress=progress,
        desc=variant.label,
    )
    start = time.perf_counter()
    budget = getattr(variant, "budget", None)
    if budget is None:
        reg = None
        if variant.weight > 0:
            reg = GraphRegularizer(
                model, {config.layer: graph}, weight=variant.weight, normalize=normalize
            )
        try:
            history = fit(
                model,
                data.X_train,
                labels,
                regularizer=reg,
                epochs=config.epochs,
                seed=config.seed,
                **common,
            )
        finally:
            if reg is not None:
                reg.remove()
        return history, time.perf_counter() - start, None
    history = fit(model, data.X_train, labels, epochs=config.epochs, seed=config.seed, **common)
    reference = reference_loss(
        history["task_loss"], math.ceil(len(data.X_train) / config.batch_size)
    )
    rows = np.arange(len(data.X_train))
    if len(rows) > ARRANGE_ROWS:
        rows = np.sort(np.random.default_rng(config.seed).choice(rows, ARRANGE_ROWS, replace=False))
    placement.arrange(
        model, config.layer, graph, torch.as_tensor(data.X_train[rows]), random_state=config.seed
    )
    reg = GraphRegularizer(model, {config.layer: graph}, budget=budget, reference=reference)
    try:
        more = fit(
            model,
            data.X_train,
            labels,
            regularizer=reg,
            seed=config.seed + 1,
            epochs=budget_epochs(config.epochs),
            **common,
        )
    finally:
        reg.remove()
    seconds = time.perf_counter() - start
    history.epochs += [{**e, "epoch": e["epoch"] + config.epochs} for e in more.epochs]
    return history, seconds, reg.budget.summary()
