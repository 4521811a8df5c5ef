"""Crisis alerts for coordinators: texted to those on call, listed, resolved with a note (audited)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select, union_all
from sqlalchemy.orm import Session, aliased

from conversations.machine import ACTIVE, FollowUpState, transition

from ..config import local_time
from ..db import audit
from ..models import Alert, AuditEvent, FollowUp, Message, Patient
from ..clock import utcnow
from ..repository import lock_phone
from ..states import AlertState, Delivery


@dataclass(frozen=True)
class OpenAlert:
    id: int
    patient_id: str | None  # None: the sender's number matches no patient
    opened_at: dt.datetime
    message: str
    followup_state: str | None
    from_number: str | None = None
    resolved_at: dt.datetime | None = None
    resolved_by: str | None = None
    resolution_note: str | None = None
    taken_by: str | None = None

    @property
    def state(self) -> str:
        return AlertState.of(self)


def _alerts(session: Session, *, include_resolved: bool = False) -> list:
    """The one read of alerts behind the CLI's list and the console's queue: open ones (or every one), oldest
    first, each with its patient, the text that raised it, the follow-up's state, who took and resolved it."""
    query = (select(Alert.id, Alert.kind, Alert.patient_id.label("patient_pk"), Patient.patient_id, Alert.opened_at,
                    Message.body, FollowUp.state, Message.from_number, Alert.taken_by, Alert.taken_at,
                    Alert.resolved_at, Alert.resolved_by, Alert.resolution_note, Alert.escalated_at,
                    Alert.escalation_reason, Alert.preview, Alert.on_call_queued_at, Alert.on_call_texted_at)
             .outerjoin(Patient, Patient.id == Alert.patient_id)
             .outerjoin(Message, Message.id == Alert.message_id)
             .outerjoin(FollowUp, FollowUp.id == Alert.followup_id)
             .order_by(Alert.opened_at, Alert.id))
    if not include_resolved:
        query = query.where(Alert.resolved_at.is_(None))
    return session.execute(query).all()


def open_alerts(session: Session, *, include_resolved: bool = False) -> list[OpenAlert]:
    """Open alerts, oldest first; with ``include_resolved`` every alert, with who resolved it and the note."""
    return [OpenAlert(r.id, r.patient_id, r.opened_at, r.body, r.state, r.from_number, r.resolved_at, r.resolved_by,
                      r.resolution_note, r.taken_by) for r in _alerts(session, include_resolved=include_resolved)]


class AlertError(ValueError):
    pass


def _lock_conversation_of(session: Session, alert: Alert | None) -> Alert | None:
    """Take the patient's phone lock (the order every writer of a conversation follows), then the
    alert's row, read afresh."""
    if alert is None:
        return None
    if alert.patient_id is not None:
        lock_phone(session, session.get(Patient, alert.patient_id).phone)
    return session.get(Alert, alert.id, with_for_update=True, populate_existing=True)


def resolve_alert(session: Session, alert_id: int, note: str, actor: str, address: str | None = None,
                  zone: ZoneInfo | None = None) -> Alert:
    """Close an alert (the CLI and the console both call this).  When no other alert stays open, the
    paused follow-up resumes where it stopped, silently: nothing is sent until the patient writes
    again (their reminders stay off).  Times in an error are in ``zone`` (default UTC)."""
    if not note.strip():
        raise AlertError("a note is required")
    alert = _lock_conversation_of(session, session.get(Alert, alert_id))
    if alert is None:
        raise AlertError(f"no alert with id {alert_id}")
    if alert.resolved_at is not None:
        when = local_time(alert.resolved_at, zone or ZoneInfo("UTC"))
        raise AlertError(f"alert {alert_id} was already resolved on {when} by {alert.resolved_by}")
    now = utcnow()
    alert.resolved_at, alert.resolved_by, alert.resolution_note = now, actor, note.strip()
    followup = session.get(FollowUp, alert.followup_id, populate_existing=True) if alert.followup_id else None
    still_open = session.scalar(select(Alert.id).where(Alert.followup_id == alert.followup_id,
                                                       Alert.resolved_at.is_(None), Alert.id != alert.id))
    resumed = {}
    if followup is not None and followup.state == FollowUpState.CRISIS and still_open is None:
        transition(followup, "resume")
        followup.paused_state = None
        # The patient may go on whenever they wish; no automatic "still there?" right after a crisis.
        followup.stall_reminded_at = followup.stall_reminded_at or now
        # The time the survey spent paused is given back, as resuming a coordinator's pause does: a window that
        # ran out meanwhile must not expire the follow-up at the next tick.
        paused_for = now - _paused_since(session, followup.id, now)
        old_expiry = followup.expires_at
        if followup.expires_at is not None:
            followup.expires_at = followup.expires_at + paused_for
        resumed = dict(paused_seconds=int(paused_for.total_seconds()),
                       expires_at_before=old_expiry.isoformat(timespec="seconds") if old_expiry else None,
                       expires_at=followup.expires_at.isoformat(timespec="seconds") if followup.expires_at else None)
    audit(session, "crisis_alert_resolved", actor=actor, patient_id=alert.patient_id, address=address,
          alert_id=alert.id, note=note.strip(), **resumed)
    session.flush()
    return alert


def _paused_since(session: Session, followup_id: int, now: dt.datetime) -> dt.datetime:
    """When the crisis pause that ends now began: the start of the run of overlapping alerts of the follow-up
    that lasts until now (a second alert opened during the first one's pause extends the same pause)."""
    spans = sorted((opened, resolved or now) for opened, resolved in session.execute(
        select(Alert.opened_at, Alert.resolved_at).where(Alert.followup_id == followup_id)))
    start, end = now, None
    for opened, closed in spans:
        if end is None or opened > end:
            start, end = opened, closed
        else:
            end = max(end, closed)
    return min(start, now)


def open_alert_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Alert).where(Alert.resolved_at.is_(None))) or 0


@dataclass(frozen=True)
class ContextMessage:
    at: dt.datetime
    direction: str
    kind: str | None
    body: str


@dataclass(frozen=True)
class QueuedAlert:
    """One open alert as the console's queue shows it."""
    id: int
    kind: str
    patient_pk: int | None
    patient_id: str | None  # the study id; None for an unknown number
    opened_at: dt.datetime
    age: dt.timedelta
    overdue: bool
    message: str
    taken_by: str | None
    taken_at: dt.datetime | None
    before: list[ContextMessage]  # up to five earlier messages of the conversation, oldest first
    since: list[ContextMessage] = ()  # the patient's texts after the one that raised it, oldest first (new)
    on_call: list[tuple[str, int]] = ()  # the on-call and escalation texts by state: ("delivered", 2), ...
    escalated_at: dt.datetime | None = None
    escalation_reason: str | None = None
    preview: bool = False

    @property
    def state(self) -> str:
        """Open, or taken by a coordinator (a queued alert is never resolved)."""
        return AlertState.of(SimpleNamespace(resolved_at=None, taken_by=self.taken_by))


def alert_queue(session: Session, *, now: dt.datetime, overdue_after: dt.timedelta,
                context: int = 5) -> list[QueuedAlert]:
    """Open alerts, oldest first, each with the message that raised it and the ones before it.
    Two queries whatever the number of alerts."""
    rows = _alerts(session)
    if not rows:
        return []
    trigger = aliased(Message)
    def earlier_than_trigger(same_conversation):
        return (select(Alert.id.label("alert_id"), Message.id.label("message_id"), Message.created_at,
                       Message.direction, Message.kind, Message.body)
                .join(trigger, trigger.id == Alert.message_id)
                .join(Message, and_(Message.id < trigger.id, same_conversation))
                .where(Alert.resolved_at.is_(None), Message.kind.is_distinct_from("alert")))

    # Two branches, each able to use an index (an OR in one join made PostgreSQL compare every pair).
    candidates = union_all(
        earlier_than_trigger(Message.patient_id == Alert.patient_id),
        earlier_than_trigger(and_(Alert.patient_id.is_(None), or_(Message.from_number == trigger.from_number,
                                                                  Message.to_number == trigger.from_number))),
    ).subquery()
    earlier = select(candidates, func.row_number().over(
        partition_by=candidates.c.alert_id, order_by=candidates.c.message_id.desc()).label("n")).subquery()
    before: dict[int, list[ContextMessage]] = {}
    for alert_id, at, direction, kind, body in session.execute(
            select(earlier.c.alert_id, earlier.c.created_at, earlier.c.direction, earlier.c.kind, earlier.c.body)
            .where(earlier.c.n <= context).order_by(earlier.c.alert_id, earlier.c.n.desc())):
        before.setdefault(alert_id, []).append(ContextMessage(at, direction, kind, body or ""))
    since: dict[int, list[ContextMessage]] = {}
    for alert_id, at, body, _ in session.execute(_texts_since_opened().order_by("alert_id", "message_id")):
        since.setdefault(alert_id, []).append(ContextMessage(at, "in", None, body or ""))
    on_call: dict[int, list[tuple[str, int]]] = {}
    for alert_id, status, n in session.execute(
            select(Message.alert_id, Message.status, func.count())
            .join(Alert, Alert.id == Message.alert_id)
            .where(Alert.resolved_at.is_(None), Message.kind == "alert", Message.direction == "out")
            .group_by(Message.alert_id, Message.status)):
        on_call.setdefault(alert_id, []).append((ON_CALL_STATES.get(status, status), n))
    return [QueuedAlert(id=r.id, kind=r.kind, patient_pk=r.patient_pk, patient_id=r.patient_id, opened_at=r.opened_at,
                        age=now - r.opened_at, overdue=now - r.opened_at > overdue_after, message=r.body or "",
                        taken_by=r.taken_by, taken_at=r.taken_at, before=before.get(r.id, []),
                        since=since.get(r.id, []), on_call=sorted(on_call.get(r.id, [])),
                        escalated_at=r.escalated_at, escalation_reason=r.escalation_reason, preview=bool(r.preview))
            for r in rows]


# The on-call texts' states as the alert's card says them.
ON_CALL_STATES = {Delivery.PENDING: "queued", Delivery.CLAIMED: "being sent", Delivery.ACCEPTED: "sent",
                  Delivery.QUEUED: "sent", Delivery.SENDING: "sent", Delivery.SENT: "sent",
                  Delivery.DELIVERED: "delivered", Delivery.READ: "delivered",
                  Delivery.PARTIALLY_DELIVERED: "delivered", Delivery.FAILED: "failed",
                  Delivery.UNDELIVERED: "failed", Delivery.CANCELLED: "cancelled"}


def _texts_since_opened():
    """(alert_id, created_at, body, message_id) of every text the patient (or, for an unknown number, the number)
    sent after the one that raised each open alert: a person in crisis who keeps writing is seen on the card."""
    trigger = aliased(Message)

    def later(same_conversation):
        return (select(Alert.id.label("alert_id"), Message.created_at, Message.body, Message.id.label("message_id"))
                .join(trigger, trigger.id == Alert.message_id)
                .join(Message, and_(Message.id > trigger.id, Message.direction == "in", Message.preview.is_(False),
                                    same_conversation))
                .where(Alert.resolved_at.is_(None)))

    return union_all(later(Message.patient_id == Alert.patient_id),
                     later(and_(Alert.patient_id.is_(None), Message.from_number == trigger.from_number)))


def new_texts_on_open_alerts(session: Session) -> int:
    """How many texts patients sent after their alert opened, on the alerts still open (the header shows it)."""
    return session.scalar(select(func.count()).select_from(_texts_since_opened().subquery())) or 0


def take_alert(session: Session, alert_id: int, actor: str, address: str | None = None) -> Alert:
    """Record who is handling an open alert (another coordinator may take it over; both are audited)."""
    alert = session.get(Alert, alert_id, with_for_update=True)
    if alert is None:
        raise AlertError(f"no alert with id {alert_id}")
    if alert.resolved_at is not None:
        raise AlertError(f"alert {alert_id} was already resolved by {alert.resolved_by}")
    previous = alert.taken_by
    alert.taken_by, alert.taken_at = actor, utcnow()
    audit(session, "crisis_alert_taken", actor=actor, patient_id=alert.patient_id, address=address,
          alert_id=alert.id, taken_over_from=previous)
    session.flush()
    return alert


def flag_as_crisis(session: Session, message_id: int, actor: str, address: str | None = None) -> Alert:
    """A coordinator saw danger in a text the phrase list missed: open an alert for it and pause the
    survey, as a detected crisis would.  Flagged texts are listed by ``outreach lexicon missed``."""
    msg = session.get(Message, message_id)
    if msg is None or msg.direction != "in":
        raise AlertError(f"no text from a patient with id {message_id}")
    if msg.patient_id is not None:  # the conversation's lock first, as the webhook takes it
        lock_phone(session, session.get(Patient, msg.patient_id).phone)
    existing = session.scalar(select(Alert).where(Alert.message_id == message_id))
    if existing is not None:
        raise AlertError(f"this text already has alert #{existing.id}")
    followup = (session.get(FollowUp, msg.followup_id, populate_existing=True, with_for_update=True)
                if msg.followup_id else None)
    if followup is not None and followup.state in ACTIVE:
        followup.paused_state = followup.state
        transition(followup, "pause")
    alert = Alert(kind="flagged", patient_id=msg.patient_id, followup_id=msg.followup_id, message_id=msg.id,
                  opened_at=utcnow())
    session.add(alert)
    session.flush()
    audit(session, "crisis_flagged", actor=actor, patient_id=msg.patient_id, address=address, alert_id=alert.id,
          message_id=msg.id)
    return alert


def missed_by_detector(session: Session) -> list[tuple[int, dt.datetime, str, str | None]]:
    """Texts coordinators flagged as crisis that the phrase list did not catch: (alert, when, text, by)."""
    flagged_by = select(func.max(AuditEvent.actor)).where(
        AuditEvent.action == "crisis_flagged", AuditEvent.details["alert_id"].as_integer() == Alert.id
    ).scalar_subquery()
    rows = session.execute(select(Alert.id, Alert.opened_at, Message.body, flagged_by)
                           .join(Message, Message.id == Alert.message_id)
                           .where(Alert.kind == "flagged").order_by(Alert.opened_at))
    return [(a, at, body or "", who) for a, at, body, who in rows]
