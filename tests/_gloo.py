"""Running a function in WORLD_SIZE CPU processes on the gloo backend, for the tests.

Why the rendezvous looks like this (the raw-DDP test used to hang intermittently):

- **No port is chosen in advance** (the likely cause of the hang; not reproduced in the
  test itself, but a shared port was shown to make one rank wait out the full timeout).
  The tests used to pick a "free" port (bind to port 0, close, pass the number on) and
  let rank 0 open the rendezvous store on it seconds later, after spawning and importing
  torch. In that window any other process (under ``pytest -n 2`` the other worker's gloo
  ranks open listeners and connections on ephemeral ports all the time) may take the
  port; and two tests may be handed the same number, so that one test's rank 1 joins the
  other test's store and its rank 0 waits for a peer that never comes. Here the test
  process itself opens the ``TCPStore`` on port 0 and keeps it listening until the ranks
  are done (as ``torchrun``'s agent does): the port is never free, so it cannot collide.
- **Nothing waits forever.** The ranks' collectives time out after ``COLLECTIVE_TIMEOUT``;
  a rank that dies makes ``join`` raise at once (torch then terminates the others); and a
  test whose ranks are not done by ``deadline`` kills and reaps them and fails.
- **The process group is always destroyed** (``worker_group``'s ``finally``), so a rank
  that fails leaves no gloo threads behind it.
- **Spawned ranks import little.** A worker function must live in a module that imports
  only torch and gsreg (``_ddp_workers``, ``_gloo``, ``test_distributed``): spawning
  re-imports the worker's module in every rank, and importing Lightning there cost each
  rank seconds on a loaded machine.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD_SIZE = 2
HOST = "127.0.0.1"
# a collective that waits longer than this raises in the ranks (the test then fails)
COLLECTIVE_TIMEOUT = timedelta(seconds=60)
# the whole run, spawning and importing included: two loaded cores shared with others
DEADLINE_S = 180.0


def open_store() -> dist.TCPStore:
    """A rendezvous store served by this process on a port the kernel picks
    (``store.port``); it listens as long as the object lives."""
    return dist.TCPStore(HOST, 0, WORLD_SIZE, True, COLLECTIVE_TIMEOUT, wait_for_workers=False)


def use_store_for_env_rendezvous(monkeypatch: pytest.MonkeyPatch, store: dist.TCPStore) -> None:
    """Make ``init_process_group(init_method="env://")`` in child processes (Lightning's
    ranks) join ``store`` as clients, as torchrun's workers join the agent's store,
    instead of rank 0 opening a store on a port chosen in advance."""
    monkeypatch.setenv("MASTER_ADDR", HOST)
    monkeypatch.setenv("MASTER_PORT", str(store.port))
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")


def run_workers(fn: Callable, args: tuple, *, deadline_s: float = DEADLINE_S) -> None:
    """Run ``fn(rank, port, *args)`` in WORLD_SIZE spawned processes; ``port`` is the port
    of a store this process holds open until they are done. Fails the test when a rank
    raises or when they are not done within ``deadline_s``."""
    store = open_store()
    context = mp.start_processes(
        fn, args=(store.port, *args), nprocs=WORLD_SIZE, join=False, start_method="spawn"
    )
    try:
        deadline = time.monotonic() + deadline_s
        while not context.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail(f"distributed workers did not finish within {deadline_s:.0f} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
            process.join()
        del store


@contextlib.contextmanager
def worker_group(rank: int, port: int) -> Iterator[None]:
    """In a spawned rank: join the gloo process group through the test's store, and
    destroy the group on the way out, also when the body raises."""
    torch.set_num_threads(1)
    # gloo otherwise connects the ranks on the address the host name resolves to, which in
    # some containers is not this machine's; the ranks here are all on the loopback
    loopback = [name for _, name in socket.if_nameindex() if name.startswith("lo")]
    if loopback:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", loopback[0])
    store = dist.TCPStore(HOST, port, WORLD_SIZE, False, COLLECTIVE_TIMEOUT)
    dist.init_process_group(
        "gloo", store=store, rank=rank, world_size=WORLD_SIZE, timeout=COLLECTIVE_TIMEOUT
    )
    try:
        yield
    finally:
        dist.destroy_process_group()
