"""Property test: random message sequences through the real app never break the invariants."""
from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from conversations.machine import STATES
from outreach.models import Episode, FollowUp, Message, Patient
from outreach.messaging.webhook_client import new_sid

REPLIES = ["yes", "Oui", "no", "later", "7", "ten", "8/10", "7 or 8", "very good", "3", "poor", "none", "STOP",
           "stop.", "START", "HELP", "SKIP", "I want to die", "??", "", "I can't stop drinking", "👍", "31",
           "please stop texting me", "not at all", "every day", "not 10", "unalive", "ok sure"]
message = st.one_of(st.sampled_from(REPLIES), st.text(max_size=200))
step = st.tuples(message, st.integers(0, 9), st.sampled_from([0, 0, 0, 1]))  # text, duplicate?, media
phones = itertools.count(1000)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=12), timepoint=st.sampled_from([30, 90]))
def test_random_conversations_keep_invariants(twilio, sessions, session, steps, timepoint):
    phone = f"+1647555{next(phones):04d}"
    with sessions.begin() as s:
        import datetime as dt

        p = Patient(patient_id=f"H{phone}", phone=phone, timezone="America/Toronto", language="en",
                    sms_consent=True)
        s.add(p)
        s.flush()
        stay = Episode(patient_id=p.id, discharge_date=dt.date(2026, 9, 1))
        s.add(stay)
        s.flush()
        fu = FollowUp(patient_id=p.id, episode_id=stay.id, timepoint_days=timepoint, state="invited",
                      invited_at=dt.datetime(2026, 11, 1))
        s.add(fu)
        s.flush()
        s.add(Message(direction="out", kind="reminder", status="pending", body="r", patient_id=p.id,
                      followup_id=fu.id, to_number=phone))
        pid, fid = p.id, fu.id
    sent: list[str] = []
    for text, dup, media in steps:
        sid = sent[-1] if (dup == 0 and sent) else new_sid()
        status, _ = twilio.text(phone, text, sid=sid, media=media)
        assert status < 500
        sent.append(sid)
    session.rollback()
    stored = session.scalar(select(func.count()).select_from(Message)
                            .where(Message.direction == "in", Message.from_number == phone))
    assert stored == len(set(sent))  # each inbound exactly once, duplicates not
    state = session.get(FollowUp, fid).state
    assert state in STATES
    patient = session.get(Patient, pid)
    if patient.opted_out_at is not None:
        queued = session.scalar(select(func.count()).select_from(Message).where(
            Message.patient_id == pid, Message.direction == "out", Message.status == "pending"))
        assert queued == 0
    failed = session.scalar(select(func.count()).select_from(Message).where(
        Message.from_number == phone, Message.status == "failed"))
    assert failed == 0
