"""GSR penalty forward + backward against layer width n, per method, float32, batch 256.

Methods (each call: penalty of z (B, n), then backward to z):
  floor      (z * z).sum(): one elementwise pass, the memory-bound limit
  gsreg      gsreg.GraphPenalty (combinatorial, defaults)
  gsreg_csr  the same forced onto its general CSR path (where it picks another path)
  torch_csr  autograd through torch.sparse.mm with a CSR Laplacian
  torch_coo  autograd through torch.sparse.mm with a COO Laplacian
  gather     autograd through a gather of both edge ends: sum_e w_e (z_i - z_j)^2
  dense      torch.einsum("bj,jk,bk->b") with a dense Laplacian (skipped where it would need
             more than --dense-max-gb for the matrix)
Graphs: grid h x w (near square) and a random graph with mean degree 8 (4n distinct edges).

    python benchmarks/penalty.py [--quick] [--device cuda]
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from _timing import calibrate, environment, parser, race, setup, write

from gsreg import graphs
from gsreg.penalty import (
    DENSE_MAX_NODES,
    STENCIL_MAX_OFFSETS,
    STENCIL_NODES_PER_OFFSET,
    GraphPenalty,
)

FULL_SIZES = (64, 256, 1024, 4096, 16384, 65536)
QUICK_SIZES = (64, 1024)
FAMILIES = ("grid", "random")
METHODS = ("floor", "gsreg", "gsreg_csr", "torch_csr", "torch_coo", "gather", "dense")


def make_graph(family: str, n: int, seed: int = 0) -> graphs.Graph:
    """grid h x w with h = the largest power of two <= sqrt(n), or a random graph on n nodes
    with 4n distinct edges (mean degree 8)."""
    if family == "grid":
        h = 2 ** (int(math.log2(n)) // 2)
        return graphs.grid(h, n // h)
    rng = np.random.default_rng(seed)
    n_edges = 4 * n
    edges = np.empty((0, 2), dtype=np.int64)
    while len(edges) < n_edges:
        e = rng.integers(0, n, size=(2 * n_edges, 2))
        e = np.sort(e[e[:, 0] != e[:, 1]], axis=1)
        edges = np.unique(np.concatenate([edges, e]), axis=0)
    edges = edges[rng.permutation(len(edges))[:n_edges]]
    return graphs.from_edges(n, edges, name=f"random:{n}:deg8")


def losses(g: graphs.Graph, z: torch.Tensor, dense_max_bytes: float) -> tuple[dict, dict]:
    """``{method: loss_fn}`` (each returns the scalar penalty of z, mean over samples) and
    ``{method: reason}`` for the skipped ones."""
    n, device = g.n_nodes, z.device
    skipped: dict[str, str] = {}
    fns = {"floor": lambda: (z * z).sum()}
    pen = GraphPenalty(g)
    fns["gsreg"] = lambda: pen(z)
    if pen._path != "csr":
        general = GraphPenalty(g)
        general._path = "csr"
        fns["gsreg_csr"] = lambda: general(z)
    else:
        skipped["gsreg_csr"] = "same as gsreg (the CSR path is the one in use)"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        coo = g.laplacian("combinatorial", device=device)
        csr = coo.to_sparse_csr()
    fns["torch_csr"] = lambda: (z * torch.sparse.mm(csr, z.t()).t()).sum(1).mean()
    fns["torch_coo"] = lambda: (z * torch.sparse.mm(coo, z.t()).t()).sum(1).mean()
    i, j = (torch.as_tensor(a.copy(), device=device) for a in g.edges.T)
    w = torch.tensor(g.weights, dtype=z.dtype, device=device)
    fns["gather"] = lambda: ((z[:, i] - z[:, j]).pow(2) * w).sum(1).mean()
    dense_bytes = n * n * z.element_size()
    if dense_bytes > dense_max_bytes:
        skipped["dense"] = (
            f"the dense Laplacian would take {dense_bytes / 2**30:.0f} GiB "
            f"(limit {dense_max_bytes / 2**30:.1f} GiB)"
        )
    else:
        lap = coo.to_dense()
        fns["dense"] = lambda: torch.einsum("bj,jk,bk->b", z, lap, z).mean()
    return fns, skipped


def forward_backward(z: torch.Tensor, loss_fn):
    def run():
        z.grad = None
        loss_fn().backward()

    return run


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--sizes", type=str, default=None, help="comma-separated widths")
    p.add_argument("--dense-max-gb", type=float, default=2.0)
    args = p.parse_args()
    device = setup(args)
    env = environment(device)
    sizes = (
        tuple(int(s) for s in args.sizes.split(","))
        if args.sizes
        else QUICK_SIZES
        if args.quick
        else FULL_SIZES
    )
    repeats = args.repeats or (3 if args.quick else 15)
    warmup = 1 if args.quick else 3
    target_s = 0.002 if args.quick else 0.02  # one measurement lasts at least this long
    config = {
        "batch": args.batch,
        "dtype": "float32",
        "sizes": list(sizes),
        "families": list(FAMILIES),
        "methods": list(METHODS),
        "repeats": repeats,
        "warmup": warmup,
        "min_measurement_s": target_s,
        "dense_max_gb": args.dense_max_gb,
        "stencil_max_offsets": STENCIL_MAX_OFFSETS,
        "stencil_nodes_per_offset": STENCIL_NODES_PER_OFFSET,
        "dense_max_nodes": DENSE_MAX_NODES,
    }
    results = []
    for family in FAMILIES:
        for n in sizes:
            g = make_graph(family, n)
            gen = torch.Generator().manual_seed(n)
            z = torch.randn(args.batch, n, generator=gen).to(device).requires_grad_()
            loss_fns, skipped = losses(g, z, args.dense_max_gb * 2**30)
            for name in list(loss_fns):
                try:  # e.g. an operation this device or build does not support
                    forward_backward(z, loss_fns[name])()
                except (RuntimeError, NotImplementedError) as error:
                    skipped[name] = f"failed: {type(error).__name__}: {str(error)[:200]}"
                    del loss_fns[name]
            with torch.no_grad():
                values = {k: float(f()) for k, f in loss_fns.items() if k != "floor"}
            ref = values["gsreg"]
            agreement = max(abs(v - ref) / max(abs(ref), 1e-30) for v in values.values())
            fns = {name: forward_backward(z, f) for name, f in loss_fns.items()}
            inner = {name: calibrate(fn, device, target_s, 1000) for name, fn in fns.items()}
            times = race(fns, repeats, warmup, device, inner=inner)
            floor = times.summary("floor")
            row = {
                "family": family,
                "graph": g.name,
                "n": n,
                "n_edges": g.n_edges,
                "gsreg_path": GraphPenalty(g)._path,
                "max_rel_diff_vs_gsreg": agreement,
                "methods": {},
                "skipped": skipped,
            }
            for name in times:
                s = times.summary(name)
                s["calls_per_measurement"] = inner[name]
                s["ratio_to_floor"] = times.ratio(name, "floor")
                s["cpu_ratio_to_floor"] = times.ratio(name, "floor", cpu=True)
                s["ratio_of_medians"] = s["median_s"] / floor["median_s"]
                row["methods"][name] = s
            results.append(row)
            line = ", ".join(
                f"{k} {v['median_s'] * 1e3:.3g} ms ({v['ratio_to_floor']:.2f}x)"
                for k, v in row["methods"].items()
            )
            print(f"{family:6s} n={n:6d}: {line}", flush=True)
            del fns, loss_fns, z
    write("penalty", args, env, config, results)


if __name__ == "__main__":
    main()
