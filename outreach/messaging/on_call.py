"""The coordinators on call (``ALERT_SMS_TO``): who they are, and the text each crisis alert sends them."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from ..config import ConfigError, Settings
from ..phones import PhoneError, parse_phone


def on_call_numbers(settings: Settings) -> list[str]:
    """``ALERT_SMS_TO`` in E.164 (empty when unset); a number that cannot be read stops the service, and the
    error names which entry it is (its position and, when it does not look like a full number, as written)."""
    from ..logs import mask_text

    entries = [raw.strip() for raw in (settings.optional("ALERT_SMS_TO") or "").split(",")]
    numbers = []
    for position, raw in enumerate(entries, start=1):
        if not raw:
            continue
        try:
            numbers.append(parse_phone(raw, settings.default_region))
        except PhoneError as exc:
            reason = str(exc).split(" (", 1)[0]  # the entry is named below, as written
            raise ConfigError(f"ALERT_SMS_TO: a number {reason}: entry {position} of {len(entries)}, "
                              f"{mask_text(raw)!r} (numbers are separated by commas)") from None
    return numbers


def on_call_text(org: str, alert_id: int, opened_at: dt.datetime, zone: ZoneInfo) -> str:
    """The text to the coordinators on call: which alert and when, nothing about the patient."""
    local = opened_at.replace(tzinfo=dt.UTC).astimezone(zone)
    return (f"{org}: crisis alert #{alert_id} opened at {local:%H:%M %Z} ({local:%b %d}). "
            f"Please review it now: outreach alerts list")
