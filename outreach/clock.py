"""The service's one clock: naive UTC now (``utcnow``), read by every part of the service from here.

Time runs as the system's unless a :class:`Clock` of its own is put in place with :func:`using`: the demo,
``make serve`` and tests that simulate days passing do that.  The clock in place is held in a context
variable, so it holds for the code run in that thread (and in what it starts with
:func:`contextvars.copy_context`, or in the requests of a web app built with it), and for nothing else:
two tests, or a demo and a server in one process, cannot move each other's time.
"""
from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator


class Clock:
    """System time shifted by an offset that only moves forward when told to (:meth:`advance`)."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC).replace(tzinfo=None) + self.offset

    def advance(self, delta: dt.timedelta) -> None:
        self.offset += delta

    def follow(self, moment: dt.datetime) -> None:
        """Move forward to ``moment`` (naive UTC); a moment already past changes nothing."""
        self.advance(max(moment - self.now(), dt.timedelta(0)))


class _SystemClock(Clock):
    """The clock in place when none other is: the system's, never moved."""

    def advance(self, delta: dt.timedelta) -> None:
        raise RuntimeError("the system clock cannot be moved: put a Clock of your own in place with using()")


SYSTEM = _SystemClock()
_current: ContextVar[Clock] = ContextVar("outreach_clock", default=SYSTEM)


def utcnow() -> dt.datetime:
    """Naive UTC now, by the clock in place."""
    return _current.get().now()


def current() -> Clock:
    return _current.get()


@contextmanager
def using(clock: Clock | None = None) -> Iterator[Clock]:
    """Put ``clock`` (a new one when None) in place for the code run inside the block."""
    clock = clock or Clock()
    token = _current.set(clock)
    try:
        yield clock
    finally:
        _current.reset(token)


def set_for_this_context(clock: Clock) -> object:
    """Put ``clock`` in place until :func:`restore` (a web request's start and end); returns the token."""
    return _current.set(clock)


def restore(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]
