"""The ``moomarkets`` command line: schema, data sources, job groups, pools, backup/restore.

Every command that writes goes through ``moomarkets.services`` (the same rules as the management
UI): it validates first and writes in one transaction, so a bad input prints one specific line on
stderr, exits non-zero and writes nothing. Airflow is then kept in step (pools, pause state) on a
best-effort basis: what was done is printed, what failed is a ``warning:`` on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    import psycopg

    from moomarkets.services.effects import Outcome

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

# The package's modules are imported inside the commands: ``moomarkets --help`` and usage errors
# stay instant, without loading psycopg, YAML or the source classes.


def _json_option(text: str | None, field: str, option: str) -> dict[str, Any] | None:
    """A JSON-object option; None when the option was not given."""
    from moomarkets.services.inputs import parse_json_object

    return None if text is None else parse_json_object(text, field, label=option)


def _bool_arg(text: str) -> bool:
    from moomarkets.services.inputs import parse_bool

    try:
        return parse_bool(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    if not rows:
        return "(none)"
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    line = "  ".join(c.upper().ljust(widths[c]) for c in cols)
    body = ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join([line, *body])


def _connect(args: argparse.Namespace) -> psycopg.Connection:
    from moomarkets.errors import ConfigStoreUnavailable, first_line
    from moomarkets.warehouse.db import connect

    try:
        # autocommit: each service write commits its own transaction, reads hold none open
        return connect(args.database_url, connect_timeout=10, autocommit=True)
    except Exception as exc:  # noqa: BLE001 - any driver error is one line for the user
        raise ConfigStoreUnavailable(f"cannot connect to the warehouse database: {first_line(exc)}") from None


def _report(headline: str, out: Outcome[Any]) -> None:
    """The command's own line, what Airflow did, notes; warnings go to stderr."""
    print(headline)
    for line in out.done:
        print(line)
    for line in out.notes:
        print(f"note: {line}")
    for line in out.warnings:
        print(f"warning: {line}", file=sys.stderr)


def _changes(args: argparse.Namespace, options: dict[str, str], **parsed: Any) -> dict[str, Any]:
    """The options given (attribute -> field), plus ``parsed`` values that are not None, as field
    changes; UsageError when there are none."""
    from moomarkets.errors import UsageError

    changes = {field: getattr(args, attr) for attr, field in options.items() if getattr(args, attr) is not None}
    changes.update({field: value for field, value in parsed.items() if value is not None})
    if not changes:
        raise UsageError("nothing to update: give at least one option")
    return changes


# -- commands -----------------------------------------------------------------------------
def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from moomarkets.warehouse import migrate

    migrate.upgrade(args.database_url)
    print(f"warehouse schema at revision {migrate.current(args.database_url)}")
    return EXIT_OK


def cmd_sources(args: argparse.Namespace) -> int:
    from moomarkets.services import sources, views
    from moomarkets.warehouse import config_store as store

    airflow = not args.no_airflow
    with _connect(args) as conn:
        if args.action == "list":
            rows = [
                {"code": s["code"], "name": s["name"], "kind": s["kind"], "active": s["is_active"],
                 "conn_id": s["conn_id"], "rate_limit": ",".join(s["rate_limit"]), "pool": s["pool"],
                 "slots": s["pool_slots"]}
                for s in views.list_sources(conn)
            ]
            print(_table(rows, ["code", "name", "kind", "active", "conn_id", "rate_limit", "pool", "slots"]))
        elif args.action == "show":
            print(json.dumps(store.get_source(conn, args.code).to_dict(), indent=2, ensure_ascii=False))
        elif args.action == "add":
            data = {"code": args.code, "name": args.name, "kind": args.kind, "conn_id": args.conn_id,
                    "description": args.description, "is_active": not args.inactive,
                    "config": _json_option(args.config, "config", "--config")}
            out = sources.create(conn, data, airflow=airflow)
            _report(f"added data source {out.value.code}", out)
        elif args.action == "update":
            changes = _changes(args, {"name": "name", "kind": "kind", "conn_id": "conn_id",
                                      "description": "description", "active": "is_active"},
                               config=_json_option(args.config, "config", "--config"))
            out = sources.update(conn, args.code, changes, airflow=airflow)
            _report(f"updated data source {out.value.code}", out)
        elif args.action == "remove":
            _report(f"removed data source {args.code}", sources.remove(conn, args.code))
    return EXIT_OK


def _latest_checks(conn: psycopg.Connection, group_name: str) -> dict[str, Any] | None:
    """The check results of the group's most recently checked run (None when never checked)."""
    from moomarkets.warehouse import checks

    results = checks.latest_results(conn, group_name)
    if not results:
        return None
    return {
        "run_id": results[0]["run_id"],
        "checked_at": max(r["checked_at"] for r in results),
        "results": [
            {"check": r["check_name"], "severity": r["severity"], "passed": r["passed"], "failed": r["failed"],
             "checked": r["checked"], "message": r["message"], "sample": r["sample"][:5]}
            for r in results
        ],
    }


def cmd_groups(args: argparse.Namespace) -> int:
    from moomarkets.services import groups
    from moomarkets.warehouse import config_store as store
    from moomarkets.warehouse import queries

    airflow = not args.no_airflow
    with _connect(args) as conn:
        if args.action == "list":
            rows = []
            for g in queries.list_groups(conn):  # no Airflow needed: the schedule is shown as cron
                ran = bool(g["last_run_status"])
                rows.append(
                    {"name": g["name"], "source": g["data_source"], "dataset": g["dataset"], "schedule": g["schedule"],
                     "timezone": g["timezone"], "enabled": g["is_enabled"], "last_run": g["last_run_status"] or "-",
                     "progress": f"{g['units_done'] or 0}/{g['units_total'] or 0}" if ran else "-",
                     "rows": g["rows_loaded"] if ran else "-"}
                )
            print(_table(rows, ["name", "source", "dataset", "schedule", "timezone", "enabled", "last_run", "progress", "rows"]))
        elif args.action == "show":
            from moomarkets.services import restate

            shown = store.get_group(conn, args.name).to_dict()
            shown["recent_restatements"] = [  # corporate actions seen and the history re-fetches they caused
                {k: r[k] for k in ("code", "event_date", "action", "factor", "status", "rows_changed", "requests",
                                   "run_id", "error", "detected_at")}
                for r in restate.recent_for_group(conn, args.name)
            ]
            shown["latest_checks"] = _latest_checks(conn, args.name)  # data checks of the last checked run
            print(json.dumps(shown, indent=2, ensure_ascii=False, default=str))
        elif args.action == "validate":
            return _validate_groups(conn, args.names)
        elif args.action == "add":
            data = {"name": args.name, "data_source": args.source, "dataset": args.dataset, "schedule": args.schedule,
                    "timezone": args.timezone, "description": args.description, "is_enabled": not args.disabled,
                    "parameters": _json_option(args.parameters, "parameters", "--parameters")}
            out = groups.create(conn, data)
            _report(f"added job group {out.value.name}", out)
        elif args.action == "update":
            changes = _changes(args, {"source": "data_source", "dataset": "dataset", "schedule": "schedule",
                                      "timezone": "timezone", "description": "description"},
                               parameters=_json_option(args.parameters, "parameters", "--parameters"))
            out = groups.update(conn, args.name, changes, airflow=airflow)
            _report(f"updated job group {args.name}", out)
        elif args.action in ("enable", "disable"):
            out = groups.set_enabled(conn, args.name, args.action == "enable", airflow=airflow)
            _report(f"{args.action}d job group {args.name}", out)
        elif args.action == "remove":
            _report(f"removed job group {args.name}", groups.remove(conn, args.name))
    return EXIT_OK


def _validate_groups(conn: psycopg.Connection, names: list[str]) -> int:
    from moomarkets.services import groups

    checks = groups.check(conn, names)
    for c in checks:
        if c.error:
            print(f"INVALID {c.name}: {c.error}")
        else:
            print(f"ok      {c.name}: next runs {', '.join(t.isoformat(timespec='minutes') for t in c.next_runs)}")
    if not checks:
        print("(no job groups)")
    return EXIT_ERROR if any(c.error for c in checks) else EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from moomarkets.services import config_io

    with _connect(args) as conn:
        text, data = config_io.export_yaml(conn)
    if args.file == "-":
        sys.stdout.write(text)
    else:
        Path(args.file).write_text(text)
        print(f"exported {len(data['data_sources'])} data source(s), {len(data['job_groups'])} job group(s) to {args.file}")
    return EXIT_OK


def read_config_file(path: str) -> Any:
    """The YAML in ``path`` (``-``: stdin) as data; UsageError for an unreadable file or bad YAML."""
    from moomarkets.errors import UsageError
    from moomarkets.services import config_io

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    return config_io.parse_yaml(text, path)


def cmd_import(args: argparse.Namespace) -> int:
    from moomarkets.services import config_io

    data = read_config_file(args.file)
    with _connect(args) as conn:
        out = config_io.import_config(conn, data, replace_all=args.replace, airflow=not args.no_airflow)
    _report(
        "imported: {sources_created} source(s) created, {sources_updated} updated; "
        "{groups_created} group(s) created, {groups_updated} updated; {removed} removed".format(**out.value),
        out,
    )
    return EXIT_OK


def cmd_pools(args: argparse.Namespace) -> int:
    from moomarkets.services import sources

    with _connect(args) as conn:
        if args.action == "sync":
            for name, slots, action in sources.sync_all_pools(conn):
                print(f"pool {name}: {slots} slot(s), {action}")
            return EXIT_OK
        problems, checked = sources.check_pools(conn)
    for p in problems:
        print(p)
    if not problems:
        print(f"all {checked} pool(s) match the data sources")
    return EXIT_ERROR if problems else EXIT_OK


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


class _Parser(argparse.ArgumentParser):
    """Usage errors are one ``error:`` line (like every other error of this CLI), exit code 2.
    Subcommand parsers inherit the class (argparse creates them with the parent's type)."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        sys.stderr.write(f"error: {self.prog}: {message} (see: {self.prog} --help)\n")
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="moomarkets", description="MooMarkets Ingest: data sources and job groups")
    p.add_argument("--database-url", default=None, help="warehouse URL (default: $MOOMARKETS_DATABASE_URL, else the Airflow connection moomarkets_warehouse)")
    p.add_argument("--no-airflow", action="store_true", help="do not touch Airflow (pools, pause state)")
    sub = p.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="warehouse schema").add_subparsers(dest="action", required=True)
    db.add_parser("upgrade", help="apply migrations").set_defaults(func=cmd_db_upgrade)

    sp = sub.add_parser("sources", help="data sources").add_subparsers(dest="action", required=True)
    sp.add_parser("list").set_defaults(func=cmd_sources)
    x = sp.add_parser("show"); x.add_argument("code"); x.set_defaults(func=cmd_sources)
    x = sp.add_parser("add")
    x.add_argument("--code", required=True); x.add_argument("--name", required=True)
    x.add_argument("--kind", required=True); x.add_argument("--conn-id", help="default: the kind's connection")
    x.add_argument("--description"); x.add_argument("--config", help="JSON, e.g. '{\"plan\": \"light\"}'")
    x.add_argument("--inactive", action="store_true"); x.set_defaults(func=cmd_sources)
    x = sp.add_parser("update"); x.add_argument("code")
    for opt in ("--name", "--kind", "--conn-id", "--description", "--config"):
        x.add_argument(opt)
    x.add_argument("--active", type=_bool_arg); x.set_defaults(func=cmd_sources)
    x = sp.add_parser("remove"); x.add_argument("code"); x.set_defaults(func=cmd_sources)

    gp = sub.add_parser("groups", help="job groups").add_subparsers(dest="action", required=True)
    gp.add_parser("list").set_defaults(func=cmd_groups)
    for name in ("show", "enable", "disable", "remove"):
        x = gp.add_parser(name); x.add_argument("name"); x.set_defaults(func=cmd_groups)
    x = gp.add_parser("add")
    x.add_argument("--name", required=True); x.add_argument("--source", required=True)
    x.add_argument("--dataset", required=True); x.add_argument("--schedule", required=True)
    x.add_argument("--timezone"); x.add_argument("--description")
    x.add_argument("--parameters", help="JSON, e.g. '{\"universe\": \"all_listed\"}'")
    x.add_argument("--disabled", action="store_true"); x.set_defaults(func=cmd_groups)
    x = gp.add_parser("update"); x.add_argument("name")
    for opt in ("--source", "--dataset", "--schedule", "--timezone", "--description", "--parameters"):
        x.add_argument(opt)
    x.set_defaults(func=cmd_groups)
    x = gp.add_parser("validate", help="check groups; prints the next 3 run times")
    x.add_argument("names", nargs="*"); x.set_defaults(func=cmd_groups)

    x = sub.add_parser("export", help="write all sources and groups as YAML"); x.add_argument("file")
    x.set_defaults(func=cmd_export)
    x = sub.add_parser("import", help="create/update sources and groups from YAML (all-or-nothing)")
    x.add_argument("file"); x.add_argument("--replace", action="store_true", help="also remove rows not in the file")
    x.set_defaults(func=cmd_import)

    pp = sub.add_parser("pools", help="Airflow pools, one per data source").add_subparsers(dest="action", required=True)
    pp.add_parser("sync").set_defaults(func=cmd_pools)
    pp.add_parser("check").set_defaults(func=cmd_pools)
    x = sub.add_parser("verify", help="compare a group's date range with its source; exit 0 only when equal")
    x.add_argument("name"); x.add_argument("--from", dest="from_date", required=True, help="first trading day, YYYY-MM-DD")
    x.add_argument("--to", dest="to_date", required=True, help="last trading day, YYYY-MM-DD (inclusive)")
    x.add_argument("--sample", type=int, help="verify N random planned units (days or codes) only")
    x.add_argument("--seed", type=int, help="the sample's random seed (printed; default: a new one)")
    x.add_argument("--json", action="store_true", help="print one JSON document")
    x.add_argument("--repair", action="store_true", help="upsert the missing and mismatched rows from the source")
    x.add_argument("--delete-extra", action="store_true", help="with --repair: also delete the extra rows")
    x.set_defaults(func=cmd_verify)

    from moomarkets.services.runs import MAX_ACTIVE_RUNS, REPROCESS_BEHAVIORS

    x = sub.add_parser("backfill", help="load the trading days FROM..TO of a group (Airflow backfill)")
    x.add_argument("name"); x.add_argument("--from", dest="from_date", required=True, help="first trading day, YYYY-MM-DD")
    x.add_argument("--to", dest="to_date", required=True, help="last trading day, YYYY-MM-DD (inclusive)")
    x.add_argument("--reprocess-behavior", default="none", choices=list(REPROCESS_BEHAVIORS))
    x.add_argument("--max-active-runs", type=int, default=1, help=f"1..{MAX_ACTIVE_RUNS}")
    x.add_argument("--dry-run", action="store_true", help="only list the runs it would create")
    x.add_argument("--history", action="store_true",
                   help="history mode: few runs of multi-day units, skipping days already loaded")
    x.add_argument("--run-days", type=int, default=None, help="--history: trading days per run (default 250)")
    x.add_argument("--unit-days", type=int, default=None, help="--history: trading days per mapped unit")
    x.add_argument("--redo", action="store_true", help="--history: reload days already loaded too")
    x.set_defaults(func=cmd_backfill)
    x = sub.add_parser("run", help="queue a manual run of a group's DAG (latest complete interval)")
    x.add_argument("name"); x.set_defaults(func=cmd_run)
    x = sub.add_parser("restate", help="re-fetch codes' stored history from the source and bring it in line")
    x.add_argument("source"); x.add_argument("codes", nargs="+", metavar="CODE")
    x.add_argument("--dataset", default="daily_quotes", help="the table to restate (default daily_quotes)")
    x.add_argument("--from", dest="from_date", help="first date, YYYY-MM-DD (default: the first stored)")
    x.add_argument("--to", dest="to_date", help="last date, YYYY-MM-DD (default: the last stored)")
    x.set_defaults(func=cmd_restate)
    return p


def _warehouse_url() -> str:
    """$MOOMARKETS_DATABASE_URL, else the Airflow Connection ``moomarkets_warehouse`` (or
    $MOOMARKETS_WAREHOUSE_CONN_ID) from Airflow's secrets backends, as tasks and the UI see it."""
    from importlib.util import find_spec

    from moomarkets import settings

    if find_spec("airflow") is not None:  # without Airflow only the env override names the warehouse
        from moomarkets.airflow.warehouse import install

        install()
    return settings.database_url()


def main(argv: Sequence[str] | None = None) -> int:
    from moomarkets import settings
    from moomarkets.errors import MooMarketsError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.database_url = args.database_url or _warehouse_url()
        return args.func(args)
    except (MooMarketsError, settings.WarehouseNotConfigured) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
