"""Alliance check-ins by SMS: the six statements as a survey defined as data
(``conversations/data/alliance_checkin.toml``), for stays whose check-ins are ``sms``.

A check-in by text is a conversation like a follow-up's, on the same row and the same machine: a ``followups``
row whose ``timepoint_days`` is ``-k`` for the stay's k-th check-in period (``conversations.surveys.is_checkin``),
so keywords, crisis detection, quiet hours (the send rule, checked again when each text is sent), reminders,
stalled-survey nudges and expiry are those of follow-ups; a check-in whose invitation never goes (cancelled or
failed before it was sent) is ended by :func:`end_unsent_checkins`, since expiry counts from a sent invitation.
Research queries leave these rows out (``outreach.repository.research_followups``).

:func:`queue_checkins` (the worker, every minute) starts the check-in due this period for each such stay: its
invitation is queued like a wave's and sent in the patient's window.  A patient has one conversation at a time: a
check-in waits while a follow-up or another check-in of the patient (or of their phone) is open.
:func:`record_sms_checkins` turns each finished conversation into a check-in (scored, flagged, alerting)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import exists, func, insert, select
from sqlalchemy.orm import Session, aliased

from conversations.engine import Context, invitation
from conversations.machine import FollowUpState

from ..clock import utcnow
from ..config import Settings
from ..messaging.send_rule import can_be_texted
from ..models import AllianceCheckin, Answer, Episode, FollowUp, Message, Patient
from ..repository import OPEN_STATES
from ..states import Delivery
from ..study.instrument import Instrument
from ..study.scheduler import expire_followups
from .checkins import CheckinsBy, Method, Recorded, local_day, record_checkin


def _conversation_open() -> object:
    """For a joined ``Patient``: an open conversation (follow-up or check-in) with their phone, theirs or not."""
    other = aliased(Patient)
    return exists().where(FollowUp.state.in_(OPEN_STATES), FollowUp.patient_id == other.id,
                          other.phone == Patient.phone)


def queue_checkins(session: Session, settings: Settings, now: dt.datetime | None = None) -> int:
    """Start the check-in due in this period (every ``ALLIANCE_CHECKIN_DAYS`` from admission) of each stay in
    treatment with SMS check-ins whose patient may be texted and has no conversation open.  Returns how many."""
    now = now or utcnow()
    period = settings.alliance_checkin_days
    latest = (select(FollowUp.episode_id, func.min(FollowUp.timepoint_days).label("k"))
              .where(FollowUp.timepoint_days < 0).group_by(FollowUp.episode_id).subquery())
    rows = session.execute(
        select(Episode.id, Episode.patient_id, Episode.admission_date, Patient.timezone, Patient.language,
               Patient.phone, latest.c.k)
        .join(Patient, Patient.id == Episode.patient_id)
        .outerjoin(latest, latest.c.episode_id == Episode.id)
        .where(Episode.discharge_date.is_(None), Episode.admission_date.is_not(None),
               Episode.alliance_checkins == str(CheckinsBy.SMS), can_be_texted(), ~_conversation_open())).all()
    due = []
    for episode_pk, patient_pk, admitted, zone, language, phone, started in rows:
        k = (local_day(now, zone) - admitted).days // period
        if k >= 1 and (started is None or -started < k):
            due.append((episode_pk, patient_pk, k, language, phone))
    if not due:
        return 0
    texted_before = set(session.scalars(select(Message.patient_id).where(
        Message.patient_id.in_([d[1] for d in due]), Message.kind == "invitation", Message.direction == "out")))
    for episode_pk, patient_pk, k, language, phone in due:
        conversation = FollowUp(patient_id=patient_pk, episode_id=episode_pk, timepoint_days=-k,
                                state=FollowUpState.INVITED, retries=0, reminders_sent=0)
        session.add(conversation)
        session.flush()
        ctx = Context(language=language, org=settings.org_name, crisis_line=settings.get("CRISIS_LINE"),
                      emergency=settings.get("EMERGENCY_NUMBER"))
        session.execute(insert(Message).values(
            direction="out", kind="invitation", status=Delivery.PENDING, patient_id=patient_pk,
            followup_id=conversation.id, to_number=phone, send_after=now, attempts=0, media_count=0,
            body=invitation(-k, ctx, first=patient_pk not in texted_before), created_at=now, updated_at=now))
    session.flush()
    return len(due)


def record_sms_checkins(session: Session, instrument: Instrument) -> list[Recorded]:
    """A check-in for each SMS check-in conversation that has ended with answers (completed, or timed out or
    stopped after some) and has none yet: the six answers scored, flagged and alerting as any check-in."""
    finished = session.scalars(
        select(FollowUp).where(FollowUp.timepoint_days < 0,
                               FollowUp.state.in_((FollowUpState.COMPLETED, FollowUpState.EXPIRED,
                                                   FollowUpState.OPTED_OUT)),
                               ~exists().where(AllianceCheckin.followup_id == FollowUp.id),
                               exists().where(Answer.followup_id == FollowUp.id, Answer.value.is_not(None)))
        .order_by(FollowUp.id)).all()
    recorded = []
    for conversation in finished:
        values = dict(session.execute(select(Answer.question_key, Answer.value)
                                      .where(Answer.followup_id == conversation.id)).all())
        items = [values.get(column) for column in instrument.columns]
        taken_at = conversation.completed_at or conversation.closed_at or conversation.last_inbound_at or utcnow()
        recorded.append(record_checkin(session, session.get(Episode, conversation.episode_id), items, instrument,
                                       method=Method.SMS, taken_at=taken_at, followup_id=conversation.id))
    return recorded


def end_unsent_checkins(session: Session, now: dt.datetime | None = None) -> int:
    """End (expired) each check-in whose invitation will never go: not sent (``invited_at`` unset) and none of its
    invitations waiting to be (each cancelled or failed: consent withdrawn, an opt-out, a phone found invalid).
    Expiry counts from a sent invitation, so such a check-in stayed 'invited' for ever, the patient's one open
    conversation: no later check-in, no wave (``patient_busy``).  The patients are locked as an inbound text locks
    them (:func:`outreach.study.scheduler.tick`'s expiry does the same).  Returns how many ended."""
    now = now or utcnow()
    waiting = exists().where(Message.followup_id == FollowUp.id, Message.kind == "invitation",
                             Message.status.in_((Delivery.PENDING, Delivery.CLAIMED)))
    stuck = (FollowUp.timepoint_days < 0, FollowUp.state == FollowUpState.INVITED, FollowUp.invited_at.is_(None),
             ~waiting)
    ended = expire_followups(session, now, *stuck)
    session.flush()
    return len(ended)


def care_duties(session: Session, settings: Settings, now: dt.datetime | None = None) -> tuple[int, int]:
    """The worker's minute duty for check-ins by text: (conversations finished and recorded, check-ins started);
    check-ins whose invitation will never go are ended first, so that their patients are free."""
    from ..study.instrument import load_instrument

    end_unsent_checkins(session, now)
    recorded = record_sms_checkins(session, load_instrument(settings.get("ALLIANCE_INSTRUMENT")))
    return len(recorded), queue_checkins(session, settings, now)
