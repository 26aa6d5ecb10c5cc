"""A throwaway Airflow stack in a temporary directory, for the benchmarks and the scale-out demo.

The pieces both share: the environment of Airflow components on free ports against an embedded
PostgreSQL (metadata DB ``airflow``, warehouse ``moomarkets``), a bounded wait that notices a
component dying, and an orderly stop that leaves no process behind.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any, Callable

from moomarkets.dev import processes as procs

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def airflow_env(
    local: Path, *, pg_port: int, api_port: int, executor: str, jwt_secret: str, min_file_process_interval: int,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Environment of every component of one throwaway stack (all must share ``jwt_secret``)."""
    home = procs.workdir(local)
    home.mkdir(parents=True, exist_ok=True)
    passwords = home / "passwords.json"
    if not passwords.exists():
        passwords.write_text(json.dumps({"admin": secrets.token_urlsafe(12)}))
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": executor,
        "AIRFLOW__CORE__PARALLELISM": "16",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg://postgres@127.0.0.1:{pg_port}/airflow",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
        "AIRFLOW__API__SECRET_KEY": "throwaway-" + secrets.token_hex(16),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{api_port}",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{api_port}/execution/",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(min_file_process_interval),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "MOOMARKETS_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{pg_port}/moomarkets",
        "MOOMARKETS_SNAPSHOT_PATH": str(home / "moomarkets" / "config_snapshot.json"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **(extra or {}),
    }


def wait_until(local: Path, names: list[str], what: str, check: Callable[[], Any], timeout: float,
               every: float = 0.5) -> Any:
    """``check()``'s first truthy value; fails at once when a component died, or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in names:
            if not procs.running_pid(local, name):
                raise RuntimeError(f"{name} exited while waiting for {what}; see {local / 'logs' / (name + '.log')}")
        try:
            value = check()
            if value:
                return value
        except Exception:  # noqa: BLE001 - not ready yet
            pass
        time.sleep(every)
    raise RuntimeError(f"{what} not done after {timeout:.0f} s; logs in {local / 'logs'}")


def stop_all(local: Path, names: list[str], *, first: Callable[[str], bool], pg: Any = None) -> list[int]:
    """Stop the components (``first`` ones before the rest), PostgreSQL, then anything of the stack
    left behind; returns the pids still alive (none, when all went well)."""
    running = [pid for n in names if (pid := procs.running_pid(local, n))]
    tree = procs.snapshot(running)
    procs.stop(local, [n for n in names if first(n)])
    procs.stop(local, [n for n in names if not first(n)])
    procs.terminate(procs.leftovers(local, known=tree))
    if pg is not None:
        pg.stop()
    procs.terminate(procs.leftovers(local, cwd_roots=(local,)))
    return [p for p in procs.leftovers(local, cwd_roots=(local,), known=tree) if procs.alive(p)]
