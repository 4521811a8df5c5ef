"""The inbound webhook through the real Flask app, database and state machine."""
from __future__ import annotations

from sqlalchemy import func, select

from outreach.models import Alert, Answer, AuditEvent, FollowUp, Message, Patient
from outreach.messaging.webhook_client import new_sid


def inbound(session):
    return session.scalars(select(Message).where(Message.direction == "in").order_by(Message.id)).all()


def state_of(session, fu):
    session.rollback()
    return session.get(FollowUp, fu.id).state


def test_whole_survey_by_text(twilio, make_patient, make_followup, session):
    p = make_patient(phone="+14165550101")
    fu = make_followup(p, timepoint=90)
    replies = [twilio.text(p.phone, t)[1] for t in ["Yes!", "ten", "v good", "3", "twenty-one"]]
    assert "0 (not at all) to 10" in replies[0][0]
    assert replies[-1][0].startswith("Thank you")
    answers = {a.question_key: (a.value, a.raw_text) for a in session.scalars(select(Answer))}
    assert answers == {"self_efficacy": (10, "ten"), "mental_health": (4, "v good"),
                       "physical_health": (3, "3"), "days_used": (21, "twenty-one")}
    assert state_of(session, fu) == "completed"
    # Every inbound stored, every reply stored as outbound linked to it.
    assert len(inbound(session)) == 5
    outs = session.scalars(select(Message).where(Message.direction == "out")).all()
    assert len(outs) == 5 and all(o.in_reply_to_id for o in outs)
    from conversations.machine import MACHINE

    assert MACHINE.models == []  # every attached row was detached again


def test_french_patient_gets_french(twilio, make_patient, make_followup):
    p = make_patient(language="fr")
    make_followup(p)
    status, replies = twilio.text(p.phone, "oui")
    assert status == 200 and "Aujourd'hui" in replies[0]
    assert "santé mentale" in twilio.text(p.phone, "sept")[1][0]


def test_missing_or_wrong_signature_is_403_and_stores_nothing(app, twilio, make_patient, session):
    p = make_patient()
    client = app.test_client()
    form = twilio.sms_form(p.phone, "STOP")
    assert client.post("/twilio/sms", data=form).status_code == 403
    assert client.post("/twilio/sms", data=form, headers={"X-Twilio-Signature": "bad"}).status_code == 403
    # Signed for another URL (no PUBLIC_BASE_URL awareness) is also refused.
    from outreach.messaging.webhook_client import SignedWebhookClient, flask_post

    wrong = SignedWebhookClient(flask_post(client), "http://localhost", twilio.auth_token)
    assert wrong.text(p.phone, "STOP")[0] == 403
    assert inbound(session) == []
    session.rollback()
    assert session.get(Patient, p.id).opted_out_at is None


def test_repeated_delivery_returns_same_reply_and_changes_nothing(twilio, make_patient, make_followup, session):
    p = make_patient()
    fu = make_followup(p, state="q_self_efficacy")
    sid = new_sid()
    first = twilio.text(p.phone, "7", sid=sid)
    again = twilio.text(p.phone, "7", sid=sid)
    assert first == again and "mental health" in first[1][0]
    assert session.scalar(select(func.count()).select_from(Answer)) == 1
    assert len(inbound(session)) == 1
    assert state_of(session, fu) == "q_mental_health"


def test_stop_opts_out_without_followup_and_replies_empty(twilio, make_patient, session):
    p = make_patient()
    status, replies = twilio.text(p.phone, "STOP")
    assert status == 200 and replies == []
    session.rollback()
    assert session.get(Patient, p.id).opted_out_at is not None


def test_stop_mid_survey_cancels_queued_messages(twilio, make_patient, make_followup, sessions, session):
    p = make_patient()
    fu = make_followup(p, state="q_mental_health")
    with sessions.begin() as s:
        s.add(Message(direction="out", kind="reminder", status="pending", body="x", patient_id=p.id,
                      followup_id=fu.id, to_number=p.phone))
    twilio.text(p.phone, "arrêt")
    assert state_of(session, fu) == "opted_out"
    queued = session.scalars(select(Message.status).where(Message.kind == "reminder")).all()
    assert queued == ["cancelled"]


def test_a_plain_request_to_stop_opts_out_everywhere_and_is_confirmed(twilio, make_patient, make_followup, sessions,
                                                                       session):
    p = make_patient(language="fr")
    fu = make_followup(p, state="q_mental_health")
    with sessions.begin() as s:
        s.add(Message(direction="out", kind="reminder", status="pending", body="x", patient_id=p.id,
                      followup_id=fu.id, to_number=p.phone))
    status, replies = twilio.text(p.phone, "Arrêtez de m'écrire svp")
    assert status == 200 and replies == ["Recovery Study : vous ne recevrez plus de textos de notre part. "
                                         "Répondez START pour les recevoir de nouveau."]
    session.rollback()
    assert session.get(Patient, p.id).opted_out_at is not None and state_of(session, fu) == "opted_out"
    assert session.scalar(select(Message.status).where(Message.kind == "reminder")) == "cancelled"
    assert twilio.text(p.phone, "stop please")[1] == []  # once is enough


def test_wrong_number_stops_all_texts_to_that_phone_and_leaves_a_trace(twilio, make_patient, make_followup, sessions,
                                                                        session, run_cli):
    """A reassigned number must not keep receiving a study's texts; coordinators need to fix the record."""
    from outreach.models import AuditEvent

    p = make_patient()
    fu = make_followup(p)
    status, replies = twilio.text(p.phone, "Wrong number!")
    assert replies == ["Recovery Study: sorry for the trouble. We will not text this number again."]
    session.rollback()
    assert session.get(Patient, p.id).opted_out_at is not None and state_of(session, fu) == "opted_out"
    assert session.scalar(select(AuditEvent.patient_id).where(AuditEvent.action == "wrong_number")) == p.id
    # Whoever holds the number now learns nothing about the study, not even by asking.
    assert twilio.text(p.phone, "who is this?")[1] == ["This number will not receive our texts. Nothing more is "
                                                       "needed."]


def test_start_opts_back_in_and_no_survey_restarts(twilio, make_patient, make_followup, session):
    p = make_patient(opted_out=True)
    fu = make_followup(p, state="opted_out")
    status, replies = twilio.text(p.phone, "START")
    assert "again" in replies[0]
    session.rollback()
    assert session.get(Patient, p.id).opted_out_at is None and state_of(session, fu) == "opted_out"


def test_crisis_message_opens_alert_pauses_and_replies_safety(twilio, make_patient, make_followup, session,
                                                               run_cli):
    p = make_patient(patient_id="PX-17")
    fu = make_followup(p, state="q_self_efficacy")
    _, replies = twilio.text(p.phone, "honestly I want to die")
    assert "988" in replies[0]
    assert state_of(session, fu) == "crisis"
    alert = session.scalar(select(Alert))
    assert alert.patient_id == p.id and alert.resolved_at is None
    listing = run_cli("alerts", "list").output
    assert "PX-17" in listing and "honestly I want to die" in listing and p.phone not in listing
    # While paused, answers are stored but the survey does not go on.
    assert twilio.text(p.phone, "5")[1] == []
    result = run_cli("alerts", "resolve", str(alert.id), "--note", "called, safe, wants to continue")
    assert result.exit_code == 0
    assert state_of(session, fu) == "q_self_efficacy"
    session.rollback()
    assert session.get(Alert, alert.id).resolution_note == "called, safe, wants to continue"
    audited = session.scalar(select(AuditEvent).where(AuditEvent.action == "crisis_alert_resolved"))
    assert audited.details == {"alert_id": alert.id, "note": "called, safe, wants to continue",  # and the pause given
                               "paused_seconds": audited.details["paused_seconds"],  # back to the survey's window
                               "expires_at_before": None, "expires_at": None}
    assert 0 <= audited.details["paused_seconds"] < 60
    assert "no open alerts" in run_cli("alerts", "list").output
    again = run_cli("alerts", "resolve", str(alert.id), "--note", "x")
    assert again.exit_code == 1 and "already resolved" in again.output


def test_crisis_from_opted_out_patient_after_completion_still_alerts(twilio, make_patient, make_followup, session):
    p = make_patient(opted_out=True)
    make_followup(p, state="completed")
    _, replies = twilio.text(p.phone, "I took an overdose")
    assert "988" in replies[0]
    assert session.scalar(select(func.count()).select_from(Alert)) == 1


def test_unknown_number_is_stored_and_gets_empty_reply(twilio, session):
    status, replies = twilio.text("+14165559999", "hello")
    assert status == 200 and replies == []
    msgs = inbound(session)
    assert len(msgs) == 1 and msgs[0].body == "hello" and msgs[0].patient_id is None


def test_crisis_from_an_unknown_number_still_gets_help_and_an_alert(twilio, session, run_cli):
    status, replies = twilio.text("+14165559876", "I want to kill myself")
    assert status == 200 and "988" in replies[0] and "988" in replies[1]  # English and French: language unknown
    listing = run_cli("alerts", "list").output
    assert "unknown sender +1******9876" in listing and "I want to kill myself" in listing


def test_shared_phone_routes_to_patient_with_active_followup(twilio, make_patient, make_followup, session):
    a = make_patient(phone="+14165550155")
    b = make_patient(phone="+14165550155")
    make_followup(a, state="completed")
    fu_b = make_followup(b, state="q_self_efficacy")
    twilio.text("+14165550155", "6")
    assert session.scalar(select(Answer.followup_id)) == fu_b.id
    assert inbound(session)[0].patient_id == b.id


def test_media_only_message_asks_for_text(twilio, make_patient, make_followup):
    p = make_patient()
    make_followup(p, state="q_self_efficacy")
    _, replies = twilio.text(p.phone, "", media=1)
    assert "only read text" in replies[0] and "0 (not at all)" in replies[1]


def test_completed_gets_one_ack_per_day_but_every_message_is_stored(twilio, make_patient, make_followup, session):
    p = make_patient()
    make_followup(p, state="completed")
    assert twilio.text(p.phone, "thanks")[1] == []
    assert twilio.text(p.phone, "do you need anything else?")[1]
    assert twilio.text(p.phone, "bye")[1] == []
    assert len(inbound(session)) == 3


def test_bad_input_never_500(app, twilio, make_patient, make_followup, session):
    p = make_patient()
    make_followup(p, state="q_self_efficacy")
    cases = [
        {"Body": "x" * 5000}, {"Body": "7 \U0001F600"}, {"Body": "7\x00 8"},
        {"Body": ""}, {"NumMedia": "lots"},
    ]
    for extra in cases:
        form = twilio.sms_form(p.phone, "hi")
        form.update(extra)
        status, _ = twilio.signed("/twilio/sms", form)
        assert status == 200, extra
    for form in [{"From": p.phone}, {"MessageSid": new_sid(), "Body": "7"}, {}]:
        status, _ = twilio.signed("/twilio/sms", form)
        assert status == 400, form
    # Repeated keys and invalid UTF-8, sent as raw bytes the way a broken client might.
    from twilio.request_validator import RequestValidator
    from werkzeug.datastructures import MultiDict

    sid = new_sid()
    raw = (f"MessageSid={sid}&From=%2B{p.phone[1:]}&Body=%FF%FE7&Body=8").encode()
    # Werkzeug keeps undecodable escapes as text; the signature covers every value of a repeated key.
    parsed = MultiDict([("MessageSid", sid), ("From", p.phone), ("Body", "%FF%FE7"), ("Body", "8")])
    signature = RequestValidator(twilio.auth_token).compute_signature(twilio.signed_base_url + "/twilio/sms", parsed)
    resp = app.test_client().post("/twilio/sms", data=raw, content_type="application/x-www-form-urlencoded",
                                  headers={"X-Twilio-Signature": signature})
    assert resp.status_code == 200
    bodies = [m.body for m in inbound(session)]
    assert "x" * 5000 in bodies and "7\ufffd 8" in bodies and "%FF%FE7" in bodies
    assert len(bodies) == len(cases) + 3 + 1  # the three rejected requests are stored too


def test_oversized_request_is_refused_without_a_server_error(app, twilio, session):
    form = twilio.sms_form("+14165550101", "x" * 300_000)
    status, _ = twilio.signed("/twilio/sms", form)
    assert status == 413
    assert inbound(session) == []


def _stored_but_never_processed(sessions, phone: str, body: str) -> int:
    """A message whose request died between the store and the processing (a killed web worker)."""
    from outreach.db import unit_of_work
    from outreach.clock import utcnow

    with unit_of_work(sessions) as s:
        m = Message(direction="in", provider_sid=new_sid(), from_number=phone, to_number="+15005550006", body=body,
                    status="received", media_count=0, attempts=0, created_at=utcnow())
        s.add(m)
        s.flush()
        return m.id


def test_a_message_left_unprocessed_is_applied_first_by_the_next_one(twilio, make_patient, make_followup,
                                                                     session, sessions):
    p = make_patient()
    fu = make_followup(p, timepoint=30, state="q_self_efficacy")
    lost = _stored_but_never_processed(sessions, p.phone, "8")
    status, replies = twilio.text(p.phone, "2")
    assert status == 200 and "physical health" in replies[0]  # "2" answered the second question
    session.rollback()
    answers = {a.question_key: (a.value, a.message_id) for a in session.scalars(select(Answer))}
    assert answers["self_efficacy"] == (8, lost) and answers["mental_health"][0] == 4
    assert state_of(session, fu) == "q_physical_health"
    assert {m.status for m in inbound(session)} == {"processed"}
    # The earlier text's reply had no request to ride on: queued for the worker. The new one's went back as TwiML.
    replies = {m.in_reply_to_id: m.status for m in session.scalars(select(Message).where(Message.direction == "out"))}
    assert replies[lost] == "pending" and set(replies.values()) == {"pending", "twiml"}


def test_when_the_earlier_message_fails_the_later_one_still_applies_cleanly(twilio, make_patient, make_followup,
                                                                           session, sessions, monkeypatch):
    from outreach.messaging import inbound as inbound_mod

    real = inbound_mod.respond

    def flaky(model, text, *args, **kwargs):  # the engine fails on one message, after changing the model
        if text == "8":
            model.state = "completed"
            raise RuntimeError("engine exploded")
        return real(model, text, *args, **kwargs)

    monkeypatch.setattr(inbound_mod, "respond", flaky)
    p = make_patient()
    fu = make_followup(p, timepoint=30, state="q_self_efficacy")
    lost = _stored_but_never_processed(sessions, p.phone, "8")
    status, replies = twilio.text(p.phone, "7")
    assert status == 200 and "mental health" in replies[0]  # applied to the state as stored, not as mangled
    session.rollback()
    failed = session.get(Message, lost)
    assert failed.status == "failed" and "engine exploded" in failed.error_message
    assert {a.question_key: a.value for a in session.scalars(select(Answer))} == {"self_efficacy": 7}
    assert state_of(session, fu) == "q_mental_health"
