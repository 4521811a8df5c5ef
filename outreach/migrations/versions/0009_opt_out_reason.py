"""patients.opt_out_reason: why a patient is opted out; messages.carrier_keyword: Twilio's OptOutType

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 21:30:00

A START or YES lifts only the patient's own STOP, never a "wrong number" reply (someone else holds the
number), so the reason is kept with the opt-out.  Patients opted out before this revision get their
reason from the audit trail: "stop" when they opted out since they last opted in other than by a "wrong
number" reply (a STOP stays the patient's wish), else "wrong_number" when such a reply is on record, else
"stop".  An incoming text that Twilio marked with OptOutType keeps the mark, so a text
applied late (a replay, the spool) is read as Twilio read it.
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('opt_out_reason', sa.String(length=16), nullable=True))
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('carrier_keyword', sa.String(length=8), nullable=True))
    # "stop" when the patient (or the carrier, for their STOP) opted out since they last opted in other than by a
    # "wrong number" reply: a STOP is the patient's own wish and no phone correction lifts it; else
    # "wrong_number" when such a reply is on record; else "stop".
    op.execute("""
        UPDATE patients SET opt_out_reason = CASE
          WHEN EXISTS (
            SELECT 1 FROM audit_events o
            WHERE o.patient_id = patients.id AND o.action = 'opted_out'
              AND NOT EXISTS (SELECT 1 FROM audit_events i WHERE i.patient_id = patients.id AND i.action = 'opted_in'
                              AND i.id > o.id)
              AND NOT EXISTS (SELECT 1 FROM audit_events w WHERE w.patient_id = patients.id AND w.action = 'wrong_number'
                              AND w.id BETWEEN o.id - 1 AND o.id + 1))
          THEN 'stop'
          WHEN EXISTS (
            SELECT 1 FROM audit_events w
            WHERE w.patient_id = patients.id AND w.action = 'wrong_number'
              AND NOT EXISTS (SELECT 1 FROM audit_events i
                              WHERE i.patient_id = patients.id AND i.action = 'opted_in' AND i.id > w.id))
          THEN 'wrong_number' ELSE 'stop' END
        WHERE opted_out_at IS NOT NULL""")


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('carrier_keyword')
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.drop_column('opt_out_reason')
