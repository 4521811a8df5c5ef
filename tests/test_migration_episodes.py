"""Migration 0003 (treatment episodes) on a database filled by the previous schema, both databases."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text

from outreach.db import alembic_config, make_engine, upgrade

NOW = dt.datetime(2026, 11, 1, 12, 0)


def _fill_previous_schema(conn) -> None:
    """Two patients as revision 0002 stored them: discharge and covariates on the patient."""
    for pk, pid, discharged, program in [(1, "P-1", dt.date(2026, 9, 1), "residential"),
                                         (2, "P-2", dt.date(2026, 10, 1), None)]:
        conn.execute(text(
            "INSERT INTO patients (id, patient_id, phone, phone_valid, timezone, language, sms_consent, "
            "discharge_date, age, sex, length_of_stay_days, primary_substance, program, created_at, updated_at) "
            "VALUES (:id, :pid, :phone, :t, 'America/Toronto', 'en', :t, :d, 40, 'F', 21, 'alcohol', :program, "
            ":now, :now)"), dict(id=pk, pid=pid, phone=f"+1416555010{pk}", t=True, d=discharged, program=program,
                                 now=NOW))
        conn.execute(text(
            "INSERT INTO alliance_ratings (id, patient_id, instrument, items, mean_score, subscale_scores, "
            "created_at, updated_at) VALUES (:id, :id, 'alliance6', :items, :mean, :subs, :now, :now)"),
            dict(id=pk, items=f"[{pk}, {pk}, {pk}, {pk}, {pk}, {pk}]", mean=float(pk),
                 subs=f'{{"bond": {pk}.0, "goal_task": {pk}.0}}', now=NOW))
    conn.execute(text(
        "INSERT INTO followups (id, patient_id, timepoint_days, state, retries, reminders_sent, created_at, "
        "updated_at) VALUES (10, 1, 30, 'completed', 0, 0, :now, :now), (11, 2, 30, 'q_mental_health', 0, 0, "
        ":now, :now)"), dict(now=NOW))
    conn.execute(text(
        "INSERT INTO messages (id, direction, patient_id, followup_id, body, media_count, status, attempts, "
        "created_at, updated_at) VALUES (100, 'in', 1, 10, '7', 0, 'processed', 0, :now, :now)"), dict(now=NOW))
    conn.execute(text(
        "INSERT INTO answers (id, followup_id, question_key, raw_text, value, message_id, answered_at) "
        "VALUES (1000, 10, 'self_efficacy', '7', 7, 100, :now), (1001, 11, 'self_efficacy', '3', 3, NULL, :now)"),
        dict(now=NOW))


def _rows(conn, sql: str) -> list[tuple]:
    return [tuple(r) for r in conn.execute(text(sql))]


def test_upgrade_turns_each_patient_into_one_episode_and_downgrade_restores_it(empty_db_url):
    engine = make_engine(empty_db_url)
    upgrade(engine, "0002")
    with engine.begin() as conn:
        _fill_previous_schema(conn)
    upgrade(engine)
    with engine.connect() as conn:
        episodes = _rows(conn, "SELECT patient_id, discharge_date, length_of_stay_days, primary_substance, program "
                               "FROM episodes ORDER BY patient_id")
        assert [(p, str(d), los, sub, prog) for p, d, los, sub, prog in episodes] == [
            (1, "2026-09-01", 21, "alcohol", "residential"), (2, "2026-10-01", 21, "alcohol", None)]
        # Follow-ups and ratings now hang off the episode of their patient; nothing else moved or vanished.
        linked = _rows(conn, "SELECT f.id, e.patient_id, r.mean_score FROM followups f "
                             "JOIN episodes e ON e.id = f.episode_id "
                             "JOIN alliance_ratings r ON r.episode_id = e.id ORDER BY f.id")
        assert linked == [(10, 1, 1.0), (11, 2, 2.0)]
        assert _rows(conn, "SELECT id, followup_id, value FROM answers ORDER BY id") == [(1000, 10, 7), (1001, 11, 3)]
        assert _rows(conn, "SELECT id, followup_id FROM messages") == [(100, 10)]
        columns = set(conn.execute(text("SELECT * FROM patients")).keys())
        assert "discharge_date" not in columns and "program" not in columns and "age" in columns

    from alembic import command

    command.downgrade(alembic_config(engine), "0002")
    with engine.connect() as conn:
        assert [(p, str(d), prog) for p, d, prog in _rows(
            conn, "SELECT id, discharge_date, program FROM patients ORDER BY id")] == [
            (1, "2026-09-01", "residential"), (2, "2026-10-01", None)]
        assert _rows(conn, "SELECT id, patient_id FROM followups ORDER BY id") == [(10, 1), (11, 2)]
        assert _rows(conn, "SELECT patient_id, mean_score FROM alliance_ratings ORDER BY patient_id") == [
            (1, 1.0), (2, 2.0)]
        assert _rows(conn, "SELECT id, followup_id, value FROM answers ORDER BY id") == [(1000, 10, 7), (1001, 11, 3)]
    upgrade(engine)  # and up again, cleanly
    engine.dispose()


def test_downgrade_refuses_when_a_patient_has_two_episodes(empty_db_url):
    from alembic import command

    engine = make_engine(empty_db_url)
    upgrade(engine, "0002")
    with engine.begin() as conn:
        _fill_previous_schema(conn)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO episodes (patient_id, discharge_date, created_at, updated_at) "
                          "VALUES (1, :d, :now, :now)"), dict(d=dt.date(2026, 10, 20), now=NOW))
    with pytest.raises(RuntimeError, match="1 patients have more than one treatment episode"):
        command.downgrade(alembic_config(engine), "0002")
    with engine.connect() as conn:  # nothing was changed
        assert _rows(conn, "SELECT count(*) FROM episodes") == [(3,)]
    engine.dispose()
