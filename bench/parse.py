"""DAG parse-time benchmark: the MooMarkets factory beside astronomer dag-factory 1.1.

    .venv/bin/python bench/parse.py [--sizes 10,100,1000] [--runs 3] [--profile]

For each size N, in one process: an embedded PostgreSQL gets one J-Quants data source and N valid
job groups (varied schedules, timezones, tickers), and a temp dags folder gets the equivalent
dag-factory YAML (same schedule/timetable and timezone, start date, tags, doc_md, default_args,
three TaskFlow tasks with the same dependencies, the middle one mapped with ``expand``) plus the
DAG file that loads it with ``dagfactory.load_yaml_dags``. Both DAG files are then parsed with
Airflow's own ``DagBag`` (what the dag-processor runs per file): one warm-up, then the median of
``--runs`` alternating runs. Prints a markdown table and whether ours is at most half of theirs.

dag-factory gets its cheapest equivalent: callables by dotted path from a module in the dags
folder (``python_callable_file`` would re-execute that file for every task), telemetry off.
Airflow 3.3's ``DagBag`` has no ``include_examples`` argument; LOAD_EXAMPLES=False is set instead,
and the 30 s dagbag import timeout is disabled so a slow parse is measured rather than killed.

Airflow's metadata DB is never needed for parsing: AIRFLOW_HOME is a fresh temp dir whose SQLite
URL points at a file that is never migrated (the script reports whether it was even created).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUR_DAG_FILE = ROOT / "dags" / "moomarkets_groups.py"
GOAL_RATIO = 0.50
SOURCE = {
    "code": "jquants",
    "name": "J-Quants",
    "kind": "jquants",
    "conn_id": "jquants_default",
    "description": "JPX J-Quants API v2 (benchmark)",
    "is_active": True,
    "config": {"plan": "free", "max_concurrency": 2},
}
SCHEDULES = [
    "0 19 * * 1-5", "30 19 * * 1-5", "15 18 * * 1-5", "0 7 * * *", "45 6 * * 2-6",
    "0 */6 * * *", "10 20 * * 1-5", "0 9 1 * *", "@daily", "5 0 * * 1",
]
TIMEZONES = ["Asia/Tokyo", "UTC", "America/New_York", "Europe/London", "Asia/Singapore"]
CALLABLES_MODULE = "dagfactory_bench_callables"


# -- environment (before Airflow is imported) ----------------------------------------------------
def prepare_environment(home: Path) -> None:
    """A throwaway AIRFLOW_HOME; must run before anything imports airflow."""
    if "airflow" in sys.modules:
        raise RuntimeError("prepare_environment() must run before airflow is imported")
    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            # Airflow's default 30 s import timeout would kill a slow N=1000 parse; we report times instead.
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "0",
            # dag-factory telemetry off (no internet here; also keeps timings clean)
            "AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY": "False",
            "DO_NOT_TRACK": "1",
            "SCARF_NO_ANALYTICS": "1",
            "MOOMARKETS_CONFIG_TIMEOUT": "10",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"),
        }
    )


# -- config ---------------------------------------------------------------------------------------
def make_config(n: int, seed: int = 20240601) -> dict[str, Any]:
    """One J-Quants source and ``n`` valid job groups with varied schedules, zones and tickers."""
    rnd = random.Random(seed + n)
    groups = []
    for i in range(n):
        if i % 4 == 0:
            params: dict[str, Any] = {"universe": "all_listed"}
        else:
            params = {"tickers": [f"{rnd.randint(1300, 9999)}0" for _ in range(rnd.randint(1, 8))]}
            if i % 7 == 3:
                params["plan"] = "by_code"
        groups.append(
            {
                "name": f"bench_group_{i:04d}",
                "description": f"Benchmark group {i}: daily bars for {len(params.get('tickers', [])) or 'all'} issue(s)",
                "data_source": SOURCE["code"],
                "dataset": "daily_quotes",
                "schedule": SCHEDULES[i % len(SCHEDULES)],
                "timezone": TIMEZONES[(i // 3) % len(TIMEZONES)],
                "parameters": params,
                "is_enabled": i % 5 != 4,
            }
        )
    return {"data_sources": [dict(SOURCE)], "job_groups": groups}


def load_warehouse(url: str, config: dict[str, Any]) -> None:
    from moomarkets.warehouse import migrate
    from moomarkets.warehouse.config_store import import_config
    from moomarkets.warehouse.db import connect

    migrate.upgrade(url)
    with connect(url) as conn:
        import_config(conn, config, replace_all=True)
        conn.commit()


# -- the equivalent dag-factory config ---------------------------------------------------------------
def _td(**kw: int) -> dict[str, Any]:
    return {"__type__": "datetime.timedelta", **kw}


def dagfactory_config(url: str, callables_module: str = CALLABLES_MODULE) -> dict[str, Any]:
    """The dag-factory 1.1 YAML (as a dict) for exactly the groups our factory builds from ``url``."""
    from moomarkets.airflow.factory import DEFAULT_ARGS, START_DATE_YEAR, _doc_md
    from moomarkets.airflow.pools import pool_name
    from moomarkets.pipeline import GroupPipeline
    from moomarkets.warehouse.config_snapshot import read_database

    from datetime import timedelta

    assert DEFAULT_ARGS == {
        "owner": "moomarkets",
        "retries": 3,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
        "execution_timeout": timedelta(hours=1),
    }, "factory DEFAULT_ARGS changed: update the dag-factory equivalent in bench/parse.py"
    config: dict[str, Any] = {
        "default": {
            "default_args": {
                "owner": "moomarkets",
                "retries": 3,
                "retry_delay": _td(minutes=1),
                "retry_exponential_backoff": 2.0,
                "max_retry_delay": _td(minutes=30),
                "execution_timeout": _td(hours=1),
            },
            "catchup": False,
            "max_active_runs": 1,
            "max_active_tasks": 32,
            "dagrun_timeout": _td(hours=12),
        }
    }
    fn = f"{callables_module}.{{}}"
    for spec in read_database(url, timeout=10):
        pipe = GroupPipeline.resolve(spec)
        group, source = pipe.group, pipe.source_row
        market_tz, market_close = pipe.source_class.trading_day_close(group.dataset, group.parameters)
        config[group.name] = {
            "description": (group.description or f"{source.code} {group.dataset}")[:200],
            "schedule": {
                "__type__": "moomarkets.airflow.timetables.TradingDayTimetable",
                "__args__": [group.schedule, group.timezone],
                "market_timezone": market_tz,
                "market_close": {"__type__": "datetime.time", "__args__": [market_close.hour, market_close.minute]},
            },
            "start_date": f"{START_DATE_YEAR}-01-01",
            "timezone": group.timezone,
            "tags": ["moomarkets", f"source:{source.code}", f"dataset:{group.dataset}"],
            "doc_md": _doc_md(pipe),
            "is_paused_upon_creation": not group.is_enabled,
            "tasks": {
                "plan_units": {
                    "decorator": "airflow.sdk.task",
                    "python_callable": fn.format("plan_units"),
                    "retries": 2,
                    "execution_timeout": _td(minutes=10),
                },
                "fetch_and_load": {
                    "decorator": "airflow.sdk.task",
                    "python_callable": fn.format("fetch_and_load"),
                    "pool": pool_name(source.code),
                    "map_index_template": "{{ unit_key }}",
                    "execution_timeout": _td(hours=1),
                    "expand": {"unit": "+plan_units"},
                    "dependencies": ["plan_units"],
                },
                "restate_history": {
                    "decorator": "airflow.sdk.task",
                    "python_callable": fn.format("restate_history"),
                    "pool": pool_name(source.code),
                    "trigger_rule": "all_done",
                    "execution_timeout": _td(hours=1),
                    "dependencies": ["fetch_and_load"],
                },
                "check_loaded": {
                    "decorator": "airflow.sdk.task",
                    "python_callable": fn.format("check_loaded"),
                    "trigger_rule": "all_done",
                    "retries": 2,
                    "execution_timeout": _td(minutes=30),
                    "dependencies": ["restate_history"],
                },
                "record_run": {
                    "decorator": "airflow.sdk.task",
                    "python_callable": fn.format("record_run"),
                    "trigger_rule": "all_done",
                    "retries": 2,
                    "dependencies": ["check_loaded"],
                },
            },
        }
    return config


CALLABLES_SOURCE = '''"""Task callables for the dag-factory benchmark DAGs (same signatures as the factory's tasks)."""


def plan_units(**context):
    """Ask the source for the cheapest fetch units for this run's data interval."""
    return [{"key": "all"}]


def fetch_and_load(unit, **context):
    """Fetch one unit and upsert it in one transaction."""
    context["unit_key"] = unit["key"]
    return {"key": unit["key"], "rows": 0}


def restate_history(**context):
    """Restate the history of codes with a corporate action in this run."""
    return {"restated": 0}


def check_loaded(**context):
    """Run the data checks on the rows this run loaded."""
    return {"errors": []}


def record_run(**context):
    """Close the run record."""
    return {"status": "success"}
'''

LOADER_SOURCE = '''"""Airflow DAG file: dag-factory 1.1 builds the benchmark DAGs from {yaml_name}."""

from pathlib import Path

from dagfactory import load_yaml_dags

load_yaml_dags(globals_dict=globals(), config_filepath=str(Path(__file__).with_name("{yaml_name}")))
'''


def write_dagfactory_files(folder: Path, config: dict[str, Any], n: int) -> Path:
    """Write the YAML, its loader DAG file and the callables module into ``folder``; return the DAG file."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{CALLABLES_MODULE}.py").write_text(CALLABLES_SOURCE)
    yaml_name = f"dagfactory_bench_{n}.yml"
    (folder / yaml_name).write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=200))
    dag_file = folder / f"dagfactory_bench_{n}.py"
    dag_file.write_text(LOADER_SOURCE.format(yaml_name=yaml_name))
    return dag_file


# -- parsing ----------------------------------------------------------------------------------------
def parse(dag_file: Path):
    """Parse one DAG file the way the dag-processor does; returns (seconds, dagbag)."""
    from airflow.dag_processing.dagbag import DagBag

    t0 = time.perf_counter()
    bag = DagBag(dag_folder=str(dag_file))
    return time.perf_counter() - t0, bag


def check_bag(bag, n: int, label: str) -> None:
    assert not bag.import_errors, f"{label}: import errors: {bag.import_errors}"
    assert len(bag.dags) == n, f"{label}: {len(bag.dags)} DAGs, expected {n}"
    bad = {d: len(dag.tasks) for d, dag in bag.dags.items() if len(dag.tasks) != 5}
    assert not bad, f"{label}: DAGs without exactly 5 tasks: {dict(list(bad.items())[:5])}"


def dag_signature(dag) -> dict[str, Any]:
    """What makes two DAGs equivalent for scheduling and running (dag-factory's own extras removed)."""
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    tt = dag.timetable
    doc = dag.doc_md or ""
    doc = doc.split("\n## YML DAG\n", 1)[0]  # dag-factory appends its YAML source to doc_md
    tasks = {}
    for t in dag.tasks:
        tasks[t.task_id] = {
            "mapped": isinstance(t, MappedOperator),
            "upstream": sorted(t.upstream_task_ids),
            "downstream": sorted(t.downstream_task_ids),
            "pool": t.pool,
            "trigger_rule": str(t.trigger_rule),
            "retries": t.retries,
            "retry_delay": t.retry_delay,
            "retry_exponential_backoff": t.retry_exponential_backoff,
            "max_retry_delay": t.max_retry_delay,
            "execution_timeout": t.execution_timeout,
            "owner": t.owner,
            "map_index_template": getattr(t, "map_index_template", None),
        }
    return {
        "dag_id": dag.dag_id,
        "description": dag.description,
        "timetable": (type(tt).__name__, tt.serialize()),
        "start_date": dag.start_date.timestamp() if dag.start_date else None,
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "max_active_tasks": dag.max_active_tasks,
        "dagrun_timeout": dag.dagrun_timeout,
        "tags": sorted(set(dag.tags) - {"dagfactory"}),
        "doc_md": doc,
        "is_paused_upon_creation": dag.is_paused_upon_creation,
        "tasks": tasks,
    }


def compare_bags(ours, theirs) -> list[str]:
    """Differences between the two bags' DAG structures (empty list: equivalent)."""
    diffs = []
    if set(ours.dags) != set(theirs.dags):
        return [f"dag ids differ: {sorted(set(ours.dags) ^ set(theirs.dags))[:5]}"]
    for dag_id in sorted(ours.dags):
        a, b = dag_signature(ours.dags[dag_id]), dag_signature(theirs.dags[dag_id])
        a_tasks, b_tasks = a.pop("tasks"), b.pop("tasks")
        if set(a_tasks) != set(b_tasks):
            diffs.append(f"{dag_id}: task ids ours={sorted(a_tasks)} dag-factory={sorted(b_tasks)}")
            continue
        for task_id in a_tasks:
            for key, value in a_tasks[task_id].items():
                if value != b_tasks[task_id][key]:
                    diffs.append(f"{dag_id}.{task_id}.{key}: ours={value!r} dag-factory={b_tasks[task_id][key]!r}")
        for key in a:
            if a[key] != b[key]:
                diffs.append(f"{dag_id}.{key}: ours={a[key]!r} dag-factory={b[key]!r}")
    return diffs


def _median_runs(files: dict[str, Path], n: int, runs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in files}
    for _ in range(runs):
        for label, path in files.items():  # alternate, so drift hits both sides alike
            gc.collect()
            secs, bag = parse(path)
            check_bag(bag, n, label)
            times[label].append(secs)
            del bag
    return times


def profile_ours(n: int, top: int = 25) -> None:
    """cProfile one parse of our DAG file; print the hotspots (cumulative, then moomarkets-only)."""
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    secs, bag = parse(OUR_DAG_FILE)
    prof.disable()
    check_bag(bag, n, "moomarkets")
    print(f"\n### cProfile of one moomarkets parse, N={n} ({secs:.2f} s wall, profiler on)\n")
    for title, restriction in (("cumulative, all", ()), ("cumulative, include/moomarkets", ("moomarkets",))):
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(*restriction, top)
        print(f"#### {title}\n```\n{out.getvalue().strip()[-6000:]}\n```")
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    print(f"#### tottime, all\n```\n{out.getvalue().strip()[-6000:]}\n```")


def _metadata_db_report(home: Path) -> str:
    db = home / "airflow.db"
    if not db.exists():
        return "Airflow metadata DB: never created (parsing needed no metadata DB)."
    import sqlite3

    with sqlite3.connect(db) as c:
        tables = c.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
    return f"Airflow metadata DB: file exists, {tables} table(s) (never migrated)."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,100,1000", help="comma-separated group counts")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per size (median)")
    ap.add_argument("--slow", type=float, default=60.0, help="warm-up seconds (both sides) above which 1 run is used")
    ap.add_argument("--profile", action="store_true", help="always profile ours at the largest size")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="moomarkets-bench-parse-"))
    home = tmp / "airflow"
    prepare_environment(home)
    sys.path.insert(0, str(home / "dags"))  # Airflow does this for DAGS_FOLDER too; the callables live there

    from moomarkets.dev.localpg import LocalPostgres, free_port

    pg = LocalPostgres(tmp / "data", free_port(), fast_unsafe=True)
    rows = []
    notes = []
    try:
        t0 = time.perf_counter()
        pg.start()
        print(f"embedded PostgreSQL up in {time.perf_counter() - t0:.1f} s")
        import airflow  # noqa: F401  (after prepare_environment)
        import dagfactory

        print(f"airflow {airflow.__version__}, dag-factory {dagfactory.__version__}, python {sys.version.split()[0]}")
        for n in sizes:
            db = f"bench_{n}"
            pg.create_database(db)
            url = pg.dsn(db)
            t0 = time.perf_counter()
            load_warehouse(url, make_config(n))
            os.environ["MOOMARKETS_DATABASE_URL"] = url
            os.environ["MOOMARKETS_SNAPSHOT_PATH"] = str(tmp / f"snapshot_{n}.json")
            theirs_file = write_dagfactory_files(home / "dags", dagfactory_config(url), n)
            setup = time.perf_counter() - t0
            files = {"moomarkets": OUR_DAG_FILE, "dag-factory": theirs_file}

            warm = {}
            bags = {}
            for label, path in files.items():
                warm[label], bags[label] = parse(path)
                check_bag(bags[label], n, label)
            diffs = compare_bags(bags["moomarkets"], bags["dag-factory"])
            if diffs:
                raise AssertionError(f"N={n}: DAG structures differ ({len(diffs)}):\n" + "\n".join(diffs[:20]))
            del bags
            runs = args.runs if sum(warm.values()) <= args.slow else 1
            if runs != args.runs:
                notes.append(f"N={n}: 1 timed run (warm-up took {sum(warm.values()):.0f} s)")
            times = _median_runs(files, n, runs)
            ours, theirs = statistics.median(times["moomarkets"]), statistics.median(times["dag-factory"])
            rows.append((n, ours, theirs, runs))
            print(
                f"N={n}: setup {setup:.1f} s; warm-up ours {warm['moomarkets']:.2f} s, dag-factory "
                f"{warm['dag-factory']:.2f} s; runs ours {[round(t, 3) for t in times['moomarkets']]}, "
                f"dag-factory {[round(t, 3) for t in times['dag-factory']]}; structures equivalent",
                flush=True,
            )

        print()
        print("| groups | moomarkets (s) | dag-factory 1.1 (s) | ratio ours/theirs | per DAG ours (ms) |")
        print("|---:|---:|---:|---:|---:|")
        for n, ours, theirs, runs in rows:
            print(f"| {n:,} | {ours:.3f} | {theirs:.3f} | {ours / theirs:.2f} | {ours / n * 1000:.2f} |")
        worst = max(ours / theirs for _, ours, theirs, _ in rows)
        met = worst <= GOAL_RATIO
        print(f"\ngoal: ratio <= {GOAL_RATIO:.2f}: {'met' if met else 'NOT met'} (worst ratio {worst:.2f})")
        print(
            f"median of {args.runs} runs after one warm-up, Airflow DagBag in one process"
            + (f"; {'; '.join(notes)}" if notes else "")
        )
        print(_metadata_db_report(home))
        print(f"total runtime {time.perf_counter() - started:.0f} s")
        if (not met or args.profile) and rows:
            n = rows[-1][0]
            os.environ["MOOMARKETS_DATABASE_URL"] = pg.dsn(f"bench_{n}")
            os.environ["MOOMARKETS_SNAPSHOT_PATH"] = str(tmp / f"snapshot_{n}.json")
            profile_ours(n)
        return 0 if met else 1
    finally:
        pg.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")


if __name__ == "__main__":
    sys.exit(main())
