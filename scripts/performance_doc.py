"""Generate docs/performance.md and docs/images/perf_penalty.png from benchmarks/results/*.json.

    python scripts/performance_doc.py [--results benchmarks/results] [--out docs/performance.md]

Every number in the page comes from the JSON written by the benchmarks (``make bench`` on
CPU, ``bash benchmarks/gpu.sh`` on CUDA); nothing is typed by hand. Quick runs
(``*.quick.json``) are ignored.
"""

from __future__ import annotations

import argparse
import json
import math
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METHOD_LABELS = {
    "floor": "floor (z*z).sum()",
    "gsreg": "gsreg GraphPenalty",
    "gsreg_csr": "gsreg, CSR path forced",
    "torch_csr": "torch.sparse CSR + autograd",
    "torch_coo": "torch.sparse COO + autograd",
    "gather": "edge gather + autograd",
    "dense": "dense einsum",
}
BENCHMARKS = ("penalty", "training_step", "learned_update", "fit_overhead", "arrange")


# ------------------------------------------------------------------------------ helpers


def load(results: Path, name: str) -> dict | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def ms(seconds: float) -> str:
    return fmt(seconds * 1e3)


def fmt(x: float, digits: int = 3) -> str:
    """``digits`` significant digits, no exponent for everyday magnitudes."""
    if x == 0 or not math.isfinite(x):
        return str(x)
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(x)))))
    return f"{x:,.{decimals}f}"


def ratio(x: float) -> str:
    return f"{fmt(x)}x"


def ratio3(x: float) -> str:
    """Three decimals, for ratios judged against a bound such as 1.10."""
    return f"{x:.3f}x"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def env_line(data: dict) -> str:
    e = data["environment"]
    load = e.get("load_average_start"), e.get("load_average_end")
    load_text = " -> ".join(str(x[0]) for x in load if x)
    return (
        f"{data['benchmark']}: {e['date_utc']}, torch {e['torch']}, {e['device']} "
        f"({e['device_name']}), {e['threads']} thread(s), {e['cpu_count']} CPU(s), "
        f"1-minute load average {load_text}"
    )


# ------------------------------------------------------------------------------ sections


def penalty_rows(data: dict, family: str) -> dict[int, dict]:
    return {r["n"]: r for r in data["results"] if r["family"] == family}


def penalty_target_rows(data: dict | None) -> list[list[str]]:
    if data is None:
        return [["penalty targets", "not run", "", "", ""]]
    rows = []
    grid = penalty_rows(data, "grid").get(16384)
    rand = penalty_rows(data, "random").get(16384)
    if grid is None:
        rows.append(["Penalty, 128x128 grid", "n = 16,384 not in the run", "", "", ""])
    else:
        m = grid["methods"]
        gs = m["gsreg"]["median_s"]
        if "dense" in m:
            dense, how = m["dense"]["median_s"], "measured"
        else:
            dense, how = extrapolated_dense(data, "grid", 16384)
        speedup = dense / gs
        rows.append(
            [
                "Penalty fwd+bwd, 128x128 grid, B = 256: dense einsum time / gsreg time",
                f"{ratio(speedup)} (dense {how}: {ms(dense)} ms; gsreg {ms(gs)} ms)",
                "",
                ">= 100x",
                status(speedup >= 100),
            ]
        )
        r = m["gsreg"]["ratio_to_floor"]
        rows.append(
            [
                "Penalty fwd+bwd, 128x128 grid: gsreg / elementwise floor",
                f"{ratio(r)} ({ms(gs)} ms vs {ms(m['floor']['median_s'])} ms)",
                ratio(m["gsreg"]["cpu_ratio_to_floor"]),
                "<= 4x",
                status(r <= 4),
            ]
        )
    if rand is not None:
        m = rand["methods"]
        r = m["gsreg"]["ratio_to_floor"]
        rows.append(
            [
                "Penalty fwd+bwd, random graph (mean degree 8), n = 16,384: gsreg / floor",
                f"{ratio(r)} ({ms(m['gsreg']['median_s'])} ms vs {ms(m['floor']['median_s'])} ms)",
                ratio(m["gsreg"]["cpu_ratio_to_floor"]),
                "<= 8x",
                status(r <= 8),
            ]
        )
    return rows


def extrapolated_dense(data: dict, family: str, n: int) -> tuple[float, str]:
    measured = {k: r for k, r in penalty_rows(data, family).items() if "dense" in r["methods"]}
    if not measured:
        return math.nan, "not measured"
    n0 = max(measured)
    t0 = measured[n0]["methods"]["dense"]["median_s"]
    return t0 * (n / n0) ** 2, f"extrapolated as n^2 from n = {n0:,}"


def status(ok: bool) -> str:
    return "met" if ok else "**missed**"


def training_target_rows(data: dict | None) -> list[list[str]]:
    if data is None or "autoencoder" not in data["results"]:
        return [["training-step targets", "not run", "", "", ""]]
    ae = data["results"]["autoencoder"]
    rows = []
    for variant, label, goal in (
        ("grid", "MNIST autoencoder step, fixed grid:8x8 GSR / unregularised", 1.10),
        (
            "learned",
            "MNIST autoencoder, learned graph (update every 100 steps) / unregularised",
            1.05,
        ),
    ):
        r = ae[variant]["ratio_to_none"]
        rows.append(
            [
                label,
                f"{ratio3(r)} ({ms(ae[variant]['median_s'])} vs {ms(ae['none']['median_s'])} ms)",
                ratio3(ae[variant]["cpu_ratio_to_none"]),
                f"<= {goal:.2f}x",
                status(r <= goal),
            ]
        )
    return rows


def learned_target_rows(data: dict | None) -> list[list[str]]:
    if data is None:
        return [["learned-graph update target", "not run", "", "", ""]]
    row = learned_row(data, 4096, 1024)
    if row is None or "knn" not in row["kernels"]:
        return [["Learned-graph update, n = 4,096, S = 1,024", "not in the run", "", "", ""]]
    t = row["kernels"]["knn"]["median_s"]
    others = ", ".join(
        f"{k} {fmt(v['median_s'])} s" for k, v in row["kernels"].items() if k != "knn"
    )
    return [
        [
            "Learned-graph update (kNN, the default), n = 4,096 neurons, 1,024 samples",
            f"{fmt(t)} s ({others})",
            "",
            "< 2 s",
            status(t < 2),
        ]
    ]


def learned_row(data: dict, n: int, samples: int) -> dict | None:
    return next((r for r in data["results"] if r["n"] == n and r["buffer_size"] == samples), None)


def fit_target_rows(data: dict | None) -> list[list[str]]:
    if data is None:
        return [["fit() target", "not run", "", "", ""]]
    rows = []
    for setting, label in (
        ("plain", "fit() / hand-written loop, no regulariser"),
        ("regularised", "fit() / hand-written loop, grid:8x8 GSR (fit also gathers logs)"),
    ):
        rs = data["results"][setting]
        r = rs["fit"]["ratio_to_hand"]
        rows.append(
            [
                label,
                f"{ratio3(r)} ({ms(rs['fit']['median_s'])} vs "
                f"{ms(rs['hand']['median_s'])} ms/step)",
                ratio3(rs["fit"]["cpu_ratio_to_hand"]),
                "<= 1.2x",
                status(r <= 1.2),
            ]
        )
    return rows


def penalty_section(data: dict, image: Path | None, title: str) -> list[str]:
    cfg = data["config"]
    out = [
        f"## {title}",
        "",
        f"Forward + backward of the penalty of z ({cfg['batch']}, n), {cfg['dtype']}; median "
        f"of {cfg['repeats']} interleaved rounds, each measurement at least "
        f"{fmt(cfg['min_measurement_s'] * 1e3)} ms of repeated calls; in brackets the ratio "
        "to the elementwise floor measured in the same round robin. `gsreg path` is the "
        "computation GraphPenalty picked (see below).",
        "",
    ]
    methods = [m for m in cfg["methods"]]
    for family in cfg["families"]:
        rows_by_n = penalty_rows(data, family)
        if not rows_by_n:
            continue
        notes: dict[str, str] = {}
        present = [m for m in methods if any(m in r["methods"] for r in rows_by_n.values())]
        rows = []
        for n, r in sorted(rows_by_n.items()):
            cells = [f"{n:,}", f"{r['n_edges']:,}", r.get("gsreg_path", "")]
            for m in present:
                if m in r["methods"]:
                    s = r["methods"][m]
                    cells.append(f"{ms(s['median_s'])} ({ratio(s['ratio_to_floor'])})")
                else:
                    reason = r["skipped"].get(m, "not run")
                    mark = notes.setdefault(reason, f"[{len(notes) + 1}]")
                    cells.append(f"skipped {mark}")
            rows.append(cells)
        graph = "grid h x w (near square)" if family == "grid" else "random, mean degree 8"
        out += [
            f"### {graph}, time in ms (ratio to floor)",
            "",
            table(["n", "edges", "gsreg path"] + [METHOD_LABELS[m] for m in present], rows),
            "",
        ]
        out += [f"{mark} {reason}." for reason, mark in notes.items()]
        if notes:
            out.append("")
        agree = max(r["max_rel_diff_vs_gsreg"] for r in rows_by_n.values())
        out += [
            f"All methods agree with gsreg's value to a relative {agree:.1e} (float32).",
            "",
        ]
    if image is not None:
        out += [f"![penalty time against width]({image.as_posix()})", ""]
    return out


def plot_penalty(data: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = [f for f in data["config"]["families"] if penalty_rows(data, f)]
    fig, axes = plt.subplots(1, len(families), figsize=(5.2 * len(families), 4.2), sharey=True)
    axes = [axes] if len(families) == 1 else list(axes)
    styles = {
        "floor": dict(color="black", linestyle="--", marker=""),
        "gsreg": dict(color="tab:red", linewidth=2.5, marker="o"),
        "gsreg_csr": dict(color="tab:orange", marker="o", linestyle=":"),
        "torch_csr": dict(color="tab:blue", marker="s"),
        "torch_coo": dict(color="tab:cyan", marker="s"),
        "gather": dict(color="tab:green", marker="^"),
        "dense": dict(color="tab:purple", marker="D"),
    }
    for ax, family in zip(axes, families, strict=True):
        rows = sorted(penalty_rows(data, family).items())
        for m in data["config"]["methods"]:
            pts = [(n, r["methods"][m]["median_s"] * 1e3) for n, r in rows if m in r["methods"]]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, label=METHOD_LABELS[m], **styles.get(m, {}))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("layer width n (neurons)")
        ax.set_title("grid" if family == "grid" else "random graph, mean degree 8")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(f"forward + backward, ms (B = {data['config']['batch']})")
    handles = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    axes[0].legend(handles.values(), handles.keys(), fontsize=8, loc="upper left")
    env = data["environment"]
    fig.suptitle(f"{title}: {env['device_name']}, {env['threads']} thread(s), torch {env['torch']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def path_speedup_lines(data: dict) -> list[str]:
    """Stencil / dense path against the CSR path, from the penalty run."""
    rows = []
    for r in sorted(penalty_rows(data, "grid").values(), key=lambda r: r["n"]):
        m = r["methods"]
        if "gsreg_csr" in m:
            rows.append(
                [
                    f"{r['n']:,}",
                    r.get("gsreg_path", ""),
                    ratio(m["gsreg"]["ratio_to_floor"]),
                    ratio(m["gsreg_csr"]["ratio_to_floor"]),
                    ratio(m["gsreg_csr"]["median_s"] / m["gsreg"]["median_s"]),
                ]
            )
    if not rows:
        return []
    return [
        table(
            ["grid n", "path taken", "gsreg / floor", "CSR path / floor", "speed-up"],
            rows,
        ),
        "",
    ]


def training_section(data: dict, title: str) -> list[str]:
    cfg = data["config"]
    out = [
        f"## {title}",
        "",
        f"Steps per second, median of interleaved blocks of {cfg['block_steps']} steps (each "
        "block of the learned variant holds exactly one graph update, whose cost is included); "
        f"GSR weight {cfg['weight']}, learned graph: {cfg['learned']['kernel']} "
        f"k = {cfg['learned']['k']}, buffer {cfg['learned']['buffer_size']}, updated every "
        f"{cfg['learned']['update_every']} steps. Data: {cfg['data']}.",
        "",
    ]
    rows = []
    for model, variants in data["results"].items():
        mc = cfg["models"][model]
        for variant, r in variants.items():
            rows.append(
                [
                    f"{model} (batch {mc['batch']}, GSR on `{mc['layer']}`)",
                    variant,
                    fmt(r["steps_per_s"]),
                    ms(r["median_s"]),
                    ratio3(r["ratio_to_none"]),
                    ratio3(r["cpu_ratio_to_none"]),
                ]
            )
    out += [
        table(
            ["model", "regulariser", "steps/s", "ms/step", "ratio", "CPU-time ratio"],
            rows,
        ),
        "",
    ]
    return out


def learned_section(data: dict, title: str) -> list[str]:
    cfg = data["config"]
    out = [
        f"## {title}",
        "",
        f"Seconds per update (median of {cfg['repeats']}): read the buffer, build the graph, "
        "count its components, build its penalty. In brackets the number of edges. Gaussian "
        f"kernel: bandwidth {cfg['gaussian']['bandwidth']}, threshold "
        f"{cfg['gaussian']['threshold']}; k = {cfg['k']} for the others.",
        "",
    ]
    notes: dict[str, str] = {}
    rows = []
    for r in data["results"]:
        cells = [f"{r['n']:,}", f"{r['buffer_size']:,}"]
        for kernel in cfg["kernels"]:
            if kernel in r["kernels"]:
                s = r["kernels"][kernel]
                cells.append(f"{fmt(s['median_s'])} ({s['n_edges']:,})")
            else:
                reason = r["skipped"].get(kernel, "not run")
                mark = notes.setdefault(reason, f"[{len(notes) + 1}]")
                cells.append(f"skipped {mark}")
        rows.append(cells)
    out += [table(["n", "samples S"] + list(cfg["kernels"]), rows), ""]
    out += [f"{mark} {reason}." for reason, mark in notes.items()]
    return out + [""]


def learned_large_section(data: dict) -> list[str]:
    """n = 16,384 neurons from 4,096 samples: exact kNN against ``profile_dims``."""
    cfg = data["config"]
    rows = []
    for r in data["results"].values():
        dims = r["profile_dims"]
        memory = r["peak_memory_mib"]
        rows.append(
            [
                "exact" if dims is None else f"profile_dims={dims}",
                fmt(r["median_s"]),
                fmt(r["cpu_median_s"]),
                ratio3(r["ratio_to_exact"]),
                "n/a" if memory is None else f"{memory:,.0f}",
                f"{r['n_edges']:,}",
                f"{r['exact_edges_kept']:.3f}",
            ]
        )
    return [
        f"## Learned graphs at n = {cfg['n']:,}",
        "",
        f"One kNN update (k = {cfg['k']}) of n = {cfg['n']:,} neurons from S = "
        f"{cfg['buffer_size']:,} buffered samples (`python benchmarks/learned_update.py "
        f"--large`), median of {cfg['repeats']} interleaved rounds; wall-clock and process "
        "CPU seconds (one thread: the CPU time is the work, whatever the machine's load). "
        "Peak memory: the resident memory one update adds at its peak, on top of the "
        "buffer. Edges kept: the fraction of the exact graph's edges that the graph has.",
        "",
        table(
            ["distances", "s", "CPU s", "vs exact", "peak MiB", "edges", "exact edges kept"],
            rows,
        ),
        "",
        "Target: one update in less than 10 s. "
        + "; ".join(
            f"{'exact' if r['profile_dims'] is None else 'profile_dims=' + str(r['profile_dims'])}"
            f": {status(r['cpu_median_s'] < 10)} in CPU time ({fmt(r['cpu_median_s'])} s), "
            f"{status(r['median_s'] < 10)} in wall-clock time ({fmt(r['median_s'])} s)"
            for r in data["results"].values()
        )
        + ".",
        "",
    ]


def threads_section(data: dict) -> list[str]:
    """Thread counts and OpenMP wait policies, idle and beside a competing process."""
    cfg = data["config"]
    rows = [
        [
            load,
            str(r["threads"]),
            r["wait_policy"],
            fmt(r["median_epoch_s"]),
            ratio(r["ratio_to_1_thread"]),
        ]
        for load, results in data["results"].items()
        for r in results
    ]
    return [
        "## Threads",
        "",
        f"One epoch of the demo's model (784-50-50-16-64-50-784, GSR on the 8x8 layer, batch "
        f"500, {cfg['n_samples']:,} samples) in a fresh process per contender "
        f"(`python benchmarks/threads.py`), median of {cfg['rounds']} interleaved rounds on "
        f"{cfg['cores']} cores; the ratio is against one thread with the default wait policy "
        "in the same round. Threads that spin while they wait (OpenMP's default) stall each "
        "other when the cores are shared; waiting passively they do not. gsreg therefore sets "
        "`OMP_WAIT_POLICY=PASSIVE` when it is imported before torch (a value you set is "
        "kept) and leaves the thread count to torch (`--threads`, `threads=` to change it). "
        "The machine was shared while this ran: 'idle' means no competing process of the "
        f"benchmark's own. {env_line(data)}.",
        "",
        table(["machine", "threads", "wait policy", "s / epoch", "vs 1 thread"], rows),
        "",
    ]


def compile_section(data: dict) -> list[str]:
    """Training steps with the loss under torch.compile(fullgraph=True) against eager."""
    cfg, results = data["config"], data["results"]
    rows = []
    for variant, r in results.items():
        label = "no GSR" if variant == "none" else f"GSR, {variant} path"
        if "compile_failed" in r:
            rows.append([label, ms(r["eager"]["median_s"]), "-", "-", "-", r["compile_failed"]])
            continue
        rows.append(
            [
                label,
                ms(r["eager"]["median_s"]),
                ms(r["compiled"]["median_s"]),
                ratio(r["ratio_to_eager"]),
                ratio(r["cpu_ratio_to_eager"]),
                f"{r['compile_s']:.0f} s",
            ]
        )
    note = data["environment"].get("note", "")
    ratios = [r["ratio_to_eager"] for r in results.values() if "ratio_to_eager" in r]
    if ratios and min(ratios) >= 1:
        verdict = (
            "On this model compilation does not pay: every compiled step is as slow as eager "
            f"or slower ({ratio(min(ratios))} to {ratio(max(ratios))}), plausibly because its "
            "layers are too small for fused kernels to save more than the compiled graph's "
            "own overhead (not measured apart). "
            "What the benchmark shows is that GSR adds no graph break and keeps compiled "
            "training possible, on every penalty path."
        )
    else:
        verdict = (
            f"Compiled over eager: {ratio(min(ratios))} to {ratio(max(ratios))}." if ratios else ""
        )
    return [
        "## torch.compile",
        "",
        f"A training step of {cfg['model']} (batch {cfg['batch']}, Adam) with GSR weight "
        f"{cfg['weight']:g} on `{cfg['layer']}` ({cfg['graph']}, {cfg['laplacian']} "
        "Laplacian), eager and with its loss function (forward, task loss, `reg.penalty()`) "
        f"under `torch.compile(loss, fullgraph=True, backend={cfg['backend']!r})`; backward "
        "and the optimiser step run outside, the backward graph compiled by AOTAutograd "
        "(`python benchmarks/compile.py`). The penalty is forced onto each path; every one "
        "traces as a single graph. Each variant is timed in blocks of "
        f"{cfg['block_steps']} steps, {cfg['repeats']} interleaved rounds in one process; "
        "'compiled / eager' is the median of the per-round ratios (below 1: the compiled step "
        "is faster). Compilation time is the first call's wall time (inductor keeps compiled "
        "kernels in an on-disk cache, so a run after an earlier one compiles faster). "
        f"{note[:1].upper() + note[1:]}. {env_line(data)}.",
        "",
        table(
            [
                "variant",
                "eager ms / step",
                "compiled ms / step",
                "compiled / eager",
                "CPU-time ratio",
                "compilation",
            ],
            rows,
        ),
        "",
        *([verdict, ""] if verdict else []),
    ]


def filter_penalty_section(data: dict) -> list[str]:
    """Filter penalties (gsreg.filters) against the plain penalty, one graph, with the goal."""
    cfg, results = data["config"], data["results"]
    goal = results["goal"]
    labels = {
        "plain": "plain penalty `z^T L z` (baseline)",
        "heat": f"heat filter, order {cfg['order']}, squared norm",
        "wavelet": f"spline wavelet, order {cfg['order']}, squared norm",
        "heat_l1": f"heat filter, order {cfg['order']}, L1 norm",
        "autograd": "the heat filter by autograd through the recurrence (CSR)",
    }
    rows = [
        [label, ms(results[name]["median_s"]), ratio(results[name]["ratio_to_plain"])]
        for name, label in labels.items()
        if name in results
    ]
    load = data["environment"].get("load_average_start")
    met = "met" if goal["met"] else "missed"
    return [
        "## Filter penalties",
        "",
        f"`GraphPenalty(graph, filter=f, order={cfg['order']})` forward and backward on "
        f"{cfg['graph']} (n = {cfg['n']:,}), batch {cfg['batch']}, float32, against the plain "
        "penalty in the same process (`python benchmarks/filter_penalty.py`). The squared norm "
        "is one Chebyshev series of h^2 on the stencil (K products with L, gradient saved); "
        "the L1 form needs the series of h forward and again backward. Goal: the order-"
        f"{cfg['order']} filter penalty within {goal['goal_ratio']:g}x the plain penalty: "
        f"{ratio(goal['ratio_heat_to_plain'])} for heat, {met}"
        + (f" (load average {load[0]:.1f} at the start: other work ran beside it)" if load else "")
        + f". {env_line(data)}.",
        "",
        table(["penalty", "ms / call", "vs plain"], rows),
        "",
    ]


def sae_section(data: dict) -> list[str]:
    """A topographic SAE's training step against the plain SAE's, with the goal."""
    cfg, results = data["config"], data["results"]
    labels = {
        "plain": "plain TopK SAE (baseline)",
        "grid": f"GSR on {cfg['graph']}, on the pre-activations (default)",
        "grid_codes": f"GSR on {cfg['graph']}, on the sparse codes",
    }
    rows = [
        [
            label,
            ms(results[name]["median_s"]),
            "1.00x" if name == "plain" else ratio(results[name]["ratio_to_plain"]),
        ]
        for name, label in labels.items()
        if name in results
    ]
    worst = max(results[n]["ratio_to_plain"] for n in ("grid", "grid_codes") if n in results)
    met = "met" if worst <= cfg["goal_ratio"] else "missed"
    return [
        "## Topographic sparse autoencoders",
        "",
        f"A TopK SAE training step (k = {cfg['k']}, {cfg['n_latents']:,} latents, d_in "
        f"{cfg['d_in']}, batch {cfg['batch']}, {cfg['optimizer']}) with and without GSR on "
        f"{cfg['graph']}, interleaved in one process (`python benchmarks/sae.py`). Goal: at "
        f"most {cfg['goal_ratio']:g}x the plain SAE's step: {ratio(worst)} at worst, {met}. "
        f"{cfg['note'][:1].upper() + cfg['note'][1:]}. {env_line(data)}.",
        "",
        table(["SAE", "ms / step", "vs plain"], rows),
        "",
    ]


def demo_time_section(data: dict) -> list[str]:
    """`gsreg demo` and `gsreg fit` alone and beside one competing process, with targets."""
    results, cfg = data["results"], data["config"]
    t = results["targets"]
    alone, loaded = results["alone"], results["beside one competing process"]
    return [
        "## The commands a newcomer runs",
        "",
        "From start to exit, each in a fresh process (`python benchmarks/demo_time.py`), alone "
        "and beside one competing CPU-bound process:",
        "",
        f"- `{cfg['demo']}`: {alone['demo']:.0f} s alone (target at most "
        f"{t['alone_target_s']:.0f} s: {status(t['alone_met'])}) and {loaded['demo']:.0f} s "
        f"beside the competing process, {t['loaded_ratio']:.2f}x (target at most "
        f"{t['loaded_ratio_target']:g}x: {status(t['loaded_met'])}).",
        f"- `{cfg['fit']}`: {alone['fit']:.0f} s alone and {loaded['fit']:.0f} s beside the "
        f"competing process, {t['fit_loaded_ratio']:.2f}x (target at most "
        f"{t['loaded_ratio_target']:g}x: {status(t['fit_loaded_met'])}).",
        "",
        f"{env_line(data)}.",
        "",
    ]


def fit_section(data: dict) -> list[str]:
    cfg = data["config"]
    rows = []
    for setting, rs in data["results"].items():
        for kind in ("hand", "fit"):
            r = rs[kind]
            rows.append(
                [
                    setting,
                    "hand-written loop" if kind == "hand" else "gsreg.training.fit",
                    ms(r["median_s"]),
                    ratio3(r["ratio_to_hand"]),
                    ratio3(r["cpu_ratio_to_hand"]),
                ]
            )
    return [
        "## fit() against a hand-written loop",
        "",
        f"{cfg['model']}, batch {cfg['batch']}, Adam, {cfg['epochs']} epochs of "
        f"{cfg['data']} ({cfg['steps_per_call']} steps per call, optimiser creation "
        f"included), median of {cfg['repeats']} interleaved calls. Regularised: "
        f"{cfg['regularizer']}.",
        "",
        table(["setting", "loop", "ms/step", "ratio", "CPU-time ratio"], rows),
        "",
    ]


def missed_notes(pen, train, learned, fit) -> list[str]:
    """Why each missed target is missed, from the same data."""
    notes = []
    if train and "autoencoder" in train["results"]:
        ae = train["results"]["autoencoder"]
        base = ae["none"]["median_s"]
        for variant in ("grid", "learned"):
            if ae[variant]["ratio_to_none"] > 1.10:
                extra = (ae[variant]["median_s"] - base) * 1e6
                text = (
                    f"- Autoencoder with {variant} GSR: the regulariser adds {fmt(extra)} us "
                    f"to a {fmt(base * 1e6)} us step. The regularised layer has 64 neurons and "
                    "the batch 500 samples, so the penalty is a handful of small tensor "
                    "operations (the forward hook, the penalty's forward and analytic "
                    "backward, the weighting, the finite check, the extra gradient sum at the "
                    "layer) whose fixed per-operation cost, not their arithmetic, makes the "
                    "overhead."
                )
                if variant == "learned":
                    over = (ae["learned"]["median_s"] - ae["grid"]["median_s"]) * 1e6
                    text += (
                        f" The learned graph costs {fmt(over)} us per step more than the fixed "
                        "grid on the same layer: the copy of every batch into "
                        "its sample buffer and one graph update (kNN, component count, new "
                        "penalty) per 100 steps, both in `gsreg.coactivation`."
                    )
                notes.append(text)
    if pen:
        grid = penalty_rows(pen, "grid").get(16384)
        if grid and grid["methods"]["gsreg"]["ratio_to_floor"] > 4:
            notes.append(
                "- 128x128 grid against the floor: the stencil makes five passes over the "
                "activations (the diagonal, then two per offset) besides the energy and the "
                "gradient, the floor about three."
            )
    if learned:
        row = learned_row(learned, 4096, 1024)
        if row and "knn" in row["kernels"] and row["kernels"]["knn"]["median_s"] >= 2:
            notes.append(
                "- Learned-graph update: the n x n distance matrix is an (n x S) by (S x n) "
                "product computed in row chunks on CPU."
            )
    if fit:
        for setting, rs in fit["results"].items():
            if rs["fit"]["ratio_to_hand"] > 1.2:
                notes.append(
                    f"- fit() ({setting}): fit detaches and stores every step's loss and, with a "
                    "regulariser, sums its logs on the device every step."
                )
    return notes


# ------------------------------------------------------------------------------ page


def wrap(line: str, width: int = 92) -> str:
    """Paragraphs and bullets wrapped at ``width``; tables, headings and images kept."""
    if len(line) <= width or line.startswith(("|", "#", "!", "<")):
        return line
    indent = "  " if line.startswith("- ") else ""
    return textwrap.fill(line, width, subsequent_indent=indent, break_on_hyphens=False)


def arrange_target_rows(data: dict | None) -> list[list[str]]:
    if data is None:
        return [["gsreg.analysis.arrangement targets", "not run", "", "", ""]]
    rows = []
    for r in data["results"]:
        if r.get("target_s") is None:
            continue
        rows.append(
            [
                f"Post-hoc arrangement, n = {r['n']:,} units, {r['samples']:,} samples",
                f"{fmt(r['seconds'])} s (energy {r['arranged_vs_planted']:.3f}x the planted "
                "placement's)",
                "",
                f"< {fmt(r['target_s'])} s",
                status(r["seconds"] < r["target_s"]),
            ]
        )
    return rows


def arrange_section(data: dict) -> list[str]:
    rows = [
        [
            f"{r['n']:,}",
            fmt(r["seconds"]),
            f"{r['arranged_vs_planted']:.3f}",
            f"{r['faq_vs_planted']:.2f}" if "faq_vs_planted" in r else "not run",
            ratio(r["seconds_vs_faq"]) if "seconds_vs_faq" in r else "",
        ]
        for r in data["results"]
    ]
    return [
        "## Post-hoc arrangement",
        "",
        "`benchmarks/arrange.py`: `gsreg.analysis.arrangement` on shuffled smooth maps of a "
        "square grid (20 Gaussian bumps, noise 0.5), one thread; energy is the Dirichlet "
        "energy of the standardised activations relative to the planted placement (1 finds "
        "it; below 1 is smoother than planted). The contender is scipy's FAQ "
        "(`quadratic_assignment`) alone from its default start, in the same process: the "
        "Laplacian's rows sum to zero, so FAQ's gradient at that start (the barycentre) "
        "vanishes and it stops after one step, which is why it is fast and far from the "
        "planted placement. gsreg starts FAQ from a spectral seriation instead.",
        "",
        table(["units", "seconds", "energy vs planted", "scipy FAQ alone", "time vs FAQ"], rows),
        "",
    ]


def build(results: Path, out: Path, image: Path) -> str:
    pen, train, learned, fit, arrange = (load(results, b) for b in BENCHMARKS)
    cuda = {b: load(results, f"{b}_cuda") for b in BENCHMARKS[:3]}
    image_rel = Path("images") / image.name
    lines = [
        "# Performance",
        "",
        "<!-- generated by scripts/performance_doc.py from benchmarks/results/*.json; "
        "do not edit by hand -->",
        "",
        "How fast gsreg's penalty, regulariser, learned graphs and training loop are, measured "
        "by the scripts in `benchmarks/` (`make bench` runs them all on CPU and writes "
        "`benchmarks/results/*.json`; `bash benchmarks/gpu.sh` runs the first three on CUDA). "
        "This page is generated from those files by `python scripts/performance_doc.py`.",
        "",
        "## How the numbers are taken",
        "",
        "- Contenders are timed interleaved: one measurement of each per round, the order "
        "rotating, so that load from other processes hits all of them alike. Reported: the "
        "median over the rounds (at least 10 rounds after warm-up in full runs); a ratio is "
        "the median over the rounds of the per-round ratio, whose two times were taken "
        "moments apart in the same process.",
        "- `torch.set_num_threads` is fixed and recorded; the CPU runs use one thread: on a "
        "machine whose cores are shared with other jobs, two OpenMP threads stall each other "
        "whenever one is descheduled, which makes timings erratic rather than faster.",
        "- Beside each wall-clock ratio, the CPU-time ratio (process CPU seconds, which do not "
        "count time the process spends waiting for a core) is a check on the load's effect.",
        "- On CUDA every measurement is bracketed by `torch.cuda.synchronize()`.",
        "",
    ]
    present = [d for d in (pen, train, learned, fit, arrange) if d is not None]
    lines += ["Runs:", ""] + [f"- {env_line(d)}" for d in present]
    lines += [f"- {env_line(d)}" for d in cuda.values() if d is not None]
    lines += [""]

    target_rows = (
        penalty_target_rows(pen)
        + training_target_rows(train)
        + learned_target_rows(learned)
        + fit_target_rows(fit)
        + arrange_target_rows(arrange)
    )
    lines += [
        "## Targets (CPU)",
        "",
        table(["target", "measured (wall clock)", "CPU-time ratio", "goal", "status"], target_rows),
        "",
    ]
    notes = missed_notes(pen, train, learned, fit)
    if notes:
        lines += ["Why the missed targets are missed:", ""] + notes + [""]

    if pen is not None:
        cfg = pen["config"]
        plot_penalty(pen, image, "GSR penalty, forward + backward")
        lines += penalty_section(pen, image_rel, "The penalty against layer width")
        lines += [
            "### How gsreg computes the penalty",
            "",
            "GraphPenalty computes `S z` once in the forward pass (S = L, or its symmetric "
            "part for the random-walk Laplacian), saves it and returns the analytic gradient "
            "`2 S z` in the backward pass, in the activations' own (B, n) layout. `S z` comes "
            "from one of three paths, picked when the penalty is built:",
            "",
            f"- `stencil` (graphs whose edges (i, j) take at most "
            f"{cfg['stencil_max_offsets']} distinct offsets j - i, with at least "
            f"{cfg['stencil_nodes_per_offset']} nodes per offset: grids, tori, lines, rings, "
            "paths and their weighted subgraphs): the Laplacian stored by diagonals; per "
            "offset d, two multiply-adds of z shifted by d, one each way, into the output, "
            "over contiguous rows, with no transposes and no gathers;",
            f"- `dense` (other graphs up to {cfg['dense_max_nodes']} nodes): one dense "
            "(B, n) x (n, n) product, cheaper than any sparse kernel at that size;",
            "- `csr` (all other graphs): a sparse CSR product on the transposed activations, "
            "which the CSR kernel reads row by row, transposed back once.",
            "",
            "The path gsreg picks against its CSR path on the same grids:",
            "",
        ]
        lines += path_speedup_lines(pen)
    if train is not None:
        lines += training_section(train, "Training steps")
    if learned is not None:
        lines += learned_section(learned, "Learned-graph updates")
    # sections that need nothing but their own benchmarks/results/NAME.json
    for name, section in (
        ("learned_update_large", learned_large_section),
        ("threads", threads_section),
        ("compile", compile_section),
        ("sae", sae_section),
        ("filter_penalty", filter_penalty_section),
        ("demo_time", demo_time_section),
    ):
        data = load(results, name)
        if data is not None:
            lines += section(data)
    if fit is not None:
        lines += fit_section(fit)
    if arrange is not None:
        lines += arrange_section(arrange)

    lines += ["## CUDA", ""]
    if not any(cuda.values()):
        lines += [
            "No CUDA results yet: run `bash benchmarks/gpu.sh` on a machine with a GPU "
            "(it writes `benchmarks/results/*_cuda.json`), then this script again.",
            "",
        ]
    else:
        if cuda["penalty"]:
            cuda_image = image.with_name(image.stem + "_cuda" + image.suffix)
            plot_penalty(cuda["penalty"], cuda_image, "GSR penalty on CUDA")
            lines += penalty_section(
                cuda["penalty"], Path("images") / cuda_image.name, "The penalty on CUDA"
            )
        if cuda["training_step"]:
            lines += training_section(cuda["training_step"], "Training steps on CUDA")
        if cuda["learned_update"]:
            lines += learned_section(cuda["learned_update"], "Learned-graph updates on CUDA")

    text = "\n".join(wrap(line) for line in lines).rstrip() + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "performance.md")
    p.add_argument("--image", type=Path, default=ROOT / "docs" / "images" / "perf_penalty.png")
    args = p.parse_args()
    build(args.results, args.out, args.image)
    print(f"wrote {args.out} and {args.image}")


if __name__ == "__main__":
    main()
