"""Small query helpers shared by the services (set-based where it matters)."""
from __future__ import annotations

from typing import Any, Sequence

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from conversations.machine import ACTIVE, transition

from .models import FollowUp, Message, Patient, utcnow

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


def set_opt_out(bind: Session | Connection, patient_ids: Sequence[int], opted_out: bool) -> None:
    """Opt every patient on the phone in or out (the first opt-out time is kept); an opt-out
    cancels their queued texts.  Plain UPDATEs: works in an ORM session or on a Core connection."""
    if not patient_ids:
        return
    now = utcnow()
    patients = update(Patient).where(Patient.id.in_(patient_ids))
    if opted_out:
        bind.execute(patients.where(Patient.opted_out_at.is_(None)).values(opted_out_at=now, updated_at=now))
        bind.execute(update(Message)
                     .where(Message.direction == "out", Message.status == "pending",
                            Message.patient_id.in_(patient_ids))
                     .values(status="cancelled", error_message="patient opted out", updated_at=now))
    else:
        bind.execute(patients.values(opted_out_at=None, updated_at=now))
