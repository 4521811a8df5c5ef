"""Crisis texts from numbers no patient has: always the safety reply and an alert in the queue, but the
coordinators on call are texted at most once per number per hour and 20 times an hour in all, so a
stranger cannot flood their phones.  Through the real signed webhook, on both databases."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from outreach.staff.alerts import alert_queue, open_alerts
from outreach.db import unit_of_work
from outreach.models import Alert, AuditEvent, Message
from outreach.clock import utcnow
from outreach.messaging.webhook_client import SignedWebhookClient, flask_post

from .conftest import AUTH_TOKEN, PUBLIC_BASE

ON_CALL = ("+14165550100", "+16135550111")
CRISIS = "I want to kill myself"


@pytest.fixture
def twilio(web_env):
    """The real app with two coordinators on call (ALERT_SMS_TO), played by signed posts as Twilio does."""
    from webhooks.app import create_app

    app = create_app({**web_env, "ALERT_SMS_TO": ", ".join(ON_CALL)})
    yield SignedWebhookClient(flask_post(app.test_client()), PUBLIC_BASE, AUTH_TOKEN)
    app.extensions["outreach"]["engine"].dispose()


def on_call_texts(session) -> list[str]:
    session.rollback()
    return list(session.scalars(select(Message.body).where(Message.kind == "alert").order_by(Message.id)))


def alerts(session) -> list[Alert]:
    session.rollback()
    return list(session.scalars(select(Alert).order_by(Alert.id)))


def crisis(twilio, phone: str) -> None:
    status, replies = twilio.text(phone, CRISIS)
    assert status == 200 and "988" in replies[0] and "988" in replies[1]  # the safety reply, always


def test_one_unknown_number_gets_the_on_call_coordinators_texted_at_most_once_an_hour(twilio, session, sessions,
                                                                                      clock):
    stranger = "+14165559876"
    for _ in range(3):
        crisis(twilio, stranger)
    assert len(alerts(session)) == 3  # every one is in the queue
    texts = on_call_texts(session)
    first = alerts(session)[0]
    assert len(texts) == len(ON_CALL) and all(f"alert #{first.id}" in t for t in texts)
    assert [a.on_call_queued_at is not None for a in alerts(session)] == [True, False, False]
    held = session.scalars(select(AuditEvent.details).where(AuditEvent.action == "crisis_alert_opened")
                           .order_by(AuditEvent.id)).all()
    assert "on_call_not_texted" not in held[0]
    assert held[1]["on_call_not_texted"] == "limit: 1 per unknown number per hour"
    clock(minutes=61)
    crisis(twilio, stranger)
    assert len(on_call_texts(session)) == 2 * len(ON_CALL)  # an hour later: texted again
    with unit_of_work(sessions) as s:
        assert len(open_alerts(s)) == 4
        assert len(alert_queue(s, now=utcnow(), overdue_after=dt.timedelta(hours=12))) == 4


def test_unknown_numbers_get_20_on_call_texts_an_hour_in_all_and_patients_are_never_limited(
        twilio, session, make_patient, make_followup):
    for n in range(25):
        crisis(twilio, f"+1416555{7000 + n:04d}")
    opened = alerts(session)
    assert len(opened) == 25  # all in the queue
    assert sum(a.on_call_queued_at is not None for a in opened) == 20
    assert len(on_call_texts(session)) == 20 * len(ON_CALL)
    last = session.scalar(select(AuditEvent.details).where(AuditEvent.action == "crisis_alert_opened")
                          .order_by(AuditEvent.id.desc()).limit(1))
    assert last["on_call_not_texted"] == "limit: 20 an hour for unknown numbers"
    # A patient in crisis is never held back by strangers.
    p = make_patient()
    make_followup(p, state="q_self_efficacy")
    _, replies = twilio.text(p.phone, CRISIS)
    assert "988" in replies[0]
    assert len(on_call_texts(session)) == 21 * len(ON_CALL)
    assert session.scalar(select(func.count()).select_from(Alert).where(Alert.patient_id == p.id)) == 1
