"""Patients in the console: search, the patient page, the full phone number, texts by hand, pausing a
follow-up, correcting a phone number and the inbox; service functions on both databases, then each page
once through the real Flask app."""
from __future__ import annotations

import datetime as dt
import json
import re
import urllib.parse
from zoneinfo import ZoneInfo

import pytest
import responses
from sqlalchemy import event, select

from outreach.config import load_settings
from outreach.db import unit_of_work
from outreach.messaging.gateway import SimulatorGateway, make_gateway
from outreach.models import AuditEvent, FollowUp, Message, Patient
from outreach.clock import utcnow
from outreach.staff.inbox import InboxError, inbox_items, mark_handled
from outreach.staff.patients import (PatientError, correct_phone, hold_followup, patient_view,
                               release_followup, reveal_phone, search_patients)
from outreach.study.scheduler import tick
from outreach.messaging.sender import Sender
from outreach.staff.texting import TextingError, queue_manual_text
from outreach.study.waves import launch_wave

from .conftest import TWILIO_SID, without_csrf

API = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
AS_OF = dt.date(2026, 11, 20)
ME = "coord@study.example.org"
ADDR = "10.0.0.7"


def audit_rows(session, action):
    session.rollback()
    return session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).all()


def add_message(sessions, patient, **values):
    with unit_of_work(sessions) as s:
        m = Message(patient_id=patient.id, **{"status": "delivered", "direction": "out", "body": "", **values})
        s.add(m)
        s.flush()
        return m.id


def closed_window() -> str:
    """A sending window that is closed right now in Toronto."""
    hour = (dt.datetime.now(ZoneInfo("America/Toronto")).hour + 2) % 24
    return f"Mon-Sun {hour:02d}:00-{hour:02d}:30"


def ok_reply(request):
    form = dict(urllib.parse.parse_qsl(request.body))
    sid = "SM" + str(len(responses.calls)).zfill(32)
    return 201, {}, json.dumps({"sid": sid, "status": "queued", "to": form["To"], "body": form["Body"]})


# -- search ------------------------------------------------------------------------------------------

def test_search_by_study_id_prefix_and_by_last_four_digits(make_patient, make_followup, sessions):
    a = make_patient(patient_id="ABC-100", phone="+14165551234", discharge_date=dt.date(2026, 9, 1))
    b = make_patient(patient_id="abc-1", phone="+14165559876")
    c = make_patient(patient_id="XYZ-7", phone="+16135551234")
    make_followup(a, state="q_mental_health")
    with unit_of_work(sessions) as s:
        hits = search_patients(s, "abc-1")
        assert [h.pk for h in hits] == [b.id, a.id]  # the exact match first, then prefixes (any case)
        hit = hits[1]
        assert hit.study_id == "ABC-100" and hit.phone == "+1******1234"
        assert hit.latest_discharge == dt.date(2026, 9, 1)
        assert hit.open_followup == "30 days: answering: mental health"
        assert hits[0].open_followup is None
        assert {h.pk for h in search_patients(s, "1234")} == {a.id, c.id}  # last four digits of the phone
        assert search_patients(s, "234") == []  # three digits are not a phone search
        assert [h.pk for h in search_patients(s, "xyz-7")] == [c.id]
        assert search_patients(s, "%") == [] and search_patients(s, "   ") == []


# -- the patient page --------------------------------------------------------------------------------

def test_patient_view_shows_the_conversation_in_order_with_authors_and_delivery(make_patient, make_followup,
                                                                                 sessions, session, twilio, clock):
    p = make_patient(patient_id="P-77", phone="+14165550177", mean=4.5)
    fu = make_followup(p)
    add_message(sessions, p, kind="invitation", body="Hello from the study", followup_id=fu.id,
                created_at=utcnow() - dt.timedelta(minutes=4))
    add_message(sessions, p, kind="reminder", body="A reminder", status="undelivered", error_code=30006,
                followup_id=fu.id, created_at=utcnow() - dt.timedelta(minutes=3))
    clock(seconds=1)
    twilio.text(p.phone, "yes")  # inbound, then the survey's first question (TwiML)
    clock(seconds=1)
    twilio.text(p.phone, "7")
    clock(seconds=1)
    with unit_of_work(sessions) as s:
        queue_manual_text(s, load_settings({}), p.id, "Call us when you can", author=ME, address=ADDR)
    add_message(sessions, p, kind="reminder", body="Odd failure", status="failed", error_code=12345,
                created_at=utcnow() + dt.timedelta(seconds=5))
    with unit_of_work(sessions) as s:
        view = patient_view(s, p.id, actor=ME, address=ADDR)
    assert view.study_id == "P-77" and view.phone == "+1******0177" and view.phone_valid
    assert view.local_now.tzinfo is not None and view.timezone == "America/Toronto"
    lines = [(m.direction, m.body, m.author) for m in view.transcript]
    assert lines[0] == ("out", "Hello from the study", "invitation")
    assert lines[1] == ("out", "A reminder", "reminder")
    assert lines[2] == ("in", "yes", None)
    assert lines[3][0] == "out" and lines[3][2] == "survey" and "confident" in lines[3][1]
    assert lines[4] == ("in", "7", None)
    assert lines[6] == ("out", "Call us when you can", ME) and view.transcript[6].hand_written
    assert view.transcript[1].status_words == "not delivered" and view.transcript[1].error_words == "landline"
    assert view.transcript[0].status_words == "delivered"
    assert view.transcript[3].status_words == "sent as the reply"
    assert view.transcript[6].status_words == "waiting to be sent"
    assert view.transcript[7].error_words == "error 12345"
    assert view.transcript[6].segments == 1 and view.transcript[6].encoding == "GSM-7"
    assert [m.at for m in view.transcript] == sorted(m.at for m in view.transcript)
    (stay,) = view.stays
    assert stay.alliance_mean == 4.5 and stay.subscales == {"bond": 4.5, "goal_task": 4.5}
    (line,) = view.followups
    assert line.state == "q_mental_health" and line.is_open and not line.held
    (answer,) = line.answers
    assert (answer.question_key, answer.value, answer.raw_text) == ("self_efficacy", 7, "7")
    assert view.open_followup_id == fu.id and view.cannot_text is None
    (row,) = audit_rows(session, "viewed_patient")
    assert (row.actor, row.patient_id, row.address) == (ME, p.id, ADDR)


def test_patient_view_shows_answers_missing_reasons_and_opt_out_history(make_patient, make_followup, sessions,
                                                                        twilio):
    p = make_patient()
    make_followup(p)
    for text in ("yes", "banana", "still banana", "skip", "STOP"):
        twilio.text(p.phone, text)
    with unit_of_work(sessions) as s:
        view = patient_view(s, p.id, actor=ME)
    answers = {a.question_key: a for a in view.followups[0].answers}
    assert answers["self_efficacy"].missing_reason == "unparsed"
    assert answers["self_efficacy"].raw_text == "still banana"
    assert answers["mental_health"].missing_words == "skipped by the patient"
    assert view.opted_out and [e.action for e in view.contact_history] == ["opted_out"]
    assert view.cannot_text == "This patient has opted out of texts."
    assert view.followups[0].state_words == "ended: opted out"
    assert view.followups[0].outcome == "opted_out"  # replied, but nothing usable before STOP


def test_patient_view_names_each_follow_ups_research_outcome_as_the_export_does(make_patient, make_followup,
                                                                                 sessions):
    """The conversation's state (timed out) and the dataset's outcome (partial, replied without an answer)
    are different words: the page shows both, in the export's codes."""
    from outreach.models import Answer

    p = make_patient()
    answered, silent, running = (make_followup(p, days, state) for days, state in
                                 ((30, "expired"), (90, "expired"), (180, "q_mental_health")))
    with unit_of_work(sessions) as s:
        s.add(Answer(followup_id=answered.id, question_key="self_efficacy", value=7, raw_text="7"))
        for fu in (answered, silent):
            s.get(FollowUp, fu.id).last_inbound_at = utcnow()
    with unit_of_work(sessions) as s:
        view = patient_view(s, p.id, actor=ME)
    by_days = {f.timepoint_days: f for f in view.followups}
    assert by_days[30].state_words == by_days[90].state_words == "ended: timed out"
    assert by_days[30].outcome == "partial" and by_days[30].outcome_words.startswith("partial: answered at least one")
    assert by_days[90].outcome == "replied_no_answer"
    assert by_days[180].outcome == "open"


def test_patient_view_statement_count_does_not_grow_with_messages(make_patient, make_followup, sessions, engine):
    few, many = make_patient(), make_patient()
    for patient, n in ((few, 5), (many, 200)):
        fu = make_followup(patient)
        with unit_of_work(sessions) as s:
            now = utcnow()
            s.add_all([Message(direction="in" if i % 2 else "out", kind=None if i % 2 else "reply",
                               patient_id=patient.id, followup_id=fu.id, body=f"text {i}", status="delivered",
                               created_at=now + dt.timedelta(seconds=i)) for i in range(n)])
    counts = {}
    for patient in (few, many):
        statements = []
        listener = lambda conn, cursor, statement, *rest: statements.append(statement)  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        try:
            with unit_of_work(sessions) as s:
                view = patient_view(s, patient.id, actor=ME)
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        counts[patient.id] = len(statements)
        assert len(view.transcript) == (5 if patient is few else 200)
    assert counts[few.id] == counts[many.id] <= 10


def test_patient_view_of_no_such_patient_is_none(sessions, session):
    with unit_of_work(sessions) as s:
        assert patient_view(s, 999, actor=ME) is None
    assert audit_rows(session, "viewed_patient") == []


def test_reveal_phone_is_audited(make_patient, sessions, session):
    p = make_patient(phone="+14165550123")
    with unit_of_work(sessions) as s:
        assert reveal_phone(s, p.id, actor=ME, address=ADDR) == "+14165550123"
    (row,) = audit_rows(session, "phone_shown")
    assert (row.actor, row.patient_id, row.address) == (ME, p.id, ADDR)
    with unit_of_work(sessions) as s, pytest.raises(PatientError):
        reveal_phone(s, 999, actor=ME)


# -- texts by hand -----------------------------------------------------------------------------------

@pytest.mark.parametrize("case, expected", [
    ("opted_out", "opted out of texts"),
    ("invalid_phone", "phone number is marked invalid"),
    ("too_long", "The text is 321 characters long; a text may have 320 at most."),
    ("empty", "The text is empty"),
])
def test_manual_text_is_refused_with_a_reason(make_patient, sessions, session, case, expected):
    p = make_patient(opted_out=case == "opted_out")
    if case == "invalid_phone":
        with unit_of_work(sessions) as s:
            s.get(Patient, p.id).phone_valid = False
    body = {"too_long": "x" * 321, "empty": "  \r\n "}.get(case, "Hello")
    with unit_of_work(sessions) as s, pytest.raises(TextingError, match=re.escape(expected)):
        queue_manual_text(s, load_settings({}), p.id, body, author=ME, address=ADDR)
    session.rollback()
    assert session.scalars(select(Message)).all() == []
    assert audit_rows(session, "manual_text_queued") == []


def test_manual_text_is_queued_with_its_author_and_audited_without_its_words(make_patient, make_followup, sessions,
                                                                             session):
    p = make_patient()
    fu = make_followup(p, state="q_self_efficacy")
    body = "Bonjour, pouvez-vous nous rappeler? " + "é" * 40 + "\r\nMerci"
    with unit_of_work(sessions) as s:
        msg = queue_manual_text(s, load_settings({}), p.id, body, author=ME, address=ADDR)
    session.rollback()
    stored = session.get(Message, msg.id)
    assert (stored.direction, stored.kind, stored.status, stored.author) == ("out", "manual", "pending", ME)
    assert stored.followup_id == fu.id and stored.to_number == p.phone and stored.send_after <= utcnow()
    assert "\r" not in stored.body and len(stored.body) == len(body) - 1
    (row,) = audit_rows(session, "manual_text_queued")
    assert row.actor == ME and row.patient_id == p.id and row.address == ADDR
    assert row.details["length"] == len(stored.body) and row.details["segments"] == 1
    assert "Bonjour" not in json.dumps(row.details) and row.details["message_id"] == msg.id


@responses.activate
def test_a_manual_text_goes_out_in_quiet_hours_while_an_invitation_queued_with_it_waits(make_patient, sessions,
                                                                                       session, send_env):
    responses.add_callback(responses.POST, API, callback=ok_reply)
    a, b = (make_patient(discharge_date=AS_OF - dt.timedelta(days=31 + i)) for i in range(2))
    settings = load_settings({**send_env, "SEND_WINDOW": closed_window()})
    with unit_of_work(sessions) as s:
        launch_wave(s, settings, 30, AS_OF, actor="t")
    with unit_of_work(sessions) as s:
        manual = queue_manual_text(s, settings, b.id, "A coordinator writes", author=ME)
    stats = Sender(sessions, settings, make_gateway(settings, echo=None)).send_due()
    assert stats.sent == 1 and stats.held == 2
    (call,) = responses.calls
    form = dict(urllib.parse.parse_qsl(call.request.body))
    assert form["To"] == b.phone and form["Body"] == "A coordinator writes"
    session.rollback()
    assert session.get(Message, manual.id).status == "queued"
    invitations = session.scalars(select(Message).where(Message.kind == "invitation")).all()
    assert {m.status for m in invitations} == {"pending"} and all(m.send_after > utcnow() for m in invitations)


def test_a_manual_text_is_sent_even_when_its_follow_up_has_closed(make_patient, make_followup, sessions, session,
                                                                  send_env):
    p = make_patient()
    fu = make_followup(p, state="invited")
    settings = load_settings({**send_env, "SMS_BACKEND": "simulator"})
    with unit_of_work(sessions) as s:
        msg = queue_manual_text(s, settings, p.id, "Thank you for your time", author=ME)
        s.get(FollowUp, fu.id).state = "completed"
    assert Sender(sessions, settings, SimulatorGateway(echo=None)).send_due().sent == 1
    session.rollback()
    assert session.get(Message, msg.id).status == "delivered"


# -- pausing a follow-up -----------------------------------------------------------------------------

def test_a_paused_follow_up_keeps_its_queued_invitation_pending_until_released(make_patient, sessions, session,
                                                                              send_env):
    settings = load_settings({**send_env, "SMS_BACKEND": "simulator"})
    a, b = (make_patient(discharge_date=AS_OF - dt.timedelta(days=32)) for _ in range(2))
    with unit_of_work(sessions) as s:
        launch_wave(s, settings, 30, AS_OF, actor="t")
    session.rollback()
    fu_a = session.scalar(select(FollowUp).where(FollowUp.patient_id == a.id))
    with unit_of_work(sessions) as s:
        hold_followup(s, fu_a.id, actor=ME, address=ADDR)
    sender = Sender(sessions, settings, SimulatorGateway(echo=None))
    assert sender.send_due().sent == 1  # b's invitation only
    session.rollback()
    invitation = session.scalar(select(Message).where(Message.patient_id == a.id))
    assert invitation.status == "pending" and session.get(FollowUp, fu_a.id).invited_at is None
    with unit_of_work(sessions) as s:
        release_followup(s, fu_a.id, actor=ME, address=ADDR)
    assert sender.send_due().sent == 1
    session.rollback()
    assert session.get(Message, invitation.id).status == "delivered"
    held, released = audit_rows(session, "followup_held"), audit_rows(session, "followup_released")
    assert [(r.actor, r.patient_id, r.address, r.details["followup_id"]) for r in held + released] == [
        (ME, a.id, ADDR, fu_a.id)] * 2


def run_tick(sessions, settings):
    with unit_of_work(sessions) as s:
        return tick(s, settings)


def test_pausing_stops_reminders_and_expiry_and_resuming_restores_them(make_patient, sessions, session, send_env,
                                                                       clock):
    settings = load_settings({**send_env, "SMS_BACKEND": "simulator"})
    a, b = (make_patient(discharge_date=AS_OF - dt.timedelta(days=32)) for _ in range(2))
    with unit_of_work(sessions) as s:
        launch_wave(s, settings, 30, AS_OF, actor="t")
    sender = Sender(sessions, settings, SimulatorGateway(echo=None))
    sender.send_due()
    session.rollback()
    fu_a = session.scalar(select(FollowUp).where(FollowUp.patient_id == a.id))
    with unit_of_work(sessions) as s:
        hold_followup(s, fu_a.id, actor=ME)
    clock(hours=49)
    assert run_tick(sessions, settings).reminders == 1  # b only
    with unit_of_work(sessions) as s:
        release_followup(s, fu_a.id, actor=ME)
    assert run_tick(sessions, settings).reminders == 1  # a's, now that it is resumed
    sender.send_due()
    with unit_of_work(sessions) as s:
        hold_followup(s, fu_a.id, actor=ME)
    clock(days=8)  # past both expiries
    stats = run_tick(sessions, settings)
    assert stats.expired == 1 and stats.reminders == 0  # b expires; a is paused: no reminder, no expiry
    session.rollback()
    assert session.get(FollowUp, fu_a.id).state == "invited"
    expiry_before = session.get(FollowUp, fu_a.id).expires_at
    with unit_of_work(sessions) as s:
        release_followup(s, fu_a.id, actor=ME)
    session.rollback()
    assert session.get(FollowUp, fu_a.id).expires_at - expiry_before >= dt.timedelta(days=8)
    stats = run_tick(sessions, settings)
    assert stats.expired == 0 and stats.reminders == 1  # the second reminder, after the pause
    session.rollback()
    kinds = session.scalars(select(Message.kind).where(Message.patient_id == a.id).order_by(Message.id)).all()
    assert kinds == ["invitation", "reminder", "reminder"]


def test_pausing_needs_an_open_follow_up_not_already_paused(make_patient, make_followup, sessions):
    p = make_patient()
    done = make_followup(p, state="completed")
    with unit_of_work(sessions) as s, pytest.raises(PatientError, match="only an open follow-up can be paused"):
        hold_followup(s, done.id, actor=ME)
    open_ = make_followup(make_patient())
    with unit_of_work(sessions) as s:
        hold_followup(s, open_.id, actor=ME)
    with unit_of_work(sessions) as s, pytest.raises(PatientError, match=f"already paused by {ME}"):
        hold_followup(s, open_.id, actor=ME)
    with unit_of_work(sessions) as s:
        release_followup(s, open_.id, actor=ME)
    with unit_of_work(sessions) as s, pytest.raises(PatientError, match="not paused"):
        release_followup(s, open_.id, actor=ME)


def test_replies_inside_a_conversation_go_on_while_paused(make_patient, make_followup, sessions, twilio):
    p = make_patient()
    fu = make_followup(p)
    with unit_of_work(sessions) as s:
        hold_followup(s, fu.id, actor=ME)
    status, replies = twilio.text(p.phone, "yes")
    assert status == 200 and "confident" in replies[0]


# -- correcting a phone number -----------------------------------------------------------------------

def test_correct_phone_refuses_an_unreadable_number_with_a_sentence(make_patient, sessions, session, settings):
    p = make_patient(phone="+14165550111")
    with unit_of_work(sessions) as s, pytest.raises(PatientError) as refused:
        correct_phone(s, settings, p.id, "555-12", actor=ME)
    message = str(refused.value)
    assert message.startswith("The phone number was not changed: ") and message.endswith(".")
    assert "555-12" not in message  # masked even in the error
    session.rollback()
    assert session.get(Patient, p.id).phone == "+14165550111"
    assert audit_rows(session, "phone_corrected") == []


def test_correct_phone_reopens_a_wrong_number_opt_out_but_not_a_stop(make_patient, make_followup, sessions,
                                                                     session, settings, twilio):
    wrong, stopped = make_patient(phone="+14165550111"), make_patient(phone="+14165550222")
    for p, text in ((wrong, "wrong number"), (stopped, "STOP")):
        make_followup(p)
        twilio.text(p.phone, text)
    session.rollback()
    assert session.get(Patient, wrong.id).opted_out_at is not None
    with unit_of_work(sessions) as s:
        s.get(Patient, wrong.id).phone_valid = False
        change = correct_phone(s, settings, wrong.id, "(613) 555-0123", actor=ME, address=ADDR)
    assert change.reopened and change.new_masked == "+1******0123"
    session.rollback()
    fixed = session.get(Patient, wrong.id)
    assert (fixed.phone, fixed.phone_valid, fixed.opted_out_at) == ("+16135550123", True, None)
    (row,) = audit_rows(session, "phone_corrected")
    assert (row.actor, row.patient_id, row.address) == (ME, wrong.id, ADDR)
    assert row.details["old"] == "+14165550111" and row.details["new"] == "+16135550123"
    assert row.details["opt_out_lifted"] is True
    with unit_of_work(sessions) as s:
        assert not correct_phone(s, settings, stopped.id, "613 555 0124", actor=ME).reopened
    session.rollback()
    assert session.get(Patient, stopped.id).opted_out_at is not None  # a STOP is the patient's own wish
    with unit_of_work(sessions) as s:
        queue_manual_text(s, settings, wrong.id, "Is this the right number now?", author=ME)


# -- the inbox ---------------------------------------------------------------------------------------

def test_inbox_lists_texts_that_need_a_person_and_mark_handled_removes_them(make_patient, make_followup, sessions,
                                                                            session, twilio):
    photo, unusable, done, wrong, quiet, idle = (make_patient() for _ in range(6))
    for p in (photo, unusable, wrong, quiet):
        make_followup(p)
    make_followup(done, state="q_physical_health")
    twilio.text(photo.phone, "", media=1)
    twilio.text("+15145550199", "who is this?")
    for text in ("yes", "banana", "still banana"):
        twilio.text(unusable.phone, text)
    for text in ("5", "thanks", "I have a question about my treatment"):
        twilio.text(done.phone, text)
    twilio.text(wrong.phone, "wrong number")
    twilio.text(quiet.phone, "yes")
    twilio.text(quiet.phone, "6")  # an answer: nobody needs to read it
    twilio.text(idle.phone, "can I talk to someone")  # no survey under way
    with unit_of_work(sessions) as s:
        items = inbox_items(s, actor=ME, address=ADDR)
    found = {(i.study_id, i.body): i.reasons for i in items}
    assert found == {
        (photo.patient_id, ""): ("media",),
        (None, "who is this?"): ("unknown",),
        (unusable.patient_id, "banana"): ("not_an_answer",),  # the first unusable reply too, not only the second
        (unusable.patient_id, "still banana"): ("not_an_answer",),
        (done.patient_id, "I have a question about my treatment"): ("after_survey",),
        (wrong.patient_id, "wrong number"): ("wrong_number",),
        (idle.patient_id, "can I talk to someone"): ("no_survey",),
    }
    unknown = next(i for i in items if i.study_id is None)
    assert unknown.who == "unknown number +1******0199" and unknown.patient_pk is None
    assert next(i for i in items if i.reasons == ("media",)).reason == "sent a picture or other media"
    assert [i.message_id for i in items] == sorted(i.message_id for i in items)
    looked = audit_rows(session, "viewed_inbox")  # one row per patient shown, one for unknown numbers
    assert {row.actor for row in looked} == {ME}
    assert {row.patient_id for row in looked} == {i.patient_pk for i in items}
    assert sorted(m for row in looked for m in row.details["message_ids"]) == [i.message_id for i in items]
    with unit_of_work(sessions) as s:
        mark_handled(s, unknown.message_id, actor=ME, address=ADDR)
    with unit_of_work(sessions) as s:
        rest = inbox_items(s)
    assert unknown.message_id not in {i.message_id for i in rest} and len(rest) == len(items) - 1
    (row,) = audit_rows(session, "inbox_handled")
    assert (row.actor, row.address, row.details["message_id"]) == (ME, ADDR, unknown.message_id)
    assert row.details["waited_seconds"] >= 0  # how long it waited to be read
    with unit_of_work(sessions) as s, pytest.raises(InboxError, match="already marked handled"):
        mark_handled(s, unknown.message_id, actor=ME)


# -- the pages ---------------------------------------------------------------------------------------

def test_each_patient_page_renders_through_the_real_app(console_app, console_client, make_patient, make_followup,
                                                        twilio, session):
    from .conftest import csrf_token_of

    p = make_patient(patient_id="STUDY-4242", phone="+14165554242")
    fu = make_followup(p)
    twilio.text(p.phone, "yes")
    twilio.text(p.phone, "my own words about the week")
    twilio.text("+15145550100", "a text from nobody we know", media=1)
    client = console_client("coordinator", email=ME)

    found = client.post("/console/patients", data={"q": "4242", "csrf_token": client.csrf}).get_data(as_text=True)
    assert f'href="/console/patients/{p.id}"' in found and "STUDY-4242" in found and "+1******4242" in found
    assert "4242" not in without_csrf(client.get("/console/patients?q=4242").get_data(as_text=True))  # never from the URL
    assert client.get("/console/patients").status_code == 200

    page = client.get(f"/console/patients/{p.id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    title = re.search(r"<title>(.*?)</title>", html, re.S).group(1)
    assert title.startswith(f"Patient {p.id}")
    assert "STUDY-4242" not in title and "4242" not in title
    assert "my own words about the week" in html and "confident" in html and "+1******4242" in html
    assert "+14165554242" not in html and "Flag as crisis" in html
    assert 'data-count-into="segments-%d"' % p.id in html and 'id="segments-%d"' % p.id in html
    assert "for the patient (America/Toronto)" in html

    token = csrf_token_of(html)
    shown = client.post(f"/console/patients/{p.id}/show-phone", data={"csrf_token": token}).get_data(as_text=True)
    assert "+14165554242" in shown

    refused = client.post(f"/console/patients/{p.id}/text", data={"csrf_token": token, "body": "x" * 321})
    assert refused.status_code == 400 and "321 characters long" in refused.get_data(as_text=True)
    sent = client.post(f"/console/patients/{p.id}/text", data={"csrf_token": token, "body": "Please call us"},
                       follow_redirects=True).get_data(as_text=True)
    assert "Your text is queued" in sent and "Please call us" in sent and ME in sent

    paused = client.post(f"/console/patients/{p.id}/followups/{fu.id}/hold", data={"csrf_token": token},
                         follow_redirects=True).get_data(as_text=True)
    assert "is paused" in paused and "Resume automatic texts" in paused
    resumed = client.post(f"/console/patients/{p.id}/followups/{fu.id}/release", data={"csrf_token": token},
                          follow_redirects=True).get_data(as_text=True)
    assert "is resumed" in resumed

    bad = client.post(f"/console/patients/{p.id}/phone", data={"csrf_token": token, "phone": "555-12"})
    assert bad.status_code == 400 and "The phone number was not changed" in bad.get_data(as_text=True)
    good = client.post(f"/console/patients/{p.id}/phone", data={"csrf_token": token, "phone": "416 555 4343"},
                       follow_redirects=True).get_data(as_text=True)
    assert "The phone number is now +1******4343" in good

    inbox = client.get("/console/inbox").get_data(as_text=True)
    assert "a text from nobody we know" in inbox and "unknown number +1******0100" in inbox
    message_id = session.scalar(select(Message.id).where(Message.body == "a text from nobody we know"))
    done = client.post(f"/console/inbox/{message_id}/handled", data={"csrf_token": token},
                       follow_redirects=True).get_data(as_text=True)
    assert f"Text #{message_id} is marked handled." in done and "a text from nobody we know" not in done
    assert client.get("/console/patients/999999").status_code == 404
    session.rollback()
    actions = set(session.scalars(select(AuditEvent.action).where(AuditEvent.actor == ME)))
    assert {"viewed_patient", "phone_shown", "manual_text_queued", "followup_held", "followup_released",
            "phone_corrected", "viewed_inbox", "inbox_handled", "searched_patients"} <= actions
