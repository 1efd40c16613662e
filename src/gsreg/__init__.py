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

import os as _os

from ._version import __version__

# OpenMP threads that spin while they wait stall each other on a small or shared machine:
# with the passive wait policy the demo's training epoch was several times faster there
# and no slower when idle (benchmarks/threads.py). OpenMP reads the policy when torch
# loads, so this takes effect when gsreg is imported first; a value set by the user is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Every name is imported when first used: ``gsreg`` itself imports nothing heavy, so the
# command line checks its arguments before torch and scikit-learn load (seconds).
_LAZY = {
    "CoactivationGraph": "coactivation",
    "GSRAutoencoder": "estimators",
    "GSRClassifier": "estimators",
    "Graph": "graphs",
    "GraphPenalty": "penalty",
    "GraphRegularizer": "regularizer",
    "arrange": "placement",
    "load": "io",
    "save": "io",
}


def __getattr__(name: str):
    import importlib
    import importlib.util

    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    elif not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}"):
        value = importlib.import_module(f".{name}", __name__)  # gsreg.graphs, gsreg.io, ...
    else:
        raise AttributeError(f"module 'gsreg' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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
