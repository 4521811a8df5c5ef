"""A database outage while patients are texting: nothing lost, everything applied in order afterwards.

PostgreSQL is reached through a loopback TCP proxy (tests/db_proxy.py) that the test cuts and restores;
on SQLite the database file is swapped for an unreadable one.  The real Flask app, the real state machine,
the real spool on disk; a real ``outreach worker`` process for the worker's part."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from outreach.models import Alert, Answer, FollowUp, Message
from outreach.messaging.spool import Spool
from outreach.messaging.webhook_client import SignedWebhookClient, flask_post

from .conftest import AUTH_TOKEN, PUBLIC_BASE
from .db_proxy import TcpProxy

CRISIS = "i took all my pills, i want to die"


class Outage:
    """Cuts the database off from the code under test and brings it back."""

    def __init__(self, db_url: str, tmp_path: Path):
        self.db_url, self.engines = db_url, []
        self.proxy = None
        if db_url.startswith("postgresql"):
            url = make_url(db_url)
            self.proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
            self.url = url.set(host="127.0.0.1", port=self.proxy.port).render_as_string(hide_password=False)
        else:
            self.url = db_url
            self.file = Path(make_url(db_url).database)
            self.away = tmp_path / "moved-away"
            self.away.mkdir()

    def cut(self) -> None:
        if self.proxy is not None:
            self.proxy.cut()
            return
        for suffix in ("", "-wal", "-shm"):  # the database, as a disk that fails would leave it: unreadable
            part = Path(f"{self.file}{suffix}")
            if part.exists():
                part.rename(self.away / part.name)
        self.file.write_bytes(b"\x00garbage, not a database" * 100)
        for engine in self.engines:  # the app's next connection opens the file again
            engine.dispose()

    def restore(self) -> None:
        if self.proxy is not None:
            self.proxy.restore()
            return
        self.file.unlink()
        for part in self.away.iterdir():
            part.rename(self.file.parent / part.name)
        for engine in self.engines:
            engine.dispose()

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.close()


@pytest.fixture
def outage(db_url, tmp_path):
    o = Outage(db_url, tmp_path)
    yield o
    o.close()


@pytest.fixture
def cut_app(outage, web_env, monkeypatch):
    """The web app, reaching the database the way ``outage`` can cut.  It tries the database on every
    request (in production at most once a second while it is known to be down)."""
    from webhooks.app import create_app

    monkeypatch.setattr("outreach.messaging.inbound.PROBE_EVERY", 0.0)

    app = create_app({**web_env, "DATABASE_URL": outage.url, "DB_TIMEOUT_SECONDS": "2"})
    outage.engines.append(app.extensions["outreach"]["engine"])
    yield app
    app.extensions["outreach"]["engine"].dispose()


@pytest.fixture
def patient_texts(cut_app):
    return SignedWebhookClient(flask_post(cut_app.test_client()), PUBLIC_BASE, AUTH_TOKEN)


def answers_of(session, followup_id):
    session.rollback()
    return [(a.question_key, a.value) for a in session.scalars(
        select(Answer).where(Answer.followup_id == followup_id).order_by(Answer.id))]


def test_texts_during_an_outage_are_answered_spooled_and_applied_in_order(
        outage, patient_texts, cut_app, make_patient, make_followup, session, sessions, spool_path, caplog):
    from outreach.db import unit_of_work

    answering = [make_patient() for _ in range(4)]
    in_crisis, asking = make_patient(), make_patient()
    followups = {p.id: make_followup(p, state="q_self_efficacy") for p in [*answering, in_crisis, asking]}
    with unit_of_work(sessions) as s:  # a text the worker sent before the outage
        sent = Message(direction="out", kind="invitation", status="sent", provider_sid="SM" + "e" * 32,
                       patient_id=asking.id, to_number=asking.phone, body="Hello")
        s.add(sent)

    outage.cut()
    replies, sids = [], {}
    for p in answering:  # interleaved across phones, two texts each
        sids[p.id] = "SM" + "a" * 24 + p.phone[-8:]
        replies.append(patient_texts.text(p.phone, "8", sid=sids[p.id]))
    for p in answering:
        replies.append(patient_texts.text(p.phone, "4"))
    crisis_status, crisis_replies = patient_texts.text(in_crisis.phone, CRISIS)
    help_status, help_replies = patient_texts.text(asking.phone, "HELP")
    status = patient_texts.status("SM" + "e" * 32, "delivered")  # a status callback: spooled too

    # Every text answered 200; nothing to say to an answer until it is applied, but the safety reply and the
    # HELP text go out at once (in both languages: the patient's is not known without the database).
    assert [r for r in replies] == [(200, [])] * 8
    assert crisis_status == 200 and len(crisis_replies) == 2 and "988" in crisis_replies[0]
    assert help_status == 200 and len(help_replies) == 2 and "1-800-555-0199" in help_replies[0]
    assert status == 204
    assert Spool(spool_path).depth()[0] == 11
    assert {oct(f.stat().st_mode & 0o777) for f in spool_path.iterdir() if f.is_file()} == {"0o600"}
    health = cut_app.test_client().get("/healthz")
    assert health.status_code == 200 and health.get_json()["database"] == "unavailable"
    assert health.get_json()["spooled"] == 11
    # An unsigned request is refused even now.
    assert cut_app.test_client().post("/twilio/sms", data={"From": answering[0].phone, "Body": "8"}).status_code == 403

    outage.restore()
    # Twilio delivers the first text again after the recovery: the next request drains the spool first.
    first = answering[0]
    assert patient_texts.text(first.phone, "8", sid=sids[first.id]) == (200, [])
    assert Spool(spool_path).depth()[0] == 0
    for p in answering:  # applied in arrival order, per phone: 8 is the self-efficacy, 4 (Fair, coded 2) the
        # mental health; the other way round, "4" would have been the self-efficacy
        assert answers_of(session, followups[p.id].id) == [("self_efficacy", 8), ("mental_health", 2)]
        assert session.get(FollowUp, followups[p.id].id).state == "q_physical_health"
    assert session.scalar(select(func.count()).select_from(Message)
                          .where(Message.provider_sid == sids[first.id])) == 1  # the repeat, applied once
    # The crisis text opened its alert when applied, at the time it was received; its safety reply is
    # recorded as sent (in the webhook's answer) and not queued a second time.
    alert = session.scalar(select(Alert).where(Alert.patient_id == in_crisis.id))
    crisis_msg = session.get(Message, alert.message_id)
    assert crisis_msg.body == CRISIS and alert.opened_at == crisis_msg.created_at
    safety = session.execute(select(Message.status, Message.body).where(Message.in_reply_to_id == crisis_msg.id)).all()
    assert sorted(s for s, _ in safety) == ["twiml", "twiml"] and {b for _, b in safety} == set(crisis_replies)
    # HELP: the texts already given are recorded as sent; the question it repeats goes out through the worker.
    help_msg = session.scalar(select(Message).where(Message.direction == "in", Message.body == "HELP"))
    after_help = session.execute(select(Message.status, Message.body).where(Message.in_reply_to_id == help_msg.id)
                                 .order_by(Message.id)).all()
    assert [s for s, _ in after_help] == ["twiml", "twiml", "pending"]
    from types import SimpleNamespace

    from conversations.engine import Context, current_prompt
    question = current_prompt(SimpleNamespace(state="q_self_efficacy", timepoint_days=30),
                              Context(org="Recovery Study", help_contact="1-800-555-0199"))
    assert after_help[-1].body == question  # the question HELP repeats, exactly
    assert session.get(Message, sent.id).status == "delivered"  # the spooled status callback, applied
    # Nothing the patients wrote, and no phone number, reached a log line.
    for p in [*answering, in_crisis, asking]:
        assert p.phone not in caplog.text
    assert CRISIS not in caplog.text and "HELP" not in caplog.text
    assert "database unavailable" in caplog.text and "database available again" in caplog.text


def test_a_newer_text_from_a_phone_with_spooled_texts_waits_its_turn(outage, patient_texts, make_patient,
                                                                      make_followup, session):
    p = make_patient()
    fu = make_followup(p, state="q_self_efficacy")
    outage.cut()
    assert patient_texts.text(p.phone, "9") == (200, [])
    outage.restore()
    status, replies = patient_texts.text(p.phone, "5")  # after the recovery: applied after the spooled "9"
    assert status == 200 and replies  # the next question, answered live
    assert answers_of(session, fu.id) == [("self_efficacy", 9), ("mental_health", 1)]  # 5 = Poor, coded 1


def test_a_crash_while_draining_loses_nothing_and_applies_nothing_twice(outage, cut_app, patient_texts,
                                                                       make_patient, make_followup, session,
                                                                       spool_path):
    p, q = make_patient(), make_patient()
    fu = make_followup(p, state="q_self_efficacy")
    make_followup(q, state="q_self_efficacy")
    outage.cut()
    patient_texts.text(p.phone, "6")
    patient_texts.text(q.phone, CRISIS)
    outage.restore()
    inbox = cut_app.extensions["outreach"]["inbox"]
    real_apply, applied = inbox._apply_spooled, []

    def killed_after_storing(item):  # the process dies after the text is stored and applied, before unlink
        real_apply(item)
        applied.append(item)
        raise SystemExit("killed")

    inbox._apply_spooled = killed_after_storing
    with pytest.raises(SystemExit):
        inbox.drain_spool()
    assert len(applied) == 1 and Spool(spool_path).depth()[0] == 2  # stored, yet still spooled
    inbox._apply_spooled = real_apply
    assert inbox.drain_spool().applied == 2
    assert answers_of(session, fu.id) == [("self_efficacy", 6)]  # once
    assert session.scalar(select(func.count()).select_from(Alert)) == 1
    assert session.scalar(select(func.count()).select_from(Message).where(Message.direction == "in")) == 2
    assert session.scalar(select(func.count()).select_from(Message).where(Message.kind == "safety",
                                                                          Message.status == "pending")) == 0


def test_when_the_spool_cannot_be_written_either_twilio_is_told_to_use_its_fallback(outage, patient_texts, cut_app,
                                                                                    make_patient, spool_path):
    p = make_patient()
    spool_path.parent.mkdir(parents=True, exist_ok=True)
    spool_path.write_text("a file where the spool folder should be")
    outage.cut()
    status, _ = patient_texts.text(p.phone, "hello")
    assert status == 503  # Twilio then calls the number's fallback URL (a second instance)
    assert cut_app.test_client().get("/healthz").status_code == 503


def test_the_worker_outlives_an_outage_and_drains_the_spool_itself(outage, patient_texts, make_patient,
                                                                   make_followup, session, spool_path, env, tmp_path):
    if outage.proxy is None:
        pytest.skip("a separate worker process and an unreadable SQLite file: covered on PostgreSQL")
    p = make_patient()
    fu = make_followup(p, state="q_self_efficacy")
    log = tmp_path / "worker.log"
    worker_env = {**os.environ, **env, "DATABASE_URL": outage.url, "SMS_BACKEND": "simulator",
                  "SEND_RATE_PER_SECOND": "0", "SPOOL_DIR": str(spool_path)}
    with log.open("w") as out:
        worker = subprocess.Popen([str(Path(sys.executable).with_name("outreach")), "worker"], env=worker_env, stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60  # its start-up check reads the database: cut it only once started
        while "worker: started" not in log.read_text() and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "worker: started" in log.read_text(), log.read_text()
        outage.cut()
        assert patient_texts.text(p.phone, "7") == (200, [])
        time.sleep(4)  # several worker rounds while the database is away
        outage.restore()
        deadline = time.monotonic() + 30
        while Spool(spool_path).depth()[0] and time.monotonic() < deadline:  # no new request arrives
            time.sleep(0.2)
        assert Spool(spool_path).depth()[0] == 0, log.read_text()
        assert answers_of(session, fu.id) == [("self_efficacy", 7)]
        deadline = time.monotonic() + 15  # the next question goes out through the worker
        while time.monotonic() < deadline:
            session.rollback()
            if session.scalar(select(Message.status).where(Message.direction == "out",
                                                             Message.patient_id == p.id)) not in (None, "pending"):
                break
            time.sleep(0.2)
        assert worker.poll() is None, log.read_text()  # still running
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
    text = log.read_text()
    assert text.count("database unavailable") == 1 and text.count("database available again") == 1, text
    assert "Traceback" not in text, text


def test_a_database_that_does_not_answer_costs_a_text_db_timeout_seconds_not_a_lost_message(
        outage, patient_texts, make_patient, make_followup, spool_path, session):
    if outage.proxy is None:
        pytest.skip("network timeouts: PostgreSQL only")
    p = make_patient()
    fu = make_followup(p, state="q_self_efficacy")
    outage.proxy.hang()
    for engine in outage.engines:  # no pooled connection left: the next request must connect, and wait
        engine.dispose()
    started = time.monotonic()
    assert patient_texts.text(p.phone, "3") == (200, [])
    assert time.monotonic() - started < 8  # DB_TIMEOUT_SECONDS = 2 to connect, not Twilio's 15 s
    assert Spool(spool_path).depth()[0] == 1
    outage.restore()
    patient_texts.text(p.phone, "2")
    assert answers_of(session, fu.id) == [("self_efficacy", 3), ("mental_health", 4)]  # "2" = Very good


def test_a_read_only_database_after_a_failover_spools_texts(db_url, web_env, make_patient, make_followup,
                                                           spool_path, session):
    if not db_url.startswith("postgresql"):
        pytest.skip("read-only transactions: PostgreSQL")
    from webhooks.app import create_app

    read_only = make_url(db_url).update_query_dict({"options": "-c default_transaction_read_only=on"})
    app = create_app({**web_env, "DATABASE_URL": read_only.render_as_string(hide_password=False)})
    try:
        p = make_patient()
        make_followup(p, state="q_self_efficacy")
        texts = SignedWebhookClient(flask_post(app.test_client()), PUBLIC_BASE, AUTH_TOKEN)
        status, replies = texts.text(p.phone, "I want to end my life")
        assert status == 200 and len(replies) == 2  # the safety reply, at once
        assert Spool(spool_path).depth()[0] == 1
    finally:
        app.extensions["outreach"]["engine"].dispose()


def test_outreach_inbox_spool_shows_the_depth_without_the_database_and_drains_on_request(
        run_cli, make_patient, make_followup, spool_path, session, tmp_path):
    import datetime as dt

    from outreach.clock import utcnow

    p = make_patient()
    fu = make_followup(p, state="q_self_efficacy")
    spool = Spool(spool_path)
    received = utcnow() - dt.timedelta(minutes=7)
    for n, body in enumerate(("7", "3")):
        spool.put("sms", {"MessageSid": f"SM{n:032d}", "From": p.phone, "To": "+15145550000", "Body": body},
                  received + dt.timedelta(seconds=n))
    down = run_cli("inbox", "spool", extra_env={"DATABASE_URL": f"sqlite:///{tmp_path}/nowhere/x.db"})
    assert down.exit_code == 0, down.output
    assert "2 waiting; the oldest received" in down.output and "(7 min ago)" in down.output
    drained = run_cli("inbox", "spool", "--drain")
    assert drained.exit_code == 0, drained.output
    assert "applied 2 spooled request(s)" in drained.output and "empty" in drained.output
    assert answers_of(session, fu.id) == [("self_efficacy", 7), ("mental_health", 3)]


def test_after_the_outage_a_process_whose_spool_a_sibling_drained_applies_texts_live_again(
        outage, patient_texts, cut_app, make_patient, make_followup, sessions, web_env, session, spool_path):
    """The worker (or another gunicorn process) may empty the spool first: this process must still find out
    that the database is back, and answer live instead of spooling every text."""
    from outreach.config import load_settings
    from outreach.messaging.inbound import Inbox

    p = make_patient()
    fu = make_followup(p, state="q_self_efficacy")
    outage.cut()
    assert patient_texts.text(p.phone, "9") == (200, [])
    outage.restore()
    sibling = Inbox(sessions, load_settings(web_env), Spool(spool_path), report_outages=False)
    assert sibling.drain_spool().applied == 1
    status, replies = patient_texts.text(p.phone, "2")
    assert status == 200 and replies and "physical health" in replies[0]  # answered live, in the response
    assert Spool(spool_path).depth()[0] == 0
    assert answers_of(session, fu.id) == [("self_efficacy", 9), ("mental_health", 4)]


def test_a_newer_text_waits_behind_a_spool_another_process_is_draining(outage, patient_texts, make_patient,
                                                                       make_followup, session, spool_path):
    p = make_patient()
    fu = make_followup(p, state="q_self_efficacy")
    outage.cut()
    patient_texts.text(p.phone, "9")
    outage.restore()
    spool = Spool(spool_path)
    with spool.draining() as mine:  # another process holds the drain
        assert mine
        started = time.monotonic()
        assert patient_texts.text(p.phone, "2") == (200, [])  # spooled behind the "9", not applied before it
        assert time.monotonic() - started < 3  # the thread waited briefly, not for the whole drain
        assert spool.depth()[0] == 2
    patient_texts.text(p.phone, "3")  # the next request drains both first, in order
    assert answers_of(session, fu.id) == [("self_efficacy", 9), ("mental_health", 4), ("physical_health", 3)]


def test_a_spooled_crisis_text_stored_but_not_applied_before_a_crash_gets_one_safety_reply(
        outage, patient_texts, cut_app, make_patient, make_followup, session, spool_path):
    """The drain stores the text with the safety reply already given, in one transaction: if the process dies
    before applying it, the worker's recovery of stuck texts applies it without sending that reply again."""
    import datetime as dt

    p = make_patient()
    make_followup(p, state="q_self_efficacy")
    outage.cut()
    status, given = patient_texts.text(p.phone, CRISIS)
    assert status == 200 and len(given) == 2
    outage.restore()
    inbox = cut_app.extensions["outreach"]["inbox"]

    def killed_before_applying(*_args, **_kwargs):
        raise SystemExit("killed")

    real_process, inbox._process = inbox._process, killed_before_applying
    with pytest.raises(SystemExit):
        inbox.drain_spool()
    inbox._process = real_process
    inbox.recover_stuck(stuck_after=dt.timedelta(0))  # the worker's minute duty finds it stored, not applied
    assert inbox.drain_spool().applied == 1  # the spooled file: a repeat now
    session.rollback()
    crisis = session.scalar(select(Message).where(Message.direction == "in"))
    replies = session.execute(select(Message.kind, Message.status, Message.patient_id)
                              .where(Message.in_reply_to_id == crisis.id)).all()
    assert sorted(replies) == [("safety", "twiml", p.id)] * 2  # on record, linked to the patient, not queued
    (alert,) = session.scalars(select(Alert)).all()
    assert alert.opened_at == crisis.created_at  # at the time the text was received


def test_a_statement_that_stalls_past_the_web_apps_limit_spools_the_text(db_url, web_env, make_patient,
                                                                         make_followup, spool_path, session,
                                                                         monkeypatch):
    if not db_url.startswith("postgresql"):
        pytest.skip("statement_timeout: PostgreSQL")
    monkeypatch.setattr("outreach.messaging.inbound.PROBE_EVERY", 0.0)
    from sqlalchemy import text as sql

    from outreach.db import make_engine
    from webhooks.app import create_app

    app = create_app({**web_env, "DB_TIMEOUT_SECONDS": "0.4"})  # statements cut off after 1 s
    other = make_engine(db_url)
    blocker = other.connect()
    try:
        p = make_patient()
        fu = make_followup(p, state="q_self_efficacy")
        texts = SignedWebhookClient(flask_post(app.test_client()), PUBLIC_BASE, AUTH_TOKEN)
        blocker.execute(sql("SELECT id FROM patients WHERE id = :id FOR UPDATE"), {"id": p.id})  # a stuck lock
        started = time.monotonic()
        assert texts.text(p.phone, "6") == (200, [])
        assert time.monotonic() - started < 5
        blocker.rollback()
        texts.text(p.phone, "1")  # the database answers again: applied in order
        assert answers_of(session, fu.id) == [("self_efficacy", 6), ("mental_health", 5)]
    finally:
        blocker.close()
        other.dispose()
        app.extensions["outreach"]["engine"].dispose()


def test_a_text_applied_just_before_the_database_went_away_still_gets_its_next_question(
        outage, patient_texts, cut_app, make_patient, make_followup, session, monkeypatch):
    """The text was stored and applied, but the connection died before the request heard the commit: the
    webhook spools it and answers without the question; the question is then sent by the worker, once."""
    from sqlalchemy.exc import OperationalError

    p = make_patient()
    fu = make_followup(p, state="q_self_efficacy")
    inbox = cut_app.extensions["outreach"]["inbox"]
    real_process = inbox._process

    def commit_then_lose_the_connection(*args, **kwargs):
        real_process(*args, **kwargs)
        raise OperationalError("COMMIT", {}, ConnectionResetError("server closed the connection unexpectedly"))

    monkeypatch.setattr(inbox, "_process", commit_then_lose_the_connection)
    assert patient_texts.text(p.phone, "7") == (200, [])  # spooled: nothing said yet
    monkeypatch.setattr(inbox, "_process", real_process)
    assert inbox.drain_spool().applied == 1
    assert answers_of(session, fu.id) == [("self_efficacy", 7)]  # applied once
    session.rollback()
    text_in = session.scalar(select(Message).where(Message.direction == "in"))
    replies = session.execute(select(Message.status, Message.body).where(Message.in_reply_to_id == text_in.id)).all()
    assert len(replies) == 1 and replies[0].status == "pending" and "mental health" in replies[0].body
