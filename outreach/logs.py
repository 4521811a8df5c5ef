"""Logging that never shows a full phone number.

Every record passes through :class:`MaskPhones`, which masks anything that
looks like a phone number, as a last line of defence behind the explicit
``mask()`` calls.  Twilio's HTTP client logs request parameters (numbers
included) at INFO, so its logger is kept at WARNING.
"""
from __future__ import annotations

import logging
import os
import re
import sys

from .phones import mask, mask_raw

_E164 = re.compile(r"\+\d{8,15}")
_LOOSE = re.compile(r"(?<!\w)(?:\(?\d{3}\)?[ .-]?\d{3}[ .-]?\d{4})(?!\w)")


def mask_text(text: str) -> str:
    return _LOOSE.sub(lambda m: mask_raw(m.group()), _E164.sub(lambda m: mask(m.group()), text))


class MaskPhones(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask_text(record.getMessage())
        record.args = None
        return True


class _Handler(logging.StreamHandler):
    """Writes to the given stream, or to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    _stream = None

    @property
    def stream(self):  # type: ignore[override]
        return self._stream or sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        self._stream = value


def configure_logging(stream=None) -> logging.Handler:
    """Log to stderr (LOG_LEVEL, default INFO) through the phone-masking filter; safe to call twice."""
    root = logging.getLogger()
    for h in root.handlers:
        if getattr(h, "_outreach", False):
            return h
    handler = _Handler(stream)
    handler.addFilter(MaskPhones())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler._outreach = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    for noisy in ("twilio", "urllib3", "transitions"):  # twilio logs numbers; transitions every step
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
