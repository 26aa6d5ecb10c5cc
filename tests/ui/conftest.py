"""Fixtures of the management-UI tests.

``airflow_app``/``client``: Airflow's real api-server app in-process, with this repo's plugin
mounting the UI (tests/ui/test_ui_*.py).

``airflow_stack``: a real Airflow for the browser tests: api-server + dag-processor on a free port,
own AIRFLOW_HOME and metadata DB (a database in the test PostgreSQL server), torn down with no orphans.

Each component runs in its own process group (``start_new_session``) so stopping it kills its
children too. Browser tests need Debian's chromium (``apt-get install -y chromium``) and the
``playwright`` package, which drives that binary (it never downloads a browser). They are skipped
with the reason when either is missing, except under CI (env ``CI`` set), where that is a failure.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import yaml
from ui_helpers import CONFIG, PREFIX

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("MOOMARKETS_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
BIN = Path(sys.executable).parent


def _missing_browser() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found (apt-get install -y chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright==1.65.2)"
    return None


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    reason = _missing_browser()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run under CI: {reason}")
        pytest.skip(reason)
    return CHROMIUM


@dataclass
class AirflowStack:
    base_url: str
    home: Path
    env: dict[str, str]
    warehouse_url: str
    users: dict[str, str]  # username -> password
    logs: Path

    def wait_for(self, check, timeout: float, what: str, interval: float = 1.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = check()
            if result:
                return result
            time.sleep(interval)
        tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.logs.glob("*.log")))
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tails}")


def _free_port() -> int:
    from moomarkets.dev.localpg import free_port

    return free_port()


def _start(name: str, args: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen:
    log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [str(BIN / "airflow"), *args], env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, cwd=str(ROOT),
    )


def _stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM the whole process group, then SIGKILL what is left of it."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(pgid, signal.SIGKILL)  # children that ignored SIGTERM, and the leader if still up
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


@pytest.fixture(scope="module")
def airflow_stack(chromium_path, pg_server, template_db, tmp_path_factory):
    from moomarkets.warehouse.db import sqlalchemy_url

    home = tmp_path_factory.mktemp("airflow-ui-home")
    logs = home / "logs"
    logs.mkdir()
    tag = f"{os.getpid()}_{secrets.token_hex(3)}"
    wh_name, af_name = f"wh_browser_{tag}", f"airflow_browser_{tag}"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{wh_name}" TEMPLATE "{template_db}"')
        conn.execute(f'CREATE DATABASE "{af_name}"')
    warehouse_url = pg_server.dsn(wh_name)
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    users = {"admin": secrets.token_urlsafe(12), "viewer": secrets.token_urlsafe(12)}
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps(users))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MOOMARKETS_", "_AIRFLOW"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url(pg_server.dsn(af_name)),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "2",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "600",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "MOOMARKETS_DATABASE_URL": warehouse_url,
            "MOOMARKETS_SNAPSHOT_PATH": str(home / "moomarkets" / "config_snapshot.json"),
            "MOOMARKETS_CONFIG_TIMEOUT": "5",
            "AIRFLOW_CONN_JQUANTS_DEFAULT": json.dumps({"conn_type": "jquants", "host": "http://127.0.0.1:9/v2",
                                                        "password": "browser-test-secret-key"}),
        }
    )
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True, timeout=300,
                   cwd=str(ROOT))
    procs = [
        _start("api-server", ["api-server", "--port", str(port), "--host", "127.0.0.1", "--workers", "1"], env, logs),
        _start("dag-processor", ["dag-processor"], env, logs),
    ]
    stack = AirflowStack(base_url=base_url, home=home, env=env, warehouse_url=warehouse_url, users=users, logs=logs)
    try:
        def healthy():
            try:
                with urllib.request.urlopen(f"{base_url}/api/v2/monitor/health", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        stack.wait_for(healthy, 90, "the api-server to answer")
        yield stack
    finally:
        pgids = []
        for p in reversed(procs):
            try:
                pgids.append(os.getpgid(p.pid))
            except ProcessLookupError:
                pass
            _stop(p)
        leftover = [g for g in pgids if _group_alive(g)]
        artifacts_logs = SCREENSHOTS.parent / "airflow-logs"
        artifacts_logs.mkdir(parents=True, exist_ok=True)
        for f in logs.glob("*.log"):
            shutil.copy(f, artifacts_logs / f.name)
        with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
            for name in (wh_name, af_name):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        assert not leftover, f"processes left behind in groups {leftover}"


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=str(chromium_path),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def shot(request):
    """``shot(page, "name")`` saves artifacts/screenshots/<test>-<n>-<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    counter = iter(range(1, 100))

    def take(page, name: str) -> Path:
        path = SCREENSHOTS / f"{request.node.name}-{next(counter):02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


# -- the management app inside Airflow's api-server app (tests/ui/test_ui_*.py) -----------------
@pytest.fixture(scope="module")
def airflow_app(airflow_db):
    """Airflow's whole FastAPI app, with the plugins folder of this repo (our app mounted)."""
    import secrets

    from airflow.api_fastapi.app import create_app, purge_cached_app

    with pytest.MonkeyPatch.context() as mp:
        # explicit secrets: other tests may reload Airflow's config, which drops the generated ones
        mp.setenv("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_urlsafe(64))
        mp.setenv("AIRFLOW__API__SECRET_KEY", secrets.token_urlsafe(32))
        mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,editor:user,viewer:viewer")
        yield create_app()
        purge_cached_app()


@pytest.fixture(scope="module")
def ui_subapp(airflow_app):
    from fastapi import FastAPI
    from starlette.routing import Mount

    mounts = [r for r in airflow_app.routes if isinstance(r, Mount) and r.path == PREFIX]
    assert len(mounts) == 1, "the plugin's app is not mounted at /moomarkets"
    assert isinstance(mounts[0].app, FastAPI)
    return mounts[0].app


@pytest.fixture
def client(airflow_app, warehouse_url):
    from fastapi.testclient import TestClient

    from moomarkets.airflow import ops as airflow_ops
    from moomarkets.warehouse import config_store as store
    from moomarkets.warehouse.db import connect

    airflow_ops.clear_credential_cache()
    with connect(warehouse_url) as conn:
        store.import_config(conn, yaml.safe_load(CONFIG))
    with TestClient(airflow_app, base_url="http://testserver") as c:
        yield c
