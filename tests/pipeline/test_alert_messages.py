"""Alert messages and the decisions behind them, without Airflow: which kinds a run earned, what
each rendering says (a ``{{`` stays literal, secrets are scrubbed, HTML is escaped), when a trading
day is due, and the once-per-key ledger against the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from moomarkets.config.alerts import AlertTarget
from moomarkets.pipeline import alerts

BASE = "https://airflow.example.com/"
FACTS = {
    "group_name": "jp_daily_quotes", "status": "partial", "error": "x",
    "data_interval_start": datetime(2026, 11, 26, 10, tzinfo=UTC),
    "data_interval_end": datetime(2026, 11, 27, 10, tzinfo=UTC),
    "covers_from": date(2026, 11, 27), "covers_to": date(2026, 11, 27),
    "units_total": 40, "units_failed": 2, "rows_loaded": 4321,
    "failed_units": [{"unit_key": "date:2026-11-27#3", "error": "HTTPError: 400 {{ dag_id }} key=s3cr3t-key"},
                     {"unit_key": "date:2026-11-27#9", "error": None}],
}
SUMMARY = {"status": "partial", "units_total": 40, "units_failed": 2, "rows_loaded": 4321,
           "failed_units": ["date:2026-11-27#3", "date:2026-11-27#9"],
           "problems": ["check completeness (error): 3 of 4000 issue-days missing <b>", "restatement 7203: stale"]}


def run_alert(kind: str = "partial", **kw) -> alerts.Alert:
    args = {"group": "jp_daily_quotes", "dag_id": "jp_daily_quotes", "run_id": "scheduled__2026-11-26T10:00:00+00:00",
            "facts": FACTS, "summary": SUMMARY, "base_url": BASE, "secrets": ["s3cr3t-key"], **kw}
    return alerts.build_run_alert(kind, **args)


@pytest.mark.parametrize("summary, kinds", [
    ({"status": "success", "problems": []}, []),
    ({"status": "skipped", "problems": []}, []),
    ({"status": "missing", "problems": []}, ["failure"]),
    ({"status": "partial", "units_failed": 2, "problems": []}, ["partial"]),
    ({"status": "partial", "units_failed": 2, "problems": ["check price_sanity (error): 1 of 9"]},
     ["partial", "check_errors"]),
    ({"status": "failed", "units_failed": 0, "problems": ["check completeness (error): 3 of 9"]}, ["check_errors"]),
    ({"status": "failed", "units_failed": 5, "units_total": 5, "problems": []}, ["failure"]),
    ({"status": "failed", "units_failed": 0, "problems": ["check_loaded did not complete"]}, ["failure"]),
    ({"status": "failed", "units_failed": 0, "problems": ["upstream jp_calendar did not load 2026-11-27 in 6h"]},
     ["failure"]),
])
def test_run_kinds(summary, kinds):
    assert alerts.run_kinds(summary) == kinds


def test_partial_alert_names_everything_and_keeps_braces_literal_and_secrets_out():
    a = run_alert()
    assert a.subject == "[MooMarkets] partial: jp_daily_quotes 2026-11-27 — 2 of 40 units failed"
    assert a.key == "scheduled__2026-11-26T10:00:00+00:00"
    p = a.payload
    assert p["failed_units"] == ["date:2026-11-27#3", "date:2026-11-27#9"]
    assert p["first_error"] == "HTTPError: 400 {{ dag_id }} key=***"
    assert p["rows_loaded"] == 4321 and p["units_total"] == 40 and p["units_failed"] == 2
    assert p["interval_start"] == "2026-11-26T10:00:00+00:00" and p["interval_end"] == "2026-11-27T10:00:00+00:00"
    assert p["run_url"] == ("https://airflow.example.com/dags/jp_daily_quotes/runs/"
                            "scheduled__2026-11-26T10%3A00%3A00%2B00%3A00")
    assert p["group_url"] == "https://airflow.example.com/moomarkets/groups/jp_daily_quotes"
    assert set(p) >= {"group", "kind", "dag_id", "run_id", "interval_start", "interval_end", "units_total",
                      "units_failed", "failed_units", "first_error", "rows_loaded", "problems", "run_url", "group_url"}
    for text in (a.text, a.html, a.subject, repr(p)):
        assert "s3cr3t-key" not in text
    assert "{{ dag_id }}" in a.text and "{{ dag_id }}" in a.html  # data, never a template
    assert "&lt;b&gt;" in a.html and "<b>" not in a.html  # escaped for HTML
    assert f"<{p['run_url']}|" in a.text and p["group_url"] in a.text  # Slack links
    assert "4,321" in a.text and "date:2026-11-27#3" in a.html


def test_check_errors_alert_lists_only_the_checks():
    a = run_alert("check_errors")
    assert a.subject.endswith("— 1 data check(s) failed")
    assert a.payload["problems"] == ["check completeness (error): 3 of 4000 issue-days missing <b>"]


def test_failure_alert_without_a_run_record_says_why():
    a = run_alert("failure", facts=None, summary={"status": "missing", "problems": []})
    assert "plan_units failed" in a.payload["first_error"] and a.subject.endswith("— run failed")


def test_failure_alert_carries_the_run_error_when_no_unit_ran():
    wait = "upstream jp_calendar has not completely loaded 2026-11-27 after 6h"
    facts = {**FACTS, "status": "failed", "error": wait, "units_total": 0, "units_failed": 0, "rows_loaded": 0,
             "failed_units": []}
    a = run_alert("failure", facts=facts, summary={"status": "failed", "problems": [wait]})
    assert a.payload["first_error"] == wait and a.payload["problems"] == [wait] and wait in a.text


def test_late_alert():
    a = alerts.build_late_alert(group="g1", day=date(2026, 11, 27), deadline=datetime(2026, 11, 27, 12, tzinfo=UTC),
                                last_complete=date(2026, 11, 26), base_url=BASE)
    assert a.key == "2026-11-27" and a.kind == "late"
    assert a.subject == "[MooMarkets] late: g1 2026-11-27 — not completely loaded by 2026-11-27 12:00 UTC"
    assert a.payload["last_complete"] == "2026-11-26" and "Last completely loaded day: 2026-11-26" in a.text


CONFIG = """
data_sources:
  - {code: jquants, name: J-Quants, kind: jquants, conn_id: jquants_default, is_active: true}
job_groups:
  - {name: jp_daily_quotes, data_source: jquants, dataset: daily_quotes, schedule: "0 19 * * 1-5",
     timezone: Asia/Tokyo, parameters: {universe: all_listed}}
  - {name: jp_quiet, data_source: jquants, dataset: daily_quotes, schedule: "0 19 * * 1-5",
     timezone: Asia/Tokyo, parameters: {universe: all_listed}}
"""


@pytest.mark.integration
def test_late_alerts_follow_the_warehouse(warehouse_url):
    import json

    import yaml
    from moomarkets.warehouse import config_store
    from moomarkets.warehouse.db import connect

    with connect(warehouse_url) as conn, conn.transaction():
        config_store.import_config(conn, yaml.safe_load(CONFIG))
        conn.execute("UPDATE data_sources SET alerts = %s", (json.dumps(
            {"late_after": "2h", "targets": [{"type": "slack", "conn_id": "slack_alerts"}]}),))
        conn.execute("UPDATE job_groups SET alerts = %s WHERE name = 'jp_quiet'", (json.dumps({"on": ["failure"]}),))
        conn.execute("UPDATE job_groups SET created_at = '2026-11-01T00:00:00Z'")  # before the moments below
        conn.execute("INSERT INTO runs (group_name, dag_id, run_id, status, covers_from, covers_to)"
                     " VALUES ('jp_daily_quotes', 'jp_daily_quotes', 'r1', 'success', '2026-11-01', '2026-11-26')")

    def late(now):
        return [(a.group, a.key, a.payload["last_complete"], a.payload["deadline"])
                for _, a in alerts.late_alerts(warehouse_url, now=now, base_url=BASE)]

    # Friday's bars close 15:30 Tokyo, the run starts 19:00 Tokyo (10:00 UTC): due at 12:00 UTC
    assert late(datetime(2026, 11, 27, 11, 59, tzinfo=UTC)) == []  # Thursday is loaded; Friday not due
    assert late(datetime(2026, 11, 27, 12, 0, tzinfo=UTC)) == [
        ("jp_daily_quotes", "2026-11-27", "2026-11-26", "2026-11-27T12:00:00+00:00")]  # jp_quiet wants no late
    with connect(warehouse_url) as conn, conn.transaction():
        conn.execute("UPDATE runs SET covers_to = '2026-11-27'")
    assert late(datetime(2026, 11, 30, 11, 0, tzinfo=UTC)) == []  # Monday morning: Friday loaded, Monday not due
    # Monday's run failed, Tuesday's loaded: on Wednesday Monday is late (one alert for that day)
    with connect(warehouse_url) as conn, conn.transaction():
        conn.execute("INSERT INTO runs (group_name, dag_id, run_id, status, covers_from, covers_to) VALUES"
                     " ('jp_daily_quotes', 'jp_daily_quotes', 'r2', 'failed', '2026-11-30', '2026-11-30'),"
                     " ('jp_daily_quotes', 'jp_daily_quotes', 'r3', 'success', '2026-12-01', '2026-12-01')")
    assert late(datetime(2026, 12, 2, 9, 0, tzinfo=UTC)) == [
        ("jp_daily_quotes", "2026-11-30", "2026-12-01", "2026-11-30T12:00:00+00:00")]


@pytest.mark.integration
def test_ledger_sends_once_and_a_failing_target_does_not_stop_the_others(warehouse_url):
    targets = [AlertTarget("webhook", "broken"), AlertTarget("slack", "ok")]
    calls = []

    def send(target, alert):
        calls.append(target.label)
        if target.conn_id == "broken":
            raise alerts.DeliveryError("refused")

    a = run_alert()
    first = alerts.deliver(warehouse_url, a, targets, send)
    assert first.sent == ["slack:ok"] and first.failed == {"webhook:broken": "refused"}
    again = alerts.deliver(warehouse_url, a, targets, send)
    # the failed target is tried again (it never got the alert), the delivered one is not
    assert again.already == ["slack:ok"] and calls == ["webhook:broken", "slack:ok", "webhook:broken"]
    from moomarkets.warehouse import alerts as ledger
    from moomarkets.warehouse.db import connect

    with connect(warehouse_url) as conn:
        rows = {r["target"]: (r["status"], r["error"]) for r in ledger.recent(conn, "jp_daily_quotes")}
    assert rows == {"slack:ok": ("sent", None), "webhook:broken": ("failed", "refused")}


def _rows(url):
    from moomarkets.warehouse.db import connect

    with connect(url) as conn:
        return {(r["key"], r["target"]): (r["status"], r["attempts"], r["error"]) for r in conn.execute(
            "SELECT key, target, status, attempts, error FROM alerts_sent")}


def _age(url, minutes):
    from moomarkets.warehouse.db import connect

    with connect(url) as conn, conn.transaction():
        conn.execute("UPDATE alerts_sent SET claimed_at = claimed_at - make_interval(mins => %s)", (minutes,))


@pytest.mark.integration
def test_resend_retries_a_failed_delivery_up_to_three_attempts(warehouse_url):
    target = AlertTarget("webhook", "hook", endpoint="/hooks/x")
    up, got = {"hook": False}, []

    def send(t, alert):
        if not up["hook"]:
            raise alerts.DeliveryError("HTTPError: 500")
        got.append((t, alert))

    a = run_alert()
    assert alerts.deliver(warehouse_url, a, [target], send).failed == {"webhook:hook": "HTTPError: 500"}
    key = (a.key, "webhook:hook")
    assert _rows(warehouse_url)[key] == ("failed", 1, "HTTPError: 500")
    # the watchdog's retry: still down (attempt 2), then up (attempt 3): delivered once, as rendered
    [r] = alerts.resend_pending(warehouse_url, send)
    assert (r["attempt"], r["sent"], r["error"]) == (2, False, "HTTPError: 500")
    up["hook"] = True
    [r] = alerts.resend_pending(warehouse_url, send)
    assert (r["attempt"], r["sent"]) == (3, True)
    [(t, sent)] = got
    assert t == target and sent == a  # the stored message: same texts, payload, run and target
    assert _rows(warehouse_url)[key] == ("sent", 3, None)
    assert alerts.resend_pending(warehouse_url, send) == [] and len(got) == 1

    # a target down for all three attempts is given up (the row stays failed with its reason)
    b = run_alert(run_id="manual__b")
    up["hook"] = False
    alerts.deliver(warehouse_url, b, [target], send)
    alerts.resend_pending(warehouse_url, send)
    alerts.resend_pending(warehouse_url, send)
    assert _rows(warehouse_url)[(b.key, "webhook:hook")] == ("failed", 3, "HTTPError: 500")
    assert alerts.resend_pending(warehouse_url, send) == []
    assert alerts.deliver(warehouse_url, b, [target], send).already == ["webhook:hook"]  # out of attempts


@pytest.mark.integration
def test_resend_picks_up_a_claim_abandoned_by_a_crashed_sender(warehouse_url):
    target = AlertTarget("slack", "ok")
    got = []

    def crash(t, alert):
        raise SystemExit("worker killed")  # not an Exception: deliver() cannot record it

    a = run_alert()
    with pytest.raises(SystemExit):
        alerts.deliver(warehouse_url, a, [target], crash)
    key = (a.key, "slack:ok")
    assert _rows(warehouse_url)[key] == ("sending", 1, None)
    # a retried record_run a minute later finds it being sent and sends nothing ...
    assert alerts.deliver(warehouse_url, a, [target], lambda t, al: got.append(al)).already == ["slack:ok"]
    # ... nor does the watchdog while the claim is younger than 10 minutes
    assert alerts.resend_pending(warehouse_url, lambda t, al: got.append(al)) == []
    _age(warehouse_url, 11)
    [r] = alerts.resend_pending(warehouse_url, lambda t, al: got.append(al))
    assert (r["attempt"], r["sent"]) == (2, True) and got == [a]
    assert _rows(warehouse_url)[key] == ("sent", 2, None)
    assert alerts.resend_pending(warehouse_url, lambda t, al: got.append(al)) == [] and got == [a]

    # abandoned on its last attempt: closed as failed, never sent a fourth time
    b = run_alert(run_id="manual__b")
    with pytest.raises(SystemExit):
        alerts.deliver(warehouse_url, b, [target], crash)
    from moomarkets.warehouse.db import connect

    with connect(warehouse_url) as conn, conn.transaction():
        conn.execute("UPDATE alerts_sent SET attempts = 3 WHERE key = 'manual__b'")
    _age(warehouse_url, 11)
    assert alerts.resend_pending(warehouse_url, lambda t, al: got.append(al)) == [] and got == [a]
    status, attempts, error = _rows(warehouse_url)[(b.key, "slack:ok")]
    assert (status, attempts) == ("failed", 3) and "last attempt" in error


def test_a_late_alert_lists_every_missing_day_under_the_latest():
    from moomarkets.pipeline.alerts import build_late_alert

    alert = build_late_alert(group="jp_daily_quotes", day=date(2026, 11, 27),
                             deadline=datetime(2026, 11, 27, 12, 0, tzinfo=UTC), last_complete=date(2026, 11, 24),
                             base_url=BASE, missing=[date(2026, 11, 27), date(2026, 11, 25)])
    assert alert.key == "2026-11-27" and alert.payload["missing_days"] == ["2026-11-25", "2026-11-27"]
    assert "2026-11-25, 2026-11-27" in alert.text and "2026-11-25, 2026-11-27" in alert.html


@pytest.mark.integration
def test_a_late_alert_is_not_re_sent_once_its_day_was_loaded(warehouse_url):
    from moomarkets.pipeline.alerts import build_late_alert
    from moomarkets.warehouse.db import connect

    target = AlertTarget("webhook", "hook", endpoint="/hooks/x")
    got = []

    def down(t, alert):
        raise alerts.DeliveryError("HTTPError: 500")

    late = build_late_alert(group="jp_daily_quotes", day=date(2026, 11, 27), base_url=BASE,
                            deadline=datetime(2026, 11, 27, 12, 0, tzinfo=UTC), last_complete=None)
    assert alerts.deliver(warehouse_url, late, [target], down).failed
    with connect(warehouse_url) as conn, conn.transaction():  # the day loads before the next tick
        conn.execute("INSERT INTO runs (group_name, dag_id, run_id, status, covers_from, covers_to) VALUES"
                     " ('jp_daily_quotes', 'jp_daily_quotes', 'r1', 'success', '2026-11-27', '2026-11-27')")
    [r] = alerts.resend_pending(warehouse_url, lambda t, a: got.append(a))
    assert r["resolved"] is True and r["sent"] is False and got == []
    status, attempts, error = _rows(warehouse_url)[("2026-11-27", "webhook:hook")]
    assert status == "failed" and attempts >= 3 and "loaded since" in error
    assert alerts.resend_pending(warehouse_url, lambda t, a: got.append(a)) == [] and got == []
