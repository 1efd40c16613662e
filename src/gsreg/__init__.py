"""gsreg: Graph Spectral Regularization for interpretable hidden layers in PyTorch.

    from gsreg import graphs, GraphPenalty, GraphRegularizer
    reg = GraphRegularizer(model, {"decoder.0": graphs.grid(8, 8)}, weight=1e-3)
    loss = task_loss + reg.penalty(); loss.backward(); optimizer.step(); reg.step()
"""

from . import graphs
from .graphs import Graph
from .penalty import GraphPenalty
from .regularizer import GraphRegularizer

__version__ = "0.1.0"
__all__ = ["Graph", "GraphPenalty", "GraphRegularizer", "graphs", "__version__"]
