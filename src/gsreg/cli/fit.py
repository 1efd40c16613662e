"""``gsreg fit``: what a run is (its config and the files it writes) and the checks made
before any work; :func:`run` then trains and writes through :mod:`gsreg.cli.fit_run`.

This module imports nothing heavy, so that bad arguments fail within a second, before
torch and scikit-learn load.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from .. import graphs
from .._checks import check_budget, check_choice, check_int, check_real
from .._files import check_run_folder, staged_folder
from ..datasets.files import Table, load_data

OUTPUTS = (
    "report.html",
    "metrics.json",
    "config.json",
    "model.safetensors",
    "embedding.npy",
    "embedding.csv",
    "activations.csv",
    "modules.csv",
    "figures",
)
"""What a run folder may hold; ``modules.csv`` only when the layer has neuron modules."""


@dataclass(frozen=True)
class FitConfig:
    """Everything that defines a ``gsreg fit`` run; written to ``config.json``.

    The model and training fields are :class:`gsreg.GSRAutoencoder`'s parameters of the
    same name, with its defaults."""

    data: str
    graph: str = "grid:8x8"
    labels: str | None = None
    epochs: int | None = None  # None: the estimator's "auto"
    weight: float | None = None  # None: the budget sets it
    budget: float | str = "auto"  # share of the task loss GSR may cost (weight None);
    # "auto": 0.05 for a fixed graph, the measured recipe for a learned one
    hidden: tuple[int, ...] = (50, 50)
    latent: int = 16
    decoder_hidden: tuple[int, ...] | None = None  # None: hidden reversed
    layer: str = "decoder.0"
    n_structured: int = 64
    laplacian: str | None = None
    normalize: bool | str = False
    arrange: bool | str = "auto"
    batch_size: int = 500
    lr: float = 1e-3
    scale: str | None = "global"
    seed: int = 0
    device: str = "auto"
    controls: bool = True  # train the λ = 0 twin and score the GSR layer against it


LAPLACIANS = ("combinatorial", "normalized", "random_walk")


def check_config(config: FitConfig) -> FitConfig:
    """``config`` if every value is one :class:`gsreg.GSRAutoencoder` accepts, checked
    before any data is read or torch is imported; else a one-line ValueError naming the
    option."""
    config = dataclasses.replace(config, graph=graphs.check_spec(config.graph, learned=True))
    learned = config.graph == graphs.LEARNED
    if config.epochs is not None:
        check_int(config.epochs, "--epochs")
    if config.weight is not None:
        check_real(config.weight, "--weight", 0)
    elif config.budget != "auto":
        check_budget(config.budget, "--budget")
    hidden = _widths(config.hidden, "--hidden")
    decoder = hidden[::-1] if config.decoder_hidden is None else config.decoder_hidden
    decoder = _widths(decoder, "--decoder-hidden")
    check_int(config.latent, "--latent")
    check_int(config.n_structured, "--n-structured")
    check_int(config.batch_size, "--batch-size")
    check_real(config.lr, "--lr", 0, strict_min=True)
    if config.laplacian is not None:
        check_choice(config.laplacian, "--laplacian", LAPLACIANS)
    check_choice(config.normalize, "--normalize", (False, "rayleigh", "centered"))
    check_choice(config.arrange, "--arrange", ("auto", True, False))
    check_choice(config.scale, "--scale", ("global", "standard", None))
    _check_layer(config.layer, len(hidden), len(decoder))
    if config.arrange is True and learned:
        raise ValueError("--arrange true places the units on a fixed graph; --graph is learned")
    if config.arrange is True and config.weight is not None and (config.epochs or 2) < 2:
        raise ValueError(
            "--arrange true trains before and after arranging the units and needs "
            f"--epochs >= 2, got {config.epochs}"
        )
    return config


def _widths(widths, name: str) -> tuple[int, ...]:
    if isinstance(widths, (str, bytes)) or not hasattr(widths, "__len__") or not len(widths):
        raise ValueError(f"{name} must be one or more layer widths, got {widths!r}")
    return tuple(check_int(width, name) for width in widths)


def _check_layer(layer: str, n_hidden: int, n_decoder: int) -> None:
    """A layer of the autoencoder: encoder.latent, encoder.<i> or decoder.<i>."""
    part, _, index = layer.partition(".")
    sizes = {"encoder": n_hidden, "decoder": n_decoder}.get(part)
    if layer == "encoder.latent":
        return
    if sizes is None or not index.isdigit() or int(index) >= sizes:
        raise ValueError(
            f"--layer must be encoder.latent, encoder.<i> (i < {n_hidden}) or decoder.<i> "
            f"(i < {n_decoder}), got {layer!r}"
        )


def prepare_out(out: str | os.PathLike, data: str | os.PathLike, labels: str | None = None) -> Path:
    """Check before any work that ``out`` can hold the run (:func:`gsreg._files.check_run_folder`):
    a missing path or a previous run folder, not holding the data or labels file; nothing
    is created. Returns ``out`` as an absolute path."""
    inputs = [data] + ([labels] if labels is not None and Path(labels).is_file() else [])
    return check_run_folder(out, OUTPUTS, inputs, command="gsreg fit")


def run(
    config: FitConfig, out: str | os.PathLike, table: Table | None = None, progress: bool = True
) -> dict:
    """Train on ``config.data`` (or the already loaded ``table``) and write the run folder
    ``out``. Returns the metrics written to ``metrics.json``.

    Everything is written into a staging folder next to ``out`` and swapped in whole at
    the end (:func:`gsreg._files.staged_folder`): ``out`` then holds this run and nothing
    else, and a run that fails leaves it as it was.
    """
    config = check_config(config)
    out = prepare_out(out, config.data, config.labels)
    if table is None:
        table = load_data(config.data, config.labels)
    from .fit_run import write_run  # torch, scikit-learn: only now that the input is checked

    with staged_folder(out) as staging:
        return write_run(config, table, staging, progress)
