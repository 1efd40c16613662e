"""The demo: the paper's MNIST autoencoder with and without GSR on an 8x8 grid layer.

Trains ``DenseAutoencoder(784, hidden=(50, 50), latent, decoder_hidden=(64, 50))`` on the
same data and seed: without GSR, with the paper's plain penalty
``lambda * mean_b z_b^T L z_b`` at a fixed λ, and as gsreg does by default: the run
without GSR, its units arranged on the grid, then fine-tuned with the λ that spends a
task-loss budget of 5%. GSR acts on the 64 post-activation units of the first decoder
layer laid out as an 8x8 grid. It reports the cost to the main task (test MSE) beside
the structure gained (Moran's I of class maps) and its controls.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import analysis, graphs, plotting
from ..report import RunFolder, Section, prose
from ._config import public_fields, write_config_and_metrics
from ._figures import save_figures
from ._training import load_mnist, train_variants
from .mnist_grid_ae import (
    CLASS_MAP_FIGURES,
    Variant,
    budget_sentence,
    budget_summary,
    budget_variant,
    class_map_plots,
    class_map_sections,
    control_summary,
    controls_text,
    table_rows,
    train_variant,
    verdict_rows,
    with_arranged_reference,
    with_controls,
)

#: the figures a run writes (``figures/<name>.png``), in report order
FIGURES = (*CLASS_MAP_FIGURES, "training")


@dataclass(frozen=True)
class DemoConfig:
    """Everything that defines a demo run; written to ``config.json``."""

    graph: str = "grid:8x8"
    layer: str = "decoder.0"
    weight: float = 1e-2
    budget: float = 0.05
    latent: int = 16
    epochs: int = 40
    batch_size: int = 500
    lr: float = 1e-3
    n_train: int | None = None
    n_test: int | None = None
    seed: int = 0

    @classmethod
    def quick(cls, **overrides) -> DemoConfig:
        """A seconds-long run on a small MNIST subset (for tests and a first look)."""
        return cls(**{"epochs": 3, "n_train": 3000, "n_test": 1000, **overrides})


def _variants(config: DemoConfig) -> list[Variant]:
    return [
        Variant("none", "no GSR", 0.0, False),
        Variant("gsr", f"GSR λ={config.weight:g}", config.weight, False),
        budget_variant(config.budget),
    ]


def variant_keys(config: DemoConfig) -> list[str]:
    """The keys of the models a run of ``config`` trains (``metrics["models"]``), in order."""
    return [variant.key for variant in _variants(config)]


def title(config: DemoConfig) -> str:
    """The report's title."""
    return f"gsreg demo: MNIST autoencoder with a {config.graph} GSR layer"


def run(config: DemoConfig, out: str, device: str = "auto", progress: bool = True) -> dict:
    """Train, analyse and write ``out/`` (report.html, metrics.json, config.json, figures/).

    Returns the metrics written to ``metrics.json``.
    """
    folder = RunFolder(out)
    graph = graphs.parse(config.graph)
    data = load_mnist(config)
    results, histories = train_variants(
        _variants(config), train_variant, config, graph, data, device, progress
    )
    metrics = _metrics(config, results)
    write_config_and_metrics(folder, config, metrics)
    figures = _figures(folder, config, graph, data, results, histories)
    folder.write_report(title(config), _sections(config, metrics, figures))
    return metrics


def _metrics(config: DemoConfig, results: dict) -> dict:
    base = results["none"]["test_mse"]
    models = with_controls(
        {key: public_fields(r) | {"mse_ratio": r["test_mse"] / base} for key, r in results.items()},
        reference="none",
    )
    return {
        "data": {"name": "mnist", "n_train": config.n_train, "n_test": config.n_test},
        "graph": config.graph,
        "layer": config.layer,
        "models": models,
        "controls": control_summary(models["none"]),
        "test_mse_no_gsr": base,
        "test_mse_gsr": models["gsr"]["test_mse"],
        "mse_ratio_gsr": models["gsr"]["mse_ratio"],
        "morans_i_no_gsr": models["none"]["morans_i"],
        "morans_i_no_gsr_arranged": models["none"]["arranged"]["morans_i"],
        "morans_i_gsr": models["gsr"]["morans_i"],
        "verdict_gsr": models["gsr"]["verdict_vs_controls"],
        "budget": budget_summary(models),
    }


def _figures(folder, config, graph, data, results, histories) -> dict[str, str]:
    rows = with_arranged_reference(list(results.values()))
    plots = {
        **class_map_plots(rows, graph, list(data.classes)),
        "training": plotting.plot_history(histories, keys=("task_loss",)),
    }
    return save_figures(folder, plots, FIGURES)


def _sections(config: DemoConfig, metrics: dict, figures: dict[str, str]) -> list[Section]:
    models = metrics["models"]
    rows = table_rows(
        models,
        lambda m: {
            "test MSE": f"{m['test_mse']:.5f}",
            "MSE vs no GSR": f"{m['mse_ratio']:.3f}x",
        },
    )
    gsr, none = models["gsr"], models["none"]
    summary = prose(
        "demo/summary.txt",
        epochs=config.epochs,
        seed=config.seed,
        graph=config.graph,
        layer=config.layer,
        weight=config.weight,
        gsr=gsr,
        base=none,
        change=direction(none["morans_i"], gsr["morans_i"]),
        verdict=analysis.map_verdict_text(
            gsr["verdict_vs_controls"],
            f"GSR λ={config.weight:g}",
            f"{gsr['mse_ratio']:.3f}x the MSE",
        ),
        budget=budget_sentence(metrics["budget"], "the test MSE"),
    )
    return [
        Section("Summary", text=summary, table=rows),
        Section("Controls", text=controls_text(), table=verdict_rows(models)),
        *class_map_sections(
            prose("demo/class_maps.txt", n_nodes=graphs.parse(config.graph).n_nodes), figures
        ),
        Section("Training", figures=[figures["training"]]),
    ]


def direction(before: float, after: float, digits: int = 3) -> str:
    """How a score moved, as the report prints it (rounded to ``digits``): "rises",
    "falls" or "stays"."""
    before, after = round(before, digits), round(after, digits)
    return "rises" if after > before else "falls" if after < before else "stays"
