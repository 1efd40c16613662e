"""The model, data and rank functions of the DDP and FSDP tests (test_ddp.py, test_fsdp.py).

They live here, not in the test modules, because spawning re-imports a worker's module in
every rank: this one imports only torch and gsreg (test_ddp.py imports Lightning).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from _gloo import WORLD_SIZE, worker_group
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from gsreg import CoactivationGraph, GraphRegularizer, graphs

BATCH = 8  # per rank
STEPS = 6  # optimiser steps; learned graph updates at 2, 4, 6 (the last uses the final buffers)
WEIGHT = 0.1
LR = 0.05


def make_model(seed: int) -> nn.Sequential:
    """8 -> hidden (16 = grid 4x4) -> code (6, learned graph) -> 8."""
    torch.manual_seed(seed)
    return nn.Sequential(
        OrderedDict(
            hidden=nn.Sequential(nn.Linear(8, 16), nn.LeakyReLU(0.2)),
            code=nn.Sequential(nn.Linear(16, 6), nn.LeakyReLU(0.2)),
            out=nn.Linear(6, 8),
        )
    )


def make_learned(buffer_size: int = 32) -> CoactivationGraph:
    return CoactivationGraph(k=2, update_every=2, buffer_size=buffer_size)


def global_batches() -> torch.Tensor:
    """(STEPS, WORLD_SIZE * BATCH, 8): step t's global batch; rank r takes rows r*B:(r+1)*B."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(STEPS, WORLD_SIZE * BATCH, 8, generator=gen)
    # shards from different distributions, so one rank's activations differ from the other's
    return x + torch.arange(WORLD_SIZE).repeat_interleave(BATCH)[:, None]


def shard(x: torch.Tensor, rank: int) -> torch.Tensor:
    return x[rank * BATCH : (rank + 1) * BATCH]


def tensors_to_lists(tensors: dict[str, torch.Tensor]) -> dict[str, list]:
    return {name: t.detach().tolist() for name, t in tensors.items()}


def penalty_logs(reg: GraphRegularizer) -> dict[str, float]:
    """The unweighted penalties of the last forward, {layer: value}, for the layers that
    have a graph."""
    logs = reg.logs()
    return {
        name: float(logs[f"gsr/{name}"]) for name in ("hidden", "code") if f"gsr/{name}" in logs
    }


# ------------------------------------------------------------------ DistributedDataParallel


def ddp_worker(rank: int, port: int, out_dir: str) -> None:
    with worker_group(rank, port):
        model = make_model(seed=rank)  # DDP broadcasts rank 0's parameters at wrapping
        learned = make_learned()
        # attach to the plain model BEFORE wrapping: layer names stay "hidden", "code"
        reg = GraphRegularizer(model, {"hidden": graphs.grid(4, 4), "code": learned}, weight=WEIGHT)
        ddp = DistributedDataParallel(model)
        # attached to the wrapper instead, the names carry DDP's "module." prefix
        try:
            GraphRegularizer(ddp, {"hidden": graphs.grid(4, 4)})
            wrapped_error = ""
        except ValueError as err:
            wrapped_error = str(err)
        x = global_batches()

        # the gradient of the fixed-graph penalty alone (the learned layer has no graph yet);
        # 0 * out.sum() lets every parameter take part, as DDP expects
        out = ddp(shard(x[0], rank))
        (reg.penalty() + 0.0 * out.sum()).backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters()}
        model.zero_grad()

        optimizer = torch.optim.SGD(ddp.parameters(), lr=LR)
        for t in range(STEPS):
            xb = shard(x[t], rank)
            loss = F.mse_loss(ddp(xb), xb) + reg.penalty()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            reg.step()

        result = {
            "grads": tensors_to_lists(grads),
            "params": tensors_to_lists(dict(model.named_parameters())),
            "graph": learned.graph.to_dict(),
            "history": [step for step, _ in learned.history],
            "samples": learned.samples().tolist(),
            "step": reg.step_count,
            "wrapped_error": wrapped_error,
        }
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))


# ------------------------------------------------------------------ FSDP2 (fully_shard)


def train_fsdp_or_single(
    model: nn.Module, reg: GraphRegularizer, learned: CoactivationGraph, rank: int | None
) -> dict:
    """Train STEPS steps on rank ``rank``'s shards, or on the whole global batches when
    ``rank`` is None (the one-process reference). Returns the penalties of the first
    forward (fixed graph; the learned layer has none yet) and of a last forward after
    training (both graphs), the gradients of the first penalty, the final parameters and
    the learned graph's buffer as of its last update."""

    def part(x: torch.Tensor) -> torch.Tensor:
        return x if rank is None else shard(x, rank)

    def full(t: torch.Tensor) -> torch.Tensor:
        return t.full_tensor() if hasattr(t, "full_tensor") else t  # FSDP2: a DTensor shard

    x = global_batches()
    out = model(part(x[0]))
    first = penalty_logs(reg)
    (reg.penalty() + 0.0 * out.sum()).backward()
    grads = {name: full(p.grad).clone() for name, p in model.named_parameters()}
    model.zero_grad()

    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    for t in range(STEPS):
        xb = part(x[t])
        loss = F.mse_loss(model(xb), xb) + reg.penalty()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        reg.step()
    samples = learned.samples().tolist()
    model(part(x[0]))  # with autograd on: the regularizer skips no_grad forwards
    last = penalty_logs(reg)
    params = {name: full(p.detach()) for name, p in model.named_parameters()}
    return {
        "first": first,
        "last": last,
        "grads": tensors_to_lists(grads),
        "params": tensors_to_lists(params),
        "samples": samples,
    }


def fsdp_worker(rank: int, port: int, out_dir: str) -> None:
    from torch.distributed.fsdp import fully_shard

    with worker_group(rank, port):
        model = make_model(seed=0)  # FSDP2 does not broadcast: the same seed on every rank
        learned = make_learned()
        # attach to the plain model BEFORE sharding it (fully_shard keeps the module tree
        # and its names, and the forward hooks fire on the unsharded forward)
        reg = GraphRegularizer(model, {"hidden": graphs.grid(4, 4), "code": learned}, weight=WEIGHT)
        for name in ("hidden", "code", "out"):
            fully_shard(model.get_submodule(name))
        fully_shard(model)
        result = train_fsdp_or_single(model, reg, learned, rank)
        # the mean penalties over the ranks: the penalty of the global batch (equal shards)
        for key in ("first", "last"):
            values = torch.tensor(list(result[key].values()))
            dist.all_reduce(values)
            result[f"{key}_mean"] = dict(
                zip(result[key], (values / WORLD_SIZE).tolist(), strict=True)
            )
        result.update(
            graph=learned.graph.to_dict(),
            history=[step for step, _ in learned.history],
            step=reg.step_count,
            sharded=type(model).__name__,
        )
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
