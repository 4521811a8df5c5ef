"""Erasing identifiers: the retention rules (daily), a participant's withdrawal with removal, and closing the study.

What is erased is overwritten in the database, not hidden: a text's words (``messages.body`` becomes "") and an
answer's words (``answers.raw_text`` becomes NULL), a phone number (``patients.phone`` becomes "", marked invalid,
and the numbers on the patient's texts NULL).  Each erased field carries when and under what it was erased
(``*_erased_at``, ``*_erased_under``), so the console shows "erased on DATE under the retention rule" instead of a
blank that would look like missing data.  Coded answers, states and dates stay: the de-identified research data.

The rules (settings, read once):

- ``RETAIN_MESSAGE_BODIES_DAYS``: a text's words go that many days after the follow-up it belongs to ended and after
  the text itself (a text written later to a closed follow-up keeps its own days); a text outside any follow-up,
  that many days after it was sent or received.  A follow-up still under way keeps all its words.
- ``RETAIN_PHONES_DAYS_AFTER_LAST_CONTACT``: a participant with nothing left to send (no follow-up open, no text
  queued, every time point of FOLLOWUP_DAYS past for their latest discharge, plus WINDOW_DAYS) loses their phone
  number that many days after the later of their last text and that last time point.
- ``RETAIN_AUDIT_DAYS``: audit rows older than that are deleted (the setting must be the longest of the three).

:func:`run` applies them in batches of :data:`BATCH` rows, one short transaction each, so that an incoming text
never waits long for a row lock; ``dry_run`` counts by kind and changes nothing.  The worker runs it once a day
(:func:`due_today`), a time budget at a time.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from ..config import Settings
from ..db import audit, unit_of_work
from ..models import Alert, Answer, AuditEvent, BlockedNumber, Episode, FollowUp, Message, Patient
from ..clock import utcnow
from ..messaging.opt_outs import cancel_pending
from ..repository import OPEN_STATES, close
from ..states import Delivery, Processing

RETENTION, WITHDRAWAL, STUDY_CLOSE = "retention", "withdrawal", "study_close"
UNDER_WORDS = {RETENTION: "under the retention rule", WITHDRAWAL: "at the participant's withdrawal",
               STUDY_CLOSE: "when the study was closed"}
KINDS = {"message_bodies": "words of texts", "answer_words": "words of free-text answers",
         "phone_numbers": "phone numbers", "audit_rows": "audit rows older than RETAIN_AUDIT_DAYS"}
BATCH = 1000
RUN_DONE = "retention_run"  # the audit row of a completed daily pass (its day in details)
# Texts whose words are never erased while they may still be sent or applied.
_IN_FLIGHT = (Delivery.PENDING, Delivery.CLAIMED, Processing.RECEIVED)


def marker(at: dt.datetime | None, under: str | None) -> str:
    """What the console shows in place of an erased field."""
    when = f" on {at:%Y-%m-%d}" if at else ""
    return f"erased{when} {UNDER_WORDS.get(under or '', 'under ' + (under or 'a rule'))}"


# -- what is due, as conditions --------------------------------------------------------------------------------

def _bodies_due(now: dt.datetime, days: int):
    cutoff = now - dt.timedelta(days=days)
    ended = func.coalesce(FollowUp.closed_at, FollowUp.completed_at, FollowUp.updated_at)
    followup_over = exists().where(FollowUp.id == Message.followup_id, FollowUp.state.not_in(OPEN_STATES),
                                   ended < cutoff)
    return and_(Message.erased_at.is_(None), Message.created_at < cutoff, Message.status.not_in(_IN_FLIGHT),
                or_(Message.followup_id.is_(None), followup_over))


def _phones_due(settings: Settings, now: dt.datetime):
    days = settings.retain_phones_days_after_last_contact
    cutoff = now - dt.timedelta(days=days)
    # The last time point of the latest discharge, and the window in which a wave may still target it.
    last_point = max(settings.followup_days) + settings.window_days
    discharge_cutoff = (cutoff - dt.timedelta(days=last_point)).date()
    return and_(
        Patient.phone_erased_at.is_(None), Patient.created_at < cutoff,
        ~exists().where(FollowUp.patient_id == Patient.id, FollowUp.state.in_(OPEN_STATES)),
        ~exists().where(Message.patient_id == Patient.id, Message.direction == "out",
                        Message.status.in_(_IN_FLIGHT)),
        ~exists().where(Message.patient_id == Patient.id, Message.created_at >= cutoff),
        ~exists().where(Episode.patient_id == Patient.id, Episode.discharge_date >= discharge_cutoff))


def _audit_due(settings: Settings, now: dt.datetime):
    return AuditEvent.at < now - dt.timedelta(days=settings.retain_audit_days)


# -- erasing a set of rows ---------------------------------------------------------------------------------------

def erase_message_words(session: Session, message_ids: Sequence[int], under: str, now: dt.datetime) -> tuple[int, int]:
    """Erase the words of these texts and of the answers read from them; (texts, answers) erased."""
    if not message_ids:
        return 0, 0
    texts = session.execute(update(Message).where(Message.id.in_(message_ids), Message.erased_at.is_(None))
                            .values(body="", erased_at=now, erased_under=under)
                            .execution_options(synchronize_session=False)).rowcount or 0
    # by follow-up first: answers are indexed by it (uq_answers_followup_question), not by message
    followups = select(Message.followup_id).where(Message.id.in_(message_ids), Message.followup_id.is_not(None))
    answers = session.execute(update(Answer).where(Answer.followup_id.in_(followups.scalar_subquery()),
                                                   Answer.message_id.in_(message_ids),
                                                   Answer.raw_text_erased_at.is_(None))
                              .values(raw_text=None, raw_text_erased_at=now, raw_text_erased_under=under)
                              .execution_options(synchronize_session=False)).rowcount or 0
    return texts, answers


def erase_phones(session: Session, patient_ids: Sequence[int], under: str, now: dt.datetime) -> int:
    """Erase these patients' phone numbers: on the patient (marked invalid, so nothing can be sent), on their texts,
    and the old and new numbers an audited phone correction kept.  How many patients."""
    if not patient_ids:
        return 0
    done = session.execute(update(Patient).where(Patient.id.in_(patient_ids), Patient.phone_erased_at.is_(None))
                           .values(phone="", phone_valid=False, phone_erased_at=now, phone_erased_under=under,
                                   updated_at=now)
                           .execution_options(synchronize_session=False)).rowcount or 0
    theirs = Message.patient_id.in_(patient_ids)
    session.execute(update(Message).where(theirs, Message.direction == "in").values(from_number=None)
                    .execution_options(synchronize_session=False))
    session.execute(update(Message).where(theirs, Message.direction == "out").values(to_number=None)
                    .execution_options(synchronize_session=False))
    for event in session.scalars(select(AuditEvent).where(AuditEvent.patient_id.in_(patient_ids),
                                                          AuditEvent.action == "phone_corrected")):
        event.details = {**{k: v for k, v in (event.details or {}).items() if k not in ("old", "new")},
                         "numbers": marker(now, under)}
    return done


# -- the daily pass ----------------------------------------------------------------------------------------------

@dataclass
class RetentionRun:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    dry_run: bool = False
    finished: bool = True  # False: stopped by its time budget; the next run goes on

    def describe(self) -> str:
        verb = "would erase" if self.dry_run else "erased"
        parts = [f"{KINDS[k]}: {n}" for k, n in self.counts.items()]
        return f"retention {verb} " + "; ".join(parts) + ("" if self.finished else " (to be continued)")


def _batches(sessions: sessionmaker[Session], ids_of: Callable[[Session, int], list[int]],
             apply: Callable[[Session, list[int]], int], deadline: float | None) -> tuple[int, bool]:
    """Take up to BATCH ids after the last one done and apply, one transaction each, until none is left (or the
    deadline).  Keyset order: each batch starts where the last ended, never from the start again."""
    total, after = 0, 0
    while True:
        if deadline is not None and time.monotonic() > deadline:
            return total, False
        with unit_of_work(sessions) as session:
            ids = ids_of(session, after)
            if not ids:
                return total, True
            total += apply(session, ids)
            after = ids[-1]


def run(sessions: sessionmaker[Session], settings: Settings, *, dry_run: bool = False,
        budget_seconds: float | None = None, now: dt.datetime | None = None) -> RetentionRun:
    """Apply the retention rules now (``dry_run``: count what would be erased, change nothing)."""
    now = now or utcnow()
    result = RetentionRun(dry_run=dry_run)
    bodies = _bodies_due(now, settings.retain_message_bodies_days)
    phones = _phones_due(settings, now)
    old_audit = _audit_due(settings, now)
    if dry_run:
        with unit_of_work(sessions) as s:
            result.counts["message_bodies"] = s.scalar(select(func.count()).select_from(Message).where(bodies)) or 0
            result.counts["answer_words"] = s.scalar(
                select(func.count()).select_from(Answer)
                .where(Answer.raw_text_erased_at.is_(None),
                       Answer.message_id.in_(select(Message.id).where(bodies)))) or 0
            result.counts["phone_numbers"] = s.scalar(select(func.count()).select_from(Patient).where(phones)) or 0
            result.counts["audit_rows"] = s.scalar(select(func.count()).select_from(AuditEvent).where(old_audit)) or 0
        return result
    deadline = time.monotonic() + budget_seconds if budget_seconds is not None else None
    answers = [0]

    def erase_words(s: Session, ids: list[int]) -> int:
        texts, words = erase_message_words(s, ids, RETENTION, now)
        answers[0] += words
        return texts

    def ids(column, condition):
        return lambda s, after: list(s.scalars(select(column).where(condition, column > after).order_by(column)
                                               .limit(BATCH)))

    steps = [
        ("message_bodies", ids(Message.id, bodies), erase_words),
        ("phone_numbers", ids(Patient.id, phones), lambda s, ids: erase_phones(s, ids, RETENTION, now)),
        ("audit_rows", ids(AuditEvent.id, old_audit),
         lambda s, ids: s.execute(delete(AuditEvent).where(AuditEvent.id.in_(ids))).rowcount or 0),
    ]
    for kind, ids_of, apply in steps:
        result.counts[kind], finished = _batches(sessions, ids_of, apply, deadline)
        if not finished:
            result.finished = False
            break
    result.counts["answer_words"] = answers[0]
    if result.finished:
        with unit_of_work(sessions) as s:
            audit(s, RUN_DONE, actor="system", day=now.date().isoformat(), **result.counts)
    return result


def due_today(session: Session, settings: Settings, now: dt.datetime | None = None) -> bool:
    """Is the daily pass due: RETENTION_RUN_AT (CONSOLE_TIMEZONE) has passed today and no pass finished today?"""
    now = now or utcnow()
    local = now.replace(tzinfo=dt.UTC).astimezone(settings.coordinator_zone)
    if local.time() < settings.retention_run_at:
        return False
    done = session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == RUN_DONE, AuditEvent.at >= now - dt.timedelta(hours=36),
        AuditEvent.details["day"].as_string() == now.date().isoformat()))
    return not done


# -- closing the study -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StudyClosed:
    participants: int
    texts_cancelled: int
    followups_closed: int
    texts_erased: int
    answers_erased: int
    phones_erased: int


def participant_count(session: Session) -> int:
    """The number the person closing the study types back: participants whose phone is not erased yet."""
    return session.scalar(select(func.count()).select_from(Patient).where(Patient.phone_erased_at.is_(None))) or 0


def close_study(session: Session, *, actor: str, reason: str) -> StudyClosed:
    """End all contact and erase every phone number and every text's words at once, keeping the coded, de-identified
    data and the audit.  One transaction: all of it, or nothing."""
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("say why the study is closed (--reason)")
    now = utcnow()
    ids = list(session.scalars(select(Patient.id)))
    participants = participant_count(session)
    cancelled = cancel_pending(session, ids, "the study was closed")
    cancelled += session.execute(update(Message).where(Message.direction == "out", Message.status == Delivery.PENDING)
                                 .values(status=Delivery.CANCELLED, error_message="the study was closed",
                                         updated_at=now)).rowcount or 0
    open_followups = list(session.scalars(select(FollowUp).where(FollowUp.state.in_(OPEN_STATES))))
    for f in open_followups:
        close(f, "opt_out")
    session.flush()
    message_ids = list(session.scalars(select(Message.id).where(Message.erased_at.is_(None),
                                                                Message.status != Delivery.CLAIMED)))
    texts = answers = 0
    for i in range(0, len(message_ids), 5000):
        t, a = erase_message_words(session, message_ids[i:i + 5000], STUDY_CLOSE, now)
        texts, answers = texts + t, answers + a
    phones = 0
    for i in range(0, len(ids), 5000):
        phones += erase_phones(session, ids[i:i + 5000], STUDY_CLOSE, now)
    session.execute(update(Message).where(Message.direction == "in").values(from_number=None))
    session.execute(update(Message).where(Message.direction == "out", Message.kind.not_in(("alert", "digest")))
                    .values(to_number=None))
    session.execute(delete(BlockedNumber))  # the wrong-number list is of numbers too; nothing is sent any more
    session.execute(update(Alert).where(Alert.resolution_note.is_not(None))
                    .values(resolution_note=marker(now, STUDY_CLOSE)))
    closed = StudyClosed(participants, cancelled, len(open_followups), texts, answers, phones)
    audit(session, "study_closed", actor=actor, reason=reason, participants=participants, texts_cancelled=cancelled,
          followups_closed=len(open_followups), texts_erased=texts, answers_erased=answers, phones_erased=phones)
    return closed
