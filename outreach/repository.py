"""Small query helpers shared by the services (set-based where it matters)."""
from __future__ import annotations

from typing import Any, Sequence

from sqlalchemy import Connection, and_, bindparam, exists, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from conversations.machine import ACTIVE, transition

from .models import FollowUp, Message, Patient, utcnow
from .send_rule import NUMBER_CHANGED, OPTED_OUT, TO_THE_WRITER, WRONG_NUMBER, can_be_texted

OPEN_STATES = ACTIVE + ["crisis"]


def insert_ignore(bind: Session | Connection | str, model: Any):
    """A dialect-specific ``INSERT`` that supports ``on_conflict_do_nothing``, for a session, a connection
    or a dialect name."""
    dialect = bind if isinstance(bind, str) else (bind.get_bind() if isinstance(bind, Session) else bind).dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


LOCK_PHONE = select(Patient.id).where(Patient.phone == bindparam("phone")).order_by(Patient.id).with_for_update()


def lock_phone(bind: Session | Connection, phone: str) -> list[int]:
    """Lock every patient row on ``phone`` (PostgreSQL; SQLite holds the database lock already) and
    return their ids.  Whoever changes a conversation or a patient's opt-out takes this lock first."""
    return list(bind.scalars(LOCK_PHONE, {"phone": phone}))


def close(followup: FollowUp, trigger: str) -> None:
    """End an open follow-up (undeliverable, opted out, expired) through the state machine."""
    transition(followup, trigger)
    followup.closed_at = utcnow()


def set_opt_out(bind: Session | Connection, patient_ids: Sequence[int], opted_out: bool,
                reason: str | None = None) -> None:
    """Opt every patient on the phone in or out (the first opt-out time is kept); an opt-out
    cancels their queued texts.  ``reason`` (outreach.send_rule.OPT_OUT_REASONS) is kept with the opt-out,
    and a "wrong number" reply outranks an earlier STOP (a START must not lift what a stranger's reply
    said).  Plain UPDATEs: works in an ORM session or on a Core connection."""
    if not patient_ids:
        return
    now = utcnow()
    patients = update(Patient).where(Patient.id.in_(patient_ids))
    if opted_out:
        bind.execute(patients.where(Patient.opted_out_at.is_(None))
                     .values(opted_out_at=now, opt_out_reason=reason, updated_at=now))
        if reason == WRONG_NUMBER:
            bind.execute(patients.values(opt_out_reason=reason, updated_at=now))
        cancel_pending(bind, patient_ids, OPTED_OUT, exempt=TO_THE_WRITER)
    else:
        bind.execute(patients.values(opted_out_at=None, opt_out_reason=None, updated_at=now))


def cancel_pending(bind: Session | Connection, patient_ids: Sequence[int], reason: str,
                   exempt: Sequence[str] = ()) -> int:
    """Cancel the patients' texts still waiting to be sent, with ``reason`` in words (kinds in ``exempt``
    are left queued).  How many were cancelled."""
    if not patient_ids:
        return 0
    stmt = (update(Message).where(Message.direction == "out", Message.status == "pending",
                                  Message.patient_id.in_(patient_ids))
            .values(status="cancelled", error_message=reason, updated_at=utcnow()))
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
    stale = and_(Message.direction == "out", Message.status == "pending", Message.patient_id.in_(patient_ids),
                 func.coalesce(Message.kind, "").not_in(TO_THE_WRITER),
                 exists().where(owner.id == Message.patient_id, owner.phone != Message.to_number))
    copied = ("direction", "kind", "followup_id", "patient_id", "from_number", "body", "media_count", "attempts",
              "preview")
    again = (select(*(getattr(Message, c) for c in copied), Patient.phone, literal("pending"), literal(now),
                    literal(now), literal(now))
             .join(Patient, Patient.id == Message.patient_id)
             .where(stale, Message.kind == "invitation", can_be_texted()))
    requeued = len(bind.execute(insert(Message).from_select(  # counted by RETURNING: psycopg's rowcount is -1
        [*copied, "to_number", "status", "send_after", "created_at", "updated_at"], again)
        .returning(Message.id)).all())
    cancelled = bind.execute(update(Message).where(stale)
                             .values(status="cancelled", error_message=NUMBER_CHANGED, updated_at=now)
                             .execution_options(synchronize_session=False)).rowcount or 0
    return cancelled, requeued
