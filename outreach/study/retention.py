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

:func:`run` applies them in batches (:data:`BATCH` texts, :data:`PHONE_BATCH` participants), one short transaction
each and set-based (a batch is an id range; no id list goes to the database and back), so that an incoming text never
waits long for a row lock; ``dry_run`` counts by kind and changes nothing.  The worker runs it once a day
(:func:`due_today`), a time budget at a time.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from sqlalchemy import and_, case, delete, exists, func, or_, select, text, update
from sqlalchemy.orm import Session, aliased, sessionmaker

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
         "phone_numbers": "phone numbers",
         "unmatched_numbers": "phone numbers on texts of no participant (an unknown number, a reply to it)",
         "audit_rows": "audit rows older than RETAIN_AUDIT_DAYS"}
TO_STAFF = ("alert", "digest")  # texts to the coordinators on call or the care teams: staff numbers, kept
BATCH = 1000  # texts (or audit rows) a transaction
# Participants a transaction in the phone rule: their texts lose the number in the same one (80 texts each in
# the benchmark, so about as many rows as a batch of texts).
PHONE_BATCH = 20
RUN_DONE = "retention_run"  # the audit row of a completed daily pass (its day in details)
# Texts whose words are never erased while they may still be sent or applied.
_IN_FLIGHT = (Delivery.PENDING, Delivery.CLAIMED, Processing.RECEIVED)


def marker(at: dt.datetime | None, under: str | None) -> str:
    """What the console shows in place of an erased field."""
    when = f" on {at:%Y-%m-%d}" if at else ""
    return f"erased{when} {UNDER_WORDS.get(under or '', 'under ' + (under or 'a rule'))}"


# -- what is due, as conditions --------------------------------------------------------------------------------

def _words_own(now: dt.datetime, days: int):
    """What a text due for erasure is on its own row: its words are still there, it is old enough, it is not in flight."""
    return and_(Message.erased_at.is_(None), Message.created_at < now - dt.timedelta(days=days),
                Message.status.not_in(_IN_FLIGHT))


def _followup_over(now: dt.datetime, days: int):
    """A follow-up whose texts may lose their words: closed, and long enough ago."""
    ended = func.coalesce(FollowUp.closed_at, FollowUp.completed_at, FollowUp.updated_at)
    return and_(FollowUp.state.not_in(OPEN_STATES), ended < now - dt.timedelta(days=days))


def _bodies_due(now: dt.datetime, days: int):
    return and_(_words_own(now, days),
                or_(Message.followup_id.is_(None),
                    exists().where(FollowUp.id == Message.followup_id, _followup_over(now, days))))


def _phone_own(settings: Settings, now: dt.datetime):
    """What a participant whose number is due is on their own row (the rest needs their follow-ups, texts, stays)."""
    cutoff = now - dt.timedelta(days=settings.retain_phones_days_after_last_contact)
    return and_(Patient.phone_erased_at.is_(None), Patient.created_at < cutoff)


def _nothing_left(settings: Settings, now: dt.datetime):
    cutoff = now - dt.timedelta(days=settings.retain_phones_days_after_last_contact)
    # The last time point of the latest discharge, and the window in which a wave may still target it.
    last_point = max(settings.followup_days) + settings.window_days
    discharge_cutoff = (cutoff - dt.timedelta(days=last_point)).date()
    return and_(
        ~exists().where(FollowUp.patient_id == Patient.id, FollowUp.state.in_(OPEN_STATES)),
        ~exists().where(Message.patient_id == Patient.id, Message.direction == "out",
                        Message.status.in_(_IN_FLIGHT)),
        ~exists().where(Message.patient_id == Patient.id, Message.created_at >= cutoff),
        ~exists().where(Episode.patient_id == Patient.id, Episode.discharge_date >= discharge_cutoff))


def _phones_due(settings: Settings, now: dt.datetime):
    return and_(_phone_own(settings, now), _nothing_left(settings, now))


STUDY_CLOSED = "study_closed"  # the audit row that closes the study: kept whatever RETAIN_AUDIT_DAYS says


def _audit_due(settings: Settings, now: dt.datetime):
    """Audit rows older than RETAIN_AUDIT_DAYS, but never the study's closing: it is what keeps a closed study
    closed (:func:`study_closed`), and a purged one would open the doors to new numbers again."""
    return and_(AuditEvent.at < now - dt.timedelta(days=settings.retain_audit_days), AuditEvent.action != STUDY_CLOSED)


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
    # One pass over their texts (the patient's number is the sender of a text in, the recipient of a text out),
    # skipping a text whose number is gone already: each row rewritten once, not once per direction.
    incoming, outgoing = Message.direction == "in", Message.direction == "out"
    session.execute(update(Message)
                    .where(Message.patient_id.in_(patient_ids),
                           or_(and_(incoming, Message.from_number.is_not(None)),
                               and_(outgoing, Message.to_number.is_not(None))))
                    .values(from_number=case((incoming, None), else_=Message.from_number),
                            to_number=case((outgoing, None), else_=Message.to_number))
                    .execution_options(synchronize_session=False))
    for event in session.scalars(select(AuditEvent).where(AuditEvent.patient_id.in_(patient_ids),
                                                          AuditEvent.action == "phone_corrected")):
        event.details = {**{k: v for k, v in (event.details or {}).items() if k not in ("old", "new")},
                         "numbers": marker(now, under)}
    return done


# -- the daily pass ----------------------------------------------------------------------------------------------

# Each batch is a short id range found on the rows' own columns (a walk of the primary key from where the last one
# ended); what needs other tables (a text's follow-up, a participant's follow-ups, texts and stays) is then asked of
# that range's rows alone.  Asked of the whole table, PostgreSQL answered it with a scan of every follow-up (or
# every text) for each batch: a pass that grew with the square of the study.

def erase_due_words(session: Session, days: int, after: int, under: str,
                    now: dt.datetime) -> tuple[int, int, int | None]:
    """Erase the words of the texts due under RETAIN_MESSAGE_BODIES_DAYS (``days``) among the next BATCH after id
    ``after`` whose own row says they may be, and of the answers read from them: (texts, answers, the batch's last
    id, None when none is left).  Nothing but the two ends of the batch goes to the database and back."""
    own = _words_own(now, days)
    batch = select(Message.id).where(own, Message.id > after).order_by(Message.id).limit(BATCH).subquery()
    last = session.scalar(select(func.max(batch.c.id)))
    if last is None:
        return 0, 0, None
    span = and_(Message.id > after, Message.id <= last)
    theirs = aliased(Message)  # the batch's texts, to find their follow-ups (not correlated with the row updated)
    over = select(FollowUp.id).where(
        FollowUp.id.in_(select(theirs.followup_id).where(theirs.id > after, theirs.id <= last)),
        _followup_over(now, days))
    texts = session.execute(update(Message).where(span, own, or_(Message.followup_id.is_(None),
                                                                  Message.followup_id.in_(over.scalar_subquery())))
                            .values(body="", erased_at=now, erased_under=under)
                            .execution_options(synchronize_session=False)).rowcount or 0
    # the answers read from the texts this statement marked, found by follow-up first (answers have no index by text)
    marked = and_(span, Message.erased_at == now, Message.erased_under == under)
    followups = select(Message.followup_id).where(marked, Message.followup_id.is_not(None))
    answers = session.execute(update(Answer).where(Answer.followup_id.in_(followups.scalar_subquery()),
                                                   Answer.message_id.in_(select(Message.id).where(marked)
                                                                         .scalar_subquery()),
                                                   Answer.raw_text_erased_at.is_(None))
                              .values(raw_text=None, raw_text_erased_at=now, raw_text_erased_under=under)
                              .execution_options(synchronize_session=False)).rowcount or 0
    return texts, answers, last


def erase_due_phones(session: Session, settings: Settings, after: int, under: str,
                     now: dt.datetime) -> tuple[int, int | None]:
    """Erase the phone numbers due under RETAIN_PHONES_DAYS_AFTER_LAST_CONTACT among the next PHONE_BATCH participants
    after id ``after`` whose own row says they may be: (participants, the batch's last id, None when none is left)."""
    own = _phone_own(settings, now)
    batch = select(Patient.id).where(own, Patient.id > after).order_by(Patient.id).limit(PHONE_BATCH).subquery()
    last = session.scalar(select(func.max(batch.c.id)))
    if last is None:
        return 0, None
    due = list(session.scalars(select(Patient.id).where(Patient.id > after, Patient.id <= last, own,
                                                        _nothing_left(settings, now)).order_by(Patient.id)))
    return erase_phones(session, due, under, now), last


def _unmatched_due(settings: Settings, now: dt.datetime):
    """A text of no participant (from a number the service did not know, or a reply to one) that still holds a number,
    older than RETAIN_PHONES_DAYS_AFTER_LAST_CONTACT, and not waiting in the inbox for a person (they need the
    number to answer).  Without this rule those numbers were kept for ever."""
    cutoff = now - dt.timedelta(days=settings.retain_phones_days_after_last_contact)
    incoming, outgoing = Message.direction == "in", Message.direction == "out"
    return and_(Message.patient_id.is_(None), Message.created_at < cutoff,
                or_(and_(incoming, Message.from_number.is_not(None),
                         or_(Message.inbox_reason.is_(None), Message.handled_at.is_not(None))),
                    and_(outgoing, Message.to_number.is_not(None), Message.kind.not_in(TO_STAFF))))


def erase_due_unmatched_numbers(session: Session, settings: Settings, after: int,
                                now: dt.datetime) -> tuple[int, int | None]:
    """Erase the numbers of the texts of no participant due under RETAIN_PHONES_DAYS_AFTER_LAST_CONTACT among the next
    BATCH after id ``after``: (texts, the batch's last id, None when none is left)."""
    due = _unmatched_due(settings, now)
    batch = select(Message.id).where(due, Message.id > after).order_by(Message.id).limit(BATCH).subquery()
    last = session.scalar(select(func.max(batch.c.id)))
    if last is None:
        return 0, None
    incoming = Message.direction == "in"
    done = session.execute(update(Message).where(Message.id > after, Message.id <= last, due)
                           .values(from_number=case((incoming, None), else_=Message.from_number),
                                   to_number=case((incoming, Message.to_number), else_=None))
                           .execution_options(synchronize_session=False)).rowcount or 0
    return done, last


def _plan_for_this_range(session: Session) -> None:
    """On PostgreSQL, plan each batch's statements for its own id range.  The statements are the same text batch after
    batch, so psycopg prepares them after five and PostgreSQL may then keep a generic plan, blind to the range: for
    the words' update that plan walked every follow-up and probed the batch's texts for each (560 ms a batch of
    1,000 texts at 2,000 participants, against 30 ms planned for the range, and growing with the study)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


@dataclass
class RetentionRun:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    dry_run: bool = False
    finished: bool = True  # False: stopped by its time budget; the next run goes on
    batches: int = 0  # transactions committed
    longest_batch: float = 0.0  # seconds, the longest of them: how long a row stayed locked at most

    def describe(self) -> str:
        verb = "would erase" if self.dry_run else "erased"
        parts = [f"{KINDS[k]}: {n}" for k, n in self.counts.items()]
        return f"retention {verb} " + "; ".join(parts) + ("" if self.finished else " (to be continued)")


def _batches(sessions: sessionmaker[Session], step: Callable[[Session, int], tuple[int, int | None]],
             deadline: float | None, result: RetentionRun) -> tuple[int, bool]:
    """Apply ``step`` (how many it erased, and the last id it covered) one transaction each, until it covers nothing
    more (or the deadline).  Keyset order: each batch starts where the last ended, never from the start again."""
    total, after = 0, 0
    while True:
        if deadline is not None and time.monotonic() > deadline:
            return total, False
        started = time.monotonic()
        with unit_of_work(sessions) as session:
            _plan_for_this_range(session)
            done, last = step(session, after)
        result.batches += 1
        result.longest_batch = max(result.longest_batch, time.monotonic() - started)
        if last is None:
            return total, True
        total, after = total + done, last


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
            result.counts["unmatched_numbers"] = s.scalar(select(func.count()).select_from(Message)
                                                          .where(_unmatched_due(settings, now))) or 0
            result.counts["audit_rows"] = s.scalar(select(func.count()).select_from(AuditEvent).where(old_audit)) or 0
        return result
    deadline = time.monotonic() + budget_seconds if budget_seconds is not None else None

    def words(s: Session, after: int) -> tuple[int, int | None]:
        texts, answers, last = erase_due_words(s, settings.retain_message_bodies_days, after, RETENTION, now)
        result.counts["answer_words"] += answers
        return texts, last

    def old_audit_rows(s: Session, after: int) -> tuple[int, int | None]:
        batch = select(AuditEvent.id).where(old_audit, AuditEvent.id > after).order_by(AuditEvent.id).limit(BATCH)
        last = s.scalar(select(func.max(batch.subquery().c.id)))
        if last is None:
            return 0, None
        return s.execute(delete(AuditEvent).where(AuditEvent.id > after, AuditEvent.id <= last, old_audit)
                         .execution_options(synchronize_session=False)).rowcount or 0, last

    steps = [
        ("message_bodies", words),
        ("phone_numbers", lambda s, after: erase_due_phones(s, settings, after, RETENTION, now)),
        ("unmatched_numbers", lambda s, after: erase_due_unmatched_numbers(s, settings, after, now)),
        ("audit_rows", old_audit_rows),
    ]
    for kind, step in steps:
        result.counts[kind], finished = _batches(sessions, step, deadline, result)
        if not finished:
            result.finished = False
            break
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


def study_closed(session: Session) -> str | None:
    """When and by whom the study was closed, in words (None: it is open).  A closed study takes no new contact
    details: imports and phone corrections are refused (:func:`refuse_if_closed`), so nobody is texted again."""
    rows = session.execute(select(AuditEvent.at, AuditEvent.actor)  # through its partial index: no sort, no scan
                           .where(AuditEvent.action == STUDY_CLOSED)).all()
    if not rows:
        return None
    first = min(rows)
    return f"the study was closed on {first.at:%Y-%m-%d} by {first.actor}"


def refuse_if_closed(session: Session, error: type[Exception], what: str = "") -> None:
    """Raise ``error`` (saying ``what`` was not done, when given) if the study is closed: its phone numbers were
    erased and it contacts nobody, and a new number in it would be texted by the next wave or check-in."""
    _closing_lock(session, exclusive=False)  # held to the end of the caller's transaction: a closing waits for it
    closed = study_closed(session)
    if closed:
        raise error(f"{closed}, and a closed study takes no new patients or phone numbers" + (f": {what}" if what
                                                                                                else ""))


CLOSING_LOCK = 0x636C6F73  # "clos": the advisory lock that orders the study's closing and what it refuses


def _closing_lock(session: Session, *, exclusive: bool) -> None:
    """On PostgreSQL, a transaction-long advisory lock: shared by each import, admission and phone correction as it
    checks that the study is open, exclusive for closing it.  A closing waits for those under way (their numbers
    are then erased with the rest), and those that start meanwhile wait for it and then see it closed.  SQLite's
    write transactions run one at a time already (BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name == "postgresql":
        lock = func.pg_advisory_xact_lock if exclusive else func.pg_advisory_xact_lock_shared
        session.execute(select(lock(CLOSING_LOCK)))


def participant_count(session: Session) -> int:
    """The number the person closing the study types back: participants whose phone is not erased yet."""
    return session.scalar(select(func.count()).select_from(Patient).where(Patient.phone_erased_at.is_(None))) or 0


def close_study(session: Session, *, actor: str, reason: str) -> StudyClosed:
    """End all contact and erase every phone number and every text's words at once, keeping the coded, de-identified
    data and the audit.  One transaction: all of it, or nothing."""
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("say why the study is closed (--reason)")
    _closing_lock(session, exclusive=True)  # after every import or correction under way; none starts meanwhile
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
    session.execute(update(Message).where(Message.direction == "out", Message.kind.not_in(TO_STAFF))
                    .values(to_number=None))
    session.execute(delete(BlockedNumber))  # the wrong-number list is of numbers too; nothing is sent any more
    session.execute(update(Alert).where(Alert.resolution_note.is_not(None))
                    .values(resolution_note=marker(now, STUDY_CLOSE)))
    closed = StudyClosed(participants, cancelled, len(open_followups), texts, answers, phones)
    audit(session, STUDY_CLOSED, actor=actor, reason=reason, participants=participants, texts_cancelled=cancelled,
          followups_closed=len(open_followups), texts_erased=texts, answers_erased=answers, phones_erased=phones)
    return closed
