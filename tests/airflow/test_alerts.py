"""Alerts end to end: real ``dag.test()`` runs against the J-Quants fake deliver through the provider
notifiers to a real local SMTP server (aiosmtpd) and a local HTTP receiver standing in for the
Slack webhook and the generic webhook (no network). One alert per run, kind and target; a retried
``record_run`` sends nothing more; a successful run sends nothing; a dead target stops no other;
lateness comes from the watchdog DAG, once per day. No secret reaches a message, a log or the
``alerts_sent`` ledger."""

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
    """A local HTTP server recording every POST (path, JSON body); /broken answers 500."""
    got: list[tuple[str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            got.append((self.path, json.loads(body or b"{}")))
            self.send_response(500 if self.path.startswith("/broken") else 200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], got
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
    http_port, got = receiver
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


def test_watchdog_sends_one_late_alert_per_group_and_day(alerting):
    url, arrived, _ = alerting
    with connect(url) as conn, conn.transaction():
        conn.execute("UPDATE job_groups SET alerts = %s WHERE name = 'jp_daily_quotes'", (json.dumps({"targets": [
            {"type": "webhook", "conn_id": "hook_alerts", "endpoint": "/hooks/moomarkets"}]}),))  # WEEKLY: no late
        # created a month ago (a group is never late for days before it existed)
        conn.execute("UPDATE job_groups SET created_at = now() - interval '30 days'")
    watchdog = get_dag("moomarkets_watchdog")
    assert watchdog.catchup is False and [t.task_id for t in watchdog.tasks] == ["check_lateness"]
    assert watchdog.get_task("check_lateness").owner == "moomarkets"
    assert watchdog.test().state == "success"
    _, _, hooks = arrived()
    [hook] = hooks  # the group never loaded anything: its last due day is late
    day = date.fromisoformat(hook["trading_day"])
    assert hook["kind"] == "late" and hook["group"] == "jp_daily_quotes" and hook["last_complete"] is None
    assert day.weekday() < 5 and date.today() - timedelta(days=5) <= day <= date.today() + timedelta(days=1)
    assert hook["group_url"] == f"{BASE_URL}/moomarkets/groups/jp_daily_quotes"
    assert watchdog.test().state == "success"  # the next tick: already sent
    assert len(arrived()[2]) == 1
    assert ledger(url) == [("late", day.isoformat(), "webhook:hook_alerts", "sent", "")]
