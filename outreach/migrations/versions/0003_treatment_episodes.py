"""treatment episodes: a patient has one or more stays, each with its discharge, alliance and follow-ups

Each existing patient becomes one episode with the patient's discharge date, covariates and
rating; the rating and the follow-ups move to it.  The downgrade refuses a database where a
patient has more than one episode, since the old schema has room for only one discharge.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 10:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

EPISODE_COLUMNS = ("discharge_date", "length_of_stay_days", "primary_substance", "program")


def upgrade() -> None:
    op.create_table(
        'episodes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('patient_id', sa.Integer(), nullable=False),
        sa.Column('site_episode_id', sa.String(length=64), nullable=True),
        sa.Column('admission_date', sa.Date(), nullable=True),
        sa.Column('discharge_date', sa.Date(), nullable=False),
        sa.Column('length_of_stay_days', sa.Integer(), nullable=True),
        sa.Column('primary_substance', sa.String(length=64), nullable=True),
        sa.Column('program', sa.String(length=128), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_episodes_patient_id_patients'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_episodes')),
        sa.UniqueConstraint('patient_id', 'discharge_date', name='uq_episodes_patient_discharge'),
        sa.UniqueConstraint('patient_id', 'site_episode_id', name='uq_episodes_patient_site_episode'),
    )
    op.execute("INSERT INTO episodes (patient_id, discharge_date, length_of_stay_days, primary_substance, program, "
               "created_at, updated_at) SELECT id, discharge_date, length_of_stay_days, primary_substance, program, "
               "created_at, updated_at FROM patients")

    # The rating and the follow-ups move to the patient's (only) episode.
    for table in ('alliance_ratings', 'followups'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('episode_id', sa.Integer(), nullable=True))
        op.execute(f"UPDATE {table} SET episode_id = "
                   f"(SELECT episodes.id FROM episodes WHERE episodes.patient_id = {table}.patient_id)")

    with op.batch_alter_table('alliance_ratings', schema=None) as batch_op:
        batch_op.alter_column('episode_id', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_constraint('uq_alliance_ratings_patient_id', type_='unique')
        batch_op.drop_constraint('fk_alliance_ratings_patient_id_patients', type_='foreignkey')
        batch_op.drop_column('patient_id')
        batch_op.create_unique_constraint(batch_op.f('uq_alliance_ratings_episode_id'), ['episode_id'])
        batch_op.create_foreign_key(batch_op.f('fk_alliance_ratings_episode_id_episodes'), 'episodes',
                                    ['episode_id'], ['id'], ondelete='CASCADE')

    with op.batch_alter_table('followups', schema=None) as batch_op:
        batch_op.alter_column('episode_id', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_constraint('uq_followups_patient_timepoint', type_='unique')
        batch_op.create_unique_constraint('uq_followups_episode_timepoint', ['episode_id', 'timepoint_days'])
        batch_op.create_foreign_key(batch_op.f('fk_followups_episode_id_episodes'), 'episodes',
                                    ['episode_id'], ['id'], ondelete='CASCADE')
        batch_op.create_index(batch_op.f('ix_followups_episode_id'), ['episode_id'], unique=False)

    with op.batch_alter_table('patients', schema=None) as batch_op:
        for column in EPISODE_COLUMNS:
            batch_op.drop_column(column)


def downgrade() -> None:
    bind = op.get_bind()
    several = bind.execute(sa.text(
        "SELECT count(*) FROM (SELECT patient_id FROM episodes GROUP BY patient_id HAVING count(*) > 1) AS s"
    )).scalar()
    if several:
        raise RuntimeError(f"{several} patients have more than one treatment episode; the previous schema holds "
                           "one discharge per patient, so downgrading would lose stays and relink answers")
    none = bind.execute(sa.text(
        "SELECT count(*) FROM patients WHERE NOT EXISTS (SELECT 1 FROM episodes WHERE episodes.patient_id = patients.id)"
    )).scalar()
    if none:
        raise RuntimeError(f"{none} patients have no treatment episode; the previous schema requires a discharge date")

    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('discharge_date', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('length_of_stay_days', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('primary_substance', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('program', sa.String(length=128), nullable=True))
    for column in EPISODE_COLUMNS:
        op.execute(f"UPDATE patients SET {column} = "
                   f"(SELECT episodes.{column} FROM episodes WHERE episodes.patient_id = patients.id)")
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.alter_column('discharge_date', existing_type=sa.Date(), nullable=False)

    with op.batch_alter_table('followups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_followups_episode_id'))
        batch_op.drop_constraint(batch_op.f('fk_followups_episode_id_episodes'), type_='foreignkey')
        batch_op.drop_constraint('uq_followups_episode_timepoint', type_='unique')
        batch_op.create_unique_constraint('uq_followups_patient_timepoint', ['patient_id', 'timepoint_days'])
        batch_op.drop_column('episode_id')

    with op.batch_alter_table('alliance_ratings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('patient_id', sa.Integer(), nullable=True))
    op.execute("UPDATE alliance_ratings SET patient_id = "
               "(SELECT episodes.patient_id FROM episodes WHERE episodes.id = alliance_ratings.episode_id)")
    with op.batch_alter_table('alliance_ratings', schema=None) as batch_op:
        batch_op.alter_column('patient_id', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_constraint(batch_op.f('fk_alliance_ratings_episode_id_episodes'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_alliance_ratings_episode_id'), type_='unique')
        batch_op.drop_column('episode_id')
        batch_op.create_unique_constraint(batch_op.f('uq_alliance_ratings_patient_id'), ['patient_id'])
        batch_op.create_foreign_key(batch_op.f('fk_alliance_ratings_patient_id_patients'), 'patients',
                                    ['patient_id'], ['id'], ondelete='CASCADE')

    op.drop_table('episodes')
