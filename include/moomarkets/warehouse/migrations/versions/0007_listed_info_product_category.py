"""listed_info: the product category (code and name), so stocks and ETFs read apart.

J-Quants /equities/master serves ``ProdCat`` (jpx-jquants.com/en/spec/eq-master; codes and names:
/en/spec/eq-master/product-category, e.g. 011 Domestic Stocks, 014 ETFs). Nullable: rows loaded
before this revision, and sources without it, have none.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE listed_info
          ADD COLUMN IF NOT EXISTS product_category text,
          ADD COLUMN IF NOT EXISTS product_category_name text;
        COMMENT ON COLUMN listed_info.product_category IS
          'J-Quants ProdCat: 011 domestic stock, 012 preferred equity, 013 REIT, 014 ETF, 021-024 foreign issues.';
        COMMENT ON COLUMN listed_info.product_category_name IS
          'Name of product_category (J-Quants spec eq-master/product-category).';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE listed_info
          DROP COLUMN IF EXISTS product_category_name,
          DROP COLUMN IF EXISTS product_category;
        """
    )
