"""gsreg.save / gsreg.load: round trips, learned-graph state, and clear failures."""

import json
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import gsreg
from gsreg import CoactivationGraph, GraphRegularizer, graphs
from gsreg import io as gio
from gsreg.models import ConvClassifier, DenseAutoencoder
from gsreg.training import fit


def small_ae(seed: int = 0) -> DenseAutoencoder:
    torch.manual_seed(seed)
    return DenseAutoencoder(12, hidden=(8,), latent=3, decoder_hidden=(9, 8))


def test_round_trip_rebuilds_the_model_with_identical_outputs(tmp_path):
    model = small_ae()
    reg = GraphRegularizer(
        model,
        {"decoder.0": graphs.grid(3, 3)},
        weight=0.5,
        normalize="centered",
        warmup_steps=2,
        decay=(0.9, 5),
    )
    X = torch.rand(40, 12)
    history = fit(model, X, regularizer=reg, epochs=2, batch_size=16, progress=False)
    path = gsreg.save(
        tmp_path / "ae.safetensors",
        model,
        regularizer=reg,
        history=history,
        note="three by three",
        scale=np.arange(3.0),
        nested={"t": torch.ones(2)},
    )
    loaded = gsreg.load(path)
    assert type(loaded.model) is DenseAutoencoder
    assert loaded.model.config == model.config
    assert not loaded.model.training
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.model(X), model(X))
    assert loaded.graphs == {"decoder.0": graphs.grid(3, 3)}
    assert loaded.graphs["decoder.0"].shape == (3, 3)
    assert loaded.metadata["note"] == "three by three"
    np.testing.assert_array_equal(loaded.metadata["scale"], np.arange(3.0))
    assert torch.equal(loaded.metadata["nested"]["t"], torch.ones(2))
    assert loaded.history.epochs == history.epochs
    assert loaded.regularizer["step"] == reg.step_count
    assert loaded.format_version == gio.FORMAT_VERSION
    assert loaded.gsreg_version == gsreg.__version__
    # the rebuilt regularizer carries the same layers, weights and schedule
    rebuilt = loaded.make_regularizer()
    assert rebuilt.step_count == reg.step_count
    assert rebuilt.weight("decoder.0") == pytest.approx(reg.weight("decoder.0"))
    assert rebuilt.penalties()["decoder.0"].normalize == "centered"


def test_learned_graph_state_round_trips_exactly(tmp_path):
    model = small_ae()
    lg = CoactivationGraph(k=2, update_every=2, buffer_size=32)
    reg = GraphRegularizer(model, {"decoder.0": lg}, weight=1e-2)
    fit(model, torch.rand(48, 12), regularizer=reg, epochs=2, batch_size=8, progress=False)
    assert lg.graph is not None
    loaded = gsreg.load(gsreg.save(tmp_path / "lg.safetensors", model, regularizer=reg))
    assert loaded.graphs["decoder.0"] == lg.graph
    saved = loaded.regularizer["learned"]["decoder.0"]
    assert torch.equal(saved["buffer"], lg.buffer)
    assert [h["step"] for h in saved["history"]] == [s for s, _ in lg.history]
    again = loaded.make_regularizer().learned_graphs()["decoder.0"]
    assert again.graph == lg.graph and again.n_updates == lg.n_updates
    assert again.k == 2 and again.update_every == 2
    assert torch.equal(again.samples(), lg.samples())


def test_conv_classifier_and_plain_modules(tmp_path):
    torch.manual_seed(0)
    conv = ConvClassifier(in_shape=(1, 8, 8), n_classes=3, hidden=4)
    loaded = gsreg.load(gsreg.save(tmp_path / "c.safetensors", conv))
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(loaded.model(x), conv.eval()(x))
    assert loaded.regularizer is None and loaded.graphs == {}
    plain = torch.nn.Sequential(torch.nn.Linear(3, 2))
    path = gsreg.save(tmp_path / "p.safetensors", plain)
    with pytest.raises(gio.FormatError, match="not one of gsreg's model classes"):
        gsreg.load(path)
    target = torch.nn.Sequential(torch.nn.Linear(3, 2))
    loaded = gsreg.load(path, model=target)
    assert loaded.model is target
    assert torch.equal(target[0].weight, plain[0].weight)


def test_float64_models_keep_their_precision(tmp_path):
    model = small_ae().double()
    loaded = gsreg.load(gsreg.save(tmp_path / "d.safetensors", model))
    assert loaded.model.encoder[0][0].weight.dtype == torch.float64
    assert torch.equal(loaded.model.encoder[0][0].weight, model.encoder[0][0].weight)


def test_a_file_from_a_newer_format_fails_clearly(tmp_path, monkeypatch):
    path = tmp_path / "new.safetensors"
    monkeypatch.setattr(gio, "FORMAT_VERSION", gio.FORMAT_VERSION + 1)
    gsreg.save(path, small_ae())
    monkeypatch.undo()
    with pytest.raises(gio.FormatError, match=r"format version 2, newer .* upgrade gsreg"):
        gsreg.load(path)


@pytest.mark.parametrize("keep", [0, 5, 100, -10, -1])
def test_truncated_files_fail_clearly(tmp_path, keep):
    path = gsreg.save(tmp_path / "t.safetensors", small_ae())
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:keep])
    with pytest.raises(gio.FormatError, match="truncated|corrupted"):
        gsreg.load(path)


def test_corrupted_tensor_bytes_fail_the_checksum(tmp_path):
    path = gsreg.save(tmp_path / "c.safetensors", small_ae())
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(gio.FormatError, match="checksum"):
        gsreg.load(path)


def test_other_files_are_refused(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.ones(2)}, foreign)
    with pytest.raises(gio.FormatError, match="not a gsreg file"):
        gsreg.load(foreign)
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a model at all")
    with pytest.raises(gio.FormatError):
        gsreg.load(text)
    with pytest.raises(FileNotFoundError):
        gsreg.load(tmp_path / "missing.safetensors")


def test_an_unknown_class_name_in_a_file_is_never_imported(tmp_path):
    path = gsreg.save(tmp_path / "m.safetensors", small_ae())
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    document = json.loads(header["__metadata__"]["gsreg"])
    document["model"]["class"] = "os.system"
    header["__metadata__"]["gsreg"] = json.dumps(document)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + size :])
    with pytest.raises(gio.FormatError):  # the checksum, or the registry, refuses it
        gsreg.load(path)
    assert "os.system" not in gio._MODELS


def test_metadata_that_json_cannot_hold_is_refused(tmp_path):
    with pytest.raises(TypeError, match="cannot save"):
        gsreg.save(tmp_path / "x.safetensors", small_ae(), thing=object())
    with pytest.raises(TypeError, match="pass a list"):
        gsreg.save(tmp_path / "x.safetensors", small_ae(), names=np.array(["a", "b"]))
    assert not (tmp_path / "x.safetensors").exists()
    assert list(tmp_path.iterdir()) == []


def test_a_budget_regularizer_resumes_with_its_controller(tmp_path):
    model = DenseAutoencoder(6, hidden=(5,), latent=4)
    reg = GraphRegularizer(model, {"encoder.latent": "grid:2x2"}, budget=0.05, reference=1.0)
    x = torch.randn(16, 6)
    for loss in (1.2, 1.1, 0.9):
        model(x)
        reg.penalty()
        reg.step(torch.tensor(loss))
    path = gsreg.save(tmp_path / "m.safetensors", model, regularizer=reg)
    again = gsreg.load(path).make_regularizer()
    assert again.budget is not None and again.budget.budget == 0.05
    assert again.step_count == 3
    assert again.weight("encoder.latent") == pytest.approx(reg.weight("encoder.latent"))
    assert float(again.budget.cost()) == pytest.approx(float(reg.budget.cost()))


def rewrite_document(path, change):
    """Apply ``change`` to a saved file's gsreg document and recompute its checksum, as a
    deliberate forger would."""
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    document = json.loads(header["__metadata__"]["gsreg"])
    change(document)
    tensors = gio._load_tensors(data)
    document["checksum"] = gio._checksum(document, tensors)
    header["__metadata__"]["gsreg"] = json.dumps(document, sort_keys=True)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + size :])


@pytest.mark.parametrize("n_features", [10**8, 10**11])
def test_a_forged_config_of_huge_sizes_fails_before_building_anything(tmp_path, n_features):
    import resource

    path = gsreg.save(tmp_path / "m.safetensors", small_ae())
    rewrite_document(path, lambda d: d["model"]["config"].update(n_features=n_features))
    assert path.stat().st_size < 4096
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(
        gio.FormatError,
        match=r"tensor 'encoder.0.0.weight' has shape \(8, 12\) "
        rf"in the file but \(8, {n_features}\) in the DenseAutoencoder",
    ):
        gsreg.load(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200_000


def test_a_forged_config_of_the_wrong_type_is_a_format_error(tmp_path):
    path = gsreg.save(tmp_path / "m.safetensors", small_ae())
    rewrite_document(path, lambda d: d["model"]["config"].update(latent="many"))
    with pytest.raises(gio.FormatError, match="DenseAutoencoder config is invalid"):
        gsreg.load(path)


class EncoderOnly(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = small_ae().encoder


@pytest.mark.parametrize(
    "other, words",
    [
        (
            lambda: DenseAutoencoder(12, hidden=(8,), latent=4, decoder_hidden=(9, 8)),
            r"tensor 'encoder.latent.weight' has shape \(3, 8\) in the file but \(4, 8\) in the "
            "given DenseAutoencoder",
        ),
        (
            lambda: DenseAutoencoder(12, hidden=(8,), latent=3, decoder_hidden=(9, 8, 8)),
            "the file has no tensor 'decoder.2.0.weight', which the given DenseAutoencoder needs",
        ),
        (
            EncoderOnly,
            "the file has a tensor 'decoder.0.0.bias' that the given EncoderOnly does not have",
        ),
    ],
)
def test_loading_into_a_mismatched_model_names_the_first_mismatched_tensor(tmp_path, other, words):
    path = gsreg.save(tmp_path / "m.safetensors", small_ae())
    with pytest.raises(gio.FormatError, match=words):
        gsreg.load(path, model=other())


def test_the_graph_layer_autoencoder_is_rebuilt_from_its_file(tmp_path):
    from gsreg.models import GraphLayerAutoencoder

    torch.manual_seed(0)
    model = GraphLayerAutoencoder(12, width=9, hidden=7, noise=0.3).eval()
    x = torch.randn(5, 12)
    loaded = gsreg.load(gsreg.save(tmp_path / "g.safetensors", model))
    assert type(loaded.model) is GraphLayerAutoencoder
    assert loaded.model.config == model.config
    torch.testing.assert_close(loaded.model(x), model(x), rtol=0, atol=0)


def test_learned_graph_options_survive_a_round_trip(tmp_path):
    model = small_ae()
    lg = CoactivationGraph(k=2, warmup_steps=0, update_every=1, profile_dims=4, seed=7)
    reg = GraphRegularizer(model, {"encoder.latent": lg}, weight=1e-3)
    loaded = gsreg.load(gsreg.save(tmp_path / "m.safetensors", model, regularizer=reg))
    again = loaded.make_regularizer().learned_graphs()["encoder.latent"]
    assert (again.profile_dims, again.seed) == (4, 7)
