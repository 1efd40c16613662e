"""Spectral graph filters ``h(L)``: a frequency response on the Laplacian's eigenvalues.

A filter is defined by its response ``h(λ)`` on the eigenvalues of a graph Laplacian
``L = U diag(λ) U^T``; applied to signals z (B, n) on the nodes it gives
``h(L) z = U diag(h(λ)) U^T z``. Small λ are smooth signals (low frequencies), large λ
rough ones. :meth:`GraphFilter.apply` never computes U: it evaluates a Chebyshev
polynomial of order K in L (Hammond, Vandergheynst & Gribonval, "Wavelets on graphs via
spectral graph theory", ACHA 2011, section 6), K sparse products with L, each
O(B (n + E)). The polynomial approximates h on ``[0, lmax]``, where ``lmax`` is an upper
bound of the largest eigenvalue: by default the Gershgorin bound ``2 max_i d_i`` for the
combinatorial Laplacian (each row of D - W has absolute sum 2 d_i) and 2 for the
normalised and random-walk ones; ``lmax="lanczos"`` estimates it with a few Lanczos
iterations (tighter, so the same order resolves h more finely).

The filters:

- :func:`heat` ``exp(-t λ)``: heat diffusion for time t, a low-pass;
- :func:`low_pass` ``1 / sqrt(1 + (λ / cutoff)^(2 s))``: a Butterworth low-pass of
  sharpness s, half power at ``cutoff``;
- :func:`mexican_hat` ``x exp(1 - x)`` with ``x = scale λ``: a band-pass peaking (at 1)
  at ``λ = 1 / scale``, the Mexican-hat kernel of the spectral graph wavelet transform;
- :func:`wavelet` the cubic-spline band-pass kernel of Hammond et al. (2011, eq. 65,
  α = β = 2, x1 = 1, x2 = 2) at ``x = scale λ``: ``x^2`` below 1, a cubic spline
  between 1 and 2, ``4 x^-2`` above 2. Its atoms ``h(L) δ_i`` are localised around node i
  (exactly within K hops for an order-K polynomial) and smaller scales are more local;
- :func:`polynomial` ``sum_k c_k λ^k``: rewritten exactly as a Chebyshev series of its
  own degree, no approximation.

The plain GSR penalty ``z^T L z`` is ``||h(L) z||^2`` for ``h(λ) = sqrt(λ)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._checks import check_choice, check_int, check_real
from .graphs import LAPLACIAN_KINDS, Graph

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_ORDER",
    "FILTERS",
    "GraphFilter",
    "chebyshev_apply",
    "chebyshev_coefficients",
    "check_order",
    "get",
    "heat",
    "lmax_bound",
    "lmax_lanczos",
    "low_pass",
    "mexican_hat",
    "polynomial",
    "wavelet",
]

DEFAULT_ORDER = 16
MAX_ORDER = 1000
# Above this relative error (max |h - p| / max |h| on [0, lmax]) apply() warns to raise
# the order: at 1e-3 the filtered signal differs from h(L) z by at most 0.1% of its scale.
MAX_RELATIVE_ERROR = 1e-3
# Chebyshev-Gauss nodes per coefficient: 4 per coefficient makes the discrete coefficients
# equal the truncated Chebyshev series' to near machine precision for smooth responses.
NODES_PER_COEFFICIENT = 4
ERROR_GRID = 2001  # points on [0, lmax] where the approximation error is measured
LANCZOS_MARGIN = 1.01  # the Lanczos estimate is from below; 1% keeps the bound above


@dataclass(frozen=True)
class GraphFilter:
    """A spectral graph filter: a response ``h(λ)`` and its application ``h(L) z``.

    Subclasses implement :meth:`_response` on a float64 array. Instances are immutable
    and compare by value; ``str(f)`` is its spec (e.g. ``"heat:t=2"``).
    """

    def response(self, lam) -> np.ndarray:
        """h(λ) (float64, same shape as ``lam``), vectorised over any array of λ >= 0."""
        lam = np.asarray(lam, dtype=np.float64)
        if np.any(lam < 0) or not np.all(np.isfinite(lam)):
            raise ValueError("the eigenvalues λ of a Laplacian are finite and >= 0")
        return self._response(lam)

    def _response(self, lam: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    exact = False  # True when coefficients() represent h exactly at any order

    def coefficients(self, order: int, lmax: float) -> np.ndarray:
        """(order + 1,) Chebyshev coefficients of h on ``[0, lmax]`` (see
        :func:`chebyshev_coefficients`)."""
        return chebyshev_coefficients(self.response, order, lmax)

    def approximation_error(self, order: int, lmax: float) -> float:
        """max |h(λ) - p(λ)| / max |h(λ)| over ``ERROR_GRID`` points of ``[0, lmax]``, for
        the order-``order`` Chebyshev polynomial p that :meth:`apply` uses."""
        return _relative_error(self.response, self.coefficients(order, lmax), lmax)

    def series(self, graph: Graph, order: int | None, laplacian: str, lmax) -> tuple:
        """``(coefs, lmax)``: the Chebyshev series that :meth:`apply` and
        :class:`gsreg.GraphPenalty` evaluate on ``graph``'s ``laplacian``, checked (order
        and lmax as in :meth:`apply`); warns when it is off by more than
        ``MAX_RELATIVE_ERROR``."""
        bound = resolve_lmax(graph, laplacian, lmax)
        if self.exact:
            return self.coefficients(0, bound), bound
        coefs = self.coefficients(check_order(order, graph), bound)
        warn_if_inexact(self, coefs, bound)
        return coefs, bound

    def squared(self) -> GraphFilter:
        """The filter ``h(λ)^2``: ``z^T h(L)^2 z = ||h(L) z||^2``, so a squared-norm filter
        penalty is a quadratic form in ``h(L)^2`` (one polynomial, not two)."""
        return _Squared(self)

    def apply(
        self,
        z: torch.Tensor,
        graph: Graph,
        order: int | None = None,
        laplacian: str = "combinatorial",
        lmax: float | str | None = None,
    ) -> torch.Tensor:
        """``h(L) z`` (B, n) for signals z (B, n) (or (n,)) on the nodes of ``graph``.

        Differentiable in z. ``order`` is the Chebyshev order K (K products with L;
        default ``DEFAULT_ORDER``, at most n - 1: see :func:`check_order`);
        ``lmax`` an upper bound of L's largest eigenvalue (default :func:`lmax_bound`,
        ``"lanczos"`` for :func:`lmax_lanczos`). Warns when the polynomial's relative
        error on ``[0, lmax]`` exceeds ``MAX_RELATIVE_ERROR``.
        """
        import torch

        laplacian = check_choice(laplacian, "laplacian", LAPLACIAN_KINDS)
        if not torch.is_tensor(z) or not z.is_floating_point():
            raise TypeError(f"z must be a floating-point tensor, got {type(z).__name__}")
        single = z.dim() == 1
        rows = z.unsqueeze(0) if single else z
        if rows.dim() != 2 or rows.shape[1] != graph.n_nodes:
            raise ValueError(
                f"z must have shape (B, {graph.n_nodes}) for {graph.name}, got {tuple(z.shape)}"
            )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            lap = graph.laplacian(laplacian, device=z.device, dtype=z.dtype).to_sparse_csr()

        def matvec(x: torch.Tensor) -> torch.Tensor:  # rows of x times L^T
            return torch.sparse.mm(lap, x.t().contiguous()).t()

        coefs, bound = self.series(graph, order, laplacian, lmax)
        out = chebyshev_apply(rows, matvec, coefs, bound)
        return out[0] if single else out

    def __str__(self) -> str:
        fields = ",".join(f"{k}={v:g}" for k, v in vars(self).items())
        return f"{self.name}:{fields}"

    name = "filter"


@dataclass(frozen=True)
class _Heat(GraphFilter):
    t: float
    name = "heat"

    def __post_init__(self) -> None:
        object.__setattr__(self, "t", _positive(self.t, "heat: t"))

    def _response(self, lam):
        return np.exp(-self.t * lam)


@dataclass(frozen=True)
class _LowPass(GraphFilter):
    cutoff: float
    sharpness: float = 2.0
    name = "low_pass"

    def __post_init__(self) -> None:
        object.__setattr__(self, "cutoff", _positive(self.cutoff, "low_pass: cutoff"))
        object.__setattr__(self, "sharpness", _positive(self.sharpness, "low_pass: sharpness"))

    def _response(self, lam):
        with np.errstate(over="ignore"):  # (λ/c)^2s -> inf gives h -> 0, as it should
            return 1.0 / np.sqrt(1.0 + (lam / self.cutoff) ** (2.0 * self.sharpness))


@dataclass(frozen=True)
class _MexicanHat(GraphFilter):
    scale: float
    name = "mexican_hat"

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", _positive(self.scale, "mexican_hat: scale"))

    def _response(self, lam):
        x = self.scale * lam
        return x * np.exp(1.0 - x)


@dataclass(frozen=True)
class _Wavelet(GraphFilter):
    scale: float
    name = "wavelet"

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", _positive(self.scale, "wavelet: scale"))

    def _response(self, lam):
        x = self.scale * lam
        spline = -5.0 + x * (11.0 + x * (-6.0 + x))  # s(1) = s(2) = 1, s'(1) = 2, s'(2) = -1
        with np.errstate(divide="ignore"):
            tail = np.where(x > 0, 4.0 / np.maximum(x, 1e-300) ** 2, 0.0)
        return np.where(x < 1.0, x**2, np.where(x <= 2.0, spline, tail))


@dataclass(frozen=True)
class _Polynomial(GraphFilter):
    coefs: tuple[float, ...]
    name = "polynomial"

    def __post_init__(self) -> None:
        coefs = tuple(float(c) for c in np.atleast_1d(np.asarray(self.coefs, dtype=np.float64)))
        if not coefs or not all(math.isfinite(c) for c in coefs):
            raise ValueError(f"polynomial: coefs must be finite numbers, got {self.coefs!r}")
        object.__setattr__(self, "coefs", coefs)

    def _response(self, lam):
        return np.polynomial.polynomial.polyval(lam, self.coefs)

    exact = True

    def squared(self) -> GraphFilter:
        return _Polynomial(tuple(np.convolve(self.coefs, self.coefs)))

    def coefficients(self, order: int, lmax: float) -> np.ndarray:
        """The polynomial itself as a Chebyshev series on ``[0, lmax]`` (its own degree,
        whatever ``order``)."""
        lmax = _positive(lmax, "lmax")
        cheb = np.polynomial.Polynomial(self.coefs).convert(
            kind=np.polynomial.Chebyshev, domain=[0.0, lmax]
        )
        coefs = np.array(cheb.coef, dtype=np.float64)
        coefs[0] *= 2.0  # the c_0 / 2 convention of chebyshev_apply
        return coefs

    def __str__(self) -> str:
        return f"polynomial:coefs=({','.join(f'{c:g}' for c in self.coefs)})"


@dataclass(frozen=True)
class _Squared(GraphFilter):
    base: GraphFilter
    name = "squared"

    def _response(self, lam):
        return self.base._response(lam) ** 2

    def __str__(self) -> str:
        return f"({self.base})^2"


def heat(t: float = 1.0) -> GraphFilter:
    """Heat kernel ``exp(-t λ)`` (t > 0): diffusion for time t; larger t, smoother."""
    return _Heat(t)


def low_pass(cutoff: float, sharpness: float = 2.0) -> GraphFilter:
    """Butterworth low-pass ``1 / sqrt(1 + (λ / cutoff)^(2 sharpness))``: passes λ below
    ``cutoff``, half power at it; larger ``sharpness``, a steeper edge (needs higher order)."""
    return _LowPass(cutoff, sharpness)


def mexican_hat(scale: float = 1.0) -> GraphFilter:
    """Mexican-hat band-pass ``x exp(1 - x)``, ``x = scale λ``: 0 at λ = 0, peak 1 at
    ``λ = 1 / scale``."""
    return _MexicanHat(scale)


def wavelet(scale: float = 1.0) -> GraphFilter:
    """Spectral graph wavelet kernel of Hammond et al. (2011) at ``x = scale λ``: ``x^2``
    for x < 1, the cubic ``-5 + 11 x - 6 x^2 + x^3`` on [1, 2], ``4 / x^2`` beyond; a
    band-pass whose atoms are localised on the graph, more so at small scale."""
    return _Wavelet(scale)


def polynomial(coefs: Sequence[float]) -> GraphFilter:
    """``h(λ) = sum_k coefs[k] λ^k``, applied exactly (``len(coefs) - 1`` products with L,
    whatever the order asked for)."""
    return _Polynomial(tuple(coefs))


FILTERS: dict[str, Callable[..., GraphFilter]] = {
    "heat": heat,
    "low_pass": low_pass,
    "mexican_hat": mexican_hat,
    "wavelet": wavelet,
    "polynomial": polynomial,
}


def get(name: str, **params) -> GraphFilter:
    """The filter called ``name`` (a key of :data:`FILTERS`) with ``params``."""
    check_choice(name, "filter", tuple(FILTERS))
    return FILTERS[name](**params)


# ----------------------------------------------------------------- Chebyshev machinery


def chebyshev_coefficients(
    response: Callable[[np.ndarray], np.ndarray], order: int, lmax: float
) -> np.ndarray:
    """(order + 1,) coefficients c of ``h(λ) ≈ c_0 / 2 + sum_{k>=1} c_k T_k(2 λ / lmax - 1)``
    on ``[0, lmax]``, by Chebyshev-Gauss quadrature on ``NODES_PER_COEFFICIENT (order + 1)``
    nodes (the truncated Chebyshev series, near the best polynomial of that order).

    Raises ValueError when h is not finite on the nodes."""
    order = check_int(order, "order", 0)
    lmax = _positive(lmax, "lmax")
    n = NODES_PER_COEFFICIENT * (order + 1)
    theta = np.pi * (np.arange(n) + 0.5) / n
    values = np.asarray(response(0.5 * lmax * (np.cos(theta) + 1.0)), dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"the filter's response is not finite on [0, {lmax:g}]")
    return (2.0 / n) * np.cos(np.outer(np.arange(order + 1), theta)) @ values


def chebyshev_apply(
    z: torch.Tensor,
    matvec: Callable[[torch.Tensor], torch.Tensor],
    coefs: np.ndarray,
    lmax: float,
) -> torch.Tensor:
    """``p(L) z`` (B, n) for the Chebyshev series ``coefs`` on ``[0, lmax]`` (as returned by
    :func:`chebyshev_coefficients`), with ``matvec(x)`` computing ``L x`` row by row for
    x (B, n): the three-term recurrence ``T_k = 2 S T_{k-1} - T_{k-2}`` with
    ``S = 2 L / lmax - I``, ``len(coefs) - 1`` products with L. Differentiable in z."""
    scale = 2.0 / lmax
    out = z * (0.5 * float(coefs[0]))
    if len(coefs) == 1:
        return out
    prev, cur = z, matvec(z) * scale - z
    out = out + float(coefs[1]) * cur
    for c in coefs[2:]:
        prev, cur = cur, 2.0 * (matvec(cur) * scale - cur) - prev
        out = out + float(c) * cur
    return out


def lmax_bound(graph: Graph, laplacian: str = "combinatorial") -> float:
    """An upper bound of the ``laplacian`` kind's largest eigenvalue: ``2 max_i d_i``
    (Gershgorin) for the combinatorial Laplacian, 2 for the normalised and random-walk
    ones; 1 for a graph without edges (any positive bound works when L = 0)."""
    laplacian = check_choice(laplacian, "laplacian", LAPLACIAN_KINDS)
    if graph.n_edges == 0:
        return 1.0
    if laplacian == "combinatorial":
        return float(2.0 * graph.degrees().max())
    return 2.0


def lmax_lanczos(graph: Graph, laplacian: str = "combinatorial") -> float:
    """The largest eigenvalue of the (symmetrised) ``laplacian`` kind by Lanczos iteration
    (scipy ``eigsh``), times ``LANCZOS_MARGIN`` so that it bounds the spectrum; never above
    :func:`lmax_bound`. Small graphs use a dense eigensolver."""
    from scipy.sparse.linalg import eigsh

    bound = lmax_bound(graph, laplacian)
    if graph.n_edges == 0:
        return bound
    lap = graph.laplacian_matrix(laplacian, symmetric=True)
    if graph.n_nodes <= 64:
        top = float(np.linalg.eigvalsh(lap.toarray())[-1])
    else:
        top = float(eigsh(lap, k=1, which="LA", tol=1e-4, return_eigenvectors=False)[0])
    return min(bound, top * LANCZOS_MARGIN)


def resolve_lmax(graph: Graph, laplacian: str, lmax: float | str | None) -> float:
    """``lmax`` as a number: None gives :func:`lmax_bound`, ``"lanczos"``
    :func:`lmax_lanczos`, a number is checked positive."""
    if lmax is None:
        return lmax_bound(graph, laplacian)
    if isinstance(lmax, str):
        check_choice(lmax, "lmax", ("lanczos",))
        return lmax_lanczos(graph, laplacian)
    return _positive(lmax, "lmax")


def check_order(order: int | None, graph: Graph) -> int:
    """The Chebyshev order, checked: 1 <= order <= max(n - 1, 1) (a polynomial of degree
    n - 1 in L already takes any values on L's n eigenvalues) and <= ``MAX_ORDER``; None
    gives ``DEFAULT_ORDER`` or, on smaller graphs, n - 1."""
    most = min(max(graph.n_nodes - 1, 1), MAX_ORDER)
    if order is None:
        return min(DEFAULT_ORDER, most)
    order = check_int(order, "order", 1)
    if order > most:
        raise ValueError(
            f"order {order} is too large for {graph.name} ({graph.n_nodes} nodes): at most {most}"
        )
    return order


def warn_if_inexact(filt: GraphFilter, coefs: np.ndarray, lmax: float) -> float:
    """The relative approximation error of ``coefs``; warns above ``MAX_RELATIVE_ERROR``."""
    error = _relative_error(filt.response, coefs, lmax)
    if error > MAX_RELATIVE_ERROR:
        warnings.warn(
            f"{filt}: the order-{len(coefs) - 1} Chebyshev polynomial is off by "
            f"{error:.1e} (relative) on [0, {lmax:g}]; raise the order",
            stacklevel=4,
        )
    return error


def _relative_error(response, coefs: np.ndarray, lmax: float) -> float:
    lam = np.linspace(0.0, lmax, ERROR_GRID)
    exact = response(lam)
    series = np.polynomial.chebyshev.chebval(2.0 * lam / lmax - 1.0, coefs)
    series = series - 0.5 * coefs[0]  # the c_0 / 2 convention
    scale = float(np.abs(exact).max())
    return float(np.abs(exact - series).max() / scale) if scale > 0 else 0.0


def _positive(value, name: str) -> float:
    return check_real(value, name, 0.0, strict_min=True)
