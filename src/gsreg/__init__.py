"""gsreg: Graph Spectral Regularization for interpretable hidden layers in PyTorch.

    from gsreg import graphs, GraphPenalty, GraphRegularizer, CoactivationGraph
    reg = GraphRegularizer(model, {"decoder.0": graphs.grid(8, 8)}, weight=1e-3)
    loss = task_loss + reg.penalty(); loss.backward(); optimizer.step(); reg.step()

    # or a graph learned from the layer's co-activations
    reg = GraphRegularizer(model, {"decoder.0": CoactivationGraph(k=5)}, weight=1e-3)

    # a trained layer's units placed on a graph post hoc, the model's function unchanged
    perm = gsreg.arrange(model, "decoder.0", graphs.grid(8, 8), X)

    # scikit-learn estimators, and saving without pickle
    ae = GSRAutoencoder(graph="grid:8x8").fit(X); Z = ae.transform(X)
    gsreg.save("model.safetensors", model, regularizer=reg); gsreg.load("model.safetensors")
"""

from . import graphs
from .coactivation import CoactivationGraph
from .graphs import Graph
from .io import load, save
from .penalty import GraphPenalty
from .placement import arrange
from .regularizer import GraphRegularizer

__version__ = "0.1.0"

_LAZY = {"GSRAutoencoder": "estimators", "GSRClassifier": "estimators"}


def __getattr__(name: str):
    # the estimators import scikit-learn (about a second), so only when first asked for
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gsreg' has no attribute {name!r}")

__all__ = [
    "CoactivationGraph",
    "arrange",
    "GSRAutoencoder",
    "GSRClassifier",
    "Graph",
    "GraphPenalty",
    "GraphRegularizer",
    "graphs",
    "load",
    "save",
    "__version__",
]
