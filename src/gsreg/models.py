"""Reference architectures of the paper, with named, hookable layers.

Every hidden layer is an ``nn.Sequential(Linear, LeakyReLU)`` block, so hooking its dotted
name (e.g. ``"decoder.0"``) yields the post-activation output, where GSR is applied.
Each model keeps its constructor arguments in ``model.config`` (JSON-able), so
``type(model)(**model.config)`` rebuilds it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from ._util import check_positive_int as _check_positive_int

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
