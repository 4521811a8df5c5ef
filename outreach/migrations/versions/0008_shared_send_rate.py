"""send_rates: one send rate per sender shared by every worker; early_statuses: status callbacks kept
until their message's sid is recorded

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 10:00:00

send_rates holds, per sender (messaging service, number, or the simulator), the next free sending
slot in seconds since the epoch; a worker reserves its slot with one UPDATE.  early_statuses keeps a
delivery status callback that arrived before the worker recorded the sid it names; it is applied when
the sid is recorded and purged after a week if it never matches.
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('send_rates',
    sa.Column('sender', sa.String(length=64), nullable=False),
    sa.Column('next_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('sender', name=op.f('pk_send_rates'))
    )
    op.create_table('early_statuses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sid', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('error_code', sa.Integer(), nullable=True),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_early_statuses'))
    )
    with op.batch_alter_table('early_statuses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_early_statuses_sid'), ['sid'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('early_statuses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_early_statuses_sid'))
    op.drop_table('early_statuses')
    op.drop_table('send_rates')
