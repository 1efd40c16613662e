"""GSRCallback: attach/detach, stepping on optimiser steps only, logging, checkpoints, errors,
the optional import, and the CPU example."""

import importlib
import importlib.util
import pickle
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gsreg import CoactivationGraph, GraphRegularizer, graphs
from gsreg.penalty import GraphPenalty

try:
    import lightning.pytorch as pl
except ImportError:
    pl = None

ROOT = Path(__file__).resolve().parents[1]
needs_lightning = pytest.mark.skipif(
    pl is None, reason="lightning is not installed (pip install gsreg[lightning])"
)
quiet = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers", "ignore:.*LeafSpec.*is deprecated"
)


def test_importing_gsreg_does_not_import_lightning():
    code = (
        "import sys, gsreg, gsreg.integrations, gsreg.regularizer, gsreg.training\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('lightning', 'pytorch_lightning'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


def test_missing_lightning_raises_an_import_error_naming_the_extra(monkeypatch):
    for name in ("lightning", "lightning.pytorch"):
        monkeypatch.setitem(sys.modules, name, None)  # "import lightning" now fails
    monkeypatch.delitem(sys.modules, "gsreg.integrations.lightning", raising=False)
    with pytest.raises(ImportError, match=r"pip install gsreg\[lightning\]"):
        importlib.import_module("gsreg.integrations.lightning")


# ----------------------------------------------------------------------------- fixtures

N_SAMPLES, BATCH = 48, 8  # 6 batches per epoch


def data(seed: int = 0) -> torch.Tensor:
    return torch.randn(N_SAMPLES, 8, generator=torch.Generator().manual_seed(seed))


def make_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            hidden=nn.Sequential(nn.Linear(8, 16), nn.LeakyReLU(0.2)),
            code=nn.Sequential(nn.Linear(16, 6), nn.LeakyReLU(0.2)),
            out=nn.Linear(6, 8),
        )
    )


if pl is not None:
    from gsreg.integrations.lightning import GSRCallback

    class AE(pl.LightningModule):
        """training_step calls self.model, not self(): the callback must reset the
        collection itself. Records every self.log call."""

        def __init__(self, lr: float = 0.05) -> None:
            super().__init__()
            self.model = make_net()
            self.lr = lr
            self.logged: list[tuple[str, object, dict]] = []

        def training_step(self, batch, batch_idx):
            (x,) = batch
            return F.mse_loss(self.model(x), x) + self.gsr.penalty()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.lr)

        def log(self, name, value, *args, **kwargs):
            self.logged.append((name, value, kwargs))
            super().log(name, value, *args, **kwargs)

    class ManualAE(AE):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            (x,) = batch
            optimizer = self.optimizers()
            loss = F.mse_loss(self.model(x), x) + self.gsr.penalty()
            optimizer.zero_grad()
            self.manual_backward(loss)
            if batch_idx % 2 == 1:  # steps on every second batch
                optimizer.step()


def trainer(tmp_path=None, **kwargs):
    defaults = dict(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=None if tmp_path is None else str(tmp_path),
    )
    return pl.Trainer(**{**defaults, **kwargs})


def loader(seed: int = 0) -> DataLoader:
    return DataLoader(TensorDataset(data(seed)), batch_size=BATCH)


def callback(**kwargs):
    layers = {
        "model.hidden": graphs.grid(4, 4),
        "model.code": CoactivationGraph(k=2, update_every=2, buffer_size=32),
    }
    return GSRCallback(layers, **{"weight": 0.1, **kwargs})


# ----------------------------------------------------------------------------- behaviour


@needs_lightning
@quiet
def test_fit_attaches_steps_logs_and_detaches():
    cb, module = callback(), AE()
    trainer(callbacks=[cb], max_epochs=2).fit(module, loader())
    reg = cb.regularizer
    assert isinstance(reg, GraphRegularizer)
    assert reg.step_count == 12 == 2 * N_SAMPLES // BATCH
    learned = reg.learned_graphs()["model.code"]
    assert [step for step, _ in learned.history] == [2, 4, 6, 8, 10, 12]
    # detached after fit: no attribute, no hooks left on the module
    assert not hasattr(module, "gsr")
    assert not any(m._forward_hooks for m in module.modules())
    assert not module._forward_pre_hooks
    # logs: per-layer tensors as they are, per step, not on the progress bar
    names = {name for name, _, _ in module.logged}
    assert {
        "gsr/model.hidden",
        "gsr/model.hidden/act_rms",
        "gsr/model.hidden/weight",
        "gsr/model.code",
        "gsr/model.code/components",
    } <= names
    for name, value, kwargs in module.logged:
        assert kwargs["on_step"] is True and kwargs["on_epoch"] is False
        assert kwargs["prog_bar"] is False
        if name in ("gsr/model.hidden", "gsr/model.code"):
            assert isinstance(value, torch.Tensor) and not value.requires_grad
    # numbers are logged when they change: the constant weight once, components 0 then 1
    counts = [value for name, value, _ in module.logged if name == "gsr/model.code/components"]
    assert [name for name, _, _ in module.logged].count("gsr/model.hidden/weight") == 1
    assert counts == [0.0, 1.0]
    # the learned layer is penalised only after its first graph (step 2, the third batch)
    code_logs = [name for name, _, _ in module.logged if name == "gsr/model.code"]
    assert len(code_logs) == 12 - 2


@needs_lightning
@quiet
@pytest.mark.parametrize("accumulate", [1, 4])
def test_regularizer_steps_once_per_optimizer_step(accumulate):
    cb = callback()
    tr = trainer(callbacks=[cb], max_epochs=2, accumulate_grad_batches=accumulate)
    tr.fit(AE(), loader())
    # 6 batches per epoch: accumulating 4 steps after batches 4 and 6 (the epoch's last)
    expected = 12 if accumulate == 1 else 4
    assert tr.global_step == cb.regularizer.step_count == expected
    history = cb.regularizer.learned_graphs()["model.code"].history
    assert [step for step, _ in history] == list(range(2, expected + 1, 2))


@needs_lightning
@quiet
def test_manual_optimization_steps_with_the_optimizer():
    cb = callback()
    tr = trainer(callbacks=[cb])
    tr.fit(ManualAE(), loader())
    assert tr.global_step == cb.regularizer.step_count == 3


@needs_lightning
@quiet
def test_the_penalty_shapes_the_layer():
    x = data(1)
    grid = GraphPenalty(graphs.grid(4, 4))
    energies = {}
    for weight in (0.0, 1.0):
        module = AE(lr=0.1)
        tr = trainer(
            callbacks=[GSRCallback({"model.hidden": "grid:4x4"}, weight=weight)], max_epochs=5
        )
        tr.fit(module, loader())
        with torch.no_grad():
            energies[weight] = grid(module.model.hidden(x)).item()
    assert energies[1.0] < 0.5 * energies[0.0]


# ----------------------------------------------------------------------------- checkpoints


@needs_lightning
@quiet
def test_checkpoint_saves_and_restores_the_regularizer(tmp_path):
    cb = callback()
    first = trainer(tmp_path, callbacks=[cb], max_epochs=1)
    first.fit(AE(), loader())
    path = tmp_path / "gsr.ckpt"
    first.save_checkpoint(path)
    saved = torch.load(path, weights_only=False)["callbacks"][cb.state_key]
    assert saved["step"] == 6 and set(saved["learned"]) == {"model.code"}

    resumed = callback()  # a fresh CoactivationGraph: all it knows comes from the checkpoint
    second = trainer(tmp_path, callbacks=[resumed], max_epochs=2)
    second.fit(AE(), loader(), ckpt_path=path)
    reg = resumed.regularizer
    assert second.global_step == reg.step_count == 12
    history = reg.learned_graphs()["model.code"].history
    assert [step for step, _ in history] == [2, 4, 6, 8, 10, 12]
    old = dict(cb.regularizer.learned_graphs()["model.code"].history)
    assert history[2][1] == old[6]  # the graph of step 6 came from the first fit


@needs_lightning
@quiet
def test_state_dict_before_and_after_fit_and_a_second_fit_continues():
    cb = GSRCallback({"model.hidden": "grid:4x4"}, warmup_steps=5)
    assert cb.state_dict() == {}
    cb.load_state_dict({})  # nothing saved: nothing to do
    cb.load_state_dict({"step": 4})  # before setup: kept for the next fit
    assert cb.state_dict() == {"step": 4}
    module = AE()
    trainer(callbacks=[cb], max_epochs=1).fit(module, loader())
    assert cb.regularizer.step_count == 4 + 6
    # the resumed step count drives the warm-up: steps 4 (weight 0) then 5.. (weight on)
    logged = [name for name, _, _ in module.logged if name == "gsr/model.hidden"]
    assert len(logged) == 5
    assert cb.state_dict()["step"] == 10
    # pickling (as ddp_spawn does) keeps the state and drops the hooks
    clone = pickle.loads(pickle.dumps(cb))
    assert clone.regularizer is None and clone.state_dict()["step"] == 10


# ----------------------------------------------------------------------------- errors


@needs_lightning
def test_bad_arguments_fail_at_construction():
    with pytest.raises(ValueError, match="non-empty"):
        GSRCallback({})
    with pytest.raises(TypeError, match="'model.hidden'.*int"):
        GSRCallback({"model.hidden": 3})
    with pytest.raises(ValueError):
        GSRCallback({"model.hidden": "grid:0x4"})
    with pytest.raises(TypeError, match="GraphRegularizer"):
        GSRCallback({"model.hidden": "grid:4x4"}, warmup=3)
    with pytest.raises(ValueError, match="attribute"):
        GSRCallback({"model.hidden": "grid:4x4"}, attribute="not a name")


@needs_lightning
@quiet
def test_misspelt_layer_and_taken_attribute_fail_in_fit():
    with pytest.raises(ValueError, match="did you mean 'model.hidden'"):
        trainer(callbacks=[GSRCallback({"model.hiden": "grid:4x4"})]).fit(AE(), loader())
    module = AE()
    module.gsr = "taken"
    with pytest.raises(ValueError, match="attribute='another_name'"):
        trainer(callbacks=[GSRCallback({"model.hidden": "grid:4x4"})]).fit(module, loader())
    assert module.gsr == "taken"


@needs_lightning
@quiet
def test_two_callbacks_on_two_attributes():
    class TwoAE(AE):
        def training_step(self, batch, batch_idx):
            (x,) = batch
            return F.mse_loss(self.model(x), x) + self.gsr.penalty() + self.gsr2.penalty()

    first = GSRCallback({"model.hidden": "grid:4x4"})
    second = GSRCallback({"model.code": "path:6"}, attribute="gsr2")
    assert first.state_key != second.state_key
    trainer(callbacks=[first, second]).fit(TwoAE(), loader())
    assert first.regularizer.step_count == second.regularizer.step_count == 6


# ----------------------------------------------------------------------------- example


@needs_lightning
@quiet
def test_cpu_example_runs(capsys):
    path = ROOT / "examples" / "lightning_cpu.py"
    spec = importlib.util.spec_from_file_location("lightning_cpu", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main(["--epochs", "1", "--n-train", "256"])
    out = capsys.readouterr().out
    assert "test MSE" in out and "penalty" in out
    assert result["test_mse"] > 0 and result["penalty"] >= 0


@needs_lightning
@quiet
def test_a_budget_reads_the_task_loss_that_training_step_returns():
    class BudgetAE(AE):
        def training_step(self, batch, batch_idx):
            (x,) = batch
            task = F.mse_loss(self.model(x), x)
            return {"loss": task + self.gsr.penalty(), "task_loss": task.detach()}

    cb = GSRCallback({"model.hidden": graphs.grid(4, 4)}, budget=0.1, reference=1.0)
    module = BudgetAE()
    trainer(callbacks=[cb], max_epochs=2).fit(module, loader())
    reg = cb.regularizer
    assert reg.budget is not None and reg.step_count == 12
    assert reg.weight("model.hidden") > 0
    names = {name for name, _, _ in module.logged}
    assert {"gsr/budget/cost", "gsr/model.hidden/weight"} <= names
    # without the task loss in the outputs the budget refuses to guess
    with pytest.raises(ValueError, match="task_loss"):
        trainer(
            callbacks=[GSRCallback({"model.hidden": graphs.grid(4, 4)}, budget=0.1, reference=1.0)],
            max_epochs=1,
        ).fit(AE(), loader())
