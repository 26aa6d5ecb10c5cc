"""Processes of the local stack: start components, stop them, and find whatever they left behind.

Each component runs in its own session and process group, so stopping it by group also ends its
children. That is not enough for Airflow: the LocalExecutor's task supervisor forks each task
runner into a process group of its own, and a task may start processes in new sessions; when the
scheduler goes, those are reparented to init and keep running. :func:`leftovers` finds them by

- ancestry: a :func:`snapshot` of the components' process trees taken before stopping them;
- working directory: components start in the stack's AIRFLOW_HOME and what they fork stays there;
- environment: every component carries ``MARKER=<local dir>``, which exec'd children inherit
  (``/proc/<pid>/environ`` alone is not enough: ``setproctitle``, which Airflow's workers, task
  runners and api-server call, blanks that area; processes started before the marker existed
  are matched by ``AIRFLOW_HOME`` instead).

Processes with a controlling terminal are never matched by ``AIRFLOW_HOME`` or working directory:
a developer's shell that sourced ``stack env`` or sits in ``.local/`` is not part of the stack.
Zombies count as gone (init here may reap them late; they hold no resources but their pid).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

MARKER = "MOOMARKETS_DEV_STACK"
PROC = Path("/proc")


# -- /proc -------------------------------------------------------------------------------------
def _stat(pid: int) -> tuple[str, int, int, int, int, int] | None:
    """(state, ppid, pgrp, session, tty_nr, starttime) of ``pid``, or None when it does not exist."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    f = raw[raw.rindex(")") + 2:].split()  # the command name may contain spaces and ')'
    return f[0], int(f[1]), int(f[2]), int(f[3]), int(f[4]), int(f[19])


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def _cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(PROC / str(pid) / "cwd"))
    except OSError:
        return None


def _pids() -> list[int]:
    return [int(p.name) for p in PROC.iterdir() if p.name.isdigit()]


def alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def group_alive(pgid: int) -> bool:
    return any(st[2] == pgid for st in _live().values())


def _ancestors() -> set[int]:
    """This process and its ancestors: never ours to kill (`make stop` may run in a stack env)."""
    out, pid = set(), os.getpid()
    while pid > 1 and pid not in out:
        out.add(pid)
        st = _stat(pid)
        pid = st[1] if st else 0
    return out


def _under(path: Path | None, root: Path) -> bool:
    return path is not None and (path == root or root in path.parents)


def workdir(local: Path) -> Path:
    """Where components run: the stack's AIRFLOW_HOME (forked task runners stay there)."""
    return local / "airflow"


def _owned(pid: int, local: Path, tty: int = 0) -> bool:
    """Started by the stack in ``local``: marked, or (with no controlling terminal) having its
    AIRFLOW_HOME in the environment or a working directory under :func:`workdir`."""
    env = _environ(pid)
    if env.get(MARKER) == str(local):
        return True
    home = workdir(local)
    return tty == 0 and (env.get("AIRFLOW_HOME") == str(home) or _under(_cwd(pid), home))


def _live() -> dict[int, tuple[str, int, int, int, int, int]]:
    return {pid: st for pid in _pids() if (st := _stat(pid)) and st[0] not in ("Z", "X")}


def snapshot(roots: list[int]) -> set[tuple[int, int]]:
    """(pid, start time) of ``roots`` and all their descendants, to find them once orphaned."""
    live = _live()
    children: dict[int, list[int]] = {}
    for pid, st in live.items():
        children.setdefault(st[1], []).append(pid)
    out, todo = set(), [r for r in roots if r in live]
    while todo:
        pid = todo.pop()
        if (pid, live[pid][5]) not in out:
            out.add((pid, live[pid][5]))
            todo.extend(children.get(pid, []))
    return out


def leftovers(local: Path, *, cwd_roots: tuple[Path, ...] = (), known: set[tuple[int, int]] = frozenset(),
              skip_groups: set[int] = frozenset()) -> list[int]:
    """Live processes of the stack in ``local``: those in ``known`` (a :func:`snapshot`), owned ones
    (see :func:`_owned`), those without a terminal whose working directory is under ``cwd_roots``,
    and every member of a process group or session one of them leads; none in ``skip_groups``."""
    skip = _ancestors()
    live = {pid: st for pid, st in _live().items() if pid not in skip}
    ours = {pid for pid, st in live.items() if (pid, st[5]) in known}
    for pid, st in live.items():
        if _owned(pid, local, st[4]) or (st[4] == 0 and any(_under(_cwd(pid), r) for r in cwd_roots)):
            ours.add(pid)
    ours |= {pid for pid, st in live.items() if st[2] in ours or st[3] in ours}
    return sorted(pid for pid in ours if live[pid][2] not in skip_groups)


TERM = ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0))
# Airflow's own escalation for a task: SIGINT fails it at once; its runner only calls the
# operator's on_kill() on SIGTERM and keeps running, so SIGKILL must follow.
TASK = ((signal.SIGINT, 5.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0))


def terminate(pids: list[int], steps: tuple[tuple[int, float], ...] = TERM) -> list[int]:
    """Send each (signal, wait) step to the live ``pids`` in turn; returns any survivors."""
    for sig, wait in steps:
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + wait
        while (pids := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not pids:
            break
    return pids


# -- components (one pid file each) -------------------------------------------------------------
def pidfile(local: Path, name: str) -> Path:
    return local / "pids" / f"{name}.pid"


def _started_at(starttime: int) -> float:
    """Epoch seconds of a /proc start time (clock ticks after boot)."""
    btime = next(int(line.split()[1]) for line in (PROC / "stat").read_text().splitlines() if line.startswith("btime"))
    return btime + starttime / os.sysconf("SC_CLK_TCK")


def running_pid(local: Path, name: str) -> int | None:
    """The component's pid while it runs; a process that started after the pid file was written
    merely reused the number."""
    path = pidfile(local, name)
    try:
        pid, written = int(path.read_text()), path.stat().st_mtime
    except (OSError, ValueError):
        return None
    st = _stat(pid)
    return pid if st and st[0] not in ("Z", "X") and _started_at(st[5]) <= written + 1 else None


def start(local: Path, name: str, cmd: list[str], *, env: dict[str, str]) -> int:
    """Start ``cmd`` in :func:`workdir`, in a new session (its own process group), unless it runs."""
    pid = running_pid(local, name)
    if pid:
        return pid
    (local / "logs").mkdir(parents=True, exist_ok=True)
    pidfile(local, name).parent.mkdir(parents=True, exist_ok=True)
    with open(local / "logs" / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(cmd, env={**env, MARKER: str(local)}, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=workdir(local))
    pidfile(local, name).write_text(str(proc.pid))
    return proc.pid


def stop(local: Path, names: list[str], grace: float = 15.0) -> list[str]:
    """SIGTERM the components' process groups, wait up to ``grace`` seconds, then SIGKILL them;
    returns the names of those that were running."""
    groups = {name: pid for name in names if (pid := running_pid(local, name))}
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pgid in groups.values():
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + wait
        while any(group_alive(g) for g in groups.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not any(group_alive(g) for g in groups.values()):
            break
    for name in names:
        pidfile(local, name).unlink(missing_ok=True)
    return list(groups)
