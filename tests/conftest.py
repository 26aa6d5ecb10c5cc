"""Shared fixtures: one real embedded PostgreSQL per test session, a fresh database per test.

The session cluster is migrated once into a template database; each test that asks for
``warehouse_url`` gets its own copy (``CREATE DATABASE ... TEMPLATE``), so tests never see each
other's rows and never need a mock of the database.
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import os
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[1]
_counter = itertools.count()

# Airflow reads its configuration when first imported, so the test Airflow home (SQLite metadata
# DB, this repo's dags/ folder, no examples) is set before any test module imports it.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="moomarkets-test-airflow-"))
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "MOOMARKETS_SNAPSHOT_PATH": str(_AIRFLOW_HOME / "moomarkets" / "config_snapshot.json"),
        "MOOMARKETS_CONFIG_TIMEOUT": "3",
    }
)

from moomarkets.dev.localpg import LocalPostgres, free_port  # noqa: E402


@pytest.fixture(scope="session")
def pg_server():
    base = Path(tempfile.mkdtemp(prefix="moomarkets-test-pg-"))
    server = LocalPostgres(base / "data", free_port(), fast_unsafe=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(pg_server) -> str:
    from moomarkets.warehouse import migrate

    name = "moomarkets_template"
    pg_server.create_database(name)
    migrate.upgrade(pg_server.dsn(name))
    return name


@pytest.fixture
def warehouse_url(pg_server, template_db, monkeypatch) -> str:
    """A freshly migrated, empty warehouse database; also exported as MOOMARKETS_DATABASE_URL."""
    name = f"wh_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    url = pg_server.dsn(name)
    monkeypatch.setenv("MOOMARKETS_DATABASE_URL", url)
    return url


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Airflow's metadata DB (SQLite in the test AIRFLOW_HOME), migrated once per session."""
    import subprocess
    import sys

    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
        timeout=300,
    )
    return _AIRFLOW_HOME


def pytest_collection_modifyitems(config, items) -> None:
    """End-to-end tests (a real dag.test(), a browser, the whole local stack) are also ``slow``:
    CI runs everything; ``pytest -m "not slow"`` skips them for a quick local loop."""
    for item in items:
        if item.get_closest_marker("airflow") or item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.slow)
