"""How a GSR weight λ is written in labels, ticks and text."""

from __future__ import annotations


def lambda_label(value: float) -> str:
    """A weight as a short label: ``0``, ``1e-4``, ``3e-2``, ``1e5``, ``0.25``."""
    if value == 0:
        return "0"
    mantissa, exponent = f"{value:e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    exp = int(exponent)
    if ("." not in mantissa and abs(exp) >= 2) or value >= 1e3:
        return f"{mantissa}e{exp}"
    return f"{value:g}"
