"""verifications: one row per ``moomarkets verify`` (or the page's Verify button), and what its repair changed

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE verifications (
            id             bigserial PRIMARY KEY,
            group_name     text NOT NULL,
            source         text NOT NULL,
            dataset        text NOT NULL,
            date_from      date NOT NULL,
            date_to        date NOT NULL,
            sample         integer,
            seed           bigint,
            repair         boolean NOT NULL DEFAULT false,
            delete_extra   boolean NOT NULL DEFAULT false,
            status         text NOT NULL DEFAULT 'running'
                           CHECK (status IN ('running', 'equal', 'different', 'repaired', 'failed')),
            units          integer NOT NULL DEFAULT 0,
            units_failed   integer NOT NULL DEFAULT 0,
            requests       integer NOT NULL DEFAULT 0,
            source_rows    bigint NOT NULL DEFAULT 0,
            missing        bigint NOT NULL DEFAULT 0,
            extra          bigint NOT NULL DEFAULT 0,
            mismatched     bigint NOT NULL DEFAULT 0,
            stale_adjusted bigint NOT NULL DEFAULT 0,
            repaired       bigint NOT NULL DEFAULT 0,
            deleted        bigint NOT NULL DEFAULT 0,
            via            text NOT NULL DEFAULT 'cli',
            error          text,
            details        jsonb NOT NULL DEFAULT '{}'::jsonb,
            started_at     timestamptz NOT NULL DEFAULT now(),
            finished_at    timestamptz
        );
        CREATE INDEX verifications_group_idx ON verifications (group_name, started_at DESC);
        COMMENT ON TABLE verifications IS
          'One row per verify of a job group''s date range against its source: missing (in the source, not in the warehouse), extra (in the warehouse within the fetched scope, not in the source), mismatched (a non-adjusted value differs), stale_adjusted (only adj_* columns differ), and the rows a repair upserted (repaired) or, with --delete-extra, deleted (deleted), counted in the same transaction as each unit''s change. details holds a capped sample of the differences per unit.';
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS verifications;")
