"""CoactivationGraph under torch.distributed: two CPU processes on the gloo backend build
the same graph, equal to one process's graph on the union of their activations."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from _gloo import WORLD_SIZE, run_workers, worker_group

from gsreg import CoactivationGraph, Graph

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.skipif(
        not (dist.is_available() and dist.is_gloo_available()),
        reason="torch.distributed with the gloo backend is not available",
    ),
]

KERNELS = ("knn", "adaptive")


def rank_batches(rank: int) -> list[torch.Tensor]:
    """Activations (10, 12) per batch; rank 0 sees 2 batches, rank 1 sees 3 (unequal
    lengths exercise the padding)."""
    gen = torch.Generator().manual_seed(100 + rank)
    return [torch.randn(10, 12, generator=gen) + rank for _ in range(2 + rank)]


def make(kernel: str) -> CoactivationGraph:
    return CoactivationGraph(kernel, k=3, update_every=1, buffer_size=64)


def _worker(rank: int, port: int, out_dir: str) -> None:
    with worker_group(rank, port):
        graphs = {}
        for kernel in KERNELS:
            lg = make(kernel)
            for batch in rank_batches(rank):
                lg.observe(batch)
            assert lg.step(1)
            graphs[kernel] = lg.graph.to_dict()
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(graphs))


def test_ranks_build_the_graph_of_all_ranks_activations(tmp_path):
    run_workers(_worker, (str(tmp_path),))
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD_SIZE)]
    union = torch.cat([b for r in range(WORLD_SIZE) for b in rank_batches(r)])
    for kernel in KERNELS:
        expected = make(kernel).build(union)
        local = make(kernel).build(torch.cat(rank_batches(0)))
        for result in results:
            graph = Graph.from_dict(result[kernel])
            np.testing.assert_array_equal(graph.edges, expected.edges)
            np.testing.assert_array_equal(graph.weights, expected.weights)
            assert graph != local
