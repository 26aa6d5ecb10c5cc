"""The ``moomarkets`` command line: schema, data sources, job groups, pools, backup/restore.

Every command that writes goes through ``moomarkets.services`` (the same rules as the management
UI): it validates first and writes in one transaction, so a bad input prints one specific line on
stderr, exits non-zero and writes nothing. Airflow is then kept in step (pools, pause state) on a
best-effort basis: what was done is printed, what failed is a ``warning:`` on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from moomarkets.cli.common import EXIT_ERROR, EXIT_USAGE, _bool_arg
from moomarkets.cli.config_cmds import cmd_db_upgrade, cmd_export, cmd_groups, cmd_import, cmd_pools, cmd_sources
from moomarkets.cli.run_cmds import cmd_backfill, cmd_restate, cmd_run, cmd_verify

# The command modules import the package's modules inside the commands: ``moomarkets --help`` and
# usage errors stay instant, without loading psycopg, YAML or the source classes.


class _Parser(argparse.ArgumentParser):
    """Usage errors are one ``error:`` line (like every other error of this CLI), exit code 2.
    Subcommand parsers inherit the class (argparse creates them with the parent's type)."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        sys.stderr.write(f"error: {self.prog}: {message} (see: {self.prog} --help)\n")
        sys.exit(EXIT_USAGE)


ALERTS_HELP = "alert settings as YAML or JSON text, or @FILE (keys: on, late_after, targets)"


def _dependency_options(x: argparse.ArgumentParser, *, update: bool = False) -> None:
    """A group's upstreams, how long its runs wait for them, and its alerts (add and update alike)."""
    clears = " ('' clears)" if update else ""
    x.add_argument("--depends-on", metavar="GROUP[,GROUP...]",
                   help="groups whose loads of a trading day this group's run waits for" + clears)
    x.add_argument("--upstream-timeout", metavar="DURATION", help="how long a run waits for its upstreams (default 6h)")
    x.add_argument("--alerts", help=ALERTS_HELP + (" ('' removes them; the source's defaults apply)" if update else ""))


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
    x.add_argument("--alerts", help=ALERTS_HELP)
    x.add_argument("--inactive", action="store_true"); x.set_defaults(func=cmd_sources)
    x = sp.add_parser("update"); x.add_argument("code")
    for opt in ("--name", "--kind", "--conn-id", "--description", "--config"):
        x.add_argument(opt)
    x.add_argument("--alerts", help=ALERTS_HELP + " ('' removes them)")
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
    _dependency_options(x)
    x.add_argument("--disabled", action="store_true"); x.set_defaults(func=cmd_groups)
    x = gp.add_parser("update"); x.add_argument("name")
    for opt in ("--source", "--dataset", "--schedule", "--timezone", "--description", "--parameters"):
        x.add_argument(opt)
    _dependency_options(x, update=True)
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
