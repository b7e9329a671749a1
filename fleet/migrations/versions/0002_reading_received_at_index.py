"""reading.received_at index, so the live telemetry stream polls by cursor without a scan

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 21:00:00
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_reading_received_at", "reading", ["received_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_reading_received_at", table_name="reading")
