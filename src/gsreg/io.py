"""Saving and loading models, graphs and regularizer state: safetensors + JSON, no pickle.

    gsreg.save("ae.safetensors", model, regularizer=reg, history=history, note="8x8 grid")
    loaded = gsreg.load("ae.safetensors")
    loaded.model, loaded.graphs, loaded.regularizer, loaded.metadata

One file holds everything: the tensors (the model's ``state_dict``, learned-graph buffers,
array metadata) in the safetensors format, and a JSON document in the safetensors header
(``__metadata__["gsreg"]``) with the model's class name and ``model.config``, the
regularizer's layers, graphs and state, and the caller's metadata. Loading parses the
header with ``json`` and the tensors with safetensors; nothing is ever unpickled, and a
model is rebuilt only from gsreg's own registry of model classes, never by importing a
name found in a file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as _load_tensors
from safetensors.torch import save as _save_tensors
from torch import nn

from ._files import atomic_write
from ._version import __version__
from .coactivation import CoactivationGraph
from .graphs import Graph
from .models import ConvClassifier, DenseAutoencoder, DenseClassifier, GraphLayerAutoencoder
from .penalty import GraphPenalty
from .regularizer import GraphRegularizer
from .training import History

__all__ = ["FORMAT_VERSION", "FormatError", "Loaded", "load", "save"]

FORMAT_NAME = "gsreg"
FORMAT_VERSION = 1
"""The version of the file layout this gsreg writes; it reads every version up to it."""

_HEADER_KEY = "gsreg"  # safetensors metadata entry holding the JSON document
_TENSOR = "$tensor"  # marker of a tensor reference inside the JSON document
_LEARNED_OPTIONS = (
    "kernel",
    "k",
    "bandwidth",
    "threshold",
    "features",
    "warmup_steps",
    "update_every",
    "max_updates",
    "buffer_size",
    "laplacian",
    "normalize",
    "on_disconnect",
    "history_size",
    "n_nodes",
    "profile_dims",
    "seed",
)

_MODELS: dict[str, type[nn.Module]] = {
    "DenseAutoencoder": DenseAutoencoder,
    "ConvClassifier": ConvClassifier,
    "DenseClassifier": DenseClassifier,
    "GraphLayerAutoencoder": GraphLayerAutoencoder,
}


class FormatError(ValueError):
    """A file that is not a gsreg file, is truncated or corrupted, or is too new."""


@dataclass
class Loaded:
    """What :func:`load` returns.

    Attributes:
        model: the rebuilt model with its saved weights, in eval mode, on ``device``.
        graphs: ``{layer: Graph}`` of the saved regularizer: fixed graphs and the current
            learned graphs (a learned layer without a graph yet is left out).
        regularizer: ``None``, or the regularizer's saved state: ``{"step", "layers",
            "learned"}`` (``"learned"`` only when some layer learns its graph), which
            ``GraphRegularizer.load_state_dict`` accepts; see :meth:`make_regularizer`.
        metadata: the keyword metadata given to :func:`save`; arrays come back as numpy
            arrays, tensors as tensors, dataclasses as dicts.
        format_version: the file's format version.
        gsreg_version: the gsreg version that wrote it.
        model_class, model_config: the model's class name and ``model.config`` (None when
            the model had none).
    """

    model: nn.Module
    graphs: dict[str, Graph] = field(default_factory=dict)
    regularizer: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    gsreg_version: str = ""
    model_class: str = ""
    model_config: dict[str, Any] | None = None

    @property
    def history(self) -> History | None:
        """``metadata["history"]`` as a :class:`~gsreg.training.History`, if it was saved."""
        saved = self.metadata.get("history")
        if isinstance(saved, Mapping) and set(saved) == {"epochs"}:
            return History(epochs=[dict(e) for e in saved["epochs"]])
        return None

    def make_regularizer(self, model: nn.Module | None = None) -> GraphRegularizer:
        """A :class:`GraphRegularizer` on ``model`` (default: the loaded one) with the saved
        layers, graphs, weights, node modes, schedules and state, ready to resume."""
        if self.regularizer is None:
            raise ValueError("this file holds no regularizer")
        model = self.model if model is None else model
        targets: dict[str, Graph | GraphPenalty | CoactivationGraph] = {}
        weights, nodes = {}, {}
        first_schedule = None
        for name, layer in self.regularizer["layers"].items():
            if layer["type"] == "learned":
                targets[name] = CoactivationGraph(**layer["options"])
            else:
                targets[name] = GraphPenalty(
                    self.graphs[name], laplacian=layer["laplacian"], normalize=layer["normalize"]
                )
            weights[name] = layer["schedule"]["base"]
            nodes[name] = layer["nodes"]
            first_schedule = first_schedule or layer["schedule"]
        strength: dict[str, Any] = {"weight": weights}
        if first_schedule["every"]:
            strength["decay"] = (first_schedule["rate"], first_schedule["every"])
        budget = self.regularizer.get("budget")
        if budget is not None:  # the weights come from the saved controller
            strength = {"budget": budget["budget"], "reference": budget["reference"]}
        reg = GraphRegularizer(
            model,
            targets,
            nodes=nodes,
            warmup_steps=first_schedule["warmup_steps"],
            **strength,
        )
        reg.load_state_dict(self.regularizer)
        return reg


# ---------------------------------------------------------------------------- save


def save(
    path: str | os.PathLike,
    model: nn.Module,
    regularizer: GraphRegularizer | None = None,
    **metadata: Any,
) -> Path:
    """Write ``model`` (and optionally ``regularizer`` and metadata) to one safetensors file.

    Args:
        path: the file to write (``.safetensors`` is a good suffix); replaced atomically.
        model: any ``nn.Module``. gsreg's models (with ``model.config``) are rebuilt by
            :func:`load`; others are loaded back with ``load(path, model=module)``.
        regularizer: a :class:`GraphRegularizer` on ``model``: its layers, graphs, weight
            schedules and state (step, learned graphs with their buffers and history).
        **metadata: JSON-able values (dicts with string keys, lists, numbers, strings,
            None), numpy arrays and torch tensors (stored exactly, as tensors) and
            dataclasses such as a training ``History`` (stored as dicts).

    Returns the path written.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot save to {path}: it is a directory")
    tensors: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        tensors[f"model/{key}"] = _cpu_copy(value)
    config = getattr(model, "config", None)
    document: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "gsreg_version": __version__,
        "model": {
            "class": type(model).__name__,
            "config": None if config is None else _encode(config, "model_config", tensors),
        },
        "regularizer": None if regularizer is None else _encode_regularizer(regularizer, tensors),
        "metadata": _encode(metadata, "metadata", tensors),
    }
    document["checksum"] = _checksum(document, tensors)
    header = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        _HEADER_KEY: json.dumps(document, sort_keys=True, allow_nan=True),
    }
    atomic_write(path, _save_tensors(tensors, metadata=header))
    return path


def _encode_regularizer(reg: GraphRegularizer, tensors: dict[str, torch.Tensor]) -> dict:
    if not isinstance(reg, GraphRegularizer):
        raise TypeError(f"regularizer must be a GraphRegularizer, got {type(reg).__name__}")
    learned = reg.learned_graphs()
    penalties = reg.penalties()
    layers = {}
    for name in reg.layers:
        schedule = reg.schedule(name)
        entry: dict[str, Any] = {
            "nodes": reg.node_mode(name),
            "schedule": {
                "base": schedule.base,
                "warmup_steps": schedule.warmup_steps,
                "rate": schedule.rate,
                "every": schedule.every,
            },
        }
        if name in learned:
            lg = learned[name]
            entry["type"] = "learned"
            entry["options"] = {key: getattr(lg, key) for key in _LEARNED_OPTIONS}
        else:
            pen = penalties[name]
            entry.update(
                type="graph",
                graph=pen.graph.to_dict(),
                laplacian=pen.laplacian,
                normalize=pen.normalize,
            )
        layers[name] = entry
    state = reg.state_dict()
    return _encode({"layers": layers, **state}, "regularizer", tensors)


def _encode(obj: Any, where: str, tensors: dict[str, torch.Tensor]) -> Any:
    """``obj`` as JSON types; arrays and tensors go to ``tensors`` and leave a reference."""
    if isinstance(obj, torch.Tensor) or isinstance(obj, np.ndarray):
        kind = "torch" if isinstance(obj, torch.Tensor) else "numpy"
        if kind == "numpy":
            if obj.dtype.kind not in "biuf":
                raise TypeError(
                    f"{where}: numpy arrays of dtype {obj.dtype} cannot be saved as tensors; "
                    "pass a list instead"
                )
            obj = torch.from_numpy(np.array(obj, copy=True, order="C"))
        name = where
        if name in tensors:
            raise ValueError(f"{where}: two values would be stored under one name")
        tensors[name] = _cpu_copy(obj)
        return {_TENSOR: name, "as": kind}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = obj.to_dict() if hasattr(obj, "to_dict") else dataclasses.asdict(obj)
    if isinstance(obj, Graph):
        obj = obj.to_dict()
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: keys must be strings, got {key!r}")
            if key.startswith("$"):
                raise ValueError(f"{where}: keys starting with '$' are reserved, got {key!r}")
            out[key] = _encode(value, f"{where}/{key}", tensors)
        return out
    if isinstance(obj, (list, tuple)):
        return [_encode(value, f"{where}/{i}", tensors) for i, value in enumerate(obj)]
    if isinstance(obj, np.generic):
        return _encode(obj.item(), where, tensors)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"{where}: cannot save a {type(obj).__name__} ({obj!r})")


def _cpu_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU copy sharing no storage (safetensors refuses shared tensors)."""
    return tensor.detach().to("cpu", copy=True).contiguous()


def _checksum(document: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the canonical JSON document (without its checksum) and every tensor's
    name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    body = {key: value for key, value in document.items() if key != "checksum"}
    digest.update(json.dumps(body, sort_keys=True, allow_nan=True).encode("utf-8"))
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(f"\n{name}|{tensor.dtype}|{list(tensor.shape)}\n".encode())
        digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"sha256:{digest.hexdigest()}"


# ---------------------------------------------------------------------------- load


def load(
    path: str | os.PathLike,
    model: nn.Module | None = None,
    device: str | torch.device = "cpu",
) -> Loaded:
    """Read a file written by :func:`save`.

    Args:
        path: the file.
        model: a module to load the weights into (strictly: same keys and shapes); by
            default the model is rebuilt from its saved class name and config, which works
            for gsreg's own model classes only.
        device: where the model and tensors go.

    Raises:
        FileNotFoundError: no such file.
        FormatError (a ValueError): not a gsreg file, truncated or corrupted, written by
            a newer gsreg (a format version above :data:`FORMAT_VERSION`), a model config
            whose sizes disagree with the saved tensors (checked on the meta device, before
            anything is allocated), or a ``model`` whose tensors differ from the file's
            (the first differing tensor is named).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a gsreg file")
    data = path.read_bytes()
    document = _read_document(path, data)
    try:
        tensors = _load_tensors(data)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise FormatError(f"{path} is truncated or corrupted: {_one_line(err)}") from err
    if _checksum(document, tensors) != document.get("checksum"):
        raise FormatError(f"{path} is corrupted: its checksum does not match its contents")
    try:
        return _assemble(document, tensors, model, torch.device(device))
    except (KeyError, TypeError, IndexError) as err:
        raise FormatError(f"{path} is corrupted: {_one_line(err)}") from err


def _read_document(path: Path, data: bytes) -> dict[str, Any]:
    """The JSON document of a gsreg file, after checking its format and version."""
    if len(data) < 8:
        raise FormatError(f"{path} is truncated or not a gsreg file ({len(data)} bytes)")
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8:
        raise FormatError(
            f"{path} is truncated or not a gsreg file (its header claims {size} bytes, "
            f"{len(data) - 8} follow)"
        )
    try:
        header = json.loads(data[8 : 8 + size].decode("utf-8"))
        meta = header["__metadata__"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise FormatError(f"{path} is corrupted or not a gsreg file: {_one_line(err)}") from err
    if not isinstance(meta, Mapping) or meta.get("format") != FORMAT_NAME:
        raise FormatError(f"{path} is a safetensors file but not a gsreg file")
    try:
        version = int(meta["format_version"])
    except (KeyError, TypeError, ValueError) as err:
        raise FormatError(f"{path} has no valid gsreg format version") from err
    if version > FORMAT_VERSION:
        raise FormatError(
            f"{path} was written in gsreg file format version {version}, newer than the "
            f"version {FORMAT_VERSION} this gsreg reads; upgrade gsreg to load it"
        )
    if version < 1:
        raise FormatError(f"{path} has an invalid gsreg format version {version}")
    try:
        document = json.loads(meta[_HEADER_KEY])
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise FormatError(f"{path} is corrupted: unreadable gsreg document") from err
    if not isinstance(document, dict) or document.get("format_version") != version:
        raise FormatError(f"{path} is corrupted: inconsistent gsreg document")
    return document


def _assemble(
    document: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    model: nn.Module | None,
    device: torch.device,
) -> Loaded:
    spec = document["model"]
    config = _decode(spec["config"], tensors, torch.device("cpu"))
    state = {key[6:]: value for key, value in tensors.items() if key.startswith("model/")}
    if model is None:
        model = _build_model(spec["class"], config, state)
    elif not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    else:
        _check_state(model, state, f"the given {type(model).__name__}")
    model.load_state_dict(state, strict=True)
    model.to(device).eval()
    reg = document["regularizer"]
    graphs: dict[str, Graph] = {}
    if reg is not None:
        reg = _decode(reg, tensors, device)
        for name, layer in reg["layers"].items():
            if layer["type"] == "graph":
                graphs[name] = Graph.from_dict(layer["graph"])
            else:
                saved = reg.get("learned", {}).get(name, {}).get("graph")
                if saved is not None:
                    graphs[name] = Graph.from_dict(saved)
    return Loaded(
        model=model,
        graphs=graphs,
        regularizer=reg,
        metadata=_decode(document["metadata"], tensors, device),
        format_version=int(document["format_version"]),
        gsreg_version=str(document["gsreg_version"]),
        model_class=spec["class"],
        model_config=config,
    )


def _build_model(name: str, config: Any, state: Mapping[str, torch.Tensor]) -> nn.Module:
    cls = _MODELS.get(name)
    if cls is None:
        raise FormatError(
            f"the file holds a {name!r} model, which is not one of gsreg's model classes "
            f"({', '.join(sorted(_MODELS))}); build it yourself and pass it as "
            "gsreg.load(path, model=...)"
        )
    if not isinstance(config, Mapping):
        raise FormatError(f"the file holds a {name!r} model without its config")
    try:  # on the meta device first: a config of absurd sizes allocates nothing
        with torch.device("meta"):
            skeleton = cls(**config)
    except (TypeError, ValueError) as err:
        raise FormatError(f"the file's {name} config is invalid: {_one_line(err)}") from err
    _check_state(skeleton, state, f"the {name} its config describes")
    model = cls(**config)
    dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    if len(dtypes) == 1:
        model.to(dtypes.pop())
    return model


def _check_state(model: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """FormatError naming the first tensor whose name or shape differs between ``model``'s
    state and the file's."""
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise FormatError(f"the file has no tensor {key!r}, which {what} needs")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise FormatError(
                f"tensor {key!r} has shape {tuple(state[key].shape)} in the file but "
                f"{tuple(tensor.shape)} in {what}"
            )
    extra = sorted(key for key in state if key not in expected)
    if extra:
        raise FormatError(f"the file has a tensor {extra[0]!r} that {what} does not have")


def _decode(obj: Any, tensors: Mapping[str, torch.Tensor], device: torch.device) -> Any:
    if isinstance(obj, dict):
        if _TENSOR in obj:
            tensor = tensors[obj[_TENSOR]]
            return tensor.numpy() if obj.get("as") == "numpy" else tensor.to(device)
        return {key: _decode(value, tensors, device) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_decode(value, tensors, device) for value in obj]
    return obj


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
