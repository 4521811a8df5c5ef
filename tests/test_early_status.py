"""A delivery status callback that arrives before the worker has recorded its message's sid (Twilio can
call back within milliseconds of the API's answer) is kept and applied when the sid is recorded."""
from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from sqlalchemy import select

from outreach.config import load_settings
from outreach.db import unit_of_work
from outreach.messaging.gateway import SendResult
from outreach.models import EarlyStatus, FollowUp, Message, Patient
from outreach.clock import utcnow
from outreach.study.scheduler import tick
from outreach.messaging.sender import Sender
from outreach.messaging.status import update_status


class CallsBackAtOnce:
    """The network edge: Twilio accepts the text and its status callbacks reach the web app before the
    API's answer reaches the worker."""

    def __init__(self, callbacks=()):
        self.callbacks, self.sent, self.crashed_sids = list(callbacks), [], []

    def send(self, to, body, status_callback):
        sid = f"SM{len(self.sent):032x}"
        self.sent.append(sid)
        for status, error_code in self.callbacks:
            self.on_callback(sid, status, error_code)
        return SendResult(sid=sid, status="queued")

    def sent_since(self, to, since, body):
        return self.crashed_sids


@pytest.fixture
def invitation(make_patient, make_followup, sessions):
    """A patient with one invitation due now."""
    p = make_patient()
    fu = make_followup(p, invited_at=None)
    with unit_of_work(sessions) as s:
        s.add(Message(direction="out", kind="invitation", status="pending", body="Time for your check-in",
                      patient_id=p.id, followup_id=fu.id, to_number=p.phone,
                      send_after=utcnow() - dt.timedelta(minutes=1)))
    return p, fu


@pytest.fixture
def worker(sessions, send_env, twilio):
    """A sender whose gateway's callbacks go through the real, signed status webhook."""
    def make(gateway: CallsBackAtOnce) -> Sender:
        gateway.on_callback = lambda sid, status, code: twilio.status(sid, status, code)
        return Sender(sessions, load_settings(send_env), gateway)
    return make


def outbound(session) -> Message:
    session.rollback()
    return session.scalar(select(Message).where(Message.direction == "out"))


def kept(session) -> list[str]:
    session.rollback()
    return session.scalars(select(EarlyStatus.sid).order_by(EarlyStatus.id)).all()


def test_a_delivered_callback_before_the_sid_is_recorded_shows_on_the_message(invitation, worker, session):
    # Out of order too, as Twilio may deliver them: delivered, then a late "sent".
    stats = worker(CallsBackAtOnce([("delivered", None), ("sent", None)])).send_due()
    assert stats.sent == 1
    msg = outbound(session)
    assert msg.status == "delivered" and msg.provider_sid
    assert kept(session) == []


def test_an_early_opt_out_callback_opts_the_patient_out(invitation, worker, session):
    p, fu = invitation
    worker(CallsBackAtOnce([("failed", 21610)])).send_due()
    msg = outbound(session)
    assert (msg.status, msg.error_code) == ("failed", 21610)
    assert session.get(Patient, p.id).opted_out_at is not None


def test_an_early_carrier_failure_on_the_last_attempt_closes_the_follow_up(invitation, worker, session, sessions):
    p, fu = invitation
    with unit_of_work(sessions) as s:
        s.get(FollowUp, fu.id).reminders_sent = 2  # no reminder left after this text
    worker(CallsBackAtOnce([("undelivered", 30003)])).send_due()
    assert outbound(session).status == "undelivered"
    assert session.get(FollowUp, fu.id).state == "undeliverable"


def test_a_callback_kept_for_a_text_sent_before_a_crash_is_applied_when_it_is_reconciled(
        invitation, worker, session, sessions, clock):
    gateway = CallsBackAtOnce()
    sender = worker(gateway)
    sender.claim()  # ...and the worker died after the API call: the sid was never recorded
    gateway.on_callback("SM" + "c" * 32, "delivered", None)
    assert kept(session) == ["SM" + "c" * 32]
    gateway.crashed_sids = ["SM" + "c" * 32]
    clock(seconds=61)  # the claim is abandoned
    stats = sender.send_due()
    assert stats.reconciled == 1 and stats.sent == 0 and gateway.sent == []
    msg = outbound(session)
    assert (msg.provider_sid, msg.status) == ("SM" + "c" * 32, "delivered")
    assert kept(session) == []


def test_a_callback_racing_the_recording_of_its_sid_is_applied(invitation, sessions, send_env, session,
                                                               monkeypatch):
    """The callback finds no message while the worker's transaction recording the sid is still open,
    then that transaction commits: the callback is applied, not kept for ever."""
    from outreach.messaging import sender as sender_module
    from outreach.messaging.status import apply_early_statuses

    settings = load_settings(send_env)
    callback: list[str] = []

    def record_while_a_callback_arrives(s, settings_, msg):
        applied = apply_early_statuses(s, settings_, msg)  # nothing kept yet
        thread = threading.Thread(target=lambda: callback.append(
            update_status(sessions, settings, msg.provider_sid, "delivered", None)))
        thread.start()
        time.sleep(0.3)  # the callback has looked for the message (not committed yet) and waits
        record_while_a_callback_arrives.thread = thread
        return applied

    monkeypatch.setattr(sender_module, "apply_early_statuses", record_while_a_callback_arrives)
    assert Sender(sessions, settings, CallsBackAtOnce()).send_due().sent == 1
    record_while_a_callback_arrives.thread.join(timeout=30)
    assert callback == ["status delivered"]
    assert outbound(session).status == "delivered" and kept(session) == []


def test_a_kept_callback_that_never_finds_its_message_is_purged_after_a_week(sessions, settings, session, clock):
    assert update_status(sessions, settings, "SM" + "d" * 32, "delivered", None) == "kept until the sid is recorded"
    clock(days=6)
    update_status(sessions, settings, "SM" + "e" * 32, "delivered", None)
    with unit_of_work(sessions) as s:
        tick(s, settings)
    assert kept(session) == ["SM" + "d" * 32, "SM" + "e" * 32]
    clock(days=1, minutes=1)
    with unit_of_work(sessions) as s:
        tick(s, settings)
    assert kept(session) == ["SM" + "e" * 32]
