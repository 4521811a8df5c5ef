"""The console's alert services: the queue with its context, take, resolve, flag as crisis (both databases)."""
from __future__ import annotations

import datetime as dt

from conversations.lexicon import is_crisis
from sqlalchemy import event, select

from outreach.staff.alerts import alert_queue, flag_as_crisis, missed_by_detector, open_alert_count, resolve_alert, \
    take_alert
from outreach.db import unit_of_work
from outreach.models import Alert, AuditEvent, FollowUp, Message
from outreach.clock import utcnow

HOUR = dt.timedelta(hours=1)


def test_queue_shows_each_open_alert_with_the_five_messages_before_it(twilio, make_patient, make_followup, sessions):
    p = make_patient(patient_id="Q-1")
    make_followup(p)
    for text in ["yes", "7", "good", "fair"]:
        twilio.text(p.phone, text)
    twilio.text(p.phone, "I want to end my life")
    other = make_patient(patient_id="Q-2")
    make_followup(other)
    twilio.text(other.phone, "i want to die")
    with unit_of_work(sessions) as s:
        queue = alert_queue(s, now=utcnow(), overdue_after=12 * HOUR)
    assert [a.patient_id for a in queue] == ["Q-1", "Q-2"]  # oldest first
    first = queue[0]
    assert first.message == "I want to end my life" and first.kind == "crisis" and not first.overdue
    assert len(first.before) == 5
    assert [m.direction for m in first.before][-2:] == ["in", "out"]  # "fair", then the next question
    assert first.before[-2].body == "fair"
    assert queue[1].before == []  # nothing before the second patient's first text


def test_an_alert_older_than_the_response_time_is_overdue(twilio, make_patient, make_followup, sessions):
    p = make_patient()
    make_followup(p)
    twilio.text(p.phone, "I want to kill myself")
    with unit_of_work(sessions) as s:
        later = alert_queue(s, now=utcnow() + 13 * HOUR, overdue_after=12 * HOUR)
    assert later[0].overdue and later[0].age > 12 * HOUR


def test_the_queue_takes_four_queries_whatever_the_number_of_alerts(twilio, make_patient, make_followup, sessions,
                                                                   engine):
    for i in range(12):
        p = make_patient()
        make_followup(p)
        twilio.text(p.phone, "yes")
        twilio.text(p.phone, "I want to die")
        if i % 2:
            twilio.text(p.phone, "are you there")
    statements = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with unit_of_work(sessions) as s:
        queue = alert_queue(s, now=utcnow(), overdue_after=12 * HOUR)
    assert len(queue) == 12 and all(len(a.before) == 2 for a in queue)
    assert [len(a.since) for a in queue] == [0, 1] * 6
    # the alerts, the texts before them, the texts since, the on-call texts' states
    assert len([q for q in statements if q.lstrip().upper().startswith("SELECT")]) == 4


def test_take_records_who_handles_it_and_resolve_unpauses_with_the_address(twilio, make_patient, make_followup,
                                                                           sessions, session):
    p = make_patient()
    fu = make_followup(p, state="q_mental_health")
    twilio.text(p.phone, "I want to die")
    with unit_of_work(sessions) as s:
        alert_id = s.scalar(select(Alert.id))
        take_alert(s, alert_id, "a@study.example.org", "10.0.0.5")
        take_alert(s, alert_id, "b@study.example.org", "10.0.0.6")  # a hand-over
        assert open_alert_count(s) == 1
    with unit_of_work(sessions) as s:
        resolve_alert(s, alert_id, "called; safe", "b@study.example.org", "10.0.0.6")
        assert open_alert_count(s) == 0
    alert = session.get(Alert, alert_id)
    assert alert.taken_by == "b@study.example.org" and alert.resolved_by == "b@study.example.org"
    assert session.get(FollowUp, fu.id).state == "q_mental_health"
    events = session.execute(select(AuditEvent.action, AuditEvent.address, AuditEvent.details)
                             .where(AuditEvent.action.like("crisis_alert_%")).order_by(AuditEvent.id)).all()
    assert [(a, addr) for a, addr, _ in events] == [("crisis_alert_opened", None),
                                                   ("crisis_alert_taken", "10.0.0.5"),
                                                   ("crisis_alert_taken", "10.0.0.6"),
                                                   ("crisis_alert_resolved", "10.0.0.6")]
    assert events[2][2]["taken_over_from"] == "a@study.example.org"


def test_flag_as_crisis_opens_an_alert_pauses_the_survey_and_is_listed_as_missed(twilio, make_patient, make_followup,
                                                                                 sessions, session):
    p = make_patient()
    fu = make_followup(p, state="q_self_efficacy")
    unread = "I feel very strange today, everything is quiet"  # a coordinator reads more in it than the rules do
    assert not is_crisis(unread)
    twilio.text(p.phone, unread)
    with unit_of_work(sessions) as s:
        message_id = s.scalar(select(Message.id).where(Message.direction == "in"))
        alert = flag_as_crisis(s, message_id, "c@study.example.org", "10.0.0.7")
        queue = alert_queue(s, now=utcnow(), overdue_after=12 * HOUR)
    assert [(a.id, a.kind) for a in queue] == [(alert.id, "flagged")]
    assert session.get(FollowUp, fu.id).state == "crisis"
    with unit_of_work(sessions) as s:
        missed = missed_by_detector(s)
    assert [(a, text, who) for a, _, text, who in missed] == [
        (alert.id, unread, "c@study.example.org")]
    # The same text cannot be flagged twice.
    with unit_of_work(sessions) as s:
        try:
            flag_as_crisis(s, message_id, "c@study.example.org")
            raise AssertionError("flagged twice")
        except ValueError as exc:
            assert "already has alert" in str(exc)


def test_lexicon_missed_lists_the_texts_coordinators_flagged(twilio, make_patient, make_followup, sessions, run_cli):
    assert "no flagged texts" in run_cli("lexicon", "missed").output
    p = make_patient()
    make_followup(p)
    unread = "I keep looking at the lake"  # what a coordinator flagged and the rules did not catch
    assert not is_crisis(unread)
    twilio.text(p.phone, unread)
    with unit_of_work(sessions) as s:
        flag_as_crisis(s, s.scalar(select(Message.id).where(Message.direction == "in")), "c@study.example.org")
    out = run_cli("lexicon", "missed").output
    assert f"flagged by c@study.example.org: {unread}" in out and "1 text(s)" in out
