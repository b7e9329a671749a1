"""rollouts that never hang: deadlines, precedence, per-node deadline clock

rollout.deadlines (seconds per in-progress state), rollout.priority (which of two overlapping
rollouts a shared node is offered first), rollout.swept_at (when a request last looked for
overdue nodes); updatestatus.since (when the current state's deadline began) and
updatestatus.reported (the last state the node itself reported).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 04:45:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('rollout', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deadlines', sa.JSON(), nullable=False,
                                      server_default=sa.text("'{}'")))
        batch_op.add_column(sa.Column('priority', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('swept_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('updatestatus', schema=None) as batch_op:
        batch_op.add_column(sa.Column('since', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('reported', sqlmodel.sql.sqltypes.AutoString(length=16),
                                      nullable=False, server_default=''))
    op.execute("UPDATE updatestatus SET since = updated_at, reported = state "
               "WHERE state <> 'offered'")
    op.execute("UPDATE updatestatus SET since = updated_at WHERE since IS NULL")
    with op.batch_alter_table('updatestatus', schema=None) as batch_op:
        batch_op.alter_column('since', existing_type=sa.DateTime(timezone=True),
                              nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('updatestatus', schema=None) as batch_op:
        batch_op.drop_column('reported')
        batch_op.drop_column('since')
    with op.batch_alter_table('rollout', schema=None) as batch_op:
        batch_op.drop_column('swept_at')
        batch_op.drop_column('priority')
        batch_op.drop_column('deadlines')
