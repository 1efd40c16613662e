"""How long the commands a newcomer runs take, on their own and beside one competing
CPU-bound process: `gsreg demo` (the full default run) and `gsreg fit` on a mid-size table
(10,000 samples x 100 features in 8 labelled clusters, a CSV, the default budget and
controls).

Targets on two cores: the demo at most 3 minutes alone, and each command at most twice its
own time beside the competing process. Each run is a fresh command in a child process,
timed from start to exit (imports, data, training, the report).

    python benchmarks/demo_time.py          # writes results/demo_time.json (about 8 minutes)
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _timing import environment, parser, write

IDLE_TARGET_S = 180.0
LOADED_RATIO_TARGET = 2.0


def burn() -> None:
    """One busy core, as another user's job would be."""
    while True:
        pass


def table(folder: Path, n: int, d: int = 100, clusters: int = 8) -> Path:
    """A CSV of ``n`` samples in ``clusters`` Gaussian clusters with a label column."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, size=(clusters, d))
    labels = rng.integers(clusters, size=n)
    X = centres[labels] + rng.normal(size=(n, d))
    path = folder / "table.csv"
    header = ",".join([f"f{j}" for j in range(d)] + ["label"])
    rows = [",".join(f"{v:.4f}" for v in x) + f",c{y}" for x, y in zip(X, labels, strict=True)]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def run_command(args: list[str], rows: int | None = None) -> float:
    """Seconds of ``gsreg ARGS`` from start to exit; with ``rows``, on a fresh table of
    that many samples (its path follows the subcommand)."""
    gsreg = Path(sys.executable).with_name("gsreg")
    folder = Path(tempfile.mkdtemp())
    data = [] if rows is None else [str(table(folder, rows))]
    command = [str(gsreg), args[0], *data, *args[1:], "--quiet", "--out", str(folder / "run")]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    shutil.rmtree(folder, ignore_errors=True)
    return seconds


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    commands = {
        "demo": (["demo"] + (["--quick"] if args.quick else []), None),
        "fit": (["fit", "--graph", "grid:8x8", "--labels", "label"], 2000 if args.quick else 10000),
    }
    results = {}
    for load in ("alone", "beside one competing process"):
        burner = None
        if load != "alone":
            burner = mp.get_context("spawn").Process(target=burn, daemon=True)
            burner.start()
        try:
            results[load] = {name: run_command(*command) for name, command in commands.items()}
        finally:
            if burner is not None:
                burner.terminate()
                burner.join()
    alone, loaded = results["alone"], results["beside one competing process"]
    results["targets"] = {
        "alone_s": alone["demo"],
        "alone_target_s": IDLE_TARGET_S,
        "alone_met": alone["demo"] <= IDLE_TARGET_S,
        "loaded_ratio": loaded["demo"] / alone["demo"],
        "loaded_ratio_target": LOADED_RATIO_TARGET,
        "loaded_met": loaded["demo"] / alone["demo"] <= LOADED_RATIO_TARGET,
        "fit_alone_s": alone["fit"],
        "fit_loaded_ratio": loaded["fit"] / alone["fit"],
        "fit_loaded_met": loaded["fit"] / alone["fit"] <= LOADED_RATIO_TARGET,
    }
    config = {
        name: "gsreg " + " ".join(cmd) + " --quiet" + ("" if rows is None else f" ({rows} rows)")
        for name, (cmd, rows) in commands.items()
    }
    write("demo_time", args, environment(torch.device("cpu")), config, results)
    for name in commands:
        print(f"{name}: alone {alone[name]:.0f} s, beside a competing process {loaded[name]:.0f} s")


if __name__ == "__main__":
    main()
