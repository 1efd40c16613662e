"""scikit-learn estimators with a GSR-structured layer: GSRAutoencoder and GSRClassifier.

    from gsreg import GSRAutoencoder
    ae = GSRAutoencoder(graph="grid:8x8").fit(X)       # X (N, d)
    Z = ae.transform(X)                                # (N, latent) bottleneck embedding
    A = ae.activations(X)                              # (N, 64) the 8x8 structured layer
    maps = ae.class_maps(X, y)                         # (C, 64) class-average maps

Both estimators follow scikit-learn's conventions (``get_params``/``set_params``,
``clone``, ``fit`` returning self, fitted attributes ending in ``_``) and train a gsreg
model with :func:`gsreg.training.fit` and a :class:`~gsreg.GraphRegularizer` on one layer.
``weight=0`` trains the same model from the same initial weights on the same batches
without the penalty: the baseline to compare with.

``arrange=True`` (fixed graphs) trains the first :data:`ARRANGE_FRACTION` of the epochs
without the penalty, places the structured layer's units on the graph with
:func:`gsreg.arrange` (same function, smoothest placement of their activations on the
training data), then trains the remaining epochs with GSR: the fine-tuning starts from a
layer that is already as smooth as a post-hoc arrangement makes it.

Read-outs (``transform``, ``predict*``, ``activations``, ...) validate X once and evaluate
a float64 copy of the model, so a row's outputs do not depend on the other rows in the
call (see :meth:`_GSRBase._inference_model`). ``verbose="auto"`` (the default) draws a
progress bar only for fits of at least :data:`AUTO_PROGRESS_STEPS` steps at a terminal
or in a notebook.
"""

from __future__ import annotations

import copy
import math
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from . import analysis, coactivation, graphs, placement
from . import io as gsreg_io
from ._checks import check_choice, check_int, check_real, is_int, is_real
from .budget import MIN_WARMUP_STEPS, check_budget, reference_loss
from .coactivation import CoactivationGraph
from .graphs import LEARNED, Graph
from .models import DenseAutoencoder, DenseClassifier
from .regularizer import GraphRegularizer
from .training import History, fit, resolve_device, seeded, torch_threads

__all__ = [
    "ARRANGE_FRACTION",
    "BUDGET",
    "BUDGET_FRACTION",
    "AUTO_PROGRESS_STEPS",
    "CLASSIFIER_WEIGHT",
    "GSRAutoencoder",
    "GSRClassifier",
    "arrange_epochs",
    "auto_epochs",
    "budget_epochs",
]

SCALES = ("global", "standard", None)
TARGET_STEPS = 3000
"""Optimiser steps that ``epochs="auto"`` aims for (see :func:`auto_epochs`)."""
MIN_EPOCHS, MAX_EPOCHS = 10, 1000
_PREDICT_BATCH = 4096
AUTO_PROGRESS_STEPS = 500
"""``verbose="auto"`` shows a progress bar for fits of at least this many optimiser steps
(and only when stderr is a terminal or a notebook): the default fit on scikit-learn's
digits (1,797 x 64) runs about 3,450 steps and takes about a minute on a CPU, so 500
steps are several seconds of waiting."""
ARRANGE_FRACTION = 0.25
"""Share of the epochs that ``arrange=True`` trains without the penalty before arranging
(the same quarter that a learned graph warms up for)."""
ARRANGE_ROWS = 5000
"""Training rows (at most; a seeded sample) whose activations place the units."""


def auto_epochs(n_samples: int, batch_size: int) -> int:
    """The number of epochs ``epochs="auto"`` trains for on ``n_samples`` samples.

    About :data:`TARGET_STEPS` (3000) optimiser steps in all, within
    [:data:`MIN_EPOCHS`, :data:`MAX_EPOCHS`] = [10, 1000] epochs: 25 epochs on 60,000
    samples (batch 500, 120 steps an epoch), 1000 epochs (3000 steps) on 1,438 samples,
    1000 epochs (1000 steps) on 300 samples; so small data sets are trained long enough
    and large ones no longer than needed.
    """
    steps_per_epoch = max(1, math.ceil(n_samples / batch_size))
    return int(min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(TARGET_STEPS / steps_per_epoch))))


BUDGET = 0.05
"""The default ``budget``: GSR may cost at most 5% of the task loss (see docs/estimators.md)."""
CLASSIFIER_WEIGHT = 3e-3
"""GSRClassifier's default: a fixed weight, not a budget. A classifier's training loss
falls towards 0, and a budget of a share of it buys no weight at all (on 10,000 MNIST
digits the budget's weight ended at its floor and the class maps stayed those of the
arranged λ = 0 layer; see docs/estimators.md)."""
BUDGET_FRACTION = 0.15
"""Epochs of the budget's fine-tuning phase, as a share of ``epochs`` (see
:func:`budget_epochs`)."""


def budget_epochs(epochs: int) -> int:
    """Epochs of fine-tuning with the budget after the ``epochs`` trained without the
    penalty: ``max(1, ceil(BUDGET_FRACTION * epochs))`` (2 of 10, 15 of 100)."""
    return max(1, math.ceil(BUDGET_FRACTION * epochs))


def arrange_epochs(epochs: int) -> int:
    """Epochs that ``arrange=True`` trains without the penalty before arranging the units:
    ``max(1, floor(ARRANGE_FRACTION * epochs))`` (2 of 10, 25 of 100); ``epochs >= 2``."""
    return max(1, int(ARRANGE_FRACTION * epochs))


# ---------------------------------------------------------------------------- base


class _GSRBase(BaseEstimator):
    """What the two estimators share: parameters checks, scaling, the graph, training,
    read-outs and saving."""

    _task: str
    _estimator_kind: str

    # -- parameters ----------------------------------------------------------------------
    def _store_params(self, params: Mapping[str, Any]) -> None:
        """Keep every ``__init__`` argument unchanged under its own name, as scikit-learn
        requires (checks run in ``fit``); ``params`` is the ``locals()`` of ``__init__``,
        taken before any other local is bound."""
        for name, value in params.items():
            if name != "self":
                setattr(self, name, value)

    def _check_params(self) -> None:
        name = type(self).__name__
        graph = self.graph
        if not (isinstance(graph, (str, Graph))):
            raise TypeError(
                f"{name}: graph must be a spec string such as 'grid:8x8', a gsreg Graph or "
                f"'learned', got {type(graph).__name__}"
            )
        if self.weight is not None and not is_real(self.weight, 0):
            raise ValueError(
                f"{name}: weight must be None (set by the budget) or a finite number >= 0, "
                f"got {self.weight!r}"
            )
        if self.weight is None:
            if self.budget is None:
                raise ValueError(f"{name}: give a weight or a budget (both are None)")
            if self.budget != "auto":
                check_budget(self.budget, f"{name}: budget")
        if not (self.epochs == "auto" or is_int(self.epochs)):
            raise ValueError(f"{name}: epochs must be 'auto' or an int >= 1, got {self.epochs!r}")
        check_int(self.batch_size, f"{name}: batch_size")
        check_real(self.lr, f"{name}: lr", 0, strict_min=True)
        check_choice(self.scale, f"{name}: scale", SCALES)
        check_int(self.n_structured, f"{name}: n_structured")
        if self.learned_options is not None and not isinstance(self.learned_options, Mapping):
            raise TypeError(
                f"{name}: learned_options must be a dict of CoactivationGraph options or "
                f"None, got {type(self.learned_options).__name__}"
            )
        if isinstance(self.verbose, str):
            if self.verbose != "auto":
                raise ValueError(
                    f"{name}: verbose must be 'auto' or an int >= 0 (0 silent, 1 a "
                    f"progress bar), got {self.verbose!r}"
                )
        else:
            check_int(self.verbose, f"{name}: verbose", 0)
        if self.threads is not None:
            check_int(self.threads, f"{name}: threads")
        if not (isinstance(self.arrange, (bool, np.bool_)) or self.arrange == "auto"):
            raise TypeError(f"{name}: arrange must be 'auto', True or False, got {self.arrange!r}")
        if self.arrange is True and isinstance(graph, str) and graph.strip().lower() == LEARNED:
            raise ValueError(
                f"{name}: arrange=True needs a fixed graph to arrange the units on, got "
                "graph='learned'"
            )
        if (
            self.arrange is True
            and self.weight is not None
            and self.epochs != "auto"
            and self.epochs < 2
        ):
            raise ValueError(
                f"{name}: arrange=True trains before and after arranging and needs "
                f"epochs >= 2, got {self.epochs!r}"
            )

    def _arranges(self, graph: Graph | None) -> bool:
        """Whether the units are arranged on the graph: ``arrange=True``, or "auto" with a
        fixed graph and the weight set by the budget."""
        if self.arrange == "auto":
            return graph is not None and self._plan(graph)[1] is not None
        return bool(self.arrange)

    def _resolve_graph(self) -> tuple[Graph | None, int]:
        """The fixed graph (None for "learned") and the width of the structured layer."""
        if isinstance(self.graph, Graph):
            return self.graph, self.graph.n_nodes
        if self.graph.strip().lower() == LEARNED:
            return None, int(self.n_structured)
        graph = graphs.parse(self.graph)
        return graph, graph.n_nodes

    def _plan(self, graph: Graph | None) -> tuple[float | None, float | None, bool | str, bool]:
        """``(weight, budget, normalize, recipe)`` of this fit: an explicit weight; else
        ``budget="auto"``: the learned-graph recipe for a learned graph (a fixed weight,
        ``recipe`` True), :data:`BUDGET` for a fixed one; else the given budget."""
        if self.weight is not None:
            return float(self.weight), None, self.normalize, False
        if self.budget == "auto" and graph is None:
            normalize = (
                coactivation.RECOMMENDED["normalize"] if self.normalize is False else self.normalize
            )
            return coactivation.RECOMMENDED_WEIGHT, None, normalize, True
        budget = BUDGET if self.budget == "auto" else float(self.budget)
        return None, budget, self.normalize, False

    def _coactivation(
        self,
        width: int,
        total_steps: int,
        normalize: bool | str,
        recipe: bool,
        warmup_steps: int | None = None,
    ) -> CoactivationGraph:
        """The learned graph: the estimator's schedule defaults (with ``recipe`` the
        measured :data:`gsreg.coactivation.RECOMMENDED` options, first graph after a tenth
        of ``total_steps``, rebuilt every sixtieth; else a quarter of them, or
        ``warmup_steps``, and every twentieth), then ``learned_options``."""
        if recipe:
            options: dict[str, Any] = {
                **coactivation.RECOMMENDED,
                "warmup_steps": total_steps // 10,
                "update_every": max(1, total_steps // 60),
            }
        else:
            options = {
                "warmup_steps": total_steps // 4 if warmup_steps is None else warmup_steps,
                "update_every": max(1, total_steps // 20),
            }
        if self.laplacian is not None:
            options["laplacian"] = self.laplacian
        options["normalize"] = normalize
        options.update(self.learned_options or {})
        options["n_nodes"] = width
        try:
            return CoactivationGraph(**options)
        except TypeError as err:
            raise TypeError(f"{type(self).__name__}: bad learned_options: {err}") from err

    # -- data ----------------------------------------------------------------------------
    def _validate_X(self, X, reset: bool, y="no_validation"):
        """Validated float X (N, d) (and y unless "no_validation"), via scikit-learn's
        ``validate_data`` (NaN/Inf checked; for sparse X on its stored values). Sparse X
        stays sparse, as CSR with summed duplicates (a copy of the sparse data at most)."""
        kwargs = dict(accept_sparse=("csr", "csc", "coo"), dtype=(np.float64, np.float32))
        if isinstance(y, str) and y == "no_validation":
            return _csr(validate_data(self, X, reset=reset, **kwargs))
        X, y = validate_data(self, X, y, reset=reset, **kwargs)
        return _csr(X), y

    def _scaler(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature ``(mean, scale)`` (d,) float64 of the training data for ``scale``
        (for sparse X from sums over its stored values, never densified)."""
        if self.scale is None:
            return np.zeros(X.shape[1]), np.ones(X.shape[1])
        if sp.issparse(X):
            return _sparse_scaler(X, self.scale)
        X = np.asarray(X, dtype=np.float64)
        mean = X.mean(axis=0)
        centred = X - mean
        if self.scale == "standard":
            std = centred.std(axis=0)
        else:  # "global": one scale for every feature, their relative sizes are kept
            std = np.full(X.shape[1], np.sqrt(np.mean(centred**2)))
        return mean, np.where(std > 0, std, 1.0)

    def _scaled(self, X: np.ndarray, device: torch.device | None = None) -> torch.Tensor:
        """Scaled float32 tensor (a fresh, writable copy) of dense X on ``device``
        (default: the model's)."""
        Xs = (np.asarray(X, dtype=np.float64) - self.input_mean_) / self.input_scale_
        if device is None:
            device = next(self.model_.parameters()).device
        return torch.from_numpy(Xs.astype(np.float32)).to(device)

    def _batch_scaler(self, device: torch.device):
        """The scaling of :meth:`_scaled` as a per-batch transform on ``device`` (float64
        arithmetic, so a densified sparse batch is scaled exactly as its dense copy)."""
        mean = torch.as_tensor(self.input_mean_, dtype=torch.float64, device=device)
        scale = torch.as_tensor(self.input_scale_, dtype=torch.float64, device=device)
        return lambda xb: ((xb.double() - mean) / scale).float()

    def _batches(self, X):
        """``(start, scaled float32 tensor)`` over X in prediction batches; sparse X is
        densified batch by batch."""
        for start in range(0, X.shape[0], _PREDICT_BATCH):
            block = X[start : start + _PREDICT_BATCH]
            yield start, self._scaled(block.toarray() if sp.issparse(block) else block)

    # -- training ------------------------------------------------------------------------
    def _train(self, X, y: np.ndarray | None, n_outputs: int) -> None:
        """Build the model and the regularizer, train, and set the fitted attributes."""
        self._check_params()
        if X.shape[0] < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 samples to train and "
                f"measure on, got n_samples = {X.shape[0]}"
            )
        graph, width = self._resolve_graph()
        self.input_mean_, self.input_scale_ = self._scaler(X)
        seed = _seed(self.random_state)
        device = resolve_device(self.device)
        n = X.shape[0]
        batch_size = min(int(self.batch_size), n)
        epochs = auto_epochs(n, batch_size) if self.epochs == "auto" else int(self.epochs)
        steps_per_epoch = math.ceil(n / batch_size)
        total_steps = epochs * steps_per_epoch
        weight, budget, normalize, recipe = self._plan(graph)
        arrange = self._arranges(graph)
        planned = total_steps + (budget_epochs(epochs) * steps_per_epoch if budget else 0)
        progress = self._shows_progress(planned)
        # with a budget: one run whose warm-up is the weight-0 run, unless the units are
        # arranged between the two or the weight-0 run is too short to measure a reference
        one_run = budget is not None and not arrange and total_steps >= MIN_WARMUP_STEPS
        learned = None
        if graph is None and budget is not None:  # the graph forms in the fine-tuning phase
            learned = self._coactivation(
                width,
                budget_epochs(epochs) * steps_per_epoch,
                normalize,
                recipe,
                warmup_steps=total_steps if one_run else 0,
            )
        elif graph is None:
            learned = self._coactivation(width, total_steps, normalize, recipe)
        with seeded(seed, device), torch_threads(self.threads):
            model = self._build_model(X.shape[1], width, n_outputs)
            layer = self._structured_layer()
            if sp.issparse(X):  # kept on the host, densified and scaled batch by batch
                Xs, transform = X, self._batch_scaler(device)
            else:
                Xs, transform = self._scaled(X, device), None
            y_t = None if y is None else torch.as_tensor(y, dtype=torch.int64, device=device)

            def train(n_epochs: int, run_seed: int, target, **strength) -> tuple[History, int]:
                if target is None:  # without the penalty: a plain run
                    run = fit(
                        model,
                        Xs,
                        y_t,
                        task=self._task,
                        epochs=n_epochs,
                        batch_size=batch_size,
                        lr=float(self.lr),
                        device=device,
                        seed=run_seed,
                        progress=progress,
                        desc=type(self).__name__,
                        transform=transform,
                    )
                    return run, n_epochs * math.ceil(n / batch_size)
                reg = GraphRegularizer(
                    model,
                    {layer: target},
                    laplacian=self.laplacian or "combinatorial",
                    normalize=normalize,
                    **strength,
                )
                try:
                    run = fit(
                        model,
                        Xs,
                        y_t,
                        task=self._task,
                        regularizer=reg,
                        epochs=n_epochs,
                        batch_size=batch_size,
                        lr=float(self.lr),
                        device=device,
                        seed=run_seed,
                        progress=progress,
                        desc=type(self).__name__,
                        transform=transform,
                    )
                finally:
                    reg.remove()
                self.budget_report_ = reg.budget.summary() if reg.budget is not None else None
                return run, reg.step_count

            target = learned if learned is not None else graph
            perm, arrange_step = None, None
            if one_run:
                # the budget: the whole run without the penalty first (the steps of the
                # weight=0 model, whose final task loss is the reference), then a
                # fine-tuning phase in which the budget sets the weight; one optimiser
                history, steps = train(
                    epochs + budget_epochs(epochs),
                    seed,
                    target,
                    budget=budget,
                    warmup_steps=total_steps,
                )
            elif budget is not None:
                # the same in two runs, the units arranged on the graph between them (a
                # fresh optimiser: Adam's moments belong to the units' old order)
                history, steps = train(epochs, seed, None)
                reference = reference_loss(history["task_loss"], steps_per_epoch)
                if arrange:
                    perm = placement.arrange(
                        model, layer, graph, self._arrange_rows(X, seed, device), random_state=seed
                    )
                    arrange_step = steps
                rest, more = train(
                    budget_epochs(epochs), seed + 1, target, budget=budget, reference=reference
                )
                history.epochs += [{**e, "epoch": e["epoch"] + epochs} for e in rest.epochs]
                steps += more
            elif arrange:
                before = arrange_epochs(epochs)
                history, steps = train(before, seed, target, weight=0.0)
                perm = placement.arrange(
                    model, layer, graph, self._arrange_rows(X, seed, device), random_state=seed
                )
                # a fresh optimiser and the next seed's batches: Adam's moments belong to
                # the units' old order
                rest, more = train(epochs - before, seed + 1, target, weight=weight)
                history.epochs += [{**e, "epoch": e["epoch"] + before} for e in rest.epochs]
                arrange_step, steps = steps, steps + more
            else:
                history, steps = train(epochs, seed, target, weight=weight)
                self.budget_report_ = None
        model.eval()
        self.model_ = model
        self.layer_ = layer
        self.history_ = history
        self.n_iter_ = len(history)
        self.n_steps_ = steps
        self.arrangement_ = perm
        self.arrange_step_ = arrange_step
        self.seed_ = seed
        self.coactivation_ = learned
        if learned is None:
            self.graph_ = graph
            self.modules_ = None
        else:
            self.graph_ = learned.graph
            if learned.graph is None:
                warnings.warn(
                    f"{type(self).__name__}: no graph was learned in {total_steps} steps "
                    "(see learned_options warmup_steps / update_every); modules_ is None",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self.modules_ = None
            else:
                self.modules_ = learned.modules()

    def _shows_progress(self, planned_steps: int) -> bool:
        """Whether ``fit`` draws a progress bar: ``verbose >= 1``; for ``verbose="auto"``
        when the fit plans at least :data:`AUTO_PROGRESS_STEPS` optimiser steps and
        stderr is a terminal or a notebook (so never in logs, pipes and test runs)."""
        if isinstance(self.verbose, str):  # "auto"
            return planned_steps >= AUTO_PROGRESS_STEPS and _interactive_stderr()
        return self.verbose > 0

    def _arrange_rows(self, X, seed: int, device: torch.device) -> torch.Tensor:
        """Scaled float32 rows (at most :data:`ARRANGE_ROWS`, a seeded sample in the
        data's order) of training data X whose activations place the units."""
        rows = np.arange(X.shape[0])
        if len(rows) > ARRANGE_ROWS:
            rng = np.random.default_rng(seed)
            rows = np.sort(rng.choice(len(rows), ARRANGE_ROWS, replace=False))
        block = X[rows]
        return self._scaled(block.toarray() if sp.issparse(block) else block, device)

    # -- read-outs -----------------------------------------------------------------------
    def activations(self, X, layer: str | None = None) -> np.ndarray:
        """(N, n) float32 activations of the structured layer (or of any named ``layer`` of
        ``model_``, flattened per sample) on X, in eval mode (evaluated in float64, see
        :meth:`_inference_model`)."""
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        name = self.layer_ if layer is None else layer
        model = self._inference_model()
        Z = [
            analysis.activations(model, xb, name, batch_size=_PREDICT_BATCH)
            for _, xb in self._batches(X)
        ]
        return np.concatenate(Z).astype(np.float32)

    def class_maps(self, X, y, *, deviation: bool = False) -> np.ndarray:
        """(C, n) class-average activations of the structured layer, one row per class of
        y (N,) in sorted order (``np.unique(y)``); ``deviation=True`` subtracts the mean
        over all samples (what sets each class apart). For a grid graph, row c reshaped to
        ``graph_.shape`` is class c's map."""
        Z = self.activations(X)
        if deviation:
            return analysis.class_deviation_maps(Z, np.asarray(y))
        return analysis.class_maps(Z, np.asarray(y))

    def _inference_model(self) -> nn.Module:
        """A float64 copy of ``model_`` in eval mode, on the model's device (on the CPU for
        an MPS model: MPS has no float64), that every read-out evaluates.

        Why float64: float32 matrix products (MKL on the CPU, cuBLAS on GPUs) choose their
        kernels by the shape of the product, so a row's result changes in the last bits
        with the number of rows in the call, and for narrow layers (a few logits, a small
        latent) with the row's position among them, as the kernel then vectorises across
        rows. The models hold no batch statistics (no normalisation layers) and the
        scaling is elementwise, so these kernels are the only coupling between rows. In
        float64 the differences are about 1e-16 relative, far below a float32 step: the
        float32 outputs are those of the row on its own (a tie within 1e-16 of a float32
        rounding boundary, about one value in 10^8, is the exception). The inputs are
        the float32 scaled rows the model was trained on.
        """
        model = copy.deepcopy(self.model_)
        device = next(model.parameters()).device
        if device.type == "mps":
            device = torch.device("cpu")
        return model.to(device=device, dtype=torch.float64).eval()

    @torch.no_grad()
    def _evaluate(self, X, fn) -> np.ndarray:
        """``fn(model, xb)`` of the float64 model (:meth:`_inference_model`) over batches
        of already validated X (N, d), scaled as in training: a float64 array (N, ...)."""
        model = self._inference_model()
        device = next(model.parameters()).device
        out = [fn(model, xb.to(device, torch.float64)).cpu() for _, xb in self._batches(X)]
        return torch.cat(out).numpy()

    def _forward(self, X, fn) -> np.ndarray:
        """:meth:`_evaluate` of X after checking that the estimator is fitted and
        validating X once (a second validation would warn about feature names twice)."""
        check_is_fitted(self)
        return self._evaluate(self._validate_X(X, reset=False), fn)

    # -- saving --------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the fitted estimator to one safetensors file (no pickle): the model, its
        graph (or learned graph state), parameters and fitted attributes. ``load``
        restores it; ``transform``/``predict`` give exactly the same results."""
        check_is_fitted(self)
        reg = None
        if self.coactivation_ is not None:
            reg = GraphRegularizer(
                self.model_, {self.layer_: self.coactivation_}, weight=self._final_weight()
            )
            reg.load_state_dict(
                {"step": self.n_steps_, "learned": {self.layer_: self.coactivation_.state_dict()}}
            )
        elif self.graph_ is not None:
            reg = GraphRegularizer(
                self.model_,
                {self.layer_: self.graph_},
                weight=self._final_weight(),
                laplacian=self.laplacian or "combinatorial",
                normalize=self._plan(self.graph_)[2],
            )
        params = self.get_params(deep=False)
        if isinstance(params["graph"], Graph):
            params["graph"] = {"gsreg_graph": params["graph"].to_dict()}
        fitted = {
            "n_features_in_": self.n_features_in_,
            "feature_names_in_": (
                None
                if not hasattr(self, "feature_names_in_")
                else [str(f) for f in self.feature_names_in_]
            ),
            "input_mean_": self.input_mean_,
            "input_scale_": self.input_scale_,
            "layer_": self.layer_,
            "n_iter_": self.n_iter_,
            "n_steps_": self.n_steps_,
            "seed_": self.seed_,
            "arrangement_": None if self.arrangement_ is None else self.arrangement_.tolist(),
            "arrange_step_": self.arrange_step_,
            "budget_report_": self.budget_report_,
            **self._extra_fitted(),
        }
        try:
            return gsreg_io.save(
                path,
                self.model_,
                regularizer=reg,
                estimator=type(self).__name__,
                params=_json_params(params),
                fitted=fitted,
                history=self.history_,
            )
        finally:
            if reg is not None:
                reg.remove()

    def _final_weight(self) -> float:
        """The fixed weight, or the last one the budget set (0.0 if it set none)."""
        if self.budget_report_ is None:
            return float(self._plan(self.graph_ if self.coactivation_ is None else None)[0])
        return float(self.budget_report_.get("weights", {}).get(self.layer_, 0.0))

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu"):
        """An estimator saved by :meth:`save` (of this class), on ``device``."""
        loaded = gsreg_io.load(path, device=device)
        meta = loaded.metadata
        if meta.get("estimator") != cls.__name__:
            found = meta.get("estimator") or "a plain model"
            raise ValueError(f"{path} holds {found}, not a {cls.__name__}")
        params = dict(meta["params"])
        if isinstance(params.get("graph"), Mapping):
            params["graph"] = Graph.from_dict(params["graph"]["gsreg_graph"])
        for key in cls._tuple_params:
            if isinstance(params.get(key), list):
                params[key] = tuple(params[key])
        est = cls(**params)
        fitted = dict(meta["fitted"])
        names = fitted.pop("feature_names_in_")
        if names is not None:
            est.feature_names_in_ = np.asarray(names, dtype=object)
        perm = fitted.pop("arrangement_", None)  # absent in files of older versions
        est.arrangement_ = None if perm is None else np.asarray(perm, dtype=np.int64)
        est.arrange_step_ = fitted.pop("arrange_step_", None)
        est.budget_report_ = fitted.pop("budget_report_", None)
        est._restore_extra(fitted)
        for key in ("n_features_in_", "layer_", "n_iter_", "n_steps_", "seed_"):
            setattr(est, key, fitted[key])
        est.input_mean_ = np.asarray(fitted["input_mean_"], dtype=np.float64)
        est.input_scale_ = np.asarray(fitted["input_scale_"], dtype=np.float64)
        est.model_ = loaded.model
        est.history_ = loaded.history or History()
        est.coactivation_ = None
        est.graph_ = loaded.graphs.get(est.layer_)
        est.modules_ = None
        if loaded.regularizer is not None and "learned" in loaded.regularizer:
            reg = loaded.make_regularizer()
            reg.remove()
            est.coactivation_ = reg.learned_graphs()[est.layer_]
            if est.coactivation_.graph is not None:
                est.modules_ = est.coactivation_.modules()
        return est

    _tuple_params: tuple[str, ...] = ()

    def _extra_fitted(self) -> dict[str, Any]:
        return {}

    def _restore_extra(self, fitted: dict[str, Any]) -> None:
        return None

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


# ---------------------------------------------------------------------------- autoencoder


class GSRAutoencoder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, _GSRBase):
    """A dense autoencoder with one GSR-structured layer, as a scikit-learn transformer.

    ``n_features -> hidden -> latent -> decoder_hidden -> n_features``; the layer named
    ``layer`` (default the first decoder layer, ``"decoder.0"``) gets as many units as the
    graph has nodes and carries the penalty ``weight * mean_b z_b^T L z_b``.

    Args:
        graph: a graph spec ("grid:8x8", "torus:4x8", "rings:1x20", ...), a
            :class:`~gsreg.Graph`, or "learned": a graph learned from the layer's own
            co-activations (:class:`~gsreg.CoactivationGraph`) on ``n_structured`` units;
            its connected components become ``modules_``.
        weight: a fixed lambda over all epochs; None (default) lets ``budget`` decide;
            0 trains the same model (same initial weights, same batches) without GSR.
        budget: with ``weight=None``, the share of the reconstruction loss GSR may cost:
            the λ = 0 run, a fixed graph's units arranged on it, then
            :func:`budget_epochs` more epochs with the λ that spends the budget
            (``budget_report_``). "auto" (default): :data:`BUDGET` (0.05) for a fixed
            graph; for "learned" the measured recipe
            :data:`gsreg.coactivation.RECOMMENDED` (the centred penalty at the fixed
            weight ``RECOMMENDED_WEIGHT``, the graph frozen and the penalty released once
            its modules hold). See docs/estimators.md for the measurements.
        layer: the structured layer: "decoder.0" (default), "decoder.<i>", "encoder.<i>"
            or "encoder.latent" (the bottleneck itself). Its width is set by the graph.
        hidden, latent, decoder_hidden: layer widths; ``decoder_hidden`` defaults to
            ``reversed(hidden)``.
        n_structured: width of the structured layer for ``graph="learned"``.
        learned_options: ``CoactivationGraph`` arguments for ``graph="learned"``, over
            the recipe's (warm-up a tenth of the steps, an update every sixtieth) or,
            with a fixed weight, ``warmup_steps = total_steps // 4`` and
            ``update_every = total_steps // 20`` (kNN kernel, k=5, normalised Laplacian).
        laplacian: None (combinatorial for fixed graphs, normalised for learned ones),
            "combinatorial", "normalized" or "random_walk".
        normalize: False (the plain penalty), "rayleigh" or "centered" (scale-free forms).
        arrange: "auto" (default): arrange a fixed graph's units under a budget (above),
            not with a fixed weight. True with a fixed weight: train the first
            :func:`arrange_epochs` epochs (a quarter) with weight 0, place the layer's
            units on the graph with :func:`gsreg.arrange` (the smoothest placement of
            their activations on at most :data:`ARRANGE_ROWS` training rows; the
            function is unchanged), then train
            the remaining epochs with GSR (a fresh Adam, the batches of seed + 1). The
            same number of steps in all; ``arrangement_`` holds the permutation.
        epochs: "auto" (:func:`auto_epochs`: about 3000 optimiser steps, 10 to 1000
            epochs) or a number.
        batch_size, lr: Adam's mini-batch size (cut to N for smaller data) and rate.
        scale: input scaling learnt in ``fit``: "global" (default: centre each feature
            and divide all by one common scale, so feature proportions are kept),
            "standard" (each feature to unit variance) or None (as given). Outputs of
            ``reconstruct`` and ``score`` are in the original units.
        device: "auto" (CUDA when available), "cpu", "cuda", ...
        random_state: None, an int (the torch seed of the initial weights and batch
            order) or a ``numpy.random.RandomState``.
        verbose: "auto" (default): a progress bar (one per training phase) when the fit
            plans at least :data:`AUTO_PROGRESS_STEPS` (500) optimiser steps and stderr
            is a terminal or a notebook; silent otherwise (short fits, logs, pipes,
            tests). 0: always silent, as scikit-learn's ``verbose=0``; 1 (or more):
            always a progress bar. scikit-learn's estimators default to 0, but a default
            fit here can run for minutes (``epochs="auto"`` aims at 3,000 steps), and a
            minute without a sign of life looks like a hang.
        threads: torch's intra-op threads while fitting (None: as set in the process; the
            previous count is restored afterwards). gsreg makes OpenMP wait passively,
            which keeps all cores fast on a shared machine (docs/performance.md).

    Fitted attributes: ``model_`` (a :class:`~gsreg.models.DenseAutoencoder`),
    ``graph_`` (the fixed or final learned graph), ``modules_`` ((n,) neuron modules of a
    learned graph, else None), ``coactivation_`` (the learned graph's state),
    ``history_`` (per-epoch losses), ``layer_``, ``n_iter_`` (epochs), ``n_steps_``,
    ``arrangement_`` ((n,) int64 ``perm[node] = unit`` of ``arrange=True``, else None),
    ``arrange_step_`` (the optimiser steps before the units were arranged, else None),
    ``input_mean_``, ``input_scale_``, ``n_features_in_``, ``feature_names_in_``.
    """

    _task = "reconstruction"
    _tuple_params = ("hidden", "decoder_hidden")

    def __init__(
        self,
        graph: str | Graph = "grid:8x8",
        weight: float | None = None,
        *,
        budget: float | str | None = "auto",
        layer: str = "decoder.0",
        hidden: Sequence[int] = (50, 50),
        latent: int = 16,
        decoder_hidden: Sequence[int] | None = None,
        n_structured: int = 64,
        learned_options: dict | None = None,
        laplacian: str | None = None,
        normalize: bool | str = False,
        arrange: bool | str = "auto",
        epochs: int | str = "auto",
        batch_size: int = 500,
        lr: float = 1e-3,
        scale: str | None = "global",
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
        verbose: int | str = "auto",
        threads: int | None = None,
    ) -> None:
        self._store_params(locals())

    def fit(self, X, y=None) -> GSRAutoencoder:
        """Train on X (N, d) (dense or scipy sparse; y is ignored); returns self."""
        X = self._validate_X(X, reset=True)
        self._train(X, None, X.shape[1])
        return self

    def _structured_layer(self) -> str:
        return self.layer

    def _build_model(self, n_features: int, width: int, n_outputs: int) -> nn.Module:
        hidden = list(self.hidden)
        decoder = list(reversed(hidden) if self.decoder_hidden is None else self.decoder_hidden)
        latent = self.latent
        part, _, index = self.layer.partition(".")
        sizes = {"encoder": hidden, "decoder": decoder}.get(part)
        if self.layer == "encoder.latent":
            latent = width
        elif sizes is not None and index.isdigit() and int(index) < len(sizes):
            sizes[int(index)] = width
        else:
            raise ValueError(
                f"{type(self).__name__}: layer must be 'encoder.latent', 'encoder.<i>' "
                f"(i < {len(hidden)}) or 'decoder.<i>' (i < {len(decoder)}), got {self.layer!r}"
            )
        return DenseAutoencoder(n_features, hidden=hidden, latent=latent, decoder_hidden=decoder)

    @property
    def _n_features_out(self) -> int:
        return self.model_.config["latent"]

    def transform(self, X) -> np.ndarray:
        """(N, latent) float32 bottleneck embedding of X (N, d) (no noise)."""
        return self._forward(X, lambda model, xb: model.encode(xb)).astype(np.float32)

    def reconstruct(self, X) -> np.ndarray:
        """(N, d) float32 reconstruction of X in the original units."""
        check_is_fitted(self)
        return self._reconstruction(self._validate_X(X, reset=False)).astype(np.float32)

    def _reconstruction(self, X) -> np.ndarray:
        """(N, d) float64 reconstruction of validated X in the original units."""
        out = self._evaluate(X, lambda model, xb: model(xb))
        return out * self.input_scale_ + self.input_mean_

    def score(self, X, y=None) -> float:
        """Negative mean squared reconstruction error over all entries, in X's units
        (higher is better, as scikit-learn expects)."""
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        recon = self._reconstruction(X)
        if not sp.issparse(X):
            return -float(np.mean((recon - np.asarray(X, dtype=np.float64)) ** 2))
        total = 0.0
        for start in range(0, X.shape[0], _PREDICT_BATCH):
            block = X[start : start + _PREDICT_BATCH].toarray().astype(np.float64)
            total += float(((recon[start : start + len(block)] - block) ** 2).sum())
        return -total / (X.shape[0] * X.shape[1])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.target_tags.required = False
        return tags


# ---------------------------------------------------------------------------- classifier


class GSRClassifier(ClassifierMixin, _GSRBase):
    """A dense classifier with a GSR-structured last hidden layer (scikit-learn API).

    ``n_features -> hidden -> fc (graph's width, structured) -> dropout -> n_classes``
    (:class:`DenseClassifier`), trained with cross-entropy plus
    ``weight * mean_b z_b^T L z_b`` on ``fc``. Arguments as for :class:`GSRAutoencoder`
    (no ``layer``, ``latent``, ``decoder_hidden``; ``arrange`` included), plus
    ``dropout`` after ``fc``, except two defaults: ``weight`` is the fixed
    :data:`CLASSIFIER_WEIGHT` (3e-3), not a budget (a classifier's training loss falls
    towards 0, so a share of it buys no weight; pass ``weight=None, budget=...`` to try),
    and ``scale`` is "standard" (each feature to unit variance).

    Fitted attributes: ``classes_``, ``model_``, ``graph_``, ``modules_``,
    ``coactivation_``, ``history_``, ``layer_`` ("fc"), ``n_iter_``, ``n_steps_``,
    ``arrangement_``, ``arrange_step_``, ``input_mean_``, ``input_scale_``,
    ``n_features_in_``, ``feature_names_in_``.
    """

    _task = "classification"
    _tuple_params = ("hidden",)

    def __init__(
        self,
        graph: str | Graph = "grid:8x8",
        weight: float | None = CLASSIFIER_WEIGHT,
        *,
        budget: float | None = None,
        hidden: Sequence[int] = (50,),
        dropout: float = 0.0,
        n_structured: int = 64,
        learned_options: dict | None = None,
        laplacian: str | None = None,
        normalize: bool | str = False,
        arrange: bool | str = "auto",
        epochs: int | str = "auto",
        batch_size: int = 500,
        lr: float = 1e-3,
        scale: str | None = "standard",
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
        verbose: int | str = "auto",
        threads: int | None = None,
    ) -> None:
        self._store_params(locals())

    def fit(self, X, y) -> GSRClassifier:
        """Train on X (N, d) and class labels y (N,) of any type; returns self."""
        X, y = self._validate_X(X, reset=True, y=y)
        check_classification_targets(y)
        classes, codes = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"GSRClassifier needs samples of at least 2 classes, got 1 class ({classes[0]!r})"
            )
        self.classes_ = classes
        self._train(X, codes.reshape(-1), len(classes))
        return self

    def _structured_layer(self) -> str:
        return "fc"

    def _build_model(self, n_features: int, width: int, n_outputs: int) -> nn.Module:
        return DenseClassifier(
            n_features,
            n_outputs,
            hidden=list(self.hidden),
            width=width,
            dropout=float(self.dropout),
        )

    def predict_proba(self, X) -> np.ndarray:
        """(N, n_classes) float64 class probabilities (softmax of the logits), columns in
        ``classes_`` order."""
        return np.exp(self.predict_log_proba(X))

    def predict_log_proba(self, X) -> np.ndarray:
        """(N, n_classes) float64 log-probabilities: ``log_softmax`` in float64 of the
        logits rounded to float32 (what makes them independent of the other rows in the
        call, see :meth:`_inference_model`); a probability within 1e-9 of 1 stays below 1
        in float64, as its log-probability says."""
        logits = torch.from_numpy(self._logits(X).astype(np.float64))
        return torch.log_softmax(logits, dim=1).numpy()

    def predict(self, X) -> np.ndarray:
        """(N,) predicted labels (values of ``classes_``)."""
        logits = self._logits(X)
        return self.classes_[logits.argmax(axis=1)]

    def _logits(self, X) -> np.ndarray:
        """(N, n_classes) float32 logits of X (evaluated in float64, then rounded)."""
        return self._forward(X, lambda model, xb: model(xb)).astype(np.float32)

    def _extra_fitted(self) -> dict[str, Any]:
        classes = self.classes_
        return {
            "classes_": classes.tolist(),
            "classes_dtype": classes.dtype.str if classes.dtype.kind in "biufUS" else "object",
        }

    def _restore_extra(self, fitted: dict[str, Any]) -> None:
        dtype = fitted.pop("classes_dtype")
        self.classes_ = np.asarray(fitted.pop("classes_"), dtype=np.dtype(dtype))


# ---------------------------------------------------------------------------- helpers


def _seed(random_state) -> int:
    """The torch seed: an int random_state itself, else a draw from it (or from numpy's
    global generator for None)."""
    if is_int(random_state, 0):
        return int(random_state)
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


def _interactive_stderr() -> bool:
    """Whether stderr reaches a person: a terminal, or a Jupyter kernel's output stream
    (where ``tqdm.auto`` draws a notebook widget)."""
    stream = sys.stderr
    if stream is None:
        return False
    if type(stream).__module__.split(".")[0] == "ipykernel":
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a stream without isatty, or a closed one
        return False


def _csr(X):
    """Sparse X as canonical CSR (rows by index, sums over stored values); dense as is."""
    if not sp.issparse(X):
        return X
    if X.format != "csr":
        X = X.tocsr()
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    return X


def _sparse_scaler(X, scale: str) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, scale)`` of canonical CSR X (N, d) from per-feature sums over the stored
    values (the implicit zeros counted in closed form); nothing is densified."""
    n, d = X.shape
    cols = X.indices
    values = X.data.astype(np.float64)
    mean = np.bincount(cols, weights=values, minlength=d).astype(np.float64) / n
    stored = np.bincount(cols, minlength=d)
    squares = np.bincount(cols, weights=(values - mean[cols]) ** 2, minlength=d)
    # the implicit zeros add (0 - mean)^2 each
    squares = squares.astype(np.float64) + (n - stored) * mean**2
    if scale == "standard":
        std = np.sqrt(squares / n)
    else:  # "global"
        std = np.full(d, np.sqrt(squares.sum() / (n * d)))
    return mean, np.where(std > 0, std, 1.0)


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    """Estimator parameters for the JSON document (tuples become lists; a RandomState
    random_state is stored as None)."""
    out = {}
    for key, value in params.items():
        if isinstance(value, np.random.RandomState):
            value = None
        elif isinstance(value, tuple):
            value = list(value)
        out[key] = value
    return out
