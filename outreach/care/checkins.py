"""Alliance check-ins: the six statements rated during a stay, stored with their mean and subscales by the
instrument's rules, when, how (``tablet``, ``sms`` or ``import``), the treatment week and, for the tablet, the
staff member who handed it over.  At discharge the stay's last scored check-in of its last days
(``ALLIANCE_DISCHARGE_DAYS``) becomes its discharge alliance (:func:`rate_at_discharge`), the rating the study links
to outcomes; a discharge file's own ratings are kept instead, as a check-in marked ``import``."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..clock import utcnow
from ..models import AllianceCheckin, AllianceRating, Episode, Patient
from ..study.instrument import Instrument


class Method(StrEnum):
    TABLET = "tablet"
    SMS = "sms"
    IMPORT = "import"


class CheckinsBy(StrEnum):
    """How a stay's weekly check-ins are taken (the admission file's ``alliance_checkins``)."""
    SMS = "sms"
    TABLET = "tablet"
    NONE = "none"


class CheckinError(ValueError):
    """A refusal in plain words."""


def treatment_week(admitted: dt.date, day: dt.date) -> int:
    """1 for the first seven days from admission, 2 for the next seven, ..."""
    return max(0, (day - admitted).days) // 7 + 1


def local_day(moment: dt.datetime, zone: str) -> dt.date:
    return moment.replace(tzinfo=dt.timezone.utc).astimezone(ZoneInfo(zone)).date()


def stay_in_treatment(session: Session, patient_pk: int) -> Episode | None:
    """The patient's stay that has begun and not ended (at most one)."""
    return session.scalar(select(Episode).where(Episode.patient_id == patient_pk, Episode.discharge_date.is_(None),
                                                Episode.admission_date.is_not(None))
                          .order_by(Episode.admission_date.desc()).limit(1))


def check_items(items: Sequence[Any], instrument: Instrument) -> list[int | None]:
    if len(items) != instrument.n_items:
        raise CheckinError(f"a check-in has {instrument.n_items} ratings, not {len(items)}")
    out = []
    for i, v in enumerate(items, 1):
        if v is None:
            out.append(None)
        elif isinstance(v, bool) or not isinstance(v, int) or not instrument.min <= v <= instrument.max:
            raise CheckinError(f"statement {i}: {v!r} is not a whole number from {instrument.min} to {instrument.max}")
        else:
            out.append(v)
    return out


@dataclass
class Recorded:
    checkin: AllianceCheckin
    created: bool  # False: this client_key was saved before (a retried submit), nothing new written
    alert: Any = None  # the AllianceAlert it raised, if any


def record_checkin(session: Session, episode: Episode, items: Sequence[Any], instrument: Instrument, *,
                   method: Method, taken_at: dt.datetime | None = None, staff_user_id: int | None = None,
                   client_key: str | None = None, followup_id: int | None = None) -> Recorded:
    """Store a check-in of a stay in treatment, flag it by the rules and raise an alert to its care team when one
    is due.  A ``client_key`` seen before returns the check-in saved then (a submit retried is saved once)."""
    from .alerts import flag_and_alert

    if client_key is not None:
        earlier = session.scalar(select(AllianceCheckin).where(AllianceCheckin.client_key == client_key))
        if earlier is not None:
            return Recorded(earlier, False)
    # An SMS check-in answered before a discharge imported since is still the stay's.
    if episode.admission_date is None or (episode.discharge_date is not None and followup_id is None):
        raise CheckinError("check-ins are taken during a stay: this stay is not in treatment")
    values = check_items(items, instrument)
    taken_at = taken_at or utcnow()
    zone = session.scalar(select(Patient.timezone).where(Patient.id == episode.patient_id))
    day = local_day(taken_at, zone)
    mean, subscales = instrument.score(values)
    checkin = AllianceCheckin(patient_id=episode.patient_id, episode_id=episode.id, instrument=instrument.name,
                              items=values, mean_score=mean, subscale_scores=subscales, taken_at=taken_at,
                              method=str(method), treatment_week=treatment_week(episode.admission_date, day),
                              days_since_admission=max(0, (day - episode.admission_date).days),
                              staff_user_id=staff_user_id, client_key=client_key, followup_id=followup_id, flags=[])
    session.add(checkin)
    session.flush()
    alert = flag_and_alert(session, episode, checkin, instrument)
    return Recorded(checkin, True, alert)


def checkins_of(session: Session, patient_pk: int) -> list[AllianceCheckin]:
    """Every check-in of the patient, oldest first."""
    return list(session.scalars(select(AllianceCheckin).where(AllianceCheckin.patient_id == patient_pk)
                                .order_by(AllianceCheckin.taken_at, AllianceCheckin.id)))


def rate_at_discharge(session: Session, completed: list[tuple[int, dict[str, Any]]], instrument: Instrument, *,
                      within_days: int = 14) -> int:
    """The discharge alliance of stays a discharge file just completed (stays admitted, now discharged): the row's
    own ratings, kept as a check-in marked ``import`` dated at the discharge; or, when the row has none, the stay's
    last check-in with a mean taken from ``within_days`` (``ALLIANCE_DISCHARGE_DAYS``) before the discharge to the
    discharge day (its local day: admission + ``days_since_admission``).  An older check-in does not rate the stay
    at its end, and one with too few statements answered has no mean to link to outcomes: the stay then keeps no
    discharge alliance.  Each rating points to its check-in (``alliance_ratings.checkin_id``).  Returns how many
    stays took a check-in."""
    adopted = 0
    for episode_pk, rec in completed:
        episode = session.get(Episode, episode_pk)
        if any(v is not None for v in rec["items"]):
            day = rec["discharge_date"]
            checkin = AllianceCheckin(
                patient_id=episode.patient_id, episode_id=episode_pk, instrument=instrument.name, items=rec["items"],
                mean_score=rec["mean_score"], subscale_scores=rec["subscale_scores"],
                taken_at=dt.datetime.combine(day, dt.time(12)), method=str(Method.IMPORT),
                treatment_week=treatment_week(episode.admission_date or day, day),
                days_since_admission=(day - (episode.admission_date or day)).days, flags=[])
            session.add(checkin)
            session.flush()
            session.execute(update(AllianceRating).where(AllianceRating.episode_id == episode_pk)
                            .values(checkin_id=checkin.id))
            continue
        stay_days = (episode.discharge_date - (episode.admission_date or episode.discharge_date)).days
        last = session.scalar(select(AllianceCheckin).where(
            AllianceCheckin.episode_id == episode_pk, AllianceCheckin.mean_score.is_not(None),
            AllianceCheckin.days_since_admission.between(stay_days - within_days, stay_days))
            .order_by(AllianceCheckin.taken_at.desc(), AllianceCheckin.id.desc()).limit(1))
        if last is None:
            continue
        session.execute(update(AllianceRating).where(AllianceRating.episode_id == episode_pk).values(
            instrument=last.instrument, items=last.items, mean_score=last.mean_score,
            subscale_scores=last.subscale_scores, checkin_id=last.id))
        adopted += 1
    session.flush()
    return adopted
