"""alerts: on_call_queued_at (the old meaning of on_call_texted_at), escalated_at, escalation_reason, preview;
messages.alert_id (on-call texts of an alert, and a patient's texts while it is open)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 00:30:00

on_call_texted_at now says when an on-call text was sent, not queued: the old values move to on_call_queued_at
(the limit on texts about unknown numbers counts those), and on_call_texted_at is kept where the texts were sent.
"""
from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('alerts') as batch:
        batch.add_column(sa.Column('on_call_queued_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('escalated_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('escalation_reason', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('preview', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.execute("UPDATE alerts SET on_call_queued_at = on_call_texted_at")
    with op.batch_alter_table('messages') as batch:
        batch.add_column(sa.Column('alert_id', sa.Integer(), nullable=True))
        batch.create_foreign_key(batch.f('fk_messages_alert_id_alerts'), 'alerts', ['alert_id'], ['id'],
                                 ondelete='SET NULL')
        batch.create_index(batch.f('ix_messages_alert_id'), ['alert_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('messages') as batch:
        batch.drop_index(batch.f('ix_messages_alert_id'))
        batch.drop_constraint(batch.f('fk_messages_alert_id_alerts'), type_='foreignkey')
        batch.drop_column('alert_id')
    op.execute("UPDATE alerts SET on_call_texted_at = on_call_queued_at")
    with op.batch_alter_table('alerts') as batch:
        batch.drop_column('preview')
        batch.drop_column('escalation_reason')
        batch.drop_column('escalated_at')
        batch.drop_column('on_call_queued_at')
