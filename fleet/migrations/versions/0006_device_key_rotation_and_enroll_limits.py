"""over-the-air device key rotation and enrollment rate limits

On device the next key while a rotation awaits the node's proof; an enrollattempt table that
counts enrollment attempts per code and per address in fixed windows.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 01:30:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_secret_enc', sa.LargeBinary(), nullable=True))
    op.create_table('enrollattempt',
    sa.Column('bucket', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('bucket')
    )


def downgrade() -> None:
    op.drop_table('enrollattempt')
    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.drop_column('next_secret_enc')
