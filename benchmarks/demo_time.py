"""How long `gsreg demo` (the full default run) takes, on its own and beside one competing
CPU-bound process: the first command a newcomer runs.

Targets on two cores: at most 3 minutes alone, and at most twice that beside the
competing process. Each run is a fresh `gsreg demo --quiet` in a child process, timed
from start to exit (imports, data, the three models, the report).

    python benchmarks/demo_time.py          # writes results/demo_time.json (about 6 minutes)
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _timing import environment, parser, write

IDLE_TARGET_S = 180.0
LOADED_RATIO_TARGET = 2.0


def burn() -> None:
    """One busy core, as another user's job would be."""
    while True:
        pass


def run_demo(quick: bool) -> float:
    gsreg = Path(sys.executable).with_name("gsreg")
    out = Path(tempfile.mkdtemp()) / "demo"
    command = [str(gsreg), "demo", "--quiet", "--out", str(out)] + (["--quick"] if quick else [])
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    shutil.rmtree(out.parent, ignore_errors=True)
    return seconds


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    results = {}
    for load in ("alone", "beside one competing process"):
        burner = None
        if load != "alone":
            burner = mp.get_context("spawn").Process(target=burn, daemon=True)
            burner.start()
        try:
            results[load] = {"seconds": run_demo(args.quick)}
        finally:
            if burner is not None:
                burner.terminate()
                burner.join()
    alone = results["alone"]["seconds"]
    loaded = results["beside one competing process"]["seconds"]
    results["targets"] = {
        "alone_s": alone,
        "alone_target_s": IDLE_TARGET_S,
        "alone_met": alone <= IDLE_TARGET_S,
        "loaded_ratio": loaded / alone,
        "loaded_ratio_target": LOADED_RATIO_TARGET,
        "loaded_met": loaded / alone <= LOADED_RATIO_TARGET,
    }
    config = {"command": "gsreg demo --quiet" + (" --quick" if args.quick else "")}
    write("demo_time", args, environment(torch.device("cpu")), config, results)
    print(f"alone {alone:.0f} s, beside a competing process {loaded:.0f} s")


if __name__ == "__main__":
    main()
