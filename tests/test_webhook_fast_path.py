"""The webhook's fast path: on PostgreSQL the hot statements run on the driver's connection (outreach.messaging.inbound._run),
on SQLite through Core; both must write the same rows.  TwiML is built as a string."""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select, text
from twilio.twiml.messaging_response import MessagingResponse

from outreach.models import Answer, FollowUp, Message


@pytest.mark.parametrize("replies", [[], ["hi"], [""], ["a & b < c > d \"q\" 'x' ]]>"],
                                     ["é ça 😀 \u2019", "two\nlines\r\n\ttab"], ["Q1", "Q2", "Q3"]])
def test_twiml_is_what_twilio_writes(replies):
    from webhooks.twilio_views import twiml

    expected = MessagingResponse()
    for body in replies:
        expected.message(body)
    assert twiml(replies).get_data(as_text=True) == str(expected)


def test_a_text_writes_the_same_rows_on_either_path(twilio, make_patient, make_followup, session):
    p = make_patient()
    fu = make_followup(p, state="q_self_efficacy")
    before = session.get(FollowUp, fu.id).updated_at
    session.rollback()
    status, replies = twilio.text(p.phone, "7")
    assert status == 200 and len(replies) == 1
    msg = session.scalars(select(Message).where(Message.direction == "in")).one()
    assert (msg.status, msg.patient_id, msg.followup_id) == ("processed", p.id, fu.id)
    assert msg.processed_at is not None and msg.updated_at >= msg.created_at  # onupdate, as Core sets it
    out = session.scalars(select(Message).where(Message.direction == "out")).one()
    assert (out.kind, out.status, out.in_reply_to_id, out.to_number, out.body, out.preview) == (
        "reply", "twiml", msg.id, p.phone, replies[0], False)
    answer = session.scalars(select(Answer)).one()
    assert (answer.question_key, answer.value, answer.raw_text, answer.message_id) == ("self_efficacy", 7, "7", msg.id)
    row = session.get(FollowUp, fu.id)
    assert row.state == "q_mental_health" and row.last_inbound_at == row.last_prompt_at == msg.processed_at
    assert row.updated_at > before
    # a repeat (Twilio retrying) answers what was stored and writes nothing
    assert twilio.text(p.phone, "7", sid=msg.provider_sid) == (200, replies)
    session.rollback()
    assert session.scalar(select(text("count(*)")).select_from(Message.__table__)) == 2


def test_one_phones_ids_are_given_in_commit_order(app, twilio, make_patient, make_followup, engine):
    """The store waits for the phone's lock (held here as a concurrent store would) before its row gets an id."""
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL: SQLite's write lock orders stores already")
    p = make_patient()
    make_followup(p, state="q_self_efficacy")
    done = []
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(1869968244, hashtext(:phone))"), {"phone": p.phone})
        sender = threading.Thread(target=lambda: done.append(twilio.text(p.phone, "7")[0]))
        sender.start()
        time.sleep(0.5)
        assert done == []  # waiting for the lock
        conn.rollback()
    sender.join(10)
    assert done == [200]
