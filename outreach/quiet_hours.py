"""Quiet hours: invitations and reminders reach a patient only inside SEND_WINDOW, in their zone.

``SEND_WINDOW`` reads like ``Mon-Fri 09:00-20:00; Sat-Sun 10:00-18:00``.
Openings are computed per local calendar day with zoneinfo, so they stay
right across daylight-saving changes.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

from .config import ConfigError

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_PART = re.compile(r"^\s*([a-z]{3})(?:\s*-\s*([a-z]{3}))?\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$", re.I)


@dataclass(frozen=True)
class SendWindow:
    by_weekday: tuple[tuple[dt.time, dt.time] | None, ...]  # Monday = 0

    def opening(self, utc_now: dt.datetime, zone: str) -> dt.datetime:
        """``utc_now`` if it lies inside the window in ``zone``, else the next opening (naive UTC)."""
        tz = ZoneInfo(zone)
        aware = utc_now.replace(tzinfo=dt.UTC)
        local_day = aware.astimezone(tz).date()
        for offset in range(8):
            day = local_day + dt.timedelta(days=offset)
            hours = self.by_weekday[day.weekday()]
            if hours is None:
                continue
            start = dt.datetime.combine(day, hours[0], tzinfo=tz).astimezone(dt.UTC)
            end = dt.datetime.combine(day, hours[1], tzinfo=tz).astimezone(dt.UTC)
            if aware < start:
                return start.replace(tzinfo=None)
            if aware < end:
                return utc_now
        raise ConfigError("SEND_WINDOW has no opening in a whole week")

    def is_open(self, utc_now: dt.datetime, zone: str) -> bool:
        return self.opening(utc_now, zone) == utc_now


@lru_cache(maxsize=32)
def parse_window(spec: str) -> SendWindow:
    days: list[tuple[dt.time, dt.time] | None] = [None] * 7
    for part in filter(str.strip, spec.split(";")):
        m = _PART.match(part)
        if not m or m.group(1).lower() not in DAYS or (m.group(2) and m.group(2).lower() not in DAYS):
            raise ConfigError(f"SEND_WINDOW: cannot read {part.strip()!r} (expected e.g. 'Mon-Fri 09:00-20:00')")
        first = DAYS.index(m.group(1).lower())
        last = DAYS.index((m.group(2) or m.group(1)).lower())
        start = dt.time(int(m.group(3)), int(m.group(4)))
        end = dt.time(int(m.group(5)), int(m.group(6))) if m.group(5) != "24" else dt.time(23, 59, 59)
        if end <= start:
            raise ConfigError(f"SEND_WINDOW: {part.strip()!r} ends before it starts")
        for d in range(first, last + 1) if first <= last else [*range(first, 7), *range(0, last + 1)]:
            days[d] = (start, end)
    return SendWindow(tuple(days))
