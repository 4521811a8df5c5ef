"""No phone number and no message text reaches a log line, a traceback or a stored error, whatever fails.

Each failure path is made to raise the way it would in production (a database error whose statement
carries the patient's number and words, Twilio refusing a number, a status callback failing, a Flask
500), on both databases; then every captured log line (pytest's ``caplog`` and the service's own
handler, formatted) and every stored ``error_message`` is searched for the number and the words.
"""
from __future__ import annotations

import io
import json
import logging

import pytest
import responses
from sqlalchemy import insert, select

from outreach.config import load_settings
from outreach.db import unit_of_work
from outreach.messaging.gateway import make_gateway
from outreach.logs import configure_logging
from outreach.models import Message
from outreach.clock import utcnow
from outreach.messaging.sender import Sender

from .conftest import TWILIO_SID

PHONE = "+14165550142"
# Every way the number could be written in a log line.
PHONE_FORMS = [PHONE, "4165550142", "416-555-0142", "(416) 555-0142", "416 555 0142", "555-0142", "5550142"]
BODY = "Zorblax took my bike and I feel awful"
WORDS = ["Zorblax", "feel awful"]
API = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"


@pytest.fixture
def logs(caplog):
    """Everything logged during the test: pytest's capture and the service's own handler, formatted."""
    handler = configure_logging()
    stream = io.StringIO()
    old = handler.setStream(stream)
    caplog.set_level(logging.DEBUG)

    def text() -> str:
        records = "\n".join(f"{r.getMessage()}\n{r.exc_text or ''}\n{r.stack_info or ''}" for r in caplog.records)
        return "\n".join([caplog.text, records, stream.getvalue()])

    yield text
    handler.setStream(old)


def assert_clean(text: str, where: str) -> None:
    for form in PHONE_FORMS:
        assert form not in text, f"phone number ({form}) in {where}:\n{text}"
    for word in WORDS:
        assert word not in text, f"message text ({word!r}) in {where}:\n{text}"


def stored_errors(session) -> list[str]:
    session.rollback()
    return [e for e in session.scalars(select(Message.error_message)) if e]


def _failing_insert(bind, phone: str, body: str) -> None:
    """A statement that fails in the database with the patient's number and words bound to it (status is
    NOT NULL): on PostgreSQL the error's DETAIL also repeats the failing row."""
    bind.execute(insert(Message), dict(direction="out", body=body, to_number=phone, from_number=phone, status=None))


def test_a_database_error_while_processing_an_inbound_text(twilio, make_patient, make_followup, session, logs,
                                                          monkeypatch):
    from outreach.messaging.inbound import Inbox

    p = make_patient(phone=PHONE)
    make_followup(p, state="q_self_efficacy")
    monkeypatch.setattr(Inbox, "_store_replies",
                        staticmethod(lambda conn, msg, *a, **k: _failing_insert(conn, msg.from_number, msg.body)))
    status, replies = twilio.text(PHONE, BODY)
    assert status == 200 and replies == []
    failed = session.scalar(select(Message).where(Message.direction == "in"))
    assert failed.status == "failed" and failed.body == BODY  # the text itself is kept, for replay
    # The error says what failed, in words an operator can use, without the values.
    assert failed.error_message.startswith("IntegrityError: ") and "status" in failed.error_message
    assert "could not be processed" in logs() and "IntegrityError" in logs()
    assert_clean(logs(), "the logs")
    assert_clean("\n".join(stored_errors(session)), "messages.error_message")


@responses.activate
def test_a_sender_failure_twilio_refuses_the_number(make_patient, sessions, session, send_env, logs):
    """Twilio's error message quotes the number; neither the row nor the log may keep it."""
    p = make_patient(phone=PHONE)
    with unit_of_work(sessions) as s:
        s.add(Message(direction="out", kind="manual", status="pending", body=BODY, patient_id=p.id, to_number=PHONE,
                      send_after=utcnow()))
    responses.add(responses.POST, API, status=400, body=json.dumps(
        {"code": 21211, "status": 400, "message": f"The 'To' number {PHONE} is not a valid phone number."}))
    settings = load_settings(send_env)
    stats = Sender(sessions, settings, make_gateway(settings, echo=None)).send_due()
    assert stats.failed == 1
    [error] = stored_errors(session)
    assert error.startswith("GatewayError: Twilio 400 error 21211") and "+1******0142" in error
    assert "failed" in logs()
    assert_clean(logs(), "the logs")
    assert_clean(error, "messages.error_message")


@responses.activate
def test_a_sender_failure_unexpected_database_error(make_patient, sessions, session, send_env, logs, monkeypatch):
    p = make_patient(phone=PHONE)
    with unit_of_work(sessions) as s:
        s.add(Message(direction="out", kind="manual", status="pending", body=BODY, patient_id=p.id, to_number=PHONE,
                      send_after=utcnow()))
    responses.add(responses.POST, API, status=201, body=json.dumps({"sid": "SM" + "9" * 32, "status": "queued"}))
    monkeypatch.setattr(Sender, "_record_sent",
                        lambda self, s, msg, followup, sid, status: _failing_insert(s, msg.to_number, msg.body))
    settings = load_settings(send_env)
    Sender(sessions, settings, make_gateway(settings, echo=None)).send_due()  # logged, the queue goes on
    assert "failed unexpectedly" in logs() and "IntegrityError" in logs()
    assert_clean(logs(), "the logs")
    assert_clean("\n".join(stored_errors(session)), "messages.error_message")


def test_a_status_callback_failure(app, twilio, make_patient, sessions, session, logs, monkeypatch):
    from outreach.messaging import status as status_module

    p = make_patient(phone=PHONE)
    with unit_of_work(sessions) as s:
        s.add(Message(direction="out", kind="manual", status="sent", body=BODY, patient_id=p.id, to_number=PHONE,
                      provider_sid="SM" + "7" * 32))

    def failing_lock(s, phone):  # the opt-out's database work fails with the number and words bound to it
        _failing_insert(s, phone, BODY)
        s.flush()

    monkeypatch.setattr(status_module, "lock_phone", failing_lock)
    assert twilio.status("SM" + "7" * 32, "failed", 21610) == 500
    assert "Exception on /twilio/status" in logs() and "IntegrityError" in logs()
    assert_clean(logs(), "the logs")
    assert_clean("\n".join(stored_errors(session)), "messages.error_message")


def test_a_flask_500_in_the_inbound_webhook(app, twilio, make_patient, session, logs, monkeypatch):
    from outreach.messaging.inbound import Inbox

    make_patient(phone=PHONE)

    def failing_store(conn, sms):  # storing the text fails: nothing can be answered
        with conn.begin():
            _failing_insert(conn, sms.from_number, sms.body)

    monkeypatch.setattr(Inbox, "_store", staticmethod(failing_store))
    status, _ = twilio.text(PHONE, BODY)
    assert status == 500
    assert "Exception on /twilio/sms" in logs() and "IntegrityError" in logs()
    assert_clean(logs(), "the logs")
    assert_clean("\n".join(stored_errors(session)), "messages.error_message")


def test_database_errors_never_carry_bound_values(engine):
    """Every engine is made with hide_parameters=True (outreach.db.make_engine)."""
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError) as caught:
        with engine.begin() as conn:
            _failing_insert(conn, PHONE, BODY)
    assert engine.hide_parameters
    assert BODY not in str(caught.value).split("DETAIL")[0] and "parameters hidden" in str(caught.value)
