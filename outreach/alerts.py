"""Crisis alerts for coordinators: texted to those on call, listed, resolved with a note (audited)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from conversations.machine import transition

from .config import ConfigError, Settings
from .db import audit
from .models import Alert, FollowUp, Message, Patient, utcnow
from .phones import PhoneError, parse_phone


def on_call_numbers(settings: Settings) -> list[str]:
    """``ALERT_SMS_TO`` in E.164 (empty when unset); a number that cannot be read stops the service."""
    numbers = []
    for raw in (settings.optional("ALERT_SMS_TO") or "").split(","):
        if raw.strip():
            try:
                numbers.append(parse_phone(raw, settings.default_region))
            except PhoneError as exc:
                raise ConfigError(f"ALERT_SMS_TO: a number {exc}") from None
    return numbers


def on_call_text(org: str, alert_id: int, opened_at: dt.datetime, zone: ZoneInfo) -> str:
    """The text to the coordinators on call: which alert and when, nothing about the patient."""
    local = opened_at.replace(tzinfo=dt.UTC).astimezone(zone)
    return (f"{org}: crisis alert #{alert_id} opened at {local:%H:%M %Z} ({local:%b %d}). "
            f"Please review it now: outreach alerts list")


@dataclass(frozen=True)
class OpenAlert:
    id: int
    patient_id: str | None  # None: the sender's number matches no patient
    opened_at: dt.datetime
    message: str
    followup_state: str | None
    from_number: str | None = None


def open_alerts(session: Session) -> list[OpenAlert]:
    rows = session.execute(
        select(Alert.id, Patient.patient_id, Alert.opened_at, Message.body, FollowUp.state, Message.from_number)
        .outerjoin(Patient, Patient.id == Alert.patient_id)
        .outerjoin(Message, Message.id == Alert.message_id)
        .outerjoin(FollowUp, FollowUp.id == Alert.followup_id)
        .where(Alert.resolved_at.is_(None)).order_by(Alert.opened_at, Alert.id))
    return [OpenAlert(*row) for row in rows]


class AlertError(ValueError):
    pass


def resolve_alert(session: Session, alert_id: int, note: str, actor: str) -> Alert:
    """Close an alert.  When no other alert stays open, the paused follow-up resumes where it stopped,
    silently: nothing is sent until the patient writes again (their reminders stay off)."""
    alert = session.get(Alert, alert_id, with_for_update=True)
    if alert is None:
        raise AlertError(f"no alert with id {alert_id}")
    if alert.resolved_at is not None:
        raise AlertError(f"alert {alert_id} was already resolved on {alert.resolved_at:%Y-%m-%d %H:%M} UTC")
    if not note.strip():
        raise AlertError("a note is required")
    alert.resolved_at, alert.resolved_by, alert.resolution_note = utcnow(), actor, note.strip()
    audit(session, "crisis_alert_resolved", actor=actor, patient_id=alert.patient_id, alert_id=alert.id,
          note=note.strip())
    followup = session.get(FollowUp, alert.followup_id) if alert.followup_id else None
    still_open = session.scalar(select(Alert.id).where(Alert.followup_id == alert.followup_id,
                                                       Alert.resolved_at.is_(None), Alert.id != alert.id))
    if followup is not None and followup.state == "crisis" and still_open is None:
        transition(followup, "resume")
        followup.paused_state = None
        # The patient may go on whenever they wish; no automatic "still there?" right after a crisis.
        followup.stall_reminded_at = followup.stall_reminded_at or utcnow()
    session.flush()
    return alert
