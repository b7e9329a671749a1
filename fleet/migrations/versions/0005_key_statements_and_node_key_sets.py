"""key statements (the rotation/revocation chain) and each node's reported key set

A keystatement table holding the signed statements by serial; on signingkey the serial of the
statement that introduced or revoked a key; on device the key-set serial the node last reported
and its last refusal of a statement.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 19:30:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('keystatement',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('serial', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('key_id', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('envelope', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('keystatement', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_keystatement_serial'), ['serial'], unique=True)

    with op.batch_alter_table('signingkey', schema=None) as batch_op:
        batch_op.add_column(sa.Column('introduced_by_serial', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('revoked_by_serial', sa.Integer(), nullable=True))

    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.add_column(sa.Column('keyset_serial', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('keyset_error',
                                      sqlmodel.sql.sqltypes.AutoString(length=200),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.drop_column('keyset_error')
        batch_op.drop_column('keyset_serial')

    with op.batch_alter_table('signingkey', schema=None) as batch_op:
        batch_op.drop_column('revoked_by_serial')
        batch_op.drop_column('introduced_by_serial')

    with op.batch_alter_table('keystatement', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_keystatement_serial'))

    op.drop_table('keystatement')
