"""Data checks after every load, as a plain function over a :class:`GroupPipeline` (no Airflow).

The Airflow layer runs :func:`run_checks` in the task ``check_loaded`` right before ``record_run``;
tests call it directly. The check SQL lives in ``warehouse.checks``, the ``check_results`` rows in
``warehouse.check_results``.
"""

from __future__ import annotations

import logging
from typing import Any

from moomarkets.pipeline.group import GroupPipeline
from moomarkets.warehouse import check_results
from moomarkets.warehouse import checks as wh_checks
from moomarkets.warehouse import runs
from moomarkets.warehouse.db import connect

log = logging.getLogger(__name__)


def group_checks(pipe: GroupPipeline) -> list:
    """The checks the group runs: its dataset's declarations for its source kind, with the group's
    ``parameters.checks`` overrides applied; ``off`` ones left out."""
    overrides = pipe.group.parameters.get("checks") or {}
    kind = pipe.source_row.kind
    resolved = [c.resolve(overrides.get(c.name)) for c in pipe.dataset.checks if c.applies_to(kind)]
    return [c for c in resolved if c.severity != "off"]


def run_checks(pipe: GroupPipeline, *, dag_id: str, run_id: str, url: str) -> dict[str, Any]:
    """Check the rows the run's successful units loaded, record every result in ``check_results``
    and return a summary (safe for XCom): ``status`` passed / failed / skipped / missing, ``errors``
    (messages of failed error-severity checks), ``warnings`` and per-check ``results``."""
    with connect(url) as conn, conn.transaction():
        found = runs.run_status(conn, dag_id, run_id)
        if found is None:
            return {"status": "missing", "errors": [], "warnings": [], "results": []}
        run_pk, status = found
        if status == "skipped":
            return {"status": "skipped", "errors": [], "warnings": [], "results": []}
        scope = wh_checks.Scope.from_units(pipe.source_code, wh_checks.loaded_units(conn, run_pk))
        results = wh_checks.run_checks(
            conn,
            dataset=pipe.dataset,
            source=pipe.source_code,
            kind=pipe.source_row.kind,
            scope=scope,
            checks=group_checks(pipe),
            codes=pipe.group.parameters.get("tickers"),
        )
        check_results.save_results(
            conn, group_name=pipe.name, dag_id=dag_id, run_id=run_id, dataset=pipe.dataset.name, results=results
        )
    errors = [r["message"] for r in results if not r["passed"] and r["severity"] == "error"]
    warnings = [r["message"] for r in results if r["failed"] and not (not r["passed"] and r["severity"] == "error")]
    for r in results:
        (log.warning if r["failed"] else log.info)("check %s", r["message"])
    return {
        "status": "failed" if errors else "passed",
        "errors": errors,
        "warnings": warnings,
        "results": [
            {k: r[k] for k in ("check_name", "severity", "passed", "failed", "checked", "elapsed_ms")}
            for r in results
        ],
    }
