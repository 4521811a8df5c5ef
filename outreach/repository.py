"""Small query helpers shared by the services (set-based where it matters)."""
from __future__ import annotations

from typing import Any, Sequence

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from conversations.machine import ACTIVE, transition

from .models import FollowUp, Message, Patient, utcnow

OPEN_STATES = ACTIVE + ["crisis"]


def insert_ignore(bind: Session | Connection, model: Any):
    """A dialect-specific ``INSERT`` that supports ``on_conflict_do_nothing``, for a session or connection."""
    dialect = (bind.get_bind() if isinstance(bind, Session) else bind).dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


def lock_patients_by_phone(session: Session, phone: str) -> list[Patient]:
    """All patients on ``phone``, row-locked on PostgreSQL (SQLite holds the database lock already)."""
    stmt = select(Patient).where(Patient.phone == phone).order_by(Patient.id).with_for_update()
    return list(session.scalars(stmt))


def conversation_for(session: Session, patients: Sequence[Patient]) -> tuple[Patient | None, FollowUp | None]:
    """Whose message is this?  The patient with an open follow-up wins (shared phones); else the latest one."""
    if not patients:
        return None, None
    by_id = {p.id: p for p in patients}
    followups = list(session.scalars(
        select(FollowUp).where(FollowUp.patient_id.in_(by_id))
        .order_by(FollowUp.invited_at.desc().nulls_last(), FollowUp.id.desc())))
    for fu in followups:
        if fu.state in OPEN_STATES:
            return by_id[fu.patient_id], fu
    if followups:
        return by_id[followups[0].patient_id], followups[0]
    return patients[0], None


def close(followup: FollowUp, trigger: str) -> None:
    """End an open follow-up (undeliverable, opted out, expired) through the state machine."""
    transition(followup, trigger)
    followup.closed_at = utcnow()


def set_opt_out(session: Session, patients: Sequence[Patient], opted_out: bool) -> None:
    """Opt every patient on the phone in or out; an opt-out cancels their queued texts."""
    now = utcnow()
    for p in patients:
        p.opted_out_at = (p.opted_out_at or now) if opted_out else None
    if opted_out and patients:
        session.execute(update(Message)
                        .where(Message.direction == "out", Message.status == "pending",
                               Message.patient_id.in_([p.id for p in patients]))
                        .values(status="cancelled", error_message="patient opted out", updated_at=now))
