"""The one Connection -> credentials mapping, used by the tasks, the UI check and the Test button."""

from __future__ import annotations

import json

import pytest
from airflow.models.connection import Connection

from moomarkets.airflow.connections import credentials_from_connection, describe_check, get_credentials
from moomarkets.airflow.hooks import JQuantsHook
from moomarkets.pipeline.credentials import CheckOutcome


@pytest.mark.parametrize(
    ("fields", "host"),
    [
        ({"host": ""}, None),
        ({"host": "https://proxy.example/v2"}, "https://proxy.example/v2"),
        ({"host": "127.0.0.1", "schema": "http", "port": 8765}, "http://127.0.0.1:8765"),
        ({"host": "http://127.0.0.1/v2", "port": 8765}, "http://127.0.0.1:8765/v2"),
        ({"host": "proxy.example", "port": 8443}, "https://proxy.example:8443"),
        ({"host": "http://127.0.0.1:8765/v2", "port": 8765}, "http://127.0.0.1:8765/v2"),
        ({"host": "https://user:pw@proxy.example/v2"}, "https://proxy.example/v2"),
    ],
)
def test_host_schema_and_port_make_the_base_url(fields, host):
    conn = Connection(conn_id="x", conn_type="jquants", password="k", extra=json.dumps({"a": 1}), **fields)
    creds = credentials_from_connection(conn)
    assert creds.host == host
    assert creds.secret == "k" and creds.extra == {"a": 1}
    assert "k" not in repr(creds).replace("jquants", "")  # repr masks the key


def test_the_hook_and_the_tasks_read_a_connection_the_same_way(monkeypatch):
    uri = {"conn_type": "jquants", "host": "127.0.0.1", "schema": "http", "port": 9911, "password": "hk-1",
           "extra": {"timeout": 5}}
    monkeypatch.setenv("AIRFLOW_CONN_JQ_SAME", json.dumps(uri))
    from_task = get_credentials("jq_same")
    from_hook = JQuantsHook(jquants_conn_id="jq_same").credentials()
    assert from_task == from_hook
    assert from_task.host == "http://127.0.0.1:9911" and from_task.extra == {"timeout": 5}


def test_a_missing_connection_means_no_credentials():
    creds = get_credentials("no_such_connection_anywhere")
    assert creds.secret is None and creds.host is None


@pytest.mark.parametrize(
    ("outcome", "needle"),
    [
        (CheckOutcome(True, "valid"), "credentials are valid"),
        (CheckOutcome(False, "rejected", "HTTP 403"), "credentials rejected: HTTP 403"),
        (CheckOutcome(False, "not_covered", "HTTP 403 plan"), "plan does not cover this data"),
        (CheckOutcome(None, "busy"), "the jquants rate limit is fully used"),
        (CheckOutcome(None, "no_limiter", "OperationalError"), "shared rate limit is unavailable"),
        (CheckOutcome(None, "unreachable", "ConnectionError"), "could not reach the API: ConnectionError"),
    ],
)
def test_every_check_outcome_has_its_words(outcome, needle):
    assert needle in describe_check(outcome, source_code="jquants")


def test_a_missing_connection_is_named_where_it_is_the_likely_cause():
    missing = "Airflow connection 'jq' does not exist"
    assert describe_check(CheckOutcome(False, "rejected", "no key"), conn_missing=missing).startswith(missing)
    assert "needs no key" in describe_check(CheckOutcome(True, "valid"), conn_missing=missing)
