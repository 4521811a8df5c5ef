"""Delivery status callbacks: statuses only move forward; some errors change the patient."""
from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from conversations.machine import ACTIVE

from .config import Settings
from .db import audit, unit_of_work
from .models import FollowUp, Message, Patient
from .phones import mask
from .repository import close, lock_phone, set_opt_out

log = logging.getLogger(__name__)

RANK = {"accepted": 0, "scheduled": 0, "queued": 1, "sending": 2, "sent": 3, "failed": 4, "undelivered": 4,
        "delivered": 4, "receiving": 4, "received": 4, "read": 5}
OPTED_OUT = 21610
CARRIER_FAILURES = {30003, 30005, 30006}


def reminder_hours(settings: Settings) -> list[float]:
    return [float(x) for x in settings.get("REMINDER_HOURS").split(",") if x.strip()]


def is_last_attempt(msg: Message, followup: FollowUp | None, settings: Settings) -> bool:
    """True when no further contact attempt is planned after this invitation or reminder."""
    if followup is None or msg.kind not in ("invitation", "reminder"):
        return False
    return followup.reminders_sent >= len(reminder_hours(settings))


def update_status(sessions: sessionmaker[Session], settings: Settings, sid: str, status: str,
                  error_code: int | None) -> str:
    """Apply one status callback.  Returns what happened (for logs and tests)."""
    with unit_of_work(sessions) as s:
        msg = s.scalar(select(Message).where(Message.provider_sid == sid).with_for_update())
        if msg is None:
            return "unknown sid"
        status = (status or "").lower()
        if RANK.get(status, -1) <= RANK.get(msg.status, -1) and msg.status in RANK:
            return "ignored (status would move backwards)"
        msg.status = status
        if error_code:
            msg.error_code = error_code
        if error_code == OPTED_OUT and msg.patient_id:
            patient = s.get(Patient, msg.patient_id)
            set_opt_out(s, lock_phone(s, patient.phone), True)
            audit(s, "opted_out", actor="carrier", patient_id=patient.id, error_code=error_code)
            log.info("carrier reports %s opted out", mask(patient.phone))
        elif error_code in CARRIER_FAILURES and status in ("undelivered", "failed"):
            followup = s.get(FollowUp, msg.followup_id) if msg.followup_id else None
            if followup is not None and followup.state in ACTIVE and is_last_attempt(msg, followup, settings):
                close(followup, "fail_delivery")
                audit(s, "undeliverable", actor="carrier", patient_id=followup.patient_id, error_code=error_code)
        return f"status {status}"
