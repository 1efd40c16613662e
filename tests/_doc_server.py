"""Fork server for tests/test_docs.py: runs documentation blocks, each in its own process.

Started once per test worker as ``python _doc_server.py``. It imports the libraries every
block needs once (torch, numpy, scikit-learn, matplotlib, gsreg; nothing runs, so no
thread exists yet and forking is safe), then reads one JSON request per line on stdin and
answers one JSON line on stdout:

    {"code": ..., "filename": ..., "line": N, "argv": [...], "cwd": ..., "log": ...,
     "timeout": S, "preload": [module, ...], "ranks": [{env}, ...]}
    -> {"rc": int, "timed_out": bool, "seconds": float, "cpu_seconds": float, "forked": bool}

For each request it first imports ``preload`` (heavy modules the block imports, such as
Lightning: their import is then paid once per server, not once per block), then forks one
child per entry of ``ranks`` (one child without extra environment when absent). Each child
starts a new session, adds its entry to the environment, changes to ``cwd``, appends its
stdout and stderr (and those of any process it starts) to ``log``, and executes ``code``
as ``__main__`` with ``sys.argv = argv``, compiled so that tracebacks name ``filename``
and its line numbers. It then runs the exit handlers the block registered and exits with
0, with the code of a ``SystemExit`` or with 1 after printing an uncaught exception, as
``python block.py`` would. Several ranks are the processes ``torchrun`` would start
(the caller passes torchrun's environment); when one fails the others are killed, since
they would wait for it in a collective. Children not done after ``timeout`` seconds are
killed with their sessions. Should an import have left a thread running in the server,
forking is no longer safe, and the children are fresh interpreters instead
(``python _doc_server.py --one REQUEST ENV``) that do the same; so they are off Linux,
where libraries loaded before a fork may not survive it. POSIX only (sessions, fork).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

PRELOAD = (
    "gsreg",  # first: it sets the OpenMP wait policy before torch loads, as for a user
    "torch",
    "numpy",
    "scipy.sparse",
    "sklearn.datasets",
    "sklearn.linear_model",
    "matplotlib.pyplot",
    "gsreg.graphs",
    "gsreg.penalty",
    "gsreg.regularizer",
    "gsreg.coactivation",
    "gsreg.models",
    "gsreg.training",
    "gsreg.analysis",
    "gsreg.plotting",
    "gsreg.report",
    "gsreg.io",
    "gsreg.datasets",
    "gsreg.placement",
    "gsreg.estimators",
)


def _child(request: dict, env: dict) -> int:
    """Runs the block in this (forked or fresh) process; returns the exit status."""
    import atexit
    import traceback

    try:
        os.setsid()
    except OSError:  # already a session leader (--one)
        pass
    os.environ.update(env)
    os.chdir(request["cwd"])
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    null = os.open(os.devnull, os.O_RDONLY)  # the protocol's stdin is not the block's
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = open(os.devnull)  # noqa: SIM115
    sys.stdout = sys.__stdout__  # the server pointed it at stderr; fd 1 is the log now
    sys.argv = list(request["argv"])
    sys.path[0] = os.getcwd()  # as for a script in this folder: not the tests' folder
    source = "\n" * (request["line"] - 1) + request["code"]  # line numbers as in the file
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    status = 0
    try:
        exec(compile(source, request["filename"], "exec"), namespace)
    except SystemExit as stop:
        if stop.code is None:
            status = 0
        elif isinstance(stop.code, int):
            status = stop.code
        else:
            print(stop.code, file=sys.stderr)
            status = 1
    except BaseException as error:  # as the interpreter prints it, without this frame
        traceback.print_exception(type(error), error, error.__traceback__.tb_next)
        status = 1
    atexit._run_exitfuncs()  # tempfile clean-ups and the like, as at interpreter exit
    sys.stdout.flush()
    sys.stderr.flush()
    return status


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


def _start(request: dict, env: dict, fork: bool) -> int:
    """The pid of a new process running the block."""
    if fork:
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                status = _child(request, env)
            finally:
                os._exit(status)
        return pid
    import subprocess

    fresh = subprocess.Popen(
        [sys.executable, __file__, "--one", json.dumps(request), json.dumps(env)],
        start_new_session=True,
    )
    fresh.returncode = 0  # reaped with os.wait4 by _run, not by Popen
    return fresh.pid


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)  # the block and whatever it started
    except ProcessLookupError:
        pass


def _run(request: dict) -> dict:
    import importlib

    for name in request.get("preload", ()):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the block reports it when it imports the module
            pass
    open(request["log"], "wb").close()
    start = time.monotonic()
    fork = sys.platform.startswith("linux") and _threads() == 1  # macOS: fork is unsafe
    running = {_start(request, env, fork) for env in request.get("ranks") or [{}]}
    deadline = start + request["timeout"]
    codes: list[int] = []
    cpu = 0.0
    timed_out = False
    while running:
        for pid in list(running):
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                running.discard(pid)
                codes.append(os.waitstatus_to_exitcode(status))
                cpu += usage.ru_utime + usage.ru_stime  # with the processes it waited for
        failed = any(code != 0 for code in codes)
        over = time.monotonic() > deadline
        if running and (failed or over):
            timed_out = not failed
            for pid in running:
                _kill(pid)
            for pid in running:
                _, status, usage = os.wait4(pid, 0)
                cpu += usage.ru_utime + usage.ru_stime
            break
        time.sleep(0.02)
    failures = [code for code in codes if code != 0]
    return {
        "rc": failures[0] if failures else -signal.SIGKILL if timed_out else 0,
        "timed_out": timed_out,
        "seconds": time.monotonic() - start,
        "cpu_seconds": cpu,
        "forked": fork,
    }


def main() -> None:
    import importlib

    if sys.argv[1:2] == ["--one"]:
        sys.exit(_child(json.loads(sys.argv[2]), json.loads(sys.argv[3])))
    for name in PRELOAD:
        importlib.import_module(name)
    protocol = sys.stdout
    sys.stdout = sys.stderr  # nothing but answers goes to the protocol stream
    protocol.write(json.dumps({"ready": True}) + "\n")
    protocol.flush()
    for line in sys.stdin:
        protocol.write(json.dumps(_run(json.loads(line))) + "\n")
        protocol.flush()


if __name__ == "__main__":
    main()
