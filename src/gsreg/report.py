"""Run folders: ``metrics.json``, ``figures/*.png`` and a self-contained ``report.html``.

Every file is written atomically (to a temporary file in the same folder, then renamed),
so an interrupted run leaves either the previous version or the new one, never half a
file. ``report.html`` embeds its figures as base64 data URIs and needs no network, no
scripts and no other file to open.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import html
import io
import json
import math
import mimetypes
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import matplotlib.pyplot as plt
import numpy as np
import torch
from markupsafe import Markup
from matplotlib.figure import Figure

from ._files import atomic_write

__all__ = ["RunFolder", "Section", "prose", "render", "to_jsonable"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f4f4f4}
figure{margin:1em 0}img{max-width:100%;height:auto}
figcaption{color:#666;font-size:.8em}
"""


@dataclass(frozen=True)
class Section:
    """One part of a report, rendered in this order: heading, text, table, figures.

    Attributes:
        heading: section title.
        text: plain text; blank lines separate paragraphs.
        table: ``{name: value}`` (a two-column table) or a list of row dicts (columns
            in order of first appearance; missing cells stay empty).
        figures: paths relative to the run folder, as returned by
            :meth:`RunFolder.save_figure`.
    """

    heading: str
    text: str = ""
    table: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None
    figures: Sequence[str] = ()


class RunFolder:
    """A folder holding one run's outputs; creates ``path`` and ``path/figures``.

    Existing files are kept; only the files this class writes are replaced.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.figures_dir = self.path / "figures"
        for folder in (self.path, self.figures_dir):
            _make_writable_dir(folder)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def save_figure(self, fig: Figure, name: str, dpi: int = 110) -> str:
        """Save ``fig`` as ``figures/<name>.png``, close it, return that relative path."""
        stem = _stem(name, ".png")
        buffer = io.BytesIO()
        try:
            fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
        finally:
            plt.close(fig)
        atomic_write(self.figures_dir / f"{stem}.png", buffer.getvalue())
        return f"figures/{stem}.png"

    def write_metrics(self, metrics: Mapping[str, Any]) -> Path:
        """Write ``metrics.json`` (see :meth:`write_json`)."""
        return self.write_json("metrics", metrics)

    def write_json(self, name: str, obj: Any) -> Path:
        """Write ``<name>.json``: sorted keys, indent 2.

        numpy and torch scalars and arrays become numbers and lists, dataclasses become
        dicts, paths become strings; NaN and infinities become ``null``.
        """
        path = self.path / f"{_stem(name, '.json')}.json"
        text = json.dumps(to_jsonable(obj), sort_keys=True, indent=2, allow_nan=False)
        atomic_write(path, (text + "\n").encode("utf-8"))
        return path

    def write_report(self, title: str, sections: Sequence[Section]) -> Path:
        """Write ``report.html`` with every figure embedded; returns its path."""
        body = "\n".join(self._render_section(section) for section in sections)
        page = render("page.html", title=title, css=Markup(_CSS), body=Markup(body))
        path = self.path / "report.html"
        atomic_write(path, page.encode("utf-8"))
        return path

    def _render_section(self, section: Section) -> str:
        parts = [f"<h2>{html.escape(section.heading)}</h2>"]
        for paragraph in re.split(r"\n\s*\n", section.text.strip()):
            if paragraph:
                parts.append(f"<p>{html.escape(paragraph)}</p>")
        if section.table is not None:
            parts.append(_render_table(section.table))
        parts.extend(self._render_figure(figure) for figure in section.figures)
        return "<section>\n" + "\n".join(parts) + "\n</section>"

    def _render_figure(self, relative: str) -> str:
        path = (self.path / relative).resolve()
        if not path.is_relative_to(self.path.resolve()):
            raise ValueError(f"figure {relative!r} lies outside the run folder {self.path}")
        mime, _ = mimetypes.guess_type(path.name)
        if mime is None or not mime.startswith("image/"):
            raise ValueError(f"figure {relative!r} is not an image file")
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        label = html.escape(relative)
        return (
            f'<figure><img src="data:{mime};base64,{data}" alt="{label}">'
            f"<figcaption>{label}</figcaption></figure>"
        )


@functools.cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gsreg", "templates"),
        autoescape=jinja2.select_autoescape(["html"], default_for_string=False),
        undefined=jinja2.StrictUndefined,  # a missing value is an error, not a blank
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["fmt"] = _fmt
    return env


def render(name: str, /, **values: Any) -> str:
    """The template ``name`` of gsreg's ``templates/`` folder filled in with ``values``.

    ``.html`` templates escape every value (pass ``markupsafe.Markup`` for HTML that is
    already safe); ``.txt`` templates (report prose, escaped later by
    :meth:`RunFolder.write_report`) do not. Filters: ``fmt`` (``{{ x | fmt(".3f") }}``,
    Python's format spec; None gives "n/a"). A value the template needs but is not given
    raises ``jinja2.UndefinedError``.
    """
    return _templates().get_template(name).render(**values)


def prose(name: str, /, **values: Any) -> str:
    """The ``.txt`` template ``name`` rendered (:func:`render`) as :class:`Section` text:
    the lines of each paragraph joined by single spaces (templates wrap their sentences
    freely), paragraphs separated by one blank line, empty ones dropped."""
    paragraphs = (" ".join(p.split()) for p in re.split(r"\n\s*\n", render(name, **values)))
    return "\n\n".join(p for p in paragraphs if p)


def _fmt(value: Any, spec: str = "") -> str:
    if isinstance(value, jinja2.Undefined):
        str(value)  # a missing value raises UndefinedError (StrictUndefined), even formatted
    return "n/a" if value is None else format(value, spec)


def to_jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON types; non-finite floats become ``None``."""
    if isinstance(obj, Mapping):
        return {str(key): to_jsonable(value) for key, value in obj.items()}
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu()
        return to_jsonable((obj.float() if obj.dtype == torch.bfloat16 else obj).numpy())
    if isinstance(obj, np.ndarray):
        return _array_to_jsonable(obj)
    if isinstance(obj, np.floating):
        # float32 via its shortest repr: 0.01, not 0.009999999776482582
        return to_jsonable(float(str(obj)) if obj.itemsize < 8 else float(obj))
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(item) for item in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot write a {type(obj).__name__} to JSON: {obj!r}")


def _array_to_jsonable(array: np.ndarray) -> Any:
    if array.ndim == 0:
        return to_jsonable(array[()])
    if array.dtype.kind == "f" and array.itemsize < 8:
        return [to_jsonable(item) for item in array]
    return to_jsonable(array.tolist())


def _render_table(table: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> str:
    if isinstance(table, Mapping):
        columns = ["name", "value"]
        rows = [{"name": key, "value": value} for key, value in table.items()]
    else:
        rows = list(table)
        columns = list(dict.fromkeys(key for row in rows for key in row))
    header = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_format_cell(row, c)}</td>" for c in columns) + "</tr>\n"
        for row in rows
    )
    return f"<table>\n<tr>{header}</tr>\n{body}</table>"


def _format_cell(row: Mapping[str, Any], column: str) -> str:
    if column not in row:
        return ""
    value = to_jsonable(row[column])
    if value is None:
        text = "n/a"
    elif isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value)
    else:
        text = str(value)
    return html.escape(text)


def _stem(name: str, suffix: str) -> str:
    """``name`` without ``suffix``; a plain file name, no folders."""
    stem = name[: -len(suffix)] if name.endswith(suffix) else name
    if not _NAME.fullmatch(stem):
        raise ValueError(
            f"invalid file name {name!r}: use letters, digits, '_', '-' and '.', "
            "starting with a letter or digit"
        )
    return stem


def _make_writable_dir(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"cannot use {folder} as a run folder: it is a file")
    folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"run folder {folder} is not writable")
