"""``gsreg fit``: data formats, the run folder it writes, and every error case."""

import json
import os

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import gsreg
from gsreg import GSRAutoencoder, analysis, cli, graphs
from gsreg.cli import fit as fit_command
from gsreg.cli import fit_run
from gsreg.datasets.files import load_data
from gsreg.estimators import budget_epochs

N = 120


@pytest.fixture(scope="module")
def data():
    digits = load_digits()
    return digits.data[:N], digits.target[:N]


def write_csv(path, X, y=None, header=True, sep=","):
    lines = []
    if header:
        lines.append(
            sep.join([f"px{i}" for i in range(X.shape[1])] + (["digit"] if y is not None else []))
        )
    for k, row in enumerate(X):
        cells = [f"{v:g}" for v in row] + ([f"d{y[k]}"] if y is not None else [])
        lines.append(sep.join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def run(args, capsys):
    code = cli.main(["fit", *map(str, args), "--quiet", "--epochs", "2"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_csv_with_a_label_column_writes_the_whole_run_folder(tmp_path, data, capsys):
    X, y = data
    csv_path = write_csv(tmp_path / "digits.csv", X, y)
    out = tmp_path / "run"
    code, stdout, err = run(
        [csv_path, "--graph", "grid:4x4", "--labels", "digit", "--out", out], capsys
    )
    assert code == 0, err
    assert str(out / "report.html") in stdout
    for name in fit_command.OUTPUTS:
        # a connected grid is one module: no sample modules to write
        assert (out / name).exists() == (name != "modules.csv"), name
    for png in ("class_maps", "segmentation", "training"):
        assert (out / "figures" / f"{png}.png").stat().st_size > 1000
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["n_samples"] == N and metrics["data"]["n_features"] == 64
    # 2 epochs without the penalty, then the budget's fine-tuning epoch
    assert metrics["data"]["n_labels"] == 10 and metrics["epochs"] == 2 + budget_epochs(2)
    assert metrics["budget"] == 0.05 and metrics["budget_report"]["reference"] > 0
    assert -1 <= metrics["localization"]["morans_i"] <= 1
    config = json.loads((out / "config.json").read_text())
    assert config["graph"] == "grid:4x4" and config["labels"] == "digit"
    assert config["torch_threads"] == torch.get_num_threads()  # results depend on it
    embedding = np.load(out / "embedding.npy")
    assert embedding.shape == (N, 16) and embedding.dtype == np.float32
    table = np.loadtxt(out / "embedding.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(table, embedding, rtol=1e-6)
    assert (out / "embedding.csv").read_text().startswith("z1,z2,")
    est = GSRAutoencoder.load(out / "model.safetensors")
    np.testing.assert_array_equal(est.transform(X), embedding)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "Class maps" in html
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_npy_with_a_labels_file_and_no_labels(tmp_path, data, capsys):
    X, y = data
    np.save(tmp_path / "x.npy", X)
    (tmp_path / "labels.txt").write_text("digit\n" + "\n".join(map(str, y)) + "\n")
    code, _, err = run(
        [
            tmp_path / "x.npy",
            "--graph",
            "rings:2x5",
            "--labels",
            tmp_path / "labels.txt",
            "--out",
            tmp_path / "a",
        ],
        capsys,
    )
    assert code == 0, err
    assert (tmp_path / "a" / "figures" / "class_maps.png").exists()
    code, _, err = run([tmp_path / "x.npy", "--graph", "grid:3x3", "--out", tmp_path / "b"], capsys)
    assert code == 0, err
    assert (tmp_path / "b" / "figures" / "mean_variance_maps.png").exists()
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert "morans_i_mean_map" in metrics and metrics["data"]["labels"] is None


def test_tsv_without_header_and_row_names(tmp_path, data, capsys):
    X, _ = data
    write_csv(tmp_path / "x.tsv", X[:, :10], header=False, sep="\t")
    code, _, err = run([tmp_path / "x.tsv", "--graph", "path:5", "--out", tmp_path / "t"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "t" / "metrics.json").read_text())["data"]["n_features"] == 10
    lines = [",".join(["", "a", "b"])] + [f"cell{k},{k % 3},{k % 5}" for k in range(30)]
    (tmp_path / "named.csv").write_text("\n".join(lines))
    table = load_data(tmp_path / "named.csv")
    assert table.X.shape == (30, 2) and table.feature_names == ["a", "b"]


def test_h5ad_sparse_with_an_obs_column_and_a_learned_graph(tmp_path, data, capsys):
    anndata = pytest.importorskip("anndata")
    pd = pytest.importorskip("pandas")
    import scipy.sparse as sp

    X, y = data
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical([f"t{v % 3}" for v in y])}, index=[f"c{i}" for i in range(N)]
    )
    anndata.AnnData(X=sp.csr_matrix(X.astype(np.float32)), obs=obs).write_h5ad(
        tmp_path / "cells.h5ad"
    )
    code, _, err = run(
        [
            tmp_path / "cells.h5ad",
            "--graph",
            "learned",
            "--labels",
            "cell_type",
            "--out",
            tmp_path / "sc",
        ],
        capsys,
    )
    assert code == 0, err
    metrics = json.loads((tmp_path / "sc" / "metrics.json").read_text())
    assert metrics["graph"] == "learned" and metrics["n_modules"] >= 1
    assert set(metrics["cluster_indication"]) == {"ari", "nmi", "purity"}
    for png in ("modules", "module_labels", "training"):
        assert (tmp_path / "sc" / "figures" / f"{png}.png").exists()


def test_a_new_run_replaces_the_previous_run_folder_whole(tmp_path, data, capsys):
    X, _ = data
    np.save(tmp_path / "x.npy", X)
    out = tmp_path / "run"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "class_maps.png").write_bytes(b"from a run with labels")
    (out / "metrics.json").write_text("old")
    code, _, err = run([tmp_path / "x.npy", "--graph", "grid:2x2", "--out", out], capsys)
    assert code == 0, err
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2 + budget_epochs(2)
    assert not (out / "figures" / "class_maps.png").exists()  # a folder holds one run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "x.npy"]


def previous_run(out):
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "training.png").write_bytes(b"png")
    (out / "report.html").write_text("old report")
    return {
        p.relative_to(out): p.read_bytes() if p.is_file() else None for p in sorted(out.rglob("*"))
    }


@pytest.mark.parametrize(
    "case, words",
    [
        ("input_inside", ["the input", "embedding.csv is inside the run folder"]),
        ("labels_inside", ["the input", "labels.txt is inside the run folder"]),
        ("user_file", ["holds what gsreg fit does not write (notes.txt)", "move those away"]),
        ("report_is_a_folder", ["report.html/"]),
        ("figures_is_a_file", ["figures (not a folder)"]),
    ],
)
def test_what_the_run_would_overwrite_or_lose_is_refused_before_training(
    tmp_path, data, capsys, monkeypatch, case, words
):
    X, y = data
    out = tmp_path / "run"
    before = previous_run(out)
    args = ["--graph", "grid:2x2", "--out", out]
    if case == "input_inside":
        write_csv(out / "embedding.csv", X[:30])
        args = [out / "embedding.csv", *args]
    else:
        np.save(tmp_path / "x.npy", X[:30])
        args = [tmp_path / "x.npy", *args]
    if case == "labels_inside":
        (out / "labels.txt").write_text("\n".join(map(str, y[:30])) + "\n")
        args += ["--labels", out / "labels.txt"]
    if case == "user_file":
        (out / "notes.txt").write_text("mine")
    if case == "report_is_a_folder":
        (out / "report.html").unlink()
        (out / "report.html").mkdir()
    if case == "figures_is_a_file":
        (out / "figures" / "training.png").unlink()
        (out / "figures").rmdir()
        (out / "figures").write_text("x")
    before = {
        p.relative_to(out): p.read_bytes() if p.is_file() else None for p in sorted(out.rglob("*"))
    }
    monkeypatch.setattr(fit_run, "write_run", lambda *a: pytest.fail("trained"))
    code, stdout, err = run(args, capsys)
    assert code == 2 and stdout == ""
    assert err.startswith("gsreg fit: error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, (word, err)
    after = {
        p.relative_to(out): p.read_bytes() if p.is_file() else None for p in sorted(out.rglob("*"))
    }
    assert after == before


@pytest.mark.parametrize(
    "errno, words", [(28, "No space left on device"), (13, "Permission denied")]
)
def test_a_full_disk_or_a_refused_write_exits_2_and_keeps_the_previous_run(
    tmp_path, data, capsys, monkeypatch, errno, words
):
    X, _ = data
    np.save(tmp_path / "x.npy", X[:30])
    out = tmp_path / "run"
    before = previous_run(out)
    real = np.save

    def failing_save(path, array, *args, **kwargs):
        if str(path).endswith("embedding.npy"):
            raise OSError(errno, os.strerror(errno), str(path))
        return real(path, array, *args, **kwargs)

    monkeypatch.setattr(fit_run.np, "save", failing_save)
    code, stdout, err = run(
        [tmp_path / "x.npy", "--graph", "grid:2x2", "--out", out, "--no-controls"], capsys
    )
    assert code == 2 and stdout == ""
    line = err.splitlines()[-1]  # after the warning about the digits' constant pixels
    assert line.startswith(f"gsreg fit: error: {words}: ") and "Traceback" not in err, err
    assert line.endswith("embedding.npy (the run folder is as it was)")
    after = {
        p.relative_to(out): p.read_bytes() if p.is_file() else None for p in sorted(out.rglob("*"))
    }
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "x.npy"]


def test_default_out_folder(tmp_path, data, capsys, monkeypatch):
    X, _ = data
    np.save(tmp_path / "cells.npy", X[:30])
    monkeypatch.chdir(tmp_path)
    code, stdout, err = run(["cells.npy", "--graph", "grid:2x2"], capsys)
    assert code == 0, err
    assert (tmp_path / "runs" / "fit-cells" / "report.html").exists()


# --------------------------------------------------------------------------- controls


def metrics_of(out):
    return json.loads((out / "metrics.json").read_text())


def test_a_fixed_graph_with_labels_stands_beside_lambda_zero_as_trained_and_arranged(
    tmp_path, data, capsys
):
    X, y = data
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "run"
    code, stdout, err = run(
        [tmp_path / "x.npy", "--graph", "grid:4x4", "--labels", tmp_path / "y.npy", "--out", out],
        capsys,
    )
    assert code == 0, err
    metrics = metrics_of(out)
    controls = metrics["controls"]
    assert controls["kind"] == "maps"
    # the λ = 0 twin trains as many epochs as GSR did in all (warm-up and fine-tuning)
    assert controls["lambda0"]["steps"] == metrics["steps"]
    assert controls["lambda0"]["seed"] == 0
    assert controls["mse_ratio"] == pytest.approx(
        metrics["train_mse"] / controls["lambda0"]["train_mse"]
    )
    assert controls["rows"] == {"fit": N // 2, "score": N - N // 2}
    scores, verdict = controls["scores"], controls["verdict"]
    assert set(scores) == {"GSR", "λ=0", "λ=0 arranged"}
    best = max(("λ=0", "λ=0 arranged"), key=lambda name: scores[name]["morans_i"])
    assert verdict["best_control"] == best
    assert verdict["control_score"] == scores[best]["morans_i"]
    assert verdict["gsr_score"] == scores["GSR"]["morans_i"]
    assert verdict["margin"] == pytest.approx(verdict["gsr_score"] - verdict["control_score"])
    assert verdict["helps"] == (
        verdict["margin"] > 0
        and verdict["distinct"]
        and verdict["patterns"]
        and verdict["informative"]
    )
    # arranging a layer never makes its standardised activations rougher
    energy = scores["λ=0 arranged"]["arrangement_energy"]
    assert energy["arranged"] <= energy["identity"] + 1e-9
    assert controls["verdict_text"] in stdout
    assert ("beats" if verdict["margin"] > 0 else "does not beat") in controls["verdict_text"]
    # a result no better than its controls says what to try next
    assert ("next_step" in controls) == (not verdict["helps"])
    if not verdict["helps"]:
        assert controls["verdict_text"].endswith(controls["next_step"])
        assert "larger budget" in controls["next_step"]
    html = (out / "report.html").read_text()
    assert "Controls" in html and "λ=0 arranged" in html
    # each score in one row beside its controls, with its p-value and what it measures
    assert "<th>what it measures</th>" in html and "<th>random placement (mean)</th>" in html
    p = scores["GSR"]["morans_i_p"]
    assert f"{scores['GSR']['morans_i']:.4g} (p {p:.3f})" in html
    assert "reconstruction MSE, λ = 0" in html and "in the data&#x27;s units" in html


def test_without_labels_the_controls_compare_the_smoothness_of_standardised_activations(
    tmp_path, data, capsys
):
    X, _ = data
    np.save(tmp_path / "x.npy", X)
    out = tmp_path / "run"
    code, stdout, err = run([tmp_path / "x.npy", "--graph", "grid:3x3", "--out", out], capsys)
    assert code == 0, err
    controls = metrics_of(out)["controls"]
    assert controls["kind"] == "smoothness"
    scores, verdict = controls["scores"], controls["verdict"]
    energies = {name: value["dirichlet_energy"] for name, value in scores.items()}
    best = min(("λ=0", "λ=0 arranged"), key=energies.get)
    assert verdict["best_control"] == best
    assert verdict["margin"] == pytest.approx(energies[best] - energies["GSR"])
    assert verdict["helps"] == (verdict["margin"] > 0)
    assert energies["λ=0 arranged"] <= energies["λ=0"] + 1e-9
    # the energy is the one analysis.arrangement minimises, on the scored rows
    _, rows = gsreg.controls._split(N, 0)
    est = GSRAutoencoder.load(out / "model.safetensors")
    _, reference = analysis.arrangement(
        est.activations(X)[rows], graphs.grid(3, 3), return_energy=True
    )
    assert energies["GSR"] == pytest.approx(reference["identity"], rel=1e-6)
    assert controls["verdict_text"] in stdout


def test_no_controls_trains_once_and_writes_none(tmp_path, data, capsys, monkeypatch):
    X, y = data
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", y)
    fits = []
    real = GSRAutoencoder.fit
    monkeypatch.setattr(
        GSRAutoencoder, "fit", lambda self, *a, **k: fits.append(self.weight) or real(self, *a, **k)
    )
    out = tmp_path / "run"
    code, stdout, err = run(
        [
            tmp_path / "x.npy",
            "--graph",
            "grid:2x2",
            "--labels",
            tmp_path / "y.npy",
            "--out",
            out,
            "--no-controls",
        ],
        capsys,
    )
    assert code == 0, err
    assert fits == [None]  # the budget sets the weight
    assert "controls" not in metrics_of(out)
    assert json.loads((out / "config.json").read_text())["controls"] is False
    assert "best control" not in stdout and "Controls" not in (out / "report.html").read_text()
    fits.clear()
    code, _, err = run([tmp_path / "x.npy", "--graph", "grid:2x2", "--out", tmp_path / "b"], capsys)
    assert code == 0, err
    assert fits == [None, 0.0]  # the λ = 0 twin, on by default


def test_a_learned_graph_in_one_piece_says_so_and_what_to_try(tmp_path, data, capsys, monkeypatch):
    X, y = data
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", y)
    monkeypatch.setattr(
        gsreg.CoactivationGraph, "modules", lambda self: np.zeros(self.n_nodes, dtype=np.int64)
    )
    out = tmp_path / "run"
    code, stdout, err = run(
        [tmp_path / "x.npy", "--graph", "learned", "--labels", tmp_path / "y.npy", "--out", out],
        capsys,
    )
    assert code == 0, err
    metrics = metrics_of(out)
    assert metrics["n_modules"] == 1
    note = metrics["note"]
    assert "stayed in one piece (1 module)" in note and "--budget" in note
    assert note in stdout and note in (out / "report.html").read_text()
    controls = metrics["controls"]
    assert controls["kind"] == "modules" and controls["k"] == 10  # as many as labels
    ari, verdict = controls["ari"], controls["verdict"]
    assert ari["GSR modules"] == 0.0
    assert {
        "k-means on λ=0 neurons",
        "k-means of samples on the λ=0 layer",
        "k-means of samples on the raw input",
    } <= set(ari)
    best = max((name for name in ari if name != "GSR modules"), key=ari.get)
    assert verdict["best_control"] == best and verdict["control_ari"] == ari[best]
    assert verdict["margin"] == pytest.approx(verdict["gsr_ari"] - verdict["control_ari"])
    assert verdict["helps"] is False and verdict["modules"] is False
    assert controls["null"] == {"null_mean": None, "p_value": None}
    assert controls["verdict_text"] in stdout


def test_learned_modules_get_an_ari_null_and_a_verdict_that_needs_it(
    tmp_path, data, capsys, monkeypatch
):
    X, y = data
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", y)
    monkeypatch.setattr(
        gsreg.CoactivationGraph, "modules", lambda self: np.arange(self.n_nodes, dtype=np.int64) % 4
    )
    code, stdout, err = run(
        [
            tmp_path / "x.npy",
            "--graph",
            "learned",
            "--labels",
            tmp_path / "y.npy",
            "--out",
            tmp_path / "run",
        ],
        capsys,
    )
    assert code == 0, err
    metrics = metrics_of(tmp_path / "run")
    assert metrics["n_modules"] == 4 and "note" not in metrics
    controls = metrics["controls"]
    assert controls["k"] == 4
    verdict, null = controls["verdict"], controls["null"]
    assert 0 < null["p_value"] <= 1 and verdict["p_value"] == null["p_value"]
    assert verdict["helps"] == (verdict["margin"] > 0 and null["p_value"] < gsreg.analysis.P_LEVEL)


def test_single_module_note_names_the_case_and_the_next_step():
    assert fit_run.single_module_note(3, 100) is None
    assert "one piece" in fit_run.single_module_note(1, 100)
    assert "No graph was learned in 100 steps" in fit_run.single_module_note(None, 100)


# --------------------------------------------------------------------------- errors


def make_bad(tmp_path, case):
    """Write the input of one error case; returns (args, expected words in the message)."""
    good = "a,b,label\n1,2,x\n3,4,y\n5,6,x\n"
    files = {
        "missing": (None, ["no such data file"]),
        "empty": ("", ["is empty"]),
        "blank": ("\n\n  \n", ["is empty"]),
        "ragged": ("a,b,c\n1,2,3\n4,5\n6,7,8\n", ["line 3 has 2 fields, expected 3", "ragged"]),
        "nan": ("a,b\n1,2\n3,nan\n5,6\n", ["column 'b'", "missing or non-finite", "line 3"]),
        "empty_cell": ("a,b\n1,2\n3,\n5,6\n", ["column 'b'", "missing or non-finite"]),
        "inf": ("a,b\n1,2\n3,inf\n5,6\n", ["column 'b'", "non-finite"]),
        "text": ("a,b,label\n1,2,x\n3,4,y\n", ["column 'label' is not numeric", "--labels"]),
        "header_only": ("a,b\n", ["no data rows"]),
        "no_column": (good, ["--labels 'kind' is neither a column", "'label'"]),
        "labels_len": ("a,b\n1,2\n3,4\n5,6\n", ["has 2 lines but", "3 samples"]),
        "unknown_ext": ("1,2\n", ["unknown data format '.xlsx'", ".npy, .csv, .tsv, .h5ad"]),
        "bad_graph": (good, ["unknown graph kind 'hexagon'", "valid forms"]),
        "out_is_file": ("a,b\n1,2\n3,4\n", ["it is a file"]),
        "bad_npy": (b"not an array", ["not a readable numeric .npy"]),
        "npy_1d": (np.arange(5.0), ["2-D array"]),
        "one_row": ("a,b\n1,2\n", ["holds 1 sample(s)", "at least 2"]),
    }
    content, words = files[case]
    suffix = {"unknown_ext": ".xlsx", "bad_npy": ".npy", "npy_1d": ".npy"}.get(case, ".csv")
    path = tmp_path / f"data{suffix}"
    if isinstance(content, np.ndarray):
        np.save(path, content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    args = [path, "--graph", "hexagon:3" if case == "bad_graph" else "grid:2x2"]
    if case == "no_column":
        args += ["--labels", "kind"]
    if case == "labels_len":
        (tmp_path / "labels.txt").write_text("x\ny\n\n")
        args += ["--labels", tmp_path / "labels.txt"]
    out = tmp_path / "deep" / "run"
    if case == "out_is_file":
        out = tmp_path / "taken"
        out.write_text("keep me")
    return args + ["--out", out], words


ERRORS = [
    "missing",
    "empty",
    "blank",
    "ragged",
    "nan",
    "empty_cell",
    "inf",
    "text",
    "header_only",
    "no_column",
    "labels_len",
    "unknown_ext",
    "bad_graph",
    "out_is_file",
    "bad_npy",
    "npy_1d",
    "one_row",
]


@pytest.mark.parametrize("case", ERRORS)
def test_errors_exit_2_with_one_line_and_leave_nothing(tmp_path, capsys, case):
    args, words = make_bad(tmp_path, case)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, stdout, err = run(args, capsys)
    assert code == 2
    assert stdout == ""
    assert err.startswith("gsreg fit: error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, (word, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no run, no temp folder
    if case == "out_is_file":
        assert (tmp_path / "taken").read_text() == "keep me"


def test_a_failure_during_training_leaves_nothing(tmp_path, data, capsys, monkeypatch):
    X, _ = data
    np.save(tmp_path / "x.npy", X[:20])

    def explode(config, table, folder, progress):
        (folder / "metrics.json").write_text("half")
        raise RuntimeError("non-finite loss in epoch 1 at step 1 of 1")

    monkeypatch.setattr(fit_run, "write_run", explode)
    code, _, err = run(
        [tmp_path / "x.npy", "--graph", "grid:2x2", "--out", tmp_path / "new" / "deeper" / "run"],
        capsys,
    )
    assert code == 2 and "training failed: non-finite loss" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


def test_fit_help_names_the_formats_and_options(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["fit", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for word in (
        ".npy",
        ".csv",
        ".tsv",
        ".h5ad",
        "--graph",
        "--labels",
        "--out",
        "--epochs",
        "--weight",
        "--seed",
        "--quiet",
        "learned",
        "--no-controls",
        "lambda = 0",
    ):
        assert word in text
    with pytest.raises(SystemExit) as exc:
        cli.main(["fit", "x.csv"])  # --graph is required
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        cli.main(["fit", "x.csv", "--graph", "grid:2x2", "--weight", "-1"])


@pytest.mark.parametrize(
    "args, words",
    [
        (["--budget", "0"], ["--budget", "(0, 10)"]),
        (["--budget", "nan"], ["--budget", "(0, 10)"]),
        (["--budget", "12"], ["--budget", "(0, 10)"]),
        (["--budget", "0.1", "--weight", "0.01"], ["not allowed with argument"]),
    ],
)
def test_bad_budgets_are_refused_before_any_work(tmp_path, capsys, args, words):
    with pytest.raises(SystemExit) as exc:
        cli.main(["fit", str(tmp_path / "x.npy"), "--graph", "grid:2x2", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err, err
    assert list(tmp_path.iterdir()) == []


def test_the_report_says_what_the_budget_spent_and_when_it_could_not_be_met():
    report = {"budget": 0.05, "cost": 0.043, "at_floor": False}
    assert fit_run.budget_text(report) == (
        "The budget allowed 5% more training loss than without GSR; the fine-tuning ended at +4.3%."
    )
    text = fit_run.budget_text({**report, "cost": 0.4, "at_floor": True})
    assert "could not be met" in text and "--budget" in text


def test_constant_features_are_named_in_a_warning(tmp_path, data, capsys):
    X, y = data
    X = X.copy()
    X[:, [0, 7]] = 3.0
    np.save(tmp_path / "x.npy", X)
    code, _, err = run(
        [tmp_path / "x.npy", "--graph", "grid:2x2", "--out", tmp_path / "r", "--no-controls"],
        capsys,
    )
    assert code == 0, err
    n_constant = int((X == X[:1]).all(axis=0).sum())
    assert f"warning: {n_constant} of 64 features are constant (feature 1, " in err
    assert "feature 8" in err.split("(")[1]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--device", "tpu"], ["--device", "auto, cpu, cuda or cuda:N", "'tpu'"]),
        (["--device", "meta"], ["--device", "'meta'"]),
        (["--seed", str(2**64)], ["--seed", "[0, 4294967295]"]),
        (["--seed", "-1"], ["--seed"]),
    ],
)
def test_bad_device_or_seed_exits_2_before_reading_the_data(tmp_path, capsys, args, words):
    missing = tmp_path / "never-read.npy"  # the data would fail too, later
    with pytest.raises(SystemExit) as exc:
        cli.main(["fit", str(missing), "--graph", "grid:2x2", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "no such data file" not in err
    for word in words:
        assert word in err, err


PROBE = """
import sys
from gsreg.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as stop:  # argparse refused an argument
    code = stop.code
print(code, sorted(m for m in ("torch", "sklearn", "matplotlib", "anndata") if m in sys.modules))
"""


@pytest.mark.parametrize(
    "case", ["empty", "bad_graph", "foreign_out", "bad_budget", "bad_seed", "labels_inside"]
)
def test_bad_arguments_fail_before_torch_or_scikit_learn_is_imported(tmp_path, case):
    import subprocess
    import sys

    (tmp_path / "empty.csv").write_text("")
    write_csv(tmp_path / "x.csv", np.arange(12.0).reshape(4, 3))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "labels.txt").write_text("a\nb\na\nb\n")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    args = {
        "empty": ["empty.csv", "--graph", "grid:2x2"],
        "bad_graph": ["x.csv", "--graph", "grid:2y2"],
        "foreign_out": ["x.csv", "--graph", "grid:2x2", "--out", "taken"],
        "bad_budget": ["x.csv", "--graph", "grid:2x2", "--budget", "12"],
        "bad_seed": ["x.csv", "--graph", "grid:2x2", "--seed", str(2**64)],
        "labels_inside": [
            "x.csv",
            "--graph",
            "grid:2x2",
            "--labels",
            "out/labels.txt",
            "--out",
            "out",
        ],
    }[case]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "fit", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.strip() == "2 []", (done.stdout, done.stderr)
    assert "gsreg fit: error: " in done.stderr and "Traceback" not in done.stderr


def test_threads_sets_torch_threads_for_the_command_and_restores_them(
    tmp_path, capsys, monkeypatch
):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(20, 4)))
    seen = []

    def record(config, out, table=None, progress=True):
        seen.append(torch.get_num_threads())
        raise ValueError("stop here")

    monkeypatch.setattr(fit_command, "run", record)
    before = torch.get_num_threads()
    target = 2 if before == 1 else 1
    code, _, err = run([tmp_path / "x.npy", "--graph", "grid:2x2", "--threads", target], capsys)
    assert code == 2 and "stop here" in err
    assert seen == [target] and torch.get_num_threads() == before
    with pytest.raises(SystemExit) as stop:  # argparse refuses it
        run([tmp_path / "x.npy", "--graph", "grid:2x2", "--threads", "0"], capsys)
    assert stop.value.code == 2 and "--threads" in capsys.readouterr().err


def test_importing_gsreg_first_makes_openmp_wait_passively():
    import subprocess
    import sys

    probe = "import os; import gsreg, torch; print(os.environ.get('OMP_WAIT_POLICY'))"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert done.stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"  # a user's own setting is kept
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert done.stdout.strip() == "ACTIVE"
