"""End to end with a real `dag.test()`: a run loads the split day after the source restated, its
`restate_history` task brings the code's earlier rows in line in the same run, and every stored row
then equals what the fake J-Quants server serves now."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import psycopg
import pytest
import yaml

from moomarkets.testing import jquants_data as fd
from moomarkets.warehouse import config_store as store
from moomarkets.warehouse.db import connect
from dagtest import get_dag  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

TOKYO = ZoneInfo("Asia/Tokyo")
KEY = "restate-dag-key-2718"
N = 12
CONFIG = """
data_sources:
  - {code: jquants, name: J-Quants, kind: jquants, conn_id: jquants_default, is_active: true,
     config: {rate_limit: 6000/minute, max_concurrency: 2}}
job_groups:
  - {name: jp_daily_quotes, data_source: jquants, dataset: daily_quotes,
     schedule: "0 19 * * 5", timezone: Asia/Tokyo, parameters: {universe: all_listed}, is_enabled: true}
"""
COLS = ("open", "high", "low", "close", "volume", "turnover", "adjustment_factor", "adj_open", "adj_high", "adj_low",
        "adj_close", "adj_volume")




def test_split_day_run_restates_history_in_the_same_run(warehouse_url, airflow_db, monkeypatch, tmp_path):
    from moomarkets.testing.jquants_fake import FakeConfig, running_fake

    cfg = FakeConfig(api_key=KEY, page_size=4, n_issues=N, today=date(2026, 3, 27))
    with running_fake(cfg) as (base_url, state):
        monkeypatch.setenv("MOOMARKETS_SNAPSHOT_PATH", str(tmp_path / "snapshot.json"))
        monkeypatch.setenv("AIRFLOW_CONN_JQUANTS_DEFAULT",
                           json.dumps({"conn_type": "jquants", "host": base_url, "password": KEY}))
        with connect(warehouse_url) as conn:
            store.import_config(conn, yaml.safe_load(CONFIG))
        # weekly run: Mon 2026-03-23 .. Fri 03-27, the source's clock before the split
        run1 = get_dag("jp_daily_quotes").test(logical_date=datetime(2026, 3, 27, 20, tzinfo=TOKYO))
        assert run1.state == "success"

        state.config.today = date(2026, 3, 31)  # the source restates 80350's history
        with connect(warehouse_url) as conn, conn.transaction():
            store.update_group(conn, "jp_daily_quotes", schedule="0 19 * * 1-5")
        state.reset()
        run2 = get_dag("jp_daily_quotes").test(logical_date=datetime(2026, 3, 30, 20, tzinfo=TOKYO))
        assert run2.state == "success"
        tis = {ti.task_id: ti.state for ti in run2.get_task_instances()}
        assert tis["restate_history"] == "success"
        code_queries = [p for path, p in state.requests if "code" in p]
    assert len(code_queries) == 2  # 5 stored days of 80350 at 4 rows a page: one query, two pages
    assert {(p["code"], p["from"], p["to"]) for p in code_queries} == {(fd.SPLIT_CODE, "20260323", "20260327")}

    with psycopg.connect(warehouse_url) as conn:
        rows = conn.execute(f"SELECT code, date::text, {', '.join(COLS)} FROM daily_quotes").fetchall()
        rec = conn.execute("SELECT code, status, rows_changed, requests, run_id FROM restatements").fetchall()
    stored = {(r[0], r[1]): tuple(float(v) if isinstance(v, Decimal) else v for v in r[2:]) for r in rows}
    served = {}
    for day in {d for _, d in stored}:
        for b in fd.daily_bars_for_date(day, n_issues=N, as_of=date(2026, 3, 31)):
            served[(b["Code"], b["Date"])] = tuple(
                None if b[k] is None else float(b[k])
                for k in ("O", "H", "L", "C", "Vo", "Va", "AdjFactor", "AdjO", "AdjH", "AdjL", "AdjC", "AdjVo"))
    assert len({d for _, d in stored}) == 6 and stored == served  # EVERY row equals what the source serves now
    assert rec == [(fd.SPLIT_CODE, "done", 5, 2, run2.run_id)]
