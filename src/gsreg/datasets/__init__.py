"""Data loaders and generators."""

from .base import Dataset
from .digits import digits
from .mnist import mnist

__all__ = ["Dataset", "digits", "mnist"]
