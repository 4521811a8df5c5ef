"""Logging that never shows a phone number or a patient's words.

Every log record is cleaned when it is made (a record factory, so every handler sees the clean
record: ours, gunicorn's, pytest's ``caplog``), and our handler's formatter cleans its output once
more as a last line of defence behind the explicit ``mask()`` calls:

* phone numbers are masked anywhere in the record, traceback and exception messages included
  (E.164 ``+14165550123``, with spaces or dashes ``+33 6 12 34 56 78``, and national forms
  ``(416) 555-0123``, ``1-416-555-0123``, ``416.555.0123``, ``06 12 34 56 78``);
* an exception's text loses what a database driver copies into it from the data: the bound
  parameters (engines are also made with ``hide_parameters=True``, :func:`outreach.db.make_engine`),
  PostgreSQL's ``DETAIL`` (``Failing row contains (…)``), ``CONTEXT`` and ``HINT`` lines, and any
  quoted value (``invalid input syntax for type integer: "…"``); quoted names of columns, tables and
  constraints stay.

:func:`error_summary` is the same cleaning for an error stored on a row (``messages.error_message``):
the exception's type and the first line of its cleaned message.

Twilio's HTTP client logs request parameters (numbers and bodies) at INFO, so its logger is kept at
WARNING.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import traceback

from .phones import mask, mask_raw

# International: a + and 7 to 15 digits, possibly grouped by spaces, dots, dashes or brackets.
_INTERNATIONAL = re.compile(r"(?<![\w+])\+\d(?:[ .\-()]{0,2}\d){6,14}(?!\d)")
# North American: (416) 555-0123, 416-555-0123, 416.555.0123, 4165550123, 1-416-555-0123.
_NANP = re.compile(r"(?<![\w+])(?:1[ .-]?)?\(?[2-9]\d{2}\)?[ .-]?\d{3}[ .-]?\d{4}(?!\w)")
# National forms with a trunk 0: 06 12 34 56 78 (France), 07700 900123 (UK), 030 1234567 (Germany).
_TRUNK_ZERO = re.compile(r"(?<![\w+])0[1-9](?:[ .-]?\d){7,10}(?!\w)")

# What a database driver copies from the data into an error: lines and bracketed blocks.
_DRIVER_LINES = re.compile(r"^[ \t]*(?:DETAIL|CONTEXT|HINT|WHERE|QUERY|STATEMENT|LINE \d+):.*(?:\n|$)", re.M)
_PARAMETERS = re.compile(r"^[ \t]*\[(?:SQL )?parameters: .*(?:\n|$)", re.M)
_BACKGROUND = re.compile(r"^[ \t]*\(Background on this error at: [^)]*\)[ \t]*(?:\n|$)", re.M)
# A quoted value, unless a word saying it is a name comes just before it (column "status").
_QUOTED = re.compile(r"""(\b[A-Za-z_]+\s+)?("[^"\n]*"|'[^'\n]*')""")
_NAME_WORDS = {"column", "columns", "relation", "constraint", "table", "index", "type", "schema", "database",
               "function", "sequence", "role", "savepoint", "operator", "trigger", "view", "extension",
               "cursor", "domain", "collation", "attribute"}
REDACTED = "'…'"


def _mask_international(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match.group())
    return mask("+" + digits)


def mask_text(text: str) -> str:
    """Every phone number in ``text`` masked (country code and last four digits, or last two digits)."""
    text = _INTERNATIONAL.sub(_mask_international, text)
    text = _NANP.sub(lambda m: mask_raw(m.group()), text)
    return _TRUNK_ZERO.sub(lambda m: mask_raw(m.group()), text)


def _redact_quoted(text: str) -> str:
    def keep_names(m: re.Match) -> str:
        word = (m.group(1) or "").strip().lower()
        return m.group() if word in _NAME_WORDS else (m.group(1) or "") + REDACTED
    return _QUOTED.sub(keep_names, text)


def scrub(text: str) -> str:
    """A log message or formatted record without driver data (parameters, DETAIL …) and phone numbers."""
    text = _PARAMETERS.sub("", _DRIVER_LINES.sub("", text))
    return mask_text(_BACKGROUND.sub("", text))


def scrub_exception_text(text: str) -> str:
    """An exception's message as it may be shown: :func:`scrub`, and quoted values redacted."""
    return scrub(_redact_quoted(text)).rstrip()


def error_summary(exc: BaseException, limit: int = 500) -> str:
    """What may be stored about an error on a row: ``Type: first line of the cleaned message``."""
    lines = [line.strip() for line in scrub_exception_text(str(exc)).splitlines() if line.strip()]
    summary = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return summary[:limit]


def _chain(exc: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and all(exc is not e for e in seen):
        seen.append(exc)
        exc = exc.__cause__ if exc.__cause__ is not None else (None if exc.__suppress_context__ else exc.__context__)
    return seen


def safe_traceback(exc_info) -> str:
    """The traceback as ``logging`` would write it, with every exception's message cleaned."""
    etype, value, tb = exc_info
    text = "".join(traceback.format_exception(etype, value, tb))
    for exc in _chain(value):
        try:
            raw = str(exc)
        except Exception:  # pragma: no cover - a broken __str__
            continue
        if raw:
            text = text.replace(raw, scrub_exception_text(raw))
    return scrub(text).rstrip("\n")


def clean_record(record: logging.LogRecord) -> logging.LogRecord:
    """Clean a record in place: its message, its traceback (``exc_text``) and its stack."""
    if getattr(record, "_outreach_clean", False):
        return record
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: leave it to logging's own error handling
        return record
    record.msg, record.args = scrub(message), None
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        record.exc_text = safe_traceback(record.exc_info)
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)
    record._outreach_clean = True  # type: ignore[attr-defined]
    return record


class MaskPhones(logging.Filter):
    """Kept for handlers set up elsewhere: cleans the record like the record factory does."""

    def filter(self, record: logging.LogRecord) -> bool:
        clean_record(record)
        return True


class CleanFormatter(logging.Formatter):
    """Formats through :func:`clean_record` and cleans the finished line once more."""

    def formatException(self, ei) -> str:  # noqa: N802 - logging's name
        return safe_traceback(ei)

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(clean_record(record)))


def _install_record_factory() -> None:
    current = logging.getLogRecordFactory()
    if getattr(current, "_outreach", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        return clean_record(current(*args, **kwargs))

    factory._outreach = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


class _Handler(logging.StreamHandler):
    """Writes to the given stream, or to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    _stream = None

    @property
    def stream(self):  # type: ignore[override]
        return self._stream or sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        self._stream = value


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def configure_logging(stream=None) -> logging.Handler:
    """Log to stderr (LOG_LEVEL, default INFO) through the cleaning formatter; safe to call twice."""
    _install_record_factory()
    root = logging.getLogger()
    for h in root.handlers:
        if getattr(h, "_outreach", False):
            return h
    handler = _Handler(stream)
    handler.addFilter(MaskPhones())
    handler.setFormatter(CleanFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler._outreach = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    level = (os.environ.get("LOG_LEVEL") or "INFO").strip().upper()
    root.setLevel(level if level in LOG_LEVELS else "INFO")  # a wrong one is refused by name when settings load
    for noisy in ("twilio", "urllib3", "transitions"):  # twilio logs numbers; transitions every step
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
