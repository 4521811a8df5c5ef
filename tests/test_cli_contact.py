"""A wrong number can be fixed: re-importing a corrected phone lifts a "wrong number" opt-out (never a STOP),
`outreach patients opt-in` for a coordinator who confirmed consent again, `outreach events --kind
wrong_number`, and `outreach responses --timepoint N` for coordinators who follow up by phone."""
from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select

from outreach.db import unit_of_work
from outreach.models import AuditEvent, Episode, FollowUp, Patient
from outreach.messaging.webhook_client import SignedWebhookClient

HEADER = "patient_id,phone,discharge_date,sms_consent,alliance_1,alliance_2,alliance_3,alliance_4,alliance_5,alliance_6"


def import_file(run_cli, tmp_path, rows: dict[str, str], name: str):
    path = tmp_path / name
    path.write_text(HEADER + "\n" + "".join(f"{pid},{phone},2026-09-01,yes,6,6,5,6,6,6\n"
                                            for pid, phone in rows.items()))
    result = run_cli("import-discharges", str(path))
    assert result.exit_code == 0, result.output
    return result


def start_followups(sessions, *patient_ids: str, timepoint: int = 30) -> None:
    with unit_of_work(sessions) as s:
        for pid in patient_ids:
            p = s.scalar(select(Patient).where(Patient.patient_id == pid))
            stay = s.scalar(select(Episode).where(Episode.patient_id == p.id))
            s.add(FollowUp(patient_id=p.id, episode_id=stay.id, timepoint_days=timepoint, state="invited",
                           invited_at=dt.datetime(2026, 10, 1)))


def patient(session, pid: str) -> Patient:
    session.rollback()
    return session.scalar(select(Patient).where(Patient.patient_id == pid))


def actions(session, pid: str) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).where(AuditEvent.patient_id == patient(session, pid).id)
                                .order_by(AuditEvent.id)))


def test_reimporting_a_corrected_phone_lifts_a_wrong_number_opt_out_but_never_a_stop(run_cli, tmp_path, sessions,
                                                                                   session, twilio):
    import_file(run_cli, tmp_path, {"WN1": "416-555-0111", "ST1": "416-555-0222"}, "first.csv")
    start_followups(sessions, "WN1", "ST1")
    twilio.text("+14165550111", "wrong number")
    twilio.text("+14165550222", "STOP")
    assert patient(session, "WN1").opted_out_at is not None and patient(session, "ST1").opted_out_at is not None
    result = import_file(run_cli, tmp_path, {"WN1": "613-555-0123", "ST1": "613-555-0124"}, "corrected.csv")
    assert ("opt-out lifted for 1 patient(s) whose phone number changed after a 'wrong number' reply (the opt-out "
            "belonged to the old number; audited): WN1") in result.output
    assert "updated 2" in result.output
    fixed = patient(session, "WN1")
    assert (fixed.phone, fixed.opted_out_at) == ("+16135550123", None)
    assert patient(session, "ST1").opted_out_at is not None  # a STOP is the patient's own wish
    assert actions(session, "WN1")[-2:] == ["phone_corrected", "opted_in"]
    lifted = session.scalar(select(AuditEvent).where(AuditEvent.action == "opted_in"))
    assert lifted.actor.startswith("cli:") and "wrong-number reply" in lifted.details["reason"]
    corrected = session.scalar(select(AuditEvent).where(AuditEvent.action == "phone_corrected"))
    assert corrected.details["old"] == "+14165550111" and corrected.details["via"] == "import"
    assert "opted_in" not in actions(session, "ST1")
    again = import_file(run_cli, tmp_path, {"WN1": "613-555-0123", "ST1": "613-555-0124"}, "again.csv")
    assert "opt-out lifted" not in again.output and "unchanged 2" in again.output


def test_opt_in_after_consent_is_confirmed_again_is_audited_with_the_reason(run_cli, tmp_path, sessions, session,
                                                                          twilio):
    import_file(run_cli, tmp_path, {"OI1": "416-555-0131", "OI2": "416-555-0132"}, "f.csv")
    start_followups(sessions, "OI1", "OI2")
    twilio.text("+14165550131", "wrong number")
    twilio.text("+14165550132", "STOP")
    result = run_cli("patients", "opt-in", "OI1", "--reason", "called the clinic; number confirmed with the patient")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("patient OI1 (+1******0131) opted back in (opted out since ")
    assert patient(session, "OI1").opted_out_at is None
    row = session.scalar(select(AuditEvent).where(AuditEvent.action == "opted_in"))
    assert row.actor.startswith("cli:") and row.details == {
        "reason": "called the clinic; number confirmed with the patient", "via": "cli",
        "number_unblocked": True}  # the coordinator confirmed the number: its "wrong number" block is lifted
    stop = run_cli("patients", "opt-in", "OI2", "--reason", "patient asked at the clinic to be texted again")
    assert stop.exit_code == 0 and "note: they had texted STOP" in stop.output and "START" in stop.output
    again = run_cli("patients", "opt-in", "OI1", "--reason", "x")
    assert again.exit_code == 1 and again.output == "error: patient OI1 is not opted out; nothing was changed\n"
    unknown = run_cli("patients", "opt-in", "NOPE", "--reason", "x")
    assert unknown.exit_code == 1 and "there is no patient 'NOPE'" in unknown.output
    blank = run_cli("patients", "opt-in", "OI1", "--reason", "  ")
    assert blank.exit_code == 1 and "a reason is required" in blank.output
    assert run_cli("patients", "opt-in", "OI1").exit_code == 2  # --reason is required


def test_events_lists_wrong_number_replies_with_what_was_written(run_cli, tmp_path, sessions, session, twilio):
    import_file(run_cli, tmp_path, {"EV1": "416-555-0141", "EV2": "416-555-0142"}, "f.csv")
    start_followups(sessions, "EV1", "EV2")
    twilio.text("+14165550141", "Wrong number")
    twilio.text("+14165550142", "STOP")
    result = run_cli("events", "--kind", "wrong_number", extra_env={"CONSOLE_TIMEZONE": "America/Toronto"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "patient EV1  replied that this is a wrong number (opted out) (by patient) from +1******0141" in out
    assert '"Wrong number"' in out and "now: opted out, phone +1******0141" in out
    assert "EV2" not in out and "4165550141" not in out
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d E[SD]T  patient EV1", out)  # the coordinators' zone
    assert "1 event(s), newest first" in out
    every = run_cli("events").output
    assert "EV2" in every and "opted out (by patient)" in every
    assert run_cli("events", "--kind", "phone_invalid").output == "no phone invalid events\n"


def test_responses_lists_who_replied_at_a_time_point(run_cli, tmp_path, sessions, session, twilio, app):
    from outreach.messaging.webhook_client import flask_post

    from .conftest import AUTH_TOKEN, PUBLIC_BASE

    import_file(run_cli, tmp_path, {"R1": "416-555-0151", "R2": "416-555-0152", "R3": "416-555-0153",
                                    "R4": "416-555-0154"}, "f.csv")
    start_followups(sessions, "R1", "R2", "R3")
    start_followups(sessions, "R4", timepoint=90)
    twilio.text("+14165550151", "yes")
    twilio.text("+14165550151", "8")
    twilio.text("+14165550152", "not now")
    twilio.text("+14165550154", "yes")  # another time point
    preview = SignedWebhookClient(flask_post(app.test_client()), PUBLIC_BASE, AUTH_TOKEN, preview=True)
    preview.text("+14165550153", "yes")  # a coordinator's preview is not the patient replying
    result = run_cli("responses", "--timepoint", "30")
    assert result.exit_code == 0, result.output
    rows = result.output.splitlines()
    assert rows[0].split() == ["study", "id", "phone", "last", "reply", "replies", "survey"]
    body = {line.split()[0]: line for line in rows[1:-1]}
    assert set(body) == {"R1", "R2"}
    assert "+1******0151" in body["R1"] and "answering: mental health" in body["R1"] and "  2  " in body["R1"]
    assert "declined for now" in body["R2"]
    assert "4165550151" not in result.output
    assert rows[-1] == "2 patient(s) replied at 30 days, the latest reply first"
    assert run_cli("responses", "--timepoint", "180").output == "nobody has replied at the 180-day time point yet\n"
    bad = run_cli("responses", "--timepoint", "31")
    assert bad.exit_code == 2 and "not one of FOLLOWUP_DAYS" in bad.output
