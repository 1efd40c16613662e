"""Gene loadings of a GSR autoencoder's structured layer: which genes each unit and each
module drives.

Four read-outs (:data:`LOADINGS`), all (n_genes, n_units) per unit and (n_genes,
n_modules) per module, in the units of the input the model was trained on:

- ``"gradient"`` (the default): the mean over cells of the Jacobian of the reconstruction
  with respect to the structured layer, times each unit's standard deviation over the
  cells, ``L[g, i] = sd_i * mean_c d xhat_g / d z_i``: the change in gene g's
  reconstruction when unit i rises by one standard deviation, to first order. A module's
  loading is the sum over its units, the response to raising all of them together. It is
  computed exactly by forward-mode automatic differentiation, one pass per unit.
- ``"contribution"``: the mean over cells of the reconstruction minus the reconstruction
  with the unit (a module: all its units at once) set to 0; one forward pass per unit
  (module).
- ``"weights"``: the product of the decoder's linear maps after the layer times the
  input scale and ``sd_i`` (the gradient with every activation function taken as the
  identity): the analogue of a linear decoder's loadings (scvi-tools' LinearSCVI).
- ``"correlation"``: Pearson correlation across cells of each gene's input values with
  each unit's activation (a module: with its mean activity); says what co-varies with a
  unit, not what the unit drives.

Which one follows the model: docs/scanpy.md reports the measurement (each module's units
raised by one standard deviation in every cell, and switched off in the cells where the
module is most active, in the trained network; the Spearman correlation and top-20
overlap of each read-out's gene ranking with the genes whose reconstructions moved), on
which ``"gradient"`` was chosen: it follows the switch-off in every fit measured, as the
weights do, while "contribution" varies from fit to fit and "correlation" follows the
network least.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD

from .. import analysis
from ..estimators import GSRAutoencoder
from ._data import Rows

__all__ = ["LOADINGS", "loadings", "module_loadings"]

LOADINGS = ("gradient", "contribution", "weights", "correlation")
"""The loading read-outs, the default first."""


def loadings(est: GSRAutoencoder, rows: Rows, Z: np.ndarray, method: str = "gradient"):
    """(n_features, n_units) float64 loadings of the structured layer on the input features.

    Args:
        est: a fitted :class:`gsreg.GSRAutoencoder`.
        rows: the cells (N, n_features) the loadings average over (the training cells).
        Z: (N, n_units) the structured layer's activations on ``rows``.
        method: one of :data:`LOADINGS`.
    """
    _check_method(method)
    sd = Z.std(axis=0)
    if method == "correlation":
        return _correlations(rows, Z)
    if method == "weights":
        return _decoder_weights(est) * sd[None, :]
    if method == "contribution":
        masks = np.eye(Z.shape[1], dtype=bool)
        return _switch_off(est, rows, masks)
    return _mean_jacobian(est, rows, Z.shape[1]) * sd[None, :]


def module_loadings(
    est: GSRAutoencoder,
    rows: Rows,
    Z: np.ndarray,
    modules: np.ndarray,
    unit_loadings: np.ndarray,
    method: str = "gradient",
) -> np.ndarray:
    """(n_features, n_modules) float64 loadings of each module (modules in ``np.unique``
    order): for "gradient" and "weights" the sum of its units' loadings (all of them
    raised by one standard deviation), for "contribution" the drop when all its units
    are set to 0 together, for "correlation" the correlation of each feature
    with the module's mean activity (:func:`gsreg.analysis.module_activity`)."""

    _check_method(method)
    modules = np.asarray(modules)
    ids = np.unique(modules)
    if method == "correlation":
        return _correlations(rows, analysis.module_activity(Z, modules))
    if method == "contribution":  # all of a module's units off at once (not additive)
        return _switch_off(est, rows, modules[None, :] == ids[:, None])
    member = (modules[:, None] == ids[None, :]).astype(np.float64)  # (n_units, n_modules)
    return unit_loadings @ member


def _check_method(method: str) -> None:
    if method not in LOADINGS:
        raise ValueError(f"loadings must be one of {LOADINGS}, got {method!r}")


def _mean_jacobian(est: GSRAutoencoder, rows: Rows, n_units: int) -> np.ndarray:
    """(n_features, n_units) mean over the cells of d reconstruction / d layer output, in
    the input's units: forward-mode AD, a unit tangent injected at the layer's output."""
    model = est.model_
    layer = model.get_submodule(est.layer_)
    device = next(model.parameters()).device
    mean = torch.as_tensor(est.input_mean_, dtype=torch.float64, device=device)
    scale = torch.as_tensor(est.input_scale_, dtype=torch.float64, device=device)
    tangent: dict[str, torch.Tensor] = {}

    def inject(_module, _inputs, output):
        return fwAD.make_dual(output, tangent["t"].expand_as(output))

    total = torch.zeros(rows.shape[1], n_units, dtype=torch.float64, device=device)
    eye = torch.eye(n_units, device=device)
    was_training = model.training
    model.eval()
    handle = layer.register_forward_hook(inject)
    try:
        with torch.no_grad():
            for _, block in rows.chunks():
                xb = ((torch.as_tensor(block, device=device) - mean) / scale).float()
                for i in range(n_units):
                    with fwAD.dual_level():
                        tangent["t"] = eye[i]
                        out = fwAD.unpack_dual(model(xb)).tangent
                    total[:, i] += out.double().sum(dim=0)
    finally:
        handle.remove()
        model.train(was_training)
    return (total * scale[:, None]).cpu().numpy() / len(rows)


def _switch_off(est: GSRAutoencoder, rows: Rows, masks: np.ndarray) -> np.ndarray:
    """(n_features, k) mean over the cells of reconstruction minus the reconstruction with
    the units of ``masks[j]`` (k, n_units) bool set to 0, in the input's units."""
    model = est.model_
    layer = model.get_submodule(est.layer_)
    device = next(model.parameters()).device
    mean = torch.as_tensor(est.input_mean_, dtype=torch.float64, device=device)
    scale = torch.as_tensor(est.input_scale_, dtype=torch.float64, device=device)
    keep = torch.as_tensor(~np.asarray(masks, dtype=bool), device=device)
    state: dict[str, torch.Tensor | None] = {"keep": None}

    def switch(_module, _inputs, output):
        return output if state["keep"] is None else output * state["keep"].to(output.dtype)

    total = torch.zeros(rows.shape[1], len(keep), dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    handle = layer.register_forward_hook(switch)
    try:
        with torch.no_grad():
            for _, block in rows.chunks():
                xb = ((torch.as_tensor(block, device=device) - mean) / scale).float()
                state["keep"] = None
                full = model(xb).double()
                for j in range(len(keep)):
                    state["keep"] = keep[j]
                    total[:, j] += (full - model(xb).double()).sum(dim=0)
    finally:
        handle.remove()
        model.train(was_training)
    return (total * scale[:, None]).cpu().numpy() / len(rows)


def _decoder_weights(est: GSRAutoencoder) -> np.ndarray:
    """(n_features, n_units) product of the linear maps after the structured layer, times
    the input scale (activation functions taken as the identity)."""
    model = est.model_
    names = [name for name, _ in model.named_modules()]
    after = names[names.index(est.layer_) + 1 :]
    product = None
    for name in after:
        module = model.get_submodule(name)
        if isinstance(module, torch.nn.Linear) and not name.startswith(est.layer_ + "."):
            weight = module.weight.detach().double().cpu().numpy()  # (out, in)
            product = weight if product is None else weight @ product
    if product is None:  # the layer is the output itself
        raise ValueError(f"no linear map follows the structured layer {est.layer_!r}")
    return product * np.asarray(est.input_scale_)[:, None]


def _correlations(rows: Rows, A: np.ndarray) -> np.ndarray:
    """(n_features, k) Pearson correlation across cells of each feature with each column
    of A (N, k); 0 where either is constant. Streams over the rows (one pass)."""
    A = np.asarray(A, dtype=np.float64)
    A = A - A.mean(axis=0)
    n_features = rows.shape[1]
    sum_x = np.zeros(n_features)
    sum_xx = np.zeros(n_features)
    sum_xa = np.zeros((n_features, A.shape[1]))
    for start, block in rows.chunks():
        sum_x += block.sum(axis=0)
        sum_xx += (block**2).sum(axis=0)
        sum_xa += block.T @ A[start : start + len(block)]
    n = len(rows)
    var_x = np.maximum(sum_xx / n - (sum_x / n) ** 2, 0.0)
    sd_x = np.sqrt(var_x)
    sd_a = A.std(axis=0)
    denom = n * sd_x[:, None] * sd_a[None, :]
    # sum_xa is the centred cross product: A is centred, so sum x a = sum (x - mean) a
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom > 0, sum_xa / denom, 0.0)
    return np.clip(r, -1.0, 1.0)
