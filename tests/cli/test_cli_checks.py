"""``moomarkets groups show NAME`` prints the latest checked run's data check results."""

from __future__ import annotations

import json

import psycopg
import pytest

from moomarkets.cli import main

pytestmark = pytest.mark.integration

CONFIG = """
data_sources:
  - {code: jquants, name: J-Quants, kind: jquants, conn_id: jquants_default, is_active: true, config: {}}
job_groups:
  - {name: jp_bars, data_source: jquants, dataset: daily_quotes, schedule: "0 19 * * 1-5", timezone: Asia/Tokyo,
     parameters: {universe: all_listed, checks: {row_count_drop: {severity: error, max_drop: 0.1}}}}
"""


def test_groups_show_prints_the_latest_check_results(warehouse_url, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    assert main(["--no-airflow", "import", str(cfg)]) == 0
    capsys.readouterr()
    assert main(["--no-airflow", "groups", "show", "jp_bars"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["latest_checks"] is None
    assert shown["parameters"]["checks"] == {"row_count_drop": {"severity": "error", "max_drop": 0.1}}
    with psycopg.connect(warehouse_url) as conn:
        for run_id, at in (("old", "2026-03-02 10:00+00"), ("new", "2026-03-03 10:00+00")):
            conn.execute(
                "INSERT INTO check_results (group_name, dag_id, run_id, dataset, check_name, severity, passed, failed,"
                " checked, sample, message, checked_at) VALUES ('jp_bars', 'jp_bars', %s, 'daily_quotes',"
                " 'price_sanity', 'error', false, 1, 50, %s, 'price_sanity (error): 1 of 50 rows failed, e.g. x', %s)",
                (run_id, json.dumps([{"code": "72030", "date": "2026-03-03", "why": "price <= 0"}]), at),
            )
    assert main(["--no-airflow", "groups", "show", "jp_bars"]) == 0
    latest = json.loads(capsys.readouterr().out)["latest_checks"]
    assert latest["run_id"] == "new"
    (result,) = latest["results"]
    assert result["check"] == "price_sanity" and result["passed"] is False and result["failed"] == 1
    assert result["sample"] == [{"code": "72030", "date": "2026-03-03", "why": "price <= 0"}]
    assert result["message"].startswith("price_sanity (error)")
