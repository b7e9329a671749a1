"""initial schema: devices, identity, config, commands, telemetry

Revision ID: 0001
Revises:
Create Date: 2026-11-24 20:32:22.215131
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('apitoken',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('apitoken', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_apitoken_token_hash'), ['token_hash'], unique=True)

    op.create_table('configprofile',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('target', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('scope', 'target', name='uq_config_scope_target')
    )
    op.create_table('device',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uid', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('pole_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('district', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('group_name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.Column('board', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('secret_enc', sa.LargeBinary(), nullable=False),
    sa.Column('key_version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=True),
    sa.Column('fw_version', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('applied_config_version', sa.Integer(), nullable=False),
    sa.Column('last_status', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_device_district'), ['district'], unique=False)
        batch_op.create_index(batch_op.f('ix_device_group_name'), ['group_name'], unique=False)
        batch_op.create_index(batch_op.f('ix_device_last_seen'), ['last_seen'], unique=False)
        batch_op.create_index(batch_op.f('ix_device_pole_id'), ['pole_id'], unique=True)
        batch_op.create_index(batch_op.f('ix_device_uid'), ['uid'], unique=True)

    op.create_table('devicenonce',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
              nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('nonce', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('ts', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('device_id', 'nonce', name='uq_nonce_device')
    )
    with op.batch_alter_table('devicenonce', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_devicenonce_device_id'), ['device_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_devicenonce_ts'), ['ts'], unique=False)

    op.create_table('reading',
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('ts', sa.Float(), nullable=False),
    sa.Column('metric', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('received_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('device_id', 'seq')
    )
    with op.batch_alter_table('reading', schema=None) as batch_op:
        batch_op.create_index('ix_reading_metric_ts', ['metric', 'ts'], unique=False)
        batch_op.create_index('ix_reading_ts', ['ts'], unique=False)

    op.create_table('command',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('type', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('args', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('acked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('result', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['device.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('command', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_command_device_id'), ['device_id'], unique=False)

    op.create_table('deviceevent',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['device.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('deviceevent', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deviceevent_device_id'), ['device_id'], unique=False)

    op.create_table('enrollment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['device_id'], ['device.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('enrollment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_enrollment_code_hash'), ['code_hash'], unique=True)
        batch_op.create_index(batch_op.f('ix_enrollment_device_id'), ['device_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('enrollment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_enrollment_device_id'))
        batch_op.drop_index(batch_op.f('ix_enrollment_code_hash'))

    op.drop_table('enrollment')
    with op.batch_alter_table('deviceevent', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deviceevent_device_id'))

    op.drop_table('deviceevent')
    with op.batch_alter_table('command', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_command_device_id'))

    op.drop_table('command')
    with op.batch_alter_table('reading', schema=None) as batch_op:
        batch_op.drop_index('ix_reading_ts')
        batch_op.drop_index('ix_reading_metric_ts')

    op.drop_table('reading')
    with op.batch_alter_table('devicenonce', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_devicenonce_ts'))
        batch_op.drop_index(batch_op.f('ix_devicenonce_device_id'))

    op.drop_table('devicenonce')
    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_device_uid'))
        batch_op.drop_index(batch_op.f('ix_device_pole_id'))
        batch_op.drop_index(batch_op.f('ix_device_last_seen'))
        batch_op.drop_index(batch_op.f('ix_device_group_name'))
        batch_op.drop_index(batch_op.f('ix_device_district'))

    op.drop_table('device')
    op.drop_table('configprofile')
    with op.batch_alter_table('apitoken', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_apitoken_token_hash'))

    op.drop_table('apitoken')
