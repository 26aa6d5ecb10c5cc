"""Group dependencies through the services and the config store, on a real PostgreSQL: unknown
upstreams and cycles are refused with nothing written, a group others need cannot be removed, an
import may list a group before its upstream, and the new fields survive export/import and the
parse-time snapshot."""

from __future__ import annotations

import json

import pytest
import yaml

from moomarkets.config.models import GroupSpec
from moomarkets.errors import ConfigError
from moomarkets.services import config_io, groups, sources
from moomarkets.warehouse import config_snapshot
from moomarkets.warehouse import config_store as store
from moomarkets.warehouse.db import connect

pytestmark = pytest.mark.integration

SOURCE = {"code": "jquants", "name": "J-Quants", "kind": "jquants"}
BASE = {"data_source": "jquants", "dataset": "daily_quotes", "schedule": "0 19 * * 1-5", "timezone": "Asia/Tokyo",
        "parameters": {"universe": "all_listed"}}


@pytest.fixture
def conn(warehouse_url):
    with connect(warehouse_url, autocommit=True) as c:
        sources.create(c, SOURCE, airflow=False)
        yield c


def add(conn, name: str, **kw) -> None:
    groups.create(conn, {**BASE, "name": name, **kw})


def rows(conn) -> list[tuple]:
    """Every stored group with the fields a dependency change touches, and when it last changed."""
    return [tuple(r.values()) for r in conn.execute(
        "SELECT name, depends_on, upstream_timeout, alerts::text, updated_at FROM job_groups ORDER BY name")]


def test_upstreams_must_exist_and_a_group_keeps_them(conn):
    add(conn, "jp_calendar", dataset="trading_calendar", parameters={})
    before = rows(conn)
    with pytest.raises(ConfigError) as exc:
        add(conn, "jp_quotes", depends_on=["jp_calendar", "nope"])
    assert str(exc.value) == "job group 'jp_quotes': depends_on: unknown job group 'nope'"
    assert rows(conn) == before  # nothing written

    add(conn, "jp_quotes", depends_on="jp_calendar", upstream_timeout="90m")
    g = store.get_group(conn, "jp_quotes")
    assert g.depends_on == ["jp_calendar"] and g.upstream_timeout == "1h30m"
    assert groups.downstream(conn, "jp_calendar") == ["jp_quotes"]
    assert groups.update(conn, "jp_quotes", {"depends_on": ""}, airflow=False).value.depends_on == []
    assert groups.downstream(conn, "jp_calendar") == []


def test_a_cycle_is_refused_naming_it_and_nothing_changes(conn):
    add(conn, "jp_a")
    add(conn, "jp_b", depends_on=["jp_a"])
    add(conn, "jp_c", depends_on=["jp_b"])
    before = rows(conn)
    with pytest.raises(ConfigError) as exc:
        groups.update(conn, "jp_a", {"depends_on": ["jp_c"], "description": "new"}, airflow=False)
    assert str(exc.value) == "job group 'jp_a': depends_on: cycle jp_a -> jp_c -> jp_b -> jp_a"
    assert rows(conn) == before
    with pytest.raises(ConfigError, match="depends_on: a group cannot depend on itself"):
        groups.update(conn, "jp_a", {"depends_on": ["jp_a"]}, airflow=False)
    assert rows(conn) == before


def test_a_group_others_depend_on_cannot_be_removed(conn):
    add(conn, "jp_trading_calendar", dataset="trading_calendar", parameters={})
    add(conn, "jp_daily_quotes", depends_on=["jp_trading_calendar"])
    add(conn, "jp_topix", dataset="index_quotes", parameters={"tickers": ["0000"]}, depends_on=["jp_trading_calendar"])
    with pytest.raises(ConfigError) as exc:
        groups.remove(conn, "jp_trading_calendar")
    assert str(exc.value) == ("job group 'jp_trading_calendar' is needed by jp_daily_quotes, jp_topix (depends_on);"
                              " remove it from their depends_on first")
    assert [r[0] for r in rows(conn)] == ["jp_daily_quotes", "jp_topix", "jp_trading_calendar"]
    groups.remove(conn, "jp_topix")
    groups.update(conn, "jp_daily_quotes", {"depends_on": []}, airflow=False)
    groups.remove(conn, "jp_trading_calendar")
    assert [r[0] for r in rows(conn)] == ["jp_daily_quotes"]


def test_a_group_cannot_be_renamed(conn):
    add(conn, "jp_a")
    with pytest.raises(ConfigError, match="a job group's name cannot be changed"):
        groups.update(conn, "jp_a", {"name": "jp_b"}, airflow=False)
    assert [r[0] for r in rows(conn)] == ["jp_a"]


FILE = """
data_sources:
  - {code: jquants, name: J-Quants, kind: jquants, conn_id: jquants_default}
job_groups:
  - {name: jp_quotes, data_source: jquants, dataset: daily_quotes, schedule: "0 19 * * 1-5",
     parameters: {universe: all_listed}, depends_on: [jp_calendar, jp_listed], upstream_timeout: 2h,
     alerts: {on: [failure]}}
  - {name: jp_listed, data_source: jquants, dataset: listed_info, schedule: "30 7 * * 1-5",
     parameters: {universe: all_listed}, depends_on: [jp_calendar]}
  - {name: jp_calendar, data_source: jquants, dataset: trading_calendar, schedule: "0 7 * * *"}
"""


def test_import_takes_groups_in_any_order_and_round_trips(conn):
    out = config_io.import_config(conn, yaml.safe_load(FILE), airflow=False)
    assert out.value["groups_created"] == 3
    assert store.get_group(conn, "jp_quotes").depends_on == ["jp_calendar", "jp_listed"]
    text, data = config_io.export_yaml(conn)
    by_name = {g["name"]: g for g in data["job_groups"]}
    assert by_name["jp_quotes"]["depends_on"] == ["jp_calendar", "jp_listed"]
    assert by_name["jp_quotes"]["upstream_timeout"] == "2h" and by_name["jp_quotes"]["alerts"] == {"on": ["failure"]}
    # defaults are left out, so old files and short files read back the same
    assert "depends_on" not in by_name["jp_calendar"] and "upstream_timeout" not in by_name["jp_listed"]
    assert "alerts" not in by_name["jp_calendar"] and "alerts" not in data["data_sources"][0]
    before = rows(conn)
    config_io.import_config(conn, yaml.safe_load(text), airflow=False)
    assert [r[:4] for r in rows(conn)] == [r[:4] for r in before]
    assert config_io.export_yaml(conn)[0] == text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.replace("depends_on: [jp_calendar]}", "depends_on: [jp_quotes]}"),
         "job group 'jp_listed': depends_on: cycle jp_listed -> jp_quotes -> jp_listed"),
        (lambda f: f.replace("[jp_calendar, jp_listed]", "[jp_calendar, jp_nope]"),
         "job group 'jp_quotes': depends_on: unknown job group 'jp_nope'"),
        (lambda f: f.replace("upstream_timeout: 2h", "upstream_timeout: 8d"),
         "job group 'jp_quotes': upstream_timeout: '8d' is out of range (1m .. 7d)"),
    ],
)
def test_a_bad_graph_in_a_file_is_one_error_and_nothing_is_written(conn, change, message):
    with pytest.raises(ConfigError) as exc:
        config_io.import_config(conn, yaml.safe_load(change(FILE)), airflow=False)
    assert str(exc.value) == message
    assert rows(conn) == []


def test_an_import_cycle_through_stored_groups_is_caught(conn):
    add(conn, "jp_stored")
    data = {"job_groups": [{**BASE, "name": "jp_new", "depends_on": ["jp_stored"]},
                           {**BASE, "name": "jp_stored", "depends_on": ["jp_new"]}]}
    before = rows(conn)
    with pytest.raises(ConfigError, match=r"cycle (jp_new -> jp_stored -> jp_new|jp_stored -> jp_new -> jp_stored)"):
        config_io.import_config(conn, data, airflow=False)
    assert rows(conn) == before


def test_replacing_never_removes_a_group_still_needed(conn):
    add(conn, "jp_calendar", dataset="trading_calendar", parameters={})
    add(conn, "jp_other")
    data = {"data_sources": [{**SOURCE, "conn_id": "jquants_default"}],
            "job_groups": [{**BASE, "name": "jp_quotes", "depends_on": ["jp_calendar"]}]}
    before = rows(conn)
    with pytest.raises(ConfigError) as exc:
        config_io.import_config(conn, data, replace_all=True, airflow=False)
    assert str(exc.value) == ("job group 'jp_quotes': depends_on: job group 'jp_calendar' is not in the file, so"
                              " replacing would remove it; keep it in the file or remove it from depends_on")
    assert rows(conn) == before
    data["job_groups"][0]["depends_on"] = []
    assert config_io.import_config(conn, data, replace_all=True, airflow=False).value["removed"] == 2
    assert [r[0] for r in rows(conn)] == ["jp_quotes"]


def test_the_parse_time_snapshot_carries_the_new_fields_and_reads_old_ones(conn, warehouse_url, tmp_path):
    config_io.import_config(conn, yaml.safe_load(FILE), airflow=False)
    sources.update(conn, "jquants", {"alerts": {"on": ["late"], "late_after": "2h"}}, airflow=False)
    snap = tmp_path / "snapshot.json"
    loaded = config_snapshot.load_specs(url=warehouse_url, timeout=5, snapshot=snap)
    by_name = {s.group.name: s for s in loaded.specs}
    quotes = by_name["jp_quotes"]
    assert quotes.group.depends_on == ["jp_calendar", "jp_listed"] and quotes.group.upstream_timeout == "2h"
    assert quotes.group.alerts == {"on": ["failure"]} and quotes.source.alerts == {"on": ["late"], "late_after": "2h"}
    assert config_snapshot.read_snapshot(snap) == loaded.specs

    # a snapshot written before these fields existed still loads, with their defaults
    old = json.loads(snap.read_text())
    for g in old["groups"]:
        for key in ("depends_on", "upstream_timeout", "alerts"):
            g["group"].pop(key)
        g["source"].pop("alerts")
    snap.write_text(json.dumps(old))
    specs = {s.group.name: s for s in config_snapshot.read_snapshot(snap)}
    assert specs["jp_quotes"].group.depends_on == [] and specs["jp_quotes"].group.upstream_timeout == "6h"
    assert specs["jp_quotes"].source.alerts == {} and isinstance(specs["jp_quotes"], GroupSpec)


def test_validate_reports_upstreams_broken_behind_the_services_back(conn):
    add(conn, "jp_a")
    add(conn, "jp_b", depends_on=["jp_a"])
    add(conn, "jp_c")
    conn.execute("UPDATE job_groups SET depends_on = '{ghost}' WHERE name = 'jp_a'")  # by hand in SQL
    errors = {c.name: c.error for c in groups.check(conn)}
    assert errors == {"jp_a": "depends_on: unknown job group 'ghost'",
                      "jp_b": "job group 'jp_a': depends_on: unknown job group 'ghost'", "jp_c": None}
    conn.execute("UPDATE job_groups SET depends_on = '{jp_b}' WHERE name = 'jp_a'")
    assert groups.check(conn, ["jp_a"])[0].error == "depends_on: cycle jp_a -> jp_b -> jp_a"
