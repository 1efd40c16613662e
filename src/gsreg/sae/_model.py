"""The topographic sparse autoencoder: a TopK or ReLU + L1 SAE whose latent layer carries GSR."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .._checks import check_choice, check_int, check_real
from ..coactivation import CoactivationGraph
from ..graphs import Graph, parse
from ..regularizer import GraphRegularizer

ACTIVATIONS = ("topk", "relu")
#: the L1 coefficient of a ReLU SAE when ``l1`` is not given (activations of unit-norm
#: decoder directions, MSE averaged over the input dimensions)
DEFAULT_RELU_L1 = 1e-3
#: the SAE's submodules that GSR can be put on: the dense pre-activations (N, n_latents)
#: or the sparse latent codes (N, n_latents)
GSR_LAYERS = ("pre_activations", "latents")
#: the sparse latent layer's name inside the SAE
LATENT_LAYER = "latents"


class Latents(nn.Module):
    """The latent nonlinearity on pre-activations (..., n) -> (..., n).

    ``"topk"``: the ``k`` largest pre-activations of each row pass through a ReLU, all others
    are 0 (at most ``k`` non-zero; fewer only where fewer than ``k`` are positive);
    ``"relu"``: a plain ReLU (sparsity then comes from the L1 term of the loss).
    """

    def __init__(self, activation: str, k: int) -> None:
        super().__init__()
        self.activation = activation
        self.k = k

    def forward(self, pre: torch.Tensor) -> torch.Tensor:
        if self.activation == "relu":
            return torch.relu(pre)
        values, indices = pre.topk(self.k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))

    def extra_repr(self) -> str:
        return f"{self.activation!r}" + (f", k={self.k}" if self.activation == "topk" else "")


class TopographicSAE(nn.Module):
    """A sparse autoencoder whose latents lie on a graph (a map or learned modules).

    ``z = latents(W_enc (x - b_dec) + b_enc)`` (N, n_latents) and
    ``x_hat = W_dec z + b_dec`` (N, d_in), where the columns of ``W_dec``
    (``decoder.weight``, (d_in, n_latents)) are unit vectors (:meth:`normalize_decoder_`
    after each optimiser step; :func:`gsreg.sae.fit_sae` does it). The encoder starts as
    the decoder's transpose.

    Args:
        d_in: width of the activations read.
        n_latents: dictionary size.
        graph: the latents' graph: a :class:`Graph`, a spec (``"grid:32x32"``), ``"learned"``
            (a :class:`CoactivationGraph` of default settings), a ``CoactivationGraph`` or
            None (a plain SAE: no penalty).
        k: active latents per row with ``activation="topk"``.
        activation: ``"topk"`` or ``"relu"`` (with an L1 penalty).
        l1: coefficient of ``mean_rows sum_latents |z|`` in the loss; None: 0 for TopK,
            :data:`DEFAULT_RELU_L1` for ReLU.
        weight, budget, warmup_steps: the GSR strength, as in :class:`GraphRegularizer`
            (a fixed weight, default 1e-3, or a share of the SAE loss that GSR may cost).
        seed: seeds the initial weights.

        gsr_on: the submodule GSR is put on: ``"pre_activations"`` (default: the dense
            encoder outputs before TopK / ReLU) or ``"latents"`` (the sparse codes).

    Why the pre-activations by default: TopK (and ReLU) pass no gradient to inactive
    latents, so a penalty on the sparse codes can only shrink the few active ones; it
    cannot pull a neighbour's encoder direction towards them. On the dense
    pre-activations the penalty reaches every latent's encoder row. On blobs at random
    positions of a 6x6 image (tests/test_sae.py), a 5x5 grid SAE with the penalty on the
    pre-activations at weight 1e-2 raised the neighbours' decoder cosine over its
    all-pairs level by about 0.18 at 3x the plain SAE's MSE; on the codes, weight 0.1
    gave about 0.15 at 10x the MSE.

    The layers are the submodules ``sae.pre_activations`` and ``sae.latents`` (both
    (N, n_latents)); ``sae.regularizer`` is the :class:`GraphRegularizer` on the one named
    by ``gsr_on`` (None for a plain SAE).
    """

    def __init__(
        self,
        d_in: int,
        n_latents: int,
        graph: Graph | str | CoactivationGraph | None = None,
        *,
        k: int = 32,
        activation: str = "topk",
        l1: float | None = None,
        weight: float | None = None,
        budget: float | None = None,
        warmup_steps: int = 0,
        gsr_on: str = "pre_activations",
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_int(d_in, "TopographicSAE: d_in")
        check_int(n_latents, "TopographicSAE: n_latents")
        check_choice(activation, "TopographicSAE: activation", ACTIVATIONS)
        check_int(k, "TopographicSAE: k")
        check_choice(gsr_on, "TopographicSAE: gsr_on", GSR_LAYERS)
        if activation == "topk" and k > n_latents:
            raise ValueError(f"TopographicSAE: k={k} exceeds n_latents={n_latents}")
        if l1 is None:
            l1 = 0.0 if activation == "topk" else DEFAULT_RELU_L1
        self.l1 = check_real(l1, "TopographicSAE: l1", 0)
        self.d_in, self.n_latents, self.k, self.activation = d_in, n_latents, k, activation
        gen = torch.Generator().manual_seed(check_int(seed, "TopographicSAE: seed", 0))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.encoder = nn.Linear(d_in, n_latents)
        self.pre_activations = nn.Identity()
        self.latents = Latents(activation, k)
        self.decoder = nn.Linear(n_latents, d_in, bias=False)
        with torch.no_grad():
            self.decoder.weight.copy_(torch.randn(d_in, n_latents, generator=gen))
            self.normalize_decoder_()
            self.encoder.weight.copy_(self.decoder.weight.t())
            self.encoder.bias.zero_()
        self.graph_spec, self.gsr_on = _describe(graph), gsr_on
        self._config = {
            "d_in": d_in,
            "n_latents": n_latents,
            "graph": graph,
            "k": k,
            "activation": activation,
            "l1": l1,
            "weight": weight,
            "budget": budget,
            "warmup_steps": warmup_steps,
            "gsr_on": gsr_on,
            "seed": seed,
        }
        target = _as_target(graph, n_latents)
        if target is None and (weight is not None or budget is not None):
            raise ValueError("TopographicSAE: weight= and budget= set GSR, which needs a graph")
        # a plain attribute, not a submodule (it holds the SAE itself)
        self.regularizer = (
            None
            if target is None
            else GraphRegularizer(
                self,
                {gsr_on: target},
                weight=weight,
                budget=budget,
                warmup_steps=warmup_steps,
            )
        )

    # -- forward -------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latents z (N, n_latents) of x (N, d_in). The GSR hook sees this call as part
        of a forward: in training mode with autograd on, its penalty is added to the
        current step's (run it under ``torch.no_grad()`` to read codes)."""
        self.check_input(x)
        return self.latents(self.pre_activations(self.encoder(x - self.b_dec)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstruction (N, d_in) of latents z (N, n_latents)."""
        return self.decoder(z) + self.b_dec

    def forward(self, x: torch.Tensor, return_latents: bool = False):
        """x (N, d_in) -> x_hat (N, d_in), or (x_hat, z) with ``return_latents``."""
        self.check_input(x)
        z = self.latents(self.pre_activations(self.encoder(x - self.b_dec)))
        x_hat = self.decode(z)
        return (x_hat, z) if return_latents else x_hat

    def check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"TopographicSAE: input must be a tensor, got {type(x).__name__}")
        if x.ndim != 2 or x.shape[1] != self.d_in:
            raise ValueError(
                f"TopographicSAE: input of shape {tuple(x.shape)} does not match d_in="
                f"{self.d_in} (expected (N, {self.d_in}))"
            )

    # -- training pieces -----------------------------------------------------------------
    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """One training forward: ``{"loss", "mse", "l1", "penalty"}`` (0-d tensors; ``loss``
        is ``mse + l1 * l1_term + penalty``, the weighted GSR penalty)."""
        x_hat, z = self(x, return_latents=True)
        mse = (x_hat - x).pow(2).mean()
        l1_term = z.abs().sum(-1).mean()
        task = mse + self.l1 * l1_term if self.l1 else mse
        penalty = self.penalty()
        return {"loss": task + penalty, "task": task, "mse": mse, "l1": l1_term, "penalty": penalty}

    def penalty(self) -> torch.Tensor:
        """The weighted GSR penalty of the last training forward (0 for a plain SAE)."""
        if self.regularizer is None:
            return self.b_dec.new_zeros(())
        return self.regularizer.penalty()

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Scale each decoder column (one latent's direction, (d_in,)) to unit norm."""
        w = self.decoder.weight
        w.div_(w.norm(dim=0, keepdim=True).clamp_min(1e-12))

    def decoder_directions(self) -> torch.Tensor:
        """The latents' unit directions (n_latents, d_in), detached."""
        return self.decoder.weight.detach().t()

    def __deepcopy__(self, memo) -> TopographicSAE:
        """A new SAE with copies of the weights and of the regularizer's state: copying
        the hooks would leave the copy's penalties flowing into the original."""
        config = dict(self._config, graph=copy.deepcopy(self._config["graph"], memo))
        new = type(self)(**config)
        new.load_state_dict(copy.deepcopy(self.state_dict(), memo))
        new.to(self.b_dec.device)
        if self.regularizer is not None:
            new.regularizer.load_state_dict(copy.deepcopy(self.regularizer.state_dict(), memo))
        new.train(self.training)
        memo[id(self)] = new
        return new

    def extra_repr(self) -> str:
        graph = f"graph={self.graph_spec!r}" + (f" on {self.gsr_on}" if self.graph_spec else "")
        return f"d_in={self.d_in}, n_latents={self.n_latents}, {graph}"


def _as_target(graph, n_latents: int) -> Graph | CoactivationGraph | None:
    if graph is None:
        return None
    if isinstance(graph, str):
        if graph == "learned":
            return CoactivationGraph(n_nodes=n_latents)
        graph = parse(graph)
    if isinstance(graph, CoactivationGraph):
        if graph.n_nodes is not None and graph.n_nodes != n_latents:
            raise ValueError(
                f"TopographicSAE: the learned graph has n_nodes={graph.n_nodes} but "
                f"n_latents={n_latents}"
            )
        return graph
    if not isinstance(graph, Graph):
        raise TypeError(
            "TopographicSAE: graph must be a Graph, a spec string, 'learned', a "
            f"CoactivationGraph or None, got {type(graph).__name__}"
        )
    if graph.n_nodes != n_latents:
        raise ValueError(
            f"TopographicSAE: graph {graph.name!r} has {graph.n_nodes} nodes but "
            f"n_latents={n_latents}"
        )
    return graph


def _describe(graph) -> str | None:
    if graph is None or isinstance(graph, str):
        return graph
    if isinstance(graph, CoactivationGraph):
        return "learned"
    return getattr(graph, "name", type(graph).__name__)
