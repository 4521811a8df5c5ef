"""Texts a coordinator writes by hand from the console.

The text is stored as an outbound message of kind ``manual`` with its author and sent by the worker
like any other text: quiet hours do not apply (a person is writing) and it goes ahead of any backlog
of invitations (``outreach.messaging.sender``).  A patient's reply goes through the webhook as usual.
"""
from __future__ import annotations

from sqlalchemy.orm import Session

from conversations.sms import encoding, segments

from ..config import Settings
from ..db import audit
from ..messaging.opt_outs import is_blocked
from ..states import Delivery
from ..models import Message, Patient
from ..clock import utcnow
from .patients import open_followup
from ..repository import lock_phone

MAX_LENGTH = 320


class TextingError(ValueError):
    """A text that cannot be sent; the message says why, as a sentence for the coordinator."""


def normalize_body(body: str | None) -> str:
    """Browsers send line breaks as CRLF; a text counts each as one character."""
    return (body or "").replace("\r\n", "\n").replace("\r", "\n").strip()


def queue_manual_text(session: Session, settings: Settings, pk: int, body: str, *, author: str,
                      address: str | None = None) -> Message:
    """Queue a hand-written text to patient ``pk`` (sent at once by the worker), audited as
    ``manual_text_queued`` with its length and segment count (never its words).  Raises
    :class:`TextingError` when the patient has opted out, did not consent, has an invalid phone, or the
    text is empty or longer than 320 characters."""
    patient = session.get(Patient, pk)
    if patient is None:
        raise TextingError("There is no such patient.")
    lock_phone(session, patient.phone)  # an opt-out arriving now is applied before or after, never during
    session.refresh(patient)
    if patient.withdrawn_at is not None:
        raise TextingError(f"This participant withdrew from the study on {patient.withdrawn_at:%Y-%m-%d}; "
                           "the text was not sent.")
    if patient.opted_out_at is not None:
        raise TextingError(f"This patient opted out of texts on {patient.opted_out_at:%Y-%m-%d}; "
                           "the text was not sent.")
    if not patient.sms_consent:
        raise TextingError("This patient did not consent to texts; the text was not sent.")
    if not patient.phone_valid:
        raise TextingError("This patient's phone number is marked invalid; correct the number before texting.")
    if is_blocked(session, patient.phone):
        raise TextingError("The holder of this patient's phone number replied 'wrong number'; correct the number "
                           "(or confirm it with the patient and use `outreach patients opt-in`) before texting.")
    text = normalize_body(body)
    if not text:
        raise TextingError("The text is empty; write something to send.")
    if len(text) > MAX_LENGTH:
        raise TextingError(f"The text is {len(text)} characters long; a text may have {MAX_LENGTH} at most.")
    followup = open_followup(session, pk)
    now = utcnow()
    msg = Message(direction="out", kind="manual", status=Delivery.PENDING, send_after=now, author=author,
                  patient_id=pk, followup_id=followup.id if followup else None, to_number=patient.phone,
                  body=text, attempts=0, media_count=0, created_at=now, updated_at=now)
    session.add(msg)
    session.flush()
    audit(session, "manual_text_queued", actor=author, patient_id=pk, address=address, message_id=msg.id,
          followup_id=msg.followup_id, length=len(text), segments=segments(text), encoding=encoding(text))
    session.flush()
    return msg
