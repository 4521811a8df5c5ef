"""messages.preview: texts a coordinator sent through ``outreach chat --url``

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 09:00:00.000000

A preview is never a patient's answer: the export leaves out answers linked to one and the console's
transcript labels it.  Every earlier message was a real one (false).
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('preview', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('preview')
