"""J-Quants datasets (listed info, statements, calendar, indices) and corporate actions.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE listed_info (
            source          text NOT NULL,
            code            text NOT NULL,
            date            date NOT NULL,
            company_name    text,
            company_name_en text,
            sector17_code   text,
            sector17_name   text,
            sector33_code   text,
            sector33_name   text,
            scale_category  text,
            market_code     text,
            market_name     text,
            margin_code     text,
            margin_name     text,
            loaded_at       timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (source, code, date)
        );
        COMMENT ON TABLE listed_info IS
          'Issue master as published for date (the date the listing data is valid for). An issue absent on a date is not listed then.';

        CREATE TABLE fin_summary (
            source            text NOT NULL,
            disclosure_number text NOT NULL,
            code              text NOT NULL,
            disclosed_date    date NOT NULL,
            disclosed_time    text,
            document_type     text,
            fiscal_period     text,
            fiscal_year_start date,
            fiscal_year_end   date,
            period_end        date,
            net_sales         numeric,
            operating_profit  numeric,
            ordinary_profit   numeric,
            profit            numeric,
            eps               numeric,
            payload           jsonb NOT NULL,
            loaded_at         timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (source, disclosure_number)
        );
        CREATE INDEX fin_summary_code_idx ON fin_summary (source, code, disclosed_date);
        COMMENT ON TABLE fin_summary IS
          'Every financial statement disclosure, keyed on its disclosure number (several can share code and date: corrections, forecasts). payload keeps every field as published.';

        CREATE TABLE trading_calendar (
            source  text NOT NULL,
            date    date NOT NULL,
            hol_div smallint NOT NULL,
            loaded_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (source, date)
        );
        COMMENT ON COLUMN trading_calendar.hol_div IS
          'J-Quants HolDiv: 0 = non-business day, 1 = business day, 2 = half-day trading (business day), 3 = holiday with derivatives trading only (cash equities closed).';

        CREATE TABLE index_quotes (
            source text NOT NULL,
            code   text NOT NULL,
            date   date NOT NULL,
            open   numeric,
            high   numeric,
            low    numeric,
            close  numeric,
            loaded_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (source, code, date)
        );
        COMMENT ON TABLE index_quotes IS 'Daily OHLC of indices (TOPIX = code 0000 at J-Quants).';

        CREATE TABLE corporate_actions (
            source text NOT NULL,
            code   text NOT NULL,
            date   date NOT NULL,
            action text NOT NULL CHECK (action IN ('dividend', 'split')),
            value  numeric NOT NULL,
            loaded_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (source, code, date, action)
        );
        COMMENT ON COLUMN corporate_actions.value IS
          'dividend: cash amount per share in the listing currency; split: new shares per old share (2 = 2-for-1, 0.5 = 1-for-2 reverse split).';
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS corporate_actions, index_quotes, trading_calendar, fin_summary, listed_info;")
