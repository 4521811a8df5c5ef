"""messages.inbox_reason: why a patient's text waits for a person (every personal text, not only a second
unusable answer); followups.crisis_line_at: the patient was told once where to get help at any hour

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 01:00:00

Texts already waiting in the inbox keep their place: the unhandled ones the inbox showed before (media, unknown
numbers, "wrong number", a second unusable answer, a text after the survey) get their reason here.
"""
from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('messages') as batch:
        batch.add_column(sa.Column('inbox_reason', sa.String(length=24), nullable=True))
    with op.batch_alter_table('followups') as batch:
        batch.add_column(sa.Column('crisis_line_at', sa.DateTime(), nullable=True))
    waiting = ("direction = 'in' AND handled_at IS NULL AND processed_at IS NOT NULL AND preview = false "
               "AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.message_id = messages.id)")
    op.execute(f"UPDATE messages SET inbox_reason = 'wrong_number' WHERE {waiting} "
               "AND EXISTS (SELECT 1 FROM blocked_numbers b WHERE b.message_id = messages.id)")
    op.execute(f"UPDATE messages SET inbox_reason = 'unknown' WHERE {waiting} AND inbox_reason IS NULL "
               "AND patient_id IS NULL")
    op.execute(f"UPDATE messages SET inbox_reason = 'media' WHERE {waiting} AND inbox_reason IS NULL AND media_count > 0")
    op.execute(f"UPDATE messages SET inbox_reason = 'not_an_answer' WHERE {waiting} AND inbox_reason IS NULL "
               "AND EXISTS (SELECT 1 FROM answers w WHERE w.message_id = messages.id AND w.missing_reason = 'unparsed')")
    op.execute(f"UPDATE messages SET inbox_reason = 'after_survey' WHERE {waiting} AND inbox_reason IS NULL "
               "AND NOT EXISTS (SELECT 1 FROM answers w WHERE w.message_id = messages.id) "
               "AND EXISTS (SELECT 1 FROM followups f WHERE f.id = messages.followup_id AND f.state = 'completed' "
               "AND f.completed_at IS NOT NULL AND messages.created_at >= f.completed_at)")


def downgrade() -> None:
    with op.batch_alter_table('followups') as batch:
        batch.drop_column('crisis_line_at')
    with op.batch_alter_table('messages') as batch:
        batch.drop_column('inbox_reason')
