"""alerts.on_call_texted_at: when the coordinators on call were texted about an alert

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 09:30:00.000000

NULL when they were not: no ALERT_SMS_TO, or a crisis text from an unknown number over the limit
(one per number per hour, 20 an hour in all).  Earlier alerts stay NULL: whether they were texted is
not known, and the limit only looks at the last hour.
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('on_call_texted_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_column('on_call_texted_at')
