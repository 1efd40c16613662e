"""Training steps with the loss under torch.compile(fullgraph=True) against eager, with and
without GSR on a fixed grid:8x8 graph (combinatorial Laplacian), for each penalty path.

A step is forward, task loss (+ reg.penalty()), zero_grad, backward, Adam step
(+ reg.step()). In the compiled variants the loss function (forward, task loss and penalty)
is ``torch.compile(loss, fullgraph=True)`` (inductor; AOTAutograd compiles its backward too);
zero_grad, backward and the optimiser step run as in eager. Compilation happens in the
warm-up, and its wall time is reported apart. Variants are timed interleaved in one
process (see _timing.py); ``ratio_to_eager`` is the median per-round ratio of a compiled
variant's step time to its eager counterpart's.

    model  DenseAutoencoder(784, (50, 50), 16, (64, 50)), batch 500, Adam(1e-4, eps 1e-5),
           MSE on uniform noise; GSR (weight 1e-3) on "decoder.0" (64 neurons), the penalty
           forced onto each path: stencil (its own choice for grid:8x8), dense, csr

    python benchmarks/compile.py [--quick] [--device cuda] [--backend inductor]
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from _timing import environment, parser, race, setup, synchronize, write

from gsreg import GraphPenalty, GraphRegularizer, graphs
from gsreg.models import DenseAutoencoder

LAYER = "decoder.0"
BATCH = 500
WEIGHT = 1e-3
PATHS = ("stencil", "dense", "csr")
VARIANTS = ("none", *PATHS)  # "none": no regulariser


def make_step(variant: str, X: torch.Tensor, device: torch.device, backend: str | None):
    """One training step of ``variant`` as a closure (``backend`` None: eager)."""
    torch.manual_seed(0)
    model = DenseAutoencoder(784, (50, 50), 16, (64, 50)).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, eps=1e-5)
    reg = None
    if variant != "none":
        penalty = GraphPenalty(graphs.grid(8, 8))
        penalty._path = variant
        penalty.prepare(device)
        reg = GraphRegularizer(model, {LAYER: penalty}, weight=WEIGHT)

    def loss_of(xb):
        loss = F.mse_loss(model(xb), xb)
        return loss if reg is None else loss + reg.penalty()

    if backend is not None:
        loss_of = torch.compile(loss_of, fullgraph=True, backend=backend)
    n = len(X)
    state = {"begin": 0}

    def step():
        begin = state["begin"]
        state["begin"] = (begin + BATCH) % (n - BATCH + 1)
        loss = loss_of(X[begin : begin + BATCH])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if reg is not None:
            reg.step()

    return step


def first_call_seconds(step, device: torch.device) -> float:
    """Wall seconds of the first call (for a compiled step: its compilation)."""
    synchronize(device)
    start = time.perf_counter()
    step()
    synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--backend", default="inductor", help="torch.compile backend")
    p.add_argument("--block", type=int, default=None, help="steps per measurement")
    args = p.parse_args()
    device = setup(args)
    env = environment(device)
    env["note"] = (
        "measured on a shared machine under load from other processes; variants are "
        "interleaved so that load hits them alike, but absolute times are not reliable"
    )
    repeats = args.repeats or (3 if args.quick else 15)
    block = args.block or (5 if args.quick else 20)
    X = torch.rand(10_000, 784, generator=torch.Generator().manual_seed(0)).to(device)
    steps, compile_s, failed = {}, {}, {}
    for variant in VARIANTS:
        steps[f"eager_{variant}"] = make_step(variant, X, device, None)
        compiled = make_step(variant, X, device, args.backend)
        try:
            compile_s[variant] = first_call_seconds(compiled, device)
        except Exception as err:  # noqa: BLE001 - no compiler, unsupported backend: report it
            failed[variant] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            continue
        steps[f"compiled_{variant}"] = compiled

    def blocked(step):
        def run():
            for _ in range(block):
                step()

        return run

    times = race({name: blocked(s) for name, s in steps.items()}, repeats, 1, device)
    results = {}
    for variant in VARIANTS:
        row = {"eager": times.summary(f"eager_{variant}", block)}
        if variant in failed:
            row["compile_failed"] = failed[variant]
        else:
            row["compiled"] = times.summary(f"compiled_{variant}", block)
            row["compile_s"] = compile_s[variant]
            row["ratio_to_eager"] = times.ratio(f"compiled_{variant}", f"eager_{variant}")
            row["cpu_ratio_to_eager"] = times.ratio(
                f"compiled_{variant}", f"eager_{variant}", cpu=True
            )
        if variant != "none":
            row["eager_ratio_to_none"] = times.ratio(f"eager_{variant}", "eager_none")
        results[variant] = row
    config = {
        "model": "DenseAutoencoder(784, (50, 50), 16, (64, 50))",
        "batch": BATCH,
        "layer": LAYER,
        "graph": "grid:8x8",
        "laplacian": "combinatorial",
        "weight": WEIGHT,
        "backend": args.backend,
        "fullgraph": True,
        "compiled": "loss function (forward, task loss, penalty); backward via AOTAutograd",
        "block_steps": block,
        "repeats": repeats,
        "data": "uniform noise, 10000 x 784",
    }
    write("compile", args, env, config, results)
    for variant, row in results.items():
        print(variant, {k: v for k, v in row.items() if not isinstance(v, dict)})


if __name__ == "__main__":
    main()
