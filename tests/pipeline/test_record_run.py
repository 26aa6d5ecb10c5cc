"""record_run closes a run from its units, its restatements and its checks (real Postgres)."""

from __future__ import annotations

import psycopg
import pytest

from moomarkets.pipeline import run as runner
from moomarkets.warehouse import runs

pytestmark = pytest.mark.integration

UNIT = {"key": "date:2026-11-20", "kind": "dates", "params": {"dates": ["2026-11-20"]}}


def loaded_run(url: str, run_id: str) -> None:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        pk = runs.start_run(conn, group_name="g", dag_id="g", run_id=run_id, interval_start=None, interval_end=None,
                            units=[UNIT], plan={})
        runs.mark_unit_running(conn, pk, UNIT)
        runs.mark_unit_done(conn, pk, UNIT["key"], rows=5, requests=1)


def test_a_step_that_did_not_complete_fails_the_run(warehouse_url):
    loaded_run(warehouse_url, "r1")
    assert runner.record_run(dag_id="g", run_id="r1", url=warehouse_url)["status"] == "success"
    summary = runner.record_run(dag_id="g", run_id="r1", url=warehouse_url, unfinished=["check_loaded"])
    assert summary["status"] == "failed" and summary["problems"] == ["check_loaded did not complete"]


def test_a_pending_restatement_fails_the_run(warehouse_url):
    loaded_run(warehouse_url, "r2")
    with psycopg.connect(warehouse_url) as conn:
        conn.execute(
            "INSERT INTO restatements (source, dataset, code, event_date, action, factor, dag_id, run_id, status)"
            " VALUES ('jquants', 'daily_quotes', '80350', '2026-03-30', 'split', 0.5, 'g', 'r2', 'pending')"
        )
    summary = runner.record_run(dag_id="g", run_id="r2", url=warehouse_url)
    assert summary["status"] == "failed"
    assert summary["problems"] == ["restatement 80350 split 2026-03-30: not restated (restate_history did not finish)"]
