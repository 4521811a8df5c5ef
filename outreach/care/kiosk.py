"""The tablet check-in: a clinician of the patient's care team hands the tablet over (:func:`hand_over`), the
patient rates the six statements in their language, one per screen, and submits (:func:`submit`).  The sheet
carries the check-in's id from when the page opened, so a submit retried after a dropped connection is saved
once."""
from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from sqlalchemy.orm import Session

from ..db import audit
from ..models import Patient, User
from ..study.instrument import Instrument
from .checkins import CheckinError, Method, Recorded, record_checkin, stay_in_treatment
from .overview import NoSuchPatient, NotYourPatient
from .teams import sees, team_ids_of


@dataclass(frozen=True)
class Sheet:
    """One hand-over: who rates, for which stay, handed over by whom; ``key`` is the check-in's id."""
    key: str
    patient_pk: int
    episode_id: int
    staff_user_id: int
    language: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Page:
    """What the patient sees: the statements in their language and the scale's end words; nothing else.
    ``columns``: each statement's field, named by the instrument (``alliance_1`` ...), as :func:`submit` reads it."""
    language: str
    statements: tuple[str, ...]
    low: str
    high: str
    lo: int
    hi: int
    columns: tuple[str, ...] = ()


def hand_over(session: Session, user: User, patient_pk: int, *, address: str | None = None) -> Sheet:
    """A sheet for a patient in treatment whose stay is one of the user's care teams' (audited: who handed the
    tablet over).  A clinician whose team had an earlier stay of the patient may not: the stay is another team's."""
    patient = session.get(Patient, patient_pk)
    if patient is None:
        raise NoSuchPatient(patient_pk)
    teams = team_ids_of(session, user)
    if not sees(session, teams, patient_pk):
        raise NotYourPatient(patient_pk)
    if patient.withdrawn_at is not None:
        raise CheckinError(f"{patient.patient_id} withdrew from the study: no check-in is taken")
    stay = stay_in_treatment(session, patient_pk)
    if stay is None:
        raise CheckinError(f"{patient.patient_id} is not in treatment: check-ins are taken during a stay")
    if teams is not None and stay.care_team_id not in teams:
        raise NotYourPatient(patient_pk)
    audit(session, "tablet_handed_over", actor=user.email, patient_id=patient_pk, address=address, episode_id=stay.id)
    return Sheet(secrets.token_urlsafe(18), patient_pk, stay.id, user.id, patient.language or "en")


def page_for(sheet: Sheet, instrument: Instrument) -> Page:
    low, high = instrument.anchors_in(sheet.language)
    return Page(sheet.language, instrument.statements_in(sheet.language), low, high, instrument.min, instrument.max,
                tuple(instrument.columns))


def submit(session: Session, sheet: Sheet, answers: Mapping[str, str], instrument: Instrument) -> Recorded:
    """Store the patient's ratings (every statement answered) as a tablet check-in; the same sheet submitted again
    returns the check-in saved the first time."""
    items = []
    for i, column in enumerate(instrument.columns, 1):
        raw = (answers.get(column) or "").strip()
        if not raw.isdigit():
            raise CheckinError(f"statement {i} has no answer")
        items.append(int(raw))
    stay = session.get(Patient, sheet.patient_pk) and stay_in_treatment(session, sheet.patient_pk)
    if stay is None or stay.id != sheet.episode_id:
        raise CheckinError("this stay is no longer in treatment")
    return record_checkin(session, stay, items, instrument, method=Method.TABLET, staff_user_id=sheet.staff_user_id,
                          client_key=sheet.key)
