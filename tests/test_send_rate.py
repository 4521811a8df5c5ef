"""SEND_RATE_PER_SECOND is the sender's rate, shared by every worker through the database: several
workers together never send faster than it, and a text that does not go out costs no slot."""
from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, inspect, select

from outreach.config import load_settings
from outreach.db import alembic_config, make_engine, unit_of_work, upgrade
from outreach.messaging.gateway import SimulatorGateway
from outreach.models import Message, Patient, SendRate
from outreach.clock import utcnow
from outreach.messaging.sender import Sender, SendStats
from outreach.study.waves import launch_wave

AS_OF = dt.date(2026, 11, 20)
RATE = 20.0  # texts a second: high enough to keep the test short, low enough to tell 1x from 3x apart


class FakeGateway(SimulatorGateway):
    """The network edge: when each text reached "Twilio", in one clock shared by every worker."""

    lock = threading.Lock()

    def __init__(self, log: list[tuple[float, str]]):
        super().__init__(echo=None)
        self.log = log

    def send(self, to, body, status_callback):
        with self.lock:
            self.log.append((time.monotonic(), to))
        return super().send(to, body, status_callback)


@pytest.fixture
def queued(make_patient, sessions, send_env):
    def queue(n: int) -> list[Patient]:
        patients = [make_patient(discharge_date=AS_OF - dt.timedelta(days=31 + i % 10)) for i in range(n)]
        with unit_of_work(sessions) as s:
            launch_wave(s, load_settings(send_env), 30, AS_OF, actor="t")
        return patients
    return queue


def worker(sessions, send_env, log, **overrides) -> Sender:
    """One worker's sender (its own instance, as in its own process), through the fake gateway."""
    settings = load_settings({**send_env, "SEND_RATE_PER_SECOND": str(RATE), **overrides})
    return Sender(sessions, settings, FakeGateway(log))


def next_slot(session) -> float | None:
    session.rollback()
    return session.scalar(select(SendRate.next_at))


def test_three_workers_together_keep_to_the_senders_rate(queued, sessions, session, send_env):
    patients = queued(30)
    log: list[tuple[float, str]] = []
    # A claim looks abandoned after one second: each worker claims what it alone could send in half of
    # it (10 texts), is slower than that while the three share the rate, and gives back what it did not
    # reach in time, so no live worker's text is taken over.
    workers = [worker(sessions, send_env, log, SEND_CLAIM_TIMEOUT="1") for _ in range(3)]
    barrier = threading.Barrier(3)
    results: list[SendStats] = []

    def run(sender: Sender) -> None:
        barrier.wait()
        results.append(sender.send_due())

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # every text sent once between them (which worker gets a share is up to the scheduler: on SQLite, whose write
    # lock serialises claims, one worker may find nothing left on a loaded machine)
    assert sum(r.sent for r in results) == 30
    assert sum(r.reconciled for r in results) == 0
    assert Counter(to for _, to in log) == Counter(p.phone for p in patients)  # each text once
    times = sorted(at for at, _ in log)
    interval = 1 / RATE
    # Every worker waits for a slot of the one shared row: the k-th text goes out no sooner than k slots
    # after the first (less one slot, for however late the first one was after its own slot).
    early = [k for k, at in enumerate(times) if at - times[0] < (k - 1) * interval]
    assert early == [], f"texts sent ahead of the shared rate: {early}"
    aggregate = (len(times) - 1) / (times[-1] - times[0])
    assert aggregate <= RATE * 1.05, f"{aggregate:.1f} texts/s against a limit of {RATE}"
    session.rollback()
    assert session.scalars(select(SendRate.sender)).all() == [send_env["TWILIO_MESSAGING_SERVICE_SID"]]


def test_a_text_cancelled_or_held_after_its_claim_costs_no_slot(queued, sessions, session, send_env):
    patients = queued(3)
    log: list[tuple[float, str]] = []
    sender = worker(sessions, send_env, log)
    claims = sender.claim()
    stats = SendStats()
    sender.deliver(claims[0], stats)  # the sender's first text: its slot is now
    reserved = next_slot(session)
    assert stats.sent == 1 and reserved is not None
    # The second patient opts out after the claim; the third's window closes (a worker whose quiet
    # hours start now): neither reaches the API, and neither moves the shared slot or waits for it.
    with unit_of_work(sessions) as s:
        s.get(Patient, patients[1].id).opted_out_at = utcnow()
    started = time.monotonic()
    sender.deliver(claims[1], stats)
    hour = (dt.datetime.now(ZoneInfo("America/Toronto")).hour + 2) % 24
    night = worker(sessions, send_env, log, SEND_WINDOW=f"Mon-Sun {hour:02d}:00-{hour:02d}:30")
    night.deliver(claims[2], stats)
    assert time.monotonic() - started < 1 / RATE, "a text that does not go out waited for a slot"
    assert stats.cancelled == 1 and stats.held == 1 and len(log) == 1
    assert next_slot(session) == reserved
    session.rollback()
    assert sorted(session.scalars(select(Message.status))) == ["cancelled", "delivered", "pending"]


def test_an_opt_out_during_the_wait_stops_the_text(queued, sessions, session, send_env, monkeypatch):
    from outreach.messaging import sender as sender_module

    patients = queued(2)
    log: list[tuple[float, str]] = []
    sender = worker(sessions, send_env, log, SEND_RATE_PER_SECOND="1")  # (the wait is not slept)
    waits: list[float] = []

    def opt_out_meanwhile(seconds: float) -> None:  # the patient texts STOP while the worker waits its turn
        waits.append(seconds)
        with unit_of_work(sessions) as s:
            for p in s.scalars(select(Patient)):
                p.opted_out_at = utcnow()

    monkeypatch.setattr(sender_module.time, "sleep", opt_out_meanwhile)
    stats = sender.send_due()
    assert stats.sent == 1 and stats.cancelled == 1 and len(waits) == 1 and waits[0] > 0
    assert [to for _, to in log] in ([patients[0].phone], [patients[1].phone])


def test_rate_zero_is_off_and_costs_no_statement(queued, sessions, engine, session, send_env):
    queued(5)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda conn, cur, sql, *a: statements.append(sql))
    log: list[tuple[float, str]] = []
    stats = worker(sessions, send_env, log, SEND_RATE_PER_SECOND="0").send_due()
    assert stats.sent == 5 and len(log) == 5
    assert statements and not [sql for sql in statements if "send_rates" in sql]
    assert next_slot(session) is None


def test_migration_0008_adds_and_removes_the_tables(empty_db_url):
    from alembic import command

    engine = make_engine(empty_db_url)
    upgrade(engine)
    assert {"send_rates", "early_statuses"} <= set(inspect(engine).get_table_names())
    command.downgrade(alembic_config(engine), "0007")
    assert not {"send_rates", "early_statuses"} & set(inspect(engine).get_table_names())
    upgrade(engine)
    assert {"send_rates", "early_statuses"} <= set(inspect(engine).get_table_names())
    engine.dispose()
