"""The `moomarkets` CLI against a real (embedded) PostgreSQL: good paths, and bad inputs that
must print one specific error line, exit non-zero and write nothing."""

from __future__ import annotations

import json
import textwrap

import psycopg
import pytest
import yaml

from moomarkets.cli import main

pytestmark = pytest.mark.integration

EXAMPLE = textwrap.dedent(
    """
    data_sources:
      - {code: jquants, name: J-Quants, kind: jquants, conn_id: jquants_default, is_active: true,
         config: {rate_limit: 60/minute, max_concurrency: 2}}
    job_groups:
      - {name: jp_daily_quotes, description: All listed issues, data_source: jquants, dataset: daily_quotes,
         schedule: "0 19 * * 1-5", timezone: Asia/Tokyo, parameters: {universe: all_listed}, is_enabled: true}
    """
)


def cli(*argv: str) -> int:
    return main(["--no-airflow", *argv])


def state(url: str) -> list:
    with psycopg.connect(url) as conn:
        return [
            conn.execute("SELECT code, name, kind, conn_id, is_active, config::text FROM data_sources ORDER BY code").fetchall(),
            conn.execute(
                "SELECT name, description, dataset, schedule, timezone, parameters::text, is_enabled, updated_at"
                " FROM job_groups ORDER BY name"
            ).fetchall(),
        ]


@pytest.fixture
def loaded(warehouse_url, tmp_path):
    f = tmp_path / "example.yaml"
    f.write_text(EXAMPLE)
    assert cli("import", str(f)) == 0
    return warehouse_url


def test_import_then_export_round_trips_exactly(loaded, tmp_path, capsys):
    out = tmp_path / "out.yaml"
    assert cli("export", str(out)) == 0
    exported = yaml.safe_load(out.read_text())
    assert exported == yaml.safe_load(EXAMPLE) | {
        "data_sources": [dict(yaml.safe_load(EXAMPLE)["data_sources"][0], description="")]
    }
    # restore into an empty database and export again: identical text
    with psycopg.connect(loaded, autocommit=True) as conn:
        conn.execute("DELETE FROM job_groups; DELETE FROM data_sources;")
    assert cli("import", str(out)) == 0
    again = tmp_path / "again.yaml"
    assert cli("export", str(again)) == 0
    assert again.read_text() == out.read_text()


def test_groups_list_show_validate(loaded, capsys):
    assert cli("groups", "list") == 0
    listing = capsys.readouterr().out
    assert "jp_daily_quotes" in listing and "0 19 * * 1-5" in listing
    assert cli("groups", "validate", "jp_daily_quotes") == 0
    out = capsys.readouterr().out
    assert out.startswith("ok      jp_daily_quotes: next runs ")
    assert out.count("T19:00+09:00") == 3


def test_enable_disable_update(loaded, capsys):
    assert cli("groups", "disable", "jp_daily_quotes") == 0
    assert cli("groups", "show", "jp_daily_quotes") == 0
    shown = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert shown["is_enabled"] is False
    assert cli("groups", "update", "jp_daily_quotes", "--schedule", "0 20 * * 1-5") == 0
    assert cli("groups", "enable", "jp_daily_quotes") == 0
    with psycopg.connect(loaded) as conn:
        assert conn.execute("SELECT schedule, is_enabled FROM job_groups").fetchone() == ("0 20 * * 1-5", True)


BAD_COMMANDS = [
    (("groups", "add", "--name", "g2", "--source", "jquants", "--dataset", "daily_quotes", "--schedule", "0 25 * * *",
      "--parameters", '{"universe": "all_listed"}'), "schedule: '0 25 * * *' is not a valid cron expression"),
    (("groups", "add", "--name", "g2", "--source", "nosuch", "--dataset", "daily_quotes", "--schedule", "0 19 * * *",
      "--parameters", '{"universe": "all_listed"}'), "unknown data source 'nosuch'"),
    (("groups", "add", "--name", "jp_daily_quotes", "--source", "jquants", "--dataset", "daily_quotes",
      "--schedule", "0 19 * * *", "--parameters", '{"universe": "all_listed"}'), "job group 'jp_daily_quotes' already exists"),
    (("groups", "add", "--name", "g'; DROP TABLE job_groups; --", "--source", "jquants", "--dataset", "daily_quotes",
      "--schedule", "0 19 * * *", "--parameters", '{"universe": "all_listed"}'), "must be lower-case letters"),
    (("groups", "add", "--name", "g2", "--source", "jquants' OR '1'='1", "--dataset", "daily_quotes",
      "--schedule", "0 19 * * *", "--parameters", '{"universe": "all_listed"}'), "unknown data source"),
    (("groups", "add", "--name", "g2", "--source", "jquants", "--dataset", "daily_quotes", "--schedule", "0 19 * * *",
      "--parameters", "{universe: all"), "--parameters is not valid JSON"),
    (("groups", "update", "jp_daily_quotes", "--timezone", "Tokyo/Nowhere"), "unknown IANA timezone 'Tokyo/Nowhere'"),
    (("groups", "update", "missing_group", "--schedule", "0 19 * * *"), "no job group 'missing_group'"),
    (("groups", "enable", "missing_group"), "no job group 'missing_group'"),
    (("sources", "add", "--code", "jquants", "--name", "x", "--kind", "jquants"), "data source 'jquants' already exists"),
    (("sources", "add", "--code", "yahoo", "--name", "x", "--kind", "jquants", "--config", '{"token": "s3cret"}'),
     "looks like a secret"),
    (("sources", "update", "jquants", "--config", '{"rate_limit": "lots"}'), "rate_limit"),
    (("sources", "update", "jquants", "--config", '{"plan": ["free"]}'), "plan must be one of"),
    (("sources", "remove", "jquants"), "is used by job groups: jp_daily_quotes"),
    # a source change that would silently turn its groups into config errors is refused
    (("sources", "update", "jquants", "--kind", "yfinance"), "job group 'jp_daily_quotes' would become invalid"),
    # one key, one limiter: a second source of the same kind on the same connection is refused
    (("sources", "add", "--code", "jq2", "--name", "x", "--kind", "jquants", "--conn-id", "jquants_default"),
     "connection 'jquants_default' is already used by jquants source 'jquants'"),
    # usage errors are one line too
    (("sources", "update", "jquants", "--active", "maybe"), "moomarkets sources update: argument --active"),
    (("groups", "add", "--name", "g2"), "the following arguments are required"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_COMMANDS, ids=[" ".join(a[:2]) + f"-{i}" for i, (a, _) in enumerate(BAD_COMMANDS)])
def test_bad_input_is_one_line_error_and_writes_nothing(loaded, capsys, argv, message):
    before = state(loaded)
    try:
        code = cli(*argv)
    except SystemExit as exc:  # argparse usage errors exit from parse_args
        code = exc.code
    assert code != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err
    assert len(err.splitlines()) == 1
    assert state(loaded) == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("data_sources: [ {code: x", "is not valid YAML at line"),
        ("- just\n- a list\n", "must be a mapping"),
        ("job_groups:\n  - {name: a, bogus: 1}\n", "unknown field(s) bogus"),
        (EXAMPLE.replace('"0 19 * * 1-5"', '"99 19 * * 1-5"'), "not a valid cron"),
        # the second group is bad: the first (valid, new) one must not be written either
        (EXAMPLE + "  - {name: jp_new, data_source: jquants, dataset: daily_quotes, schedule: '0 1 * * *',"
         " parameters: {universe: all_listed}}\n  - {name: jp_bad, data_source: ghost, dataset: daily_quotes,"
         " schedule: '0 1 * * *', parameters: {universe: all_listed}}\n", "unknown data source 'ghost'"),
        (EXAMPLE + "  - {name: jp_daily_quotes, data_source: jquants, dataset: daily_quotes, schedule: '0 1 * * *',"
         " parameters: {universe: all_listed}}\n", "duplicate job group in file: jp_daily_quotes"),
    ],
)
def test_bad_import_is_all_or_nothing(loaded, tmp_path, capsys, content, message):
    before = state(loaded)
    f = tmp_path / "bad.yaml"
    f.write_text(content)
    assert cli("import", str(f)) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err, err
    assert state(loaded) == before


def test_validate_reports_each_bad_group(loaded, capsys):
    # a row broken behind the CLI's back (e.g. by hand in SQL) is reported, not crashed on
    with psycopg.connect(loaded, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO job_groups (name, data_source_id, dataset, schedule, parameters)"
            " SELECT 'broken_group', id, 'daily_quotes', 'every day', '{\"universe\": \"all_listed\"}' FROM data_sources"
        )
    assert cli("groups", "validate") == 1
    out = capsys.readouterr().out
    assert "INVALID broken_group: schedule: 'every day' is not a cron expression with 5 fields" in out
    assert "ok      jp_daily_quotes" in out


def test_unreachable_database_is_a_clear_error(capsys):
    assert main(["--no-airflow", "--database-url", "postgresql://postgres@127.0.0.1:1/x", "groups", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot connect to the warehouse database")


def test_airflow_side_effects_print_what_was_done_and_warn_on_failure(loaded, capsys, monkeypatch):
    """Without --no-airflow the CLI tells Airflow through the services: what happened goes to stdout,
    a failure is a warning on stderr while the change itself stands (exit 0)."""
    paused: list[tuple[str, bool]] = []
    monkeypatch.setattr("moomarkets.airflow.ops.set_paused", lambda dag_id, p: paused.append((dag_id, p)) or True)
    monkeypatch.setattr("moomarkets.airflow.pools.sync_pools",
                        lambda sources: [(f"moomarkets_{s.code}", 1, "created") for s in sources])
    capsys.readouterr()
    assert main(["groups", "disable", "jp_daily_quotes"]) == 0
    assert capsys.readouterr().out.splitlines() == ["disabled job group jp_daily_quotes",
                                                    "DAG jp_daily_quotes paused in Airflow"]
    assert paused == [("jp_daily_quotes", True)]
    assert main(["sources", "add", "--code", "yahoo", "--name", "Yahoo", "--kind", "yfinance"]) == 0
    assert capsys.readouterr().out.splitlines() == ["added data source yahoo", "pool moomarkets_yahoo: 1 slot(s), created"]

    def down(*_args):
        raise OSError("metadata DB down")

    monkeypatch.setattr("moomarkets.airflow.ops.set_paused", down)
    assert main(["groups", "enable", "jp_daily_quotes"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "enabled job group jp_daily_quotes\n"
    assert captured.err == ("warning: Could not unpause DAG jp_daily_quotes in Airflow (OSError: metadata DB down);"
                            " unpause it in Airflow.\n")
    with psycopg.connect(loaded) as conn:
        assert conn.execute("SELECT is_enabled FROM job_groups").fetchone() == (True,)
        # the kind's own connection, not a name made up from the kind
        assert conn.execute("SELECT conn_id FROM data_sources WHERE code = 'yahoo'").fetchone() == ("yfinance_default",)


def test_update_needs_an_option_and_json_options_are_worded_once(loaded, capsys):
    assert cli("sources", "update", "jquants") == 1
    assert capsys.readouterr().err == "error: nothing to update: give at least one option\n"
    assert cli("sources", "update", "jquants", "--config", '{"rate_limit": "30/minute"}') == 0
    assert cli("groups", "update", "jp_daily_quotes", "--parameters", "[1]") == 1
    assert capsys.readouterr().err.endswith('error: --parameters must be a JSON object, e.g. {"key": "value"}\n')
