"""Alert targets name Airflow Connections: a config naming one Airflow does not have is refused
before anything is written (create, update, import alike); when Airflow cannot be asked the change
is written with a note. Connections are made the way Airflow reads them: ``AIRFLOW_CONN_<ID>``."""

from __future__ import annotations

import json

import pytest

from moomarkets.errors import ConfigError
from moomarkets.services import config_io, groups, sources
from moomarkets.warehouse import config_store as store
from moomarkets.warehouse.db import connect

pytestmark = pytest.mark.integration

SOURCE = {"code": "jquants", "name": "J-Quants", "kind": "jquants"}
GROUP = {"name": "jp_quotes", "data_source": "jquants", "dataset": "daily_quotes", "schedule": "0 19 * * 1-5",
         "parameters": {"universe": "all_listed"}}
EMAIL = {"targets": [{"type": "email", "conn_id": "smtp_alerts", "to": ["oncall@example.com"]}]}
MISSING = {"targets": [{"type": "slack", "conn_id": "slack_ok"}, {"type": "email", "conn_id": "smtp_x",
                                                                  "to": ["oncall@example.com"]}]}


@pytest.fixture
def conn(warehouse_url, monkeypatch):
    """A warehouse connection, two Connections in Airflow (env vars) and no Airflow pool table to sync."""
    monkeypatch.setattr("moomarkets.airflow.pools.sync_pools", lambda srcs: [])
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_ALERTS", json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": 25}))
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_OK", json.dumps({"conn_type": "slackwebhook", "password": "T/B/x"}))
    with connect(warehouse_url, autocommit=True) as c:
        yield c


def stored(conn) -> list[tuple]:
    return [tuple(r.values()) for r in conn.execute(
        "SELECT 's', code, alerts::text, updated_at FROM data_sources"
        " UNION ALL SELECT 'g', name, alerts::text, updated_at FROM job_groups ORDER BY 1, 2")]


def test_existing_connections_are_accepted(conn):
    src = sources.create(conn, {**SOURCE, "alerts": {**EMAIL, "late_after": "2h"}})
    assert src.value.alerts["targets"][0]["conn_id"] == "smtp_alerts"
    out = groups.create(conn, {**GROUP, "alerts": {"targets": [{"type": "slack", "conn_id": "slack_ok"}]}})
    assert not any("connection" in m for m in out.messages)
    assert groups.alerts_in_effect(conn, store.get_group(conn, "jp_quotes")) == {
        "on": ["failure", "partial", "check_errors", "late"], "late_after": "2h", "targets": ["slack:slack_ok"]}


def test_a_missing_connection_is_refused_and_nothing_is_written(conn):
    expected = ("alerts.targets[1]: Airflow connection 'smtp_x' does not exist (create it with `airflow connections"
                " add smtp_x --conn-type smtp ...`)")
    with pytest.raises(ConfigError) as exc:
        sources.create(conn, {**SOURCE, "alerts": MISSING})
    assert str(exc.value) == f"data source 'jquants': {expected}" and exc.value.field == "alerts.targets[1]"
    assert stored(conn) == []

    sources.create(conn, SOURCE)
    groups.create(conn, GROUP)
    before = stored(conn)
    with pytest.raises(ConfigError, match=r"^data source 'jquants': alerts.targets\[1\]: Airflow connection 'smtp_x'"):
        sources.update(conn, "jquants", {"alerts": MISSING, "name": "renamed"})
    with pytest.raises(ConfigError, match=r"^job group 'jp_quotes': alerts.targets\[1\]: Airflow connection 'smtp_x'"):
        groups.update(conn, "jp_quotes", {"alerts": MISSING, "description": "x"})
    with pytest.raises(ConfigError, match=r"^job group 'jp_new': alerts.targets\[1\]: Airflow connection 'smtp_x'"):
        groups.create(conn, {**GROUP, "name": "jp_new", "alerts": MISSING})
    data = {"job_groups": [{**GROUP, "name": "jp_new"}, {**GROUP, "alerts": MISSING}]}
    with pytest.raises(ConfigError, match=r"^job group 'jp_quotes': alerts.targets\[1\]: Airflow connection 'smtp_x'"):
        config_io.import_config(conn, data)
    assert stored(conn) == before


def test_when_airflow_cannot_be_asked_the_change_is_written_with_a_note(conn, monkeypatch):
    monkeypatch.setattr("moomarkets.airflow.connections.connection_exists", lambda conn_id: None)
    out = sources.create(conn, {**SOURCE, "alerts": MISSING})
    assert store.get_source(conn, "jquants").alerts == MISSING
    assert any("Could not ask Airflow whether connection(s) slack_ok, smtp_x exist" in m for m in out.notes)


def test_without_airflow_nothing_is_asked_and_a_note_says_so(conn, monkeypatch):
    def never(conn_id):
        raise AssertionError("Airflow was asked")

    monkeypatch.setattr("moomarkets.airflow.connections.connection_exists", never)
    sources.create(conn, SOURCE, airflow=False)
    out = groups.create(conn, {**GROUP, "alerts": MISSING}, airflow=False)
    assert out.notes[-1] == ("Alert connections of job group 'jp_quotes' not checked (Airflow not asked):"
                             " slack_ok, smtp_x.")
    assert store.get_group(conn, "jp_quotes").alerts == MISSING


def test_a_bad_alerts_shape_is_reported_before_any_lookup(conn, monkeypatch):
    monkeypatch.setattr("moomarkets.airflow.connections.connection_exists", lambda conn_id: pytest.fail("asked"))
    with pytest.raises(ConfigError, match=r"^data source 'jquants': alerts: unknown key\(s\) channel"):
        sources.create(conn, {**SOURCE, "alerts": {"channel": "#ops"}})
    assert stored(conn) == []


def test_yaml_alerts_text_reads_an_unquoted_on_key():
    assert config_io.parse_alerts("on: [failure]\nlate_after: 2h") == {"on": ["failure"], "late_after": "2h"}
    assert config_io.parse_alerts("") == {} and config_io.parse_alerts(None) is None
    assert config_io.parse_alerts(config_io.alerts_text({"on": ["late"]})) == {"on": ["late"]}
    assert config_io.alerts_text({}) == ""
