"""users: signing out ends every session; an authenticator being set up is kept server-side

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 11:45:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('totp_pending', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('sessions_revoked_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('sessions_revoked_at')
        batch_op.drop_column('totp_pending')
