"""Topographic sparse autoencoders (SAEs) on captured activations.

A sparse autoencoder reads a model's activations as a sparse sum of dictionary
directions; GSR on its latent layer lays that dictionary out on a map (a grid) or groups
it into learned modules::

    from gsreg.sae import TopographicSAE, capture, evaluate, fit_sae, open_activations

    acts = capture(model, "blocks.3", batches, "acts/")        # .npy chunks + manifest
    sae = TopographicSAE(acts.d_in, 1024, graph="grid:32x32", k=32)
    history = fit_sae(sae, acts, steps=2000)                    # streamed, memory-mapped
    evaluate(sae, acts)        # mse, variance_explained, l0, dead_latents
    downstream_loss(model, "blocks.3", sae, batches, loss_fn)   # loss recovered

Modules: ``_model`` (the SAE), ``_data`` (batches from arrays and iterators),
``_train`` (:func:`fit_sae`), ``_metrics`` (:func:`evaluate`, :func:`downstream_loss`),
``_capture`` (:func:`capture`, :func:`open_activations`).
"""

from ._capture import Activations, capture, open_activations
from ._metrics import downstream_loss, edge_similarity, evaluate
from ._model import DEFAULT_RELU_L1, GSR_LAYERS, LATENT_LAYER, Latents, TopographicSAE
from ._train import SAEHistory, fit_sae, train_step

__all__ = [
    "DEFAULT_RELU_L1",
    "GSR_LAYERS",
    "LATENT_LAYER",
    "Activations",
    "Latents",
    "SAEHistory",
    "TopographicSAE",
    "capture",
    "downstream_loss",
    "edge_similarity",
    "evaluate",
    "fit_sae",
    "open_activations",
    "train_step",
]
