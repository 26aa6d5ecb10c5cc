"""The warehouse as an Airflow Connection (``moomarkets_warehouse``, postgres type).

With ``MOOMARKETS_DATABASE_URL`` unset and only ``AIRFLOW_CONN_MOOMARKETS_WAREHOUSE`` set, a real
``dag.test()`` loads into that warehouse and the CLI finds it; a missing connection is one line
naming it; the password never shows in output, errors or masked logs; a slow or broken resolver at
parse time falls back to the last-known-good snapshot within the parse bound.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import date, datetime
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import psycopg
import pytest
import yaml

from moomarkets import cli, settings
from moomarkets.airflow import warehouse
from moomarkets.errors import WarehouseConnectionError
from moomarkets.warehouse import config_store as store
from moomarkets.warehouse.config_snapshot import load_specs
from moomarkets.warehouse.db import connect
from dagtest import CONFIG, get_dag  # noqa: E402

TOKYO = ZoneInfo("Asia/Tokyo")
PASSWORD = "wh-S3cret/pass word%"  # trust auth ignores it; special characters test the URL quoting
CONN_ENV = "AIRFLOW_CONN_MOOMARKETS_WAREHOUSE"


def conn_json(url: str, **extra) -> str:
    """``url`` (the test server, trust auth) as a postgres Connection, with a password it ignores."""
    parts = urlsplit(url)
    return json.dumps({"conn_type": "postgres", "host": parts.hostname, "port": parts.port, "login": parts.username,
                       "password": PASSWORD, "schema": parts.path.lstrip("/"), "extra": extra or None})


@pytest.fixture(autouse=True)
def resolver(monkeypatch):
    """The Airflow resolver installed, its cache empty, the env override and conn id unset."""
    monkeypatch.delenv(settings.DATABASE_URL_ENV, raising=False)
    monkeypatch.delenv(settings.WAREHOUSE_CONN_ID_ENV, raising=False)
    monkeypatch.delenv(CONN_ENV, raising=False)
    warehouse.clear_cache()
    previous = settings.set_warehouse_resolver(warehouse.resolve)
    yield
    settings.set_warehouse_resolver(previous)
    warehouse.clear_cache()


@pytest.fixture
def wh(warehouse_url, monkeypatch, tmp_path):
    """A configured warehouse reachable only through the Connection."""
    monkeypatch.setenv("MOOMARKETS_SNAPSHOT_PATH", str(tmp_path / "snapshot.json"))
    with connect(warehouse_url) as conn:
        store.import_config(conn, yaml.safe_load(CONFIG))
    monkeypatch.delenv(settings.DATABASE_URL_ENV)  # set by the warehouse_url fixture
    monkeypatch.setenv(CONN_ENV, conn_json(warehouse_url, sslmode="disable", cursor="dictcursor"))
    return warehouse_url




# -- the Connection -> URL mapping (no database) --------------------------------------------------
def test_url_follows_the_postgres_provider_conventions():
    from airflow.sdk import Connection
    from airflow.sdk._shared.secrets_masker import redact

    conn = Connection(conn_id="moomarkets_warehouse", conn_type="postgres", host="db.internal", port=5433,
                      login="ingest", password=PASSWORD, schema="moomarkets",
                      extra=json.dumps({"sslmode": "verify-full", "sslrootcert": "/etc/ssl/ca.pem",
                                        "options": "-c search_path=public", "cursor": "dictcursor",
                                        "sqlalchemy_scheme": "postgresql+psycopg"}))
    url = warehouse.connection_url(conn)
    # what PostgresHook.get_conn() would pass to psycopg: extras as parameters, the hook's own dropped
    assert psycopg.conninfo.conninfo_to_dict(url) == {
        "host": "db.internal", "port": "5433", "user": "ingest", "password": PASSWORD, "dbname": "moomarkets",
        "sslmode": "verify-full", "sslrootcert": "/etc/ssl/ca.pem", "options": "-c search_path=public",
    }
    masked = redact(f"connecting to {url} as ingest/{PASSWORD}")
    assert PASSWORD not in masked and "S3cret" not in masked  # raw and URL-quoted forms both masked


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "warehouse connection 'moomarkets_warehouse' is not defined"),
        (json.dumps({"conn_type": "jquants", "host": "x", "password": PASSWORD}), "has type 'jquants'; expected 'postgres'"),
        (json.dumps({"conn_type": "postgres", "password": PASSWORD}), "has no host"),
    ],
)
def test_unusable_connection_is_one_line_naming_it(value, message, monkeypatch):
    if value:
        monkeypatch.setenv(CONN_ENV, value)
    with pytest.raises(WarehouseConnectionError) as exc:
        settings.database_url()
    text = str(exc.value)
    assert message in text and "\n" not in text and PASSWORD not in text


def test_env_override_wins_and_no_silent_default(monkeypatch):
    monkeypatch.setenv(CONN_ENV, "postgresql://u:p@conn-host:5432/db")
    monkeypatch.setenv(settings.DATABASE_URL_ENV, "postgresql://dev@127.0.0.1:1/dev")
    assert settings.database_url() == "postgresql://dev@127.0.0.1:1/dev"
    monkeypatch.delenv(settings.DATABASE_URL_ENV)
    assert settings.database_url() == "postgresql://u:p@conn-host:5432/db"
    settings.set_warehouse_resolver(None)  # no Airflow, no override: an error, never localhost
    with pytest.raises(settings.WarehouseNotConfigured, match="MOOMARKETS_DATABASE_URL"):
        settings.database_url()


def test_conn_id_is_configurable(monkeypatch):
    monkeypatch.setenv(settings.WAREHOUSE_CONN_ID_ENV, "prod_wh")
    monkeypatch.setenv("AIRFLOW_CONN_PROD_WH", "postgresql://u@prod-host:5432/mm?sslmode=require")
    assert settings.database_url() == "postgresql://u@prod-host:5432/mm?sslmode=require"
    monkeypatch.delenv("AIRFLOW_CONN_PROD_WH")
    warehouse.clear_cache()
    with pytest.raises(WarehouseConnectionError, match="'prod_wh' is not defined"):
        settings.database_url()


# -- the CLI ------------------------------------------------------------------------------------
@pytest.mark.integration
def test_cli_resolves_the_connection(wh, capsys):
    assert cli.main(["--no-airflow", "groups", "list"]) == 0
    out, err = capsys.readouterr()
    assert "jp_daily_quotes" in out
    assert PASSWORD not in out + err


def test_cli_missing_connection_is_one_error_line(capsys, monkeypatch):
    monkeypatch.setenv(settings.WAREHOUSE_CONN_ID_ENV, "mm_wh_missing")
    assert cli.main(["--no-airflow", "groups", "list"]) == 1
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("error: ") and "'mm_wh_missing' is not defined" in err


def test_cli_unreachable_warehouse_error_has_no_password(capsys, monkeypatch):
    from moomarkets.dev.localpg import free_port

    monkeypatch.setenv(CONN_ENV, conn_json(f"postgresql://postgres@127.0.0.1:{free_port()}/nope"))
    assert cli.main(["--no-airflow", "groups", "list"]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("error: cannot connect to the warehouse database")
    assert PASSWORD not in out + err and "S3cret" not in out + err


# -- parse time ---------------------------------------------------------------------------------
@pytest.mark.integration
def test_parse_time_slow_or_broken_resolver_falls_back_to_snapshot(wh, monkeypatch):
    first = load_specs(timeout=2)
    assert first.origin == "database" and [s.group.name for s in first.specs] == ["jp_daily_quotes"]

    # a secrets backend that hangs: the parse gives up after its bound and uses the snapshot
    real_lookup = warehouse._lookup_url
    release = threading.Event()
    monkeypatch.setattr(warehouse, "_lookup_url", lambda conn_id: release.wait(60) and "postgresql://never")
    warehouse.clear_cache()
    t0 = time.monotonic()
    try:
        slow = load_specs(timeout=1)
    finally:
        release.set()
    assert time.monotonic() - t0 < 2.5
    assert slow.origin == "snapshot" and [s.group.name for s in slow.specs] == ["jp_daily_quotes"]
    assert "not resolved within 1 s" in slow.error

    # the connection gone: also the snapshot, and the reason names the connection
    monkeypatch.setattr(warehouse, "_lookup_url", real_lookup)
    monkeypatch.delenv(CONN_ENV)
    warehouse.clear_cache()
    gone = load_specs(timeout=2)
    assert gone.origin == "snapshot" and [s.group.name for s in gone.specs] == ["jp_daily_quotes"]
    assert "'moomarkets_warehouse' is not defined" in gone.error and PASSWORD not in gone.error


# -- a real run -----------------------------------------------------------------------------------
@pytest.mark.integration
@pytest.mark.airflow
def test_dag_run_loads_into_the_connection_warehouse(wh, airflow_db, monkeypatch, capfd, caplog):
    from moomarkets.testing.jquants_data import daily_bars_for_date
    from moomarkets.testing.jquants_fake import FakeConfig, running_fake

    with running_fake(FakeConfig(api_key="test-key-123456", page_size=50)) as (base_url, _):
        monkeypatch.setenv("AIRFLOW_CONN_JQUANTS_DEFAULT",
                           json.dumps({"conn_type": "jquants", "host": base_url, "password": "test-key-123456"}))
        dag = get_dag("jp_daily_quotes")  # parse: the config read through the Connection
        warehouse.clear_cache()  # the tasks resolve it again
        run = dag.test(logical_date=datetime(2026, 11, 20, 20, 0, tzinfo=TOKYO))
    assert run.state == "success"
    assert settings.DATABASE_URL_ENV not in os.environ
    assert "moomarkets_warehouse" in warehouse._cache  # the tasks resolved the Connection
    with psycopg.connect(wh) as conn:
        keys = {(c, d.isoformat()) for c, d in conn.execute("SELECT code, date FROM daily_quotes").fetchall()}
        status = conn.execute("SELECT last_run_status FROM job_group_status").fetchone()
    want = {(r["Code"], r["Date"]) for r in daily_bars_for_date(date(2026, 11, 20))}
    assert keys == want and status == ("success",)
    out, err = capfd.readouterr()
    assert PASSWORD not in out + err + caplog.text
