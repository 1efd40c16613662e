"""Run folders that lose nothing: atomic files, checks before work, whole-folder swaps,
and staging folders left by killed processes."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from gsreg import _files
from gsreg._files import atomic_write, check_run_folder, clean_stale, staged_folder

WRITES = ("report.html", "metrics.json", "figures")


def previous_run(out):
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "class_maps.png").write_bytes(b"png")
    (out / "report.html").write_text("old report")
    (out / "metrics.json").write_text("{}")
    return snapshot(out)


def snapshot(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


def hidden(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.json"
    atomic_write(path, "first")
    atomic_write(path, b"second")
    assert path.read_bytes() == b"second"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert os.listdir(tmp_path) == ["a.json"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    path.write_text("old")

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        atomic_write(path, "new")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["a.json"]


# --------------------------------------------------------------------------- checks


def test_a_missing_folder_or_a_previous_run_is_accepted(tmp_path):
    assert check_run_folder(tmp_path / "a" / "b", WRITES) == tmp_path / "a" / "b"
    previous_run(tmp_path / "run")
    assert check_run_folder(tmp_path / "run", WRITES) == tmp_path / "run"
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(
    "case, words",
    [
        ("user_file", "notes.txt"),
        ("output_is_a_folder", "report.html/"),
        ("figures_is_a_file", "figures"),
        ("folder_in_figures", "figures/sub"),
        ("out_is_a_file", "it is a file"),
        ("parent_is_a_file", "is a file"),
        ("symlink", "symbolic link"),
    ],
)
def test_what_a_swap_would_lose_is_refused_before_work(tmp_path, case, words):
    out = tmp_path / "run"
    if case == "out_is_a_file":
        out.write_text("keep")
    elif case == "parent_is_a_file":
        (tmp_path / "p").write_text("keep")
        out = tmp_path / "p" / "run"
    elif case == "symlink":
        (tmp_path / "real").mkdir()
        out.symlink_to(tmp_path / "real")
    else:
        previous_run(out)
        if case == "user_file":
            (out / "notes.txt").write_text("mine")
        elif case == "output_is_a_folder":
            (out / "report.html").unlink()
            (out / "report.html").mkdir()
        elif case == "figures_is_a_file":
            for p in (out / "figures").iterdir():
                p.unlink()
            (out / "figures").rmdir()
            (out / "figures").write_text("x")
        else:
            (out / "figures" / "sub").mkdir()
    with pytest.raises((ValueError, OSError)) as err:
        check_run_folder(out, WRITES, command="gsreg fit")
    assert words in str(err.value)


def test_an_input_inside_the_run_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    previous_run(out)
    (out / "metrics.json").write_text("my data")
    with pytest.raises(ValueError, match="input .*metrics.json is inside the run folder"):
        check_run_folder(out, WRITES, inputs=[out / "metrics.json"], command="gsreg fit")
    with pytest.raises(ValueError, match="is inside the run folder"):
        check_run_folder(tmp_path / "new", WRITES, inputs=[tmp_path / "new" / "x" / "d.csv"])


def test_a_read_only_folder_is_refused_before_work(tmp_path, monkeypatch):
    out = tmp_path / "run"
    previous_run(out)
    monkeypatch.setattr(os, "access", lambda path, mode: str(path) != str(out))
    with pytest.raises(PermissionError, match="cannot be replaced"):
        check_run_folder(out, WRITES)
    monkeypatch.setattr(os, "access", lambda path, mode: str(path) != str(tmp_path))
    with pytest.raises(PermissionError, match="not writable"):
        check_run_folder(out, WRITES)


# --------------------------------------------------------------------------- swaps


def test_a_successful_run_replaces_the_folder_whole(tmp_path):
    out = tmp_path / "run"
    previous_run(out)
    with staged_folder(out) as folder:
        (folder / "report.html").write_text("new")
        assert not (out / "report.html").read_text() == "new"
    assert snapshot(out) == {"report.html": b"new"}  # no stale class_maps.png
    assert hidden(tmp_path) == []


def test_a_failed_run_leaves_the_previous_folder_exactly_as_it_was(tmp_path):
    out = tmp_path / "run"
    before = previous_run(out)
    with pytest.raises(OSError, match="No space"), staged_folder(out) as folder:
        (folder / "report.html").write_text("half")
        raise OSError(28, "No space left on device")
    assert snapshot(out) == before and hidden(tmp_path) == []


def test_a_failed_rename_puts_the_previous_folder_back(tmp_path, monkeypatch):
    out = tmp_path / "run"
    before = previous_run(out)
    real = os.replace

    def refuse_the_new_run(src, dst):
        if str(src).endswith("/run") and str(dst) == str(out):
            raise PermissionError(13, "Permission denied")
        real(src, dst)

    monkeypatch.setattr(_files.os, "replace", refuse_the_new_run)
    with pytest.raises(PermissionError), staged_folder(out) as folder:
        (folder / "report.html").write_text("new")
    assert snapshot(out) == before and hidden(tmp_path) == []


def test_parents_made_for_a_failed_run_are_removed(tmp_path):
    with pytest.raises(RuntimeError), staged_folder(tmp_path / "a" / "b" / "run"):
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- killed runs

KILLED = """
import os, pathlib, signal, sys, time
from gsreg import _files
out = pathlib.Path(sys.argv[1])
mid_swap = sys.argv[2] == "swap"
real = os.replace
def replace(src, dst):
    real(src, dst)
    if mid_swap and pathlib.Path(dst).name == "previous":
        os.kill(os.getpid(), signal.SIGKILL)  # between the two renames of the swap
_files.os.replace = replace
with _files.staged_folder(out) as folder:
    (folder / "report.html").write_text("new")
    if not mid_swap:
        (out.parent / "started").write_text("")
        time.sleep(60)
"""


def run_and_kill(out, mode):
    code = textwrap.dedent(KILLED)
    proc = subprocess.Popen([sys.executable, "-c", code, str(out), mode])
    if mode == "swap":
        proc.wait(timeout=60)
    else:
        deadline = time.time() + 60
        while not (out.parent / "started").exists():
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        (out.parent / "started").unlink()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.skipif(_files.fcntl is None, reason="flock is POSIX")
@pytest.mark.parametrize("mode", ["running", "swap"])
def test_a_killed_run_is_cleaned_up_by_the_next_and_the_previous_run_survives(tmp_path, mode):
    out = tmp_path / "run"
    before = previous_run(out)
    (tmp_path / ".run.mine.gsreg-staging.txt").write_text("a user's file")  # not ours
    (tmp_path / ".other.x.gsreg-staging").mkdir()  # another target's: not ours to judge
    run_and_kill(out, mode)
    stale = [p for p in tmp_path.glob(".run.*.gsreg-staging")]
    assert len(stale) == 1
    if mode == "swap":
        assert not out.exists()  # killed between the renames
    removed = clean_stale(out)
    assert removed == stale
    assert snapshot(out) == before
    assert hidden(tmp_path) == [".other.x.gsreg-staging", ".run.mine.gsreg-staging.txt"]


@pytest.mark.skipif(_files.fcntl is None, reason="flock is POSIX")
def test_a_live_run_s_staging_folder_is_left_alone(tmp_path):
    out = tmp_path / "run"
    with staged_folder(out) as folder:
        (folder / "x").write_text("")
        assert clean_stale(out) == []
        with staged_folder(out) as second:  # a concurrent run into the same target
            (second / "y").write_text("")
        assert (folder / "x").exists()
    assert sorted(os.listdir(out)) == ["x"]  # the last to finish wins, whole
    assert hidden(tmp_path) == []


def test_a_lockless_staging_folder_is_removed_only_when_old(tmp_path, monkeypatch):
    out = tmp_path / "run"
    young = tmp_path / ".run.abc.gsreg-staging"
    young.mkdir()
    assert clean_stale(out) == []
    old = time.time() - 2 * _files.LOCKLESS_GRACE_SECONDS
    os.utime(young, (old, old))
    assert clean_stale(out) == [young]
