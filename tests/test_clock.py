"""One clock, passed in: a simulated clock moves only the code run on it (issue 19)."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import select

from outreach.clock import SYSTEM, Clock, utcnow, using
from outreach.messaging.webhook_client import SignedWebhookClient, flask_post
from outreach.models import Message

from .conftest import AUTH_TOKEN, PUBLIC_BASE

TEN_DAYS = dt.timedelta(days=10)


def test_a_simulated_clock_moves_only_the_thread_that_uses_it():
    seen: dict[str, dt.datetime] = {}
    ready, done = threading.Event(), threading.Event()

    def server_thread():
        ready.wait(5)
        seen["other"] = utcnow()
        done.set()

    other = threading.Thread(target=server_thread)
    other.start()
    with using() as demo:
        demo.advance(TEN_DAYS)
        seen["demo"] = utcnow()
        ready.set()
        done.wait(5)
    other.join(5)
    assert seen["demo"] - seen["other"] > TEN_DAYS - dt.timedelta(minutes=1)
    assert abs(utcnow() - seen["other"]) < dt.timedelta(minutes=1)  # back on the system's time after the block


def test_the_system_clock_cannot_be_moved():
    with pytest.raises(RuntimeError, match="cannot be moved"):
        SYSTEM.advance(TEN_DAYS)


def test_a_web_app_built_with_a_clock_stores_texts_on_it_and_another_app_does_not(web_env, make_patient, session):
    from webhooks.app import create_app

    p = make_patient()
    ahead = Clock()
    ahead.advance(TEN_DAYS)
    apps = [create_app(web_env, clock=ahead), create_app(web_env)]
    try:
        for app, body in zip(apps, ["5", "6"]):
            SignedWebhookClient(flask_post(app.test_client()), PUBLIC_BASE, AUTH_TOKEN).text(p.phone, body)
    finally:
        for app in apps:
            app.extensions["outreach"]["engine"].dispose()
    session.rollback()
    stored = dict(session.execute(select(Message.body, Message.created_at).where(Message.direction == "in")).all())
    assert stored["5"] - stored["6"] > TEN_DAYS - dt.timedelta(minutes=1)
    assert abs(stored["6"] - utcnow()) < dt.timedelta(minutes=1)
