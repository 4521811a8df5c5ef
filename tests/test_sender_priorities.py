"""What the worker sends first, how it stops, and what an outage mid-batch does to its claims."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from outreach.config import load_settings
from outreach.db import unit_of_work
from outreach.messaging.gateway import SimulatorGateway
from outreach.models import Message
from outreach.clock import utcnow
from outreach.messaging.sender import CLAIM_SECONDS, Sender


class Recorder(SimulatorGateway):
    def __init__(self):
        super().__init__(echo=None)
        self.bodies: list[str] = []

    def send(self, to, body, status_callback):
        self.bodies.append(body)
        return super().send(to, body, status_callback)


def queue(sessions, patient, kind, body, *, ago_seconds=0, to=None):
    with unit_of_work(sessions) as s:
        m = Message(direction="out", kind=kind, status="pending", body=body, to_number=to or patient.phone,
                    patient_id=None if kind == "alert" else patient.id, attempts=0,
                    send_after=utcnow() - dt.timedelta(seconds=ago_seconds))
        s.add(m)
        s.flush()
        return m.id


@pytest.fixture
def sender(sessions, send_env):
    gateway = Recorder()
    return Sender(sessions, load_settings({**send_env, "SMS_BACKEND": "simulator"}), gateway), gateway


def test_an_alert_to_the_coordinators_on_call_goes_before_replies_queued_earlier(sender, sessions, make_patient):
    """After an outage the replies to every spooled text are queued at once, each due when its text came
    in; a crisis alert opened among them is sent first all the same."""
    send, gateway = sender
    p = make_patient()
    for n in range(5):
        queue(sessions, p, "reply", f"reply {n}", ago_seconds=60 - n)
    queue(sessions, p, "alert", "alert #1", ago_seconds=10, to="+16475550100")
    queue(sessions, p, "invitation", "invitation", ago_seconds=3600)
    send.send_due()
    assert gateway.bodies[0] == "alert #1" and gateway.bodies[-1] == "invitation"
    assert gateway.bodies[1:6] == [f"reply {n}" for n in range(5)]


def test_a_worker_claims_only_a_few_seconds_of_texts_at_its_rate(sessions, send_env):
    settings = load_settings({**send_env, "SEND_RATE_PER_SECOND": "1", "SEND_CLAIM_TIMEOUT": "60"})
    assert Sender(sessions, settings, Recorder()).batch == CLAIM_SECONDS  # an alert waits at most that long


def test_a_worker_told_to_stop_finishes_the_current_text_and_gives_the_rest_back(sender, sessions, session,
                                                                                 make_patient):
    send, gateway = sender
    p = make_patient()
    ids = [queue(sessions, p, "reply", f"reply {n}", ago_seconds=10 - n) for n in range(4)]
    asked = iter([False, True])
    stats = send.send_due(stop=lambda: next(asked, True))
    assert stats.sent == 1 and gateway.bodies == ["reply 0"]
    session.rollback()
    rest = session.execute(select(Message.status, Message.attempts, Message.claimed_at)
                           .where(Message.id.in_(ids[1:]))).all()
    assert rest == [("pending", 0, None)] * 3  # as if never claimed: the next worker sends them at once


def test_an_outage_mid_batch_leaves_the_text_in_flight_for_reconciliation_and_gives_the_rest_back(
        sender, sessions, session, make_patient, monkeypatch):
    send, gateway = sender
    p = make_patient()
    ids = [queue(sessions, p, "reply", f"reply {n}", ago_seconds=10 - n) for n in range(4)]
    real_deliver, calls = send.deliver, []

    def deliver(claim, stats):
        calls.append(claim.id)
        if len(calls) == 2:  # the database goes away while the second text is being sent
            raise OperationalError("UPDATE messages ...", {}, ConnectionRefusedError("connection refused"))
        return real_deliver(claim, stats)

    monkeypatch.setattr(send, "deliver", deliver)
    with pytest.raises(OperationalError):
        send.send_due()
    session.rollback()
    status = dict(session.execute(select(Message.id, Message.status).where(Message.id.in_(ids))).all())
    assert status[ids[0]] == "delivered" and status[ids[1]] == "claimed"  # in flight: reconciled after its timeout
    assert status[ids[2]] == status[ids[3]] == "claimed"  # given back once the database answers again
    monkeypatch.setattr(send, "deliver", real_deliver)
    send.send_due()
    session.rollback()
    status = dict(session.execute(select(Message.id, Message.status).where(Message.id.in_(ids))).all())
    assert status[ids[1]] == "claimed" and status[ids[2]] == status[ids[3]] == "delivered"
    assert gateway.bodies == ["reply 0", "reply 2", "reply 3"]  # nothing sent twice
