"""Issue 23: an alert nobody takes is escalated, a failed on-call text is escalated, a coordinator's preview texts
nobody, and a patient who keeps writing after an alert is seen on its card.  End to end through the signed webhook
and the worker's minute duties, on both databases; Twilio's API mocked at the HTTP edge."""
from __future__ import annotations

import datetime as dt
import itertools
import json
import urllib.parse

import pytest
import responses
from sqlalchemy import select

from outreach.clock import utcnow
from outreach.config import load_settings
from outreach.db import unit_of_work
from outreach.messaging.gateway import make_gateway
from outreach.messaging.on_call import escalate_alerts
from outreach.messaging.sender import Sender
from outreach.messaging.webhook_client import SignedWebhookClient, flask_post
from outreach.models import Alert, AuditEvent, Message
from outreach.staff.alerts import alert_queue, take_alert
from outreach.states import Delivery

from .conftest import AUTH_TOKEN, PUBLIC_BASE, TWILIO_SID

API = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
ON_CALL = "416 555 0100"
SIDS = itertools.count(1)
SECOND = "613 555 0111, 613 555 0112"


@pytest.fixture
def service(send_env):
    return {**send_env, "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "ALERT_SMS_TO": ON_CALL, "ALERT_ESCALATE_TO": SECOND, "ALERT_ESCALATE_MINUTES": "60",
            "HELP_CONTACT": "1-800-555-0199"}


@pytest.fixture
def phone(service):
    from webhooks.app import create_app

    app = create_app(service)
    yield lambda preview=False: SignedWebhookClient(flask_post(app.test_client()), PUBLIC_BASE, AUTH_TOKEN,
                                                    preview=preview)
    app.extensions["outreach"]["engine"].dispose()


def _send_all(sessions, service, status: int = 201):
    """The worker's sending pass through Twilio's API (mocked); returns the (To, Body) of each request."""
    sent = []

    def reply(request):
        form = dict(urllib.parse.parse_qsl(request.body))
        sent.append((form["To"], form["Body"]))
        if status != 201:
            return status, {}, json.dumps({"code": 21211, "message": "Invalid 'To' Phone Number", "status": status})
        return 201, {}, json.dumps({"sid": f"SM{next(SIDS):032d}", "status": "queued"})

    settings = load_settings(service)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as api:
        api.add_callback(responses.POST, API, callback=reply)
        Sender(sessions, settings, make_gateway(settings, echo=None)).send_due()
    return sent


def _escalate(sessions, service, minutes: float) -> list[int]:
    """The worker's minute pass, once every alert opened ``minutes`` ago (the alerts are moved back in time)."""
    with unit_of_work(sessions) as s:
        for alert in s.scalars(select(Alert)):
            alert.opened_at = utcnow() - dt.timedelta(minutes=minutes)
    with unit_of_work(sessions) as s:
        return escalate_alerts(s, load_settings(service))


def test_an_alert_nobody_takes_is_escalated_once_after_the_set_minutes(phone, make_patient, make_followup, sessions,
                                                                      session, service):
    patient = make_patient()
    make_followup(patient, state="q_self_efficacy")
    status, replies = phone().text(patient.phone, "I want to end my life")
    assert status == 200 and "988" in replies[0]
    sent = _send_all(sessions, service)
    assert [to for to, _ in sent] == ["+14165550100"]
    assert _escalate(sessions, service, 59) == []
    alert_id = session.scalar(select(Alert.id))
    assert _escalate(sessions, service, 61) == [alert_id]
    assert _escalate(sessions, service, 120) == []  # once
    escalations = _send_all(sessions, service)
    assert sorted(to for to, _ in escalations) == ["+16135550111", "+16135550112"]
    body = escalations[0][1]
    assert f"ESCALATED crisis alert #{alert_id}" in body and "nobody has taken it" in body
    assert body.endswith("/console/alerts") and "life" not in body and patient.phone not in body
    session.rollback()
    assert session.get(Alert, alert_id).escalation_reason == "not_taken"
    assert session.scalars(select(AuditEvent.action).where(AuditEvent.action == "crisis_alert_escalated")).all()
    with unit_of_work(sessions) as s:
        card = alert_queue(s, now=utcnow(), overdue_after=dt.timedelta(hours=12))[0]
    assert card.escalated_at is not None and ("sent", 3) in card.on_call


def test_a_taken_alert_is_not_escalated(phone, make_patient, make_followup, sessions, service):
    patient = make_patient()
    make_followup(patient, state="q_self_efficacy")
    phone().text(patient.phone, "I want to end my life")
    with unit_of_work(sessions) as s:
        take_alert(s, s.scalar(select(Alert.id)), "coord@study.example.org")
    assert _escalate(sessions, service, 600) == []


def test_a_failed_on_call_text_is_escalated_at_once(phone, make_patient, make_followup, sessions, session, service):
    patient = make_patient()
    make_followup(patient, state="q_self_efficacy")
    phone().text(patient.phone, "I want to end my life")
    _send_all(sessions, service, status=400)  # Twilio refuses the on-call text
    session.rollback()
    assert session.scalar(select(Message.status).where(Message.kind == "alert")) == Delivery.FAILED
    assert session.scalar(select(Alert.on_call_texted_at)) is None  # never sent
    assert _escalate(sessions, service, 1) == [session.scalar(select(Alert.id))]
    session.rollback()
    assert session.scalar(select(Alert.escalation_reason)) == "on_call_failed"
    texts = _send_all(sessions, service)
    assert "the text to the coordinators on call failed" in texts[0][1]


def test_a_coordinators_preview_opens_a_marked_alert_and_texts_nobody(phone, make_patient, make_followup, sessions,
                                                                     session, service):
    patient = make_patient()
    make_followup(patient, state="q_self_efficacy")
    status, replies = phone(preview=True).text(patient.phone, "I want to end my life")
    assert status == 200 and "988" in replies[0]  # the safety reply, as the patient would get it
    assert _send_all(sessions, service) == []
    assert _escalate(sessions, service, 600) == []
    session.rollback()
    alert = session.scalars(select(Alert)).one()
    assert alert.preview and alert.on_call_queued_at is None
    with unit_of_work(sessions) as s:
        assert alert_queue(s, now=utcnow(), overdue_after=dt.timedelta(hours=12))[0].preview


def test_texts_after_an_alert_show_on_its_card_until_it_is_resolved(phone, make_patient, make_followup, sessions,
                                                                   console_client, service):
    patient = make_patient(patient_id="KEEPS-WRITING")
    make_followup(patient, state="q_self_efficacy")
    client = phone()
    client.text(patient.phone, "I want to end my life")
    client.text(patient.phone, "is anyone there")
    client.text(patient.phone, "i wrote a letter to my kids")
    coordinator = console_client("coordinator")
    page = coordinator.get("/console/alerts/list").get_data(as_text=True)
    assert "2 new texts" in page and page.index("is anyone there") < page.index("i wrote a letter to my kids")
    assert 'aria-label="1 open, 2 new texts"' in page  # the header's count rises
    home = coordinator.get("/console/").get_data(as_text=True)
    assert "1 +2" in home


def test_an_on_call_text_twilio_cancelled_is_escalated_at_once(phone, make_patient, make_followup, sessions, session,
                                                                service):
    patient = make_patient()
    make_followup(patient, state="q_self_efficacy")
    phone().text(patient.phone, "I want to end my life")
    _send_all(sessions, service)
    session.rollback()
    sid = session.scalar(select(Message.provider_sid).where(Message.kind == "alert"))
    assert phone().status(sid, "canceled") == 204  # Twilio dropped it before it went
    assert _escalate(sessions, service, 1) == [session.scalar(select(Alert.id))]
    session.rollback()
    assert session.scalar(select(Alert.escalation_reason)) == "on_call_failed"
