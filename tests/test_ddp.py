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
import threading
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from _ddp_workers import (
    BATCH,
    LR,
    STEPS,
    WEIGHT,
    ddp_worker,
    global_batches,
    make_learned,
    make_model,
    shard,
    tensors_to_lists,
)
from _gloo import DEADLINE_S, WORLD_SIZE, open_store, run_workers, use_store_for_env_rendezvous
from torch.utils.data import DataLoader, TensorDataset

from gsreg import Graph, GraphRegularizer, graphs

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


def test_ddp_keeps_parameters_and_learned_graphs_equal_across_ranks(tmp_path):
    run_workers(ddp_worker, (str(tmp_path),))
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
def test_lightning_ddp_spawn_ranks_share_the_learned_graph(tmp_path, monkeypatch):
    from gsreg.integrations.lightning import GSRCallback

    store = open_store()  # held until the end of the test: no port race (see _gloo)
    use_store_for_env_rendezvous(monkeypatch, store)

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
    watchdog = _kill_children_after(DEADLINE_S)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers")
            trainer.fit(DDPAutoencoder(str(tmp_path)))
    finally:
        watchdog.cancel()
    assert store.num_keys() > 0  # the ranks met through the test's store
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
