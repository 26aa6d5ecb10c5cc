"""`moomarkets restate SOURCE CODE...` repairs stale history by hand (credentials from the Airflow
Connection, requests through the shared rate limit); `groups show` lists the group's restatements."""

from __future__ import annotations

import json
import textwrap
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import psycopg
import pytest

from moomarkets.cli import main
from moomarkets.pipeline import GroupPipeline
from moomarkets.pipeline import run as runner
from moomarkets.sources.base import Credentials, Interval
from moomarkets.testing import jquants_data as fd
from moomarkets.warehouse import config_store as store
from moomarkets.warehouse.db import connect

pytestmark = pytest.mark.integration

KEY = "cli-restate-key-3141"
N = 12
CONFIG = textwrap.dedent(
    """
    data_sources:
      - {code: jquants, name: J-Quants, kind: jquants, conn_id: jquants_default, is_active: true,
         config: {rate_limit: 6000/minute, max_concurrency: 2}}
    job_groups:
      - {name: jp_daily_quotes, data_source: jquants, dataset: daily_quotes,
         schedule: "0 19 * * 1-5", timezone: Asia/Tokyo, parameters: {universe: all_listed}, is_enabled: true}
    """
)


def cli(*argv: str) -> int:
    return main(["--no-airflow", *argv])


def test_restate_command_and_groups_show(warehouse_url, monkeypatch, capsys):
    import yaml

    from moomarkets.testing.jquants_fake import FakeConfig, running_fake

    with connect(warehouse_url) as conn:
        store.import_config(conn, yaml.safe_load(CONFIG))
        [spec] = store.read_specs(conn, only="jp_daily_quotes")
    pipe = GroupPipeline.resolve(spec)
    tokyo = ZoneInfo("Asia/Tokyo")
    with running_fake(FakeConfig(api_key=KEY, page_size=50, n_issues=N, today=date(2026, 3, 27))) as (base, state):
        monkeypatch.setenv("AIRFLOW_CONN_JQUANTS_DEFAULT",
                           json.dumps({"conn_type": "jquants", "host": base, "password": KEY}))
        interval = Interval(datetime(2026, 3, 24, 19, tzinfo=tokyo), datetime(2026, 3, 27, 19, tzinfo=tokyo))
        for unit in runner.plan_units(pipe, interval, dag_id=pipe.name, run_id="r1", url=warehouse_url, max_units=8):
            runner.fetch_and_load(pipe, unit, dag_id=pipe.name, run_id="r1", url=warehouse_url,
                                  credentials=Credentials(secret=KEY, host=base))
        state.config.today = date(2026, 3, 31)  # the source restated; no run of ours saw the split
        state.reset()
        capsys.readouterr()
        assert cli("restate", "jquants", fd.SPLIT_CODE) == 0
        out = capsys.readouterr().out
        assert f"restated jquants {fd.SPLIT_CODE} 2026-03-25..2026-03-27: 3 row(s) changed, 1 request(s)" in out.splitlines()
        assert len(state.requests) == 1
        assert cli("restate", "jquants", "99990") == 1
        assert "99990: no stored daily_quotes rows to restate" in capsys.readouterr().err
        assert cli("restate", "jquants", "80350", "--from", "March") == 1
        assert "error: --from: give a date as YYYY-MM-DD" in capsys.readouterr().err
    with psycopg.connect(warehouse_url) as conn:
        adj = conn.execute("SELECT date::text, adj_close FROM daily_quotes WHERE code = %s ORDER BY date",
                           (fd.SPLIT_CODE,)).fetchall()
    served = {r["Date"]: r["AdjC"] for r in fd.daily_bars_for_code(fd.SPLIT_CODE, "2026-03-25", "2026-03-27",
                                                                   n_issues=N, as_of=date(2026, 3, 31))}
    assert {d: float(v) for d, v in adj} == served and all(isinstance(v, Decimal) for _, v in adj)

    assert cli("groups", "show", "jp_daily_quotes") == 0
    out = capsys.readouterr().out
    shown = json.loads(out[out.index("{"):])
    [rec] = shown["recent_restatements"]
    assert (rec["code"], rec["action"], rec["status"], rec["rows_changed"], rec["requests"]) == (
        fd.SPLIT_CODE, "manual", "done", 3, 1)
