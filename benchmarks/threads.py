"""How many torch threads should gsreg train with? The demo's model, timed per epoch.

Each contender is a fresh child process (the OpenMP wait policy is read once, when the
runtime starts) that trains the demo's autoencoder (784-50-50-16-64-50-784, GSR on the
8x8 grid layer, batch 500) on random MNIST-sized data and reports its median epoch time.
Contenders: intra-op threads 1, 2 and "all cores", each with OpenMP's default (active)
and passive wait policy, on an idle machine and beside one competing CPU-bound process.
Rounds interleave the contenders, so that other load hits them alike; ratios are against
one thread, active, in the same round.

    python benchmarks/threads.py            # writes results/threads.json
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import textwrap

import torch
from _timing import environment, parser, write

CHILD = textwrap.dedent(
    """
    import json, statistics, sys, time
    import torch
    from gsreg import GraphRegularizer, graphs
    from gsreg.models import DenseAutoencoder
    from gsreg.training import fit

    threads, n, epochs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    X = torch.rand(n, 784)
    model = DenseAutoencoder(784, hidden=(50, 50), latent=16, decoder_hidden=(64, 50))
    reg = GraphRegularizer(model, {"decoder.0": graphs.grid(8, 8)}, weight=1e-2)
    history = fit(model, X, regularizer=reg, epochs=epochs, batch_size=500, progress=False)
    seconds = [e["seconds"] for e in history.epochs[1:]]  # the first epoch warms up
    print(json.dumps({"median_s": statistics.median(seconds)}))
    """
)


def burn() -> None:
    """One busy core, as another user's job would be."""
    while True:
        pass


def measure(threads: int, passive: bool, n: int, epochs: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env.pop("OMP_WAIT_POLICY", None)
    if passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(threads), str(n), str(epochs)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])["median_s"]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    args = p.parse_args()
    rounds = args.repeats or (1 if args.quick else 3)
    n, epochs = (2000, 3) if args.quick else (10000, 4)
    cores = os.cpu_count() or 1
    counts = sorted({1, min(2, cores), cores})
    contenders = [(t, passive) for t in counts for passive in (False, True)]
    results = {}
    for load in ("idle", "one competing process"):
        burner = None
        if load != "idle":
            burner = mp.get_context("spawn").Process(target=burn, daemon=True)
            burner.start()
        try:
            times = {c: [] for c in contenders}
            for r in range(rounds):
                order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
                for c in order:
                    times[c].append(measure(*c, n, epochs))
        finally:
            if burner is not None:
                burner.terminate()
                burner.join()
        base = times[(1, False)]
        results[load] = [
            {
                "threads": t,
                "wait_policy": "passive" if passive else "active (default)",
                "median_epoch_s": statistics.median(times[(t, passive)]),
                "ratio_to_1_thread": statistics.median(
                    [a / b for a, b in zip(times[(t, passive)], base, strict=True)]
                ),
                "epoch_s": times[(t, passive)],
            }
            for t, passive in contenders
        ]
    config = {"n_samples": n, "epochs_timed": epochs - 1, "rounds": rounds, "cores": cores}
    write("threads", args, environment(torch.device("cpu")), config, results)
    for load, rows in results.items():
        for row in rows:
            print(
                f"{load:>22}: {row['threads']} thread(s), {row['wait_policy']:>16}: "
                f"{row['median_epoch_s']:.3f} s/epoch, {row['ratio_to_1_thread']:.2f}x 1 thread"
            )


if __name__ == "__main__":
    main()
