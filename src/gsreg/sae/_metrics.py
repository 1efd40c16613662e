"""Standard SAE metrics: reconstruction, variance explained, L0, dead latents, and the model's
loss with a layer replaced by the SAE's reconstruction."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from .._checks import check_int
from .._util import model_device
from ._capture import module_named
from ._data import as_batch, check_width, ordered_batches, run_model
from ._model import TopographicSAE


@torch.no_grad()
def evaluate(
    sae: TopographicSAE, data, *, batch_size: int = 4096, max_rows: int | None = None
) -> dict[str, float]:
    """SAE metrics over the rows of ``data`` (an (N, d_in) array read in order, batch by
    batch, or an iterable of (B, d_in) batches; only the first ``max_rows`` rows when
    given), in float64 sums:

    - ``mse``: mean over rows and dimensions of ``(x_hat - x)^2``;
    - ``variance_explained``: ``1 - SSE / SST``, SST the summed squares about the data's
      mean (per dimension, over all evaluated rows);
    - ``l0``: mean number of non-zero latents per row;
    - ``dead_latents``: latents that are zero on every evaluated row (and ``dead_fraction``);
    - ``rows``.
    """
    check_int(batch_size, "evaluate: batch_size")
    check_width(data, sae.d_in)
    device = model_device(sae)
    was_training = sae.training
    sae.eval()
    n = 0
    sse = torch.zeros((), dtype=torch.float64, device=device)
    mean = torch.zeros(sae.d_in, dtype=torch.float64, device=device)
    m2 = torch.zeros(sae.d_in, dtype=torch.float64, device=device)
    active = torch.zeros((), dtype=torch.float64, device=device)
    ever = torch.zeros(sae.n_latents, dtype=torch.bool, device=device)
    try:
        for number, (idx, batch) in enumerate(ordered_batches(data, batch_size, max_rows)):
            x = as_batch(batch, sae.d_in, device, number, idx)
            x_hat, z = sae(x, return_latents=True)
            sse += (x_hat - x).double().pow(2).sum()
            nonzero = z != 0
            active += nonzero.sum()
            ever |= nonzero.any(0)
            n, mean, m2 = _combine(n, mean, m2, x.double())
    finally:
        sae.train(was_training)
    if n == 0:
        raise ValueError("evaluate: data has no rows")
    sst = float(m2.sum())
    dead = int((~ever).sum())
    return {
        "mse": float(sse) / (n * sae.d_in),
        "variance_explained": 1.0 - float(sse) / sst if sst > 0 else float("nan"),
        "l0": float(active) / n,
        "dead_latents": dead,
        "dead_fraction": dead / sae.n_latents,
        "rows": n,
    }


def _combine(n, mean, m2, x):
    """Chan et al.'s pairwise update of the count, mean and summed squared deviations."""
    nb = x.shape[0]
    mean_b = x.mean(0)
    m2_b = (x - mean_b).pow(2).sum(0)
    total = n + nb
    delta = mean_b - mean
    return total, mean + delta * (nb / total), m2 + m2_b + delta.pow(2) * (n * nb / total)


@torch.no_grad()
def downstream_loss(
    model: nn.Module,
    layer: str,
    sae: TopographicSAE,
    batches: Iterable,
    loss_fn: Callable[[object, object], torch.Tensor],
) -> dict[str, float]:
    """The model's loss with layer ``layer``'s output replaced by the SAE's reconstruction.

    For each batch: ``output = model(batch)`` (``model(batch[0])`` for a tuple or list such
    as ``(x, y)``, ``model(**batch)`` for a mapping) and ``loss_fn(output, batch)`` a 0-d
    tensor; losses are averaged over batches weighted by their first dimension. The
    layer's output (..., d_in) (e.g. (B, T, d) in a transformer; in a tuple output its
    first item) is read as rows and replaced by ``sae(rows)``. Returns ``clean`` (no
    change), ``sae`` (reconstructed), ``zero_ablated`` (the output set to zero) and
    ``loss_recovered = (zero_ablated - sae) / (zero_ablated - clean)`` (1: as good as the
    clean model, 0: as bad as deleting the layer; NaN when ablation changes nothing).
    Model and SAE run in evaluation mode and are left in the modes they had.
    """
    module = module_named(model, layer)
    replacements = {
        "clean": None,
        "sae": lambda rows: sae(rows),
        "zero_ablated": torch.zeros_like,
    }
    states = (model.training, sae.training)
    model.eval()
    sae.eval()
    totals = dict.fromkeys(replacements, 0.0)
    weight = 0
    try:
        for batch in batches:
            for name, replace in replacements.items():
                handle = None
                if replace is not None:
                    handle = module.register_forward_hook(_replacing_hook(replace, sae, layer))
                try:
                    output, size = run_model(model, batch)
                    value = loss_fn(output, batch)
                finally:
                    if handle is not None:
                        handle.remove()
                totals[name] += float(value) * size
            weight += size
    finally:
        model.train(states[0])
        sae.train(states[1])
    if weight == 0:
        raise ValueError("downstream_loss: batches is empty")
    out = {name: total / weight for name, total in totals.items()}
    gap = out["zero_ablated"] - out["clean"]
    out["loss_recovered"] = (out["zero_ablated"] - out["sae"]) / gap if gap != 0 else float("nan")
    return out


def _replacing_hook(replace, sae: TopographicSAE, layer: str):
    def hook(module, inputs, output):
        first = output[0] if isinstance(output, (tuple, list)) else output
        if not isinstance(first, torch.Tensor) or first.shape[-1] != sae.d_in:
            shape = tuple(first.shape) if isinstance(first, torch.Tensor) else type(first)
            raise ValueError(
                f"layer {layer!r} outputs {shape}, whose last dimension is not the SAE's "
                f"d_in={sae.d_in}"
            )
        rows = first.reshape(-1, sae.d_in).to(model_device(sae), torch.float32)
        new = replace(rows).to(first.device, first.dtype).reshape(first.shape)
        if isinstance(output, tuple):
            return (new, *output[1:])
        if isinstance(output, list):
            return [new, *output[1:]]
        return new

    return hook


def edge_similarity(sae: TopographicSAE, graph=None, perm=None) -> dict[str, float]:
    """How alike neighbouring latents are on ``graph`` (default: the SAE's own graph,
    fixed or learned): ``edges``, the mean cosine similarity of the decoder directions of
    the two latents of each edge, beside ``all_pairs``, the mean over all pairs of distinct
    latents, which is also what ``edges`` averages to over random placements of the
    latents on the graph (the permutation null's mean). ``perm`` (n_latents,) places
    latent ``perm[node]`` on ``node`` (e.g. :func:`gsreg.analysis.arrangement` of a plain
    SAE's codes: the post-hoc control)."""
    from ..graphs import Graph, parse

    if graph is None:
        penalties = {} if sae.regularizer is None else sae.regularizer.penalties()
        if not penalties:
            raise ValueError("edge_similarity: give a graph (the SAE has no graph yet)")
        graph = next(iter(penalties.values())).graph
    if isinstance(graph, str):
        graph = parse(graph)
    if not isinstance(graph, Graph) or graph.n_nodes != sae.n_latents:
        raise ValueError(f"edge_similarity: graph must be a Graph of {sae.n_latents} nodes")
    d = sae.decoder_directions().double().cpu()
    if perm is not None:
        perm = np.asarray(perm)
        if sorted(perm.tolist()) != list(range(sae.n_latents)):
            raise ValueError(
                f"edge_similarity: perm must be a permutation of the {sae.n_latents} latents"
            )
        d = d[torch.from_numpy(perm.astype(np.int64))]
    i, j = (torch.from_numpy(np.ascontiguousarray(e)) for e in graph.edges.T)
    edges = float((d[i] * d[j]).sum(1).mean())
    total = d.sum(0)
    n = sae.n_latents
    pairs = (float(total @ total) - float((d * d).sum())) / (n * (n - 1))
    return {"edges": edges, "all_pairs": pairs}
