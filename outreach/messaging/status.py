"""Delivery status callbacks: statuses only move forward; some errors change the patient."""
from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from conversations.machine import ACTIVE

from ..config import Settings
from ..db import audit, unit_of_work
from ..models import EarlyStatus, FollowUp, Message, Patient
from ..phones import mask
from .opt_outs import set_opt_out
from ..repository import close, lock_phone
from .send_rule import STOP
from ..states import Delivery

log = logging.getLogger(__name__)

RANK = {Delivery.ACCEPTED: 0, Delivery.SCHEDULED: 0, Delivery.QUEUED: 1, Delivery.SENDING: 2, Delivery.SENT: 3,
        Delivery.FAILED: 4, Delivery.UNDELIVERED: 4, Delivery.DELIVERED: 4, Delivery.PARTIALLY_DELIVERED: 4,
        Delivery.CANCELLED: 4, Delivery.RECEIVING: 4, Delivery.RECEIVED: 4, Delivery.READ: 5}
TWILIO_WORDS = {"canceled": Delivery.CANCELLED}  # Twilio's spelling -> the state we store
CANCELLED_BY_TWILIO = "Twilio cancelled it before it was sent"
OPTED_OUT = 21610
CARRIER_FAILURES = {30003, 30005, 30006}
KEEP_EARLY_STATUS = dt.timedelta(days=7)  # a kept callback whose sid is never recorded is purged after this
SID_LOCKS = 0x73696473  # "sids": the advisory-lock class of _lock_sid (two-key locks; inbound uses one key)


def reminder_hours(settings: Settings) -> list[float]:
    return list(settings.reminder_hours)


def is_last_attempt(msg: Message, followup: FollowUp | None, settings: Settings) -> bool:
    """True when no further contact attempt is planned after this invitation or reminder."""
    if followup is None or msg.kind not in ("invitation", "reminder"):
        return False
    return followup.reminders_sent >= len(reminder_hours(settings))


def update_status(sessions: sessionmaker[Session], settings: Settings, sid: str, status: str,
                  error_code: int | None) -> str:
    """Apply one status callback.  Returns what happened (for logs and tests).

    A callback for a sid no message has yet is kept (``early_statuses``): Twilio can call back before the
    worker has recorded the sid the API returned, and the worker applies it when it records it."""
    if not sid:
        return "no sid"
    with unit_of_work(sessions) as s:
        msg = _by_sid(s, sid)
        if msg is None:
            _lock_sid(s, sid)
            msg = _by_sid(s, sid)  # recorded while we waited for the lock: apply it now
            if msg is None:
                s.add(EarlyStatus(sid=sid, status=(status or "").lower(), error_code=error_code))
                return "kept until the sid is recorded"
        return _apply(s, settings, msg, status, error_code)


def apply_early_statuses(s: Session, settings: Settings, msg: Message) -> int:
    """In the transaction that records ``msg.provider_sid``: apply the callbacks kept for that sid, in the
    order they arrived, by the rules of a callback that finds its message.  Returns how many there were."""
    _lock_sid(s, msg.provider_sid)
    kept = s.execute(delete(EarlyStatus).where(EarlyStatus.sid == msg.provider_sid)
                     .returning(EarlyStatus.id, EarlyStatus.status, EarlyStatus.error_code,
                                EarlyStatus.received_at)).all()
    for row in sorted(kept, key=lambda r: (r.received_at, r.id)):
        _apply(s, settings, msg, row.status, row.error_code)
    if kept:
        log.info("message %s: applied %d status callback(s) that came before its sid was recorded", msg.id,
                 len(kept))
    return len(kept)


def purge_early_statuses(s: Session, now: dt.datetime) -> int:
    """Forget kept callbacks that never found their message (another application's texts, or a send
    whose outcome was never recorded) once KEEP_EARLY_STATUS has passed."""
    return s.execute(delete(EarlyStatus).where(EarlyStatus.received_at < now - KEEP_EARLY_STATUS)).rowcount or 0


def _by_sid(s: Session, sid: str) -> Message | None:
    return s.scalar(select(Message).where(Message.provider_sid == sid).with_for_update())


def _lock_sid(s: Session, sid: str) -> None:
    """Serialise, per sid, a callback that finds no message with the worker recording that sid, so a
    callback is either kept before the worker looks for kept ones, or finds the message (PostgreSQL; a
    SQLite transaction holds the database's write lock already)."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(select(func.pg_advisory_xact_lock(SID_LOCKS, func.hashtext(sid))))


def _apply(s: Session, settings: Settings, msg: Message, status: str, error_code: int | None) -> str:
    status = (status or "").lower()
    status = TWILIO_WORDS.get(status, status)
    if status not in RANK:  # a word Twilio may add one day: never stored as a state nothing else knows
        log.warning("message %s: status callback with a status this service does not know (%.40r), ignored",
                    msg.id, status)
        return "ignored (unknown status)"
    if msg.status == Delivery.CANCELLED or (RANK[status] <= RANK.get(msg.status, -1) and msg.status in RANK):
        return "ignored (status would move backwards)"
    msg.status = status
    if status == Delivery.CANCELLED:
        msg.error_message = CANCELLED_BY_TWILIO
    if error_code:
        msg.error_code = error_code
    if error_code == OPTED_OUT and msg.patient_id:
        patient = s.get(Patient, msg.patient_id)
        set_opt_out(s, lock_phone(s, patient.phone), True, STOP)
        audit(s, "opted_out", actor="carrier", patient_id=patient.id, error_code=error_code)
        log.info("carrier reports %s opted out", mask(patient.phone))
    elif error_code in CARRIER_FAILURES and status in Delivery.NOT_DELIVERED:
        followup = s.get(FollowUp, msg.followup_id) if msg.followup_id else None
        if followup is not None and followup.state in ACTIVE and is_last_attempt(msg, followup, settings):
            close(followup, "fail_delivery")
            audit(s, "undeliverable", actor="carrier", patient_id=followup.patient_id, error_code=error_code)
    return f"status {status}"
