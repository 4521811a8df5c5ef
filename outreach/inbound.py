"""Inbound SMS: store first, then process, one phone at a time in arrival order.

``receive`` is the whole unit of work behind ``POST /twilio/sms``:
1. the message is stored and committed (idempotent by MessageSid);
2. it is processed in a second transaction that locks the sender's patient
   rows, so two messages from one phone are applied one after the other,
   earlier ones first; a failure rolls back to a savepoint and marks the
   row ``failed`` (``outreach inbox replay`` retries it);
3. the replies stored for it are returned (the same ones on a repeat).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from conversations.engine import Context, respond

from .config import Settings
from .db import audit, unit_of_work
from .models import Alert, Answer, Message, Patient, utcnow
from .phones import mask
from .repository import conversation_for, insert_ignore, lock_patients_by_phone, set_opt_out

log = logging.getLogger(__name__)
_SID = re.compile(r"^[A-Za-z0-9]{10,64}$")


def _clean(value: Any, limit: int | None = None) -> str:
    text = "" if value is None else str(value)
    text = text.replace("\x00", "\ufffd")
    return text[:limit] if limit else text


@dataclass(frozen=True)
class InboundSMS:
    sid: str | None
    from_number: str | None
    to_number: str | None
    body: str
    media_count: int
    problems: tuple[str, ...] = field(default_factory=tuple)

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
        return cls(sid=sid, from_number=sender or None, to_number=_clean(form.get("To"), 32) or None,
                   body=_clean(form.get("Body")), media_count=media, problems=tuple(problems))


@dataclass
class Received:
    message_id: int
    replies: list[str]
    duplicate: bool = False
    rejected: str | None = None


class Inbox:
    """The inbound service, bound to a session factory and settings."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings):
        self.sessions = sessions
        self.settings = settings

    # -- 1. store ---------------------------------------------------------
    def store(self, sms: InboundSMS) -> tuple[int, bool]:
        """Insert and commit the message (one Core statement, no ORM session): (id, was it a repeat)."""
        now = utcnow()
        values = dict(direction="in", provider_sid=sms.sid, from_number=sms.from_number, to_number=sms.to_number,
                      body=sms.body, media_count=sms.media_count, attempts=0,
                      status="rejected" if sms.problems else "received",
                      error_message="; ".join(sms.problems) or None, created_at=now, updated_at=now)
        with self.sessions.kw["bind"].begin() as conn:  # the engine the session factory is bound to
            stmt = insert_ignore(conn, Message).values(**values).returning(Message.id)
            if sms.sid:
                stmt = stmt.on_conflict_do_nothing(index_elements=["provider_sid"])
            new_id = conn.scalar(stmt)
            if new_id is not None:
                return new_id, False
            return conn.scalar(select(Message.id).where(Message.provider_sid == sms.sid)), True

    # -- 2. process -------------------------------------------------------
    def process(self, message_id: int, phone: str | None = None) -> list[str] | None:
        """Apply the message (and any earlier unprocessed ones from the same phone).

        Returns its replies, or None when it was not processed here (already done, failed, rejected)."""
        replies: list[str] | None = None
        try:
            with unit_of_work(self.sessions) as s:
                if phone is None:
                    phone = s.scalar(select(Message.from_number).where(Message.id == message_id))
                patients = lock_patients_by_phone(s, phone)
                pending = s.scalars(
                    select(Message).where(Message.direction == "in", Message.from_number == phone,
                                          Message.processed_at.is_(None), Message.status == "received",
                                          Message.id <= message_id)
                    .order_by(Message.id)).all()
                if len(pending) == 1:  # the usual case: no savepoint needed, a failure rolls back everything
                    replies = self._handle(s, pending[0], patients)
                for m in pending if len(pending) > 1 else []:
                    try:
                        with s.begin_nested():
                            out = self._handle(s, m, patients)
                        if m.id == message_id:
                            replies = out
                    except Exception as exc:  # keep the row, record why, go on with the next
                        log.exception("inbound message %s from %s failed", m.id, mask(m.from_number))
                        s.expire_all()
                        m.status, m.error_message = "failed", f"{type(exc).__name__}: {exc}"[:2000]
        except Exception as exc:
            log.exception("inbound message %s could not be processed", message_id)
            with unit_of_work(self.sessions) as s:
                m = s.get(Message, message_id)
                if m is not None and m.processed_at is None:
                    m.status, m.error_message = "failed", f"{type(exc).__name__}: {exc}"[:2000]
            return None
        return replies

    def _context(self, language: str, now, opted_out: bool = False) -> Context:
        cfg = self.settings
        return Context(language=language or "en", org=cfg.org_name, help_contact=cfg.optional("HELP_CONTACT") or "",
                       crisis_line=cfg.get("CRISIS_LINE"), emergency=cfg.get("EMERGENCY_NUMBER"),
                       opted_out=opted_out, now=now)

    def _handle(self, s: Session, msg: Message, patients: list[Patient]) -> list[str]:
        now = utcnow()
        patient, followup = conversation_for(s, patients)
        msg.processed_at, msg.status = now, "processed"
        if patient is None:
            return self._unknown_sender(s, msg, now)
        msg.patient_id, msg.followup_id = patient.id, followup.id if followup else None
        ctx = self._context(patient.language, now, opted_out=patient.opted_out_at is not None)
        outcome = respond(followup, msg.body, ctx, media_count=msg.media_count)
        if followup is not None:
            followup.last_inbound_at = now
            for a in outcome.answers:
                s.add(Answer(followup_id=followup.id, question_key=a.key, raw_text=a.raw_text, value=a.value,
                             missing_reason=a.missing_reason, message_id=msg.id, answered_at=now))
            if outcome.replies:
                followup.last_prompt_at = now
        for event in outcome.events:
            if event == "crisis":
                self._open_alert(s, msg, patient.id, followup.id if followup else None, now)
            elif event in ("opted_out", "opted_in"):
                set_opt_out(s, patients, event == "opted_out")
                audit(s, event, actor="patient", patient_id=patient.id, message_id=msg.id)
        self._store_replies(s, msg, outcome.replies, patient.id, followup.id if followup else None, now)
        return outcome.replies

    def _unknown_sender(self, s: Session, msg: Message, now) -> list[str]:
        """No patient has this number: stored, no reply, unless it is a crisis message (safety first)."""
        outcome = respond(None, msg.body, self._context("en", now))
        if "crisis" not in outcome.events:
            log.info("message from unknown number %s stored, not answered", mask(msg.from_number))
            return []
        replies = outcome.replies + respond(None, msg.body, self._context("fr", now)).replies  # language unknown
        self._open_alert(s, msg, None, None, now)
        self._store_replies(s, msg, replies, None, None, now)
        return replies

    def _open_alert(self, s: Session, msg: Message, patient_pk: int | None, followup_pk: int | None, now) -> None:
        s.add(Alert(kind="crisis", patient_id=patient_pk, followup_id=followup_pk, message_id=msg.id, opened_at=now))
        audit(s, "crisis_alert_opened", actor="system", patient_id=patient_pk, message_id=msg.id)
        log.warning("crisis message from %s: alert opened", mask(msg.from_number))

    @staticmethod
    def _store_replies(s: Session, msg: Message, replies: list[str], patient_pk: int | None,
                       followup_pk: int | None, now) -> None:
        for body in replies:
            s.add(Message(direction="out", kind="reply", status="twiml", body=body, patient_id=patient_pk,
                          followup_id=followup_pk, in_reply_to_id=msg.id, from_number=msg.to_number,
                          to_number=msg.from_number, sent_at=now))
        s.flush()

    # -- 3. answer --------------------------------------------------------
    def replies_for(self, message_id: int) -> list[str]:
        with unit_of_work(self.sessions) as s:
            return list(s.scalars(select(Message.body).where(Message.in_reply_to_id == message_id)
                                  .order_by(Message.id)))

    def receive(self, sms: InboundSMS) -> Received:
        message_id, duplicate = self.store(sms)
        if sms.problems:
            return Received(message_id, [], duplicate, rejected="; ".join(sms.problems))
        replies = None if duplicate else self.process(message_id, sms.from_number)
        if replies is None:  # a repeat, or applied by a concurrent request: answer what was stored
            if duplicate:
                self.process(message_id)  # a no-op unless the first delivery never got processed
            replies = self.replies_for(message_id)
        return Received(message_id, replies, duplicate)

    def replay_failed(self) -> list[tuple[int, str]]:
        """Process failed inbound rows again, in arrival order.  Returns (id, new status)."""
        with unit_of_work(self.sessions) as s:
            ids = list(s.scalars(select(Message.id).where(Message.direction == "in", Message.status == "failed")
                                 .order_by(Message.id)))
        results = []
        for message_id in ids:
            with unit_of_work(self.sessions) as s:
                m = s.get(Message, message_id)
                m.status, m.error_message = "received", None
            self.process(message_id)
            with unit_of_work(self.sessions) as s:
                results.append((message_id, s.get(Message, message_id).status))
        return results
