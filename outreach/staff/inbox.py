"""The inbox: every patient's text that a person must read, because the service did not use it (not an answer,
a keyword, an acknowledgement or a crisis text): free text mid-survey, anything after the survey ended or when
none was under way, media, texts from unknown numbers and "wrong number" replies.

Each text's reason is decided when it is applied (``messages.inbox_reason``, from the conversation engine).
A text a patient sends while their crisis alert is open is shown on the alert's card instead
(:mod:`outreach.staff.alerts`), until the alert is resolved.  Each waiting text has a response-time target,
``INBOX_RESPONSE_HOURS``: its age is shown and an older one is overdue; marking it handled records who, when
and how long it waited.  Once a day (``INBOX_DIGEST_AT``) the coordinators on call get the counts by text.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import and_, exists, func, insert, select
from sqlalchemy.orm import Session, aliased

from ..clock import utcnow
from ..config import Settings
from ..db import audit, audit_each_patient
from ..models import Alert, AuditEvent, Message, Patient
from ..phones import mask
from ..states import Delivery

INBOX_REASONS = {
    "not_an_answer": "not an answer to the survey's question",
    "after_survey": "wrote after the survey ended",
    "no_survey": "wrote when no survey was under way",
    "media": "sent a picture or other media",
    "unknown": "from a number no patient has",
    "wrong_number": "says this is a wrong number",
}


class InboxError(ValueError):
    """An inbox action that cannot be done; the message says why."""


@dataclass(frozen=True)
class InboxItem:
    message_id: int
    at: dt.datetime
    reasons: tuple[str, ...]  # keys of INBOX_REASONS
    patient_pk: int | None
    study_id: str | None  # None: unknown number
    from_number: str  # masked
    body: str
    media_count: int
    age: dt.timedelta = dt.timedelta(0)
    overdue: bool = False

    @property
    def reason(self) -> str:
        return "; ".join(INBOX_REASONS.get(r, r) for r in self.reasons)

    @property
    def who(self) -> str:
        return self.study_id if self.study_id is not None else f"unknown number {self.from_number}"


def _waiting():
    """The texts waiting for a person: a reason, not handled, not a preview, not on an alert's card (sent after
    the patient's alert opened and before it was resolved)."""
    trigger = aliased(Message)
    on_a_card = (exists().where(Alert.patient_id == Message.patient_id, Alert.message_id == trigger.id,
                                trigger.id < Message.id,
                                (Alert.resolved_at.is_(None)) | (Alert.resolved_at > Message.created_at)))
    return and_(Message.direction == "in", Message.inbox_reason.is_not(None), Message.handled_at.is_(None),
                Message.preview.is_(False), ~on_a_card)


def inbox_items(session: Session, settings: Settings | None = None, limit: int = 200, *, now: dt.datetime | None = None,
                overdue_only: bool = False, actor: str | None = None, address: str | None = None) -> list[InboxItem]:
    """The texts waiting for a person, oldest first, with their age and whether they are overdue (older than
    INBOX_RESPONSE_HOURS).  With ``actor`` the look is audited (``viewed_inbox``, one row per patient)."""
    now = now or utcnow()
    target = dt.timedelta(hours=settings.inbox_response_hours if settings is not None else 24)
    query = (select(Message.id, Message.created_at, Message.body, Message.from_number, Message.media_count,
                    Message.patient_id, Message.inbox_reason, Patient.patient_id.label("study_id"))
             .outerjoin(Patient, Patient.id == Message.patient_id)
             .where(_waiting()).order_by(Message.id).limit(limit))
    if overdue_only:
        query = query.where(Message.created_at <= now - target)
    items = [InboxItem(r.id, r.created_at, (r.inbox_reason,), r.patient_id, r.study_id, mask(r.from_number),
                       r.body or "", r.media_count or 0, now - r.created_at, now - r.created_at > target)
             for r in session.execute(query)]
    if actor is not None:  # one row per patient shown (and one for texts from unknown numbers)
        shown: dict[int | None, dict] = {}
        for i in items:
            shown.setdefault(i.patient_pk, {"message_ids": []})["message_ids"].append(i.message_id)
        audit_each_patient(session, "viewed_inbox", shown or {None: {"message_ids": []}}, actor=actor,
                           address=address)
    return items


@dataclass(frozen=True)
class InboxCounts:
    waiting: int
    overdue: int
    oldest: dt.datetime | None


def inbox_counts(session: Session, settings: Settings, now: dt.datetime | None = None) -> InboxCounts:
    """How many texts wait for a person and how many of them are overdue (the console's header, the digest)."""
    now = now or utcnow()
    late = now - dt.timedelta(hours=settings.inbox_response_hours)
    waiting, overdue, oldest = session.execute(
        select(func.count(), func.count().filter(Message.created_at <= late), func.min(Message.created_at))
        .select_from(Message).where(_waiting())).one()
    return InboxCounts(waiting or 0, overdue or 0, oldest)


def mark_handled(session: Session, message_id: int, *, actor: str, address: str | None = None) -> Message:
    """A person has dealt with an inbound text: it leaves the inbox.  Audited (``inbox_handled``, with how long
    it waited)."""
    msg = session.get(Message, message_id, with_for_update=True)
    if msg is None or msg.direction != "in":
        raise InboxError("There is no such text from a patient.")
    if msg.handled_at is not None:
        raise InboxError(f"This text was already marked handled by {msg.handled_by} "
                         f"on {msg.handled_at:%Y-%m-%d %H:%M} UTC.")
    msg.handled_at, msg.handled_by = utcnow(), actor
    waited = int((msg.handled_at - msg.created_at).total_seconds())
    audit(session, "inbox_handled", actor=actor, patient_id=msg.patient_id, address=address, message_id=msg.id,
          waited_seconds=waited)
    session.flush()
    return msg


def time_to_read(session: Session, since: dt.datetime | None = None) -> list[tuple[dt.date, int, float, float]]:
    """Per week (its Monday): texts handled, and the median and 90th percentile of hours each waited to be read."""
    rows = session.execute(select(Message.created_at, Message.handled_at)
                           .where(Message.direction == "in", Message.inbox_reason.is_not(None),
                                  Message.handled_at.is_not(None), Message.preview.is_(False),
                                  *([Message.handled_at >= since] if since else []))).all()
    weeks: dict[dt.date, list[float]] = {}
    for created, handled in rows:
        monday = (handled - dt.timedelta(days=handled.weekday())).date()
        weeks.setdefault(monday, []).append((handled - created).total_seconds() / 3600)
    out = []
    for monday in sorted(weeks):
        hours = sorted(weeks[monday])
        out.append((monday, len(hours), _quantile(hours, 0.5), _quantile(hours, 0.9)))
    return out


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


DIGEST_DONE = "inbox_digest_sent"


def send_digest(session: Session, settings: Settings, now: dt.datetime | None = None) -> int:
    """Once a day, from INBOX_DIGEST_AT (CONSOLE_TIMEZONE), text the coordinators on call the counts (waiting,
    overdue, open alerts; never content) when anything waits.  Returns the number of texts queued (0: not due,
    already sent today, nothing waiting, or nobody on call)."""
    numbers = list(settings.alert_sms_to)
    if not numbers:
        return 0
    now = now or utcnow()
    zone = settings.coordinator_zone
    local = now.replace(tzinfo=dt.UTC).astimezone(zone)
    if local.time() < settings.inbox_digest_at:
        return 0
    today = local.date().isoformat()
    sent = session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == DIGEST_DONE, AuditEvent.at >= now - dt.timedelta(days=2)).where(
        AuditEvent.details["day"].as_string() == today))
    if sent:
        return 0
    counts = inbox_counts(session, settings, now)
    alerts = session.scalar(select(func.count()).select_from(Alert).where(Alert.resolved_at.is_(None),
                                                                         Alert.preview.is_(False))) or 0
    if not counts.waiting and not alerts:
        return 0
    where = (f" {settings.public_base_url.rstrip('/')}/console/inbox" if settings.public_base_url else "")
    body = (f"{settings.org_name}: {counts.waiting} text(s) waiting in the inbox, {counts.overdue} overdue; "
            f"{alerts} open crisis alert(s).{where}")
    session.execute(insert(Message), [
        {"direction": "out", "kind": "digest", "status": Delivery.PENDING, "to_number": number, "body": body,
         "send_after": now, "attempts": 0, "media_count": 0, "created_at": now, "updated_at": now}
        for number in numbers])
    audit(session, DIGEST_DONE, actor="system", day=today, waiting=counts.waiting, overdue=counts.overdue,
          alerts=alerts, texted=len(numbers))
    return len(numbers)
