"""Discharge import: a CSV of discharges with alliance ratings into the database.

All-or-nothing by default: every problem in the file is reported as
``line N: column: problem`` (N the physical line, header = 1) and nothing is
written.  With ``skip_invalid`` the valid rows are written and the invalid
ones go to ``<name>.rejected.csv`` beside the input.  Re-importing updates
patients by ``patient_id``.  Writes are set-based, in one transaction.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple
from zoneinfo import ZoneInfo, available_timezones

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from .config import Settings
from .db import audit
from .instrument import Instrument, load_instrument
from .models import AllianceRating, Patient
from .phones import parse_phone, zone_for

BASE_REQUIRED = ["patient_id", "phone", "discharge_date", "sms_consent"]
OPTIONAL = ["timezone", "language", "age", "sex", "length_of_stay_days", "primary_substance", "program"]
PATIENT_FIELDS = ["phone", "timezone", "language", "sms_consent", "discharge_date", "age", "sex",
                  "length_of_stay_days", "primary_substance", "program"]
CONSENT = {"yes": True, "y": True, "true": True, "1": True, "no": False, "n": False, "false": False, "0": False}
LANGUAGES = {"en", "fr"}
CHUNK = 2000


class ImportFileError(ValueError):
    """The file as a whole cannot be read (encoding, header); nothing was written."""


@dataclass(frozen=True)
class RowError:
    line: int
    column: str
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.column}: {self.problem}"


@dataclass
class ImportResult:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)
    rejected_path: Path | None = None
    written: bool = False

    @property
    def summary(self) -> str:
        return (f"imported {self.new} new, updated {self.updated}, "
                f"unchanged {self.unchanged}, rejected {self.rejected}")


@dataclass
class _Row:
    line: int
    raw: list[str]
    record: dict[str, Any] | None
    problems: list[tuple[str, str]]


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def expected_columns(instrument: Instrument) -> tuple[list[str], list[str]]:
    return BASE_REQUIRED + instrument.columns, OPTIONAL


def decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportFileError(
            f"line {line}: the file is not UTF-8 (byte 0x{data[exc.start]:02x} cannot be read); "
            "save it as 'CSV UTF-8' and import again") from None


def check_header(header: list[str], instrument: Instrument) -> list[str]:
    required, optional = expected_columns(instrument)
    names = [h.strip().lower() for h in header]
    problems = []
    seen: set[str] = set()
    for name in names:
        if name in seen:
            problems.append(f"column {name!r} appears twice")
        seen.add(name)
        if name not in required and name not in optional:
            problems.append(f"unknown column {name!r}")
    for name in required:
        if name not in seen:
            problems.append(f"missing required column {name!r}")
    if problems:
        listing = f"required columns: {', '.join(required)}; optional columns: {', '.join(optional)}"
        raise ImportFileError("\n".join(f"line 1: header: {p}" for p in problems) + "\n" + listing)
    return names


class RowValidator:
    """Turns one CSV row (column -> text) into a record, or a list of problems."""

    def __init__(self, settings: Settings, instrument: Instrument, today: dt.date):
        self.region = settings.default_region
        self.default_zone = settings.default_timezone
        self.instrument = instrument
        self.today = today

    def __call__(self, values: dict[str, str]) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
        problems: list[tuple[str, str]] = []
        rec: dict[str, Any] = {}

        def check(column: str, fn: Callable[[str], Any]) -> None:
            try:
                rec[column] = fn(values.get(column, "").strip())
            except ValueError as exc:
                problems.append((column, str(exc)))

        check("patient_id", self._patient_id)
        check("phone", lambda v: parse_phone(v, self.region))
        check("discharge_date", self._date)
        check("sms_consent", self._consent)
        check("timezone", self._zone)
        check("language", self._language)
        check("age", lambda v: _int_or_none(v, 0, 120))
        check("length_of_stay_days", lambda v: _int_or_none(v, 0, 3650))
        for column in ("sex", "primary_substance", "program"):
            check(column, lambda v, c=column: _text_or_none(v, 128 if c == "program" else 64))
        items = []
        for column in self.instrument.columns:
            try:
                items.append(_int_or_none(values.get(column, "").strip(), self.instrument.min, self.instrument.max))
            except ValueError as exc:
                problems.append((column, str(exc)))
        if problems:
            return None, problems
        if rec["timezone"] is None:
            rec["timezone"] = zone_for(rec["phone"]) or self.default_zone
        rec["language"] = rec["language"] or "en"
        rec["items"] = items
        rec["mean_score"], rec["subscale_scores"] = self.instrument.score(items)
        return rec, []

    @staticmethod
    def _patient_id(v: str) -> str:
        if not v:
            raise ValueError("is empty")
        if len(v) > 64:
            raise ValueError("is longer than 64 characters")
        return v

    def _date(self, v: str) -> dt.date:
        if not v:
            raise ValueError("is empty; expected YYYY-MM-DD")
        try:
            if len(v) != 10:
                raise ValueError
            day = dt.date.fromisoformat(v)
        except ValueError:
            raise ValueError(f"{v!r} is not a real date in the form YYYY-MM-DD") from None
        if day > self.today:
            raise ValueError(f"{v} is in the future")
        return day

    @staticmethod
    def _consent(v: str) -> bool:
        try:
            return CONSENT[v.lower()]
        except KeyError:
            raise ValueError(f"{v!r} is not one of yes/no/true/false/1/0/y/n") from None

    def _zone(self, v: str) -> str | None:
        if not v:
            return None
        if v not in _zones():
            raise ValueError(f"{v!r} is not a known IANA time zone (e.g. America/Toronto)")
        return v

    @staticmethod
    def _language(v: str) -> str | None:
        if not v:
            return None
        if v.lower() not in LANGUAGES:
            raise ValueError(f"{v!r} is not a supported language (en or fr)")
        return v.lower()


def _int_or_none(v: str, lo: int, hi: int) -> int | None:
    if not v:
        return None
    try:
        n = int(v)
    except ValueError:
        raise ValueError(f"{v!r} is not a whole number from {lo} to {hi}") from None
    if not lo <= n <= hi:
        raise ValueError(f"{n} is out of range {lo}-{hi}")
    return n


def _text_or_none(v: str, max_len: int) -> str | None:
    if len(v) > max_len:
        raise ValueError(f"is longer than {max_len} characters")
    return v or None


def read_rows(text: str, instrument: Instrument, validate: RowValidator) -> tuple[list[str], list[_Row]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ImportFileError("line 1: the file is empty; expected a header row") from None
    except csv.Error as exc:
        raise ImportFileError(f"line 1: {exc}") from None
    names = check_header(header, instrument)
    rows: list[_Row] = []
    seen: dict[str, int] = {}
    last = reader.line_num
    while True:
        start = last + 1
        try:
            raw = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            rows.append(_Row(start, [], None, [("row", f"cannot be read as CSV ({exc})")]))
            last = reader.line_num
            continue
        last = reader.line_num
        if not raw or all(not cell.strip() for cell in raw):
            continue  # blank line
        if len(raw) != len(names):
            rows.append(_Row(start, raw, None, [("row", f"has {len(raw)} fields, the header has {len(names)}")]))
            continue
        record, problems = validate(dict(zip(names, raw)))
        pid = raw[names.index("patient_id")].strip()
        if pid and pid in seen:
            problems.append(("patient_id", f"{pid!r} repeats line {seen[pid]}"))
            record = None
        elif pid:
            seen[pid] = start
        rows.append(_Row(start, raw, record, problems))
    return names, rows


def import_discharges(session: Session, path: Path, settings: Settings, *, skip_invalid: bool = False,
                      today: dt.date | None = None) -> ImportResult:
    instrument = load_instrument(settings.get("ALLIANCE_INSTRUMENT"))
    today = today or dt.datetime.now(ZoneInfo(settings.default_timezone)).date()
    text = decode(Path(path).read_bytes())
    names, rows = read_rows(text, instrument, RowValidator(settings, instrument, today))
    result = ImportResult()
    result.errors = [RowError(r.line, col, msg) for r in rows for col, msg in r.problems]
    bad = [r for r in rows if r.record is None]
    result.rejected = len(bad)
    if bad and not skip_invalid:
        return result
    if bad:
        result.rejected_path = rejected_path(Path(path))
        write_rejected(result.rejected_path, names, bad)
    good = [r.record for r in rows if r.record is not None]
    result.new, result.updated, result.unchanged = upsert(session, good, instrument)
    audit(session, "import_discharges", file=Path(path).name, new=result.new, updated=result.updated,
          unchanged=result.unchanged, rejected=result.rejected)
    result.written = True
    return result


def rejected_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.rejected{path.suffix or '.csv'}")


def write_rejected(path: Path, names: list[str], rows: Iterable[_Row]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(names + ["error"])
        for r in rows:
            cells = (r.raw + [""] * len(names))[: len(names)]
            writer.writerow(cells + ["; ".join(f"{c}: {m}" for c, m in r.problems)])


def _chunks(seq: list, size: int = CHUNK) -> Iterable[list]:
    for i in range(0, len(seq), size):
        yield seq[i: i + size]


class _Existing(NamedTuple):
    pk: int
    fields: tuple  # PATIENT_FIELDS, in order
    rating_pk: int | None
    rating: tuple  # (instrument, items)
    phone_valid: bool


def upsert(session: Session, records: list[dict[str, Any]], instrument: Instrument) -> tuple[int, int, int]:
    """Insert new patients, update changed ones; set-based.  Returns (new, updated, unchanged)."""
    existing: dict[str, _Existing] = {}
    cols = [getattr(Patient, f) for f in PATIENT_FIELDS]
    for chunk in _chunks([r["patient_id"] for r in records]):
        stmt = (select(Patient.patient_id, Patient.id, AllianceRating.id, AllianceRating.instrument,
                       AllianceRating.items, Patient.phone_valid, *cols)
                .outerjoin(AllianceRating, AllianceRating.patient_id == Patient.id)
                .where(Patient.patient_id.in_(chunk)))
        for pid, pk, rating_pk, inst, items, phone_valid, *fields in session.execute(stmt):
            existing[pid] = _Existing(pk, tuple(fields), rating_pk, (inst, list(items or [])), bool(phone_valid))
    new, changed, unchanged = [], [], 0
    for rec in records:
        old = existing.get(rec["patient_id"])
        if old is None:
            new.append(rec)
        elif old.fields != tuple(rec[f] for f in PATIENT_FIELDS) or old.rating != (instrument.name, rec["items"]):
            changed.append((old, rec))
        else:
            unchanged += 1
    if new:
        ids = session.scalars(
            insert(Patient).returning(Patient.id, sort_by_parameter_order=True),
            [{"patient_id": r["patient_id"], **{f: r[f] for f in PATIENT_FIELDS}} for r in new],
        ).all()
        session.execute(insert(AllianceRating), [_rating(pk, r, instrument) for pk, r in zip(ids, new)])
    if changed:
        session.execute(update(Patient), [
            # A new number gets a fresh chance; an unchanged one keeps what Twilio said about it.
            {"id": old.pk, "phone_valid": old.phone_valid or old.fields[0] != r["phone"],
             **{f: r[f] for f in PATIENT_FIELDS}} for old, r in changed])
        rated = [{"id": old.rating_pk, **_rating(old.pk, r, instrument)} for old, r in changed if old.rating_pk]
        if rated:
            session.execute(update(AllianceRating), rated)
        unrated = [_rating(old.pk, r, instrument) for old, r in changed if old.rating_pk is None]
        if unrated:
            session.execute(insert(AllianceRating), unrated)
    session.flush()
    return len(new), len(changed), unchanged


def _rating(patient_pk: int, rec: dict[str, Any], instrument: Instrument) -> dict[str, Any]:
    return {"patient_id": patient_pk, "instrument": instrument.name, "items": rec["items"],
            "mean_score": rec["mean_score"], "subscale_scores": rec["subscale_scores"]}
