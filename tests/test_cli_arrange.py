"""``gsreg arrange``: the run folder it writes, the function it keeps, and its error cases."""

import json

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import gsreg
from gsreg import GSRAutoencoder, cli
from gsreg.cli import arrange as cli_arrange
from gsreg.models import DenseAutoencoder

N = 120


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A two-epoch ``gsreg fit`` run on digits and a plain saved DenseAutoencoder."""
    root = tmp_path_factory.mktemp("arrange")
    digits = load_digits()
    X, y = digits.data[:N], digits.target[:N]
    np.save(root / "x.npy", X)
    np.save(root / "y.npy", y)
    code = cli.main(
        [
            "fit",
            str(root / "x.npy"),
            "--graph",
            "grid:4x4",
            "--weight",
            "0",
            "--epochs",
            "2",
            "--quiet",
            "--out",
            str(root / "fit"),
        ]
    )
    assert code == 0
    torch.manual_seed(0)
    plain = DenseAutoencoder(8, hidden=(12,), latent=9, decoder_hidden=(9,))
    gsreg.save(root / "plain.safetensors", plain)
    Xp = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32)
    np.save(root / "xp.npy", Xp)
    return {
        "root": root,
        "X": X,
        "y": y,
        "fit": root / "fit" / "model.safetensors",
        "plain": root / "plain.safetensors",
        "Xp": Xp,
    }


def arrange(args, capsys):
    code = cli.main(["arrange", *map(str, args), "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def outputs(model, X):
    with torch.no_grad():
        return model.eval()(torch.as_tensor(X, dtype=torch.float32)).numpy()


def test_a_fit_runs_model_is_arranged_with_labels_and_keeps_its_function(files, tmp_path, capsys):
    X = files["X"]
    out = tmp_path / "arranged"
    code, _, err = arrange(
        [
            files["fit"],
            "--layer",
            "decoder.0",
            "--graph",
            "grid:4x4",
            "--data",
            files["root"] / "x.npy",
            "--labels",
            files["root"] / "y.npy",
            "--out",
            out,
        ],
        capsys,
    )
    assert code == 0, err
    for name in cli_arrange.OUTPUTS:
        assert (out / name).exists(), name
    perm = np.load(out / "perm.npy")
    assert perm.dtype == np.int64 and sorted(perm.tolist()) == list(range(16))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["perm"] == perm.tolist() and metrics["n_samples"] == N
    before, after = metrics["before"], metrics["after"]
    assert after["energy_standardised"] <= before["energy_standardised"] + 1e-9
    for side in (before, after):
        assert 0 < side["class_maps"]["morans_i_p"] <= 1
        assert 0 < side["class_maps"]["contiguity_p"] <= 1
        assert side["class_maps"]["n_classes"] == 10
    # the estimator in the new file gives the same embedding; its layer's units are permuted
    original, arranged = (
        GSRAutoencoder.load(files["fit"]),
        GSRAutoencoder.load(out / "model.safetensors"),
    )
    np.testing.assert_allclose(arranged.transform(X), original.transform(X), atol=1e-5)
    np.testing.assert_allclose(arranged.activations(X), original.activations(X)[:, perm], atol=1e-5)
    assert arranged.graph_ == gsreg.graphs.grid(4, 4)
    loaded = gsreg.load(out / "model.safetensors")
    np.testing.assert_array_equal(loaded.metadata["arrangement"]["perm"], perm)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 1 and "Class maps" in html
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_plain_model_without_labels_reads_data_as_its_input(files, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Xp = files["Xp"]
    code, _, err = arrange(
        [
            files["plain"],
            "--layer",
            "decoder.0",
            "--graph",
            "grid:3x3",
            "--data",
            files["root"] / "xp.npy",
            "--seed",
            "1",
        ],
        capsys,
    )
    assert code == 0, err
    out = tmp_path / "runs" / "arrange-plain"
    assert (out / "figures" / "maps.png").stat().st_size > 1000
    perm = np.load(out / "perm.npy")
    assert sorted(perm.tolist()) == list(range(9))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["after"]["energy_standardised"] <= metrics["before"]["energy_standardised"]
    assert "class_maps" not in metrics["after"]
    original = gsreg.load(files["plain"]).model
    arranged = gsreg.load(out / "model.safetensors").model
    np.testing.assert_allclose(outputs(arranged, Xp), outputs(original, Xp), atol=1e-5)
    np.testing.assert_array_equal(
        arranged.decoder[0][0].weight.detach().numpy(),
        original.decoder[0][0].weight.detach().numpy()[perm],
    )


def test_a_fit_runs_model_in_a_run_folder_names_the_default_output_after_the_folder(files):
    assert cli_arrange.default_out(files["fit"]) == "runs/arrange-fit"
    assert cli_arrange.default_out("some/where/ae.safetensors") == "runs/arrange-ae"


@pytest.mark.parametrize(
    "case, change, message",
    [
        ("unknown layer", {"--layer": "decoder.9"}, "decoder.9"),
        ("graph of the wrong size", {"--graph": "grid:4x4"}, "9 units"),
        ("missing model file", {"model": "missing.safetensors"}, "no such model file"),
        ("missing data file", {"--data": "missing.npy"}, "no such data file"),
        ("data of the wrong width", {"--data": "x.npy"}, "cannot take x.npy"),
        ("labels of the wrong length", {"--labels": "y.npy"}, "one label per sample"),
        ("graph without edges", {"--graph": "path:1 + path:1"}, "no edges"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    files, tmp_path, capsys, case, change, message
):
    args = {
        "model": files["plain"],
        "--layer": "decoder.0",
        "--graph": "grid:3x3",
        "--data": "xp.npy",
    }
    args.update(change)
    for key in ("--data", "--labels"):
        if key in args:
            args[key] = files["root"] / args[key]
    if args["model"] != files["plain"]:
        args["model"] = tmp_path / args["model"]
    out = tmp_path / "deep" / "out"
    argv = [args.pop("model")] + [str(v) for kv in args.items() for v in kv]
    code, stdout, err = arrange([*argv, "--out", out], capsys)
    assert code == 2, case
    assert err.startswith("gsreg arrange: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_arranging_into_the_folder_that_holds_the_model_is_refused(files, capsys):
    fit = files["root"] / "fit"
    before = {p.name: p.stat().st_mtime_ns for p in fit.iterdir()}
    code, stdout, err = arrange(
        [
            files["fit"],
            "--layer",
            "decoder.0",
            "--graph",
            "grid:4x4",
            "--data",
            files["root"] / "x.npy",
            "--out",
            fit,
        ],
        capsys,
    )
    assert code == 2 and stdout == ""
    assert "model.safetensors is inside the run folder" in err and err.count("\n") == 1, err
    assert {p.name: p.stat().st_mtime_ns for p in fit.iterdir()} == before
