"""Issue 26, part 3: alliance check-ins by SMS, end to end: admissions imported, the weekly check-in queued by
the worker and sent through the real sending path (Twilio's REST API mocked at the HTTP edge), answered through
the signed webhook, recorded as a check-in, a falling rating raising an alert that names the rule and the
statement.  Keywords, crisis, one conversation at a time, and nothing of it in the research data."""
from __future__ import annotations

import datetime as dt
import json
import urllib.parse

import pytest
import responses
from sqlalchemy import select

from outreach.config import load_settings
from outreach.messaging.gateway import make_gateway
from outreach.messaging.sender import Sender
from outreach.models import AllianceAlert, AllianceCheckin, Alert, FollowUp, Message, Patient
from outreach.worker import every_minute

from .conftest import TWILIO_SID

API = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
ADMITTED = dt.date.today() - dt.timedelta(days=20)  # two check-in periods passed: the second one is due
HEADER = "patient_id,phone,admission_date,care_team,sms_consent,alliance_checkins,language"


def ok_reply(request):
    form = dict(urllib.parse.parse_qsl(request.body))
    return 201, {}, json.dumps({"sid": "SM" + str(len(responses.calls)).zfill(32), "status": "queued",
                                "to": form["To"], "body": form["Body"]})


@pytest.fixture
def admitted(tmp_path, run_cli):
    assert run_cli("care-teams", "add", "Ward A").exit_code == 0
    path = tmp_path / "admissions.csv"
    path.write_text(f"{HEADER}\nE1,416-555-0101,{ADMITTED},Ward A,yes,sms,en\n"
                    f"F1,514-555-0102,{ADMITTED},Ward A,oui,sms,fr\n"
                    f"T1,416-555-0103,{ADMITTED},Ward A,yes,tablet,en\n", encoding="utf-8")
    result = run_cli("import-admissions", str(path))
    assert result.exit_code == 0, result.output
    return {"E1": "+14165550101", "F1": "+15145550102"}


@pytest.fixture
def worker(sessions, send_env):
    settings = load_settings(send_env)
    sender = Sender(sessions, settings, make_gateway(settings, echo=None))

    def run():
        """The worker's minute duties, then one sending pass: what was sent, {phone: body}."""
        every_minute(sessions, settings)
        before = len(responses.calls)
        sender.send_due(max_batches=1)
        return {dict(urllib.parse.parse_qsl(c.request.body))["To"]: dict(urllib.parse.parse_qsl(c.request.body))["Body"]
                for c in responses.calls[before:]}

    return run


def answer(twilio, phone, *texts):
    return [twilio.text(phone, t)[1] for t in texts]


@responses.activate
def test_weekly_checkins_by_text_end_to_end_with_an_alert_on_a_falling_rating(admitted, worker, twilio, session,
                                                                              clock, run_cli):
    responses.add_callback(responses.POST, API, callback=ok_reply)
    sent = worker()
    assert set(sent) == set(admitted.values())  # the tablet patient gets no text
    assert "this week's check-in, 6 short statements to rate 0 to 6" in sent["+14165550101"]
    assert "bilan de la semaine" in sent["+15145550102"]
    assert worker() == {}  # nothing twice
    replies = answer(twilio, "+14165550101", "yes", "6", "5", "completely", "6", "5", "6")
    assert replies[0] == ["1/6. My care team and I agree on what I need to work on. Reply 0 (not at all) to 6 "
                          "(completely)"]
    assert replies[1][0].startswith("2/6. I feel that my care team respects me.")
    assert replies[-1][0].startswith("Thank you, that's all!")
    assert "2/6. Je sens que mon équipe de soins me respecte." in answer(twilio, "+15145550102", "oui", "6")[1][0]
    worker()
    first = session.scalar(select(AllianceCheckin).join(Patient, Patient.id == AllianceCheckin.patient_id)
                           .where(Patient.patient_id == "E1"))
    assert (first.method, first.items, first.treatment_week, first.flags) == ("sms", [6, 5, 6, 6, 5, 6], 3, [])
    assert first.mean_score == pytest.approx(34 / 6, abs=1e-4)

    clock(days=7)  # the next period: the next check-in; the French one unfinished expired (EXPIRE_DAYS) first
    sent = worker()
    assert "this week's check-in" in sent["+14165550101"] and "bilan de la semaine" in sent["+15145550102"]
    session.rollback()
    partial = session.scalar(select(AllianceCheckin).join(Patient, Patient.id == AllianceCheckin.patient_id)
                             .where(Patient.patient_id == "F1"))
    assert (partial.items, partial.mean_score) == ([6, None, None, None, None, None], None)  # kept, no mean
    answer(twilio, "+14165550101", "oui", "5", "1", "4", "4", "3", "4")
    worker()
    session.rollback()
    alerts = dict(session.execute(select(Patient.patient_id, AllianceAlert)
                                  .join(AllianceAlert, AllianceAlert.patient_id == Patient.id)).all())
    # The tablet patient has had no check-in, but their stay was loaded 20 days after admission: periods are
    # counted from then, and only one of its own has passed (test_alliance_alerts has the missed alert itself).
    assert "T1" not in alerts
    alert = alerts["E1"]
    assert (alert.rule, alert.statements, alert.subscale) == ("low_mean", [2], "bond")
    listed = run_cli("alliance", "alerts").output
    assert "E1  Ward A  low_mean: mean below 4.0; statement 2 (Bond" in listed
    weeks = run_cli("alliance", "checkins", "E1").output
    assert "week 3  sms" in weeks and "week 4  sms" in weeks and "alert: low_mean" in weeks
    clock(days=8)  # day 35: two periods of its own (days 21-34) passed for T1 without a check-in
    worker()
    session.rollback()
    missed = session.scalar(select(AllianceAlert).join(Patient, Patient.id == AllianceAlert.patient_id)
                            .where(Patient.patient_id == "T1"))
    assert missed.rule == "missed"


@responses.activate
def test_a_checkin_never_interrupts_a_follow_up_and_waits_until_it_ends(admitted, worker, twilio, sessions, session,
                                                                         make_followup, clock):
    responses.add_callback(responses.POST, API, callback=ok_reply)
    from outreach.db import unit_of_work
    from outreach.models import Episode

    with unit_of_work(sessions) as s:  # an earlier stay of E1 with its 30-day follow-up under way
        p = s.scalar(select(Patient).where(Patient.patient_id == "E1"))
        old = Episode(patient_id=p.id, admission_date=ADMITTED - dt.timedelta(days=120),
                      discharge_date=ADMITTED - dt.timedelta(days=60))
        s.add(old)
        s.flush()
        p.episode_id = old.id
    make_followup(p, state="q_self_efficacy")
    assert "+14165550101" not in worker()
    answer(twilio, "+14165550101", "7", "good", "good")  # the follow-up ends
    assert "+14165550101" in worker()


@responses.activate
def test_keywords_and_crisis_work_in_a_checkin(admitted, worker, twilio, session):
    responses.add_callback(responses.POST, API, callback=ok_reply)
    worker()
    _, crisis = twilio.text("+14165550101", "I want to die")
    assert crisis[0].startswith("If you are thinking about suicide")
    assert session.scalar(select(Alert.kind)) == "crisis"
    twilio.text("+15145550102", "STOP")
    session.rollback()
    states = dict(session.execute(select(Patient.patient_id, FollowUp.state)
                                  .join(FollowUp, FollowUp.patient_id == Patient.id)).all())
    assert states == {"E1": "crisis", "F1": "opted_out"}
    assert worker() == {}  # no new check-in for either


@responses.activate
def test_checkin_conversations_stay_out_of_the_research_data(admitted, worker, twilio, engine):
    from analysis.queries import followups

    responses.add_callback(responses.POST, API, callback=ok_reply)
    worker()
    answer(twilio, "+14165550101", "yes", "6")
    assert followups(engine).empty  # two check-in conversations, no follow-up


def test_the_sms_statements_are_the_instruments_own_words():
    from conversations.surveys import SURVEY_CHECKIN
    from outreach.study.instrument import load_instrument

    instrument = load_instrument("alliance6")
    for language in ("en", "fr"):
        for i, (question, statement) in enumerate(zip(SURVEY_CHECKIN.questions, instrument.statements_in(language)), 1):
            assert question.key == f"alliance_{i}" and f"{i}/6. {statement} " in question.prompt[language]
    assert [q.allowed for q in SURVEY_CHECKIN.questions] == [(instrument.min, instrument.max)] * 6


@responses.activate
def test_a_checkin_whose_invitation_was_cancelled_ends_and_frees_the_patient(admitted, worker, sessions, send_env,
                                                                            session, tmp_path, run_cli, clock):
    """The invitation of E1's check-in is cancelled before it goes (consent withdrawn by an import): the
    conversation stayed 'invited' for ever (it expires only from a sent invitation), and as E1's one open
    conversation it held back every later check-in, even once consent was given again, and any wave
    (patient_busy).  Now the worker ends it (expired) and the next period's check-in goes."""
    responses.add_callback(responses.POST, API, callback=ok_reply)
    every_minute(sessions, load_settings(send_env))  # both check-ins queued, none sent yet

    def consent(answer, how):
        path = tmp_path / f"consent-{answer}.csv"
        path.write_text(f"{HEADER}\nE1,416-555-0101,{ADMITTED},Ward A,{answer},{how},en\n", encoding="utf-8")
        result = run_cli("import-admissions", str(path))
        assert result.exit_code == 0, result.output

    consent("no", "tablet")  # no texts for now: the tablet instead
    assert set(worker()) == {"+15145550102"}  # E1's invitation was cancelled
    session.rollback()
    first = session.scalar(select(FollowUp).join(Patient, Patient.id == FollowUp.patient_id)
                           .where(Patient.patient_id == "E1"))
    assert (first.state, first.invited_at, first.closed_at is not None) == ("expired", None, True)
    consent("yes", "sms")
    clock(days=7)
    sent = worker()
    assert "this week's check-in" in sent.get("+14165550101", "")  # free again: the next period's check-in


@responses.activate
def test_stop_in_a_checkin_stops_every_text_and_start_brings_them_all_back(admitted, worker, twilio, sessions, session,
                                                                           settings, clock):
    """STOP during a check-in is the patient's opt-out from everything (outreach.messaging.opt_outs), as anywhere:
    no more check-ins, no research follow-up of an earlier stay, the answers given kept, and the reply says no text
    at all will come.  START lifts it for both (its reply said 'follow-up texts' only)."""
    from outreach.db import unit_of_work
    from outreach.models import Episode
    from outreach.study.waves import plan_wave

    responses.add_callback(responses.POST, API, callback=ok_reply)
    with unit_of_work(sessions) as s:  # an earlier stay of E1 whose 30-day follow-up fell due before this one
        p = s.scalar(select(Patient).where(Patient.patient_id == "E1"))
        s.add(Episode(patient_id=p.id, admission_date=ADMITTED - dt.timedelta(days=60),
                      discharge_date=ADMITTED - dt.timedelta(days=35)))
    due = ADMITTED - dt.timedelta(days=5)
    worker()
    *_, stopped = answer(twilio, "+14165550101", "yes", "6", "please stop texting me")
    assert stopped == ["Recovery Study: you will not get any more texts from us. Reply START to get them again."]
    session.rollback()
    e1 = session.scalar(select(Patient).where(Patient.patient_id == "E1"))
    assert e1.opted_out_at is not None and e1.opt_out_reason == "stop"
    assert session.scalar(select(FollowUp.state).where(FollowUp.patient_id == e1.id)) == "opted_out"
    worker()
    session.rollback()
    assert session.scalar(select(AllianceCheckin.items).where(AllianceCheckin.patient_id == e1.id)) == [6] + [None] * 5
    with unit_of_work(sessions) as s:
        assert plan_wave(s, settings, 30, due).excluded["opted_out"] == 1  # the research follow-up: not invited
    clock(days=7)
    assert "+14165550101" not in worker()  # no check-in either
    assert "you will receive our texts again" in answer(twilio, "+14165550101", "START")[0][0]
    clock(days=7)
    assert "this week's check-in" in worker()["+14165550101"]
