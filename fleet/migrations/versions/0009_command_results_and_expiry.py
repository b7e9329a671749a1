"""commands with results and an expiry

command.expires_at (a command not acknowledged by then is expired and no longer delivered),
command.ok (the node's answer: carried out or refused) and command.reason (why it refused).
Existing commands expire a day after they were queued (the default lifetime), so one queued
long ago for a node that never came back is not carried out after the upgrade; an
acknowledgement already recorded keeps its result, and its answer is read from it ("failed"
was the one result the server wrote for a refusal).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 05:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('command', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('ok', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=200),
                                      nullable=False, server_default=''))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("UPDATE command SET expires_at = created_at + interval '1 day'")
    else:
        # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff': a day later, the fraction kept
        op.execute("UPDATE command SET expires_at = datetime(created_at, '+1 day') || "
                   "CASE WHEN substr(created_at, 20, 1) = '.' THEN substr(created_at, 20, 7) "
                   "ELSE '' END")
    op.execute("UPDATE command SET ok = (result <> 'failed') WHERE acked_at IS NOT NULL")
    with op.batch_alter_table('command', schema=None) as batch_op:
        batch_op.alter_column('expires_at', existing_type=sa.DateTime(timezone=True),
                              nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('command', schema=None) as batch_op:
        batch_op.drop_column('reason')
        batch_op.drop_column('ok')
        batch_op.drop_column('expires_at')
