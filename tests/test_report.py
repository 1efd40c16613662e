import base64
import json
import math
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from gsreg.report import RunFolder, Section, to_jsonable  # noqa: E402


def small_figure():
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    return fig


def test_run_folder_creates_its_folders_and_keeps_user_files(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    run = RunFolder(tmp_path / "run" / "nested")
    assert run.figures_dir.is_dir()
    RunFolder(tmp_path / "run")
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


def test_run_folder_on_a_file_raises(tmp_path):
    path = tmp_path / "taken"
    path.write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="is a file"):
        RunFolder(path)
    assert path.read_text() == "not a folder"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "figures").write_text("")
    with pytest.raises(NotADirectoryError):
        RunFolder(tmp_path / "run")


def test_save_figure_writes_a_png_and_closes_the_figure(tmp_path):
    run = RunFolder(tmp_path)
    fig = small_figure()
    relative = run.save_figure(fig, "maps")
    assert relative == "figures/maps.png"
    assert (tmp_path / relative).read_bytes().startswith(b"\x89PNG")
    assert not plt.fignum_exists(fig.number)
    assert run.save_figure(small_figure(), "maps.png") == relative
    with pytest.raises(ValueError, match="invalid file name"):
        run.save_figure(small_figure(), "../escape")


def test_metrics_round_trip_with_nan_as_null(tmp_path):
    run = RunFolder(tmp_path)
    metrics = {
        "val_mse": np.float32(0.25),
        "morans_i": float("nan"),
        "energy": np.array([1.0, np.inf]),
        "steps": np.int64(300),
        "penalty": torch.tensor(0.5),
        "nested": {"b": 1, "a": [np.nan, 2]},
        "ok": np.bool_(True),
    }
    path = run.write_metrics(metrics)
    text = path.read_text()
    loaded = json.loads(text)
    assert loaded == {
        "energy": [1.0, None],
        "morans_i": None,
        "nested": {"a": [None, 2], "b": 1},
        "ok": True,
        "penalty": 0.5,
        "steps": 300,
        "val_mse": 0.25,
    }
    assert list(loaded) == sorted(loaded) and '\n  "energy"' in text
    assert "NaN" not in text and "Infinity" not in text
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_write_json_converts_dataclasses_and_rejects_unknown_types(tmp_path):
    @dataclass
    class Config:
        lr: float
        layers: tuple

    run = RunFolder(tmp_path)
    path = run.write_json("config", Config(1e-3, (8, 8)))
    assert path.name == "config.json"
    assert json.loads(path.read_text()) == {"layers": [8, 8], "lr": 1e-3}
    with pytest.raises(TypeError, match="set"):
        run.write_json("bad", {"x": {1, 2}})
    assert not (tmp_path / "bad.json").exists()


def test_failed_write_keeps_the_previous_file(tmp_path):
    run = RunFolder(tmp_path)
    run.write_metrics({"a": 1})
    with pytest.raises(TypeError):
        run.write_metrics({"a": object()})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"a": 1}


def test_report_embeds_figures_and_escapes_text(tmp_path):
    run = RunFolder(tmp_path)
    figure = run.save_figure(small_figure(), "curve")
    sections = [
        Section(
            "Maps <raw>",
            text="lambda < 1e-3 & more\n\nsecond paragraph",
            table={"val_mse": 0.123456, "morans_i": float("nan")},
            figures=[figure],
        ),
        Section("Runs", table=[{"model": "GSR", "mse": 0.1}, {"model": "plain", "acc": 0.9}]),
    ]
    path = run.write_report("Demo <run>", sections)
    page = path.read_text()
    data = base64.b64encode((tmp_path / figure).read_bytes()).decode()
    assert f'src="data:image/png;base64,{data}"' in page
    assert "<title>Demo &lt;run&gt;</title>" in page
    assert "<h2>Maps &lt;raw&gt;</h2>" in page
    assert "<p>lambda &lt; 1e-3 &amp; more</p>" in page and "<p>second paragraph</p>" in page
    assert "<td>0.1235</td>" in page and "<td>n/a</td>" in page
    assert "<th>model</th><th>mse</th><th>acc</th>" in page
    assert "<script" not in page and "http" not in page


def test_report_rejects_figures_outside_the_run_folder(tmp_path):
    run = RunFolder(tmp_path / "run")
    (tmp_path / "other.png").write_bytes(b"\x89PNG")
    with pytest.raises(ValueError, match="outside"):
        run.write_report("t", [Section("s", figures=["../other.png"])])
    assert not (tmp_path / "run" / "report.html").exists()


def test_to_jsonable_handles_tensors_and_non_finite_values():
    assert to_jsonable(torch.tensor([1.0, float("nan")])) == [1.0, None]
    half = to_jsonable(torch.tensor([[0.1]], dtype=torch.bfloat16))
    assert half[0][0] == pytest.approx(0.1, abs=1e-3)
    assert to_jsonable(np.float32(0.01)) == 0.01
    assert to_jsonable(np.array([[0.1, np.nan]], dtype=np.float32)) == [[0.1, None]]
    assert to_jsonable(np.array(3)) == 3 and to_jsonable(np.float64(0.1)) == 0.1
    assert to_jsonable({1: -math.inf}) == {"1": None}


def test_templates_refuse_missing_values_even_when_formatted():
    import jinja2

    from gsreg.report import _templates, prose

    template = _templates().from_string("{{ x | fmt('.2f') }} and {{ y }}")
    assert template.render(x=0.123, y=None) == "0.12 and None"
    assert _templates().from_string("{{ x | fmt('.2f') }}").render(x=None) == "n/a"
    with pytest.raises(jinja2.UndefinedError):
        template.render(y=1)
    with pytest.raises(jinja2.UndefinedError):
        prose("modules/history.txt")  # needs update_every
