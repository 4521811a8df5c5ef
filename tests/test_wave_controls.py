"""A wave can be paused, resumed and cancelled (issue 22), through the CLI, with the real sender and tick."""
from __future__ import annotations

import datetime as dt
import json
import urllib.parse

import pytest
import responses
from sqlalchemy import select

from outreach.clock import utcnow
from outreach.db import unit_of_work
from outreach.models import AuditEvent, FollowUp, Message, Wave

from .conftest import TWILIO_SID

API = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
AS_OF = dt.date(2026, 11, 20)


@pytest.fixture
def api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        sent: list[str] = []

        def reply(request):
            form = dict(urllib.parse.parse_qsl(request.body))
            sent.append(form["To"])
            return 201, {}, json.dumps({"sid": f"SM{len(sent):032d}", "status": "queued"})

        rsps.add_callback(responses.POST, API, callback=reply)
        yield sent


@pytest.fixture
def wave(make_patient, run_cli):
    patients = [make_patient(discharge_date=AS_OF - dt.timedelta(days=31 + i)) for i in range(3)]
    result = run_cli("waves", "launch", "--timepoint", "30", "--as-of", AS_OF.isoformat(), "--yes")
    assert result.exit_code == 0, result.output
    return patients


def wave_id(session) -> int:
    session.rollback()
    return session.scalar(select(Wave.id))


def test_a_paused_wave_sends_nothing_until_resumed_and_keeps_its_days(wave, run_cli, send_env, api, session,
                                                                     twilio, clock):
    wid = wave_id(session)
    paused = run_cli("waves", "pause", str(wid))
    assert paused.exit_code == 0 and "3 open follow-up(s) held" in paused.output
    assert "PAUSED by" in run_cli("waves", "status", str(wid)).output
    assert "sent 0" in run_cli("send-due", extra_env=send_env).output and api == []
    # a patient's own text is still answered
    status, replies = twilio.text(wave[0].phone, "yes")
    assert status == 200 and replies
    clock(hours=30)
    resumed = run_cli("waves", "resume", str(wid))
    assert resumed.exit_code == 0 and "3 follow-up(s) go on" in resumed.output
    run_cli("send-due", extra_env=send_env)
    assert len(api) == 3
    session.rollback()
    assert session.scalar(select(FollowUp.held_at).where(FollowUp.patient_id == wave[1].id)) is None
    actions = list(session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("wave_%"))
                                   .order_by(AuditEvent.id)))
    assert actions == ["wave_launched", "wave_paused", "wave_resumed"]


def test_resuming_gives_each_follow_up_back_the_days_it_was_paused(wave, run_cli, session, sessions, clock):
    with unit_of_work(sessions) as s:
        for f in s.scalars(select(FollowUp)):
            f.invited_at, f.expires_at = utcnow(), utcnow() + dt.timedelta(days=7)
    wid = wave_id(session)
    run_cli("waves", "pause", str(wid))
    clock(days=10)  # past the original expiry: a paused follow-up does not expire
    assert "expired 0" in run_cli("tick").output
    run_cli("waves", "resume", str(wid))
    session.rollback()
    left = session.scalar(select(FollowUp.expires_at)) - utcnow()
    assert dt.timedelta(days=6, hours=23) < left <= dt.timedelta(days=7)


def test_a_follow_up_a_coordinator_paused_stays_paused_when_the_wave_resumes(wave, run_cli, session, sessions):
    from outreach.staff.patients import hold_followup

    with unit_of_work(sessions) as s:
        one = s.scalar(select(FollowUp).where(FollowUp.patient_id == wave[2].id))
        hold_followup(s, one.id, actor="coordinator@study.example.org")
    wid = wave_id(session)
    assert "2 open follow-up(s) held" in run_cli("waves", "pause", str(wid)).output
    run_cli("waves", "resume", str(wid))
    session.rollback()
    assert session.scalar(select(FollowUp.held_by).where(FollowUp.patient_id == wave[2].id)) \
        == "coordinator@study.example.org"


def test_cancelling_a_wave_before_it_is_sent_closes_its_follow_ups(wave, run_cli, send_env, api, session):
    wid = wave_id(session)
    assert "not cancelled" in run_cli("waves", "cancel", str(wid), input="n\n").output
    done = run_cli("waves", "cancel", str(wid), "--yes")
    assert done.exit_code == 0 and "3 unsent text(s) cancelled, 3 follow-up(s) never invited closed" in done.output
    run_cli("send-due", extra_env=send_env)
    assert api == []
    session.rollback()
    assert set(session.scalars(select(Message.error_message))) == {f"wave {wid} cancelled by "
                                                                  f"{session.scalar(select(Wave.cancelled_by))}"}
    again = run_cli("waves", "pause", str(wid))
    assert again.exit_code == 1 and f"wave {wid} was cancelled" in again.output


def test_cancelling_a_wave_stops_its_reminders_and_lets_conversations_go_on(wave, run_cli, send_env, api, session,
                                                                           twilio, clock):
    wid = wave_id(session)
    run_cli("send-due", extra_env=send_env)
    assert len(api) == 3
    twilio.text(wave[0].phone, "yes")  # this conversation is under way
    clock(hours=49)
    assert "queued 2 reminder(s)" in run_cli("tick").output
    done = run_cli("waves", "cancel", str(wid), "--yes")
    assert "2 unsent text(s) cancelled, 0 follow-up(s) never invited" in done.output  # the 2 reminders
    run_cli("send-due", extra_env=send_env)
    assert api[3:] == [wave[0].phone]  # no reminder; the conversation's own repeated question still goes
    status, replies = twilio.text(wave[0].phone, "7")
    assert status == 200 and replies  # the next question: the conversation goes on
    assert "cancelled by" in run_cli("waves", "status", str(wid)).output
    clock(hours=48)  # and later: the second reminder is never queued for the wave's silent patients
    assert "queued 0 reminder(s)" in run_cli("tick").output
    run_cli("send-due", extra_env=send_env)
    assert wave[1].phone not in api[4:] and wave[2].phone not in api[4:]


# -- the console's wave page ------------------------------------------------------------------------------------

def test_wave_page_says_where_its_texts_stand(wave, session):
    from outreach.study.waves import wave_page

    page = wave_page(session, wave_id(session))
    assert (page.state, page.queued, page.held, page.sent, page.funnel["targeted"]) == ("running", 3, 0, 0, 3)
    assert wave_page(session, 999) is None


def test_a_coordinator_pauses_resumes_and_cancels_a_wave_in_the_console(wave, console_client, session, send_env,
                                                                        run_cli, api):
    wid = wave_id(session)
    client = console_client("coordinator")
    progress = client.get("/console/progress").get_data(as_text=True)
    assert f'href="/console/waves/{wid}"' in progress
    page = client.get(f"/console/waves/{wid}").get_data(as_text=True)
    assert "running" in page and "Waiting to go now: 3" in page
    paused = client.post(f"/console/waves/{wid}/pause", data={"csrf_token": client.csrf}, follow_redirects=True)
    assert "3 open follow-up(s) get no automatic text" in paused.get_data(as_text=True)
    run_cli("send-due", extra_env=send_env)
    assert api == []
    resumed = client.post(f"/console/waves/{wid}/resume", data={"csrf_token": client.csrf}, follow_redirects=True)
    assert "is resumed" in resumed.get_data(as_text=True)
    wrong = client.post(f"/console/waves/{wid}/cancel", data={"csrf_token": client.csrf, "confirm": "7"},
                        follow_redirects=True).get_data(as_text=True)
    assert "was not cancelled: type its number" in wrong
    done = client.post(f"/console/waves/{wid}/cancel", data={"csrf_token": client.csrf, "confirm": str(wid)},
                       follow_redirects=True).get_data(as_text=True)
    assert "3 unsent text(s) cancelled" in done and "cancelled on" in done
    session.rollback()
    actions = list(session.scalars(select(AuditEvent.actor).where(AuditEvent.action.like("wave_%"),
                                                                  AuditEvent.action != "wave_launched")))
    assert actions and all(a.endswith("@study.example.org") for a in actions)
    assert console_client("researcher").get(f"/console/waves/{wid}").status_code == 403


def test_the_waves_page_plans_a_time_point_as_waves_plan_does(make_patient, console_client, run_cli):
    for i in range(3):
        make_patient(discharge_date=AS_OF - dt.timedelta(days=31 + i))
    make_patient(discharge_date=AS_OF - dt.timedelta(days=31), consent=False)
    client = console_client("coordinator")
    page = client.get(f"/console/waves?timepoint=30&as_of={AS_OF}").get_data(as_text=True)
    assert "<strong>3</strong> eligible at 30 days as of 2026-11-20" in page
    assert "<td>no SMS consent</td><td>1</td>" in page
    cli = run_cli("waves", "plan", "--timepoint", "30", "--as-of", AS_OF.isoformat())
    assert "3 eligible" in cli.output and "excluded, no SMS consent: 1" in cli.output
    bad = client.get("/console/waves?timepoint=31&as_of=2026-11-20")
    assert bad.status_code == 400 and "Time point 31 is not one of FOLLOWUP_DAYS" in bad.get_data(as_text=True)
    assert "is not a date" in client.get("/console/waves?timepoint=30&as_of=20/11/2026").get_data(as_text=True)
