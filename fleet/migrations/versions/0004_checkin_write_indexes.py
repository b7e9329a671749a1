"""drop two indexes every check-in paid for: device.last_seen and devicenonce.device_id

A check-in updates device.last_seen; with the column indexed, every update rewrote every index
of the device row (no heap-only update). The offline counts and listings it served scan the
device table, which is small. devicenonce.device_id is the leading column of the unique
(device_id, nonce) key already.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 23:50:00
"""

from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.drop_index('ix_device_last_seen')
    with op.batch_alter_table('devicenonce', schema=None) as batch_op:
        batch_op.drop_index('ix_devicenonce_device_id')


def downgrade() -> None:
    with op.batch_alter_table('devicenonce', schema=None) as batch_op:
        batch_op.create_index('ix_devicenonce_device_id', ['device_id'], unique=False)
    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.create_index('ix_device_last_seen', ['last_seen'], unique=False)
