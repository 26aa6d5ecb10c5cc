"""Document the HolDiv values on the trading_calendar table itself.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        COMMENT ON TABLE trading_calendar IS
          'Exchange calendar from J-Quants /markets/calendar, one row per calendar day. hol_div is J-Quants HolDiv: 0 = non-business day, 1 = business day, 2 = half-day trading (business day), 3 = holiday with derivatives trading only (cash equities closed). Cash-equity business days are hol_div 1 and 2.';
        """
    )


def downgrade() -> None:
    op.execute("COMMENT ON TABLE trading_calendar IS NULL;")
