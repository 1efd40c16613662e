"""gsreg: Graph Spectral Regularization for interpretable hidden layers in PyTorch.

    from gsreg import graphs, GraphPenalty, GraphRegularizer, CoactivationGraph
    reg = GraphRegularizer(model, {"decoder.0": graphs.grid(8, 8)}, weight=1e-3)
    loss = task_loss + reg.penalty(); loss.backward(); optimizer.step(); reg.step()

    # or a graph learned from the layer's co-activations
    reg = GraphRegularizer(model, {"decoder.0": CoactivationGraph(k=5)}, weight=1e-3)
"""

from . import graphs
from .coactivation import CoactivationGraph
from .graphs import Graph
from .penalty import GraphPenalty
from .regularizer import GraphRegularizer

__version__ = "0.1.0"
__all__ = [
    "CoactivationGraph",
    "Graph",
    "GraphPenalty",
    "GraphRegularizer",
    "graphs",
    "__version__",
]
