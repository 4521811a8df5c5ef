"""Fault test with real processes: a worker SIGKILLed mid-wave, restarted: one invitation each."""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from outreach.config import load_settings
from outreach.db import unit_of_work
from outreach.models import Message
from outreach.study.waves import launch_wave

from .fake_twilio import FakeTwilio

AS_OF = dt.date(2026, 11, 20)


def start_worker(env: dict, log: Path) -> subprocess.Popen:
    exe = str(Path(sys.executable).with_name("outreach"))
    with log.open("a") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([exe, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_for(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_killed_worker_never_sends_twice(make_patient, sessions, session, env, tmp_path):
    patients = [make_patient(discharge_date=AS_OF - dt.timedelta(days=31 + i % 10)) for i in range(40)]
    with unit_of_work(sessions) as s:
        launch_wave(s, load_settings(env), 30, AS_OF, actor="t")
    with FakeTwilio(delay=0.15) as fake:
        worker_env = {**os.environ, **env, "SMS_BACKEND": "twilio", "TWILIO_ACCOUNT_SID": "AC" + "3" * 32,
                      "TWILIO_AUTH_TOKEN": "tok", "TWILIO_FROM_NUMBER": "+15005550006",
                      "TWILIO_API_BASE_URL": fake.url, "SEND_WINDOW": "Mon-Sun 00:00-24:00",
                      "SEND_RATE_PER_SECOND": "20", "SEND_CLAIM_TIMEOUT": "2"}
        log = tmp_path / "worker.log"
        first = start_worker(worker_env, log)
        try:
            assert wait_for(lambda: len(fake.messages) >= 10, 60), log.read_text()
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        killed_at = len(fake.messages)
        session.rollback()
        in_flight = session.scalars(select(Message.id).where(Message.status == "claimed")).all()
        assert in_flight, "the kill should leave claimed rows behind"
        second = start_worker(worker_env, log)
        try:
            assert wait_for(lambda: len(set(fake.sent_to())) >= 40, 90), log.read_text()
            time.sleep(3)  # anything sent twice would show up by now
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=30)
    counts = Counter(fake.sent_to())
    assert set(counts) == {p.phone for p in patients}
    assert set(counts.values()) == {1}, f"sent twice: {[k for k, v in counts.items() if v > 1]}"
    assert killed_at < 40
    session.rollback()
    rows = session.scalars(select(Message)).all()
    assert all(m.provider_sid for m in rows) and len({m.provider_sid for m in rows}) == 40
