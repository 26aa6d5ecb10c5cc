"""Local stack for `make run` / `make stop`: embedded PostgreSQL, Airflow 3 components, the example.

    python -m moomarkets.dev.stack up      # set up everything, start Airflow, run the example group
    python -m moomarkets.dev.stack down    # stop every process it started (no orphans)
    python -m moomarkets.dev.stack status
    python -m moomarkets.dev.stack env     # print the environment (source it to use `airflow`/`moomarkets`)

Everything lives under ``.local/`` in the project (``MOOMARKETS_LOCAL_DIR``; ports from
``MOOMARKETS_PG_PORT``, ``MOOMARKETS_API_PORT``, ``MOOMARKETS_FAKE_JQUANTS_PORT``; the DAG folder
from ``MOOMARKETS_DAGS_FOLDER``). Each component runs in its own session and process group, in
AIRFLOW_HOME. ``down`` ends running tasks first (Airflow forks their runners into process groups
of their own, which stopping the scheduler's group would leave behind), then the components, the
scheduler first, then PostgreSQL, then anything of the stack still alive (see ``processes.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import subprocess
import tempfile
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from moomarkets.dev import processes as procs
from moomarkets.settings import DEFAULT_WAREHOUSE_CONN_ID

ROOT = Path(__file__).resolve().parents[3]
LOCAL = Path(os.environ.get("MOOMARKETS_LOCAL_DIR", ROOT / ".local")).resolve()
DAGS = Path(os.environ.get("MOOMARKETS_DAGS_FOLDER", ROOT / "dags")).resolve()
PG_PORT = int(os.environ.get("MOOMARKETS_PG_PORT", "54329"))
API_PORT = int(os.environ.get("MOOMARKETS_API_PORT", "8080"))
FAKE_PORT = int(os.environ.get("MOOMARKETS_FAKE_JQUANTS_PORT", "8765"))
EXAMPLE = ROOT / "include" / "moomarkets" / "examples" / "example.yaml"
EXAMPLE_GROUP = "jp_daily_quotes"
CALENDAR_GROUP = "jp_trading_calendar"  # the example group's upstream (depends_on in example.yaml)
# The warehouse reaches every component as the Airflow Connection moomarkets_warehouse (created by
# `up`, like a deployment's AIRFLOW_CONN_MOOMARKETS_WAREHOUSE); the URL is for the stack's own report.
WAREHOUSE_CONN_ID = DEFAULT_WAREHOUSE_CONN_ID
WAREHOUSE_URL = f"postgresql://postgres@127.0.0.1:{PG_PORT}/moomarkets"
# stop order: the scheduler first (no new task starts), the rest after
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
    home = procs.workdir(LOCAL)  # AIRFLOW_HOME, also the components' working directory
    pw_file = home / "passwords.json"
    home.mkdir(parents=True, exist_ok=True)
    if not pw_file.exists():
        pw_file.write_text(json.dumps({"admin": s["admin_password"]}))
        pw_file.chmod(0o600)
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
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


def _start(name: str, cmd: list[str]) -> int:
    return procs.start(LOCAL, name, cmd, env=_env())


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
    _import_connection(env, "jquants_default", conn)
    return mode


def _import_connection(env: dict[str, str], conn_id: str, conn: dict[str, Any]) -> None:
    """Create or replace an Airflow connection in the metadata DB."""
    subprocess.run([str(BIN / "airflow"), "connections", "delete", conn_id], env=env, check=False,
                   capture_output=True, text=True)
    # Through a private file, not argv: a key on the command line is visible in `ps` and in errors.
    with tempfile.TemporaryDirectory(prefix="moomarkets-conn-") as tmp:
        path = Path(tmp) / "connections.json"
        path.write_text(json.dumps({conn_id: conn}))
        path.chmod(0o600)
        _run([str(BIN / "airflow"), "connections", "import", str(path)], capture_output=True)


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


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _example_run(api: Api, since: datetime) -> dict:
    """The one run of the example group that this ``up`` follows (it must not run twice).

    An unpaused group's DAG gets a scheduled run for its latest data interval from the scheduler
    (catchup is off; enabled groups are even unpaused when first parsed). A manual run triggered
    on top covers the same interval and did the work a second time. So: unpause, and while a
    scheduled run is due, let the scheduler create it; follow a run created since ``up`` started.
    Only when there is none (the latest interval already ran, e.g. a second ``make run``) trigger
    a manual run; nothing is due then, so it is the only one.
    """
    path = f"/dags/{EXAMPLE_GROUP}"
    deadline = time.monotonic() + 120  # the scheduler may hold a due run back (max_active_runs)
    while time.monotonic() < deadline:
        dag = api.get(path)
        if dag["is_paused"]:
            api.send("PATCH", path, {"is_paused": False})
            continue
        due = dag.get("next_dagrun_run_after")
        if not due or _ts(due) > datetime.now(UTC):
            break
        time.sleep(2)
    else:
        raise RuntimeError(
            f"the scheduler has not created the due run of {EXAMPLE_GROUP} within 120 s (is an older run still "
            "active?); not triggering a second run of the same interval: see the grid in the Airflow UI"
        )
    runs = api.get(f"{path}/dagRuns?order_by=-id&limit=20")["dag_runs"]
    fresh = [r for r in runs if r.get("queued_at") and _ts(r["queued_at"]) >= since]
    if fresh:
        return fresh[-1]  # the first one created since `up` started
    return api.send("POST", f"{path}/dagRuns", {"logical_date": datetime.now(UTC).isoformat(),
                                                "note": "moomarkets devstack example"})


def _load_calendar() -> None:
    """Queue one history run of the trading calendar over the last week before following the
    example run: the example group depends on the calendar, so its run loads a day only once a
    successful calendar run covered that day. The calendar's own scheduled run covers from the day
    before it on (plus the year ahead), which on a Monday morning misses Friday's bars; the last
    week (and the year ahead it loads too) covers whatever the latest bars interval is."""
    today = datetime.now(UTC).date()
    print(f"      {CALENDAR_GROUP} (upstream of {EXAMPLE_GROUP}): one history run of the last week first")
    _run([str(BIN / "moomarkets"), "backfill", CALENDAR_GROUP, "--history",
          "--from", (today - timedelta(days=8)).isoformat(), "--to", (today - timedelta(days=1)).isoformat()],
         capture_output=True)


def up(args: argparse.Namespace) -> int:
    since = datetime.now(UTC)
    env = _env()
    pg = _pg()
    print(f"[1/6] embedded PostgreSQL on 127.0.0.1:{PG_PORT} ({pg.pgdata})")
    pg.start()
    pg.create_database("moomarkets")
    pg.create_database("airflow")
    print("[2/6] migrations: Airflow metadata DB and the MooMarkets warehouse")
    _run([str(BIN / "airflow"), "db", "migrate"], capture_output=True)
    # from here on every `moomarkets` command, task and page finds the warehouse through this connection
    _import_connection(env, WAREHOUSE_CONN_ID, {
        "conn_type": "postgres", "host": "127.0.0.1", "port": PG_PORT, "login": "postgres", "schema": "moomarkets",
        "description": "MooMarkets warehouse (local embedded PostgreSQL)"})
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
    print(f"[5/6] waiting for DAG {EXAMPLE_GROUP} to be parsed, then for its run of the latest interval")
    deadline = time.monotonic() + 180
    while True:
        try:
            api.get(f"/dags/{EXAMPLE_GROUP}")
            break
        except Exception:  # noqa: BLE001 - not parsed yet
            if time.monotonic() > deadline:
                raise RuntimeError(f"DAG {EXAMPLE_GROUP} not parsed after 180 s; see {LOCAL / 'logs'}/dag-processor.log")
            time.sleep(2)
    _load_calendar()
    run = _example_run(api, since)
    run_id = run["dag_run_id"]
    print(f"      {run['run_type']} run {run_id}: data interval "
          f"{run.get('data_interval_start')} .. {run.get('data_interval_end')}")
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
    from moomarkets.warehouse import db, queries

    with db.connect(WAREHOUSE_URL) as conn:
        print("\nrows loaded, per dataset (every group that has run so far):")
        for row in queries.dataset_totals(conn):
            print(f"  {row['dataset']:<18} {row['rows']:>8} rows   sources: {','.join(row['sources']) or '-'}")
        for r in queries.group_runs(conn, EXAMPLE_GROUP, limit=20, units_per_run=0):
            if r["run_id"] == run_id:
                print(f"  example run {EXAMPLE_GROUP}: status={r['status']} units={r['units_total']} "
                      f"failed={r['units_failed']} rows={r['rows_loaded']}")


def _end(pids: list[int], what: str, steps: tuple = procs.TERM) -> None:
    if pids:
        survivors = procs.terminate(pids, steps)
        print(f"ended {len(pids) - len(survivors)} {what}: {' '.join(map(str, pids))}")
        if survivors:
            print(f"could not end: {' '.join(map(str, survivors))}", file=sys.stderr)


def down(args: argparse.Namespace) -> int:
    names = COMPONENTS + ["fake-jquants"]
    groups = {pid for name in names if (pid := procs.running_pid(LOCAL, name))}
    tree = procs.snapshot(sorted(groups))
    # Running tasks first, the way Airflow ends them. Their runners sit in process groups of their
    # own (what a task starts may be in its own session): stopping the scheduler's group would
    # leave them behind, reparented to init, and the scheduler's workers would wait for them.
    _end(procs.leftovers(LOCAL, known=tree, skip_groups=groups), "task process(es)", procs.TASK)
    for name in procs.stop(LOCAL, names[:1]) + procs.stop(LOCAL, names[1:]):  # the scheduler first
        print(f"stopped {name}")
    _end(procs.leftovers(LOCAL, known=tree), "leftover process(es)")
    _pg().stop()
    print("stopped PostgreSQL")
    _end(procs.leftovers(LOCAL, cwd_roots=(LOCAL,)), "leftover process(es)")  # e.g. PostgreSQL if pg_ctl failed
    return 0


def status(args: argparse.Namespace) -> int:
    for name in COMPONENTS + ["fake-jquants"]:
        print(f"{name:<14} {'running' if procs.running_pid(LOCAL, name) else 'stopped'}")
    print(f"{'postgres':<14} {'running' if _pg().is_running() else 'stopped'}")
    running = [pid for name in COMPONENTS + ["fake-jquants"] if (pid := procs.running_pid(LOCAL, name))]
    pids = procs.leftovers(LOCAL, known=procs.snapshot(running))
    print(f"{'processes':<14} {len(pids)} in all, besides PostgreSQL{' (make stop ends them)' if pids else ''}")
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
