"""``outreach tick``: reminders and expiry, one set-based pass (the worker runs it every minute).

A follow-up a coordinator has paused (``FollowUp.held_at``) is skipped by all three duties, one of a cancelled
wave gets no reminder (a conversation under way goes on); no reminder or
nudge is queued for a patient the service may not text now (no consent, opted out, phone invalid: the rule of
:mod:`outreach.messaging.send_rule`)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from conversations.engine import Context, current_prompt, invitation
from conversations.machine import ACTIVE, QUESTION_STATES, FollowUpState, transition

from ..config import Settings
from ..states import Delivery
from ..models import FollowUp, Message, Patient, Wave
from ..clock import utcnow
from ..messaging.send_rule import can_be_texted
from ..messaging.status import purge_early_statuses, reminder_hours


@dataclass
class TickStats:
    reminders: int = 0
    stalled: int = 0
    expired: int = 0

    def __str__(self) -> str:
        return f"queued {self.reminders} reminder(s), {self.stalled} stalled-survey reminder(s); expired {self.expired}"


def tick(session: Session, settings: Settings, now: dt.datetime | None = None) -> TickStats:
    now = now or utcnow()
    stats = TickStats()
    org = settings.org_name
    # 1. Unanswered invitations: the k-th reminder once REMINDER_HOURS[k] have passed.
    for k, hours in enumerate(reminder_hours(settings)):
        rows = session.execute(
            select(FollowUp.id, FollowUp.patient_id, FollowUp.timepoint_days, Patient.phone, Patient.language)
            .join(Patient, Patient.id == FollowUp.patient_id)
            .where(~select(Wave.id).where(Wave.id == FollowUp.wave_id, Wave.cancelled_at.is_not(None)).exists())
            .where(FollowUp.state == FollowUpState.INVITED, FollowUp.reminders_sent == k, FollowUp.last_inbound_at.is_(None),
                   FollowUp.invited_at <= now - dt.timedelta(hours=hours), FollowUp.expires_at > now,
                   FollowUp.held_at.is_(None), can_be_texted())).all()
        _queue(session, now, "reminder", [
            (r.id, r.patient_id, r.phone, invitation(r.timepoint_days, Context(language=r.language, org=org),
                                                     reminder=True)) for r in rows])
        if rows:
            session.execute(update(FollowUp), [{"id": r.id, "reminders_sent": k + 1} for r in rows])
        stats.reminders += len(rows)
    # 2. Stalled mid-survey: the current question once more, once.
    stall = dt.timedelta(hours=settings.stall_hours)
    stalled = session.execute(
        select(FollowUp, Patient.language, Patient.phone).join(Patient, Patient.id == FollowUp.patient_id)
        .where(FollowUp.state.in_(QUESTION_STATES), FollowUp.stall_reminded_at.is_(None),
               FollowUp.last_inbound_at <= now - stall, FollowUp.expires_at > now,
               FollowUp.held_at.is_(None), can_be_texted())).all()
    items = []
    for f, language, phone in stalled:
        ctx = Context(language=language, org=org)
        items.append((f.id, f.patient_id, phone, ctx.text("stalled", question=current_prompt(f, ctx))))
        f.stall_reminded_at = now
    _queue(session, now, "stalled", items)
    stats.stalled = len(stalled)
    # 3. Expiry: partial answers are kept; anything still queued for the follow-up is cancelled.
    # Same protocol as an inbound message (outreach.messaging.inbound): lock the patients, then read. A follow-up
    # whose patient has a message being applied right now waits for the next tick; one applied a moment
    # ago is read as it now is, so expiry never overwrites an answer (or is overwritten by one).
    # A follow-up a coordinator has paused (held) gets no automatic text and does not expire meanwhile.
    due = expire_followups(session, now, FollowUp.state.in_(ACTIVE), FollowUp.expires_at <= now,
                           FollowUp.held_at.is_(None))
    if due:
        session.execute(update(Message).where(Message.followup_id.in_([f.id for f in due]),
                                              Message.status == Delivery.PENDING)
                        .values(status=Delivery.CANCELLED, error_message="follow-up expired", updated_at=now))
    stats.expired = len(due)
    purge_early_statuses(session, now)
    session.flush()
    return stats


def expire_followups(session: Session, now: dt.datetime, *conditions) -> list[FollowUp]:
    """End (expire) every follow-up that meets ``conditions``, by the protocol of an inbound text
    (:mod:`outreach.messaging.inbound`): lock their patients' rows first, skipping a patient whose text is being
    applied right now (their follow-up waits for the next round), then read the follow-ups again under the lock,
    so that one just answered is seen as it now is and never overwritten.  Returns those ended."""
    locked = session.scalars(select(FollowUp.id).join(Patient, Patient.id == FollowUp.patient_id)
                             .where(*conditions).with_for_update(of=Patient, skip_locked=True)).all()
    ended = session.scalars(select(FollowUp).where(FollowUp.id.in_(locked), *conditions)
                            .execution_options(populate_existing=True)).all() if locked else []
    for followup in ended:
        transition(followup, "expire")
        followup.closed_at = now
    return ended


def _queue(session: Session, now: dt.datetime, kind: str, items: list[tuple[int, int, str, str]]) -> None:
    if items:
        session.execute(insert(Message), [
            {"direction": "out", "kind": kind, "status": Delivery.PENDING, "followup_id": fid, "patient_id": pid,
             "to_number": phone, "body": body, "send_after": now, "attempts": 0, "media_count": 0,
             "created_at": now, "updated_at": now} for fid, pid, phone, body in items])

