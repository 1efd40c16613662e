"""Reference architectures of the paper, with named, hookable layers.

Every hidden layer is an ``nn.Sequential(Linear, LeakyReLU)`` block, so hooking its dotted
name (e.g. ``"decoder.0"``) yields the post-activation output, where GSR is applied.
Each model keeps its constructor arguments in ``model.config`` (JSON-able), so
``type(model)(**model.config)`` rebuilds it. :class:`CapsuleNet` is the exception to the
block rule: its pose layer is ``digit_caps`` (capsules, see its docstring).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from . import filters
from ._checks import check_real
from ._util import check_positive_int as _check_positive_int
from .graphs import Graph


class GraphLayerAutoencoder(nn.Module):
    """Dense autoencoder whose learned-graph layer is a LeakyReLU layer before the noise.

    ``n_features -> hidden (LeakyReLU) -> width (LeakyReLU, "encoder.graph") -> Gaussian
    noise -> hidden (LeakyReLU) -> n_features``. It differs from
    ``DenseAutoencoder(n_features, (hidden,), latent=width, noise=noise)`` only in the
    LeakyReLU on the ``width`` units; He-normal init, zero biases.
    """

    layer = "encoder.graph"

    def __init__(
        self,
        n_features: int,
        width: int = 100,
        hidden: int = 50,
        noise: float = 0.5,
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        self.config = {
            "n_features": n_features,
            "width": width,
            "hidden": hidden,
            "noise": float(noise),
            "negative_slope": float(negative_slope),
        }

        def block(n_in: int, n_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(n_in, n_out), nn.LeakyReLU(negative_slope))

        self.encoder = nn.Sequential(
            OrderedDict(hidden=block(n_features, hidden), graph=block(hidden, width))
        )
        self.noise = GaussianNoise(float(noise))
        self.decoder = nn.Sequential(
            OrderedDict(hidden=block(width, hidden), out=nn.Linear(hidden, n_features))
        )
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, a=negative_slope, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_features) -> reconstruction (B, n_features); noise in training mode only."""
        return self.decoder(self.noise(self.encoder(x)))


__all__ = [
    "OUTPUT_ACTIVATIONS",
    "CapsuleNet",
    "ConvClassifier",
    "DenseAutoencoder",
    "DenseClassifier",
    "DigitCapsules",
    "GraphLayerAutoencoder",
    "GaussianNoise",
    "PrimaryCapsules",
    "WaveletDictionary",
    "squash",
]

OUTPUT_ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


class GaussianNoise(nn.Module):
    """Adds N(0, std^2) noise in training mode; identity in eval mode. Any shape."""

    def __init__(self, std: float) -> None:
        super().__init__()
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.std > 0:
            return x + self.std * torch.randn_like(x)
        return x

    def extra_repr(self) -> str:
        return f"std={self.std}"


EXACT_ATOMS_MAX_NODES = 2048  # one dense eigh of L (n x n) at construction, about a second


class WaveletDictionary(nn.Module):
    """A bottleneck whose output is a softmax-weighted combination of fixed graph atoms.

    ``x (B, in_features) -> logits = Linear(x) (B, A) -> w = softmax(logits / temperature)
    -> w @ atoms (B, n)``: every output is a convex combination of the A atoms, signals on
    the graph's n nodes, so each unit of the output has a place on the graph and each
    sample lights up a few local patterns. ``atoms`` is a tensor (A, n), or a graph filter
    (:mod:`gsreg.filters`) or a sequence of them: their atoms ``h(L) δ_i`` at every node i
    of the combinatorial Laplacian, each scaled to a peak |value| of 1, filter by filter
    (A = n per filter). The atoms are computed once: exactly from the eigendecomposition
    of L for graphs of up to ``EXACT_ATOMS_MAX_NODES`` nodes when ``order`` is None, else
    by the Chebyshev polynomial of that order. A wavelet filter gives localised atoms, so
    the layer's units get local receptive fields on the graph. The atoms are a buffer
    (saved, not trained); only the linear map to the logits learns. ``weights(x)`` returns w (B, A).
    """

    def __init__(
        self,
        graph: Graph,
        atoms: torch.Tensor | filters.GraphFilter | Sequence[filters.GraphFilter],
        in_features: int,
        temperature: float = 1.0,
        order: int | None = None,
    ) -> None:
        super().__init__()
        _check_positive_int("in_features", in_features)
        self.temperature = check_real(temperature, "temperature", 0.0, strict_min=True)
        self.graph = graph
        self.register_buffer("atoms", _dictionary(graph, atoms, order))
        self.logits = nn.Linear(in_features, len(self.atoms))

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The atoms' weights w (B, A): non-negative, each row summing to 1."""
        return torch.softmax(self.logits(x) / self.temperature, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weights(x) @ self.atoms.to(x.dtype)

    def extra_repr(self) -> str:
        return f"graph={self.graph.name}, atoms={len(self.atoms)}, temperature={self.temperature:g}"


def _dictionary(graph: Graph, atoms, order: int | None) -> torch.Tensor:
    """The (A, n) float32 atoms of :class:`WaveletDictionary`."""
    if torch.is_tensor(atoms):
        if atoms.dim() != 2 or atoms.shape[1] != graph.n_nodes or len(atoms) == 0:
            raise ValueError(
                f"atoms must have shape (A, {graph.n_nodes}) for {graph.name}, "
                f"got {tuple(atoms.shape)}"
            )
        if not torch.isfinite(atoms).all():
            raise ValueError("atoms must be finite")
        return atoms.detach().to(torch.float32).clone()
    bank = [atoms] if isinstance(atoms, filters.GraphFilter) else list(atoms)
    if not bank or not all(isinstance(f, filters.GraphFilter) for f in bank):
        raise TypeError(
            "atoms must be a tensor (A, n), a gsreg.filters filter or a sequence of them, "
            f"got {atoms!r}"
        )
    exact = order is None and graph.n_nodes <= EXACT_ATOMS_MAX_NODES
    if exact:
        lam, vecs = np.linalg.eigh(graph.laplacian_matrix().toarray())
        lam = np.clip(lam, 0.0, None)  # round-off below 0
    else:
        deltas = torch.eye(graph.n_nodes, dtype=torch.float64)
    parts = []
    for f in bank:
        if exact:  # row i: the atom at node i (h(L) is symmetric)
            part = torch.from_numpy((vecs * f.response(lam)) @ vecs.T)
        else:
            part = f.apply(deltas, graph, order=order)
        peak = part.abs().amax(dim=1, keepdim=True)
        parts.append(part / torch.where(peak > 0, peak, 1.0))
    return torch.cat(parts).to(torch.float32)


class DenseAutoencoder(nn.Module):
    """Dense autoencoder: ``n_features -> hidden... -> latent -> decoder_hidden... -> n_features``.

    Layers: ``encoder.0``, ``encoder.1``, ... (Linear + LeakyReLU blocks), ``encoder.latent``
    (linear bottleneck, clean), ``noise`` (Gaussian noise on the latent, training only),
    ``decoder.0``, ``decoder.1``, ... (blocks), ``decoder.out`` (Linear), optionally followed
    by ``decoder.out_activation``. ``decoder_hidden`` defaults to ``reversed(hidden)``.
    Weights use He-normal init for LeakyReLU(``negative_slope``), biases are zero.
    """

    def __init__(
        self,
        n_features: int,
        hidden: Sequence[int] = (50, 50),
        latent: int = 16,
        decoder_hidden: Sequence[int] | None = None,
        negative_slope: float = 0.2,
        noise: float = 0.0,
        output_activation: str | None = None,
    ) -> None:
        super().__init__()
        _check_positive_int("n_features", n_features)
        _check_positive_int("latent", latent)
        hidden = _check_sizes("hidden", hidden)
        decoder_hidden = (
            hidden[::-1]
            if decoder_hidden is None
            else _check_sizes("decoder_hidden", decoder_hidden)
        )
        _check_non_negative("negative_slope", negative_slope)
        _check_non_negative("noise", noise)
        if output_activation is not None and output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(
                f"output_activation must be None or one of {sorted(OUTPUT_ACTIVATIONS)},"
                f" got {output_activation!r}"
            )
        self.config = {
            "n_features": n_features,
            "hidden": list(hidden),
            "latent": latent,
            "decoder_hidden": list(decoder_hidden),
            "negative_slope": float(negative_slope),
            "noise": float(noise),
            "output_activation": output_activation,
        }
        enc, width = _blocks(n_features, hidden, negative_slope)
        enc["latent"] = nn.Linear(width, latent)
        self.encoder = nn.Sequential(enc)
        self.noise = GaussianNoise(float(noise))
        dec, width = _blocks(latent, decoder_hidden, negative_slope)
        dec["out"] = nn.Linear(width, n_features)
        if output_activation is not None:
            dec["out_activation"] = OUTPUT_ACTIVATIONS[output_activation]()
        self.decoder = nn.Sequential(dec)
        _init_weights(self, negative_slope)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_features) -> clean latent (B, latent)."""
        return self.encoder(x)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """(B, latent) -> reconstruction (B, n_features)."""
        return self.decoder(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_features) -> reconstruction (B, n_features); latent noise in training mode."""
        return self.decoder(self.noise(self.encoder(x)))


class ConvClassifier(nn.Module):
    """The paper's MNIST classifier.

    ``features``: conv5x5(32)-act-maxpool2-conv5x5(64)-act-maxpool2 (``same`` padding);
    ``fc``: Linear(hidden) + LeakyReLU (hook ``"fc"`` for the post-activation layer);
    ``dropout``; ``out``: Linear(n_classes) logits. Input (B, C, H, W) or flat (B, C*H*W).
    ``negative_slope=0`` gives ReLU.
    """

    def __init__(
        self,
        in_shape: Sequence[int] = (1, 28, 28),
        n_classes: int = 10,
        hidden: int = 64,
        dropout: float = 0.4,
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        in_shape = _check_sizes("in_shape", in_shape)
        if len(in_shape) != 3 or min(in_shape[1:]) < 4:
            raise ValueError(
                f"in_shape must be (channels, height, width) with height, width >= 4,"
                f" got {in_shape}"
            )
        _check_positive_int("n_classes", n_classes)
        _check_positive_int("hidden", hidden)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        _check_non_negative("negative_slope", negative_slope)
        self.config = {
            "in_shape": list(in_shape),
            "n_classes": n_classes,
            "hidden": hidden,
            "dropout": float(dropout),
            "negative_slope": float(negative_slope),
        }
        self.in_shape = in_shape
        c, h, w = in_shape
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(c, 32, 5, padding=2),
                act1=nn.LeakyReLU(negative_slope),
                pool1=nn.MaxPool2d(2),
                conv2=nn.Conv2d(32, 64, 5, padding=2),
                act2=nn.LeakyReLU(negative_slope),
                pool2=nn.MaxPool2d(2),
            )
        )
        self.fc = _block(64 * (h // 4) * (w // 4), hidden, negative_slope)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, n_classes)
        _init_weights(self, negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) or (B, C*H*W) -> logits (B, n_classes)."""
        shape = tuple(self.in_shape)
        if x.ndim == 2 and x.shape[1] == shape[0] * shape[1] * shape[2]:
            x = x.reshape(-1, *shape)
        elif x.ndim != 4 or tuple(x.shape[1:]) != shape:
            raise ValueError(
                f"ConvClassifier expects input (B, {', '.join(map(str, shape))}) or"
                f" (B, {shape[0] * shape[1] * shape[2]}), got {tuple(x.shape)}"
            )
        z = self.features(x).flatten(1)
        return self.out(self.dropout(self.fc(z)))


class DenseClassifier(nn.Module):
    """A dense classifier for flat inputs, the dense counterpart of ``ConvClassifier``.

    ``features.0``, ``features.1``, ... (Linear + LeakyReLU blocks of ``hidden`` widths),
    ``fc`` (Linear(width) + LeakyReLU, the layer GSR structures), ``dropout`` and ``out``
    (logits (B, n_classes)). He-normal weights, zero biases. ``model.config`` holds the
    constructor arguments.
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        hidden: Sequence[int] = (50,),
        width: int = 64,
        dropout: float = 0.0,
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        _check_positive_int("n_features", n_features)
        _check_positive_int("n_classes", n_classes)
        _check_positive_int("width", width)
        hidden = _check_sizes("hidden", hidden)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        self.config = {
            "n_features": int(n_features),
            "n_classes": int(n_classes),
            "hidden": [int(h) for h in hidden],
            "width": int(width),
            "dropout": float(dropout),
            "negative_slope": float(negative_slope),
        }
        blocks, n_in = _blocks(int(n_features), self.config["hidden"], negative_slope)
        self.features = nn.Sequential(blocks)
        self.fc = _block(n_in, int(width), negative_slope)
        self.dropout = nn.Dropout(float(dropout))
        self.out = nn.Linear(int(width), int(n_classes))
        _init_weights(self, negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_features) -> logits (B, n_classes)."""
        return self.out(self.dropout(self.fc(self.features(x))))


def squash(s: torch.Tensor, dim: int = -1, eps: float = 1e-8) -> torch.Tensor:
    """Capsule non-linearity ``|s|^2 / (1 + |s|^2) * s / |s|`` along ``dim`` (any shape):
    keeps the direction, maps the length into [0, 1)."""
    norm2 = (s * s).sum(dim, keepdim=True)
    return norm2 / (1 + norm2) * s / torch.sqrt(norm2 + eps)


class PrimaryCapsules(nn.Module):
    """A convolution read as capsules: (B, C_in, H, W) -> squashed (B, types*h*w, dim).

    The conv has ``types * dim`` output channels; channel ``t * dim + j`` is component j
    of capsule type t, and capsules are ordered type-major, then row-major over the
    (h, w) output grid.
    """

    def __init__(self, in_channels: int, types: int, dim: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.types, self.dim = types, dim
        self.conv = nn.Conv2d(in_channels, types * dim, kernel, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.conv(x)  # (B, types*dim, h, w)
        B = u.shape[0]
        u = u.reshape(B, self.types, self.dim, -1).transpose(2, 3)
        return squash(u.reshape(B, -1, self.dim))


class DigitCapsules(nn.Module):
    """Dynamic routing by agreement (Sabour et al. 2017): (B, n_in, in_dim) -> (B, n_out, out_dim).

    Each input capsule i predicts every output capsule j as ``u_hat_ij = W_ij u_i``;
    ``iterations`` rounds of routing weigh the predictions by coupling coefficients
    (softmax over j of logits that grow with the agreement ``u_hat_ij . v_j``), and
    ``v_j = squash(sum_i c_ij u_hat_ij)``. The predictions are detached in the agreement
    updates, so gradients flow through the last round only (a common shortcut that
    trains like the full unrolled routing at a fraction of the cost).
    """

    def __init__(
        self,
        n_in: int,
        in_dim: int,
        n_out: int,
        out_dim: int,
        iterations: int = 3,
        init_std: float = 0.05,
    ) -> None:
        super().__init__()
        _check_positive_int("iterations", iterations)
        self.n_out, self.out_dim, self.iterations = n_out, out_dim, iterations
        self.weight = nn.Parameter(init_std * torch.randn(n_in, n_out * out_dim, in_dim))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        B, n_in = u.shape[:2]
        u_hat = torch.einsum("nod,bnd->bno", self.weight, u)
        u_hat = u_hat.reshape(B, n_in, self.n_out, self.out_dim)
        logits = u_hat.new_zeros(B, n_in, self.n_out)
        for r in range(self.iterations):
            last = r == self.iterations - 1
            prediction = u_hat if last else u_hat.detach()
            coupling = logits.softmax(dim=2).unsqueeze(-1)  # (B, n_in, n_out, 1)
            v = squash((coupling * prediction).sum(dim=1))  # (B, n_out, out_dim)
            if not last:
                logits = logits + (prediction * v.unsqueeze(1)).sum(-1)
        return v


class CapsuleNet(nn.Module):
    """A small capsule network (Sabour et al. 2017) with a reconstruction decoder.

    ``conv`` (``conv_kernel`` x ``conv_kernel``, ``conv_channels``, ReLU) -> ``primary``
    (:class:`PrimaryCapsules`: a ``primary_kernel`` conv with stride ``primary_stride``,
    ``primary_types`` capsule types of ``primary_dim`` dims on its output grid) ->
    ``digit_caps`` (:class:`DigitCapsules`, ``routing_iterations`` rounds; output
    (B, n_classes, capsule_dim), one pose vector per class whose length is the class
    probability) -> ``decoder`` (dense ReLU layers ``decoder_hidden``, then sigmoid pixels)
    reading the digit capsules with every capsule but one masked to zero.

    GSR on the poses: hook ``"digit_caps"`` with ``nodes="flatten"``: node ``c * capsule_dim
    + k`` is dimension k of capsule c, the node order of ``graphs.capsules(n_classes,
    capsule_dim)``. Input (B, C, H, W) or flat (B, C*H*W). ``model.config`` holds the
    constructor arguments.
    """

    def __init__(
        self,
        in_shape: Sequence[int] = (1, 28, 28),
        n_classes: int = 10,
        conv_channels: int = 64,
        conv_kernel: int = 9,
        primary_types: int = 8,
        primary_dim: int = 8,
        primary_kernel: int = 9,
        primary_stride: int = 2,
        capsule_dim: int = 16,
        routing_iterations: int = 3,
        decoder_hidden: Sequence[int] = (256, 512),
    ) -> None:
        super().__init__()
        in_shape = _check_sizes("in_shape", in_shape)
        decoder_hidden = _check_sizes("decoder_hidden", decoder_hidden)
        sizes = {
            "n_classes": n_classes,
            "conv_channels": conv_channels,
            "conv_kernel": conv_kernel,
            "primary_types": primary_types,
            "primary_dim": primary_dim,
            "primary_kernel": primary_kernel,
            "primary_stride": primary_stride,
            "capsule_dim": capsule_dim,
            "routing_iterations": routing_iterations,
        }
        for name, value in sizes.items():
            _check_positive_int(name, value)
        if len(in_shape) != 3:
            raise ValueError(f"in_shape must be (channels, height, width), got {in_shape}")
        grid = [(s - conv_kernel + 1 - primary_kernel) // primary_stride + 1 for s in in_shape[1:]]
        if min(grid) < 1:
            raise ValueError(
                f"in_shape {in_shape} is too small for a {conv_kernel}x"
                f"{conv_kernel} conv and a {primary_kernel}x{primary_kernel} "
                "primary conv"
            )
        self.config = {"in_shape": list(in_shape), **sizes, "decoder_hidden": list(decoder_hidden)}
        self.in_shape = in_shape
        self.n_classes, self.capsule_dim = n_classes, capsule_dim
        self.conv = nn.Sequential(
            OrderedDict(conv=nn.Conv2d(in_shape[0], conv_channels, conv_kernel), act=nn.ReLU())
        )
        self.primary = PrimaryCapsules(
            conv_channels, primary_types, primary_dim, primary_kernel, primary_stride
        )
        self.digit_caps = DigitCapsules(
            primary_types * grid[0] * grid[1],
            primary_dim,
            n_classes,
            capsule_dim,
            routing_iterations,
        )
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        width = n_classes * capsule_dim
        for i, n_out in enumerate(decoder_hidden):
            layers[str(i)] = nn.Sequential(nn.Linear(width, n_out), nn.ReLU())
            width = n_out
        layers["out"] = nn.Linear(width, math.prod(in_shape))
        layers["out_activation"] = nn.Sigmoid()
        self.decoder = nn.Sequential(layers)

    def poses(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) or (B, C*H*W) -> digit capsules (B, n_classes, capsule_dim)."""
        return self.digit_caps(self.primary(self.conv(self._as_images(x))))

    def decode(self, poses: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Reconstruct from capsule ``classes`` (B,) of ``poses`` (B, n_classes,
        capsule_dim), the others masked to zero -> flat images (B, C*H*W)."""
        mask = nn.functional.one_hot(classes, self.n_classes).to(poses.dtype)
        return self.decoder((poses * mask.unsqueeze(-1)).flatten(1))

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Class lengths (B, n_classes) and the reconstruction (B, C*H*W) from the capsule
        of class ``y`` (B,) when given (training), else from the longest capsule."""
        v = self.poses(x)
        lengths = v.norm(dim=-1)
        classes = lengths.argmax(dim=1) if y is None else y
        return lengths, self.decode(v, classes)

    def _as_images(self, x: torch.Tensor) -> torch.Tensor:
        shape = tuple(self.in_shape)
        if x.ndim == 2 and x.shape[1] == math.prod(shape):
            return x.reshape(-1, *shape)
        if x.ndim != 4 or tuple(x.shape[1:]) != shape:
            raise ValueError(
                f"CapsuleNet expects input (B, {', '.join(map(str, shape))}) or"
                f" (B, {math.prod(shape)}), got {tuple(x.shape)}"
            )
        return x


def _block(n_in: int, n_out: int, negative_slope: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_out), nn.LeakyReLU(negative_slope))


def _blocks(
    n_in: int, sizes: Sequence[int], negative_slope: float
) -> tuple[OrderedDict[str, nn.Module], int]:
    """Hidden blocks named "0", "1", ... and the width of the last one."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i, n_out in enumerate(sizes):
        layers[str(i)] = _block(n_in, n_out, negative_slope)
        n_in = n_out
    return layers, n_in


def _init_weights(model: nn.Module, negative_slope: float) -> None:
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, a=negative_slope, nonlinearity="leaky_relu")
            nn.init.zeros_(m.bias)


def _check_non_negative(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")


def _check_sizes(name: str, sizes: object) -> tuple[int, ...]:
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
        raise ValueError(f"{name} must be a sequence of positive ints, got {sizes!r}")
    for s in sizes:
        _check_positive_int(f"each entry of {name}", s)
    return tuple(sizes)
