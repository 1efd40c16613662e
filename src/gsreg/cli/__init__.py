"""The ``gsreg`` command line: ``demo``, ``run``, ``list``, ``fit``, ``arrange`` and ``graph``."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from . import options

_DENSE_SPECTRUM_LIMIT = 4096  # nodes; a dense eigendecomposition beyond this takes too long


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    argv = sys.argv[1:] if argv is None else [str(arg) for arg in argv]
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "config", None) is not None:
        # the file's options become the command's defaults, then the command line is
        # parsed again over them: what it gives wins
        from .options import load_config

        command = parser.command_parsers[args.command]
        try:
            values = load_config(args.config, command)
        except (ValueError, OSError) as err:
            print(f"gsreg {args.command}: error: {_one_line(err, '')}", file=sys.stderr)
            return 2
        command.set_defaults(**values)
        args = parser.parse_args(argv)
        if args.budget is not None and args.weight is not None:  # one from each source
            setattr(args, "weight" if "weight" in values else "budget", None)
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
    from .._version import __version__

    parser = argparse.ArgumentParser(
        prog="gsreg", description="Graph Spectral Regularization for interpretable layers."
    )
    parser.add_argument("--version", action="version", version=f"gsreg {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.command_parsers = commands.choices  # {name: its parser}, for --config

    demo = commands.add_parser(
        "demo",
        help="train the MNIST autoencoder with and without an 8x8 GSR layer; write a report",
        description="Train the paper's MNIST autoencoder without GSR, with GSR and with "
        "the centred Rayleigh GSR on an 8x8 grid layer, and write report.html, "
        "metrics.json, config.json and figures/ to --out.",
    )
    demo.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    demo.add_argument("--quick", action="store_true", help="small subset, seconds")
    demo.add_argument("--epochs", type=options.positive_int, help="override the number of epochs")
    _add_run_options(demo, device=True, quiet="no progress bars")
    demo.set_defaults(handler=_demo)

    _add_fit(commands)

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
        "star:7, tree:15, wishbone:10, capsules:10x16, hex:6x8, grid3d:2x4x4, kite:3).",
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


def _add_fit(commands) -> None:
    """``gsreg fit``: its data, graph, run and estimator options, and --config."""
    fit = commands.add_parser(
        "fit",
        help="train a GSR autoencoder on your data (.npy, .csv, .tsv, .h5ad); write a report",
        description="Train a GSR autoencoder (gsreg.GSRAutoencoder) on DATA and write "
        "report.html, metrics.json, config.json, model.safetensors, embedding.npy, "
        "embedding.csv, activations.csv, modules.csv (when the layer has neuron modules) "
        "and figures/ to --out. DATA is a .npy array (samples x features), a .csv/.tsv "
        "table (read with pandas; header detected; numeric columns are used; a first "
        "column without a header, such as the index DataFrame.to_csv writes, or of text "
        "holds row names; any other non-numeric column is an error unless it is the "
        "--labels column) or an .h5ad file (anndata; X dense or sparse). Options may come "
        "from a YAML or JSON file (--config); the command line overrides it. A run "
        "replaces --out whole; --out holding anything else (or DATA) is refused before "
        "training, and a failed run leaves it as it was.",
    )
    fit.add_argument("data", metavar="DATA", nargs="?", help="data file: .npy, .csv, .tsv or .h5ad")
    fit.add_argument(
        "--config",
        metavar="FILE",
        help="YAML or JSON file of options (keys: the long options, e.g. graph, lr, "
        "batch-size; controls: false for --no-controls); options on the command line "
        "override it",
    )
    fit.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective options (defaults, --config, command line) as YAML "
        "and exit without training",
    )
    fit.add_argument(
        "--graph",
        metavar="SPEC|learned",
        help="graph on the structured layer (required): a spec such as grid:8x8 (see "
        "'gsreg graph'), or 'learned' for a graph learned from co-activations (neuron "
        "modules)",
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
        type=options.positive_int,
        help="number of epochs (default: auto, about 3000 optimiser steps, 10 to 1000 epochs)",
    )
    strength = fit.add_mutually_exclusive_group()
    strength.add_argument(
        "--budget",
        type=options.budget,
        help="share of the reconstruction loss GSR may cost; lambda is set "
        "during training to spend it (default for a fixed graph: 0.05, at "
        "most 5%% more loss than without GSR; a learned graph uses the "
        "measured learned-graph recipe unless --budget is given)",
    )
    strength.add_argument(
        "--weight",
        type=options.non_negative_float,
        help="a fixed GSR weight lambda instead of a budget (0 trains without GSR)",
    )
    fit.add_argument(
        "--no-controls",
        dest="controls",
        action="store_false",
        help="skip the controls: by default the same model is also trained with "
        "lambda = 0 (same seed, as many epochs in all, about twice the time) and the GSR "
        "layer is scored beside it as trained and arranged post hoc (fixed "
        "graphs) or clustered post hoc (learned graphs), with a verdict",
    )
    model = fit.add_argument_group("model and training (gsreg.GSRAutoencoder's parameters)")
    model.add_argument(
        "--hidden",
        type=options.positive_int,
        nargs="+",
        metavar="N",
        default=[50, 50],
        help="widths of the encoder's hidden layers (default: 50 50)",
    )
    model.add_argument(
        "--latent", type=options.positive_int, default=16, help="bottleneck width (default: 16)"
    )
    model.add_argument(
        "--decoder-hidden",
        type=options.positive_int,
        nargs="+",
        metavar="N",
        help="widths of the decoder's hidden layers (default: --hidden reversed)",
    )
    model.add_argument(
        "--layer",
        metavar="NAME",
        default="decoder.0",
        help="the structured layer: decoder.<i>, encoder.<i> or encoder.latent (the "
        "bottleneck); its width is the graph's number of nodes (default: decoder.0)",
    )
    model.add_argument(
        "--n-structured",
        type=options.positive_int,
        metavar="N",
        default=64,
        help="width of the structured layer for --graph learned (default: 64)",
    )
    model.add_argument(
        "--laplacian",
        choices=("combinatorial", "normalized", "random_walk"),
        help="graph Laplacian of the penalty (default: combinatorial for a fixed "
        "graph, normalized for a learned one)",
    )
    model.add_argument(
        "--normalize",
        choices=NORMALIZE,
        default="none",
        help="the penalty's form: none (plain), rayleigh or centered (scale-free) "
        "(default: none; the learned-graph recipe uses its own)",
    )
    model.add_argument(
        "--arrange",
        choices=ARRANGE,
        default="auto",
        help="place a fixed graph's units on it (gsreg.arrange) before GSR training: "
        "auto (under a budget), true or false (default: auto)",
    )
    model.add_argument(
        "--batch-size",
        type=options.positive_int,
        metavar="N",
        default=500,
        help="mini-batch size, cut to the number of samples (default: 500)",
    )
    model.add_argument(
        "--lr",
        type=options.positive_float,
        default=1e-3,
        help="Adam's learning rate (default: 0.001)",
    )
    model.add_argument(
        "--scale",
        choices=SCALE,
        default="global",
        help="input scaling: global (centre each feature, one common scale), standard "
        "(each feature to unit variance) or none (default: global)",
    )
    _add_run_options(fit, device=True, quiet="no progress bars")
    fit.set_defaults(handler=_fit, command_parser=fit)


#: the command line's words for GSRAutoencoder's normalize, arrange and scale values
NORMALIZE = {"none": False, "rayleigh": "rayleigh", "centered": "centered"}
ARRANGE = {"auto": "auto", "true": True, "false": False}
SCALE = {"global": "global", "standard": "standard", "none": None}


def _add_run_options(command: argparse.ArgumentParser, device: bool, quiet: str) -> None:
    """--seed, --device (when the command trains), --threads and --quiet."""
    command.add_argument("--seed", type=options.seed, default=0, help="random seed")
    if device:
        command.add_argument(
            "--device",
            type=options.device,
            default="auto",
            help="auto, cpu, cuda or cuda:N (default: auto)",
        )
    command.add_argument(
        "--threads",
        type=options.positive_int,
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
    from .options import dump_config

    if args.print_config:
        print(dump_config(args, args.command_parser), end="")
        return 0
    for value, name in ((args.data, "DATA"), (args.graph, "--graph")):
        if value is None:
            args.command_parser.error(
                f"the following arguments are required: {name} (on the command line or in --config)"
            )
    from ..datasets.files import load_data
    from . import fit

    config = fit.FitConfig(
        data=args.data,
        graph=args.graph,
        labels=args.labels,
        epochs=args.epochs,
        weight=args.weight,
        budget="auto" if args.budget is None else args.budget,
        hidden=tuple(args.hidden),
        latent=args.latent,
        decoder_hidden=None if args.decoder_hidden is None else tuple(args.decoder_hidden),
        layer=args.layer,
        n_structured=args.n_structured,
        laplacian=args.laplacian,
        normalize=NORMALIZE[args.normalize],
        arrange=ARRANGE[args.arrange],
        batch_size=args.batch_size,
        lr=args.lr,
        scale=SCALE[args.scale],
        seed=args.seed,
        device=args.device,
        controls=args.controls,
    )
    config = fit.check_config(config)
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
