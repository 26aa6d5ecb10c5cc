"""Group dependencies, alerts and metrics: the columns and tables they keep in the warehouse.

- ``job_groups.depends_on`` (upstream group names), ``job_groups.upstream_timeout`` (how long a run
  waits for its upstreams before it fails), ``job_groups.alerts`` and ``data_sources.alerts`` (alert
  settings; a group's keys override its source's defaults).
- ``runs.covers_from`` / ``runs.covers_to``: the trading days a run loads (planned from its data
  interval, or its history range; a calendar run also covers the days ahead it loads). A downstream
  run waits until a *successful* upstream run covers each of its trading days. Rows from before this
  revision are filled in by the same rule (their group's source kind, dataset and parameters, the
  source's ``covered_days`` over the stored interval); a run whose group or source kind is unknown
  keeps NULL and covers nothing.
- ``run_units.http_429`` / ``http_5xx`` / ``wait_seconds``: what each unit met on the way (for the
  metrics and the Health page), summed over the unit's attempts; ``requests`` was already there.
- ``restatements.http_429`` / ``http_5xx`` / ``wait_seconds``: the same for each code's history
  re-fetch (its ``requests`` was already there), so the Health page counts restatement requests.
- ``dependency_waits``: one row per downstream run and upstream while it waits, so the group page
  and ``moomarkets groups show`` can say what a run is waiting for (then satisfied, timed out, or
  abandoned when the run ended otherwise).
- ``alerts_sent``: one row per (group, kind, key, target), so an alert goes out once per run and
  kind (or once per late interval), never once per retry; it keeps the rendered message and the
  attempts, so the watchdog can re-send a failed or abandoned delivery.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE job_groups
          ADD COLUMN IF NOT EXISTS depends_on text[] NOT NULL DEFAULT '{}',
          ADD COLUMN IF NOT EXISTS upstream_timeout text NOT NULL DEFAULT '6h',
          ADD COLUMN IF NOT EXISTS alerts jsonb NOT NULL DEFAULT '{}'::jsonb;
        COMMENT ON COLUMN job_groups.depends_on IS
          'Upstream job group names: a run loads trading day D only after every upstream completely loaded D.';
        COMMENT ON COLUMN job_groups.upstream_timeout IS
          'How long a run waits for its upstreams (e.g. 6h) before it fails naming the upstream and the day.';
        COMMENT ON COLUMN job_groups.alerts IS
          'Alert settings (kinds, late_after, targets naming Airflow Connections); override the source''s.';

        ALTER TABLE data_sources
          ADD COLUMN IF NOT EXISTS alerts jsonb NOT NULL DEFAULT '{}'::jsonb;
        COMMENT ON COLUMN data_sources.alerts IS
          'Default alert settings for the source''s job groups (no secrets: targets name Airflow Connections).';

        ALTER TABLE runs
          ADD COLUMN IF NOT EXISTS covers_from date,
          ADD COLUMN IF NOT EXISTS covers_to date;
        COMMENT ON COLUMN runs.covers_from IS 'First trading day the run loads (with covers_to: what a dependency waits for).';
        COMMENT ON COLUMN runs.covers_to IS 'Last trading day the run loads.';
        CREATE INDEX IF NOT EXISTS runs_covers_idx ON runs (group_name, status, covers_to);

        ALTER TABLE run_units
          ADD COLUMN IF NOT EXISTS http_429 integer NOT NULL DEFAULT 0,
          ADD COLUMN IF NOT EXISTS http_5xx integer NOT NULL DEFAULT 0,
          ADD COLUMN IF NOT EXISTS wait_seconds double precision NOT NULL DEFAULT 0;

        ALTER TABLE restatements
          ADD COLUMN IF NOT EXISTS http_429 integer NOT NULL DEFAULT 0,
          ADD COLUMN IF NOT EXISTS http_5xx integer NOT NULL DEFAULT 0,
          ADD COLUMN IF NOT EXISTS wait_seconds double precision NOT NULL DEFAULT 0;

        CREATE TABLE IF NOT EXISTS dependency_waits (
            dag_id      text NOT NULL,
            run_id      text NOT NULL,
            group_name  text NOT NULL,
            upstream    text NOT NULL,
            trading_day date,
            status      text NOT NULL DEFAULT 'waiting'
                        CHECK (status IN ('waiting', 'satisfied', 'timed_out', 'abandoned')),
            message     text NOT NULL DEFAULT '',
            since       timestamptz NOT NULL DEFAULT now(),
            updated_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (dag_id, run_id, upstream)
        );
        CREATE INDEX IF NOT EXISTS dependency_waits_group_idx ON dependency_waits (group_name, status, since DESC);
        COMMENT ON TABLE dependency_waits IS
          'What a downstream run waits for: the upstream group and the first trading day it has not completely loaded.';

        CREATE TABLE IF NOT EXISTS alerts_sent (
            id          bigserial PRIMARY KEY,
            group_name  text NOT NULL,
            kind        text NOT NULL CHECK (kind IN ('failure', 'partial', 'check_errors', 'late')),
            key         text NOT NULL,
            target      text NOT NULL,
            dag_id      text,
            run_id      text,
            status      text NOT NULL DEFAULT 'sending' CHECK (status IN ('sending', 'sent', 'failed')),
            error       text,
            message     jsonb NOT NULL DEFAULT '{}'::jsonb,
            attempts    integer NOT NULL DEFAULT 1,
            created_at  timestamptz NOT NULL DEFAULT now(),
            claimed_at  timestamptz NOT NULL DEFAULT now(),
            sent_at     timestamptz,
            UNIQUE (group_name, kind, key, target)
        );
        CREATE INDEX IF NOT EXISTS alerts_sent_pending_idx ON alerts_sent (claimed_at) WHERE status <> 'sent';
        COMMENT ON TABLE alerts_sent IS
          'Alerts delivered: one per group, kind, key (the run id, or the late trading day) and target.';
        COMMENT ON COLUMN alerts_sent.message IS
          'The rendered alert (subject, text, html, payload) and its target, so the watchdog can re-send it; no secrets.';
        COMMENT ON COLUMN alerts_sent.attempts IS 'Delivery attempts so far (the watchdog stops re-sending at 3).';
        """
    )

    _backfill_covers()


def _backfill_covers() -> None:
    """``covers_from`` / ``covers_to`` of the runs from before this revision, as ``plan_units``
    records them now: the source class's ``covered_days`` over the run's stored interval (a history
    run stores its range's interval), with its group's dataset and parameters. Runs of an unknown
    group or source kind, or whose days cannot be worked out, stay NULL (they cover nothing)."""
    from moomarkets.sources.base import Interval
    from moomarkets.sources.registry import get_source_class

    bind = op.get_bind()
    rows = bind.execute(text(
        """
        SELECT r.id, r.data_interval_start AS start, r.data_interval_end AS "end", s.kind, g.dataset, g.parameters
          FROM runs r JOIN job_groups g ON g.name = r.group_name JOIN data_sources s ON s.id = g.data_source_id
         WHERE r.covers_from IS NULL AND r.data_interval_start IS NOT NULL AND r.data_interval_end IS NOT NULL
        """
    )).mappings().all()
    update = text("UPDATE runs SET covers_from = :first, covers_to = :last WHERE id = :id")
    for row in rows:
        try:
            covers = get_source_class(row["kind"]).covered_days(
                row["dataset"], dict(row["parameters"] or {}), Interval(row["start"], row["end"]))
        except Exception:  # noqa: BLE001, S112 - an unknown kind or odd parameters: leave it NULL
            continue
        if covers is not None:
            bind.execute(update, {"first": covers[0], "last": covers[1], "id": row["id"]})


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE IF EXISTS alerts_sent, dependency_waits;
        DROP INDEX IF EXISTS runs_covers_idx;
        ALTER TABLE run_units DROP COLUMN IF EXISTS http_429, DROP COLUMN IF EXISTS http_5xx,
                              DROP COLUMN IF EXISTS wait_seconds;
        ALTER TABLE restatements DROP COLUMN IF EXISTS http_429, DROP COLUMN IF EXISTS http_5xx,
                                 DROP COLUMN IF EXISTS wait_seconds;
        ALTER TABLE runs DROP COLUMN IF EXISTS covers_from, DROP COLUMN IF EXISTS covers_to;
        ALTER TABLE data_sources DROP COLUMN IF EXISTS alerts;
        ALTER TABLE job_groups DROP COLUMN IF EXISTS depends_on, DROP COLUMN IF EXISTS upstream_timeout,
                               DROP COLUMN IF EXISTS alerts;
        """
    )
