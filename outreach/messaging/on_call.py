"""The coordinators on call (``ALERT_SMS_TO``): who they are, and the text each crisis alert sends them; and the
escalation (``ALERT_ESCALATE_TO``) of an alert nobody takes, or whose on-call text failed."""
from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo

from sqlalchemy import exists, insert, or_, select, update
from sqlalchemy.orm import Session

from ..clock import utcnow
from ..config import Settings
from ..db import audit
from ..models import Alert, Message
from ..states import Delivery

log = logging.getLogger(__name__)


def on_call_numbers(settings: Settings) -> list[str]:
    """``ALERT_SMS_TO`` in E.164 (empty when unset), as read when the settings were loaded: a number that
    cannot be read stops the process at start, naming the entry."""
    return list(settings.alert_sms_to)


def alerts_address(base_url: str | None) -> str:
    """Where a coordinator opens the alert queue from a phone: the console's, on PUBLIC_BASE_URL (without it, the
    command line's)."""
    return f"{base_url.rstrip('/')}/console/alerts" if base_url else "outreach alerts list"


def on_call_text(org: str, alert_id: int, opened_at: dt.datetime, zone: ZoneInfo, base_url: str | None = None) -> str:
    """The text to the coordinators on call: which alert and when, and where to open it; nothing about the
    patient."""
    local = opened_at.replace(tzinfo=dt.UTC).astimezone(zone)
    return (f"{org}: crisis alert #{alert_id} opened at {local:%H:%M %Z} ({local:%b %d}). "
            f"Please review it now: {alerts_address(base_url)}")


def escalation_text(org: str, alert_id: int, opened_at: dt.datetime, zone: ZoneInfo, reason: str,
                    base_url: str | None = None) -> str:
    """The text to ALERT_ESCALATE_TO: which alert, since when, why it is escalated, where to open it."""
    local = opened_at.replace(tzinfo=dt.UTC).astimezone(zone)
    why = "the text to the coordinators on call failed" if reason == ON_CALL_FAILED else "nobody has taken it"
    return (f"{org}: ESCALATED crisis alert #{alert_id}, opened at {local:%H:%M %Z} ({local:%b %d}): {why}. "
            f"Please review it now: {alerts_address(base_url)}")


NOT_TAKEN = "not_taken"
ON_CALL_FAILED = "on_call_failed"


def escalate_alerts(session: Session, settings: Settings, now: dt.datetime | None = None) -> list[int]:
    """Text ALERT_ESCALATE_TO about each crisis alert (once) that nobody took within ALERT_ESCALATE_MINUTES, or
    whose text to the coordinators on call failed; a coordinator's preview is never escalated.  Taking or
    resolving an alert stops it.  Returns the escalated alerts' ids; without ALERT_ESCALATE_TO, none."""
    numbers = list(settings.alert_escalate_to)
    if not numbers:
        return []
    now = now or utcnow()
    waiting = (Alert.taken_at.is_(None), Alert.resolved_at.is_(None), Alert.escalated_at.is_(None),
               Alert.preview.is_(False))
    failed = exists().where(Message.alert_id == Alert.id, Message.kind == "alert",  # a cancelled one never went
                            Message.status.in_((*Delivery.NOT_DELIVERED, Delivery.CANCELLED)))
    late = Alert.opened_at <= now - dt.timedelta(minutes=settings.alert_escalate_minutes)
    rows = session.execute(select(Alert.id, Alert.opened_at, failed.label("failed"))
                           .where(*waiting, or_(late, failed)).with_for_update(of=Alert, skip_locked=True)).all()
    zone = settings.coordinator_zone
    for alert_id, opened_at, on_call_failed in rows:
        reason = ON_CALL_FAILED if on_call_failed else NOT_TAKEN
        body = escalation_text(settings.org_name, alert_id, opened_at, zone, reason, settings.public_base_url)
        session.execute(update(Alert).where(Alert.id == alert_id)
                        .values(escalated_at=now, escalation_reason=reason))
        session.execute(insert(Message), [
            {"direction": "out", "kind": "alert", "status": Delivery.PENDING, "to_number": number, "body": body,
             "alert_id": alert_id, "send_after": now, "attempts": 0, "media_count": 0, "created_at": now,
             "updated_at": now} for number in numbers])
        audit(session, "crisis_alert_escalated", actor="system", alert_id=alert_id, reason=reason,
              texted=len(numbers))
        log.warning("alert %s escalated (%s): %d number(s) texted", alert_id, reason, len(numbers))
    return [r[0] for r in rows]
