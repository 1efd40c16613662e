"""gsreg.sae: the topographic SAE, streaming training, metrics, capture and its errors."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch
from torch import nn

from gsreg import CoactivationGraph, graphs
from gsreg.sae import (
    TopographicSAE,
    capture,
    downstream_loss,
    edge_similarity,
    evaluate,
    fit_sae,
    open_activations,
)


def _blobs(n: int, seed: int, side: int = 6) -> np.ndarray:
    """Rows (n, side*side): a Gaussian spot at a random position of a side x side image,
    of random brightness; nearby positions give similar rows (a 2-D sensory sheet)."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(0, side - 1, (n, 2))
    yy, xx = np.mgrid[0:side, 0:side]
    d2 = (yy[None] - centre[:, 0, None, None]) ** 2 + (xx[None] - centre[:, 1, None, None]) ** 2
    rows = np.exp(-d2 / 2.0).reshape(n, -1) * rng.uniform(0.5, 1.5, (n, 1))
    return rows.astype(np.float32)


class _Tiny(nn.Module):
    """A token model: embedding (B, T) -> (B, T, 8) -> block -> head (B, T, 5)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(5, 8)
        self.block = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
        self.head = nn.Linear(8, 5)

    def forward(self, tokens):
        return self.head(self.block(self.embed(tokens)))


def _tokens(n_batches=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 5, (4, 6), generator=gen) for _ in range(n_batches)]


# --------------------------------------------------------------------------- the model


def test_topk_keeps_exactly_the_k_largest_pre_activations_of_each_row():
    sae = TopographicSAE(6, 20, k=4)
    with torch.no_grad():
        sae.encoder.bias.fill_(10.0)  # every pre-activation positive
    x = torch.randn(7, 6)
    with torch.no_grad():
        pre = sae.encoder(x - sae.b_dec)
        z = sae.encode(x)
    assert ((z != 0).sum(1) == 4).all()
    for row in range(7):
        kept = set(torch.nonzero(z[row]).flatten().tolist())
        assert kept == set(np.argsort(-pre[row].numpy())[:4].tolist())
        assert torch.equal(z[row][list(kept)], pre[row][list(kept)])


def test_relu_latents_are_the_positive_part_of_the_pre_activations():
    sae = TopographicSAE(6, 20, activation="relu")
    x = torch.randn(5, 6)
    with torch.no_grad():
        assert torch.equal(sae.encode(x), torch.relu(sae.encoder(x - sae.b_dec)))
    assert sae.l1 > 0


def test_reconstruction_is_the_decoder_of_the_latents_plus_the_decoder_bias():
    sae = TopographicSAE(6, 20, k=3)
    with torch.no_grad():
        sae.b_dec.copy_(torch.arange(6.0))
        x = torch.randn(4, 6)
        z = torch.relu(sae.encoder(x - sae.b_dec))
        top = z.topk(3, dim=1)
        sparse = torch.zeros_like(z).scatter(1, top.indices, top.values)
        expected = sparse @ sae.decoder.weight.t() + sae.b_dec
        assert torch.allclose(sae(x), expected, atol=1e-6)


def test_the_relu_loss_is_the_mse_plus_l1_times_the_summed_latents():
    sae = TopographicSAE(6, 10, activation="relu", l1=0.3)
    x = torch.randn(9, 6)
    terms = sae.loss(x)
    with torch.no_grad():
        z = torch.relu(sae.encoder(x - sae.b_dec))
        x_hat = z @ sae.decoder.weight.t() + sae.b_dec
        mse = ((x_hat - x) ** 2).mean()
        expected = mse + 0.3 * z.sum(1).mean()
    assert float(terms["mse"].detach()) == pytest.approx(float(mse), rel=1e-6)
    assert float(terms["loss"].detach()) == pytest.approx(float(expected), rel=1e-6)


def test_decoder_columns_have_unit_norm_after_training_steps():
    sae = TopographicSAE(8, 16, graph="grid:4x4", k=2, weight=1e-2)
    data = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    fit_sae(sae, data, steps=20, batch_size=32, lr=1e-2, progress=False, device="cpu")
    norms = sae.decoder.weight.norm(dim=0)
    assert torch.allclose(norms, torch.ones(16), atol=1e-5)


def test_the_regularizer_hooks_the_named_layer_and_a_plain_sae_has_none():
    assert TopographicSAE(4, 9, k=2).regularizer is None
    sae = TopographicSAE(4, 9, graph=graphs.grid(3, 3), k=2, weight=0.5)
    assert sae.regularizer.layers == ["pre_activations"]
    assert TopographicSAE(4, 9, graph="grid:3x3", k=2, gsr_on="latents").regularizer.layers == [
        "latents"
    ]
    sae.train()
    x = torch.randn(5, 4)
    sae.loss(x)
    with torch.no_grad():
        pre = sae.encoder(x - sae.b_dec)
    lap = graphs.grid(3, 3).laplacian().to_dense()
    expected = 0.5 * torch.einsum("bi,ij,bj->b", pre, lap, pre).mean()
    assert float(sae.penalty().detach()) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("graph", ["grid:3x3", "learned"])
def test_a_deep_copy_collects_its_own_penalty_and_keeps_the_state(graph):
    import copy

    sae = TopographicSAE(4, 9, graph=graph, k=2, weight=0.1)
    fit_sae(sae, _blobs(300, 0)[:, :4], steps=3, batch_size=50, progress=False, device="cpu")
    twin = copy.deepcopy(sae)
    assert twin.regularizer is not sae.regularizer and twin.regularizer.model is twin
    assert twin.regularizer.step_count == sae.regularizer.step_count == 3
    for name, value in sae.state_dict().items():
        assert torch.equal(twin.state_dict()[name], value)
    sae.regularizer.clear()
    twin.loss(torch.randn(5, 4))
    assert "gsr/pre_activations" not in sae.regularizer.logs()
    if graph == "grid:3x3":
        assert float(twin.penalty().detach()) > 0


def test_a_learned_graph_sae_trains():
    sae = TopographicSAE(6, 12, graph="learned", k=2)
    assert isinstance(sae.regularizer.learned_graphs()["pre_activations"], CoactivationGraph)
    data = np.random.default_rng(0).normal(size=(200, 6)).astype(np.float32)
    history = fit_sae(sae, data, steps=10, batch_size=20, progress=False, device="cpu")
    assert len(history) == 1 and np.isfinite(history.last["loss"])


# --------------------------------------------------------------------------- metrics


def test_evaluate_matches_a_direct_numpy_computation():
    sae = TopographicSAE(5, 12, k=3, seed=1)
    x = np.random.default_rng(2).normal(size=(101, 5)).astype(np.float32) * 3 + 1
    with torch.no_grad():
        x_hat, z = (t.numpy().astype(np.float64) for t in sae(torch.from_numpy(x), True))
    x64 = x.astype(np.float64)
    sse = ((x_hat - x64) ** 2).sum()
    sst = ((x64 - x64.mean(0)) ** 2).sum()
    got = evaluate(sae, x, batch_size=17)
    assert got["mse"] == pytest.approx(sse / x.size, rel=1e-6)
    assert got["variance_explained"] == pytest.approx(1 - sse / sst, rel=1e-6)
    assert got["l0"] == pytest.approx((z != 0).sum(1).mean())
    assert got["rows"] == 101
    batches = evaluate(sae, [x[:50], x[50:]])
    assert batches["variance_explained"] == pytest.approx(got["variance_explained"], rel=1e-9)
    first = evaluate(sae, [x[:50], x[50:]], max_rows=60)
    assert first["rows"] == 60 and first["mse"] == pytest.approx(evaluate(sae, x[:60])["mse"])


def test_dead_latents_are_those_never_active_on_the_rows():
    sae = TopographicSAE(3, 6, activation="relu")
    with torch.no_grad():
        sae.b_dec.zero_()
        sae.encoder.weight.zero_()
        sae.encoder.weight[0, 0] = 1.0  # latent 0 fires where x0 > 0
        sae.encoder.weight[1, 1] = 1.0  # latent 1 fires where x1 > 0 (never, below)
        sae.encoder.bias.copy_(torch.tensor([0.0, 0.0, 1.0, -1.0, 0.0, 0.0]))  # 2 always
    x = np.array([[1.0, -1.0, 0.0], [-1.0, -2.0, 5.0], [2.0, -0.5, 1.0]], dtype=np.float32)
    got = evaluate(sae, x)
    assert got["dead_latents"] == 4  # latents 1, 3, 4, 5
    assert got["dead_fraction"] == pytest.approx(4 / 6)
    assert got["l0"] == pytest.approx((2 + 1 + 2) / 3)


def test_downstream_loss_matches_a_hand_computation_on_a_tiny_model():
    model = _Tiny()
    sae = TopographicSAE(8, 16, k=3, seed=2)
    batches = _tokens()

    def loss_fn(logits, tokens):
        return nn.functional.cross_entropy(logits.reshape(-1, 5), tokens.reshape(-1))

    got = downstream_loss(model, "block", sae, batches, loss_fn)
    with torch.no_grad():
        clean, recon, zero = [], [], []
        for tokens in batches:
            h = model.block(model.embed(tokens))
            clean.append(loss_fn(model.head(h), tokens))
            recon.append(loss_fn(model.head(sae(h.reshape(-1, 8)).reshape(h.shape)), tokens))
            zero.append(loss_fn(model.head(torch.zeros_like(h)), tokens))
    expected = {
        k: float(np.mean(v)) for k, v in (("clean", clean), ("sae", recon), ("zero_ablated", zero))
    }
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5)
    recovered = (expected["zero_ablated"] - expected["sae"]) / (
        expected["zero_ablated"] - expected["clean"]
    )
    assert got["loss_recovered"] == pytest.approx(recovered, rel=1e-5)
    assert model.training and sae.training  # modes restored


def test_edge_similarity_equals_a_loop_over_edges_and_pairs_and_follows_a_placement():
    sae = TopographicSAE(5, 9, k=2, seed=4)
    d = sae.decoder.weight.detach().numpy().T.astype(np.float64)  # (9, 5) unit rows
    g = graphs.grid(3, 3)
    perm = np.random.default_rng(0).permutation(9)
    for placement in (None, perm):
        placed = d if placement is None else d[placement]
        edges = np.mean([placed[i] @ placed[j] for i, j in g.edges])
        pairs = np.mean([d[i] @ d[j] for i in range(9) for j in range(9) if i != j])
        got = edge_similarity(sae, g, perm=placement)
        assert got["edges"] == pytest.approx(edges) and got["all_pairs"] == pytest.approx(pairs)
    with pytest.raises(ValueError, match="permutation of the 9 latents"):
        edge_similarity(sae, g, perm=np.zeros(9, int))


class _Keywords(nn.Module):
    """A model called with keyword inputs, as Hugging Face models are."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = _Tiny()

    def forward(self, input_ids, scale=1.0):
        return self.inner(input_ids) * scale


def test_mapping_batches_are_passed_as_keyword_inputs(tmp_path):
    model = _Keywords()
    batches = [{"input_ids": t, "scale": 2.0} for t in _tokens(2)]
    acts = capture(model, "inner.block", batches, tmp_path / "acts", progress=False)
    assert acts.shape == (48, 8)
    sae = TopographicSAE(8, 8, k=2)

    def loss_fn(logits, batch):
        return nn.functional.cross_entropy(logits.reshape(-1, 5), batch["input_ids"].reshape(-1))

    got = downstream_loss(model, "inner.block", sae, batches, loss_fn)
    with torch.no_grad():
        clean = np.mean([float(loss_fn(model(**b), b)) for b in batches])
    assert got["clean"] == pytest.approx(clean, rel=1e-6)


# --------------------------------------------------------------------------- training


class _CountingRows:
    """An (N, d) array-like that records how many rows each read asks for."""

    def __init__(self, array):
        self.array, self.shape, self.reads = array, array.shape, []

    def __getitem__(self, idx):
        self.reads.append(len(idx))
        return self.array[idx]


def test_fit_sae_on_a_memory_map_lowers_the_loss_and_reads_batch_by_batch(tmp_path):
    path = tmp_path / "acts.npy"
    np.save(path, _blobs(2000, 0))
    data = np.load(path, mmap_mode="r")
    counting = _CountingRows(data)
    sae = TopographicSAE(36, 25, graph="grid:5x5", k=2, weight=1e-2)
    history = fit_sae(
        sae,
        counting,
        steps=150,
        batch_size=64,
        lr=3e-3,
        log_every=25,
        progress=False,
        device="cpu",
    )
    assert history["mse"][-1] < 0.5 * history["mse"][0]
    assert max(counting.reads) == 64 and len(counting.reads) == 150
    # each pass over the 2000 rows ends with a batch of 2000 % 64 = 16 rows
    assert history.last["step"] == 150 and history.last["rows"] == sum(counting.reads)
    assert sorted(set(counting.reads)) == [16, 64]


def test_fit_sae_with_the_same_seed_gives_the_same_sae():
    data = _blobs(300, 1)
    saes = [TopographicSAE(36, 9, graph="grid:3x3", k=2, seed=3) for _ in range(2)]
    for sae in saes:
        fit_sae(sae, data, steps=15, batch_size=32, seed=7, progress=False, device="cpu")
    assert torch.equal(saes[0].decoder.weight, saes[1].decoder.weight)


def test_fit_sae_takes_an_iterator_of_batches_until_it_ends():
    data = _blobs(200, 2)
    sae = TopographicSAE(36, 9, k=2)
    history = fit_sae(sae, iter(np.split(data, 5)), progress=False, device="cpu")
    assert history.last["step"] == 5 and history.last["rows"] == 200


def test_fit_sae_refuses_data_without_batches():
    with pytest.raises(ValueError, match="no batches"):
        fit_sae(TopographicSAE(4, 4, k=1), [], progress=False, device="cpu")


def test_a_budget_sets_the_weight_after_the_warm_up():
    from gsreg.budget import MIN_WARMUP_STEPS

    sae = TopographicSAE(36, 9, graph="grid:3x3", k=2, budget=0.05, warmup_steps=MIN_WARMUP_STEPS)
    history = fit_sae(
        sae,
        _blobs(500, 3),
        steps=MIN_WARMUP_STEPS + 20,
        batch_size=32,
        log_every=10,
        progress=False,
        device="cpu",
    )
    weights = history["gsr/pre_activations/weight"]
    assert weights[0] == 0.0 and weights[-1] > 0.0


def test_gsr_on_a_grid_makes_neighbouring_latents_alike_where_a_plain_sae_does_not():
    # spots on a 6x6 image: a 5x5 grid SAE can lay its latents out like the image
    data = _blobs(2000, 0)
    plain = TopographicSAE(36, 25, k=2, seed=0)
    topo = TopographicSAE(36, 25, graph="grid:5x5", k=2, weight=1e-2, seed=0)
    for sae in (plain, topo):
        fit_sae(sae, data, steps=400, batch_size=128, lr=3e-3, progress=False, device="cpu")
    contrast = {}
    for name, sae in (("plain", plain), ("topo", topo)):
        sim = edge_similarity(sae, graphs.grid(5, 5))
        contrast[name] = sim["edges"] - sim["all_pairs"]
    # measured: plain about 0.03, topographic about 0.18 (two seeds)
    assert contrast["topo"] > contrast["plain"] + 0.08, contrast
    assert evaluate(topo, data)["variance_explained"] > 0.5


# --------------------------------------------------------------------------- capture


def test_capture_round_trip_gives_the_layer_rows_in_chunks(tmp_path):
    model = _Tiny()
    batches = _tokens(3)
    acts = capture(model, "block", batches, tmp_path / "acts", chunk_rows=10, progress=False)
    with torch.no_grad():
        expected = torch.cat([model.block(model.embed(t)).reshape(-1, 8) for t in batches])
    assert acts.shape == (72, 8) and acts.d_in == 8 and acts.layer == "block"
    np.testing.assert_array_equal(acts[:], expected.numpy())
    idx = np.array([0, 9, 10, 11, 71])
    np.testing.assert_array_equal(acts[idx], expected.numpy()[idx])
    manifest = json.loads((tmp_path / "acts" / "manifest.json").read_text())
    assert [c["rows"] for c in manifest["chunks"]] == [10] * 7 + [2]
    assert manifest["rows"] == 72 and manifest["dtype"] == "float32"
    again = open_activations(tmp_path / "acts")
    np.testing.assert_array_equal(again[idx], acts[idx])
    shuffled = np.array([71, 3, -1, 10])
    np.testing.assert_array_equal(again[shuffled], expected.numpy()[shuffled])
    np.testing.assert_array_equal(again[-2], expected.numpy()[-2])
    sae = TopographicSAE(8, 8, k=2)
    assert fit_sae(sae, again, steps=3, batch_size=16, progress=False, device="cpu")


def test_a_half_precision_capture_is_read_as_float32_for_training(tmp_path):
    model = _Tiny()
    acts = capture(model, "block", _tokens(2), tmp_path / "acts", dtype="float16", progress=False)
    with torch.no_grad():
        expected = torch.cat([model.block(model.embed(t)).reshape(-1, 8) for t in _tokens(2)])
    assert acts.dtype == np.float16
    np.testing.assert_allclose(acts[:], expected.numpy(), atol=1e-3)
    sae = TopographicSAE(8, 8, k=2)
    history = fit_sae(sae, acts, steps=4, batch_size=12, progress=False, device="cpu")
    assert np.isfinite(history.last["loss"])


def test_a_diverging_fit_is_reported():
    sae = TopographicSAE(4, 4, k=1)
    with torch.no_grad():
        sae.encoder.bias.fill_(float("inf"))
    with pytest.raises(RuntimeError, match="loss became nan"):
        fit_sae(sae, np.ones((8, 4), np.float32), steps=2, progress=False, device="cpu")


def _interrupted(batches, after):
    for number, batch in enumerate(batches):
        if number == after:
            raise KeyboardInterrupt
        yield batch


def test_an_interrupted_capture_leaves_no_folder_and_keeps_a_previous_capture(tmp_path):
    model, out = _Tiny(), tmp_path / "acts"
    with pytest.raises(KeyboardInterrupt):
        capture(model, "block", _interrupted(_tokens(4), 2), out, chunk_rows=4, progress=False)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    first = capture(model, "block", _tokens(2), out, progress=False)[:]
    with pytest.raises(KeyboardInterrupt):
        capture(
            model,
            "block",
            _interrupted(_tokens(4, seed=1), 3),
            out,
            chunk_rows=4,
            overwrite=True,
            progress=False,
        )
    np.testing.assert_array_equal(open_activations(out)[:], first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acts"]


def test_a_killed_capture_leaves_nothing_readable_and_the_next_capture_cleans_up(tmp_path):
    model, out = _Tiny(), tmp_path / "acts"

    def killed(batches):
        for number, batch in enumerate(batches):
            if number == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch

    pid = os.fork()
    if pid == 0:  # the child is killed in the middle of its capture
        try:
            capture(model, "block", killed(_tokens(4)), out, chunk_rows=4, progress=False)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert not out.exists()
    assert len(list(tmp_path.iterdir())) == 1  # the dead capture's staging folder
    capture(model, "block", _tokens(2), out, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acts"]


def test_a_folder_without_a_manifest_is_refused_by_the_reader_and_replaced_by_capture(tmp_path):
    out = tmp_path / "acts"
    out.mkdir()
    np.save(out / "chunk_00000.npy", np.zeros((3, 8), np.float32))
    with pytest.raises(ValueError, match="no manifest.json"):
        open_activations(out)
    acts = capture(_Tiny(), "block", _tokens(1), out, progress=False)
    assert acts.shape == (24, 8)
    assert sorted(p.name for p in out.iterdir()) == ["chunk_00000.npy", "manifest.json"]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"graph": "grid:4x4"}, "grid:4x4.*16 nodes but n_latents=20"),
        ({"graph": CoactivationGraph(n_nodes=7)}, "n_nodes=7 but n_latents=20"),
        ({"graph": 3}, "graph must be"),
        ({"k": 21}, "k=21 exceeds n_latents=20"),
        ({"activation": "gelu"}, "activation must be one of"),
        ({"gsr_on": "decoder"}, "gsr_on must be one of"),
        ({"weight": 0.1}, "needs a graph"),
        ({"l1": -1.0}, "l1 must be"),
    ],
)
def test_a_bad_sae_setting_is_refused_naming_the_values(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        TopographicSAE(6, 20, **{"k": 4, **kwargs})


def test_data_of_another_width_than_the_sae_is_refused(tmp_path):
    sae = TopographicSAE(6, 8, k=2)
    with pytest.raises(ValueError, match="d_in=5 but the SAE has d_in=6"):
        fit_sae(sae, np.zeros((10, 5), np.float32), steps=1, progress=False)
    with pytest.raises(ValueError, match=r"batch 0 has shape \(4, 5\)"):
        fit_sae(sae, [np.zeros((4, 5), np.float32)], progress=False)
    with pytest.raises(ValueError, match="does not match d_in=6"):
        sae(torch.zeros(3, 5))
    acts = capture(_Tiny(), "block", _tokens(1), tmp_path / "acts", progress=False)
    with pytest.raises(ValueError, match="d_in=8 but the SAE has d_in=6"):
        fit_sae(sae, acts, steps=1, progress=False)
    with pytest.raises(ValueError, match="d_in=8 but the SAE has d_in=6"):
        evaluate(sae, acts)


def test_nan_in_a_training_batch_names_the_batch_and_the_data_rows():
    data = np.zeros((8, 3), np.float32)
    data[5, 1] = np.nan
    data[6, 0] = np.inf
    sae = TopographicSAE(3, 4, k=1)
    with pytest.raises(ValueError, match=r"batch 0 has NaN or Inf.*data rows \[5, 6\]"):
        fit_sae(sae, data, steps=1, batch_size=8, progress=False, device="cpu")
    with pytest.raises(ValueError, match=r"batch 1 has NaN or Inf in rows \[1, 2\] of the batch"):
        fit_sae(sae, [data[:4], data[4:]], progress=False, device="cpu")


def test_a_missing_layer_is_refused_listing_close_names(tmp_path):
    with pytest.raises(ValueError, match=r"no layer named 'blok'.*'block'"):
        capture(_Tiny(), "blok", _tokens(1), tmp_path / "acts", progress=False)
    with pytest.raises(ValueError, match=r"no layer named 'hed'.*'head'"):
        downstream_loss(_Tiny(), "hed", TopographicSAE(8, 4, k=1), _tokens(1), lambda o, b: 0)
    assert not (tmp_path / "acts").exists()


def test_nan_in_captured_activations_is_refused_and_nothing_is_written(tmp_path):
    model = _Tiny()
    with torch.no_grad():
        model.embed.weight[3, 2] = float("nan")
    tokens = torch.tensor([[0, 1, 2], [3, 4, 0]])
    with pytest.raises(ValueError, match=r"NaN or Inf in the activations of batch 0 \(rows \[3\]"):
        capture(model, "block", [tokens], tmp_path / "acts", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_complete_capture_is_not_replaced_without_overwrite(tmp_path):
    capture(_Tiny(), "block", _tokens(1), tmp_path / "acts", progress=False)
    with pytest.raises(ValueError, match="already holds a capture"):
        capture(_Tiny(), "head", _tokens(1), tmp_path / "acts", progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="notes.txt"):
        capture(_Tiny(), "block", _tokens(1), tmp_path / "other", progress=False)


def test_a_chunk_that_disagrees_with_the_manifest_is_named(tmp_path):
    out = tmp_path / "acts"
    capture(_Tiny(), "block", _tokens(2), out, chunk_rows=30, progress=False)
    np.save(out / "chunk_00001.npy", np.zeros((30, 7), np.float32))
    with pytest.raises(ValueError, match=r"chunk_00001.npy holds \(30, 7\)"):
        open_activations(out)
    (out / "chunk_00001.npy").unlink()
    with pytest.raises(ValueError, match="chunk_00001.npy named by the manifest is missing"):
        open_activations(out)
