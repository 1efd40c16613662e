"""Training-step time of a TopK SAE with GSR on a grid against the plain SAE, same process.

One step is :func:`gsreg.sae.train_step`: forward, loss, backward, Adam step, decoder
columns back to unit norm and ``regularizer.step()``. Contenders (float32, k = 32):
  plain       TopographicSAE(graph=None)
  grid        graph=grid:HxW, GSR on the dense pre-activations (the default)
  grid_codes  graph=grid:HxW, GSR on the sparse TopK codes (gsr_on="latents")
Full: 16,384 latents on grid:128x128, d_in 256, batch 256 (goal: grid <= 1.2x plain).
Quick: 1,024 latents on grid:32x32, a few rounds (seconds).

    python benchmarks/sae.py [--quick] [--device cuda] [--threads N]
"""

from __future__ import annotations

import torch
from _timing import calibrate, environment, parser, race, setup, write

from gsreg.sae import TopographicSAE, train_step

GOAL_RATIO = 1.2


def contenders(args, device: torch.device) -> dict:
    """``{name: step function}``, each with its own SAE, optimiser and fixed batch."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, args.d_in, generator=gen).to(device)
    spec = f"grid:{args.side}x{args.side}"
    settings = {
        "plain": {},
        "grid": {"graph": spec, "weight": 1e-3},
        "grid_codes": {"graph": spec, "weight": 1e-3, "gsr_on": "latents"},
    }
    fns = {}
    for name, kwargs in settings.items():
        sae = TopographicSAE(args.d_in, args.side**2, k=args.k, seed=0, **kwargs).to(device)
        sae.train()
        optimizer = torch.optim.Adam(sae.parameters(), lr=1e-4)
        fns[name] = lambda sae=sae, optimizer=optimizer: train_step(sae, optimizer, x)
    return fns


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--d-in", type=int, default=256)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--side", type=int, default=None, help="grid side (latents = side^2)")
    args = p.parse_args()
    args.side = args.side or (32 if args.quick else 128)
    device = setup(args)
    env = environment(device)
    repeats = args.repeats or (3 if args.quick else 9)
    warmup = 1 if args.quick else 3
    target_s = 0.01 if args.quick else 0.3
    fns = contenders(args, device)
    inner = {name: calibrate(fn, device, target_s, 50) for name, fn in fns.items()}
    times = race(fns, repeats, warmup, device, inner=inner)
    results = {}
    for name in fns:
        s = times.summary(name)
        s["steps_per_measurement"] = inner[name]
        if name != "plain":
            s["ratio_to_plain"] = times.ratio(name, "plain")
            s["cpu_ratio_to_plain"] = times.ratio(name, "plain", cpu=True)
        results[name] = s
    config = {
        "n_latents": args.side**2,
        "graph": f"grid:{args.side}x{args.side}",
        "d_in": args.d_in,
        "batch": args.batch,
        "k": args.k,
        "dtype": "float32",
        "optimizer": "Adam",
        "repeats": repeats,
        "warmup": warmup,
        "min_measurement_s": target_s,
        "goal_ratio": GOAL_RATIO,
        "note": "measured on a shared machine under load from other processes; the "
        "ratios (same round, same process) are the figures to read, not the seconds",
    }
    for name, s in results.items():
        ratio = f" ({s['ratio_to_plain']:.3f}x plain)" if "ratio_to_plain" in s else ""
        print(f"{name:10s} {s['median_s'] * 1e3:8.2f} ms/step{ratio}", flush=True)
    write("sae", args, env, config, results)


if __name__ == "__main__":
    main()
