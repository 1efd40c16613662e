"""Experiment configs: checks that name the config and field, and a JSON round trip
(config.json back into an equal config)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._checks import is_int, is_real

if TYPE_CHECKING:
    from ..report import RunFolder


def tuple_fields(config: object) -> None:
    """Turn list-valued fields of a frozen dataclass into tuples (after a JSON round trip).

    Call from ``__post_init__`` so that ``Config(**json.load(f)) == config``.
    """
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, list):
            object.__setattr__(config, field.name, tuple(value))


def check_config(name: str, **checks: tuple[object, str]) -> None:
    """Raise ValueError naming the config and field when a check fails.

    Each keyword is a field name with ``(value, rule)``; rules: ``"positive_int"``,
    ``"positive"`` (number > 0), ``"non_negative"``, ``"optional_positive_int"``,
    ``"weights"`` (a non-empty sequence of numbers >= 0).
    """
    for field, (value, rule) in checks.items():
        if rule == "optional_positive_int" and value is None:
            continue
        if rule in ("positive_int", "optional_positive_int"):
            ok = is_int(value, minimum=1)
            expected = "a positive int"
        elif rule in ("positive", "non_negative"):
            ok = is_real(value, minimum=0, strict_min=rule == "positive")
            expected = "a number > 0" if rule == "positive" else "a number >= 0"
        elif rule == "weights":
            ok = (
                isinstance(value, Sequence)
                and len(value) > 0
                and all(is_real(v, minimum=0) for v in value)
            )
            expected = "a non-empty sequence of numbers >= 0"
        else:
            raise ValueError(f"unknown rule {rule!r}")
        if not ok:
            raise ValueError(f"{name}.{field} must be {expected}, got {value!r}")


def training_checks(config: Any) -> dict[str, tuple[object, str]]:
    """:func:`check_config` entries of the fields every training config has (``epochs``,
    ``batch_size``, ``lr``, ``n_train``, ``n_test``), in that order: unpack them into the
    call, ``check_config(name, ..., **training_checks(self))``."""
    return {
        "epochs": (config.epochs, "positive_int"),
        "batch_size": (config.batch_size, "positive_int"),
        "lr": (config.lr, "positive"),
        "n_train": (config.n_train, "optional_positive_int"),
        "n_test": (config.n_test, "optional_positive_int"),
    }


def public_fields(result: Mapping[str, Any]) -> dict[str, Any]:
    """``result`` without its private entries (keys starting with ``_``: arrays kept for the
    figures, not for ``metrics.json``)."""
    return {k: v for k, v in result.items() if not k.startswith("_")}


def write_config_and_metrics(folder: RunFolder, config: Any, metrics: Mapping[str, Any]) -> None:
    """Write ``config.json`` (the dataclass ``config`` as a dict) and ``metrics.json``."""
    folder.write_json("config.json", dataclasses.asdict(config))
    folder.write_metrics(metrics)
