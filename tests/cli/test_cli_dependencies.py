"""`moomarkets groups/sources` with dependencies and alerts: --depends-on, --upstream-timeout and
--alerts (text or @file), what `groups show` prints, and one error line with nothing written for
an unknown upstream, a cycle, a group still needed, or an alert Connection Airflow does not have."""

from __future__ import annotations

import json
import textwrap

import psycopg
import pytest

from moomarkets.cli import main

pytestmark = pytest.mark.integration

CONFIG = textwrap.dedent(
    """
    data_sources:
      - {code: jquants, name: J-Quants, kind: jquants, conn_id: jquants_default}
    job_groups:
      - {name: jp_calendar, data_source: jquants, dataset: trading_calendar, schedule: "0 7 * * *"}
    """
)
ADD = ("groups", "add", "--name", "jp_quotes", "--source", "jquants", "--dataset", "daily_quotes",
       "--schedule", "0 19 * * 1-5", "--parameters", '{"universe": "all_listed"}')


def cli(*argv: str) -> int:
    return main(["--no-airflow", *argv])


def state(url: str) -> list:
    with psycopg.connect(url) as conn:
        return [
            conn.execute("SELECT code, alerts::text, updated_at FROM data_sources ORDER BY code").fetchall(),
            conn.execute("SELECT name, depends_on, upstream_timeout, alerts::text, updated_at FROM job_groups"
                         " ORDER BY name").fetchall(),
        ]


@pytest.fixture
def loaded(warehouse_url, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", json.dumps({"conn_type": "slackwebhook", "password": "T/B/x"}))
    f = tmp_path / "config.yaml"
    f.write_text(CONFIG)
    assert cli("import", str(f)) == 0
    return warehouse_url


def show(capsys, name: str) -> dict:
    capsys.readouterr()
    assert cli("groups", "show", name) == 0
    return json.loads(capsys.readouterr().out)


def test_add_update_and_show_dependencies_and_alerts(loaded, tmp_path, capsys):
    alerts = tmp_path / "alerts.yaml"
    alerts.write_text("on: [failure, late]\nlate_after: 90m\ntargets:\n  - {type: slack, conn_id: slack_alerts}\n")
    # not --no-airflow: the alert Connection is looked up (an env var here); adding a group touches nothing else
    assert main([*ADD, "--depends-on", "jp_calendar", "--upstream-timeout", "120m", "--alerts", f"@{alerts}"]) == 0
    shown = show(capsys, "jp_quotes")
    assert shown["depends_on"] == ["jp_calendar"] and shown["upstream_timeout"] == "2h"
    deps = shown["dependencies"]
    assert (deps["depends_on"], deps["upstream_timeout"], deps["downstream"]) == (["jp_calendar"], "2h", [])
    assert shown["alerts_in_effect"] == {"on": ["failure", "late"], "late_after": "1h30m",
                                         "targets": ["slack:slack_alerts"]}
    assert show(capsys, "jp_calendar")["dependencies"]["downstream"] == ["jp_quotes"]

    # source defaults under the group's own keys; targets by type:conn_id only (no addresses)
    assert main(["sources", "update", "jquants", "--alerts",
                 '{"on": ["partial"], "targets": [{"type": "slack", "conn_id": "slack_alerts"}]}']) == 0
    assert cli("groups", "update", "jp_quotes", "--alerts", "", "--depends-on", "", "--upstream-timeout", "30m") == 0
    shown = show(capsys, "jp_quotes")
    assert shown["depends_on"] == [] and shown["upstream_timeout"] == "30m" and shown["alerts"] == {}
    assert shown["alerts_in_effect"] == {"on": ["partial"], "late_after": None, "targets": ["slack:slack_alerts"]}
    assert show(capsys, "jp_calendar")["dependencies"]["downstream"] == []


def test_no_airflow_writes_alerts_unchecked_with_a_note(loaded, capsys):
    assert cli(*ADD, "--alerts", "targets: [{type: slack, conn_id: slack_nowhere}]") == 0
    out = capsys.readouterr().out
    assert "note: Alert connections of job group 'jp_quotes' not checked (Airflow not asked): slack_nowhere." in out


BAD = [
    ((*ADD, "--depends-on", "jp_calendar,nope"), "error: job group 'jp_quotes': depends_on: unknown job group 'nope'"),
    ((*ADD, "--depends-on", "jp_quotes"), "error: job group 'jp_quotes': depends_on: a group cannot depend on itself"),
    ((*ADD, "--upstream-timeout", "3 weeks"), "error: job group 'jp_quotes': upstream_timeout: '3 weeks' is not a"),
    ((*ADD, "--alerts", "targets: [{type: slack"), "error: --alerts is not valid YAML at line"),
    ((*ADD, "--alerts", "- slack"), "error: --alerts must be a mapping"),
    ((*ADD, "--alerts", "@/no/such/file.yaml"), "error: cannot read /no/such/file.yaml"),
    ((*ADD, "--alerts", "{on: [fire]}"), "error: job group 'jp_quotes': alerts.on: unknown alert kind(s) fire"),
    (("groups", "update", "jp_calendar", "--depends-on", "jp_calendar"), "a group cannot depend on itself"),
    (("sources", "update", "jquants", "--alerts", "late_after: forever"), "alerts.late_after: 'forever' is not a"),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_input_is_one_line_and_writes_nothing(loaded, capsys, argv, message):
    before = state(loaded)
    capsys.readouterr()
    assert cli(*argv) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
    assert state(loaded) == before


def test_a_missing_alert_connection_is_refused(loaded, capsys):
    before = state(loaded)
    assert main([*ADD, "--alerts", "targets: [{type: email, conn_id: smtp_x, to: [a@example.com]}]"]) == 1
    assert capsys.readouterr().err.strip() == (
        "error: job group 'jp_quotes': alerts.targets[0]: Airflow connection 'smtp_x' does not exist"
        " (create it with `airflow connections add smtp_x --conn-type smtp ...`)")
    assert state(loaded) == before


def test_a_cycle_and_a_needed_group_are_refused(loaded, capsys):
    assert cli(*ADD, "--depends-on", "jp_calendar") == 0
    before = state(loaded)
    capsys.readouterr()
    assert cli("groups", "update", "jp_calendar", "--depends-on", "jp_quotes") == 1
    assert capsys.readouterr().err.strip() == (
        "error: job group 'jp_calendar': depends_on: cycle jp_calendar -> jp_quotes -> jp_calendar")
    assert cli("groups", "remove", "jp_calendar") == 1
    assert capsys.readouterr().err.strip() == (
        "error: job group 'jp_calendar' is needed by jp_quotes (depends_on); remove it from their depends_on first")
    assert state(loaded) == before


def test_export_writes_the_new_fields_and_import_reads_them_back(loaded, tmp_path, capsys):
    assert main([*ADD, "--depends-on", "jp_calendar", "--upstream-timeout", "1h",
                 "--alerts", "{on: [failure], targets: [{type: slack, conn_id: slack_alerts}]}"]) == 0
    out = tmp_path / "out.yaml"
    assert cli("export", str(out)) == 0
    text = out.read_text()
    assert "depends_on:\n  - jp_calendar" in text and "upstream_timeout: 1h" in text and "'on':" in text
    before = state(loaded)
    with psycopg.connect(loaded, autocommit=True) as conn:
        conn.execute("DELETE FROM job_groups; DELETE FROM data_sources;")
    assert cli("import", str(out)) == 0
    assert [r[:4] for r in state(loaded)[1]] == [r[:4] for r in before[1]]
    again = tmp_path / "again.yaml"
    assert cli("export", str(again)) == 0
    assert again.read_text() == text
