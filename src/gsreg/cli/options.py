"""Option values of the ``gsreg`` commands: argparse types for command-line text, the same
checks for values read from a ``--config`` file, and the file itself (YAML or JSON).

    gsreg fit --config run.yaml --epochs 5     # the file's options, --epochs overrides
    gsreg fit --graph grid:8x8 --print-config  # the effective options as YAML

A config file is a mapping whose keys are the command's long options (``lr``,
``batch-size`` or ``batch_size``, ``graph``, ...; ``controls: false`` for
``--no-controls``); its values become the parser's defaults (``set_defaults``), so
options given on the command line override them. Unknown keys and values of the wrong
type or range are refused naming the key. Torch-free: a bad file fails before any data
is read (pyyaml is imported only when a file is read or written).
"""

from __future__ import annotations

import argparse
import json
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._checks import (
    MAX_SEED,
    WrongTypeError,
    check_budget,
    check_int,
    check_real,
    is_int,
    is_real,
)

__all__ = [
    "CONFIG_SUFFIXES",
    "DEVICE_PATTERN",
    "budget",
    "config_actions",
    "device",
    "dump_config",
    "load_config",
    "non_negative_float",
    "positive_float",
    "positive_int",
    "seed",
]

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"
#: parser entries that are not options of a run, so never keys of a config file
NOT_CONFIG = frozenset({"help", "config", "print_config", "handler", "command", "command_parser"})


# ---------------------------------------------------------------------------- types


def positive_int(text: str) -> int:
    value = int(text)  # a ValueError here: argparse says "invalid positive_int value"
    if not is_int(value, 1):
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _float(text)
    if not is_real(value, 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = _float(text)
    if not is_real(value, 0, strict_min=True):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def budget(text: str) -> float:
    try:
        return check_budget(float(text), "the budget")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, {MAX_SEED}], got {text}")
    return value


def device(text: str) -> str:
    """auto, cpu, cuda or cuda:N (checked for availability when training starts)."""
    if re.fullmatch(DEVICE_PATTERN, text) is None:
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, got {text!r}")
    return text


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text}") from None


def _check_device(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise WrongTypeError(f"{name} must be a string (auto, cpu, cuda or cuda:N), got {value!r}")
    if re.fullmatch(DEVICE_PATTERN, value) is None:
        raise ValueError(f"{name} must be auto, cpu, cuda or cuda:N, got {value!r}")
    return value


#: a config file's value of an option of each argparse type, checked as the
#: command line checks its text (but a number must be a number, not a string)
FILE_CHECKS: dict[Callable, Callable[[object, str], Any]] = {
    positive_int: lambda value, name: check_int(value, name, 1),
    non_negative_float: lambda value, name: check_real(value, name, 0),
    positive_float: lambda value, name: check_real(value, name, 0, strict_min=True),
    budget: check_budget,
    seed: lambda value, name: check_int(value, name, 0, MAX_SEED),
    device: _check_device,
}


# ---------------------------------------------------------------------------- config files


def config_actions(command: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The options a config file may set: ``{dest: action}`` in the parser's order."""
    return {
        action.dest: action
        for action in command._actions
        if action.dest not in NOT_CONFIG and action.dest != argparse.SUPPRESS
    }


def load_config(path: str | Path, command: argparse.ArgumentParser) -> dict[str, Any]:
    """The options of a YAML or JSON config file as ``{dest: value}``, each checked as the
    command line checks it; keys without a value (``null``) are left out (the default).

    Raises ValueError (TypeError's :class:`WrongTypeError` for a value of the wrong type)
    with a one-line message naming the file and the key; OSError when it cannot be read.
    """
    path = Path(path)
    data = _parse(path)
    actions = config_actions(command)
    values: dict[str, Any] = {}
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest not in actions:
            known = ", ".join(name.replace("_", "-") for name in actions)
            raise ValueError(f"{path}: unknown key {key!r}; the keys are: {known}")
        if value is None:
            continue
        try:
            values[dest] = _check_value(actions[dest], value, f"{path}: {key}")
        except TypeError as err:  # check_budget's; the command line reports ValueErrors
            raise WrongTypeError(str(err)) from None
    if values.get("budget") is not None and values.get("weight") is not None:
        raise ValueError(f"{path}: give budget or weight, not both (a fixed weight has no budget)")
    return values


def _parse(path: Path) -> dict:
    if path.suffix.lower() not in CONFIG_SUFFIXES:
        raise ValueError(
            f"{path}: a config file must be YAML or JSON ({', '.join(CONFIG_SUFFIXES)}), "
            f"got {path.suffix or 'no extension'!r}"
        )
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a config file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a UTF-8 text file") from err
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text) if text.strip() else None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON: {err}") from err
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            line = f" on line {where.line + 1}" if where is not None else ""
            problem = getattr(err, "problem", None) or type(err).__name__
            raise ValueError(f"{path}: not valid YAML{line}: {problem}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(
            f"{path} must hold a mapping of option: value, got a {type(data).__name__}"
        )
    return data


def _check_value(action: argparse.Action, value: object, name: str) -> Any:
    """``value`` for ``action`` as the parser would store it from the command line."""
    if action.nargs == 0:  # a flag: --quiet, --no-controls (key: controls)
        if not isinstance(value, bool):
            raise WrongTypeError(f"{name} must be true or false, got {value!r}")
        return value
    if action.nargs in ("+", "*"):
        items = value if isinstance(value, list) else [value]
        if not items:
            raise ValueError(f"{name} must be a non-empty list, got []")
        return [_check_one(action, item, name) for item in items]
    return _check_one(action, value, name)


def _check_one(action: argparse.Action, value: object, name: str) -> Any:
    if action.choices is not None:
        if isinstance(value, bool) and "true" in action.choices:
            value = str(value).lower()  # YAML reads true, yes, on as a bool
        if value not in action.choices or isinstance(value, bool):
            shown = ", ".join(map(str, action.choices))
            raise ValueError(f"{name} must be one of {shown}, got {value!r}")
        return value
    check = FILE_CHECKS.get(action.type)
    if check is not None:
        return check(value, name)
    if not isinstance(value, str):
        raise WrongTypeError(f"{name} must be a string, got {value!r}")
    return value


def dump_config(args: argparse.Namespace, command: argparse.ArgumentParser) -> str:
    """The options of ``args`` as a YAML config file that ``--config`` reads back, each
    after its help text as a comment; ``null`` stands for the option's default."""
    import yaml

    parts = [
        f"# {command.prog} --config FILE reads this file; options given on the command "
        "line override it.\n# null: the option's default.\n"
    ]
    for dest, action in config_actions(command).items():
        value = getattr(args, dest, None)
        if isinstance(value, tuple):
            value = list(value)
        text = (action.help or "").replace("%%", "%")
        if isinstance(action, argparse._StoreFalseAction):
            text = f"false: {action.option_strings[0]}, {text}"
        comment = textwrap.fill(text, 86, initial_indent="# ", subsequent_indent="# ")
        key = dest.replace("_", "-")
        if isinstance(value, list):  # a flow list, as written on one line: [64, 32]
            entry = f"{key}: {json.dumps(value)}\n"
        else:
            entry = yaml.safe_dump({key: value}, default_flow_style=False)
        parts.append(f"\n{comment}\n{entry}" if comment else f"\n{entry}")
    return "".join(parts)
