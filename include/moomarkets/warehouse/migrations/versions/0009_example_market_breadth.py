"""Tables of the example user DAG ``example_market_breadth`` (dags/example_market_breadth.py).

- ``analysis_daily_returns``: per code and trading day, the close-to-close return on adjusted
  closes (``adj_close`` over the code's previous stored close), so splits do not show as crashes.
- ``analysis_market_breadth``: per trading day, advancers / decliners / unchanged among the issues
  with a return, the advance/decline ratio and the mean and median return.

They belong to the example, not to the loaders: nothing in the ingest reads them.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS analysis_daily_returns (
            source          text NOT NULL,
            code            text NOT NULL,
            date            date NOT NULL,
            prev_date       date NOT NULL,
            adj_close       numeric NOT NULL,
            prev_adj_close  numeric NOT NULL,
            daily_return    double precision NOT NULL,
            computed_at     timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (source, date, code)
        );
        COMMENT ON TABLE analysis_daily_returns IS
          'Example user DAG: close-to-close return per code and day on adjusted closes (adj_close / previous adj_close - 1).';

        CREATE TABLE IF NOT EXISTS analysis_market_breadth (
            source                text NOT NULL,
            date                  date NOT NULL,
            issues                integer NOT NULL,
            advancers             integer NOT NULL,
            decliners             integer NOT NULL,
            unchanged             integer NOT NULL,
            advance_decline_ratio double precision,
            mean_return           double precision NOT NULL,
            median_return         double precision NOT NULL,
            computed_at           timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (source, date)
        );
        COMMENT ON TABLE analysis_market_breadth IS
          'Example user DAG: advancers, decliners, unchanged among the issues with a daily return; ratio NULL without decliners.';
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS analysis_market_breadth, analysis_daily_returns")
