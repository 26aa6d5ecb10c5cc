"""adjusted as of and restatements: when each row's adjusted values were asked for, and the record
of every restatement after a corporate action.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE daily_quotes ADD COLUMN adjusted_as_of timestamptz;
        COMMENT ON COLUMN daily_quotes.adjusted_as_of IS
          'When the source was asked for this row''s basis-dependent values (adj_*, adjustment_factor and,'
          ' for sources that serve split-adjusted "raw" prices such as Yahoo, open..close and volume). They'
          ' reflect every corporate action the source knew then, so they are only overwritten by a fetch at'
          ' least as recent. NULL: loaded before this column existed (any newer fetch wins).';

        CREATE TABLE restatements (
            id             bigserial PRIMARY KEY,
            source         text NOT NULL,
            dataset        text NOT NULL DEFAULT 'daily_quotes',
            code           text NOT NULL,
            event_date     date,
            action         text NOT NULL,
            factor         numeric,
            dag_id         text,
            run_id         text,
            status         text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
            rows_changed   integer NOT NULL DEFAULT 0,
            requests       integer NOT NULL DEFAULT 0,
            error          text,
            detected_as_of timestamptz,
            span_start     date,
            span_end       date,
            detected_at    timestamptz NOT NULL DEFAULT now(),
            finished_at    timestamptz
        );
        CREATE UNIQUE INDEX restatements_event_run_uq
            ON restatements (source, dataset, code, event_date, action, dag_id, run_id);
        CREATE INDEX restatements_run_idx ON restatements (dag_id, run_id);
        CREATE INDEX restatements_code_idx ON restatements (source, code, detected_at DESC);
        COMMENT ON TABLE restatements IS
          'Corporate actions seen by a load (J-Quants AdjFactor <> 1, Yahoo splits and dividends) and the'
          ' re-fetch of the code''s stored history that followed (action manual: moomarkets restate).'
          ' rows_changed and requests are per code (on the code''s first event of the run).';
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS restatements; ALTER TABLE daily_quotes DROP COLUMN IF EXISTS adjusted_as_of;")
