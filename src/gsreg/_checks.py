"""Checks of user-given values: integers, real numbers, choices and budgets.

Torch-free (the command line runs them before torch is imported). ``name`` is the whole
prefix of the message, so that it names the class or function and the parameter
(``check_int(epochs, "GSRAutoencoder: epochs")`` -> "GSRAutoencoder: epochs must be an
integer >= 1, got 0"). A value of the wrong type raises :class:`WrongTypeError`, which is a
TypeError and also a ValueError (see there); a value out of range raises ValueError.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Iterable
from typing import TypeVar

__all__ = [
    "MAX_BUDGET",
    "WrongTypeError",
    "check_budget",
    "check_choice",
    "check_int",
    "check_real",
    "is_int",
    "is_real",
]

T = TypeVar("T")

#: budgets must lie in (0, MAX_BUDGET)
MAX_BUDGET = 10.0
#: the largest random seed (numpy's and scikit-learn's seeds are 32-bit)
MAX_SEED = 2**32 - 1


class WrongTypeError(TypeError, ValueError):
    """A value of the wrong type (a bool or 2.0 for an integer, a string for a number).

    Also a ValueError: the hand-written checks these helpers replaced raised ValueError for
    every bad value, and callers catch ValueError (the command line reports it in one
    line); as in scikit-learn's InvalidParameterError, both ``except`` clauses work."""


def is_int(value: object, minimum: int | None = 1, maximum: int | None = None) -> bool:
    """Whether ``value`` is an integer (int or numpy integer, not bool) in
    ``[minimum, maximum]`` (None: no bound); for checks whose message says more than
    :func:`check_int`'s (an integer or ``"auto"``, a shape of two integers)."""
    return _is_integer(value) and _in_range(value, minimum, maximum, False, False)


def check_int(value: object, name: str, minimum: int | None = 1, maximum: int | None = None) -> int:
    """``value`` as an int if it is an integer in ``[minimum, maximum]`` (None: no bound).

    Numpy integers are accepted; bools and non-integral values (2.0, "3") raise
    :class:`WrongTypeError`, integers out of range ValueError; both messages start with
    ``name``."""
    if not _is_integer(value):
        raise WrongTypeError(_message(name, "an integer", value, minimum, maximum))
    if not _in_range(value, minimum, maximum, False, False):
        raise ValueError(_message(name, "an integer", value, minimum, maximum))
    return int(value)  # type: ignore[call-overload]


def is_real(
    value: object,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    strict_min: bool = False,
    strict_max: bool = False,
) -> bool:
    """Whether ``value`` is a finite real number (not bool) within the bounds of
    :func:`check_real`."""
    number = _finite_float(value)
    return number is not None and _in_range(number, minimum, maximum, strict_min, strict_max)


def check_real(
    value: object,
    name: str,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    strict_min: bool = False,
    strict_max: bool = False,
) -> float:
    """``value`` as a float if it is a finite real number within the bounds.

    ``minimum`` and ``maximum`` are inclusive unless ``strict_min`` / ``strict_max``
    (``minimum=0, strict_min=True``: a positive number); None is no bound. Ints, floats,
    numpy numbers and fractions are accepted; bools and non-numbers raise
    :class:`WrongTypeError`, NaN, infinities and numbers out of range ValueError; both
    messages start with ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise WrongTypeError(
            _message(name, "a finite number", value, minimum, maximum, strict_min, strict_max)
        )
    number = _finite_float(value)
    if number is None or not _in_range(number, minimum, maximum, strict_min, strict_max):
        raise ValueError(
            _message(name, "a finite number", value, minimum, maximum, strict_min, strict_max)
        )
    return number


def check_choice(value: T, name: str, choices: Iterable[object]) -> T:
    """``value`` itself if it is one of ``choices``, else a ValueError starting with ``name``.

    Values match by equality, except bools (and numpy bools), which match only the same
    bool: 0 and 1 are not choices False and True, nor is True the choice 1."""
    choices = tuple(choices)
    if not any(_matches(value, choice) for choice in choices):
        raise ValueError(f"{name} must be one of {choices!r}, got {value!r}")
    return value


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


# ---------------------------------------------------------------------------- helpers


def _is_integer(value: object) -> bool:
    """An int or numpy integer (numpy registers its integers as numbers.Integral), not bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _finite_float(value: object) -> float | None:
    """``value`` as a finite float, or None for a non-number, a bool, NaN or an infinity."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond float64
        return None
    return number if math.isfinite(number) else None


def _in_range(value, minimum, maximum, strict_min: bool, strict_max: bool) -> bool:
    if minimum is not None and (value <= minimum if strict_min else value < minimum):
        return False
    return maximum is None or (value < maximum if strict_max else value <= maximum)


def _message(
    name: str,
    kind: str,
    value: object,
    minimum,
    maximum,
    strict_min: bool = False,
    strict_max: bool = False,
) -> str:
    """ "<name> must be <kind> [in [a, b) | >= a | < b], got <value>"."""
    if minimum is not None and maximum is not None:
        left, right = "(" if strict_min else "[", ")" if strict_max else "]"
        bounds = f" in {left}{_number(minimum)}, {_number(maximum)}{right}"
    elif minimum is not None:
        bounds = f" {'>' if strict_min else '>='} {_number(minimum)}"
    elif maximum is not None:
        bounds = f" {'<' if strict_max else '<='} {_number(maximum)}"
    else:
        bounds = ""
    return f"{name} must be {kind}{bounds}, got {value!r}"


def _number(bound) -> str:
    """An int bound as written, a float one in its shortest form (0.0 -> "0", 1e-3 -> "0.001")."""
    return str(bound) if isinstance(bound, numbers.Integral) else f"{float(bound):g}"


def _is_bool(value: object) -> bool:
    if isinstance(value, bool):
        return True
    numpy = sys.modules.get("numpy")  # a numpy bool exists only once numpy is imported
    return numpy is not None and isinstance(value, numpy.bool_)


def _matches(value: object, choice: object) -> bool:
    if value is choice:
        return True
    if _is_bool(value) or _is_bool(choice):
        return False
    try:
        return bool(value == choice)
    except (TypeError, ValueError):  # an array, or a type whose == refuses
        return False
