"""Small helpers shared across layers (imports nothing from gsreg)."""

from __future__ import annotations

import numbers

import torch
from torch import nn


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a stateless model)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def check_positive_int(name: str, value: object) -> None:
    """Raise ValueError unless ``value`` is an integer >= 1 (numpy integers accepted, bools
    refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
