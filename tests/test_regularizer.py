"""GraphRegularizer: hooks on Linear, conv and sequence layers, schedules, errors."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from gsreg import graphs
from gsreg.penalty import GraphPenalty
from gsreg.regularizer import GraphRegularizer, WeightSchedule


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            fc1=nn.Linear(5, 16), act1=nn.LeakyReLU(0.2), fc2=nn.Linear(16, 9), out=nn.Linear(9, 2)
        )
    )


def test_linear_layer_penalty_equals_direct_penalty():
    model = mlp()
    g = graphs.grid(4, 4)
    x = torch.randn(8, 5)
    hidden = model.act1(model.fc1(x))
    reg = GraphRegularizer(model, {"act1": g}, weight=0.5)
    model(x)
    assert reg.penalty().item() == pytest.approx(0.5 * GraphPenalty(g)(hidden).item(), rel=1e-6)


def test_penalty_gradient_reaches_the_weights():
    model = mlp()
    reg = GraphRegularizer(model, {"fc2": graphs.grid(3, 3)}, weight=1.0)
    model(torch.randn(8, 5))
    reg.penalty().backward()
    assert model.fc2.weight.grad.abs().sum() > 0
    assert model.out.weight.grad is None


def test_several_layers_per_layer_weights_and_spec_strings():
    model = mlp()
    x = torch.randn(6, 5)
    h1 = model.act1(model.fc1(x))
    h2 = model.fc2(h1)
    reg = GraphRegularizer(
        model, {"act1": "grid:4x4", "fc2": "torus:3x3"}, weight={"act1": 1.0, "fc2": 2.0}
    )
    model(x)
    expected = GraphPenalty(graphs.grid(4, 4))(h1) + 2.0 * GraphPenalty(graphs.torus(3, 3))(h2)
    assert reg.penalty().item() == pytest.approx(expected.item(), rel=1e-6)
    logs = reg.logs()
    assert set(logs) >= {"gsr/act1", "gsr/fc2", "gsr/act1/act_rms", "gsr/fc2/weight"}
    assert all(isinstance(v, (torch.Tensor, float)) for v in logs.values())
    assert logs["gsr/act1/act_rms"].item() == pytest.approx(h1.pow(2).mean().sqrt().item())


def test_conv_channels_and_flatten_modes():
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 4, 3, padding=1), act=nn.ReLU()))
    x = torch.randn(3, 1, 5, 5)
    out = model(x)
    ring = graphs.ring(4)
    reg = GraphRegularizer(model, {"act": ring}, weight=1.0, nodes="channels")
    model(x)
    per_position = out.permute(0, 2, 3, 1).reshape(-1, 4)
    assert reg.penalty().item() == pytest.approx(GraphPenalty(ring)(per_position).item(), 1e-6)
    reg.remove()

    flat = graphs.lines(4, 25)
    reg = GraphRegularizer(model, {"act": flat}, weight=1.0, nodes="flatten")
    model(x)
    expected = GraphPenalty(flat)(out.reshape(3, 100)).item()
    assert reg.penalty().item() == pytest.approx(expected, rel=1e-6)
    reg.remove()

    # auto picks the mode whose node count matches the graph
    reg = GraphRegularizer(model, {"act": ring}, weight=1.0)
    model(x)
    assert reg.penalty().item() == pytest.approx(GraphPenalty(ring)(per_position).item(), 1e-6)


def test_sequence_outputs_and_tuple_outputs():
    torch.manual_seed(0)

    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(3, 6, batch_first=True)

        def forward(self, x):
            return self.rnn(x)[0]

    model = Seq()
    g = graphs.path(6)
    reg = GraphRegularizer(model, {"rnn": g}, weight=1.0)
    x = torch.randn(2, 7, 3)
    out = model(x)
    assert reg.penalty().item() == pytest.approx(GraphPenalty(g)(out.reshape(14, 6)).item(), 1e-6)


def test_no_penalty_in_eval_mode_and_remove_detaches():
    model = mlp()
    reg = GraphRegularizer(model, {"act1": graphs.grid(4, 4)}, weight=1.0)
    model.eval()
    model(torch.randn(4, 5))
    assert reg.penalty().item() == 0.0 and "gsr/act1" not in reg.logs()
    model.train()
    model(torch.randn(4, 5))
    assert reg.penalty().item() > 0
    reg.remove()
    model(torch.randn(4, 5))
    assert reg.penalty().item() == 0.0
    assert not model.act1._forward_hooks and not model._forward_pre_hooks


def test_empty_penalty_is_one_cached_zero_that_follows_dtype():
    model = mlp()
    reg = GraphRegularizer(model, {"act1": graphs.grid(4, 4)}, weight=1.0)
    zero = reg.penalty()
    assert zero.shape == () and zero.item() == 0.0 and zero.device == torch.device("cpu")
    assert reg.penalty() is zero  # no allocation per step
    with torch.inference_mode():
        assert not reg.penalty().is_inference()
    previous = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        assert reg.penalty().dtype == torch.float64
    finally:
        torch.set_default_dtype(previous)
    model(torch.randn(3, 5))  # a training forward: now there is a real penalty
    assert reg.penalty() is not zero and reg.penalty().item() > 0
    assert zero.item() == 0.0


def test_each_forward_replaces_the_previous_values():
    model = mlp()
    g = graphs.grid(4, 4)
    x = torch.randn(4, 5)
    expected = GraphPenalty(g)(model.act1(model.fc1(x))).item()
    reg = GraphRegularizer(model, {"act1": g}, weight=1.0)
    model(torch.randn(4, 5))
    model(x)
    assert reg.penalty().item() == pytest.approx(expected, rel=1e-6)


def test_direct_calls_of_a_hooked_layer_add_to_the_last_forward():
    model = mlp()
    g = graphs.grid(4, 4)
    reg = GraphRegularizer(model, {"act1": g}, weight=1.0)
    x = torch.randn(4, 5)
    model(x)
    once = reg.penalty().item()
    model.act1(model.fc1(x))
    assert reg.penalty().item() == pytest.approx(2 * once, rel=1e-6)


def test_shared_layer_called_twice_is_penalised_twice():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(self.fc(x))

    model = Twice()
    g = graphs.ring(4)
    x = torch.randn(3, 4)
    h1 = model.fc(x)
    expected = GraphPenalty(g)(h1) + GraphPenalty(g)(model.fc(h1))
    reg = GraphRegularizer(model, {"fc": g}, weight=1.0)
    model(x)
    assert reg.penalty().item() == pytest.approx(expected.item(), rel=1e-6)


def test_warmup_and_staircase_decay_and_state_dict():
    schedule = WeightSchedule(1e-2, warmup_steps=3, rate=0.5, every=2)
    assert [schedule(s) for s in range(8)] == [0, 0, 0, 1e-2, 1e-2, 5e-3, 5e-3, 2.5e-3]
    model = mlp()
    reg = GraphRegularizer(
        model, {"act1": graphs.grid(4, 4)}, weight=1.0, warmup_steps=2, decay=(0.99, 100)
    )
    model(torch.randn(4, 5))
    assert reg.penalty().item() == 0.0
    for _ in range(102):
        reg.step()
    assert reg.weight("act1") == pytest.approx(0.99)
    other = GraphRegularizer(
        mlp(), {"act1": graphs.grid(4, 4)}, weight=1.0, warmup_steps=2, decay=(0.99, 100)
    )
    other.load_state_dict(reg.state_dict())
    assert other.step_count == 102 and other.weight("act1") == pytest.approx(0.99)
    with pytest.raises(ValueError, match="step"):
        other.load_state_dict({"step": -1})


def test_unknown_layer_lists_close_matches():
    with pytest.raises(ValueError, match="no layer named 'act'.*'act1'"):
        GraphRegularizer(mlp(), {"act": graphs.grid(4, 4)})


def test_wrong_width_fails_early_for_linear_and_at_forward_otherwise():
    with pytest.raises(ValueError, match="'fc1' has out_features=16 .* 64 nodes"):
        GraphRegularizer(mlp(), {"fc1": graphs.grid(8, 8)})
    model = mlp()
    GraphRegularizer(model, {"act1": graphs.grid(8, 8)})
    with pytest.raises(ValueError, match=r"layer 'act1'.*\(4, 16\).*16 nodes.*graph has 64"):
        model(torch.randn(4, 5))


def test_nan_activations_raise_naming_the_layer():
    model = mlp()
    GraphRegularizer(model, {"act1": graphs.grid(4, 4)})
    x = torch.randn(4, 5)
    x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="layer 'act1'.*NaN"):
        model(x)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"weight": -1.0}, "weight"),
        ({"weight": float("nan")}, "weight"),
        ({"weight": {"other": 1.0}}, "weight has no entry for layer 'act1'"),
        ({"nodes": "rows"}, "nodes must be one of"),
        ({"decay": (1.5, 10)}, "decay"),
        ({"warmup_steps": -1}, "warmup_steps"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GraphRegularizer(mlp(), {"act1": graphs.grid(4, 4)}, **kwargs)


def test_bad_targets():
    with pytest.raises(TypeError, match="target must be"):
        GraphRegularizer(mlp(), {"act1": 16})
    with pytest.raises(ValueError, match="non-empty"):
        GraphRegularizer(mlp(), {})
    with pytest.raises(TypeError, match="nn.Module"):
        GraphRegularizer("model", {"act1": graphs.grid(4, 4)})


def test_context_manager_removes_hooks():
    model = mlp()
    with GraphRegularizer(model, {"act1": graphs.grid(4, 4)}):
        assert model.act1._forward_hooks
    assert not model.act1._forward_hooks


def test_clear_drops_penalties_collected_from_direct_submodule_calls():
    model = mlp()
    reg = GraphRegularizer(model, {"act1": graphs.grid(4, 4)}, weight=1.0)
    x = torch.randn(4, 5)
    model.act1(model.fc1(x))  # a step that calls submodules, not the model
    first = reg.penalty().item()
    reg.clear()
    assert reg.penalty().item() == 0.0
    model.act1(model.fc1(x))
    assert reg.penalty().item() == pytest.approx(first)


def test_per_layer_mappings_with_a_misspelt_layer_are_refused():
    model = mlp()
    with pytest.raises(ValueError, match="'act2', which is not a regularised layer.*'act1'"):
        GraphRegularizer(model, {"act1": graphs.grid(4, 4)}, weight={"act1": 1.0, "act2": 1.0})
    with pytest.raises(ValueError, match="nodes names 'fc9'"):
        GraphRegularizer(model, {"act1": graphs.grid(4, 4)}, nodes={"act1": "last", "fc9": "last"})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(warmup_steps=1.5), "warmup_steps must be an int"),
        (dict(warmup_steps=True), "warmup_steps must be an int"),
        (dict(decay=(0.5, 0.5)), "every an int"),
        (dict(decay=(1.5, 10)), "decay must be"),
    ],
)
def test_schedules_refuse_non_integer_steps_and_bad_rates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GraphRegularizer(mlp(), {"act1": graphs.grid(4, 4)}, weight=1.0, **kwargs)


def test_activity_regularizer_penalties():
    from gsreg.activity import ActivityRegularizer

    model = torch.nn.Sequential(torch.nn.Linear(3, 4))
    x = torch.randn(5, 3)
    for kind, expected in (
        ("l1", lambda z: z.abs().sum(1).mean()),
        ("l2", lambda z: z.pow(2).sum(1).mean()),
    ):
        reg = ActivityRegularizer(model, "0", kind, weight=0.5)
        z = model(x)
        assert torch.allclose(reg.penalty(), 0.5 * expected(z))
        assert float(reg.penalty()) == 0.0  # consumed
        with torch.no_grad():
            model(x)
        assert float(reg.penalty()) == 0.0  # nothing collected without autograd
        reg.remove()
    with pytest.raises(ValueError):
        ActivityRegularizer(model, "0", "l3", 1.0)


def test_modules_as_keys_mean_their_dotted_names():
    torch.manual_seed(0)
    model = mlp()
    x = torch.randn(5, 5)
    by_name = GraphRegularizer(model, {"act1": graphs.grid(4, 4)}, weight={"act1": 0.5})
    model(x)
    expected = by_name.penalty()
    by_name.remove()
    by_module = GraphRegularizer(
        model, {model.act1: graphs.grid(4, 4)}, weight={model.act1: 0.5}, nodes={model.act1: "auto"}
    )
    assert by_module.layers == ["act1"]
    model(x)
    torch.testing.assert_close(by_module.penalty(), expected)
    by_module.remove()
    with pytest.raises(ValueError, match="not a submodule"):
        GraphRegularizer(model, {torch.nn.Linear(2, 2): graphs.grid(4, 4)})
    with pytest.raises(ValueError, match="twice"):
        GraphRegularizer(model, {"act1": graphs.grid(4, 4), model.act1: graphs.grid(4, 4)})


def test_a_loaded_step_past_the_warmup_turns_the_penalty_on():
    model = nn.Sequential(nn.Linear(3, 4))
    reg = GraphRegularizer(model, {"0": graphs.path(4)}, weight=0.5, warmup_steps=10)
    x = torch.randn(2, 3)
    model(x)
    assert reg.penalty().item() == 0.0
    reg.load_state_dict({"step": 10})
    z = model(x)
    L = torch.as_tensor(graphs.path(4).laplacian_matrix().toarray(), dtype=z.dtype)
    expected = 0.5 * torch.einsum("bi,ij,bj->b", z, L, z).mean()
    torch.testing.assert_close(reg.penalty(), expected)


def test_a_deep_copy_of_the_model_does_not_record_into_the_original_regularizer():
    import copy

    from gsreg import GraphRegularizer, graphs

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh())
    reg = GraphRegularizer(model, {"1": graphs.grid(4, 4)}, weight=1.0)
    x = torch.randn(8, 5)
    model(x)
    before = reg.penalty().detach()
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin[0].weight.mul_(10.0)
    twin(x)  # neither clears nor replaces the original's penalty
    torch.testing.assert_close(reg.penalty().detach(), before)
    model(x)
    torch.testing.assert_close(reg.penalty().detach(), before)
    reg.remove()
