"""Every ```python block of README.md and docs/*.md is a test: a complete program that runs.

Why a collector of our own, and not pytest-markdown-docs or mktestdocs: both
exec the blocks inside the pytest process, where they share its state (torch seeds and
threads, hooks, open figures, the working directory) with each other and with the rest of
the suite, a block that hangs hangs the test worker, and a script meant for several
processes cannot run at all. Here each block runs as the program a user would paste:

- in its own process, as ``__main__``, forked from a server (``_doc_server.py``) that
  imported torch, gsreg, scikit-learn and matplotlib once: a block costs its own work and
  not 2-3 s of imports (fresh interpreters would spend about two minutes of CPU on
  imports alone);
- in an empty temporary working directory that must still be empty afterwards: blocks
  write files only under a temporary folder of their own;
- with a timeout (``TIMEOUT_S``) that kills the block and everything it started;
- a failure shows the block's output and traceback, whose lines name the markdown file
  and its line numbers; the test id is ``PATH:LINE`` of the block's opening fence.

A block that uses an optional extra that is not installed (Lightning, scanpy, ...) or the
MNIST data package when it is absent is skipped with the reason. A block preceded by
``<!-- doctest: torchrun --standalone --nproc_per_node=N FILE ARGS -->`` is a script for
several processes: it runs as N ranks with the environment torchrun gives them (RANK,
WORLD_SIZE, ... and a rendezvous store that this process holds open, as torchrun's agent
does), forked like any block, so that the launch costs no extra interpreters;
``<!-- doctest: python FILE ARGS -->`` runs a block as FILE with ARGS. Their working
directory may keep what the script writes there (a checkpoint named by its arguments).

Signatures shown in the docs are ```text blocks preceded by ``<!-- signature: NAME -->``,
checked against ``inspect.signature`` of NAME (``test_signature_matches_code``).

Deselect with ``-m "not docs"``; one page: ``pytest tests/test_docs.py -k regularizer.md``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="runs blocks as POSIX sessions")

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGUAGES = {"python", "py", "python3"}
# per block, wall clock: generous, for two loaded cores shared with the rest of the suite
TIMEOUT_S = 180.0
ENV = {"OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}

# imported by the server before it forks a block that uses them (each costs seconds)
PRELOADED = {
    "gsreg", "lightning", "pytorch_lightning", "scanpy", "anndata", "phate", "igraph",
    "transformers", "pandas",
}  # fmt: skip
# module a block uses -> (modules it needs, the extra that installs them)
OPTIONAL = {
    "lightning": (("lightning",), "lightning"),
    "pytorch_lightning": (("pytorch_lightning",), "lightning"),
    "gsreg.integrations.lightning": (("lightning",), "lightning"),
    "scanpy": (("scanpy",), "sc"),
    "anndata": (("anndata",), "sc"),
    "phate": (("phate",), "sc"),
    "igraph": (("igraph",), "sc"),
    "gsreg.sc": (("scanpy", "anndata"), "sc"),
    "gsreg.datasets.trajectory": (("phate", "scanpy"), "sc"),
    "gsreg.datasets.pbmc": (("scanpy",), "sc"),
    "transformers": (("transformers",), "transformers"),
}

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*doctest:\s*(?P<command>.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Launch:
    """How a script block is started: ``argv`` (the file first), and ``ranks`` processes
    with torchrun's environment, or None for ``python FILE ARGS``."""

    argv: tuple[str, ...]
    ranks: int | None

    @classmethod
    def parse(cls, command: str) -> Launch:
        words = shlex.split(command)
        if words[:1] == ["python"] and len(words) > 1:
            return cls(tuple(words[1:]), None)
        if words[:1] != ["torchrun"]:
            raise ValueError(f"doctest directive: python or torchrun, got {command!r}")
        ranks, i = 1, 1
        while i < len(words) and words[i].startswith("--"):
            option, _, value = words[i].partition("=")
            if option in ("--nproc_per_node", "--nproc-per-node"):
                if not value:
                    i += 1
                    value = words[i]
                ranks = int(value)
            elif option != "--standalone":
                raise ValueError(f"doctest directive: torchrun option {option} not supported")
            i += 1
        return cls(tuple(words[i:]), ranks)


@dataclass(frozen=True)
class Block:
    path: Path  # the markdown file
    line: int  # 1-based line of the first code line
    code: str
    directive: str | None  # the command of a doctest directive

    @property
    def launch(self) -> Launch | None:
        return None if self.directive is None else Launch.parse(self.directive)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line - 1}"

    def missing(self) -> str | None:
        """Why the block cannot run here (an optional extra or data absent), or None."""
        used = _modules_used(self.code)
        for name, (modules, extra) in OPTIONAL.items():
            if any(u == name or u.startswith(name + ".") for u in used):
                absent = [m for m in modules if importlib.util.find_spec(m) is None]
                if absent:
                    return f"{self.where} needs {', '.join(absent)}: pip install 'gsreg[{extra}]'"
        if "gsreg.datasets.mnist" in used:
            mnist_module = importlib.import_module("gsreg.datasets.mnist")
            try:
                found = mnist_module.default_path().is_file()
            except FileNotFoundError:
                found = False
            if not found:
                return f"{self.where} needs the MNIST data: {mnist_module.INSTALL_HINT}"
        if self.launch and self.launch.ranks:
            import torch.distributed as dist

            if not (dist.is_available() and dist.is_gloo_available()):
                return f"{self.where} needs torch.distributed with the gloo backend"
        return None


def _modules_used(code: str) -> set[str]:
    """Dotted module names a block imports or reaches by attribute (``gsreg.sc.fit``)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()  # the run reports it
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            used.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            used.add(node.module)
            used.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Attribute):
            parts = []
            value: ast.expr = node
            while isinstance(value, ast.Attribute):
                parts.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id == "gsreg":
                used.add(".".join(["gsreg", *reversed(parts)]))
    return used


def _fenced(path: Path) -> list[tuple[str, int, str, str]]:
    """``(language, first code line, code, last non-blank line before the fence)`` of every
    fenced block of a markdown file, in order; indented fences (in lists) lose the indent."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        closing = re.compile(rf"^\s*{re.escape(fence)}{fence[0]}*\s*$")
        end = i + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        language = (opening["info"].split() or [""])[0].lower()
        code = "\n".join(line[indent:] for line in lines[i + 1 : end]) + "\n"
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        found.append((language, i + 2, code, before))
        i = end + 1
    return found


def blocks(path: Path) -> list[Block]:
    """The ```python blocks of a markdown file, in order."""
    found = []
    for language, line, code, before in _fenced(path):
        if language in LANGUAGES:
            directive = _DIRECTIVE.match(before)
            found.append(Block(path, line, code, directive["command"] if directive else None))
    return found


BLOCKS = [block for path in DOCUMENTS for block in blocks(path)]


class DocServer:
    """Client of ``_doc_server.py``: one server per test process, one request at a time."""

    def __init__(self, workdir: Path):
        self.log = workdir / "server.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("_doc_server.py"))],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=workdir,
                env={**os.environ, **ENV},
                text=True,
            )
        if self._answer().get("ready") is not True:
            raise RuntimeError("the documentation server did not start")

    def _answer(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(
                f"the documentation server stopped: {self.log.read_text(errors='replace')}"
            )
        return json.loads(line)

    def run(self, block: Block, cwd: Path, log: Path, ranks: list[dict] | None = None) -> dict:
        request = {
            "code": block.code,
            "filename": str(block.path),
            "line": block.line,
            "argv": list(block.launch.argv) if block.launch else [str(block.path)],
            "cwd": str(cwd),
            "log": str(log),
            "timeout": TIMEOUT_S,
            "preload": sorted(m for m in _modules_used(block.code) if m.split(".")[0] in PRELOADED),
            "ranks": ranks,
        }
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._answer()

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


@pytest.fixture(scope="session")
def doc_server(tmp_path_factory):
    server = DocServer(tmp_path_factory.mktemp("doc-server"))
    yield server
    server.close()


def _torchrun_ranks(n: int, port: int) -> list[dict]:
    """The environment torchrun --standalone --nproc_per_node=n gives its n workers."""
    common = {
        "WORLD_SIZE": str(n),
        "LOCAL_WORLD_SIZE": str(n),
        "GROUP_RANK": "0",
        "GROUP_WORLD_SIZE": "1",
        "ROLE_NAME": "default",
        "ROLE_WORLD_SIZE": str(n),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "TORCHELASTIC_USE_AGENT_STORE": "True",  # join the store this process serves
        "TORCHELASTIC_RUN_ID": "doctest",
        "TORCHELASTIC_RESTART_COUNT": "0",
        "TORCHELASTIC_MAX_RESTARTS": "0",
    }
    return [{**common, "RANK": str(r), "LOCAL_RANK": str(r), "ROLE_RANK": str(r)} for r in range(n)]


def _param(block: Block):
    marks = [pytest.mark.docs]
    if block.directive and block.directive.startswith("torchrun"):
        marks.append(pytest.mark.distributed)
    return pytest.param(block, id=block.where, marks=marks)


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS])
def test_block_runs(block: Block, tmp_path: Path, request) -> None:
    launch = block.launch  # a malformed directive fails here
    reason = block.missing()
    if reason:
        pytest.skip(reason)
    doc_server: DocServer = request.getfixturevalue("doc_server")  # started when first needed
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    log = tmp_path / "output.txt"
    if launch and launch.ranks:
        import torch.distributed as dist

        # torchrun's agent serves the rendezvous store on a port the kernel picks
        timeout = timedelta(seconds=60)
        store = dist.TCPStore("127.0.0.1", 0, launch.ranks, True, timeout, wait_for_workers=False)
        result = doc_server.run(block, cwd, log, _torchrun_ranks(launch.ranks, store.port))
        del store
    else:
        result = doc_server.run(block, cwd, log)
    request.node.user_properties.append(("cpu_seconds", round(result["cpu_seconds"], 2)))
    output = log.read_text(errors="replace")
    if result["timed_out"]:
        pytest.fail(f"{block.where}: killed after {TIMEOUT_S:.0f} s\n{output[-4000:]}", False)
    if result["rc"] != 0:
        pytest.fail(f"{block.where}: exit status {result['rc']}\n{output[-6000:]}", False)
    if launch is None:
        left = sorted(p.name for p in cwd.iterdir())
        assert not left, (
            f"{block.where} wrote {left} into the working directory; "
            "write under a tempfile.TemporaryDirectory() instead"
        )


def test_every_python_fence_is_collected() -> None:
    """The collector finds the blocks (a broken fence pattern would silently test nothing)."""
    for path in DOCUMENTS:
        text = path.read_text(encoding="utf-8")
        opened = len(re.findall(r"^\s*```\s*(?:python|py|python3)\s*$", text, re.M))
        assert len(blocks(path)) == opened, path
    assert len(BLOCKS) >= 30


# -- signatures --------------------------------------------------------------------------
# A signature shown in the docs is not a program; it is a ```text block preceded by
# ``<!-- signature: DOTTED.NAME -->`` and must match inspect.signature of that object:
# parameter names, kinds, defaults and the return annotation when one is shown.

_SIGNATURE = re.compile(r"^\s*<!--\s*signature:\s*(?P<target>[\w.]+)\s*-->\s*$")


@dataclass(frozen=True)
class Signature:
    path: Path
    line: int
    text: str
    target: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line - 1}"


SIGNATURES = [
    Signature(path, line, code, directive["target"])
    for path in DOCUMENTS
    for _, line, code, before in _fenced(path)
    if (directive := _SIGNATURE.match(before))
]


def _resolve(target: str):
    """The object a dotted name names (a module, then attributes)."""
    parts = target.split(".")
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent is a module, not a package
            found = False
        if found:
            obj = importlib.import_module(name)  # an absent optional extra raises here
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
            return obj
    raise LookupError(f"nothing is called {target}")


def _documented(text: str) -> tuple[str, list[tuple[str, str, object]], str | None]:
    """(name, [(parameter, kind, default or _NONE)], return annotation) of a shown
    signature ``name(params) -> ret``."""
    start = text.index("(")
    depth = 0
    for end in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[end], 0)
        if depth == 0:
            break
    rest = text[end + 1 :].strip()
    returns = rest[2:].strip() if rest.startswith("->") else None
    args = ast.parse(f"def f({text[start + 1 : end]}): pass").body[0].args
    positional = [(a, "POSITIONAL_ONLY") for a in args.posonlyargs]
    positional += [(a, "POSITIONAL_OR_KEYWORD") for a in args.args]
    defaults = [_NONE] * (len(positional) - len(args.defaults)) + list(args.defaults)
    params = [(a.arg, kind, d) for (a, kind), d in zip(positional, defaults, strict=True)]
    if args.vararg:
        params.append((args.vararg.arg, "VAR_POSITIONAL", _NONE))
    params += [
        (a.arg, "KEYWORD_ONLY", _NONE if d is None else d)
        for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
    ]
    if args.kwarg:
        params.append((args.kwarg.arg, "VAR_KEYWORD", _NONE))
    return text[:start].strip(), params, returns


_NONE = object()


def _same_default(shown, actual) -> bool:
    try:
        value = ast.literal_eval(shown)
    except ValueError:
        return ast.unparse(shown) == repr(actual)
    return type(value) is type(actual) and value == actual


@pytest.mark.parametrize("shown", [pytest.param(s, id=s.where) for s in SIGNATURES])
def test_signature_matches_code(shown: Signature) -> None:
    try:
        obj = _resolve(shown.target)
    except ImportError as missing:
        pytest.skip(f"{shown.where}: {shown.target} needs {missing.name}")
    name, params, returns = _documented(shown.text)
    assert name.split(".")[-1] == obj.__name__, f"{shown.where} shows {name}, not {obj.__name__}"
    actual = inspect.signature(obj)
    assert [(p, kind) for p, kind, _ in params] == [
        (p.name, p.kind.name) for p in actual.parameters.values()
    ], f"{shown.where}: {name}{actual} in the code"
    for p, _, default in params:
        real = actual.parameters[p].default
        if default is _NONE:
            assert real is inspect.Parameter.empty, f"{shown.where}: {p}={real!r} not shown"
        else:
            assert _same_default(default, real), f"{shown.where}: {p}={real!r} in the code"
    if returns is not None:
        annotation = actual.return_annotation
        text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
        assert returns == text, f"{shown.where}: returns {text!r} in the code"


def test_signatures_are_found() -> None:
    assert len(SIGNATURES) >= 10
