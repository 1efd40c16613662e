"""Data loaders and generators."""

from .base import Dataset
from .digits import digits
from .mnist import mnist
from .rotation import Rotation, rotation
from .synthetic import binary_modules, binary_patterns, coarse_labels, hierarchical, modules

__all__ = [
    "Dataset",
    "Rotation",
    "binary_modules",
    "binary_patterns",
    "coarse_labels",
    "digits",
    "hierarchical",
    "mnist",
    "modules",
    "rotation",
]
