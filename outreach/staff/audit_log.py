"""Reading the audit log: filtered rows newest first, the actions for a filter, and CSV.

The application only ever *inserts* audit rows (``outreach.db.audit``); nothing
here or elsewhere updates or deletes them (a test greps the source tree).
Reading the log is itself a look at identifiable data, so :func:`read_audit_log`
records who looked, with which filters, in the same transaction.

Times are stored as naive UTC; a date filter is a day in the console's time
zone, turned into naive UTC bounds here (so a day that changes to or from
daylight-saving time is 23 or 25 hours long, as it should be).
"""
from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import dataclass, field
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ..csvsafe import SafeWriter
from ..db import audit
from ..models import AuditEvent, Patient

UTC = dt.timezone.utc
CSV_COLUMNS = ("at", "actor", "action", "patient", "address", "details")


class AuditFilterError(ValueError):
    """A filter the admin typed cannot be used (the message says why, in words)."""


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: dt.datetime  # naive UTC, as stored
    actor: str
    action: str
    patient_pk: int | None  # internal id (for links)
    patient_study_id: str | None  # the site's study id (shown to the admin, never put in a URL)
    address: str | None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def details_json(self) -> str:
        """The details as JSON text (keys sorted, characters as they are)."""
        return json.dumps(self.details, ensure_ascii=False, sort_keys=True, default=str)


def _zone(zone: ZoneInfo | str | None) -> ZoneInfo | dt.timezone:
    if zone is None:
        return UTC
    return ZoneInfo(zone) if isinstance(zone, str) else zone


def _utc_bound(value: dt.date | dt.datetime, zone: ZoneInfo | dt.timezone, *, end: bool) -> tuple[dt.datetime, bool]:
    """The naive UTC bound for ``value`` and whether it is exclusive.

    A date is a whole day in ``zone``: ``since`` starts at its local midnight, ``until`` ends before the
    next local midnight.  A datetime is a moment (naive means naive UTC, as stored) and is inclusive."""
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)
        return moment, False
    day = value + dt.timedelta(days=1) if end else value
    moment = dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(UTC).replace(tzinfo=None)
    return moment, end


def _address(ev: AuditEvent) -> str | None:
    if ev.address:
        return ev.address
    details = ev.details or {}
    value = details.get("address")  # the audit helper may keep the console's address with the details
    return str(value) if value else None


def audit_rows(session: Session, *, actor: str | None = None, patient: str | int | None = None,
               action: str | None = None, since: dt.date | dt.datetime | None = None,
               until: dt.date | dt.datetime | None = None, limit: int | None = 500, offset: int = 0,
               zone: ZoneInfo | str | None = None) -> list[AuditRow]:
    """Audit rows, newest first, matching every filter given.

    ``actor``: the user's email, the CLI's ``cli:<user>``, ``system`` and so on, matched exactly or as a
    part (case-insensitive).  ``patient``: a study id or an internal id written as digits (either may
    match), or an ``int``, which is only the internal id.  ``action``: exact.
    ``since``/``until``: inclusive dates in ``zone`` (the console's zone; UTC when not given) or moments.
    ``limit=None`` returns every matching row."""
    query = (select(AuditEvent, Patient.patient_id)
             .outerjoin(Patient, Patient.id == AuditEvent.patient_id))
    if actor is not None and str(actor).strip():
        needle = str(actor).strip().lower()
        query = query.where(func.lower(AuditEvent.actor).contains(needle, autoescape=True))
    if isinstance(patient, int) and not isinstance(patient, bool):
        query = query.where(AuditEvent.patient_id == patient)  # an int is the internal id, never a study id
    elif patient is not None and str(patient).strip():
        key = str(patient).strip()
        match = [Patient.patient_id == key]
        if key.isdigit():
            match.append(AuditEvent.patient_id == int(key))
        query = query.where(or_(*match))
    if action is not None and str(action).strip():
        query = query.where(AuditEvent.action == str(action).strip())
    tz = _zone(zone)
    if since is not None:
        start, _ = _utc_bound(since, tz, end=False)
        query = query.where(AuditEvent.at >= start)
    if until is not None:
        stop, exclusive = _utc_bound(until, tz, end=True)
        query = query.where(AuditEvent.at < stop if exclusive else AuditEvent.at <= stop)
    query = query.order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    if offset:
        query = query.offset(max(0, int(offset)))
    if limit is not None:
        query = query.limit(max(0, int(limit)))
    return [AuditRow(id=ev.id, at=ev.at, actor=ev.actor, action=ev.action, patient_pk=ev.patient_id,
                     patient_study_id=study_id, address=_address(ev), details=dict(ev.details or {}))
            for ev, study_id in session.execute(query)]


def actions(session: Session) -> list[str]:
    """Every action the log holds, sorted (for the filter's select)."""
    return list(session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action)))


def parse_filters(args: Mapping[str, str]) -> dict[str, Any]:
    """The filters from a form or query string (``actor``, ``patient`` as typed, ``patient_pk`` an internal
    id (becomes an ``int`` ``patient``), ``action``, ``since``, ``until`` as YYYY-MM-DD); empty fields are
    left out.  Raises :class:`AuditFilterError` with a message in words."""
    out: dict[str, Any] = {}
    for key in ("actor", "patient", "action"):
        value = (args.get(key) or "").strip()
        if value:
            if len(value) > 254:
                raise AuditFilterError(f"The {key} filter is too long.")
            out[key] = value
    pk = (args.get("patient_pk") or "").strip()
    if pk:
        if not pk.isdigit() or len(pk) > 18:
            raise AuditFilterError("The patient in the address of this page is not an internal id.")
        out["patient"] = int(pk)  # the internal id the console puts in URLs instead of a study id
    labels = {"since": "From", "until": "To"}
    for key in ("since", "until"):
        value = (args.get(key) or "").strip()
        if value:
            try:
                out[key] = dt.date.fromisoformat(value)
            except ValueError:
                raise AuditFilterError(f"“{labels[key]}” must be a date written as YYYY-MM-DD.") from None
    if "since" in out and "until" in out and out["since"] > out["until"]:
        raise AuditFilterError("“From” is after “To”: no row can match.")
    return out


def patient_pk(session: Session, patient: str | int) -> int | None:
    """The internal id of the patient a filter names (an ``int`` internal id, or text: a study id first,
    then an internal id written as digits), or None.  The console puts only this id in URLs."""
    if isinstance(patient, int):
        return session.scalar(select(Patient.id).where(Patient.id == patient))
    key = patient.strip()
    pk = session.scalar(select(Patient.id).where(Patient.patient_id == key))
    if pk is None and key.isdigit():
        pk = session.scalar(select(Patient.id).where(Patient.id == int(key)))
    return pk


def patient_study_id(session: Session, pk: int) -> str | None:
    """The study id of the patient with internal id ``pk`` (to show in a form, not in a URL)."""
    return session.scalar(select(Patient.patient_id).where(Patient.id == pk))


def _describe(filters: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v)
            for k, v in filters.items() if v not in (None, "")}


def read_audit_log(session: Session, *, viewer: str, address: str | None = None, purpose: str = "page",
                   limit: int | None = 500, offset: int = 0, zone: ZoneInfo | str | None = None,
                   **filters: Any) -> tuple[list[AuditRow], bool]:
    """:func:`audit_rows` for a person: the rows and whether more rows follow them, recording the look
    (``viewed_audit_log``, with the filters, about the patient filtered on if any) in the caller's
    transaction.  ``purpose`` is ``page`` or ``csv``."""
    rows = audit_rows(session, limit=None if limit is None else limit + 1, offset=offset, zone=zone, **filters)
    more = limit is not None and len(rows) > limit
    rows = rows[:limit] if limit is not None else rows
    about = patient_pk(session, filters["patient"]) if filters.get("patient") not in (None, "") else None
    audit(session, "viewed_audit_log", actor=viewer, address=address, patient_id=about,
          filters=_describe(filters), format=purpose, offset=offset, rows=len(rows))
    return rows, more


def audit_csv(rows: list[AuditRow], zone: ZoneInfo | str | None = None) -> str:
    """CSV with a header and one line per row: ``at`` (ISO 8601 with its UTC offset, in ``zone``; UTC when
    not given), actor, action, patient (study id), address, details (JSON).  Cells a spreadsheet would
    read as a formula get a leading apostrophe."""
    tz = _zone(zone)
    out = io.StringIO()
    writer = SafeWriter(out, lineterminator="\r\n")  # formula-like cells get a leading apostrophe
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        at = r.at.replace(tzinfo=UTC).astimezone(tz).isoformat(timespec="seconds")
        writer.writerow([at, r.actor, r.action, r.patient_study_id, r.address, r.details_json])
    return out.getvalue()


__all__ = ["AuditRow", "AuditFilterError", "CSV_COLUMNS", "actions", "audit_csv", "audit_rows", "parse_filters",
           "patient_pk", "patient_study_id", "read_audit_log"]
