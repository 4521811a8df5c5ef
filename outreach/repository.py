"""Small query helpers shared by the services (set-based where it matters)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from conversations.machine import ACTIVE, FollowUpState, transition

from .models import FollowUp, Patient

from .clock import utcnow

OPEN_STATES = ACTIVE + [FollowUpState.CRISIS]


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
