"""A real CeleryExecutor scale-out on one machine: the proof behind ``make scale-demo``.

Starts, in a private directory on free ports: a Redis server from the distribution's package
(``redis-server``) as the Celery broker, an embedded PostgreSQL (Airflow metadata + warehouse,
also the Celery result backend), the LOCAL FAKE J-Quants v2 server (in this process, with a strict
sliding-window rate limit), Airflow's api-server, scheduler, dag-processor and triggerer with the
CeleryExecutor, and N Celery workers with different hostnames (each records its own hostname on
the task instances it runs, through ``[core] hostname_callable`` = :func:`worker_hostname`).
It then loads a whole-market ``daily_quotes`` group over the last trading days (the scheduler's
run of the latest interval plus an Airflow backfill of the days before it, all runs at once),
waits for every run, measures, and stops everything it started (no orphans: see ``processes``).

Used by ``bench/scale_out.py`` (prints the table) and ``tests/dev/test_scale_out.py`` (lighter).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from moomarkets.dev import processes as procs
from moomarkets.dev import throwaway

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
TOKYO = ZoneInfo("Asia/Tokyo")
GROUP = "scaleout_all_listed"
POOL = "moomarkets_jquants"
HOSTNAME_ENV = "MOOMARKETS_WORKER_HOSTNAME"


class BrokerUnavailable(RuntimeError):
    """No ``redis-server`` binary: install Debian's ``redis-server`` package."""


def worker_hostname() -> str:
    """``[core] hostname_callable`` for the demo's workers: each one's own name, else the FQDN."""
    return os.environ.get(HOSTNAME_ENV) or socket.getfqdn()


def redis_server() -> str:
    path = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)
    if not path:
        raise BrokerUnavailable("redis-server is not installed (Debian package redis-server: apt-get install -y redis-server)")
    return path


@dataclass
class Settings:
    days: int = 5  # trading days loaded (runs)
    workers: int = 2
    concurrency: int = 2  # Celery worker slots per worker
    pool_slots: int = 2  # the source's max_concurrency = pool slots
    n_issues: int = 400  # issues listed in the fake market
    page_size: int = 100  # rows per page at the fake
    rate_limit: int = 6  # requests per rate_window seconds, at the fake and at the source
    rate_window: int = 3
    # the source's own limit: one request per window under the server's. A server stamps arrivals
    # late when its host is busy (2 cores running ~10 Airflow processes), and the limiter's jitter
    # margin (60 ms at a 2 s window) alone let one 429 through in one of our runs at an equal limit.
    source_headroom: int = 1
    triggerer: bool = True  # these DAGs defer nothing: the lighter test leaves it out to save CPU
    timeout: float = 480.0
    local: Path | None = None  # default: a temporary directory, removed afterwards


@dataclass
class Result:
    settings: Settings
    runs: dict[str, int] = field(default_factory=dict)  # state -> count
    tis_per_worker: dict[str, int] = field(default_factory=dict)
    pools: list[tuple[str, int, int]] = field(default_factory=list)  # pool, peak concurrent, slots
    requests: int = 0
    http_429: int = 0
    rows_loaded: int = 0
    rows_expected: int = 0
    days: list[date] = field(default_factory=list)
    wall_s: float = 0.0
    run_s: float = 0.0
    start_s: float = 0.0  # until every component is up and the DAG parsed
    stop_s: float = 0.0
    leftovers: list[int] = field(default_factory=list)
    request_log: list[tuple[str, dict, int]] = field(default_factory=list)  # (path, params, status)

    def table(self) -> str:
        s = self.settings
        lines = [
            f"CeleryExecutor scale-out: {s.workers} workers x {s.concurrency} slots, Redis broker, embedded PostgreSQL;",
            f"whole market ({s.n_issues} issues, {s.page_size} rows/page) over {len(self.days)} trading days "
            f"({self.days[0] if self.days else '-'} .. {self.days[-1] if self.days else '-'}); "
            f"fake J-Quants limit {s.rate_limit} requests / {s.rate_window} s, 429 above it "
            f"(source limit {s.rate_limit - s.source_headroom} / {s.rate_window} s)",
            "",
            "| worker (hostname) | task instances |",
            "|---|---:|",
            *[f"| {w} | {n} |" for w, n in sorted(self.tis_per_worker.items())],
            "",
            "| pool | peak concurrent tasks | slots |",
            "|---|---:|---:|",
            *[f"| {p} | {peak} | {slots} |" for p, peak, slots in self.pools],
            "",
            "| measure | value |",
            "|---|---:|",
            f"| dag runs | {', '.join(f'{n} {st}' for st, n in sorted(self.runs.items()))} |",
            f"| requests to J-Quants | {self.requests} |",
            f"| 429s | {self.http_429} |",
            f"| rows loaded / expected | {self.rows_loaded:,} / {self.rows_expected:,} |",
            f"| wall time: start (Redis, PostgreSQL, migrations, components, DAG parsed) (s) | {self.start_s:.1f} |",
            f"| wall time: runs (s) | {self.run_s:.1f} |",
            f"| wall time: stop (s) | {self.stop_s:.1f} |",
            f"| wall time: whole demo incl. start and stop (s) | {self.wall_s:.1f} |",
            f"| processes left after stop | {len(self.leftovers)} |",
        ]
        return "\n".join(lines)


def _free_port() -> int:
    from moomarkets.dev.localpg import free_port

    return free_port()


def trading_days(last_n: int, now: datetime | None = None) -> list[date]:
    """The last ``last_n`` weekdays whose 19:00 Tokyo run has happened (the group's cron)."""
    now = (now or datetime.now(TOKYO)).astimezone(TOKYO)
    day = now.date() if now.hour >= 19 else now.date() - timedelta(days=1)
    out: list[date] = []
    while len(out) < last_n:
        if day.weekday() < 5:
            out.append(day)
        day -= timedelta(days=1)
    return sorted(out)


def _config(s: Settings) -> dict[str, Any]:
    return {
        "data_sources": [{
            "code": "jquants", "name": "J-Quants", "kind": "jquants", "conn_id": "jquants_default", "is_active": True,
            "config": {"rate_limit": f"{s.rate_limit - s.source_headroom}/{s.rate_window}second",
                       "max_concurrency": s.pool_slots},
        }],
        "job_groups": [{
            "name": GROUP, "description": "scale-out demo: all listed issues", "data_source": "jquants",
            "dataset": "daily_quotes", "schedule": "0 19 * * 1-5", "timezone": "Asia/Tokyo",
            "parameters": {"universe": "all_listed"}, "is_enabled": True,
        }],
    }


class Demo:
    def __init__(self, s: Settings) -> None:
        self.s = s
        self._tmp = None if s.local else tempfile.mkdtemp(prefix="moomarkets-scaleout-")
        self.local = Path(s.local or self._tmp).resolve()
        self.pg_port, self.api_port, self.redis_port = _free_port(), _free_port(), _free_port()
        self.names: list[str] = []
        self.pg = None
        self._jwt = secrets.token_urlsafe(64)

    def env(self, fake_url: str, fake_key: str) -> dict[str, str]:
        db = f"postgresql+psycopg://postgres@127.0.0.1:{self.pg_port}/airflow"
        return throwaway.airflow_env(
            self.local, pg_port=self.pg_port, api_port=self.api_port, executor="CeleryExecutor",
            jwt_secret=self._jwt, min_file_process_interval=30,
            extra={
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname",
                "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{db}",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.s.concurrency),
                "AIRFLOW_CONN_JQUANTS_DEFAULT": json.dumps({"conn_type": "jquants", "host": fake_url, "password": fake_key}),
            },
        )

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        procs.start(self.local, name, cmd, env=env)
        self.names.append(name)

    def _wait(self, what: str, check, timeout: float) -> Any:
        return throwaway.wait_until(self.local, self.names, what, check, timeout, every=1)

    def run(self) -> Result:
        from moomarkets.dev.localpg import LocalPostgres
        from moomarkets.testing import jquants_data as fd
        from moomarkets.testing.jquants_fake import FakeConfig, running_fake

        s, result = self.s, Result(self.s)
        t0 = time.monotonic()
        redis_bin = redis_server()
        key = "fake-" + secrets.token_hex(8)
        cfg = FakeConfig(api_key=key, page_size=s.page_size, n_issues=s.n_issues,
                         rate_limit_per_minute=s.rate_limit, rate_limit_window=float(s.rate_window))
        try:
            with running_fake(cfg) as (fake_url, state):
                env = self.env(fake_url, key)
                (self.local / "redis").mkdir(parents=True, exist_ok=True)
                self.start("redis", [redis_bin, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                                     "--appendonly", "no", "--dir", str(self.local / "redis")], env)
                self.pg = LocalPostgres(self.local / "pg" / "data", self.pg_port, fast_unsafe=True)
                self.pg.start()
                self.pg.create_database("airflow")
                self.pg.create_database("moomarkets")
                self._cli(env, "airflow", "db", "migrate")
                self._cli(env, "moomarkets", "db", "upgrade")
                conf = self.local / "scaleout.yaml"
                import yaml

                conf.write_text(yaml.safe_dump(_config(s)))
                self._cli(env, "moomarkets", "import", str(conf))
                self._cli(env, "moomarkets", "pools", "sync")
                for name in ("scheduler", "dag-processor", "api-server") + (("triggerer",) if s.triggerer else ()):
                    self.start(name, [str(BIN / "airflow"), name], env)
                for i in range(1, s.workers + 1):
                    host = f"worker-{i}.scaleout"
                    self.start(f"worker-{i}", [str(BIN / "airflow"), "celery", "worker", "--celery-hostname",
                                               f"celery@{host}", "--concurrency", str(s.concurrency),
                                               "--pid", str(self.local / f"worker-{i}.pid"), "--skip-serve-logs",
                                               "--without-mingle", "--without-gossip"],
                               {**env, HOSTNAME_ENV: host})
                import psycopg

                adb = f"postgresql://postgres@127.0.0.1:{self.pg_port}/airflow"
                wdb = env["MOOMARKETS_DATABASE_URL"]

                def q(sql: str, params: tuple = (), url: str = adb) -> list[tuple]:
                    with psycopg.connect(url, autocommit=True) as c:
                        return c.execute(sql, params).fetchall()

                self._wait(f"DAG {GROUP} parsed", lambda: q("SELECT 1 FROM serialized_dag WHERE dag_id=%s", (GROUP,)), 120)
                self._wait("the api-server", lambda: _http_ok(f"http://localhost:{self.api_port}/api/v2/monitor/health"), 120)
                days = trading_days(s.days)
                result.days = days
                t_runs = time.monotonic()
                result.start_s = t_runs - t0
                # the scheduler runs the latest interval itself (catchup is off); backfill the days before it
                if len(days) > 1:
                    self._cli(env, "airflow", "backfill", "create", "--dag-id", GROUP, "--from-date", days[0].isoformat(),
                              "--to-date", days[-1].isoformat(), "--max-active-runs", str(s.days))

                def done() -> bool:
                    rows = q("SELECT state, count(*) FROM dag_run WHERE dag_id=%s GROUP BY state", (GROUP,))
                    states = dict(rows)
                    total = sum(states.values())
                    return total >= len(days) and set(states) <= {"success", "failed"}

                self._wait(f"{len(days)} runs of {GROUP}", done, s.timeout)
                result.run_s = time.monotonic() - t_runs
                result.runs = dict(q("SELECT state, count(*) FROM dag_run WHERE dag_id=%s GROUP BY state", (GROUP,)))
                result.tis_per_worker = dict(q(
                    "SELECT coalesce(hostname, '(none)'), count(*) FROM task_instance WHERE dag_id=%s GROUP BY 1", (GROUP,)))
                spans = q("SELECT pool, start_date, end_date FROM task_instance WHERE dag_id=%s AND start_date IS NOT NULL",
                          (GROUP,))
                slots = dict(q("SELECT pool, slots FROM slot_pool"))
                result.pools = [(p, _peak([(a, b) for pp, a, b in spans if pp == p]), slots.get(p, 0))
                                for p in sorted({p for p, _, _ in spans})]
                with state.lock:
                    statuses = list(state.statuses)
                    result.request_log = [(p, dict(a), st) for (p, a), st in zip(state.requests, state.statuses)]
                result.requests, result.http_429 = len(statuses), statuses.count(429)
                result.rows_loaded = q("SELECT count(*) FROM daily_quotes WHERE source='jquants'", url=wdb)[0][0]
                result.rows_expected = sum(len(fd.daily_bars_for_date(d, n_issues=s.n_issues)) for d in days)
            self._ok = True
        finally:
            t_stop = time.monotonic()
            result.leftovers = self.stop()
            result.stop_s = time.monotonic() - t_stop
            result.wall_s = time.monotonic() - t0
        return result

    def _cli(self, env: dict[str, str], *cmd: str) -> None:
        r = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], env=env, cwd=procs.workdir(self.local),
                           capture_output=True, text=True, timeout=300)
        if r.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{(r.stdout + r.stderr)[-3000:]}")

    def stop(self) -> list[int]:
        """Workers and scheduler first (no new task starts), the rest, PostgreSQL, then anything left."""
        left = throwaway.stop_all(self.local, self.names, first=lambda n: n.startswith("worker-") or n == "scheduler",
                                  pg=self.pg)
        if self._tmp and not left and getattr(self, "_ok", False):  # keep the logs of a failed demo
            shutil.rmtree(self._tmp, ignore_errors=True)
        return left


def _http_ok(url: str) -> bool:
    import requests

    return requests.get(url, timeout=2).status_code == 200


def _peak(spans: list[tuple[datetime, datetime | None]]) -> int:
    """Most intervals open at one moment (an end at the same instant as a start does not overlap)."""
    events = []
    for a, b in spans:
        events += [(a, 1), (b or datetime.max.replace(tzinfo=a.tzinfo), -1)]
    peak = cur = 0
    for _, d in sorted(events, key=lambda e: (e[0], e[1])):
        cur += d
        peak = max(peak, cur)
    return peak


def run(settings: Settings | None = None) -> Result:
    return Demo(settings or Settings()).run()
