"""torch.compile(fullgraph=True) of a GSR training step on a fixed graph: no graph breaks,
the same loss and gradients as eager, on every penalty path."""

import copy
import shutil

import pytest
import torch
from torch import nn

from gsreg import GraphPenalty, GraphRegularizer, graphs

GRAPH = graphs.grid(8, 8)  # 64 nodes: the stencil path; dense and csr are forced below
PATHS = ("stencil", "dense", "csr")


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test compiles from scratch: the loss closures share one code object, whose
    recompilations would otherwise add up across tests to dynamo's recompile limit."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def has_c_compiler() -> bool:
    return any(shutil.which(cc) for cc in ("cc", "gcc", "clang"))


def autoencoder(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 16))


def regularized(model, path, weight=0.1):
    penalty = GraphPenalty(GRAPH)  # combinatorial Laplacian
    penalty._path = path
    return GraphRegularizer(model, {model[0]: penalty}, weight=weight)


def loss_function(model, reg):
    def loss(x):
        return ((model(x) - x) ** 2).mean() + reg.penalty()

    return loss


def test_the_training_loss_traces_as_one_graph_without_breaks():
    model = autoencoder()
    reg = regularized(model, "stencil")
    explanation = torch._dynamo.explain(loss_function(model, reg))(torch.randn(8, 16))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


@pytest.mark.parametrize("path", PATHS)
def test_compiled_loss_and_gradients_equal_eager_over_training_steps(path):
    eager_model = autoencoder()
    compiled_model = copy.deepcopy(eager_model)
    eager_reg = regularized(eager_model, path)
    compiled_reg = regularized(compiled_model, path)
    eager = loss_function(eager_model, eager_reg)
    compiled = torch.compile(
        loss_function(compiled_model, compiled_reg), fullgraph=True, backend="aot_eager"
    )
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = torch.randn(32, 16, generator=generator)
        eager_loss, compiled_loss = eager(x), compiled(x)
        eager_loss.backward()
        compiled_loss.backward()
        torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-6)
        for p, q in zip(eager_model.parameters(), compiled_model.parameters(), strict=True):
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-6)
        for model, reg in ((eager_model, eager_reg), (compiled_model, compiled_reg)):
            with torch.no_grad():
                for p in model.parameters():
                    p -= 0.1 * p.grad
                    p.grad = None
            reg.step()
    torch.testing.assert_close(compiled_reg.penalty().detach(), eager_reg.penalty().detach())


@pytest.mark.parametrize("path", PATHS)
def test_the_compiled_penalty_is_the_mean_quadratic_form_of_the_laplacian(path):
    penalty = GraphPenalty(GRAPH)
    penalty._path = path
    z = torch.randn(16, 64, dtype=torch.float64)
    laplacian = torch.as_tensor(GRAPH.laplacian_matrix("combinatorial").toarray())
    expected = torch.einsum("bi,ij,bj->b", z, laplacian, z).mean()
    compiled = torch.compile(penalty, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(z), expected)


def test_the_step_count_does_not_recompile_the_loss_while_the_weight_is_constant():
    model = autoencoder()
    reg = regularized(model, "stencil")
    reg.penalties()["0"].prepare("cpu")
    compiles = []

    def counting_backend(graph_module, example_inputs):
        compiles.append(graph_module)
        return graph_module.forward

    compiled = torch.compile(loss_function(model, reg), fullgraph=True, backend=counting_backend)
    for _ in range(4):
        compiled(torch.randn(8, 16)).backward()
        reg.step()
    assert len(compiles) == 1


def test_a_compiled_penalty_asserts_on_non_finite_activations():
    model = autoencoder()
    reg = regularized(model, "stencil")
    compiled = torch.compile(loss_function(model, reg), fullgraph=True, backend="aot_eager")
    compiled(torch.randn(4, 16))
    with pytest.raises(RuntimeError, match="not finite"):
        compiled(torch.full((4, 16), float("nan")))


def test_check_finite_false_compiles_without_the_assertion():
    penalty = GraphPenalty(GRAPH, check_finite=False)
    compiled = torch.compile(penalty, fullgraph=True, backend="aot_eager")
    assert torch.isnan(compiled(torch.full((2, 64), float("nan"))))


@pytest.mark.slow
@pytest.mark.skipif(not has_c_compiler(), reason="inductor on CPU needs a C compiler")
def test_inductor_compiled_loss_and_gradients_equal_eager():
    eager_model = autoencoder()
    compiled_model = copy.deepcopy(eager_model)
    eager = loss_function(eager_model, regularized(eager_model, "stencil"))
    compiled = torch.compile(
        loss_function(compiled_model, regularized(compiled_model, "stencil")), fullgraph=True
    )
    x = torch.randn(32, 16, generator=torch.Generator().manual_seed(2))
    eager_loss, compiled_loss = eager(x), compiled(x)
    eager_loss.backward()
    compiled_loss.backward()
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-6)
    for p, q in zip(eager_model.parameters(), compiled_model.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6)
