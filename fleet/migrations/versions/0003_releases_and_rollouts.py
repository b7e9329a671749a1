"""releases, signing keys, rollouts and per-node update state

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 20:41:33.664550
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('release',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('boards', sa.JSON(), nullable=False),
    sa.Column('expires', sa.Integer(), nullable=False),
    sa.Column('key_id', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('envelope', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('bundle_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('bundle_size', sa.BigInteger(), nullable=False),
    sa.Column('notes', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('release', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_release_sequence'), ['sequence'], unique=True)

    op.create_table('signingkey',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key_id', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('public_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('signingkey', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signingkey_key_id'), ['key_id'], unique=True)

    op.create_table('rollout',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('release_id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('target', sa.JSON(), nullable=False),
    sa.Column('waves', sa.JSON(), nullable=False),
    sa.Column('cutoffs', sa.JSON(), nullable=False),
    sa.Column('sizes', sa.JSON(), nullable=False),
    sa.Column('wave', sa.Integer(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('state_reason', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('failure_threshold_pct', sa.Float(), nullable=False),
    sa.Column('success_threshold_pct', sa.Float(), nullable=True),
    sa.Column('window', sa.JSON(), nullable=True),
    sa.Column('allow_downgrade', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.ForeignKeyConstraint(['release_id'], ['release.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('rollout', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rollout_release_id'), ['release_id'], unique=False)

    op.create_table('updateevent',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rollout_id', sa.Integer(), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['device.id'], ),
    sa.ForeignKeyConstraint(['rollout_id'], ['rollout.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('updateevent', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_updateevent_device_id'), ['device_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_updateevent_rollout_id'), ['rollout_id'], unique=False)

    op.create_table('updatestatus',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rollout_id', sa.Integer(), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('wave', sa.Integer(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['device.id'], ),
    sa.ForeignKeyConstraint(['rollout_id'], ['rollout.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('rollout_id', 'device_id', name='uq_update_rollout_dev')
    )
    with op.batch_alter_table('updatestatus', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_updatestatus_device_id'), ['device_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_updatestatus_rollout_id'), ['rollout_id'],
                              unique=False)



def downgrade() -> None:
    with op.batch_alter_table('updatestatus', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_updatestatus_rollout_id'))
        batch_op.drop_index(batch_op.f('ix_updatestatus_device_id'))

    op.drop_table('updatestatus')
    with op.batch_alter_table('updateevent', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_updateevent_rollout_id'))
        batch_op.drop_index(batch_op.f('ix_updateevent_device_id'))

    op.drop_table('updateevent')
    with op.batch_alter_table('rollout', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rollout_release_id'))

    op.drop_table('rollout')
    with op.batch_alter_table('signingkey', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signingkey_key_id'))

    op.drop_table('signingkey')
    with op.batch_alter_table('release', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_release_sequence'))

    op.drop_table('release')
