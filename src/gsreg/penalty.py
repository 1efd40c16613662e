"""Graph energies of activations: the GSR penalty ``mean_b z_b^T L z_b`` and its Rayleigh form.

The Laplacian is applied as a sparse CSR operator built from the graph's edge list, so one
evaluation costs O(B (n + E)) and never forms a dense n x n matrix. The backward pass is the
analytic gradient ``2 L z`` (saved from the forward), not autograd through a gather.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn
from torch.autograd.function import once_differentiable

from .graphs import LAPLACIAN_KINDS, Graph

REDUCTIONS = ("mean", "sum", "none")
NORMALIZATIONS = (False, True, "rayleigh", "centered")


class _QuadraticForm(torch.autograd.Function):
    """Per-row quadratic form ``e_b = z_b^T S z_b`` for a symmetric sparse S (n, n)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, operator: torch.Tensor) -> torch.Tensor:
        # (n, n) @ (n, B): S z for every sample at once; S symmetric so no transpose of S.
        sz = torch.sparse.mm(operator, z.t()).t()
        ctx.save_for_backward(sz)
        return (z * sz).sum(dim=1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_energy: torch.Tensor):
        (sz,) = ctx.saved_tensors
        return 2.0 * grad_energy.unsqueeze(1) * sz, None


def symmetric_operator(
    graph: Graph, kind: str, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """The (n, n) CSR matrix S with ``z^T S z = z^T L z``: S = L, or (L + L^T)/2 (random walk)."""
    diag, coef = graph.laplacian_terms(kind)
    n = graph.n_nodes
    i, j = graph.edges[:, 0], graph.edges[:, 1]
    nodes = np.arange(n)
    rows = np.concatenate([nodes, i, j])
    cols = np.concatenate([nodes, j, i])
    vals = np.concatenate([diag, -coef, -coef])
    order = np.lexsort((cols, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    crow = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=crow[1:])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.as_tensor(crow),
            torch.as_tensor(cols.astype(np.int64)),
            torch.as_tensor(vals, dtype=dtype),
            size=(n, n),
            device=device,
            check_invariants=False,
        )


class GraphPenalty(nn.Module):
    """The GSR penalty of activations on a graph.

    ``pen(z)`` with z of shape (B, n) (or (..., n): leading dimensions are samples) returns
    ``reduce_b z_b^T L z_b``; with ``normalize`` the Rayleigh quotient
    ``z_b^T L z_b / (||z_b||^2 + eps)`` (``True`` or ``"rayleigh"``) or its mean-centred form
    ``z_b^T L z_b / (||z_b - mean(z_b)||^2 + eps)`` (``"centered"``), which a constant offset
    cannot lower.

    Args:
        graph: the graph on the layer's n neurons.
        laplacian: "combinatorial" (D - W), "normalized" (I - D^-1/2 W D^-1/2) or
            "random_walk" (I - D^-1 W; its quadratic form is that of (L + L^T) / 2).
        normalize: False, True / "rayleigh", or "centered".
        reduction: "mean" over samples (scalar), "sum" (scalar) or "none" (shape (...)).
        eps: added to the Rayleigh denominator.
        check_finite: raise when activations hold NaN/Inf (costs one host sync per call).

    The computation follows the input's device; half-precision inputs are evaluated in
    float32. Differentiable once (no double backward).
    """

    def __init__(
        self,
        graph: Graph,
        laplacian: str = "combinatorial",
        normalize: bool | str = False,
        reduction: str = "mean",
        eps: float = 1e-8,
        check_finite: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(graph, Graph):
            raise TypeError(f"GraphPenalty needs a gsreg Graph, got {type(graph).__name__}")
        if laplacian not in LAPLACIAN_KINDS:
            raise ValueError(f"unknown laplacian {laplacian!r}; expected one of {LAPLACIAN_KINDS}")
        if not any(normalize is option for option in (False, True)) and normalize not in (
            "rayleigh",
            "centered",
        ):
            raise ValueError(
                f"normalize must be False, True, 'rayleigh' or 'centered', got {normalize!r}"
            )
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; expected one of {REDUCTIONS}")
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.graph = graph
        self.laplacian = laplacian
        self.normalize = "rayleigh" if normalize is True else normalize
        self.reduction = reduction
        self.eps = float(eps)
        self.check_finite = check_finite
        self._operators: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    @property
    def n_nodes(self) -> int:
        return self.graph.n_nodes

    def operator(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The cached (n, n) sparse operator on ``device`` in ``dtype``."""
        key = (torch.device(device), dtype)
        if key not in self._operators:
            self._operators[key] = symmetric_operator(self.graph, self.laplacian, *key)
        return self._operators[key]

    def energies(self, z: torch.Tensor, name: str = "activations") -> torch.Tensor:
        """Per-sample energies (B,) of z (B, n), normalised if asked; ``name`` goes in errors."""
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(z).__name__}")
        if z.ndim != 2 or z.shape[1] != self.n_nodes:
            raise ValueError(
                f"{name}: expected activations of shape (B, {self.n_nodes}) for graph "
                f"{self.graph.name!r} with {self.n_nodes} nodes, got {tuple(z.shape)}"
            )
        if z.shape[0] == 0:
            raise ValueError(f"{name}: empty batch, no activations to penalise")
        if not z.is_floating_point():
            raise TypeError(f"{name}: activations must be floating point, got {z.dtype}")
        if z.dtype in (torch.float16, torch.bfloat16):
            z = z.float()
        energy = _QuadraticForm.apply(z, self.operator(z.device, z.dtype))
        if self.check_finite and not bool(torch.isfinite(energy).all()):
            raise ValueError(_non_finite_message(z, name))
        if self.normalize == "rayleigh":
            energy = energy / ((z * z).sum(dim=1) + self.eps)
        elif self.normalize == "centered":
            centred = z - z.mean(dim=1, keepdim=True)
            energy = energy / ((centred * centred).sum(dim=1) + self.eps)
        return energy

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (..., n) -> scalar (mean/sum) or (...) (none)."""
        if isinstance(z, torch.Tensor) and z.ndim >= 1:
            batch_shape = z.shape[:-1]
            flat = z.reshape(-1, z.shape[-1]) if z.ndim != 2 else z
        else:
            batch_shape, flat = (), z
        energy = self.energies(flat)
        if self.reduction == "mean":
            return energy.mean()
        if self.reduction == "sum":
            return energy.sum()
        return energy.reshape(batch_shape)

    def extra_repr(self) -> str:
        return (
            f"graph={self.graph.name!r}, n_nodes={self.n_nodes}, laplacian={self.laplacian!r}, "
            f"normalize={self.normalize!r}, reduction={self.reduction!r}"
        )


def _non_finite_message(z: torch.Tensor, name: str) -> str:
    n_nan = int(torch.isnan(z).sum())
    n_inf = int(torch.isinf(z).sum())
    if n_nan or n_inf:
        return f"{name}: activations contain {n_nan} NaN and {n_inf} Inf values"
    return f"{name}: the graph energy overflowed (activations up to {float(z.abs().max()):.3g})"
