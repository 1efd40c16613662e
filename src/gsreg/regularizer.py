"""Attach GSR penalties to named layers of any ``nn.Module`` through forward hooks.

    reg = GraphRegularizer(model, {"decoder.0": graphs.grid(8, 8)}, weight=1e-3)
    loss = task_loss + reg.penalty()      # weighted penalties of the last forward
    loss.backward(); optimizer.step(); reg.step()

A layer's target is a fixed graph or a :class:`CoactivationGraph`, learned from the layer's
own activations: the hook feeds it every training forward and ``reg.step()`` drives its
update schedule.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from . import graphs
from ._util import model_device as _model_device
from .budget import TaskBudget
from .coactivation import CoactivationGraph
from .graphs import Graph
from .penalty import GraphPenalty

NODE_MODES = ("auto", "last", "channels", "flatten")


@dataclass(frozen=True)
class WeightSchedule:
    """Penalty weight over optimiser steps: 0 during warm-up, then a staircase decay.

    ``weight(step) = base * rate ** ((step - warmup_steps) // every)`` after warm-up (the
    paper's schedule is rate 0.99 every 100 steps); ``every=0`` keeps the weight constant.
    """

    base: float
    warmup_steps: int = 0
    rate: float = 1.0
    every: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.base) and self.base >= 0):
            raise ValueError(f"weight must be finite and >= 0, got {self.base}")
        if not _is_int(self.warmup_steps) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an int >= 0, got {self.warmup_steps!r}")
        if not (0 < self.rate <= 1) or not _is_int(self.every) or self.every < 0:
            raise ValueError(
                f"decay must be (rate in (0, 1], every an int >= 0), got "
                f"({self.rate!r}, {self.every!r})"
            )

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return 0.0
        if self.every == 0:
            return self.base
        return self.base * self.rate ** ((step - self.warmup_steps) // self.every)


class _HookedLayer:
    """One regularised layer: its module, target (a fixed penalty or a learned graph), node
    layout, schedule and last values."""

    def __init__(self, name, module, target, nodes, schedule) -> None:
        self.name = name
        self.module = module
        self.target: GraphPenalty | CoactivationGraph = target
        self.nodes = nodes
        self.schedule = schedule
        # schedule(step) of the current step, set by the regularizer when its step changes:
        # hooks and penalty() read a float, not the step count (which torch.compile would
        # specialise on, recompiling every step)
        self.weight_now = schedule(0)
        self.value: torch.Tensor | None = None
        self.activations: torch.Tensor | None = None
        self.handle = None

    @property
    def learned(self) -> CoactivationGraph | None:
        return self.target if isinstance(self.target, CoactivationGraph) else None

    @property
    def n_nodes(self) -> int | None:
        """The layer width (None for a learned graph before its first activations)."""
        return self.target.n_nodes

    def current_penalty(self) -> GraphPenalty | None:
        """The fixed penalty, or the learned graph's (None before its first update)."""
        return self.target if self.learned is None else self.learned.current_penalty()

    def describe(self) -> str:
        if self.learned is None:
            return self.target.graph.name
        return f"learned:{self.learned.kernel}"


class GraphRegularizer:
    """GSR on named layers of ``model``.

    Args:
        model: any ``nn.Module``.
        layers: ``{dotted module name or the module itself: target}`` (``{model.fc:
            graph}`` is ``{"fc": graph}``; logs and methods use the names); a target is a
            :class:`Graph`, a spec string for :func:`graphs.parse` ("grid:8x8"), a ready
            :class:`GraphPenalty` or a :class:`CoactivationGraph` (a graph learned from the
            layer, one layer each).
        weight: lambda, one float or ``{name or module: float}`` covering every layer (default
            1e-3 without a budget).
        budget: instead of a weight, the share of the task loss that GSR may cost (0.05:
            at most 5% more task loss than without it); the weights are then set during
            training (:class:`gsreg.budget.TaskBudget`: a multiplier on the task-loss
            constraint, against the task loss at the end of the weight-0 warm-up, which
            must then last at least ``budget.MIN_WARMUP_STEPS`` steps) and
            ``reg.step(task_loss)`` must be given the task loss of every step.
        reference: with a budget, a task loss to budget against instead of the warm-up's
            (e.g. the final loss of a run without the penalty).
        laplacian, normalize: used to build the penalty of Graph / spec targets (a
            CoactivationGraph carries its own).
        nodes: how a layer's output maps to graph nodes, one value or ``{name: value}``:
            "last" (output (..., n): leading dimensions are samples, e.g. Linear (B, n) or
            sequences (B, T, n)), "channels" (output (B, C, ...): graph on the C channels,
            batch and positions are samples), "flatten" (graph on everything after the
            batch dimension), "auto" ("last" for 2-D and 3-D outputs; for conv maps
            "channels" or "flatten", whichever matches the graph size; a learned graph of
            unknown width on a conv map needs "channels" or "flatten").
        warmup_steps: steps with weight 0 before the penalty starts.
        decay: ``(rate, every)`` staircase decay of the weight after warm-up, or None
            (not with a budget, which sets the weights itself).

    Penalties are collected only while the hooked module is in training mode with
    autograd enabled, and only
    for layers whose current weight is non-zero. Each forward of ``model`` starts a fresh
    collection; every call of a hooked layer after it adds its penalty (a layer applied
    twice is penalised twice). A learned graph observes every such call's activations,
    whatever the weight, and its penalty starts with its first graph.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Mapping[str | nn.Module, Graph | str | GraphPenalty | CoactivationGraph],
        weight: float | Mapping[str | nn.Module, float] | None = None,
        *,
        budget: float | None = None,
        reference: float | None = None,
        laplacian: str = "combinatorial",
        normalize: bool | str = False,
        nodes: str | Mapping[str, str] = "auto",
        warmup_steps: int = 0,
        decay: tuple[float, int] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(layers, Mapping) or not layers:
            raise ValueError("layers must be a non-empty mapping {layer name: graph}")
        self.model = model
        self._step = 0
        self._zeros: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        if budget is not None and (weight is not None or decay is not None):
            given = "weight" if weight is not None else "decay"
            raise ValueError(f"give a budget or a {given}, not both: a budget sets the weights")
        if budget is None and reference is not None:
            raise ValueError(
                "reference= is the task loss a budget is measured against; it needs budget="
            )
        if budget is not None:
            weight = 1.0  # the schedule only says when the penalty is on; the budget sets λ
        elif weight is None:
            weight = 1e-3
        rate, every = decay if decay is not None else (1.0, 0)
        modules = dict(model.named_modules())
        layers = _by_name(layers, model, "layers")
        weight = _by_name(weight, model, "weight") if isinstance(weight, Mapping) else weight
        nodes = _by_name(nodes, model, "nodes") if isinstance(nodes, Mapping) else nodes
        self._layers: dict[str, _HookedLayer] = {}
        for name, target in layers.items():
            module = _find_module(modules, name)
            target = _as_target(name, target, laplacian, normalize)
            shared = any(target is other.target for other in self._layers.values())
            if shared and isinstance(target, CoactivationGraph):
                raise ValueError(f"layer {name!r}: its CoactivationGraph already serves a layer")
            mode = _per_layer(nodes, name, "nodes")
            if mode not in NODE_MODES:
                raise ValueError(f"layer {name!r}: nodes must be one of {NODE_MODES}, got {mode!r}")
            _check_width(name, module, target.n_nodes, mode)
            schedule = WeightSchedule(
                float(_per_layer(weight, name, "weight")), warmup_steps, rate, every
            )
            self._layers[name] = _HookedLayer(name, module, target, mode, schedule)
        for value, what in ((weight, "weight"), (nodes, "nodes")):
            _check_keys(value, layers, what)
        self._budget = (
            None
            if budget is None
            else TaskBudget(budget, warmup_steps, list(self._layers), reference)
        )
        for layer in self._layers.values():
            layer.handle = layer.module.register_forward_hook(self._hook_for(layer))
        self._root_handle = model.register_forward_pre_hook(self._clear_hook())

    # -- hooks -------------------------------------------------------------------------
    def clear(self) -> None:
        """Forget the penalties collected so far. Each forward of ``model`` does this itself;
        call it when a training step runs submodules without calling ``model`` (as
        Lightning's ``training_step`` does with ``self.net(x)``)."""
        for layer in self._layers.values():
            layer.value = layer.activations = None

    def _clear_hook(self):
        # a function, not a bound method: copy.deepcopy(model) then shares it instead of
        # copying this regularizer, and a copy's forward must not clear our penalties
        def clear_own(module, inputs):
            if module is self.model:
                self.clear()

        return clear_own

    def _hook_for(self, layer: _HookedLayer):
        def hook(module, inputs, output):
            # a deep copy of the model carries this hook: only our own layer records
            if module is not layer.module or not (module.training and torch.is_grad_enabled()):
                return
            z = layer_activations(output, layer.nodes, layer.n_nodes, layer.name)
            if layer.learned is not None:
                layer.learned.observe(z)
            penalty = layer.current_penalty()
            if penalty is None or layer.weight_now == 0.0:
                return
            value = penalty.energies(z, name=f"layer {layer.name!r}").mean()
            # a layer applied several times in one forward (weight sharing) is penalised each time
            layer.value = value if layer.value is None else layer.value + value
            layer.activations = z.detach()

        return hook

    # -- public API ----------------------------------------------------------------------
    @property
    def layers(self) -> list[str]:
        return list(self._layers)

    @property
    def step_count(self) -> int:
        return self._step

    def penalties(self) -> dict[str, GraphPenalty]:
        """``{layer name: GraphPenalty}`` of the layers that have one (a learned graph
        only after its first update)."""
        current = {name: layer.current_penalty() for name, layer in self._layers.items()}
        return {name: penalty for name, penalty in current.items() if penalty is not None}

    def learned_graphs(self) -> dict[str, CoactivationGraph]:
        """``{layer name: CoactivationGraph}`` of the layers with a learned graph."""
        layers = self._layers.items()
        return {name: layer.learned for name, layer in layers if layer.learned is not None}

    def schedule(self, name: str) -> WeightSchedule:
        """The weight schedule of layer ``name``."""
        return self._layers[name].schedule

    def node_mode(self, name: str) -> str:
        """How layer ``name``'s output maps to graph nodes ("auto", "last", ...)."""
        return self._layers[name].nodes

    @property
    def budget(self) -> TaskBudget | None:
        """The task-loss budget that sets the weights, or None (fixed weights)."""
        return self._budget

    def weight(self, name: str) -> float:
        """The current weight (lambda) of layer ``name`` (with a budget: 0.0 during the
        warm-up and before the layer's first penalty; reads the value back from the
        device)."""
        if self._budget is None:
            return self._layers[name].schedule(self._step)
        value = self._budget.weight(name)
        return 0.0 if value is None else float(value)

    def _current_weight(self, name: str) -> torch.Tensor | float:
        """The weight as the penalty uses it: a float, or a 0-d device tensor under a
        budget (sized from the layer's first penalty)."""
        if self._budget is None:
            return self._layers[name].weight_now
        value = self._layers[name].value
        if value is not None:
            self._budget.size(name, value)
        weight = self._budget.weight(name)
        return 0.0 if weight is None else weight

    def penalty(self) -> torch.Tensor:
        """Sum over layers of weight x penalty from the last training forward (0-d tensor).

        With nothing collected (warm-up, weight 0, evaluation) it is a 0-d zero on the
        model's device, one tensor reused across calls: add it to a loss, never modify it
        in place."""
        total = None
        for name, layer in self._layers.items():
            if layer.value is not None:
                term = self._current_weight(name) * layer.value
                total = term if total is None else total + term
        if total is None:
            return self._zero()
        return total

    def _zero(self) -> torch.Tensor:
        """The cached 0-d zero for the model's device and the default dtype, so that steps
        without a penalty allocate nothing (on a GPU: launch no fill kernel)."""
        key = (_model_device(self.model), torch.get_default_dtype())
        zero = self._zeros.get(key)
        if zero is None:
            # a normal tensor even when first asked for under torch.inference_mode
            with torch.inference_mode(False):
                zero = self._zeros[key] = torch.zeros((), device=key[0])
        return zero

    def step(self, task_loss: torch.Tensor | float | None = None) -> None:
        """Advance the schedules by one optimiser step; learned graphs update when due.

        ``task_loss``: the step's task loss (without the penalty), needed with a budget
        (a tensor stays on the device); ignored otherwise."""
        if self._budget is not None:
            if task_loss is None:
                raise ValueError(
                    "a budget sets the weights from the task loss: call "
                    "reg.step(task_loss) with each step's task loss"
                )
            self._budget.update(task_loss)
        self._set_step(self._step + 1)
        for learned in self.learned_graphs().values():
            learned.step(self._step)

    def logs(self) -> dict[str, torch.Tensor | float]:
        """Per layer: ``gsr/NAME`` (penalty), ``gsr/NAME/act_rms`` (root mean square
        activation: the plain penalty can be lowered by shrinking activations, so watch
        both), ``gsr/NAME/weight`` and, for learned graphs, ``gsr/NAME/components``
        (connected components of the current graph, 0 before the first). Values are
        detached tensors or Python numbers: no host syncs. With a budget, also
        ``gsr/budget/cost`` (moving average of the task loss over the reference, minus 1)
        and ``gsr/budget/at_floor`` (1 when the weights sit at their lower bound: the
        budget cannot be met)."""
        out: dict[str, torch.Tensor | float] = {}
        budget = self._budget
        if budget is not None:
            for key, value in (("cost", budget.cost()), ("at_floor", budget.at_floor())):
                if value is not None:
                    out[f"gsr/budget/{key}"] = value
        for name, layer in self._layers.items():
            if budget is None:
                out[f"gsr/{name}/weight"] = self.weight(name)
            else:
                weight = budget.weight(name)
                out[f"gsr/{name}/weight"] = 0.0 if weight is None else weight.detach()
            if layer.learned is not None:
                out[f"gsr/{name}/components"] = layer.learned.n_components
            if layer.value is not None:
                out[f"gsr/{name}"] = layer.value.detach()
                out[f"gsr/{name}/act_rms"] = layer.activations.float().pow(2).mean().sqrt()
        return out

    def state_dict(self) -> dict:
        """``{"step": int}``, plus ``"learned": {name: CoactivationGraph.state_dict()}``
        when some layer learns its graph."""
        state: dict = {"step": self._step}
        if self._budget is not None:
            state["budget"] = self._budget.state_dict()
        learned = self.learned_graphs()
        if learned:
            state["learned"] = {name: lg.state_dict() for name, lg in learned.items()}
        return state

    def load_state_dict(self, state: Mapping) -> None:
        step = state.get("step")
        if not isinstance(step, int) or step < 0:
            raise ValueError(f"state_dict 'step' must be a non-negative int, got {step!r}")
        learned = self.learned_graphs()
        saved = state.get("learned", {})
        if set(saved) != set(learned):
            raise ValueError(
                f"state_dict has learned graphs for {sorted(saved)}, "
                f"the regularizer learns {sorted(learned)}"
            )
        for name, lg_state in saved.items():
            learned[name].load_state_dict(lg_state)
        if ("budget" in state) != (self._budget is not None):
            raise ValueError("state_dict and regularizer disagree on having a budget")
        if self._budget is not None:
            self._budget.load_state_dict(state["budget"], _model_device(self.model))
        self._set_step(step)

    def _set_step(self, step: int) -> None:
        self._step = step
        for layer in self._layers.values():
            layer.weight_now = layer.schedule(step)

    def remove(self) -> None:
        """Detach every hook; the regularizer collects nothing afterwards."""
        for layer in self._layers.values():
            if layer.handle is not None:
                layer.handle.remove()
                layer.handle = None
            layer.value = layer.activations = None
        self._root_handle.remove()

    def __enter__(self) -> GraphRegularizer:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def __repr__(self) -> str:
        strength = "budget" if self._budget is not None else "w={:g}"
        inner = ", ".join(
            f"{n!r}: {layer.describe()} ({strength.format(layer.schedule.base)})"
            for n, layer in self._layers.items()
        )
        tail = "" if self._budget is None else f", budget={self._budget.budget:g}"
        return f"GraphRegularizer({{{inner}}}{tail}, step={self._step})"


def layer_activations(output, nodes: str, n_nodes: int | None, layer: str) -> torch.Tensor:
    """Reshape a layer output to (samples, n_nodes) according to the node mode; with
    ``n_nodes=None`` (a learned graph not yet sized) the mode decides the width."""
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"layer {layer!r}: output is {type(output).__name__}, not a tensor")
    if output.ndim < 2:
        raise ValueError(f"layer {layer!r}: output of shape {tuple(output.shape)} has no batch")
    sizes = {
        "last": output.shape[-1],
        "channels": output.shape[1],
        "flatten": math.prod(output.shape[1:]),
    }
    if nodes == "auto":
        if output.ndim <= 3:
            nodes = "last"
        elif n_nodes is None:
            raise ValueError(
                f"layer {layer!r}: output {tuple(output.shape)} of unknown width; a learned "
                "graph on it needs nodes='channels' or 'flatten' (or n_nodes)"
            )
        else:
            nodes = "channels" if sizes["channels"] == n_nodes else "flatten"
    n_nodes = sizes[nodes] if n_nodes is None else n_nodes
    if sizes[nodes] != n_nodes:
        options = ", ".join(f"{k}: {v}" for k, v in sizes.items())
        raise ValueError(
            f"layer {layer!r}: output {tuple(output.shape)} has {sizes[nodes]} nodes with "
            f"nodes={nodes!r} but the graph has {n_nodes} (node counts per mode: {options})"
        )
    if nodes == "last":
        return output.reshape(-1, n_nodes)
    if nodes == "channels":
        return output.movedim(1, -1).reshape(-1, n_nodes)
    return output.reshape(output.shape[0], n_nodes)


def _find_module(modules: dict[str, nn.Module], name: str) -> nn.Module:
    if name in modules:
        return modules[name]
    close = difflib.get_close_matches(name, [m for m in modules if m], n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ValueError(f"model has no layer named {name!r}{hint}")


def _as_target(name, target, laplacian, normalize) -> GraphPenalty | CoactivationGraph:
    if isinstance(target, (GraphPenalty, CoactivationGraph)):
        return target
    if isinstance(target, str):
        target = graphs.parse(target)
    if isinstance(target, Graph):
        return GraphPenalty(target, laplacian=laplacian, normalize=normalize)
    raise TypeError(
        f"layer {name!r}: target must be a Graph, a graph spec string, a GraphPenalty or a "
        f"CoactivationGraph, got {type(target).__name__}"
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_keys(value, layers, what: str) -> None:
    """A per-layer mapping names only regularised layers (a misspelt key is an error)."""
    if not isinstance(value, Mapping):
        return
    extra = [key for key in value if key not in layers]
    if extra:
        close = difflib.get_close_matches(str(extra[0]), list(layers), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"{what} names {extra[0]!r}, which is not a regularised layer "
            f"(layers: {list(layers)}){hint}"
        )


def _by_name(mapping: Mapping, model: nn.Module, what: str) -> dict:
    """``mapping`` with module keys replaced by their dotted names in ``model`` (names are
    kept as they are): ``{model.fc: graph}`` means ``{"fc": graph}``."""
    names = {id(module): name for name, module in model.named_modules()}
    out: dict = {}
    for key, value in mapping.items():
        if isinstance(key, nn.Module):
            if id(key) not in names:
                raise ValueError(
                    f"{what} has a {type(key).__name__} key that is not a submodule of the model"
                )
            key = names[id(key)]
        if key in out:
            raise ValueError(f"{what} names layer {key!r} twice (by name and as a module)")
        out[key] = value
    return out


def _per_layer(value, name: str, what: str):
    if isinstance(value, Mapping):
        if name not in value:
            raise ValueError(f"{what} has no entry for layer {name!r}")
        return value[name]
    return value


def _check_width(name: str, module: nn.Module, n_nodes: int | None, nodes: str) -> None:
    """Fail at construction when the width is knowable from the module type."""
    if n_nodes is None:
        return
    width = None
    if isinstance(module, nn.Linear) and nodes in ("auto", "last"):
        width, what = module.out_features, "out_features"
    elif isinstance(module, nn.modules.conv._ConvNd) and nodes == "channels":
        width, what = module.out_channels, "out_channels"
    if width is not None and width != n_nodes:
        raise ValueError(f"layer {name!r} has {what}={width} but its graph has {n_nodes} nodes")
