"""Helpers every ``moomarkets`` command uses: option parsing, tables, the warehouse connection,
and how outcomes are printed (notes on stdout, warnings on stderr)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

    from moomarkets.services.effects import Outcome

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


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
