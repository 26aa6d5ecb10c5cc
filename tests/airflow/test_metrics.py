"""Metrics of a real run: a group's DAG runs with ``dag.test()`` against the local J-Quants fake
(which answers one 429, one 500 and one 400; or restates a code's history), Airflow's metrics layer
sends StatsD packets to a UDP listener of this test, and their values equal what the warehouse
recorded for the run."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import defaultdict
from datetime import date, datetime
from zoneinfo import ZoneInfo

import psycopg
import pytest
import yaml

from dagtest import CONFIG, get_dag
from moomarkets.warehouse import config_store as store
from moomarkets.warehouse.db import connect

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

TOKYO = ZoneInfo("Asia/Tokyo")
NAME = "airflow.moomarkets.jquants.jp_daily_quotes."


class StatsdListener:
    """A UDP socket on a free local port; a thread collects every datagram."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.packets: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            self.packets.append(data.decode())

    def close(self) -> None:
        if self._stop.is_set():
            return
        time.sleep(0.5)  # the last datagrams of the run are on their way (local UDP: instant)
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def parsed(self, since: int = 0) -> dict[str, dict[str, list[float]]]:
        """{type: {name: [values]}} from StatsD lines ``name:value|c`` (``|ms``, ``|g``, ``|@rate``)
        of the packets from index ``since`` on."""
        out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for packet in self.packets[since:]:
            for line in packet.splitlines():
                name, _, rest = line.partition(":")
                value, kind = rest.split("|")[:2]
                out[kind][name].append(float(value))
        return out


def by_metric(got: dict[str, dict[str, list[float]]]) -> tuple[dict, dict, dict]:
    """The group's counters (summed), timings and gauges by metric name without the prefix."""
    counters = {n[len(NAME):]: sum(v) for n, v in got["c"].items() if n.startswith(NAME)}
    timings = {n[len(NAME):]: v for n, v in got["ms"].items() if n.startswith(NAME)}
    gauges = {n[len(NAME):]: v for n, v in got["g"].items() if n.startswith(NAME)}
    return counters, timings, gauges


@pytest.fixture
def statsd(monkeypatch):
    """Airflow's [metrics] pointed at the listener, and its metrics layer initialized from that config
    the way the task runner does in every task process (``dag.test()`` runs tasks in this process,
    where nothing else would re-read the changed config); reset to no metrics afterwards."""
    from airflow.sdk._shared.observability.metrics.base_stats_logger import NoStatsLogger
    from airflow.sdk.observability import stats
    from airflow.sdk.observability.metrics import stats_utils

    listener = StatsdListener()
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(listener.port))
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PREFIX", "airflow")
    stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)
    try:
        yield listener
    finally:
        listener.close()
        stats.initialize(factory=NoStatsLogger, export_legacy_names=False)


def test_run_metrics_reach_statsd_with_the_warehouse_values(group_env, fake, statsd):
    _, state = fake
    with connect(group_env) as conn, conn.transaction():
        store.update_group(conn, "jp_daily_quotes", schedule="0 19 * * 5")  # weekly: Mon..Fri, 5 units
    dag = get_dag("jp_daily_quotes")
    # the first unit meets a 429 and a 500 (both retried by the client), then a 400: it fails for good
    state.inject("429", 1)
    state.inject("500", 1)
    state.inject("400", 1, message="This API requires at least 1 parameter as follows; 'date','code'.")
    run = dag.test(logical_date=datetime(2026, 11, 20, 20, 0, tzinfo=TOKYO))
    assert run.state == "failed"  # one unit failed: the run is partial
    statsd.close()

    with psycopg.connect(group_env) as conn:
        rows, requests, h429, h5xx, wait, units, failed = conn.execute(
            "SELECT sum(rows), sum(requests), sum(http_429), sum(http_5xx), sum(wait_seconds), count(*),"
            " count(*) FILTER (WHERE status = 'failed') FROM run_units"
        ).fetchone()
        run_status = conn.execute("SELECT status FROM runs").fetchone()[0]
        checks_failed = conn.execute("SELECT count(*) FROM check_results WHERE NOT passed").fetchone()[0]
    got = statsd.parsed()
    counters, timings, gauges = by_metric(got)

    # the warehouse saw what the fake saw, and the metrics say the same
    assert (units, failed, run_status) == (5, 1, "partial")
    assert requests == state.count() >= 7  # 5 days (pages followed) + the 429 and 500 retries
    assert (h429, h5xx) == (1, 1)
    assert rows > 0
    assert counters["rows_loaded"] == rows
    assert counters["rows_changed"] == rows  # a fresh warehouse: every row is new
    assert counters["http_requests"] == requests
    assert counters["http_429"] == h429 == 1
    assert counters["http_5xx"] == h5xx == 1
    assert counters["units_ok"] == units - failed == 4
    assert counters["units_failed"] == failed == 1
    assert counters["run_partial"] == 1 and "run_success" not in counters and "run_failed" not in counters
    assert counters.get("check_failures", 0) == checks_failed
    assert "restatements" not in counters  # nothing to restate in this run
    assert gauges["run_rows_loaded"] == [rows]
    assert len(timings["unit_duration"]) == units and all(ms > 0 for ms in timings["unit_duration"])
    assert len(timings["rate_limit_wait"]) == units
    assert sum(timings["rate_limit_wait"]) == pytest.approx(wait * 1000, abs=units)  # ms, rounded per unit


def test_a_retried_unit_keeps_the_counts_of_every_attempt(group_env, fake, statsd, monkeypatch):
    """A unit whose first attempt runs out of client retries (three 429s and three 500s: retryable,
    so Airflow retries the task) and whose second attempt loads: run_units adds both attempts up,
    and the metrics, the fake's request count and the Health page's source_days all agree."""
    from moomarkets.sources.jquants.client import JQuantsClient
    from moomarkets.warehouse import health

    _, state = fake
    monkeypatch.setattr(JQuantsClient, "_backoff", lambda self, attempt: 0.05)  # 6 client attempts, fast
    with connect(group_env) as conn, conn.transaction():
        store.update_group(conn, "jp_daily_quotes", schedule="0 19 * * 5")  # weekly: Mon..Fri, 5 units
    state.inject("429", 3)
    state.inject("500", 3)
    run = get_dag("jp_daily_quotes").test(logical_date=datetime(2026, 11, 20, 20, 0, tzinfo=TOKYO))
    assert run.state == "success"  # the retry loaded the unit
    statsd.close()

    with psycopg.connect(group_env) as conn:
        units = conn.execute("SELECT unit_key, status, attempts, requests, http_429, http_5xx, wait_seconds"
                             " FROM run_units ORDER BY unit_key").fetchall()
        requests, h429, h5xx, wait = (sum(u[i] for u in units) for i in (3, 4, 5, 6))
    with connect(group_env) as conn:
        today = datetime.now(ZoneInfo("UTC")).date()
        days = health.source_days(conn, date.fromordinal(today.toordinal() - 1), date.fromordinal(today.toordinal() + 1))
    counters, timings, _ = by_metric(statsd.parsed())

    retried = [u for u in units if u[2] == 2]
    assert len(units) == 5 and all(u[1] == "success" for u in units) and len(retried) == 1
    # the retried unit kept its first attempt's 6 failed requests next to the second attempt's
    assert (retried[0][4], retried[0][5]) == (3, 3) and retried[0][3] > 6
    assert requests == state.count() == counters["http_requests"]
    assert (h429, h5xx) == (counters["http_429"], counters["http_5xx"]) == (3, 3)
    assert (counters["units_failed"], counters["units_ok"], counters["run_success"]) == (1, 5, 1)
    assert len(timings["rate_limit_wait"]) == 6  # one per attempt
    assert sum(timings["rate_limit_wait"]) == pytest.approx(wait * 1000, abs=6)
    assert [d["source"] for d in days] == ["jquants"]
    assert (sum(d["requests"] for d in days), sum(d["http_429"] for d in days), sum(d["http_5xx"] for d in days)) == (
        requests, 3, 3)
    assert sum(d["wait_seconds"] for d in days) == pytest.approx(wait)


def test_restatement_metrics(warehouse_url, airflow_db, statsd, monkeypatch, tmp_path):
    from moomarkets.testing import jquants_data as fd
    from moomarkets.testing.jquants_fake import FakeConfig, running_fake

    key = "metrics-restate-key-31"
    with running_fake(FakeConfig(api_key=key, page_size=4, n_issues=12, today=date(2026, 3, 27))) as (base_url, state):
        monkeypatch.setenv("MOOMARKETS_SNAPSHOT_PATH", str(tmp_path / "snapshot.json"))
        monkeypatch.setenv("AIRFLOW_CONN_JQUANTS_DEFAULT",
                           json.dumps({"conn_type": "jquants", "host": base_url, "password": key}))
        with connect(warehouse_url) as conn, conn.transaction():
            store.import_config(conn, yaml.safe_load(CONFIG))
            store.update_group(conn, "jp_daily_quotes", schedule="0 19 * * 5")  # weekly: Mon..Fri
        assert get_dag("jp_daily_quotes").test(logical_date=datetime(2026, 3, 27, 20, tzinfo=TOKYO)).state == "success"
        state.config.today = date(2026, 3, 31)  # the source restates the split code's history
        with connect(warehouse_url) as conn, conn.transaction():
            store.update_group(conn, "jp_daily_quotes", schedule="0 19 * * 1-5")
        state.reset()
        first = len(statsd.packets)
        run = get_dag("jp_daily_quotes").test(logical_date=datetime(2026, 3, 30, 20, tzinfo=TOKYO))
        assert run.state == "success"
        sent = state.count()
    statsd.close()
    with psycopg.connect(warehouse_url) as conn:
        unit_requests = conn.execute(
            "SELECT sum(u.requests) FROM run_units u JOIN runs r ON r.id = u.run_pk WHERE r.run_id = %s", (run.run_id,)
        ).fetchone()[0]
        restated = conn.execute("SELECT code, requests, http_429, http_5xx FROM restatements"
                                " WHERE status = 'done'").fetchall()
        all_requests = conn.execute("SELECT (SELECT sum(requests) FROM run_units)"
                                    " + (SELECT sum(requests) FROM restatements)").fetchone()[0]
    counters, _, _ = by_metric(statsd.parsed(since=first))
    assert restated == [(fd.SPLIT_CODE, 2, 0, 0)]
    assert counters["restatements"] == 1 and "restatements_failed" not in counters  # 0: not sent
    assert counters["http_requests"] == unit_requests + 2 == sent  # the units' and the restatement's
    assert counters["run_success"] == 1
    # the Health page counts the restatement's requests with the source's (both runs' units + 2)
    from moomarkets.warehouse import health

    with connect(warehouse_url) as conn:
        today = datetime.now(ZoneInfo("UTC")).date()
        days = health.source_days(conn, date.fromordinal(today.toordinal() - 1), date.fromordinal(today.toordinal() + 1))
    assert sum(d["requests"] for d in days) == all_requests > unit_requests + 2



def test_names_tags_and_a_broken_backend():
    """What OpenTelemetry and Datadog receive: the tags source, group and dataset with every metric;
    skipped runs send nothing; a backend that raises never fails the task."""
    from airflow.sdk._shared.observability.metrics.base_stats_logger import NoStatsLogger
    from airflow.sdk.observability import stats

    from moomarkets.airflow import metrics
    from moomarkets.config.models import GroupSpec
    from moomarkets.pipeline import GroupPipeline

    sources, groups = store.parse_config(yaml.safe_load(CONFIG))
    pipe = GroupPipeline.resolve(GroupSpec(group=groups[0], source=sources[0]))
    calls: list[tuple] = []

    class Recorder:
        def incr(self, stat, count=1, rate=1, *, tags=None):
            calls.append(("incr", stat, count, tags))

        def timing(self, stat, dt, *, tags=None):
            calls.append(("timing", stat, dt.total_seconds(), tags))

        def gauge(self, stat, value, rate=1, delta=False, *, tags=None):
            calls.append(("gauge", stat, value, tags))

    class Broken(Recorder):
        def incr(self, *args, **kwargs):
            raise OSError("statsd host is gone")

    unit = {"unit": "date:2026-11-20", "status": "success", "rows": 7, "changed": 3, "requests": 2, "http_429": 0,
            "http_5xx": 0, "wait_seconds": 1.5, "seconds": 2.25, "item_errors": 0}
    tags = {"source": "jquants", "group": "jp_daily_quotes", "dataset": "daily_quotes"}
    try:
        stats.initialize(factory=Recorder, export_legacy_names=False)
        metrics.emit_unit(pipe, unit)
        metrics.emit_run(pipe, {"status": "skipped", "rows_loaded": 0})
        metrics.emit_run(pipe, {"status": "missing", "rows_loaded": 0})
        assert all(c[3] == tags for c in calls)
        got = {(kind, stat.removeprefix("moomarkets.jquants.jp_daily_quotes.")): v for kind, stat, v, _ in calls}
        # counters of 0 (no 429, no 5xx) are not sent; timings and gauges are, as measured
        assert got == {("incr", "rows_loaded"): 7, ("incr", "rows_changed"): 3, ("incr", "units_ok"): 1,
                       ("incr", "http_requests"): 2,
                       ("timing", "rate_limit_wait"): 1.5, ("timing", "unit_duration"): 2.25,
                       ("incr", "run_failed"): 1, ("gauge", "run_rows_loaded"): 0}
        # a record_run retried after it closed the run (same outcome) does not count the run again
        calls.clear()
        metrics.emit_run(pipe, {"status": "success", "rows_loaded": 5, "newly_closed": False})
        assert calls == []
        metrics.emit_run(pipe, {"status": "success", "rows_loaded": 5, "newly_closed": True})
        assert [(kind, stat.rsplit(".", 1)[1], v) for kind, stat, v, _ in calls] == [
            ("incr", "run_success", 1), ("gauge", "run_rows_loaded", 5)]
        stats.initialize(factory=Broken, export_legacy_names=False)
        metrics.emit_unit(pipe, unit)  # logged, not raised
    finally:
        stats.initialize(factory=NoStatsLogger, export_legacy_names=False)
