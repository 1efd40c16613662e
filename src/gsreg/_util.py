"""Small helpers shared across layers (imports only gsreg._checks)."""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_int


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a stateless model)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def check_positive_int(name: str, value: object) -> None:
    """Raise ValueError unless ``value`` is an integer >= 1 (numpy integers accepted, bools
    refused): :func:`gsreg._checks.check_int`, whose type errors are also ValueErrors."""
    check_int(value, name)
