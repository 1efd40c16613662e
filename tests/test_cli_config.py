"""``gsreg fit --config``, ``--print-config``, ``--version``, the estimator options, row
names of CSV/TSV tables and the activations and modules exports."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_digits

from gsreg import GSRAutoencoder, analysis, cli
from gsreg._version import __version__
from gsreg.cli import fit as fit_command
from gsreg.datasets.files import load_data

N = 120


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    return data.data[:N], data.target[:N]


def fit(args, capsys):
    code = cli.main(["fit", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def trained_with(monkeypatch):
    """Record the FitConfig each run would train with, instead of training."""
    seen = []

    def record(config, out, table=None, progress=True):
        seen.append(config)
        return {"data": {"n_samples": 0, "n_features": 0}, "epochs": 0, "train_mse": 0.0}

    monkeypatch.setattr(fit_command, "run", record)
    return seen


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"gsreg {__version__}"


def test_the_command_line_overrides_the_config_file(tmp_path, digits, capsys, monkeypatch):
    np.save(tmp_path / "x.npy", digits[0])
    config = tmp_path / "run.yaml"
    config.write_text(
        "graph: grid:4x4\nhidden: [64, 32]\nlr: 0.002\nepochs: 7\nbatch-size: 40\n"
        "controls: false\nnormalize: rayleigh\narrange: no\nbudget: 0.1\n"
    )
    seen = trained_with(monkeypatch)
    code, _, err = fit(
        [tmp_path / "x.npy", "--config", config, "--lr", "0.01", "--weight", "0.5"], capsys
    )
    assert code == 0, err
    (run,) = seen
    assert run.graph == "grid:4x4" and run.hidden == (64, 32) and run.epochs == 7
    assert run.batch_size == 40 and run.controls is False and run.normalize == "rayleigh"
    assert run.arrange is False  # YAML reads "no" as false
    assert run.lr == 0.01  # the command line wins
    # --weight on the command line replaces the file's budget (they exclude each other)
    assert run.weight == 0.5 and run.budget == "auto"


def test_a_json_config_and_the_defaults_of_keys_it_leaves_out(
    tmp_path, digits, capsys, monkeypatch
):
    np.save(tmp_path / "x.npy", digits[0])
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"data": str(tmp_path / "x.npy"), "graph": "learned"}))
    seen = trained_with(monkeypatch)
    code, _, err = fit(["--config", config], capsys)
    assert code == 0, err
    (run,) = seen
    assert run.data == str(tmp_path / "x.npy") and run.graph == "learned"
    assert run.hidden == (50, 50) and run.lr == 1e-3 and run.budget == "auto"


def test_the_fit_defaults_are_the_estimators_defaults():
    params = GSRAutoencoder().get_params()
    config = fit_command.FitConfig(data="x.npy")
    for name in (
        "graph",
        "weight",
        "budget",
        "layer",
        "hidden",
        "latent",
        "decoder_hidden",
        "n_structured",
        "laplacian",
        "normalize",
        "arrange",
        "batch_size",
        "lr",
        "scale",
        "device",
    ):
        assert getattr(config, name) == params[name], name
    parser = cli._parser().command_parsers["fit"]
    args = parser.parse_args(["x.npy", "--graph", "grid:8x8"])
    assert tuple(args.hidden) == params["hidden"] and args.latent == params["latent"]
    assert args.batch_size == params["batch_size"] and args.lr == params["lr"]
    assert cli.NORMALIZE[args.normalize] == params["normalize"]
    assert cli.ARRANGE[args.arrange] == params["arrange"]
    assert cli.SCALE[args.scale] == params["scale"]


@pytest.mark.parametrize(
    "text, words",
    [
        ("graph: grid:4x4\nlrr: 0.1\n", ["unknown key 'lrr'", "the keys are:", "batch-size"]),
        ("graph: grid:4x4\nepochs: ten\n", ["epochs must be an integer >= 1, got 'ten'"]),
        ("graph: grid:4x4\nepochs: 2.5\n", ["epochs must be an integer"]),
        ("graph: grid:4x4\nlr: '0.1'\n", ["lr must be a finite number > 0"]),
        ("graph: grid:4x4\nlr: -1\n", ["lr must be a finite number > 0, got -1"]),
        ("graph: grid:4x4\nhidden: [64, x]\n", ["hidden must be an integer"]),
        ("graph: grid:4x4\nbudget: true\n", ["budget must be a number"]),
        ("graph: grid:4x4\nquiet: 1\n", ["quiet must be true or false, got 1"]),
        ("graph: 8\n", ["graph must be a string, got 8"]),
        ("graph: grid:4x4\nnormalize: sideways\n", ["normalize must be one of", "rayleigh"]),
        ("graph: grid:4x4\nbudget: 0.1\nweight: 0.01\n", ["budget or weight, not both"]),
        ("- graph\n", ["must hold a mapping", "list"]),
        ("graph: [grid\n", ["not valid YAML on line"]),
    ],
)
def test_a_bad_config_file_is_one_line_naming_the_key_before_torch_loads(tmp_path, text, words):
    (tmp_path / "run.yaml").write_text(text)
    probe = (
        "import sys\nfrom gsreg.cli import main\ncode = main(sys.argv[1:])\n"
        "print(code, sorted(m for m in ('torch', 'sklearn', 'anndata') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, "fit", "never-read.npy", "--config", "run.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.strip() == "2 []", (done.stdout, done.stderr)
    err = done.stderr
    assert err.startswith("gsreg fit: error: run.yaml") and err.count("\n") == 1, err
    assert "no such data file" not in err
    for word in words:
        assert word in err, (word, err)


def test_a_missing_config_file_or_a_foreign_suffix_is_one_line(tmp_path, capsys):
    code, _, err = fit(["x.npy", "--config", tmp_path / "missing.yaml"], capsys)
    assert code == 2 and "No such file or directory" in err and err.count("\n") == 1
    (tmp_path / "run.toml").write_text("graph = 'grid:2x2'\n")
    code, _, err = fit(["x.npy", "--config", tmp_path / "run.toml"], capsys)
    assert code == 2 and "must be YAML or JSON" in err


def test_print_config_writes_yaml_that_config_reads_back(tmp_path, capsys, monkeypatch):
    code, out, err = fit(
        ["x.npy", "--graph", "torus:4x8", "--hidden", "64", "32", "--lr", "0.01", "--print-config"],
        capsys,
    )
    assert code == 0, err
    printed = yaml.safe_load(out)
    assert printed["graph"] == "torus:4x8" and printed["hidden"] == [64, 32]
    assert printed["lr"] == 0.01 and printed["batch-size"] == 500 and printed["controls"] is True
    assert "hidden: [64, 32]" in out and "# widths of the encoder's hidden layers" in out
    (tmp_path / "run.yaml").write_text(out)
    code, again, err = fit(["--config", tmp_path / "run.yaml", "--print-config"], capsys)
    assert code == 0, err
    assert again == out  # the file holds every option


def test_missing_data_or_graph_is_a_usage_error(tmp_path, capsys):
    for args in (["--graph", "grid:2x2"], ["x.npy"]):
        with pytest.raises(SystemExit) as stop:
            cli.main(["fit", *args])
        assert stop.value.code == 2
        assert "the following arguments are required" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, words",
    [
        (["--layer", "decoder.5"], ["--layer must be", "decoder.<i> (i < 2)"]),
        (["--layer", "middle"], ["--layer must be", "'middle'"]),
        (["--hidden", "64", "--layer", "encoder.1"], ["encoder.<i> (i < 1)"]),
        (["--graph", "learned", "--arrange", "true"], ["--arrange true", "learned"]),
    ],
)
def test_estimator_options_are_checked_before_the_data_is_read(tmp_path, capsys, args, words):
    argv = [tmp_path / "never-read.npy", "--graph", "grid:2x2", *args]
    code, _, err = fit(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and "no such data file" not in err
    for word in words:
        assert word in err, (word, err)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--lr", "0"], ["--lr", "> 0"]),
        (["--batch-size", "0"], ["--batch-size", "positive integer"]),
        (["--normalize", "x"], ["--normalize", "invalid choice"]),
        (["--hidden"], ["--hidden", "expected at least one argument"]),
    ],
)
def test_bad_estimator_option_values_are_refused_by_the_parser(tmp_path, capsys, args, words):
    with pytest.raises(SystemExit) as stop:
        cli.main(["fit", str(tmp_path / "x.npy"), "--graph", "grid:2x2", *args])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err, err


def test_the_estimator_options_reach_the_trained_model(tmp_path, digits, capsys):
    X, _ = digits
    np.save(tmp_path / "x.npy", X)
    out = tmp_path / "run"
    args = [tmp_path / "x.npy", "--graph", "grid:3x3", "--out", out, "--quiet", "--epochs", "2"]
    args += ["--hidden", "20", "--latent", "4", "--layer", "encoder.0", "--batch-size", "30"]
    args += ["--lr", "0.003", "--laplacian", "normalized", "--normalize", "centered"]
    args += ["--scale", "standard", "--weight", "0.01", "--arrange", "false", "--no-controls"]
    code, _, err = fit(args, capsys)
    assert code == 0, err
    est = GSRAutoencoder.load(out / "model.safetensors")
    params = est.get_params()
    assert params["hidden"] == (20,) and params["latent"] == 4 and params["layer"] == "encoder.0"
    assert params["batch_size"] == 30 and params["lr"] == 0.003 and params["scale"] == "standard"
    assert params["laplacian"] == "normalized" and params["normalize"] == "centered"
    assert params["weight"] == 0.01 and params["arrange"] is False
    assert est.model_.config["hidden"] == [9] and est.n_steps_ == 2 * 4  # ceil(120 / 30)
    assert est.activations(X).shape == (N, 9) and est.transform(X).shape == (N, 4)


def test_a_to_csv_table_keeps_its_row_names_and_its_64_features(tmp_path, digits, capsys):
    X, _ = digits
    names = [f"cell{k}" for k in range(N)]
    pd.DataFrame(X, index=names).to_csv(tmp_path / "x.csv")
    pd.DataFrame(X).to_csv(tmp_path / "numbered.csv")  # the index 0..N-1, no header
    table = load_data(tmp_path / "numbered.csv")
    assert table.X.shape == (N, 64) and table.row_names.names == [str(k) for k in range(N)]
    np.testing.assert_array_equal(table.X, X.astype(np.float32))
    out = tmp_path / "run"
    code, _, err = fit(
        [tmp_path / "x.csv", "--graph", "rings:2x4", "--out", out, "--quiet", "--epochs", "2"]
        + ["--no-controls"],
        capsys,
    )
    assert code == 0, err
    assert json.loads((out / "metrics.json").read_text())["data"]["n_features"] == 64
    embedding = pd.read_csv(out / "embedding.csv", index_col=0)
    assert list(embedding.index) == names and list(embedding.columns)[:2] == ["z1", "z2"]
    np.testing.assert_allclose(embedding.to_numpy(), np.load(out / "embedding.npy"), rtol=1e-6)
    est = GSRAutoencoder.load(out / "model.safetensors")
    Z = est.activations(X)
    activations = pd.read_csv(out / "activations.csv", index_col=0)
    assert list(activations.index) == names and activations.shape == (N, 8)
    assert list(activations.columns) == [f"unit{k + 1}" for k in range(8)]
    np.testing.assert_allclose(activations.to_numpy(), Z, rtol=1e-6, atol=1e-7)
    # rings:2x4 has two components: a sample's module is the ring it drives most
    modules = pd.read_csv(out / "modules.csv", index_col=0)
    rings = np.repeat([0, 1], 4)
    activity = np.stack([Z[:, :4].mean(axis=1), Z[:, 4:].mean(axis=1)], axis=1)
    score = (activity - np.median(activity, axis=0)) / activity.std(axis=0)
    np.testing.assert_array_equal(modules["module"].to_numpy(), score.argmax(axis=1))
    np.testing.assert_array_equal(analysis.modules(est.graph_), rings)


def test_a_tsv_with_row_names_and_a_label_column(tmp_path, digits, capsys):
    X, y = digits
    frame = pd.DataFrame(X[:, :12], columns=[f"g{k}" for k in range(12)])
    frame.insert(0, "cell", [f"c{k}" for k in range(N)])
    frame["type"] = [f"t{v}" for v in y]
    frame.to_csv(tmp_path / "x.tsv", sep="\t", index=False)
    table = load_data(tmp_path / "x.tsv", labels="type")
    assert table.feature_names == [f"g{k}" for k in range(12)]
    assert table.row_names.header == "cell" and table.row_names.names[:2] == ["c0", "c1"]
    assert table.labels[0] == f"t{y[0]}"
    out = tmp_path / "run"
    code, _, err = fit(
        [tmp_path / "x.tsv", "--graph", "grid:2x2", "--labels", "type", "--out", out]
        + ["--quiet", "--epochs", "2", "--no-controls"],
        capsys,
    )
    assert code == 0, err
    assert (out / "embedding.csv").read_text().startswith("cell,z1,z2,")
    assert not (out / "modules.csv").exists()  # a connected grid: one module


def test_a_learned_graph_writes_each_samples_module(tmp_path, digits, capsys, monkeypatch):
    import gsreg

    X, _ = digits
    np.save(tmp_path / "x.npy", X)
    monkeypatch.setattr(
        gsreg.CoactivationGraph, "modules", lambda self: np.arange(self.n_nodes) % 3
    )
    out = tmp_path / "run"
    code, _, err = fit(
        [tmp_path / "x.npy", "--graph", "learned", "--n-structured", "12", "--out", out]
        + ["--quiet", "--epochs", "4", "--no-controls"],
        capsys,
    )
    assert code == 0, err
    modules = pd.read_csv(out / "modules.csv")
    assert list(modules.columns) == ["module"] and len(modules) == N  # no row names in .npy
    Z = pd.read_csv(out / "activations.csv").to_numpy()
    assert Z.shape == (N, 12)
    expected = analysis.indicated_modules(Z, np.arange(12) % 3)
    np.testing.assert_array_equal(modules["module"].to_numpy(), expected)


def test_each_training_phase_shows_a_progress_bar(tmp_path, digits, capsys):
    np.save(tmp_path / "x.npy", digits[0])
    code, _, err = fit(
        [tmp_path / "x.npy", "--graph", "grid:2x2", "--out", tmp_path / "run", "--epochs", "2"],
        capsys,
    )
    assert code == 0, err
    # λ = 0 run, the budget's fine-tuning after arranging, and the λ = 0 twin
    assert err.count("GSRAutoencoder: 100%") == 3, err
    code, _, err = fit(
        [tmp_path / "x.npy", "--graph", "grid:2x2", "--out", tmp_path / "q", "--quiet"],
        capsys,
    )
    assert code == 0 and "GSRAutoencoder" not in err
