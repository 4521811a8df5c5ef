"""Inbound SMS: store first, then process, one phone at a time in arrival order.

``receive`` is the whole unit of work behind ``POST /twilio/sms``, on one
database connection:
1. the message is stored and committed (idempotent by MessageSid);
2. it is processed in a second transaction that locks the sender's patient
   rows, so two messages from one phone are applied one after the other,
   earlier ones first; a failure rolls back and marks the row ``failed``
   (``outreach inbox replay`` retries it);
3. the replies stored for it are returned (the same ones on a repeat).

When the database cannot be reached, the request goes to the local spool instead
(:mod:`outreach.messaging.spool`) and is answered at once with what needs no database (the
safety reply, the HELP text); :meth:`Inbox.drain_spool` stores and applies the
spooled requests in arrival order as soon as the database answers again.

This is the hottest path of the service, so it speaks SQLAlchemy Core with
statements built once at import (their compiled form is cached) instead of
the ORM: usually nine round trips in all (an autocommit INSERT; BEGIN, the
lock, one read, the claim, the writes, COMMIT).  On PostgreSQL those statements
run straight on psycopg (see ``_run``): SQLAlchemy's execution cost as much CPU
as the rest of the request.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Mapping, Sequence
from zoneinfo import ZoneInfo

from psycopg.rows import namedtuple_row
from sqlalchemy import Connection, Engine, and_, bindparam, case, func, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from conversations.engine import Context, answer_unread, respond, respond_withdrawn
from conversations.lexicon import is_crisis

from .on_call import on_call_numbers, on_call_text
from ..config import Settings
from ..db import audit, is_unavailable
from ..logs import error_summary, request_context
from ..models import Alert, Answer, BlockedNumber, FollowUp, Message, Patient
from ..clock import utcnow
from ..phones import mask
from .opt_outs import block_number, set_opt_out
from ..repository import LOCK_PHONE, OPEN_STATES, insert_ignore
from .send_rule import STOP, WITHDRAWN_REPLY, WRONG_NUMBER, lifted_by_keyword
from ..states import Delivery, Processing
from .spool import DrainResult, Spool, SpoolError, Spooled
from .status import update_status
from .webhook_client import PREVIEW_FIELD

log = logging.getLogger(__name__)
_SID = re.compile(r"^[A-Za-z0-9]{10,64}$")
# An inbound row still unprocessed after this long has lost its request (gunicorn kills one after 30 s).
STUCK_AFTER = dt.timedelta(minutes=2)

# The follow-up columns the conversation engine reads or changes.
_ENGINE_COLUMNS = ("state", "paused_state", "retries", "started_at", "completed_at", "last_ack_at",
                   "last_inbound_at", "last_prompt_at", "crisis_line_at")
_IS_PENDING = and_(Message.direction == "in", Message.from_number == bindparam("phone"), Message.processed_at.is_(None),
                   Message.status == Processing.RECEIVED)
# Read after the lock (a fresh snapshot): the phone's patients, each follow-up newest first, and
# whether the message in hand is the only unprocessed one from this phone (the usual case).
_CONVERSATIONS = (
    select(Patient.id.label("patient_pk"), Patient.language, Patient.opted_out_at, Patient.opt_out_reason,
           Patient.sms_consent, Patient.withdrawn_at,
           FollowUp.id, FollowUp.patient_id, FollowUp.timepoint_days, *(getattr(FollowUp, c) for c in _ENGINE_COLUMNS),
           select(func.count()).select_from(Message).where(_IS_PENDING, Message.id < bindparam("upto"))
           .scalar_subquery().label("earlier_pending"),
           select(func.count()).select_from(Message).where(_IS_PENDING, Message.id == bindparam("upto"))
           .scalar_subquery().label("this_pending"),
           select(BlockedNumber.phone).where(BlockedNumber.phone == bindparam("phone")).exists().label("blocked"))
    .select_from(Patient).outerjoin(FollowUp, FollowUp.patient_id == Patient.id)
    .where(Patient.phone == bindparam("phone"))
    .order_by(FollowUp.invited_at.desc().nulls_last(), FollowUp.id.desc()))
_FOLLOWUP_KEYS = ("id", "patient_id", "timepoint_days", *_ENGINE_COLUMNS)
_PENDING = (select(Message.id, Message.from_number, Message.to_number, Message.body, Message.media_count,
                   Message.preview, Message.created_at, Message.carrier_keyword)
            .where(_IS_PENDING, Message.id <= bindparam("upto")).order_by(Message.id))
_MARK_PROCESSED = (update(Message).where(Message.id == bindparam("message_id"), Message.processed_at.is_(None))
                   .values(status=Processing.PROCESSED, processed_at=bindparam("now"), patient_id=bindparam("patient_pk"),
                           followup_id=bindparam("followup_pk")))
# A patient's text a person must read (outreach.staff.inbox): why, set when it is applied.
_MARK_INBOX = update(Message).where(Message.id == bindparam("message_id")).values(inbox_reason=bindparam("reason"))
_MESSAGE_BY_SID = select(Message.id).where(Message.provider_sid == bindparam("sid"))
_MARK_FAILED = (update(Message).where(Message.id == bindparam("message_id"), Message.processed_at.is_(None))
                .values(status=Processing.FAILED, error_message=bindparam("error")))
# A repeat is answered with what the first delivery answered in its response; replies queued for the worker
# (the text was applied late) are not: the worker sends those.
_REPLIES = (select(Message.body).where(Message.in_reply_to_id == bindparam("message_id"),
                                       Message.status == Delivery.TWIML)
            .order_by(Message.id))
# What was answered at once for a spooled text is stored with it before its patient is known: linked when applied.
_LINK_ANSWERED = (update(Message).where(Message.in_reply_to_id == bindparam("message_id"),
                                        Message.status == Delivery.TWIML,
                                        Message.patient_id.is_(None))
                  .values(patient_id=bindparam("patient_pk"), followup_id=bindparam("followup_pk")))
_INSERT_ANSWER = insert(Answer)
_INSERT_OUTBOUND = insert(Message)
_INSERT_ALERT = insert(Alert).returning(Alert.id)
# Crisis texts from numbers no patient has still get the safety reply and an alert, but the coordinators on
# call are texted about at most this many of them an hour: (from one number, from all unknown numbers).
UNKNOWN_SENDER_LIMITS = (1, 20)
ON_CALL_WINDOW = dt.timedelta(hours=1)
_UNKNOWN_SENDERS_TEXTED = (
    select(func.count(), func.count(case((Message.from_number == bindparam("phone"), 1))))
    .select_from(Alert).outerjoin(Message, Message.id == Alert.message_id)
    .where(Alert.patient_id.is_(None), Alert.on_call_queued_at >= bindparam("since")))
_UNKNOWN_SENDER_LOCK = select(func.pg_advisory_xact_lock(0x6F7574726561636B))  # "outreack": one lock, this path


@functools.cache
def _insert_inbound(dialect: str):
    """``INSERT`` of an inbound message that does nothing on a repeated MessageSid, returning the new id."""
    return (insert_ignore(dialect, Message).on_conflict_do_nothing(index_elements=["provider_sid"])
            .returning(Message.id))


# PostgreSQL: the store takes a lock on the phone (an advisory one, until its own commit) before the row gets its
# id, so one phone's ids are given and committed in the same order.  Without it a text could take an id, another
# from the same phone a higher one and commit first, and be applied before the first became visible ("arrival
# order" broken).  One autocommitted statement still: the lock costs no round trip.  (SQLite's write lock
# orders stores already.)
_STORE_LOCK_KEY = 1869968244
_PHONE_STORE_LOCK = text(f"SELECT pg_advisory_xact_lock({_STORE_LOCK_KEY}, hashtext(CAST(:phone AS TEXT)))")
_INSERT_INBOUND_PG = text(
    f"WITH phone_lock AS (SELECT pg_advisory_xact_lock({_STORE_LOCK_KEY}, hashtext(CAST(:from_number AS TEXT)))) "
    "INSERT INTO messages (direction, provider_sid, from_number, to_number, body, media_count, attempts, preview, "
    "carrier_keyword, status, error_message, created_at, updated_at) "
    "SELECT CAST(:direction AS VARCHAR), CAST(:provider_sid AS VARCHAR), CAST(:from_number AS VARCHAR), "
    "CAST(:to_number AS VARCHAR), CAST(:body AS TEXT), CAST(:media_count AS INTEGER), CAST(:attempts AS INTEGER), "
    "CAST(:preview AS BOOLEAN), CAST(:carrier_keyword AS VARCHAR), CAST(:status AS VARCHAR), "
    "CAST(:error_message AS TEXT), "
    "CAST(:created_at AS TIMESTAMP), CAST(:updated_at AS TIMESTAMP) FROM phone_lock "
    "ON CONFLICT (provider_sid) DO NOTHING RETURNING id")


@functools.cache
def _update_followup(columns: tuple[str, ...]):
    """``UPDATE followups SET <columns>`` for one set of changed columns (a handful occur; each built once)."""
    return (update(FollowUp).where(FollowUp.id == bindparam("followup_pk"))
            .values({c: bindparam(f"new_{c}") for c in columns}))


# -- PostgreSQL: the hot path's statements straight on the driver ---------------------------------------------
# Per statement, SQLAlchemy's execution (parameters, execution context, result) costs about twice the CPU of
# psycopg itself (0.11 against 0.05 ms, measured), and a text runs nine.  So on PostgreSQL the constant
# statements of the usual path run on the driver's connection, compiled once from the same Core statements;
# transactions stay SQLAlchemy's, and errors are raised as SQLAlchemy raises them (``is_unavailable``, a dead
# connection invalidated).  SQLite runs the same statements through Core.
@dataclass(frozen=True)
class _Compiled:
    sql: str
    fixed: dict[str, Any]  # the statement's own values (literals in .values(), constants in WHERE)
    computed: tuple[tuple[str, Any], ...]  # Python-side column defaults, onupdate (updated_at): (name, default)


@functools.cache
def _compiled(dialect: Any, stmt: Any, keys: tuple[str, ...] | None) -> _Compiled:
    compiled = stmt.compile(dialect=dialect, column_keys=list(keys) if keys is not None else None)
    fixed = {name: bp.effective_value for name, bp in compiled.binds.items() if not bp.required}
    computed = tuple((c.key, c.onupdate if c in compiled.update_prefetch else c.default)
                     for c in (*compiled.insert_prefetch, *compiled.update_prefetch))
    for name, _default in computed:
        fixed.pop(name, None)
    return _Compiled(compiled.string, fixed, computed)


def _pg_cursor(conn: Connection) -> Any:
    """One psycopg cursor per pooled connection, kept with it (rows as named tuples, like Core's)."""
    pooled = conn.connection
    cursor = pooled.info.get("outreach.messaging.inbound.cursor")
    if cursor is None or cursor.closed or cursor.connection is not pooled.driver_connection:
        cursor = pooled.info["outreach.messaging.inbound.cursor"] = pooled.driver_connection.cursor(row_factory=namedtuple_row)
    return cursor


def _run(conn: Connection, stmt: Any, params: Mapping[str, Any]) -> Any:
    """Execute one of the hot path's constant statements; the result answers ``fetchone()``, ``fetchall()``
    and ``rowcount`` on either path.  INSERTs take their column list from ``params``' keys."""
    if conn.dialect.name != "postgresql":
        return conn.execute(stmt, params)
    c = _compiled(conn.dialect, stmt, tuple(params) if getattr(stmt, "is_insert", False) else None)
    values = {**c.fixed, **params} if c.fixed else dict(params)
    for name, default in c.computed:
        if name not in values:
            values[name] = default.arg(None) if default.is_callable else default.arg
    cursor = _pg_cursor(conn)
    try:  # prepared at once, not at psycopg's fifth use (unless preparing is off: prepare_threshold None)
        cursor.execute(c.sql, values, prepare=None if cursor.connection.prepare_threshold is None else True)
    except BaseException as exc:  # as Core does: wrapped, the connection invalidated when it is gone
        conn._handle_dbapi_exception(exc, c.sql, None, None, None)
    return cursor


def conversation_for(patients: Sequence[Any], followups: Sequence[Any]) -> tuple[Any, Any]:
    """Whose message is this?  ``followups`` come newest first.  The patient with an open follow-up
    wins (shared phones); else the one with the latest follow-up; else the first patient."""
    if not patients:
        return None, None
    by_id = {p.id: p for p in patients}
    for fu in followups:
        if fu.state in OPEN_STATES:
            return by_id[fu.patient_id], fu
    if followups:
        return by_id[followups[0].patient_id], followups[0]
    return patients[0], None


def _clean(value: Any, limit: int | None = None) -> str:
    text = "" if value is None else str(value)
    text = text.replace("\x00", "\ufffd")
    return text[:limit] if limit else text


# Twilio's Advanced Opt-Out marks a text it acted on with OptOutType; the keywords the engine reads for them.
OPT_OUT_TYPES = {"STOP": "opt_out", "START": "opt_in", "HELP": "help"}


@dataclass(frozen=True)
class InboundSMS:
    sid: str | None
    from_number: str | None
    to_number: str | None
    body: str
    media_count: int
    problems: tuple[str, ...] = field(default_factory=tuple)
    preview: bool = False  # sent by a coordinator through `outreach chat` (see webhook_client.PREVIEW_FIELD)
    carrier_keyword: str | None = None  # Twilio's OptOutType (Advanced Opt-Out), as the engine names it

    @classmethod
    def from_form(cls, form: Mapping[str, Any]) -> "InboundSMS":
        problems = []
        sid = _clean(form.get("MessageSid") or form.get("SmsSid"))
        if not _SID.match(sid):
            problems.append("MessageSid is missing or malformed")
            sid = None
        sender = _clean(form.get("From"), 32)
        if not sender:
            problems.append("From is missing")
        try:
            media = max(0, min(int(form.get("NumMedia") or 0), 100))
        except (TypeError, ValueError):
            media = 0
        # Only trusted because the webhook checked the request's signature over the whole form: Twilio never
        # sends this field and a patient cannot add one, so only a holder of the auth token can set it.
        preview = _clean(form.get(PREVIEW_FIELD)) == "1"
        return cls(sid=sid, from_number=sender or None, to_number=_clean(form.get("To"), 32) or None,
                   body=_clean(form.get("Body")), media_count=media, problems=tuple(problems), preview=preview,
                   carrier_keyword=OPT_OUT_TYPES.get(_clean(form.get("OptOutType"), 16).strip().upper()))


@dataclass
class Received:
    message_id: int | None  # None: spooled (the database was unavailable)
    replies: list[str]
    duplicate: bool = False
    rejected: str | None = None
    spooled: bool = False
    unavailable: bool = False  # neither the database nor the spool could take it (answer 503)


# While the database is known to be down, requests go straight to the spool; one request a second tries it.
PROBE_EVERY = 1.0
# A request that finds texts spooled on its host drains them first, waiting at most DRAIN_WAIT for another
# process's drain to let go and spending at most DRAIN_BUDGET on it; if texts are still spooled then, its own
# text is spooled behind them (arrival order kept) and a thread of this process drains the rest.
DRAIN_WAIT = 0.5
DRAIN_BUDGET = 2.0
# Set on an outage raised after the text was stored: it may even have been applied, its commit's answer lost.
STORED_MARK = "outreach_text_stored"


@dataclass(frozen=True)
class _Outage:
    """What Inbox._attempt returns when the database could not be reached."""
    exc: BaseException


class DatabaseHealth:
    """Whether this process last found the database unavailable; logs each start and end of an outage
    once, at WARNING, without a traceback."""

    def __init__(self, where: str, quiet: bool = False):
        self.where, self.quiet = where, quiet
        self.down_since: float | None = None
        self.last_try = 0.0
        self._lock = threading.Lock()

    def skip(self) -> bool:
        """Spool without trying the database (it failed less than PROBE_EVERY ago)."""
        with self._lock:
            if self.down_since is None or time.monotonic() - self.last_try >= PROBE_EVERY:
                self.last_try = time.monotonic()
                return False
            return True

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self.last_try = time.monotonic()
            if self.down_since is None:
                self.down_since = time.monotonic()
                if not self.quiet:
                    log.warning("database unavailable (%s): %s", type(exc).__name__, self.where)

    def ok(self, what: str = "") -> None:
        if self.down_since is None:  # the usual case: no lock taken
            return
        with self._lock:
            if self.down_since is not None and not self.quiet:
                log.warning("database available again after %.0f s%s", time.monotonic() - self.down_since,
                            f": {what}" if what else "")
            self.down_since = None


class Inbox:
    """The inbound service, bound to a session factory and settings.  It uses Core connections from
    the factory's engine, not ORM sessions (see the module docstring)."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings, spool: Spool | None = None, *,
                 report_outages: bool = True):
        self.sessions, self.settings, self.spool = sessions, settings, spool
        self.engine: Engine = sessions.kw["bind"]
        self.health = DatabaseHealth(f"spooling incoming texts to {spool.dir}" if spool else "no spool",
                                     quiet=not report_outages)
        self._drainer: threading.Thread | None = None
        self._drainer_lock = threading.Lock()
        self._on_call = on_call_numbers(settings)
        self._zone = ZoneInfo(settings.default_timezone)
        self._base_context = Context(org=settings.org_name, help_contact=settings.optional("HELP_CONTACT") or "",
                                     crisis_line=settings.get("CRISIS_LINE"),
                                     emergency=settings.get("EMERGENCY_NUMBER"))

    def receive(self, sms: InboundSMS, form: Mapping[str, Any] | None = None) -> Received:
        """Store and apply one inbound text; its replies.  With a spool: texts spooled earlier on this host
        are applied first, and when the database is unavailable the request (``form``, the signed fields)
        is spooled and answered with :func:`answer_unread`."""
        if self.spool is None:
            return self._receive(sms)
        after_store = False
        if not self.health.skip() and self._spool_empty_or_drained():
            received = self._attempt(lambda: self._receive(sms))  # also the probe, while it is known to be down
            if not isinstance(received, _Outage):
                return received
            after_store = getattr(received.exc, STORED_MARK, False)
        if sms.problems:  # nothing to keep: a malformed request is refused as it always is
            return Received(None, [], rejected="; ".join(sms.problems))
        replies = answer_unread(sms.body, self._context("en", utcnow()))
        try:
            self.spool.put("sms", form if form is not None else _form_of(sms), utcnow(), replies, after_store)
        except SpoolError as exc:
            log.error("an incoming text could not be stored or spooled: %s", exc.strerror)
            return Received(None, [], unavailable=True)
        return Received(None, replies, spooled=True)

    def status_callback(self, sid: str, status: str, error_code: int | None,
                        form: Mapping[str, Any] | None = None) -> str:
        """Apply a delivery status callback, or spool it while the database is unavailable."""
        if self.spool is None:
            return update_status(self.sessions, self.settings, sid, status, error_code)
        if not self.health.skip():  # statuses may be applied after any text: no need to drain first
            done = self._attempt(lambda: update_status(self.sessions, self.settings, sid, status, error_code))
            if not isinstance(done, _Outage):
                return done
        fields = dict(form) if form is not None else {"MessageSid": sid, "MessageStatus": status,
                                                      "ErrorCode": str(error_code or "")}
        try:
            self.spool.put("status", fields, utcnow())
        except SpoolError as exc:
            log.error("a status callback could not be stored or spooled: %s", exc.strerror)
            return "unavailable"
        return "spooled"

    def _attempt(self, work: Callable[[], Any]) -> Any:
        """``work()`` against the database, or an :class:`_Outage` when the database is unavailable (noted,
        so that the next requests go to the spool until the next probe)."""
        try:
            result = work()
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            self.health.failed(exc)
            return _Outage(exc)
        self.health.ok()
        return result

    def _spool_empty_or_drained(self) -> bool:
        """Before a live text: True when nothing is spooled on this host any more (drained now if need be),
        so the text may be applied; False when older texts are still spooled (another process is draining,
        or there were too many to drain within DRAIN_BUDGET, or the database went away again): the text is
        then spooled behind them."""
        if not self.spool.has_any():
            return True
        result = self.drain_spool(wait=DRAIN_WAIT, budget=DRAIN_BUDGET)
        if result.stopped_by is None and result.more:
            self._drain_in_background()
        return result.stopped_by is None and not result.busy and not result.more

    def _drain_in_background(self) -> None:
        """Go on draining in a thread of this process (one at a time), so that the rest of a long backlog
        does not wait for the next request or the worker's next round."""
        with self._drainer_lock:
            if self._drainer is not None and self._drainer.is_alive():
                return
            self._drainer = threading.Thread(target=self._drain_all, name="outreach-spool-drain", daemon=True)
            self._drainer.start()

    def _drain_all(self) -> None:
        try:
            while self.spool.has_any():
                result = self.drain_spool(wait=DRAIN_WAIT)
                if result.stopped_by is not None or result.busy:
                    return  # the database went away again, or another process is at it
        except Exception:  # pragma: no cover - a thread must not die silently
            log.exception("draining the spool failed")

    def drain_spool(self, wait: float = 0.0, budget: float | None = None) -> DrainResult:
        """Store and apply everything spooled on this host, in arrival order (the web app before a live
        text, the worker every round).  Stops at the first sign of the database being unavailable, or
        after ``budget`` seconds (``result.more``)."""
        if self.spool is None:
            return DrainResult()
        result = self.spool.drain(self._apply_spooled, is_unavailable, wait=wait, budget=budget)
        if result.stopped_by is not None:
            self.health.failed(result.stopped_by)
        elif not result.busy:
            self.health.ok(str(result))
            if result.applied:
                log.warning("spool drained: %s", result)
        return result

    def _apply_spooled(self, item: Spooled) -> None:
        with request_context(item.form.get("MessageSid")):  # the id the webhook logged it under
            self._apply_spooled_now(item)

    def _apply_spooled_now(self, item: Spooled) -> None:
        if item.kind == "status":
            update_status(self.sessions, self.settings, item.form.get("MessageSid", ""),
                          item.form.get("MessageStatus", ""), error_code_of(item.form))
            return
        sms = InboundSMS.from_form(item.form)
        with self.engine.connect() as conn:
            message_id, duplicate = self._store_spooled(conn, sms, item)
            if sms.problems:
                return
            # Applied as a late text (replies queued for the worker), at the time it was received.
            self._process(conn, message_id, None if duplicate else sms, live=False, at=item.received_at)
            if item.after_store:  # applied live, but the database went away before the response was sent:
                with conn.begin():  # what that response would have said goes out through the worker
                    now = utcnow()
                    conn.execute(update(Message).where(
                        Message.in_reply_to_id == message_id, Message.status == Delivery.TWIML,
                        *([Message.body.not_in(item.answered)] if item.answered else []))
                        .values(status=Delivery.PENDING, sent_at=None, send_after=now, updated_at=now))

    @staticmethod
    def _store_spooled(conn: Connection, sms: InboundSMS, item: Spooled) -> tuple[int, bool]:
        """Store a spooled text at its time of receipt together with what the webhook answered at once (the
        safety reply, the HELP text), as sent, in one transaction: however it is applied afterwards (here, by
        the worker's recovery of stuck texts, or before a newer text of the same phone), that answer is then
        on record and never sent again."""
        at = item.received_at
        values = _inbound_row(sms, at)
        with conn.begin():
            if conn.dialect.name == "postgresql":  # the store's per-phone lock (see _INSERT_INBOUND_PG)
                conn.execute(_PHONE_STORE_LOCK, {"phone": sms.from_number})
            new_id = conn.scalar(_insert_inbound(conn.dialect.name), values)
            repeat = new_id is None
            links = {"patient_id": None, "followup_id": None}
            if repeat:  # stored before (by the request itself, before the outage, or by an earlier drain)
                new_id = conn.scalar(_MESSAGE_BY_SID, {"sid": sms.sid})
                links = conn.execute(select(Message.patient_id, Message.followup_id)
                                     .where(Message.id == new_id)).one()._asdict()
            known = set(conn.scalars(_REPLIES, {"message_id": new_id})) if repeat else set()
            kind = "safety" if is_crisis(sms.body) else "reply"
            for body in (b for b in item.answered if b not in known):
                conn.execute(_INSERT_OUTBOUND, dict(
                    direction="out", kind=kind, body=body, media_count=0, attempts=0, in_reply_to_id=new_id,
                    from_number=sms.to_number, to_number=sms.from_number, status=Delivery.TWIML, sent_at=at, send_after=None,
                    created_at=at, updated_at=at, preview=sms.preview, **links))
            return new_id, repeat

    def _receive(self, sms: InboundSMS) -> Received:
        with self.engine.connect() as conn:
            message_id, duplicate = self._store(conn, sms)
            if sms.problems:
                return Received(message_id, [], duplicate, rejected="; ".join(sms.problems))
            # A repeat is processed only if its first delivery never was; the phone is then the stored one.
            try:
                replies = self._process(conn, message_id, None if duplicate else sms, live=True)
            except Exception as exc:
                setattr(exc, STORED_MARK, True)
                raise
            if replies is None:  # a repeat, or applied by a concurrent request: answer what was stored
                replies = list(conn.scalars(_REPLIES, {"message_id": message_id}))
                conn.rollback()
        return Received(message_id, replies, duplicate)

    def replay_failed(self, stuck_after: dt.timedelta = STUCK_AFTER) -> list[tuple[int, str]]:
        """Process failed inbound rows again, and rows no request finished (see :meth:`recover_stuck`),
        in arrival order.  Their replies are queued for the worker.  Returns (id, new status)."""
        with self.engine.connect() as conn:
            with conn.begin():
                ids = list(conn.scalars(select(Message.id).where(Message.direction == "in",
                                                                 Message.status == Processing.FAILED)
                                      .order_by(Message.id)))
                conn.execute(update(Message).where(Message.id.in_(ids)).values(status=Processing.RECEIVED, error_message=None))
        return self.recover_stuck(stuck_after, also=ids)

    def recover_stuck(self, stuck_after: dt.timedelta = STUCK_AFTER, also: Sequence[int] = ()) -> list[tuple[int, str]]:
        """Apply inbound rows stored but never processed because their request died (a killed web
        worker) and older than ``stuck_after``, in arrival order; their replies are queued for the
        worker.  Run every minute by the worker: a crisis text is never left without its alert."""
        with self.engine.connect() as conn:
            with conn.begin():
                ids = sorted(set(also) | set(conn.scalars(select(Message.id).where(
                    Message.direction == "in", Message.status == Processing.RECEIVED, Message.processed_at.is_(None),
                    Message.created_at <= utcnow() - stuck_after))))
                sids = dict(conn.execute(select(Message.id, Message.provider_sid).where(Message.id.in_(ids))).all()) \
                    if ids else {}
            for message_id in ids:
                with request_context(sids.get(message_id)):  # logged under the id its own request had
                    self._process(conn, message_id, live=False)
            with conn.begin():
                results = [(r.id, r.status) for r in conn.execute(
                    select(Message.id, Message.status).where(Message.id.in_(ids)).order_by(Message.id))]
        for message_id, status in results:
            with request_context(sids.get(message_id)):
                log.warning("inbound message %s applied late (its request had failed or died): %s", message_id, status)
        return results

    # -- 1. store ---------------------------------------------------------
    @staticmethod
    def _store(conn: Connection, sms: InboundSMS) -> tuple[int, bool]:
        """Insert and commit the message: (id, was it a repeat)."""
        values = _inbound_row(sms, utcnow())
        if conn.dialect.name == "postgresql":
            # One INSERT is its own transaction: autocommit spares the BEGIN and COMMIT round trips.
            driver = conn.connection.driver_connection
            try:  # on a connection psycopg already knows is broken this raises: wrapped as SQLAlchemy would
                driver.autocommit = True
            except Exception as exc:
                conn._handle_dbapi_exception(exc, "autocommit", None, None, None)
            try:
                row = _run(conn, _INSERT_INBOUND_PG, values).fetchone()
                if row is not None:
                    return row[0], False
                return _run(conn, _MESSAGE_BY_SID, {"sid": sms.sid}).fetchone()[0], True
            finally:
                with contextlib.suppress(Exception):  # a connection that died is invalidated already
                    driver.autocommit = False
        with conn.begin():
            new_id = conn.scalar(_insert_inbound(conn.dialect.name), values)
            if new_id is not None:
                return new_id, False
            return conn.scalar(_MESSAGE_BY_SID, {"sid": sms.sid}), True

    # -- 2. process -------------------------------------------------------
    def _process(self, conn: Connection, message_id: int, sms: InboundSMS | None = None, *,
                 live: bool, at: dt.datetime | None = None) -> list[str] | None:
        """Apply the message (and any earlier unprocessed ones from the same phone) in one transaction.
        ``sms`` is the message in hand (None: read it back, as for a repeat or a replay).  ``live``: a
        request for this message is waiting and answers with its replies (TwiML); the replies of any
        other message applied here are queued for the worker instead.  A message applied late is applied
        at the time it was stored (``at``: the time a spooled text was received), and what was already
        answered for it (a spooled text's safety reply) is not sent again.  An outage of the database is
        raised, not recorded.

        Returns its replies, or None when it was not processed here (already done, failed, rejected)."""
        replies: list[str] | None = None
        try:
            with conn.begin():
                phone = sms.from_number if sms else conn.scalar(select(Message.from_number)
                                                                .where(Message.id == message_id))
                _run(conn, LOCK_PHONE, {"phone": phone}).fetchall()  # as lock_phone(), on the hot path
                patients, followups, only_this = self._load(conn, phone, message_id)
                if sms is not None and only_this:  # the usual case: nothing to read back, no savepoint needed
                    return self._handle(conn, SimpleNamespace(id=message_id, from_number=sms.from_number,
                                                              to_number=sms.to_number, body=sms.body,
                                                              media_count=sms.media_count, preview=sms.preview,
                                                              created_at=at, carrier_keyword=sms.carrier_keyword),
                                        patients, followups, live)
                for m in conn.execute(_PENDING, {"phone": phone, "upto": message_id}).all():
                    try:
                        with conn.begin_nested():
                            out = self._handle(conn, m, patients, followups, live and m.id == message_id)
                        if m.id == message_id:
                            replies = out
                    except Exception as exc:  # keep the row, record why, go on with the next
                        if is_unavailable(exc):
                            raise
                        log.exception("inbound message %s from %s failed", m.id, mask(m.from_number))
                        self._mark_failed(conn, m.id, exc)
                        # what the failed message changed in memory was rolled back in the database: reload
                        patients, followups, _ = self._load(conn, phone, message_id)
        except Exception as exc:
            if is_unavailable(exc):
                raise
            log.exception("inbound message %s could not be processed", message_id)
            with conn.begin():
                self._mark_failed(conn, message_id, exc)
            return None
        return replies

    @staticmethod
    def _load(conn: Connection, phone: str, message_id: int) -> tuple[list[SimpleNamespace], list[SimpleNamespace], bool]:
        """The phone's patients (by id), their follow-ups (newest first) as plain objects the shared
        machine can drive, and whether ``message_id`` is the phone's only unprocessed message."""
        patients: dict[int, SimpleNamespace] = {}
        followups = []
        rows = _run(conn, _CONVERSATIONS, {"phone": phone, "upto": message_id}).fetchall()
        for r in rows:
            patients.setdefault(r.patient_pk, SimpleNamespace(id=r.patient_pk, language=r.language,
                                                              opted_out_at=r.opted_out_at,
                                                              opt_out_reason=r.opt_out_reason,
                                                              sms_consent=bool(r.sms_consent),
                                                              withdrawn_at=r.withdrawn_at,
                                                              number_blocked=bool(r.blocked)))
            if r.id is not None:
                followups.append(SimpleNamespace(**{k: getattr(r, k) for k in _FOLLOWUP_KEYS}))
        only_this = bool(rows) and rows[0].earlier_pending == 0 and rows[0].this_pending == 1
        return sorted(patients.values(), key=lambda p: p.id), followups, only_this

    @staticmethod
    def _mark_failed(conn: Connection, message_id: int, exc: Exception) -> None:
        """The error is stored as its type and a cleaned summary: never bound values, a number or a body."""
        conn.execute(_MARK_FAILED, {"message_id": message_id, "error": error_summary(exc)})

    def _context(self, language: str, now, patient: Any = None) -> Context:
        """The engine's context for a patient (None: an unknown number) writing at ``now``."""
        # A number that replied "wrong number", or a patient whose record says no consent, is not texted: the engine
        # reads them as opted out, and no keyword texted from the phone changes that (only a coordinator does).
        blocked = patient is not None and (getattr(patient, "number_blocked", False)
                                           or not getattr(patient, "sms_consent", True))
        opted_out = patient is not None and (patient.opted_out_at is not None or blocked)
        return dataclasses.replace(self._base_context, language=language or "en", opted_out=opted_out, now=now,
                                   opt_out_lifted_by_keyword=not opted_out or (
                                       not blocked and lifted_by_keyword(patient.opt_out_reason)))

    def _handle(self, conn: Connection, msg: Any, patients: list[SimpleNamespace],
                followups: list[SimpleNamespace], live: bool) -> list[str] | None:
        """Apply one message; None when a concurrent request has already applied it.  Its replies go
        back in the HTTP response when ``live``; otherwise they are queued for the worker, and the
        message is applied at the time it was stored."""
        processed_at = utcnow()
        now = processed_at if live else (msg.created_at or processed_at)
        answered: Sequence[str] = () if live else [r[0] for r in _run(conn, _REPLIES, {"message_id": msg.id}).fetchall()]
        patient, followup = conversation_for(patients, followups)
        followup_pk = followup.id if followup else None
        # Claim the message first: a second request can never apply it again, even when there was no
        # patient row to lock (an unknown number).
        if not _run(conn, _MARK_PROCESSED, {"message_id": msg.id, "now": processed_at, "followup_pk": followup_pk,
                                              "patient_pk": patient.id if patient else None}).rowcount:
            return None
        if patient is None:
            replies = self._unknown_sender(conn, msg, now, live, answered)
        elif patient.withdrawn_at is not None and not msg.preview:
            replies = self._withdrawn(conn, msg, patient, patients, followup_pk, now, live, answered)
        else:
            before = {c: getattr(followup, c) for c in _ENGINE_COLUMNS} if followup else {}
            outcome = respond(followup, msg.body, self._context(patient.language, now, patient),
                              media_count=msg.media_count, carrier_keyword=getattr(msg, "carrier_keyword", None))
            replies = outcome.replies
            if followup is not None:
                followup.last_inbound_at = now
                if replies:
                    followup.last_prompt_at = now
                changed = tuple(c for c in _ENGINE_COLUMNS if getattr(followup, c) != before[c])
                _run(conn, _update_followup(changed),
                             {"followup_pk": followup_pk, **{f"new_{c}": getattr(followup, c) for c in changed}})
                for a in outcome.answers:
                    _run(conn, _INSERT_ANSWER, dict(followup_id=followup_pk, question_key=a.key,
                                                      raw_text=a.raw_text, value=a.value,
                                                      missing_reason=a.missing_reason, message_id=msg.id,
                                                      answered_at=now))
            for event in outcome.events:
                if event == "crisis":
                    self._open_alert(conn, msg, patient.id, followup_pk, now)
                elif msg.preview:  # a coordinator's preview never changes who may be texted
                    continue
                elif event in ("opted_out", "opted_in"):
                    opted_out = event == "opted_out"
                    reason = (WRONG_NUMBER if "wrong_number" in outcome.events else STOP) if opted_out else None
                    set_opt_out(conn, [p.id for p in patients], opted_out, reason, by_keyword=not opted_out)
                    for p in patients:  # as set_opt_out left them (the first opt-out's time and reason are kept)
                        if opted_out:
                            p.opt_out_reason = p.opt_out_reason if p.opted_out_at else reason
                            p.opted_out_at = p.opted_out_at or now
                        elif p.opt_out_reason in (None, STOP):
                            p.opted_out_at, p.opt_out_reason = None, None
                    audit(conn, event, actor="patient", patient_id=patient.id, message_id=msg.id,
                          **({"via": "twilio"} if getattr(msg, "carrier_keyword", None) else {}))
                elif event == "wrong_number":  # the contact details need fixing: leave a trace for coordinators
                    block_number(conn, msg.from_number, msg.id)  # the number itself, whoever it is given to later
                    for p in patients:
                        p.number_blocked = True
                    audit(conn, event, actor="patient", patient_id=patient.id, message_id=msg.id)
                    log.info("%s says it is a wrong number: opted out", mask(msg.from_number))
                elif event == "opt_in_refused":  # a START after "wrong number" or without consent: a coordinator decides
                    audit(conn, event, actor="patient", patient_id=patient.id, message_id=msg.id,
                          because="no consent" if not patient.sms_consent else "wrong number")
            reason = "wrong_number" if "wrong_number" in outcome.events else outcome.personal
            if reason and not msg.preview:  # a coordinator's preview never waits for a person
                _run(conn, _MARK_INBOX, {"message_id": msg.id, "reason": reason})
            self._store_replies(conn, msg, replies, patient.id, followup_pk, now, live, kind=(
                "safety" if "crisis" in outcome.events else
                "opt_out_confirmation" if {"opted_out", "opt_in_refused"} & set(outcome.events) else "reply"),
                answered=answered)
        return replies

    def _withdrawn(self, conn: Connection, msg: Any, patient: SimpleNamespace, patients: list[SimpleNamespace],
                   followup_pk: int | None, now, live: bool, answered: Sequence[str]) -> list[str]:
        """A participant who withdrew from the study: their text is kept and answered only with the neutral
        acknowledgement; a crisis text still gets the safety reply and an alert; a STOP is still their opt-out.
        No conversation moves and no keyword brings them back into the study."""
        outcome = respond_withdrawn(msg.body, self._context(patient.language, now, patient),
                                    media_count=msg.media_count, carrier_keyword=getattr(msg, "carrier_keyword", None))
        if "crisis" in outcome.events:
            self._open_alert(conn, msg, patient.id, followup_pk, now)
        if "opted_out" in outcome.events:
            set_opt_out(conn, [p.id for p in patients], True, WRONG_NUMBER if "wrong_number" in outcome.events else STOP)
            audit(conn, "opted_out", actor="patient", patient_id=patient.id, message_id=msg.id, withdrawn=True)
            if "wrong_number" in outcome.events:
                block_number(conn, msg.from_number, msg.id)
        if outcome.personal:
            _run(conn, _MARK_INBOX, {"message_id": msg.id, "reason": outcome.personal})
        self._store_replies(conn, msg, outcome.replies, patient.id, followup_pk, now, live,
                            kind="safety" if "crisis" in outcome.events else WITHDRAWN_REPLY, answered=answered)
        return outcome.replies

    def _unknown_sender(self, conn: Connection, msg: Any, now, live: bool, answered: Sequence[str] = ()) -> list[str]:
        """No patient has this number: stored, no reply, unless it is a crisis message (safety first, with an
        alert) or HELP (the carriers' rules: whoever asks who is texting is told), in English and French (the
        language is not known), as during an outage."""
        outcome = respond(None, msg.body, self._context("en", now))
        crisis = "crisis" in outcome.events
        if not crisis and not getattr(msg, "preview", False):  # who is it? a person reads it
            _run(conn, _MARK_INBOX, {"message_id": msg.id, "reason": "unknown"})
        if not crisis and "help" not in outcome.events:
            log.info("message from unknown number %s stored, not answered", mask(msg.from_number))
            return []
        replies = outcome.replies + respond(None, msg.body, self._context("fr", now)).replies  # language unknown
        if crisis:
            self._open_alert(conn, msg, None, None, now)
        self._store_replies(conn, msg, replies, None, None, now, live, kind="safety" if crisis else "reply",
                            answered=answered)
        return replies

    def _open_alert(self, conn: Connection, msg: Any, patient_pk: int | None, followup_pk: int | None, now) -> None:
        """Open the alert and queue a text to each coordinator on call (sent ahead of everything else).  The
        alert is always opened; for a number no patient has, the on-call texts are limited
        (:data:`UNKNOWN_SENDER_LIMITS`) so that a stranger cannot flood the coordinators' phones."""
        preview = bool(getattr(msg, "preview", False))  # a coordinator trying the survey: nobody is woken
        held = self._unknown_sender_limit(conn, msg.from_number, now) if self._on_call and patient_pk is None else None
        texted = bool(self._on_call) and held is None and not preview
        alert_id = conn.scalar(_INSERT_ALERT, dict(kind="crisis", patient_id=patient_pk, followup_id=followup_pk,
                                                   message_id=msg.id, opened_at=now, preview=preview,
                                                   on_call_queued_at=now if texted else None))
        audit(conn, "crisis_alert_opened", actor="system", patient_id=patient_pk, message_id=msg.id,
              **({"on_call_not_texted": held} if held else {}), **({"preview": True} if preview else {}))
        log.warning("crisis message from %s: alert %s opened%s", mask(msg.from_number), alert_id,
                    " (a coordinator's preview)" if preview else "")
        if not texted:
            if held:
                log.warning("alert %s: the coordinators on call were not texted (%s); it is in the alert queue",
                            alert_id, held)
            return
        body = on_call_text(self._base_context.org, alert_id, now, self._zone, self.settings.public_base_url)
        for number in self._on_call:
            conn.execute(_INSERT_OUTBOUND, dict(direction="out", kind="alert", body=body, media_count=0, attempts=0,
                                             status=Delivery.PENDING, send_after=now, from_number=msg.to_number,
                                             to_number=number, alert_id=alert_id, created_at=now, updated_at=now))

    @staticmethod
    def _unknown_sender_limit(conn: Connection, phone: str | None, now) -> str | None:
        """Why the on-call coordinators are not texted about a crisis text from ``phone`` (a number no
        patient has), or None when they are.  Taken under a lock (PostgreSQL; SQLite's write lock serialises
        already), so two such texts at once cannot both get under a limit."""
        if conn.dialect.name == "postgresql":
            conn.execute(_UNKNOWN_SENDER_LOCK)
        total, this_number = conn.execute(_UNKNOWN_SENDERS_TEXTED, {"since": now - ON_CALL_WINDOW,
                                                                    "phone": phone}).one()
        per_number, in_all = UNKNOWN_SENDER_LIMITS
        if this_number >= per_number:
            return f"limit: {per_number} per unknown number per hour"
        if total >= in_all:
            return f"limit: {in_all} an hour for unknown numbers"
        return None

    @classmethod
    def _store_replies(cls, conn: Connection, msg: Any, replies: list[str], patient_pk: int | None,
                       followup_pk: int | None, now, live: bool, kind: str, answered: Sequence[str] = ()) -> None:
        """Store the replies as outbound messages: answered in the TwiML response when ``live``,
        else ``pending`` for the worker to send (no request is waiting for them).  What was already
        answered for the message (``answered``: a spooled text's safety reply or HELP text, stored with
        it) is not queued again; those rows are linked to the patient and follow-up now known."""
        if answered:
            _run(conn, _LINK_ANSWERED, {"message_id": msg.id, "patient_pk": patient_pk, "followup_pk": followup_pk})
            replies = [r for r in replies if r not in answered]
        delivery = (dict(status=Delivery.TWIML, sent_at=now, send_after=None) if live
                    else dict(status=Delivery.PENDING, sent_at=None, send_after=now))
        for body in replies:  # one or two: single INSERTs are cheaper than an executemany
            _run(conn, _INSERT_OUTBOUND, dict(direction="out", kind=kind, body=body, media_count=0, attempts=0,
                                             patient_id=patient_pk, followup_id=followup_pk, in_reply_to_id=msg.id,
                                             from_number=msg.to_number, to_number=msg.from_number, created_at=now,
                                             updated_at=now, preview=bool(msg.preview), **delivery))


def _inbound_row(sms: InboundSMS, at: dt.datetime) -> dict[str, Any]:
    """The ``messages`` row of an incoming text received ``at``."""
    return dict(direction="in", provider_sid=sms.sid, from_number=sms.from_number, to_number=sms.to_number,
                body=sms.body, media_count=sms.media_count, attempts=0, preview=sms.preview,
                carrier_keyword=sms.carrier_keyword, status=Processing.REJECTED if sms.problems else Processing.RECEIVED,
                error_message="; ".join(sms.problems) or None, created_at=at, updated_at=at)


def error_code_of(form: Mapping[str, Any]) -> int | None:
    """A status callback's ErrorCode (absent, empty or unreadable: None)."""
    try:
        return int(form.get("ErrorCode") or 0) or None
    except (TypeError, ValueError):
        return None


def _form_of(sms: InboundSMS) -> dict[str, str]:
    """The fields of a parsed text, when the request's own form is not at hand."""
    form = {"MessageSid": sms.sid or "", "From": sms.from_number or "", "To": sms.to_number or "", "Body": sms.body,
            "NumMedia": str(sms.media_count)}
    if sms.preview:
        form[PREVIEW_FIELD] = "1"
    if sms.carrier_keyword:
        form["OptOutType"] = next(k for k, v in OPT_OUT_TYPES.items() if v == sms.carrier_keyword)
    return form
