"""The optional weekly digest to each care team (issue 26): off unless ``CARE_DIGEST_TO`` names teams and their
phones.  Each week, from Monday at ``INBOX_DIGEST_AT`` (``CONSOLE_TIMEZONE``), once per team, a text of counts only
(patients in treatment, check-ins and alliance alerts of the last 7 days, alerts open), never a study id, a rating or
a message; queued in ``messages`` (kind ``digest``) for the sender like the inbox's digest, and audited."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from ..clock import utcnow
from ..config import Settings
from ..db import audit
from ..models import AllianceAlert, AllianceCheckin, AuditEvent, CareTeam, Episode, Message
from ..states import Delivery

DONE = "care_digest_sent"


def digest_text(org: str, team: str, monday: dt.date, counts: dict[str, int], base_url: str | None) -> str:
    where = f" {base_url.rstrip('/')}/console/care" if base_url else ""
    return (f"{org}: care team {team}, week of {monday:%b %d}: {counts['in_treatment']} patient(s) in treatment, "
            f"{counts['checkins']} check-in(s) and {counts['raised']} alliance alert(s) in the last 7 days, "
            f"{counts['open']} alert(s) open.{where}")


def send_team_digests(session: Session, settings: Settings, now: dt.datetime | None = None) -> int:
    """Queue this week's digest for each team of ``CARE_DIGEST_TO`` not yet sent it; returns the texts queued (0:
    off, not due yet, or sent already).  A name that is no care team is left out.  Five queries, whatever the
    numbers of teams and patients (the worker's minute duties)."""
    wanted = dict(settings.care_digest_to)
    if not wanted:
        return 0
    now = now or utcnow()
    local = now.replace(tzinfo=dt.UTC).astimezone(settings.coordinator_zone)
    monday = local.date() - dt.timedelta(days=local.weekday())
    if local.date() == monday and local.time() < settings.inbox_digest_at:
        return 0
    week = monday.isoformat()
    sent = set(session.scalars(select(AuditEvent.details["team"].as_string()).where(
        AuditEvent.action == DONE, AuditEvent.at >= now - dt.timedelta(days=8),
        AuditEvent.details["week"].as_string() == week)))
    teams = {name: pk for pk, name in session.execute(select(CareTeam.id, CareTeam.name)
                                                      .where(CareTeam.name.in_(list(wanted))))
             if name not in sent}
    if not teams:
        return 0
    since = now - dt.timedelta(days=7)
    ids = list(teams.values())
    in_treatment = dict(session.execute(
        select(Episode.care_team_id, func.count()).where(Episode.care_team_id.in_(ids), Episode.discharge_date.is_(None),
                                                         Episode.admission_date.is_not(None))
        .group_by(Episode.care_team_id)).all())
    checkins = dict(session.execute(
        select(Episode.care_team_id, func.count()).join(AllianceCheckin, AllianceCheckin.episode_id == Episode.id)
        .where(Episode.care_team_id.in_(ids), AllianceCheckin.taken_at >= since, AllianceCheckin.method != "import")
        .group_by(Episode.care_team_id)).all())
    alerts = {team: (raised, still_open) for team, raised, still_open in session.execute(
        select(Episode.care_team_id, func.count().filter(AllianceAlert.raised_at >= since),
               func.count().filter(AllianceAlert.acknowledged_at.is_(None)))
        .join(Episode, Episode.id == AllianceAlert.episode_id)  # the stay's team now, as the queue lists them
        .where(Episode.care_team_id.in_(ids)).group_by(Episode.care_team_id))}
    queued = 0
    for name, pk in sorted(teams.items()):
        raised, still_open = alerts.get(pk, (0, 0))
        counts = {"in_treatment": in_treatment.get(pk, 0), "checkins": checkins.get(pk, 0), "raised": raised,
                  "open": still_open}
        body = digest_text(settings.org_name, name, monday, counts, settings.public_base_url)
        numbers = wanted[name]
        session.execute(insert(Message), [
            {"direction": "out", "kind": "digest", "status": Delivery.PENDING, "to_number": number, "body": body,
             "send_after": now, "attempts": 0, "media_count": 0, "created_at": now, "updated_at": now}
            for number in numbers])
        audit(session, DONE, actor="system", team=name, week=week, texted=len(numbers), **counts)
        queued += len(numbers)
    return queued
