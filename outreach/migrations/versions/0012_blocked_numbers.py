"""blocked_numbers: numbers whose holder replied "wrong number", kept per number (not per patient)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 22:50:00

A re-import or a correction can give a number back to a patient, and two patients can share one; the fact
that the holder of a number said "wrong number" belongs to the number.  Backfilled from the "wrong number"
audit events still in force (no opt-in of that patient since).
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('blocked_numbers',
    sa.Column('phone', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('blocked_at', sa.DateTime(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_blocked_numbers_message_id_messages'),
                            ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('phone', name=op.f('pk_blocked_numbers'))
    )
    bind = op.get_bind()
    rows = bind.execute(sa.text("""
        SELECT m.from_number, MIN(w.at), MIN(m.id) FROM audit_events w
        JOIN messages m ON m.id = CAST(w.details ->> 'message_id' AS INTEGER)
        WHERE w.action = 'wrong_number' AND m.from_number IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM audit_events i WHERE i.patient_id = w.patient_id AND i.action = 'opted_in'
                          AND i.id > w.id)
        GROUP BY m.from_number""" if bind.dialect.name == "postgresql" else """
        SELECT m.from_number, MIN(w.at), MIN(m.id) FROM audit_events w
        JOIN messages m ON m.id = CAST(json_extract(w.details, '$.message_id') AS INTEGER)
        WHERE w.action = 'wrong_number' AND m.from_number IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM audit_events i WHERE i.patient_id = w.patient_id AND i.action = 'opted_in'
                          AND i.id > w.id)
        GROUP BY m.from_number""")).all()
    if rows:
        table = sa.table('blocked_numbers', sa.column('phone'), sa.column('reason'), sa.column('blocked_at'),
                         sa.column('message_id'))
        op.bulk_insert(table, [{"phone": r[0], "reason": "wrong_number", "blocked_at": r[1], "message_id": r[2]}
                               for r in rows])


def downgrade() -> None:
    op.drop_table('blocked_numbers')
