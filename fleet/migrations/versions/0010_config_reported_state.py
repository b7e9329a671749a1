"""a node's reported configuration state: the version it refused, why, and drift

device.config_refused_version and device.config_error (the last configuration version the
node refused and the reason it gave; NULL while none stands) and device.config_behind_checkins
(check-ins in a row at which the node reported a version below its desired one; the API lists
a node as drifting past two).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 08:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD/DROP COLUMN, not a batch: on SQLite a batch copies the table and drops the old
    # one, which the other tables' foreign keys to device refuse
    op.add_column('device', sa.Column('config_refused_version', sa.Integer(), nullable=True))
    op.add_column('device', sa.Column('config_error',
                                      sqlmodel.sql.sqltypes.AutoString(length=200),
                                      nullable=True))
    op.add_column('device', sa.Column('config_behind_checkins', sa.Integer(), nullable=False,
                                      server_default='0'))


def downgrade() -> None:
    for name in ('config_behind_checkins', 'config_error', 'config_refused_version'):
        op.drop_column('device', name)
