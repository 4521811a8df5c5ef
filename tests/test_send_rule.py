"""Nothing is sent that the patient's current consent and number do not allow (issue 18).

Each reproduction of the review goes through the real CLI, webhook, console and sender; Twilio's REST API is
mocked at the HTTP edge and records where every text went.
"""
from __future__ import annotations

import datetime as dt
import json
import urllib.parse

import pytest
import responses
from sqlalchemy import func, select, update

from outreach.db import unit_of_work
from outreach.models import AuditEvent, FollowUp, Message, Patient
from outreach.messaging.send_rule import NO_CONSENT, NUMBER_CHANGED

from .conftest import TWILIO_SID, csrf_token_of

API = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
HEADER = "patient_id,phone,discharge_date,sms_consent,alliance_1,alliance_2,alliance_3,alliance_4,alliance_5,alliance_6"
DISCHARGED = dt.date(2026, 9, 1)
DUE = (DISCHARGED + dt.timedelta(days=30)).isoformat()


class TwilioAPI:
    """Twilio's Messages API (``responses``): every text that reached it, as (to, body)."""

    def __init__(self, rsps: responses.RequestsMock):
        self.sent: list[tuple[str, str]] = []
        rsps.add_callback(responses.POST, API, callback=self._reply)

    def _reply(self, request):
        form = dict(urllib.parse.parse_qsl(request.body))
        self.sent.append((form["To"], form["Body"]))
        return 201, {}, json.dumps({"sid": f"SM{len(self.sent):032d}", "status": "queued", "to": form["To"],
                                    "body": form["Body"]})

    @property
    def numbers(self) -> list[str]:
        return [to for to, _ in self.sent]


@pytest.fixture
def api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield TwilioAPI(rsps)


def import_rows(run_cli, tmp_path, rows: list[tuple[str, str, str]], name: str):
    """Import (patient_id, phone, consent) rows discharged on DISCHARGED; the CLI's output."""
    path = tmp_path / name
    path.write_text(HEADER + "\n" + "".join(f"{pid},{phone},{DISCHARGED},{consent},6,6,5,6,6,6\n"
                                            for pid, phone, consent in rows))
    result = run_cli("import-discharges", str(path))
    assert result.exit_code == 0, result.output
    return result.output


def launch(run_cli) -> str:
    result = run_cli("waves", "launch", "--timepoint", "30", "--as-of", DUE, "--yes")
    assert result.exit_code == 0, result.output
    return result.output


def send_due(run_cli, send_env) -> str:
    result = run_cli("send-due", extra_env=send_env)
    assert result.exit_code == 0, result.output
    return result.output


def patient(session, pid: str) -> Patient:
    session.rollback()
    return session.scalar(select(Patient).where(Patient.patient_id == pid))


def outbound(session, pid: str) -> list[Message]:
    return list(session.scalars(select(Message).where(Message.patient_id == patient(session, pid).id,
                                                      Message.direction == "out").order_by(Message.id)))


# -- 1. a corrected number reaches the texts already queued -----------------------------------------------------

def test_a_phone_corrected_on_the_console_is_where_the_queued_invitation_goes(run_cli, tmp_path, send_env, api,
                                                                             console_client, session):
    import_rows(run_cli, tmp_path, [("C1", "416-555-0101", "yes")], "first.csv")
    launch(run_cli)
    pk = patient(session, "C1").id
    client = console_client("coordinator")
    queued = client.post(f"/console/patients/{pk}/text", data={"csrf_token": client.csrf,
                                                                "body": "Please call the clinic"})
    assert queued.status_code == 302
    fixed = client.post(f"/console/patients/{pk}/phone", data={"csrf_token": client.csrf, "phone": "613 555 0199"},
                        follow_redirects=True).get_data(as_text=True)
    assert "1 invitation(s) queued again to the new number" in fixed
    assert "1 other text(s) cancelled" in fixed

    send_due(run_cli, send_env)
    assert api.numbers == ["+16135550199"]  # the invitation, at the new number; nothing to the old one
    assert "+14165550101" not in api.numbers
    manual = next(m for m in outbound(session, "C1") if m.kind == "manual")
    assert (manual.status, manual.error_message) == ("cancelled", NUMBER_CHANGED)
    page = client.get(f"/console/patients/{pk}").get_data(as_text=True)
    assert "not sent to the old number" in page  # the transcript says why the text was not sent


def test_a_phone_changed_by_a_new_import_is_where_the_queued_invitation_goes(run_cli, tmp_path, send_env, api,
                                                                            session):
    import_rows(run_cli, tmp_path, [("I1", "416-555-0102", "yes"), ("I2", "416-555-0103", "yes")], "first.csv")
    launch(run_cli)
    output = import_rows(run_cli, tmp_path, [("I1", "416-555-0102", "yes"), ("I2", "613-555-0177", "yes")],
                         "second.csv")
    assert "phone number changed for 1 patient(s)" in output and "1 queued invitation(s) now go to the new number" \
        in output
    send_due(run_cli, send_env)
    assert sorted(api.numbers) == ["+14165550102", "+16135550177"]
    changed = session.scalar(select(AuditEvent).where(AuditEvent.action == "phone_corrected"))
    assert (changed.details["file"], changed.details["line"], changed.details["old"]) == (
        "second.csv", 3, "+14165550103")


def test_the_sender_never_sends_to_a_number_that_is_no_longer_the_patients(make_patient, make_followup, sessions,
                                                                           session, send_env, run_cli, api):
    """Whatever path changed the number, a text queued for the old one is cancelled at the moment of sending."""
    p = make_patient(phone="+14165550111")
    fu = make_followup(p, state="q_mental_health")
    with unit_of_work(sessions) as s:
        s.add(Message(direction="out", kind="reply", status="pending", body="How is your mental health?",
                      patient_id=p.id, followup_id=fu.id, to_number=p.phone, send_after=dt.datetime(2026, 1, 1)))
        s.execute(update(Patient).where(Patient.id == p.id).values(phone="+14165550999"))
    assert "cancelled 1" in send_due(run_cli, send_env)
    assert api.sent == []
    session.rollback()
    msg = session.scalar(select(Message).where(Message.direction == "out"))
    assert (msg.status, msg.error_message, msg.to_number) == ("cancelled", NUMBER_CHANGED, "+14165550111")


# -- 2. withdrawn consent stops invitations, reminders and nudges -----------------------------------------------

def test_consent_withdrawn_by_import_stops_the_invitation_and_is_audited_with_file_and_line(
        run_cli, tmp_path, send_env, api, session):
    import_rows(run_cli, tmp_path, [("W0", "416-555-0120", "yes"), ("W1", "416-555-0121", "yes")], "first.csv")
    launch(run_cli)
    output = import_rows(run_cli, tmp_path, [("W0", "416-555-0120", "yes"), ("W1", "416-555-0121", "no")],
                         "withdrawn.csv")
    assert "consent to texts withdrawn for 1 patient(s)" in output and "W1" in output
    send_due(run_cli, send_env)
    assert api.numbers == ["+14165550120"]
    invitation = outbound(session, "W1")[0]
    assert (invitation.status, invitation.error_message) == ("cancelled", NO_CONSENT)
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "consent_withdrawn"))
    assert (event.patient_id, event.details["file"], event.details["line"]) == (patient(session, "W1").id,
                                                                                 "withdrawn.csv", 3)
    events = run_cli("events", "--kind", "consent_withdrawn")
    assert "patient W1  consent to texts withdrawn (discharge file)" in events.output
    # the follow-up stays as it was (it expires as usual; its research outcome is not rewritten), and a reply
    # from the patient gets no survey question
    assert session.scalar(select(FollowUp.state).where(FollowUp.patient_id == patient(session, "W1").id)) \
        == "invited"


def test_a_patient_without_consent_who_writes_gets_no_survey_question(make_patient, make_followup, twilio, session):
    p = make_patient(phone="+14165550125", consent=False)
    make_followup(p)
    status, replies = twilio.text(p.phone, "yes")
    assert status == 200 and replies == ["This number will not receive our texts. Nothing more is needed."]
    assert session.scalar(select(FollowUp.state)) == "invited"


def test_without_consent_no_reminder_or_nudge_is_queued_and_a_queued_one_is_not_sent(
        make_patient, make_followup, sessions, session, send_env, run_cli, api, clock):
    invited, answering = make_patient(), make_patient()
    make_followup(invited, state="invited")
    make_followup(answering, state="q_mental_health")
    with unit_of_work(sessions) as s:
        for f in s.scalars(select(FollowUp)):
            f.expires_at = dt.datetime(2100, 1, 1)
        answering_fu = s.scalar(select(FollowUp).where(FollowUp.patient_id == answering.id))
        answering_fu.last_inbound_at = answering_fu.invited_at
        # a reminder queued while consent was still there
        s.add(Message(direction="out", kind="reminder", status="pending", body="Reminder", patient_id=invited.id,
                      followup_id=answering_fu.id - 1, to_number=invited.phone, send_after=dt.datetime(2026, 1, 1)))
        s.execute(update(Patient).values(sms_consent=False))
    plan = run_cli("waves", "plan", "--timepoint", "30", "--as-of", "2026-10-31")
    assert "open follow-ups that get no more texts, no SMS consent: 2" in plan.output
    clock(hours=100)
    assert "queued 0 reminder(s), 0 stalled-survey reminder(s)" in run_cli("tick").output
    send_due(run_cli, send_env)
    assert api.sent == []
    session.rollback()
    reminder = session.scalar(select(Message).where(Message.kind == "reminder"))
    assert (reminder.status, reminder.error_message) == ("cancelled", NO_CONSENT)


# -- 3. a "wrong number" is not undone by whoever holds the number --------------------------------------------

@pytest.mark.parametrize("again", ["Yes", "START", "oui"])
def test_yes_after_wrong_number_keeps_the_number_opted_out_and_says_nothing_about_the_study(
        again, twilio, make_patient, make_followup, session, run_cli):
    p = make_patient(phone="+14165550130")
    make_followup(p)
    twilio.text(p.phone, "wrong number")
    status, replies = twilio.text(p.phone, again)
    assert status == 200 and replies == ["This number will not receive our texts. Nothing more is needed."]
    assert "Recovery Study" not in replies[0]
    now = patient(session, p.patient_id)
    assert now.opted_out_at is not None and now.opt_out_reason == "wrong_number"
    actions = list(session.scalars(select(AuditEvent.action).where(AuditEvent.patient_id == p.id)
                                   .order_by(AuditEvent.id)))
    assert actions[-1] == "opt_in_refused" and "opted_in" not in actions
    # Twilio's own START (Advanced Opt-Out) does not lift it either
    twilio.text(p.phone, "START", opt_out_type="START")
    assert patient(session, p.patient_id).opted_out_at is not None
    # a coordinator who confirmed consent again can
    lifted = run_cli("patients", "opt-in", p.patient_id, "--reason", "called the patient, number confirmed")
    assert lifted.exit_code == 0, lifted.output
    assert patient(session, p.patient_id).opted_out_at is None


def test_a_stop_after_a_wrong_number_does_not_make_it_liftable_by_start(twilio, make_patient, session):
    p = make_patient(phone="+14165550131")
    twilio.text(p.phone, "wrong number")
    twilio.text(p.phone, "STOP")
    twilio.text(p.phone, "START")
    assert patient(session, p.patient_id).opted_out_at is not None


def test_start_after_the_patients_own_stop_opts_back_in(twilio, make_patient, session):
    p = make_patient(phone="+14165550132")
    twilio.text(p.phone, "STOP")
    assert patient(session, p.patient_id).opt_out_reason == "stop"
    status, replies = twilio.text(p.phone, "START")
    assert "again" in replies[0]
    now = patient(session, p.patient_id)
    assert (now.opted_out_at, now.opt_out_reason) == (None, None)


# -- Twilio's opt-out words are final; French stop words opt out ---------------------------------------------

def test_a_text_twilio_marked_stop_opts_out_at_once_whatever_its_words(twilio, make_patient, make_followup,
                                                                        sessions, session):
    p = make_patient(phone="+14165550140", language="fr")
    fu = make_followup(p)
    with unit_of_work(sessions) as s:
        s.add(Message(direction="out", kind="reminder", status="pending", body="Rappel", patient_id=p.id,
                      followup_id=fu.id, to_number=p.phone, send_after=dt.datetime(2030, 1, 1)))
    status, replies = twilio.text(p.phone, "FIN DES MESSAGES", opt_out_type="STOP")
    assert status == 200 and replies == []  # Twilio has confirmed it already
    now = patient(session, p.patient_id)
    assert now.opted_out_at is not None and now.opt_out_reason == "stop"
    assert session.scalar(select(FollowUp.state).where(FollowUp.id == fu.id)) == "opted_out"
    assert session.scalar(select(Message.status).where(Message.kind == "reminder")) == "cancelled"
    stored = session.scalar(select(Message).where(Message.direction == "in"))
    assert stored.carrier_keyword == "opt_out"
    opted = session.scalar(select(AuditEvent).where(AuditEvent.action == "opted_out"))
    assert opted.details["via"] == "twilio"
    # and Twilio's START after it opts back in, whatever the words
    twilio.text(p.phone, "REPRENDRE", opt_out_type="START")
    assert patient(session, p.patient_id).opted_out_at is None


@pytest.mark.parametrize("words", ["Arrêter", "désabonner", "Je veux me désabonner", "désabonnez-moi svp",
                                   "Désinscription"])
def test_french_stop_words_opt_out_as_stop_does(words, twilio, make_patient, make_followup, session):
    p = make_patient(language="fr")
    make_followup(p)
    status, replies = twilio.text(p.phone, words)
    assert status == 200 and "vous ne recevrez plus de textos" in replies[0]
    assert patient(session, p.patient_id).opted_out_at is not None


def test_a_spooled_text_keeps_twilios_mark(make_patient, session, sessions, settings, spool_path):
    """A text spooled during an outage and applied when the database answers is read as Twilio read it: a
    STOP mark opts the patient out whatever the words."""
    from outreach.clock import utcnow
    from outreach.messaging.inbound import Inbox, InboundSMS, _form_of
    from outreach.messaging.spool import Spool

    p = make_patient(phone="+14165550150")
    sms = InboundSMS.from_form({"MessageSid": "SM" + "a" * 32, "From": p.phone, "To": "+15005550006",
                                "Body": "FIN DES MESSAGES", "OptOutType": "stop"})
    assert InboundSMS.from_form({**_form_of(sms), "OptOutType": "SOMETHING"}).carrier_keyword is None
    spool = Spool(spool_path)
    spool.put("sms", _form_of(sms), utcnow())
    assert Inbox(sessions, settings, spool).drain_spool().applied == 1
    assert patient(session, p.patient_id).opted_out_at is not None
    assert session.scalar(select(Message.carrier_keyword).where(Message.direction == "in")) == "opt_out"


def test_the_console_shows_why_a_text_was_not_sent(console_client, make_patient, make_followup, sessions):
    p = make_patient()
    fu = make_followup(p)
    with unit_of_work(sessions) as s:
        s.add(Message(direction="out", kind="reminder", status="cancelled", body="Reminder", patient_id=p.id,
                      followup_id=fu.id, to_number=p.phone, error_message=NO_CONSENT))
    client = console_client("coordinator")
    page = client.get(f"/console/patients/{p.id}").get_data(as_text=True)
    assert "patient has no consent to texts" in page
    assert csrf_token_of(page)


# -- the property: every text that reaches Twilio was allowed at the moment it was sent -----------------------

from hypothesis import HealthCheck, given, settings as hsettings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_examples = iter(range(1, 1_000_000))
KEYWORDS = ["STOP", "START", "yes", "wrong number", "5", "HELP", "arrêter", "no"]
operation = st.one_of(
    st.tuples(st.just("import"), st.integers(0, 1), st.integers(0, 2), st.booleans()),  # patient, phone, consent
    st.tuples(st.just("launch")),
    st.tuples(st.just("manual"), st.integers(0, 1)),
    st.tuples(st.just("tick"), st.sampled_from([1, 30, 50, 100])),  # hours from now
    st.tuples(st.just("send")),
    st.tuples(st.just("text"), st.integers(0, 2), st.sampled_from(KEYWORDS), st.sampled_from([None, None, "STOP",
                                                                                              "START"])),
)


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(operation, min_size=3, max_size=14))
def test_every_text_sent_went_to_the_patients_number_with_consent_and_no_opt_out(steps, sessions, settings, send_env,
                                                                                twilio, tmp_path):
    from outreach.config import load_settings
    from outreach.messaging.gateway import make_gateway
    from outreach.study.importer import import_discharges
    from outreach.clock import utcnow
    from outreach.study.scheduler import tick
    from outreach.messaging.sender import Sender
    from outreach.staff.texting import TextingError, queue_manual_text
    from outreach.study.waves import launch_wave

    n = next(_examples)
    pids = [f"PR{n}A", f"PR{n}B"]
    phones = [f"+1416555{(3 * n + i) % 10000:04d}" for i in (0, 1, 2)]
    consent = {pid: True for pid in pids}
    phone_of = {pids[0]: phones[0], pids[1]: phones[1]}
    send_settings = load_settings(send_env)
    sender = Sender(sessions, send_settings, make_gateway(send_settings, echo=None))
    checked: list[str] = []
    broken: list[str] = []  # the sender catches what a send raises: violations are collected, then asserted

    def allowed_now(request):
        form = dict(urllib.parse.parse_qsl(request.body))
        with unit_of_work(sessions) as s:
            msg = s.scalar(select(Message).where(Message.status == "claimed", Message.to_number == form["To"],
                                                 Message.body == form["Body"]))
            p = s.get(Patient, msg.patient_id) if msg is not None and msg.patient_id is not None else None
            if msg is None:
                broken.append(f"no claimed text to {form['To']}")
            elif p is not None and msg.kind not in ("safety", "opt_out_confirmation"):
                broken.extend(f"{msg.kind}: {why}" for why, bad in (
                    ("sent to a number that is no longer the patient's", form["To"] != p.phone),
                    ("sent without consent", not p.sms_consent),
                    ("sent to an opted-out patient", p.opted_out_at is not None)) if bad)
        checked.append(form["To"])
        return 201, {}, json.dumps({"sid": f"SM{n:08d}{len(checked):024d}", "status": "queued", "to": form["To"],
                                    "body": form["Body"]})

    def write_import(k: int) -> None:
        path = tmp_path / f"ex{n}-{k}.csv"
        path.write_text(HEADER + "\n" + "".join(
            f"{pid},{phone_of[pid]},{DISCHARGED},{'yes' if consent[pid] else 'no'},6,6,5,6,6,6\n" for pid in pids))
        with unit_of_work(sessions) as s:
            import_discharges(s, path, settings, actor="property")

    write_import(0)
    hours = 0
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback(responses.POST, API, callback=allowed_now)
        for k, step in enumerate(steps, start=1):
            kind = step[0]
            if kind == "import":
                _, who, phone, yes = step
                phone_of[pids[who]], consent[pids[who]] = phones[phone], yes
                write_import(k)
            elif kind == "launch":
                with unit_of_work(sessions) as s:
                    launch_wave(s, settings, 30, DISCHARGED + dt.timedelta(days=30), actor="property")
            elif kind == "manual":
                with unit_of_work(sessions) as s:
                    pk = s.scalar(select(Patient.id).where(Patient.patient_id == pids[step[1]]))
                    try:
                        queue_manual_text(s, settings, pk, "Please call the clinic", author="c@study.example.org")
                    except TextingError:
                        pass
            elif kind == "tick":
                hours += step[1]
                with unit_of_work(sessions) as s:
                    tick(s, settings, now=utcnow() + dt.timedelta(hours=hours))
            elif kind == "send":
                sender.send_due()
            else:
                _, phone, words, marked = step
                status, _ = twilio.text(phones[phone], words, opt_out_type=marked)
                assert status == 200
        sender.send_due()
        # every text a patient may receive went out (a refused one would stay pending, retried)
        with unit_of_work(sessions) as s:
            stuck = s.scalar(select(func.count()).select_from(Message).where(
                Message.direction == "out", Message.status == "pending", Message.send_after <= utcnow(),
                Message.patient_id.in_(select(Patient.id).where(Patient.patient_id.in_(pids)))))
    assert broken == [] and stuck == 0


def test_migration_0009_gives_existing_opt_outs_their_reason(empty_db_url):
    """Patients opted out before reasons were kept: a "wrong number" reply on record since they last opted in
    makes it a wrong number (no START lifts it), anything else the patient's own STOP."""
    from alembic import command
    from sqlalchemy import text

    from outreach.db import alembic_config, make_engine, upgrade

    engine = make_engine(empty_db_url)
    upgrade(engine, "0008")
    with engine.begin() as conn:
        for n, pid in enumerate(["STOPPED", "WRONG", "WRONG_THEN_IN", "IN"], start=1):
            conn.execute(text("INSERT INTO patients (id, patient_id, phone, phone_valid, timezone, language, "
                              "sms_consent, opted_out_at, created_at, updated_at) VALUES (:id, :pid, :phone, true, "
                              "'America/Toronto', 'en', true, :out, '2026-01-01', '2026-01-01')"),
                         {"id": n, "pid": pid, "phone": f"+1416555000{n}",
                          "out": None if pid == "IN" else "2026-02-01"})
        for n, (pk, action) in enumerate([(2, "wrong_number"), (2, "opted_out"), (3, "wrong_number"),
                                          (3, "opted_in"), (3, "opted_out"), (1, "opted_out")], start=1):
            conn.execute(text("INSERT INTO audit_events (id, at, actor, action, patient_id, details) VALUES "
                              "(:id, '2026-02-01', 'patient', :action, :pk, '{}')"), {"id": n, "pk": pk,
                                                                                      "action": action})
    upgrade(engine)
    with engine.connect() as conn:
        reasons = dict(conn.execute(text("SELECT patient_id, opt_out_reason FROM patients")).all())
    assert reasons == {"STOPPED": "stop", "WRONG": "wrong_number", "WRONG_THEN_IN": "stop", "IN": None}
    command.downgrade(alembic_config(engine), "0008")
    upgrade(engine)
    engine.dispose()


# -- the number itself remembers a "wrong number" (review of issue 18) ------------------------------------------

def test_a_reimport_that_gives_the_old_number_back_sends_nothing_to_it(run_cli, tmp_path, send_env, api, session,
                                                                      twilio, console_client):
    import_rows(run_cli, tmp_path, [("B1", "416-555-0160", "yes")], "first.csv")
    twilio.text("+14165550160", "wrong number")
    pk = patient(session, "B1").id
    client = console_client("coordinator")
    client.post(f"/console/patients/{pk}/phone", data={"csrf_token": client.csrf, "phone": "613 555 0161"})
    assert patient(session, "B1").opted_out_at is None  # the new number may be texted
    # the site's next extract still has the old number
    import_rows(run_cli, tmp_path, [("B1", "416-555-0160", "yes")], "second.csv")
    plan = run_cli("waves", "plan", "--timepoint", "30", "--as-of", DUE)
    assert "excluded, the number replied 'wrong number': 1" in plan.output
    launch(run_cli)
    manual = client.post(f"/console/patients/{pk}/text", data={"csrf_token": client.csrf, "body": "Hello"},
                         follow_redirects=True)
    assert "replied &#39;wrong number&#39;" in manual.get_data(as_text=True)
    send_due(run_cli, send_env)
    assert "+14165550160" not in api.numbers
    status, replies = twilio.text("+14165550160", "START")
    assert replies == ["This number will not receive our texts. Nothing more is needed."]


def test_start_on_a_shared_phone_never_lifts_another_patients_wrong_number_opt_out(make_patient, twilio, session):
    first = make_patient(phone="+14165550170")
    twilio.text(first.phone, "wrong number")
    second = make_patient(phone="+14165550170")  # later given the same number
    twilio.text(second.phone, "STOP")
    twilio.text(second.phone, "START")
    assert patient(session, first.patient_id).opted_out_at is not None
    assert patient(session, first.patient_id).opt_out_reason == "wrong_number"


def test_a_stop_then_a_wrong_number_is_not_lifted_by_a_phone_correction(make_patient, twilio, session, sessions,
                                                                        settings):
    from outreach.staff.patients import correct_phone

    p = make_patient(phone="+14165550171")
    twilio.text(p.phone, "STOP")
    twilio.text(p.phone, "wrong number")
    with unit_of_work(sessions) as s:
        done = correct_phone(s, settings, p.id, "613 555 0172", actor="c@study.example.org")
    assert not done.reopened
    now = patient(session, p.patient_id)
    assert now.opted_out_at is not None and now.opt_out_reason == "stop"  # the patient's own wish stands


def test_a_coordinators_preview_never_changes_who_may_be_texted(make_patient, app, session):
    from outreach.messaging.webhook_client import SignedWebhookClient, flask_post

    from .conftest import AUTH_TOKEN, PUBLIC_BASE

    p = make_patient(phone="+14165550173")
    real = SignedWebhookClient(flask_post(app.test_client()), PUBLIC_BASE, AUTH_TOKEN)
    preview = SignedWebhookClient(flask_post(app.test_client()), PUBLIC_BASE, AUTH_TOKEN, preview=True)
    real.text(p.phone, "STOP")
    preview.text(p.phone, "START")
    assert patient(session, p.patient_id).opted_out_at is not None


def test_a_preview_reply_queued_for_the_worker_is_never_sent(make_patient, make_followup, sessions, session,
                                                             send_env, run_cli, api):
    p = make_patient(phone="+14165550174")
    fu = make_followup(p, state="q_mental_health")
    with unit_of_work(sessions) as s:
        s.add(Message(direction="out", kind="reply", status="pending", body="How is your physical health?",
                      patient_id=p.id, followup_id=fu.id, to_number=p.phone, preview=True,
                      send_after=dt.datetime(2026, 1, 1)))
    send_due(run_cli, send_env)
    assert api.sent == []


def test_an_invitation_claimed_while_the_phone_changes_is_queued_again_to_the_new_number(
        make_patient, make_followup, sessions, session, send_env, api):
    from outreach.config import load_settings
    from outreach.messaging.gateway import make_gateway
    from outreach.messaging.sender import Sender, SendStats

    p = make_patient(phone="+14165550175")
    fu = make_followup(p)
    with unit_of_work(sessions) as s:
        s.add(Message(direction="out", kind="invitation", status="pending", body="Time for your check-in",
                      patient_id=p.id, followup_id=fu.id, to_number=p.phone, send_after=dt.datetime(2026, 1, 1)))
    settings = load_settings(send_env)
    sender = Sender(sessions, settings, make_gateway(settings, echo=None))
    [claim] = sender.claim()
    with unit_of_work(sessions) as s:  # the correction lands while the invitation is claimed
        s.execute(update(Patient).where(Patient.id == p.id).values(phone="+16135550176"))
    sender.deliver(claim, SendStats())
    sender.send_due()
    assert api.numbers == ["+16135550176"]


def test_migration_0012_blocks_the_numbers_that_replied_wrong_number(empty_db_url):
    from sqlalchemy import text

    from outreach.db import make_engine, upgrade

    engine = make_engine(empty_db_url)
    upgrade(engine, "0011")
    with engine.begin() as conn:
        for n in (1, 2):
            conn.execute(text("INSERT INTO patients (id, patient_id, phone, phone_valid, timezone, language, "
                              "sms_consent, opted_out_at, opt_out_reason, created_at, updated_at) VALUES (:id, :pid, "
                              ":phone, true, 'America/Toronto', 'en', true, '2026-02-01', 'wrong_number', "
                              "'2026-01-01', '2026-01-01')"), {"id": n, "pid": f"P{n}", "phone": f"+1416555000{n}"})
            conn.execute(text("INSERT INTO messages (id, direction, from_number, body, media_count, status, attempts, "
                              "preview, created_at, updated_at) VALUES (:id, 'in', :phone, 'wrong number', 0, "
                              "'processed', 0, false, '2026-02-01', '2026-02-01')"),
                         {"id": n, "phone": f"+1416555000{n}"})
            conn.execute(text("INSERT INTO audit_events (id, at, actor, action, patient_id, details) VALUES "
                              "(:id, '2026-02-01', 'patient', 'wrong_number', :pk, :details)"),
                         {"id": n, "pk": n, "details": json.dumps({"message_id": n})})
        # P2 was opted back in by a coordinator since: its number is not blocked
        conn.execute(text("INSERT INTO audit_events (id, at, actor, action, patient_id, details) VALUES "
                          "(3, '2026-03-01', 'cli:x', 'opted_in', 2, '{}')"))
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT phone FROM blocked_numbers")).scalars().all() == ["+14165550001"]
    engine.dispose()
