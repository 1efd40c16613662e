import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from gsreg import graphs, plotting  # noqa: E402

GRID = graphs.grid(3, 4)
RING = graphs.from_edges(12, [(i, (i + 1) % 12) for i in range(12)], np.linspace(0.5, 2, 12))
RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_plot_maps_draws_images_on_lattices():
    fig = plotting.plot_maps(RNG.normal(size=(3, 12)), GRID, titles=["a", "b", "c"])
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3 + 1  # three maps and one shared colorbar
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 3
    assert panels[0].images[0].get_array().shape == (3, 4)
    assert [ax.get_title() for ax in panels] == ["a", "b", "c"]
    assert len({ax.images[0].get_clim() for ax in panels}) == 1


def test_plot_maps_draws_nodes_and_edges_on_other_graphs():
    fig = plotting.plot_maps(RNG.normal(size=(2, 12)), RING, row_label="model")
    assert len(fig.axes) == 2 + 1
    panels = [ax for ax in fig.axes if ax.get_ylabel() == "model"]
    assert len(panels) == 1 and not panels[0].images
    assert len(panels[0].collections) == 2  # edges and nodes


def test_plot_maps_symmetric_scale_is_centred():
    maps = np.array([[0.5, 2.0] * 6, [-1.0, 0.0] * 6])
    fig = plotting.plot_maps(maps, GRID, symmetric=True)
    vmin, vmax = fig.axes[0].images[0].get_clim()
    assert vmin == -vmax == -2.0
    fig = plotting.plot_maps(maps, GRID)
    assert fig.axes[0].images[0].get_clim() == (-1.0, 2.0)


def test_plot_maps_into_given_axes_and_checks_shapes():
    fig, axes = plt.subplots(1, 2)
    assert plotting.plot_maps(RNG.normal(size=(2, 12)), GRID, axes=axes) is fig
    with pytest.raises(ValueError, match="need 3 axes"):
        plotting.plot_maps(RNG.normal(size=(3, 12)), GRID, axes=axes)
    with pytest.raises(ValueError, match=r"\(C, 12\)"):
        plotting.plot_maps(RNG.normal(size=(2, 10)), GRID)


@pytest.mark.parametrize("graph", [GRID, RING], ids=["grid", "ring"])
def test_plot_class_map_comparison_has_one_panel_per_model_and_class(graph):
    rows = {"no GSR": RNG.normal(size=(4, 12)), "GSR": RNG.normal(size=(4, 12))}
    fig = plotting.plot_class_map_comparison(
        rows, graph, ["0", "1", "2", "3"], symmetric=[False, True], title="maps"
    )
    assert len(fig.axes) == 2 * 4 + 2  # plus one colorbar per model
    assert fig.get_suptitle() == "maps"
    assert [block.get_suptitle() for block in fig.subfigs] == ["no GSR", "GSR"]
    with pytest.raises(ValueError, match="3 class names"):
        plotting.plot_class_map_comparison(rows, graph, ["0", "1", "2"])


def test_ten_class_maps_wrap_into_two_lines_of_five_per_model():
    rows = {"a": RNG.normal(size=(10, 12)), "b": RNG.normal(size=(10, 12))}
    fig = plotting.plot_class_map_comparison(rows, GRID, [str(c) for c in range(10)])
    for block in fig.subfigs:
        panels = [ax for ax in block.axes if ax.get_title()]
        assert [ax.get_title() for ax in panels] == [str(c) for c in range(10)]
        tops = sorted({round(ax.get_position().y0, 3) for ax in panels})
        assert len(tops) == 2
    fig = plotting.plot_class_map_comparison(rows, GRID, [str(c) for c in range(10)], columns=4)
    spare = [ax for ax in fig.subfigs[0].axes if not ax.axison]
    assert len(spare) == 2  # 3 lines of 4 hold 10 maps and 2 empty places


@pytest.mark.parametrize("graph", [GRID, RING], ids=["grid", "ring"])
def test_plot_segmentation_has_a_panel_per_model_and_a_class_legend(graph):
    segs = {"no GSR": RNG.integers(0, 3, 12), "GSR": np.repeat([0, 1, 2], 4)}
    fig = plotting.plot_segmentation(segs, graph, ["cat", "dog", "eel"])
    assert len(fig.axes) == 2
    legend = fig.axes[-1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["cat", "dog", "eel"]
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        plotting.plot_segmentation(segs, graph, ["cat", "dog"])


def test_plot_graph_with_values_labels_or_nothing():
    fig = plotting.plot_graph(RING, values=np.arange(12.0))
    assert len(fig.axes) == 2  # graph and colorbar
    edges = fig.axes[0].collections[0]
    alphas = edges.get_colors()[:, 3]
    assert alphas.argmax() == RING.weights.argmax() and alphas.min() < alphas.max()
    fig = plotting.plot_graph(GRID, labels=np.array(["a", "b"] * 6))
    assert len(fig.axes) == 1
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a", "b"]
    fig, ax = plt.subplots()
    assert plotting.plot_graph(GRID, ax=ax) is fig
    with pytest.raises(ValueError, match="not both"):
        plotting.plot_graph(GRID, values=np.zeros(12), labels=np.zeros(12))


def test_plot_history_draws_one_line_per_run_and_key():
    histories = {
        "no GSR": [{"epoch": e, "train_loss": 1 / e, "val_mse": 2 / e} for e in range(1, 6)],
        "GSR": [{"train_loss": 1.5 / e} for e in range(1, 4)],
    }
    fig = plotting.plot_history(histories)
    assert len(fig.axes) == 2
    train, val = fig.axes
    assert len(train.lines) == 2 and len(val.lines) == 1
    np.testing.assert_array_equal(train.lines[0].get_xdata(), [1, 2, 3, 4, 5])
    fig = plotting.plot_history(histories, keys=("missing",))
    assert not fig.axes[0].lines and fig.axes[0].texts
