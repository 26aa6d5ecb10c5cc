"""Verify and repair without Airflow: a week loaded with the pipeline's own run functions from the
local J-Quants fake into the real PostgreSQL, then corrupted (a value changed, a row deleted, an
extra row added, an adj_close changed); ``verify_range`` must find exactly those, fetch exactly
the load's plan through the shared rate limit, and ``repair`` must make source and warehouse equal."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import psycopg
import pytest
import yaml

from moomarkets.pipeline import GroupPipeline
from moomarkets.pipeline import run as runner
from moomarkets.pipeline import verify
from moomarkets.sources.base import Credentials, Interval
from moomarkets.warehouse import config_store as store
from moomarkets.warehouse.db import connect

pytestmark = pytest.mark.integration

TOKYO = ZoneInfo("Asia/Tokyo")
KEY = "verify-test-key-0815"
MON, FRI = date(2026, 11, 16), date(2026, 11, 20)
CONFIG = """
data_sources:
  - {code: jquants, name: J-Quants, kind: jquants, conn_id: jquants_default, is_active: true,
     config: {rate_limit: 6000/minute, max_concurrency: 2}}
job_groups:
  - {name: jp_daily_quotes, data_source: jquants, dataset: daily_quotes, schedule: "0 19 * * 1-5",
     timezone: Asia/Tokyo, parameters: {universe: all_listed}}
  - {name: jp_watch, data_source: jquants, dataset: daily_quotes, schedule: "0 19 * * 1-5",
     timezone: Asia/Tokyo, parameters: {tickers: ["7203", "8035", "1301"]}}
"""


@pytest.fixture(scope="module")
def fake():
    from moomarkets.testing.jquants_fake import FakeConfig, running_fake

    with running_fake(FakeConfig(api_key=KEY, page_size=20)) as (base_url, state):
        yield base_url, state


@pytest.fixture
def loaded(warehouse_url, fake):
    """The warehouse after a normal load of Mon..Fri for both groups; returns the pipelines."""
    base_url, _ = fake
    with connect(warehouse_url) as conn:
        store.import_config(conn, yaml.safe_load(CONFIG))
        pipes = {s.group.name: GroupPipeline.resolve(s) for s in store.read_specs(conn)}
    creds = Credentials(secret=KEY, host=base_url)
    interval = Interval(datetime(2026, 11, 13, 19, tzinfo=TOKYO), datetime(2026, 11, 20, 19, tzinfo=TOKYO))
    for name, pipe in pipes.items():
        units = runner.plan_units(pipe, interval, dag_id=name, run_id="load", url=warehouse_url, max_units=1024)
        for unit in units:
            runner.fetch_and_load(pipe, unit, dag_id=name, run_id="load", credentials=creds, url=warehouse_url)
    return pipes, creds


def run_verify(pipe, creds, url, **kw):
    return verify.verify_range(pipe, MON, FRI, url=url, credentials=creds, **kw)


def corrupt(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE daily_quotes SET close = close + 1 WHERE code = '72030' AND date = '2026-11-17'")
        conn.execute("DELETE FROM daily_quotes WHERE code = '13010' AND date = '2026-11-18'")
        conn.execute(
            "INSERT INTO daily_quotes (source, code, date, close) VALUES ('jquants', '99990', '2026-11-19', 1),"
            " ('jquants', '99990', '2026-11-23', 1), ('yahoo', '99990', '2026-11-19', 1)"  # out of scope
        )
        conn.execute("UPDATE daily_quotes SET adj_close = adj_close / 2 WHERE code = '80350' AND date = '2026-11-20'")


def test_clean_load_verifies_equal_at_exactly_the_load_requests(loaded, warehouse_url, fake, monkeypatch):
    pipes, creds = loaded
    _, state = fake
    pipe = pipes["jp_daily_quotes"]
    # the same plan as the load: one by-date unit per trading day, its pages included
    state.reset()
    plan = verify.plan(pipe, MON, FRI, url=warehouse_url)
    assert [u.key for u in plan] == [f"date:2026-11-{d}" for d in range(16, 21)]
    for unit in plan:
        pipe.source(creds).fetch(pipe.group.dataset, unit)
    load_requests = state.count()
    assert load_requests > len(plan)  # several pages per day

    limiters = []
    original = GroupPipeline.limiter

    def spy(self, url):
        limiters.append(original(self, url))
        return limiters[-1]

    monkeypatch.setattr(GroupPipeline, "limiter", spy)
    state.reset()
    report = run_verify(pipe, creds, warehouse_url)
    assert report.equal and report.ok and report.status == "equal"
    assert report.requests == state.count() == load_requests
    assert len(limiters) == 1 and limiters[0].acquired == load_requests  # every request took a token
    assert report.summary()["source_rows"] > 0
    with psycopg.connect(warehouse_url) as conn:
        rec = conn.execute("SELECT status, units, requests, missing, extra, mismatched, stale_adjusted, repaired"
                           " FROM verifications").fetchall()
    assert rec == [("equal", 5, load_requests, 0, 0, 0, 0, 0)]


def test_finds_exactly_the_corruptions_and_repair_fixes_them(loaded, warehouse_url, fake):
    pipes, creds = loaded
    pipe = pipes["jp_daily_quotes"]
    corrupt(warehouse_url)

    report = run_verify(pipe, creds, warehouse_url)
    assert not report.ok and report.status == "different"
    doc = report.to_dict()
    assert (doc["missing"], doc["extra"], doc["mismatched"], doc["stale_adjusted"]) == (1, 1, 1, 1)
    by_unit = {u["unit"]: u for u in doc["units"]}
    assert by_unit["date:2026-11-18"]["missing"] == [{"source": "jquants", "code": "13010", "date": "2026-11-18"}]
    assert by_unit["date:2026-11-19"]["extra"] == [{"source": "jquants", "code": "99990", "date": "2026-11-19"}]
    [mm] = by_unit["date:2026-11-17"]["mismatched"]
    assert mm["key"] == {"source": "jquants", "code": "72030", "date": "2026-11-17"}
    assert list(mm["columns"]) == ["close"]
    warehouse_close, source_close = mm["columns"]["close"]
    assert warehouse_close == source_close + 1
    [stale] = by_unit["date:2026-11-20"]["stale_adjusted"]
    assert stale["key"]["code"] == "80350" and list(stale["columns"]) == ["adj_close"]
    assert by_unit["date:2026-11-16"]["missing_count"] == 0 and by_unit["date:2026-11-16"]["mismatched"] == []

    fixed = run_verify(pipe, creds, warehouse_url, repair=True)
    assert fixed.repaired == 3  # missing + mismatched + stale adjusted; the extra row is only reported
    assert not fixed.ok and fixed.status == "different"
    assert {u.key: u.remaining for u in fixed.units}["date:2026-11-19"]["extra"] == 1

    again = run_verify(pipe, creds, warehouse_url)
    assert again.summary()["extra"] == 1 and sum(again.total(k) for k in verify.KINDS) == 1

    cleaned = run_verify(pipe, creds, warehouse_url, repair=True, delete_extra=True)
    assert cleaned.ok and cleaned.status == "repaired" and cleaned.deleted == 1 and cleaned.repaired == 0
    final = run_verify(pipe, creds, warehouse_url)
    assert final.ok and final.equal
    with psycopg.connect(warehouse_url) as conn:
        # rows outside the verified scope (another day, another source) are untouched
        assert conn.execute("SELECT count(*) FROM daily_quotes WHERE code = '99990'").fetchone()[0] == 2
        recs = conn.execute("SELECT status, repair, missing, extra, mismatched, stale_adjusted, repaired, deleted,"
                            " details->'units_with_differences' FROM verifications ORDER BY id").fetchall()
    assert recs == [
        ("different", False, 1, 1, 1, 1, 0, 0, 4),
        ("different", True, 1, 1, 1, 1, 3, 0, 4),
        ("different", False, 0, 1, 0, 0, 0, 0, 1),
        ("repaired", True, 0, 1, 0, 0, 0, 1, 1),
        ("equal", False, 0, 0, 0, 0, 0, 0, 0),
    ]


def test_sample_is_deterministic_by_seed_and_costs_only_its_units(loaded, warehouse_url, fake):
    pipes, creds = loaded
    _, state = fake
    pipe = pipes["jp_daily_quotes"]
    state.reset()
    first = run_verify(pipe, creds, warehouse_url, sample=2, seed=42)
    assert first.seed == 42 and first.planned_units == 5 and len(first.units) == 2
    assert first.requests == state.count()
    second = run_verify(pipe, creds, warehouse_url, sample=2, seed=42)
    assert [u.key for u in second.units] == [u.key for u in first.units]
    unseeded = run_verify(pipe, creds, warehouse_url, sample=1)
    assert isinstance(unseeded.seed, int) and len(unseeded.units) == 1  # a seed is chosen and reported
    assert len(run_verify(pipe, creds, warehouse_url, sample=50, seed=1).units) == 5


def test_ticker_group_verifies_per_code_and_scopes_extras_to_its_codes(loaded, warehouse_url, fake):
    pipes, creds = loaded
    _, state = fake
    pipe = pipes["jp_watch"]
    corrupt(warehouse_url)  # 72030 and 13010 and 80350 are in the list; 99990 is not
    state.reset()
    report = run_verify(pipe, creds, warehouse_url)
    assert [u.key for u in report.units] == ["code:13010", "code:72030", "code:80350"]  # 3 tickers < 5 days
    assert report.requests == state.count() == 3
    assert (report.total("missing"), report.total("extra"), report.total("mismatched"),
            report.total("stale_adjusted")) == (1, 0, 1, 1)


def test_a_failing_unit_is_reported_and_the_others_still_verify(loaded, warehouse_url, fake):
    pipes, creds = loaded
    _, state = fake
    state.reset()
    state.inject("400", 1, message="bad request")
    report = run_verify(pipes["jp_daily_quotes"], creds, warehouse_url)
    assert report.status == "failed" and not report.ok
    assert len(report.failed_units) == 1 and "400" in report.failed_units[0].error
    assert all(u.equal for u in report.units[1:])
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("SELECT status, units_failed FROM verifications").fetchone() == ("failed", 1)


def test_bad_ranges_are_usage_errors(loaded, warehouse_url):
    from moomarkets.errors import UsageError

    pipes, creds = loaded
    with pytest.raises(UsageError, match="before"):
        verify.verify_range(pipes["jp_daily_quotes"], FRI, MON, url=warehouse_url, credentials=creds)
    with pytest.raises(UsageError, match="--repair"):
        run_verify(pipes["jp_daily_quotes"], creds, warehouse_url, delete_extra=True)


def test_verifications_migration_downgrades_and_upgrades(warehouse_url):
    from alembic import command

    from moomarkets.warehouse import migrate

    def exists() -> bool:
        with psycopg.connect(warehouse_url) as conn:
            return conn.execute("SELECT to_regclass('verifications') IS NOT NULL").fetchone()[0]

    assert exists()
    cfg = migrate.alembic_config(warehouse_url)
    command.downgrade(cfg, "0005")
    assert not exists() and migrate.current(warehouse_url) == "0005"
    command.upgrade(cfg, "head")
    assert exists()


def test_a_broken_warehouse_step_closes_the_record_as_failed(loaded, warehouse_url, monkeypatch):
    from moomarkets.warehouse import verifications

    pipes, creds = loaded
    real, calls = verifications.compare_rows, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(verifications, "compare_rows", flaky)
    with pytest.raises(RuntimeError, match="disk full"):
        run_verify(pipes["jp_daily_quotes"], creds, warehouse_url)
    with psycopg.connect(warehouse_url) as conn:
        status, units_failed, error = conn.execute("SELECT status, units_failed, error FROM verifications").fetchone()
    # the unit it broke in and the three after it were not verified
    assert status == "failed" and units_failed == 4 and "date:2026-11-17: stopped: RuntimeError: disk full" in error
