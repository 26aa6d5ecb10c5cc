"""Metrics of every unit, restatement, check and run, sent through Airflow's own metrics layer.

Airflow's task process sends them to whatever the deployment configured in ``[metrics]`` (StatsD,
Datadog's DogStatsD or OpenTelemetry): no second metrics client, host or port to configure. The
task runner initializes that layer in each task process (``task_runner.main``); these functions
only call ``Stats``.

Naming: ``moomarkets.<source>.<group>.<metric>`` (after Airflow's ``statsd_prefix``). Plain
StatsD drops tags, so source and group must be in the name; every call also passes the tags
``source``, ``group`` and ``dataset`` for OpenTelemetry, Datadog and InfluxDB-style StatsD. The
dataset is a tag only: a group loads exactly one dataset, so naming it would add no series.

The pipeline reports plain summaries (``pipeline.run``, ``restate``, ``checks``); this module turns
them into metrics. Counters of 0 are not sent (a 0 adds nothing to a sum; it would only cost a
packet and, on some backends, a series); timings and gauges are sent as measured. Emitting is best
effort: a broken metrics backend logs a warning and never fails a load.

``http_requests`` are the API requests (each took a rate-limit token, retries included): J-Quants
bulk file downloads go to the storage host with a signed URL and take no token, so they are not
counted (their ``/bulk/list`` and ``/bulk/get`` calls are).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from airflow.sdk.observability.stats import Stats, normalize_name_for_stats

from moomarkets.pipeline.group import GroupPipeline

log = logging.getLogger(__name__)

PREFIX = "moomarkets"
RUN_STATUSES = ("success", "partial", "failed")


def metric_name(pipe: GroupPipeline, metric: str) -> str:
    """``moomarkets.<source>.<group>.<metric>``, with characters StatsD does not allow replaced."""
    name = f"{PREFIX}.{pipe.source_code}.{pipe.name}.{metric}"
    return normalize_name_for_stats(name, log_warning=False)[:250]


def metric_tags(pipe: GroupPipeline) -> dict[str, str]:
    return {"source": pipe.source_code, "group": pipe.name, "dataset": pipe.group.dataset}


def _send(pipe: GroupPipeline, counters: dict[str, int], timings: dict[str, float] | None = None,
          gauges: dict[str, float] | None = None) -> None:
    """Counters (count; zeros skipped), timings (seconds, sent as ms) and gauges of one group, best effort."""
    tags = metric_tags(pipe)
    try:
        for metric, count in counters.items():
            if not int(count):
                continue
            Stats.incr(metric_name(pipe, metric), int(count), tags=tags)
        for metric, seconds in (timings or {}).items():
            Stats.timing(metric_name(pipe, metric), timedelta(seconds=float(seconds)), tags=tags)
        for metric, value in (gauges or {}).items():
            Stats.gauge(metric_name(pipe, metric), value, tags=tags)
    except Exception:  # noqa: BLE001 - metrics must never fail a load
        log.warning("moomarkets: could not emit metrics for %s", pipe.name, exc_info=True)


def emit_unit(pipe: GroupPipeline, summary: dict[str, Any]) -> None:
    """One attempt of a ``fetch_and_load`` unit (``pipeline.run.fetch_and_load``'s summary).

    A failed attempt counts in ``units_failed`` (a unit Airflow retries twice counts twice); its
    requests, 429s and waits count like any other, since the source saw them."""
    ok = summary["status"] == "success"
    _send(
        pipe,
        {
            "rows_loaded": summary["rows"],
            "rows_changed": summary["changed"],
            "units_ok" if ok else "units_failed": 1,
            "http_requests": summary["requests"],
            "http_429": summary["http_429"],
            "http_5xx": summary["http_5xx"],
        },
        timings={"rate_limit_wait": summary["wait_seconds"], "unit_duration": summary["seconds"]},
    )


def emit_restatements(pipe: GroupPipeline, summary: dict[str, Any]) -> None:
    """The ``restate_history`` step (``pipeline.restate.restate_run``'s summary); nothing when the
    run had nothing to restate. Its requests count in the group's HTTP metrics too."""
    if not summary.get("codes"):
        return
    _send(
        pipe,
        {
            "restatements": summary["restated"],
            "restatements_failed": summary["failed"],
            "http_requests": summary["requests"],
            "http_429": summary.get("http_429", 0),
            "http_5xx": summary.get("http_5xx", 0),
        },
        timings={"rate_limit_wait": summary.get("wait_seconds", 0.0)},
    )


def emit_checks(pipe: GroupPipeline, summary: dict[str, Any]) -> None:
    """The ``check_loaded`` step: how many of the run's checks did not pass (any severity)."""
    results = summary.get("results") or []
    if results:
        _send(pipe, {"check_failures": sum(1 for r in results if not r["passed"])})


def emit_run(pipe: GroupPipeline, summary: dict[str, Any]) -> None:
    """The run's outcome (``record_run``): one ``run_<status>`` count and the rows it loaded as a
    gauge. Skipped runs emit nothing; a run the plan task never recorded counts as failed.

    Once per run and outcome: a summary with ``newly_closed`` false (``record_run`` retried after it
    had closed the run with this status) emits nothing; a run cleared in Airflow that ends with
    another status (a partial run whose failed units now loaded) counts its new outcome."""
    status = "failed" if summary["status"] == "missing" else summary["status"]
    if status not in RUN_STATUSES or not summary.get("newly_closed", True):
        return
    _send(pipe, {f"run_{status}": 1}, gauges={"run_rows_loaded": summary["rows_loaded"]})
