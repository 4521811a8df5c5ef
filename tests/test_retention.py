"""Identifiers kept no longer than the protocol says (issue 25): the retention rules with the clock moved forward,
the worker's daily pass, and closing the study; real database, real webhook and state machine."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, update

from outreach.config import ConfigError, load_settings
from outreach.db import unit_of_work
from outreach.models import Answer, AuditEvent, FollowUp, Job, Message, Patient
from outreach.study import retention
from outreach.worker import every_minute

RULES = {"RETAIN_MESSAGE_BODIES_DAYS": "30", "RETAIN_PHONES_DAYS_AFTER_LAST_CONTACT": "60", "FOLLOWUP_DAYS": "30",
         "WINDOW_DAYS": "14", "RETAIN_AUDIT_DAYS": "400"}


@pytest.fixture
def rules(env):
    return load_settings({**env, **RULES})


@pytest.fixture
def two_conversations(make_patient, make_followup, twilio, session):
    """Done: a 30-day follow-up completed today.  Open: one whose survey is under way (and stays open)."""
    done, open_ = make_patient(phone="+14165550137"), make_patient(phone="+14165550138")
    make_followup(done)
    make_followup(open_)
    for body in ("YES", "7", "4", "I moved to Zebracorn avenue"):
        twilio.text("+14165550137", body)
    for body in ("YES", "Zebracorn here, 8"):
        twilio.text("+14165550138", body)
    session.rollback()
    assert session.scalar(select(FollowUp.state).where(FollowUp.patient_id == done.id)) in ("q_physical_health",
                                                                                          "completed")
    twilio.text("+14165550137", "3")  # the third answer completes it
    session.rollback()
    assert session.scalar(select(FollowUp.state).where(FollowUp.patient_id == done.id)) == "completed"
    return done, open_


def bodies(session, patient) -> list[str]:
    session.rollback()
    return list(session.scalars(select(Message.body).where(Message.patient_id == patient.id)))


def test_bodies_are_erased_on_the_day_the_rule_says_and_not_before_and_an_open_follow_up_keeps_its_texts(
        clock, two_conversations, sessions, session, rules, run_cli, console_client):
    done, open_ = two_conversations
    coded = session.execute(select(Answer.id, Answer.value).order_by(Answer.id)).all()
    clock(days=29)
    assert retention.run(sessions, rules).counts["message_bodies"] == 0
    assert "I moved to Zebracorn avenue" in bodies(session, done)

    clock(days=2)
    dry = run_cli("retention", "run", "--dry-run", extra_env=RULES)
    assert dry.exit_code == 0 and "would erase words of texts: " in dry.output
    assert "I moved to Zebracorn avenue" in bodies(session, done)  # --dry-run changed nothing
    would = retention.run(sessions, rules, dry_run=True).counts

    done_run = run_cli("retention", "run", extra_env=RULES)
    assert done_run.exit_code == 0
    said, did = done_run.output.splitlines()  # what it is about to erase, then what it erased
    assert said.startswith("retention would erase") and did.startswith("retention erased")
    assert f"words of texts: {would['message_bodies']};" in did and would["message_bodies"] > 0
    assert set(bodies(session, done)) == {""}  # every word gone, in the database
    assert "Zebracorn here, 8" in bodies(session, open_)  # a follow-up still under way keeps its texts
    assert session.execute(select(Answer.id, Answer.value).order_by(Answer.id)).all() == coded  # coded answers stay
    answers = session.scalars(select(Answer).join(FollowUp).where(FollowUp.patient_id == done.id)).all()
    assert len(answers) == 3 and all(a.raw_text is None and a.raw_text_erased_under == "retention" for a in answers)
    assert session.get(Patient, done.id).phone == "+14165550137"  # phones have their own rule

    page = console_client("coordinator").get(f"/console/patients/{done.id}").get_data(as_text=True)
    today = (dt.datetime.now(dt.UTC) + dt.timedelta(days=31)).strftime("%Y-%m-%d")
    assert f"erased on {today} under the retention rule" in page and "Zebracorn" not in page


def test_a_phone_number_is_erased_once_nothing_is_left_to_send_and_the_rule_has_passed(
        clock, two_conversations, sessions, session, rules, console_client):
    done, open_ = two_conversations
    clock(days=59)
    assert retention.run(sessions, rules).counts["phone_numbers"] == 0
    clock(days=2)
    erased = retention.run(sessions, rules)
    assert erased.counts["phone_numbers"] == 1
    session.rollback()
    gone, kept = session.get(Patient, done.id), session.get(Patient, open_.id)
    assert (gone.phone, gone.phone_valid, gone.phone_erased_under) == ("", False, "retention")
    assert kept.phone == "+14165550138"  # their follow-up is still open: something may be left to send
    numbers = session.execute(select(Message.from_number, Message.to_number, Message.direction)
                              .where(Message.patient_id == done.id)).all()
    assert all((f if d == "in" else t) is None for f, t, d in numbers)
    page = console_client("coordinator").get(f"/console/patients/{done.id}").get_data(as_text=True)
    assert 'id="phone-erased"' in page and "under the retention rule" in page


def test_the_worker_applies_the_rules_once_a_day(clock, two_conversations, sessions, session, env):
    settings = load_settings({**env, **RULES, "RETENTION_RUN_AT": "00:00"})
    clock(days=31)
    first = every_minute(sessions, settings)
    assert first.erased is not None and first.erased.counts["message_bodies"] > 0 and first.erased.finished
    assert every_minute(sessions, settings).erased is None  # done for today
    session.rollback()
    assert session.scalar(select(func.count()).select_from(AuditEvent)
                          .where(AuditEvent.action == retention.RUN_DONE)) == 1


def test_old_audit_rows_go_after_retain_audit_days(clock, sessions, session, rules):
    from outreach.db import audit

    with unit_of_work(sessions) as s:
        audit(s, "phone_shown", actor="someone@study.example.org")
    clock(days=401)
    assert retention.run(sessions, rules).counts["audit_rows"] == 1
    session.rollback()
    assert not session.scalars(select(AuditEvent).where(AuditEvent.action == "phone_shown")).all()


def test_the_audit_must_outlive_the_other_rules(env):
    with pytest.raises(ConfigError, match="RETAIN_AUDIT_DAYS"):
        load_settings({**env, "RETAIN_AUDIT_DAYS": "10"})


def test_closing_the_study_asks_for_the_count_then_erases_every_phone_and_word(two_conversations, run_cli, session):
    done, open_ = two_conversations
    coded = session.execute(select(Answer.id, Answer.value).order_by(Answer.id)).all()
    wrong = run_cli("study", "close", "--reason", "funding ended", input="3\n")
    assert wrong.exit_code == 1 and "nothing was changed" in wrong.output
    assert session.get(Patient, done.id).phone == "+14165550137"

    closed = run_cli("study", "close", "--reason", "funding ended", input="2\n")
    assert closed.exit_code == 0, closed.output
    assert "2 participant(s)" in closed.output and "study closed" in closed.output
    session.rollback()
    assert set(session.scalars(select(Patient.phone))) == {""}
    assert set(session.scalars(select(Message.body))) == {""}
    assert session.scalar(select(func.count()).select_from(Message).where(
        (Message.from_number.like("+1416%")) | (Message.to_number.like("+1416%")))) == 0
    assert session.execute(select(Answer.id, Answer.value).order_by(Answer.id)).all() == coded  # coded data stays
    assert session.scalar(select(FollowUp.state).where(FollowUp.patient_id == open_.id)) == "opted_out"
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "study_closed"))
    assert event.details["reason"] == "funding ended" and event.details["phones_erased"] == 2


def test_in_batches_of_two_texts_and_one_participant_the_pass_erases_what_the_dry_run_counted(
        clock, two_conversations, sessions, session, rules, monkeypatch):
    """The pass walks the texts in id ranges, a transaction each: however the batches fall, every word due is erased
    with the answers read from it, once, and a follow-up under way keeps its texts."""
    done, open_ = two_conversations
    clock(days=61)
    would = retention.run(sessions, rules, dry_run=True).counts
    monkeypatch.setattr(retention, "BATCH", 2)
    monkeypatch.setattr(retention, "PHONE_BATCH", 1)
    erased = retention.run(sessions, rules)
    assert erased.counts == would and would["message_bodies"] > 2 and would["answer_words"] == 3
    assert erased.batches > would["message_bodies"] // 2
    assert set(bodies(session, done)) == {""}
    assert "Zebracorn here, 8" in bodies(session, open_)
    answers = session.scalars(select(Answer).join(FollowUp).where(FollowUp.patient_id == done.id)).all()
    assert len(answers) == 3 and all(a.raw_text is None and a.raw_text_erased_under == "retention" for a in answers)
    assert session.get(Patient, done.id).phone == "" and session.get(Patient, open_.id).phone == "+14165550138"
    assert retention.run(sessions, rules).counts == dict.fromkeys(retention.KINDS, 0)  # nothing left, nothing twice


def test_a_closed_study_takes_no_new_patient_or_phone_number_from_any_door(two_conversations, run_cli, session,
                                                                            console_client, tmp_path):
    """After `study close` erased every number, an import, an admission (file or form) or a phone correction
    would put a number back for the next wave or check-in to text: each is refused in words, nothing written."""
    done, _ = two_conversations
    assert run_cli("study", "close", "--reason", "funding ended", input="2\n").exit_code == 0
    discharges = tmp_path / "late.csv"
    discharges.write_text("patient_id,phone,discharge_date,sms_consent,alliance_1,alliance_2,alliance_3,alliance_4,"
                          "alliance_5,alliance_6\nL1,416-555-0177,2026-01-15,yes,6,6,5,6,6,6\n")
    refused = run_cli("import-discharges", str(discharges))
    assert refused.exit_code == 1 and "a closed study takes no new patients or phone numbers" in refused.output
    assert "nothing was imported" in refused.output and "Traceback" not in refused.output
    admissions = tmp_path / "admitted.csv"
    admissions.write_text("patient_id,phone,admission_date,care_team,sms_consent,alliance_checkins\n"
                          "L2,416-555-0178,2026-01-15,,yes,sms\n")
    refused = run_cli("import-admissions", str(admissions))
    assert refused.exit_code == 1 and "the study was closed on " in refused.output
    client = console_client("coordinator")
    form = client.post("/console/admissions/new", data={
        "csrf_token": client.csrf, "patient_id": "L3", "phone": "416-555-0179", "admission_date": "2026-01-15",
        "sms_consent": "yes", "alliance_checkins": "sms", "language": "en"})
    assert form.status_code == 409 and "a closed study takes no new patients" in form.get_data(as_text=True)
    import io

    upload = client.post("/console/imports", content_type="multipart/form-data", data={
        "csrf_token": client.csrf, "file": (io.BytesIO(discharges.read_bytes()), "late.csv")}, follow_redirects=True)
    assert "The file was not taken: the study was closed on " in upload.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(Job)) == 0  # nothing stored, no check queued
    fix = client.post(f"/console/patients/{done.id}/phone", data={"csrf_token": client.csrf, "phone": "416-555-0180"})
    text = fix.get_data(as_text=True)
    assert fix.status_code == 400 and "the phone number was not changed." in text
    session.rollback()
    assert set(session.scalars(select(Patient.phone))) == {""}
    assert not set(session.scalars(select(Patient.patient_id))) & {"L1", "L2", "L3"}


def test_a_closed_study_stays_closed_after_the_audit_retention_pass(two_conversations, run_cli, clock, sessions,
                                                                     session, rules, tmp_path):
    """The audit is purged after RETAIN_AUDIT_DAYS, but never the row that closed the study: without it the doors
    to new numbers opened again on their own."""
    from outreach.db import audit

    with unit_of_work(sessions) as s:
        audit(s, "phone_shown", actor="someone@study.example.org")
    assert run_cli("study", "close", "--reason", "funding ended", input="2\n").exit_code == 0
    clock(days=401)  # past RETAIN_AUDIT_DAYS (400)
    assert retention.run(sessions, rules).counts["audit_rows"] >= 1  # the rest of that day's audit goes
    session.rollback()
    assert session.scalars(select(AuditEvent.action).where(AuditEvent.action == "study_closed")).one()
    late = tmp_path / "late.csv"
    late.write_text("patient_id,phone,discharge_date,sms_consent,alliance_1,alliance_2,alliance_3,alliance_4,"
                    "alliance_5,alliance_6\nL1,416-555-0177,2026-01-15,yes,6,6,5,6,6,6\n")
    refused = run_cli("import-discharges", str(late))
    assert refused.exit_code == 1 and "a closed study takes no new patients or phone numbers" in refused.output


def test_closing_the_study_waits_for_an_import_under_way_and_erases_its_numbers_too(two_conversations, sessions,
                                                                                     session, rules, engine, tmp_path):
    """An import that checked the study was open and has not committed yet: the closing waits for it, so the
    numbers it adds are erased with the rest (the closing reads the participants once it holds the lock)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs write transactions one at a time (BEGIN IMMEDIATE): no import is under way")
    import threading
    import time

    from outreach.study.importer import import_discharges

    late = tmp_path / "late.csv"
    late.write_text("patient_id,phone,discharge_date,sms_consent,alliance_1,alliance_2,alliance_3,alliance_4,"
                    "alliance_5,alliance_6\nL1,416-555-0177,2026-01-15,yes,6,6,5,6,6,6\n")
    closing = threading.Thread(target=lambda: _close(sessions))
    with unit_of_work(sessions) as importing:
        import_discharges(importing, late, rules)
        closing.start()
        time.sleep(1.0)
        assert closing.is_alive()  # waiting for the import's transaction
    closing.join(timeout=30)
    assert not closing.is_alive()
    session.rollback()
    assert session.scalar(select(Patient.phone).where(Patient.patient_id == "L1")) == ""


def _close(sessions) -> None:
    with unit_of_work(sessions) as s:
        retention.close_study(s, actor="pi@study.example.org", reason="funding ended")


def test_a_number_the_study_never_knew_is_erased_on_the_phone_rule_s_schedule(twilio, clock, sessions, session,
                                                                              rules, make_patient, make_followup):
    """A text from a number no participant has (and the service's reply to it) kept that number for ever: the
    phone rule covered participants only.  It now goes RETAIN_PHONES_DAYS_AFTER_LAST_CONTACT after the text, unless
    the text still waits in the inbox for a person; the numbers of the staff (on-call texts) stay."""
    from outreach.db import unit_of_work as uow
    from outreach.models import Message as M

    twilio.text("+14165550199", "hi who is this")  # unknown numbers: inbox items
    twilio.text("+14165550198", "i want to die")  # ... and the safety reply it is given
    with uow(sessions) as s:  # both read and handled by a coordinator
        s.execute(update(M).where(M.from_number.in_(["+14165550199", "+14165550198"])).values(handled_at=M.created_at))
        s.add(M(direction="out", kind="safety", status="twiml", body="If you are in danger...", to_number="+14165550198"))
        s.add(M(direction="out", kind="alert", status="sent", body="Crisis alert #1", to_number="+16135550111"))
    twilio.text("+14165550197", "is anyone there")  # still waiting for a person
    session.rollback()
    unknown = {"+14165550199", "+14165550198", "+14165550197"}
    assert unknown <= set(session.scalars(select(M.from_number))) | set(session.scalars(select(M.to_number)))
    clock(days=59)
    assert retention.run(sessions, rules).counts["unmatched_numbers"] == 0  # not yet (the rule says 60 days)
    clock(days=2)
    would = retention.run(sessions, rules, dry_run=True).counts["unmatched_numbers"]
    assert would >= 3 and retention.run(sessions, rules).counts["unmatched_numbers"] == would
    session.rollback()
    kept = set(session.scalars(select(M.from_number))) | set(session.scalars(select(M.to_number)))
    assert "+14165550199" not in kept and "+14165550198" not in kept
    assert "+14165550197" in kept  # the inbox item nobody handled keeps its number to be answered
    assert "+16135550111" in kept  # a coordinator's on-call number is not a participant's
