"""Do band-pass graph filters give a grid layer local receptive fields on MNIST?

The first version of the paper claims that wavelet-like (band-pass, localised) graph
filters, used as penalties on a grid layer, give its neurons local receptive fields at
little cost to the task. This experiment tests it on the MNIST autoencoder of
:mod:`gsreg.experiments.mnist_grid_ae`: ``DenseAutoencoder(784, hidden=(50, 50),
latent=16, decoder_hidden=(64, 50))`` with the 64 post-activation units of
``decoder.0`` on an 8x8 grid.

Per seed, one λ = 0 model is trained for ``epochs``; then

- λ = 0: it trains on without a penalty for :func:`gsreg.estimators.budget_epochs`
  more epochs (the same number as every penalty), units in their trained order;
- each penalty (plain GSR ``z^T L z``, the heat filter ``||exp(-tL) z||^2``, the
  band-pass Mexican-hat filter ``||h(L) z||^2``, with ``centered`` the same made
  scale-free, and with ``l1`` the authors' L1 of heat-filtered activations
  ``||exp(-tL) z||_1``) starts from the same λ = 0 model with
  its units arranged on the grid (:func:`gsreg.arrange`) and trains the same extra
  epochs with the weight a 5% budget sets (:mod:`gsreg.budget`; the weight is never
  tuned on the reported seeds).

Read-out (:func:`projective_fields`): the grid layer sits in the decoder, so a neuron's
receptive field on the image is its projective field, the Jacobian of the
reconstruction with respect to that neuron, averaged over test digits (a neuron's effect
where the data are, not at the mean code, which decodes to no digit). Per neuron the
spread (:func:`field_spread`) is the root second moment of ``|field|^2`` about its
centre, in pixels; per layer the topography (:func:`topography`) is the Spearman
correlation, over neuron pairs, between grid distance and the distance of the fields'
centres. Controls: λ = 0 as trained, λ = 0 arranged post hoc on the grid by its
activations (:func:`gsreg.analysis.arrangement`) and by its fields, and a permutation
null (neuron-to-node assignment shuffled); the cost is the test MSE against λ = 0 and
the mean ||z|| shows a penalty that only shrinks activations.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.stats import rankdata, spearmanr
from torch import nn

from .. import analysis, filters, graphs, placement
from ..budget import reference_loss
from ..datasets import Dataset
from ..estimators import ARRANGE_ROWS, budget_epochs
from ..graphs import Graph
from ..models import DenseAutoencoder
from ..penalty import GraphPenalty
from ..regularizer import GraphRegularizer
from ..report import RunFolder, Section, prose
from ..training import evaluate, fit, seeded
from ._config import check_config, training_checks, tuple_fields, write_config_and_metrics
from ._figures import save_figures
from ._training import load_mnist
from ._verdicts import CLOSE, MSE_CLOSE, against_controls, reconstruction_cost

#: the grid layer: the first decoder block (Linear + LeakyReLU), read after its activation
LAYER = "decoder.0"
#: MNIST images
IMAGE_SHAPE = (28, 28)
#: the figures a run writes (``figures/<name>.png``), in report order
FIGURES = ("fields", "spread", "topography", "tradeoff")
#: the λ = 0 model (the cost reference and the controls)
REFERENCE = "lambda_0"
#: the controls of the topography score, in report order (keys of a model's read-out)
TOPOGRAPHY_CONTROLS = {
    "topography": "λ = 0 as trained",
    "topography_arranged": "λ = 0 arranged",
    "topography_field_arranged": "λ = 0 arranged by fields",
}
NULL_CONTROL = "permutation null (95th percentile)"
#: a penalty "shrinks the layer" when its mean ||z|| is at most this share of λ = 0's
SHRINK_SHARE = 0.5
#: "more local" means a mean spread at most this share of λ = 0's (fixed before any run:
#: a few hundredths of a pixel are no receptive field)
LOCAL_SHARE = 0.9


def title(config: ReceptiveFieldsConfig) -> str:
    """The report's title."""
    return f"Receptive fields of a {config.graph} layer under graph-filter penalties"


@dataclass(frozen=True)
class ReceptiveFieldsConfig:
    """Everything that defines a run; written to ``config.json``.

    ``n_seeds`` models per variant, seeds ``seed, seed + 1, ...``; ``n_train``/``n_test``
    of ``None`` use the whole split (60 000 / 10 000). ``heat_t`` is the heat filter's
    time, ``band_scale`` the Mexican hat's scale (its response peaks at λ = 1 / scale),
    ``filter_order`` the Chebyshev order of both; ``l1`` adds the L1 heat penalty,
    ``centered`` the scale-free band-pass penalty (``normalize="centered"``).
    ``field_samples`` test digits give the averaged Jacobian; ``n_permutations`` the null.
    """

    graph: str = "grid:8x8"
    latent: int = 16
    epochs: int = 40
    batch_size: int = 500
    lr: float = 1e-3
    n_train: int | None = None
    n_test: int | None = None
    seed: int = 0
    n_seeds: int = 3
    budget: float = 0.05
    heat_t: float = 1.0
    band_scale: float = 1.0
    filter_order: int = 16
    l1: bool = True
    centered: bool = True
    field_samples: int = 1000
    n_permutations: int = 1000

    def __post_init__(self) -> None:
        tuple_fields(self)
        check_config(
            "ReceptiveFieldsConfig",
            latent=(self.latent, "positive_int"),
            n_seeds=(self.n_seeds, "positive_int"),
            budget=(self.budget, "positive"),
            heat_t=(self.heat_t, "positive"),
            band_scale=(self.band_scale, "positive"),
            filter_order=(self.filter_order, "positive_int"),
            field_samples=(self.field_samples, "positive_int"),
            n_permutations=(self.n_permutations, "positive_int"),
            **training_checks(self),
        )
        for name in ("l1", "centered"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"ReceptiveFieldsConfig.{name} must be True or False, "
                    f"got {getattr(self, name)!r}"
                )
        graph = graphs.parse(self.graph)
        if not graph.name.startswith("grid:"):
            raise ValueError(
                f"ReceptiveFieldsConfig.graph must be a grid 'grid:HxW' (its fields are laid "
                f"out on it), got {self.graph!r}"
            )
        if self.filter_order >= graph.n_nodes:
            raise ValueError(
                f"ReceptiveFieldsConfig.filter_order must be below the {graph.n_nodes} nodes "
                f"of {self.graph}, got {self.filter_order}"
            )

    @classmethod
    def quick(cls, **overrides) -> ReceptiveFieldsConfig:
        """Seconds: one seed, 600 training and 300 test digits, one epoch (+1 fine-tuning)."""
        return cls(
            **{
                "epochs": 1,
                "batch_size": 100,
                "n_train": 600,
                "n_test": 300,
                "n_seeds": 1,
                "field_samples": 200,
                "n_permutations": 200,
                **overrides,
            }
        )

    @property
    def seeds(self) -> list[int]:
        """The seeds of the run, in order."""
        return [self.seed + i for i in range(self.n_seeds)]


@dataclass(frozen=True)
class Variant:
    """One model per seed: ``penalty`` ``None`` for λ = 0, else how to build it."""

    key: str
    label: str
    penalty: str | None
    description: str


def variants(config: ReceptiveFieldsConfig) -> list[Variant]:
    """The models a run trains per seed, λ = 0 first."""
    out = [
        Variant(REFERENCE, "λ = 0", None, "no penalty"),
        Variant("gsr", "GSR", "gsr", "z^T L z (plain GSR)"),
        Variant(
            "heat",
            f"heat t={config.heat_t:g}",
            "heat",
            f"||exp(-{config.heat_t:g} L) z||^2 (low-pass)",
        ),
        Variant(
            "band",
            f"Mexican hat s={config.band_scale:g}",
            "band",
            f"||h(L) z||^2, h(λ) = x exp(1 - x), x = {config.band_scale:g} λ "
            f"(band-pass, peak at λ = {1 / config.band_scale:g})",
        ),
    ]
    if config.centered:
        out.append(
            Variant(
                "band_centered",
                f"Mexican hat s={config.band_scale:g}, centred",
                "band_centered",
                "||h(L) z||^2 / ||z - mean(z)||^2, the same band-pass filter made "
                "scale-free (shrinking z does not lower it)",
            )
        )
    if config.l1:
        out.append(
            Variant(
                "heat_l1",
                f"heat t={config.heat_t:g}, L1",
                "heat_l1",
                f"||exp(-{config.heat_t:g} L) z||_1 (the authors' L1 on heat-filtered activations)",
            )
        )
    return out


def make_penalty(kind: str, graph: Graph, config: ReceptiveFieldsConfig) -> GraphPenalty:
    """The penalty of a variant on ``graph`` (combinatorial Laplacian)."""
    if kind == "gsr":
        return GraphPenalty(graph)
    heat = filters.heat(config.heat_t)
    if kind == "heat":
        return GraphPenalty(graph, filter=heat, order=config.filter_order)
    if kind == "heat_l1":
        return GraphPenalty(graph, filter=heat, order=config.filter_order, norm="l1")
    band = filters.mexican_hat(config.band_scale)
    if kind == "band":
        return GraphPenalty(graph, filter=band, order=config.filter_order)
    if kind == "band_centered":
        return GraphPenalty(graph, filter=band, order=config.filter_order, normalize="centered")
    raise ValueError(f"unknown penalty kind {kind!r}")


# --------------------------------------------------------------------------- read-outs


def field_spread(fields: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spread and centre of each field.

    Args:
        fields: (n, H, W) one image-shaped field per neuron.

    Returns:
        ``(spread (n,), centres (n, 2))``: with ``p = |field|^2 / sum |field|^2``, the
        centre is ``sum p r`` over pixel positions ``r = (row, col)`` and the spread
        ``sqrt(sum p ||r - centre||^2)``, in pixels (for ``exp(-||r||^2 / (2 s^2))`` it is
        ``s``). An all-zero field has NaN spread and centre.
    """
    fields = np.asarray(fields, dtype=np.float64)
    if fields.ndim != 3:
        raise ValueError(f"fields must be (n, H, W), got shape {fields.shape}")
    power = fields**2
    total = power.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = power / total[:, None, None]
    rows, cols = np.indices(fields.shape[1:], dtype=np.float64)
    centre_r = (p * rows).sum(axis=(1, 2))
    centre_c = (p * cols).sum(axis=(1, 2))
    second = (
        p * ((rows - centre_r[:, None, None]) ** 2 + (cols - centre_c[:, None, None]) ** 2)
    ).sum(axis=(1, 2))
    return np.sqrt(second), np.stack([centre_r, centre_c], axis=1)


def uniform_spread(shape: Sequence[int] = IMAGE_SHAPE) -> float:
    """The spread of a field equal on every pixel of an image of ``shape`` (H, W):
    ``sqrt((H^2 - 1) / 12 + (W^2 - 1) / 12)``, no locality at all."""
    h, w = shape
    return math.sqrt((h * h - 1) / 12 + (w * w - 1) / 12)


def _upper_pairs(points: np.ndarray) -> np.ndarray:
    """Euclidean distances of every pair i < j of ``points`` (n, d): (n (n - 1) / 2,)."""
    diff = points[:, None, :] - points[None, :, :]
    dist = np.sqrt((diff**2).sum(axis=-1))
    return dist[np.triu_indices(len(points), k=1)]


def topography(centres: np.ndarray, graph: Graph) -> float:
    """Spearman correlation, over neuron pairs, between the distance of two neurons on
    the graph's drawing (``graph.coords``; lattice distance on a grid) and the distance
    of their field ``centres`` (n, 2) (node order); 1 when the fields follow the grid."""
    centres = _check_centres(centres, graph)
    rho = spearmanr(_upper_pairs(np.asarray(graph.coords, float)), _upper_pairs(centres))[0]
    return float(rho)


def topography_null(
    centres: np.ndarray, graph: Graph, n_permutations: int, seed: int
) -> dict[str, float]:
    """The permutation null of :func:`topography`: the neuron-to-node assignment shuffled
    ``n_permutations`` times (drawn with ``seed``). Returns the null's ``mean``, ``sd``,
    ``q95`` (95th percentile) and the one-sided ``p`` of the observed score
    (``(1 + #null >= observed) / (1 + n_permutations)``)."""
    centres = _check_centres(centres, graph)
    grid_ranks = rankdata(_upper_pairs(np.asarray(graph.coords, float)))
    rng = np.random.default_rng(seed)
    upper = np.triu_indices(len(centres), k=1)
    diff = centres[:, None, :] - centres[None, :, :]
    dist = np.sqrt((diff**2).sum(axis=-1))
    null = np.empty(n_permutations)
    for i in range(n_permutations):
        perm = rng.permutation(len(centres))
        ranks = rankdata(dist[np.ix_(perm, perm)][upper])
        null[i] = np.corrcoef(grid_ranks, ranks)[0, 1]
    observed = topography(centres, graph)
    return {
        "mean": float(null.mean()),
        "sd": float(null.std()),
        "q95": float(np.quantile(null, 0.95)),
        "p": float((1 + np.sum(null >= observed)) / (1 + n_permutations)),
    }


def _check_centres(centres: np.ndarray, graph: Graph) -> np.ndarray:
    centres = np.asarray(centres, dtype=np.float64)
    if centres.shape != (graph.n_nodes, 2):
        raise ValueError(
            f"centres must be ({graph.n_nodes}, 2) for {graph.name}, got {centres.shape}"
        )
    if not np.isfinite(centres).all():
        raise ValueError("centres hold NaN or Inf (an all-zero field has no centre)")
    return centres


def decoder_tail(model: DenseAutoencoder) -> nn.Sequential:
    """The part of ``model``'s decoder after the grid layer :data:`LAYER`: grid
    activations (B, n) -> reconstruction (B, 784)."""
    children = list(model.decoder.children())
    return nn.Sequential(*children[1:])


def projective_fields(model: DenseAutoencoder, Z: np.ndarray, batch_size: int = 250) -> np.ndarray:
    """Each grid neuron's projective field: ``mean_b d xhat_b / d z_k`` at the grid
    activations ``Z`` (B, n) of test digits. Returns (n, 784)."""
    tail = decoder_tail(model).eval()
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    Z = torch.as_tensor(np.asarray(Z), dtype=dtype, device=device)
    jacobian = torch.func.vmap(torch.func.jacfwd(tail))
    total = None
    with torch.no_grad():
        for chunk in Z.split(batch_size):
            part = jacobian(chunk).sum(dim=0)  # (784, n)
            total = part if total is None else total + part
    return (total / len(Z)).T.cpu().double().numpy()


def readout(
    model: DenseAutoencoder,
    data: Dataset,
    graph: Graph,
    config: ReceptiveFieldsConfig,
    seed: int,
    controls: bool,
) -> dict[str, Any]:
    """A trained model's cost, scale, fields and their scores on the test digits; with
    ``controls`` also the topography of its units arranged post hoc by their activations
    (on at most ``ARRANGE_ROWS`` training digits) and by their fields. Private entries
    (``_fields`` (n, 28, 28)) are for the figures."""
    Z_test = analysis.activations(model, data.X_test, LAYER)
    # centre_dispersion: rms distance of the field centres from their mean, in pixels
    rows = np.random.default_rng(seed).permutation(len(Z_test))[: config.field_samples]
    fields = projective_fields(model, Z_test[np.sort(rows)]).reshape(-1, *IMAGE_SHAPE)
    spread, centres = field_spread(fields)
    out = {
        "test_mse": evaluate(model, data.X_test, task="reconstruction")["mse"],
        "activation_norm": float(np.linalg.norm(Z_test, axis=1).mean()),
        "spread": float(np.nanmean(spread)),
        "spread_median": float(np.nanmedian(spread)),
        "centre_dispersion": float(
            np.sqrt(((centres - centres.mean(axis=0)) ** 2).sum(axis=1).mean())
        ),
        "topography": topography(centres, graph),
        "null": topography_null(centres, graph, config.n_permutations, seed),
        "_fields": fields,
    }
    if controls:
        train_rows = _arrange_rows(len(data.X_train), seed)
        Z_train = analysis.activations(model, data.X_train[train_rows], LAYER)
        by_activity = analysis.arrangement(Z_train, graph, random_state=seed)
        by_field = analysis.arrangement(
            np.abs(fields).reshape(len(fields), -1).T, graph, random_state=seed
        )
        out["topography_arranged"] = topography(centres[by_activity], graph)
        out["topography_field_arranged"] = topography(centres[by_field], graph)
        out["_fields_arranged"] = fields[by_activity]
        out["_fields_field_arranged"] = fields[by_field]
    return out


def _arrange_rows(n: int, seed: int) -> np.ndarray:
    rows = np.arange(n)
    if n > ARRANGE_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, ARRANGE_ROWS, replace=False))
    return rows


# --------------------------------------------------------------------------- training


def train_seed(
    config: ReceptiveFieldsConfig,
    seed: int,
    graph: Graph,
    data: Dataset,
    device: str,
    progress: bool,
) -> dict[str, dict]:
    """Every variant of one seed: ``{key: read-out | {"weight", "budget"}}``."""
    common = dict(batch_size=config.batch_size, lr=config.lr, device=device, progress=progress)
    with seeded(seed):
        base = DenseAutoencoder(
            data.n_features,
            hidden=(50, 50),
            latent=config.latent,
            decoder_hidden=(graph.n_nodes, 50),
        )
    history = fit(base, data.X_train, epochs=config.epochs, seed=seed, desc="λ = 0", **common)
    reference = reference_loss(
        history["task_loss"], math.ceil(len(data.X_train) / config.batch_size)
    )
    arranged = copy.deepcopy(base)
    rows = _arrange_rows(len(data.X_train), seed)
    placement.arrange(
        arranged, LAYER, graph, torch.as_tensor(data.X_train[rows]), random_state=seed
    )
    more = budget_epochs(config.epochs)
    results = {}
    for variant in variants(config):
        model = copy.deepcopy(base if variant.penalty is None else arranged)
        reg = None
        if variant.penalty is not None:
            reg = GraphRegularizer(
                model,
                {LAYER: make_penalty(variant.penalty, graph, config)},
                budget=config.budget,
                reference=reference,
            )
        try:
            fit(
                model,
                data.X_train,
                regularizer=reg,
                epochs=more,
                seed=seed + 1,
                desc=f"{variant.label} (seed {seed})",
                **common,
            )
        finally:
            if reg is not None:
                reg.remove()
        budget = None if reg is None else reg.budget.summary()
        results[variant.key] = readout(
            model, data, graph, config, seed, controls=variant.penalty is None
        ) | {
            "weight": 0.0 if budget is None else budget["weights"][LAYER],
            "budget": budget,
            "epochs": config.epochs + more,
        }
    return results


def run(
    config: ReceptiveFieldsConfig, out: str, device: str = "auto", progress: bool = True
) -> dict:
    """Train every variant on every seed, read the fields out, write ``out/``; returns
    the metrics."""
    folder = RunFolder(out)
    graph = graphs.parse(config.graph)
    data = load_mnist(config)
    per_seed = {
        seed: train_seed(config, seed, graph, data, device, progress) for seed in config.seeds
    }
    metrics = compute_metrics(config, data, per_seed)
    write_config_and_metrics(folder, config, metrics)
    figures = _figures(folder, config, graph, metrics, per_seed)
    folder.write_report(title(config), _sections(config, metrics, figures))
    return metrics


# --------------------------------------------------------------------------- metrics


def _public(result: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if not k.startswith("_")}


def compute_metrics(
    config: ReceptiveFieldsConfig, data: Dataset, per_seed: Mapping[int, Mapping[str, dict]]
) -> dict[str, Any]:
    """Per seed and model the read-outs with the cost against that seed's λ = 0; per
    model the means over seeds; per penalty the verdicts against the controls."""
    seeds = list(per_seed)
    runs = {}
    for seed, models in per_seed.items():
        base = models[REFERENCE]["test_mse"]
        runs[str(seed)] = {
            key: _public(r)
            | reconstruction_cost(r["test_mse"], base)
            | {"scale_vs_lambda_0": r["activation_norm"] / models[REFERENCE]["activation_norm"]}
            for key, r in models.items()
        }
    labels = {v.key: v for v in variants(config)}
    summary = {}
    for key, variant in labels.items():
        rows = [runs[str(s)][key] for s in seeds]
        summary[key] = {
            "label": variant.label,
            "penalty": variant.description,
            **{
                name: _mean([r[name] for r in rows])
                for name in (
                    "weight",
                    "test_mse",
                    "mse_ratio",
                    "activation_norm",
                    "scale_vs_lambda_0",
                    "spread",
                    "spread_median",
                    "centre_dispersion",
                    "topography",
                )
            },
            "null_mean": _mean([r["null"]["mean"] for r in rows]),
            "null_q95": _mean([r["null"]["q95"] for r in rows]),
            "null_p": [r["null"]["p"] for r in rows],
        }
        summary[key]["verdict"] = reconstruction_cost(summary[key]["mse_ratio"], 1.0)["verdict"]
    ref = summary[REFERENCE]
    for name in TOPOGRAPHY_CONTROLS:
        if name != "topography":
            ref[name] = _mean([runs[str(s)][REFERENCE][name] for s in seeds])
    verdicts = {
        key: claim_verdict(key, runs, seeds)
        for key, variant in labels.items()
        if variant.penalty is not None
    }
    return {
        "data": {"name": "mnist", "n_train": len(data.X_train), "n_test": len(data.X_test)},
        "graph": config.graph,
        "layer": LAYER,
        "seeds": seeds,
        "budget": config.budget,
        "uniform_spread": uniform_spread(),
        "model_order": list(labels),
        "models": summary,
        "verdicts": verdicts,
        "runs": runs,
    }


def _mean(values: Sequence[float]) -> float:
    values = [float(v) for v in values]
    return float(np.mean(values)) if values else float("nan")


def topography_controls(lambda_0: Mapping[str, Any], model: Mapping[str, Any]) -> dict[str, float]:
    """The controls a model's topography must beat: the λ = 0 model as trained and arranged
    post hoc (by activations, by fields), and the 95th percentile of the model's own
    permutation null."""
    out = {label: lambda_0[key] for key, label in TOPOGRAPHY_CONTROLS.items()}
    out[NULL_CONTROL] = model["null"]["q95"] if "null" in model else model["null_q95"]
    return out


def claim_verdict(key: str, runs: Mapping[str, Mapping[str, dict]], seeds: Sequence[int]) -> dict:
    """The receptive-field claim for penalty ``key``: on the seed means, spread against
    λ = 0 (lower is better) and topography against :func:`topography_controls`
    (:func:`against_controls`), the cost verdict of the mean MSE ratio, the number of seeds
    on which each is ahead, and ``holds``: both ahead on the means and on more than half
    of the seeds, at a cost :data:`CLOSE` to λ = 0. The spread is ahead only at most
    :data:`LOCAL_SHARE` times that of λ = 0 (``spread["ratio"]``)."""
    per = [runs[str(s)] for s in seeds]
    mse_ratio = _mean([r[key]["mse_ratio"] for r in per])
    cost = reconstruction_cost(mse_ratio, 1.0)["verdict"]
    spread_won = sum(r[key]["spread"] <= LOCAL_SHARE * r[REFERENCE]["spread"] for r in per)
    topo_won = sum(
        against_controls(r[key]["topography"], topography_controls(r[REFERENCE], r[key]), cost)[
            "margin"
        ]
        > 0
        for r in per
    )
    mean_ref = {name: _mean([r[REFERENCE][name] for r in per]) for name in TOPOGRAPHY_CONTROLS}
    mean_model = {"null_q95": _mean([r[key]["null"]["q95"] for r in per])}
    spread = against_controls(
        _mean([r[key]["spread"] for r in per]),
        {"λ = 0": _mean([r[REFERENCE]["spread"] for r in per])},
        cost,
        better="lower",
    )
    topo = against_controls(
        _mean([r[key]["topography"] for r in per]),
        topography_controls(mean_ref, mean_model),
        cost,
    )
    majority = len(per) // 2 + 1
    spread["ratio"] = spread["gsr_score"] / spread["control_score"]
    spread["helps"] = bool(spread["helps"] and spread["ratio"] <= LOCAL_SHARE)
    spread["seeds_won"], topo["seeds_won"] = int(spread_won), int(topo_won)
    for v in (spread, topo):
        v["seeds"] = len(per)
        v["helps"] = bool(v["helps"] and v["seeds_won"] >= majority)
    return {
        "mse_ratio": mse_ratio,
        "cost": cost,
        "spread": spread,
        "topography": topo,
        "holds": bool(spread["helps"] and topo["helps"] and cost == CLOSE),
    }


def headline(metrics: dict) -> dict[str, str]:
    """The numbers an index page shows."""
    ref = metrics["models"][REFERENCE]
    out = {
        "test MSE at λ=0": f"{ref['test_mse']:.4f}",
        "spread at λ=0": f"{ref['spread']:.2f} px (uniform field {metrics['uniform_spread']:.1f})",
        "topography at λ=0": (
            f"ρ {ref['topography']:.3f} as trained, {ref['topography_arranged']:.3f} arranged"
        ),
    }
    for key in model_order(metrics)[1:]:
        v, m = metrics["verdicts"][key], metrics["models"][key]
        word = "claim holds" if v["holds"] else "claim does not hold"
        out[f"{m['label']} vs best control"] = (
            f"spread {v['spread']['gsr_score']:.2f} vs {v['spread']['control_score']:.2f} px, "
            f"ρ {v['topography']['gsr_score']:.3f} vs {v['topography']['best_control']} "
            f"{v['topography']['control_score']:.3f}, at {v['mse_ratio']:.2f}x MSE: {word}"
        )
    return out


# --------------------------------------------------------------------------- figures


def field_mosaic(fields: np.ndarray, graph: Graph, gap: int = 2) -> np.ndarray:
    """The fields (n, H, W), each scaled to a peak |value| of 1, tiled at their nodes'
    places on the grid drawing (row-major: node k at row k // w, column k % w), with
    ``gap`` NaN pixels between tiles. Returns (rows (H + gap), cols (W + gap))."""
    coords = np.asarray(graph.coords, dtype=np.float64)
    cols = np.rint(coords[:, 0] - coords[:, 0].min()).astype(int)
    rows = np.rint(coords[:, 1].max() - coords[:, 1]).astype(int)
    n, h, w = fields.shape
    mosaic = np.full(((rows.max() + 1) * (h + gap), (cols.max() + 1) * (w + gap)), np.nan)
    peak = np.abs(fields).reshape(n, -1).max(axis=1)
    for k in range(n):
        tile = fields[k] / peak[k] if peak[k] > 0 else fields[k]
        r, c = rows[k] * (h + gap), cols[k] * (w + gap)
        mosaic[r : r + h, c : c + w] = tile
    return mosaic


def plot_fields(panels: Mapping[str, np.ndarray], graph: Graph) -> Figure:
    """One mosaic (:func:`field_mosaic`) per ``{title: fields (n, H, W)}``."""
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.6 * ncols, 4.9 * nrows), squeeze=False, layout="constrained"
    )
    cmap = plt.get_cmap("RdBu_r").copy()
    cmap.set_bad("white")
    image = None
    for ax, (name, fields) in zip(axes.flat, panels.items(), strict=False):
        image = ax.imshow(field_mosaic(fields, graph), cmap=cmap, vmin=-1, vmax=1)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    if image is not None:
        fig.colorbar(
            image,
            ax=axes,
            orientation="horizontal",
            shrink=0.35,
            aspect=40,
            label="field / its peak |field|  (red: the pixel brightens as the neuron rises)",
        )
    fig.suptitle(
        f"Projective field of each neuron of the {graph.name} layer, at its grid place",
        fontsize=11,
    )
    return fig


def model_order(metrics: Mapping[str, Any]) -> list[str]:
    """The model keys in the order the run trained them (λ = 0 first; JSON keeps no
    order)."""
    return list(metrics.get("model_order", metrics["models"]))


def _seed_values(metrics: Mapping[str, Any], key: str, name: str) -> list[float]:
    return [metrics["runs"][str(s)][key][name] for s in metrics["seeds"]]


def plot_spread(metrics: Mapping[str, Any]) -> Figure:
    """Mean spread per model (bars), each seed a dot, the uniform field's spread dotted and
    :data:`LOCAL_SHARE` times that of λ = 0 dashed."""
    keys = model_order(metrics)
    fig, ax = plt.subplots(figsize=(7.6, 3.8), layout="constrained")
    for i, key in enumerate(keys):
        m = metrics["models"][key]
        colour = "0.6" if key == REFERENCE else f"C{i}"
        ax.bar(i, m["spread"], color=colour, alpha=0.8)
        values = _seed_values(metrics, key, "spread")
        ax.plot([i] * len(values), values, "k.", ms=5)
    ax.axhline(metrics["uniform_spread"], color="k", ls=":", lw=1, label="a uniform field")
    local = LOCAL_SHARE * metrics["models"][REFERENCE]["spread"]
    ax.axhline(
        local, color="k", ls="--", lw=1, label=f"{LOCAL_SHARE:g}x λ = 0: clearly more local below"
    )
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    ax.set_xticks(
        range(len(keys)),
        [metrics["models"][k]["label"] for k in keys],
        fontsize=8,
        rotation=20,
        ha="right",
    )
    ax.set_ylabel("spread of |field|² (pixels)")
    ax.set_ylim(0, metrics["uniform_spread"] * 1.3)
    ax.set_title("Spread of the receptive fields (lower = more local; dots: seeds)", fontsize=10)
    return fig


def plot_topography(metrics: Mapping[str, Any]) -> Figure:
    """Topography per model and per λ = 0 control (bars, seeds as dots) with each bar's
    permutation null (95th percentile, a black dash)."""
    ref_key = REFERENCE
    bars = [(label, ref_key, name) for name, label in TOPOGRAPHY_CONTROLS.items()]
    bars += [(metrics["models"][k]["label"], k, "topography") for k in model_order(metrics)[1:]]
    fig, ax = plt.subplots(figsize=(7.6, 3.8), layout="constrained")
    for i, (_label, key, name) in enumerate(bars):
        values = _seed_values(metrics, key, name)
        colour = "0.6" if key == ref_key else f"C{model_order(metrics).index(key)}"
        ax.bar(i, np.mean(values), color=colour, alpha=0.8)
        ax.plot([i] * len(values), values, "k.", ms=5)
        null = np.mean([r["q95"] for r in _seed_values(metrics, key, "null")])
        ax.plot([i - 0.4, i + 0.4], [null, null], "k-", lw=1.5)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=8, rotation=20, ha="right")
    ax.set_ylabel("Spearman ρ (grid vs image distance)")
    ax.set_title(
        "Topography: do neighbouring neurons have neighbouring fields?\n"
        "grey: λ = 0 controls; black dash: 95th percentile of the permutation null",
        fontsize=10,
    )
    return fig


def plot_tradeoff(metrics: Mapping[str, Any]) -> Figure:
    """Test MSE against λ = 0 (x) against spread (left) and topography (right); small
    dots are seeds, large markers the means."""
    fig, axes = plt.subplots(1, 2, figsize=(10.4, 4.2), layout="constrained")
    for panel, (name, ylabel) in zip(
        axes,
        (("spread", "spread (pixels, lower = more local)"), ("topography", "Spearman ρ")),
        strict=True,
    ):
        for i, key in enumerate(model_order(metrics)):
            m = metrics["models"][key]
            colour = "0.4" if key == REFERENCE else f"C{i}"
            xs = _seed_values(metrics, key, "mse_ratio")
            ys = _seed_values(metrics, key, name)
            panel.plot(xs, ys, ".", color=colour, alpha=0.6)
            panel.plot(m["mse_ratio"], m[name], "o", color=colour, ms=8, label=m["label"])
        panel.axvline(MSE_CLOSE, color="k", ls=":", lw=1)
        panel.set_xlabel("test MSE / that of λ = 0")
        panel.set_ylabel(ylabel)
    if metrics["models"][REFERENCE].get("topography_arranged") is not None:
        axes[1].axhline(
            metrics["models"][REFERENCE]["topography_arranged"], color="0.4", ls="--", lw=1
        )
        axes[1].annotate(
            "λ = 0 arranged",
            (0.02, metrics["models"][REFERENCE]["topography_arranged"]),
            xycoords=("axes fraction", "data"),
            textcoords="offset points",
            xytext=(0, 3),
            fontsize=8,
        )
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8)
    fig.suptitle(
        f"Cost against locality (dotted: {MSE_CLOSE:g}x the MSE, the limit of 'close')",
        fontsize=10,
    )
    return fig


def _field_panels(metrics: Mapping[str, Any], first: Mapping[str, dict]) -> dict[str, np.ndarray]:
    ref = first[REFERENCE]

    def caption(label: str, r: Mapping[str, Any], topo: float) -> str:
        return f"{label}\nspread {r['spread']:.2f} px, ρ {topo:.2f}, MSE {r['test_mse']:.4f}"

    panels = {
        caption("λ = 0 as trained", ref, ref["topography"]): ref["_fields"],
        caption("λ = 0 arranged post hoc", ref, ref["topography_arranged"]): ref[
            "_fields_arranged"
        ],
        caption("λ = 0 arranged by fields", ref, ref["topography_field_arranged"]): ref[
            "_fields_field_arranged"
        ],
    }
    for key, r in first.items():
        if key != REFERENCE:
            panels[caption(metrics["models"][key]["label"], r, r["topography"])] = r["_fields"]
    return panels


def _figures(folder, config, graph, metrics, per_seed) -> dict[str, str]:
    first = per_seed[config.seeds[0]]
    plots = {
        "fields": plot_fields(_field_panels(metrics, first), graph),
        "spread": plot_spread(metrics),
        "topography": plot_topography(metrics),
        "tradeoff": plot_tradeoff(metrics),
    }
    return save_figures(folder, plots, FIGURES)


# --------------------------------------------------------------------------- report


def _model_rows(metrics: Mapping[str, Any]) -> list[dict[str, str]]:
    rows = []
    for key in model_order(metrics):
        m = metrics["models"][key]
        rows.append(
            {
                "model": m["label"],
                "penalty": m["penalty"],
                "λ (budget)": "0" if key == REFERENCE else f"{m['weight']:.3g}",
                "test MSE": f"{m['test_mse']:.5f}",
                "MSE vs λ=0": f"{m['mse_ratio']:.3f}x",
                "mean ||z||": f"{m['activation_norm']:.3f}",
                "||z|| vs λ=0": f"{m['scale_vs_lambda_0']:.2f}x",
                "spread (px)": f"{m['spread']:.2f}",
                "centres' rms distance from their mean (px)": f"{m['centre_dispersion']:.2f}",
                "topography ρ": f"{m['topography']:.3f}",
                "null 95%": f"{m['null_q95']:.3f}",
                "p per seed": ", ".join(f"{p:.3f}" for p in m["null_p"]),
            }
        )
        if key == REFERENCE:
            for name, label in TOPOGRAPHY_CONTROLS.items():
                if name == "topography":
                    continue
                rows.append(
                    {"model": label, "penalty": "same model, units re-placed", "λ (budget)": "0"}
                    | {c: "=" for c in ("test MSE", "MSE vs λ=0", "mean ||z||", "spread (px)")}
                    | {"topography ρ": f"{m[name]:.3f}"}
                )
    return rows


def _verdict_rows(metrics: Mapping[str, Any]) -> list[dict[str, str]]:
    rows = []
    for key, v in metrics["verdicts"].items():
        s, t = v["spread"], v["topography"]
        rows.append(
            {
                "penalty": metrics["models"][key]["label"],
                "spread vs λ=0 (px)": f"{s['gsr_score']:.2f} vs {s['control_score']:.2f}",
                "more local on seeds": f"{s['seeds_won']} of {s['seeds']}",
                "ρ vs best control": (
                    f"{t['gsr_score']:.3f} vs {t['best_control']} {t['control_score']:.3f}"
                ),
                "ahead on seeds": f"{t['seeds_won']} of {t['seeds']}",
                "MSE vs λ=0": f"{v['mse_ratio']:.3f}x ({v['cost']})",
                "claim holds": "yes" if v["holds"] else "no",
            }
        )
    return rows


def verdict_texts(metrics: Mapping[str, Any]) -> list[str]:
    """One paragraph per penalty: its numbers beside the controls and whether the claim
    holds for it (``templates/receptive_fields/verdict.txt``)."""
    return [
        prose(
            "receptive_fields/verdict.txt",
            label=metrics["models"][key]["label"],
            v=v,
            scale=metrics["models"][key]["scale_vs_lambda_0"],
            close=CLOSE,
            local_share=LOCAL_SHARE,
        )
        for key, v in metrics["verdicts"].items()
    ]


def _filter_facts(config: ReceptiveFieldsConfig) -> dict[str, Any]:
    """What the method section says of the filters on the config's grid: the top of its
    Laplacian spectrum, the highest Chebyshev order it allows and the relative errors of
    the spline wavelet there and of the Mexican hat at the configured order."""
    graph = graphs.parse(config.graph)
    lmax = filters.lmax_bound(graph)
    max_order = graph.n_nodes - 1
    return {
        "n_nodes": graph.n_nodes,
        "spectrum_top": float(np.linalg.eigvalsh(graph.laplacian_matrix().toarray()).max()),
        "max_order": max_order,
        "wavelet_error": filters.wavelet(config.band_scale).approximation_error(max_order, lmax),
        "band_error": filters.mexican_hat(config.band_scale).approximation_error(
            config.filter_order, lmax
        ),
    }


def _sections(config, metrics, figures) -> list[Section]:
    verdicts = metrics["verdicts"]
    holding = [metrics["models"][k]["label"] for k, v in verdicts.items() if v["holds"]]
    summary = prose(
        "receptive_fields/summary.txt",
        config=config,
        metrics=metrics,
        ref=metrics["models"][REFERENCE],
        more=budget_epochs(config.epochs),
        holding=holding,
        n_penalties=len(verdicts),
        band=[
            {"label": metrics["models"][k]["label"], "v": verdicts[k]}
            for k in ("band", "band_centered")
            if k in verdicts
        ],
        shrunk=[
            metrics["models"][k]["label"]
            for k in verdicts
            if metrics["models"][k]["scale_vs_lambda_0"] <= SHRINK_SHARE
        ],
        scales=[
            (metrics["models"][k]["label"], metrics["models"][k]["scale_vs_lambda_0"])
            for k in verdicts
        ],
        shrink_share=SHRINK_SHARE,
        dispersions=[metrics["models"][k]["centre_dispersion"] for k in verdicts],
        local_percent=(1 - LOCAL_SHARE) * 100,
        close_percent=(MSE_CLOSE - 1) * 100,
    )
    return [
        Section("Summary", text=summary, table=_model_rows(metrics)),
        Section(
            "Verdicts",
            text="\n\n".join(verdict_texts(metrics)),
            table=_verdict_rows(metrics),
        ),
        Section(
            "Receptive fields on the grid",
            text=prose("receptive_fields/fields.txt", seed=config.seeds[0]),
            figures=[figures["fields"]],
        ),
        Section(
            "Spread",
            text=prose("receptive_fields/spread.txt", uniform=metrics["uniform_spread"]),
            figures=[figures["spread"]],
        ),
        Section(
            "Topography",
            text=prose("receptive_fields/topography.txt", n_permutations=config.n_permutations),
            figures=[figures["topography"]],
        ),
        Section(
            "Cost against locality",
            text=prose("receptive_fields/tradeoff.txt", close_percent=(MSE_CLOSE - 1) * 100),
            figures=[figures["tradeoff"]],
        ),
        Section(
            "Method",
            text=prose(
                "receptive_fields/method.txt",
                config=config,
                more=budget_epochs(config.epochs),
                arrange_rows=ARRANGE_ROWS,
                variants=[v for v in variants(config) if v.penalty is not None],
                mse_close=MSE_CLOSE,
                local_share=LOCAL_SHARE,
                **_filter_facts(config),
            ),
        ),
    ]


__all__ = [
    "FIGURES",
    "ReceptiveFieldsConfig",
    "field_spread",
    "headline",
    "projective_fields",
    "run",
    "topography",
    "topography_null",
]
