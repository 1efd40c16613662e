"""The checks both training-framework callbacks make on their arguments, at construction."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from .. import graphs
from ..coactivation import CoactivationGraph
from ..graphs import Graph
from ..penalty import GraphPenalty
from ..regularizer import GraphRegularizer

TARGETS = (Graph, str, GraphPenalty, CoactivationGraph)


def check_regularizer_arguments(
    layers: Mapping, weight: Any, regularizer_kwargs: dict, where: str
) -> None:
    """Raise as :class:`GraphRegularizer` would, but before training starts: ``layers`` a
    non-empty mapping of targets (graph specs parsed now), and ``weight`` and
    ``regularizer_kwargs`` keywords GraphRegularizer takes. ``where`` starts each message
    (e.g. ``"GSRCallback"``); ``fit`` is the framework's training call, named in none."""
    if not isinstance(layers, Mapping) or not layers:
        raise ValueError(f"{where}: layers must be a non-empty mapping {{layer: graph}}")
    for name, target in layers.items():
        if not isinstance(target, TARGETS):
            raise TypeError(
                f"{where}: layer {name!r}: target must be a Graph, a graph spec string, "
                f"a GraphPenalty or a CoactivationGraph, got {type(target).__name__}"
            )
        if isinstance(target, str):
            graphs.parse(target)  # a bad spec fails here, not inside the training loop
    try:
        inspect.signature(GraphRegularizer).bind(None, layers, weight, **regularizer_kwargs)
    except TypeError as err:
        raise TypeError(f"{where}: {err} (keywords of GraphRegularizer)") from None
