"""Opting patients out and back in, and what a changed phone number does to the texts already queued.

Every writer of an opt-out comes here (a patient's keyword, a carrier's report, Twilio's own opt-out, a
coordinator's opt-in, a phone correction), so the reason kept with an opt-out (:mod:`.send_rule`) and the
cancelling of queued texts are the same whoever acts.
"""
from __future__ import annotations

from typing import Sequence

from sqlalchemy import Connection, and_, delete, exists, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session, aliased

from ..db import audit
from ..models import BlockedNumber, Message, Patient
from ..repository import insert_ignore
from ..states import Delivery
from ..clock import utcnow
from .send_rule import NUMBER_CHANGED, OPTED_OUT, STOP, TO_THE_WRITER, WRONG_NUMBER, can_be_texted


def set_opt_out(bind: Session | Connection, patient_ids: Sequence[int], opted_out: bool,
                reason: str | None = None, *, by_keyword: bool = False) -> None:
    """Opt every patient on the phone in or out (the first opt-out time and reason are kept); an opt-out
    cancels their queued texts.  ``reason`` (outreach.messaging.send_rule.OPT_OUT_REASONS) says whose wish it was:
    the patient's STOP, or a "wrong number" reply (which also blocks the number itself: :func:`block_number`).
    ``by_keyword``: a START or YES texted from the phone, which lifts only the patients' own STOP, never a
    "wrong number" opt-out of another patient on a shared phone.  Plain UPDATEs: works in an ORM session or on a
    Core connection."""
    if not patient_ids:
        return
    now = utcnow()
    patients = update(Patient).where(Patient.id.in_(patient_ids))
    if opted_out:
        bind.execute(patients.where(Patient.opted_out_at.is_(None))
                     .values(opted_out_at=now, opt_out_reason=reason, updated_at=now))
        cancel_pending(bind, patient_ids, OPTED_OUT, exempt=TO_THE_WRITER)
    elif by_keyword:
        bind.execute(patients.where(or_(Patient.opt_out_reason.is_(None), Patient.opt_out_reason == STOP))
                     .values(opted_out_at=None, opt_out_reason=None, updated_at=now))
    else:
        bind.execute(patients.values(opted_out_at=None, opt_out_reason=None, updated_at=now))


def block_number(bind: Session | Connection, phone: str, message_id: int | None = None) -> None:
    """Its holder replied "wrong number": nothing is sent to ``phone`` again, whoever it belongs to in the
    records, and nothing texted from it lifts an opt-out (outreach.models.BlockedNumber)."""
    bind.execute(insert_ignore(bind, BlockedNumber).values(phone=phone, reason=WRONG_NUMBER, blocked_at=utcnow(),
                                                          message_id=message_id)
                 .on_conflict_do_nothing(index_elements=["phone"]))


def is_blocked(bind: Session | Connection, phone: str | None) -> bool:
    return phone is not None and bind.execute(select(BlockedNumber.phone).where(BlockedNumber.phone == phone)
                                              ).first() is not None


def cancel_pending(bind: Session | Connection, patient_ids: Sequence[int], reason: str,
                   exempt: Sequence[str] = ()) -> int:
    """Cancel the patients' texts still waiting to be sent, with ``reason`` in words (kinds in ``exempt``
    are left queued).  How many were cancelled."""
    if not patient_ids:
        return 0
    stmt = (update(Message).where(Message.direction == "out", Message.status == Delivery.PENDING,
                                  Message.patient_id.in_(patient_ids))
            .values(status=Delivery.CANCELLED, error_message=reason, updated_at=utcnow()))
    if exempt:
        stmt = stmt.where(func.coalesce(Message.kind, "").not_in(exempt))
    return bind.execute(stmt.execution_options(synchronize_session=False)).rowcount or 0


def readdress_after_phone_change(bind: Session | Connection, patient_ids: Sequence[int]) -> tuple[int, int]:
    """After the patients' phone numbers changed: cancel every text still queued for an old number (the
    sender would refuse it too), and queue each invitation among them again to the current number, when
    the patient may be texted (an invitation was never seen; a survey question or a hand-written text is
    left to the coordinator).  Returns (cancelled, invitations queued again)."""
    if not patient_ids:
        return 0, 0
    now = utcnow()
    owner = aliased(Patient)
    stale = and_(Message.direction == "out", Message.status == Delivery.PENDING, Message.patient_id.in_(patient_ids),
                 func.coalesce(Message.kind, "").not_in(TO_THE_WRITER),
                 exists().where(owner.id == Message.patient_id, owner.phone != Message.to_number))
    copied = ("direction", "kind", "followup_id", "patient_id", "from_number", "body", "media_count", "attempts",
              "preview")
    again = (select(*(getattr(Message, c) for c in copied), Patient.phone, literal(Delivery.PENDING), literal(now),
                    literal(now), literal(now))
             .join(Patient, Patient.id == Message.patient_id)
             .where(stale, Message.kind == "invitation", can_be_texted()))
    requeued = len(bind.execute(insert(Message).from_select(  # counted by RETURNING: psycopg's rowcount is -1
        [*copied, "to_number", "status", "send_after", "created_at", "updated_at"], again)
        .returning(Message.id)).all())
    cancelled = bind.execute(update(Message).where(stale)
                             .values(status=Delivery.CANCELLED, error_message=NUMBER_CHANGED, updated_at=now)
                             .execution_options(synchronize_session=False)).rowcount or 0
    return cancelled, requeued


def opted_out_by_wrong_number(session: Session, pk: int) -> bool:
    """The patient is opted out because someone replied "wrong number" on their phone: a new number may be
    texted again.  Never true after the patient's own STOP or a carrier's opt-out."""
    return session.scalar(select(Patient.opt_out_reason).where(Patient.id == pk,
                                                               Patient.opted_out_at.is_not(None))) == WRONG_NUMBER


def lift_opt_out(session: Session, pk: int, *, actor: str, reason: str, address: str | None = None,
                 **details) -> None:
    """Opt the patient back in, audited (``opted_in``, who and why) in the caller's transaction.  The
    console's phone correction, an import that changes a wrong number, and ``outreach patients opt-in``
    all come here."""
    set_opt_out(session, [pk], False)
    if details.get("via") == "cli":  # a coordinator confirmed this number with the patient: it is theirs again
        phone = session.scalar(select(Patient.phone).where(Patient.id == pk))
        if session.execute(delete(BlockedNumber).where(BlockedNumber.phone == phone)).rowcount:
            details["number_unblocked"] = True
    audit(session, "opted_in", actor=actor, patient_id=pk, address=address, reason=reason, **details)
