"""Two messages from one phone at the same moment are applied one after the other, in arrival order."""
from __future__ import annotations

import threading
from collections import Counter

from sqlalchemy import select

from outreach.models import Alert, Answer, FollowUp, Message

ORDER = ["self_efficacy", "mental_health", "physical_health", "days_used"]


def burst(app, twilio, phones: list[str], bodies: tuple[str, ...]) -> None:
    """Every phone sends every body at the same moment, one thread per message."""
    from outreach.messaging.webhook_client import SignedWebhookClient, flask_post

    jobs = [(phone, body) for phone in phones for body in bodies]
    barrier = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def send(phone: str, body: str) -> None:
        client = SignedWebhookClient(flask_post(app.test_client()), twilio.signed_base_url, twilio.auth_token)
        try:
            barrier.wait()
            assert client.text(phone, body)[0] == 200
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_simultaneous_messages_from_one_phone_apply_in_arrival_order(app, twilio, make_patient, make_followup,
                                                                     session, monkeypatch):
    """On PostgreSQL the patient rows are locked FOR UPDATE; on SQLite BEGIN IMMEDIATE serialises."""
    import time

    from outreach.messaging import inbound

    real_respond = inbound.respond

    def slow_respond(*args, **kwargs):  # widen the race window: real work between read and write
        time.sleep(0.01)
        return real_respond(*args, **kwargs)

    monkeypatch.setattr(inbound, "respond", slow_respond)

    patients = [make_patient() for _ in range(30)]
    followups = [make_followup(p, timepoint=90, state="q_self_efficacy") for p in patients]

    phones = [p.phone for p in patients]
    burst(app, twilio, phones, ("3", "4"))  # valid for any question: only the order decides which answers which
    burst(app, twilio, phones, ("help", "help"))  # no answer: no unique constraint stops a double application
    burst(app, twilio, phones, ("2", "5"))
    session.rollback()
    inbound = session.execute(select(Message.id, Message.body, Message.status).where(Message.direction == "in")).all()
    assert len(inbound) == 6 * len(patients) and {m.status for m in inbound} == {"processed"}  # none failed or left
    replies = Counter(session.scalars(select(Message.in_reply_to_id).where(Message.direction == "out")))
    for m in inbound:  # each message applied exactly once: HELP answers with its text and the question, once
        assert replies[m.id] == (2 if m.body == "help" else 1), m.body
    for fu in followups:
        answers = {a.question_key: a for a in session.scalars(select(Answer).where(Answer.followup_id == fu.id))}
        assert set(answers) == set(ORDER)  # no message lost, none applied twice
        ids = [answers[k].message_id for k in ORDER]
        assert ids == sorted(ids)  # questions were answered by messages in arrival order
        assert session.get(FollowUp, fu.id).state == "completed"


def test_simultaneous_crisis_messages_from_an_unknown_number_open_one_alert_each(app, twilio, session):
    """No patient row to lock here: each message is claimed before it is applied, so none is applied twice."""
    phones = [f"+1416555{i:04d}" for i in range(20)]
    burst(app, twilio, phones, ("I want to die", "i want to end my life"))
    session.rollback()
    inbound = session.scalars(select(Message).where(Message.direction == "in")).all()
    assert len(inbound) == 40 and {m.status for m in inbound} == {"processed"}
    alerts = Counter(session.scalars(select(Alert.message_id)))
    assert sorted(alerts) == sorted(m.id for m in inbound) and set(alerts.values()) == {1}
    replies = Counter(session.scalars(select(Message.in_reply_to_id).where(Message.direction == "out")))
    assert all(replies[m.id] == 2 for m in inbound)  # the safety reply, in English and in French, once
