"""Shared helpers of the gsreg benchmarks: command line, environment record, timing, JSON.

Every benchmark times its contenders interleaved (one measurement of each per round, the
order rotating between rounds), so that load from other processes on a shared machine hits
all of them alike. It reports medians over the rounds, and ratios as the median over rounds
of the per-round ratio (both measured in the same round, in the same process). On CUDA every
measurement is bracketed by ``torch.cuda.synchronize``.

Running this file does nothing (``make bench`` runs every ``benchmarks/*.py``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch.set_num_threads (default 1: reproducible on a shared machine)",
    )
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default: per run)")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default: results/NAME.json)")
    return p


def setup(args: argparse.Namespace) -> torch.device:
    """Fix the thread count and seed; check the device."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda given but CUDA is not available")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return device


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(device: torch.device) -> dict:
    """What the numbers were measured on."""
    env = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "device": str(device),
        "device_name": cpu_model(),
        "load_average_start": _load_average(),
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def calibrate(fn: Callable[[], object], device: torch.device, target_s: float, limit: int) -> int:
    """Calls per measurement so that one measurement lasts about ``target_s`` (1..limit)."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    once = time.perf_counter() - start
    return max(1, min(limit, math.ceil(target_s / max(once, 1e-7))))


class Times(dict):
    """``{name: [wall-clock seconds per call, ...]}`` with the matching process CPU seconds
    in ``.cpu`` (insensitive to the process being descheduled on a shared machine; with one
    thread on CPU it is the work done, on CUDA only the host's part)."""

    def __init__(self, names):
        super().__init__((name, []) for name in names)
        self.cpu: dict[str, list[float]] = {name: [] for name in names}

    def ratio(self, name: str, base: str, cpu: bool = False) -> float:
        """Median over rounds of the per-round ratio ``name / base``: both were measured in
        the same round, close in time, so slow changes in the machine's load cancel."""
        times = self.cpu if cpu else self
        return statistics.median(a / b for a, b in zip(times[name], times[base], strict=True))

    def summary(self, name: str, per: float = 1.0) -> dict:
        """:func:`summary` of ``name`` with every time divided by ``per`` (e.g. steps)."""
        out = summary([t / per for t in self[name]])
        out["cpu_median_s"] = statistics.median(self.cpu[name]) / per
        return out


def race(
    fns: dict[str, Callable[[], object]],
    repeats: int,
    warmup: int,
    device: torch.device,
    *,
    inner: dict[str, int] | None = None,
) -> Times:
    """Seconds per call of each function: ``repeats`` interleaved rounds after ``warmup``
    calls each; a measurement averages ``inner[name]`` consecutive calls (default 1)."""
    inner = inner or {}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    synchronize(device)
    times = Times(fns)
    names = list(fns)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn, calls = fns[name], inner.get(name, 1)
            synchronize(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            for _ in range(calls):
                fn()
            synchronize(device)
            times[name].append((time.perf_counter() - start) / calls)
            times.cpu[name].append((time.process_time() - cpu_start) / calls)
    return times


def summary(seconds: list[float]) -> dict:
    """Median (the reported figure), quartiles, min and count of per-call seconds."""
    q = statistics.quantiles(seconds, n=4) if len(seconds) > 1 else [seconds[0]] * 3
    return {
        "median_s": statistics.median(seconds),
        "q1_s": q[0],
        "q3_s": q[2],
        "min_s": min(seconds),
        "repeats": len(seconds),
    }


def write(name: str, args: argparse.Namespace, env: dict, config: dict, results) -> Path:
    """Write ``{"benchmark", "quick", "environment", "config", "results"}``; quick runs go to
    ``NAME.quick.json`` so that they never replace a full run."""
    env = dict(env, load_average_end=_load_average())
    path = args.out or RESULTS / (f"{name}.quick.json" if args.quick else f"{name}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "quick": bool(args.quick),
        "environment": env,
        "config": config,
        "results": results,
    }
    path.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {path}")
    return path


if __name__ == "__main__":  # a helper module, not a benchmark
    pass
