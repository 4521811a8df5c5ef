"""Texts held for quiet hours or stopped by an opt-out cost no time and no API call; `send-due` and
`worker --once` say how many are held and when their window opens, in the coordinators' zone."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import responses
from sqlalchemy import insert, select

from outreach.db import unit_of_work
from outreach.models import Episode, FollowUp, Message, Patient
from outreach.clock import utcnow
from outreach.quiet_hours import parse_window

TORONTO = ZoneInfo("America/Toronto")


def closed_window() -> str:
    """A sending window that is closed right now in Toronto (it opens in one to two hours)."""
    hour = (dt.datetime.now(TORONTO).hour + 2) % 24
    return f"Mon-Sun {hour:02d}:00-{hour:02d}:30"


def queue_invitations(sessions, n: int, *, prefix: str = "H", opted_out: bool = False) -> None:
    """``n`` patients in Toronto, each with an invitation due now (set-based: fast for thousands)."""
    now = utcnow()
    with unit_of_work(sessions) as s:
        s.execute(insert(Patient), [
            dict(patient_id=f"{prefix}{i:05d}", phone=f"+1416555{i % 10000:04d}", timezone="America/Toronto",
                 language="en", sms_consent=True, phone_valid=True, opted_out_at=now if opted_out else None)
            for i in range(n)])
        ids = dict(s.execute(select(Patient.patient_id, Patient.id)
                             .where(Patient.patient_id.like(f"{prefix}%"))).all())
        s.execute(insert(Episode), [dict(patient_id=pk, discharge_date=dt.date(2026, 9, 1)) for pk in ids.values()])
        episodes = dict(s.execute(select(Episode.patient_id, Episode.id)
                                  .where(Episode.patient_id.in_(ids.values()))).all())
        s.execute(insert(FollowUp), [dict(patient_id=pk, episode_id=episodes[pk], timepoint_days=30, state="invited")
                                     for pk in ids.values()])
        followups = dict(s.execute(select(FollowUp.patient_id, FollowUp.id)
                                   .where(FollowUp.patient_id.in_(ids.values()))).all())
        phones = dict(s.execute(select(Patient.id, Patient.phone).where(Patient.id.in_(ids.values()))).all())
        s.execute(insert(Message), [
            dict(direction="out", kind="invitation", status="pending", body="Time for your check-in", patient_id=pk,
                 followup_id=followups[pk], to_number=phones[pk], send_after=now - dt.timedelta(minutes=1),
                 attempts=0, media_count=0) for pk in ids.values()])


@pytest.fixture
def sleeps(monkeypatch):
    """Every rate-limit wait the sender asks for, in seconds (recorded, not slept)."""
    from outreach.messaging import sender

    asked: list[float] = []
    monkeypatch.setattr(sender.time, "sleep", asked.append)
    return asked


@pytest.fixture
def rate_limited(send_env):
    """Twilio (mocked at the HTTP edge), one text a second as a long code allows, quiet hours now."""
    return {**send_env, "SEND_RATE_PER_SECOND": "1", "SEND_WINDOW": closed_window()}


def expected_opening(window: str) -> str:
    opening = parse_window(window).opening(utcnow(), "America/Toronto")
    return opening.replace(tzinfo=dt.UTC).astimezone(TORONTO).strftime("%Y-%m-%d %H:%M %Z")


@responses.activate
def test_a_thousand_texts_held_for_quiet_hours_wait_for_no_send_rate_and_call_no_api(run_cli, sessions, session,
                                                                                       rate_limited, sleeps):
    """Holding texts for quiet hours neither waits for the send rate nor calls Twilio (what kept this pass from
    taking a rate-limited second per text; its speed is a benchmark's business, not a timed test's)."""
    queue_invitations(sessions, 1000)
    result = run_cli("send-due", extra_env=rate_limited)
    assert result.exit_code == 0, result.output
    assert sleeps == [] and len(responses.calls) == 0  # no rate-limit wait, no API call
    opens = expected_opening(rate_limited["SEND_WINDOW"])
    assert f"sent 0, held for quiet hours 1000 (their window opens {opens})" in result.output
    session.rollback()
    held = session.execute(select(Message.status, Message.attempts, Message.send_after)).all()
    assert {(status, attempts) for status, attempts, _ in held} == {("pending", 0)}
    assert len({send_after for _, _, send_after in held}) == 1
    # The next pass has nothing due, and says what waits and when it goes.
    again = run_cli("send-due", extra_env=rate_limited)
    assert "held for quiet hours 0," in again.output
    assert f"1000 text(s) wait for a later time (quiet hours or a retry), the first at {opens}" in again.output


@responses.activate
def test_texts_to_opted_out_patients_are_cancelled_without_waiting(run_cli, sessions, session, rate_limited, sleeps):
    queue_invitations(sessions, 20, prefix="S", opted_out=True)  # opted out by another system: the queue stayed
    queue_invitations(sessions, 5, prefix="Q")
    result = run_cli("send-due", extra_env=rate_limited)
    assert "held for quiet hours 5" in result.output and "cancelled 20" in result.output
    assert sleeps == [] and len(responses.calls) == 0
    session.rollback()
    cancelled = session.scalars(select(Message.error_message).where(Message.status == "cancelled")).all()
    assert cancelled == ["patient opted out"] * 20


@responses.activate
def test_texts_that_go_out_still_keep_to_the_rate_limit(run_cli, sessions, session, rate_limited, sleeps):
    import json
    import urllib.parse

    def ok(request):
        form = dict(urllib.parse.parse_qsl(request.body))
        return 201, {}, json.dumps({"sid": "SM" + str(len(responses.calls)).zfill(32), "status": "queued",
                                    "to": form["To"], "body": form["Body"]})

    from .conftest import TWILIO_SID

    responses.add_callback(responses.POST, f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json",
                           callback=ok)
    queue_invitations(sessions, 3)
    result = run_cli("send-due", extra_env={**rate_limited, "SEND_WINDOW": "Mon-Sun 00:00-24:00"})
    assert "sent 3, held for quiet hours 0," in result.output
    assert len(responses.calls) == 3 and len(sleeps) == 2 and all(s > 0 for s in sleeps)  # the 2nd and 3rd wait


def test_worker_once_says_what_it_did_and_when_held_texts_go(run_cli, sessions, session, clock):
    queue_invitations(sessions, 4)
    window = closed_window()
    worker_env = {"SMS_BACKEND": "simulator", "SEND_WINDOW": window, "SEND_RATE_PER_SECOND": "0",
                  "CONSOLE_TIMEZONE": "America/Toronto"}
    result = run_cli("worker", "--once", extra_env=worker_env)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "worker: started" and lines[-1] == "worker: stopped"
    assert any(line.startswith("worker: minute duties: queued 0 reminder(s)") for line in lines)
    sending = next(line for line in lines if line.startswith("worker: sending: "))
    assert f"held for quiet hours 4 (their window opens {expected_opening(window)})" in sending
    session.rollback()
    opening = session.scalar(select(Message.send_after))
    clock(seconds=(opening - utcnow()).total_seconds() + 60)  # the window has opened
    done = run_cli("worker", "--once", extra_env=worker_env)
    assert "worker: sending: sent 4, held for quiet hours 0," in done.output
