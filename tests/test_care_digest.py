"""Issue 26: the optional weekly digest to each care team.  Off by default; with CARE_DIGEST_TO, once a week from
Monday at INBOX_DIGEST_AT, each named team's counts only (no study id, rating or message) queued as a text and sent
through the real sending path (Twilio's REST API mocked at the HTTP edge), audited; the setting is checked at
start.  Both databases."""
from __future__ import annotations

import datetime as dt
import urllib.parse

import pytest
import responses
from sqlalchemy import select

from outreach.care.checkins import Method, record_checkin, stay_in_treatment
from outreach.care.digest import send_team_digests
from outreach.config import ConfigError, load_settings
from outreach.messaging.gateway import make_gateway
from outreach.messaging.sender import Sender
from outreach.models import AuditEvent, CareTeam, Episode, Message
from outreach.study.instrument import load_instrument

from .test_checkins_sms import API, ok_reply

MONDAY = dt.datetime(2026, 11, 30, 15, 0)  # 10:00 in Toronto, after INBOX_DIGEST_AT 09:00; in the past (sent now)


@pytest.fixture
def wards(uow, make_patient):
    """Ward A with two patients in treatment (one check-in this week, a low one: an alert), Ward B with none."""
    with uow() as s:
        s.add_all([CareTeam(name="Ward A"), CareTeam(name="Ward B")])
        s.flush()
        a = s.scalar(select(CareTeam.id).where(CareTeam.name == "Ward A"))
    people = []
    for pid in ("SECRET-1", "SECRET-2"):
        p = make_patient(patient_id=pid, discharge_date=dt.date(2025, 1, 1))
        with uow() as s:
            s.add(Episode(patient_id=p.id, admission_date=dt.date(2026, 11, 20), care_team_id=a,
                          alliance_checkins="tablet"))
        people.append(p)
    with uow() as s:
        record_checkin(s, stay_in_treatment(s, people[0].id), [1, 1, 2, 1, 1, 1], load_instrument("alliance6"),
                       method=Method.TABLET, taken_at=MONDAY - dt.timedelta(days=2))
    return people


def test_off_by_default(wards, uow, settings):
    with uow() as s:
        assert send_team_digests(s, settings, MONDAY) == 0
        assert s.scalar(select(Message.id).where(Message.kind == "digest")) is None


def test_the_setting_is_checked_at_start(env):
    with pytest.raises(ConfigError, match="CARE_DIGEST_TO: entry 1 is not TEAM=NUMBER"):
        load_settings({**env, "CARE_DIGEST_TO": "+14165550100"})
    with pytest.raises(ConfigError, match=r"CARE_DIGEST_TO \(Ward A\): a number"):
        load_settings({**env, "CARE_DIGEST_TO": "Ward A=12"})


@responses.activate
def test_each_team_gets_its_counts_once_a_week_through_the_sending_path(wards, uow, sessions, session, send_env):
    responses.add_callback(responses.POST, API, callback=ok_reply)
    settings = load_settings({**send_env, "CARE_DIGEST_TO": "Ward A=416-555-0190,416-555-0191; Ward B=514-555-0192; "
                                                            "Ward Z=416-555-0193"})
    with uow() as s:
        assert send_team_digests(s, settings, MONDAY.replace(hour=13)) == 0  # 08:00 in Toronto: not yet
    with uow() as s:
        assert send_team_digests(s, settings, MONDAY) == 3  # Ward Z is no care team: left out
    with uow() as s:
        assert send_team_digests(s, settings, MONDAY + dt.timedelta(days=3)) == 0  # once a week
    Sender(sessions, settings, make_gateway(settings, echo=None)).send_due(max_batches=1)
    sent = {dict(urllib.parse.parse_qsl(c.request.body))["To"]: dict(urllib.parse.parse_qsl(c.request.body))["Body"]
            for c in responses.calls}
    assert set(sent) == {"+14165550190", "+14165550191", "+15145550192"}
    assert sent["+14165550190"] == (
        f"{settings.org_name}: care team Ward A, week of Nov 30: 2 patient(s) in treatment, 1 check-in(s) and "
        "1 alliance alert(s) in the last 7 days, 1 alert(s) open. https://outreach.example.org/console/care")
    assert "0 patient(s) in treatment" in sent["+15145550192"]
    assert not any("SECRET" in body for body in sent.values())
    events = session.scalars(select(AuditEvent).where(AuditEvent.action == "care_digest_sent")).all()
    assert {(e.details["team"], e.details["week"], e.details["texted"]) for e in events} == {
        ("Ward A", "2026-11-30", 2), ("Ward B", "2026-11-30", 1)}
    with uow() as s:
        assert send_team_digests(s, settings, MONDAY + dt.timedelta(days=7)) == 3  # the next week
