"""The service layer's rules, once for the CLI and the UI: writes commit before Airflow is told,
Airflow side effects are best effort (a failure is a warning, the change stands), defaults come
from the source kind, and the backfill limits live in one place. Airflow itself is stood in for
where a test is about the rule, not about Airflow."""

from __future__ import annotations

from datetime import date

import pytest

from moomarkets.errors import ConfigError, NotFoundError, UsageError
from moomarkets.services import config_io, groups, runs, sources
from moomarkets.services.db import committed
from moomarkets.services.effects import Outcome
from moomarkets.services.inputs import InputError, parse_bool, parse_json_object
from moomarkets.warehouse import config_store as store
from moomarkets.warehouse.db import connect

pytestmark = pytest.mark.integration

SOURCE = {"code": "jquants", "name": "J-Quants", "kind": "jquants", "config": {"max_concurrency": 2}}
GROUP = {"name": "jp_quotes", "data_source": "jquants", "dataset": "daily_quotes", "schedule": "0 19 * * 1-5",
         "timezone": "Asia/Tokyo", "parameters": {"universe": "all_listed"}}


@pytest.fixture
def conn(warehouse_url):
    """As the CLI and the UI connect: autocommit, so that reads leave no transaction open."""
    with connect(warehouse_url, autocommit=True) as c:
        yield c


@pytest.fixture
def airflow_calls(monkeypatch):
    """Stand-ins for Airflow's pool table and pause toggle, recording what they were asked."""
    calls: list[tuple] = []

    def sync_pools(srcs):
        calls.append(("sync", [s.code for s in srcs]))
        return [(f"moomarkets_{s.code}", 2, "created") for s in srcs]

    def set_paused(dag_id, paused):
        calls.append(("paused", dag_id, paused))
        return True

    monkeypatch.setattr("moomarkets.airflow.pools.sync_pools", sync_pools)
    monkeypatch.setattr("moomarkets.airflow.ops.set_paused", set_paused)
    return calls


def _boom(*_args, **_kwargs):
    raise OSError("metadata DB down\nsecond line")


def committed_rows(url: str) -> tuple[list, list]:
    """What another connection sees: only committed rows."""
    with connect(url) as other:
        return ([s.code for s in store.list_sources(other)],
                [(g.name, g.is_enabled) for g in store.list_groups(other)])


# -- sources ----------------------------------------------------------------------------------
def test_a_new_source_gets_its_kinds_connection_and_pool(conn, warehouse_url, airflow_calls):
    out = sources.create(conn, SOURCE)
    assert out.value.conn_id == "jquants_default"
    assert out.done == ["pool moomarkets_jquants: 2 slot(s), created"] and out.warnings == []
    assert airflow_calls == [("sync", ["jquants"])]
    assert committed_rows(warehouse_url)[0] == ["jquants"]  # committed before Airflow was told
    yahoo = sources.create(conn, {"code": "yahoo", "name": "Yahoo", "kind": "yfinance"}, airflow=False)
    assert yahoo.value.conn_id == "yfinance_default"
    assert airflow_calls == [("sync", ["jquants"])]  # airflow=False: Airflow is not touched


def test_an_unknown_kind_is_reported_on_the_kind_field(conn):
    assert sources.default_conn_id("nosuch") == "" and sources.default_conn_id(None) == ""
    with pytest.raises(ConfigError) as exc:
        sources.create(conn, {"code": "x", "name": "X", "kind": "nosuch"}, airflow=False)
    assert exc.value.field == "kind"


def test_a_failed_pool_sync_is_a_warning_and_the_source_stays(conn, warehouse_url, monkeypatch):
    monkeypatch.setattr("moomarkets.airflow.pools.sync_pools", _boom)
    out = sources.create(conn, SOURCE)
    assert out.done == []
    assert out.warnings == ["Airflow pools not synced (OSError: metadata DB down); run `moomarkets pools sync` where"
                            " Airflow's metadata DB is reachable."]
    assert out.messages == out.warnings
    assert committed_rows(warehouse_url)[0] == ["jquants"]
    with pytest.raises(Exception, match="could not sync pools in Airflow \\(OSError: metadata DB down\\)"):
        sources.sync_all_pools(conn)  # the explicit command fails loudly instead


def test_deactivating_a_source_names_the_groups_it_stops(conn, airflow_calls):
    sources.create(conn, SOURCE)
    groups.create(conn, GROUP)
    out = sources.set_active(conn, "jquants", False)
    assert out.value.is_active is False
    assert out.notes == ["Runs of jp_quotes are skipped while the source is inactive."]
    assert airflow_calls == [("sync", ["jquants"])]  # the toggle does not touch the pool
    out = sources.update(conn, "jquants", {"config": {"max_concurrency": 3}})
    assert out.notes == [] and airflow_calls[-1] == ("sync", ["jquants"])


# -- groups -----------------------------------------------------------------------------------
def test_enable_disable_follow_the_dag_and_update_only_on_a_change(conn, warehouse_url, airflow_calls):
    sources.create(conn, SOURCE, airflow=False)
    out = groups.create(conn, GROUP)
    assert out.notes == ["DAG jp_quotes appears in Airflow at the next DAG parse (usually within a minute)."]
    assert airflow_calls == []
    out = groups.set_enabled(conn, "jp_quotes", False)
    assert out.done == ["DAG jp_quotes paused in Airflow"] and out.messages == []
    assert committed_rows(warehouse_url)[1] == [("jp_quotes", False)]
    groups.update(conn, "jp_quotes", {"schedule": "0 20 * * 1-5"})
    assert airflow_calls == [("paused", "jp_quotes", True)]  # is_enabled unchanged: no toggle
    groups.update(conn, "jp_quotes", {"is_enabled": True})
    assert airflow_calls[-1] == ("paused", "jp_quotes", False)


def test_a_dag_not_parsed_yet_is_a_note_and_a_failed_pause_a_warning(conn, warehouse_url, monkeypatch):
    sources.create(conn, SOURCE, airflow=False)
    groups.create(conn, GROUP)
    monkeypatch.setattr("moomarkets.airflow.ops.set_paused", lambda dag_id, paused: False)
    out = groups.set_enabled(conn, "jp_quotes", False)
    assert out.notes == ["DAG jp_quotes is not parsed yet; it will start paused."] and out.warnings == []
    monkeypatch.setattr("moomarkets.airflow.ops.set_paused", _boom)
    out = groups.set_enabled(conn, "jp_quotes", True)
    assert out.warnings == ["Could not unpause DAG jp_quotes in Airflow (OSError: metadata DB down); unpause it in"
                            " Airflow."]
    assert committed_rows(warehouse_url)[1] == [("jp_quotes", True)]  # the change stands


def test_check_reports_each_group(conn):
    sources.create(conn, SOURCE, airflow=False)
    groups.create(conn, GROUP)
    sources.set_active(conn, "jquants", False)
    [check] = groups.check(conn)
    assert check.name == "jp_quotes" and check.error == "data_source: data source 'jquants' is not active"
    sources.set_active(conn, "jquants", True)
    [check] = groups.check(conn, ["jp_quotes"])
    assert check.error is None and len(check.next_runs) == 3
    with pytest.raises(NotFoundError):
        groups.check(conn, ["nope"])
    assert groups.remove(conn, "jp_quotes").notes == [
        "DAG jp_quotes disappears from Airflow at the next parse; the rows it loaded stay."]


def test_a_write_refuses_a_connection_inside_a_transaction(warehouse_url):
    with connect(warehouse_url) as conn:  # not autocommit
        store.list_sources(conn)  # a read opens a transaction: a write block would only be a savepoint
        with pytest.raises(RuntimeError, match="outside a transaction"):
            sources.create(conn, SOURCE, airflow=False)
        conn.rollback()
        sources.create(conn, SOURCE, airflow=False)
        assert committed_rows(warehouse_url)[0] == ["jquants"]  # committed at once, not at close
        with pytest.raises(RuntimeError), committed(conn), committed(conn):
            pass  # nor does one service write nest in another


# -- import -------------------------------------------------------------------------------------
def test_import_is_all_or_nothing_then_syncs_every_pool(conn, warehouse_url, airflow_calls):
    data = {"data_sources": [dict(SOURCE, conn_id="jquants_default")], "job_groups": [GROUP]}
    bad = {"data_sources": data["data_sources"], "job_groups": [GROUP, dict(GROUP, name="jp_bad", data_source="ghost")]}
    with pytest.raises(ConfigError, match="unknown data source 'ghost'"):
        config_io.import_config(conn, bad)
    assert committed_rows(warehouse_url) == ([], []) and airflow_calls == []
    out = config_io.import_config(conn, data)
    assert out.value["sources_created"] == 1 and out.value["groups_created"] == 1
    assert airflow_calls == [("sync", ["jquants"])]
    text, exported = config_io.export_yaml(conn)
    assert config_io.parse_yaml(text, "x.yaml") == exported
    with pytest.raises(UsageError, match=r"^x.yaml is not valid YAML at line 1, column \d+"):
        config_io.parse_yaml("data_sources: [ {code: x", "x.yaml")


# -- inputs and backfill limits ------------------------------------------------------------------
def test_json_and_bool_inputs_have_one_wording():
    assert parse_json_object("  ", "config") == {} and parse_json_object(None, "config") == {}
    with pytest.raises(InputError) as exc:
        parse_json_object("{oops", "parameters", label="--parameters")
    assert exc.value.errors == {"parameters": "--parameters is not valid JSON (Expecting property name enclosed in"
                                              " double quotes at line 1, column 2)"}
    with pytest.raises(InputError, match='config must be a JSON object'):
        parse_json_object("[1]", "config")
    assert parse_bool(" Yes ") is True and parse_bool("off") is False
    with pytest.raises(ValueError):
        parse_bool("maybe")


def test_backfill_request_names_every_bad_field():
    ok = runs.backfill_request("2026-03-02", "2026-03-06", "", "")
    assert ok == runs.BackfillRequest(date(2026, 3, 2), date(2026, 3, 6), "none", 1)
    with pytest.raises(InputError) as exc:
        runs.backfill_request("March 2nd", "", "everything", "33")
    assert exc.value.errors == {
        "from_date": "From: give a date as YYYY-MM-DD (got 'March 2nd')",
        "to_date": "To: give a date as YYYY-MM-DD",
        "max_active_runs": "Parallel runs: a whole number from 1 to 32",
        "reprocess_behavior": "choose skip, redo failed or redo all",
    }
    with pytest.raises(InputError) as exc:
        runs.backfill_request(date(2026, 3, 6), date(2026, 3, 2), "failed", 32)
    assert list(exc.value.errors) == ["to_date"] and "before From (2026-03-06)" in exc.value.errors["to_date"]
    assert runs.REPROCESS_BEHAVIORS == ("none", "failed", "completed")


def test_backfill_checks_the_request_before_asking_airflow(conn, monkeypatch):
    sources.create(conn, SOURCE, airflow=False)
    groups.create(conn, GROUP)
    asked: list = []
    monkeypatch.setattr("moomarkets.airflow.ops.create_backfill", lambda *a, **kw: asked.append((a, kw)))
    reversed_range = runs.BackfillRequest(date(2026, 3, 6), date(2026, 3, 2))
    with pytest.raises(InputError):
        runs.backfill(conn, "jp_quotes", reversed_range, user_name="t")
    assert asked == []
    out = runs.backfill(conn, "jp_quotes", runs.BackfillRequest(date(2026, 3, 2), date(2026, 3, 6), "failed", 4),
                        user_name="t", dry_run=True)
    [(args, kwargs)] = asked
    assert args == ("jp_quotes", date(2026, 3, 2), date(2026, 3, 6))
    assert kwargs == {"reprocess_behavior": "failed", "max_active_runs": 4,
                      "user_name": "t", "dry_run": True}
    assert isinstance(out, Outcome) and out.notes == []
