"""Smoke test of bench/parse.py: its factory config and its dag-factory 1.1 config yield the same DAGs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("dagfactory")


def _missing(name: str) -> bool:
    if name in sys.modules:
        return False
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):
        return True


_MISSING = [m for m in ("moomarkets.airflow.provider", "moomarkets.ratelimit") if _missing(m)]
pytestmark = pytest.mark.skipif(bool(_MISSING), reason=f"package module(s) missing: {', '.join(_MISSING)}")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("moomarkets_bench_parse", ROOT / "bench" / "parse.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_both_generators_build_equivalent_dags(bench, warehouse_url, tmp_path, monkeypatch):
    monkeypatch.setenv("MOOMARKETS_SNAPSHOT_PATH", str(tmp_path / "snapshot.json"))
    monkeypatch.setenv("AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY", "False")
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    monkeypatch.syspath_prepend(str(tmp_path))  # the dag-factory callables module lives beside its DAG file
    bench.load_warehouse(warehouse_url, bench.make_config(2))
    theirs_file = bench.write_dagfactory_files(tmp_path, bench.dagfactory_config(warehouse_url), 2)
    try:
        _, ours = bench.parse(bench.OUR_DAG_FILE)
        _, theirs = bench.parse(theirs_file)
    finally:
        sys.modules.pop(bench.CALLABLES_MODULE, None)
    bench.check_bag(ours, 2, "moomarkets")
    bench.check_bag(theirs, 2, "dag-factory")
    assert sorted(ours.dag_ids) == ["bench_group_0000", "bench_group_0001"]
    assert bench.compare_bags(ours, theirs) == []
    fetch = theirs.dags["bench_group_0001"].get_task("fetch_and_load")
    assert bench.dag_signature(theirs.dags["bench_group_0001"])["tasks"]["fetch_and_load"]["mapped"]
    assert fetch.pool == "moomarkets_jquants"
