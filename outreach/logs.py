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

``LOG_FORMAT=json`` writes one JSON object a line (time, level, logger, message, request id, exception), cleaned
the same way.  The request id (:func:`request_context`) is the Twilio MessageSid for a webhook's text, and the
worker applying that text from the spool logs under the same id; a console page has its own (or the proxy's
``X-Request-Id``), sent back in the response's ``X-Request-Id``.
"""
from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import os
import re
import sys
import traceback
import uuid
from contextlib import contextmanager
from typing import Iterator

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


_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("outreach_request_id", default=None)
# What may be a request id: a Twilio sid (SM + 32 hex digits), a UUID, a proxy's own token; never free text.
_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def valid_request_id(value: str | None) -> str | None:
    return value if value and _ID.fullmatch(value) else None


def current_request_id() -> str | None:
    return _REQUEST_ID.get()


def new_request_id() -> str:
    return uuid.uuid4().hex


def bind_request_id(request_id: str) -> contextvars.Token:
    """Log under ``request_id`` until :func:`unbind_request_id` (a web request's hooks)."""
    return _REQUEST_ID.set(request_id)


def unbind_request_id(token: contextvars.Token) -> None:
    _REQUEST_ID.reset(token)


@contextmanager
def request_context(request_id: str | None) -> Iterator[str | None]:
    """Every record logged inside carries ``request_id`` (kept as it is when it is not a valid id)."""
    token = _REQUEST_ID.set(valid_request_id(request_id) or _REQUEST_ID.get())
    try:
        yield _REQUEST_ID.get()
    finally:
        _REQUEST_ID.reset(token)


class JsonFormatter(CleanFormatter):
    """One JSON object a line: time (UTC), level, logger, message, request_id, process, exception."""

    def format(self, record: logging.LogRecord) -> str:
        clean_record(record)
        entry = {"time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
                 "level": record.levelname, "logger": record.name, "message": record.getMessage(),
                 "request_id": getattr(record, "request_id", None), "process": record.process}
        if record.exc_info and not record.exc_text:
            record.exc_text = safe_traceback(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return mask_text(json.dumps(entry, ensure_ascii=False))


def install_record_cleaning() -> None:
    """Make every log record of this process go through :func:`clean_record` when it is made (idempotent)."""
    current = logging.getLogRecordFactory()
    if getattr(current, "_outreach", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = clean_record(current(*args, **kwargs))
        record.request_id = _REQUEST_ID.get()
        return record

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
    install_record_cleaning()
    root = logging.getLogger()
    for h in root.handlers:
        if getattr(h, "_outreach", False):
            h.setFormatter(_formatter())
            return h
    handler = _Handler(stream)
    handler.addFilter(MaskPhones())
    handler.setFormatter(_formatter())
    handler._outreach = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    level = (os.environ.get("LOG_LEVEL") or "INFO").strip().upper()
    root.setLevel(level if level in LOG_LEVELS else "INFO")  # a wrong one is refused by name when settings load
    for noisy in ("twilio", "urllib3", "transitions"):  # twilio logs numbers; transitions every step
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler


def json_logs() -> bool:
    """LOG_FORMAT=json (a wrong value is refused by name when settings load)."""
    return (os.environ.get("LOG_FORMAT") or "").strip().lower() == "json"


def _formatter() -> logging.Formatter:
    """LOG_FORMAT: json, else text."""
    if json_logs():
        return JsonFormatter()
    return CleanFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
