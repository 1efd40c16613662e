"""Task-loss budgets: the controller's arithmetic, its bounds, bad input, and that training
with a budget lands at the asked task-loss ratio."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from gsreg.budget import (
    EMA_STEPS,
    INTEGRAL_GAIN,
    MAX_LOG_SCALE,
    MAX_STEP,
    MIN_WARMUP_STEPS,
    PROPORTIONAL_GAIN,
    TaskBudget,
    check_budget,
)
from gsreg.models import DenseAutoencoder
from gsreg.regularizer import GraphRegularizer
from gsreg.training import fit


@pytest.mark.parametrize("bad", [0, -0.1, 10, 11.0, float("nan"), float("inf")])
def test_budgets_outside_zero_to_ten_are_refused(bad):
    with pytest.raises(ValueError, match="budget"):
        check_budget(bad)
    model = nn.Sequential(nn.Linear(4, 9))
    with pytest.raises(ValueError, match="budget"):
        GraphRegularizer(model, {"0": "grid:3x3"}, budget=bad, warmup_steps=500)


@pytest.mark.parametrize("bad", ["0.05", True, None])
def test_budgets_that_are_not_numbers_are_a_type_error(bad):
    with pytest.raises(TypeError, match="budget"):
        check_budget(bad)


def test_a_budget_with_a_weight_or_a_decay_is_refused():
    model = nn.Sequential(nn.Linear(4, 9))
    with pytest.raises(ValueError, match="not both"):
        GraphRegularizer(model, {"0": "grid:3x3"}, weight=1e-3, budget=0.05, warmup_steps=500)
    with pytest.raises(ValueError, match="not both"):
        GraphRegularizer(model, {"0": "grid:3x3"}, budget=0.05, warmup_steps=500, decay=(0.99, 100))
    with pytest.raises(ValueError, match="needs budget"):
        GraphRegularizer(model, {"0": "grid:3x3"}, reference=1.0)


def test_a_budget_needs_a_warm_up_or_a_reference():
    model = nn.Sequential(nn.Linear(4, 9))
    with pytest.raises(ValueError, match="warm-up"):
        GraphRegularizer(model, {"0": "grid:3x3"}, budget=0.05, warmup_steps=10)
    with pytest.raises(ValueError, match="reference"):
        GraphRegularizer(model, {"0": "grid:3x3"}, budget=0.05, reference=-1.0)
    GraphRegularizer(model, {"0": "grid:3x3"}, budget=0.05, reference=1.0)


def test_step_without_the_task_loss_is_refused_under_a_budget():
    model = nn.Sequential(nn.Linear(4, 9))
    reg = GraphRegularizer(model, {"0": "grid:3x3"}, budget=0.05, reference=1.0)
    with pytest.raises(ValueError, match="task_loss"):
        reg.step()


def test_controller_follows_its_formula_on_a_scripted_loss():
    """The reference is the warm-up's moving average; afterwards log λ is the integral
    of -INTEGRAL_GAIN * c minus PROPORTIONAL_GAIN * c, recomputed here in plain floats."""
    warmup, b = MIN_WARMUP_STEPS, 0.1
    ctrl = TaskBudget(b, warmup, ["a"])
    rng = np.random.default_rng(0)
    losses = list(1.0 + 0.1 * rng.standard_normal(warmup)) + [1.3, 1.0, 1.05, 0.9, 1.2]
    ema, integral, log_scale, reference = None, 0.0, None, None
    for t, loss in enumerate(losses, start=1):
        ctrl.update(torch.tensor(loss))
        ema = loss if ema is None else ema + max(1 / t, 1 / EMA_STEPS) * (loss - ema)
        if t == warmup:
            reference = ema
            assert float(ctrl.reference) == pytest.approx(reference, rel=1e-5)
            ctrl.size("a", torch.tensor(2.0))  # penalty 2.0 -> λ0 = b * ref / 2
            log_scale = 0.0
            continue
        if t > warmup:
            c = ema / reference - 1 - b
            integral -= min(max(INTEGRAL_GAIN * c, -MAX_STEP), MAX_STEP)
            log_scale = integral - PROPORTIONAL_GAIN * c
        if t < warmup:
            assert ctrl.weight("a") is None
            continue
        first = b * reference / 2.0
        assert float(ctrl.weight("a")) == pytest.approx(first * math.exp(log_scale), rel=1e-4)
    assert float(ctrl.cost()) == pytest.approx(ema / reference - 1, rel=1e-4)


def test_weights_stay_bounded_when_the_budget_cannot_be_met():
    """A task loss far above budget whatever λ: the weight falls to its floor and stops
    there (never 0, never NaN), and the floor is reported."""
    ctrl = TaskBudget(0.05, MIN_WARMUP_STEPS, ["a"])
    for _ in range(MIN_WARMUP_STEPS):
        ctrl.update(1.0)
    ctrl.size("a", torch.tensor(1.0))
    first = float(ctrl.weight("a"))
    for _ in range(2 * int(MAX_LOG_SCALE / MAX_STEP)):
        ctrl.update(1e6)
    w = float(ctrl.weight("a"))
    assert w == pytest.approx(first * math.exp(-MAX_LOG_SCALE), rel=1e-4)
    assert float(ctrl.at_floor()) == 1.0
    assert ctrl.summary()["met"] is False and ctrl.summary()["at_floor"] is True
    for _ in range(5 * int(MAX_LOG_SCALE / MAX_STEP)):
        ctrl.update(0.0)  # far below: rises to the ceiling, no further
    assert float(ctrl.weight("a")) == pytest.approx(first * math.exp(MAX_LOG_SCALE), rel=1e-4)


def test_budget_weights_are_logged_as_tensors_and_start_after_the_warm_up():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 9), nn.Linear(9, 4))
    reg = GraphRegularizer(model, {"0": "grid:3x3"}, budget=0.05, warmup_steps=MIN_WARMUP_STEPS)
    x = torch.randn(16, 4)
    for _ in range(MIN_WARMUP_STEPS):
        model(x)
        assert reg.penalty().item() == 0.0
        assert reg.logs()["gsr/0/weight"] == 0.0
        reg.step(torch.tensor(1.0))
    model(x)
    value = reg.penalty()
    assert value.item() > 0
    logs = reg.logs()
    assert isinstance(logs["gsr/0/weight"], torch.Tensor)
    assert isinstance(logs["gsr/budget/cost"], torch.Tensor)
    # the first weighted penalty is the whole budget of the reference task loss
    assert value.item() == pytest.approx(0.05 * 1.0, rel=1e-5)
    assert reg.weight("0") == pytest.approx(float(logs["gsr/0/weight"]))
    assert "budget=0.05" in repr(reg)


def test_state_dict_round_trips_the_controller():
    model = nn.Sequential(nn.Linear(4, 9))
    reg = GraphRegularizer(model, {"0": "grid:3x3"}, budget=0.1, reference=2.0)
    x = torch.randn(8, 4)
    for loss in (2.0, 2.5, 1.9):
        model(x)
        reg.penalty()
        reg.step(torch.tensor(loss))
    state = reg.state_dict()
    other = GraphRegularizer(
        nn.Sequential(nn.Linear(4, 9)), {"0": "grid:3x3"}, budget=0.1, reference=2.0
    )
    other.load_state_dict(state)
    assert other.weight("0") == pytest.approx(reg.weight("0"))
    assert float(other.budget.cost()) == pytest.approx(float(reg.budget.cost()))
    plain = GraphRegularizer(nn.Sequential(nn.Linear(4, 9)), {"0": "grid:3x3"})
    with pytest.raises(ValueError, match="budget"):
        plain.load_state_dict(state)


def _modules_data(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    factors = torch.randn(2000, 3, generator=g)
    mix = torch.randn(3, 12, generator=g)
    return factors @ mix + 0.3 * torch.randn(2000, 12, generator=g)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_training_with_a_budget_lands_at_the_asked_loss_ratio(seed):
    """Train without the penalty (the warm-up is a whole λ = 0 run), then with the budget;
    its training task loss ends within (1 + b) +- 0.03 of the warm-up's reference, while
    a fixed weight 100x larger than needed would cost far more."""
    X = _modules_data(seed)
    torch.manual_seed(seed)
    model = DenseAutoencoder(12, hidden=(16,), latent=9)
    warmup = 2000  # 200 epochs of 10 steps: the λ = 0 run has flattened
    reg = GraphRegularizer(model, {"encoder.latent": "grid:3x3"}, budget=0.1, warmup_steps=warmup)
    history = fit(
        model,
        X,
        regularizer=reg,
        epochs=300,
        batch_size=200,
        seed=seed,
        progress=False,
        device="cpu",
    )
    report = reg.budget.summary()
    assert report["reference"] == pytest.approx(np.mean(history["task_loss"][197:200]), rel=0.05)
    final = np.mean(history["task_loss"][-10:]) / report["reference"]
    assert final == pytest.approx(1.1, abs=0.03)
    assert not report["at_floor"]
    assert all(np.isfinite(history["gsr/encoder.latent/weight"]))


def test_reference_loss_averages_the_last_epochs_covering_the_moving_average():
    from gsreg.budget import reference_loss

    losses = [5.0, 4.0, 3.0, 2.0, 1.0]
    assert reference_loss(losses, EMA_STEPS) == 1.0
    assert reference_loss(losses, math.ceil(EMA_STEPS / 2)) == 1.5
    assert reference_loss(losses, 1) == 3.0  # fewer steps than the average: every epoch
    with pytest.raises(ValueError, match="at least one epoch"):
        reference_loss([], 10)
