"""check results: what each data check found in the rows of a run's interval.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE check_results (
            id          bigserial PRIMARY KEY,
            group_name  text NOT NULL,
            dag_id      text NOT NULL,
            run_id      text NOT NULL,
            dataset     text NOT NULL,
            check_name  text NOT NULL,
            severity    text NOT NULL CHECK (severity IN ('error', 'warn')),
            passed      boolean NOT NULL,
            failed      integer NOT NULL DEFAULT 0,
            checked     integer NOT NULL DEFAULT 0,
            sample      jsonb NOT NULL DEFAULT '[]'::jsonb,
            days        date[] NOT NULL DEFAULT '{}',
            failed_days date[] NOT NULL DEFAULT '{}',
            thresholds  jsonb NOT NULL DEFAULT '{}'::jsonb,
            message     text NOT NULL DEFAULT '',
            elapsed_ms  integer,
            checked_at  timestamptz NOT NULL DEFAULT now(),
            UNIQUE (dag_id, run_id, check_name)
        );
        CREATE INDEX check_results_group_idx ON check_results (group_name, checked_at DESC);
        COMMENT ON TABLE check_results IS
          'One row per data check of a run (rerunning the checks replaces them): failed = failing rows, issue-days'
          ' or days, checked = how many were looked at, sample = some failing keys with why, days = the trading'
          ' days checked, failed_days = those with a failure. A failed check of severity error fails the run after its rows are loaded.';

        -- completeness asks "which issues were listed on day D" and "is D loaded": by date, not by code
        CREATE INDEX IF NOT EXISTS listed_info_date_idx ON listed_info (source, date);
        """
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS listed_info_date_idx; DROP TABLE IF EXISTS check_results;")
