"""Alerts end to end: real ``dag.test()`` runs against the J-Quants fake deliver through the provider
notifiers to a real local SMTP server (aiosmtpd) and a local HTTP receiver standing in for the
Slack webhook and the generic webhook (no network). One alert per run, kind and target; a retried
``record_run`` sends nothing more; a successful run sends nothing; a dead target stops no other;
the watchdog re-sends a delivery that failed or was left ``sending`` by a crashed sender, once;
lateness comes from the watchdog DAG, once per missing day. No secret (not even a Slack webhook
URL's token) reaches a message, a log or the ``alerts_sent`` ledger."""

from __future__ import annotations

import json
import threading
from datetime import date, datetime, timedelta
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import psycopg
import pytest
from dagtest import get_dag
from moomarkets.dev.localpg import free_port
from moomarkets.warehouse.db import connect

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

TOKYO = ZoneInfo("Asia/Tokyo")
SMTP_PW = "smtp-pass-8841-zz"
SLACK_TOKEN = "T0001/B0001/slacktoken77x"
HOOK_PW = "hook-pass-3319-qq"
FAKE_KEY = "test-key-123456"  # the fake's key (tests/airflow/conftest.py)
SECRETS = (SMTP_PW, SLACK_TOKEN, "slacktoken77x", HOOK_PW, FAKE_KEY)
BASE_URL = "https://airflow.example.com"
WEEKLY = "jp_weekly_alerts"


class Inbox:
    """Messages the local SMTP server received (an aiosmtpd handler)."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default)))
        return "250 OK"


@pytest.fixture
def smtp():
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), auth_require_tls=False,
                            authenticator=lambda *a: AuthResult(success=True))
    controller.start()
    try:
        yield controller.port, inbox
    finally:
        controller.stop()


@pytest.fixture
def receiver():
    """A local HTTP server recording every POST (path, JSON body); /broken, and any path starting
    with a prefix in ``down`` (the third value, a set a test fills and empties), answer 500."""
    got: list[tuple[str, dict]] = []
    down: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            got.append((self.path, json.loads(body or b"{}")))
            failing = self.path.startswith("/broken") or any(self.path.startswith(p) for p in down)
            self.send_response(500 if failing else 200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], got, down
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def alerting(group_env, smtp, receiver, monkeypatch):
    """Alerts to all three target types (each Connection holding a password) on the source, and a
    weekly group WEEKLY (one unit per day of the week) beside jp_daily_quotes: a group of its own, so
    the DAG these tests serialize into Airflow's metadata DB never changes jp_daily_quotes' schedule
    for the tests after them. Returns a helper to read what arrived where."""
    smtp_port, inbox = smtp
    http_port, got, _ = receiver
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE_URL)
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_ALERTS", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": smtp_port, "login": "alerts", "password": SMTP_PW,
        "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "moo@example.com", "retry_limit": 0}}))
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEAD", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": free_port(), "login": "alerts", "password": SMTP_PW,
        "extra": {"disable_ssl": True, "disable_tls": True, "retry_limit": 0, "timeout": 3}}))
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", json.dumps({
        "conn_type": "slackwebhook", "host": f"http://127.0.0.1:{http_port}/services", "password": SLACK_TOKEN}))
    monkeypatch.setenv("AIRFLOW_CONN_HOOK_ALERTS", json.dumps({
        "conn_type": "http", "host": "127.0.0.1", "port": http_port, "schema": "http", "login": "moo",
        "password": HOOK_PW}))
    source_alerts = {"on": ["failure", "partial", "check_errors", "late"], "late_after": "2h", "targets": [
        {"type": "email", "conn_id": "smtp_dead", "to": ["dead@example.com"]},  # first: it must not block the rest
        {"type": "email", "conn_id": "smtp_alerts", "to": ["oncall@example.com"]},
        {"type": "slack", "conn_id": "slack_alerts"},
        {"type": "webhook", "conn_id": "hook_alerts", "endpoint": "/hooks/moomarkets"},
    ]}
    with connect(group_env) as conn, conn.transaction():
        conn.execute("UPDATE data_sources SET alerts = %s", (json.dumps(source_alerts),))
        conn.execute(  # (Fri, Fri]: Mon..Fri, 5 units
            "INSERT INTO job_groups (name, data_source_id, dataset, schedule, timezone, parameters)"
            " SELECT %s, id, 'daily_quotes', '0 19 * * 5', 'Asia/Tokyo', '{\"universe\": \"all_listed\"}'"
            " FROM data_sources WHERE code = 'jquants'", (WEEKLY,))
        conn.execute("UPDATE job_groups SET alerts = %s", (json.dumps({"on": ["failure", "partial", "check_errors"]}),))

    def arrived():
        mails = [(to, m["Subject"], m.get_body(("html",)).get_content()) for to, m in inbox.messages]
        slack = [body for path, body in got if path.startswith("/services/")]
        hooks = [body for path, body in got if path == "/hooks/moomarkets"]
        return mails, slack, hooks

    return group_env, arrived, got


def ledger(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT kind, key, target, status, coalesce(error, '') FROM alerts_sent"
                            " ORDER BY kind, target").fetchall()


def assert_no_secret(*texts):
    for text in texts:
        for secret in SECRETS:
            assert secret not in str(text), secret


RUN_DATE = datetime(2026, 11, 20, 20, 0, tzinfo=TOKYO)


def test_partial_run_alerts_each_target_once_without_secrets(alerting, fake, capfd):
    url, arrived, _ = alerting
    _, state = fake
    # the first request fails for good (400) with braces and the source key in its text
    state.inject("400", 1, message="bad {{ dag_id }} request for key test-key-123456")
    run = get_dag(WEEKLY).test(logical_date=RUN_DATE)
    assert run.state == "failed"
    mails, slack, hooks = arrived()
    assert len(mails) == 1 and len(slack) == 1 and len(hooks) == 1
    [(to, subject, body)] = mails
    with psycopg.connect(url) as conn:
        failed_unit, rows = conn.execute(
            "SELECT u.unit_key, r.rows_loaded FROM run_units u JOIN runs r ON r.id = u.run_pk"
            " WHERE u.status = 'failed'").fetchone()
    assert to == ["oncall@example.com"]
    assert subject.startswith(f"[MooMarkets] partial: {WEEKLY} 2026-11-")  # the trading days covered
    assert subject.endswith("..2026-11-20 — 1 of 5 units failed")
    [hook] = hooks
    run_url = f"{BASE_URL}/dags/{WEEKLY}/runs/" + run.run_id.replace(":", "%3A").replace("+", "%2B")
    assert hook["run_url"] == run_url and hook["group_url"] == f"{BASE_URL}/moomarkets/groups/{WEEKLY}"
    assert hook["kind"] == "partial" and hook["group"] == WEEKLY and hook["run_id"] == run.run_id
    assert hook["failed_units"] == [failed_unit] and hook["rows_loaded"] == rows > 0
    assert hook["units_total"] == 5 and hook["units_failed"] == 1
    assert "bad {{ dag_id }} request for key ***" in hook["first_error"]  # literal braces, key scrubbed
    assert hook["interval_end"].startswith("2026-11-20T10:00:00")
    for text in (body, slack[0]["text"]):
        assert failed_unit in text and "bad {{ dag_id }} request" in text and f"{rows:,}" in text
        assert run_url.replace("&", "&amp;") in text and hook["group_url"] in text
    # the dead SMTP target was tried first, failed, and stopped nothing
    sent = ledger(url)
    assert [(k, t, s) for k, _, t, s, _ in sent] == [
        ("partial", "email:smtp_alerts", "sent"), ("partial", "email:smtp_dead", "failed"),
        ("partial", "slack:slack_alerts", "sent"), ("partial", "webhook:hook_alerts", "sent")]
    assert "ConnectionRefusedError" in sent[1][4]
    logs = capfd.readouterr()  # task logs, where this process's logging writes them
    assert_no_secret(body, subject, slack, hooks, sent, logs.out, logs.err)

    # record_run retried (same run, same summary): nothing more goes out
    from moomarkets.airflow.alerts import send_run_alerts
    from moomarkets.pipeline.run import record_run

    summary = record_run(dag_id=WEEKLY, run_id=run.run_id, url=url)
    assert summary["status"] == "partial"
    assert send_run_alerts({"dag_run": None}, url=url, group=WEEKLY, dag_id=WEEKLY,
                           run_id=run.run_id, summary=summary, source_conn_id="jquants_default") == ["partial"]
    assert [len(x) for x in arrived()] == [1, 1, 1]
    # only the dead target was tried again (it never got the alert)
    assert [s for _, _, _, s, _ in ledger(url)] == ["sent", "failed", "sent", "sent"]


def test_successful_run_sends_nothing(alerting):
    url, arrived, got = alerting
    run = get_dag(WEEKLY).test(logical_date=RUN_DATE)
    assert run.state == "success"
    assert arrived() == ([], [], []) and got == [] and ledger(url) == []


def test_check_errors_alert(alerting, fake):
    url, arrived, _ = alerting
    with connect(url) as conn, conn.transaction():
        conn.execute("UPDATE job_groups SET alerts = %s", (json.dumps({"on": ["check_errors"]}),))
    # Thursday's rows name an issue Friday's load lacks: completeness (an error check) fails
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO daily_quotes (source, code, date, open, high, low, close, volume)"
                     " VALUES ('jquants', '99990', '2026-11-19', 1, 1, 1, 1, 1)")
    run = get_dag("jp_daily_quotes").test(logical_date=RUN_DATE)
    assert run.state == "failed"
    mails, slack, hooks = arrived()
    assert len(mails) == len(slack) == len(hooks) == 1
    [hook] = hooks
    assert hook["kind"] == "check_errors" and hook["units_failed"] == 0
    assert hook["problems"] and all(p.startswith("check completeness (error)") for p in hook["problems"])
    assert "completeness" in mails[0][1] or "data check" in mails[0][1]
    assert {k for k, *_ in ledger(url)} == {"check_errors"}


def test_watchdog_sends_one_late_alert_per_group_and_missing_day(alerting):
    from moomarkets.pipeline.freshness import group_freshness
    from moomarkets.warehouse import config_store

    url, arrived, _ = alerting
    with connect(url) as conn, conn.transaction():
        conn.execute("UPDATE job_groups SET alerts = %s WHERE name = 'jp_daily_quotes'", (json.dumps({"targets": [
            {"type": "webhook", "conn_id": "hook_alerts", "endpoint": "/hooks/moomarkets"}]}),))  # WEEKLY: no late
        # created a month ago (a group is never late for days before it existed)
        conn.execute("UPDATE job_groups SET created_at = now() - interval '30 days'")
    with connect(url) as conn:
        spec = next(s for s in config_store.read_specs(conn) if s.group.name == "jp_daily_quotes")
        due = group_freshness(conn, spec, now=datetime.now(TOKYO), grace=timedelta(hours=2)).missing
    assert len(due) >= 5  # never loaded: every due trading day of the lookback window is missing
    # a failed run of one day, successful runs of every other day (before and after it)
    gap = due[-2]
    with connect(url) as conn, conn.transaction():
        for i, (status, start, end) in enumerate([("success", due[0] - timedelta(days=7), gap - timedelta(days=1)),
                                                  ("failed", gap, gap),
                                                  ("success", gap + timedelta(days=1), date.today() + timedelta(1))]):
            conn.execute("INSERT INTO runs (group_name, dag_id, run_id, status, covers_from, covers_to)"
                         " VALUES ('jp_daily_quotes', 'jp_daily_quotes', %s, %s, %s, %s)", (f"r{i}", status, start, end))
    watchdog = get_dag("moomarkets_watchdog")
    assert watchdog.catchup is False and [t.task_id for t in watchdog.tasks] == ["resend_alerts", "check_lateness"]
    assert watchdog.get_task("check_lateness").owner == "moomarkets"
    assert watchdog.test().state == "success"
    _, _, hooks = arrived()
    [hook] = hooks  # only the failed day is late, though later days loaded
    assert hook["kind"] == "late" and hook["group"] == "jp_daily_quotes" and hook["trading_day"] == gap.isoformat()
    assert hook["last_complete"] is not None and hook["last_complete"] > gap.isoformat()
    assert hook["group_url"] == f"{BASE_URL}/moomarkets/groups/jp_daily_quotes"
    assert watchdog.test().state == "success"  # the next tick: already sent
    assert len(arrived()[2]) == 1
    assert ledger(url) == [("late", gap.isoformat(), "webhook:hook_alerts", "sent", "")]


def _attempts(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT kind, key, target, status, attempts FROM alerts_sent ORDER BY id").fetchall()


def _only_webhook(url: str) -> None:
    with connect(url) as conn, conn.transaction():
        conn.execute("UPDATE job_groups SET alerts = %s WHERE name = %s", (json.dumps({
            "on": ["failure", "partial"],
            "targets": [{"type": "webhook", "conn_id": "hook_alerts", "endpoint": "/hooks/moomarkets"}]}), WEEKLY))


PARTIAL = {"status": "partial", "units_total": 5, "units_failed": 1, "rows_loaded": 10, "problems": []}


def test_watchdog_resends_an_alert_whose_target_was_down(alerting, receiver):
    from moomarkets.airflow.alerts import send_run_alerts

    url, arrived, got = alerting
    _, _, down = receiver
    _only_webhook(url)
    down.add("/hooks/")  # the webhook answers 500
    assert send_run_alerts({"dag_run": None}, url=url, group=WEEKLY, dag_id=WEEKLY, run_id="manual__down",
                           summary=PARTIAL, source_conn_id="jquants_default") == ["partial"]
    assert len(got) == 1 and _attempts(url) == [("partial", "manual__down", "webhook:hook_alerts", "failed", 1)]
    assert "500" in ledger(url)[0][4]
    down.clear()  # the webhook is back: the next watchdog tick delivers the stored message, once
    watchdog = get_dag("moomarkets_watchdog")
    assert watchdog.test().state == "success"
    assert _attempts(url) == [("partial", "manual__down", "webhook:hook_alerts", "sent", 2)]
    [first, second] = arrived()[2]
    assert second == first and second["run_id"] == "manual__down" and second["kind"] == "partial"
    assert watchdog.test().state == "success"
    assert len(got) == 2


def test_watchdog_resends_a_claim_left_sending_by_a_crashed_sender(alerting):
    from moomarkets.airflow.alerts import sender
    from moomarkets.pipeline import alerts as domain

    url, arrived, got = alerting
    _only_webhook(url)
    settings, [alert] = domain.run_alerts(url, group=WEEKLY, dag_id=WEEKLY, run_id="manual__crash", summary=PARTIAL,
                                          base_url=BASE_URL)

    def crash(target, alert):
        raise SystemExit("worker killed mid-send")

    with pytest.raises(SystemExit):
        domain.deliver(url, alert, settings.targets, crash)
    assert _attempts(url) == [("partial", "manual__crash", "webhook:hook_alerts", "sending", 1)]
    # record_run's retry a minute later sees it being sent and sends nothing
    assert domain.deliver(url, alert, settings.targets, sender({})).already == ["webhook:hook_alerts"]
    watchdog = get_dag("moomarkets_watchdog")
    assert watchdog.test().state == "success" and got == []  # a claim younger than 10 minutes is left alone
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE alerts_sent SET claimed_at = claimed_at - interval '11 minutes'")
    assert watchdog.test().state == "success"
    [hook] = arrived()[2]
    assert hook == alert.payload
    assert _attempts(url) == [("partial", "manual__crash", "webhook:hook_alerts", "sent", 2)]
    assert watchdog.test().state == "success" and len(got) == 1


SLACK_SECRET = "SECRETTOKEN9931"


def test_a_failing_slack_webhook_url_never_leaks_its_token(alerting, receiver, monkeypatch, caplog, capfd):
    """The token is in the webhook URL: the whole URL as the password (the webhook answers 500), or
    host + token (the port is closed). Neither failure's record, log or retry shows it, nor does
    any other target's message."""
    import logging

    from moomarkets.airflow.alerts import send_run_alerts

    url, arrived, got = alerting
    port, _, down = receiver
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_LEAKY", json.dumps({
        "conn_type": "slackwebhook", "password": f"http://127.0.0.1:{port}/services/T000/B000/{SLACK_SECRET}"}))
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_CLOSED", json.dumps({
        "conn_type": "slackwebhook", "host": f"http://127.0.0.1:{free_port()}/services",
        "password": f"T000/B000/{SLACK_SECRET}", "extra": {"timeout": 3}}))
    with connect(url) as conn, conn.transaction():
        conn.execute("UPDATE job_groups SET alerts = %s WHERE name = %s", (json.dumps({"on": ["partial"], "targets": [
            {"type": "slack", "conn_id": "slack_leaky"}, {"type": "slack", "conn_id": "slack_closed"},
            {"type": "webhook", "conn_id": "hook_alerts", "endpoint": "/hooks/moomarkets"}]}), WEEKLY))
    down.add("/services/T000/")
    caplog.set_level(logging.INFO)
    assert send_run_alerts({"dag_run": None}, url=url, group=WEEKLY, dag_id=WEEKLY, run_id="manual__leak",
                           summary=PARTIAL, source_conn_id="jquants_default") == ["partial"]
    rows = ledger(url)
    assert [(t, s) for _, _, t, s, _ in rows] == [
        ("slack:slack_closed", "failed"), ("slack:slack_leaky", "failed"), ("webhook:hook_alerts", "sent")]
    assert all(e for *_, s, e in rows if s == "failed")  # each failure has its (scrubbed) reason
    # the watchdog's retry fails the same way, and says no more
    assert get_dag("moomarkets_watchdog").test().state == "success"
    with psycopg.connect(url) as conn:
        errors = [e for (e,) in conn.execute("SELECT coalesce(error, '') || message::text FROM alerts_sent")]
    others = [body for path, body in got if not path.startswith("/services/T000/")]
    assert len(others) == 1 and [p for p, _ in got if p.startswith("/services/")] == [
        f"/services/T000/B000/{SLACK_SECRET}"] * 2  # the first attempt and the watchdog's retry
    # caplog has what reaches the stdlib root logger; Airflow's structlog writes task logs to stdout
    out = capfd.readouterr()
    logs = "\n".join([caplog.text, *(r.getMessage() for r in caplog.records), out.out, out.err])
    for text in (*errors, logs, json.dumps(others), *arrived()[2]):
        assert SLACK_SECRET not in str(text)
    assert logs.count("to slack:slack_leaky failed") >= 2 and logs.count("to slack:slack_closed failed") >= 2
    assert "Status Code: 500" in logs and "Connection refused" in logs
