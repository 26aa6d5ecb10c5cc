"""DAG integrity: the factory's DAGs import cleanly, carry the expected settings, reference only
pools that exist, survive a config DB outage, and isolate a malformed group."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
import yaml

from moomarkets.warehouse import config_store as store
from moomarkets.warehouse.db import connect
from moomarkets.airflow.pools import pool_name

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "include" / "moomarkets" / "examples" / "example.yaml"


@pytest.fixture
def configured(warehouse_url, tmp_path, monkeypatch):
    monkeypatch.setenv("MOOMARKETS_SNAPSHOT_PATH", str(tmp_path / "snapshot.json"))
    with connect(warehouse_url) as conn:
        store.import_config(conn, yaml.safe_load(EXAMPLE.read_text()))
    return warehouse_url


GROUPS = sorted(g["name"] for g in yaml.safe_load(EXAMPLE.read_text())["job_groups"])


def dagbag(known_pools=None):
    from airflow.dag_processing.dagbag import DagBag

    # the groups' file (dags/ also holds the watchdog: see test_watchdog_dag_needs_no_database)
    return DagBag(dag_folder=str(ROOT / "dags" / "moomarkets_groups.py"), known_pools=known_pools)


def test_every_group_becomes_a_valid_dag(configured):
    sources = [s["code"] for s in yaml.safe_load(EXAMPLE.read_text())["data_sources"]]
    bag = dagbag(known_pools={"default_pool", *map(pool_name, sources)})
    assert bag.import_errors == {}
    assert sorted(bag.dag_ids) == GROUPS and len(GROUPS) >= 6
    assert not bag.dag_warnings, bag.dag_warnings
    for dag_id in bag.dag_ids:
        dag = bag.dags[dag_id]
        group = next(g for g in yaml.safe_load(EXAMPLE.read_text())["job_groups"] if g["name"] == dag_id)
        assert {"moomarkets", f"source:{group['data_source']}", f"dataset:{group['dataset']}"} <= set(dag.tags)
        assert dag.doc_md and "Parameters" in dag.doc_md
        assert dag.max_active_runs == 1 and dag.catchup is False
        assert type(dag.timetable).__name__ == "TradingDayTimetable"  # cron data intervals, backfills by trading day
        waits = [f"wait_for_{u}" for u in group.get("depends_on", [])]  # one deferrable sensor per upstream
        assert [t.task_id for t in dag.tasks if t.task_id not in waits] == [
            "plan_units", "fetch_and_load", "restate_history", "check_loaded", "record_run"]
        assert all(dag.get_task(w).downstream_task_ids == {"plan_units"} and dag.get_task(w).pool == "default_pool"
                   for w in waits)
        assert dag.get_task("restate_history").pool == f"moomarkets_{group['data_source']}"
        fetch = dag.get_task("fetch_and_load")
        assert fetch.pool == f"moomarkets_{group['data_source']}"
        assert fetch.retries >= 2 and fetch.retry_exponential_backoff
        assert fetch.execution_timeout is not None
        assert all(t.owner == "moomarkets" for t in dag.tasks)
    assert bag.dags["jp_watchlist_quotes"].is_paused_upon_creation is True  # disabled group
    assert bag.dags["jp_daily_quotes"].is_paused_upon_creation is False


def test_watchdog_dag_needs_no_database(monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("MOOMARKETS_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")  # never reached
    bag = DagBag(dag_folder=str(ROOT / "dags" / "moomarkets_watchdog.py"), known_pools={"default_pool"})
    assert bag.import_errors == {} and not bag.dag_warnings and bag.dag_ids == ["moomarkets_watchdog"]
    dag = bag.dags["moomarkets_watchdog"]
    assert dag.catchup is False and dag.max_active_runs == 1 and "moomarkets" in dag.tags
    assert all(t.owner == "moomarkets" for t in dag.tasks)


def test_missing_pool_is_caught(configured):
    bag = dagbag(known_pools={"default_pool"})
    assert any("moomarkets_jquants" in w.message for w in bag.dag_warnings)


def test_malformed_group_breaks_only_itself(configured, caplog):
    with psycopg.connect(configured, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO job_groups (name, data_source_id, dataset, schedule, timezone, parameters)"
            " SELECT 'aa_broken', id, 'daily_quotes', '0 99 * * *', 'UTC', '{\"universe\": \"all_listed\"}'"
            " FROM data_sources WHERE code = 'jquants'"
        )
    bag = dagbag()
    assert bag.import_errors == {}
    assert sorted(bag.dag_ids) == ["aa_broken", *GROUPS]
    broken = bag.dags["aa_broken"]
    assert "config-error" in broken.tags
    assert "not a valid cron expression" in broken.doc_md
    assert type(broken.timetable).__name__ == "NullTimetable"  # never scheduled
    assert "job group 'aa_broken' is invalid" in caplog.text
    assert {"plan_units", "fetch_and_load", "restate_history", "record_run"} <= {t.task_id for t in bag.dags["jp_daily_quotes"].tasks}


def test_config_db_outage_uses_last_known_good_snapshot(configured, monkeypatch, caplog):
    first = dagbag()
    assert sorted(first.dag_ids) == GROUPS
    monkeypatch.setenv("MOOMARKETS_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/down")
    second = dagbag()
    assert second.import_errors == {}
    assert sorted(second.dag_ids) == sorted(first.dag_ids)
    assert "last-known-good snapshot" in caplog.text
    # with no snapshot either, the file fails loudly instead of silently producing no DAGs
    os.remove(os.environ["MOOMARKETS_SNAPSHOT_PATH"])
    third = dagbag()
    assert third.dag_ids == [] and len(third.import_errors) == 1
    assert "no usable snapshot" in next(iter(third.import_errors.values()))


def test_worker_parse_builds_only_the_requested_dag(configured, monkeypatch):
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "jp_watchlist_quotes")
    bag = dagbag()
    assert bag.dag_ids == ["jp_watchlist_quotes"]


def test_parse_is_deterministic(configured):
    from airflow.serialization.serialized_objects import DagSerialization

    a = DagSerialization.to_dict(dagbag().dags["jp_daily_quotes"])
    b = DagSerialization.to_dict(dagbag().dags["jp_daily_quotes"])
    assert a == b
