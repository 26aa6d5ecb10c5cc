"""`moomarkets backfill NAME --from D1 --to D2 --history`: a dry run lists the chunks (one DAG run each)
and what each still has to load; bad options print one error line and exit non-zero."""

from __future__ import annotations

import textwrap

import pytest

from moomarkets.cli import main

pytestmark = pytest.mark.integration

EXAMPLE = textwrap.dedent(
    """
    data_sources:
      - {code: jquants, name: J-Quants, kind: jquants, conn_id: jquants_default, is_active: true,
         config: {rate_limit: 60/minute, max_concurrency: 2}}
    job_groups:
      - {name: jp_daily_quotes, data_source: jquants, dataset: daily_quotes,
         schedule: "0 19 * * 1-5", timezone: Asia/Tokyo, parameters: {universe: all_listed}, is_enabled: true}
    """
)


@pytest.fixture
def loaded(warehouse_url, tmp_path):
    f = tmp_path / "example.yaml"
    f.write_text(EXAMPLE)
    assert main(["--no-airflow", "import", str(f)]) == 0
    return warehouse_url


def test_history_dry_run_lists_the_chunks(loaded, capsys):
    capsys.readouterr()
    code = main(["backfill", "jp_daily_quotes", "--from", "2026-01-05", "--to", "2026-03-27", "--history",
                 "--run-days", "25", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "would queue 3 history run(s) of jp_daily_quotes: 60 of 60 trading day(s) 2026-01-05..2026-03-27" in out
    assert "about 60 s at the rate limit" in out  # 60 days x 1 request / (60/minute)
    assert "2026-01-05 .. 2026-02-06: 25/25 day(s) to load" in out


def test_history_bad_options_are_one_error_line(loaded, capsys):
    capsys.readouterr()
    code = main(["backfill", "jp_daily_quotes", "--from", "2026-01-05", "--to", "2026-03-27", "--history",
                 "--unit-days", "0", "--dry-run"])
    err = capsys.readouterr().err
    assert code != 0 and "unit days" in err and err.count("error:") == 1
