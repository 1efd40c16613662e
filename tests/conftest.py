"""Test-wide settings: one torch thread per worker (the suite runs two workers on two cores)."""

import contextlib
import os

import matplotlib
import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
matplotlib.use("Agg")
torch.set_num_threads(1)


@contextlib.contextmanager
def _recording_prose():
    """Inside: the list of every (template, values) report prose is rendered from."""
    from gsreg import report

    calls = []
    render = report.render

    def record(template, /, **values):
        if template.endswith(".txt"):  # report prose, not the page skeleton
            calls.append((template, values))
        return render(template, **values)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report, "render", record)
        yield calls


@pytest.fixture(scope="session")
def recording_prose():
    """A context manager: ``with recording_prose() as calls:`` records the (template,
    values) of every report prose rendered inside."""
    return _recording_prose
