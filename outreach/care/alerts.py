"""Alliance alerts: raised for a stay's care team when a check-in meets an alert-level rule
(``alliance_rules.toml``) or check-ins are missed, at most one per patient in ``alert_days``; listed for the care
team and the command line; acknowledged with a note on what was done (audited).  Watch-level flags are kept on the
check-in and shown on the patient's trend, without alerting."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ..clock import utcnow
from ..db import audit, audit_each_patient
from ..messaging.send_rule import can_be_texted
from ..models import AllianceAlert, AllianceCheckin, CareTeam, Episode, Patient
from ..study.instrument import Instrument
from .checkins import local_day
from .rules import ALERT, Rules, Scored, evaluate, load_rules, reliable_change
from .teams import visible_stays


class AllianceAlertError(ValueError):
    """A refusal in plain words."""


def _recent_alert(session: Session, patient_pk: int, now: dt.datetime, rules: Rules) -> bool:
    since = now - dt.timedelta(days=rules.alert_days)
    return session.scalar(select(AllianceAlert.id).where(AllianceAlert.patient_id == patient_pk,
                                                         AllianceAlert.raised_at > since).limit(1)) is not None


def flag_and_alert(session: Session, episode: Episode, checkin: AllianceCheckin, instrument: Instrument,
                   rules: Rules | None = None) -> AllianceAlert | None:
    """Store on ``checkin`` the rules it meets, and raise an alert for the first alert-level one unless the patient
    had an alert in the last ``alert_days``."""
    rules = rules or load_rules()
    earlier = [Scored(items, mean) for items, mean in session.execute(
        select(AllianceCheckin.items, AllianceCheckin.mean_score)
        .where(AllianceCheckin.episode_id == episode.id, AllianceCheckin.id != checkin.id,
               AllianceCheckin.taken_at <= checkin.taken_at)
        .order_by(AllianceCheckin.taken_at, AllianceCheckin.id))]
    threshold = reliable_change(session, instrument, rules).threshold
    checkin.flags = evaluate(Scored(checkin.items, checkin.mean_score), earlier, instrument, rules,
                             drop_threshold=threshold)
    first = next((f for f in checkin.flags if f["level"] == ALERT), None)
    if first is None or _recent_alert(session, episode.patient_id, checkin.taken_at, rules):
        return None
    alert = AllianceAlert(patient_id=episode.patient_id, episode_id=episode.id, care_team_id=episode.care_team_id,
                          checkin_id=checkin.id, rule=first["rule"], statements=first["statements"],
                          subscale=first["subscale"], raised_at=checkin.taken_at,
                          details={"says": first["says"], "mean": checkin.mean_score, "drop_threshold": threshold,
                                   "rules": [f["rule"] for f in checkin.flags if f["level"] == ALERT]})
    session.add(alert)
    session.flush()
    return alert


def first_period(admitted: dt.date, loaded: dt.datetime | None, period_days: int, zone: str) -> int:
    """The first check-in period (0: the one beginning at admission) that began with the stay in this service:
    periods before it had no check-in to miss.  ``loaded`` (``episodes.created_at``, UTC) is read as a day in the
    patient's zone, as the admission date is.  A day's grace: a stay loaded the day after its admission (a nightly
    import) still has its first period."""
    late = max(0, (local_day(loaded, zone) - admitted).days - 1) if loaded is not None else 0
    return -(-late // period_days)


def check_missed(session: Session, period_days: int, now: dt.datetime | None = None,
                 rules: Rules | None = None) -> int:
    """Raise a ``missed_in_a_row`` alert for each stay in treatment, with check-ins (sms or tablet), whose last
    ``threshold`` full check-in periods passed without a check-in.  Periods are counted from admission, but only
    those that began once the stay was in this service (``episodes.created_at``): an admission loaded 20 days late
    had no check-in to miss before, and alerts only after ``threshold`` periods of its own.  A stay with check-ins
    by text whose patient may not be texted now (:func:`outreach.messaging.send_rule.can_be_texted`) misses
    nothing: no text went, so none was ignored (the trend page says texts cannot be sent).  Every day is the
    patient's own, in their zone, as the admission date and a check-in's ``days_since_admission`` are: today, the
    day the stay was loaded, and which period a check-in fell in (a UTC date took a check-in of a Vancouver evening
    for the next period's, and called a period over at 5 pm there).  Returns how many were raised.  One query for
    the stays, one insert per alert (the worker's minute duties)."""
    rules = rules or load_rules()
    rule = next(iter(rules.of_kind("missed_in_a_row")), None)
    if rule is None:
        return 0
    now = now or utcnow()
    in_a_row = int(rule.threshold)
    last = (select(AllianceCheckin.episode_id, func.max(AllianceCheckin.days_since_admission).label("last"))
            .where(AllianceCheckin.method != "import").group_by(AllianceCheckin.episode_id).subquery())
    since = now - dt.timedelta(days=rules.alert_days)
    recent = select(AllianceAlert.patient_id).where(AllianceAlert.raised_at > since).distinct().subquery()
    rows = session.execute(
        select(Episode.id, Episode.patient_id, Episode.care_team_id, Episode.admission_date, Episode.created_at,
               Episode.alliance_checkins, Patient.timezone, last.c.last)
        .join(Patient, Patient.id == Episode.patient_id)
        .outerjoin(last, last.c.episode_id == Episode.id)
        .outerjoin(recent, recent.c.patient_id == Episode.patient_id)
        .where(Episode.discharge_date.is_(None), Episode.admission_date.is_not(None),
               Episode.alliance_checkins.in_(("sms", "tablet")), recent.c.patient_id.is_(None),
               Patient.withdrawn_at.is_(None),  # a participant who withdrew is asked nothing: misses nothing
               # nor is a patient the service may not text (opted out, no consent, no working number) asked by text
               or_(Episode.alliance_checkins != "sms", can_be_texted()))).all()
    raised = 0
    for episode_pk, patient_pk, team, admitted, loaded, method, zone, last_day in rows:
        periods = (local_day(now, zone) - admitted).days // period_days  # full periods since admission
        first = first_period(admitted, loaded, period_days, zone)
        if method == "sms":  # the first text goes at the end of the first period: period 0 has none to miss
            first = max(first, 1)
        if periods - first < in_a_row:
            continue
        if last_day is not None and last_day >= (periods - in_a_row) * period_days:  # one in the last periods
            continue
        session.add(AllianceAlert(patient_id=patient_pk, episode_id=episode_pk, care_team_id=team, rule=rule.name,
                                  statements=[], subscale=None, raised_at=now,
                                  details={"says": rule.says, "periods": periods, "period_days": period_days}))
        raised += 1
    session.flush()
    return raised


@dataclass(frozen=True)
class AlertRow:
    id: int
    patient_pk: int
    patient_id: str
    team: str | None
    rule: str
    says: str
    statements: list[int]
    subscale: str | None
    raised_at: dt.datetime
    acknowledged_at: dt.datetime | None
    acknowledged_by: str | None
    note: str | None


def list_alerts(session: Session, *, team_ids: list[int] | None = None, include_acknowledged: bool = False,
                limit: int | None = None) -> list[AlertRow]:
    """Alliance alerts, newest first: open ones (``include_acknowledged``: all); ``team_ids`` limits them to the
    stays of those teams (a clinician's), None to every team.  An alert is its stay's: listed for the stay's team
    now (``episodes.care_team_id``), as the stay's check-ins are, so a stay moved to another team takes its alerts
    along (``alliance_alerts.care_team_id`` keeps the team it was raised for).  One query."""
    stmt = (select(AllianceAlert, Patient.patient_id, CareTeam.name)
            .join(Patient, Patient.id == AllianceAlert.patient_id)
            .join(Episode, Episode.id == AllianceAlert.episode_id)
            .outerjoin(CareTeam, CareTeam.id == Episode.care_team_id)
            .order_by(AllianceAlert.raised_at.desc(), AllianceAlert.id.desc()))
    if not include_acknowledged:
        stmt = stmt.where(AllianceAlert.acknowledged_at.is_(None))
    if team_ids is not None:
        stmt = stmt.where(visible_stays(team_ids))
    if limit is not None:
        stmt = stmt.limit(limit)
    return [AlertRow(a.id, a.patient_id, pid, team, a.rule, (a.details or {}).get("says", a.rule), a.statements or [],
                     a.subscale, a.raised_at, a.acknowledged_at, a.acknowledged_by, a.note)
            for a, pid, team in session.execute(stmt)]


def audit_alerts_shown(session: Session, action: str, rows: list[AlertRow], *, actor: str,
                       address: str | None = None, patients: list[int] = (), **details) -> None:
    """Audit a look at alliance alerts (and ``patients``, their pks, listed beside them): one row per patient shown,
    with the ids of their alerts shown, so the audit log filtered by a patient finds every look (a look that
    showed no one: one row without a patient).  In the caller's transaction, one statement."""
    shown: dict[int | None, dict] = {pk: {"alert_ids": [], **details} for pk in patients}
    for a in rows:
        shown.setdefault(a.patient_pk, {"alert_ids": [], **details})["alert_ids"].append(a.id)
    audit_each_patient(session, action, shown or {None: {"alert_ids": [], **details}}, actor=actor, address=address)


def acknowledge(session: Session, alert_id: int, note: str, *, actor: str, team_ids: list[int] | None = None,
                address: str | None = None) -> AllianceAlert:
    """Close an alliance alert with a note on what was done (audited).  ``team_ids``: the teams the actor works in
    (a clinician may acknowledge only the alerts of their teams' stays, as :func:`list_alerts` lists them); None for
    any."""
    note = (note or "").strip()
    if not note:
        raise AllianceAlertError("write what was done: acknowledging an alliance alert needs a note")
    alert = session.get(AllianceAlert, alert_id)
    team = session.scalar(select(Episode.care_team_id).where(Episode.id == alert.episode_id)) if alert else None
    if alert is None or (team_ids is not None and team not in team_ids):
        raise AllianceAlertError(f"there is no alliance alert {alert_id}")
    if alert.acknowledged_at is not None:
        raise AllianceAlertError(f"alliance alert {alert_id} was acknowledged already by {alert.acknowledged_by}")
    alert.acknowledged_at, alert.acknowledged_by, alert.note = utcnow(), actor, note
    audit(session, "alliance_alert_acknowledged", actor=actor, patient_id=alert.patient_id, address=address,
          alert_id=alert.id, rule=alert.rule, note=note)
    session.flush()
    return alert


def flagged_share_by_week(session: Session) -> list[tuple[dt.date, int, int, int]]:
    """(Monday of the week, check-ins, flagged at alert level, flagged at watch level or above) for each week with
    check-ins taken during treatment (not imported ratings), so that the rules can be calibrated."""
    weeks: dict[dt.date, list[int]] = {}
    for taken_at, flags in session.execute(select(AllianceCheckin.taken_at, AllianceCheckin.flags)
                                           .where(AllianceCheckin.method != "import")):
        monday = taken_at.date() - dt.timedelta(days=taken_at.weekday())
        counts = weeks.setdefault(monday, [0, 0, 0])
        counts[0] += 1
        counts[1] += any(f["level"] == ALERT for f in flags or [])
        counts[2] += bool(flags)
    return [(w, *c) for w, c in sorted(weeks.items())]
