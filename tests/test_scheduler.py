"""Reminders and expiry (``outreach tick``) with the service clock moved forward."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from outreach.config import load_settings
from outreach.db import unit_of_work
from outreach.messaging.gateway import SimulatorGateway
from outreach.models import Answer, FollowUp, Message
from outreach.study.scheduler import tick
from outreach.messaging.sender import Sender
from outreach.study.waves import launch_wave

AS_OF = dt.date(2026, 11, 20)


@pytest.fixture
def invited(make_patient, sessions, send_env):
    """Two patients whose invitations went out (simulator), clock at 'now'."""
    settings = load_settings({**send_env, "SMS_BACKEND": "simulator"})
    patients = [make_patient(discharge_date=AS_OF - dt.timedelta(days=32)) for _ in range(2)]
    with unit_of_work(sessions) as s:
        launch_wave(s, settings, 30, AS_OF, actor="t")
    gateway = SimulatorGateway(echo=None)
    Sender(sessions, settings, gateway).send_due()
    return patients, settings, gateway


def run_tick(sessions, settings):
    with unit_of_work(sessions) as s:
        return tick(s, settings)


def start_then_fall_silent(twilio, phone, clock, hours):
    """The patient consents, answers the first question, then says nothing for ``hours``."""
    twilio.text(phone, "yes")
    twilio.text(phone, "9")
    clock(hours=hours)


def kinds(session, patient):
    session.rollback()
    return [m.kind for m in session.scalars(select(Message).where(Message.patient_id == patient.id,
                                                                  Message.direction == "out")
                                            .order_by(Message.id))]


def test_reminders_at_48_and_96_hours_then_expiry(invited, sessions, session, clock):
    (a, b), settings, gateway = invited
    clock(hours=47)
    assert run_tick(sessions, settings).reminders == 0
    clock(hours=2)
    assert run_tick(sessions, settings).reminders == 2
    assert run_tick(sessions, settings).reminders == 0  # not twice
    Sender(sessions, settings, gateway).send_due()
    clock(hours=48)
    assert run_tick(sessions, settings).reminders == 2
    assert kinds(session, a) == ["invitation", "reminder", "reminder"]
    clock(hours=72)  # 7 days + after the invitation
    stats = run_tick(sessions, settings)
    assert stats.expired == 2 and stats.reminders == 0
    session.rollback()
    assert {f.state for f in session.scalars(select(FollowUp))} == {"expired"}
    # Still pending reminders of expired follow-ups are cancelled, never sent.
    assert {m.status for m in session.scalars(select(Message).where(Message.kind == "reminder"))} <= {
        "delivered", "cancelled"}


def test_no_reminder_after_a_reply_or_opt_out(invited, sessions, session, clock, twilio):
    (a, b), settings, _ = invited
    twilio.text(a.phone, "later")  # declined: not reminded
    twilio.text(b.phone, "STOP")
    clock(hours=50)
    assert run_tick(sessions, settings).reminders == 0


def test_stalled_survey_gets_the_current_question_once_and_expiry_keeps_answers(invited, sessions, session, clock,
                                                                             twilio):
    (a, b), settings, _ = invited
    start_then_fall_silent(twilio, a.phone, clock, hours=23)
    assert run_tick(sessions, settings).stalled == 0
    clock(hours=2)
    assert run_tick(sessions, settings).stalled == 1
    assert run_tick(sessions, settings).stalled == 0
    session.rollback()
    stalled = session.scalar(select(Message).where(Message.kind == "stalled"))
    assert "still there?" in stalled.body and "mental health" in stalled.body
    clock(days=7)
    run_tick(sessions, settings)
    session.rollback()
    fu = session.scalar(select(FollowUp).where(FollowUp.patient_id == a.id))
    assert fu.state == "expired"
    assert [x.value for x in session.scalars(select(Answer).where(Answer.followup_id == fu.id))] == [9]


def test_stalled_reminder_is_dropped_when_the_patient_answers_before_it_goes(invited, sessions, session, clock,
                                                                           twilio):
    (a, b), settings, gateway = invited
    start_then_fall_silent(twilio, a.phone, clock, hours=25)
    assert run_tick(sessions, settings).stalled == 1
    twilio.text(a.phone, "2")  # answers before the worker sends the reminder (e.g. held by quiet hours)
    Sender(sessions, settings, gateway).send_due()
    session.rollback()
    stalled = session.scalar(select(Message).where(Message.kind == "stalled"))
    assert stalled.status == "cancelled" and stalled.error_message == "patient replied"


def test_crisis_is_not_expired(invited, sessions, session, clock, twilio):
    (a, b), settings, _ = invited
    twilio.text(a.phone, "I want to die")
    clock(days=8)
    run_tick(sessions, settings)
    session.rollback()
    assert session.scalar(select(FollowUp.state).where(FollowUp.patient_id == a.id)) == "crisis"


def test_no_automatic_nudge_follows_a_resolved_crisis(invited, sessions, session, clock, twilio, run_cli):
    (a, b), settings, _ = invited
    twilio.text(a.phone, "yes")
    twilio.text(a.phone, "honestly I want to die")
    clock(hours=30)
    alert_id = run_cli("alerts", "list").output.split()[0].lstrip("#")
    assert run_cli("alerts", "resolve", alert_id, "--note", "called; safe").exit_code == 0
    clock(hours=30)
    assert run_tick(sessions, settings).stalled == 0  # the survey waits for the patient
    assert "mental health" in twilio.text(a.phone, "6")[1][0]  # and goes on when they answer


def test_tick_command(run_cli):
    assert "expired 0" in run_cli("tick").output


def test_expiry_waits_for_a_message_being_applied_and_never_undoes_it(invited, sessions, session, clock, engine):
    """While an inbound message holds its patient's lock, expiry skips that follow-up (next tick
    instead); after the message committed, expiry reads the follow-up as the message left it."""
    if engine.dialect.name != "postgresql":
        pytest.skip("row locks: SQLite serialises whole transactions (BEGIN IMMEDIATE) instead")
    from sqlalchemy import text, update

    from outreach.models import Patient

    (a, b), settings, _ = invited
    clock(days=8)  # both past their expiry
    with engine.connect() as other:  # an inbound message for ``a`` in flight: its patient row is locked
        other.execute(text("SELECT id FROM patients WHERE id = :id FOR UPDATE"), {"id": a.id})
        stats = run_tick(sessions, settings)
        assert stats.expired == 1  # only b
        # the message completes a's survey, then commits
        other.execute(update(FollowUp).where(FollowUp.patient_id == a.id).values(state="completed"))
        other.commit()
    assert run_tick(sessions, settings).expired == 0  # completed, not expired afterwards
    session.rollback()
    states = dict(session.execute(select(Patient.id, FollowUp.state).join(FollowUp)).all())
    assert states == {a.id: "completed", b.id: "expired"}
