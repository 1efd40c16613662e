"""gsreg: Graph Spectral Regularization for interpretable hidden layers in PyTorch."""

__version__ = "0.1.0"
