"""The production auth manager (FAB, as docker-compose.yaml configures it) with users and roles.

Real components: a FAB-migrated Airflow metadata DB in an embedded PostgreSQL, the first admin and
a read-only user created with the documented CLI (`airflow users create ... --role Admin|Viewer`),
and Airflow's api-server with this repo's plugin. Proves that the FAB login gives tokens, that the
MooMarkets API lets the Viewer read but not change anything, and that the Admin may change config.
(Tests and `make run` keep the Simple auth manager; only the compose stack uses FAB.)
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from moomarkets.dev import processes as procs
from moomarkets.dev.localpg import LocalPostgres, free_port

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
CONFIG = {
    "data_sources": [{"code": "jquants", "name": "J-Quants", "kind": "jquants", "conn_id": "jquants_default",
                      "is_active": True, "config": {"rate_limit": "60/minute", "max_concurrency": 2}}],
    "job_groups": [],
}


@pytest.fixture(scope="module")
def fab_api(tmp_path_factory):
    local = tmp_path_factory.mktemp("fab")
    pg_port, api_port = free_port(), free_port()
    pg = LocalPostgres(local / "pg" / "data", pg_port, fast_unsafe=True)
    home = procs.workdir(local)
    home.mkdir(parents=True)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__AUTH_MANAGER": FAB,
        "AIRFLOW__CORE__DAGS_FOLDER": str(local / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg://postgres@127.0.0.1:{pg_port}/airflow",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{api_port}",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__WORKERS": "1",
        "MOOMARKETS_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{pg_port}/moomarkets",
        "MOOMARKETS_SNAPSHOT_PATH": str(home / "snapshot.json"),
    }
    (local / "dags").mkdir()
    pw = {"admin": secrets.token_urlsafe(10), "reader": secrets.token_urlsafe(10)}

    def cli(*cmd: str) -> str:
        r = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], env=env, cwd=home, capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, f"{' '.join(cmd[:3])}: {(r.stdout + r.stderr)[-2000:]}"
        return r.stdout

    try:
        pg.start()
        pg.create_database("airflow")
        pg.create_database("moomarkets")
        cli("airflow", "db", "migrate")  # with FAB configured this also creates FAB's user and role tables
        cli("moomarkets", "db", "upgrade")
        (local / "config.yaml").write_text(yaml.safe_dump(CONFIG))
        cli("moomarkets", "import", str(local / "config.yaml"))
        # exactly the README's commands for the first admin and a read-only user
        cli("airflow", "users", "create", "--username", "admin", "--password", pw["admin"], "--role", "Admin",
            "--firstname", "Ada", "--lastname", "Admin", "--email", "admin@example.invalid")
        cli("airflow", "users", "create", "--username", "reader", "--password", pw["reader"], "--role", "Viewer",
            "--firstname", "Rea", "--lastname", "Der", "--email", "reader@example.invalid")
        users = cli("airflow", "users", "list", "--output", "json")
        procs.start(local, "api-server", [str(BIN / "airflow"), "api-server"], env=env)
        base = f"http://localhost:{api_port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert procs.running_pid(local, "api-server"), (local / "logs" / "api-server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "api-server did not start"
            time.sleep(1)
        yield base, pw, json.loads(next(line for line in users.splitlines() if line.startswith("[")))  # after log noise
    finally:
        running = [pid for n in ("api-server",) if (pid := procs.running_pid(local, n))]
        tree = procs.snapshot(running)
        procs.stop(local, ["api-server"])
        procs.terminate(procs.leftovers(local, known=tree))
        pg.stop()
        procs.terminate(procs.leftovers(local, cwd_roots=(local,)))


def token(base: str, user: str, password: str) -> requests.Response:
    return requests.post(f"{base}/auth/token", json={"username": user, "password": password}, timeout=30)


def test_users_and_roles_from_the_cli(fab_api):
    _, _, users = fab_api
    roles = {u["username"]: u["roles"] for u in users}
    assert "Admin" in str(roles["admin"]) and "Viewer" in str(roles["reader"])


def test_fab_login_viewer_reads_but_cannot_change_admin_can(fab_api):
    base, pw, _ = fab_api
    assert token(base, "reader", "wrong-password").status_code in (400, 401)
    tokens = {}
    for user in ("admin", "reader"):
        r = token(base, user, pw[user])
        assert r.status_code == 201, r.text
        tokens[user] = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert requests.get(f"{base}/moomarkets/api/sources", timeout=30).status_code == 401  # no login, no data
    for user in ("admin", "reader"):
        r = requests.get(f"{base}/moomarkets/api/sources", headers=tokens[user], timeout=30)
        assert r.status_code == 200 and [s["code"] for s in r.json()] == ["jquants"], r.text
    body = {"active": False}
    r = requests.put(f"{base}/moomarkets/api/sources/jquants/active", json=body, headers=tokens["reader"], timeout=30)
    assert r.status_code == 403, r.text
    r = requests.put(f"{base}/moomarkets/api/sources/jquants/active", json=body, headers=tokens["admin"], timeout=30)
    assert r.status_code == 200, r.text
    # Airflow's own REST API applies the same roles
    r = requests.patch(f"{base}/api/v2/pools/default_pool", json={"slots": 64}, headers=tokens["reader"], timeout=30)
    assert r.status_code == 403
