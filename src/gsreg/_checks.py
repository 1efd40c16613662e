"""Checks of user-given values that the command line runs before torch is imported."""

from __future__ import annotations

import math

__all__ = ["MAX_BUDGET", "check_budget"]

#: budgets must lie in (0, MAX_BUDGET)
MAX_BUDGET = 10.0


def check_budget(budget: object, where: str = "budget") -> float:
    """``budget`` as a float in (0, :data:`MAX_BUDGET`), else a ValueError/TypeError."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float)):
        raise TypeError(f"{where} must be a number in (0, {MAX_BUDGET:g}), got {budget!r}")
    value = float(budget)
    if not (math.isfinite(value) and 0 < value < MAX_BUDGET):
        raise ValueError(
            f"{where} must be a share of the task loss in (0, {MAX_BUDGET:g}) (0.05: at most "
            f"5% more task loss), got {budget!r}"
        )
    return value
