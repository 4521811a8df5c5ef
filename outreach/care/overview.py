"""What the care team's pages show: the queue of open alliance alerts with the team's patients in treatment, and
one patient's check-ins as a trend.  Only check-ins, trends and alliance alerts: nothing of follow-up answers,
research data or message bodies.  A clinician sees only their own teams' patients (:class:`NotYourPatient`)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..clock import utcnow
from ..messaging.send_rule import can_be_texted
from ..models import AllianceAlert, AllianceCheckin, CareTeam, Episode, Patient, User
from ..study.instrument import Instrument
from .alerts import AlertRow, audit_alerts_shown, first_period, list_alerts
from .checkins import local_day
from .rules import ALERT, WATCH
from .teams import sees, team_ids_of, visible_stays


class NotYourPatient(PermissionError):
    """The patient is not in one of the user's care teams."""


class NoSuchPatient(LookupError):
    """No patient has this id."""


@dataclass(frozen=True)
class InTreatment:
    patient_pk: int
    patient_id: str
    team: str | None
    admitted: dt.date
    method: str | None
    last_checkin: dt.datetime | None
    last_mean: float | None
    open_alerts: int


PAGE = 100  # patients in treatment a page, and open alerts shown at most (the rest: a team, or acknowledging)


@dataclass(frozen=True)
class Queue:
    alerts: list[AlertRow]
    patients: list[InTreatment]
    teams: list[tuple[int, str]] = ()  # the teams the user may pick from (id, name), by name
    team_id: int | None = None  # the team picked; None: every team the user sees
    page: int = 1
    has_next: bool = False  # a page of patients after this one
    more_alerts: bool = False  # more open alerts than shown


def team_queue(session: Session, user: User, *, team_id: int | None = None, page: int = 1,
               per_page: int = PAGE) -> Queue:
    """The user's teams' open alliance alerts (newest first, at most ``per_page``) and a page of patients in
    treatment (by study id); an administrator's: every team's, or ``team_id``'s.  A team the user does not see
    shows nothing.  Four queries, whatever the numbers (2,000 patients on one page took 847 ms to render)."""
    teams = team_ids_of(session, user)
    visible = select(CareTeam.id, CareTeam.name).order_by(CareTeam.name)
    if teams is not None:
        visible = visible.where(CareTeam.id.in_(teams or [-1]))
    choices = [(pk, name) for pk, name in session.execute(visible)]
    if team_id is not None:
        teams = [team_id] if teams is None or team_id in teams else []
    page = max(1, page)
    alerts = list_alerts(session, team_ids=teams, limit=per_page + 1)
    # The stay's last check-in, found per stay through ix_alliance_checkins_episode_taken (an index seek each):
    # grouping every check-in of the study first read the whole table on every look.
    last = (select(AllianceCheckin.id).where(AllianceCheckin.episode_id == Episode.id)
            .order_by(AllianceCheckin.taken_at.desc(), AllianceCheckin.id.desc()).limit(1).correlate(Episode)
            .scalar_subquery())
    open_count = (select(func.count()).select_from(AllianceAlert)
                  .where(AllianceAlert.episode_id == Episode.id, AllianceAlert.acknowledged_at.is_(None))
                  .correlate(Episode).scalar_subquery())
    stmt = (select(Patient.id, Patient.patient_id, CareTeam.name, Episode.admission_date, Episode.alliance_checkins,
                   AllianceCheckin.taken_at, AllianceCheckin.mean_score, open_count)
            .join(Episode, Episode.patient_id == Patient.id)
            .outerjoin(CareTeam, CareTeam.id == Episode.care_team_id)
            .outerjoin(AllianceCheckin, AllianceCheckin.id == last)
            .where(Episode.discharge_date.is_(None), Episode.admission_date.is_not(None))
            .order_by(Patient.patient_id, Episode.id).limit(per_page + 1).offset((page - 1) * per_page))
    if teams is not None:
        stmt = stmt.where(Episode.care_team_id.in_(teams or [-1]))
    patients = [InTreatment(*row) for row in session.execute(stmt)]
    return Queue(alerts[:per_page], patients[:per_page], choices, team_id, page, len(patients) > per_page,
                 len(alerts) > per_page)


def audit_queue(session: Session, queue: Queue, *, actor: str, address: str | None = None) -> None:
    """Audit a look at the care team's page (``viewed_care_queue``): one row per patient shown, listed in
    treatment or with an open alert (the ids of their alerts shown), with the team filter and page, so the audit
    log filtered by a patient finds every look.  One statement; a page holds at most 100 patients and 100 alerts."""
    where = {**({"team": queue.team_id} if queue.team_id is not None else {}),
             **({"page": queue.page} if queue.page > 1 else {})}
    audit_alerts_shown(session, "viewed_care_queue", queue.alerts, actor=actor, address=address,
                       patients=[p.patient_pk for p in queue.patients], **where)


@dataclass(frozen=True)
class Point:
    """One check-in on the chart: its x (days since admission) and each series' y, in the SVG's coordinates."""
    checkin_id: int
    taken_at: dt.datetime
    week: int
    day: int
    method: str
    mean: float | None
    subscales: dict[str, float | None]  # by the instrument's subscale names
    level: str | None  # alert | watch | None: the highest level of the rules it met
    rules: list[str]
    at_ceiling: bool


@dataclass(frozen=True)
class Series:
    name: str
    label: str
    points: str  # an SVG polyline's points ("x,y x,y ...")


@dataclass(frozen=True)
class Trend:
    patient_pk: int
    patient_id: str
    team: str | None
    admitted: dt.date | None
    discharged: dt.date | None
    points: list[Point]
    series: list[Series]
    alerts: list[AllianceAlert]
    missed: int  # check-in periods passed without a check-in, since the stay was loaded (as the alert counts)
    ceiling_share: float | None  # share of check-ins all at the maximum
    width: int
    height: int
    scale_max: int
    xs: dict[int, float]  # checkin id -> x
    ys: dict[int, float]  # checkin id -> y of the mean
    texts_blocked: bool = False  # check-ins by text, and the patient may not be texted now: none is missed


CHART_W, CHART_H, PAD = 560, 220, 36


def patient_trend(session: Session, user: User, patient_pk: int, instrument: Instrument, period_days: int,
                  today: dt.date | None = None) -> Trend:
    """One patient's latest stay that the user sees (:func:`visible_stays`: a clinician, their teams' stays only)
    and that has begun (the one in treatment first): every check-in, the mean and both subscales as chart series,
    the watch and alert history, check-in periods missed (none while check-ins by text cannot be sent, as the alert
    counts).  Six queries, however many check-ins (seven for a stay in treatment with check-ins by text)."""
    patient = session.get(Patient, patient_pk)
    if patient is None:
        raise NoSuchPatient(patient_pk)
    teams = team_ids_of(session, user)
    if not sees(session, teams, patient_pk):
        raise NotYourPatient(patient_pk)
    stay = session.scalar(select(Episode).where(Episode.patient_id == patient_pk, Episode.admission_date.is_not(None),
                                                visible_stays(teams))
                          .order_by(Episode.discharge_date.is_(None).desc(), Episode.admission_date.desc()).limit(1))
    team = session.get(CareTeam, stay.care_team_id).name if stay is not None and stay.care_team_id else None
    checkins = list(session.scalars(select(AllianceCheckin).where(AllianceCheckin.episode_id == (stay.id if stay else -1))
                                    .order_by(AllianceCheckin.taken_at, AllianceCheckin.id)))
    alerts = list(session.scalars(select(AllianceAlert).where(AllianceAlert.episode_id == (stay.id if stay else -1))
                                  .order_by(AllianceAlert.raised_at.desc())))
    points = [_point(c, instrument) for c in checkins]
    last_day = max([p.day for p in points] + [7])
    x_of = lambda day: PAD + (CHART_W - 2 * PAD) * day / last_day  # noqa: E731
    y_of = lambda v: CHART_H - PAD - (CHART_H - 2 * PAD) * v / instrument.max  # noqa: E731
    series = []
    for name, label in (("mean", "Mean"), *((s.name, s.label) for s in instrument.subscales)):
        values = [(p.day, p.mean if name == "mean" else p.subscales.get(name)) for p in points]
        series.append(Series(name, label, " ".join(f"{x_of(d):.1f},{y_of(v):.1f}" for d, v in values if v is not None)))
    today = today or local_day(utcnow(), patient.timezone)  # the patient's day, as the admission date
    missed = 0
    if stay is not None and stay.admission_date is not None:
        end = stay.discharge_date or today
        periods = (end - stay.admission_date).days // period_days
        taken = {(c.days_since_admission // period_days) for c in checkins if c.method != "import"}
        first = first_period(stay.admission_date, stay.created_at, period_days, patient.timezone)  # as the alert
        if stay.alliance_checkins == "sms":  # the first text goes when the first period ends
            first = max(first, 1)
        missed = sum(1 for k in range(first, periods) if k not in taken)
    texts_blocked = (stay is not None and stay.discharge_date is None and stay.alliance_checkins == "sms"
                     and session.scalar(select(Patient.id).where(Patient.id == patient_pk, can_be_texted())) is None)
    if texts_blocked:
        missed = 0  # as the alert counts: no text went, so none was ignored
    rated = [p for p in points if p.mean is not None]
    return Trend(patient_pk, patient.patient_id, team, stay.admission_date if stay else None,
                 stay.discharge_date if stay else None, points, series, alerts, missed,
                 (sum(p.at_ceiling for p in rated) / len(rated)) if rated else None, CHART_W, CHART_H, instrument.max,
                 {p.checkin_id: x_of(p.day) for p in points},
                 {p.checkin_id: y_of(p.mean) for p in points if p.mean is not None}, texts_blocked)


def _point(c: AllianceCheckin, instrument: Instrument) -> Point:
    levels = {f["level"] for f in c.flags or []}
    subs = c.subscale_scores or {}
    return Point(c.id, c.taken_at, c.treatment_week, c.days_since_admission, c.method, c.mean_score,
                 {s.name: subs.get(s.name) for s in instrument.subscales},
                 ALERT if ALERT in levels else WATCH if WATCH in levels else None,
                 [f["rule"] for f in c.flags or []],
                 all(v == instrument.max for v in c.items if v is not None) and any(v is not None for v in c.items))
