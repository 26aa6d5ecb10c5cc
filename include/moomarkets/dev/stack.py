"""Local stack for `make run` / `make stop`: embedded PostgreSQL, Airflow 3 components, the example.

    python -m moomarkets.dev.stack up      # set up everything, start Airflow, run the example group
    python -m moomarkets.dev.stack down    # stop every process it started (no orphans)
    python -m moomarkets.dev.stack status
    python -m moomarkets.dev.stack env     # print the environment (source it to use `airflow`/`moomarkets`)

Everything lives under ``.local/`` in the project. Each Airflow component runs in its own process
group so stopping kills its children too (LocalExecutor workers ignore SIGTERM once orphaned);
the scheduler is stopped first, as its workers then exit on their own.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
LOCAL = Path(os.environ.get("MOOMARKETS_LOCAL_DIR", ROOT / ".local"))
PG_PORT = int(os.environ.get("MOOMARKETS_PG_PORT", "54329"))
API_PORT = int(os.environ.get("MOOMARKETS_API_PORT", "8080"))
FAKE_PORT = int(os.environ.get("MOOMARKETS_FAKE_JQUANTS_PORT", "8765"))
EXAMPLE = ROOT / "include" / "moomarkets" / "examples" / "example.yaml"
EXAMPLE_GROUP = "jp_daily_quotes"
# stop order: scheduler first (its LocalExecutor workers exit with it), the rest after
COMPONENTS = ["scheduler", "dag-processor", "triggerer", "api-server"]
BIN = Path(sys.executable).parent


def _secrets() -> dict[str, str]:
    path = LOCAL / "secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    LOCAL.mkdir(parents=True, exist_ok=True)
    data = {
        "jwt_secret": secrets.token_urlsafe(64),
        "api_secret_key": secrets.token_urlsafe(32),
        "admin_password": secrets.token_urlsafe(12),
        "fake_api_key": "fake-" + secrets.token_hex(8),
    }
    path.write_text(json.dumps(data))
    path.chmod(0o600)
    return data


def stack_env() -> dict[str, str]:
    s = _secrets()
    home = LOCAL / "airflow"
    pw_file = home / "passwords.json"
    home.mkdir(parents=True, exist_ok=True)
    if not pw_file.exists():
        pw_file.write_text(json.dumps({"admin": s["admin_password"]}))
        pw_file.chmod(0o600)
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg://postgres@127.0.0.1:{PG_PORT}/airflow",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(pw_file),
        "AIRFLOW__API_AUTH__JWT_SECRET": s["jwt_secret"],
        "AIRFLOW__API__SECRET_KEY": s["api_secret_key"],
        "AIRFLOW__API__BASE_URL": f"http://localhost:{API_PORT}",
        "AIRFLOW__API__PORT": str(API_PORT),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{API_PORT}/execution/",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "20",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "20",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "MOOMARKETS_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{PG_PORT}/moomarkets",
        "MOOMARKETS_SNAPSHOT_PATH": str(home / "moomarkets" / "config_snapshot.json"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return env


def _env() -> dict[str, str]:
    return {**os.environ, **stack_env()}


def _pg():
    from moomarkets.dev.localpg import LocalPostgres

    return LocalPostgres(LOCAL / "pg" / "data", PG_PORT)


def _run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=_env(), check=True, text=True, **kw)


def _pidfile(name: str) -> Path:
    return LOCAL / "pids" / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start(name: str, cmd: list[str]) -> int:
    pidfile = _pidfile(name)
    if pidfile.exists() and _alive(int(pidfile.read_text())):
        return int(pidfile.read_text())
    (LOCAL / "logs").mkdir(parents=True, exist_ok=True)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    log = open(LOCAL / "logs" / f"{name}.log", "ab")
    proc = subprocess.Popen(cmd, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
    pidfile.write_text(str(proc.pid))
    return proc.pid


def _stop(name: str, grace: float = 15.0) -> None:
    pidfile = _pidfile(name)
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pidfile.unlink(missing_ok=True)
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.2)
    if _group_alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    pidfile.unlink(missing_ok=True)
    print(f"stopped {name}")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _wait_http(url: str, timeout: float) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s (see {LOCAL / 'logs'})")


def _configure_connection(env: dict[str, str]) -> str:
    """jquants_default: the real API when JQUANTS_API_KEY is set, else the local FAKE server."""
    key = os.environ.get("JQUANTS_API_KEY")
    if key:
        conn = {"conn_type": "jquants", "password": key, "description": "J-Quants API v2 (real)"}
        mode = "REAL J-Quants API v2 (https://api.jquants.com/v2, key from $JQUANTS_API_KEY)"
    else:
        _start("fake-jquants", [str(BIN / "python"), "-m", "moomarkets.testing.jquants_fake", "--port", str(FAKE_PORT),
                                "--api-key", _secrets()["fake_api_key"]])
        _wait_http(f"http://127.0.0.1:{FAKE_PORT}/docs", 30)
        conn = {
            "conn_type": "jquants",
            "host": f"http://127.0.0.1:{FAKE_PORT}/v2",
            "password": _secrets()["fake_api_key"],
            "description": "LOCAL FAKE J-Quants v2 server (synthetic data) - set JQUANTS_API_KEY for the real API",
        }
        mode = f"LOCAL FAKE J-Quants v2 server at http://127.0.0.1:{FAKE_PORT}/v2 (synthetic data; no key set)"
    subprocess.run([str(BIN / "airflow"), "connections", "delete", "jquants_default"], env=env,
                   capture_output=True, text=True)
    _run([str(BIN / "airflow"), "connections", "add", "jquants_default", "--conn-json", json.dumps(conn)],
         capture_output=True)
    return mode


class Api:
    """The few Airflow REST calls the example needs (token from the simple auth manager)."""

    def __init__(self) -> None:
        import requests

        self.base = f"http://localhost:{API_PORT}"
        self.http = requests.Session()
        r = self.http.post(f"{self.base}/auth/token",
                           json={"username": "admin", "password": _secrets()["admin_password"]}, timeout=10)
        r.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

    def get(self, path: str) -> Any:
        r = self.http.get(f"{self.base}/api/v2{path}", timeout=10)
        r.raise_for_status()
        return r.json()

    def send(self, method: str, path: str, body: dict) -> Any:
        r = self.http.request(method, f"{self.base}/api/v2{path}", json=body, timeout=10)
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r.json()


def up(args: argparse.Namespace) -> int:
    env = _env()
    pg = _pg()
    print(f"[1/6] embedded PostgreSQL on 127.0.0.1:{PG_PORT} ({pg.pgdata})")
    pg.start()
    pg.create_database("moomarkets")
    pg.create_database("airflow")
    print("[2/6] migrations: Airflow metadata DB and the MooMarkets warehouse")
    _run([str(BIN / "airflow"), "db", "migrate"], capture_output=True)
    _run([str(BIN / "moomarkets"), "db", "upgrade"])
    print("[3/6] example data sources and job groups, their pools")
    _run([str(BIN / "moomarkets"), "import", str(EXAMPLE)])
    _run([str(BIN / "moomarkets"), "pools", "check"])  # every source has its pool, sized from config
    mode = _configure_connection(env)
    print(f"      jquants_default -> {mode}")
    print("[4/6] starting Airflow: scheduler, dag-processor, triggerer, api-server")
    for name in COMPONENTS:
        _start(name, [str(BIN / "airflow"), *name.split()])
    _wait_http(f"http://localhost:{API_PORT}/api/v2/monitor/health", 180)
    api = Api()
    print(f"[5/6] waiting for DAG {EXAMPLE_GROUP} to be parsed, then triggering it")
    deadline = time.monotonic() + 180
    while True:
        try:
            api.get(f"/dags/{EXAMPLE_GROUP}")
            break
        except Exception:  # noqa: BLE001 - not parsed yet
            if time.monotonic() > deadline:
                raise RuntimeError(f"DAG {EXAMPLE_GROUP} not parsed after 180 s; see {LOCAL / 'logs'}/dag-processor.log")
            time.sleep(2)
    api.send("PATCH", f"/dags/{EXAMPLE_GROUP}", {"is_paused": False})
    from datetime import datetime, timezone

    run = api.send("POST", f"/dags/{EXAMPLE_GROUP}/dagRuns",
                   {"logical_date": datetime.now(timezone.utc).isoformat(), "note": "moomarkets devstack example"})
    run_id = run["dag_run_id"]
    print(f"      run {run_id}: data interval {run.get('data_interval_start')} .. {run.get('data_interval_end')}")
    deadline = time.monotonic() + args.timeout
    state = run["state"]
    while state not in ("success", "failed"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} still {state} after {args.timeout} s")
        time.sleep(3)
        state = api.get(f"/dags/{EXAMPLE_GROUP}/dagRuns/{run_id}")["state"]
    print(f"[6/6] run {state}")
    _report(run_id)
    print(f"\nAirflow UI: http://localhost:{API_PORT}   login: admin / {_secrets()['admin_password']}")
    print(f"J-Quants:   {mode}")
    print("Stop everything with: make stop")
    return 0 if state == "success" else 1


def _report(run_id: str) -> None:
    import psycopg
    from psycopg import sql

    from moomarkets.warehouse.datasets import DATASETS

    with psycopg.connect(stack_env()["MOOMARKETS_DATABASE_URL"]) as conn:
        print("\nrows loaded, per dataset (every group that has run so far):")
        for name, ds in DATASETS.items():
            n, sources = conn.execute(
                sql.SQL("SELECT count(*), string_agg(DISTINCT source, ',') FROM {}").format(sql.Identifier(ds.table))
            ).fetchone()
            print(f"  {name:<18} {n:>8} rows   sources: {sources or '-'}")
        row = conn.execute(
            "SELECT status, units_total, units_failed, rows_loaded FROM runs WHERE run_id = %s", (run_id,)
        ).fetchone()
        if row:
            print(f"  example run {EXAMPLE_GROUP}: status={row[0]} units={row[1]} failed={row[2]} rows={row[3]}")


def down(args: argparse.Namespace) -> int:
    for name in COMPONENTS + ["fake-jquants"]:
        _stop(name)
    _pg().stop()
    print("stopped PostgreSQL")
    return 0


def status(args: argparse.Namespace) -> int:
    for name in COMPONENTS + ["fake-jquants"]:
        pidfile = _pidfile(name)
        state = "running" if pidfile.exists() and _alive(int(pidfile.read_text())) else "stopped"
        print(f"{name:<14} {state}")
    print(f"{'postgres':<14} {'running' if _pg().is_running() else 'stopped'}")
    return 0


def env_cmd(args: argparse.Namespace) -> int:
    for k, v in stack_env().items():
        print(f"export {k}={shlex.quote(v)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m moomarkets.dev.stack")
    sub = p.add_subparsers(dest="cmd", required=True)
    x = sub.add_parser("up"); x.add_argument("--timeout", type=float, default=600); x.set_defaults(func=up)
    sub.add_parser("down").set_defaults(func=down)
    sub.add_parser("status").set_defaults(func=status)
    sub.add_parser("env").set_defaults(func=env_cmd)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
