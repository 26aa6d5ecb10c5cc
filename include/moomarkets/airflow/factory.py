"""The DAG factory: one Airflow DAG per job group (the Airflow-facing layer).

Parse-time rules (Airflow best practices): the config read is bounded (seconds) and ordered, only
the DAG a worker asks for is built (``get_parsing_context``), credentials are never read here, and
when the config DB cannot be read the last-known-good snapshot stands in, so DAGs never vanish
because the database blinked. A group that fails validation becomes a visible placeholder DAG
with the reason instead of breaking the other groups.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset, get_current_context, get_parsing_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from airflow.sdk import TriggerRule

from moomarkets import settings
from moomarkets.pipeline import run as runner
from moomarkets.pipeline import upstreams
from moomarkets.airflow.connections import get_credentials
from moomarkets.airflow.dependencies import add_upstream_sensors
from moomarkets.airflow.pools import pool_name
from moomarkets.airflow.timetables import TradingDayTimetable
from moomarkets.config.models import GroupSpec
from moomarkets.errors import ConfigError, SourceError, scrub
from moomarkets.pipeline import GroupPipeline
from moomarkets.sources.base import Interval
from moomarkets.warehouse.config_snapshot import load_specs

log = logging.getLogger(__name__)

OWNER = "moomarkets"
START_DATE_YEAR = 2000
DEFAULT_ARGS: dict[str, Any] = {
    "owner": OWNER,
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=1),
}


def dataset_asset(source_code: str, dataset: str) -> Asset:
    """The Airflow asset a group updates: ``moomarkets://<source>/<dataset>`` (one per warehouse
    table and source, shared by every group loading it). An event is emitted only when a run loaded
    every unit, so a downstream DAG scheduled on it never starts on a partial load; the event's
    ``extra`` names the group, the data interval, the trading days loaded and the rows loaded."""
    return Asset(
        uri=f"moomarkets://{source_code}/{dataset}", name=f"moomarkets.{source_code}.{dataset}", group="moomarkets"
    )


def _doc_md(pipe: GroupPipeline) -> str:
    g, s = pipe.group, pipe.source_row
    params = "\n".join(f"- `{k}`: `{v}`" for k, v in sorted(g.parameters.items())) or "- (none)"
    return (
        f"## {g.name}\n\n{g.description or '(no description)'}\n\n"
        f"| | |\n|---|---|\n| Source | `{s.code}` ({s.name}, kind `{s.kind}`, connection `{s.conn_id}`) |\n"
        f"| Dataset | `{g.dataset}` |\n| Schedule | `{g.schedule}` ({g.timezone}), data intervals |\n"
        f"| Pool | `{pool_name(s.code)}` |\n| Enabled | {g.is_enabled} |\n"
        f"| Asset | `moomarkets://{s.code}/{g.dataset}` (updated by each complete run) |\n"
        + (f"| Depends on | {', '.join(f'`{u}`' for u in g.depends_on)} (a day loads once they loaded it;"
           f" waits up to {g.upstream_timeout}) |\n" if g.depends_on else "")
        + "\n"
        f"**Parameters**\n\n{params}\n\n"
        "Each run loads the trading days whose close falls in its data interval; reruns and "
        "backfills upsert, never duplicate. Managed by `moomarkets`; edit the group there, not here."
    )


def trading_day_timetable(pipe: GroupPipeline) -> TradingDayTimetable:
    """The group's cron in its timezone, with the market close that dates each run's trading day."""
    market_tz, close = pipe.source_class.trading_day_close(pipe.group.dataset, pipe.group.parameters)
    return TradingDayTimetable(pipe.group.schedule, pipe.group.timezone, market_timezone=market_tz, market_close=close)


def build_group_dag(spec: GroupSpec) -> DAG:
    """The DAG of one valid job group. Raises ConfigError when the group is invalid."""
    pipe = GroupPipeline.resolve(spec)  # validated, source class and dataset looked up once
    group, source = pipe.group, pipe.source_row
    dag_id = group.name
    url_env = settings.database_url  # resolved when tasks run, not at parse time

    with DAG(
        dag_id=dag_id,
        description=(group.description or f"{source.code} {group.dataset}")[:200],
        schedule=trading_day_timetable(pipe),
        start_date=datetime(START_DATE_YEAR, 1, 1, tzinfo=_tz(group.timezone)),
        catchup=False,
        max_active_runs=1,
        max_active_tasks=32,
        # a run may first wait for its upstreams (upstream_timeout), then load as long as any run
        dagrun_timeout=timedelta(hours=12) + (upstreams.timeout_of(pipe) if group.depends_on else timedelta(0)),
        default_args=DEFAULT_ARGS,
        tags=["moomarkets", f"source:{source.code}", f"dataset:{group.dataset}"],
        doc_md=_doc_md(pipe),
        is_paused_upon_creation=not group.is_enabled,
    ) as dag:

        @task(task_id="plan_units", retries=2, execution_timeout=timedelta(minutes=10))
        def plan_units(**context: Any) -> list[dict[str, Any]]:
            """Ask the source for the cheapest fetch units for this run's data interval."""
            from airflow.sdk.configuration import conf

            from moomarkets.pipeline import history

            url = url_env()
            try:  # a history run (conf {"history": {"from", "to"}}) plans that range, not its interval
                wanted = history.parse_conf(context["dag_run"].conf)
            except ConfigError as exc:
                raise AirflowFailException(str(exc)) from None
            if wanted is not None:
                interval = history.history_interval(pipe, wanted)
            else:
                interval = Interval(context["data_interval_start"], context["data_interval_end"])
            ok, reason = runner.group_is_runnable(url, group.name)
            if not ok:
                runner.record_skipped(
                    pipe, dag_id=dag_id, run_id=context["run_id"], url=url, reason=reason, interval=interval
                )
                raise AirflowSkipException(reason)
            if wanted is not None:
                return history.plan_units(
                    pipe, wanted, dag_id=dag_id, run_id=context["run_id"], url=url,
                    max_units=conf.getint("core", "max_map_length", fallback=1024),
                )
            return runner.plan_units(
                pipe,
                interval,
                dag_id=dag_id,
                run_id=context["run_id"],
                url=url,
                max_units=conf.getint("core", "max_map_length", fallback=1024),
            )

        @task(
            task_id="fetch_and_load",
            pool=pool_name(source.code),
            map_index_template="{{ unit_key }}",
            execution_timeout=timedelta(hours=1),
        )
        def fetch_and_load(unit: dict[str, Any], **context: Any) -> dict[str, Any]:
            """Fetch one unit through the source's shared rate limit and upsert it in one transaction."""
            from moomarkets.airflow import metrics

            get_current_context()["unit_key"] = unit["key"]  # shown as the map index in the UI
            credentials = get_credentials(source.conn_id)
            try:
                return runner.fetch_and_load(
                    pipe, unit, dag_id=dag_id, run_id=context["run_id"], credentials=credentials, url=url_env(),
                    report=lambda summary: metrics.emit_unit(pipe, summary),
                )
            except (ConfigError, SourceError) as exc:
                if isinstance(exc, ConfigError) or not exc.retryable:
                    raise AirflowFailException(scrub(str(exc), credentials.secret)) from None
                raise

        @task(
            task_id="restate_history",
            pool=pool_name(source.code),
            trigger_rule=TriggerRule.ALL_DONE,  # partial loads restate what they loaded too
            execution_timeout=timedelta(hours=1),
        )
        def restate_history(**context: Any) -> dict[str, Any]:
            """Bring stored history of codes with a corporate action in this run in line with the source."""
            from moomarkets.airflow import metrics
            from moomarkets.pipeline import restate

            credentials = get_credentials(source.conn_id)
            try:
                summary = restate.restate_run(
                    pipe, dag_id=dag_id, run_id=context["run_id"], credentials=credentials, url=url_env()
                )
                metrics.emit_restatements(pipe, summary)
                return summary
            except (ConfigError, SourceError) as exc:
                if isinstance(exc, restate.RestatementFailed):
                    metrics.emit_restatements(pipe, exc.summary)
                if isinstance(exc, ConfigError) or not exc.retryable:
                    raise AirflowFailException(scrub(str(exc), credentials.secret)) from None
                raise

        @task(task_id="check_loaded", trigger_rule=TriggerRule.ALL_DONE, retries=2,
              execution_timeout=timedelta(minutes=30))
        def check_loaded(**context: Any) -> dict[str, Any]:
            """Run the dataset's data checks on the rows this run loaded and record each result;
            fails (no retry) when a check of severity error failed, naming it with examples."""
            from moomarkets.airflow import metrics
            from moomarkets.pipeline import checks as data_checks

            summary = data_checks.run_checks(pipe, dag_id=dag_id, run_id=context["run_id"], url=url_env())
            metrics.emit_checks(pipe, summary)
            if summary["status"] == "skipped":
                raise AirflowSkipException("run skipped: group disabled or source inactive")
            if summary["errors"]:
                raise AirflowFailException("data checks failed: " + "; ".join(summary["errors"])[:3000])
            return summary

        asset = dataset_asset(source.code, group.dataset)

        @task(task_id="record_run", trigger_rule=TriggerRule.ALL_DONE, retries=2, outlets=[asset])
        def record_run(**context: Any) -> dict[str, Any]:
            """Close the run record: per-unit rows and failures, restatements and checks; the group's status."""
            from moomarkets.airflow import alerts, metrics

            # a step that returned nothing failed or crashed (a clean failure is recorded in the
            # warehouse too; a timeout or a DB error is known only here)
            unfinished = [step for step in ("restate_history", "check_loaded")
                          if context["ti"].xcom_pull(task_ids=step) is None]
            summary = runner.record_run(dag_id=dag_id, run_id=context["run_id"], url=url_env(), unfinished=unfinished)
            metrics.emit_run(pipe, summary)
            # failure / partial / check_errors alerts, before the run is failed below; once per run
            # and kind even when this task is retried (the alerts_sent ledger); a delivery that failed
            # or was cut off is re-sent by the watchdog (moomarkets_watchdog.resend_alerts)
            alerts.send_run_alerts(context, url=url_env(), group=group.name, dag_id=dag_id, run_id=context["run_id"],
                                   summary=summary, source_conn_id=source.conn_id)
            if summary["status"] == "skipped":
                raise AirflowSkipException("run skipped: group disabled or source inactive")
            if summary["status"] == "missing":
                raise AirflowFailException("plan_units did not record this run; see its log")
            if summary["status"] == "failed" and not summary["units_total"] and summary["problems"]:
                # never planned (an upstream did not load in time): the reason alone, no row counts
                raise AirflowFailException("; ".join(summary["problems"][:5]))
            if summary["units_failed"]:
                raise AirflowFailException(
                    f"{summary['units_failed']} of {summary['units_total']} unit(s) failed "
                    f"({', '.join(summary['failed_units'][:10])}); {summary['rows_loaded']} rows loaded by the others"
                )
            if summary["problems"]:  # rows loaded, but stale history or a failed data check
                raise AirflowFailException(
                    f"{summary['rows_loaded']} rows loaded, but: " + "; ".join(summary["problems"][:5])
                )
            context["outlet_events"][asset].extra = {
                "group": group.name,
                # None on a history run (no data interval): its range is in "history"
                "data_interval_start": _iso_or_none(context.get("data_interval_start")),
                "data_interval_end": _iso_or_none(context.get("data_interval_end")),
                # the trading days the run loaded (ISO dates; what a consumer should read first)
                "covers_from": summary.get("covers_from"),
                "covers_to": summary.get("covers_to"),
                **({"history": context["dag_run"].conf["history"]}
                   if isinstance(context["dag_run"].conf, dict) and "history" in context["dag_run"].conf else {}),
                "units": summary["units_total"],
                "rows_loaded": summary["rows_loaded"],
            }
            return summary

        units = plan_units()
        for wait in add_upstream_sensors(pipe):  # depends_on: wait_for_<upstream> >> plan_units
            wait >> units
        loaded = fetch_and_load.expand(unit=units)
        units >> loaded >> restate_history() >> check_loaded() >> record_run()
    return dag


def build_placeholder_dag(name: str, reason: str) -> DAG:
    """A paused, unscheduled DAG that shows why a group could not be built (keeps its history visible)."""
    with DAG(
        dag_id=name,
        description=f"CONFIG ERROR: {reason}"[:200],
        schedule=None,
        start_date=datetime(START_DATE_YEAR, 1, 1, tzinfo=_tz("UTC")),
        catchup=False,
        tags=["moomarkets", "config-error"],
        doc_md=f"## Job group `{name}` is misconfigured\n\n**{reason}**\n\nFix it with `moomarkets groups update {name} ...`"
        f" (check with `moomarkets groups validate {name}`).",
        is_paused_upon_creation=True,
        default_args={"owner": OWNER, "retries": 0},
    ) as dag:

        @task(task_id="report_config_error")
        def report_config_error() -> None:
            """Fail with the configuration error (this DAG only exists to show it)."""
            raise AirflowFailException(reason)

        report_config_error()
    return dag


def _iso_or_none(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _tz(name: str):
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def build_dags(namespace: dict[str, Any] | None = None) -> dict[str, DAG]:
    """Build one DAG per job group (or only the one a worker asked for) into ``namespace``.

    The warehouse is the ``moomarkets_warehouse`` Connection (unless ``$MOOMARKETS_DATABASE_URL``),
    here and in the tasks of this process; resolving it is bounded like the config read."""
    from moomarkets.airflow.warehouse import install

    install()
    only = get_parsing_context().dag_id
    loaded = load_specs(only=only)
    dags: dict[str, DAG] = {}
    for spec in loaded.specs:
        name = spec.group.name
        try:
            dag = build_group_dag(spec)
        except Exception as exc:  # one bad group must never stop the others
            reason = str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
            log.warning("moomarkets: job group %r is invalid and was not scheduled: %s", name, reason)
            try:
                dag = build_placeholder_dag(name, reason)
            except Exception:  # noqa: BLE001 - e.g. a name Airflow rejects as a dag_id
                log.exception("moomarkets: could not even build a placeholder for job group %r", name)
                continue
        dags[dag.dag_id] = dag
    if namespace is not None:
        namespace.update(dags)
    return dags
