"""The shared value checks of gsreg._checks: check_int, check_real, check_choice."""

from __future__ import annotations

import math
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gsreg._checks import (
    WrongTypeError,
    check_choice,
    check_int,
    check_real,
    is_int,
    is_real,
)

# ---------------------------------------------------------------------------- check_int


@given(st.integers(), st.integers(-50, 50), st.integers(0, 100))
def test_check_int_accepts_exactly_the_integers_in_range(value, minimum, width):
    maximum = minimum + width
    inside = minimum <= value <= maximum
    assert is_int(value, minimum, maximum) == inside
    if inside:
        got = check_int(value, "f: n", minimum, maximum)
        assert got == value and type(got) is int
    else:
        with pytest.raises(
            ValueError,
            match=rf"^f: n must be an integer in \[{minimum}, "
            rf"{maximum}\], got {value}$",
        ):
            check_int(value, "f: n", minimum, maximum)


@given(st.integers(-(2**62), 2**62))
def test_check_int_without_bounds_takes_every_integer(value):
    assert check_int(value, "n", minimum=None) == value


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint16, np.uint64])
def test_check_int_accepts_numpy_integers_and_returns_an_int(dtype):
    got = check_int(dtype(7), "n")
    assert got == 7 and type(got) is int


@pytest.mark.parametrize(
    "value",
    [True, False, np.bool_(True), 2.0, np.float64(3), "3", None, Fraction(4, 1), np.array(3), [1]],
)
def test_check_int_rejects_bools_and_non_integers_with_a_type_error(value):
    with pytest.raises(TypeError, match=r"^grid: h must be an integer >= 1, got "):
        check_int(value, "grid: h")
    assert not is_int(value)


def test_a_wrong_type_is_also_a_value_error():
    # the hand-written checks raised ValueError for every bad value; callers catch it
    assert issubclass(WrongTypeError, TypeError) and issubclass(WrongTypeError, ValueError)
    with pytest.raises(ValueError, match="k must be"):
        check_int(True, "CoactivationGraph: k")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "n must be an integer >= 1, got 0"),
        ({"minimum": 3}, "n must be an integer >= 3, got 0"),
        ({"minimum": None, "maximum": -1}, "n must be an integer <= -1, got 0"),
        ({"minimum": 1, "maximum": 3}, r"n must be an integer in \[1, 3\], got 0"),
    ],
)
def test_check_int_messages_state_the_bounds(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        check_int(0, "n", **kwargs)


# ---------------------------------------------------------------------------- check_real


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(finite, finite, finite, st.booleans(), st.booleans())
def test_check_real_accepts_exactly_the_numbers_within_the_bounds(
    value, low, high, strict_min, strict_max
):
    low, high = min(low, high), max(low, high)
    above = value > low if strict_min else value >= low
    below = value < high if strict_max else value <= high
    kwargs = dict(strict_min=strict_min, strict_max=strict_max)
    assert is_real(value, low, high, **kwargs) == (above and below)
    if above and below:
        assert check_real(value, "x", low, high, **kwargs) == value
    else:
        with pytest.raises(ValueError, match="^x must be a finite number in "):
            check_real(value, "x", low, high, **kwargs)


@given(st.one_of(st.integers(-(10**6), 10**6), finite))
def test_check_real_without_bounds_returns_the_float(value):
    got = check_real(value, "x")
    assert got == float(value) and type(got) is float


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float32("nan"), 10**400])
def test_check_real_rejects_non_finite_numbers(value):
    with pytest.raises(ValueError, match="x must be a finite number") as info:
        check_real(value, "x")
    assert not isinstance(info.value, TypeError)


@pytest.mark.parametrize("value", [True, np.bool_(False), "1.5", None, np.array([1.0]), 1j])
def test_check_real_rejects_bools_and_non_numbers_with_a_type_error(value):
    with pytest.raises(TypeError, match="f: lr must be a finite number > 0, got "):
        check_real(value, "f: lr", minimum=0, strict_min=True)
    assert not is_real(value)


@pytest.mark.parametrize("value", [np.float32(0.5), np.float16(0.5), np.int64(2), Fraction(1, 2)])
def test_check_real_accepts_numpy_numbers_and_fractions(value):
    assert check_real(value, "x") == float(value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"minimum": 0}, "x must be a finite number >= 0, got -1.0"),
        ({"minimum": 0, "strict_min": True}, "x must be a finite number > 0, got -1.0"),
        ({"maximum": -2.5}, "x must be a finite number <= -2.5, got -1.0"),
        ({"maximum": -1, "strict_max": True}, "x must be a finite number < -1, got -1.0"),
        (
            {"minimum": 0, "maximum": 1, "strict_max": True},
            r"x must be a finite number in \[0, 1\), got -1.0",
        ),
        (
            {"minimum": 0.0, "maximum": 1e-3, "strict_min": True},
            r"x must be a finite number in \(0, 0.001\], got -1.0",
        ),
    ],
)
def test_check_real_messages_state_the_bounds(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        check_real(-1.0, "x", **kwargs)


# ---------------------------------------------------------------------------- check_choice

CHOICES = (False, True, "rayleigh", "centered", None, 3)


@given(st.sampled_from(CHOICES))
def test_check_choice_returns_every_choice_itself(value):
    assert check_choice(value, "f: normalize", CHOICES) is value


@given(st.one_of(st.text(), st.integers(), st.floats()))
def test_check_choice_rejects_what_is_not_a_choice(value):
    if value in ("rayleigh", "centered") or (value == 3 and not isinstance(value, bool)):
        return
    with pytest.raises(ValueError, match=r"^f: normalize must be one of \(False, True, "):
        check_choice(value, "f: normalize", CHOICES)


@pytest.mark.parametrize("value", [0, 1, 0.0, 1.0, np.bool_(True), np.int64(1)])
def test_numbers_are_not_the_bool_choices(value):
    with pytest.raises(ValueError, match="must be one of"):
        check_choice(value, "normalize", (False, True))


def test_bools_are_not_the_number_choices():
    with pytest.raises(ValueError, match=r"order must be one of \(0, 1\), got True"):
        check_choice(True, "order", (0, 1))
    assert check_choice(np.int64(1), "order", (0, 1)) == 1
    assert check_choice(np.str_("mean"), "reduction", ["mean", "sum"]) == "mean"


def test_check_choice_takes_arrays_and_unhashable_values_without_crashing():
    with pytest.raises(ValueError, match="must be one of"):
        check_choice(np.array([1, 2]), "x", ("a", 1))
    with pytest.raises(ValueError, match=r"got \{'a': 1\}"):
        check_choice({"a": 1}, "x", ("a",))


# ---------------------------------------------------------------------------- the module


def test_checks_import_neither_torch_nor_scipy_nor_numpy():
    code = (
        "import sys; import gsreg._checks; "
        "print(sorted({'torch', 'scipy', 'numpy'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
