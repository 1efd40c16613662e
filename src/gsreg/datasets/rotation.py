"""Images of an asymmetric object rotating through 360 degrees (a circular latent variable)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage

__all__ = ["Rotation", "rotation"]

_OVERSAMPLE = 4  # the object is drawn and rotated at 4x resolution, then block-averaged
_SHIFT, _SCALE = 0.3, 0.8  # glyph moved right of the centre of rotation, and shrunk


class Rotation(NamedTuple):
    """Frames of a rotating object; unpacks as ``images, angles = rotation()``.

    Attributes:
        images: (n_frames, size, size) float32 in [0, 1].
        angles: (n_frames,) float64 rotation angle of each frame in degrees, in [0, 360),
            counter-clockwise.
    """

    images: np.ndarray
    angles: np.ndarray

    @property
    def X(self) -> np.ndarray:
        """(n_frames, size * size) float32: the images flattened row-major."""
        return self.images.reshape(len(self.images), -1)


def rotation(
    n_frames: int = 400,
    size: int = 28,
    seed: int = 0,
    noise: float = 0.0,
    offset: float = 0.0,
) -> Rotation:
    """An asymmetric glyph (an "F" with a dot) rotated in ``n_frames`` equal steps.

    Frame ``k`` shows the glyph rotated by ``offset + 360 k / n_frames`` degrees
    counter-clockwise about the image centre. The glyph has no rotational or mirror
    symmetry and lies inside the inscribed circle, so every frame shows all of it and no
    two angles give the same image. It is drawn at 4x resolution, rotated with bilinear
    interpolation (``scipy.ndimage.rotate``) and block-averaged down to ``size`` pixels.

    Args:
        n_frames: number of frames (angles), >= 2.
        size: image side in pixels, >= 8.
        seed: seeds ``numpy.random.default_rng`` for the pixel noise.
        noise: standard deviation of Gaussian pixel noise added after rotation (pixels
            are clipped back to [0, 1]); 0 gives noise-free frames and ignores ``seed``.
        offset: angle of frame 0 in degrees; e.g. half a step, ``180 / n_frames``, gives
            a test set of frames between those of ``offset=0``.
    """
    for name, value, low in (("n_frames", n_frames, 2), ("size", size, 8)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"rotation: {name} must be an integer >= {low}, got {value!r}")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"rotation: noise must be a finite number >= 0, got {noise!r}")
    if not np.isfinite(offset):
        raise ValueError(f"rotation: offset must be finite, got {offset!r}")
    angles = np.mod(offset + 360.0 * np.arange(n_frames) / n_frames, 360.0)
    glyph = _glyph(size * _OVERSAMPLE)
    images = np.empty((n_frames, size, size), dtype=np.float32)
    for k, angle in enumerate(angles):
        big = ndimage.rotate(glyph, angle, reshape=False, order=1, mode="constant", cval=0.0)
        images[k] = big.reshape(size, _OVERSAMPLE, size, _OVERSAMPLE).mean(axis=(1, 3))
    if noise > 0:
        rng = np.random.default_rng(seed)
        images += rng.normal(0.0, noise, size=images.shape).astype(np.float32)
    np.clip(images, 0.0, 1.0, out=images)
    return Rotation(images=images, angles=angles)


def _glyph(n: int) -> np.ndarray:
    """(n, n) float64 binary glyph: an "F" and a dot, within radius 0.75 of the centre.

    Coordinates u (right) and v (up) run over [-1, 1]; image rows run downwards.
    """
    centres = (np.arange(n) + 0.5) / n * 2.0 - 1.0
    u, v = np.meshgrid(centres, -centres)
    u, v = (u - _SHIFT) / _SCALE, v / _SCALE
    stem = (u >= -0.35) & (u <= -0.15) & (v >= -0.6) & (v <= 0.6)
    top = (u >= -0.35) & (u <= 0.45) & (v >= 0.42) & (v <= 0.6)
    middle = (u >= -0.35) & (u <= 0.2) & (v >= 0.0) & (v <= 0.18)
    dot = (u - 0.3) ** 2 + (v + 0.45) ** 2 <= 0.15**2
    return (stem | top | middle | dot).astype(np.float64)
