"""The named experiments and how they are run into result folders.

``EXPERIMENTS`` maps a name to an :class:`Experiment`: a one-line description, the
expected minutes of the full run on two CPU cores and the module that holds the
experiment. A module is imported only when its experiment is used, so listing never
depends on (or waits for) every experiment's imports.

:func:`run_experiment` checks every argument before it creates anything, runs the
experiment in a hidden temporary folder next to the target and renames it into place
only when the run has finished, replacing a previous result of the same experiment only
then. A failed or interrupted run leaves the previous result (or nothing) behind.

    from gsreg.experiments import registry
    print(registry.format_list())
    folder = registry.run_experiment("rotation", "runs", quick=True)   # runs/rotation/
    index = registry.run_all("runs", quick=True)                       # runs/index.html
"""

from __future__ import annotations

import difflib
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._checks import MAX_SEED, check_int
from .._files import atomic_write, check_run_folder, staged_folder

__all__ = [
    "EXPERIMENTS",
    "Experiment",
    "ExperimentsFailed",
    "format_list",
    "get_experiment",
    "list_experiments",
    "read_run",
    "run_all",
    "run_experiment",
    "summary_text",
]

#: files an experiment writes; a folder holding anything else is not replaced
RUN_FILES = frozenset({"report.html", "metrics.json", "config.json", "run.json", "figures"})


@dataclass(frozen=True)
class Experiment:
    """One experiment of the paper.

    Attributes:
        name: what ``gsreg run NAME`` takes.
        description: one line.
        minutes: expected wall-clock minutes of the full run on two idle CPU cores.
        module: dotted path of the module holding ``config``, ``run`` and ``headline``.
        config_name: name of the config dataclass in the module (full defaults, with a
            ``quick(**overrides)`` classmethod and a ``seed`` field).
    """

    name: str
    description: str
    minutes: float
    module: str
    config_name: str

    def _module(self):
        return importlib.import_module(self.module)

    @property
    def config_class(self) -> type:
        """The config dataclass (imports the module)."""
        return getattr(self._module(), self.config_name)

    @property
    def run(self) -> Callable[..., dict]:
        """``run(config, out, device="auto", progress=True) -> metrics`` (imports the module)."""
        return self._module().run

    def headline(self, metrics: Mapping[str, Any]) -> dict[str, str]:
        """The few numbers of ``metrics`` worth showing in a list or an index."""
        return dict(self._module().headline(metrics))

    def make_config(self, quick: bool = False, seed: int = 0, **overrides: Any):
        """The full (or quick) config with ``seed`` and any field ``overrides``."""
        cls = self.config_class
        values = {"seed": seed, **overrides}
        return cls.quick(**values) if quick else cls(**values)


def _entries(*experiments: Experiment) -> dict[str, Experiment]:
    return {e.name: e for e in experiments}


EXPERIMENTS: dict[str, Experiment] = _entries(
    Experiment(
        "mnist-grid-ae",
        "MNIST autoencoder, 8x8 grid layer, λ in {0, 1e-4, ..., 1e-1}, the centred form "
        "and a 5% budget: test MSE against class-map localisation",
        minutes=6,
        module="gsreg.experiments.mnist_grid_ae",
        config_name="MnistGridAEConfig",
    ),
    Experiment(
        "mnist-grid-classifier",
        "MNIST conv classifier, 8x8 grid on the dense layer: accuracy against "
        "localisation, misclassified digits, a conv head reading the map as an image",
        minutes=3,
        module="gsreg.experiments.mnist_grid_classifier",
        config_name="MnistGridClassifierConfig",
    ),
    Experiment(
        "reconstruction-sweep",
        "none / L1 / L2 / GSR (4x8 torus) on a 32-unit latent, coefficient 1e-5 to 1e5: "
        "train and test MSE",
        minutes=8,
        module="gsreg.experiments.reconstruction_sweep",
        config_name="ReconstructionSweepConfig",
    ),
    Experiment(
        "rotation",
        "a rotating object, ring layers (20 neurons on the bottleneck; the authors' 10 "
        "behind a 3-unit bottleneck): does the activation peak follow the angle?",
        minutes=15,
        module="gsreg.experiments.rotation",
        config_name="RotationConfig",
    ),
    Experiment(
        "modules",
        "synthetic data with 3, 4 and 5 planted modules, a learned co-activation graph: "
        "do its components indicate the clusters? (ARI against the planted labels; the "
        "estimator's defaults against their target)",
        minutes=9,
        module="gsreg.experiments.modules",
        config_name="ModulesConfig",
    ),
    Experiment(
        "hierarchy",
        "modules with sub-types and on/off modules: which level of the hierarchy do the "
        "learned graph's components indicate?",
        minutes=4,
        module="gsreg.experiments.hierarchy",
        config_name="HierarchyConfig",
    ),
    Experiment(
        "hierarchy-fixed",
        "a fixed cluster graph (lines:3x2) on a 6-neuron layer of hierarchical data "
        "(3 modules x 2 sub-types): whether each line takes one module and its two nodes "
        "the sub-types",
        minutes=3,
        module="gsreg.experiments.hierarchy_fixed",
        config_name="HierarchyFixedConfig",
    ),
    Experiment(
        "trajectory",
        "branching data (DLA tree, krumsiek11 myeloid tree): a 1x10 line layer orders "
        "neurons along pseudotime; a learned graph forms branch modules",
        minutes=5,
        module="gsreg.experiments.trajectory",
        config_name="TrajectoryConfig",
    ),
    Experiment(
        "pbmc",
        "pbmc68k_reduced (700 cells, 10 cell types): learned-graph neuron modules against "
        "cell types and marker genes, beside PCA + k-means; gsreg.sc.fit's defaults",
        minutes=6,
        module="gsreg.experiments.pbmc",
        config_name="PbmcConfig",
    ),
    Experiment(
        "capsules",
        "a capsule network on MNIST with the 10x16 capsule graph: does the same node encode "
        "the same transformation in every capsule?",
        minutes=6,
        module="gsreg.experiments.capsules",
        config_name="CapsulesConfig",
    ),
    Experiment(
        "receptive-fields",
        "MNIST autoencoder, 8x8 grid layer in the decoder: whether band-pass (wavelet-like) "
        "and heat filter penalties give its neurons local, topographic receptive fields",
        minutes=5,
        module="gsreg.experiments.receptive_fields",
        config_name="ReceptiveFieldsConfig",
    ),
    Experiment(
        "topographic-sae",
        "a character-level transformer on Python source: a topographic TopK SAE (16x16 "
        "grid) against a plain one arranged post hoc: token-class maps, Moran's I, cost",
        minutes=7,
        module="gsreg.experiments.topographic_sae",
        config_name="TopographicSAEConfig",
    ),
)


class ExperimentsFailed(RuntimeError):
    """Raised by :func:`run_all` after the index is written when some experiment failed.

    Attributes:
        index: path of the index page (it lists the failures too).
        failures: ``{name: "ExceptionType: message"}``.
    """

    def __init__(self, index: Path, failures: Mapping[str, str]) -> None:
        self.index = index
        self.failures = dict(failures)
        names = ", ".join(self.failures)
        super().__init__(f"{len(self.failures)} experiment(s) failed: {names}; see {index}")


# --------------------------------------------------------------------------- listing


def list_experiments() -> list[Experiment]:
    """Every registered experiment, in registry order."""
    return list(EXPERIMENTS.values())


def format_list() -> str:
    """One line per experiment: name, description, expected minutes of the full run."""
    width = max(len(name) for name in EXPERIMENTS)
    return "\n".join(
        f"{e.name:<{width}}  {e.description} (full run ~{e.minutes:g} min on 2 CPU cores)"
        for e in EXPERIMENTS.values()
    )


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``; ValueError naming the close and the known names."""
    if not isinstance(name, str):
        raise ValueError(f"experiment name must be a string, got {name!r}")
    if name in EXPERIMENTS:
        return EXPERIMENTS[name]
    known = ", ".join(EXPERIMENTS)
    if name == "demo":
        raise ValueError(f"the demo runs with `gsreg demo`; experiments: {known}")
    if name == "all":
        raise ValueError(f"'all' runs every experiment (run_all); experiments: {known}")
    close = difflib.get_close_matches(name, list(EXPERIMENTS), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ValueError(f"unknown experiment {name!r}; {hint}experiments: {known}")


# --------------------------------------------------------------------------- running


def run_experiment(
    name: str,
    out_root: str | os.PathLike = "runs",
    quick: bool = False,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> Path:
    """Run experiment ``name`` into ``out_root/name/`` and return that folder.

    The folder holds report.html, metrics.json, figures/*.png, config.json (the config,
    ``Config(**json)`` rebuilds it) and run.json (experiment, quick, seed, device,
    seconds, versions, headline).

    Args:
        name: a key of :data:`EXPERIMENTS`.
        out_root: parent folder, created when missing.
        quick: the seconds-long configuration instead of the full one.
        seed: integer in [0, 2**32 - 1]; the config's seed.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        progress: progress bars while training.
        overrides: further config fields (e.g. ``{"epochs": 2}``), for scripts and tests.

    Raises:
        ValueError: unknown name, bad seed or device, bad config override, ``out_root``
            (or one of its parents) is a file, or ``out_root/name`` exists and is not a
            result folder of an experiment.
        PermissionError: ``out_root`` (or the parent it would be created in) is not
            writable.
        Exception: whatever the experiment raises; nothing is left behind then.
    """
    experiment, config, device = _check_run(name, seed, device, quick, overrides)
    root = _check_out_root(out_root)
    check_run_folder(root / experiment.name, RUN_FILES, command="an experiment")
    return _run_into_place(
        experiment, config, root, quick, seed, device, progress, overrides=dict(overrides or {})
    )


def run_all(
    out_root: str | os.PathLike = "runs",
    quick: bool = False,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    names: Sequence[str] | None = None,
) -> Path:
    """Run every experiment (or ``names``) and write ``out_root/index.html``; return it.

    Arguments are checked for every experiment before the first one starts. Each
    experiment runs as in :func:`run_experiment`; one that fails is recorded and the
    others still run. ``index.html`` links each report with its headline numbers and
    duration; ``index.json`` holds the same. Raises :class:`ExperimentsFailed` after
    writing the index when any experiment failed.
    """
    names = list(EXPERIMENTS) if names is None else list(dict.fromkeys(names))
    if not names:
        raise ValueError("names is empty; give at least one experiment")
    prepared = [_check_run(n, seed, device, quick, None) for n in names]
    root = _check_out_root(out_root)
    for experiment, *_ in prepared:
        check_run_folder(root / experiment.name, RUN_FILES, command="an experiment")
    for index in ("index.html", "index.json"):
        if (root / index).exists() and not (root / index).is_file():
            raise ValueError(f"{root / index} exists and is not a file; move it away first")
    entries, failures = [], {}
    for experiment, config, dev in prepared:
        start = time.perf_counter()
        try:
            folder = _run_into_place(experiment, config, root, quick, seed, dev, progress)
        except Exception as err:  # noqa: BLE001 - recorded, reported, re-raised at the end
            failures[experiment.name] = f"{type(err).__name__}: {err}"
            entries.append(
                {
                    "name": experiment.name,
                    "description": experiment.description,
                    "status": "failed",
                    "error": failures[experiment.name],
                    "seconds": time.perf_counter() - start,
                }
            )
            continue
        record = read_run(folder)
        entries.append(
            {
                "name": experiment.name,
                "description": experiment.description,
                "status": "ok",
                "report": f"{experiment.name}/report.html",
                "seconds": record.get("seconds"),
                "headline": record.get("headline", {}),
            }
        )
    root.mkdir(parents=True, exist_ok=True)  # a failed first run removed what it created
    summary = {
        "quick": quick,
        "seed": seed,
        "device": device,
        "finished": _now(),
        "experiments": entries,
    }
    atomic_write(root / "index.json", json.dumps(summary, indent=2) + "\n")
    index = root / "index.html"
    atomic_write(index, _index_html(summary))
    if failures:
        raise ExperimentsFailed(index, failures)
    return index


def read_run(folder: str | os.PathLike) -> dict:
    """The ``run.json`` of a result folder (experiment, seconds, headline, ...)."""
    return json.loads((Path(folder) / "run.json").read_text(encoding="utf-8"))


def summary_text(folder: str | os.PathLike) -> str:
    """What ``gsreg run`` prints after a run: headline numbers and where the report is."""
    record = read_run(folder)
    kind = "quick" if record["quick"] else "full"
    lines = [
        f"{record['experiment']}: {kind} run, seed {record['seed']}, "
        f"{record['seconds'] / 60:.1f} min"
    ]
    lines += [f"  {key}: {value}" for key, value in record["headline"].items()]
    lines.append(f"report: {Path(folder).resolve() / 'report.html'}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- checks


def _check_run(name, seed, device, quick, overrides):
    experiment = get_experiment(name)
    check_int(seed, "seed", minimum=0, maximum=MAX_SEED)
    if not isinstance(quick, bool):
        raise ValueError(f"quick must be True or False, got {quick!r}")
    device = _check_device(device)
    overrides = dict(overrides or {})
    if "seed" in overrides:
        raise ValueError("pass the seed as seed=, not in overrides")
    try:
        config = experiment.make_config(quick=quick, seed=seed, **overrides)
    except TypeError as err:  # an unknown field
        raise ValueError(f"bad config for {experiment.name}: {err}") from err
    return experiment, config, device


def _check_device(device: str) -> str:
    from ..training import resolve_device

    if not isinstance(device, str):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    try:
        resolved = resolve_device(device)
    except RuntimeError as err:  # torch's message for a malformed device string
        raise ValueError(f"bad device {device!r}: {err}") from err
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return device


def _check_out_root(out_root: str | os.PathLike) -> Path:
    """``out_root`` as an absolute path; the folders in it are checked by
    :func:`gsreg._files.check_run_folder`."""
    if not isinstance(out_root, (str, os.PathLike)) or os.fspath(out_root) == "":
        raise ValueError(f"out must be a folder path, got {out_root!r}")
    return Path(out_root).expanduser().absolute()


# --------------------------------------------------------------------------- atomic run


def _run_into_place(
    experiment, config, root, quick, seed, device, progress, overrides=None
) -> Path:
    target = root / experiment.name
    with staged_folder(target, RUN_FILES, command="an experiment") as staging:
        start = time.perf_counter()
        metrics = experiment.run(config, str(staging), device=device, progress=progress)
        seconds = time.perf_counter() - start
        record = _run_record(
            experiment, config, quick, seed, device, seconds, metrics, overrides or {}
        )
        atomic_write(staging / "run.json", json.dumps(record, indent=2) + "\n")
    return target


def _run_record(experiment, config, quick, seed, device, seconds, metrics, overrides) -> dict:
    import dataclasses

    import torch

    from ..report import to_jsonable

    try:
        from importlib.metadata import version

        gsreg_version = version("gsreg")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        gsreg_version = None
    try:
        headline = experiment.headline(metrics)
    except Exception as err:  # noqa: BLE001 - a headline never fails a finished run
        headline = {"headline": f"unavailable ({type(err).__name__}: {err})"}
    flags = (" --quick" if quick else "") + f" --seed {seed} --device {device}"
    rerun = f"gsreg run {experiment.name}{flags}"
    if overrides:  # not expressible on the command line; config.json holds them
        rerun = (
            f"registry.run_experiment({experiment.name!r}, OUT, quick={quick}, "
            f"seed={seed}, device={device!r}, overrides={overrides!r})"
        )
    return to_jsonable(
        {
            "experiment": experiment.name,
            "quick": quick,
            "seed": seed,
            "device": device,
            "seconds": seconds,
            "finished": _now(),
            "rerun": rerun,
            "overrides": overrides,
            "config": dataclasses.asdict(config),
            "headline": headline,
            "versions": {
                "gsreg": gsreg_version,
                "torch": torch.__version__,
                "python": sys.version.split()[0],
            },
        }
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- index


_INDEX_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}.failed{color:#a00}ul{margin:0;padding-left:1.1em}
"""


def _index_html(summary: Mapping[str, Any]) -> str:
    from markupsafe import Markup

    from ..report import render

    return render("index.html", title="gsreg experiments", css=Markup(_INDEX_CSS), **summary)
