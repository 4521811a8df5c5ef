"""Quiet hours in the patient's own zone, across daylight-saving changes and weekends."""
import datetime as dt

import pytest

from outreach.config import ConfigError
from outreach.quiet_hours import parse_window

WINDOW = parse_window("Mon-Fri 09:00-20:00; Sat-Sun 10:00-18:00")
U = dt.datetime  # naive UTC


@pytest.mark.parametrize("now, zone, expected", [
    # Weekday inside the window: now.
    (U(2026, 11, 25, 15, 0), "America/Toronto", U(2026, 11, 25, 15, 0)),
    # Weekday 08:00 EST -> 09:00 EST = 14:00 UTC.
    (U(2026, 11, 25, 13, 0), "America/Toronto", U(2026, 11, 25, 14, 0)),
    # Friday 20:30 EST -> Saturday 10:00 EST.
    (U(2026, 11, 28, 1, 30), "America/Toronto", U(2026, 11, 28, 15, 0)),
    # Saturday 18:00 sharp is closed -> Sunday 10:00.
    (U(2026, 11, 28, 23, 0), "America/Toronto", U(2026, 11, 29, 15, 0)),
    # Spring forward (Sun 8 Mar 2026): Saturday 19:00 EST -> Sunday 10:00 EDT = 14:00 UTC.
    (U(2026, 3, 8, 0, 0), "America/Toronto", U(2026, 3, 8, 14, 0)),
    # Fall back (Sun 1 Nov 2026): Sunday 01:30 PDT (first) -> Sunday 10:00 PST = 18:00 UTC.
    (U(2026, 11, 1, 8, 30), "America/Vancouver", U(2026, 11, 1, 18, 0)),
    # Same instant, Toronto is already inside Sunday's window? 03:30 EST -> no, 10:00 EST = 15:00 UTC.
    (U(2026, 11, 1, 8, 30), "America/Toronto", U(2026, 11, 1, 15, 0)),
    # Monday after spring forward: 09:00 EDT = 13:00 UTC (an hour earlier in UTC than the week before).
    (U(2026, 3, 9, 12, 0), "America/Toronto", U(2026, 3, 9, 13, 0)),
    (U(2026, 3, 2, 12, 0), "America/Toronto", U(2026, 3, 2, 14, 0)),
    # Vancouver weekday 17:00 PST is open while Toronto (20:00) is closed.
    (U(2026, 11, 26, 1, 0), "America/Vancouver", U(2026, 11, 26, 1, 0)),
    (U(2026, 11, 26, 1, 0), "America/Toronto", U(2026, 11, 26, 14, 0)),
])
def test_next_opening(now, zone, expected):
    assert WINDOW.opening(now, zone) == expected


def test_is_open_matches_opening():
    assert WINDOW.is_open(U(2026, 11, 25, 15, 0), "America/Toronto")
    assert not WINDOW.is_open(U(2026, 11, 25, 3, 0), "America/Toronto")


@pytest.mark.parametrize("spec", ["Mon-Fri 9-20", "Funday 09:00-10:00", "Mon 10:00-09:00", ""])
def test_bad_window_is_a_clear_error(spec):
    with pytest.raises(ConfigError, match="SEND_WINDOW"):
        parse_window(spec).opening(U(2026, 1, 1), "UTC")


def test_wrapping_day_range_and_all_day():
    w = parse_window("Sat-Mon 00:00-24:00")
    assert w.is_open(U(2026, 11, 30, 12, 0), "UTC")  # Monday
    assert not w.is_open(U(2026, 12, 1, 12, 0), "UTC")  # Tuesday
