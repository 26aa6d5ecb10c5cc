"""The local stack's process helpers (moomarkets.dev.processes), on real processes, in seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from moomarkets.dev import processes as procs

# A "component" that, like the scheduler's task supervisor, forks a runner into a process group of
# its own; the runner starts a child in a new session with an empty environment (no marker).
COMPONENT = r"""
import os, subprocess, sys, time
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    child = subprocess.Popen(["sleep", "120"], env={}, start_new_session=True)
    open(sys.argv[1] + ".tmp", "w").write(f"{os.getpid()} {child.pid}")
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(120)
    os._exit(0)
time.sleep(120)
"""


def _wait_for(path: Path, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} not written"
        time.sleep(0.05)
    return path.read_text()


def test_stop_by_group_misses_orphans_that_leftovers_finds(tmp_path):
    local = tmp_path.resolve()
    procs.workdir(local).mkdir()
    flag = tmp_path / "runner"
    pid = procs.start(local, "component", [sys.executable, "-c", COMPONENT, str(flag)], env=dict(os.environ))
    runner, child = map(int, _wait_for(flag).split())
    try:
        assert procs.running_pid(local, "component") == pid
        assert set(procs.leftovers(local)) >= {pid, runner, child}
        tree = procs.snapshot([pid])

        assert procs.stop(local, ["component"], grace=5) == ["component"]
        assert not procs.alive(pid)
        assert procs.alive(runner) and procs.alive(child)  # what `make stop` used to leave behind

        found = procs.leftovers(local, known=tree)
        assert {runner, child} <= set(found)
        assert procs.terminate(found, ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0))) == []
        assert not procs.alive(runner) and not procs.alive(child)
        assert procs.leftovers(local) == []
    finally:
        for p in (pid, runner, child):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_leftovers_never_lists_the_caller_or_its_parents(tmp_path):
    local = tmp_path.resolve()
    procs.workdir(local).mkdir()
    # `make stop` may run in a shell that sourced the stack's env; even with every directory
    # counted as the stack's, the caller and its parents are not
    assert not set(procs.leftovers(local, cwd_roots=(Path("/"),))) & {os.getpid(), os.getppid()}


def test_running_pid_ignores_a_reused_pid(tmp_path):
    local = tmp_path.resolve()
    path = procs.pidfile(local, "api-server")
    path.parent.mkdir(parents=True)
    proc = subprocess.Popen(["sleep", "30"])
    try:
        path.write_text(str(proc.pid))
        assert procs.running_pid(local, "api-server") == proc.pid
        old = time.time() - 3600  # the pid file is older than the process: the number was reused
        os.utime(path, (old, old))
        assert procs.running_pid(local, "api-server") is None
        assert procs.stop(local, ["api-server"]) == []
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
