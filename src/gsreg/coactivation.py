"""Learned neuron graphs: a graph rebuilt from a layer's own co-activations during training.

    lg = CoactivationGraph(kernel="knn", k=5, warmup_steps=2000, update_every=100)
    reg = GraphRegularizer(model, {"encoder.latent": lg}, weight=1e-3)
    ... loss = task + reg.penalty(); loss.backward(); opt.step(); reg.step()
    lg.graph, lg.history, lg.modules()

Each neuron i is described by its activations a_i (S,) over the S samples held in a bounded
ring buffer; a kernel turns these features into a weighted neuron-neuron graph, and the
penalty of the layer switches to that graph's Laplacian. Distances run in torch on the
buffer's device, in row chunks, so an n x n matrix is never held at once by the kNN kernels.
Under ``torch.distributed`` every rank builds the same graph from all ranks' samples.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from . import graphs
from ._checks import check_choice, check_int, check_real, is_int
from .graphs import LAPLACIAN_KINDS, Graph
from .penalty import NORMALIZATIONS, GraphPenalty

KERNELS = ("knn", "gaussian", "adaptive", "correlation")
FEATURES = ("raw", "standardized")
ON_DISCONNECT = ("stop", "freeze", "continue")
_ALIASES = {"keep": "continue"}
# entries of an (rows x n) distance block or (edges x S) difference block computed at once
_CHUNK_ELEMENTS = 1 << 23
_LOW_32_BITS = (1 << 32) - 1
#: subspace iterations of :func:`project_profiles` (``profile_dims``): each costs two more
#: (n x S) x (S x dims) products and sharpens the subspace where the spectrum decays slowly
PROJECTION_POWER_ITERATIONS = 1

#: the learned-graph recipe measured to find planted modules (``benchmarks/
#: learned_defaults.py``, tuning seeds 100-104: the exact module count in 17 of 25 runs
#: against 0 of 25 for the constructor's defaults, at 1.13x the test MSE of λ = 0 against
#: 1.12x): z-scored co-activation profiles, 8 neighbours, the centred penalty at weight
#: :data:`RECOMMENDED_WEIGHT`, the graph frozen once its component count holds for 3
#: updates and the penalty released then. Warm-up and update interval scale with the run.
RECOMMENDED = {
    "features": "standardized",
    "k": 8,
    "normalize": "centered",
    "stable_updates": 3,
    "release_steps": 0,
}
#: the penalty weight of :data:`RECOMMENDED` (the centred form is scale-free)
RECOMMENDED_WEIGHT = 1.0
# state_dict keys of the freeze / release schedule, with the values of states saved without them
_SCHEDULE_STATE = {"frozen_at": None, "stable": None, "step": 0}


class CoactivationGraph:
    """A graph on a layer's neurons, learned from their co-activations and updated on a schedule.

    Args:
        kernel: neuron-neuron affinity.
            "knn": binary k-nearest-neighbour graph (Euclidean), symmetrised (A + A^T) / 2, so
            mutual neighbours get weight 1 and one-sided ones 0.5.
            "gaussian": ``exp(-||a_i - a_j||^2 / bandwidth^2)`` for every pair, entries below
            ``threshold`` dropped. The squared distance sums over the S buffered samples, so
            scale ``bandwidth`` with the buffer (about sqrt(S) for unit-scale activations).
            "adaptive": ``exp(-d_ij^2 / (sigma_i sigma_j))`` on the edges of the kNN graph,
            sigma_i = distance from i to its k-th nearest neighbour; identical neurons
            (d_ij = 0, e.g. two constant ones) get weight 1.
            "correlation": each neuron's k most correlated neurons, weighted by the Pearson
            correlation; non-positive correlations are dropped, one-sided edges halved. A
            constant neuron correlates 0 with every other, so it gets no edge.
            Activations so large that the float32 distances overflow raise ValueError.
        k: neighbours per neuron (all kernels but "gaussian"); must be below the width n.
        bandwidth, threshold: of the "gaussian" kernel.
        features: "raw" activations, or "standardized" (each neuron z-scored over the
            samples, so that distances measure correlation). "correlation" ignores it.
        warmup_steps, update_every: the graph is rebuilt at steps
            ``warmup_steps + m * update_every`` (m = 0, 1, ...).
        max_updates: stop updating after this many accepted graphs (None: no limit).
        buffer_size: samples kept in the ring buffer (the newest ones).
        laplacian, normalize: of the :class:`GraphPenalty` on each learned graph.
        on_disconnect: what happens when a new graph has more than one connected component.
            "stop": keep the last connected graph and stop updating; "freeze": take the
            disconnected graph and stop updating; "continue" (alias "keep"): take it and go on.
        stable_updates: stop updating once this many accepted graphs in a row have had the
            same number of connected components, more than one (None: never). A connected
            graph never freezes this way: the layer has not fallen apart yet.
        release_steps: once the graph is frozen (by ``stable_updates``, ``max_updates`` or
            ``on_disconnect``), the penalty is switched off this many optimiser steps later
            (0: at once; None: never). The graph and :meth:`modules` stay; the layer gets
            its capacity back for the primary task in the remaining steps.
        history_size: how many ``(step, graph)`` pairs :attr:`history` keeps (the newest).
        profile_dims: None (exact, the default), or project the neuron profiles (n, S) onto
            ``profile_dims`` directions of their sample space before the distances, when S
            is larger: a randomized SVD (:func:`project_profiles`, seeded by ``seed``) keeps
            the leading principal directions, so distances shrink only by the discarded
            variance. Approximate: an update at n = 16,384 from 4,096 samples drops from
            about 40 to about 9 CPU seconds on one thread, and the kNN lists change (the
            fraction of exact kNN edges kept is measured in ``benchmarks/learned_update.py``
            and docs/coactivation.md). Euclidean kernels only (not "correlation").
        seed: of the random projection start of ``profile_dims`` (same seed, same graph).
        n_nodes: the layer width, if known (checked early); else inferred at the first
            :meth:`observe`.

    Updates happen in :meth:`step`; :meth:`build` computes a graph without changing state.
    """

    def __init__(
        self,
        kernel: str = "knn",
        k: int = 5,
        *,
        bandwidth: float = 1.0,
        threshold: float = 0.1,
        features: str = "raw",
        warmup_steps: int = 0,
        update_every: int = 100,
        max_updates: int | None = None,
        stable_updates: int | None = None,
        release_steps: int | None = None,
        buffer_size: int = 1024,
        laplacian: str = "normalized",
        normalize: bool | str = False,
        on_disconnect: str = "continue",
        history_size: int = 100,
        n_nodes: int | None = None,
        profile_dims: int | None = None,
        seed: int = 0,
    ) -> None:
        _check_choice("kernel", kernel, KERNELS)
        _check_choice("features", features, FEATURES)
        _check_choice("laplacian", laplacian, LAPLACIAN_KINDS)
        _check_choice("on_disconnect", on_disconnect, ON_DISCONNECT + tuple(_ALIASES))
        check_choice(normalize, "CoactivationGraph: normalize", NORMALIZATIONS)
        check_int(k, "CoactivationGraph: k")
        check_int(warmup_steps, "CoactivationGraph: warmup_steps", 0)
        check_int(update_every, "CoactivationGraph: update_every")
        check_int(history_size, "CoactivationGraph: history_size", 0)
        if max_updates is not None:
            check_int(max_updates, "CoactivationGraph: max_updates")
        if stable_updates is not None:
            check_int(stable_updates, "CoactivationGraph: stable_updates")
        if release_steps is not None:
            check_int(release_steps, "CoactivationGraph: release_steps", 0)
        check_real(bandwidth, "CoactivationGraph: bandwidth", 0, strict_min=True)
        if profile_dims is not None:
            check_int(profile_dims, "CoactivationGraph: profile_dims")
            if kernel == "correlation":
                raise ValueError(
                    "CoactivationGraph: profile_dims projects Euclidean profiles; the "
                    "'correlation' kernel ranks by the exact Pearson correlation"
                )
        check_int(seed, "CoactivationGraph: seed", 0)
        check_real(threshold, "CoactivationGraph: threshold", 0, 1, strict_max=True)
        self.kernel = kernel
        self.k = int(k)
        self.bandwidth = float(bandwidth)
        self.threshold = float(threshold)
        self.features = features
        self.warmup_steps = int(warmup_steps)
        self.update_every = int(update_every)
        self.max_updates = max_updates
        self.stable_updates = stable_updates
        self.release_steps = release_steps
        self.laplacian = laplacian
        self.normalize = normalize
        self.on_disconnect = _ALIASES.get(on_disconnect, on_disconnect)
        self.history_size = int(history_size)
        self.profile_dims = None if profile_dims is None else int(profile_dims)
        self.seed = int(seed)
        check_int(
            buffer_size,
            f"CoactivationGraph: buffer_size (a {kernel!r} graph needs {self.min_samples} samples)",
            self.min_samples,
        )
        self.buffer_size = int(buffer_size)
        self._n_nodes: int | None = None
        if n_nodes is not None:
            self._set_width(n_nodes)
        self._buffer: torch.Tensor | None = None
        self._position = 0
        self._filled = 0
        self._reset_graphs()

    def _reset_graphs(self) -> None:
        self._graph: Graph | None = None
        self._penalty: GraphPenalty | None = None
        self._n_components = 0
        self._history: deque[tuple[int, Graph]] = deque(maxlen=self.history_size)
        self.n_updates = 0
        self.frozen = False
        self.frozen_at: int | None = None
        self._stable = 0
        self._step = 0

    # -- properties ----------------------------------------------------------------------
    @property
    def min_samples(self) -> int:
        """Samples the buffer must hold before a graph is built: k + 1 (2 for "gaussian")."""
        return 2 if self.kernel == "gaussian" else self.k + 1

    @property
    def n_nodes(self) -> int | None:
        """The layer width n, or None before it is known."""
        return self._n_nodes

    @property
    def graph(self) -> Graph | None:
        """The current graph (None before the first update)."""
        return self._graph

    @property
    def history(self) -> list[tuple[int, Graph]]:
        """The last ``history_size`` accepted graphs as ``(step, graph)``, oldest first."""
        return list(self._history)

    @property
    def n_components(self) -> int:
        """Connected components of the current graph (0 before the first update)."""
        return self._n_components

    @property
    def buffer(self) -> torch.Tensor | None:
        """The ring buffer (buffer_size, n) float32 (rows beyond :attr:`n_samples` unused)."""
        return self._buffer

    @property
    def n_samples(self) -> int:
        """Samples held in the buffer (at most ``buffer_size``)."""
        return self._filled

    @property
    def released(self) -> bool:
        """Whether the penalty has been switched off (``release_steps`` after freezing)."""
        return (
            self.release_steps is not None
            and self.frozen_at is not None
            and self._step >= self.frozen_at + self.release_steps
        )

    def current_penalty(self) -> GraphPenalty | None:
        """The penalty on the current graph; None before the first update and once
        :attr:`released`."""
        return None if self.released else self._penalty

    def penalty(self, z: torch.Tensor) -> torch.Tensor:
        """Penalty of activations z (B, n) on the current graph: a scalar, 0 before the first."""
        penalty = self.current_penalty()
        if penalty is None:
            return torch.zeros((), device=z.device)
        return penalty(z)

    def modules(self) -> np.ndarray:
        """(n,) int64 component labels of the current graph: 0 is the largest component, ties
        go to the component holding the lowest node index."""
        if self._graph is None:
            raise RuntimeError("CoactivationGraph has no graph yet (no update has happened)")
        return self._graph.components(by_size=True)[1]

    # -- data ----------------------------------------------------------------------------
    def observe(self, z: torch.Tensor) -> None:
        """Append activations z (B, n) to the ring buffer (detached, as float32); a batch
        larger than the buffer leaves only its last ``buffer_size`` rows."""
        if not isinstance(z, torch.Tensor) or z.ndim != 2:
            raise ValueError(
                f"CoactivationGraph.observe expects activations of shape (B, n), got "
                f"{tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}"
            )
        if not z.is_floating_point():
            raise TypeError(f"CoactivationGraph: activations must be floating point, got {z.dtype}")
        if self._n_nodes is None:
            self._set_width(z.shape[1])
        if z.shape[1] != self._n_nodes:
            raise ValueError(
                f"CoactivationGraph: expected activations (B, {self._n_nodes}), "
                f"got {tuple(z.shape)}"
            )
        size, rows = self.buffer_size, z.detach()
        if rows.shape[0] > size:
            rows = rows[-size:]
        buffer = self._buffer
        if buffer is None:
            buffer = self._buffer = torch.zeros(size, self._n_nodes, device=z.device)
        elif buffer.device != z.device:
            buffer = self._buffer = buffer.to(z.device)
        # called on every training forward: one copy, and a second only when the rows wrap
        # around the end of the ring (each tensor operation costs microseconds of dispatch)
        b, position = rows.shape[0], self._position
        first = min(b, size - position)
        buffer[position : position + first] = rows[:first] if first < b else rows
        if first < b:
            buffer[: b - first] = rows[first:]
        self._position = (position + b) % size
        self._filled = min(size, self._filled + b)

    def samples(self) -> torch.Tensor | None:
        """The buffered activations (S, n), oldest first, or None before any :meth:`observe`."""
        if self._buffer is None:
            return None
        if self._filled < self.buffer_size:
            return self._buffer[: self._filled]
        return torch.cat([self._buffer[self._position :], self._buffer[: self._position]])

    # -- updates -------------------------------------------------------------------------
    def due(self, step: int) -> bool:
        """Whether the schedule asks for an update at ``step``."""
        return (
            not self.frozen
            and not self._updates_done()
            and step >= self.warmup_steps
            and (step - self.warmup_steps) % self.update_every == 0
        )

    def _updates_done(self) -> bool:
        return self.max_updates is not None and self.n_updates >= self.max_updates

    def step(self, step: int) -> bool:
        """Called after optimiser step number ``step``: rebuild the graph when it is due and
        enough samples are buffered (under torch.distributed: on all ranks). Returns whether
        a new graph was taken."""
        self._step = int(step)
        if self.frozen_at is None and (self.frozen or self._updates_done()):
            self.frozen_at = self._step  # frozen by loading a state, or max_updates
        if not self.due(step):
            return False
        samples = _gather_across_ranks(self.samples())
        if samples is None or samples.shape[0] < self.min_samples:
            return False
        return self._accept(self.build(samples, step=step), step)

    def build(self, activations: torch.Tensor | None = None, *, step: int | None = None) -> Graph:
        """A graph from activations (S, n) (default: this rank's buffer), state unchanged."""
        acts = self.samples() if activations is None else activations
        if acts is None:
            raise RuntimeError("CoactivationGraph: nothing observed yet, cannot build a graph")
        acts = acts.detach().float()
        if acts.ndim != 2 or acts.shape[0] < self.min_samples:
            raise ValueError(
                f"CoactivationGraph: building a {self.kernel!r} graph needs activations "
                f"(S, n) with S >= {self.min_samples}, got {tuple(acts.shape)}"
            )
        n = acts.shape[1]
        if self.kernel != "gaussian" and self.k >= n:
            raise ValueError(f"CoactivationGraph: k={self.k} needs more than k neurons, got {n}")
        # squared distances sum over the samples: where a neuron's own sum of squares
        # overflows float32, every kernel would compute on infinities. A NaN or Inf
        # activation makes its neuron's sum non-finite too, so one check covers both, and
        # only a failed one counts the bad entries
        overflow = not bool(torch.isfinite(acts.pow(2).sum(dim=0)).all())
        if overflow:
            bad = int((~torch.isfinite(acts)).sum())
            if bad:
                raise ValueError(f"CoactivationGraph: {bad} observed activations are NaN or Inf")
        if not overflow:
            x = neuron_features(acts, self.features)
            if self.profile_dims is not None and x.shape[1] > self.profile_dims:
                x = project_profiles(x, self.profile_dims, seed=self.seed)
            edges, weights = self._edges(x)
            overflow = not bool(torch.isfinite(weights).all())
        if overflow:
            raise ValueError(
                f"CoactivationGraph: activations up to {float(acts.abs().max()):.3g} overflow "
                f"the {self.kernel!r} kernel's float32 distances over {acts.shape[0]} samples; "
                "scale the layer down"
            )
        keep = weights > 0
        name = f"learned:{self.kernel}" + ("" if step is None else f"@{step}")
        return graphs.from_edges(
            n, edges[keep].cpu().numpy(), weights[keep].double().cpu().numpy(), name=name
        )

    def _edges(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Edges (E, 2) with i < j and weights (E,) (zeros dropped later) of features x (n, S)."""
        if self.kernel == "gaussian":
            return gaussian_edges(x, self.bandwidth, self.threshold)
        if self.kernel == "correlation":
            z = standardize(x)
            edges, counts = symmetrised_edges(nearest_neighbours(z, self.k, "correlation"))
            corr = _pair_sums(z, edges, torch.mul) / x.shape[1]
            return edges, corr.clamp_min(0) * counts / 2
        neighbours = nearest_neighbours(x, self.k)
        edges, counts = symmetrised_edges(neighbours)
        if self.kernel == "knn":
            return edges, counts / 2
        return edges, _adaptive_weights(x, edges, neighbours[:, -1])

    def _accept(self, graph: Graph, step: int) -> bool:
        """Apply the disconnection policy; record and use the graph unless it is refused."""
        count = graph.components()[0]
        if count > 1 and self.on_disconnect != "continue":
            self._freeze(step)
            if self.on_disconnect == "stop":
                if self._graph is None:
                    warnings.warn(
                        f"CoactivationGraph: the first learned graph (step {step}) has {count} "
                        "components; on_disconnect='stop' keeps no graph and stops updating",
                        stacklevel=2,
                    )
                return False
        same = self._graph is not None and count == self._n_components
        self._stable = self._stable + 1 if same else 1
        self._set_graph(graph, count)
        self._history.append((step, graph))
        self.n_updates += 1
        if self.stable_updates is not None and count > 1 and self._stable >= self.stable_updates:
            self._freeze(step)
        elif self._updates_done() and self.frozen_at is None:
            self.frozen_at = int(step)  # no more updates; ``frozen`` keeps meaning "refused"
        return True

    def _freeze(self, step: int) -> None:
        self.frozen = True
        if self.frozen_at is None:
            self.frozen_at = int(step)

    def _set_graph(self, graph: Graph | None, count: int) -> None:
        self._graph = graph
        self._n_components = count
        self._penalty = (
            None
            if graph is None
            else GraphPenalty(graph, laplacian=self.laplacian, normalize=self.normalize)
        )

    def _set_width(self, n: int) -> None:
        check_int(n, "CoactivationGraph: n_nodes")
        if self.kernel != "gaussian" and self.k >= n:
            raise ValueError(
                f"CoactivationGraph: k={self.k} neighbours need at least {self.k + 1} neurons, "
                f"the layer has {n}"
            )
        self._n_nodes = int(n)

    # -- persistence ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: ``buffer`` (a tensor copy or None) and JSON-able
        ``position``, ``filled``, ``n_updates``, ``frozen``, ``graph`` (``Graph.to_dict``
        or None), ``history`` (list of ``{"step", "graph"}``), ``frozen_at`` (the step the
        updates ended, or None), ``stable`` (accepted graphs in a row with the current
        component count) and ``step`` (the last step seen)."""
        return {
            "buffer": None if self._buffer is None else self._buffer.detach().clone(),
            "position": self._position,
            "filled": self._filled,
            "n_updates": self.n_updates,
            "frozen": self.frozen,
            "graph": None if self._graph is None else self._graph.to_dict(),
            "history": [{"step": s, "graph": g.to_dict()} for s, g in self._history],
            "frozen_at": self.frozen_at,
            "stable": self._stable,
            "step": self._step,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the buffer must match ``buffer_size`` (and n).
        States saved before ``frozen_at``, ``stable`` and ``step`` existed load too."""
        expected = {"buffer", "position", "filled", "n_updates", "frozen", "graph", "history"}
        if isinstance(state, Mapping) and set(state) == expected | set(_SCHEDULE_STATE):
            expected = set(state)
        if not isinstance(state, Mapping) or set(state) != expected:
            keys = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(
                f"CoactivationGraph state must have keys {sorted(expected)}, got {keys}"
            )
        position, filled = int(state["position"]), int(state["filled"])
        if not (0 <= position < self.buffer_size and 0 <= filled <= self.buffer_size):
            raise ValueError(
                f"CoactivationGraph: saved position {position} / filled {filled} do not fit "
                f"buffer_size={self.buffer_size}"
            )
        for key in ("n_updates", "position", "filled"):
            if not is_int(state[key], 0):
                raise ValueError(
                    f"CoactivationGraph state: {key} must be an int >= 0, got {state[key]!r}"
                )
        if not isinstance(state["frozen"], bool):
            raise ValueError(
                f"CoactivationGraph state: frozen must be True or False, got {state['frozen']!r}"
            )
        graph = None if state["graph"] is None else Graph.from_dict(state["graph"])
        history = [(int(h["step"]), Graph.from_dict(h["graph"])) for h in state["history"]]
        buffer = self._checked_buffer(state["buffer"])
        width = self._n_nodes
        for g in [graph, *(g for _, g in history)]:
            if g is not None and width is not None and g.n_nodes != width:
                raise ValueError(
                    f"CoactivationGraph state: a saved graph has {g.n_nodes} "
                    f"nodes, the layer has {width}"
                )
        self._buffer = buffer
        self._position, self._filled = position, filled
        self._reset_graphs()
        self._set_graph(graph, 0 if graph is None else graph.components()[0])
        self._history.extend(history)
        self.n_updates, self.frozen = int(state["n_updates"]), bool(state["frozen"])
        frozen_at, stable, step = (state.get(key, _SCHEDULE_STATE[key]) for key in _SCHEDULE_STATE)
        self.frozen_at = None if frozen_at is None else int(frozen_at)
        if stable is None:  # an older state: count the history's last equal counts
            counts = [g.components()[0] for _, g in history]
            stable = 0
            for c in reversed(counts):
                if c != self._n_components:
                    break
                stable += 1
        self._stable, self._step = int(stable), int(step)

    def _checked_buffer(self, buffer: torch.Tensor | None) -> torch.Tensor | None:
        """A float32 copy of a saved buffer (buffer_size, n); sets the width n."""
        if buffer is None:
            return None
        if not isinstance(buffer, torch.Tensor) or buffer.ndim != 2:
            raise ValueError(
                f"CoactivationGraph: saved buffer must be a 2-D tensor, got {buffer!r}"
            )
        if buffer.shape[0] != self.buffer_size or self._n_nodes not in (None, buffer.shape[1]):
            raise ValueError(
                f"CoactivationGraph: saved buffer {tuple(buffer.shape)} does not match "
                f"(buffer_size={self.buffer_size}, n={self._n_nodes})"
            )
        self._set_width(buffer.shape[1])
        return buffer.detach().to(torch.float32).clone()

    @classmethod
    def recommended(cls, total_steps: int = 3000, **overrides: Any) -> CoactivationGraph:
        """The measured learned-graph recipe (:data:`RECOMMENDED`) for a run of
        ``total_steps`` optimiser steps: first graph after a tenth of them, rebuilt every
        sixtieth (300 and 50 for 3,000 steps); ``overrides`` replace any argument. Use it
        with ``GraphRegularizer(..., weight=coactivation.RECOMMENDED_WEIGHT)``."""
        check_int(total_steps, "CoactivationGraph.recommended: total_steps")
        options = {
            **RECOMMENDED,
            "warmup_steps": total_steps // 10,
            "update_every": max(1, total_steps // 60),
            **overrides,
        }
        return cls(**options)

    def __repr__(self) -> str:
        current = "none" if self._graph is None else repr(self._graph)
        return (
            f"CoactivationGraph(kernel={self.kernel!r}, k={self.k}, "
            f"updates={self.n_updates}, frozen={self.frozen}, graph={current})"
        )


# ---------------------------------------------------------------------------- features


def neuron_features(activations: torch.Tensor, features: str = "raw") -> torch.Tensor:
    """Per-neuron features (n, S) from activations (S, n): raw, or z-scored per neuron."""
    x = activations.t()
    return standardize(x) if features == "standardized" else x.contiguous()


def project_profiles(
    x: torch.Tensor,
    dims: int,
    *,
    seed: int = 0,
    power_iterations: int = PROJECTION_POWER_ITERATIONS,
) -> torch.Tensor:
    """Rows of x (n, S) projected onto ``dims`` orthonormal directions of R^S that span
    about their leading principal subspace: (n, dims) float32 whose pairwise Euclidean
    distances are those of the projected rows (never larger than the originals).

    Randomized range finder (Halko, Martinsson & Tropp 2011) on the centred x^T, with
    ``power_iterations`` subspace iterations and a start drawn from ``seed``: time
    O(n S dims (2 + 2 power_iterations)), memory O((n + S) dims) beyond a centred copy of x."""
    n, s = x.shape
    if dims >= s:
        return x
    # distances between rows do not change when every column is shifted; the principal
    # subspace is that of the centred rows
    x = x - x.mean(dim=0, keepdim=True)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    omega = torch.randn(n, dims, generator=gen, device=x.device, dtype=x.dtype)
    basis = x.t() @ omega
    for _ in range(power_iterations):
        basis = torch.linalg.qr(basis).Q
        basis = x.t() @ (x @ basis)
    basis = torch.linalg.qr(basis).Q
    return x @ basis


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Rows of x (n, S) z-scored (population std); constant rows become 0."""
    centred = x - x.mean(dim=1, keepdim=True)
    std = centred.pow(2).mean(dim=1, keepdim=True).sqrt()
    return centred / torch.where(std > 0, std, torch.ones_like(std))


# ---------------------------------------------------------------------------- kernels


def nearest_neighbours(x: torch.Tensor, k: int, metric: str = "euclidean") -> torch.Tensor:
    """(n, k) int64: the k nearest rows of x (n, S) for each row, nearest first, self
    excluded; equal distances go to the lower index. ``metric``: "euclidean", or
    "correlation" (x z-scored; nearest = most correlated)."""
    return torch.cat([_nearest(scores, rows, k) for rows, scores in _score_blocks(x, metric)])


def symmetrised_edges(neighbours: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The undirected union of the kNN lists (n, k): edges (E, 2) int64 with i < j, sorted,
    and counts (E,) float32: 2 for mutual neighbours, 1 for one-sided ones."""
    n, k = neighbours.shape
    src = torch.arange(n, device=neighbours.device).repeat_interleave(k)
    dst = neighbours.reshape(-1)
    pair = torch.minimum(src, dst) * n + torch.maximum(src, dst)
    ids, counts = torch.unique(pair, return_counts=True)
    return torch.stack([ids // n, ids % n], dim=1), counts.float()


def gaussian_edges(
    x: torch.Tensor, bandwidth: float, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs i < j of rows of x (n, S) with ``w = exp(-||x_i - x_j||^2 / bandwidth^2)`` at
    least ``threshold``: edges (E, 2) int64 sorted, weights (E,) float32."""
    edges, weights = [], []
    for rows, d2 in _score_blocks(x, "euclidean"):
        w = torch.exp(-d2 / bandwidth**2)
        upper = torch.arange(x.shape[0], device=x.device) > rows[:, None]
        r, c = torch.nonzero(upper & (w >= threshold), as_tuple=True)
        edges.append(torch.stack([rows[r], c], dim=1))
        weights.append(w[r, c])
    return torch.cat(edges), torch.cat(weights)


def _adaptive_weights(x: torch.Tensor, edges: torch.Tensor, kth: torch.Tensor) -> torch.Tensor:
    """``exp(-d_ij^2 / (sigma_i sigma_j))`` (float64) on edges (E, 2) between rows of
    x (n, S), sigma_i = distance from i to its k-th nearest neighbour ``kth[i]`` (n,)."""
    nodes = torch.arange(x.shape[0], device=x.device)
    sigma = _pair_sums(x, torch.stack([nodes, kth], 1), _squared_difference).double().sqrt()
    sigma = sigma.clamp_min(torch.finfo(torch.float64).tiny)
    d2 = _pair_sums(x, edges, _squared_difference).double()
    # identical neurons (e.g. two constant ones, sigma 0) are as alike as can be: weight 1
    ratio = torch.where(
        d2 > 0, d2 / (sigma[edges[:, 0]] * sigma[edges[:, 1]]), torch.zeros_like(d2)
    )
    return torch.exp(-ratio)


def _score_blocks(x: torch.Tensor, metric: str):
    """Yield ``(rows (c,), scores (c, n))`` over row chunks of x (n, S); scores are
    non-negative, lower = closer: squared Euclidean distances or 1 - correlation."""
    n, s = x.shape
    if metric == "euclidean":
        # distances between rows do not change when every sample (column) is shifted; taking
        # the mean over neurons out first reduces cancellation in |a|^2 - 2ab + |b|^2
        x = x - x.mean(dim=0, keepdim=True)
        sq = x.pow(2).sum(dim=1)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    for begin in range(0, n, chunk):
        end = min(n, begin + chunk)
        if metric == "euclidean":
            scores = torch.addmm(sq[None, :], x[begin:end], x.t(), alpha=-2)
            scores.add_(sq[begin:end, None])
        else:
            scores = torch.addmm(torch.ones((), device=x.device), x[begin:end], x.t(), alpha=-1 / s)
        # + 0.0 turns -0.0 into +0.0
        yield torch.arange(begin, end, device=x.device), scores.clamp_min_(0).add_(0.0)


def _nearest(scores: torch.Tensor, rows: torch.Tensor, k: int) -> torch.Tensor:
    """Column indices (c, k) of the k lowest scores per row, the row's own node excluded;
    ties go to the lower column. Non-negative float32 scores order like their bit patterns,
    so (bits << 32 | column) is a unique int64 key with that tie-break."""
    columns = torch.arange(scores.shape[1], device=scores.device)
    keys = scores.view(torch.int32).to(torch.int64).bitwise_left_shift_(32).bitwise_or_(columns)
    keys[torch.arange(len(rows), device=rows.device), rows] = torch.iinfo(torch.int64).max
    return keys.topk(k, dim=1, largest=False).values & _LOW_32_BITS


def _squared_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).pow(2)


def _pair_sums(x: torch.Tensor, pairs: torch.Tensor, op) -> torch.Tensor:
    """``sum_s op(x[i], x[j])`` (P,) for pairs (P, 2) of rows of x (n, S), in chunks."""
    chunk = max(1, _CHUNK_ELEMENTS // max(1, x.shape[1]))
    return torch.cat([op(x[p[:, 0]], x[p[:, 1]]).sum(dim=1) for p in pairs.split(chunk)])


# ---------------------------------------------------------------------------- distributed


def _gather_across_ranks(samples: torch.Tensor | None) -> torch.Tensor | None:
    """Under an initialised process group with several ranks: every rank's samples (S_r, n)
    concatenated in rank order (the same on every rank); else ``samples`` unchanged.
    A rank that has not observed anything contributes no rows."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return samples
    if samples is not None:
        device = samples.device
    elif dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device("cpu")
    shape = [0, 0] if samples is None else list(samples.shape)
    info = torch.tensor(shape, dtype=torch.int64, device=device)
    infos = [torch.empty_like(info) for _ in range(dist.get_world_size())]
    dist.all_gather(infos, info)
    lengths = [int(i[0]) for i in infos]
    widths = {int(i[1]) for i in infos if int(i[0]) > 0}
    if len(widths) > 1:
        raise ValueError(f"CoactivationGraph: ranks observed different widths {sorted(widths)}")
    if not widths:
        return None
    padded = torch.zeros(max(lengths), widths.pop(), device=device)
    if samples is not None:
        padded[: samples.shape[0]] = samples
    gathered = [torch.empty_like(padded) for _ in lengths]
    dist.all_gather(gathered, padded)
    return torch.cat([g[:length] for g, length in zip(gathered, lengths, strict=True)])


# ---------------------------------------------------------------------------- validation


def _check_choice(name: str, value: object, options: tuple) -> None:
    if value not in options:
        raise ValueError(f"CoactivationGraph: unknown {name} {value!r}; expected one of {options}")
