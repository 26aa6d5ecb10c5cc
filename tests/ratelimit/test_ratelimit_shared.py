"""The shared per-source rate limit against a real Postgres and a real (local) HTTP API.

A local API counts requests in a sliding window and answers 429 above the limit; OS processes
(spawned, so nothing is shared but the database) go through one ``SourceRateLimiter`` each.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the harness lives in bench/ratelimit.py (spawned workers import it)
    sys.path.insert(0, str(ROOT))

from bench.ratelimit import WindowServer, hammer, run_processes  # noqa: E402
from moomarkets.errors import RateLimitTimeout, RetryableSourceError  # noqa: E402
from moomarkets.ratelimit import SourceRateLimiter  # noqa: E402

pytestmark = pytest.mark.integration


def _penalize_from_child(db_url: str, source: str, seconds: float, out) -> None:
    with SourceRateLimiter(source, "1000/second", db_url) as limiter:
        limiter.penalize(seconds)
    out.put({"done": True})


def test_three_processes_share_one_limit_without_429(warehouse_url):
    limit, window, duration = 20, 2, 6.0
    with WindowServer(limit, window) as api:
        start_at = time.time() + 3.0  # spawn + imports
        results = run_processes(
            hammer,
            lambda i: (warehouse_url, "shared", f"{limit}/{window}s", api.url, start_at, duration, None),
            3,
            timeout=duration + 45,
        )
        arrivals, rejected, peak = sorted(api.arrivals), api.rejected, api.peak
        steady = api.achieved_ratio()

    assert [r["error"] for r in results] == [None, None, None]
    assert sum(r["429"] for r in results) == 0 and rejected == 0
    assert all(r["other"] == 0 for r in results)
    assert peak <= limit
    assert sum(r["ok"] for r in results) == len(arrivals)
    # every process got some of the allowance (nobody starved on the table lock)
    assert all(r["ok"] > 0 for r in results), results
    # over the run: at least 90 % of what the limit allows in `duration` (it allows 3 windows' worth)
    allowed = limit * duration / window
    assert 0.9 * allowed <= len(arrivals) <= limit * (duration // window + 1)
    # steady state (first burst excluded): >= 90 % of limit/window
    assert steady >= 0.9, steady


def test_penalize_in_one_process_delays_acquire_in_another(warehouse_url, caplog):
    caplog.set_level(logging.INFO, logger="moomarkets.ratelimit")
    with SourceRateLimiter("pen", "1000/second", warehouse_url) as limiter:
        assert limiter.acquire() < 0.5  # not paused yet
        run_processes(_penalize_from_child, lambda i: (warehouse_url, "pen", 2.0), 1, timeout=60)
        waited = limiter.acquire()
        assert 1.0 <= waited <= 3.0, waited
        assert limiter.acquire() < 0.5  # the pause is over
    assert any(
        "waiting" in r.getMessage() and " s for pen rate limit (paused after a 429)" in r.getMessage()
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]
    # a later, shorter penalty never shortens a longer one already in place
    with SourceRateLimiter("pen", "1000/second", warehouse_url) as limiter, psycopg.connect(warehouse_url) as conn:
        limiter.penalize(30)
        limiter.penalize(1)
        left = conn.execute(
            "SELECT extract(epoch FROM blocked_until - now()) FROM rate_limit_penalties WHERE source = 'pen'"
        ).fetchone()[0]
        assert 25 < left <= 30
        with pytest.raises(RateLimitTimeout, match=r"^no pen rate-limit token within 1 s: the source is paused "
                                                    r"for another (2\d|30)\.\d s after a 429$"):
            limiter.acquire(timeout=1)


def _penalty_left(conn, source: str) -> float:
    return float(conn.execute(
        "SELECT extract(epoch FROM blocked_until - clock_timestamp()) FROM rate_limit_penalties WHERE source = %s",
        (source,),
    ).fetchone()[0])


def test_penalty_has_a_floor_and_doubles_when_429s_come_back(warehouse_url):
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        # floor: one token's time of the shortest window (60 s / 5), even for a near-zero backoff
        with SourceRateLimiter("floor", "5/minute", warehouse_url) as limiter:
            limiter.penalize(0.01)
            assert 11.0 < _penalty_left(conn, "floor") <= 12.0
        with SourceRateLimiter("esc", "1000/10s", warehouse_url) as limiter:
            limiter.penalize(0.5)
            time.sleep(0.7)  # the pause is over; a 429 right after it means it was too short
            limiter.penalize(0.1)
            assert 0.8 < _penalty_left(conn, "esc") <= 1.0
            limiter.penalize(0.1)  # a 429 while paused (sent before the pause) keeps the longer pause
            assert 0.7 < _penalty_left(conn, "esc") <= 1.0
            time.sleep(1.1)
            limiter.penalize(0.1)
            assert 1.7 < _penalty_left(conn, "esc") <= 2.0


def test_acquire_times_out_with_a_clear_message(warehouse_url):
    with SourceRateLimiter("slow", "1/minute", warehouse_url, timeout=0.5) as limiter:
        limiter.acquire()
        started = time.monotonic()
        with pytest.raises(RateLimitTimeout) as err:
            limiter.acquire()
        # the known wait (~60 s) is longer than the timeout: fail at once, do not sleep it out
        assert time.monotonic() - started < 0.5
    msg = str(err.value)
    assert isinstance(err.value, RetryableSourceError)
    assert msg.startswith("no slow rate-limit token within 0.5 s (limit 1/minute; the next token is 6")
    assert msg.endswith(" s away); other runs are using the allowance")
    assert "\n" not in msg


def test_timeout_after_waiting_when_the_window_frees_too_late(warehouse_url):
    with SourceRateLimiter("late", "2/2s", warehouse_url) as limiter:
        limiter.acquire()
        limiter.acquire()
        with pytest.raises(RateLimitTimeout, match=r"no late rate-limit token within 1 s \(limit 2/2s"):
            limiter.acquire(timeout=1)
        assert 0.9 <= limiter.acquire(timeout=5) <= 2.5


def test_two_sources_do_not_share_limits(warehouse_url):
    with (
        SourceRateLimiter("src_a", "3/minute", warehouse_url) as a,
        SourceRateLimiter("src-a", "3/minute", warehouse_url) as a2,  # same sanitized name, own table
        SourceRateLimiter("src_b", "3/minute", warehouse_url) as b,
    ):
        for _ in range(3):
            assert a.acquire() < 0.5
        for _ in range(3):
            assert b.acquire() < 0.5
            assert a2.acquire() < 0.5
        with pytest.raises(RateLimitTimeout):
            a.acquire(timeout=0.2)
        with pytest.raises(RateLimitTimeout):
            b.acquire(timeout=0.2)
        a.penalize(30)
        with SourceRateLimiter("src_c", "3/minute", warehouse_url) as c:
            assert c.acquire() < 0.5  # another source's 429 pause does not touch it


def test_waiting_log_line(warehouse_url, caplog):
    caplog.set_level(logging.INFO, logger="moomarkets.ratelimit")
    with SourceRateLimiter("logsrc", "2/2s", warehouse_url) as limiter:
        waits = [limiter.acquire() for _ in range(3)]
    assert waits[0] < 0.5 and waits[1] < 0.5
    assert 1.5 <= waits[2] <= 2.6
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any(line.startswith("waiting ") and " s for logsrc rate limit (2/2s)" in line for line in lines), lines
    assert len([line for line in lines if line.startswith("waiting")]) == 1  # throttled, not one per retry


def test_threads_share_one_limiter_and_close_releases_threads(warehouse_url):
    limiter = SourceRateLimiter("threads", "5/second", warehouse_url)
    grants: list[float] = []

    def work() -> None:
        for _ in range(3):
            limiter.acquire()
            grants.append(time.monotonic())

    started = time.monotonic()
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    grants.sort()
    assert len(grants) == 12
    # 5 per second: grants 6..10 come a window after 1..5, and 11..12 a window after 6..7
    assert grants[5] - grants[0] >= 0.95 and grants[10] - started >= 1.95
    for i in range(len(grants) - 5):
        assert grants[i + 5] - grants[i] >= 0.95  # never 6 inside one second
    assert any(t.name.startswith("ratelimit-threads") for t in threading.enumerate())
    limiter.close()
    time.sleep(0.1)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("ratelimit-threads")]


def test_tables_are_created_idempotently_by_many_limiters_at_once(warehouse_url):
    errors: list[BaseException] = []

    def open_close(i: int) -> None:
        try:
            with SourceRateLimiter(f"many{i % 2}", "10/second", warehouse_url) as limiter:
                limiter.acquire()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=open_close, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    with psycopg.connect(warehouse_url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"rate_limit_penalties", "ratelimit___mm_many0", "ratelimit___mm_many1"} <= tables


def test_acquire_survives_dropped_connections(warehouse_url, caplog):
    caplog.set_level(logging.WARNING, logger="moomarkets.ratelimit")
    with SourceRateLimiter("dropped", "100/second", warehouse_url) as limiter:
        limiter.acquire()
        with psycopg.connect(warehouse_url, autocommit=True) as conn:
            killed = conn.execute(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'moomarkets-ratelimit-dropped') t"
            ).fetchone()[0]
        assert killed >= 1
        assert limiter.acquire(timeout=20) < 10
        assert limiter.acquire() < 0.5
    assert any("database error" in r.getMessage() for r in caplog.records)
