"""``gsreg.arrange``: permute a trained layer's units onto a graph, keeping the function.

    perm = gsreg.arrange(model, "decoder.0", graphs.grid(8, 8), X)

The units of the layer are placed on the graph's nodes by
:func:`gsreg.analysis.arrangement` (smoothest placement of their activations on X), then
the model is rewired so that it computes exactly the same function: the module that
produces the units (its output rows and bias), every per-unit module between it and the
consumer (batch-norm statistics, affine layer-norm, PReLU slopes) and the module that
consumes them (its input columns) are permuted together. Producer and consumer are found
by tracing one forward pass on the first samples of X: the producer is the last Linear or
convolution inside the layer, the consumer the first such module that reads the layer's
output, through parameter-free element-wise modules (activations, dropout, noise,
pooling, flattening). Name it with ``consumer=`` where the trace cannot tell.

Everything is done on a copy; the copy's outputs are compared with the model's on a batch
of X, and only when they agree are the permuted weights loaded into the model (in place,
so optimisers holding its parameters stay valid). On any error the model is untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import analysis, graphs
from .analysis import _eval_mode, _submodule
from .graphs import Graph

__all__ = ["arrange"]

#: samples of X traced and compared before and after the permutation
CHECK_SAMPLES = 256
#: the arranged model's outputs may differ from the original's by this much, relative to
#: the largest output (float32 sums in another order)
CHECK_RTOL = 1e-5

_PRODUCERS = (nn.Linear, nn.modules.conv._ConvNd)
_PER_UNIT = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.PReLU)


@dataclass
class _Call:
    """One call of a leaf module in the traced forward pass."""

    name: str
    module: nn.Module
    inputs: tuple
    output: object


def arrange(
    model: nn.Module,
    layer: str,
    graph: Graph | str,
    X: torch.Tensor | np.ndarray,
    *,
    consumer: str | None = None,
    nodes: str = "auto",
    random_state: int = 0,
    max_samples: int = 20_000,
    batch_size: int = 1024,
) -> np.ndarray:
    """Place the units of ``model``'s layer ``layer`` on ``graph``, in place, same function.

    Args:
        model: a trained module; its train/eval mode is kept.
        layer: dotted name of the layer whose output units are arranged (e.g. a
            ``Linear`` + activation block ``"decoder.0"``, or a ``Conv2d``).
        graph: a :class:`Graph` or a spec ("grid:8x8") with one node per unit.
        X: (N, ...) inputs, N >= 2; the units' activations on X decide the placement.
        consumer: dotted name of the module that reads the layer's output, where the
            trace cannot infer it (the output goes through functional code, or to several
            modules).
        nodes: which axis holds the units: "last" (Linear outputs (B, n) or (B, T, n)),
            "channels" (conv maps (B, C, ...)), or "auto" (last for 2-D/3-D outputs,
            channels for conv maps).
        random_state: seed of :func:`gsreg.analysis.arrangement`.
        max_samples: activation rows used for the placement (drawn with random_state
            when there are more, e.g. every position of a conv map counts as one).
        batch_size: samples per forward pass.

    Returns:
        ``perm`` (n,) int64, ``perm[node] = old unit``: the unit that now sits at ``node``
        was unit ``perm[node]`` before.
    """
    graph = graphs.parse(graph) if isinstance(graph, str) else graph
    if not isinstance(graph, Graph):
        raise TypeError(f"graph must be a Graph or a spec string, got {type(graph).__name__}")
    X = torch.as_tensor(X)
    if X.ndim == 0 or len(X) < 2:
        raise ValueError(f"arrange needs at least 2 samples in X, got shape {tuple(X.shape)}")
    _submodule(model, layer)
    calls, output = _trace(model, X[:CHECK_SAMPLES], layer)
    axis = _unit_axis(output, nodes, graph.n_nodes, layer)
    plan = _Plan.find(model, calls, layer, output, axis, consumer)
    Z = _unit_activations(model, layer, X, tuple(output.shape[1:]), axis, batch_size)
    Z = _subsample(Z, max_samples, random_state)
    perm = analysis.arrangement(Z, graph, random_state=random_state)
    arranged = copy.deepcopy(model)
    plan.apply(arranged, torch.as_tensor(perm))
    _check_same_function(model, arranged, X[:CHECK_SAMPLES], layer, plan)
    with torch.no_grad():
        model.load_state_dict(arranged.state_dict())
    return perm


# --------------------------------------------------------------------------- trace


def _trace(model: nn.Module, X: torch.Tensor, layer: str) -> tuple[list[_Call], torch.Tensor]:
    """The leaf-module calls of one forward pass in eval mode, in execution order, and the
    output of ``layer``."""
    calls: list[_Call] = []
    outputs: list[object] = []
    handles = [model.get_submodule(layer).register_forward_hook(lambda m, i, o: outputs.append(o))]
    for name, module in model.named_modules():
        if next(module.children(), None) is None:
            handles.append(
                module.register_forward_hook(
                    lambda m, i, o, name=name: calls.append(_Call(name, m, i, o))
                )
            )
    try:
        with _eval_mode(model), torch.no_grad():
            model(_as_model_input(model, X))
    finally:
        for handle in handles:
            handle.remove()
    if len(outputs) != 1:
        raise ValueError(
            f"layer {layer!r} ran {len(outputs)} times in one forward pass; expected once"
            + ("" if not outputs else " (a shared layer cannot be arranged for one use)")
        )
    output = outputs[0][0] if isinstance(outputs[0], (tuple, list)) else outputs[0]
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"layer {layer!r} returned {type(output).__name__}, not a tensor")
    return calls, output


def _as_model_input(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    param = next(model.parameters(), None)
    if param is None:
        return X
    dtype = param.dtype if X.is_floating_point() else None
    return X.to(device=param.device, dtype=dtype)


def _unit_axis(output: torch.Tensor, nodes: str, n_nodes: int, layer: str) -> int:
    if nodes not in ("auto", "last", "channels"):
        raise ValueError(f"nodes must be 'auto', 'last' or 'channels', got {nodes!r}")
    if output.ndim < 2:
        raise ValueError(f"layer {layer!r}: output of shape {tuple(output.shape)} has no batch")
    if nodes == "auto":
        nodes = "last" if output.ndim <= 3 else "channels"
    axis = output.ndim - 1 if nodes == "last" else 1
    if output.shape[axis] != n_nodes:
        raise ValueError(
            f"layer {layer!r} has {output.shape[axis]} units (output {tuple(output.shape)}, "
            f"nodes={nodes!r}) but the graph has {n_nodes} nodes"
        )
    return axis


def _aliases(a: object, b: torch.Tensor) -> bool:
    """Whether ``a`` is ``b`` or a view of the same memory (reshape, flatten)."""
    return (
        isinstance(a, torch.Tensor)
        and a.numel() == b.numel()
        and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
    )


# --------------------------------------------------------------------------- plan


@dataclass
class _Plan:
    """Which modules to permute: ``producer`` on its outputs, ``per_unit`` modules on their
    unit axis, ``consumer`` on its inputs."""

    producer: str
    per_unit: list[str]
    consumer: str

    @classmethod
    def find(cls, model, calls, layer, output, axis, consumer) -> _Plan:
        n = output.shape[axis]
        producer, before = _walk_back(calls, layer, output)
        if consumer is None:
            consumer_name, after = _walk_forward(calls, layer, output)
        else:
            _submodule(model, consumer)
            consumer_name, after = consumer, _chain_to(calls, output, consumer)
        plan = cls(producer, before + after, consumer_name)
        plan._check(model, n, layer)
        return plan

    def _check(self, model: nn.Module, n: int, layer: str) -> None:
        producer = model.get_submodule(self.producer)
        consumer = model.get_submodule(self.consumer)
        if _out_units(producer) != n:
            raise ValueError(
                f"layer {layer!r}: its producer {self.producer!r} has "
                f"{_out_units(producer)} outputs, the layer {n} units"
            )
        width = _in_units(consumer)
        if width is None or width % n:
            raise ValueError(
                f"layer {layer!r}: {self.consumer!r} ({type(consumer).__name__}) does not "
                f"take the layer's {n} units as its inputs (it has {width}); name the module "
                "that reads them with consumer="
            )
        for name in (self.producer, *self.per_unit, self.consumer):
            module = model.get_submodule(name)
            if getattr(module, "groups", 1) != 1:
                raise ValueError(
                    f"layer {layer!r}: {name!r} is a grouped convolution; its "
                    "units cannot be permuted freely"
                )
        _check_not_shared(model, [self.producer, *self.per_unit, self.consumer], layer)

    def apply(self, model: nn.Module, perm: torch.Tensor) -> None:
        with torch.no_grad():
            _permute_outputs(model.get_submodule(self.producer), perm)
            for name in self.per_unit:
                _permute_per_unit(model.get_submodule(name), perm)
            _permute_inputs(model.get_submodule(self.consumer), perm)


def _walk_back(calls: list[_Call], layer: str, output: torch.Tensor) -> tuple[str, list[str]]:
    """The module that produces ``output`` (the layer itself, a module inside it or the
    last one before it) and the per-unit modules between the two."""
    per_unit: list[str] = []
    tensor, limit = output, _last_call(calls, layer) + 1
    while True:
        index = next((i for i in reversed(range(limit)) if _aliases(calls[i].output, tensor)), None)
        if index is None:
            raise ValueError(
                f"layer {layer!r}: no Linear or convolution produces its output "
                "(it comes from code outside modules)"
            )
        call = calls[index]
        if isinstance(call.module, _PRODUCERS):
            return call.name, per_unit[::-1]
        if not _passes_units(call.module):
            raise ValueError(
                f"layer {layer!r}: {call.name!r} ({type(call.module).__name__}) "
                "sits between its producer and its output and mixes units"
            )
        if isinstance(call.module, _PER_UNIT):
            per_unit.append(call.name)
        tensor, limit = call.inputs[0], index


def _walk_forward(calls: list[_Call], layer: str, output: torch.Tensor) -> tuple[str, list[str]]:
    """The consumer of ``output`` and the per-unit modules on the way to it."""
    start = _last_call(calls, layer)
    per_unit: list[str] = []
    tensor = output
    for _ in range(len(calls)):
        readers = [
            i
            for i in range(start + 1, len(calls))
            if calls[i].inputs
            and _aliases(calls[i].inputs[0], tensor)
            and not _is_identity(calls[i])
        ]
        if len(readers) != 1:
            what = (
                "no module reads"
                if not readers
                else (f"{len(readers)} modules read ({', '.join(calls[i].name for i in readers)})")
            )
            raise ValueError(
                f"layer {layer!r}: {what} its output; name the module that "
                "consumes its units with consumer="
            )
        call = calls[readers[0]]
        if isinstance(call.module, _PRODUCERS):
            return call.name, per_unit
        if not _passes_units(call.module):
            raise ValueError(
                f"layer {layer!r}: its output goes to {call.name!r} "
                f"({type(call.module).__name__}), which mixes units; name the "
                "consumer with consumer="
            )
        if isinstance(call.module, _PER_UNIT):
            per_unit.append(call.name)
        tensor, start = call.output, readers[0]
    raise AssertionError("unreachable")


def _last_call(calls: list[_Call], layer: str) -> int:
    """Index of the last leaf call that is ``layer`` or inside it."""
    inside = [i for i, c in enumerate(calls) if c.name == layer or c.name.startswith(layer + ".")]
    if not inside:
        raise ValueError(f"layer {layer!r} holds no module that ran in the forward pass")
    return inside[-1]


def _chain_to(calls: list[_Call], output: torch.Tensor, consumer: str) -> list[str]:
    """Per-unit modules between ``output`` and a named consumer, where the trace links them
    (modules reached through functional code are not seen; the final check covers them)."""
    per_unit, tensor = [], output
    for call in calls:
        if call.name == consumer:
            break
        if call.inputs and _aliases(call.inputs[0], tensor) and _passes_units(call.module):
            if isinstance(call.module, _PER_UNIT):
                per_unit.append(call.name)
            tensor = call.output
    return per_unit


def _is_identity(call: _Call) -> bool:
    """A parameter-free module that returned its input (dropout in eval mode, Identity)."""
    return (
        not isinstance(call.module, _PER_UNIT)
        and _passes_units(call.module)
        and _aliases(call.output, call.inputs[0])
    )


def _passes_units(module: nn.Module) -> bool:
    """Per-unit modules and parameter-free ones (activations, dropout, noise, pooling,
    flatten); anything else might mix units. The final comparison of outputs catches a
    parameter-free module that does."""
    if isinstance(module, _PER_UNIT):
        return True
    return next(module.parameters(), None) is None and next(module.buffers(), None) is None


def _check_not_shared(model: nn.Module, names: Sequence[str], layer: str) -> None:
    """Refuse parameters that another module uses too (tied weights)."""
    owners: dict[int, list[str]] = {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        for param in module.parameters(recurse=False):
            owners.setdefault(id(param), []).append(module_name)
    for name in names:
        for param in model.get_submodule(name).parameters(recurse=False):
            users = owners[id(param)]
            if len(users) > 1:
                raise ValueError(
                    f"layer {layer!r}: a parameter of {name!r} is shared with "
                    f"{[u for u in users if u != name]} (tied weights); "
                    "permuting it would change those modules too"
                )


# --------------------------------------------------------------------------- permutations


def _out_units(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.out_features
    return module.out_channels


def _in_units(module: nn.Module) -> int | None:
    if isinstance(module, nn.Linear):
        return module.in_features
    if isinstance(module, nn.modules.conv._ConvNd):
        return module.in_channels
    return None


def _permute_outputs(module: nn.Module, perm: torch.Tensor) -> None:
    """Output unit ``i`` becomes the old output ``perm[i]``."""
    dim = 1 if isinstance(module, nn.modules.conv._ConvTransposeNd) else 0
    module.weight.copy_(module.weight.index_select(dim, perm.to(module.weight.device)))
    if module.bias is not None:
        module.bias.copy_(module.bias[perm.to(module.bias.device)])


def _permute_per_unit(module: nn.Module, perm: torch.Tensor) -> None:
    for tensor in (*module.parameters(recurse=False), *module.buffers(recurse=False)):
        if tensor.ndim == 1 and len(tensor) == len(perm):
            tensor.copy_(tensor[perm.to(tensor.device)])


def _permute_inputs(module: nn.Module, perm: torch.Tensor) -> None:
    """Input unit ``i`` now carries the old unit ``perm[i]``; a Linear that reads a
    flattened (units, positions) map has ``units * positions`` inputs, unit-major."""
    weight = module.weight
    perm = perm.to(weight.device)
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        weight.copy_(weight.index_select(0, perm))
    elif isinstance(module, nn.Linear):
        blocks = weight.reshape(weight.shape[0], len(perm), -1)
        weight.copy_(blocks.index_select(1, perm).reshape(weight.shape))
    else:
        weight.copy_(weight.index_select(1, perm))


# --------------------------------------------------------------------------- data and check


def _unit_activations(model, layer, X, shape, axis, batch_size) -> np.ndarray:
    """(samples, n) activations of the units: one row per sample (and position); ``shape``
    is the layer's output shape without the batch."""
    Z = analysis.activations(model, X, layer, batch_size=batch_size)  # (N, prod(shape))
    Z = np.moveaxis(Z.reshape(len(Z), *shape), axis, -1)
    return Z.reshape(-1, Z.shape[-1])


def _subsample(Z: np.ndarray, max_samples: int, seed: int) -> np.ndarray:
    if len(Z) <= max_samples:
        return Z
    rows = np.random.default_rng(seed).choice(len(Z), max_samples, replace=False)
    return Z[np.sort(rows)]


def _check_same_function(model, arranged, X, layer, plan) -> None:
    with _eval_mode(model), _eval_mode(arranged), torch.no_grad():
        before = _tensors(model(_as_model_input(model, X)))
        after = _tensors(arranged(_as_model_input(arranged, X)))
    scale = max((float(t.abs().max()) for t in before if t.numel()), default=0.0)
    diff = max(
        (float((a - b).abs().max()) for a, b in zip(before, after, strict=True) if a.numel()),
        default=0.0,
    )
    if not diff <= CHECK_RTOL * max(scale, 1.0):
        raise ValueError(
            f"layer {layer!r}: permuting {plan.producer!r} and {plan.consumer!r} changes the "
            f"model's outputs by up to {diff:.3g}; the units reach other modules too, or "
            "through code that mixes them. Name the module that reads them with consumer="
        )


def _tensors(out: object) -> list[torch.Tensor]:
    """The floating-point tensors of a model output (a tensor, or nested tuples/dicts)."""
    if isinstance(out, torch.Tensor):
        return [out.detach().float()] if out.is_floating_point() else [out.detach()]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for item in out for t in _tensors(item)]
    return []
