"""The alliance during treatment (issue 26): care teams and their members, stays in treatment (episodes without a
discharge date yet, with their care team and how their check-ins are taken), alliance check-ins, alliance alerts,
and the check-in a discharge rating came from.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 03:00:00

Every table and column of the feature is in this one file.  Going back refuses while any stay is still in
treatment (its discharge date would have to be invented).
"""
from alembic import op
import sqlalchemy as sa


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'care_teams',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_care_teams')),
        sa.UniqueConstraint('name', name=op.f('uq_care_teams_name')))
    op.create_table(
        'care_team_members',
        sa.Column('team_id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['team_id'], ['care_teams.id'], name=op.f('fk_care_team_members_team_id_care_teams'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_care_team_members_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('team_id', 'user_id', name=op.f('pk_care_team_members')))
    op.create_index(op.f('ix_care_team_members_user_id'), 'care_team_members', ['user_id'], unique=False)
    with op.batch_alter_table('episodes') as batch:
        batch.alter_column('discharge_date', existing_type=sa.Date(), nullable=True)
        batch.add_column(sa.Column('care_team_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('alliance_checkins', sa.String(length=8), nullable=True))
        batch.create_foreign_key(batch.f('fk_episodes_care_team_id_care_teams'), 'care_teams', ['care_team_id'],
                                 ['id'], ondelete='SET NULL')
        batch.create_index(batch.f('ix_episodes_care_team_id'), ['care_team_id'], unique=False)
    op.create_table(
        'alliance_checkins',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('patient_id', sa.Integer(), nullable=False),
        sa.Column('episode_id', sa.Integer(), nullable=False),
        sa.Column('instrument', sa.String(length=64), nullable=False),
        sa.Column('items', sa.JSON(), nullable=False),
        sa.Column('mean_score', sa.Float(), nullable=True),
        sa.Column('subscale_scores', sa.JSON(), nullable=False),
        sa.Column('taken_at', sa.DateTime(), nullable=False),
        sa.Column('method', sa.String(length=8), nullable=False),
        sa.Column('treatment_week', sa.Integer(), nullable=False),
        sa.Column('days_since_admission', sa.Integer(), nullable=False),
        sa.Column('staff_user_id', sa.Integer(), nullable=True),
        sa.Column('client_key', sa.String(length=64), nullable=True),
        sa.Column('followup_id', sa.Integer(), nullable=True),
        sa.Column('flags', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['episode_id'], ['episodes.id'], name=op.f('fk_alliance_checkins_episode_id_episodes'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_alliance_checkins_patient_id_patients'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['staff_user_id'], ['users.id'], name=op.f('fk_alliance_checkins_staff_user_id_users'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['followup_id'], ['followups.id'], name=op.f('fk_alliance_checkins_followup_id_followups'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_alliance_checkins')),
        sa.UniqueConstraint('client_key', name=op.f('uq_alliance_checkins_client_key')),
        sa.UniqueConstraint('followup_id', name=op.f('uq_alliance_checkins_followup_id')))
    op.create_index('ix_alliance_checkins_episode_taken', 'alliance_checkins', ['episode_id', 'taken_at'], unique=False)
    op.create_index(op.f('ix_alliance_checkins_patient_id'), 'alliance_checkins', ['patient_id'], unique=False)
    with op.batch_alter_table('alliance_ratings') as batch:
        batch.add_column(sa.Column('checkin_id', sa.Integer(), nullable=True))
        batch.create_foreign_key(batch.f('fk_alliance_ratings_checkin_id_alliance_checkins'), 'alliance_checkins',
                                 ['checkin_id'], ['id'], ondelete='SET NULL')
    op.create_table(
        'alliance_alerts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('patient_id', sa.Integer(), nullable=False),
        sa.Column('episode_id', sa.Integer(), nullable=False),
        sa.Column('care_team_id', sa.Integer(), nullable=True),
        sa.Column('checkin_id', sa.Integer(), nullable=True),
        sa.Column('rule', sa.String(length=32), nullable=False),
        sa.Column('statements', sa.JSON(), nullable=False),
        sa.Column('subscale', sa.String(length=16), nullable=True),
        sa.Column('details', sa.JSON(), nullable=False),
        sa.Column('raised_at', sa.DateTime(), nullable=False),
        sa.Column('acknowledged_at', sa.DateTime(), nullable=True),
        sa.Column('acknowledged_by', sa.String(length=254), nullable=True),
        sa.Column('note', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['care_team_id'], ['care_teams.id'], name=op.f('fk_alliance_alerts_care_team_id_care_teams'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['checkin_id'], ['alliance_checkins.id'],
                                name=op.f('fk_alliance_alerts_checkin_id_alliance_checkins'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['episode_id'], ['episodes.id'], name=op.f('fk_alliance_alerts_episode_id_episodes'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_alliance_alerts_patient_id_patients'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_alliance_alerts')))
    op.create_index('ix_alliance_alerts_team_open', 'alliance_alerts', ['care_team_id', 'acknowledged_at'], unique=False)
    op.create_index(op.f('ix_alliance_alerts_patient_id'), 'alliance_alerts', ['patient_id'], unique=False)


def downgrade() -> None:
    in_treatment = op.get_bind().execute(sa.text("SELECT count(*) FROM episodes WHERE discharge_date IS NULL")).scalar()
    if in_treatment:
        raise RuntimeError(f"{in_treatment} stay(s) are still in treatment (no discharge date); import their "
                           "discharges, or delete those stays, before going back")
    op.drop_table('alliance_alerts')
    with op.batch_alter_table('alliance_ratings') as batch:
        batch.drop_constraint(batch.f('fk_alliance_ratings_checkin_id_alliance_checkins'), type_='foreignkey')
        batch.drop_column('checkin_id')
    op.drop_table('alliance_checkins')
    with op.batch_alter_table('episodes') as batch:
        batch.drop_index(batch.f('ix_episodes_care_team_id'))
        batch.drop_constraint(batch.f('fk_episodes_care_team_id_care_teams'), type_='foreignkey')
        batch.drop_column('alliance_checkins')
        batch.drop_column('care_team_id')
        batch.alter_column('discharge_date', existing_type=sa.Date(), nullable=False)
    op.drop_table('care_team_members')
    op.drop_table('care_teams')
