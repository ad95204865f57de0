"""stored Responses API responses: previous_response_id, GET and DELETE /v1/responses/{id}

Revision ID: 0015
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "relay_responses",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("conversation", sa.JSON(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_relay_responses")),
    )
    op.create_index("ix_relay_responses_created_ms", "relay_responses", ["created_ms"])


def downgrade() -> None:
    op.drop_index("ix_relay_responses_created_ms", table_name="relay_responses")
    op.drop_table("relay_responses")
