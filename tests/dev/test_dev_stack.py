"""The local stack end to end: `make run` runs the example group once, `make stop` leaves nothing.

Starts the real stack (``python -m moomarkets.dev.stack up``: embedded PostgreSQL, scheduler with
the LocalExecutor, dag-processor, triggerer, api-server, fake J-Quants) in a temporary
MOOMARKETS_LOCAL_DIR on free ports. Its DAG folder holds the project's group DAGs plus a sleeper
whose task starts a child in a session of its own and then sleeps. The stack is stopped while
that task runs; afterwards no process may have the stack's AIRFLOW_HOME in its environment or a
working directory under the local dir.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
from moomarkets.dev.localpg import free_port

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]
STACK = [sys.executable, "-m", "moomarkets.dev.stack"]

SLEEPER_DAG = '''
import json, os, subprocess, time

import pendulum
from airflow.sdk import dag, task

FLAG = {flag!r}


@dag(dag_id="devstack_sleeper", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
     catchup=False, is_paused_upon_creation=False)
def devstack_sleeper():
    @task
    def sleep():
        child = subprocess.Popen(["sleep", "600"], start_new_session=True)
        with open(FLAG + ".tmp", "w") as f:
            json.dump({{"task": os.getpid(), "child": child.pid}}, f)
        os.replace(FLAG + ".tmp", FLAG)
        time.sleep(600)

    sleep()


devstack_sleeper()
'''


def _ancestors() -> set[int]:
    out, pid = set(), os.getpid()
    while pid > 1 and pid not in out:
        out.add(pid)
        status = Path(f"/proc/{pid}/status").read_text()
        pid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"  # a zombie is dead, init just has not reaped it


def stack_processes(local: Path) -> list[str]:
    """Live processes whose environment has the stack's AIRFLOW_HOME or whose cwd is under ``local``."""
    home = f"AIRFLOW_HOME={local / 'airflow'}".encode()
    skip = _ancestors()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip or not _alive(int(entry.name)):
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            env = []
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            cwd = None
        if home in env or (cwd is not None and (cwd == local or local in cwd.parents)):
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                cmd = "?"
            found.append(f"{entry.name} {cmd}")
    return found


class Api:
    def __init__(self, local: Path, port: int) -> None:
        self.base = f"http://localhost:{port}"
        password = json.loads((local / "secrets.json").read_text())["admin_password"]
        r = requests.post(f"{self.base}/auth/token", json={"username": "admin", "password": password}, timeout=10)
        r.raise_for_status()
        self.headers = {"Authorization": f"Bearer {r.json()['access_token']}"}

    def get(self, path: str) -> dict:
        r = requests.get(f"{self.base}/api/v2{path}", headers=self.headers, timeout=10)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: dict) -> dict:
        r = requests.post(f"{self.base}/api/v2{path}", json=body, headers=self.headers, timeout=10)
        assert r.status_code < 400, r.text
        return r.json()


def _wait(what: str, check, timeout: float, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except (requests.RequestException, OSError, ValueError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def _tail(local: Path, name: str) -> str:
    path = local / "logs" / f"{name}.log"
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def test_run_once_then_stop_ends_running_task(capsys):
    local = Path(tempfile.mkdtemp(prefix="moomarkets-devstack-")).resolve()
    dags = local / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "dags" / "moomarkets_groups.py", dags)
    flag = local / "sleeper.json"
    (dags / "devstack_sleeper.py").write_text(SLEEPER_DAG.format(flag=str(flag)))
    api_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MOOMARKETS_", "JQUANTS_"))}
    env.update(
        MOOMARKETS_LOCAL_DIR=str(local),
        MOOMARKETS_DAGS_FOLDER=str(dags),
        MOOMARKETS_PG_PORT=str(free_port()),
        MOOMARKETS_API_PORT=str(api_port),
        MOOMARKETS_FAKE_JQUANTS_PORT=str(free_port()),
    )
    stopped = False
    t0 = time.monotonic()
    try:
        up = subprocess.run([*STACK, "up", "--timeout", "150"], env=env, capture_output=True, text=True, timeout=300,
                            check=False)
        assert up.returncode == 0, f"{up.stdout[-3000:]}\n{up.stderr[-3000:]}\n{_tail(local, 'scheduler')}"
        t_up = time.monotonic() - t0

        api = Api(local, api_port)
        runs = api.get("/dags/jp_daily_quotes/dagRuns")["dag_runs"]
        assert len(runs) == 1, [(r["dag_run_id"], r["run_type"]) for r in runs]  # not scheduled + manual

        _wait("sleeper DAG parsed", lambda: api.get("/dags/devstack_sleeper"), 90)
        api.post("/dags/devstack_sleeper/dagRuns", {"logical_date": None})
        info = _wait("sleeper task running", lambda: flag.exists() and json.loads(flag.read_text()), 120)
        task_pid, child_pid = info["task"], info["child"]
        assert _alive(task_pid) and _alive(child_pid)
        assert os.getsid(child_pid) == child_pid  # the child is in a session of its own

        t1 = time.monotonic()
        down = subprocess.run([*STACK, "down"], env=env, capture_output=True, text=True, timeout=180, check=False)
        stopped = True
        assert down.returncode == 0, down.stdout + down.stderr
        t_down = time.monotonic() - t1

        assert not _alive(task_pid), f"task runner {task_pid} survived `down`:\n{down.stdout}"
        assert not _alive(child_pid), f"the task's child {child_pid} survived `down`:\n{down.stdout}"
        assert stack_processes(local) == []
        with capsys.disabled():
            print(f"\n  devstack: up {t_up:.0f} s, down {t_down:.0f} s, total {time.monotonic() - t0:.0f} s\n"
                  + down.stdout)
    finally:
        if not stopped:
            subprocess.run([*STACK, "down"], env=env, capture_output=True, timeout=180, check=False)
        from moomarkets.dev import processes

        processes.terminate(processes.leftovers(local, cwd_roots=(local,)))
        shutil.rmtree(local, ignore_errors=True)
