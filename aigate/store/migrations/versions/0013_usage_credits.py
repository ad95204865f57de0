"""usage-based credits: exact quantities in millionths, ledger charges, holds, call charges

Balances and ledger amounts become integers of millionths of a credit (a credit of 1 is
1000000), so decimal assets stay exact on SQLite and PostgreSQL alike; the renamed
columns make any code still reading whole credits fail loudly instead of misreading.

Revision ID: 0013
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0015"
branch_labels = None
depends_on = None

SCALE = 1_000_000


def upgrade() -> None:
    # RENAME COLUMN is the same statement on PostgreSQL and SQLite (3.25+)
    op.execute("ALTER TABLE user_assets RENAME COLUMN quantity TO quantity_micros")
    op.execute(f"UPDATE user_assets SET quantity_micros = quantity_micros * {SCALE}")
    op.execute("ALTER TABLE asset_ledger RENAME COLUMN delta TO delta_micros")
    op.execute("ALTER TABLE asset_ledger RENAME COLUMN balance_after TO balance_micros")
    op.execute(
        f"UPDATE asset_ledger SET delta_micros = delta_micros * {SCALE}, balance_micros = balance_micros * {SCALE}"
    )
    op.add_column("asset_ledger", sa.Column("charge_micros", sa.BigInteger(), nullable=True))
    op.add_column("ai_requests", sa.Column("credits", sa.JSON(), nullable=True))
    op.create_table(
        "asset_holds",
        sa.Column("request_id", sa.String(length=24), nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("asset", sa.String(length=100), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("holder", sa.String(length=100), nullable=False),
        sa.Column("lease_until_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_asset_holds")),
    )
    op.create_index("ix_asset_holds_lease", "asset_holds", ["lease_until_ms"])
    op.create_index("ix_asset_holds_user", "asset_holds", ["app_id", "user_id"])


def downgrade() -> None:
    op.drop_index("ix_asset_holds_user", table_name="asset_holds")
    op.drop_index("ix_asset_holds_lease", table_name="asset_holds")
    op.drop_table("asset_holds")
    op.execute("ALTER TABLE ai_requests DROP COLUMN credits")  # SQLite 3.35+ and PostgreSQL
    op.execute("ALTER TABLE asset_ledger DROP COLUMN charge_micros")
    # whole credits again: fractions of a credit are dropped
    op.execute(
        f"UPDATE asset_ledger SET delta_micros = delta_micros / {SCALE}, balance_micros = balance_micros / {SCALE}"
    )
    op.execute("ALTER TABLE asset_ledger RENAME COLUMN balance_micros TO balance_after")
    op.execute("ALTER TABLE asset_ledger RENAME COLUMN delta_micros TO delta")
    op.execute(f"UPDATE user_assets SET quantity_micros = quantity_micros / {SCALE}")
    op.execute("ALTER TABLE user_assets RENAME COLUMN quantity_micros TO quantity")
