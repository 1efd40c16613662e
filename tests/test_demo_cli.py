"""The demo run and the command line, end to end on a small MNIST subset."""

import json
import re
from html import escape
from pathlib import Path

import pytest

import gsreg
from gsreg import cli
from gsreg import report as gsreg_report
from gsreg.experiments import demo


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, recording_prose):
    """The quick demo through the command line: (exit code, folder, the (template, values)
    its report prose was rendered from)."""
    out = tmp_path_factory.mktemp("runs") / "demo"
    with recording_prose() as calls:
        code = cli.main(["demo", "--quick", "--quiet", "--out", str(out)])
    return code, out, calls


def test_quick_demo_writes_every_promised_file(quick_run):
    code, out, _ = quick_run
    assert code == 0
    for name in ("report.html", "metrics.json", "config.json"):
        assert (out / name).stat().st_size > 0
    for name in demo.FIGURES:
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    assert sorted(p.stem for p in (out / "figures").iterdir()) == sorted(demo.FIGURES)


def test_quick_demo_metrics_and_report_content(quick_run):
    _, out, _ = quick_run
    metrics = json.loads((out / "metrics.json").read_text())
    config = demo.DemoConfig.quick()
    assert set(metrics["models"]) == set(demo.variant_keys(config))
    budget = metrics["budget"]
    assert budget["budget"] == config.budget
    assert budget["lambda"] == metrics["models"]["budget"]["weight"]
    assert budget["cost_ratio"] == pytest.approx(metrics["models"]["budget"]["mse_ratio"])
    for key in (
        "test_mse_no_gsr",
        "test_mse_gsr",
        "mse_ratio_gsr",
        "morans_i_no_gsr",
        "morans_i_gsr",
    ):
        assert isinstance(metrics[key], float)
    for model in metrics["models"].values():
        assert 0 < model["test_mse"] < 0.2
        assert -1 <= model["morans_i"] <= 1
        assert model["activation_norm"] > 0
    config = json.loads((out / "config.json").read_text())
    assert demo.DemoConfig(**config) == demo.DemoConfig.quick()
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(demo.FIGURES)
    assert "Moran" in html and f"{metrics['test_mse_gsr']:.5f}" in html
    gsr, none = metrics["models"]["gsr"], metrics["models"]["none"]
    change = demo.direction(none["morans_i"], gsr["morans_i"])
    assert f"Moran's I of the class maps {change} " in html.replace("&#x27;", "'")
    assert f"about {none['morans_i_expected']:.3f} means no spatial structure" in html


def test_quick_demo_report_holds_the_prose_of_its_templates(quick_run):
    _, out, calls = quick_run
    folder = Path(gsreg.__file__).parent / "templates" / "demo"
    assert {f"demo/{path.name}" for path in folder.glob("*.txt")} <= {t for t, _ in calls}
    page = (out / "report.html").read_text()
    for template, values in calls:
        for paragraph in gsreg_report.prose(template, **values).split("\n\n"):
            assert escape(paragraph) in page, (template, paragraph)


def test_direction_word_follows_the_printed_numbers():
    assert demo.direction(0.1, 0.3) == "rises"
    assert demo.direction(0.3, 0.1) == "falls"
    assert demo.direction(0.1234, 0.1231) == "stays"  # both print as 0.123


def test_quick_demo_judges_gsr_against_the_arranged_lambda_0_layer(quick_run):
    _, out, _ = quick_run
    metrics = json.loads((out / "metrics.json").read_text())
    none = metrics["models"]["none"]
    assert metrics["morans_i_no_gsr_arranged"] == none["arranged"]["morans_i"]
    # same model, units only placed differently: the arrangement cannot change these
    assert none["arranged"]["decodability"] == none["decodability"]
    assert none["arranged"]["activation_norm"] == pytest.approx(none["activation_norm"])
    energy = none["arranged"]["arrangement_energy"]
    assert energy["arranged"] <= energy["identity"]
    assert metrics["models"]["gsr"]["verdict_vs_controls"] == metrics["verdict_gsr"]
    assert (
        metrics["models"]["budget"]["verdict_vs_controls"]
        == metrics["budget"]["verdict_vs_controls"]
    )
    for key in ("gsr", "budget"):
        verdict = metrics["models"][key]["verdict_vs_controls"]
        best = max(none["morans_i"], none["arranged"]["morans_i"])
        assert verdict["control_score"] == best
        assert verdict["margin"] == pytest.approx(metrics["models"][key]["morans_i"] - best)
        assert verdict["helps"] == (
            verdict["margin"] > 0
            and verdict["distinct"]
            and verdict["patterns"]
            and verdict["informative"]
        )
    html = (out / "report.html").read_text()
    assert "the best control" in html and "no GSR arranged" in html


def test_demo_prints_where_the_report_is(tmp_path, capsys):
    out = tmp_path / "d"
    assert cli.main(["demo", "--quick", "--quiet", "--epochs", "1", "--out", str(out)]) == 0
    assert str(out / "report.html") in capsys.readouterr().out


def test_demo_refuses_an_out_path_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("keep me")
    assert cli.main(["demo", "--quick", "--quiet", "--out", str(target)]) == 2
    assert "error" in capsys.readouterr().err
    assert target.read_text() == "keep me"


def test_graph_command(tmp_path, capsys):
    png = tmp_path / "g.png"
    assert cli.main(["graph", "torus:4x8", "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "32 nodes, 64 edges, 1 component(s)" in text
    assert png.stat().st_size > 1000


def test_graph_command_prints_the_laplacian_spectrum(capsys):
    # path:3 has combinatorial Laplacian eigenvalues 0, 1 and 3
    assert cli.main(["graph", "path:3"]) == 0
    found = re.search(
        r"combinatorial Laplacian eigenvalues in \[(\S+), (\S+)\]", capsys.readouterr().out
    )
    assert found is not None
    assert float(found[1]) == pytest.approx(0, abs=1e-12) and float(found[2]) == 3


def test_graph_command_unknown_spec(capsys):
    assert cli.main(["graph", "hexagon:3"]) == 2
    assert "valid forms" in capsys.readouterr().err


def test_bad_arguments_exit_with_usage():
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--epochs", "0"])
    assert exc.value.code == 2
    assert cli.main([]) == 2


def test_list_and_run_commands(tmp_path, capsys):
    assert cli.main(["list"]) == 0
    assert "mnist-grid-ae" in capsys.readouterr().out
    assert cli.main(["run", "no-such-experiment", "--out", str(tmp_path)]) == 2
    assert "unknown experiment" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
