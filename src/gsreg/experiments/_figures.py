"""Figures several experiments share: the primary task and a structure score against
λ, and saving a module's listed figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..report import RunFolder
from ._labels import lambda_label


def plot_tradeoff(
    weights: Sequence[float],
    primary: Sequence[float],
    structure: Sequence[float],
    primary_label: str,
    structure_label: str = "Moran's I (class − mean maps)",
    extra: Mapping[str, tuple[float, float, float]] | None = None,
    title: str | None = None,
    structure_reference: float | None = None,
    control: tuple[str, float] | None = None,
):
    """The primary task (left axis) and a structure score (right axis) against lambda.

    lambda = 0 is drawn one decade left of the smallest non-zero lambda and labelled
    ``0``. ``extra`` adds single models as open markers: ``{label: (weight, primary,
    structure)}`` (e.g. the centred penalty). ``structure_reference`` draws a dotted
    line (e.g. Moran's I without spatial structure); ``control`` ``(label, value)`` a
    dashed one (e.g. the λ = 0 layer arranged post hoc). Returns the figure.
    """
    nonzero = [w for w in weights if w > 0] + [e[0] for e in (extra or {}).values() if e[0] > 0]
    zero_at = min(nonzero) / 10 if nonzero else 1.0

    def x_of(w: float) -> float:
        return w if w > 0 else zero_at

    xs = np.array([x_of(w) for w in weights])
    fig, ax = plt.subplots(figsize=(6.4, 3.8), layout="constrained")
    ax.plot(xs, primary, "o-", color="tab:blue", label=primary_label)
    ax.set_xscale("log")
    ax.set_xlabel("λ")
    ax.set_ylabel(primary_label, color="tab:blue")
    twin = ax.twinx()
    twin.plot(xs, structure, "s--", color="tab:orange", label=structure_label)
    twin.set_ylabel(structure_label, color="tab:orange")
    if structure_reference is not None:
        twin.axhline(structure_reference, color="tab:orange", lw=0.8, ls=":")
    if control is not None:
        twin.axhline(control[1], color="tab:red", lw=1.0, ls="--")
        twin.annotate(
            control[0],
            (0.01, control[1]),
            xycoords=("axes fraction", "data"),
            textcoords="offset points",
            xytext=(0, 3),
            fontsize=8,
            color="tab:red",
        )
    for label, (w, p, s) in (extra or {}).items():
        ax.plot([x_of(w)], [p], "o", mfc="none", color="tab:blue", ms=9)
        twin.plot([x_of(w)], [s], "s", mfc="none", color="tab:orange", ms=9)
        ax.annotate(label, (x_of(w), p), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ticks = sorted(set(xs.tolist()))
    ax.set_xticks(ticks, ["0" if t == zero_at else lambda_label(t) for t in ticks])
    ax.minorticks_off()
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def save_figures(
    folder: RunFolder, plots: dict[str, Figure], names: Sequence[str]
) -> dict[str, str]:
    """Save ``plots[name]`` as ``figures/<name>.png`` for every name of ``names`` (a
    module's ``FIGURES``, so that the files a run writes are those it lists); returns
    ``{name: relative path}``. ValueError, with nothing saved and every figure closed,
    unless ``plots`` holds exactly those names."""
    if set(plots) != set(names):
        for fig in plots.values():
            plt.close(fig)
        raise ValueError(f"figures {sorted(plots)} are not those listed, {tuple(names)}")
    return {name: folder.save_figure(plots[name], name) for name in names}
