"""audit trail of operator actions

An auditrecord table: who did what to which target, when, and the outcome (ok, or the
refusal's status and reason), with a small JSON detail.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 04:30:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('auditrecord',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
              nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('token_id', sa.Integer(), nullable=True),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('target', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('status', sa.Integer(), nullable=True),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('auditrecord', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auditrecord_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_auditrecord_action'), ['action'], unique=False)
        batch_op.create_index('ix_auditrecord_actor_id', ['actor', 'id'], unique=False)
        batch_op.create_index('ix_auditrecord_target_id', ['target', 'id'], unique=False)


def downgrade() -> None:
    op.drop_table('auditrecord')
