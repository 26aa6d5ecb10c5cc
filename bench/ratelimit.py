"""Does the shared per-source rate limit hold across processes, and what does it cost?

Starts its own embedded PostgreSQL and a local HTTP API that counts requests in a sliding window
and answers 429 above the limit (exactly the limiter's own window: no slack on the server side).
For 1, 2 and 4 OS processes sharing one ``SourceRateLimiter`` it prints:

- achieved / limit: the steady-state rate the API accepted over the configured rate, measured
  as window / mean time for the allowance to turn over (see ``WindowServer.achieved_ratio``),
  goal >= 0.95; beside it, accepted requests over what the limit allows in the run;
- 429s (goal 0) and the peak count the API ever saw in one window;
- the overhead of one acquire() when the rate does not bind (mean and p95, ms), with all the
  processes acquiring at once.

    .venv/bin/python bench/ratelimit.py [--limit 40] [--window 2] [--duration 8] [--margin-ms N]

The harness (``WindowServer``, ``hammer``, ``overhead``) is shared with
tests/integration/test_ratelimit.py.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import math
import multiprocessing as mp
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


class WindowServer:
    """A local API allowing ``limit`` requests per sliding ``window`` seconds; 429 above it.

    Rejected requests do not count against the window (as most APIs do). ``arrivals`` holds the
    monotonic arrival time of every accepted request, ``rejected`` the number of 429s, ``peak``
    the largest number of accepted requests ever seen inside one window.
    """

    def __init__(self, limit: int, window: float):
        self.limit, self.window = limit, window
        self.arrivals: list[float] = []
        self.rejected = 0
        self.peak = 0
        self._recent: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls between header and body

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                status = outer._admit(time.monotonic())
                body = b"ok" if status == 200 else b"rate limited"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="window-server", daemon=True)

    def _admit(self, now: float) -> int:
        with self._lock:
            while self._recent and self._recent[0] <= now - self.window:
                self._recent.popleft()
            if len(self._recent) >= self.limit:
                self.rejected += 1
                return 429
            self._recent.append(now)
            self.arrivals.append(now)
            self.peak = max(self.peak, len(self._recent))
            return 200

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def achieved_ratio(self) -> float:
        """Steady-state accepted rate over the limit: ``window / mean(t[i + limit] - t[i])``.

        A sliding-window limit is met exactly when the allowance turns over every ``window``
        seconds, i.e. request ``i + limit`` arrives one window after request ``i``; any slack the
        limiter leaves (its margin, its round trips, its sleeps) makes that gap longer. Unlike
        accepted / elapsed it does not depend on where the run happens to cut a burst off.
        """
        a = sorted(self.arrivals)
        gaps = [a[i + self.limit] - a[i] for i in range(len(a) - self.limit)]
        return self.window / statistics.fmean(gaps) if gaps else float("nan")

    def __enter__(self) -> WindowServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


# -- worker processes (module level: picklable under spawn) ---------------------------------------
def hammer(db_url: str, source: str, rates, url: str, start_at: float, duration: float, margin_ms, out) -> None:
    """Send requests through the shared limiter as fast as it lets us, from ``start_at`` (wall clock)
    for ``duration`` seconds; put {"ok", "429", "other", "waited"} on ``out``."""
    from moomarkets.errors import RateLimitTimeout
    from moomarkets.ratelimit import SourceRateLimiter

    parts = urlsplit(url)
    counts = {"ok": 0, "429": 0, "other": 0, "waited": 0.0, "error": None}
    try:
        with SourceRateLimiter(source, rates, db_url, timeout=duration, margin_ms=margin_ms) as limiter:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            time.sleep(max(0.0, start_at - time.time()))
            end = start_at + duration
            while (remaining := end - time.time()) > 0:
                try:
                    counts["waited"] += limiter.acquire(timeout=remaining)
                except RateLimitTimeout:
                    break
                conn.request("GET", parts.path or "/")
                resp = conn.getresponse()
                resp.read()
                key = "ok" if resp.status == 200 else "429" if resp.status == 429 else "other"
                counts[key] += 1
            conn.close()
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        counts["error"] = f"{type(exc).__name__}: {exc}"
    out.put(counts)


def overhead(db_url: str, source: str, n: int, start_at: float, out) -> None:
    """Time ``n`` acquire() calls that the rate never blocks; put the list of ms on ``out``."""
    from moomarkets.ratelimit import SourceRateLimiter

    times: list[float] = []
    try:
        with SourceRateLimiter(source, "1000000/second", db_url) as limiter:
            limiter.acquire()  # warm the pool
            time.sleep(max(0.0, start_at - time.time()))
            for _ in range(n):
                t0 = time.perf_counter()
                limiter.acquire()
                times.append((time.perf_counter() - t0) * 1000)
    except Exception as exc:  # noqa: BLE001
        out.put({"error": f"{type(exc).__name__}: {exc}"})
        return
    out.put({"times": times})


def run_processes(target, args_for, nproc: int, timeout: float) -> list[dict]:
    """Start ``nproc`` spawned processes of ``target(*args_for(i), queue)``; collect their dicts."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args_for(i), q), daemon=True) for i in range(nproc)]
    for p in procs:
        p.start()
    results = []
    try:
        for _ in procs:
            results.append(q.get(timeout=timeout))
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
    return results


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else values[0]


# -- the benchmark --------------------------------------------------------------------------------
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=40, help="requests per window (default 40)")
    p.add_argument("--window", type=int, default=2, help="window in seconds (default 2)")
    p.add_argument("--duration", type=float, default=8.0, help="seconds of hammering per row")
    p.add_argument("--procs", default="1,2,4")
    p.add_argument("--calls", type=int, default=200, help="acquire() calls per process for the overhead")
    p.add_argument("--margin-ms", type=int, default=None, help="override the limiter's jitter margin")
    args = p.parse_args()

    from moomarkets.dev.localpg import LocalPostgres, free_port
    from moomarkets.ratelimit import default_margin_ms, parse_rates

    spec = f"{args.limit}/{args.window}s" if args.window != 1 else f"{args.limit}/second"
    margin = default_margin_ms(parse_rates(spec)) if args.margin_ms is None else args.margin_ms
    base = Path(tempfile.mkdtemp(prefix="moomarkets-bench-ratelimit-"))
    server = LocalPostgres(base / "data", free_port(), fast_unsafe=True)
    started = time.monotonic()
    server.start()
    rows = []
    try:
        server.create_database("bench")
        db_url = server.dsn("bench")  # the limiter creates the tables it needs; no migration required
        for nproc in [int(x) for x in args.procs.split(",")]:
            source = f"bench_p{nproc}"
            with WindowServer(args.limit, args.window) as api:
                start_at = time.time() + 3.0  # spawn + imports + pool warm-up
                res = run_processes(
                    hammer,
                    lambda i: (db_url, source, spec, api.url, start_at, args.duration, args.margin_ms),
                    nproc,
                    timeout=args.duration + 60,
                )
                errors = [r["error"] for r in res if r.get("error")]
                if errors:
                    print(f"worker error: {errors[0]}", file=sys.stderr)
                    return 1
                ok, r429 = sum(r["ok"] for r in res), sum(r["429"] for r in res)
                ratio, peak = api.achieved_ratio(), api.peak
            start_at = time.time() + 3.0
            res = run_processes(
                overhead, lambda i: (db_url, f"{source}_free", args.calls, start_at), nproc, timeout=120
            )
            errors = [r["error"] for r in res if r.get("error")]
            if errors:
                print(f"worker error: {errors[0]}", file=sys.stderr)
                return 1
            times = [t for r in res for t in r["times"]]
            rows.append((nproc, ok, r429, peak, ratio, statistics.fmean(times), p95(times)))
    finally:
        server.stop()

    print(f"shared limit {spec} (limiter margin {margin} ms), API window exactly {args.window} s, "
          f"{args.duration:g} s per row; overhead: {args.calls} unblocked acquire() per process\n")
    allowed = args.limit * math.ceil(args.duration / args.window)  # a perfect limiter, from t = 0
    print("| processes | achieved / limit | 429s | accepted / allowed in run | peak in one window "
          "| acquire mean ms | acquire p95 ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for nproc, ok, r429, peak, ratio, mean, q95 in rows:
        print(f"| {nproc} | {ratio:.3f} | {r429} | {ok} / {allowed} | {peak} / {args.limit} | {mean:.2f} | {q95:.2f} |")
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    return 0 if all(r[2] == 0 and r[4] >= 0.95 for r in rows) else 2


if __name__ == "__main__":
    sys.exit(main())
