"""The ``moomarkets`` command line: schema, data sources, job groups, pools, backup/restore.

Every command that writes validates first and runs in one transaction: a bad input prints one
specific line on stderr, exits non-zero and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A one-line error for the user."""


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{what} is not valid JSON ({exc.msg} at column {exc.colno})") from None


def _bool_arg(text: str) -> bool:
    low = text.strip().lower()
    if low in ("true", "yes", "1", "on"):
        return True
    if low in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    if not rows:
        return "(none)"
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    line = "  ".join(c.upper().ljust(widths[c]) for c in cols)
    body = ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join([line, *body])


def _connect(args):
    from moomarkets.warehouse.db import connect
    from moomarkets.errors import ConfigStoreUnavailable

    try:
        return connect(args.database_url, connect_timeout=10)
    except Exception as exc:  # noqa: BLE001 - shown as one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigStoreUnavailable(f"cannot connect to the warehouse database: {first}") from None


# -- Airflow side effects (best effort: the config is the source of truth) ---------------------
def _airflow_sync_pools(args, sources) -> None:
    if args.no_airflow:
        return
    try:
        from moomarkets.airflow.pools import sync_pools

        for name, slots, action in sync_pools(sources):
            print(f"pool {name}: {slots} slot(s), {action}")
    except Exception as exc:  # noqa: BLE001
        print(
            f"warning: Airflow pools not synced ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''});"
            " run `moomarkets pools sync` where Airflow's metadata DB is reachable",
            file=sys.stderr,
        )


def _airflow_set_paused(args, dag_id: str, paused: bool) -> None:
    if args.no_airflow:
        return
    try:
        from moomarkets.airflow import ops as airflow_ops

        if not airflow_ops.set_paused(dag_id, paused):
            print(f"note: DAG {dag_id} is not parsed yet; it will start {'paused' if paused else 'active'}")
            return
        print(f"DAG {dag_id} {'paused' if paused else 'unpaused'} in Airflow")
    except Exception as exc:  # noqa: BLE001
        print(
            f"warning: could not {'pause' if paused else 'unpause'} DAG {dag_id} in Airflow ({type(exc).__name__});"
            " its runs are skipped while the group is disabled anyway",
            file=sys.stderr,
        )


# -- commands -----------------------------------------------------------------------------
def cmd_db_upgrade(args) -> int:
    from moomarkets.warehouse import migrate

    migrate.upgrade(args.database_url)
    print(f"warehouse schema at revision {migrate.current(args.database_url)}")
    return EXIT_OK


def cmd_sources(args) -> int:
    from moomarkets.warehouse import config_store as store
    from moomarkets.config.models import DataSource
    from moomarkets.airflow.pools import pool_name
    from moomarkets.sources.registry import get_source_class

    with _connect(args) as conn:
        if args.action == "list":
            rows = []
            for s in store.list_sources(conn):
                cls = get_source_class(s.kind)
                rows.append(
                    {"code": s.code, "name": s.name, "kind": s.kind, "active": s.is_active, "conn_id": s.conn_id,
                     "rate_limit": ",".join(cls.rate_limit(s.config)), "pool": pool_name(s.code),
                     "slots": cls.max_concurrency(s.config)}
                )
            print(_table(rows, ["code", "name", "kind", "active", "conn_id", "rate_limit", "pool", "slots"]))
            return EXIT_OK
        if args.action == "show":
            print(json.dumps(store.get_source(conn, args.code).to_dict(), indent=2, ensure_ascii=False))
            return EXIT_OK
        with conn.transaction():
            if args.action == "add":
                src = DataSource(
                    code=args.code, name=args.name, kind=args.kind, conn_id=args.conn_id or f"{args.kind}_default",
                    description=args.description or "", is_active=not args.inactive,
                    config=_json_arg(args.config, "--config") if args.config else {},
                )
                src = store.add_source(conn, src)
                print(f"added data source {src.code}")
            elif args.action == "update":
                changes: dict[str, Any] = {}
                for attr in ("name", "kind", "conn_id", "description"):
                    if getattr(args, attr) is not None:
                        changes[attr] = getattr(args, attr)
                if args.config is not None:
                    changes["config"] = _json_arg(args.config, "--config")
                if args.active is not None:
                    changes["is_active"] = args.active
                if not changes:
                    raise CliError("nothing to update: give at least one option")
                src = store.update_source(conn, args.code, **changes)
                print(f"updated data source {src.code}")
            elif args.action == "remove":
                store.remove_source(conn, args.code)
                print(f"removed data source {args.code}")
                return EXIT_OK
        _airflow_sync_pools(args, [src])
    return EXIT_OK


def cmd_groups(args) -> int:
    from moomarkets.warehouse import config_store as store
    from moomarkets.config.models import JobGroup

    with _connect(args) as conn:
        if args.action == "list":
            status = {
                r["name"]: r for r in conn.execute("SELECT name, last_run_status, units_done, units_total, rows_loaded FROM job_group_status")
            }
            rows = []
            for g in store.list_groups(conn):
                st = status.get(g.name) or {}
                rows.append(
                    {"name": g.name, "source": g.data_source, "dataset": g.dataset, "schedule": g.schedule,
                     "timezone": g.timezone, "enabled": g.is_enabled, "last_run": st.get("last_run_status") or "-",
                     "progress": f"{st.get('units_done') or 0}/{st.get('units_total') or 0}" if st.get("last_run_status") else "-",
                     "rows": st.get("rows_loaded") if st.get("last_run_status") else "-"}
                )
            print(_table(rows, ["name", "source", "dataset", "schedule", "timezone", "enabled", "last_run", "progress", "rows"]))
            return EXIT_OK
        if args.action == "show":
            print(json.dumps(store.get_group(conn, args.name).to_dict(), indent=2, ensure_ascii=False))
            return EXIT_OK
        if args.action == "validate":
            return _validate_groups(conn, args.names)
        with conn.transaction():
            if args.action == "add":
                group = JobGroup(
                    name=args.name, data_source=args.source, dataset=args.dataset, schedule=args.schedule,
                    timezone=args.timezone or "UTC", description=args.description or "",
                    parameters=_json_arg(args.parameters, "--parameters") if args.parameters else {},
                    is_enabled=not args.disabled,
                )
                group = store.add_group(conn, group)
                print(f"added job group {group.name} (DAG {group.name} appears at the next DAG parse)")
                return EXIT_OK
            if args.action == "update":
                changes: dict[str, Any] = {}
                for attr, field in (("source", "data_source"), ("dataset", "dataset"), ("schedule", "schedule"),
                                    ("timezone", "timezone"), ("description", "description")):
                    if getattr(args, attr) is not None:
                        changes[field] = getattr(args, attr)
                if args.parameters is not None:
                    changes["parameters"] = _json_arg(args.parameters, "--parameters")
                if not changes:
                    raise CliError("nothing to update: give at least one option")
                store.update_group(conn, args.name, **changes)
                print(f"updated job group {args.name}")
                return EXIT_OK
            if args.action in ("enable", "disable"):
                store.update_group(conn, args.name, is_enabled=args.action == "enable")
                print(f"{args.action}d job group {args.name}")
            elif args.action == "remove":
                store.remove_group(conn, args.name)
                print(f"removed job group {args.name} (its DAG disappears at the next parse; loaded rows stay)")
                return EXIT_OK
        _airflow_set_paused(args, args.name, paused=args.action == "disable")
    return EXIT_OK


def _validate_groups(conn, names: list[str]) -> int:
    from moomarkets.warehouse import config_store as store
    from moomarkets.config.validate import next_runs, validate_group
    from moomarkets.errors import ConfigError

    groups = [store.get_group(conn, n) for n in names] if names else store.list_groups(conn)
    bad = 0
    for g in groups:
        try:
            ok = validate_group(g, store.find_source(conn, g.data_source), require_active=True)
        except ConfigError as exc:
            bad += 1
            print(f"INVALID {g.name}: {exc.reason if exc.field is None else f'{exc.field}: {exc.reason}'}")
            continue
        runs = ", ".join(t.isoformat(timespec="minutes") for t in next_runs(ok.schedule, ok.timezone))
        print(f"ok      {g.name}: next runs {runs}")
    if not groups:
        print("(no job groups)")
    return EXIT_ERROR if bad else EXIT_OK


def cmd_export(args) -> int:
    import yaml

    from moomarkets.warehouse import config_store as store

    with _connect(args) as conn:
        data = store.export_config(conn)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if args.file == "-":
        sys.stdout.write(text)
    else:
        Path(args.file).write_text(text)
        print(f"exported {len(data['data_sources'])} data source(s), {len(data['job_groups'])} job group(s) to {args.file}")
    return EXIT_OK


def load_yaml_file(path: str) -> Any:
    import yaml

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CliError(f"{path} is not valid YAML{where}: {problem}") from None


def cmd_import(args) -> int:
    from moomarkets.warehouse import config_store as store

    data = load_yaml_file(args.file)
    with _connect(args) as conn:
        counts = store.import_config(conn, data, replace_all=args.replace)
        print(
            "imported: {sources_created} source(s) created, {sources_updated} updated; "
            "{groups_created} group(s) created, {groups_updated} updated; {removed} removed".format(**counts)
        )
        sources = store.list_sources(conn)
    _airflow_sync_pools(args, sources)
    return EXIT_OK


def cmd_pools(args) -> int:
    from moomarkets.warehouse import config_store as store
    from moomarkets.airflow.pools import check_pools

    with _connect(args) as conn:
        sources = store.list_sources(conn)
    if args.action == "sync":
        from moomarkets.airflow.pools import sync_pools

        try:
            done = sync_pools(sources)
        except Exception as exc:  # noqa: BLE001 - Airflow's metadata DB unreachable or not migrated
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise CliError(f"could not sync pools in Airflow ({type(exc).__name__}: {first[:200]})") from None
        for name, slots, action in done:
            print(f"pool {name}: {slots} slot(s), {action}")
        return EXIT_OK
    problems = check_pools(sources)
    for p in problems:
        print(p)
    if not problems:
        print(f"all {len(sources)} pool(s) match the data sources")
    return EXIT_ERROR if problems else EXIT_OK


class _Parser(argparse.ArgumentParser):
    """Usage errors are one ``error:`` line (like every other error of this CLI), exit code 2.
    Subcommand parsers inherit the class (argparse creates them with the parent's type)."""

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"error: {self.prog}: {message} (see: {self.prog} --help)\n")
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    from moomarkets import settings

    p = _Parser(prog="moomarkets", description="MooMarkets Ingest: data sources and job groups")
    p.add_argument("--database-url", default=None, help="warehouse URL (default: $MOOMARKETS_DATABASE_URL)")
    p.add_argument("--no-airflow", action="store_true", help="do not touch Airflow (pools, pause state)")
    sub = p.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="warehouse schema").add_subparsers(dest="action", required=True)
    db.add_parser("upgrade", help="apply migrations").set_defaults(func=cmd_db_upgrade)

    sp = sub.add_parser("sources", help="data sources").add_subparsers(dest="action", required=True)
    sp.add_parser("list").set_defaults(func=cmd_sources)
    x = sp.add_parser("show"); x.add_argument("code"); x.set_defaults(func=cmd_sources)
    x = sp.add_parser("add")
    x.add_argument("--code", required=True); x.add_argument("--name", required=True)
    x.add_argument("--kind", required=True); x.add_argument("--conn-id")
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
    p.set_defaults(database_url_default=settings.database_url)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from moomarkets import settings
    from moomarkets.errors import MooMarketsError

    parser = build_parser()
    args = parser.parse_args(argv)
    args.database_url = args.database_url or settings.database_url()
    try:
        return args.func(args)
    except (CliError, MooMarketsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
