"""audit_events.patient_id indexed: the retention pass looks up each batch of participants' phone corrections (to
erase the numbers they kept), and without the index that was a scan of the whole audit for every batch (25 ms a
batch with 100,000 audit rows, a quarter of an hour over a 100,000-participant study with a million); a patient's
page reads their contact history the same way.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 07:00:00
"""
from alembic import op


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('audit_events') as batch:
        batch.create_index(batch.f('ix_audit_events_patient_id'), ['patient_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_events') as batch:
        batch.drop_index(batch.f('ix_audit_events_patient_id'))
