"""Graph energies of activations: the GSR penalty ``mean_b z_b^T L z_b``, its Rayleigh form
and filter penalties ``mean_b ||h(L) z_b||^2`` (:mod:`gsreg.filters`).

``L z`` is computed once in the forward pass and saved; the backward pass is the analytic
gradient ``2 L z``, not autograd through a gather. It is computed by one of three paths, picked
from the graph when the penalty is built (all give the same values):

- ``"stencil"``: graphs whose edges ``(i, j)`` take few distinct offsets ``j - i`` (grids:
  1 and w; lines and paths: 1; tori and rings add the wrap-around offsets): for each offset d,
  ``z[:, d:]`` and ``z[:, :-d]`` times a coefficient vector, added to shifted slices of the
  output; a handful of passes over contiguous rows, no transposes and no gathers;
- ``"dense"``: other graphs of up to ``DENSE_MAX_NODES`` nodes: one dense (B, n) x (n, n)
  product, cheaper than any sparse kernel at that size;
- ``"csr"``: every other graph: a sparse CSR operator built from the edge list, O(B (n + E))
  work and no dense n x n matrix.

Under ``torch.compile`` (``fullgraph=True`` works on a fixed graph) the penalty's forward
runs no numpy and no host sync: the operator's host-side terms are prepared when the
penalty is built (float64 torch tensors; :meth:`GraphPenalty.prepare` moves them to a device
ahead of time), the CSR path becomes a gather and an ``index_add`` over the stored entries
(sparse tensors do not compile), and the NaN/Inf check becomes an on-device assertion
(``torch._assert_async``) instead of the eager ``ValueError``: a ``RuntimeError``, but, as
device assertions do, it may end the process (on CUDA; on CPU when inductor fuses it into
a parallel kernel); ``check_finite=False`` leaves it out.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from ._checks import check_choice, check_real
from .filters import GraphFilter, chebyshev_apply, check_order
from .graphs import LAPLACIAN_KINDS, Graph

REDUCTIONS = ("mean", "sum", "none")
NORMS = ("l2", "l1")
FILTER_LAPLACIANS = ("combinatorial", "normalized")  # symmetric: h(L) is symmetric too
NORMALIZATIONS = (False, True, "rayleigh", "centered")
PATHS = ("stencil", "dense", "csr")
# The stencil takes graphs with at most STENCIL_MAX_OFFSETS distinct offsets and at least
# STENCIL_NODES_PER_OFFSET nodes per offset (below that, its two slice updates per offset cost
# more in per-operation overhead than the dense product); other graphs of up to DENSE_MAX_NODES
# nodes take the dense product. Set from benchmarks/penalty.py and training-step measurements
# on CPU.
STENCIL_MAX_OFFSETS = 4
STENCIL_NODES_PER_OFFSET = 32
DENSE_MAX_NODES = 128


class _QuadraticForm(torch.autograd.Function):
    """Per-row quadratic form ``e_b = z_b^T S z_b`` (B,) of z (B, n) for a symmetric S.

    ``apply_s(z, *operator)`` returns ``S z`` (B, n) in z's layout. The forward also returns
    ``S z`` (not differentiable), which the backward reuses: the gradient ``2 S z * grad``
    keeps that layout (a transposed gradient would make every later backward operation
    strided). Under ``create_graph=True`` (gradient penalties, Hessian-vector products)
    the backward recomputes ``S z`` with differentiable operations, so that the second
    derivative ``2 S grad`` is exact. ``setup_context`` keeps ``torch.func`` working.
    """

    @staticmethod
    def forward(z: torch.Tensor, apply_s, *operator) -> tuple[torch.Tensor, torch.Tensor]:
        sz = apply_s(z, *operator)
        return torch.linalg.vecdot(z, sz), sz

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        z, apply_s, *operator = inputs
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(z, output[1])
        ctx.apply_s, ctx.operator = apply_s, operator

    @staticmethod
    def backward(ctx, grad_energy: torch.Tensor, grad_sz: torch.Tensor | None):
        z, sz = ctx.saved_tensors
        if torch.is_grad_enabled():  # a differentiable S z for higher derivatives
            sz = ctx.apply_s(z, *ctx.operator)
        return (sz * (2.0 * grad_energy).unsqueeze(1), None) + (None,) * len(ctx.operator)


class _PolynomialFilter(torch.autograd.Function):
    """``p(S) z`` (B, n) for z (B, n), a symmetric operator S and a Chebyshev series p on
    ``[0, lmax]`` (:func:`gsreg.filters.chebyshev_apply`).

    p(S) is symmetric, so the backward is the same filter applied to the incoming gradient:
    ``len(coefs) - 1`` products with S and nothing saved but the operator, where autograd
    through the recurrence would keep every intermediate (B, n). The backward calls this
    Function again, so higher derivatives are exact too.
    """

    @staticmethod
    def forward(z, coefs, lmax, apply_s, *operator):
        return _series_apply(z, *operator, apply_s=apply_s, coefs=coefs, lmax=lmax)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, ctx.coefs, ctx.lmax, ctx.apply_s, *operator = inputs
        ctx.operator = operator

    @staticmethod
    def backward(ctx, grad):
        filtered = _PolynomialFilter.apply(grad, ctx.coefs, ctx.lmax, ctx.apply_s, *ctx.operator)
        return (filtered, None, None, None) + (None,) * len(ctx.operator)


def _series_apply(z: torch.Tensor, *operator, apply_s, coefs, lmax) -> torch.Tensor:
    """``p(S) z`` (B, n) for the Chebyshev series ``coefs`` on ``[0, lmax]``, S applied by
    ``apply_s(x, *operator)``; an ``apply_s`` of :class:`_QuadraticForm`. Without autograd
    the stencil path runs the fused recurrence :func:`_stencil_series`."""
    if apply_s is stencil_apply and not torch.is_grad_enabled():
        return _stencil_series(z, *operator, coefs=coefs, lmax=lmax)
    return chebyshev_apply(z, lambda x: apply_s(x, *operator), coefs, lmax)


def _stencil_series(z, offsets, diag, *stencil, coefs, lmax) -> torch.Tensor:
    """:func:`gsreg.filters.chebyshev_apply` for a stencil operator, in fewer passes (no
    autograd). With ``S' = 2 L / lmax - I`` the recurrence ``T_m = 2 S' T_{m-1} - T_{m-2}``
    runs on ``V_m = σ_m T_m``, signs ``σ = 1, 1, -1, -1, 1, 1, ...``, for which
    ``V_m = ±2 S' V_{m-1} + V_{m-2}`` (+ for odd m): one stencil application accumulated
    in place onto ``V_{m-2}``, with the factor 2 and the sign folded into its diagonals."""
    scale = 4.0 / lmax
    diag2 = diag * scale - 2.0  # 2 S' by diagonals
    stencil2 = [c * scale for c in stencil]
    signed = {1: (diag2, 1.0), -1: (-diag2, -1.0)}
    out = z * (0.5 * float(coefs[0]))
    if len(coefs) == 1:
        return out
    prev, cur = z, stencil_apply(z, offsets, diag2 * 0.5, *(c * 0.5 for c in stencil2))
    out.add_(cur, alpha=float(coefs[1]))
    for m, c in enumerate(coefs[2:], start=2):
        sign = 1 if m % 2 else -1
        sigma = 1.0 if (m // 2) % 2 == 0 else -1.0
        d2, s2 = signed[sign]
        nxt = (prev.clone() if m == 2 else prev).addcmul_(cur, d2)  # z itself must not change
        for d, coef in zip(offsets, stencil2, strict=True):
            nxt[:, d:].addcmul_(cur[:, :-d], coef, value=-s2)
            nxt[:, :-d].addcmul_(cur[:, d:], coef, value=-s2)
        out.add_(nxt, alpha=sigma * float(c))
        prev, cur = cur, nxt
    return out


def csr_apply(z: torch.Tensor, operator: torch.Tensor) -> torch.Tensor:
    """``S z`` (B, n) for z (B, n) and a symmetric sparse CSR S (n, n).

    The product runs in the (n, B) layout, where the CSR kernel reads contiguous rows of
    ``z^T``; S symmetric gives ``(S z^T)^T = z S``."""
    return torch.sparse.mm(operator, z.t().contiguous()).t().contiguous()


def dense_apply(z: torch.Tensor, operator: torch.Tensor) -> torch.Tensor:
    """``S z`` (B, n) for z (B, n) and a dense symmetric S (n, n)."""
    return z @ operator


def stencil_apply(
    z: torch.Tensor, offsets: tuple[int, ...], diag: torch.Tensor, *coefs: torch.Tensor
) -> torch.Tensor:
    """``S z`` (B, n) for z (B, n) and a symmetric S stored by diagonals: ``diag`` (n,) and,
    for each offset d, ``coefs`` (n - d,) with ``S[i, i + d] = S[i + d, i] = -coef[i]``."""
    out = z * diag
    for d, coef in zip(offsets, coefs, strict=True):
        out[:, d:].addcmul_(z[:, :-d], coef, value=-1)
        out[:, :-d].addcmul_(z[:, d:], coef, value=-1)
    return out


def entries_apply(
    z: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor
) -> torch.Tensor:
    """``S z`` (B, n) for z (B, n) and S (n, n) given by its stored entries ``S[rows[k],
    cols[k]] = vals[k]`` (nnz,): the compilable form of :func:`csr_apply`."""
    return torch.zeros_like(z).index_add_(1, rows, z[:, cols] * vals)


_APPLY = dict(zip(PATHS, (stencil_apply, dense_apply, csr_apply), strict=True))
# the CSR path's operator under torch.compile (see the module docstring)
COMPILED_CSR = "csr_entries"
_APPLY[COMPILED_CSR] = entries_apply


def edge_offsets(graph: Graph) -> np.ndarray:
    """The distinct offsets ``j - i`` (sorted, int64) of the edges ``(i, j)``, i < j."""
    return np.unique(graph.edges[:, 1] - graph.edges[:, 0])


def stencil_terms(graph: Graph, kind: str) -> tuple[tuple[int, ...], np.ndarray, list[np.ndarray]]:
    """``(offsets, diag (n,), [coef (n - d,) for d in offsets])`` float64 of the symmetric
    form of the ``kind`` Laplacian, stored by diagonals (see :func:`stencil_apply`)."""
    n = graph.n_nodes
    i, j = graph.edges[:, 0], graph.edges[:, 1]
    diag, coef = graph.laplacian_terms(kind)
    offsets = edge_offsets(graph)
    coefs = []
    for d in offsets:
        on = j - i == d
        c = np.zeros(n - d)
        c[i[on]] = coef[on]
        coefs.append(c)
    return tuple(int(d) for d in offsets), diag, coefs


def choose_path(graph: Graph) -> str:
    """The path GraphPenalty takes for ``graph``: "stencil", "dense" or "csr"."""
    n = graph.n_nodes
    count = len(edge_offsets(graph))
    if count <= STENCIL_MAX_OFFSETS and n >= STENCIL_NODES_PER_OFFSET * max(count, 1):
        return "stencil"
    return "dense" if n <= DENSE_MAX_NODES else "csr"


def host_terms(graph: Graph, kind: str, path: str) -> tuple:
    """The operator of ``path`` on the host, float64 / int64 CPU tensors: ``(offsets, diag,
    *coefs)`` (stencil), ``(S,)`` (n, n) (dense) or ``(indptr (n + 1,), indices (nnz,),
    values (nnz,), rows (nnz,))`` of the symmetric CSR matrix S (csr)."""
    if path == "stencil":
        offsets, diag, coefs = stencil_terms(graph, kind)
        return (offsets, *(torch.from_numpy(t) for t in [diag, *coefs]))
    csr = graph.laplacian_matrix(kind, symmetric=True)
    if path == "dense":
        return (torch.from_numpy(csr.toarray()),)
    indptr = csr.indptr.astype(np.int64)
    rows = np.repeat(np.arange(graph.n_nodes, dtype=np.int64), np.diff(indptr))
    arrays = (indptr, csr.indices.astype(np.int64), csr.data, rows)
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)


def device_operator(
    path: str, host: tuple, n: int, device: torch.device, dtype: torch.dtype
) -> tuple:
    """The operator tensors of ``path`` (or :data:`COMPILED_CSR`) on ``device`` in ``dtype``
    from its :func:`host_terms`; only torch operations, so that it traces."""
    if path == "stencil":
        offsets, *tensors = host
        return (offsets, *(t.to(device=device, dtype=dtype) for t in tensors))
    if path == "dense":
        return (host[0].to(device=device, dtype=dtype),)
    indptr, indices, values, rows = host
    if path == COMPILED_CSR:
        return (rows.to(device), indices.to(device), values.to(device=device, dtype=dtype))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        csr = torch.sparse_csr_tensor(
            indptr, indices, values.to(dtype), size=(n, n), check_invariants=False
        )
    return (csr.to(device),)


def symmetric_operator(
    graph: Graph, kind: str, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """The (n, n) CSR matrix S with ``z^T S z = z^T L z``: S = L, or (L + L^T)/2 (random walk);
    :meth:`Graph.laplacian_matrix` with ``symmetric=True``, as a torch tensor."""
    csr = graph.laplacian_matrix(kind, symmetric=True)
    n = graph.n_nodes
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.as_tensor(csr.indptr.astype(np.int64)),
            torch.as_tensor(csr.indices.astype(np.int64)),
            torch.as_tensor(csr.data, dtype=dtype),
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

    With a ``filter`` (:mod:`gsreg.filters`) the energy of a row is ``||h(L) z_b||^2``
    (``norm="l2"``; normalised the same way if asked) or ``||h(L) z_b||_1`` (``norm="l1"``,
    the authors' form), with h(L) the order-``order`` Chebyshev polynomial of the filter on
    the same operator as the plain penalty (stencil, dense or CSR); its backward applies
    the same polynomial to the incoming gradient (h(L) is symmetric). The plain penalty is
    the filter ``h(λ) = sqrt(λ)``.

    Args:
        graph: the graph on the layer's n neurons.
        laplacian: "combinatorial" (D - W), "normalized" (I - D^-1/2 W D^-1/2) or
            "random_walk" (I - D^-1 W; its quadratic form is that of (L + L^T) / 2).
        normalize: False, True / "rayleigh", or "centered".
        reduction: "mean" over samples (scalar), "sum" (scalar) or "none" (shape (...)).
        eps: added to the Rayleigh denominator (>= 0; with 0, a row whose denominator is 0,
            all zeros or, centred, constant, has energy 0).
        check_finite: raise when activations hold NaN/Inf: eagerly a ``ValueError`` (one
            host sync per call); under ``torch.compile`` an on-device assertion, no sync.
        filter: a :class:`gsreg.filters.GraphFilter`, or None for the plain penalty; needs a
            symmetric Laplacian (combinatorial or normalized).
        order: the filter's Chebyshev order (default ``filters.DEFAULT_ORDER``, at most
            n - 1); warns when the polynomial is off by more than
            ``filters.MAX_RELATIVE_ERROR``.
        norm: "l2" (squared norm) or "l1", for a filter; "l1" takes no ``normalize``.

    The computation follows the input's device; half-precision inputs are evaluated in
    float32. Twice differentiable (exact Hessian-vector products).
    """

    def __init__(
        self,
        graph: Graph,
        laplacian: str = "combinatorial",
        normalize: bool | str = False,
        reduction: str = "mean",
        eps: float = 1e-8,
        check_finite: bool = True,
        filter: GraphFilter | None = None,
        order: int | None = None,
        norm: str = "l2",
    ) -> None:
        super().__init__()
        if not isinstance(graph, Graph):
            raise TypeError(f"GraphPenalty needs a gsreg Graph, got {type(graph).__name__}")
        check_choice(laplacian, "GraphPenalty: laplacian", LAPLACIAN_KINDS)
        check_choice(normalize, "GraphPenalty: normalize", NORMALIZATIONS)
        check_choice(reduction, "GraphPenalty: reduction", REDUCTIONS)
        check_real(eps, "GraphPenalty: eps", 0)
        self.graph = graph
        self.laplacian = laplacian
        self.normalize = "rayleigh" if normalize is True else normalize
        self.reduction = reduction
        self.eps = float(eps)
        self.check_finite = check_finite
        self.filter, self.order, self.norm = _check_filter(
            graph, laplacian, self.normalize, filter, order, norm
        )
        # ||h(L) z||^2 = z^T h(L)^2 z: the squared norm is the quadratic form of one series
        # (h^2), K products with L and the gradient saved, where filtering then squaring
        # costs K products forward and K backward; the L1 form needs h(L) z itself
        squared = filter is not None and norm == "l2"
        self._series = None
        if filter is not None:
            coefs, lmax = (filter.squared() if squared else filter).series(
                graph, order, laplacian, None
            )
            # Python floats: the forward then runs no numpy (torch.compile traces it whole)
            self._series = (tuple(float(c) for c in coefs), float(lmax))
        self._operators: dict[tuple, Any] = {}
        self._host: dict[str, tuple] = {}  # {path: host_terms(...)}
        self._path = choose_path(graph)

    @property
    def _path(self) -> str:
        """The path in use, "stencil", "dense" or "csr" (see the module docstring); tests
        and benchmarks may set it. Setting it makes the path's host terms, so that a
        compiled forward (which cannot run numpy) finds them ready; an unknown path fails
        at the next call."""
        return self._path_name

    @_path.setter
    def _path(self, path: str) -> None:
        self._path_name = path
        if path in PATHS:
            self._host_terms(path)

    @property
    def n_nodes(self) -> int:
        return self.graph.n_nodes

    def operator(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The cached (n, n) sparse CSR operator S (``z^T S z = z^T L z``) on ``device`` in
        ``dtype``."""
        return self._operator("csr", torch.device(device), dtype)[0]

    def prepare(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> None:
        """Build the operator on ``device`` in ``dtype`` now (a forward does it on first
        use), for eager and compiled calls: before ``torch.compile``, this keeps the build
        out of the compiled graph (which would otherwise be traced twice, with and without
        the build)."""
        kinds = (self._path, COMPILED_CSR) if self._path == "csr" else (self._path,)
        for kind in kinds:
            self._operator(kind, torch.device(device), dtype)

    def _host_terms(self, path: str) -> tuple:
        """The cached :func:`host_terms` of ``path``."""
        host = self._host.get(path)
        if host is None:
            check_choice(path, "GraphPenalty: path", PATHS)
            host = self._host[path] = host_terms(self.graph, self.laplacian, path)
        return host

    def _operator_kind(self) -> str:
        """The path in use, or :data:`COMPILED_CSR` for the CSR path under torch.compile."""
        path = self._path
        if path == "csr" and torch.compiler.is_compiling():
            return COMPILED_CSR
        return path

    def _operator(self, kind: str, device: torch.device, dtype: torch.dtype) -> tuple:
        """The cached operator tensors of ``kind`` (a path or :data:`COMPILED_CSR`) on
        ``device`` in ``dtype``."""
        key = (kind, device, dtype)
        operator = self._operators.get(key)
        if operator is None:
            host = self._host_terms("csr" if kind == COMPILED_CSR else kind)
            operator = device_operator(kind, host, self.n_nodes, device, dtype)
            self._operators[key] = operator
        return operator

    def _quadratic_form(self, z: torch.Tensor) -> torch.Tensor:
        """Per-row ``z_b^T L z_b`` (B,) of z (B, n)."""
        kind = self._operator_kind()
        operator = self._operator(kind, z.device, z.dtype)
        if not (z.requires_grad and torch.is_grad_enabled()):
            # nothing to differentiate: no autograd Function (whose tracing by torch.compile
            # fails when no input requires grad)
            return torch.linalg.vecdot(z, _APPLY[kind](z, *operator))
        return _QuadraticForm.apply(z, _APPLY[kind], *operator)[0]

    def _filter_energy(self, z: torch.Tensor) -> torch.Tensor:
        """Per-row ``||h(L) z_b||^2`` (as ``z_b^T h(L)^2 z_b``) or ``||h(L) z_b||_1`` (B,)
        of z (B, n)."""
        kind = self._operator_kind()
        operator = self._operator(kind, z.device, z.dtype)
        coefs, lmax = self._series
        series = functools.partial(_series_apply, apply_s=_APPLY[kind], coefs=coefs, lmax=lmax)
        grad = z.requires_grad and torch.is_grad_enabled()
        if self.norm == "l2":
            if not grad:  # no autograd Function without a gradient (as _quadratic_form)
                return torch.linalg.vecdot(z, series(z, *operator))
            return _QuadraticForm.apply(z, series, *operator)[0]
        if grad and not torch.compiler.is_compiling():
            filtered = _PolynomialFilter.apply(z, coefs, lmax, _APPLY[kind], *operator)
        else:  # compiled: autograd through the recurrence, which traces as one graph
            filtered = series(z, *operator)
        return filtered.abs().sum(dim=1)

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
        energy = self._quadratic_form(z) if self.filter is None else self._filter_energy(z)
        if self.check_finite:
            _check_finite(energy, z, name)
        if self.normalize == "rayleigh":
            energy = _ratio(energy, (z * z).sum(dim=1) + self.eps)
        elif self.normalize == "centered":
            centred = z - z.mean(dim=1, keepdim=True)
            energy = _ratio(energy, (centred * centred).sum(dim=1) + self.eps)
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
        text = (
            f"graph={self.graph.name!r}, n_nodes={self.n_nodes}, laplacian={self.laplacian!r}, "
            f"normalize={self.normalize!r}, reduction={self.reduction!r}"
        )
        if self.filter is not None:
            text += f", filter={str(self.filter)!r}, order={self.order}, norm={self.norm!r}"
        return text


def _check_filter(graph, laplacian, normalize, filt, order, norm) -> tuple:
    """``(filter, order, norm)`` of a GraphPenalty, checked; order None without a filter."""
    if filt is None:
        if order is not None or norm != "l2":
            raise ValueError(
                "GraphPenalty: order and norm apply to filter penalties; got them without a filter"
            )
        return None, None, "l2"
    if not isinstance(filt, GraphFilter):
        raise TypeError(
            f"GraphPenalty: filter must be a gsreg.filters filter, got {type(filt).__name__}"
        )
    check_choice(norm, "GraphPenalty: norm", NORMS)
    if laplacian not in FILTER_LAPLACIANS:
        raise ValueError(
            f"GraphPenalty: a filter penalty needs a symmetric Laplacian "
            f"({' or '.join(FILTER_LAPLACIANS)}), got {laplacian!r}"
        )
    if norm == "l1" and normalize is not False:
        raise ValueError("GraphPenalty: the l1 filter penalty takes no normalize")
    return filt, (None if filt.exact else check_order(order, graph)), norm


def _ratio(energy: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """energy / denominator (B,), with 0 where the denominator is 0: a zero row (Rayleigh)
    or a constant row (centred) with ``eps=0`` has no pattern to penalise, and its value
    and gradient stay finite."""
    positive = denominator > 0
    safe = torch.where(positive, denominator, torch.ones_like(denominator))
    return torch.where(positive, energy / safe, torch.zeros_like(energy))


def _check_finite(energy: torch.Tensor, z: torch.Tensor, name: str) -> None:
    """Raise when an energy (B,) is NaN/Inf: eagerly one reduction and one host read (the
    sum is finite when every energy is, energies being >= 0 up to rounding; only when it is
    not are they checked one by one, so that a finite batch whose sum overflows passes);
    under torch.compile an on-device assertion, no host read."""
    if torch.compiler.is_compiling():
        message = f"{name}: activations or their graph energy are not finite"
        torch._assert_async(torch.isfinite(energy).all(), message)
    elif not math.isfinite(energy.sum().item()) and not bool(torch.isfinite(energy).all()):
        raise ValueError(_non_finite_message(z, name))


def _non_finite_message(z: torch.Tensor, name: str) -> str:
    n_nan = int(torch.isnan(z).sum())
    n_inf = int(torch.isinf(z).sum())
    if n_nan or n_inf:
        return f"{name}: activations contain {n_nan} NaN and {n_inf} Inf values"
    return f"{name}: the graph energy overflowed (activations up to {float(z.abs().max()):.3g})"
