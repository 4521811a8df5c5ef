"""Status callbacks, failed-message replay and the chat preview."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from outreach.models import FollowUp, Message, Patient


def outbound(sessions, patient, fu, sid, status="sent", kind="invitation"):
    with sessions.begin() as s:
        s.add(Message(direction="out", kind=kind, status=status, body="hi", patient_id=patient.id,
                      followup_id=fu.id, provider_sid=sid, to_number=patient.phone))


def status_of(session, sid):
    session.rollback()
    return session.scalar(select(Message.status).where(Message.provider_sid == sid))


def test_status_only_moves_forward(twilio, make_patient, make_followup, sessions, session):
    p = make_patient()
    fu = make_followup(p)
    outbound(sessions, p, fu, "SM" + "a" * 32)
    assert twilio.status("SM" + "a" * 32, "delivered") == 204
    assert status_of(session, "SM" + "a" * 32) == "delivered"
    twilio.status("SM" + "a" * 32, "sent")  # late, out of order
    assert status_of(session, "SM" + "a" * 32) == "delivered"


def test_unknown_sid_is_acknowledged(twilio):
    assert twilio.status("SM" + "f" * 32, "delivered") == 204


def test_unsigned_status_is_refused(app, make_patient, make_followup, sessions, session):
    p = make_patient()
    fu = make_followup(p)
    outbound(sessions, p, fu, "SM" + "b" * 32)
    resp = app.test_client().post("/twilio/status", data={"MessageSid": "SM" + "b" * 32, "MessageStatus": "failed"})
    assert resp.status_code == 403 and status_of(session, "SM" + "b" * 32) == "sent"


def test_error_21610_opts_the_patient_out(twilio, make_patient, make_followup, sessions, session):
    p = make_patient()
    fu = make_followup(p)
    outbound(sessions, p, fu, "SM" + "c" * 32)
    twilio.status("SM" + "c" * 32, "failed", 21610)
    session.rollback()
    assert session.get(Patient, p.id).opted_out_at is not None


def test_carrier_failure_on_last_attempt_marks_undeliverable(twilio, make_patient, make_followup, sessions,
                                                             session):
    p = make_patient()
    fu = make_followup(p)
    outbound(sessions, p, fu, "SM" + "d" * 32)
    twilio.status("SM" + "d" * 32, "undelivered", 30003)
    session.rollback()
    assert session.get(FollowUp, fu.id).state == "invited"  # reminders will try again
    with sessions.begin() as s:
        s.get(FollowUp, fu.id).reminders_sent = 2
    outbound(sessions, p, fu, "SM" + "e" * 32, kind="reminder")
    twilio.status("SM" + "e" * 32, "undelivered", 30006)
    session.rollback()
    assert session.get(FollowUp, fu.id).state == "undeliverable"


def test_failed_processing_keeps_the_message_and_replay_applies_it(twilio, make_patient, make_followup, session,
                                                                  run_cli, monkeypatch):
    import conversations.engine as engine_mod
    from outreach.messaging import inbound as inbound_mod

    p = make_patient()
    fu = make_followup(p, state="q_self_efficacy")

    def broken(*args, **kwargs):
        raise RuntimeError("engine exploded")

    monkeypatch.setattr(inbound_mod, "respond", broken)
    status, replies = twilio.text(p.phone, "6")
    assert status == 200 and replies == []
    session.rollback()
    msg = session.scalar(select(Message).where(Message.direction == "in"))
    assert msg.status == "failed" and "engine exploded" in msg.error_message
    assert session.get(FollowUp, fu.id).state == "q_self_efficacy"  # nothing half-done
    monkeypatch.setattr(inbound_mod, "respond", engine_mod.respond)
    result = run_cli("inbox", "replay", extra_env={"TWILIO_AUTH_TOKEN": "x", "HELP_CONTACT": "1"})
    assert "replayed 1 message(s), 1 processed" in result.output
    session.rollback()
    assert session.get(FollowUp, fu.id).state == "q_mental_health"
    # No request waits for this reply any more: it is queued for the worker, not lost in a TwiML nobody reads.
    reply = session.scalar(select(Message).where(Message.in_reply_to_id == msg.id))
    assert reply.status == "pending" and "mental health" in reply.body and reply.to_number == p.phone


def test_chat_previews_a_survey_through_the_signed_webhook(run_cli, make_patient, web_env):
    make_patient(patient_id="DEMO1")
    result = run_cli("chat", "DEMO1", "--timepoint", "30", input="yes\n9\nexcellent\n1\n\n", extra_env=web_env)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Reply YES to start" in out and "0 (not at all)" in out and "Thank you, that's all" in out
    assert "+1416" not in out


def test_a_chat_preview_leaves_the_patients_study_record_as_it_was(run_cli, make_patient, make_followup, web_env,
                                                                    session):
    """A coordinator previewing with a real patient must neither answer for them nor use up their time point."""
    import datetime as dt

    from sqlalchemy import func

    from outreach.models import Answer, AuditEvent

    discharged = dt.date(2026, 9, 1)
    p = make_patient(patient_id="P1", discharge_date=discharged)
    assert run_cli("chat", "P1", "--timepoint", "30", input="yes\n9\nexcellent\n1\n\n",
                   extra_env=web_env).exit_code == 0
    before = run_cli("waves", "plan", "--timepoint", "30", "--as-of", "2026-10-15").output
    assert "1 eligible" in before and "P1" in before  # the preview did not use up the 30-day follow-up
    # Where the patient's real follow-up stands is where the preview starts, and the real one does not move.
    fu = make_followup(p, timepoint=90, state="q_mental_health")
    out = run_cli("chat", "P1", input="2\n\n", extra_env=web_env).output
    assert "how would you rate your mental health" in out.split("> ")[0]
    assert "physical health" in out.split("> ")[1]
    session.expire_all()
    assert session.get(FollowUp, fu.id).state == "q_mental_health"
    for table in (Message, Answer, AuditEvent):
        assert session.scalar(select(func.count()).select_from(table)) == 0, table.__name__
    assert session.scalar(select(func.count()).select_from(FollowUp)) == 1


def test_chat_refuses_a_time_point_the_study_does_not_have(run_cli, make_patient, web_env):
    make_patient(patient_id="P1")
    result = run_cli("chat", "P1", "--timepoint", "45", input="\n", extra_env=web_env)
    assert result.exit_code == 2 and "FOLLOWUP_DAYS" in result.output


def _quiet_now_window() -> str:
    """A SEND_WINDOW that is closed right now in Toronto (open an hour, six hours from now)."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    h = (dt.datetime.now(ZoneInfo("America/Toronto")) + dt.timedelta(hours=6)).hour
    return f"Mon-Sun {h:02d}:00-{h:02d}:59"


@pytest.mark.parametrize("opted_out", [False, True])
def test_a_crisis_text_whose_request_died_still_gets_its_alert_and_safety_reply(make_patient, make_followup,
                                                                                 sessions, session, run_cli, env,
                                                                                 opted_out):
    import datetime as dt

    from outreach.config import load_settings
    from outreach.db import unit_of_work
    from outreach.messaging.gateway import SimulatorGateway
    from outreach.models import Alert
    from outreach.clock import utcnow
    from outreach.messaging.sender import Sender
    from outreach.messaging.webhook_client import new_sid

    p = make_patient(opted_out=opted_out)
    fu = make_followup(p, state="opted_out" if opted_out else "q_mental_health")
    with unit_of_work(sessions) as s:  # stored and committed, then the web worker was killed
        s.add_all([Message(direction="in", provider_sid=new_sid(), from_number=p.phone, to_number="+15005550006",
                           body="i want to die", status="received", created_at=utcnow() - dt.timedelta(minutes=5)),
                   Message(direction="in", provider_sid=new_sid(), from_number="+14165550999", body="hi",
                           to_number="+15005550006", status="received", created_at=utcnow())])  # in flight
    out = run_cli("tick").output
    assert "applied 1 inbound message(s) left unprocessed" in out
    session.rollback()
    assert session.get(FollowUp, fu.id).state == ("opted_out" if opted_out else "crisis")
    assert session.scalar(select(Alert.patient_id)) == p.id
    in_flight = session.scalar(select(Message).where(Message.body == "hi"))
    assert in_flight.status == "received"  # a request may still be applying it: left alone
    # The safety reply goes out through the worker, although the survey is paused (or the patient opted
    # out) and it is quiet hours: a safety reply in TwiML would have too.
    settings = load_settings({**env, "SMS_BACKEND": "simulator", "SEND_WINDOW": _quiet_now_window(),
                              "SEND_RATE_PER_SECOND": "0"})
    gateway = SimulatorGateway(echo=None)
    Sender(sessions, settings, gateway).send_due()
    session.rollback()
    reply = session.scalar(select(Message).where(Message.direction == "out"))
    assert reply.status == "delivered" and "988" in reply.body and reply.to_number == p.phone


def test_a_plain_stop_request_applied_late_is_still_confirmed_and_nothing_else_goes(make_patient, make_followup,
                                                                                   sessions, session, run_cli, env):
    import datetime as dt

    from outreach.config import load_settings
    from outreach.db import unit_of_work
    from outreach.messaging.gateway import SimulatorGateway
    from outreach.clock import utcnow
    from outreach.messaging.sender import Sender
    from outreach.messaging.webhook_client import new_sid

    p = make_patient()
    fu = make_followup(p, state="q_mental_health")
    with unit_of_work(sessions) as s:  # stored and committed, then the web worker was killed
        s.add_all([Message(direction="in", provider_sid=new_sid(), from_number=p.phone, to_number="+15005550006",
                           body="please stop texting me", status="received",
                           created_at=utcnow() - dt.timedelta(minutes=5)),
                   Message(direction="out", kind="stalled", status="pending", body="still there?", patient_id=p.id,
                           followup_id=fu.id, to_number=p.phone, send_after=utcnow())])
    run_cli("tick")
    settings = load_settings({**env, "SMS_BACKEND": "simulator", "SEND_RATE_PER_SECOND": "0",
                              "SEND_WINDOW": "Mon-Sun 00:00-24:00"})
    Sender(sessions, settings, SimulatorGateway(echo=None)).send_due()
    session.rollback()
    assert session.get(Patient, p.id).opted_out_at is not None
    sent = dict(session.execute(select(Message.kind, Message.status).where(Message.direction == "out")).all())
    assert sent == {"opt_out_confirmation": "delivered", "stalled": "cancelled"}


def test_twilio_cancelling_a_text_reads_as_not_sent_and_nothing_later_revives_it(twilio, make_patient, make_followup,
                                                                                  sessions, session):
    """Twilio spells it "canceled" (a text it held was cancelled before it went): stored as our own cancelled
    state with the reason in words, never as a word the rest of the service does not know."""
    from outreach.staff.patients import DELIVERY_WORDS

    p = make_patient()
    fu = make_followup(p)
    outbound(sessions, p, fu, "SM" + "1" * 32, status="accepted")
    assert twilio.status("SM" + "1" * 32, "canceled") == 204
    session.rollback()
    msg = session.scalar(select(Message).where(Message.provider_sid == "SM" + "1" * 32))
    assert msg.status == "cancelled" and DELIVERY_WORDS[msg.status] == "not sent"
    assert msg.error_message == "Twilio cancelled it before it was sent"
    twilio.status("SM" + "1" * 32, "delivered")  # a stray late callback
    assert status_of(session, "SM" + "1" * 32) == "cancelled"


def test_a_partly_delivered_text_counts_as_reaching_the_phone(twilio, make_patient, make_followup, sessions, session):
    """Twilio's "partially_delivered" (some segments reached the phone) is kept, counted as delivered in the
    wave's funnel, and not undone by a late "sent"."""
    import datetime as dt

    from outreach.models import Wave
    from outreach.study.waves import funnels

    p = make_patient()
    fu = make_followup(p)
    with sessions.begin() as s:
        wave = Wave(timepoint_days=30, as_of=dt.date(2026, 6, 1), created_by="test", targeted=1)
        s.add(wave)
        s.flush()
        s.get(FollowUp, fu.id).wave_id = wave_id = wave.id
    outbound(sessions, p, fu, "SM" + "2" * 32)
    twilio.status("SM" + "2" * 32, "partially_delivered")
    assert status_of(session, "SM" + "2" * 32) == "partially_delivered"
    twilio.status("SM" + "2" * 32, "sent")  # late, out of order
    assert status_of(session, "SM" + "2" * 32) == "partially_delivered"
    session.rollback()
    assert funnels(session, [wave_id])[wave_id]["delivered"] == 1


def test_a_status_word_the_service_does_not_know_is_not_stored(twilio, make_patient, make_followup, sessions, session,
                                                               caplog):
    p = make_patient()
    fu = make_followup(p)
    outbound(sessions, p, fu, "SM" + "3" * 32, status="claimed")
    assert twilio.status("SM" + "3" * 32, "teleported") == 204  # acknowledged: Twilio must not retry it
    assert status_of(session, "SM" + "3" * 32) == "claimed"
    assert "does not know" in caplog.text and p.phone not in caplog.text
