"""Per-source request rate limits that hold across every worker (no Airflow imports).

Airflow pools cap concurrent tasks, not requests per minute. Every HTTP request of a source first
calls :meth:`SourceRateLimiter.acquire`, whose state lives in the warehouse Postgres, so the limit
holds across threads, processes, LocalExecutor workers and Celery workers on other hosts.

How
---
The bucket is pyrate-limiter's ``PostgresBucket`` (a kept library): a sliding log, one table per
source (``ratelimit___mm_<source>``, created by pyrate with ``CREATE TABLE IF NOT EXISTS`` under an
advisory lock), whose check-and-insert runs in one transaction under
``LOCK TABLE ... IN EXCLUSIVE MODE NOWAIT``. Timestamps come from the Postgres server clock, so
hosts with skewed clocks still agree. We drive the bucket ourselves, not through pyrate's
``Limiter``, which (4.5.1) starts a Leaker thread per bucket, adds a fixed 50 ms to every wait,
and after a sleep advances the item's timestamp by the planned sleep instead of re-reading the
server clock. On top of the bucket:

- a bounded wait loop: a denied put sleeps until the oldest blocking entry leaves the window
  (pyrate computes that under the same lock); a put that lost the NOWAIT race to another worker
  retries after 2-10 ms of jitter instead of being treated as a full window;
- ``RateLimitTimeout`` with a one-line message, raised as soon as the known wait would overrun
  ``timeout`` (not after sleeping it out), and an INFO line "waiting 11.8 s for jquants rate limit
  (5/minute)" whenever one wait is >= 0.5 s (at most one line per 10 s per limiter);
- ``penalize(seconds)``: a 429 seen by any worker pauses the whole source for that long, shared in
  the small table ``rate_limit_penalties(source, blocked_until, reason, updated_at)`` (created
  here, idempotent, under an advisory lock; read in the same round trip as the server clock);
- a jitter ``margin`` added to every window (3 % of the shortest window, 50..250 ms, never more
  than half the window: :func:`default_margin_ms`). A grant is stamped a moment before its request
  reaches the API, and that delay varies: measured with bench/ratelimit.py on 2 cores,
  grant-to-arrival delay was median 1.5-3.5 ms but max 15-22 ms (1-4 processes). Without a margin
  an API that counts an exact sliding window saw 1-3 429s per 8 s run (limit 40/2s); with 20 ms
  once in 5 runs; with 40 ms none in 8 runs; the default (60 ms at a 2 s window) adds headroom
  for busier hosts. Cost: the steady-state rate is ``window / (window + margin)`` of the limit at
  most (0.97 at 2 s, 0.996 at 1 minute);
- the session ``TimeZone`` is pinned to UTC: pyrate's column is ``TIMESTAMP`` without zone, so
  workers with different ``PGTZ`` would otherwise read each other's stamps hours apart;
- DB errors in acquire() (server restart, dropped connection) are retried until the deadline;
  housekeeping (deleting log rows older than the longest window, so pyrate's unfiltered COUNT scan
  stays small) runs on open and every 5 minutes per limiter.

Measured (bench/ratelimit.py, 40/2s, 60 ms margin, 1/2/4 processes): achieved 0.968-0.969 of the
limit, no 429s; an acquire() the rate does not block costs ~1.2 ms (p95 2.6 ms) alone, mean 4 ms
and p95 ~23 ms with 4 processes acquiring back to back (NOWAIT retries).
Connection use: one pool of at most 2 connections per limiter (1 when idle, 1 pool worker thread); ``close()`` releases them.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
import zlib
from typing import Any, NamedTuple

from moomarkets.errors import RateLimitTimeout, first_line

log = logging.getLogger(__name__)

UNITS_MS = {"second": 1000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
_SHORT_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day"}
_SPEC_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")
_FORMAT_HINT = "N/second|minute|hour|day (e.g. '60/minute', '5/second', '20/10s')"

PENALTY_DDL = """
CREATE TABLE IF NOT EXISTS rate_limit_penalties (
    source        text PRIMARY KEY,
    blocked_until timestamptz NOT NULL,
    reason        text,
    updated_at    timestamptz NOT NULL DEFAULT now()
)
"""
# One round trip per attempt: the server clock (ms) and the source's remaining penalty (s).
_NOW_AND_PENALTY = """
SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint,
       (SELECT extract(epoch FROM blocked_until - clock_timestamp())
          FROM rate_limit_penalties WHERE source = %s)
"""
# A 429 while a pause is in force (workers that sent their requests before it) only keeps the
# longest pause. A 429 soon after a pause ended (within the longest window) means the pause was too
# short: the new one is at least twice the last one. Stamps use the server clock throughout.
_PENALIZE = """
INSERT INTO rate_limit_penalties (source, blocked_until, reason, updated_at)
VALUES (%(source)s, clock_timestamp() + make_interval(secs => %(secs)s), %(reason)s, clock_timestamp())
ON CONFLICT (source) DO UPDATE
   SET blocked_until = greatest(
           rate_limit_penalties.blocked_until,
           clock_timestamp() + least(
               make_interval(secs => %(max)s),
               CASE WHEN rate_limit_penalties.blocked_until <= clock_timestamp()
                     AND rate_limit_penalties.blocked_until > clock_timestamp() - make_interval(secs => %(recent)s)
                    THEN greatest(make_interval(secs => %(secs)s),
                                  2 * (rate_limit_penalties.blocked_until - rate_limit_penalties.updated_at))
                    ELSE make_interval(secs => %(secs)s)
               END)),
       reason = EXCLUDED.reason,
       updated_at = CASE WHEN rate_limit_penalties.blocked_until > clock_timestamp()
                         THEN rate_limit_penalties.updated_at ELSE clock_timestamp() END
"""
_LOG_EVERY = 10.0  # seconds between two "waiting ..." lines of one limiter
_LEAK_EVERY = 300.0  # seconds between two housekeeping deletes of one limiter
_MAX_PENALTY = 3600.0


class RateSpec(NamedTuple):
    """One window: at most ``limit`` requests per ``interval`` milliseconds (pyrate's Rate names)."""

    limit: int
    interval: int

    def __str__(self) -> str:
        for unit in ("day", "hour", "minute", "second"):
            ms = UNITS_MS[unit]
            if self.interval % ms == 0:
                n = self.interval // ms
                return f"{self.limit}/{unit}" if n == 1 else f"{self.limit}/{n}{unit[0]}"
        return f"{self.limit}/{self.interval}ms"


# -- parsing ------------------------------------------------------------------------------
def parse_rate(spec: str) -> RateSpec:
    """``"60/minute"`` -> RateSpec(60, 60000). Units: second|minute|hour|day or s|m|h|d, with an
    optional count (``"20/10s"`` = 20 per 10 seconds)."""
    if not isinstance(spec, str):
        raise ValueError(f"rate_limit: {spec!r} is not {_FORMAT_HINT}")
    m = _SPEC_RE.match(spec.lower())
    unit = _SHORT_UNITS.get(m.group(3), m.group(3)) if m else ""
    if not m or unit not in UNITS_MS:
        raise ValueError(f"rate_limit: {spec!r} is not {_FORMAT_HINT}")
    limit, count = int(m.group(1)), int(m.group(2) or 1)
    if limit < 1 or count < 1:
        raise ValueError(f"rate_limit: {spec!r} must allow at least 1 request per window of at least 1 {unit}")
    if limit > 1_000_000:
        raise ValueError(f"rate_limit: {spec!r} allows more than 1000000 requests per window")
    return RateSpec(limit, count * UNITS_MS[unit])


def parse_rates(spec: str | list[str] | tuple[str, ...]) -> list[RateSpec]:
    """One spec, a comma-separated string of them, or a list (several windows at once, e.g.
    ``["5/second", "60/minute"]``). Returned shortest window first.

    Several windows must each be able to bind: a longer window must allow more requests, at a
    lower average rate, than every shorter one (else one of them is redundant or a typo).
    """
    if isinstance(spec, str):
        specs: list[Any] = [s for s in spec.split(",")] if "," in spec else [spec]
    elif isinstance(spec, (list, tuple)):
        specs = list(spec)
    else:
        raise ValueError(f"rate_limit: {spec!r} must be a spec like '60/minute' or a list of them")
    if not specs:
        raise ValueError("rate_limit: empty; give a spec like '60/minute' or a list of them")
    parsed = sorted(((parse_rate(s), s) for s in specs), key=lambda p: p[0].interval)
    for (short, s_txt), (long, l_txt) in zip(parsed, parsed[1:]):
        if long.interval == short.interval:
            raise ValueError(f"rate_limit: {s_txt!r} and {l_txt!r} limit the same window; keep one")
        if long.limit <= short.limit:
            raise ValueError(f"rate_limit: {s_txt!r} can never bind next to {l_txt!r}; drop it")
        if long.limit * short.interval > short.limit * long.interval:
            raise ValueError(f"rate_limit: {l_txt!r} can never bind next to {s_txt!r}; drop it")
    return [p[0] for p in parsed]


def default_margin_ms(rates: list[RateSpec]) -> int:
    """Jitter allowance added to every window: 3 % of the shortest window, at least 50 ms (never
    more than half the window) and at most 250 ms."""
    shortest = min(r.interval for r in rates)
    return int(min(250, shortest // 2, max(50, 0.03 * shortest)))


def describe(rates: list[RateSpec]) -> str:
    return ", ".join(str(r) for r in rates)


def _table_name(source_code: str) -> str:
    """Table suffix for pyrate (it prefixes ``ratelimit___``); distinct codes never collide."""
    clean = re.sub(r"[^a-z0-9_]", "_", source_code.lower())[:32]
    if clean != source_code:
        clean += f"_{zlib.crc32(source_code.encode()):08x}"
    return f"mm_{clean}"


def _stamp_at_insert(bucket) -> None:
    """Make pyrate stamp a granted entry with the server clock *at the insert* (under the table
    lock) instead of the clock read that preceded the put.

    Between that read and the insert lie the lock, the count and any descheduling (measured: up to
    15 ms on a busy 2-core box), and a stale stamp lets the entry expire early by that much. The
    check counted from the older read, i.e. a superset of the real window, so the later stamp keeps
    the sliding-log invariant. Uses a private attribute of pyrate-limiter 4.5.1's PostgresBucket;
    if it is gone (another version), the plain stamp stays and only the margin absorbs the delay.
    """
    from psycopg import sql

    if not isinstance(getattr(bucket, "_q_put", None), sql.Composed) or not hasattr(bucket, "_full_tbl"):
        log.debug("pyrate PostgresBucket has no _q_put; entries keep the pre-lock stamp")
        return
    bucket._q_put = sql.SQL(
        "INSERT INTO {table} (name, weight, item_timestamp)"
        " SELECT %s, %s, greatest(TO_TIMESTAMP(%s), clock_timestamp()) FROM generate_series(1, %s)"
    ).format(table=sql.Identifier(bucket._full_tbl))


# -- the limiter --------------------------------------------------------------------------
class SourceRateLimiter:
    """The shared limiter of one data source; cheap to create per task. Close it when done (or
    use it as a context manager). Thread-safe; one instance may serve several threads."""

    def __init__(
        self,
        source_code: str,
        rates: str | list[str],
        db_url: str,
        *,
        timeout: float = 300.0,
        logger: logging.Logger | logging.LoggerAdapter | None = None,
        margin_ms: int | None = None,
    ) -> None:
        self.source = source_code
        self.rates = parse_rates(rates)
        self.timeout = float(timeout)
        self.log = logger or log
        self.margin_ms = default_margin_ms(self.rates) if margin_ms is None else int(margin_ms)
        self.acquired = 0
        self.waited_total = 0.0
        self._lock = threading.Lock()
        self._logged_at = float("-inf")
        self._leaked_at = float("-inf")
        self._closed = False
        self._pool = self._open_pool(db_url)
        try:
            self._setup()
        except BaseException:
            self._pool.close()
            raise

    def _open_pool(self, db_url: str):
        from psycopg_pool import ConnectionPool

        def configure(conn) -> None:
            # pyrate stores TIMESTAMP without zone: every session must read it in the same zone.
            conn.execute("SET TIME ZONE 'UTC'")
            conn.commit()

        return ConnectionPool(
            db_url,
            min_size=1,
            max_size=2,
            num_workers=1,
            open=True,
            timeout=30,
            configure=configure,
            name=f"ratelimit-{self.source}",
            kwargs={"application_name": f"moomarkets-ratelimit-{self.source}"[:63], "connect_timeout": 10},
        )

    def _setup(self) -> None:
        from pyrate_limiter import Rate
        from pyrate_limiter.buckets.postgres import PostgresBucket, advisory_lock_id

        with self._pool.connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_lock_id("rate_limit_penalties"),))
            conn.execute(PENALTY_DDL)
        pyrate_rates = [Rate(r.limit, r.interval + self.margin_ms) for r in self.rates]
        self._bucket = PostgresBucket(self._pool, _table_name(self.source), pyrate_rates)
        _stamp_at_insert(self._bucket)
        self._housekeeping(force=True)

    # -- public ---------------------------------------------------------------------------
    def acquire(self, timeout: float | None = None) -> float:
        """Block until this source may send one request; returns the seconds waited.

        Raises RateLimitTimeout when no token can be had within ``timeout`` (default: the
        limiter's) seconds - at once when the known wait is already longer than that. Database
        errors (restart, dropped connection) are retried until the same deadline.
        """
        import psycopg

        timeout = self.timeout if timeout is None else float(timeout)
        started = time.monotonic()
        deadline = started + timeout
        db_errors = 0
        while True:
            try:
                wait, paused = self._try_once()
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:  # incl. PoolTimeout
                if self._closed:
                    raise
                db_errors += 1
                wait = min(5.0, 0.25 * 2**db_errors)
                detail = first_line(exc)
                if time.monotonic() + wait > deadline:
                    raise RateLimitTimeout(
                        f"no {self.source} rate-limit token within {timeout:g} s: "
                        f"the rate-limit database is unreachable ({detail})"
                    ) from exc
                self.log.warning("%s rate limiter: database error (%s); retrying in %.1f s", self.source, detail, wait)
                time.sleep(wait)
                continue
            if wait is None:
                waited = time.monotonic() - started
                self.acquired += 1
                self.waited_total += waited
                return waited
            now = time.monotonic()
            if now + wait > deadline:
                raise RateLimitTimeout(self._timeout_message(timeout, wait, paused))
            if wait >= 0.5 and now - self._logged_at >= _LOG_EVERY:
                self._logged_at = now
                self.log.info(
                    "waiting %.1f s for %s rate limit (%s)",
                    wait, self.source, "paused after a 429" if paused else describe(self.rates),
                )
            time.sleep(wait)

    def penalize(self, seconds: float, reason: str = "HTTP 429") -> None:
        """Slow the whole source down: every worker's acquire() waits until ``seconds`` from now.

        The pause is at least one token's time in the shortest window (``interval / limit``: 12 s
        at 5/minute), never shortens a longer pause already in place, doubles the last pause when
        the source is rate limited again soon after one ended, and is at most an hour. Best
        effort: a database error is logged, not raised."""
        import psycopg

        shortest = min(self.rates, key=lambda r: r.interval)
        floor = shortest.interval / 1000.0 / shortest.limit
        seconds = min(max(float(seconds), floor), _MAX_PENALTY)
        recent = max(r.interval for r in self.rates) / 1000.0
        try:
            with self._pool.connection() as conn:
                conn.execute(
                    _PENALIZE,
                    {"source": self.source, "secs": seconds, "reason": reason, "max": _MAX_PENALTY, "recent": recent},
                )
        except psycopg.Error as exc:
            self.log.warning("%s: could not record the %s pause: %s", self.source, reason, first_line(exc))
            return
        self.log.warning("%s: %s; pausing every worker of this source for at least %.1f s", self.source, reason, seconds)

    def describe(self) -> str:
        return describe(self.rates)

    def close(self) -> None:
        self._closed = True
        if not self._pool.closed:
            self._pool.close()

    def __enter__(self) -> SourceRateLimiter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SourceRateLimiter({self.source!r}, {describe(self.rates)!r})"

    # -- internals ------------------------------------------------------------------------
    def _timeout_message(self, timeout: float, wait: float, paused: bool) -> str:
        head = f"no {self.source} rate-limit token within {timeout:g} s"
        if paused:
            return f"{head}: the source is paused for another {wait:.1f} s after a 429"
        ahead = f"; the next token is {wait:.1f} s away" if wait >= 0.05 else ""
        return f"{head} (limit {describe(self.rates)}{ahead}); other runs are using the allowance"

    def _try_once(self) -> tuple[float | None, bool]:
        """One attempt: (None, False) when a token was taken, else (seconds to wait, penalised?)."""
        from pyrate_limiter import RateItem

        with self._pool.connection() as conn:
            now_ms, penalty = conn.execute(_NOW_AND_PENALTY, (self.source,)).fetchone()
        if penalty is not None and penalty > 0:
            return float(penalty), True
        item = RateItem(self.source, int(now_ms), 1)
        # The bucket keeps the verdict of its last put() on itself: one thread at a time.
        with self._lock:
            taken = self._bucket.put(item)
            ms = 0 if taken else self._bucket.waiting(item)
        if taken:
            self._housekeeping(now_ms=int(now_ms))
            return None, False
        if ms > 0:  # the window is full: sleep until its oldest entry leaves (+ a little spread)
            return ms / 1000 + random.uniform(0, 0.002), False
        # we lost the NOWAIT race to another worker (or the window just freed): retry soon
        return 0.002 + random.uniform(0, 0.008), False

    def _housekeeping(self, now_ms: int | None = None, force: bool = False) -> None:
        """Drop log rows older than the longest window (cheap, indexed); every few minutes."""
        now = time.monotonic()
        if not force and now - self._leaked_at < _LEAK_EVERY:
            return
        self._leaked_at = now
        try:
            if now_ms is None:
                with self._pool.connection() as conn:
                    now_ms = conn.execute(_NOW_AND_PENALTY, (self.source,)).fetchone()[0]
            self._bucket.leak(int(now_ms))
        except Exception:  # noqa: BLE001 - housekeeping only
            self.log.debug("rate-limit housekeeping failed", exc_info=True)
