"""Patients for the console: search, the patient page (transcript, answers, opt-out history), the full
phone number on request, pausing a follow-up and correcting a phone number (the inbox of texts that need a
person is :mod:`outreach.staff.inbox`).

Every function that shows or changes an identifiable patient writes its audit row in the caller's
transaction.  Pages read with a fixed number of statements, never one per row.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session

from conversations.lexicon import is_acknowledgement, keyword
from conversations.machine import FollowUpState, question_state
from conversations.sms import encoding, segments
from conversations.surveys import QUESTIONS

from ..config import Settings
from ..db import audit, audit_each_patient
from ..models import Alert, AllianceRating, Answer, AuditEvent, Episode, FollowUp, Message, Patient
from ..clock import utcnow
from ..phones import PhoneError, mask, parse_phone
from ..messaging.opt_outs import lift_opt_out, opted_out_by_wrong_number, readdress_after_phone_change
from ..repository import OPEN_STATES, lock_phone
from ..states import Delivery, Processing
from ..study.retention import marker, refuse_if_closed
from ..study.waves import OPEN_LABEL, OUTCOMES, outcome_of, usable_answers


class PatientError(ValueError):
    """A console action on a patient that cannot be done; the message is a sentence for the user."""


# -- words ------------------------------------------------------------------------------------------

# Who or what wrote each kind of outbound text (a hand-written text shows its author instead).
KIND_WORDS = {
    "invitation": "invitation",
    "reminder": "reminder",
    "stalled": "question sent again",
    "reply": "survey",
    "withdrawn_reply": "acknowledgement (withdrawn)",
    "safety": "safety reply",
    "opt_out_confirmation": "opt-out confirmation",
    "alert": "alert",
    "manual": "a coordinator",
}

# Twilio error codes in words (https://www.twilio.com/docs/api/errors).
ERROR_WORDS = {
    30003: "unreachable handset",
    30004: "blocked",
    30005: "unknown number",
    30006: "landline",
    30007: "carrier filtering",
    21211: "invalid number",
    21610: "opted out (STOP)",
    21614: "not a mobile number",
}

# What a text's state means to a coordinator: a text sent (delivery) and a text received (processing).
DELIVERY_WORDS = {
    Delivery.PENDING: "waiting to be sent",
    Delivery.CLAIMED: "being sent",
    Delivery.ACCEPTED: "accepted by Twilio",
    Delivery.SCHEDULED: "accepted by Twilio",
    Delivery.QUEUED: "accepted by Twilio",
    Delivery.SENDING: "sending",
    Delivery.SENT: "sent to the carrier",
    Delivery.DELIVERED: "delivered",
    Delivery.READ: "read",
    Delivery.PARTIALLY_DELIVERED: "partly delivered",
    Delivery.UNDELIVERED: "not delivered",
    Delivery.FAILED: "failed",
    Delivery.CANCELLED: "not sent",
    Delivery.TWIML: "sent as the reply",
}
PROCESSING_WORDS = {
    Processing.RECEIVED: "received, not yet applied",
    Processing.PROCESSED: "received",
    Processing.FAILED: "received; applying it failed",
    Processing.REJECTED: "rejected (malformed request)",
    Delivery.RECEIVING: "received",
}

STATE_WORDS = {
    FollowUpState.INVITED: "invited, no answer yet",
    FollowUpState.DECLINED: "declined for now",
    question_state("self_efficacy"): "answering: self-efficacy",
    question_state("mental_health"): "answering: mental health",
    question_state("physical_health"): "answering: physical health",
    question_state("days_used"): "answering: days of use",
    FollowUpState.CRISIS: "paused by a crisis alert",
    FollowUpState.COMPLETED: "completed",
    FollowUpState.EXPIRED: "ended: timed out",
    FollowUpState.OPTED_OUT: "ended: opted out",
    FollowUpState.UNDELIVERABLE: "ended: undeliverable",
}

QUESTION_LABELS = {
    "self_efficacy": "Self-efficacy (0 not at all – 10 completely)",
    "mental_health": "Mental health (1 poor – 5 excellent)",
    "physical_health": "Physical health (1 poor – 5 excellent)",
    "days_used": "Days of alcohol or drug use in the past 30 days",
}
HEALTH_CODES = {1: "poor", 2: "fair", 3: "good", 4: "very good", 5: "excellent"}
MISSING_WORDS = {"skipped": "skipped by the patient", "unparsed": "two replies the survey could not use"}

# Audit actions that make up a patient's opt-out and contact history.
CONTACT_ACTIONS = ("opted_out", "opted_in", "wrong_number", "opt_in_refused", "phone_invalid", "phone_corrected",
                   "undeliverable", "consent_withdrawn", "consent_given", "withdrawn")
CONTACT_WORDS = {
    "opted_out": "opted out",
    "opted_in": "opted back in",
    "wrong_number": "replied that this is a wrong number (opted out)",
    "opt_in_refused": "asked for texts again (after a wrong-number reply, or without consent): still not texted; "
                      "a coordinator decides",
    "phone_invalid": "phone number marked invalid",
    "phone_corrected": "phone number corrected",
    "undeliverable": "texts could not be delivered",
    "consent_withdrawn": "consent to texts withdrawn (discharge file)",
    "consent_given": "consent to texts given (discharge file)",
    "withdrawn": "withdrew from the study",
}


def error_words(code: int | None) -> str | None:
    if not code:
        return None
    return ERROR_WORDS.get(code, f"error {code}")


def author_words(kind: str | None, author: str | None) -> str:
    if author:
        return author
    return KIND_WORDS.get(kind or "", kind or "the service")


def state_words(state: str) -> str:
    return STATE_WORDS.get(state, state.replace("_", " "))


def answer_value_words(key: str, value: int | None) -> str | None:
    if value is None:
        return None
    q = QUESTIONS.get(key)
    if q is not None and q.kind == "choice":
        return f"{value} ({HEALTH_CODES.get(value, '?')})"
    return str(value)


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


# -- search -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PatientHit:
    pk: int
    study_id: str
    phone: str  # masked
    latest_discharge: dt.date | None
    open_followup: str | None  # e.g. "30 days: answering: mental health (paused)"; None: nothing open


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search_patients(session: Session, query: str, limit: int = 50, *, actor: str | None = None,
                    address: str | None = None) -> list[PatientHit]:
    """Patients whose study id is ``query`` or starts with it (any case), or, when ``query`` is exactly
    four digits, whose phone number ends with them.  Exact study-id matches come first.  Three
    statements.  With ``actor`` the search is audited (``searched_patients``)."""
    q = (query or "").strip()
    if not q:
        return []
    lowered = q.lower()
    conditions = [func.lower(Patient.patient_id) == lowered,
                  func.lower(Patient.patient_id).like(_like_prefix(lowered), escape="\\")]
    if len(q) == 4 and q.isascii() and q.isdigit():
        conditions.append(Patient.phone.like("%" + q))
    exact_first = func.lower(Patient.patient_id) != lowered  # False (0) sorts first
    rows = session.execute(select(Patient.id, Patient.patient_id, Patient.phone).where(or_(*conditions))
                           .order_by(exact_first, Patient.patient_id, Patient.id).limit(limit)).all()
    ids = [r.id for r in rows]
    discharges: dict[int, dt.date] = {}
    open_fu: dict[int, str] = {}
    if ids:
        discharges = dict(session.execute(select(Episode.patient_id, func.max(Episode.discharge_date))
                                          .where(Episode.patient_id.in_(ids)).group_by(Episode.patient_id)).all())
        for pid, days, state, held in session.execute(
                select(FollowUp.patient_id, FollowUp.timepoint_days, FollowUp.state, FollowUp.held_at)
                .where(FollowUp.patient_id.in_(ids), FollowUp.state.in_(OPEN_STATES))
                .order_by(FollowUp.patient_id, FollowUp.invited_at.desc().nulls_last(), FollowUp.id.desc())):
            open_fu.setdefault(pid, f"{days} days: {state_words(state)}{' (paused)' if held else ''}")
    if actor is not None:  # one row per patient shown, so the audit log filtered by a patient finds it
        details = {"results": len(ids), "digits_only": q.isdigit()}
        audit_each_patient(session, "searched_patients", {pk: details for pk in ids or [None]}, actor=actor,
                           address=address)
    return [PatientHit(r.id, r.patient_id, mask(r.phone), discharges.get(r.id), open_fu.get(r.id)) for r in rows]


# -- the patient page -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stay:
    id: int
    discharge_date: dt.date
    admission_date: dt.date | None
    program: str | None
    primary_substance: str | None
    alliance_mean: float | None
    subscales: dict[str, float | None]


@dataclass(frozen=True)
class AnswerLine:
    question_key: str
    question: str
    value: int | None
    value_words: str | None
    raw_text: str | None  # the patient's own words
    missing_reason: str | None
    missing_words: str | None
    answered_at: dt.datetime
    raw_text_erased: str | None = None  # "erased on DATE under ...": the words are gone, the coded value stays


@dataclass(frozen=True)
class FollowUpLine:
    id: int
    discharge_date: dt.date
    timepoint_days: int
    state: str
    state_words: str
    outcome: str  # the research outcome code (``waves.OUTCOMES``), or "open" while the conversation runs
    outcome_words: str
    is_open: bool
    held: bool
    held_at: dt.datetime | None
    held_by: str | None
    invited_at: dt.datetime | None
    completed_at: dt.datetime | None
    expires_at: dt.datetime | None
    reminders_sent: int
    answers: list[AnswerLine] = field(default_factory=list)


@dataclass(frozen=True)
class TranscriptLine:
    id: int
    direction: str  # "in" | "out"
    at: dt.datetime
    body: str
    kind: str | None
    author: str | None  # who or what wrote an outbound text, in words
    hand_written: bool
    status: str
    status_words: str
    error_code: int | None
    error_words: str | None
    reason: str | None  # why a text was not sent, or why an inbound text failed
    sent_at: dt.datetime | None
    send_after: dt.datetime | None
    media_count: int
    segments: int
    encoding: str
    alert_id: int | None  # an alert opened for this inbound text
    handled_by: str | None
    preview: bool = False  # a coordinator's `outreach chat --url` text, or the service's reply to one
    erased: str | None = None  # "erased on DATE under ...": its words are gone (retention, withdrawal, study close)

    @property
    def sent_as_reply(self) -> bool:
        """Answered in the webhook's own response (no separate sending time to show)."""
        return self.direction == "out" and self.status == Delivery.TWIML


@dataclass(frozen=True)
class ContactEvent:
    at: dt.datetime
    action: str
    words: str
    actor: str


@dataclass(frozen=True)
class PatientView:
    pk: int
    study_id: str
    phone: str  # masked
    phone_valid: bool
    language: str
    timezone: str
    local_now: dt.datetime  # the patient's current local time (aware)
    sms_consent: bool
    opted_out_at: dt.datetime | None
    age: int | None
    sex: str | None
    contact_history: list[ContactEvent]
    stays: list[Stay]
    followups: list[FollowUpLine]
    transcript: list[TranscriptLine]
    open_followup_id: int | None
    withdrawn_at: dt.datetime | None = None
    withdrawn_by: str | None = None
    withdrawal_data: str | None = None  # keep | remove
    withdrawal_reason: str | None = None
    phone_erased: str | None = None  # "erased on DATE under ...", or None while the number is kept

    @property
    def opted_out(self) -> bool:
        return self.opted_out_at is not None

    @property
    def cannot_text(self) -> str | None:
        """Why a text by hand would be refused now (None: it may be sent)."""
        if self.withdrawn_at is not None:
            return (f"This participant withdrew from the study on {self.withdrawn_at:%Y-%m-%d}: nothing is sent to "
                    "them; their own texts get a neutral acknowledgement.")
        if self.phone_erased is not None:
            return f"This patient's phone number was {self.phone_erased}."
        if self.opted_out_at is not None:
            return "This patient has opted out of texts."
        if not self.phone_valid:
            return "This patient's phone number is marked invalid; correct it first."
        if not self.sms_consent:
            return "This patient did not consent to texts."
        return None


def _contact_history(session: Session, pk: int) -> list[ContactEvent]:
    return [ContactEvent(at, action, CONTACT_WORDS.get(action, action), who) for at, action, who in session.execute(
        select(AuditEvent.at, AuditEvent.action, AuditEvent.actor)
        .where(AuditEvent.patient_id == pk, AuditEvent.action.in_(CONTACT_ACTIONS))
        .order_by(AuditEvent.at, AuditEvent.id))]


def _transcript(session: Session, pk: int) -> list[TranscriptLine]:
    alert_for = select(func.min(Alert.id)).where(Alert.message_id == Message.id).scalar_subquery()
    lines = []
    for m in session.execute(select(Message.id, Message.direction, Message.created_at, Message.body, Message.kind,
                                    Message.author, Message.status, Message.error_code, Message.error_message,
                                    Message.sent_at, Message.send_after, Message.media_count, Message.handled_by,
                                    Message.preview, Message.erased_at, Message.erased_under,
                                    alert_for.label("alert_id"))
                             .where(Message.patient_id == pk).order_by(Message.created_at, Message.id)):
        body = m.body or ""
        outbound = m.direction == "out"
        status_words = (DELIVERY_WORDS if outbound else PROCESSING_WORDS).get(m.status, m.status)
        lines.append(TranscriptLine(
            id=m.id, direction=m.direction, at=m.created_at, body=body, kind=m.kind,
            author=author_words(m.kind, m.author) if outbound else None, hand_written=m.kind == "manual",
            status=m.status, status_words=status_words, error_code=m.error_code,
            error_words=error_words(m.error_code),
            reason=m.error_message if m.status in (Delivery.CANCELLED, Delivery.FAILED) and not m.error_code else None,
            sent_at=m.sent_at, send_after=m.send_after if m.status == Delivery.PENDING else None,
            media_count=m.media_count or 0, segments=segments(body) if outbound and body else 0,
            encoding=encoding(body) if outbound else "", alert_id=m.alert_id, handled_by=m.handled_by,
            preview=bool(m.preview), erased=marker(m.erased_at, m.erased_under) if m.erased_at else None))
    return lines


def _followups(session: Session, pk: int) -> list[FollowUpLine]:
    answers: dict[int, list[AnswerLine]] = {}
    for a in session.scalars(select(Answer).join(FollowUp, FollowUp.id == Answer.followup_id)
                             .where(FollowUp.patient_id == pk).order_by(Answer.answered_at, Answer.id)):
        answers.setdefault(a.followup_id, []).append(AnswerLine(
            question_key=a.question_key, question=QUESTION_LABELS.get(a.question_key, a.question_key),
            value=a.value, value_words=answer_value_words(a.question_key, a.value), raw_text=a.raw_text,
            missing_reason=a.missing_reason,
            missing_words=MISSING_WORDS.get(a.missing_reason, a.missing_reason) if a.missing_reason else None,
            answered_at=a.answered_at,
            raw_text_erased=marker(a.raw_text_erased_at, a.raw_text_erased_under) if a.raw_text_erased_at else None))
    answered = set(session.scalars(usable_answers().join(FollowUp, FollowUp.id == Answer.followup_id)
                                   .where(FollowUp.patient_id == pk)))
    out = []
    for f, discharge in session.execute(select(FollowUp, Episode.discharge_date)
                                        .join(Episode, Episode.id == FollowUp.episode_id)
                                        .where(FollowUp.patient_id == pk)
                                        .order_by(Episode.discharge_date, FollowUp.timepoint_days, FollowUp.id)):
        out.append(FollowUpLine(
            id=f.id, discharge_date=discharge, timepoint_days=f.timepoint_days, state=f.state,
            state_words=state_words(f.state), **_outcome(f, f.id in answered), is_open=f.state in OPEN_STATES,
            held=f.held_at is not None,
            held_at=f.held_at, held_by=f.held_by, invited_at=f.invited_at, completed_at=f.completed_at,
            expires_at=f.expires_at, reminders_sent=f.reminders_sent or 0, answers=answers.get(f.id, [])))
    return out


def _outcome(f: FollowUp, answered: bool) -> dict[str, str]:
    """What the dataset records for this follow-up, in the export's and the report's words."""
    if f.state in OPEN_STATES:
        return {"outcome": OPEN_LABEL, "outcome_words": "open: the conversation is still running"}
    code = outcome_of(f.state, answered, f.last_inbound_at is not None)
    return {"outcome": code, "outcome_words": f"{code.replace('_', ' ')}: {OUTCOMES[code]}"}


def _open_followup_id(followups: list[FollowUpLine]) -> int | None:
    """The conversation a text to the patient belongs to: the newest open follow-up."""
    open_ = [f for f in followups if f.is_open]
    if not open_:
        return None
    return max(open_, key=lambda f: (f.invited_at or dt.datetime.min, f.id)).id


def patient_view(session: Session, pk: int, *, actor: str, address: str | None = None) -> PatientView | None:
    """Everything the patient page shows, audited as ``viewed_patient`` in the same transaction.
    None when there is no such patient.  Seven statements whatever the number of messages."""
    p = session.get(Patient, pk)
    if p is None:
        return None
    stays = [Stay(e.id, e.discharge_date, e.admission_date, e.program, e.primary_substance,
                  r.mean_score if r is not None else None,
                  dict(r.subscale_scores or {}) if r is not None else {})
             for e, r in session.execute(select(Episode, AllianceRating)
                                         .outerjoin(AllianceRating, AllianceRating.episode_id == Episode.id)
                                         .where(Episode.patient_id == pk).order_by(Episode.discharge_date))]
    followups = _followups(session, pk)
    transcript = _transcript(session, pk)
    history = _contact_history(session, pk)
    audit(session, "viewed_patient", actor=actor, patient_id=pk, address=address)
    session.flush()
    return PatientView(
        pk=p.id, study_id=p.patient_id, phone=mask(p.phone), phone_valid=bool(p.phone_valid),
        language=p.language, timezone=p.timezone, local_now=utcnow().replace(tzinfo=dt.UTC).astimezone(_zone(p.timezone)),
        sms_consent=bool(p.sms_consent), opted_out_at=p.opted_out_at, age=p.age, sex=p.sex,
        contact_history=history, stays=stays, followups=followups, transcript=transcript,
        open_followup_id=_open_followup_id(followups), withdrawn_at=p.withdrawn_at, withdrawn_by=p.withdrawn_by,
        withdrawal_data=p.withdrawal_data, withdrawal_reason=p.withdrawal_reason,
        phone_erased=marker(p.phone_erased_at, p.phone_erased_under) if p.phone_erased_at else None)


def open_followup(session: Session, pk: int) -> FollowUp | None:
    """The patient's newest open follow-up (the conversation a text to them belongs to)."""
    return session.scalar(select(FollowUp).where(FollowUp.patient_id == pk, FollowUp.state.in_(OPEN_STATES))
                          .order_by(FollowUp.invited_at.desc().nulls_last(), FollowUp.id.desc()).limit(1))


# -- the full phone number --------------------------------------------------------------------------

def reveal_phone(session: Session, pk: int, *, actor: str, address: str | None = None) -> str:
    """The patient's full phone number (E.164), audited as ``phone_shown``."""
    p = session.get(Patient, pk)
    if p is None:
        raise PatientError("There is no such patient.")
    audit(session, "phone_shown", actor=actor, patient_id=pk, address=address)
    session.flush()
    return p.phone


# -- pausing a follow-up ----------------------------------------------------------------------------

def _followup_for_update(session: Session, followup_id: int) -> FollowUp:
    f = session.get(FollowUp, followup_id)
    if f is None:
        raise PatientError("There is no such follow-up.")
    patient = session.get(Patient, f.patient_id)
    lock_phone(session, patient.phone)  # the same lock as an inbound text and expiry: read after it
    session.refresh(f)
    return f


def hold_followup(session: Session, followup_id: int, *, actor: str, address: str | None = None) -> FollowUp:
    """Pause a follow-up: no reminder, repeated question or expiry, and queued invitations and reminders
    wait, until it is released.  The patient's own texts are still answered.  Audited."""
    f = _followup_for_update(session, followup_id)
    if f.state not in OPEN_STATES:
        raise PatientError(f"This follow-up is {state_words(f.state)}; only an open follow-up can be paused.")
    if f.held_at is not None:
        raise PatientError(f"This follow-up was already paused by {f.held_by} "
                           f"on {f.held_at:%Y-%m-%d %H:%M} UTC.")
    f.held_at, f.held_by = utcnow(), actor
    audit(session, "followup_held", actor=actor, patient_id=f.patient_id, address=address, followup_id=f.id,
          timepoint_days=f.timepoint_days, state=f.state)
    session.flush()
    return f


def release_followup(session: Session, followup_id: int, *, actor: str, address: str | None = None) -> FollowUp:
    """Resume a paused follow-up.  Its expiry moves later by the time it was paused, so the patient
    keeps the days they had left; due reminders go out at the next worker pass.  Audited."""
    f = _followup_for_update(session, followup_id)
    if f.held_at is None:
        raise PatientError("This follow-up is not paused.")
    now = utcnow()
    paused_for = max(now - f.held_at, dt.timedelta(0))
    held_at, held_by = f.held_at, f.held_by
    old_expiry = f.expires_at
    if f.expires_at is not None and f.state in OPEN_STATES:
        f.expires_at = f.expires_at + paused_for
    f.held_at, f.held_by = None, None
    audit(session, "followup_released", actor=actor, patient_id=f.patient_id, address=address, followup_id=f.id,
          held_since=held_at.isoformat(timespec="seconds"), held_by=held_by,
          held_seconds=int(paused_for.total_seconds()),
          expires_at_before=old_expiry.isoformat(timespec="seconds") if old_expiry else None,
          expires_at=f.expires_at.isoformat(timespec="seconds") if f.expires_at else None)
    session.flush()
    return f


# -- correcting a phone number ----------------------------------------------------------------------

@dataclass(frozen=True)
class PhoneCorrection:
    old_masked: str
    new_masked: str
    reopened: bool  # the wrong-number opt-out was lifted
    cancelled: int = 0  # texts queued for the old number, not sent
    requeued: int = 0  # of those, invitations queued again to the new number

    @property
    def queue_words(self) -> str:
        """What became of the texts queued for the old number, in words ('' when there were none)."""
        if not self.cancelled:
            return ""
        others = self.cancelled - self.requeued
        words = []
        if self.requeued:
            words.append(f"{self.requeued} invitation(s) queued again to the new number")
        if others:
            words.append(f"{others} other text(s) cancelled (a survey question or a hand-written text: "
                         "write again if it still makes sense)")
        return f"Texts queued for the old number were not sent: {'; '.join(words)}."


def correct_phone(session: Session, settings: Settings, pk: int, raw: str, *, actor: str,
                  address: str | None = None) -> PhoneCorrection:
    """Set a new phone number (validated with phonenumbers), mark it valid and, when the patient was
    opted out only because someone replied "wrong number", opt them back in.  The old number is kept in
    the audit row ``phone_corrected`` (the audit log is for administrators only)."""
    p = session.get(Patient, pk)
    if p is None:
        raise PatientError("There is no such patient.")
    refuse_if_closed(session, PatientError, "the phone number was not changed.")
    try:
        new = parse_phone(raw or "", settings.default_region)
    except PhoneError as exc:
        raise PatientError(f"The phone number was not changed: what was entered {exc}.") from None
    lock_phone(session, p.phone)
    session.refresh(p)
    old = p.phone
    if new == old and p.phone_valid:
        raise PatientError("That is already this patient's phone number.")
    was_valid = bool(p.phone_valid)
    reopen = opted_out_by_wrong_number(session, pk)
    p.phone, p.phone_valid = new, True
    audit(session, "phone_corrected", actor=actor, patient_id=pk, address=address, old=old, new=new,
          was_valid=was_valid, opt_out_lifted=reopen)
    if reopen:
        lift_opt_out(session, pk, actor=actor, address=address,
                     reason="phone number corrected after a wrong-number reply")
    session.flush()
    cancelled, requeued = readdress_after_phone_change(session, [pk])
    session.refresh(p)
    return PhoneCorrection(mask(old), mask(new), reopen, cancelled, requeued)
