"""CoactivationGraph: kernels against references, buffer, schedule, policies, persistence,
and the learned graph inside GraphRegularizer."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.neighbors import kneighbors_graph
from torch import nn

from gsreg import CoactivationGraph, GraphPenalty, GraphRegularizer, coactivation, graphs


def random_activations(samples: int, n: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(samples, n))).float()


def dense(graph) -> np.ndarray:
    return graph.adjacency().toarray()


def zscore(features: np.ndarray) -> np.ndarray:
    return (features - features.mean(1, keepdims=True)) / features.std(1, keepdims=True)


def squared_distances(features: np.ndarray) -> np.ndarray:
    return ((features[:, None, :] - features[None, :, :]) ** 2).sum(-1)


def knn_mask(d2: np.ndarray, k: int) -> np.ndarray:
    """(n, n) bool: j among the k nearest of i, self excluded."""
    d2 = d2 + np.diag(np.full(len(d2), np.inf))
    mask = np.zeros(d2.shape, dtype=bool)
    np.put_along_axis(mask, np.argsort(d2, axis=1, kind="stable")[:, :k], True, axis=1)
    return mask


# ---------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("features", ["raw", "standardized"])
def test_knn_equals_scikit_learn_symmetrised(features):
    acts = random_activations(40, 30, seed=1) * torch.linspace(0.5, 3, 30) + 2.0
    feats = acts.double().numpy().T
    if features == "standardized":
        feats = zscore(feats)
    a = kneighbors_graph(feats, 4, mode="connectivity", include_self=False).toarray()
    graph = CoactivationGraph("knn", k=4, features=features, buffer_size=40).build(acts)
    np.testing.assert_array_equal(dense(graph), (a + a.T) / 2)


def test_gaussian_weights_match_numpy():
    acts = random_activations(12, 25, seed=2)
    feats = acts.double().numpy().T
    bandwidth, threshold = 4.0, 0.1
    expected = np.exp(-squared_distances(feats) / bandwidth**2)
    np.fill_diagonal(expected, 0)
    assert np.abs(expected - threshold).min() > 1e-4  # no pair sits on the threshold
    expected[expected < threshold] = 0
    lg = CoactivationGraph("gaussian", bandwidth=bandwidth, threshold=threshold, buffer_size=12)
    got = dense(lg.build(acts))
    np.testing.assert_array_equal(got > 0, expected > 0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert 0 < (got > 0).sum() < got.size - len(got)


def test_adaptive_weights_match_numpy():
    acts = random_activations(20, 25, seed=3)
    feats = acts.double().numpy().T
    d2 = squared_distances(feats)
    k = 4
    sigma = np.sqrt(np.sort(d2 + np.diag(np.full(25, np.inf)), axis=1)[:, k - 1])
    mask = knn_mask(d2, k)
    expected = np.where(mask | mask.T, np.exp(-d2 / np.outer(sigma, sigma)), 0.0)
    got = dense(CoactivationGraph("adaptive", k=k, buffer_size=20).build(acts))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-12)


def test_correlation_weights_match_numpy():
    acts = random_activations(30, 20, seed=4)
    corr = np.corrcoef(acts.double().numpy().T)
    k = 3
    mask = knn_mask(1 - corr, k)
    one_sided = np.where(mask, np.clip(corr, 0, None), 0.0)
    expected = (one_sided + one_sided.T) / 2
    got = dense(CoactivationGraph("correlation", k=k, buffer_size=30).build(acts))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kernel", coactivation.KERNELS)
def test_chunked_distances_give_the_same_graph(kernel, monkeypatch):
    acts = random_activations(16, 30, seed=5)
    lg = CoactivationGraph(kernel, k=4, bandwidth=5.0, buffer_size=16)
    whole = lg.build(acts)
    monkeypatch.setattr(coactivation, "_CHUNK_ELEMENTS", 70)  # 2 rows, 4 pairs per chunk
    chunked = lg.build(acts)
    np.testing.assert_array_equal(chunked.edges, whole.edges)
    np.testing.assert_allclose(chunked.weights, whole.weights, rtol=1e-5)


def test_ties_go_to_the_lower_index():
    acts = torch.ones(5, 6)  # all neurons identical: every distance is 0
    graph = CoactivationGraph("knn", k=2, buffer_size=5).build(acts)
    out = np.zeros((6, 6))
    for i in range(6):
        out[i, [j for j in range(6) if j != i][:2]] = 1
    np.testing.assert_array_equal(dense(graph), (out + out.T) / 2)


@settings(max_examples=40, deadline=None)
@given(
    kernel=st.sampled_from(coactivation.KERNELS),
    features=st.sampled_from(coactivation.FEATURES),
    acts=st.integers(4, 12).flatmap(
        lambda n: arrays(
            np.float32,
            st.tuples(st.integers(4, 16), st.just(n)),
            elements=st.floats(-5, 5, width=32) | st.sampled_from([0.0, 1.0]),
        )
    ),
)
def test_every_kernel_gives_a_symmetric_nonnegative_loopless_graph(kernel, features, acts):
    k = 3
    lg = CoactivationGraph(kernel, k=k, features=features, bandwidth=3.0, buffer_size=16)
    graph = lg.build(torch.from_numpy(acts))
    w = dense(graph)
    np.testing.assert_array_equal(w, w.T)
    assert (w >= 0).all() and (np.diag(w) == 0).all()
    assert graph == lg.build(torch.from_numpy(acts.copy()))
    if kernel == "knn":
        assert ((w > 0).sum(1) >= k).all()
        assert set(np.unique(w)) <= {0.0, 0.5, 1.0}


# ---------------------------------------------------------------------------- buffer


def test_buffer_keeps_the_newest_rows_in_order():
    lg = CoactivationGraph(k=2, buffer_size=8)
    rows = torch.arange(60, dtype=torch.float32).reshape(20, 3)
    lg.observe(rows[:3])
    assert lg.n_samples == 3 and torch.equal(lg.samples(), rows[:3])
    for begin, end in [(3, 8), (8, 13), (13, 14)]:
        lg.observe(rows[begin:end])
    assert lg.n_samples == 8 and torch.equal(lg.samples(), rows[6:14])
    lg.observe(rows[:0])
    assert torch.equal(lg.samples(), rows[6:14])
    lg.observe(rows[5:20])  # larger than the buffer: its last rows
    assert torch.equal(lg.samples(), rows[12:20])
    assert lg.buffer.shape == (8, 3) and lg.buffer.dtype == torch.float32


def test_buffer_and_history_stay_bounded_over_a_long_run():
    lg = CoactivationGraph(k=2, update_every=25, buffer_size=16, history_size=5)
    gen = torch.Generator().manual_seed(0)
    lg.observe(torch.randn(4, 8, generator=gen))
    storage = lg.buffer.untyped_storage()
    pointer, nbytes = storage.data_ptr(), storage.nbytes()
    for step in range(1, 10_001):
        lg.observe(torch.randn(4, 8, generator=gen, dtype=torch.float64))
        lg.step(step)
    assert lg.n_updates == 400
    assert len(lg.history) == 5 and [s for s, _ in lg.history] == list(range(9900, 10001, 25))
    assert lg.buffer.untyped_storage().data_ptr() == pointer
    assert lg.buffer.untyped_storage().nbytes() == nbytes == 16 * 8 * 4


# ---------------------------------------------------------------------------- schedule


def test_schedule_warmup_period_and_max_updates():
    lg = CoactivationGraph(k=2, warmup_steps=4, update_every=3, max_updates=3, buffer_size=8)
    lg.observe(random_activations(8, 6))
    updated = [step for step in range(1, 20) if lg.step(step)]
    assert updated == [4, 7, 10]
    assert [s for s, _ in lg.history] == updated and lg.n_updates == 3
    assert lg.graph.name == "learned:knn@10"


def test_no_graph_before_warmup_or_with_too_few_samples():
    lg = CoactivationGraph(k=3, warmup_steps=2, update_every=2, buffer_size=8)
    assert not lg.step(2) and lg.graph is None  # nothing observed
    lg.observe(random_activations(3, 6))
    assert not lg.step(1) and not lg.step(2) and lg.graph is None  # 3 < k + 1 samples
    assert lg.n_components == 0 and lg.current_penalty() is None
    assert lg.penalty(torch.ones(2, 6)).item() == 0.0
    with pytest.raises(RuntimeError, match="no graph"):
        lg.modules()
    lg.observe(random_activations(1, 6, seed=1))
    assert not lg.step(3) and lg.step(4) and lg.graph is not None


# ---------------------------------------------------------------------------- disconnection


def one_cluster(samples: int = 8) -> torch.Tensor:
    """6 neurons on a line (neuron i = i * t): the kNN graph (k = 2) is connected."""
    t = torch.linspace(1, 2, samples)[:, None]
    return t * torch.arange(6.0)


def two_clusters(samples: int = 8) -> torch.Tensor:
    """Neurons 0-2 and 3-5 far apart: the kNN graph (k = 2) has two components."""
    t = torch.linspace(1, 2, samples)[:, None]
    return t * torch.tensor([0.0, 0.1, 0.2, 50.0, 50.1, 50.2])


@pytest.mark.parametrize("policy", ["stop", "freeze", "continue", "keep"])
def test_disconnection_policies(policy):
    lg = CoactivationGraph(k=2, warmup_steps=3, update_every=2, buffer_size=8, on_disconnect=policy)
    lg.observe(one_cluster())
    assert lg.step(3) and lg.n_components == 1
    connected = lg.graph
    lg.observe(two_clusters())
    taken = lg.step(5)
    lg.observe(one_cluster())
    again = lg.step(7)
    if policy == "stop":
        assert not taken and not again and lg.frozen
        assert lg.graph is connected and lg.n_updates == 1 and lg.n_components == 1
    elif policy == "freeze":
        assert taken and not again and lg.frozen
        assert lg.n_components == 2 and [s for s, _ in lg.history] == [3, 5]
        np.testing.assert_array_equal(lg.modules(), [0, 0, 0, 1, 1, 1])
    else:
        assert lg.on_disconnect == "continue"
        assert taken and again and not lg.frozen and lg.n_updates == 3
        assert [g.components()[0] for _, g in lg.history] == [1, 2, 1]


def test_stop_with_a_disconnected_first_graph_warns_and_keeps_none():
    lg = CoactivationGraph(k=2, buffer_size=8, update_every=1, on_disconnect="stop")
    lg.observe(two_clusters())
    with pytest.warns(UserWarning, match="first learned graph"):
        assert not lg.step(1)
    assert lg.graph is None and lg.frozen


def three_clusters(samples: int = 8) -> torch.Tensor:
    """Neurons 0-1, 2-3 and 4-5 far apart: the kNN graph (k = 1) has three components."""
    t = torch.linspace(1, 2, samples)[:, None]
    return t * torch.tensor([0.0, 0.1, 50.0, 50.1, 100.0, 100.1])


def chain(samples: int = 8) -> torch.Tensor:
    """Neurons at 0, 1, 3, 7, 15, 31 (times t): each one's nearest neighbour is unambiguous
    and the kNN graph (k = 1) is connected."""
    t = torch.linspace(1, 2, samples)[:, None]
    return t * torch.tensor([0.0, 1.0, 3.0, 7.0, 15.0, 31.0])


def scipy_components(graph) -> int:
    from scipy.sparse.csgraph import connected_components

    return connected_components(graph.adjacency(), directed=False)[0]


def test_stable_updates_freeze_after_equal_component_counts_of_a_fallen_apart_graph():
    # counts 1, 1, 1 (connected: never freezes), 2, 3, 3, 3 -> frozen at the third 3
    sequence = [chain()] * 3 + [two_clusters(), three_clusters()] + [three_clusters()] * 4
    lg = CoactivationGraph(k=1, update_every=1, buffer_size=8, stable_updates=3)
    taken = []
    for step, acts in enumerate(sequence, start=1):
        lg.observe(acts)
        taken.append(lg.step(step))
    counts = [scipy_components(g) for _, g in lg.history]
    assert counts == [1, 1, 1, 2, 3, 3, 3]
    assert taken == [True] * 7 + [False] * 2
    assert lg.frozen and lg.frozen_at == 7 and lg.n_components == 3
    np.testing.assert_array_equal(lg.modules(), [0, 0, 1, 1, 2, 2])


def test_stable_updates_count_restarts_when_the_count_changes():
    sequence = [two_clusters(), two_clusters(), three_clusters(), two_clusters(), two_clusters()]
    lg = CoactivationGraph(k=1, update_every=1, buffer_size=8, stable_updates=2)
    for step, acts in enumerate(sequence, start=1):
        lg.observe(acts)
        lg.step(step)
    assert lg.frozen_at == 2 and lg.n_updates == 2  # 2, 2: frozen at once
    lg = CoactivationGraph(k=1, update_every=1, buffer_size=8, stable_updates=3)
    for step, acts in enumerate(sequence, start=1):
        lg.observe(acts)
        lg.step(step)
    assert not lg.frozen and lg.frozen_at is None and lg.n_updates == 5  # 2, 2, 3, 2, 2


@pytest.mark.parametrize("release", [0, 3])
def test_release_steps_switch_the_penalty_off_after_freezing(release):
    lg = CoactivationGraph(
        k=1, update_every=1, buffer_size=8, stable_updates=2, release_steps=release
    )
    z = three_clusters(4) + torch.randn(4, 6)
    lg.observe(three_clusters())
    assert lg.step(1) and not lg.frozen and lg.current_penalty() is not None
    assert lg.step(2) and lg.frozen and lg.frozen_at == 2
    expected = GraphPenalty(lg.graph, "normalized")(z)
    for step in range(3, 10):
        lg.step(step)
        on = step < 2 + release
        assert (lg.current_penalty() is not None) == on and lg.released == (not on)
        assert lg.penalty(z).item() == (pytest.approx(expected.item()) if on else 0.0)
        np.testing.assert_array_equal(lg.modules(), [0, 0, 1, 1, 2, 2])  # the graph stays


def test_release_steps_also_follow_max_updates_and_on_disconnect():
    lg = CoactivationGraph(k=2, update_every=2, buffer_size=8, max_updates=2, release_steps=1)
    lg.observe(one_cluster())
    for step in range(1, 6):
        lg.step(step)
    # updates at 2 and 4; max_updates ends them at 4 and the penalty stops a step later
    assert lg.frozen_at == 4 and not lg.frozen and lg.released and lg.graph is not None
    lg = CoactivationGraph(
        k=2, update_every=1, buffer_size=8, on_disconnect="freeze", release_steps=2
    )
    lg.observe(two_clusters())
    lg.step(1)
    lg.step(2)
    assert lg.frozen_at == 1 and not lg.released
    lg.step(3)
    assert lg.released and lg.current_penalty() is None and lg.n_components == 2


def test_a_released_learned_graph_adds_nothing_to_the_regularizer_penalty():
    model = small_model()
    lg = CoactivationGraph(k=3, update_every=1, buffer_size=32, max_updates=1, release_steps=2)
    reg = GraphRegularizer(model, {"1": lg}, weight=0.5)
    values = []
    for _ in range(5):
        model(torch.randn(16, 4))
        values.append(reg.penalty().item())
        reg.step()
    assert values[0] == 0.0 and all(v > 0 for v in values[1:3]) and values[3:] == [0.0, 0.0]
    assert lg.graph is not None and reg.logs()["gsr/1/components"] == lg.n_components


def test_state_dict_keeps_the_freeze_and_release_schedule():
    def make() -> CoactivationGraph:
        return CoactivationGraph(
            k=1, update_every=1, buffer_size=8, stable_updates=2, release_steps=3
        )

    lg = make()
    lg.observe(three_clusters())
    for step in (1, 2, 3):
        lg.step(step)
    state = lg.state_dict()
    assert state["frozen_at"] == 2 and state["stable"] == 2 and state["step"] == 3
    resumed = make()
    resumed.load_state_dict(json.loads(json.dumps({**state, "buffer": None})))
    assert resumed.frozen_at == 2 and not resumed.released
    resumed.step(5)
    assert resumed.released
    # a state saved before the schedule keys existed still loads
    old = {k: v for k, v in state.items() if k not in ("frozen_at", "stable", "step")}
    older = make()
    older.load_state_dict(old)
    assert older.frozen and older.frozen_at is None
    older.step(4)
    assert older.frozen_at == 4 and not older.released


def test_modules_are_ordered_by_size():
    lg = CoactivationGraph(k=1, buffer_size=4, update_every=1, n_nodes=5)
    t = torch.linspace(1, 2, 4)[:, None]
    lg.observe(t * torch.tensor([50.0, 0.0, 50.1, 0.1, 0.25]))  # {0, 2} and {1, 3, 4}
    assert lg.step(1) and lg.n_components == 2
    np.testing.assert_array_equal(lg.graph.components()[1], [0, 1, 0, 1, 1])
    np.testing.assert_array_equal(lg.modules(), [1, 0, 1, 0, 0])


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kernel": "cosine"}, "unknown kernel"),
        ({"features": "zscore"}, "unknown features"),
        ({"on_disconnect": "ignore"}, "unknown on_disconnect"),
        ({"laplacian": "signless"}, "unknown laplacian"),
        ({"normalize": "yes"}, "normalize"),
        ({"k": 0}, "k must be"),
        ({"k": True}, "k must be"),
        ({"bandwidth": 0.0}, "bandwidth"),
        ({"threshold": 1.0}, "threshold"),
        ({"k": 5, "buffer_size": 5}, r"buffer_size .* needs 6 samples"),
        ({"kernel": "gaussian", "buffer_size": 1}, "buffer_size"),
        ({"update_every": 0}, "update_every"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"max_updates": 0}, "max_updates"),
        ({"history_size": -1}, "history_size"),
        ({"stable_updates": 0}, "stable_updates"),
        ({"stable_updates": 2.0}, "stable_updates"),
        ({"release_steps": -1}, "release_steps"),
        ({"k": 5, "n_nodes": 5}, "k=5 neighbours need at least 6 neurons"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CoactivationGraph(**kwargs)


def test_bad_activations():
    with pytest.raises(ValueError, match="k=5 neighbours need at least 6 neurons, the layer has 4"):
        CoactivationGraph(k=5).observe(torch.zeros(3, 4))
    lg = CoactivationGraph(k=2, buffer_size=4)
    lg.observe(torch.zeros(3, 6))
    with pytest.raises(ValueError, match=r"expected activations \(B, 6\), got \(3, 7\)"):
        lg.observe(torch.zeros(3, 7))
    with pytest.raises(ValueError, match=r"shape \(B, n\)"):
        lg.observe(torch.zeros(6))
    with pytest.raises(TypeError, match="floating point"):
        lg.observe(torch.zeros(3, 6, dtype=torch.int64))
    lg.observe(torch.full((1, 6), float("nan")))
    with pytest.raises(ValueError, match="6 observed activations are NaN or Inf"):
        lg.build()


# ---------------------------------------------------------------------------- persistence


def test_state_dict_round_trip_resumes_identically():
    def batch(step: int) -> torch.Tensor:
        return random_activations(5, 10, seed=step) + (step // 15) * torch.arange(10.0)

    def make() -> CoactivationGraph:
        return CoactivationGraph(
            k=3, warmup_steps=4, update_every=3, buffer_size=12, history_size=3
        )

    original = make()
    for step in range(1, 21):
        original.observe(batch(step))
        original.step(step)
    state = original.state_dict()
    plain = json.loads(json.dumps({k: v for k, v in state.items() if k != "buffer"}))
    resumed = make()
    resumed.load_state_dict({**plain, "buffer": state["buffer"]})
    assert resumed.graph == original.graph and resumed.n_updates == original.n_updates
    for step in range(21, 41):
        for lg in (original, resumed):
            lg.observe(batch(step))
            lg.step(step)
    assert torch.equal(resumed.samples(), original.samples())
    assert [s for s, _ in resumed.history] == [s for s, _ in original.history]
    assert all(a == b for (_, a), (_, b) in zip(resumed.history, original.history, strict=True))
    assert resumed.graph == original.graph and resumed.n_components == original.n_components
    with pytest.raises(ValueError, match="buffer_size=6"):
        CoactivationGraph(k=3, buffer_size=6).load_state_dict(state)
    with pytest.raises(ValueError, match="keys"):
        make().load_state_dict({"buffer": None})


# ---------------------------------------------------------------------------- regularizer


def small_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.LeakyReLU(0.2), nn.Linear(8, 4))


def test_regularizer_penalises_with_the_learned_graph_once_it_exists():
    model = small_model()
    lg = CoactivationGraph(k=3, warmup_steps=2, update_every=2, buffer_size=32)
    reg = GraphRegularizer(model, {"1": lg}, weight=0.5)
    for _ in range(4):
        x = torch.randn(16, 4)
        with torch.no_grad():  # hooks collect nothing without autograd
            z = model[1](model[0](x))
        model(x)
        if lg.graph is None:
            assert reg.penalty().item() == 0.0 and reg.logs()["gsr/1/components"] == 0
            assert "1" not in reg.penalties()
        else:
            expected = 0.5 * GraphPenalty(lg.graph, "normalized")(z)
            assert reg.penalty().item() == pytest.approx(expected.item(), rel=1e-6)
            model.zero_grad()
            reg.penalty().backward()
            assert model[0].weight.grad.abs().sum() > 0
            assert reg.logs()["gsr/1/components"] == lg.n_components >= 1
        reg.step()
    assert [s for s, _ in lg.history] == [2, 4] and lg.n_samples == 32
    model.eval()
    model(torch.randn(16, 4))
    assert lg.n_samples == 32  # evaluation does not feed the graph
    assert "learned:knn" in repr(reg)


def test_regularizer_state_dict_carries_learned_graphs():
    model = small_model()
    lg = CoactivationGraph(k=3, update_every=1, buffer_size=16)
    reg = GraphRegularizer(model, {"1": lg})
    model(torch.randn(16, 4))
    reg.step()
    other = GraphRegularizer(small_model(), {"1": CoactivationGraph(k=3, buffer_size=16)})
    other.load_state_dict(reg.state_dict())
    assert other.step_count == 1 and other.learned_graphs()["1"].graph == lg.graph
    with pytest.raises(ValueError, match="learned graphs"):
        GraphRegularizer(small_model(), {"1": "grid:2x4"}).load_state_dict(reg.state_dict())


def test_regularizer_infers_conv_widths_from_the_node_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU())
    lg = CoactivationGraph(k=2, buffer_size=16)
    GraphRegularizer(model, {"0": lg}, nodes="channels")
    model(torch.randn(2, 1, 4, 4))
    assert lg.n_nodes == 6 and lg.n_samples == 16
    GraphRegularizer(model, {"1": CoactivationGraph(k=2)})
    with pytest.raises(ValueError, match="layer '1'.*nodes='channels' or 'flatten'"):
        model(torch.randn(2, 1, 4, 4))


def test_a_learned_graph_serves_one_layer():
    lg = CoactivationGraph(k=2)
    with pytest.raises(ValueError, match="already serves"):
        GraphRegularizer(small_model(), {"0": lg, "1": lg})
    penalty = GraphPenalty(graphs.grid(2, 4))  # a fixed penalty may be shared
    GraphRegularizer(small_model(), {"0": penalty, "1": penalty})


def planted_modules(per_module: int = 200, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """15 features in 3 modules of 5 (in-module correlation 0.6); each sample raises one
    module by 10. Returns X (N, 15) and the module of each sample (N,)."""
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(np.full((5, 5), 0.6) + 0.4 * np.eye(5))
    labels = np.repeat(np.arange(3), per_module)
    x = (rng.normal(size=(len(labels), 3, 5)) @ chol.T).reshape(len(labels), 15)
    x += 10 * np.repeat(np.eye(3)[labels], 5, axis=1)
    return torch.tensor(x, dtype=torch.float32), labels


def train_planted(weight: float) -> tuple[CoactivationGraph, np.ndarray, np.ndarray]:
    """A 15-30-15 autoencoder with a learned graph on its 30 hidden units."""
    x, labels = planted_modules()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(15, 30), nn.LeakyReLU(0.2), nn.Linear(30, 15))
    lg = CoactivationGraph(k=5, warmup_steps=50, update_every=25, buffer_size=256)
    reg = GraphRegularizer(model, {"1": lg}, weight=weight)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        xb = x[torch.randint(0, len(x), (32,), generator=gen)]
        loss = (model(xb) - xb).pow(2).mean() + reg.penalty()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        reg.step()
    with torch.no_grad():
        hidden = model[:2](x).numpy()
    return lg, hidden, labels


def test_learned_graph_recovers_planted_modules():
    lg, hidden, labels = train_planted(weight=1e-2)
    modules = lg.modules()
    assert lg.n_components >= 3
    # mean activity of each sample cluster (rows) in each neuron module (columns)
    table = np.array(
        [
            [hidden[labels == c][:, modules == m].mean() for m in range(lg.n_components)]
            for c in range(3)
        ]
    )
    assert len(set(table.argmax(axis=1))) == 3
    # without the penalty the co-activation graph does not fall apart
    assert train_planted(weight=0.0)[0].n_components == 1


@pytest.mark.parametrize(
    "tamper, match",
    [
        (lambda s: {**s, "n_updates": -5}, "n_updates must be an int >= 0"),
        (lambda s: {**s, "frozen": "false"}, "frozen must be True or False"),
        (lambda s: {**s, "position": 1.5}, "position must be an int"),
        (
            lambda s: {**s, "graph": graphs.path(5).to_dict()},
            "a saved graph has 5 nodes, the layer has 8",
        ),
    ],
)
def test_tampered_state_is_refused(tamper, match):
    lg = CoactivationGraph(k=2, update_every=1, buffer_size=8, n_nodes=8)
    lg.observe(random_activations(8, 8, seed=0))
    lg.step(1)
    state = lg.state_dict()
    fresh = CoactivationGraph(k=2, update_every=1, buffer_size=8, n_nodes=8)
    with pytest.raises(ValueError, match=match):
        fresh.load_state_dict(tamper(state))


@pytest.mark.parametrize("kernel", ["adaptive", "correlation", "knn"])
def test_overflowing_activations_raise_instead_of_losing_edges(kernel):
    acts = random_activations(64, 10, seed=0) * 1e25
    with pytest.raises(ValueError, match="overflow"):
        CoactivationGraph(kernel=kernel, k=3).build(acts)


def test_constant_neurons_follow_a_stated_rule():
    """adaptive: identical (constant) neurons are joined with weight 1, never NaN;
    correlation: a constant neuron has no edge."""
    acts = random_activations(64, 10, seed=0)
    acts[:, 3] = 2.0
    acts[:, 4] = 2.0
    adaptive = CoactivationGraph(kernel="adaptive", k=3).build(acts)
    pairs = {tuple(e): w for e, w in zip(adaptive.edges.tolist(), adaptive.weights, strict=True)}
    assert pairs[(3, 4)] == 1.0
    correlation = CoactivationGraph(kernel="correlation", k=3).build(acts)
    assert not np.isin(correlation.edges, [3, 4]).any()


# ---------------------------------------------------------------------------- fast paths


@pytest.mark.parametrize("buffer_size", [12, 10, 3])
def test_graphs_built_in_training_match_a_plain_ring_buffer(buffer_size):
    """Every graph the regulariser builds (warm-up, update_every, batch sizes that do not
    divide the buffer, a batch larger than it, a layer applied twice) is the graph of the
    newest buffer_size rows of all activations the layer produced, kept by plain lists."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 4))
    lg = CoactivationGraph(k=2, warmup_steps=3, update_every=2, buffer_size=buffer_size)
    reg = GraphRegularizer(model, {"0": lg}, weight=1e-2)
    seen: list[torch.Tensor] = []
    model[0].register_forward_hook(lambda m, i, out: seen.append(out.detach().clone()))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    expected = []
    batches = [4, 4, 5, 4, 13, 4, 4, 3, 4, 4, 1, 4, 7, 4]
    for step, b in enumerate(batches, start=1):
        x = torch.randn(b, 4)
        loss = model(x).pow(2).mean()
        if step % 5 == 0:  # a second forward in the same step
            loss = loss + model(torch.randn(2, 4)).pow(2).mean()
        loss = loss + reg.penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
        reg.step()
        if lg.due(step) or (step >= 3 and (step - 3) % 2 == 0):
            rows = torch.cat(seen)[-buffer_size:]
            if rows.shape[0] >= lg.min_samples:
                expected.append((step, lg.build(rows, step=step)))
    assert len(expected) >= 5
    assert [s for s, _ in lg.history] == [s for s, _ in expected]
    for (_, got), (_, want) in zip(lg.history, expected, strict=True):
        assert got == want
    assert torch.equal(lg.samples(), torch.cat(seen)[-buffer_size:])


def pairwise(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between the rows of x, by differences (no cancellation)."""
    return (x[:, None, :] - x[None, :, :]).pow(2).sum(-1).sqrt()


def test_profile_dims_projection_is_exact_on_low_rank_profiles_and_seeded():
    gen = torch.Generator().manual_seed(3)
    acts = torch.randn(64, 4, generator=gen) @ torch.randn(4, 40, generator=gen)  # rank 4
    exact = CoactivationGraph(k=4, n_nodes=40, buffer_size=64).build(acts)
    projected = CoactivationGraph(k=4, profile_dims=8, buffer_size=64).build(acts)
    assert projected == exact
    x = coactivation.neuron_features(acts)
    reduced = coactivation.project_profiles(x, 8, seed=1)
    assert reduced.shape == (40, 8)
    assert torch.allclose(pairwise(reduced), pairwise(x), rtol=1e-4, atol=1e-3)
    assert torch.equal(reduced, coactivation.project_profiles(x, 8, seed=1))
    # full-rank noise: projected distances never exceed the exact ones, and the kNN lists
    # stay mostly the same
    noisy = random_activations(200, 60)
    a = CoactivationGraph(k=5, n_nodes=60, buffer_size=200).build(noisy)
    b = CoactivationGraph(k=5, profile_dims=40, seed=2, buffer_size=200).build(noisy)
    c = CoactivationGraph(k=5, profile_dims=40, seed=2, buffer_size=200).build(noisy)
    assert b == c
    kept = len(set(map(tuple, a.edges.tolist())) & set(map(tuple, b.edges.tolist())))
    assert kept / a.n_edges > 0.5
    fx = coactivation.neuron_features(noisy)
    fr = coactivation.project_profiles(fx, 40, seed=2)
    assert bool((pairwise(fr) <= pairwise(fx) + 1e-3).all())
    # profile_dims at or above the sample count changes nothing
    assert CoactivationGraph(k=5, profile_dims=200, buffer_size=200).build(noisy) == a


def test_profile_dims_is_checked():
    with pytest.raises(ValueError, match="correlation"):
        CoactivationGraph("correlation", profile_dims=16)
    with pytest.raises(ValueError, match="profile_dims"):
        CoactivationGraph(profile_dims=0)
