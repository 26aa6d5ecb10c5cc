"""History mode end to end: one real run of the group's DAG (`dag.test()` with the conf the service
queues, no logical date) loads two weeks of the fake's bars in multi-day units, with the same run
and unit records as any run; a second history run over a longer range fetches only the new days;
a malformed conf fails the run before any request."""

from __future__ import annotations

from datetime import date, timedelta

import psycopg
import pytest

from dagtest import get_dag  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.airflow]


@pytest.fixture
def fake():
    """Larger pages than the default fake: history units span many days."""
    from moomarkets.testing.jquants_fake import FakeConfig, running_fake

    with running_fake(FakeConfig(api_key="test-key-123456", page_size=40)) as (base_url, state):
        yield base_url, state


def fake_keys(first: date, last: date) -> set[tuple[str, str]]:
    from moomarkets.testing.jquants_data import daily_bars_for_date

    out, d = set(), first
    while d <= last:
        out |= {(r["Code"], r["Date"]) for r in daily_bars_for_date(d)}
        d += timedelta(days=1)
    return out


def stored_keys(url: str) -> set[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return {(c, d.isoformat()) for c, d in conn.execute("SELECT code, date FROM daily_quotes")}


def requested_dates(state) -> list[str]:
    return sorted({p["date"].replace("-", "") for _, p in state.requests if "date" in p})


def test_a_history_run_loads_the_range_in_multi_day_units_and_a_rerun_only_the_rest(group_env, fake):
    from moomarkets.pipeline.history import HistorySpec

    _, state = fake
    dag = get_dag("jp_daily_quotes")
    conf = HistorySpec(date(2026, 11, 2), date(2026, 11, 13), batch={"id": "t", "from": "2026-11-02",
                                                                      "to": "2026-11-13"}).to_conf()
    run = dag.test(logical_date=None, run_conf=conf)
    assert run.state == "success"
    tis = run.get_task_instances()
    mapped = [ti for ti in tis if ti.task_id == "fetch_and_load"]
    assert len(mapped) == 2 and len(tis) == 6  # 10 weekdays / 2 pool slots: two 5-day units
    want = fake_keys(date(2026, 11, 2), date(2026, 11, 13))
    want = {(c, d if "-" in d else f"{d[:4]}-{d[4:6]}-{d[6:]}") for c, d in want}
    assert len(want) > 200 and stored_keys(group_env) == want
    with psycopg.connect(group_env) as conn:
        (status, total, done, rows, plan) = conn.execute(
            "SELECT status, units_total, units_done, rows_loaded, plan FROM runs").fetchone()
        keys = sorted(k for (k,) in conn.execute("SELECT unit_key FROM run_units"))
    assert (status, total, done, rows) == ("success", 2, 2, len(want))
    assert keys == ["dates:2026-11-02..2026-11-06", "dates:2026-11-09..2026-11-13"]
    assert plan["history"]["days"] == 10 and plan["history"]["batch"]["id"] == "t"

    # resumable: a longer range only fetches the days no unit loaded yet
    state.requests.clear()
    run2 = dag.test(logical_date=None, run_conf=HistorySpec(date(2026, 11, 2), date(2026, 11, 20)).to_conf())
    assert run2.state == "success"
    assert requested_dates(state) == [f"202611{d}" for d in range(16, 21)]
    assert len(stored_keys(group_env)) > len(want)


def test_a_malformed_history_conf_fails_the_run_without_requests(group_env, fake):
    _, state = fake
    run = get_dag("jp_daily_quotes").test(logical_date=None, run_conf={"history": {"from": "2026-11-02"}})
    assert run.state == "failed"
    ti = {t.task_id: t for t in run.get_task_instances()}["plan_units"]
    assert ti.state == "failed" and ti.try_number == 1  # no retry of a bad conf
    assert state.count() == 0
