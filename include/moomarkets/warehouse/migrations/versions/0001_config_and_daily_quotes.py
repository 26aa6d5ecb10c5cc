"""Config tables, daily quotes, run records.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE data_sources (
            id          serial PRIMARY KEY,
            code        text NOT NULL UNIQUE CHECK (code ~ '^[a-z][a-z0-9_]{0,39}$'),
            name        text NOT NULL,
            description text NOT NULL DEFAULT '',
            kind        text NOT NULL,
            conn_id     text NOT NULL,
            is_active   boolean NOT NULL DEFAULT true,
            config      jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at  timestamptz NOT NULL DEFAULT now(),
            updated_at  timestamptz NOT NULL DEFAULT now()
        );
        COMMENT ON TABLE data_sources IS
          'One row per market data API. Secrets live in the Airflow Connection named by conn_id, never here.';
        COMMENT ON COLUMN data_sources.config IS
          'Non-secret settings: rate_limit (e.g. "60/minute" or ["5/second","60/minute"]), max_concurrency, plan, ...';

        CREATE TABLE job_groups (
            id             serial PRIMARY KEY,
            name           text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
            description    text NOT NULL DEFAULT '',
            data_source_id integer NOT NULL REFERENCES data_sources(id) ON DELETE RESTRICT,
            dataset        text NOT NULL,
            schedule       text NOT NULL,
            timezone       text NOT NULL DEFAULT 'UTC',
            parameters     jsonb NOT NULL DEFAULT '{}'::jsonb,
            is_enabled     boolean NOT NULL DEFAULT true,
            created_at     timestamptz NOT NULL DEFAULT now(),
            updated_at     timestamptz NOT NULL DEFAULT now()
        );
        COMMENT ON TABLE job_groups IS 'One row per job group; the DAG factory builds one Airflow DAG (dag_id = name) per row.';

        CREATE TABLE daily_quotes (
            source            text NOT NULL,
            code              text NOT NULL,
            date              date NOT NULL,
            open              numeric,
            high              numeric,
            low               numeric,
            close             numeric,
            upper_limit       boolean,
            lower_limit       boolean,
            volume            numeric,
            turnover          numeric,
            adjustment_factor numeric,
            adj_open          numeric,
            adj_high          numeric,
            adj_low           numeric,
            adj_close         numeric,
            adj_volume        numeric,
            loaded_at         timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (source, code, date)
        );
        CREATE INDEX daily_quotes_date_idx ON daily_quotes (source, date);
        COMMENT ON TABLE daily_quotes IS
          'Daily OHLCV per issue. open..turnover are raw (as traded); adj_* are split-adjusted by the source; adjustment_factor is the factor effective on that date (1 = no event).';

        CREATE TABLE runs (
            id                  bigserial PRIMARY KEY,
            group_name          text NOT NULL,
            dag_id              text NOT NULL,
            run_id              text NOT NULL,
            data_interval_start timestamptz,
            data_interval_end   timestamptz,
            status              text NOT NULL DEFAULT 'running'
                                CHECK (status IN ('running', 'success', 'partial', 'failed', 'skipped')),
            units_total         integer NOT NULL DEFAULT 0,
            units_done          integer NOT NULL DEFAULT 0,
            units_failed        integer NOT NULL DEFAULT 0,
            rows_loaded         bigint NOT NULL DEFAULT 0,
            plan                jsonb NOT NULL DEFAULT '{}'::jsonb,
            error               text,
            started_at          timestamptz NOT NULL DEFAULT now(),
            finished_at         timestamptz,
            UNIQUE (dag_id, run_id)
        );
        CREATE INDEX runs_group_idx ON runs (group_name, started_at DESC);

        CREATE TABLE run_units (
            run_pk      bigint NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            unit_key    text NOT NULL,
            unit        jsonb NOT NULL,
            status      text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'running', 'success', 'failed')),
            rows        integer NOT NULL DEFAULT 0,
            requests    integer NOT NULL DEFAULT 0,
            attempts    integer NOT NULL DEFAULT 0,
            error       text,
            started_at  timestamptz,
            finished_at timestamptz,
            PRIMARY KEY (run_pk, unit_key)
        );

        CREATE VIEW job_group_status AS
        SELECT g.name,
               g.is_enabled,
               r.status        AS last_run_status,
               r.run_id        AS last_run_id,
               r.started_at    AS last_run_started_at,
               r.finished_at   AS last_run_finished_at,
               r.units_total,
               r.units_done,
               r.units_failed,
               r.rows_loaded,
               r.error         AS last_error
        FROM job_groups g
        LEFT JOIN LATERAL (
            SELECT * FROM runs WHERE runs.group_name = g.name ORDER BY started_at DESC, id DESC LIMIT 1
        ) r ON true;
        """
    )


def downgrade() -> None:
    op.execute(
        "DROP VIEW IF EXISTS job_group_status; DROP TABLE IF EXISTS run_units, runs, daily_quotes,"
        " job_groups, data_sources;"
    )
