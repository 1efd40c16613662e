"""Writing results without losing anything: one file at a time, or a whole run folder.

:func:`atomic_write` writes a file through a temporary file in the same folder (flushed
to disk, then renamed), so a reader sees the old file or the new one, never half of one.

A command that writes a run folder (``gsreg fit``, ``gsreg arrange``) first calls
:func:`check_run_folder`, before any work, and then writes everything inside
:func:`staged_folder`: a hidden staging folder next to the target, swapped in whole when
the block succeeds. A run folder therefore holds exactly one run, and a run that fails,
is interrupted or is killed leaves the previous folder exactly as it was.

A staging folder ``.<name>.<random>.gsreg-staging`` holds the new run (``run/``), a lock
file held while its process lives (``flock``; released by the kernel even on SIGKILL)
and, during the swap, the previous run (``previous/``). The next run into the same
target removes staging folders whose lock is free, first moving a ``previous/`` back when
the target is missing (a process killed in the middle of the swap). Where ``flock`` does
not exist (Windows), a staging folder counts as abandoned after
:data:`STALE_AFTER_SECONDS`. Nothing else beside the target is ever touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Collection, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = [
    "STALE_AFTER_SECONDS",
    "NotAFolderError",
    "atomic_write",
    "check_run_folder",
    "staged_folder",
]

STAGING_SUFFIX = ".gsreg-staging"
STALE_AFTER_SECONDS = 24 * 3600
"""Without ``flock``: a staging folder this old is taken as abandoned."""

LOCKLESS_GRACE_SECONDS = 60
"""With ``flock``: a staging folder without its lock file this old is abandoned (a live run
makes the lock right after the folder)."""

_LOCK, _RUN, _PREVIOUS = ".lock", "run", "previous"


class NotAFolderError(NotADirectoryError, ValueError):
    """A run folder path that is, or lies below, a file (both an OSError and a ValueError)."""


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` through a temporary file in the
    same folder, flushed to disk and renamed over ``path``; mode 0644."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_run_folder(
    out: str | os.PathLike,
    writes: Collection[str],
    inputs: Collection[str | os.PathLike] = (),
    command: str = "this command",
) -> Path:
    """Check, before any work, that ``out`` can become a run folder; nothing is created.

    ``out`` may be missing (missing parents are made when the run is written) or a folder
    that holds only a previous run: files named in ``writes`` (``"figures"`` names a folder
    of files). Anything else in it would be lost when the new run replaces it, so it is
    refused, as is an input file (``inputs``) inside ``out``. Returns ``out`` as an
    absolute path.

    Raises:
        NotAFolderError (a NotADirectoryError and a ValueError): ``out`` or its nearest
            existing parent is a file.
        ValueError: ``out`` holds something a run does not write, or an input.
        PermissionError: the folder (or where it would be made) is not writable.
    """
    out = Path(out).expanduser().absolute()
    if out.is_symlink():
        raise ValueError(f"cannot use {out} as a run folder: it is a symbolic link")
    for path in inputs:
        if out in Path(path).expanduser().resolve().parents:
            raise ValueError(
                f"the input {path} is inside the run folder {out}, which {command} replaces "
                "whole; move the input or choose another --out"
            )
    existing = out
    while not existing.exists():
        if existing.is_symlink():
            raise ValueError(f"cannot use {out} as a run folder: {existing} is a broken link")
        existing = existing.parent
    if not existing.is_dir():
        where = "it is a file" if existing == out else f"{existing} is a file"
        raise NotAFolderError(f"cannot use {out} as a run folder: {where}")
    if existing == out:
        _check_previous_run(out, frozenset(writes), command)
        existing = out.parent  # the swap renames ``out`` inside its parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write the run folder {out}: {existing} is not writable")
    return out


def _check_previous_run(out: Path, writes: frozenset[str], command: str) -> None:
    foreign = []
    for item in sorted(out.iterdir()):
        if item.name == "figures" and "figures" in writes:
            if not item.is_dir() or item.is_symlink():
                foreign.append("figures (not a folder)")
                continue
            foreign += [f"figures/{f.name}" for f in sorted(item.iterdir()) if not f.is_file()]
        elif item.name not in writes or item.is_symlink() or not item.is_file():
            foreign.append(item.name + ("/" if item.is_dir() else ""))
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise ValueError(
            f"{out} holds what {command} does not write ({shown}); a new run replaces the "
            "folder whole, so it is refusing to replace it: move those away or choose "
            "another output folder"
        )
    if not os.access(out, os.W_OK | os.X_OK):
        raise PermissionError(f"the previous run in {out} cannot be replaced: not writable")


@contextlib.contextmanager
def staged_folder(
    out: str | os.PathLike, writes: Collection[str] | None = None, command: str = "this command"
) -> Iterator[Path]:
    """A fresh folder to write a run into, swapped in as ``out`` when the block succeeds.

    On success ``out`` is the new folder and the previous one is gone; on any error,
    interrupt or kill, ``out`` stays as it was (a swap cut short by a kill is undone by
    the next run). Parent folders made for ``out`` are removed again on failure. With
    ``writes``, a previous ``out`` is checked again just before the swap (as in
    :func:`check_run_folder`: something may have appeared in it during the run).
    """
    out = Path(out).absolute()
    parent = out.parent
    created = [p for p in (parent, *parent.parents) if not p.exists()]
    parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=STAGING_SUFFIX, dir=parent))
    lock = _hold_lock(staging)
    done = False
    try:
        run = staging / _RUN
        run.mkdir()
        yield run
        if writes is not None and out.is_dir() and not out.is_symlink():
            _check_previous_run(out, frozenset(writes), command)
        _swap(run, out, staging / _PREVIOUS)
        done = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        os.close(lock)
        if not done:
            for folder in created:  # deepest first, only while empty
                with contextlib.suppress(OSError):
                    folder.rmdir()


def _swap(run: Path, out: Path, previous: Path) -> None:
    """Rename ``run`` to ``out``; a previous ``out`` waits in ``previous`` until then."""
    if out.exists():
        os.replace(out, previous)
    try:
        os.replace(run, out)
    except BaseException:
        if previous.exists():
            os.replace(previous, out)
        raise


def _hold_lock(staging: Path) -> int:
    fd = os.open(staging / _LOCK, os.O_CREAT | os.O_RDWR, 0o644)
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def clean_stale(out: str | os.PathLike) -> list[Path]:
    """Remove the staging folders of ``out`` that no live process holds; a previous run
    found in one while ``out`` is missing is moved back first. Returns what was removed."""
    out = Path(out).absolute()
    if not out.parent.is_dir():
        return []
    removed = []
    for staging in sorted(out.parent.glob(f".{out.name}.*{STAGING_SUFFIX}")):
        if staging.is_symlink() or not staging.is_dir() or not _abandoned(staging):
            continue
        previous = staging / _PREVIOUS
        if previous.is_dir() and not out.exists() and not out.is_symlink():
            os.replace(previous, out)
        shutil.rmtree(staging, ignore_errors=True)
        removed.append(staging)
    return removed


def _abandoned(staging: Path) -> bool:
    lock = staging / _LOCK
    age = time.time() - staging.stat().st_mtime
    if fcntl is None:
        return age > STALE_AFTER_SECONDS
    if not lock.is_file():  # killed between making the folder and its lock, or just made
        return age > LOCKLESS_GRACE_SECONDS
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # a live run holds it
    finally:
        os.close(fd)
    return True
