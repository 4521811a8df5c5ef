"""waves.paused_at/paused_by and cancelled_at/cancelled_by: a coordinator pauses, resumes or cancels a wave

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 22:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('waves', schema=None) as batch_op:
        batch_op.add_column(sa.Column('paused_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('paused_by', sa.String(length=254), nullable=True))
        batch_op.add_column(sa.Column('cancelled_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('cancelled_by', sa.String(length=254), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('waves', schema=None) as batch_op:
        batch_op.drop_column('cancelled_by')
        batch_op.drop_column('cancelled_at')
        batch_op.drop_column('paused_by')
        batch_op.drop_column('paused_at')
