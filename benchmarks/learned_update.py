"""CoactivationGraph update time against layer width n and buffer size S, per kernel.

One update is what ``CoactivationGraph.step`` does when it is due: read the ring buffer
(S, n), build the graph (distances in row chunks, neighbours, weights), count its connected
components and build the penalty on it. The activations are low-rank (10 factors) plus noise
through a LeakyReLU(0.2), so that neurons have real neighbours; the Gaussian kernel uses
bandwidth sqrt(S) / 2 and threshold 0.1.

    python benchmarks/learned_update.py [--quick] [--device cuda]
    python benchmarks/learned_update.py --large    # results/learned_update_large.json

``--large`` runs only n = 16,384 neurons from S = 4,096 samples with the kNN kernel, exact
and with ``profile_dims`` (randomized SVD of the profiles to that many dimensions before the
distances): seconds per update, the peak resident memory one update adds (Linux: VmHWM
after /proc/self/clear_refs, less the resident memory before it), and the fraction of the
exact graph's edges the projected graph keeps.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from _timing import environment, parser, race, setup, write

from gsreg import CoactivationGraph, coactivation

KERNELS = ("knn", "gaussian", "adaptive", "correlation")
FULL_WIDTHS = (100, 256, 1024, 4096, 16384)
FULL_BUFFERS = (256, 1024, 4096)
QUICK_WIDTHS = (100, 1024)
QUICK_BUFFERS = (256, 1024)
K = 5
# on CPU, pairs x samples n^2 S beyond which only the kNN kernel runs, and beyond which none
CPU_ALL_KERNELS_LIMIT = 2**36
CPU_KNN_LIMIT = 2**38
GAUSSIAN_MAX_WIDTH = 4096
LARGE_WIDTH, LARGE_BUFFER = 16384, 4096
LARGE_PROFILE_DIMS = (128, 256)


def activations(samples: int, n: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    factors = torch.randn(samples, 10, generator=gen)
    mixing = torch.randn(10, n, generator=gen) / math.sqrt(10)
    noise = 0.5 * torch.randn(samples, n, generator=gen)
    return F.leaky_relu(factors @ mixing + noise, 0.2).to(device)


def skip_reason(kernel: str, n: int, samples: int, device: torch.device) -> str | None:
    if kernel == "gaussian" and n > GAUSSIAN_MAX_WIDTH:
        return (
            f"the Gaussian kernel keeps a fixed fraction of all n^2/2 = {n * n // 2:.1e} pairs "
            f"at this bandwidth (their count grows as n^2); not run beyond n={GAUSSIAN_MAX_WIDTH}"
        )
    if device.type == "cpu":
        work = n * n * samples
        if work > CPU_KNN_LIMIT:
            large = " (kNN: see --large)" if (n, samples) == (LARGE_WIDTH, LARGE_BUFFER) else ""
            return f"too slow on CPU (n^2 S = 2^{math.log2(work):.0f} > 2^38){large}"
        if work > CPU_ALL_KERNELS_LIMIT and kernel != "knn":
            return f"too slow on CPU (n^2 S = 2^{math.log2(work):.0f} > 2^36: kNN only)"
    return None


def updater(kernel: str, acts: torch.Tensor, **options):
    samples, n = acts.shape
    if kernel == "gaussian":
        options["bandwidth"] = math.sqrt(samples) / 2
    lg = CoactivationGraph(kernel, k=K, update_every=1, buffer_size=samples, n_nodes=n, **options)
    lg.observe(acts)
    state = {"step": 0}

    def run():
        state["step"] += 1
        if not lg.step(state["step"]):
            raise RuntimeError("the update did not happen")

    return run, lg


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_memory_mib(fn) -> float | None:
    """Resident memory (MiB) that one call of fn adds at its peak, on Linux; else None."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        return None
    before = _status_kib("VmRSS")
    fn()
    peak = _status_kib("VmHWM")
    return None if before is None or peak is None else (peak - before) / 1024


def edge_set(graph) -> set[tuple[int, int]]:
    return set(map(tuple, graph.edges.tolist()))


def large(args, device, env) -> None:
    """n = 16,384, S = 4,096, kNN: exact against profile_dims, time, memory, kept edges."""
    repeats = args.repeats or 3
    acts = activations(LARGE_BUFFER, LARGE_WIDTH, device)
    fns, lgs = {}, {}
    fns["knn"], lgs["knn"] = updater("knn", acts)
    for dims in LARGE_PROFILE_DIMS:
        name = f"knn_dims{dims}"
        fns[name], lgs[name] = updater("knn", acts, profile_dims=dims)
    memory = {name: peak_memory_mib(fn) for name, fn in fns.items()}
    times = race(fns, repeats, 0, device)
    exact = edge_set(lgs["knn"].graph)
    results = {}
    for name in times:
        s = times.summary(name)
        s["ratio_to_exact"] = times.ratio(name, "knn")
        s["peak_memory_mib"] = memory[name]
        s["n_edges"] = lgs[name].graph.n_edges
        s["components"] = lgs[name].n_components
        s["exact_edges_kept"] = len(exact & edge_set(lgs[name].graph)) / len(exact)
        s["profile_dims"] = lgs[name].profile_dims
        results[name] = s
        print(
            f"{name}: {s['median_s']:.3g} s ({s['ratio_to_exact']:.3f}x exact), peak "
            f"+{memory[name] or float('nan'):.0f} MiB, exact edges kept "
            f"{s['exact_edges_kept']:.3f}",
            flush=True,
        )
    config = {
        "n": LARGE_WIDTH,
        "buffer_size": LARGE_BUFFER,
        "kernel": "knn",
        "k": K,
        "profile_dims": list(LARGE_PROFILE_DIMS),
        "power_iterations": coactivation.PROJECTION_POWER_ITERATIONS,
        "repeats": repeats,
        "features": "raw",
        "memory": "peak RSS added by one update (VmHWM after clear_refs, less VmRSS before)",
    }
    write("learned_update_large", args, env, config, results)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--large", action="store_true", help="only n=16,384 x S=4,096, kNN")
    args = p.parse_args()
    device = setup(args)
    env = environment(device)
    if args.large:
        large(args, device, env)
        return
    widths = QUICK_WIDTHS if args.quick else FULL_WIDTHS
    buffers = QUICK_BUFFERS if args.quick else FULL_BUFFERS
    repeats = args.repeats or (3 if args.quick else 10)
    warmup = 1
    config = {
        "kernels": list(KERNELS),
        "k": K,
        "widths": list(widths),
        "buffer_sizes": list(buffers),
        "repeats": repeats,
        "warmup": warmup,
        "gaussian": {"bandwidth": "sqrt(S) / 2", "threshold": 0.1},
        "features": "raw",
        "laplacian": "normalized",
        "cpu_all_kernels_limit_n2S": CPU_ALL_KERNELS_LIMIT,
        "cpu_knn_limit_n2S": CPU_KNN_LIMIT,
    }
    results = []
    for n in widths:
        for samples in buffers:
            acts = activations(samples, n, device)
            fns, graphs_, skipped = {}, {}, {}
            for kernel in KERNELS:
                reason = skip_reason(kernel, n, samples, device)
                if reason:
                    skipped[kernel] = reason
                else:
                    fns[kernel], graphs_[kernel] = updater(kernel, acts)
            row = {"n": n, "buffer_size": samples, "kernels": {}, "skipped": skipped}
            if fns:
                times = race(fns, repeats, warmup, device)
                for kernel in times:
                    s = times.summary(kernel)
                    s["n_edges"] = graphs_[kernel].graph.n_edges
                    s["components"] = graphs_[kernel].n_components
                    row["kernels"][kernel] = s
            results.append(row)
            line = ", ".join(f"{k} {v['median_s']:.3g} s" for k, v in row["kernels"].items())
            print(f"n={n:6d} S={samples:5d}: {line or 'all skipped'}", flush=True)
            del fns, graphs_, acts
    write("learned_update", args, env, config, results)


if __name__ == "__main__":
    main()
