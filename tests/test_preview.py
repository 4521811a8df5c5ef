"""`outreach chat --url` marks its texts as previews: stored as such, left out of the export, labelled in the
transcript, and impossible to forge without the auth token.  Migration 0005 adds the column."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import select, text

from analysis.dataset import linked_dataset
from outreach.db import make_engine, unit_of_work, upgrade
from outreach.models import Answer, Message
from outreach.messaging.webhook_client import PREVIEW_FIELD, SignedWebhookClient, flask_post

from .conftest import AUTH_TOKEN, PUBLIC_BASE

KEY = b"export-key-for-preview-tests-0123456789"


@pytest.fixture
def coordinator(app):
    """What `outreach chat` uses: the real signed client, marking every text as a preview."""
    return SignedWebhookClient(flask_post(app.test_client()), PUBLIC_BASE, AUTH_TOKEN, preview=True)


def test_a_preview_is_stored_as_such_with_its_replies_and_kept_out_of_the_export(coordinator, twilio, make_patient,
                                                                                make_followup, engine, session):
    previewed, real = make_patient(patient_id="PREV"), make_patient(patient_id="REAL")
    make_followup(previewed)
    make_followup(real)
    for line in ("yes", "9", "excellent"):
        assert coordinator.text(previewed.phone, line)[0] == 200
    for line in ("yes", "4", "poor"):
        assert twilio.text(real.phone, line)[0] == 200
    session.rollback()
    by_patient = {}
    for m in session.scalars(select(Message)):
        by_patient.setdefault(m.patient_id, set()).add((m.direction, m.preview))
    assert by_patient[previewed.id] == {("in", True), ("out", True)}  # the texts and the service's replies
    assert by_patient[real.id] == {("in", False), ("out", False)}
    assert len(session.scalars(select(Answer)).all()) == 4  # stored, so the preview can be looked at
    df = linked_dataset(engine, KEY, identified=True).set_index("patient_id")
    assert df.loc["REAL", "self_efficacy"] == 4 and df.loc["REAL", "mental_health"] == 1
    assert df.loc["PREV", ["self_efficacy", "mental_health"]].isna().all()  # never taken for the patient's answer
    assert df.loc["PREV", "responded"] == 0 and df.loc["REAL", "responded"] == 1


def test_the_preview_field_cannot_be_forged_without_the_auth_token(app, twilio, make_patient, make_followup,
                                                                   session):
    p = make_patient()
    make_followup(p)
    client = app.test_client()
    # Twilio's signed form, with the field added afterwards (as a patient's carrier or anyone else would have to)
    form = twilio.sms_form(p.phone, "yes")
    from twilio.request_validator import RequestValidator

    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_BASE + "/twilio/sms", form)
    assert client.post("/twilio/sms", data={**form, PREVIEW_FIELD: "1"},
                       headers={"X-Twilio-Signature": signature}).status_code == 403
    # signed with another token
    forged = SignedWebhookClient(flask_post(client), PUBLIC_BASE, "not-the-auth-token", preview=True)
    assert forged.text(p.phone, "yes")[0] == 403
    assert session.scalars(select(Message)).all() == []
    # a patient writing the field's name in the text changes nothing
    assert twilio.text(p.phone, f"{PREVIEW_FIELD}=1")[0] == 200
    session.rollback()
    assert [m.preview for m in session.scalars(select(Message).where(Message.direction == "in"))] == [False]


def test_the_console_transcript_lists_previews_and_the_inbox_leaves_them_out(coordinator, twilio, make_patient,
                                                                             make_followup, sessions):
    from outreach.staff.inbox import inbox_items
    from outreach.staff.patients import patient_view

    from outreach.models import FollowUp

    from outreach.clock import utcnow

    p = make_patient()
    fu = make_followup(p, state="completed")
    with unit_of_work(sessions) as s:
        s.get(FollowUp, fu.id).completed_at = utcnow() - dt.timedelta(days=1)
    coordinator.text(p.phone, "is this thing on? (preview)")
    twilio.text(p.phone, "can I change my answer?")
    with unit_of_work(sessions) as s:
        view = patient_view(s, p.id, actor="coordinator@example.org")
        inbox = inbox_items(s)
    lines = [(m.direction, m.body, m.preview) for m in view.transcript]
    assert ("in", "is this thing on? (preview)", True) in lines
    assert ("in", "can I change my answer?", False) in lines
    assert all(preview for direction, body, preview in lines if direction == "out")  # replies to the preview only
    assert [i.body for i in inbox] == ["can I change my answer?"]


def test_outreach_chat_url_talks_to_a_live_server_and_every_line_is_a_preview(run_cli, web_env, make_patient,
                                                                             session):
    from werkzeug.serving import make_server

    from webhooks.app import create_app

    make_patient(patient_id="LIVE1", discharge_date=dt.date(2026, 9, 1))
    app = create_app(web_env)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        result = run_cli("chat", "LIVE1", "--url", url, "--timepoint", "30", input="yes\n8\n\n", extra_env=web_env)
    finally:
        server.shutdown()
        app.extensions["outreach"]["engine"].dispose()
    assert result.exit_code == 0, result.output
    assert "marked as a preview" in result.output and "0 (not at all)" in result.output
    session.rollback()
    texts = session.scalars(select(Message).order_by(Message.id)).all()
    assert [m.body for m in texts if m.direction == "in"] == ["yes", "8"]
    assert texts and all(m.preview for m in texts)
    assert session.scalar(select(Answer.value)) == 8  # stored on the server …
    engine = make_engine(web_env["DATABASE_URL"])
    try:
        df = linked_dataset(engine, KEY)
    finally:
        engine.dispose()
    assert len(df) == 1 and df["self_efficacy"].isna().all()  # … and never exported as the patient's answer


def test_migration_0005_adds_preview_false_for_every_earlier_message_and_downgrades(empty_db_url):
    from alembic import command

    from outreach.db import alembic_config

    engine = make_engine(empty_db_url)
    try:
        upgrade(engine, "0004")
        now = dt.datetime(2026, 11, 1, 12)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO messages (id, direction, body, media_count, status, attempts, created_at, "
                              "updated_at) VALUES (1, 'in', 'hi', 0, 'processed', 0, :now, :now)"), {"now": now})
            conn.execute(text("INSERT INTO alerts (id, kind, message_id, opened_at) VALUES (1, 'crisis', 1, :now)"),
                         {"now": now})
        upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT preview FROM messages")).scalar_one() in (False, 0)
            assert conn.execute(text("SELECT on_call_texted_at FROM alerts")).scalar_one() is None
        with engine.begin() as conn:  # new rows get the default without naming the column
            conn.execute(text("INSERT INTO messages (id, direction, body, media_count, status, attempts, created_at, "
                              "updated_at) VALUES (2, 'in', 'yo', 0, 'processed', 0, :now, :now)"), {"now": now})
            assert conn.execute(text("SELECT preview FROM messages WHERE id = 2")).scalar_one() in (False, 0)
        command.downgrade(alembic_config(engine), "0004")
        with engine.connect() as conn:
            from sqlalchemy import inspect

            assert "preview" not in {c["name"] for c in inspect(conn).get_columns("messages")}
            assert "on_call_texted_at" not in {c["name"] for c in inspect(conn).get_columns("alerts")}
            assert conn.execute(text("SELECT count(*) FROM messages")).scalar_one() == 2
        upgrade(engine)  # and up again
    finally:
        engine.dispose()


def test_the_patient_page_marks_a_preview_as_the_coordinators(console_app, console_client, make_patient,
                                                              make_followup):
    p = make_patient()
    make_followup(p)
    preview = SignedWebhookClient(flask_post(console_app.test_client()), PUBLIC_BASE, AUTH_TOKEN, preview=True)
    preview.text(p.phone, "checking the wording")
    html = console_client("coordinator").get(f"/console/patients/{p.id}").get_data(as_text=True)
    row = html[html.index("checking the wording") - 400: html.index("checking the wording")]
    assert "Coordinator (preview)" in row and ">Patient<" not in row
