"""The one rule that says whether a text may go to a patient now.

Checked by the sender at the moment of sending, for every kind of text to a patient (invitation, reminder,
stalled-survey nudge, a survey question queued for the worker, a hand-written text): the patient has
consent to texts now, is not opted out now, and the text is addressed to the patient's current number.
A text that fails it is cancelled with the reason in words (the console's transcript and ``outreach
events`` show it), never sent, and never re-addressed: where the number changed, the coordinator decides
what to send to the new one.

A participant who withdrew from the study (``Patient.withdrawn_at``) is sent nothing but the answers to their own
texts: the neutral acknowledgement (``withdrawn_reply``) and the safety reply.  No keyword lifts a withdrawal.

Two kinds of text answer the number that has just written, whoever it is now, and are not held by it: the
safety reply to a crisis text and the confirmation of an opt-out.  The texts to the coordinators on call
have no patient.  The scheduler queues nothing for a patient the rule refuses (:func:`can_be_texted`).
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select

from ..models import BlockedNumber, Message, Patient

# Why a patient is opted out (Patient.opt_out_reason).  Only the patient's own STOP is lifted by a START or
# YES; a "wrong number" reply is lifted only by a phone correction or ``outreach patients opt-in --reason``.
STOP = "stop"
WRONG_NUMBER = "wrong_number"
OPT_OUT_REASONS = (STOP, WRONG_NUMBER)

# Replies to the number that has just written: they go even to a number opted out, without consent, or no
# longer the patient's (the person who wrote is the one answered).
TO_THE_WRITER = ("safety", "opt_out_confirmation")

OPTED_OUT = "patient opted out"
NUMBER_BLOCKED = "this number replied 'wrong number': nothing is sent to it again"
PREVIEW = "a coordinator's preview is answered in its own request only, never by the worker"
NO_CONSENT = "patient has no consent to texts (sms_consent is no)"
WITHDRAWN = "the participant withdrew from the study"
# The neutral acknowledgement a withdrawn participant's own text gets (held by opt-out and consent like any text).
WITHDRAWN_REPLY = "withdrawn_reply"
NUMBER_CHANGED = "the patient's phone number changed after this text was queued; not sent to the old number"


def lifted_by_keyword(reason: str | None) -> bool:
    """Does a START or YES from the number opt it back in?  Only after the patient's own STOP (an opt-out
    recorded before reasons were kept counts as one)."""
    return reason in (None, STOP)


def stop_reason(msg: Any, patient: Any, *, blocked: bool = False) -> str | None:
    """Why ``msg`` may not go to ``patient`` now (None: it may).  ``msg`` has ``kind``, ``to_number`` and
    ``preview``; ``patient`` has ``opted_out_at``, ``sms_consent`` and ``phone`` (None: not a patient's text);
    ``blocked``: the text's number replied "wrong number" (:class:`outreach.models.BlockedNumber`)."""
    if getattr(msg, "preview", False):
        return PREVIEW
    if patient is None or msg.kind in TO_THE_WRITER:
        return None
    if blocked:
        return NUMBER_BLOCKED
    if patient.opted_out_at is not None:
        return OPTED_OUT
    if not patient.sms_consent:
        return NO_CONSENT
    if msg.to_number != patient.phone:
        return NUMBER_CHANGED
    if getattr(patient, "withdrawn_at", None) is not None and msg.kind != WITHDRAWN_REPLY:
        return WITHDRAWN
    return None


def stop_conditions() -> list[tuple[ColumnElement[bool], str]]:
    """:func:`stop_reason` as SQL conditions on ``messages`` (in the same order), for set-based passes.  All but the
    withdrawal: withdrawing cancels the participant's queued texts at once and nothing queues another (the
    scheduler and waves use :func:`can_be_texted`, a text by hand is refused), so the sender's check of each text
    it claims (:func:`stop_reason`) is enough, and the pass over every due text stays as cheap as it was (one more
    statement there doubled the time to hold 1,000 texts for quiet hours on SQLite)."""
    kind = func.coalesce(Message.kind, "")
    patient = select(Patient.id).where(Patient.id == Message.patient_id)
    subject = kind.not_in(TO_THE_WRITER) & Message.patient_id.is_not(None)
    return [
        (Message.preview.is_(True), PREVIEW),
        (subject & select(BlockedNumber.phone).where(BlockedNumber.phone == Message.to_number).exists(),
         NUMBER_BLOCKED),
        (subject & patient.where(Patient.opted_out_at.is_not(None)).exists(), OPTED_OUT),
        (subject & patient.where(Patient.sms_consent.is_not(True)).exists(), NO_CONSENT),
        (subject & patient.where(or_(Message.to_number.is_(None), Patient.phone != Message.to_number)).exists(),
         NUMBER_CHANGED),
    ]


def _blocked_phone() -> ColumnElement[bool]:
    return select(BlockedNumber.phone).where(BlockedNumber.phone == Patient.phone).exists()


def can_be_texted() -> ColumnElement[bool]:
    """A patient the rule lets the service text (joined as ``Patient``): in the study, consent, not opted out, a
    phone number not marked invalid (an erased one is) and not one whose holder replied "wrong number"."""
    return and_(Patient.withdrawn_at.is_(None), Patient.opted_out_at.is_(None), Patient.sms_consent.is_(True),
                Patient.phone_valid.is_(True), ~_blocked_phone())


def why_not_texted() -> Any:
    """For a joined ``Patient``: the reason key (as waves plan uses them) the service may not text them, or
    NULL when it may."""
    return case((Patient.withdrawn_at.is_not(None), literal("withdrawn")),
                (Patient.opted_out_at.is_not(None), literal("opted_out")),
                (Patient.sms_consent.is_not(True), literal("no_consent")),
                (Patient.phone_valid.is_not(True), literal("phone_invalid")),
                (_blocked_phone(), literal("wrong_number")), else_=None)
