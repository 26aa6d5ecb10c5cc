"""Verify (and repair) a job group's date range against its source, for the CLI and the group page.

The work is ``moomarkets.pipeline.verify``; this layer finds the group, reads the source's
credentials from its Airflow Connection (the same mapping the tasks use) and, for the page, picks
a short recent range, a small sample and a bounded wait for the rate limit.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from moomarkets.airflow.connections import get_credentials
from moomarkets.errors import NotFoundError
from moomarkets.pipeline import GroupPipeline
from moomarkets.pipeline.verify import VerifyReport, verify_range
from moomarkets.services.inputs import parse_day
from moomarkets.warehouse import config_store as store
from moomarkets.warehouse.db import connect

# the group page's Verify button: the last week up to yesterday (the group's timezone), a sample
# of its units, and no more than PAGE_LIMITER_TIMEOUT seconds waiting for each rate-limit token
PAGE_RANGE_DAYS = 7
PAGE_SAMPLE = 2
PAGE_LIMITER_TIMEOUT = 15.0


def resolve(url: str, name: str) -> GroupPipeline:
    """The group resolved like its DAG (ConfigError when it is invalid, NotFoundError when absent)."""
    with connect(url) as conn:
        specs = store.read_specs(conn, only=name)
    if not specs:
        raise NotFoundError(f"job group {name!r} does not exist")
    return GroupPipeline.resolve(specs[0])


def verify(
    url: str,
    name: str,
    date_from: date | str,
    date_to: date | str,
    *,
    sample: int | None = None,
    seed: int | None = None,
    repair: bool = False,
    delete_extra: bool = False,
    via: str = "cli",
    limiter_timeout: float | None = None,
    pipe: GroupPipeline | None = None,
) -> VerifyReport:
    """Re-read ``date_from..date_to`` of group ``name`` from its source and compare (see the pipeline);
    ``pipe`` is the group already resolved, if the caller has it."""
    frm, to = parse_day(date_from, "--from"), parse_day(date_to, "--to")
    pipe = pipe or resolve(url, name)
    credentials = get_credentials(pipe.source_row.conn_id)
    if limiter_timeout is None:
        return verify_range(pipe, frm, to, url=url, credentials=credentials, sample=sample, seed=seed,
                            repair=repair, delete_extra=delete_extra, via=via)
    from moomarkets.ratelimit import SourceRateLimiter

    with SourceRateLimiter(pipe.source_code, list(pipe.rates), url, timeout=limiter_timeout) as limiter:
        return verify_range(pipe, frm, to, url=url, credentials=credentials, sample=sample, seed=seed,
                            repair=repair, delete_extra=delete_extra, via=via, limiter=limiter)


def page_range(timezone: str, today: date | None = None) -> tuple[date, date]:
    """The page's range: the PAGE_RANGE_DAYS days up to yesterday in the group's timezone."""
    today = today or datetime.now(ZoneInfo(timezone)).date()
    to = today - timedelta(days=1)
    return to - timedelta(days=PAGE_RANGE_DAYS - 1), to


def verify_recent(url: str, name: str) -> VerifyReport:
    """What the group page's Verify button does: a sampled, read-only verify of the last week."""
    pipe = resolve(url, name)
    frm, to = page_range(pipe.group.timezone)
    return verify(url, name, frm, to, sample=PAGE_SAMPLE, via="ui", limiter_timeout=PAGE_LIMITER_TIMEOUT,
                  pipe=pipe)


def describe(report: VerifyReport) -> str:
    """One sentence for a page: the outcome, the counts and how to repeat or repair it."""
    s = report.summary()
    what = (f"{s['group']} {s['from']}..{s['to']}: {s['verified_units']} of {s['planned_units']} unit(s)"
            f"{' (sample, seed ' + str(s['seed']) + ')' if s['sample'] else ''}, {s['requests']} request(s)")
    counts = ", ".join(f"{k.replace('_', ' ')} {s[k]}" for k in ("missing", "extra", "mismatched", "stale_adjusted"))
    if report.status == "equal":
        return f"Verified {what}: equal to the source."
    if report.status == "failed":
        errors = "; ".join(f"{u.key}: {u.error}" for u in report.failed_units[:3])
        return f"Verify of {what} could not finish: {errors}"
    if report.status == "repaired":
        return f"Repaired {what}: {report.repaired} row(s) upserted, {report.deleted} deleted; now equal."
    hint = (f"moomarkets verify {s['group']} --from {s['from']} --to {s['to']} --repair")
    return f"Verify of {what} found differences ({counts}). Repair with: {hint}"
