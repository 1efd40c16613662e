"""The ``gsreg`` command line: ``demo``, ``run``, ``list``, ``fit``, ``arrange`` and ``graph``."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from pathlib import Path

_DENSE_SPECTRUM_LIMIT = 4096  # nodes; a dense eigendecomposition beyond this takes too long


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        with _threads(getattr(args, "threads", None)):
            return args.handler(args)
    except (ValueError, OSError) as err:  # bad input, or a full disk, a read-only folder
        print(f"gsreg {args.command}: error: {_one_line(err, args.command)}", file=sys.stderr)
        return 2


@contextlib.contextmanager
def _threads(threads: int | None):
    """``--threads``: before torch loads, through OMP_NUM_THREADS (torch reads it when it
    starts); when torch is already loaded (gsreg called from Python), set and restored."""
    if threads is None:
        yield
        return
    torch = sys.modules.get("torch")
    if torch is None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _one_line(err: BaseException, command: str) -> str:
    """The error as one line; a system error (errno) with what it hit and what it left."""
    if isinstance(err, OSError) and err.errno is not None and err.strerror:
        where = f": {err.filename}" if err.filename else ""
        staged = " (the run folder is as it was)" if command in ("fit", "arrange") else ""
        return f"{err.strerror}{where}{staged}"
    return " ".join(str(err).split())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gsreg", description="Graph Spectral Regularization for interpretable layers."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="train the MNIST autoencoder with and without an 8x8 GSR layer; write a report",
        description="Train the paper's MNIST autoencoder without GSR, with GSR and with "
        "the centred Rayleigh GSR on an 8x8 grid layer, and write report.html, "
        "metrics.json, config.json and figures/ to --out.",
    )
    demo.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    demo.add_argument("--quick", action="store_true", help="small subset, seconds")
    demo.add_argument("--epochs", type=_positive_int, help="override the number of epochs")
    _add_run_options(demo, device=True, quiet="no progress bars")
    demo.set_defaults(handler=_demo)

    fit = commands.add_parser(
        "fit",
        help="train a GSR autoencoder on your data (.npy, .csv, .tsv, .h5ad); write a report",
        description="Train a GSR autoencoder (gsreg.GSRAutoencoder) on DATA and write "
        "report.html, metrics.json, config.json, model.safetensors, embedding.npy, "
        "embedding.csv and figures/ to --out. DATA is a .npy array (samples x features), "
        "a .csv/.tsv table (header detected; numeric columns are used, a non-numeric one "
        "is an error unless it is the --labels column) or an .h5ad file (anndata; X dense "
        "or sparse). A run replaces --out whole; --out holding anything else (or DATA) is "
        "refused before training, and a failed run leaves it as it was.",
    )
    fit.add_argument("data", metavar="DATA", help="data file: .npy, .csv, .tsv or .h5ad")
    fit.add_argument(
        "--graph",
        required=True,
        metavar="SPEC|learned",
        help="graph on the structured layer: a spec such as grid:8x8 (see 'gsreg graph'), "
        "or 'learned' for a graph learned from co-activations (neuron modules)",
    )
    fit.add_argument(
        "--labels",
        metavar="COLUMN|FILE",
        help="labels for the report: a column of DATA (CSV/TSV header name, .h5ad obs "
        "column) or a file (.npy, or one label per line, optionally after a header line)",
    )
    fit.add_argument("--out", help="run folder (default: runs/fit-<DATA name>)")
    fit.add_argument(
        "--epochs",
        type=_positive_int,
        help="number of epochs (default: auto, about 3000 optimiser steps, 10 to 1000 epochs)",
    )
    strength = fit.add_mutually_exclusive_group()
    strength.add_argument(
        "--budget",
        type=_budget,
        help="share of the reconstruction loss GSR may cost; lambda is set "
        "during training to spend it (default for a fixed graph: 0.05, at "
        "most 5%% more loss than without GSR; a learned graph uses the "
        "measured learned-graph recipe unless --budget is given)",
    )
    strength.add_argument(
        "--weight",
        type=_non_negative_float,
        help="a fixed GSR weight lambda instead of a budget (0 trains without GSR)",
    )
    fit.add_argument(
        "--no-controls",
        dest="controls",
        action="store_false",
        help="skip the controls: by default the same model is also trained with "
        "lambda = 0 (same seed and epochs, about twice the time) and the GSR "
        "layer is scored beside it as trained and arranged post hoc (fixed "
        "graphs) or clustered post hoc (learned graphs), with a verdict",
    )
    _add_run_options(fit, device=True, quiet="no progress bar")
    fit.set_defaults(handler=_fit)

    arrange = commands.add_parser(
        "arrange",
        help="place a saved model's layer on a graph post hoc (same function); write a report",
        description="Load MODEL (a file written by gsreg.save, e.g. a gsreg fit run's "
        "model.safetensors), permute the units of --layer onto --graph so that their "
        "activations on DATA are smooth on it (gsreg.arrange; the model computes the same "
        "function), and write model.safetensors, perm.npy, metrics.json, config.json, "
        "report.html and figures/ to --out. A fitted estimator's input scaling is applied "
        "to DATA; for other models DATA must already be the model's input. A run replaces "
        "--out whole (anything else in it is refused) and a failed run leaves it as it was.",
    )
    arrange.add_argument("model", metavar="MODEL", help="model file written by gsreg.save")
    arrange.add_argument(
        "--layer",
        required=True,
        metavar="NAME",
        help="dotted name of the layer whose units are arranged, e.g. decoder.0",
    )
    arrange.add_argument(
        "--graph",
        required=True,
        metavar="SPEC",
        help="graph with one node per unit, e.g. grid:8x8 (see 'gsreg graph')",
    )
    arrange.add_argument(
        "--data",
        required=True,
        metavar="FILE",
        help="data file (.npy, .csv, .tsv or .h5ad) as read by gsreg fit",
    )
    arrange.add_argument(
        "--labels",
        metavar="COLUMN|FILE",
        help="labels for class maps and their scores (as in gsreg fit)",
    )
    arrange.add_argument(
        "--consumer",
        metavar="NAME",
        help="module that reads the layer's units, where a trace cannot tell",
    )
    arrange.add_argument("--out", help="run folder (default: runs/arrange-<MODEL name>)")
    _add_run_options(arrange, device=False, quiet="print only errors")
    arrange.set_defaults(handler=_arrange)

    graph = commands.add_parser(
        "graph",
        help="describe a graph spec such as grid:8x8 and optionally draw it",
        description="Print nodes, edges, components and Laplacian spectrum bounds of a "
        "graph spec (grid:8x8, torus:4x8, lines:3x2, rings:1x20, path:10, ring:10, "
        "star:7, tree:15, wishbone:10, capsules:10x16).",
    )
    graph.add_argument("spec", help="graph spec, e.g. grid:8x8")
    graph.add_argument("--plot", metavar="PNG", help="draw the graph into this PNG file")
    graph.set_defaults(handler=_graph)

    listing = commands.add_parser("list", help="name the paper's experiments, one line each")
    listing.set_defaults(handler=_list)

    run = commands.add_parser(
        "run",
        help="run one experiment of the paper (or all) and write its report",
        description="Run an experiment (see `gsreg list`) and write OUT/NAME/: report.html, "
        "metrics.json, config.json, figures/. `all` runs every one and writes OUT/index.html.",
    )
    run.add_argument("name", help="experiment name, or all")
    run.add_argument("--out", default="runs", help="folder for results (default: runs)")
    run.add_argument("--quick", action="store_true", help="small subset, seconds")
    _add_run_options(run, device=True, quiet="no progress bars")
    run.set_defaults(handler=_run)
    return parser


def _add_run_options(command: argparse.ArgumentParser, device: bool, quiet: str) -> None:
    """--seed, --device (when the command trains), --threads and --quiet."""
    command.add_argument("--seed", type=_seed, default=0, help="random seed")
    if device:
        command.add_argument(
            "--device",
            type=_device,
            default="auto",
            help="auto, cpu, cuda or cuda:N (default: auto)",
        )
    command.add_argument(
        "--threads",
        type=_positive_int,
        help="torch threads (default: all cores; gsreg makes idle threads wait passively)",
    )
    command.add_argument("--quiet", action="store_true", help=quiet)


def _demo(args: argparse.Namespace) -> int:
    from .._files import check_run_folder, staged_folder
    from ..experiments import demo, registry

    overrides = {"seed": args.seed}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    config = demo.DemoConfig.quick(**overrides) if args.quick else demo.DemoConfig(**overrides)
    out = check_run_folder(args.out, registry.RUN_FILES, command="gsreg demo")
    with staged_folder(out, registry.RUN_FILES, command="gsreg demo") as staging:
        metrics = demo.run(config, str(staging), device=args.device, progress=not args.quiet)
    budget = metrics["budget"]
    print(
        f"test MSE without GSR {metrics['test_mse_no_gsr']:.5f}, with GSR "
        f"{metrics['test_mse_gsr']:.5f} ({metrics['mse_ratio_gsr']:.3f}x); Moran's I "
        f"{metrics['morans_i_no_gsr']:.3f} without GSR, "
        f"{metrics['morans_i_no_gsr_arranged']:.3f} without GSR arranged post hoc, "
        f"{metrics['morans_i_gsr']:.3f} with GSR "
        f"({'beats' if metrics['verdict_gsr']['helps'] else 'does not beat'} the best control)"
    )
    helps = (budget["verdict_vs_controls"] or {}).get("helps")
    print(
        f"with a {budget['budget']:g} budget (the default): {budget['cost_ratio']:.3f}x the "
        f"test MSE, Moran's I {budget['morans_i']:.3f} "
        f"({'beats' if helps else 'does not beat'} the best control)"
    )
    print(f"report: {Path(args.out).resolve() / 'report.html'}")
    return 0


def _fit(args: argparse.Namespace) -> int:
    from .. import graphs
    from ..datasets.files import load_data
    from . import fit

    graph = graphs.check_spec(args.graph, learned=True)
    table = load_data(args.data, args.labels)
    out = args.out or f"runs/fit-{Path(args.data).stem}"
    fit.prepare_out(out, args.data, args.labels)
    constant = table.constant_features
    if constant:
        shown = ", ".join(constant[:5]) + (", ..." if len(constant) > 5 else "")
        print(
            f"gsreg fit: warning: {len(constant)} of {table.X.shape[1]} features are "
            f"constant ({shown}); they carry nothing to learn",
            file=sys.stderr,
        )
    config = fit.FitConfig(
        data=args.data,
        graph=graph,
        labels=args.labels,
        epochs=args.epochs,
        weight=args.weight,
        budget="auto" if args.budget is None else args.budget,
        seed=args.seed,
        device=args.device,
        controls=args.controls,
    )
    try:
        metrics = fit.run(config, out, table=table, progress=not args.quiet)
    except RuntimeError as err:  # e.g. a loss that turned NaN; nothing was written
        raise ValueError(f"training failed: {err}") from err
    data = metrics["data"]
    print(
        f"trained on {data['n_samples']} x {data['n_features']} for {metrics['epochs']} "
        f"epochs: reconstruction MSE {metrics['train_mse']:.5g}"
    )
    for sentence in (metrics.get("note"), metrics.get("controls", {}).get("verdict_text")):
        if sentence:
            print(sentence)
    print(f"report: {Path(out).resolve() / 'report.html'}")
    return 0


def _arrange(args: argparse.Namespace) -> int:
    from . import arrange as cli_arrange

    config = cli_arrange.ArrangeConfig(
        model=args.model,
        layer=args.layer,
        graph=args.graph,
        data=args.data,
        labels=args.labels,
        consumer=args.consumer,
        seed=args.seed,
    )
    out = args.out or cli_arrange.default_out(args.model)
    metrics = cli_arrange.run(config, out)
    if not args.quiet:
        before, after = metrics["before"], metrics["after"]
        print(
            f"arranged {metrics['n_units']} units of {args.layer} on {metrics['graph']}: "
            f"energy {before['energy_standardised']:.4g} -> {after['energy_standardised']:.4g}, "
            f"Moran's I {before['morans_i_samples']:.3f} -> {after['morans_i_samples']:.3f}"
        )
        print(f"report: {Path(out).resolve() / 'report.html'}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from ..experiments import registry

    print(registry.format_list())
    return 0


def _run(args: argparse.Namespace) -> int:
    from ..experiments import registry

    options = dict(quick=args.quick, seed=args.seed, device=args.device, progress=not args.quiet)
    if args.name == "all":
        try:
            index = registry.run_all(args.out, **options)
        except registry.ExperimentsFailed as err:
            print(f"gsreg run: {err}", file=sys.stderr)
            return 1
        print(f"index: {Path(index).resolve()}")
        return 0
    folder = registry.run_experiment(args.name, args.out, **options)
    print(registry.summary_text(folder))
    return 0


def _graph(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import graphs

    g = graphs.parse(args.spec)
    count, _ = g.components()
    degrees = g.degrees()
    print(f"{g.name}: {g.n_nodes} nodes, {g.n_edges} edges, {count} component(s)")
    print(f"degrees from {degrees.min():g} to {degrees.max():g}, mean {degrees.mean():.3g}")
    if g.n_nodes <= _DENSE_SPECTRUM_LIMIT:
        eig = np.linalg.eigvalsh(g.laplacian_matrix("combinatorial").toarray())
        print(f"combinatorial Laplacian eigenvalues in [{max(eig[0], 0.0):.3g}, {eig[-1]:.3g}]")
    if args.plot:
        from .. import plotting

        fig = plotting.plot_graph(g)
        fig.savefig(args.plot, dpi=110, bbox_inches="tight")
        print(f"figure: {Path(args.plot).resolve()}")
    return 0


def _positive_int(text: str) -> int:
    from .._checks import is_int

    value = int(text)  # a ValueError here: argparse says "invalid _positive_int value"
    if not is_int(value, 1):
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    from .._checks import is_real

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text}") from None
    if not is_real(value, 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _budget(text: str) -> float:
    from .._checks import check_budget

    try:
        return check_budget(float(text), "the budget")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _seed(text: str) -> int:
    from .._checks import MAX_SEED

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, {MAX_SEED}], got {text}")
    return value


DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"


def _device(text: str) -> str:
    """auto, cpu, cuda or cuda:N (checked for availability when training starts)."""
    if re.fullmatch(DEVICE_PATTERN, text) is None:
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, got {text!r}")
    return text
