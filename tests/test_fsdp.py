"""GraphRegularizer under FSDP2 (``torch.distributed.fsdp.fully_shard``): two CPU processes
on the gloo backend train a model with a fixed-graph layer and a learned-graph layer, and
everything GSR computes agrees with one process training on the concatenated batches:
the penalties (mean over the ranks), the gradients, the parameters, and the learned graph,
which is the same on both ranks and built from both ranks' activations.

Deselect with ``-m "not distributed"``.
"""

import json

import numpy as np
import pytest
import torch
import torch.distributed as dist
from _ddp_workers import (
    STEPS,
    WEIGHT,
    fsdp_worker,
    make_learned,
    make_model,
    train_fsdp_or_single,
)
from _gloo import WORLD_SIZE, run_workers

from gsreg import Graph, GraphRegularizer, graphs

try:
    from torch.distributed.fsdp import fully_shard
except ImportError:  # torch < 2.6 exposes FSDP2 only as a private module
    fully_shard = None

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.skipif(
        not (dist.is_available() and dist.is_gloo_available()),
        reason="torch.distributed with the gloo backend is not available",
    ),
    pytest.mark.skipif(fully_shard is None, reason="torch.distributed.fsdp.fully_shard missing"),
]


def one_process() -> tuple[dict, Graph]:
    """One process on the concatenated batches; its buffer holds what all ranks' do."""
    model = make_model(seed=0)
    learned = make_learned(buffer_size=WORLD_SIZE * make_learned().buffer_size)
    reg = GraphRegularizer(model, {"hidden": graphs.grid(4, 4), "code": learned}, weight=WEIGHT)
    return train_fsdp_or_single(model, reg, learned, rank=None), learned.graph


# one test, so that pytest -n 2 does not spawn the ranks once per xdist worker
def test_gsr_under_fully_shard_agrees_with_one_process_on_the_concatenated_batches(tmp_path):
    run_workers(fsdp_worker, (str(tmp_path),))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD_SIZE)]
    first, second = ranks
    reference, reference_graph = one_process()

    # FSDP2 sharded the model, and the regularizer stepped with it
    assert [r["sharded"] for r in ranks] == ["FSDPSequential"] * WORLD_SIZE
    assert [r["step"] for r in ranks] == [STEPS] * WORLD_SIZE
    assert first["history"] == second["history"] == [2, 4, 6]

    # penalties: the shards differ, so the ranks' own penalties do, but their mean is the
    # penalty of the concatenated batch; before training (fixed graph only, the learned
    # layer has no graph yet) and after it (both graphs)
    assert first["first"]["hidden"] != pytest.approx(second["first"]["hidden"])
    assert set(first["first"]) == {"hidden"}
    assert set(first["last"]) == {"hidden", "code"}
    for key in ("first", "last"):
        assert first[f"{key}_mean"] == pytest.approx(reference[key], rel=1e-5, abs=1e-7)

    # gradients of the fixed-graph penalty (reduce-scattered) and parameters after training
    assert any(torch.tensor(v).abs().sum() > 0 for v in reference["grads"].values())
    for result in ranks:
        for name, value in reference["grads"].items():
            got = torch.tensor(result["grads"][name])
            torch.testing.assert_close(got, torch.tensor(value), rtol=1e-5, atol=1e-6)
        for name, value in reference["params"].items():
            got = torch.tensor(result["params"][name])
            torch.testing.assert_close(got, torch.tensor(value), rtol=1e-4, atol=1e-6)

    # the learned graph: the same on both ranks, the graph of both ranks' buffers (not of
    # one rank's), and the graph the one-process run learned
    assert first["graph"] == second["graph"]
    graph = Graph.from_dict(first["graph"])
    expected = make_learned().build(torch.tensor(first["samples"] + second["samples"]))
    assert graph.edges.tolist() == expected.edges.tolist()
    assert graph.weights.tolist() == expected.weights.tolist()
    assert graph != make_learned().build(torch.tensor(first["samples"]))
    assert graph.edges.tolist() == reference_graph.edges.tolist()
    np.testing.assert_allclose(graph.weights, reference_graph.weights, rtol=1e-5, atol=1e-6)
