"""The coordinators on call (``ALERT_SMS_TO``): who they are, and the text each crisis alert sends them."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from ..config import Settings


def on_call_numbers(settings: Settings) -> list[str]:
    """``ALERT_SMS_TO`` in E.164 (empty when unset), as read when the settings were loaded: a number that
    cannot be read stops the process at start, naming the entry."""
    return list(settings.alert_sms_to)


def on_call_text(org: str, alert_id: int, opened_at: dt.datetime, zone: ZoneInfo) -> str:
    """The text to the coordinators on call: which alert and when, nothing about the patient."""
    local = opened_at.replace(tzinfo=dt.UTC).astimezone(zone)
    return (f"{org}: crisis alert #{alert_id} opened at {local:%H:%M %Z} ({local:%b %d}). "
            f"Please review it now: outreach alerts list")
