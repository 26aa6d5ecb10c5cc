"""The package is an Airflow provider: the J-Quants connection type shows in Airflow's form and
its Test button (Connection.test_connection -> JQuantsHook -> validate_credentials) tells a good
key, a bad key and an unreachable server apart, never echoing the key."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration


def test_connection_type_is_registered():
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    assert "moomarkets-ingest" in pm.providers
    hook = pm.hooks["jquants"]
    assert hook.hook_class_name == "moomarkets.airflow.hooks.JQuantsHook" and hook.connection_testable
    behaviour = pm.field_behaviours["jquants"]
    assert behaviour["relabeling"]["password"] == "API key"
    assert "login" in behaviour["hidden_fields"]


def _test(monkeypatch, host: str, key: str):
    from airflow.models.connection import Connection

    conn = Connection(conn_id="jq_button", conn_type="jquants", host=host, password=key)
    monkeypatch.setenv("AIRFLOW_CONN_JQ_BUTTON", json.dumps({"conn_type": "jquants", "host": host, "password": key}))
    return conn.test_connection()


def test_test_button_good_bad_and_unreachable(monkeypatch):
    from moomarkets.dev.localpg import free_port
    from moomarkets.testing.jquants_fake import FakeConfig, running_fake

    with running_fake(FakeConfig(api_key="right-key-987")) as (base_url, state):
        ok, message = _test(monkeypatch, base_url, "right-key-987")
        assert ok, message
        assert state.count() == 1  # one cheap call
        ok, message = _test(monkeypatch, base_url, "wrong-key-654")
        assert not ok and message.startswith("Credentials rejected")
        assert "wrong-key-654" not in message
    ok, message = _test(monkeypatch, f"http://127.0.0.1:{free_port()}/v2", "right-key-987")
    assert not ok and message.startswith("Could not reach the API")
    assert "right-key-987" not in message


def test_test_button_waits_its_turn_in_the_sources_shared_limit(monkeypatch, warehouse_url):
    import psycopg

    from moomarkets.warehouse import config_store as store
    from moomarkets.config.models import DataSource
    from moomarkets.warehouse.db import connect
    from moomarkets.testing.jquants_fake import FakeConfig, running_fake

    with connect(warehouse_url) as conn, conn.transaction():
        store.add_source(conn, DataSource(code="jqbtn", name="Button", kind="jquants", conn_id="jq_button",
                                          config={"rate_limit": "30/minute"}))
    with running_fake(FakeConfig(api_key="right-key-987")) as (base_url, state):
        ok, message = _test(monkeypatch, base_url, "right-key-987")
        assert ok, message
        assert state.count() == 1
    with psycopg.connect(warehouse_url) as conn:
        (granted,) = conn.execute('SELECT count(*) FROM "ratelimit___mm_jqbtn"').fetchone()
    assert granted == 1  # the click's request took a token from the source's limit
