"""Does a topographic SAE lay a small language model's features out on a map?

A 2-layer character-level transformer (:class:`CharTransformer`) is trained on the
Python standard library's own source (:mod:`gsreg.datasets.text`; validation files held
out). The output of its first MLP's activation (``blocks.0.mlp.act``, 4 d wide) is
captured with :func:`gsreg.sae.capture`, and two TopK SAEs with the same seed, k, steps
and number of latents are trained on it: a plain one and a topographic one (GSR on a
grid over the latents' pre-activations, its weight set by a budget on the SAE loss, fixed
before any run).

Read-outs on validation text: the standard SAE metrics (variance explained, L0, dead
latents, next-character loss with the layer replaced by the reconstruction), per token
class (digits, whitespace, brackets, quotes, keywords, identifiers, operators) the mean
latent activation drawn on the grid with its Moran's I and permutation null, and the
neighbour decoder cosine (:func:`gsreg.sae.edge_similarity`). The controls: the plain
SAE with its latents in their trained order and arranged post hoc on the grid by their
activations (:func:`gsreg.analysis.arrangement`). The cost: the difference in variance
explained and in loss recovered.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from .. import analysis, graphs
from ..budget import MIN_WARMUP_STEPS
from ..coactivation import CoactivationGraph
from ..datasets import text as text_data
from ..graphs import Graph
from ..report import RunFolder, Section, prose
from ..sae import (
    TopographicSAE,
    capture,
    downstream_loss,
    edge_similarity,
    evaluate,
    fit_sae,
    open_activations,
)
from ..training import seeded
from ._config import check_config, tuple_fields, write_config_and_metrics
from ._figures import save_figures
from ._training import one_thread

#: the layer read: the first block's MLP after its GELU, (B, T, 4 d)
LAYER = "blocks.0.mlp.act"
#: the token classes drawn on the grid (``other`` is left out: a mixed bag)
MAP_CLASSES = tuple(c for c in text_data.CLASSES if c != "other")
#: the figures a run writes, in report order
FIGURES = ("class_maps", "morans_i")
#: the SAEs and the control, in report order
MODELS = {
    "topographic": "topographic SAE",
    "plain": "plain SAE, as trained",
    "plain_arranged": "plain SAE, arranged post hoc",
}
#: a map is organised when its mean Moran's I has a permutation p below this
P_LEVEL = analysis.P_LEVEL
#: rows of the plain SAE's codes the post-hoc arrangement reads
ARRANGE_ROWS = 5000
#: characters of context shown before a latent's top-activating character
CONTEXT_CHARS = 24


def title(config: TopographicSAEConfig) -> str:
    """The report's title."""
    return f"A topographic SAE ({config.graph}) on a character-level model of Python source"


@dataclass(frozen=True)
class TopographicSAEConfig:
    """Everything that defines a run; written to ``config.json``.

    Corpus: ``corpus_bytes`` of standard-library source, every ``val_every``-th file held
    out. Model: ``n_layers`` blocks of width ``d_model`` with ``n_heads`` heads over
    ``context`` characters, trained ``lm_steps`` Adam steps of ``lm_batch`` random windows.
    SAEs: ``graph`` (a grid) latents, ``k`` active per row, ``sae_steps`` steps of
    ``sae_batch`` rows from ``capture_windows`` training windows; the topographic SAE's
    GSR weight set by ``budget`` (the share of SAE loss GSR may cost) after
    ``warmup_share`` of the steps. Read-outs on ``eval_windows`` validation windows;
    ``n_permutations`` for each null; ``n_latents_shown`` latents with
    ``n_contexts`` top contexts each in the report. The learned-graph SAE's graph is
    updated every ``learned_update_every`` steps (fixed in advance, not tuned).
    """

    corpus_bytes: int = 3_000_000
    val_every: int = 10
    context: int = 64
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    lm_steps: int = 3000
    lm_batch: int = 32
    lm_lr: float = 2e-3
    capture_windows: int = 1500
    eval_windows: int = 300
    graph: str = "grid:16x16"
    k: int = 16
    sae_steps: int = 4000
    sae_batch: int = 256
    sae_lr: float = 1e-3
    budget: float = 0.05
    warmup_share: float = 0.2
    n_permutations: int = 999
    n_latents_shown: int = 6
    n_contexts: int = 5
    learned_update_every: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        tuple_fields(self)
        check_config(
            "TopographicSAEConfig",
            corpus_bytes=(self.corpus_bytes, "positive_int"),
            val_every=(self.val_every, "positive_int"),
            context=(self.context, "positive_int"),
            d_model=(self.d_model, "positive_int"),
            n_layers=(self.n_layers, "positive_int"),
            n_heads=(self.n_heads, "positive_int"),
            lm_steps=(self.lm_steps, "positive_int"),
            lm_batch=(self.lm_batch, "positive_int"),
            lm_lr=(self.lm_lr, "positive"),
            capture_windows=(self.capture_windows, "positive_int"),
            eval_windows=(self.eval_windows, "positive_int"),
            k=(self.k, "positive_int"),
            sae_steps=(self.sae_steps, "positive_int"),
            sae_batch=(self.sae_batch, "positive_int"),
            sae_lr=(self.sae_lr, "positive"),
            budget=(self.budget, "positive"),
            warmup_share=(self.warmup_share, "non_negative"),
            n_permutations=(self.n_permutations, "positive_int"),
            n_latents_shown=(self.n_latents_shown, "positive_int"),
            n_contexts=(self.n_contexts, "positive_int"),
            learned_update_every=(self.learned_update_every, "positive_int"),
        )
        if self.val_every < 2:
            raise ValueError(f"TopographicSAEConfig.val_every must be >= 2, got {self.val_every}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"TopographicSAEConfig.d_model={self.d_model} must be a multiple of "
                f"n_heads={self.n_heads}"
            )
        if self.warmup_share >= 1:
            raise ValueError(
                f"TopographicSAEConfig.warmup_share must be below 1, got {self.warmup_share}"
            )
        if warmup_steps(self) >= self.sae_steps:
            raise ValueError(
                f"TopographicSAEConfig.sae_steps={self.sae_steps} leaves no step with GSR after "
                f"the {warmup_steps(self)} warm-up steps"
            )
        graph = graphs.parse(self.graph)
        if not graph.name.startswith("grid:"):
            raise ValueError(
                f"TopographicSAEConfig.graph must be a grid 'grid:HxW' (the maps are drawn on "
                f"it), got {self.graph!r}"
            )
        if self.k > graph.n_nodes:
            raise ValueError(
                f"TopographicSAEConfig.k={self.k} exceeds the {graph.n_nodes} latents of "
                f"{self.graph}"
            )
        if self.n_latents_shown > graph.n_nodes:
            raise ValueError(
                f"TopographicSAEConfig.n_latents_shown={self.n_latents_shown} exceeds the "
                f"{graph.n_nodes} latents"
            )

    @classmethod
    def quick(cls, **overrides) -> TopographicSAEConfig:
        """Seconds: 200 kB of text, a small model trained 30 steps, an 8x8 grid SAE."""
        return cls(
            **{
                "corpus_bytes": 200_000,
                "val_every": 4,
                "context": 32,
                "d_model": 32,
                "n_heads": 2,
                "lm_steps": 30,
                "lm_batch": 16,
                "capture_windows": 60,
                "eval_windows": 30,
                "graph": "grid:8x8",
                "k": 4,
                "sae_steps": 80,
                "sae_batch": 128,
                "n_permutations": 99,
                "n_latents_shown": 2,
                "n_contexts": 2,
                "learned_update_every": 20,
                **overrides,
            }
        )


# --------------------------------------------------------------------------- the model


class MLP(nn.Module):
    """d -> 4 d -> GELU (``act``, the captured layer) -> d."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.up = nn.Linear(d_model, 4 * d_model)
        self.act = nn.GELU()
        self.down = nn.Linear(4 * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(x)))


class Block(nn.Module):
    """A pre-norm transformer block: causal self-attention, then :class:`MLP`."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class CharTransformer(nn.Module):
    """A minimal GPT: ids (B, T) -> next-character logits (B, T, vocab)."""

    def __init__(self, vocab: int, d_model: int, n_layers: int, n_heads: int, context: int):
        super().__init__()
        self.context = context
        self.embed = nn.Embedding(vocab, d_model)
        self.position = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        T = ids.shape[1]
        if T > self.context:
            raise ValueError(f"CharTransformer: {T} ids exceed the context of {self.context}")
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool, device=ids.device), diagonal=1)
        x = self.embed(ids) + self.position(torch.arange(T, device=ids.device))
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.norm(x))


def next_char_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits (B, T, V) at positions 0..T-2 for ids 1..T-1 (B, T)."""
    return nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)
    )


def train_model(config: TopographicSAEConfig, train_ids: np.ndarray) -> tuple[nn.Module, dict]:
    """The character model after ``lm_steps`` Adam steps on random training windows;
    with ``{"seconds", "final_loss"}`` (the mean loss of the last 10% of steps)."""
    with seeded(config.seed):
        model = CharTransformer(
            text_data.VOCAB_SIZE, config.d_model, config.n_layers, config.n_heads, config.context
        )
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lm_lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lm_lr, total_steps=config.lm_steps, pct_start=0.1
    )
    data = torch.from_numpy(
        text_data.windows(train_ids, config.context, config.lm_steps * config.lm_batch, config.seed)
    )
    losses = []
    start = time.perf_counter()
    model.train()
    for step in range(config.lm_steps):
        batch = data[step * config.lm_batch : (step + 1) * config.lm_batch]
        loss = next_char_loss(model(batch), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - start
    tail = losses[-max(1, len(losses) // 10) :]
    return model.eval(), {"seconds": seconds, "final_loss": float(np.mean(tail))}


# --------------------------------------------------------------------------- read-outs


def make_saes(config: TopographicSAEConfig, d_in: int) -> dict[str, TopographicSAE]:
    """The plain SAE, the topographic SAE (on ``config.graph``) and the learned-graph SAE
    (a :class:`gsreg.CoactivationGraph` of default settings but its update interval,
    ``learned_update_every`` steps; its components are the feature modules): same seed,
    latents and k."""
    n = graphs.parse(config.graph).n_nodes
    return {
        "plain": TopographicSAE(d_in, n, k=config.k, seed=config.seed),
        "topographic": TopographicSAE(
            d_in,
            n,
            graph=config.graph,
            k=config.k,
            budget=config.budget,
            warmup_steps=warmup_steps(config),
            seed=config.seed,
        ),
        "learned": TopographicSAE(
            d_in,
            n,
            graph=CoactivationGraph(n_nodes=n, update_every=config.learned_update_every),
            k=config.k,
            budget=config.budget,
            warmup_steps=warmup_steps(config),
            seed=config.seed,
        ),
    }


def warmup_steps(config: TopographicSAEConfig) -> int:
    """The topographic SAE's steps without GSR: ``warmup_share`` of the steps, at least
    :data:`gsreg.budget.MIN_WARMUP_STEPS` (the budget measures the SAE loss there)."""
    return max(MIN_WARMUP_STEPS, int(config.warmup_share * config.sae_steps))


@torch.no_grad()
def codes(sae: TopographicSAE, rows: np.ndarray, batch: int = 4096) -> np.ndarray:
    """The SAE's latents (N, n_latents) of rows (N, d_in), as float64."""
    sae.eval()
    parts = [
        sae.encode(torch.as_tensor(np.asarray(rows[i : i + batch]), dtype=torch.float32))
        for i in range(0, len(rows), batch)
    ]
    return torch.cat(parts).double().numpy()


def map_scores(
    Z: np.ndarray, labels: np.ndarray, graph: Graph, n_permutations: int, seed: int
) -> dict[str, Any]:
    """Class maps of codes Z (N, n) in node order and their Moran's I.

    ``labels`` (N,) index :data:`gsreg.datasets.text.CLASSES`; the maps are the mean
    latent activation over the rows of each class of :data:`MAP_CLASSES` (a class absent
    from the rows gets NaN). Returns ``maps`` (C, n), per class ``morans_i`` and its
    permutation ``p`` (:func:`gsreg.analysis.morans_i_null` of that map alone), and
    ``mean`` the null summary of the mean over the classes.
    """
    maps = np.full((len(MAP_CLASSES), graph.n_nodes), np.nan)
    for row, name in enumerate(MAP_CLASSES):
        rows = labels == text_data.CLASSES.index(name)
        if rows.any():
            maps[row] = Z[rows].mean(axis=0)
    present = ~np.isnan(maps).any(axis=1)
    per_class = {}
    for row, name in enumerate(MAP_CLASSES):
        if not present[row]:
            per_class[name] = {"morans_i": None, "p": None, "null_mean": None, "null_std": None}
            continue
        null = analysis.morans_i_null(maps[row], graph, n_permutations, seed)
        per_class[name] = {
            "morans_i": null["observed"],
            "p": null["p_value"],
            "null_mean": null["null_mean"],
            "null_std": null["null_std"],
        }
    mean = analysis.morans_i_null(maps[present], graph, n_permutations, seed)
    return {"maps": maps, "per_class": per_class, "mean": mean}


def top_contexts(
    Z: np.ndarray, ids: np.ndarray, latents: Sequence[int], count: int
) -> list[dict[str, Any]]:
    """For each latent, its ``count`` highest activations over codes Z (N, n), whose rows
    are the characters of windows ids (W, T) in row-major order: the activation and the
    window's text up to that character (at most :data:`CONTEXT_CHARS` before it)."""
    T = ids.shape[1]
    out = []
    for latent in latents:
        order = np.argsort(-Z[:, latent], kind="stable")[:count]
        examples = []
        for row in order:
            if Z[row, latent] <= 0:
                break
            window, position = divmod(int(row), T)
            start = max(0, position - CONTEXT_CHARS)
            examples.append(
                {
                    "activation": float(Z[row, latent]),
                    "before": text_data.decode(ids[window, start:position]),
                    "char": text_data.decode(ids[window, position : position + 1]),
                }
            )
        out.append({"latent": int(latent), "examples": examples})
    return out


def shown_latents(maps: np.ndarray, count: int) -> list[int]:
    """``count`` latents (node indices) to show: in turn for each class, the latent with
    the largest mean activation on it relative to its mean over the classes, skipping
    repeats."""
    finite = np.nan_to_num(maps)
    relative = finite - finite.mean(axis=0, keepdims=True)
    chosen: list[int] = []
    for rank in range(maps.shape[1]):
        for row in range(len(maps)):
            latent = int(np.argsort(-relative[row], kind="stable")[rank])
            if latent not in chosen:
                chosen.append(latent)
            if len(chosen) == count:
                return chosen
    return chosen


def visible(text: str) -> str:
    """``text`` with newlines as ⏎ and tabs as ⇥ (a context on one line)."""
    return text.replace("\n", "⏎").replace("\t", "⇥").replace("\r", "␍")


# --------------------------------------------------------------------------- the run


def run(
    config: TopographicSAEConfig, out: str, device: str = "auto", progress: bool = True
) -> dict:
    """Train the model and both SAEs, read them out, write ``out/``; returns the metrics."""
    folder = RunFolder(out)
    graph = graphs.parse(config.graph)
    with one_thread(), tempfile.TemporaryDirectory(prefix=".capture-", dir=folder.path) as tmp:
        metrics, extras = _study(config, graph, tmp, progress)
    write_config_and_metrics(folder, config, metrics)
    figures = _figures(folder, metrics, extras, graph)
    folder.write_report(title(config), _sections(config, metrics, extras, figures))
    return metrics


def _study(config, graph, tmp, progress) -> tuple[dict, dict]:
    corpus = text_data.stdlib_corpus(config.corpus_bytes, config.val_every)
    train_ids, val_ids = text_data.encode(corpus.train), text_data.encode(corpus.val)
    model, lm = train_model(config, train_ids)
    train_windows = text_data.windows(
        train_ids, config.context, config.capture_windows, config.seed + 1
    )
    val_windows = text_data.tiled_windows(val_ids, config.context, config.eval_windows)
    val_labels = text_data.token_classes(text_data.decode(val_windows.reshape(-1)))
    batches, val_batches = _batches(train_windows), _batches(val_windows)
    train_rows = capture(model, LAYER, batches, f"{tmp}/train", progress=progress)
    val_rows = np.asarray(capture(model, LAYER, val_batches, f"{tmp}/val", progress=progress)[:])
    train_rows = open_activations(f"{tmp}/train")

    saes = make_saes(config, train_rows.d_in)
    sae_seconds = {}
    for name, sae in saes.items():
        start = time.perf_counter()
        fit_sae(
            sae,
            train_rows,
            steps=config.sae_steps,
            batch_size=config.sae_batch,
            lr=config.sae_lr,
            seed=config.seed,
            device="cpu",
            progress=progress,
        )
        sae_seconds[name] = time.perf_counter() - start
    arrange_rows = np.asarray(train_rows[: min(ARRANGE_ROWS, train_rows.shape[0])])
    perm = analysis.arrangement(codes(saes["plain"], arrange_rows), graph, random_state=config.seed)

    Z = {name: codes(sae, val_rows) for name, sae in saes.items()}
    Z["plain_arranged"] = Z["plain"][:, perm]
    scores = {
        key: map_scores(Z[key], val_labels, graph, config.n_permutations, config.seed)
        for key in MODELS
    }
    similarity = {
        "topographic": edge_similarity(saes["topographic"], graph),
        "plain": edge_similarity(saes["plain"], graph),
        "plain_arranged": edge_similarity(saes["plain"], graph, perm=perm),
    }
    standard = {}
    for name, sae in saes.items():
        standard[name] = evaluate(sae, val_rows) | downstream_loss(
            model, LAYER, sae, val_batches, next_char_loss
        )
        standard[name]["seconds"] = sae_seconds[name]
    budget = saes["topographic"].regularizer.budget.summary()
    shown = shown_latents(scores["topographic"]["maps"], config.n_latents_shown)
    metrics = _metrics(config, corpus, lm, standard, scores, similarity, budget, len(val_labels))
    metrics["gsr_budget"] = budget
    metrics["class_counts"] = {
        c: int(np.sum(val_labels == text_data.CLASSES.index(c))) for c in text_data.CLASSES
    }
    metrics["contexts"] = top_contexts(Z["topographic"], val_windows, shown, config.n_contexts)
    metrics["learned"] = learned_modules(
        _learned_graph(saes["learned"]),
        codes(saes["learned"], val_rows),
        Z["plain"],
        val_rows,
        val_labels,
        val_windows,
        config,
    )
    metrics["learned"]["standard"] = standard["learned"]
    extras = {"maps": {key: scores[key]["maps"] for key in MODELS}}
    return metrics, extras


def _learned_graph(sae: TopographicSAE) -> CoactivationGraph:
    """The learned-graph SAE's CoactivationGraph (the one its regularizer updates)."""
    (lg,) = sae.regularizer.learned_graphs().values()
    return lg


def learned_modules(
    lg: CoactivationGraph,
    Z: np.ndarray,
    Z_plain: np.ndarray,
    X: np.ndarray,
    labels: np.ndarray,
    windows: np.ndarray,
    config: TopographicSAEConfig,
) -> dict[str, Any]:
    """The learned-graph SAE's feature modules (the components of its graph) read out on
    held-out characters: ``n_modules``, ``sizes``, the ARI of each character's most active
    module against its token class beside the controls of
    :func:`gsreg.analysis.module_controls` (the plain SAE's latents clustered into as many
    modules, the characters clustered on the plain SAE's codes and on the MLP activations
    X (N, d)) and the modules' permutation null, and each module's top contexts."""
    if lg.graph is None:
        return {"n_modules": 0, "sizes": [], "ari": None}
    modules = lg.modules()
    sizes = np.bincount(modules).tolist()
    out: dict[str, Any] = {"n_modules": len(sizes), "sizes": sizes, "ari": None}
    if len(sizes) < 2:
        return out
    found = analysis.module_controls(Z, modules, Z_plain, X, labels, len(sizes), config.seed)
    gsr = analysis.cluster_scores(analysis.indicated_modules(Z, modules), labels)["ari"]
    controls = {
        analysis.MODULE_CONTROL_LABELS[key]
        .replace("λ=0 neurons", "plain SAE latents")
        .replace("λ=0 layer", "plain SAE codes")
        .replace("raw input", "MLP activations"): found[key]
        for key in analysis.MODULE_CONTROLS
        if found[key] is not None
    }
    best = max(controls, key=controls.get)
    activity = np.stack([Z[:, modules == m].mean(axis=1) for m in range(len(sizes))], axis=1)
    largest = list(range(min(len(sizes), config.n_latents_shown)))
    contexts = top_contexts(activity, windows, largest, config.n_contexts)
    out.update(
        ari=gsr,
        controls=controls,
        best_control=best,
        margin=gsr - controls[best],
        null_mean=found["null_mean"],
        p_value=found["p_value"],
        helps=bool(gsr > controls[best] and found["p_value"] < P_LEVEL),
        contexts=[dict(c, module=c.pop("latent")) for c in contexts],
    )
    return out


def _batches(windows: np.ndarray, per_batch: int = 64) -> list[torch.Tensor]:
    """Windows (W, T) as batches of at most ``per_batch`` windows, in order."""
    parts = np.array_split(windows, max(1, math.ceil(len(windows) / per_batch)))
    return [torch.from_numpy(part) for part in parts]


def _metrics(config, corpus, lm, standard, scores, similarity, budget, n_rows) -> dict[str, Any]:
    models = {}
    for key, label in MODELS.items():
        sae = "plain" if key.startswith("plain") else key
        models[key] = {
            "label": label,
            "morans_i": scores[key]["mean"]["observed"],
            "morans_i_null_mean": scores[key]["mean"]["null_mean"],
            "morans_i_null_std": scores[key]["mean"]["null_std"],
            "morans_i_p": scores[key]["mean"]["p_value"],
            "per_class": scores[key]["per_class"],
            "neighbour_cosine": similarity[key]["edges"],
            "all_pairs_cosine": similarity[key]["all_pairs"],
            **{
                name: standard[sae][name]
                for name in (
                    "variance_explained",
                    "l0",
                    "dead_latents",
                    "loss_recovered",
                    "clean",
                    "sae",
                    "zero_ablated",
                )
            },
        }
    topo, plain = standard["topographic"], standard["plain"]
    cost = {
        "variance_explained": topo["variance_explained"] - plain["variance_explained"],
        "loss_recovered": topo["loss_recovered"] - plain["loss_recovered"],
        "loss": topo["sae"] - plain["sae"],
    }
    return {
        "corpus": {
            "train_chars": len(corpus.train),
            "val_chars": len(corpus.val),
            "train_files": len(corpus.train_files),
            "val_files": len(corpus.val_files),
            "first_file": corpus.train_files[0],
            "last_file": (corpus.train_files + corpus.val_files)[-1],
        },
        "lm": {
            "train_seconds": lm["seconds"],
            "final_train_loss": lm["final_loss"],
            "val_loss": topo["clean"],
        },
        "sae_seconds": {k: v["seconds"] for k, v in standard.items()},
        "layer": LAYER,
        "graph": config.graph,
        "eval_rows": n_rows,
        "gsr_weight": budget["weights"].get("pre_activations") if budget else None,
        "models": models,
        "cost": cost,
        "verdict": verdict(models, cost),
    }


def verdict(models: Mapping[str, Mapping[str, Any]], cost: Mapping[str, float]) -> dict:
    """Whether the topographic SAE's class maps are more organised than the plain SAE's
    arranged post hoc (the best control): ``organised`` (its mean Moran's I beats its
    null at :data:`P_LEVEL`), ``beats_control`` (it is above both plain controls),
    ``classes_won`` (classes whose Moran's I is above the arranged control's), the margin
    over the best control, the cost, and ``holds`` (organised and above the controls)."""
    topo = models["topographic"]
    controls = {key: models[key]["morans_i"] for key in ("plain", "plain_arranged")}
    best = max(controls, key=lambda k: _finite(controls[k]))
    won = sum(
        _finite(topo["per_class"][c]["morans_i"])
        > _finite(models["plain_arranged"]["per_class"][c]["morans_i"])
        for c in MAP_CLASSES
    )
    organised = bool(topo["morans_i_p"] is not None and topo["morans_i_p"] < P_LEVEL)
    beats = bool(_finite(topo["morans_i"]) > _finite(controls[best]))
    return {
        "organised": organised,
        "beats_control": beats,
        "best_control": MODELS[best],
        "control_morans_i": controls[best],
        "margin": _finite(topo["morans_i"]) - _finite(controls[best]),
        "classes_won": int(won),
        "n_classes": len(MAP_CLASSES),
        "cost_variance_explained": cost["variance_explained"],
        "cost_loss_recovered": cost["loss_recovered"],
        "holds": organised and beats,
    }


def _finite(value: float | None) -> float:
    return float("-inf") if value is None or not math.isfinite(value) else float(value)


def headline(metrics: dict) -> dict[str, str]:
    """The numbers an index page shows."""
    m, v = metrics["models"], metrics["verdict"]
    return {
        "Moran's I of the class maps": (
            f"topographic {m['topographic']['morans_i']:.3f}, plain arranged "
            f"{m['plain_arranged']['morans_i']:.3f}, plain {m['plain']['morans_i']:.3f}"
        ),
        "variance explained": (
            f"topographic {m['topographic']['variance_explained']:.3f}, "
            f"plain {m['plain']['variance_explained']:.3f}"
        ),
        "loss recovered": (
            f"topographic {m['topographic']['loss_recovered']:.3f}, "
            f"plain {m['plain']['loss_recovered']:.3f}"
        ),
        "topographic SAE vs best control": (
            f"Moran's I {m['topographic']['morans_i']:.3f} vs {v['best_control']} "
            f"{v['control_morans_i']:.3f}, at {v['cost_variance_explained']:+.3f} variance "
            f"explained and {v['cost_loss_recovered']:+.3f} loss recovered: "
            + ("more organised" if v["holds"] else "not more organised")
        ),
        "learned-graph SAE modules": _learned_headline(metrics.get("learned") or {}),
    }


def _learned_headline(learned: Mapping) -> str:
    if learned.get("ari") is None:
        count = learned.get("n_modules", 0)
        return f"{count} module{'s' if count != 1 else ''}: no feature modules to score"
    best = learned["best_control"]
    return (
        f"{learned['n_modules']} modules, ARI against token classes {learned['ari']:.3f} "
        f"(p {learned['p_value']:.3f}) vs {best} {learned['controls'][best]:.3f}: "
        + ("indicate the classes better" if learned["helps"] else "no better than the best control")
    )


# --------------------------------------------------------------------------- figures


def plot_class_maps(maps: Mapping[str, np.ndarray], metrics: Mapping, graph: Graph) -> Figure:
    """One row per model of :data:`MODELS`, one column per class: its mean latent
    activation on the grid (each map scaled to its own range), titled with Moran's I."""
    h, w = _grid_shape(graph)
    fig, axes = plt.subplots(
        len(maps),
        len(MAP_CLASSES),
        figsize=(1.9 * len(MAP_CLASSES), 2.2 * len(maps)),
        squeeze=False,
        layout="constrained",
    )
    for r, (key, class_maps) in enumerate(maps.items()):
        for c, name in enumerate(MAP_CLASSES):
            ax = axes[r, c]
            ax.imshow(class_maps[c].reshape(h, w), cmap="viridis")
            score = metrics["models"][key]["per_class"][name]
            label = "n/a" if score["morans_i"] is None else f"I {score['morans_i']:.2f}"
            ax.set_title(f"{name}\n{label}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(MODELS[key], fontsize=8)
    fig.suptitle(
        "Mean latent activation per token class on the grid (each map on its own scale)",
        fontsize=10,
    )
    return fig


def _grid_shape(graph: Graph) -> tuple[int, int]:
    h, w = graph.name.split(":", 1)[1].split("x")
    return int(h), int(w)


def plot_morans_i(metrics: Mapping) -> Figure:
    """Moran's I per class and for the mean over classes, one bar per model, with each
    bar's permutation null (mean + 2 sd, a black dash)."""
    groups = [*MAP_CLASSES, "mean"]
    fig, ax = plt.subplots(figsize=(9.0, 3.8), layout="constrained")
    width = 0.8 / len(MODELS)
    colours = {"topographic": "C0", "plain": "0.75", "plain_arranged": "0.45"}
    for j, key in enumerate(MODELS):
        m = metrics["models"][key]
        for i, group in enumerate(groups):
            if group == "mean":
                value, null, sd = m["morans_i"], m["morans_i_null_mean"], m["morans_i_null_std"]
            else:
                s = m["per_class"][group]
                value, null, sd = s["morans_i"], s["null_mean"], s["null_std"]
            if value is None:
                continue
            x = i + (j - 1) * width
            ax.bar(x, value, width, color=colours[key], label=MODELS[key] if i == 0 else None)
            ax.plot([x - width / 2, x + width / 2], [null + 2 * sd] * 2, "k-", lw=1.2)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.set_ylabel("Moran's I of the class map")
    ax.legend(fontsize=8)
    ax.set_title(
        "Moran's I of each token class's map (black dash: permutation null, mean + 2 sd)",
        fontsize=10,
    )
    return fig


def _figures(folder, metrics, extras, graph) -> dict[str, str]:
    maps = {key: extras["maps"][key] for key in ("topographic", "plain_arranged", "plain")}
    plots = {
        "class_maps": plot_class_maps(maps, metrics, graph),
        "morans_i": plot_morans_i(metrics),
    }
    return save_figures(folder, plots, FIGURES)


# --------------------------------------------------------------------------- report


def _learned_context_sections(learned: Mapping) -> list[Section]:
    """The largest feature modules' top contexts (none without modules)."""
    contexts = learned.get("contexts")
    if not contexts:
        return []
    rows = _context_rows([dict(c, latent=c["module"]) for c in contexts], header="module")
    text = (
        "As above, for each of the largest modules the characters on which its latents "
        "are most active on average."
    )
    return [Section("Top contexts of the largest feature modules", text=text, table=rows)]


def _learned_rows(learned: Mapping) -> list[dict[str, str]]:
    """The learned modules' ARI against the token classes beside each control."""
    if learned.get("ari") is None:
        return []
    rows = [
        {
            "grouping": f"learned-graph SAE modules ({learned['n_modules']})",
            "ARI against token classes": f"{learned['ari']:.3f} (p {learned['p_value']:.3f})",
        }
    ]
    rows += [
        {"grouping": name, "ARI against token classes": f"{value:.3f}"}
        for name, value in learned["controls"].items()
    ]
    rows.append(
        {
            "grouping": "random regroupings of the latents (mean)",
            "ARI against token classes": f"{learned['null_mean']:.3f}",
        }
    )
    return rows


def _model_rows(metrics: Mapping) -> list[dict[str, str]]:
    rows = []
    for key in MODELS:
        m = metrics["models"][key]
        same = key == "plain_arranged"
        rows.append(
            {
                "model": m["label"],
                "variance explained": "=" if same else f"{m['variance_explained']:.3f}",
                "L0": "=" if same else f"{m['l0']:.1f}",
                "dead latents": "=" if same else str(m["dead_latents"]),
                "loss with SAE": "=" if same else f"{m['sae']:.3f}",
                "loss recovered": "=" if same else f"{m['loss_recovered']:.3f}",
                "mean Moran's I": f"{m['morans_i']:.3f}",
                "null mean ± sd": f"{m['morans_i_null_mean']:.3f} ± {m['morans_i_null_std']:.3f}",
                "p": f"{m['morans_i_p']:.3f}",
                "neighbour cosine": f"{m['neighbour_cosine']:.3f}",
                "all pairs": f"{m['all_pairs_cosine']:.3f}",
            }
        )
    return rows


def _class_rows(metrics: Mapping) -> list[dict[str, str]]:
    rows = []
    for name in MAP_CLASSES:
        row = {"class": name, "characters": str(metrics["class_counts"][name])}
        for key, label in MODELS.items():
            s = metrics["models"][key]["per_class"][name]
            row[f"I, {label}"] = (
                "n/a" if s["morans_i"] is None else f"{s['morans_i']:.3f} (p {s['p']:.3f})"
            )
        rows.append(row)
    return rows


def _context_rows(
    contexts: Sequence[Mapping], header: str = "latent (row, col)"
) -> list[dict[str, str]]:
    rows = []
    for entry in contexts:
        for number, example in enumerate(entry["examples"]):
            rows.append(
                {
                    header: str(entry["latent"]) if number == 0 else "",
                    "activation": f"{example['activation']:.2f}",
                    "context": visible(example["before"]) + "«" + visible(example["char"]) + "»",
                }
            )
    return rows


def _sections(config, metrics, extras, figures) -> list[Section]:
    width = _grid_shape(graphs.parse(config.graph))[1]
    contexts = [
        dict(c, latent=f"{c['latent']} ({c['latent'] // width}, {c['latent'] % width})")
        for c in metrics["contexts"]
    ]
    values = dict(config=config, metrics=metrics, m=metrics["models"], v=metrics["verdict"])
    return [
        Section(
            "Summary",
            text=prose("topographic_sae/summary.txt", p_level=P_LEVEL, **values),
            table=_model_rows(metrics),
        ),
        Section(
            "Token-class maps",
            text=prose("topographic_sae/maps.txt", **values),
            table=_class_rows(metrics),
            figures=[figures["class_maps"], figures["morans_i"]],
        ),
        Section(
            "Top contexts of a few latents",
            text=prose("topographic_sae/contexts.txt", context_chars=CONTEXT_CHARS, **values),
            table=_context_rows(contexts),
        ),
        Section(
            "Learned-graph variant: feature modules",
            text=prose("topographic_sae/learned.txt", l=metrics["learned"], **values),
            table=_learned_rows(metrics["learned"]) or None,
        ),
        *_learned_context_sections(metrics["learned"]),
        Section(
            "Method",
            text=prose(
                "topographic_sae/method.txt",
                layer=LAYER,
                arrange_rows=ARRANGE_ROWS,
                classes=MAP_CLASSES,
                **values,
            ),
        ),
    ]


__all__ = [
    "FIGURES",
    "CharTransformer",
    "TopographicSAEConfig",
    "headline",
    "map_scores",
    "run",
    "verdict",
]
