"""Reaching patients again, for the command line: opting a patient back in, the contact events (opt-outs,
"wrong number" replies, phone changes) and who replied at a time point.

Opting in goes through :func:`outreach.messaging.opt_outs.lift_opt_out`, as the console's phone correction and an
import that changes a wrong number do, so the audit trail is the same whoever lifts an opt-out.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import AuditEvent, FollowUp, Message, Patient
from ..messaging.opt_outs import lift_opt_out
from .patients import CONTACT_ACTIONS, CONTACT_WORDS, PatientError, state_words
from ..phones import mask
from ..repository import lock_phone
from ..messaging.send_rule import STOP


@dataclass(frozen=True)
class OptIn:
    patient_id: str
    phone: str  # masked
    opted_out_at: dt.datetime
    after_stop: bool  # the opt-out came from a STOP (the patient's, or the carrier's)
    sms_consent: bool


def opt_in(session: Session, patient_id: str, reason: str, *, actor: str) -> OptIn:
    """Opt a patient back in after a coordinator confirmed their consent again (e.g. once their number is
    corrected), audited as ``opted_in`` with who and why.  Refused without a reason, for an unknown
    patient, or for one who is not opted out."""
    reason = (reason or "").strip()
    if not reason:
        raise PatientError("a reason is required (--reason TEXT): say how consent was confirmed again")
    p = session.scalar(select(Patient).where(Patient.patient_id == patient_id))
    if p is None:
        raise PatientError(f"there is no patient {patient_id!r}")
    lock_phone(session, p.phone)  # the order every writer of an opt-out follows
    session.refresh(p)
    if p.opted_out_at is None:
        raise PatientError(f"patient {patient_id} is not opted out; nothing was changed")
    after_stop = p.opt_out_reason == STOP
    opted_out_at = p.opted_out_at
    lift_opt_out(session, p.id, actor=actor, reason=reason, via="cli")
    session.flush()
    return OptIn(p.patient_id, mask(p.phone), opted_out_at, after_stop, bool(p.sms_consent))


@dataclass(frozen=True)
class ContactEvent:
    id: int
    at: dt.datetime
    action: str
    words: str
    actor: str
    patient_id: str | None
    phone_now: str | None  # masked
    text: str | None  # the patient's text behind the event, when there is one
    from_number: str | None  # masked: the number the text came from
    opted_out_now: bool


def contact_events(session: Session, kind: str | None = None, limit: int = 50) -> list[ContactEvent]:
    """The latest contact events (``kind``, else every one of :data:`CONTACT_ACTIONS`), newest first,
    with the text behind each and whether the patient is opted out now.  One statement."""
    message_id = AuditEvent.details["message_id"].as_integer()
    query = (select(AuditEvent.id, AuditEvent.at, AuditEvent.action, AuditEvent.actor, Patient.patient_id,
                    Patient.phone, Message.body, Message.from_number, Patient.opted_out_at)
             .outerjoin(Patient, Patient.id == AuditEvent.patient_id)
             .outerjoin(Message, Message.id == message_id)
             .where(AuditEvent.action == kind if kind else AuditEvent.action.in_(CONTACT_ACTIONS))
             .order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit))
    return [ContactEvent(r.id, r.at, r.action, CONTACT_WORDS.get(r.action, r.action), r.actor, r.patient_id,
                         mask(r.phone) if r.phone else None, r.body,
                         mask(r.from_number) if r.from_number else None, r.opted_out_at is not None)
            for r in session.execute(query)]


@dataclass(frozen=True)
class Responder:
    patient_id: str
    phone: str  # masked
    state: str
    state_words: str
    last_reply_at: dt.datetime
    replies: int


def responders(session: Session, timepoint: int) -> list[Responder]:
    """Patients who replied at a time point (a coordinator's preview does not count), the latest reply
    first: study id, masked phone, where their follow-up stands and when they last wrote."""
    replies = (select(Message.followup_id, func.max(Message.created_at).label("last"),
                      func.count().label("n"))
               .where(Message.direction == "in", Message.preview.is_(False), Message.followup_id.is_not(None))
               .group_by(Message.followup_id).subquery())
    rows = session.execute(
        select(Patient.patient_id, Patient.phone, FollowUp.state, replies.c.last, replies.c.n)
        .join(FollowUp, FollowUp.id == replies.c.followup_id)
        .join(Patient, Patient.id == FollowUp.patient_id)
        .where(FollowUp.timepoint_days == timepoint)
        .order_by(replies.c.last.desc(), Patient.patient_id))
    return [Responder(pid, mask(phone), state, state_words(state), last, n) for pid, phone, state, last, n in rows]
