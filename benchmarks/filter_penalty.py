"""Filter penalties against the plain GSR penalty: forward + backward, float32, batch 256.

Contenders on one graph (each call: the penalty of z (B, n), then backward to z):
  plain      gsreg.GraphPenalty(graph): mean_b z_b^T L z_b, the baseline of every ratio
  heat       GraphPenalty(graph, filter=heat(1), order=K): mean_b ||h(L) z_b||^2
  wavelet    the same with the spline wavelet (scale 1)
  heat_l1    the authors' L1 form, mean_b ||h(L) z_b||_1
  autograd   the order-K heat filter by filters.chebyshev_apply on the CSR Laplacian,
             differentiated by autograd (what a user would write without gsreg)
Graph: grid:128x128 (n = 16,384); K = 16. Goal: the order-16 filter penalty within 10x the
plain penalty's time (a Chebyshev filter of order K needs K products with L in the forward
and K in the backward; the plain penalty needs one).

    python benchmarks/filter_penalty.py [--quick] [--device cuda]
"""

from __future__ import annotations

import torch
from _timing import calibrate, environment, parser, race, setup, summary, write

from gsreg import filters, graphs
from gsreg.penalty import GraphPenalty

GOAL_RATIO = 10.0


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--order", type=int, default=16)
    p.add_argument("--batch", type=int, default=256)
    args = p.parse_args()
    device = setup(args)
    side = 32 if args.quick else 128
    graph = graphs.grid(side, side)
    z = torch.randn(args.batch, graph.n_nodes, device=device, requires_grad=True)
    order = args.order
    penalties = {
        "plain": GraphPenalty(graph),
        "heat": GraphPenalty(graph, filter=filters.heat(1.0), order=order),
        "wavelet": GraphPenalty(graph, filter=filters.wavelet(1.0), order=order),
        "heat_l1": GraphPenalty(graph, filter=filters.heat(1.0), order=order, norm="l1"),
    }
    lap = graph.laplacian(device=device).to_sparse_csr()
    coefs, lmax = filters.heat(1.0).series(graph, order, "combinatorial", None)

    def autograd_heat() -> torch.Tensor:
        y = filters.chebyshev_apply(
            z, lambda x: torch.sparse.mm(lap, x.t().contiguous()).t(), coefs, lmax
        )
        return (y * y).sum(dim=1).mean()

    def step(fn):
        def call() -> None:
            z.grad = None
            fn().backward()

        return call

    fns = {name: step(lambda pen=pen: pen(z)) for name, pen in penalties.items()}
    fns["autograd"] = step(autograd_heat)
    inner = {name: calibrate(fn, device, 0.05, 50) for name, fn in fns.items()}
    times = race(fns, repeats=5 if args.quick else 15, warmup=2, device=device, inner=inner)
    results = {
        name: {**summary(times[name]), "ratio_to_plain": times.ratio(name, "plain")} for name in fns
    }
    ratio = results["heat"]["ratio_to_plain"]
    results["goal"] = {
        "order": order,
        "ratio_heat_to_plain": ratio,
        "goal_ratio": GOAL_RATIO,
        "met": bool(ratio <= GOAL_RATIO),
    }
    config = {"graph": graph.name, "n": graph.n_nodes, "batch": args.batch, "order": order}
    path = write("filter_penalty", args, environment(device), config, results)
    for name in fns:
        print(
            f"{name:10s} {results[name]['median_s'] * 1e3:8.2f} ms  "
            f"{results[name]['ratio_to_plain']:6.2f}x plain"
        )
    print(f"goal (<= {GOAL_RATIO:g}x): {'met' if ratio <= GOAL_RATIO else 'missed'}; {path}")


if __name__ == "__main__":
    main()
