"""`moomarkets verify` end to end: the source's Airflow Connection (env JSON) points at the local
J-Quants fake, a week is loaded with the pipeline's run functions into the real PostgreSQL and
corrupted; verify exits 1 and its JSON lists exactly the corruptions, --repair fixes them (extra
rows only with --delete-extra) and a second verify exits 0. Every request goes through the source's
shared rate limit and a verify costs exactly the load's plan."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import psycopg
import pytest
import yaml

from moomarkets.cli import main
from moomarkets.pipeline import GroupPipeline
from moomarkets.pipeline import run as runner
from moomarkets.sources.base import Credentials, Interval
from moomarkets.warehouse import config_store as store
from moomarkets.warehouse.db import connect

pytestmark = pytest.mark.integration

TOKYO = ZoneInfo("Asia/Tokyo")
KEY = "cli-verify-key-2718"
RANGE = ["--from", "2026-11-16", "--to", "2026-11-20"]
CONFIG = """
data_sources:
  - {code: jquants, name: J-Quants, kind: jquants, conn_id: jquants_default, is_active: true,
     config: {rate_limit: 100000/hour, max_concurrency: 2}}  # an hour: no token leaks mid-test
job_groups:
  - {name: jp_daily_quotes, data_source: jquants, dataset: daily_quotes, schedule: "0 19 * * 1-5",
     timezone: Asia/Tokyo, parameters: {universe: all_listed}}
"""


@pytest.fixture(scope="module")
def fake():
    from moomarkets.testing.jquants_fake import FakeConfig, running_fake

    with running_fake(FakeConfig(api_key=KEY, page_size=20)) as (base_url, state):
        yield base_url, state


@pytest.fixture
def week(warehouse_url, fake, monkeypatch):
    """Mon..Fri loaded from the fake; the CLI reads the key and host from the Airflow Connection."""
    base_url, state = fake
    monkeypatch.setenv("AIRFLOW_CONN_JQUANTS_DEFAULT",
                       json.dumps({"conn_type": "jquants", "host": base_url, "password": KEY}))
    with connect(warehouse_url) as conn:
        store.import_config(conn, yaml.safe_load(CONFIG))
        [spec] = store.read_specs(conn, only="jp_daily_quotes")
    pipe = GroupPipeline.resolve(spec)
    interval = Interval(datetime(2026, 11, 13, 19, tzinfo=TOKYO), datetime(2026, 11, 20, 19, tzinfo=TOKYO))
    state.reset()
    for unit in runner.plan_units(pipe, interval, dag_id="jp_daily_quotes", run_id="load", url=warehouse_url,
                                  max_units=1024):
        runner.fetch_and_load(pipe, unit, dag_id="jp_daily_quotes", run_id="load",
                              credentials=Credentials(secret=KEY, host=base_url), url=warehouse_url)
    return warehouse_url, state.count()


def verify(capsys, *extra: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["verify", "jp_daily_quotes", *RANGE, "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def tokens_taken(url: str) -> int:
    """Tokens in the source's shared rate-limit bucket (pyrate's table in Postgres)."""
    with psycopg.connect(url) as conn:
        return conn.execute('SELECT count(*) FROM "ratelimit___mm_jquants"').fetchone()[0]


def test_verify_finds_the_corruptions_and_repair_makes_it_equal(week, fake, capsys):
    url, load_requests = week
    _, state = fake

    state.reset()
    tokens = tokens_taken(url)
    code, doc = verify(capsys)
    assert code == 0 and doc["status"] == "equal" and doc["equal"] is True
    assert doc["requests"] == state.count() == load_requests  # the same plan as the load, nothing more
    assert tokens_taken(url) - tokens == load_requests  # each one waited on the shared rate limit

    with psycopg.connect(url) as conn:
        conn.execute("UPDATE daily_quotes SET volume = volume + 100 WHERE code = '72030' AND date = '2026-11-17'")
        conn.execute("DELETE FROM daily_quotes WHERE code = '13010' AND date = '2026-11-18'")
        conn.execute("INSERT INTO daily_quotes (source, code, date) VALUES ('jquants', '99990', '2026-11-19')")
        conn.execute("UPDATE daily_quotes SET adj_close = adj_close + 0.1 WHERE code = '80350' AND date = '2026-11-20'")

    code, doc = verify(capsys)
    assert code == 1 and doc["status"] == "different"
    found = {
        kind: [(u["unit"], item.get("key", item)["code"], sorted(item.get("columns", {})))
               for u in doc["units"] for item in u[kind]]
        for kind in ("missing", "extra", "mismatched", "stale_adjusted")
    }
    assert found == {
        "missing": [("date:2026-11-18", "13010", [])],
        "extra": [("date:2026-11-19", "99990", [])],
        "mismatched": [("date:2026-11-17", "72030", ["volume"])],
        "stale_adjusted": [("date:2026-11-20", "80350", ["adj_close"])],
    }

    code, doc = verify(capsys, "--repair")
    assert code == 1 and doc["repaired"] == 3 and doc["deleted"] == 0  # the extra row is kept and reported
    code, doc = verify(capsys, "--repair", "--delete-extra")
    assert code == 0 and doc["status"] == "repaired" and doc["deleted"] == 1 and doc["ok"] is True
    code, doc = verify(capsys)
    assert code == 0 and doc["status"] == "equal"

    with psycopg.connect(url) as conn:
        recorded = conn.execute(
            "SELECT status, repaired, deleted, requests FROM verifications ORDER BY id").fetchall()
    assert [r[:3] for r in recorded] == [("equal", 0, 0), ("different", 0, 0), ("different", 3, 0),
                                         ("repaired", 0, 1), ("equal", 0, 0)]
    assert all(r[3] == load_requests for r in recorded)


def test_text_output_and_sample_seed(week, fake, capsys):
    url, _ = week
    _, state = fake
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE daily_quotes SET close = close + 1 WHERE date = '2026-11-17' AND code = '72030'")
    capsys.readouterr()
    assert main(["verify", "jp_daily_quotes", *RANGE]) == 1
    out = capsys.readouterr().out
    assert "date:2026-11-17: mismatched 72030 2026-11-17: close (warehouse" in out
    assert "DIFFERENT: repair with --repair" in out

    state.reset()
    assert main(["verify", "jp_daily_quotes", *RANGE, "--sample", "2", "--seed", "7"]) in (0, 1)
    out = capsys.readouterr().out
    assert "2 of 5 planned unit(s)" in out and "--sample 2 --seed 7" in out
    _, doc = verify(capsys, "--sample", "2", "--seed", "7")
    assert doc["verified_units"] == 2 and doc["seed"] == 7
    assert doc["requests"] == state.count() / 2  # the same two units both times, only their requests


def test_bad_inputs_are_one_error_line(week, capsys):
    capsys.readouterr()
    assert main(["verify", "nope", *RANGE]) == 1
    assert "error: job group 'nope' does not exist" in capsys.readouterr().err
    assert main(["verify", "jp_daily_quotes", "--from", "2026-11-20", "--to", "2026-11-16"]) == 1
    assert "before" in capsys.readouterr().err
    assert main(["verify", "jp_daily_quotes", "--from", "11/16", "--to", "2026-11-16"]) == 1
    assert "--from: give a date as YYYY-MM-DD" in capsys.readouterr().err
    assert main(["verify", "jp_daily_quotes", *RANGE, "--delete-extra"]) == 1
    assert "--repair" in capsys.readouterr().err


def test_json_is_the_only_stdout_of_the_real_command(week):
    """Airflow's logging (set up when the Connection is read) writes to stdout: the command sends
    it to stderr, so ``--json`` stdout parses as one document."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / "moomarkets"
    proc = subprocess.run([str(exe), "verify", "jp_daily_quotes", *RANGE, "--json"], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "equal"
    assert "verifying jp_daily_quotes" in proc.stderr  # progress is still shown, on stderr
