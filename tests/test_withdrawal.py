"""A participant withdraws from the study (issue 25): through the real CLI, console and signed webhook, on both
databases; Twilio's REST API is mocked at the HTTP edge and records where every text went."""
from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest
from sqlalchemy import select

from conversations.texts import render
from outreach.db import unit_of_work
from outreach.models import Alert, Answer, AuditEvent, Base, Message, Patient
from outreach.messaging.send_rule import WITHDRAWN
from outreach.study.pseudonyms import pseudonym
from outreach.study.withdrawal import WithdrawalError, consequences, withdraw

from .conftest import AUTH_TOKEN, PUBLIC_BASE
from .test_send_rule import DISCHARGED, api, import_rows, launch, outbound, patient, send_due  # noqa: F401

KEY = "k" * 64
ORG = "Recovery Study"
ACK = render("withdrawn_ack", "en", org=ORG, crisis_line="988")
SAFETY = render("safety", "en", crisis_line="988", emergency="911")
CRISIS = "i want to kill myself"
ON_CALL = "+14165550100"


def cli_ok(run_cli, *args, **kw):
    result = run_cli(*args, **kw)
    assert result.exit_code == 0, result.output
    return result.output


def export(run_cli, tmp_path, name="out.csv") -> pd.DataFrame:
    path = tmp_path / name
    cli_ok(run_cli, "export", "--out", str(path), extra_env={"EXPORT_KEY": KEY})
    return pd.read_csv(path)


@pytest.fixture
def webhook(web_env):
    """Twilio's side of the signed webhook, on an app with a coordinator on call."""
    from outreach.messaging.webhook_client import SignedWebhookClient, flask_post
    from webhooks.app import create_app

    app = create_app({**web_env, "ALERT_SMS_TO": ON_CALL})
    yield SignedWebhookClient(flask_post(app.test_client()), PUBLIC_BASE, AUTH_TOKEN)
    app.extensions["outreach"]["engine"].dispose()


# -- keep --------------------------------------------------------------------------------------------------------

def test_withdrawal_with_keep_stops_every_contact_and_flags_the_answers_in_the_export(run_cli, tmp_path, send_env,
                                                                                   api, session):
    import_rows(run_cli, tmp_path, [("W1", "416-555-0137", "yes"), ("W2", "416-555-0138", "yes")], "first.csv")
    launch(run_cli)  # both invitations queued
    out = cli_ok(run_cli, "patients", "withdraw", "W1", "--reason", "asked on the phone to stop", "--data", "keep",
                 input="y\n", extra_env={"EXPORT_KEY": KEY})
    # the consequences in words, before the confirmation
    assert "1 queued text(s) are cancelled and 1 open follow-up(s) end now" in out
    assert "neutral acknowledgement" in out and "No keyword undoes this" in out
    assert "W1 withdrawn (keep)" in out

    send_due(run_cli, send_env)
    assert api.numbers == ["+14165550138"]  # only the participant still in the study
    invitation = next(m for m in outbound(session, "W1") if m.kind == "invitation")
    assert (invitation.status, invitation.error_message) == ("cancelled", WITHDRAWN)
    plan = cli_ok(run_cli, "waves", "plan", "--timepoint", "90",
                  "--as-of", (DISCHARGED + dt.timedelta(days=90)).isoformat())
    assert "withdrew from the study" in plan  # a later wave leaves them out, and says why

    df = export(run_cli, tmp_path)
    w1, w2 = pseudonym(KEY.encode(), "W1"), pseudonym(KEY.encode(), "W2")
    mine = df[df["participant"] == w1].iloc[0]
    days = (patient(session, "W1").withdrawn_at.date() - DISCHARGED).days
    assert (mine["withdrawn"], mine["withdrawn_days"]) == (1, days)
    other = df[df["participant"] == w2].iloc[0]
    assert other["withdrawn"] == 0 and pd.isna(other["withdrawn_days"])
    codebook = pd.read_csv(tmp_path / "out.codebook.csv")
    assert {"withdrawn", "withdrawn_days"} <= set(codebook["variable"])

    report = tmp_path / "report"
    cli_ok(run_cli, "report", "--out", str(report))
    assert "<5 of the participants withdrew from the study" in (report / "report.md").read_text()  # suppressed
    assert json.loads((report / "stats.json").read_text())["participants"]["withdrawn"] == "<5"

    listed = cli_ok(run_cli, "patients", "withdrawn", extra_env={"EXPORT_KEY": KEY})
    assert "W1" in listed and w1 in listed and "data: keep" in listed and "asked on the phone to stop" in listed
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "withdrawn"))
    assert event.details["data"] == "keep" and event.details["pseudonym"] == w1
    assert event.details["days_after_discharge"] == days

    again = run_cli("patients", "withdraw", "W1", "--reason", "twice", "--data", "remove", "--yes")
    assert again.exit_code == 1 and "already withdrew" in again.output


def test_a_reason_with_a_phone_number_is_refused_and_nothing_changes(run_cli, tmp_path, session):
    import_rows(run_cli, tmp_path, [("W3", "416-555-0139", "yes")], "first.csv")
    result = run_cli("patients", "withdraw", "W3", "--reason", "call her at 416 555 0139", "--data", "keep", "--yes")
    assert result.exit_code == 1 and "must not hold a phone number" in result.output
    assert patient(session, "W3").withdrawn_at is None


# -- the signed webhook ------------------------------------------------------------------------------------------

def test_a_withdrawn_participant_gets_only_the_neutral_acknowledgement_and_a_crisis_text_still_alerts(
        make_patient, make_followup, sessions, session, webhook, run_cli, send_env, api):
    p = make_patient(phone="+14165550137")
    make_followup(p)
    with unit_of_work(sessions) as s:
        withdraw(s, pk=p.id, data="keep", reason="moved away", actor="coordinator@study.example.org")

    assert webhook.text("+14165550137", "YES") == (200, [ACK])  # no survey question
    assert webhook.text("+14165550137", "START") == (200, [ACK])  # no keyword undoes a withdrawal
    assert webhook.text("+14165550137", "How are you all doing?")[1] == [ACK]
    assert webhook.text("+14165550137", CRISIS) == (200, [SAFETY])  # safety does not depend on study status
    session.rollback()
    alert = session.scalar(select(Alert))
    assert alert.patient_id == p.id and alert.on_call_queued_at is not None
    assert session.get(Patient, p.id).withdrawn_at is not None
    inbound = session.scalars(select(Message).where(Message.direction == "in")).all()
    assert len(inbound) == 4  # every text kept
    assert not session.scalars(select(Answer)).all()  # and none read as an answer

    send_due(run_cli, send_env)
    assert api.numbers == [ON_CALL]  # the coordinator on call; nothing else is sent to anyone
    assert webhook.text("+14165550137", "STOP") == (200, [])  # their opt-out still counts; no acknowledgement
    session.rollback()
    assert session.get(Patient, p.id).opted_out_at is not None
    assert webhook.text("+14165550137", "hello?") == (200, [])


# -- remove ------------------------------------------------------------------------------------------------------

def _dump(session) -> str:
    """Every row of every table, every column as text (JSON included)."""
    session.rollback()
    parts = []
    for table in Base.metadata.sorted_tables:
        for row in session.execute(select(table)).all():
            parts.append(json.dumps([str(v) for v in row]))
    return "\n".join(parts).lower()


def test_withdrawal_with_remove_erases_their_phone_and_words_from_every_table(run_cli, tmp_path, send_env, api,
                                                                            session, twilio, console_client):
    import_rows(run_cli, tmp_path, [("R1", "416-555-0137", "yes"), ("R2", "416-555-0138", "yes")], "first.csv")
    launch(run_cli)
    send_due(run_cli, send_env)
    for pid, phone in (("R1", "+14165550137"), ("R2", "+14165550138")):
        twilio.text(phone, "YES")
        twilio.text(phone, "7")
        twilio.text(phone, "4")
    twilio.text("+14165550137", "I moved to Zebracorn avenue last week")  # words a person reads
    pk = patient(session, "R1").id
    client = console_client("coordinator")
    assert client.post(f"/console/patients/{pk}/phone", data={"csrf_token": client.csrf,
                                                               "phone": "613 555 0199"}).status_code == 302
    twilio.text("+16135550199", CRISIS + " zebracorn")
    session.rollback()
    alert_id = session.scalar(select(Alert.id))
    cli_ok(run_cli, "alerts", "resolve", str(alert_id), "--note", "called back, Zebracorn is safe")
    before = export(run_cli, tmp_path, "before.csv")
    r1 = pseudonym(KEY.encode(), "R1")
    assert r1 in set(before["participant"])
    dump = _dump(session)
    assert "zebracorn" in dump and "5550137" in dump and "5550199" in dump  # the test would see them

    out = cli_ok(run_cli, "patients", "withdraw", "R1", "--reason", "asked for the data to be removed",
                 "--data", "remove", "--yes", extra_env={"EXPORT_KEY": KEY})
    assert "answer(s) and" in out and "phone number erased" in out

    dump = _dump(session)
    for trace in ("zebracorn", "5550137", "5550199"):
        assert trace not in dump, trace
    after = export(run_cli, tmp_path, "after.csv")
    assert r1 not in set(after["participant"]) and len(after) == 1  # only R2's follow-up
    # what the researchers' guide tells them to do with a dataset already shared (drop the pseudonym's rows) gives
    # exactly the new export: the other participants' rows are untouched by the removal
    order = ["participant", "episode", "timepoint_days"]
    corrected = before[before["participant"] != r1].sort_values(order).reset_index(drop=True)
    pd.testing.assert_frame_equal(after.sort_values(order).reset_index(drop=True), corrected, check_dtype=False)
    report = tmp_path / "report"
    cli_ok(run_cli, "report", "--out", str(report))
    stats = json.loads((report / "stats.json").read_text())
    assert stats["participants"]["targeted"] in ("<5", 1, "1")  # one participant left, however it is shown
    # what remains: the audit record (who, when, why, the pseudonym) and a row that keeps imports from enrolling them
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "withdrawn"))
    assert (event.actor, event.details["reason"], event.details["pseudonym"]) == (
        event.actor, "asked for the data to be removed", r1)
    gone = patient(session, "R1")
    assert (gone.phone, gone.phone_valid, gone.phone_erased_under) == ("", False, "withdrawal")
    alert = session.get(Alert, alert_id)
    assert alert.patient_id == gone.id and "erased" in alert.resolution_note  # the safety record stays, its words go

    again = import_rows(run_cli, tmp_path, [("R1", "416-555-0137", "yes"), ("R2", "416-555-0138", "yes")],
                        "second.csv")
    assert "skipped 1 row(s) of participants who withdrew" in again
    assert patient(session, "R1").phone == ""  # no import brings the number back
    page = client.get(f"/console/patients/{gone.id}").get_data(as_text=True)
    assert "erased on" in page and "at the participant&#39;s withdrawal" in page


# -- the console -------------------------------------------------------------------------------------------------

def test_the_console_says_what_withdrawal_does_before_it_is_confirmed(console_client, make_patient, make_followup,
                                                                      sessions, session):
    p = make_patient(phone="+14165550137")
    make_followup(p)
    client = console_client("coordinator")
    page = client.get(f"/console/patients/{p.id}").get_data(as_text=True)
    assert 'id="withdraw-form"' in page

    missing = client.post(f"/console/patients/{p.id}/withdraw", data={"csrf_token": client.csrf, "data": "keep"})
    assert missing.status_code == 400 and "Give the reason" in missing.get_data(as_text=True)

    step = client.post(f"/console/patients/{p.id}/withdraw",
                       data={"csrf_token": client.csrf, "data": "remove", "reason": "does not want to go on"})
    said = step.get_data(as_text=True)
    assert step.status_code == 200 and 'id="consequences"' in said
    assert "are deleted from the database" in said and "cannot be reversed" in said
    session.rollback()
    assert session.get(Patient, p.id).withdrawn_at is None  # nothing changed yet

    done = client.post(f"/console/patients/{p.id}/withdraw", follow_redirects=True,
                       data={"csrf_token": client.csrf, "data": "keep", "reason": "does not want to go on",
                             "confirm": "yes"}).get_data(as_text=True)
    assert "is withdrawn from the study" in done and "Withdrew on" in done and 'id="withdraw-form"' not in done
    assert "This participant withdrew from the study" in done  # no text by hand either
    listed = client.get("/console/withdrawals").get_data(as_text=True)
    assert p.patient_id in listed and "does not want to go on" in listed
    session.rollback()
    actions = set(session.scalars(select(AuditEvent.action).where(AuditEvent.patient_id == p.id)))
    assert {"withdrawn", "viewed_withdrawals"} <= actions
    assert console_client("researcher").post(f"/console/patients/{p.id}/withdraw",
                                             data={"data": "keep", "reason": "x", "confirm": "yes"}).status_code == 403


def test_consequences_count_what_withdrawal_stops(make_patient, make_followup, sessions):
    p = make_patient()
    make_followup(p)
    with unit_of_work(sessions) as s:
        said = consequences(s, p.id, "keep")
        assert (said.followups_open, said.answers) == (1, 0)
        with pytest.raises(WithdrawalError):
            withdraw(s, pk=p.id, data="maybe", reason="x", actor="c")


def test_a_text_queued_for_them_by_any_path_is_refused_when_the_sender_claims_it(make_patient, sessions, session,
                                                                                 run_cli, send_env, api,
                                                                                 console_client):
    """Withdrawal cancels what is queued; a text queued afterwards anyway (a race, an older worker) is refused by the
    sender's check of each text it claims, and the console refuses to write one."""
    p = make_patient(phone="+14165550137")
    with unit_of_work(sessions) as s:
        withdraw(s, pk=p.id, data="keep", reason="moved away", actor="c@study.example.org")
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with unit_of_work(sessions) as s:
        s.add(Message(direction="out", kind="reminder", status="pending", patient_id=p.id, to_number=p.phone,
                      body="a reminder", send_after=now, attempts=0, media_count=0, created_at=now, updated_at=now))
    send_due(run_cli, send_env)
    assert api.numbers == []
    session.rollback()
    late = session.scalar(select(Message).where(Message.kind == "reminder"))
    assert (late.status, late.error_message) == ("cancelled", WITHDRAWN)
    client = console_client("coordinator")
    refused = client.post(f"/console/patients/{p.id}/text", data={"csrf_token": client.csrf, "body": "hello"})
    assert refused.status_code == 400 and "withdrew from the study" in refused.get_data(as_text=True)
