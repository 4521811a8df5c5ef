"""Sending through Twilio's REST API (mocked with ``responses`` at the HTTP edge)."""
from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from zoneinfo import ZoneInfo

import pytest
import responses
from sqlalchemy import select

from outreach.config import load_settings
from outreach.db import unit_of_work
from outreach.messaging.gateway import make_gateway
from outreach.models import Alert, FollowUp, Message, Patient
from outreach.clock import utcnow
from outreach.messaging.sender import Sender
from outreach.study.waves import launch_wave

from .conftest import TWILIO_SID

API = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
AS_OF = dt.date(2026, 11, 20)


def ok_reply(request):
    form = dict(urllib.parse.parse_qsl(request.body))
    sid = "SM" + str(len(responses.calls)).zfill(32)
    return 201, {}, json.dumps({"sid": sid, "status": "queued", "to": form["To"], "body": form["Body"]})


def error_reply(status: int, code: int):
    return status, {}, json.dumps({"code": code, "message": f"error {code}", "status": status})


@pytest.fixture
def wave(make_patient, sessions, send_env):
    patients = [make_patient(discharge_date=AS_OF - dt.timedelta(days=31 + i)) for i in range(3)]
    settings = load_settings(send_env)
    with unit_of_work(sessions) as s:
        launch_wave(s, settings, 30, AS_OF, actor="t")
    return patients


@pytest.fixture
def sender(sessions, send_env):
    def make(**overrides):
        settings = load_settings({**send_env, **overrides})
        return Sender(sessions, settings, make_gateway(settings, echo=None))
    return make


def statuses(session):
    session.rollback()
    return [m.status for m in session.scalars(select(Message).order_by(Message.id))]


@responses.activate
def test_success_sends_each_invitation_once_with_status_callback(wave, sender, session):
    responses.add_callback(responses.POST, API, callback=ok_reply)
    stats = sender().send_due()
    assert stats.sent == 3 and len(responses.calls) == 3
    form = dict(urllib.parse.parse_qsl(responses.calls[0].request.body))
    assert form["StatusCallback"] == "https://outreach.example.org/twilio/status"
    assert form["MessagingServiceSid"].startswith("MG") and form["To"].startswith("+1416555")
    assert statuses(session) == ["queued"] * 3
    fu = session.scalars(select(FollowUp)).first()
    assert fu.invited_at is not None and fu.expires_at - fu.invited_at == dt.timedelta(days=7)
    assert sender().send_due().sent == 0  # nothing twice
    assert len(responses.calls) == 3


@responses.activate
def test_429_backs_off_then_succeeds(wave, sender, session, clock):
    responses.add(responses.POST, API, status=429, body=json.dumps({"code": 20429, "message": "Too many"}))
    responses.add_callback(responses.POST, API, callback=ok_reply)
    stats = sender().send_due()
    assert stats.retried == 1 and stats.sent == 2
    msg = session.scalar(select(Message).where(Message.status == "pending"))
    assert msg.attempts == 1 and msg.send_after > utcnow() and "429" in msg.error_message
    clock(seconds=10)
    assert sender().send_due().sent == 1
    assert statuses(session) == ["queued"] * 3


@responses.activate
def test_500s_until_failure_after_five_attempts(wave, sender, session, clock):
    responses.add(responses.POST, API, status=500, body=json.dumps({"code": 20500, "message": "boom"}))
    for _ in range(5):
        sender().send_due()
        clock(minutes=10)
    assert statuses(session) == ["failed"] * 3
    assert len(responses.calls) == 15
    msg = session.scalars(select(Message)).first()
    assert msg.attempts == 5 and "500" in msg.error_message


@responses.activate
def test_network_error_is_retried(wave, sender, session):
    from requests.exceptions import ConnectionError as ReqConnectionError

    responses.add(responses.POST, API, body=ReqConnectionError("reset"))
    responses.add_callback(responses.POST, API, callback=ok_reply)
    assert sender().send_due().retried == 1


@responses.activate
def test_21610_marks_the_patient_opted_out(wave, sender, session):
    responses.add_callback(responses.POST, API, callback=lambda r: error_reply(400, 21610))
    sender().send_due(max_batches=1)
    session.rollback()
    patients = session.scalars(select(Patient)).all()
    assert all(p.opted_out_at is not None for p in patients)
    assert {f.state for f in session.scalars(select(FollowUp))} == {"opted_out"}


@responses.activate
def test_21211_marks_phone_invalid_and_followup_undeliverable(wave, sender, session):
    responses.add_callback(responses.POST, API, callback=lambda r: error_reply(400, 21211))
    sender().send_due()
    session.rollback()
    assert all(not p.phone_valid for p in session.scalars(select(Patient)))
    assert {f.state for f in session.scalars(select(FollowUp))} == {"undeliverable"}
    assert statuses(session) == ["failed"] * 3


@responses.activate
def test_failure_reasons_are_shown_to_coordinators(wave, sender, run_cli, send_env):
    responses.add_callback(responses.POST, API, callback=lambda r: error_reply(400, 21211))
    sender().send_due()
    out = run_cli("waves", "status", extra_env=send_env).output
    assert "3 x failed: error 21211, GatewayError: Twilio 400 error 21211" in out  # the type and a summary


@responses.activate
def test_stop_after_launch_means_nothing_is_sent(wave, sender, twilio, session):
    responses.add_callback(responses.POST, API, callback=ok_reply)
    twilio.text(wave[0].phone, "STOP")
    stats = sender().send_due()
    assert stats.sent == 2 and len(responses.calls) == 2
    sent_to = {dict(urllib.parse.parse_qsl(c.request.body))["To"] for c in responses.calls}
    assert wave[0].phone not in sent_to


@responses.activate
def test_opt_out_is_rechecked_at_send_time(wave, sender, sessions, session):
    """An opt-out that did not cancel the queue (e.g. set by another system) still stops the send."""
    responses.add_callback(responses.POST, API, callback=ok_reply)
    with unit_of_work(sessions) as s:
        s.get(Patient, wave[1].id).opted_out_at = utcnow()
    stats = sender().send_due()
    assert stats.sent == 2 and stats.cancelled == 1


@responses.activate
def test_quiet_hours_hold_until_the_patients_morning(wave, sender, session, clock):
    responses.add_callback(responses.POST, API, callback=ok_reply)
    now = utcnow()
    local_hour = now.replace(tzinfo=dt.UTC).astimezone(ZoneInfo("America/Toronto")).hour
    # A window that is closed right now in Toronto: the hour two hours from now, every day.
    start = (local_hour + 2) % 24
    window = f"Mon-Sun {start:02d}:00-{start:02d}:30"
    stats = sender(SEND_WINDOW=window).send_due()
    assert stats.held == 3 and len(responses.calls) == 0 and statuses(session) == ["pending"] * 3
    held = session.scalars(select(Message)).first()
    assert dt.timedelta(hours=1) <= held.send_after - now <= dt.timedelta(hours=2)
    clock(seconds=(held.send_after - utcnow()).total_seconds() - 60)
    assert sender(SEND_WINDOW=window).send_due().sent == 0  # a minute before the opening: still held
    clock(seconds=120)
    assert sender(SEND_WINDOW=window).send_due().sent == 3


@responses.activate
def test_abandoned_claim_is_reconciled_not_resent(wave, sender, sessions, session, clock):
    """A worker died after Twilio accepted the message but before it recorded the sid."""
    responses.add_callback(responses.POST, API, callback=ok_reply)
    s1 = sender(SEND_CLAIM_TIMEOUT="60")
    claims = s1.claim()
    assert len(claims) == 3
    first = session.get(Message, claims[0].id)
    # The first one reached Twilio before the crash:
    responses.add(responses.GET, API, json={"messages": [
        {"sid": "SM" + "9" * 32, "to": first.to_number, "body": first.body, "status": "delivered"}],
        "next_page_uri": None, "page": 0, "page_size": 50, "uri": "/x", "first_page_uri": "/x",
        "previous_page_uri": None, "start": 0, "end": 0})
    clock(seconds=30)
    assert sender().send_due().sent == 0  # claims not yet abandoned
    clock(seconds=61)
    stats = sender().send_due()
    assert stats.reconciled == 1 and stats.sent == 2  # (the other two are not in Twilio's list)
    assert len([c for c in responses.calls if c.request.method == "POST"]) == 2
    session.rollback()
    assert session.get(Message, claims[0].id).provider_sid == "SM" + "9" * 32


def test_missing_twilio_credentials_name_the_variable(run_cli, send_env):
    result = run_cli("send-due", extra_env={**send_env, "TWILIO_ACCOUNT_SID": ""})
    assert result.exit_code == 2 and "TWILIO_ACCOUNT_SID is not set" in result.output


def test_two_workers_at_once_send_each_message_once(make_patient, sessions, send_env, session):
    """Claims use FOR UPDATE SKIP LOCKED (PostgreSQL) / BEGIN IMMEDIATE (SQLite): no message is sent twice."""
    import threading
    from collections import Counter

    from outreach.messaging.gateway import SimulatorGateway

    for i in range(60):
        make_patient(discharge_date=AS_OF - dt.timedelta(days=31 + i % 10))
    settings = load_settings({**send_env, "SMS_BACKEND": "simulator"})
    with unit_of_work(sessions) as s:
        launch_wave(s, settings, 30, AS_OF, actor="t")
    sent: list[str] = []
    lock = threading.Lock()

    class Recording(SimulatorGateway):
        def send(self, to, body, status_callback):
            with lock:
                sent.append(to)
            return super().send(to, body, status_callback)

    barrier = threading.Barrier(3)

    def work():
        barrier.wait()
        Sender(sessions, settings, Recording(echo=None)).send_due()

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sent) == 60 and set(Counter(sent).values()) == {1}
    assert set(statuses(session)) == {"delivered"}


@pytest.fixture
def twilio_with_on_call(web_env):
    """The real app with two coordinators on call, written the way people write numbers."""
    from webhooks.app import create_app

    from outreach.messaging.webhook_client import SignedWebhookClient, flask_post

    from .conftest import AUTH_TOKEN, PUBLIC_BASE

    app = create_app({**web_env, "ALERT_SMS_TO": "416 555 0100, +1 (613) 555-0111"})
    yield SignedWebhookClient(flask_post(app.test_client()), PUBLIC_BASE, AUTH_TOKEN)
    app.extensions["outreach"]["engine"].dispose()


def _crisis_alert_texts(twilio_with_on_call, wave, sender, session, window):
    responses.add_callback(responses.POST, API, callback=ok_reply)
    status, replies = twilio_with_on_call.text(wave[0].phone, "I want to end my life")
    assert status == 200 and "988" in replies[0]
    stats = sender(SEND_WINDOW=window).send_due()
    return stats, [dict(urllib.parse.parse_qsl(c.request.body)) for c in responses.calls]


@responses.activate
def test_a_crisis_alert_is_texted_to_the_coordinators_on_call_ahead_of_the_queue(twilio_with_on_call, wave, sender,
                                                                                 session):
    stats, sent = _crisis_alert_texts(twilio_with_on_call, wave, sender, session, "Mon-Sun 00:00-24:00")
    # the two alerts first, then the other patients' invitations queued before them; the survey of the
    # patient in crisis is paused, so their invitation is not sent
    assert stats.sent == 4 and stats.cancelled == 1
    assert [f["To"] for f in sent[:2]] == ["+14165550100", "+16135550111"]
    alert_id = session.scalar(select(Alert.id))
    body = sent[0]["Body"]
    # where a coordinator woken at night opens it from the phone: the console's queue, not a command
    assert f"crisis alert #{alert_id}" in body and body.endswith("https://outreach.example.org/console/alerts")
    assert wave[0].phone not in body and wave[0].patient_id not in body and "life" not in body
    session.rollback()
    alert = session.get(Alert, alert_id)
    assert alert.on_call_queued_at is not None and alert.on_call_texted_at is not None  # sent, not only queued


@responses.activate
def test_a_crisis_alert_reaches_the_coordinators_during_quiet_hours(twilio_with_on_call, wave, sender, session):
    local = dt.datetime.now(ZoneInfo("America/Toronto"))
    closed = f"Mon-Sun {(local.hour + 2) % 24:02d}:00-{(local.hour + 2) % 24:02d}:30"
    stats, sent = _crisis_alert_texts(twilio_with_on_call, wave, sender, session, closed)
    assert stats.sent == 2 and stats.held == 2
    assert {f["To"] for f in sent} == {"+14165550100", "+16135550111"}
