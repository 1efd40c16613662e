"""GraphRegularizer under DistributedDataParallel: two CPU processes on the gloo backend.

(a) raw torch.distributed: DDP keeps the ranks' parameters equal, the learned graph is the
    same on every rank (built from all ranks' activations), and the gradient of a mean
    fixed-graph penalty equals the one-process gradient on the union of the shards;
(b) Lightning's ddp_spawn strategy with GSRCallback: every rank ends with the same
    learned graph.

Deselect with ``-m "not distributed"``.
"""

import json
import multiprocessing
import os
import socket
import threading
import time
import warnings
from collections import OrderedDict
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset

from gsreg import CoactivationGraph, Graph, GraphRegularizer, graphs

try:
    import lightning.pytorch as pl
except ImportError:  # the Lightning test is skipped
    pl = None

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.skipif(
        not (dist.is_available() and dist.is_gloo_available()),
        reason="torch.distributed with the gloo backend is not available",
    ),
]

WORLD_SIZE = 2
TIMEOUT_S = 300  # generous: two loaded cores, each process imports torch
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


def make_learned() -> CoactivationGraph:
    return CoactivationGraph(k=2, update_every=2, buffer_size=32)


def global_batches() -> torch.Tensor:
    """(STEPS, WORLD_SIZE * BATCH, 8): step t's global batch; rank r takes rows r*B:(r+1)*B."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(STEPS, WORLD_SIZE * BATCH, 8, generator=gen)
    # shards from different distributions, so one rank's activations differ from the other's
    return x + torch.arange(WORLD_SIZE).repeat_interleave(BATCH)[:, None]


def shard(x: torch.Tensor, rank: int) -> torch.Tensor:
    return x[rank * BATCH : (rank + 1) * BATCH]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tensors_to_lists(tensors: dict[str, torch.Tensor]) -> dict[str, list]:
    return {name: t.detach().tolist() for name, t in tensors.items()}


def run_workers(fn, args: tuple) -> None:
    context = mp.start_processes(fn, args=args, nprocs=WORLD_SIZE, join=False, start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"distributed workers did not finish within {TIMEOUT_S} s")


# ------------------------------------------------------------------ (a) raw torch.distributed


def _ddp_worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD_SIZE,
        timeout=timedelta(seconds=240),
    )
    try:
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
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(
    os.environ.get("GSREG_RUN_RAW_DDP") != "1",
    reason="intermittently hangs in a fresh checkout (gloo rendezvous); set GSREG_RUN_RAW_DDP=1",
)
def test_ddp_keeps_parameters_and_learned_graphs_equal_across_ranks(tmp_path):
    run_workers(_ddp_worker, (free_port(), str(tmp_path)))
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD_SIZE)]
    first, second = results

    # DDP: identical parameters, and training moved them away from the broadcast init
    init = dict(make_model(seed=0).named_parameters())
    for name, value in first["params"].items():
        assert torch.equal(torch.tensor(value), torch.tensor(second["params"][name])), name
    assert not torch.allclose(
        torch.tensor(first["params"]["hidden.0.weight"]), init["hidden.0.weight"]
    )

    assert "did you mean 'module.hidden'" in first["wrapped_error"]

    # learned graph: the same on both ranks, built at steps 2, 4, 6 from both ranks' buffers
    assert first["step"] == second["step"] == STEPS
    assert first["history"] == second["history"] == [2, 4, 6]
    assert first["graph"] == second["graph"]
    union = torch.tensor(first["samples"] + second["samples"])
    expected = make_learned().build(union)
    graph = Graph.from_dict(first["graph"])
    assert graph.edges.tolist() == expected.edges.tolist()
    assert graph.weights.tolist() == expected.weights.tolist()
    assert graph != make_learned().build(torch.tensor(first["samples"]))

    # gradient of the mean penalty: DDP's average of the ranks' gradients (mean of per-shard
    # means) equals one process's gradient on the union of the equal-sized shards
    def penalty_grads(x: torch.Tensor) -> dict[str, torch.Tensor]:
        model = make_model(seed=0)
        reg = GraphRegularizer(model, {"hidden": graphs.grid(4, 4)}, weight=WEIGHT)
        model(x)
        reg.penalty().backward()
        return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    x0 = global_batches()[0]
    union_grads = penalty_grads(x0)
    local_grads = penalty_grads(shard(x0, 0))
    assert set(union_grads) == {"hidden.0.weight", "hidden.0.bias"}
    for result in results:
        for name, value in result["grads"].items():
            got = torch.tensor(value)
            if name in union_grads:
                assert got.abs().sum() > 0
                torch.testing.assert_close(got, union_grads[name], rtol=1e-5, atol=1e-6)
                assert not torch.allclose(got, local_grads[name], rtol=1e-3)
            else:
                assert not got.any(), name


# ------------------------------------------------------------------ (b) Lightning ddp_spawn

if pl is not None:

    class DDPAutoencoder(pl.LightningModule):
        """make_model under Lightning; each rank writes its learned graph at the end."""

        def __init__(self, out_dir: str) -> None:
            super().__init__()
            self.model = make_model(seed=0)
            self.out_dir = out_dir

        def setup(self, stage: str) -> None:
            torch.set_num_threads(1)

        def training_step(self, batch, batch_idx):
            (x,) = batch
            return F.mse_loss(self.model(x), x) + self.gsr.penalty()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=LR)

        def train_dataloader(self):
            # Lightning shards it across the ranks with a DistributedSampler
            x = global_batches().reshape(-1, 8)
            return DataLoader(TensorDataset(x), batch_size=BATCH)

        def on_train_end(self) -> None:
            learned = self.gsr.learned_graphs()["model.code"]
            result = {
                "graph": learned.graph.to_dict(),
                "history": [step for step, _ in learned.history],
                "samples": learned.samples().tolist(),
                "step": self.gsr.step_count,
                "global_step": self.trainer.global_step,
                "params": tensors_to_lists(dict(self.model.named_parameters())),
            }
            Path(self.out_dir, f"rank{self.global_rank}.json").write_text(json.dumps(result))


def _kill_children_after(seconds: float) -> threading.Timer:
    """A watchdog: ddp_spawn joins its processes without a timeout; killing them makes
    trainer.fit fail instead of hanging."""

    def kill() -> None:
        for child in multiprocessing.active_children():
            child.kill()

    timer = threading.Timer(seconds, kill)
    timer.daemon = True
    timer.start()
    return timer


@pytest.mark.skipif(pl is None, reason="lightning is not installed (pip install gsreg[lightning])")
def test_lightning_ddp_spawn_ranks_share_the_learned_graph(tmp_path):
    from gsreg.integrations.lightning import GSRCallback

    callback = GSRCallback(
        {"model.hidden": "grid:4x4", "model.code": make_learned()}, weight=WEIGHT
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=WORLD_SIZE,
        strategy="ddp_spawn",
        max_steps=STEPS,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    watchdog = _kill_children_after(TIMEOUT_S)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers")
            trainer.fit(DDPAutoencoder(str(tmp_path)))
    finally:
        watchdog.cancel()
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD_SIZE)]
    first, second = results
    assert first["global_step"] == second["global_step"] == STEPS
    assert first["step"] == second["step"] == STEPS
    assert first["history"] == second["history"] == [2, 4, 6]
    assert first["graph"] == second["graph"]
    assert first["params"] == second["params"]
    # the ranks saw different shards, and the graph is the one of all their activations
    assert first["samples"] != second["samples"]
    expected = make_learned().build(torch.tensor(first["samples"] + second["samples"]))
    assert Graph.from_dict(first["graph"]).edges.tolist() == expected.edges.tolist()
