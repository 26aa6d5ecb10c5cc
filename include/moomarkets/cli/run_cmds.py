"""Commands that load or compare data: run, backfill (incl. history mode), verify, restate."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:

    pass

from moomarkets.cli.common import EXIT_ERROR, EXIT_OK, _connect, _report


def cmd_backfill(args: argparse.Namespace) -> int:
    """Backfill the trading days FROM..TO of a group: the same runs as ``airflow backfill create``."""
    import getpass

    from moomarkets.services import runs

    if args.history:
        return _backfill_history(args)
    request = runs.backfill_request(args.from_date, args.to_date, args.reprocess_behavior, args.max_active_runs)
    with _connect(args) as conn:
        out = runs.backfill(conn, args.name, request, user_name=getpass.getuser(), dry_run=args.dry_run)
    plan = out.value
    verb = "would create" if args.dry_run else f"created backfill {plan.backfill_id}:"
    _report(f"{verb} {len(plan.intervals)} run(s) of {args.name} for trading days {request.from_date}..{request.to_date}",
            out)
    for start, end in plan.intervals:
        print(f"  data interval {start.isoformat()} .. {end.isoformat()}")
    return EXIT_OK


def _backfill_history(args: argparse.Namespace) -> int:
    """History mode: the range in few DAG runs of multi-day units (moomarkets.services.history)."""
    import getpass

    from moomarkets.services import history

    request = history.history_request(args.from_date, args.to_date, args.run_days, args.unit_days, args.redo)
    out = history.backfill_history(args.database_url, args.name, request, user_name=getpass.getuser(),
                                   via="cli", dry_run=args.dry_run)
    plan = out.value
    verb = "would queue" if args.dry_run else "queued"
    n = sum(1 for c in plan.chunks if c.todo or request.redo) if args.dry_run else len(plan.queued)
    _report(f"{verb} {n} history run(s) of {args.name}: {plan.days_todo} of {plan.days} trading day(s) "
            f"{request.from_date}..{request.to_date} to load, about {plan.eta_seconds:.0f} s at the rate limit", out)
    for c in plan.chunks:
        what = c.run_id or ("already loaded" if not (c.todo or request.redo) else "-")
        print(f"  {c.from_date} .. {c.to_date}: {c.todo}/{c.days} day(s) to load  {what}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """Queue a manual run of a group for its latest complete interval."""
    import getpass

    from moomarkets.services import runs

    with _connect(args) as conn:
        out = runs.trigger(conn, args.name, user_name=getpass.getuser(), via="cli")
    _report(f"queued run {out.value} of {args.name}", out)
    return EXIT_OK


def _verify_text(report: Any, limit: int = 20) -> None:
    """A verify report for people: per unit with differences, its keys and columns; then totals."""
    s = report.summary()
    print(f"verify {s['group']} ({s['source']} {s['dataset']}) {s['from']}..{s['to']}: {s['verified_units']} of "
          f"{s['planned_units']} planned unit(s), {s['requests']} request(s), {s['source_rows']} source row(s)")
    if s["sample"] is not None:
        print(f"sample: {s['sample']} unit(s) with seed {s['seed']} (repeat with --sample {s['sample']} --seed {s['seed']})")

    def key(k: dict[str, Any]) -> str:
        return " ".join(str(v) for c, v in k.items() if c != "source")

    for u in report.units:
        if u.error:
            print(f"{u.key}: FAILED {u.error}")
            continue
        for kind in ("missing", "extra", "mismatched", "stale_adjusted"):
            items, n = getattr(u, kind), u.counts[kind]
            for item in items[:limit]:
                if kind in ("missing", "extra"):
                    print(f"{u.key}: {kind} {key(item)}")
                else:
                    cols = ", ".join(f"{c} (warehouse {w}, source {v})" for c, (w, v) in item["columns"].items())
                    print(f"{u.key}: {kind.replace('_', ' ')} {key(item['key'])}: {cols}")
            if n > min(limit, len(items)):
                print(f"{u.key}: ... {n - min(limit, len(items))} more {kind.replace('_', ' ')}")
    print(f"missing {s['missing']}, extra {s['extra']}, mismatched {s['mismatched']}, "
          f"stale adjusted {s['stale_adjusted']}, failed units {s['failed_units']}")
    if s["repair"]:
        print(f"repair: {s['repaired']} row(s) upserted, {s['deleted']} deleted (verification {s['verification_id']})")
    if report.status == "equal":
        print("EQUAL: the warehouse matches the source")
    elif report.status == "repaired":
        print("REPAIRED: the warehouse now matches the source")
    elif report.status == "failed":
        print("NOT VERIFIED: some units could not be fetched (see FAILED above)")
    else:
        left = [u for u in report.units if u.remaining and any(u.remaining.values())] if s["repair"] else []
        extra_left = sum(u.remaining["extra"] for u in left)
        hint = ("extra rows are kept: add --delete-extra to delete them" if s["repair"] and extra_left
                else "repair with --repair")
        print(f"DIFFERENT: {hint}")


def cmd_verify(args: argparse.Namespace) -> int:
    """Re-read FROM..TO (or a sample) from the source and compare with the warehouse; exit 0 only when equal."""
    import contextlib
    import logging

    from moomarkets.services import verify

    # progress logs (Airflow's logging, set up when the Connection is read, writes to stdout) go to
    # stderr, so stdout holds the report alone (--json: one JSON document)
    swapped = [h for h in logging.getLogger().handlers
               if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is sys.stdout]
    try:
        for h in swapped:
            h.setStream(sys.stderr)
        with contextlib.redirect_stdout(sys.stderr):
            report = verify.verify(args.database_url, args.name, args.from_date, args.to_date, sample=args.sample,
                                   seed=args.seed, repair=args.repair, delete_extra=args.delete_extra)
    finally:
        for h in swapped:
            h.setStream(sys.stdout)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False, default=str))
    else:
        _verify_text(report)
    return EXIT_OK if report.ok else EXIT_ERROR


def cmd_restate(args: argparse.Namespace) -> int:
    """One line per code (rows changed, requests); exit 1 when a code failed or had nothing stored."""
    from moomarkets.services import restate

    summary = restate.restate_codes(args.database_url, args.source, args.codes, dataset=args.dataset,
                                    date_from=args.from_date, date_to=args.to_date)
    for r in summary["results"]:
        if r["status"] == "done":
            print(f"restated {args.source} {r['code']} {r['span'][0]}..{r['span'][1]}: {r['rows_changed']} row(s)"
                  f" changed, {r['requests']} request(s)")
        else:
            print(f"error: {args.source} {r['code']}: {r['error']}", file=sys.stderr)
    for code in summary["missing"]:
        print(f"error: {args.source} {code}: no stored {args.dataset} rows to restate", file=sys.stderr)
    return EXIT_ERROR if summary["failed"] or summary["missing"] else EXIT_OK
