"""Participant withdrawal (patients.withdrawn_*) and erasing identifiers (the withdrawal's removal, the retention
rules, closing the study): when and under what a phone number, a text's words or an answer's words were erased,
so that the console shows a marker rather than a blank that looks like missing data

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 03:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('patients') as batch:
        batch.add_column(sa.Column('withdrawn_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('withdrawn_by', sa.String(length=254), nullable=True))
        batch.add_column(sa.Column('withdrawal_reason', sa.Text(), nullable=True))
        batch.add_column(sa.Column('withdrawal_data', sa.String(length=8), nullable=True))
        batch.add_column(sa.Column('phone_erased_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('phone_erased_under', sa.String(length=16), nullable=True))
    with op.batch_alter_table('messages') as batch:
        batch.add_column(sa.Column('erased_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('erased_under', sa.String(length=16), nullable=True))
    with op.batch_alter_table('answers') as batch:
        batch.add_column(sa.Column('raw_text_erased_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('raw_text_erased_under', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('answers') as batch:
        batch.drop_column('raw_text_erased_under')
        batch.drop_column('raw_text_erased_at')
    with op.batch_alter_table('messages') as batch:
        batch.drop_column('erased_under')
        batch.drop_column('erased_at')
    with op.batch_alter_table('patients') as batch:
        batch.drop_column('phone_erased_under')
        batch.drop_column('phone_erased_at')
        batch.drop_column('withdrawal_data')
        batch.drop_column('withdrawal_reason')
        batch.drop_column('withdrawn_by')
        batch.drop_column('withdrawn_at')
