"""A participant withdraws from the study, and chooses what becomes of what they already gave.

Withdrawal stops every contact at once: queued texts are cancelled with the reason, open follow-ups end, and the
send rule (:mod:`outreach.messaging.send_rule`) refuses any later wave, reminder or hand-written text.  Their own
texts are still stored and answered, only with a neutral acknowledgement; a crisis text still gets the safety reply
and an alert (:mod:`outreach.messaging.inbound`).  No keyword undoes it, and there is no "undo" here either: a
participant who wants to take part again is a matter for the study's protocol and the ethics board.

- ``keep``: their answers stay in the research data; the export flags them (``withdrawn`` and the days from the
  discharge to the withdrawal) and the report counts them.
- ``remove``: their answers, follow-ups, stays, ratings and texts are deleted; their phone number is erased; the
  alerts opened for them stay (safety records) without their text or the note about it.  What remains is the audit
  row ``withdrawn`` (who, when, why, the export pseudonym: no identifier) and this patient row without phone or
  covariates, so that no later import enrols them again.  The pseudonym is the export's, so a researcher holding an
  earlier export can drop its rows (docs/researchers.md).

Every function writes in the caller's transaction; the caller commits (one unit of work).
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from ..db import audit, audit_each_patient
from ..models import Alert, Answer, AuditEvent, BlockedNumber, Episode, FollowUp, Message, Patient
from ..clock import utcnow
from ..messaging.opt_outs import cancel_pending
from ..messaging.send_rule import TO_THE_WRITER, WITHDRAWN
from .pseudonyms import pseudonym
from ..repository import OPEN_STATES, close, lock_phone
from ..states import Delivery
from .retention import WITHDRAWAL, erase_phones, marker

KEEP, REMOVE = "keep", "remove"
DATA_CHOICES = (KEEP, REMOVE)
DATA_WORDS = {KEEP: "answers kept, flagged as withdrawn", REMOVE: "answers and texts removed, phone erased"}
# Audit details that hold words a person wrote (about a participant whose data is removed, they go).
FREE_TEXT = {"note", "reason", "text", "body", "old", "new"}
_PHONE_LIKE = re.compile(r"\d[\d\s().-]{5,}\d")


class WithdrawalError(ValueError):
    """A withdrawal that cannot be done; the message is a sentence for the user."""


@dataclass(frozen=True)
class Consequences:
    """What withdrawing this participant would do, counted now, for the confirmation."""
    study_id: str
    data: str
    texts_queued: int
    followups_open: int
    answers: int
    texts: int

    def words(self) -> list[str]:
        out = [f"Nothing more is sent to {self.study_id}: {self.texts_queued} queued text(s) are cancelled and "
               f"{self.followups_open} open follow-up(s) end now; no wave, reminder or hand-written text reaches "
               "them again.",
               "Their own texts are still kept and answered only with a neutral acknowledgement; a crisis text "
               "still gets the safety reply and opens an alert.",
               "No keyword undoes this, and neither does the console."]
        if self.data == KEEP:
            out.append(f"Their {self.answers} answer(s) stay in the research data, flagged as withdrawn (with the "
                       "days from discharge to withdrawal) in the export and counted in the report.")
        else:
            out.append(f"Their {self.answers} answer(s), {self.texts} text(s), stays and ratings are deleted from the "
                       "database and leave every export and report; their phone number is erased. This cannot be "
                       "reversed. What remains is the audit record (who, when, why, the export pseudonym).")
        return out


@dataclass(frozen=True)
class Withdrawal:
    pk: int
    study_id: str
    data: str
    at: dt.datetime
    texts_cancelled: int
    followups_closed: int
    answers_deleted: int = 0
    texts_deleted: int = 0


@dataclass(frozen=True)
class WithdrawnLine:
    pk: int
    study_id: str
    pseudonym: str | None
    at: dt.datetime
    by: str | None
    data: str
    reason: str | None
    days_after_discharge: int | None


def _patient(session: Session, *, pk: int | None = None, study_id: str | None = None) -> Patient:
    p = (session.get(Patient, pk) if pk is not None
         else session.scalar(select(Patient).where(Patient.patient_id == study_id)))
    if p is None:
        raise WithdrawalError("There is no such patient.")
    return p


def pk_of(session: Session, study_id: str) -> int:
    """The primary key of the patient with this study id (WithdrawalError when there is none)."""
    return _patient(session, study_id=study_id).id


def check_choice(data: str | None, reason: str | None) -> tuple[str, str]:
    """The data choice and the reason, checked: a reason is required and must not hold a phone number."""
    if data not in DATA_CHOICES:
        raise WithdrawalError("Choose what becomes of the answers already given: keep or remove.")
    reason = (reason or "").strip()
    if not reason:
        raise WithdrawalError("Give the reason for the withdrawal (it is kept in the audit record).")
    if _PHONE_LIKE.search(reason):
        raise WithdrawalError("The reason must not hold a phone number or other long number: the audit record "
                              "keeps it, and it must identify no one.")
    return data, reason[:500]


def _not_withdrawn(p: Patient) -> None:
    if p.withdrawn_at is not None:
        raise WithdrawalError(f"{p.patient_id} already withdrew on {p.withdrawn_at:%Y-%m-%d} "
                              f"({DATA_WORDS.get(p.withdrawal_data or '', p.withdrawal_data)}).")


def consequences(session: Session, pk: int, data: str) -> Consequences:
    p = _patient(session, pk=pk)
    _not_withdrawn(p)
    queued = session.scalar(select(func.count()).select_from(Message).where(
        Message.patient_id == pk, Message.direction == "out", Message.status == Delivery.PENDING)) or 0
    open_ = session.scalar(select(func.count()).select_from(FollowUp).where(
        FollowUp.patient_id == pk, FollowUp.state.in_(OPEN_STATES))) or 0
    answers = session.scalar(select(func.count()).select_from(Answer).join(FollowUp, FollowUp.id == Answer.followup_id)
                             .where(FollowUp.patient_id == pk)) or 0
    texts = session.scalar(select(func.count()).select_from(Message).where(Message.patient_id == pk)) or 0
    return Consequences(p.patient_id, data, queued, open_, answers, texts)


def _days_after_discharge(session: Session, pk: int, at: dt.datetime) -> int | None:
    """Days from the latest discharge on or before the withdrawal to it (the export's ``withdrawn_days`` of that
    stay): a relative date, never a calendar one."""
    discharge = session.scalar(select(func.max(Episode.discharge_date))
                               .where(Episode.patient_id == pk, Episode.discharge_date <= at.date()))
    return (at.date() - discharge).days if discharge else None


def withdraw(session: Session, *, pk: int | None = None, study_id: str | None = None, data: str, reason: str,
             actor: str, address: str | None = None, key: bytes | None = None, via: str = "console") -> Withdrawal:
    """Withdraw the participant (by primary key or study id), audited as ``withdrawn``.  ``key``: the export's
    pseudonym key (EXPORT_KEY), so that the audit record names the participant as the exports do."""
    data, reason = check_choice(data, reason)
    p = _patient(session, pk=pk, study_id=study_id)
    if p.phone:  # the same lock as an incoming text: read and change after it (an erased number: none can come)
        lock_phone(session, p.phone)
    session.refresh(p)
    _not_withdrawn(p)
    now = utcnow()
    p.withdrawn_at, p.withdrawn_by, p.withdrawal_reason, p.withdrawal_data = now, actor, reason, data
    cancelled = cancel_pending(session, [p.id], WITHDRAWN, exempt=TO_THE_WRITER)
    open_followups = list(session.scalars(select(FollowUp).where(FollowUp.patient_id == p.id,
                                                                 FollowUp.state.in_(OPEN_STATES))))
    for f in open_followups:
        close(f, "opt_out")
    days = _days_after_discharge(session, p.id, now)
    audit(session, "withdrawn", actor=actor, patient_id=p.id, address=address, data=data, reason=reason,
          pseudonym=pseudonym(key, p.patient_id) if key else None, days_after_discharge=days, via=via,
          texts_cancelled=cancelled, followups_closed=len(open_followups))
    session.flush()
    answers = texts = 0
    if data == REMOVE:
        answers, texts = _remove(session, p, now)
    return Withdrawal(p.id, p.patient_id, data, now, cancelled, len(open_followups), answers, texts)


def _remove(session: Session, p: Patient, now: dt.datetime) -> tuple[int, int]:
    """Delete what the participant gave and erase their phone number; (answers, texts) deleted."""
    followups = select(FollowUp.id).where(FollowUp.patient_id == p.id)
    messages = list(session.scalars(select(Message.id).where(
        (Message.patient_id == p.id) | Message.followup_id.in_(followups))))
    answers = session.execute(delete(Answer).where(Answer.followup_id.in_(followups))).rowcount or 0
    erase_phones(session, [p.id], WITHDRAWAL, now)  # the audit's phone corrections lose their numbers too
    for i in range(0, len(messages), 1000):
        ids = messages[i:i + 1000]
        session.execute(update(Alert).where(Alert.message_id.in_(ids)).values(message_id=None))
        session.execute(update(BlockedNumber).where(BlockedNumber.message_id.in_(ids)).values(message_id=None))
        session.execute(update(Message).where(Message.in_reply_to_id.in_(ids)).values(in_reply_to_id=None))
        session.execute(delete(Answer).where(Answer.message_id.in_(ids)))
    session.execute(update(Alert).where(Alert.patient_id == p.id)
                    .values(followup_id=None, resolution_note=marker(now, WITHDRAWAL)))
    # Staff wrote words about them in the audit (an alert's note, why they were opted back in): erased, the rows kept.
    for event in session.scalars(select(AuditEvent).where(AuditEvent.patient_id == p.id,
                                                          AuditEvent.action != "withdrawn")):
        if FREE_TEXT & set(event.details or {}):
            event.details = {**{k: v for k, v in event.details.items() if k not in FREE_TEXT},
                             "words": marker(now, WITHDRAWAL)}
    texts = 0
    for i in range(0, len(messages), 1000):
        texts += session.execute(delete(Message).where(Message.id.in_(messages[i:i + 1000]))).rowcount or 0
    session.execute(delete(FollowUp).where(FollowUp.patient_id == p.id))
    session.execute(delete(Episode).where(Episode.patient_id == p.id))  # its ratings go with it (cascade)
    p.age, p.sex = None, None
    session.flush()
    return answers, texts


def withdrawn(session: Session, key: bytes | None = None, *, actor: str | None = None,
              address: str | None = None) -> list[WithdrawnLine]:
    """Every withdrawal, oldest first, for the study's reports to the board.  With ``actor`` (a person looking at
    the study ids on the console) the look is audited, one row per participant shown (``viewed_withdrawals``)."""
    days = {pk: d.get("days_after_discharge") for pk, d in session.execute(
        select(AuditEvent.patient_id, AuditEvent.details).where(AuditEvent.action == "withdrawn"))}
    rows = [WithdrawnLine(p.id, p.patient_id, pseudonym(key, p.patient_id) if key else None, p.withdrawn_at,
                          p.withdrawn_by, p.withdrawal_data or KEEP, p.withdrawal_reason, days.get(p.id))
            for p in session.scalars(select(Patient).where(Patient.withdrawn_at.is_not(None))
                                     .order_by(Patient.withdrawn_at, Patient.id))]
    if actor is not None:
        audit_each_patient(session, "viewed_withdrawals", {w.pk: {} for w in rows} or {None: {}}, actor=actor,
                           address=address)
    return rows
