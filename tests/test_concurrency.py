"""Two messages from one phone at the same moment are applied one after the other, in arrival order."""
from __future__ import annotations

import threading
from collections import Counter

from sqlalchemy import select

from outreach.models import Answer, FollowUp, Message

ORDER = ["self_efficacy", "mental_health", "physical_health", "days_used"]


def test_simultaneous_messages_from_one_phone_apply_in_arrival_order(app, twilio, make_patient, make_followup,
                                                                     session, monkeypatch):
    """On PostgreSQL the patient rows are locked FOR UPDATE; on SQLite BEGIN IMMEDIATE serialises."""
    import time

    from outreach import inbound
    from outreach.webhook_client import SignedWebhookClient, flask_post

    real_respond = inbound.respond

    def slow_respond(*args, **kwargs):  # widen the race window: real work between read and write
        time.sleep(0.01)
        return real_respond(*args, **kwargs)

    monkeypatch.setattr(inbound, "respond", slow_respond)

    patients = [make_patient() for _ in range(30)]
    followups = [make_followup(p, timepoint=90, state="q_self_efficacy") for p in patients]
    errors: list[BaseException] = []

    def burst(bodies: tuple[str, str]) -> None:
        jobs = [(p.phone, body) for p in patients for body in bodies]
        barrier = threading.Barrier(len(jobs))

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

    burst(("3", "4"))  # valid for any question: only the order decides which answers which
    burst(("help", "help"))  # no answer, so no unique constraint would stop a message being applied twice
    burst(("2", "5"))
    assert errors == []
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
