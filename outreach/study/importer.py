"""Discharge import: a CSV of discharges (one row per treatment stay) with alliance ratings.

All-or-nothing by default: every problem in the file is reported as
``line N: column: problem`` (N the physical line, header = 1) and nothing is
written.  With ``skip_invalid`` the valid rows are written and the invalid
ones go to ``<name>.rejected.csv`` beside the input (mode 0600, phone numbers masked unless
``keep_identifiers``).

A patient (by ``patient_id``) has one episode per stay.  A row is matched to a
stay by the site's ``episode_id`` when the file has one, else by its discharge
date; a new, later discharge date is a new stay (readmission).  Nothing a
re-import does can silently relink answered follow-ups: changed ratings on a
stay with answers need ``allow_rating_changes`` and are audited with their old
and new values.  The patient's own fields (phone, consent, ...) come from the
row of their latest stay.  Writes are set-based, in one transaction.

The separator (comma, semicolon as a French-locale Excel writes, or tab) is read from the header and
named in the summary.  Some rows are written but deserve a look, and are reported as warnings with their
line: a stay without an alliance score (too many blank items), a phone shared with another patient, a
phone extension that was dropped; ``strict`` makes them errors.  A re-import that changes the phone of a
patient opted out by a "wrong number" reply opts them back in (the opt-out belonged to the old number;
audited); an opt-out by STOP is never lifted by an import.
"""
from __future__ import annotations

import csv
import datetime as dt
import gc
import io
import json
import re
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import cache
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple
from zoneinfo import ZoneInfo, available_timezones

from sqlalchemy import Table, Text, cast, exists, func, insert, select, update
from sqlalchemy import text as sql
from sqlalchemy.orm import Session
from sqlalchemy.types import BigInteger, Boolean, Date, DateTime, Float, Integer

from ..config import Settings
from ..csvsafe import SafeWriter, open_private
from ..db import audit
from .instrument import Instrument, load_instrument
from ..care.checkins import rate_at_discharge
from ..models import AllianceRating, Answer, Episode, FollowUp, Patient
from ..phones import Phone, mask, read_phone, split_extension, zone_for
from ..messaging.opt_outs import cancel_pending, lift_opt_out, opted_out_by_wrong_number, readdress_after_phone_change

from ..messaging.send_rule import NO_CONSENT, TO_THE_WRITER
from ..clock import utcnow
from ..repository import in_texts

BASE_REQUIRED = ["patient_id", "phone", "discharge_date", "sms_consent"]
OPTIONAL = ["episode_id", "admission_date", "timezone", "language", "age", "sex", "length_of_stay_days",
            "primary_substance", "program"]
PATIENT_FIELDS = ["phone", "timezone", "language", "sms_consent", "age", "sex"]
EPISODE_FIELDS = ["discharge_date", "admission_date", "length_of_stay_days", "primary_substance", "program"]
CONSENT = {"yes": True, "y": True, "true": True, "1": True, "no": False, "n": False, "false": False, "0": False,
           "oui": True, "o": True, "non": False}
CONSENT_WORDS = "yes/no, oui/non, y/n, o, true/false, 1/0"
SEPARATORS = {",": "comma", ";": "semicolon", "\t": "tab"}
LANGUAGES = {"en", "fr"}
CHUNK = 2000
# The second pass's steps, as shares of it: the phones shared with stored patients, the stored patients and stays
# of the file's patient_ids, each row matched to its stay.
SHARED_PHONES, LOAD_PEOPLE, MATCH_ROWS = (0.0, 0.2), (0.2, 0.7), (0.7, 1.0)
WRITE_CHUNK = 5000  # rows per insert, per id lookup and per progress report while writing
# Rows a COPY statement on PostgreSQL: the server checks their keys when the statement ends, and the job's progress
# stands still meanwhile (a second or more for a whole table's 100,000 rows under load).
COPY_ROWS = 25_000
READ_REPORT = 2000  # rows read, checked or matched between two progress reports (a fraction of a second)


class _Progress:
    """``progress(done, total)`` over the import's three passes, each worth the file's lines: reading and checking
    the rows, matching them to the stored patients, writing.  Reported at the start of each pass (or of a step
    within it: ``span``, the share of the pass it covers) and every few thousand rows within it; ``done`` never
    goes back, and ends equal to ``total``."""

    def __init__(self, report: Callable[[int, int], None] | None, lines: int):
        self.report, self.lines = report, max(lines, 1)
        self.total, self.base, self.width, self.items, self.count, self.shown = 3 * self.lines, 0, self.lines, 1, 0, -1

    def start(self, pass_number: int, items: int, span: tuple[float, float] = (0.0, 1.0)) -> None:
        self.base = pass_number * self.lines + int(self.lines * span[0])
        self.width = int(self.lines * span[1]) - int(self.lines * span[0])
        self.items, self.count = max(items, 1), 0
        self._emit()

    def advance(self, n: int) -> None:
        self.count += n
        self._emit()

    def finish(self) -> None:
        self.base, self.width, self.count = self.total - self.lines, self.lines, self.items
        self._emit()

    def _emit(self) -> None:
        done = max(self.shown, self.base + min(self.width, self.width * self.count // self.items))
        if self.report is not None and done != self.shown:
            self.report(done, self.total)
        self.shown = done


def _advance(progress: _Progress | None, n: int) -> None:
    if progress is not None:
        progress.advance(n)


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
    """Counts: ``new_patients`` people; every row (one stay) is exactly one of ``new_episodes``,
    ``updated``, ``unchanged``, ``rejected`` or ``withdrawn`` (a participant who withdrew from the study: their row
    is not read, so no import brings back a phone number erased or enrols them again)."""
    new_patients: int = 0
    new_episodes: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)  # rows written that deserve a look (errors if strict)
    rejected_path: Path | None = None
    written: bool = False
    rating_changes: int = 0
    separator: str = ","
    opt_outs_lifted: list[str] = field(default_factory=list)  # patient ids: a wrong number's opt-out lifted
    consent_withdrawn: list[str] = field(default_factory=list)  # patient ids whose sms_consent went from yes to no
    consent_given: list[str] = field(default_factory=list)  # patient ids whose sms_consent went from no to yes
    phones_changed: int = 0
    texts_cancelled: int = 0  # queued texts not sent: consent withdrawn, or queued for an old number
    invitations_requeued: int = 0  # invitations queued again to a patient's new number
    withdrawn: int = 0  # rows of participants who withdrew from the study: skipped

    unread_lines: list[tuple[int, int]] = field(default_factory=list)  # lines an unclosed quote read into one field

    def grouped_errors(self, first_lines: int = 5) -> list[str]:
        """The errors by column and kind of problem, most frequent first: ``column: N rows: problem (lines a, b,
        c, …)``, values in the problem replaced by '…' so that rows with one problem fall together."""
        groups: dict[tuple[str, str], list[int]] = {}
        for e in self.errors:
            groups.setdefault((e.column, _shape(e.problem)), []).append(e.line)
        out = []
        for (column, shape), lines in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[1][0])):
            shown = ", ".join(map(str, lines[:first_lines])) + (", …" if len(lines) > first_lines else "")
            out.append(f"{column}: {len(lines):,} row{'s' if len(lines) != 1 else ''}: {shape} "
                       f"(line{'s' if len(lines) != 1 else ''} {shown})")
        return out

    @property
    def summary(self) -> str:
        return (f"imported {self.new_patients} new patients, {self.new_episodes} new episodes, "
                f"updated {self.updated}, unchanged {self.unchanged}, rejected {self.rejected} "
                f"({SEPARATORS.get(self.separator, repr(self.separator))}-separated)"
                + (f"; skipped {self.withdrawn} row(s) of participants who withdrew from the study"
                   if self.withdrawn else ""))


def _shape(problem: str) -> str:
    """A problem with the values it quotes replaced by '…': the same problem on many rows reads the same."""
    return re.sub(r"'[^']*'", "'…'", problem)


@dataclass
class _Row:
    line: int
    raw: list[str]
    record: dict[str, Any] | None
    problems: list[tuple[str, str]]
    warnings: list[tuple[str, str]] = field(default_factory=list)
    swallowed: tuple[int, int] | None = None  # lines read into this row's field by an unclosed quote


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def expected_columns(instrument: Instrument) -> tuple[list[str], list[str]]:
    return BASE_REQUIRED + instrument.columns, OPTIONAL


def decode(data: bytes) -> str:
    """The file's text: UTF-8, any byte-order marks before it dropped (a file saved twice may have two), and old
    Mac line endings (a carriage return alone) read as line ends.  A byte that is not UTF-8 is named by its line
    and column."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        where = f"line {line}" + _column_of_byte(data, exc.start)
        raise ImportFileError(
            f"{where}: the file is not UTF-8 (byte 0x{data[exc.start]:02x} cannot be read; it was probably saved "
            "as Windows or Latin-1 text); save it as 'CSV UTF-8' and import again") from None
    text = text.lstrip("\ufeff")
    if "\r" in text and "\n" not in text:
        text = text.replace("\r", "\n")
    nul = text.find("\x00")
    if nul >= 0:  # no cell may hold it (PostgreSQL refused the whole write with the driver's words)
        raise ImportFileError(
            f"line {text.count(chr(10), 0, nul) + 1}: the file holds a zero byte (NUL), which no cell may hold; it "
            "is probably damaged or saved in another format: save it as 'CSV UTF-8' and import again")
    return text


def _column_of_byte(data: bytes, at: int) -> str:
    """', column NAME' for the byte at ``at`` (read loosely as Latin-1, separators counted outside quotes), or ''."""
    text = data.decode("latin-1")
    lines = text.split("\n")
    line_start = text.rfind("\n", 0, at) + 1
    header = lines[0].lstrip("\ufeff\u00ef\u00bb\u00bf").rstrip("\r")
    sep = max(SEPARATORS, key=header.count)
    names = next(csv.reader([header], delimiter=sep), [])
    index, quoted = 0, False
    for ch in text[line_start:at]:
        if ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            index += 1
    return f", column {names[index].strip().lower()}" if index < len(names) else ""


# What UTF-8 text looks like once it has been read as Latin-1 or Windows-1252 and saved as UTF-8 again ('é' -> 'Ã©').
_MOJIBAKE = re.compile("[\u00c3\u00c2][\u0080-\u00bf]|\u00e2\u20ac")


def detect_separator(text: str, instrument: Instrument, columns: tuple[list[str], list[str]] | None = None) -> str:
    """The separator that splits the header into the most known column names (comma on a tie); ``columns`` are
    (required, optional) of another kind of file (admissions), else the discharge file's."""
    required, optional = columns or expected_columns(instrument)
    known = set(required) | set(optional)
    first = text.split("\n", 1)[0].rstrip("\r")
    best, best_score = ",", -1
    for sep in SEPARATORS:
        try:
            names = next(csv.reader([first], delimiter=sep), [])
        except csv.Error:
            continue
        score = sum(n.strip().lower() in known for n in names)
        if score > best_score:
            best, best_score = sep, score
    return best


def check_header(header: list[str], instrument: Instrument,
                 columns: tuple[list[str], list[str]] | None = None) -> list[str]:
    required, optional = columns or expected_columns(instrument)
    names = [h.strip().lower() for h in header]
    if len(names) == 1 and names[0] and any(sep in names[0] for sep in ";\t|"):
        raise ImportFileError(f"line 1: header: the header reads as one column ({names[0][:60]!r}…); the columns "
                              "must be separated by commas, semicolons or tabs")
    problems = []
    seen: set[str] = set()
    for name in names:
        if name in seen:
            problems.append(f"column {name!r} appears twice")
        seen.add(name)
        if name not in required and name not in optional:
            problems.append(f"unknown column {name!r}" + _header_hint(name, set(required) | set(optional)))
    for name in required:
        if name not in seen:
            problems.append(f"missing required column {name!r}")
    if problems:
        listing = f"required columns: {', '.join(required)}; optional columns: {', '.join(optional)}"
        raise ImportFileError("\n".join(f"line 1: header: {p}" for p in problems) + "\n" + listing)
    return names


def _header_hint(name: str, known: set[str]) -> str:
    """A hint for an unknown column name of a common shape."""
    if name == "":
        return " (does every line end with a separator? remove the empty last column)"
    guess = re.sub(r"[\s\-.]+", "_", name.strip().lower())
    if guess in known:
        return f" (did you mean {guess}? column names are written in lower case with underscores)"
    return ""


class RowValidator:
    """Turns one CSV row (column -> text) into a record, or a list of problems.

    A file repeats most of its cells (dates, consent, items, ages, programs...): each distinct cell of a column is
    checked once per import and its answer (value or problem) kept, as is each distinct phone cell's reading."""

    def __init__(self, settings: Settings, instrument: Instrument, today: dt.date):
        self.region = settings.default_region
        self.default_zone = settings.default_timezone
        self.earliest = settings.earliest_date
        self.instrument = instrument
        self.today = today
        self._phones: dict[str, tuple[Phone | None, str | None, tuple[tuple[str, str], ...]]] = {}
        self._scores: dict[tuple, tuple[float | None, dict[str, float | None]]] = {}
        # (column, check) in the order the problems of a row are listed, each check memoised per distinct cell
        self._cells: list[tuple[str, Callable[[str], Any]]] = [
            ("discharge_date", self._date), ("admission_date", lambda v: self._date(v) if v else None),
            ("sms_consent", self._consent)]
        self._cells_after_zone: list[tuple[str, Callable[[str], Any]]] = [
            ("language", self._language), ("age", lambda v: _int_or_none(v, 0, 120)),
            ("length_of_stay_days", lambda v: _int_or_none(v, 0, MAX_STAY_DAYS)),
            *[(column, lambda v, n=_column_length(column): _text_or_none(v, n))
              for column in ("sex", "primary_substance", "program")]]
        lo, hi = instrument.min, instrument.max
        self._item = lambda v: _int_or_none(v, lo, hi)
        self._item_columns = tuple(instrument.columns)
        # one memo per column: cell text -> (value, None) or (None, problem)
        self._memo: dict[str, dict[str, tuple[Any, str | None]]] = {
            column: {} for column, _ in (*self._cells, *self._cells_after_zone, ("items", None))}

    def _cell(self, column: str, fn: Callable[[str], Any], v: str) -> tuple[Any, str | None]:
        """(value, None) or (None, problem) of one cell, checked once per distinct cell of the column."""
        memo = self._memo[column]
        known = memo.get(v)
        if known is None:
            try:
                known = (fn(v), None)
            except ValueError as exc:
                known = (None, str(exc))
            memo[v] = known
        return known

    def _cells_of(self, values: dict[str, str], checks: list[tuple[str, Callable[[str], Any]]],
                  rec: dict[str, Any], problems: list[tuple[str, str]]) -> None:
        """Each column of ``checks`` into ``rec``, or its problem into ``problems`` (the hot loop of an import:
        100,000 rows times a dozen cells, so the memo is read inline)."""
        memo_of = self._memo
        for column, fn in checks:
            v = values.get(column, "").strip()
            known = memo_of[column].get(v)
            if known is None:
                known = self._cell(column, fn, v)
            if known[1] is None:
                rec[column] = known[0]
            else:
                problems.append((column, known[1]))

    def __call__(self, values: dict[str, str]) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
        problems: list[tuple[str, str]] = []
        rec: dict[str, Any] = {}
        warnings: list[tuple[str, str]] = []

        try:
            rec["patient_id"] = self._patient_id(values.get("patient_id", "").strip())
        except ValueError as exc:
            problems.append(("patient_id", str(exc)))
        episode = values.get("episode_id", "").strip()
        if len(episode) > 64:
            problems.append(("episode_id", "is longer than 64 characters"))
        else:
            rec["episode_id"] = episode or None
        phone = self._read_phone(values.get("phone", "").strip())
        if phone[0] is None:
            problems.append(("phone", phone[1]))
        else:
            rec["phone"] = phone[0].e164
            warnings.extend(phone[2])
        self._cells_of(values, self._cells, rec, problems)
        zone = values.get("timezone", "").strip()
        if zone:
            try:
                rec["timezone"] = self._zone(zone, rec.get("phone"))
            except ValueError as exc:
                problems.append(("timezone", str(exc)))
        else:
            rec["timezone"] = None
        self._cells_of(values, self._cells_after_zone, rec, problems)
        items = []
        memo, item = self._memo["items"], self._item
        for column in self._item_columns:
            v = values.get(column, "").strip()
            known = memo.get(v)
            if known is None:
                known = self._cell("items", item, v)
            if known[1] is None:
                items.append(known[0])
            else:
                problems.append((column, known[1]))
        if not problems and rec["admission_date"] and rec["admission_date"] > rec["discharge_date"]:
            problems.append(("admission_date", f"{rec['admission_date']} is after the discharge_date "
                                               f"{rec['discharge_date']}"))
        elif not problems and rec["admission_date"]:
            days = (rec["discharge_date"] - rec["admission_date"]).days
            if days > MAX_STAY_DAYS:
                problems.append(("admission_date", f"a stay from {rec['admission_date']} to the discharge_date "
                                                   f"{rec['discharge_date']} is {days:,} days, outside 0-{MAX_STAY_DAYS} "
                                                   "days (the range allowed for length_of_stay_days)"))
        if problems:
            return None, problems
        if rec["length_of_stay_days"] is None and rec["admission_date"]:
            rec["length_of_stay_days"] = (rec["discharge_date"] - rec["admission_date"]).days
        if rec["timezone"] is None:
            rec["timezone"] = phone[0].zone or self.default_zone
        rec["language"] = rec["language"] or "en"
        rec["items"] = items
        rec["mean_score"], rec["subscale_scores"] = self._score(items)
        if rec["mean_score"] is None:
            answered = sum(v is not None for v in items)
            warnings.append(("alliance", f"{answered} of {len(items)} items answered, so this stay has no alliance "
                                         f"score (it needs at least {self.instrument.min_answered})"))
        rec["warnings"] = warnings
        return rec, []

    def _score(self, items: list[int | None]) -> tuple[float | None, dict[str, float | None]]:
        key = tuple(items)
        if key not in self._scores:
            self._scores[key] = self.instrument.score(items)
        mean, subscales = self._scores[key]
        return mean, dict(subscales)  # each stay its own dict

    def _phone(self, v: str, warnings: list[tuple[str, str]]) -> str:
        """The E.164 form of a phone cell, its warnings added to ``warnings``; ValueError with the problem."""
        phone, problem, found = self._read_phone(v)
        if phone is None:
            raise ValueError(problem)
        warnings.extend(found)
        return phone.e164

    def _read_phone(self, v: str) -> tuple[Phone | None, str | None, tuple[tuple[str, str], ...]]:
        """(the phone, None, its warnings) or (None, the problem, ()), read once per distinct cell."""
        known = self._phones.get(v)
        if known is None:
            try:
                phone = read_phone(v, self.region)
            except ValueError as exc:
                known = (None, str(exc), ())
            else:
                warnings = []
                _, extension = split_extension(v.strip())
                if extension:
                    warnings.append(("phone", f"the extension {extension} was dropped (a text cannot reach an "
                                              f"extension); check that {mask(phone.e164)} reaches the patient's own "
                                              "phone"))
                if phone.not_textable:
                    warnings.append(("phone", f"{mask(phone.e164)} {phone.not_textable}"))
                known = (phone, None, tuple(warnings))
            self._phones[v] = known
        return known

    @staticmethod
    def _patient_id(v: str) -> str:
        if not v:
            raise ValueError("is empty")
        if len(v) > 64:
            raise ValueError("is longer than 64 characters")
        if _SCIENTIFIC.match(v):
            raise ValueError(f"{v!r} is in scientific notation: Excel shortened a long numeric id, so two people "
                             "may now share it; format the column as text in the hospital's export and export again")
        return v

    def _date(self, v: str) -> dt.date:
        if not v:
            raise ValueError("is empty; expected YYYY-MM-DD")
        if _DAY_MONTH.match(v):
            raise ValueError(f"{v!r} looks like a day/month/year or month/day/year date, which cannot be told "
                             "apart; write dates as YYYY-MM-DD")
        if _SERIAL.match(v):
            raise ValueError(f"{v!r} looks like an Excel date serial number; format the column as a date and write "
                             "dates as YYYY-MM-DD")
        try:
            if len(v) != 10:
                raise ValueError
            day = dt.date.fromisoformat(v)
        except ValueError:
            raise ValueError(f"{v!r} is not a real date in the form YYYY-MM-DD") from None
        if day > self.today:
            raise ValueError(f"{v} is in the future")
        if day < self.earliest:
            raise ValueError(f"{v} is before EARLIEST_DATE ({self.earliest}): a placeholder (spreadsheets and "
                             "hospital systems fill in 1899-12-30 or 1900-01-01) or a typing error; write the real "
                             "date")
        return day

    @staticmethod
    def _consent(v: str) -> bool:
        try:
            return CONSENT[v.lower()]
        except KeyError:
            raise ValueError(f"{v!r} is not one of {CONSENT_WORDS}") from None

    def _zone(self, v: str, phone: str | None = None) -> str | None:
        if not v:
            return None
        if v not in _zones():
            raise ValueError(f"{v!r} is not a known IANA time zone (e.g. America/Toronto)")
        if v in REGION_OF_ZONE or "/" not in v or v.startswith("Etc/"):
            suggestion = REGION_OF_ZONE.get(v) or (zone_for(phone) if phone else None) or self.default_zone
            raise ValueError(f"{v!r} is not a region's time zone ({v} and the like keep one offset all year, with no "
                             f"daylight time, so quiet hours would be an hour off for half the year); write the "
                             f"region's zone, e.g. {suggestion}")
        return v

    @staticmethod
    def _language(v: str) -> str | None:
        if not v:
            return None
        if v.lower() not in LANGUAGES:
            raise ValueError(f"{v!r} is not a supported language (en or fr)")
        return v.lower()


MAX_STAY_DAYS = 3650
_SCIENTIFIC = re.compile(r"^[+-]?\d+(?:[.,]\d+)?[eE][+-]?\d+$")
_DAY_MONTH = re.compile(r"^\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}$")
_SERIAL = re.compile(r"^\d{5}(?:\.\d+)?$")
# Zone names that are an offset, not a region (IANA keeps them for old systems): refused, with the region's zone
# named (for the others, the zone of the patient's phone number).
REGION_OF_ZONE = {"EST": "America/Toronto", "MST": "America/Edmonton", "HST": "Pacific/Honolulu",
                  "EST5EDT": "America/Toronto", "CST6CDT": "America/Winnipeg", "MST7MDT": "America/Edmonton",
                  "PST8PDT": "America/Vancouver"}


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


def _column_length(name: str) -> int:
    """The length the database keeps for a patient's or a stay's text column: longer is refused in words at the
    check (PostgreSQL would refuse it at the write, with the driver's error)."""
    column = Patient.__table__.c.get(name)
    column = column if column is not None else Episode.__table__.c[name]
    return column.type.length


def _text_or_none(v: str, max_len: int) -> str | None:
    if len(v) > max_len:
        raise ValueError(f"is longer than {max_len} characters")
    return v or None


def read_rows(text: str, instrument: Instrument, validate: RowValidator,
              separator: str = ",", progress: _Progress | None = None, *,
              columns: tuple[list[str], list[str]] | None = None,
              stay_keys: Callable[[dict[str, Any]], list[tuple[str, tuple, str]]] | None = None,
              ) -> tuple[list[str], list[_Row]]:
    """The file's rows, each checked by ``validate``; ``columns`` and ``stay_keys`` (what makes two rows one stay:
    (column, key, words)) are another kind of file's (admissions), else the discharge file's."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
    # Text converted twice shows as 'Ã', 'Â' or 'â' followed by another character; a file without any of the three
    # (nearly all) cannot have it in a cell, and its cells are not searched one by one.
    maybe_garbled = any(ch in text for ch in "\u00c3\u00c2\u00e2")
    try:
        header = next(reader)
    except StopIteration:
        raise ImportFileError("line 1: the file is empty; expected a header row") from None
    except csv.Error as exc:
        raise ImportFileError(f"line 1: {exc}") from None
    names = check_header(header, instrument, columns)
    stay_keys = stay_keys or discharge_keys
    rows: list[_Row] = []
    seen: dict[tuple, int] = {}
    garbled: list[tuple[int, str, str]] = []  # (line, column, sample) of text converted twice
    last = reader.line_num
    reported = last
    if progress is not None:
        progress.start(0, progress.lines)
    while True:
        if len(rows) % READ_REPORT == 0 and last > reported:
            gc.freeze()  # the rows read so far live for the whole import: the collector need not scan them again
            if progress is not None:
                progress.advance(last - reported)
            reported = last
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
        if not raw or not "".join(raw).strip():
            continue  # blank line: every cell empty or white space
        if last > start and _swallows_rows(raw, separator):
            at = next(i for i, cell in enumerate(raw) if "\n" in cell and separator in cell)
            column = names[at] if at < len(names) else "row"
            rows.append(_Row(start, raw, None, [(column, f"a quoted field opened on line {start} runs over lines "
                                                        f"{start}-{last} (an unclosed quote?), so lines {start + 1}-{last}"
                                                        " were read into it instead of as rows; close or remove the "
                                                        "quote")], swallowed=(start + 1, last)))
            continue
        for column, cell in zip(names, raw) if maybe_garbled else ():
            bad = _MOJIBAKE.search(cell)
            if bad and len(garbled) < 5:
                garbled.append((start, column, cell[max(0, bad.start() - 3): bad.end() + 3]))
        if len(raw) != len(names):
            rows.append(_Row(start, raw, None, [("row", f"has {len(raw)} fields, the header has {len(names)}")]))
            continue
        record, problems = validate(dict(zip(names, raw)))
        warnings = record.pop("warnings", []) if record is not None else []
        if record is not None:  # one row per stay: a stay is its discharge date, or the site's episode_id
            keys = stay_keys(record)
            for column, key, what in keys:
                if key in seen:
                    problems.append((column, f"{what} repeats line {seen[key]}"))
                    record = None
            if record is not None:
                seen.update({key: start for _, key, _ in keys})
        rows.append(_Row(start, raw, record, problems, warnings))
    if garbled:
        where = "; ".join(f"line {line}, column {column}: {sample!r}" for line, column, sample in garbled)
        raise ImportFileError(f"{where}: the file looks converted twice ('Ã©' where 'é' was meant: UTF-8 text read as "
                              "Latin-1 and saved again); open the hospital's original export and save it as "
                              "'CSV UTF-8', or fix the accents, and import again")
    if progress is not None and last > reported:
        progress.advance(last - reported)
    _one_person_per_id(rows)
    return names, rows


def discharge_keys(record: dict[str, Any]) -> list[tuple[str, tuple, str]]:
    """What makes two rows of a discharge file one stay: (column, key, words)."""
    pid = record["patient_id"]
    keys = [("discharge_date", (pid, "date", record["discharge_date"]), f"{pid!r} discharged on {record['discharge_date']}")]
    if record["episode_id"]:
        keys.append(("episode_id", (pid, "episode", record["episode_id"]), f"stay {record['episode_id']!r} of {pid!r}"))
    return keys


def _swallows_rows(raw: list[str], separator: str) -> bool:
    """A field that runs over a line end and holds a separator (or a whole row's worth of text): the rows after an
    unclosed quote, read into one cell."""
    return any("\n" in cell and separator in cell for cell in raw)


def _one_person_per_id(rows: list[_Row]) -> None:
    """Rows of one patient_id with different phones and no episode_id saying they are different stays: maybe two
    people under one id (an id Excel shortened), and the later row would overwrite the earlier one's phone and
    consent.  Every such row is refused, naming the lines."""
    by_pid: dict[str, list[_Row]] = {}
    for r in rows:
        if r.record is not None:
            by_pid.setdefault(r.record["patient_id"], []).append(r)
    for pid, group in by_pid.items():
        if len({r.record["phone"] for r in group}) < 2 or all(r.record["episode_id"] for r in group):
            continue
        lines = [str(r.line) for r in group]
        listed = ", ".join(lines[:-1]) + f" and {lines[-1]}"
        problem = (f"{pid!r} is on lines {listed} with different phones and no episode_id: two stays of one person "
                   "need an episode_id each; otherwise they may be two people under one id (an id Excel shortened?)")
        for r in group:
            r.problems.append(("patient_id", problem))
            r.record = None


def _shared_phones(session: Session, rows: list[_Row], progress: _Progress | None = None) -> None:
    """Warn on every row whose phone is also another patient's, in this file or in the database (a
    stored patient this file gives another phone no longer counts)."""
    valid = [r for r in rows if r.record is not None]
    if not valid:
        return
    holders: dict[str, set[str]] = {}
    latest: dict[str, tuple[dt.date, str]] = {}
    for r in valid:
        pid, phone = r.record["patient_id"], r.record["phone"]
        holders.setdefault(phone, set()).add(pid)
        day = r.record.get("discharge_date") or r.record["admission_date"]  # an admission file has no discharge
        if pid not in latest or day >= latest[pid][0]:
            latest[pid] = (day, phone)
    if progress is not None:
        progress.start(1, len(holders), SHARED_PHONES)
    for chunk in _chunks(list(holders), WRITE_CHUNK):
        _advance(progress, len(chunk))
        for pid, phone in _plain_rows(session, select(Patient.patient_id, Patient.phone)
                                      .where(in_texts(session, Patient.phone, chunk))):
            if pid in latest and latest[pid][1] != phone:
                continue  # this file moves them to another phone
            holders[phone].add(pid)
    for r in valid:
        holding = holders[r.record["phone"]]
        if len(holding) < 2:
            continue  # the phone is this patient's alone (most rows)
        others = sorted(holding - {r.record["patient_id"]})
        if others:
            listed = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
            r.warnings.append(("phone", f"{mask(r.record['phone'])} is also the phone of patient {listed} "
                                        "(a shared phone has one conversation at a time)"))


def import_discharges(session: Session, path: Path, settings: Settings, *, skip_invalid: bool = False,
                      allow_rating_changes: bool = False, today: dt.date | None = None,
                      actor: str | None = None, keep_identifiers: bool = False, strict: bool = False,
                      progress: Callable[[int, int], None] | None = None) -> ImportResult:
    """Import a discharge file (see the module's docstring); nothing is written when a row has a problem, unless
    ``skip_invalid``.

    ``progress(done, total)``, when given, is called as the import goes: ``total`` is three times the file's
    lines (reading and checking the rows, matching them to the stored patients, writing: one unit a line each),
    ``done`` grows from 0 to ``total`` and is reported at the start of each pass and at least every 10,000 rows
    (a second or two on a 100,000-row file), so ``done / total`` is the fraction done.  It is not called when the
    file as a whole cannot be read (:class:`ImportFileError`)."""
    from .retention import refuse_if_closed

    refuse_if_closed(session, ImportFileError)
    if session.get_bind().dialect.name == "postgresql":
        # For this transaction only: the lookups of stored patients (a statement for each 5,000 of the file's) are
        # costed above the server's JIT threshold when the tables' statistics are stale, as just after a large
        # import, and compiling each took 40 ms, a quarter of running it.  JIT changes no result.
        session.execute(sql("SET LOCAL jit = off"))
    instrument = load_instrument(settings.get("ALLIANCE_INSTRUMENT"))
    today = today or dt.datetime.now(ZoneInfo(settings.default_timezone)).date()
    text = decode(Path(path).read_bytes())
    separator = detect_separator(text, instrument)
    steps = _Progress(progress, text.count("\n") + (not text.endswith("\n")) - 1)
    with _rows_kept_out_of_gc():
        names, rows = read_rows(text, instrument, RowValidator(settings, instrument, today), separator, steps)
        result = _import_rows(session, path, instrument, names, rows, separator, skip_invalid=skip_invalid,
                              allow_rating_changes=allow_rating_changes, actor=actor,
                              keep_identifiers=keep_identifiers, strict=strict, progress=steps,
                              discharge_days=settings.alliance_discharge_days)
    steps.finish()
    return result


@contextmanager
def _rows_kept_out_of_gc() -> Iterator[None]:
    """The parsed rows live for the whole import; without this the garbage collector rescans all of
    them at every full collection (a third of a 100,000-row re-import's time, and pauses of seconds while the
    rows are read: :func:`read_rows` freezes what it has read every READ_REPORT rows).  The collector is also
    paused until the import ends: its 2,800 passes over the young objects of a 100,000-row import (each block
    of rows matched or written makes tens of thousands) took 1.5 s and found about a thousand objects to free,
    which it frees after the import; everything else is freed by reference counting as it goes."""
    enabled = gc.isenabled()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()


def _import_rows(session: Session, path: Path, instrument: Instrument, names: list[str],
                 rows: list[_Row], separator: str, *, skip_invalid: bool, allow_rating_changes: bool,
                 actor: str | None, keep_identifiers: bool, strict: bool,
                 progress: _Progress | None = None, discharge_days: int = 14) -> ImportResult:
    _shared_phones(session, rows, progress)
    if strict:
        warnings_refuse(rows)
    result_unread = [r.swallowed for r in rows if r.swallowed]
    valid = [r for r in rows if r.record is not None]
    gone = _withdrawn_ids(session, list(dict.fromkeys(r.record["patient_id"] for r in valid)))
    skipped_withdrawn = sum(1 for r in valid if r.record["patient_id"] in gone)
    valid = [r for r in valid if r.record["patient_id"] not in gone]
    plan = plan_upsert(session, valid, instrument, allow_rating_changes=allow_rating_changes, progress=progress)
    completed = [(stay.pk, rec) for stay, rec in plan.episode_updates if stay.fields[0] is None]
    for row, problems in plan.refused:
        row.problems.extend(problems)
        row.record = None
    result = ImportResult(separator=separator, unread_lines=result_unread, withdrawn=skipped_withdrawn)
    if not sort_out(result, rows, names, Path(path), skip_invalid=skip_invalid, keep_identifiers=keep_identifiers):
        return result
    apply_upsert(session, plan, instrument, actor=actor, progress=progress)
    rate_at_discharge(session, completed, instrument, within_days=discharge_days)
    apply_contact_changes(session, plan, result, file=Path(path).name, actor=actor)
    result.new_patients, result.new_episodes = len(plan.new_patients), len(plan.new_episodes)
    result.updated, result.unchanged = plan.updated, plan.unchanged
    result.rating_changes = len(plan.rating_changes)
    rejects = {"rejected_file": result.rejected_path.name, "rejected_file_identified": keep_identifiers} \
        if result.rejected_path else {}
    audit(session, "import_discharges", actor=actor, file=Path(path).name, new_patients=result.new_patients,
          new_episodes=result.new_episodes, updated=result.updated, unchanged=result.unchanged,
          rejected=result.rejected, warnings=len(result.warnings), separator=SEPARATORS.get(separator, separator),
          opt_outs_lifted=len(result.opt_outs_lifted), consent_withdrawn=len(result.consent_withdrawn),
          consent_given=len(result.consent_given), phones_changed=result.phones_changed,
          texts_cancelled=result.texts_cancelled, **rejects)
    result.written = True
    return result


def sort_out(result: ImportResult, rows: list[_Row], names: list[str], path: Path, *, skip_invalid: bool,
             keep_identifiers: bool) -> bool:
    """The rows' errors and warnings onto ``result``; may the valid rows be written?  Not when a row is refused
    (unless ``skip_invalid``: then the refused rows go to the rejected-rows file beside ``path``)."""
    result.errors = sorted((RowError(r.line, col, msg) for r in rows for col, msg in r.problems),
                           key=lambda e: e.line)
    result.warnings = [RowError(r.line, col, msg) for r in rows if r.record is not None for col, msg in r.warnings]
    bad = [r for r in rows if r.record is None]
    result.rejected = len(bad)
    if bad and not skip_invalid:
        return False
    if bad:
        result.rejected_path = rejected_path(path)
        write_rejected(result.rejected_path, names, bad, keep_identifiers=keep_identifiers, separator=result.separator)
    return True


def warnings_refuse(rows: list[_Row]) -> None:
    """``strict``: every row with a warning is refused, the warning its error."""
    for r in rows:
        if r.record is not None and r.warnings:
            r.problems.extend((column, f"{problem} (--strict)") for column, problem in r.warnings)
            r.record = None


def rejected_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.rejected{path.suffix or '.csv'}")


def write_rejected(path: Path, names: list[str], rows: Iterable[_Row], *, keep_identifiers: bool = False,
                   separator: str = ",") -> None:
    """The rejected rows with an ``error`` column, readable by the owner only (mode 0600).  Phone numbers
    are masked (the ``phone`` column keeps its last two digits; a number in any other cell is masked
    too) unless ``keep_identifiers``; cells a spreadsheet would run as a formula get a leading ``'``."""
    from ..logs import mask_text
    from ..phones import mask_raw

    phone_at = names.index("phone") if "phone" in names else None
    # With a byte-order mark: Excel, where coordinators fix the rows, then opens it as UTF-8, accents intact.
    with open_private(path, encoding="utf-8-sig", newline="") as fh:
        writer = SafeWriter(fh, delimiter=separator)  # as the site's spreadsheet wrote it, to fix and load again
        writer.writerow(names + ["error"])
        for r in rows:
            cells = (r.raw + [""] * len(names))[: len(names)]
            if not keep_identifiers:
                cells = [mask_raw(v) if i == phone_at and v.strip() else mask_text(v) for i, v in enumerate(cells)]
            writer.writerow(cells + ["; ".join(f"{c}: {m}" for c, m in r.problems)])


def _chunks(seq: list, size: int = CHUNK) -> Iterable[list]:
    for i in range(0, len(seq), size):
        yield seq[i: i + size]


def _numbered_chunks(seq: list, size: int = CHUNK) -> Iterable[tuple[int, list]]:
    """(the index of its first item, the chunk) of each chunk of ``seq``."""
    for i in range(0, len(seq), size):
        yield i, seq[i: i + size]


class _Stay(NamedTuple):
    """An episode as stored."""
    pk: int
    site_id: str | None
    fields: tuple  # EPISODE_FIELDS, in order
    rating_pk: int | None
    rating: tuple  # (instrument, items)
    has_followups: bool
    has_answers: bool


@dataclass
class _Person:
    """A patient as stored, with their stays."""
    pk: int
    fields: tuple  # PATIENT_FIELDS, in order
    phone_valid: bool
    stays: list[_Stay] = field(default_factory=list)

    @property
    def latest(self) -> dt.date | None:
        return max((s.fields[0] for s in self.stays if s.fields[0] is not None), default=None)


@dataclass
class UpsertPlan:
    """What an import will write, decided before anything is written."""
    new_patients: dict[str, dict[str, Any]] = field(default_factory=dict)  # patient_id -> fields of latest stay
    patient_updates: list[tuple[_Person, dict[str, Any]]] = field(default_factory=list)
    new_episodes: list[dict[str, Any]] = field(default_factory=list)  # records; pk of patient resolved later
    episode_updates: list[tuple[_Stay, dict[str, Any]]] = field(default_factory=list)
    rating_changes: list[tuple[_Person, _Stay, dict[str, Any]]] = field(default_factory=list)
    refused: list[tuple[_Row, list[tuple[str, str]]]] = field(default_factory=list)
    updated: int = 0
    unchanged: int = 0
    people: dict[str, _Person] = field(default_factory=dict)


def _withdrawn_ids(session: Session, patient_ids: list[str]) -> set[str]:
    """The study ids among ``patient_ids`` of participants who withdrew from the study."""
    found: set[str] = set()
    for chunk in _chunks(patient_ids, WRITE_CHUNK):
        found.update(_plain_rows(session, select(Patient.patient_id).where(
            Patient.withdrawn_at.is_not(None), in_texts(session, Patient.patient_id, chunk))).scalars())
    return found


def _plain_rows(session: Session, statement: Any) -> Any:
    """The result of ``statement`` on the session's connection, its rows plain tuples: the session's own execute
    passes every row of a select of columns through the ORM's loading, four fifths of the time of looking up
    100,000 stored patients with their stays."""
    session.flush()  # what the session's own execute does first
    return session.connection().execute(statement)


def _load_people(session: Session, patient_ids: list[str], progress: _Progress | None = None) -> dict[str, _Person]:
    """The stored patients of ``patient_ids``, with their stays (each distinct set of items, stored as JSON, read
    once)."""
    people: dict[str, _Person] = {}
    followed = exists().where(FollowUp.episode_id == Episode.id)
    answered = exists().where(FollowUp.episode_id == Episode.id, Answer.followup_id == FollowUp.id)
    if progress is not None:
        progress.start(1, len(patient_ids), LOAD_PEOPLE)
    items_of: dict[str | None, list] = {None: []}
    for chunk in _chunks(patient_ids, WRITE_CHUNK):
        stmt = (select(Patient.patient_id, Patient.id, Patient.phone_valid, *[getattr(Patient, f) for f in PATIENT_FIELDS],
                       Episode.id, Episode.site_episode_id, *[getattr(Episode, f) for f in EPISODE_FIELDS],
                       AllianceRating.id, AllianceRating.instrument, cast(AllianceRating.items, Text), followed,
                       answered)
                .outerjoin(Episode, Episode.patient_id == Patient.id)
                .outerjoin(AllianceRating, AllianceRating.episode_id == Episode.id)
                .where(in_texts(session, Patient.patient_id, chunk)))
        np, ne = len(PATIENT_FIELDS), len(EPISODE_FIELDS)
        for row in _plain_rows(session, stmt):
            pid = row[0]
            person = people.get(pid)
            if person is None:
                person = people[pid] = _Person(row[1], tuple(row[3: 3 + np]), bool(row[2]))
            ep_pk, site_id = row[3 + np], row[4 + np]
            if ep_pk is None:
                continue
            ep_fields = tuple(row[5 + np: 5 + np + ne])
            rating_pk, inst, items, has_fu, has_ans = row[5 + np + ne:]
            if items not in items_of:
                items_of[items] = json.loads(items) or []
            person.stays.append(_Stay(ep_pk, site_id, ep_fields, rating_pk, (inst, list(items_of[items])),
                                      bool(has_fu), bool(has_ans)))
        _advance(progress, len(chunk))
    return people


def plan_upsert(session: Session, rows: list[_Row], instrument: Instrument, *,
                allow_rating_changes: bool = False, progress: _Progress | None = None) -> UpsertPlan:
    """Match every valid row to a stay (or a new one) and decide what changes; refusals are returned
    with their row, so that they are reported like any other problem."""
    plan = UpsertPlan()
    # In file order (sites sort their extracts): a random order made the index lookups twice as slow.
    plan.people = people = _load_people(session, list(dict.fromkeys(r.record["patient_id"] for r in rows)), progress)
    accepted: dict[str, list[dict[str, Any]]] = {}
    matched: dict[int, int] = {}  # stored stay -> the line that describes it
    if progress is not None:
        progress.start(1, len(rows), MATCH_ROWS)
    for n, row in enumerate(rows, 1):
        if n % READ_REPORT == 0:
            _advance(progress, READ_REPORT)
        rec = row.record
        rec["_line"] = row.line  # for the audit of what the row changes about the patient
        person = people.get(rec["patient_id"])
        stay, problems = _match(person, rec) if person else (None, [])
        if stay is not None and stay.fields[0] is None and not problems:  # the discharge of a stay in treatment
            problems = _complete_stay(stay, rec)
        if stay is not None and stay.pk in matched:  # e.g. one row by episode_id, another by the same date
            problems.append(("patient_id", f"this row and line {matched[stay.pk]} describe the same stay of "
                                           f"{rec['patient_id']!r}"))
        elif stay is not None:
            matched[stay.pk] = row.line
            problems += _check_change(stay, rec, instrument, allow_rating_changes)
        if problems:
            plan.refused.append((row, problems))
            continue
        accepted.setdefault(rec["patient_id"], []).append(rec)
        if stay is None:
            plan.new_episodes.append(rec)
            continue
        changed = (stay.fields != tuple(rec[f] for f in EPISODE_FIELDS) or stay.site_id != (rec["episode_id"] or
                   stay.site_id) or stay.rating != (instrument.name, rec["items"]))
        if changed:
            plan.episode_updates.append((stay, rec))
            if stay.has_answers and stay.rating != (instrument.name, rec["items"]):
                plan.rating_changes.append((person, stay, rec))
        rec["_changed"] = changed
    # The patient's own fields come from the row of their latest stay, stored or in this file.
    for pid, recs in accepted.items():
        latest = max(recs, key=lambda r: r["discharge_date"])
        person = people.get(pid)
        if person is None:
            plan.new_patients[pid] = latest
        elif (stored := person.latest) is None or latest["discharge_date"] >= stored:
            new_fields = tuple(latest[f] for f in PATIENT_FIELDS)
            if new_fields != person.fields:
                plan.patient_updates.append((person, latest))
                if "_changed" in latest:  # a row for a new stay is counted as a new episode already
                    latest["_changed"] = True
        for rec in recs:
            if person is not None and "_changed" in rec:
                if rec.pop("_changed"):
                    plan.updated += 1
                else:
                    plan.unchanged += 1
    return plan


def _match(person: _Person, rec: dict[str, Any]) -> tuple[_Stay | None, list[tuple[str, str]]]:
    """The stored stay a row describes (None: a new stay), or why the row is refused."""
    by_date = {s.fields[0]: s for s in person.stays}
    day = rec["discharge_date"]
    if rec["episode_id"]:
        same = next((s for s in person.stays if s.site_id == rec["episode_id"]), None)
        dated = by_date.get(day)
        if same is None and dated is not None and dated.site_id not in (None, rec["episode_id"]):
            return None, [("discharge_date", f"the stay {dated.site_id!r} was discharged on {day}; "
                                             "one discharge date cannot belong to two stays")]
        if same is None:  # a stay loaded without episode_id gets its number now, or a new stay
            return dated or _in_treatment(person, rec), []
        if same.fields[0] != day:
            if dated is not None:
                return None, [("discharge_date", f"the stay {dated.site_id or '(no episode_id)'} was discharged "
                                                 f"on {day}; one discharge date cannot belong to two stays")]
            if same.has_followups:
                return None, [("discharge_date", f"stay {rec['episode_id']!r} already has follow-ups timed from "
                                                 f"its discharge on {same.fields[0]}; its discharge date cannot "
                                                 "change")]
        return same, []
    if day in by_date:
        return by_date[day], []
    if _in_treatment(person, rec) is not None:
        return _in_treatment(person, rec), []
    latest = person.latest
    if latest is not None and day < latest:
        return None, [("discharge_date", f"earlier than the stay discharged on {latest}; add an episode_id "
                                         "column to load past stays")]
    return None, []


def _in_treatment(person: _Person, rec: dict[str, Any]) -> _Stay | None:
    """The patient's stay in treatment (admitted, not yet discharged) that a discharge row completes: the one
    with the row's episode_id, or without one (same matching as a discharged stay)."""
    return next((s for s in person.stays if s.fields[0] is None and s.site_id in (None, rec["episode_id"])), None)


def _complete_stay(stay: _Stay, rec: dict[str, Any]) -> list[tuple[str, str]]:
    """A discharge row for a stay in treatment keeps the admission date the stay was admitted with."""
    admitted = stay.fields[1]
    if rec["admission_date"] is None:
        rec["admission_date"] = admitted
    if rec["admission_date"] is not None and rec["admission_date"] > rec["discharge_date"]:
        return [("discharge_date", f"{rec['discharge_date']} is before the stay's admission on {rec['admission_date']}")]
    if rec["length_of_stay_days"] is None and rec["admission_date"] is not None:
        rec["length_of_stay_days"] = (rec["discharge_date"] - rec["admission_date"]).days
    return []


def _check_change(stay: _Stay, rec: dict[str, Any], instrument: Instrument,
                  allow_rating_changes: bool) -> list[tuple[str, str]]:
    """Refuse changed ratings on a stay whose follow-ups have answers, unless explicitly allowed."""
    if allow_rating_changes or not stay.has_answers:
        return []
    old_instrument, old_items = stay.rating
    if old_instrument != instrument.name:
        old_items = []
    old_items = (list(old_items) + [None] * len(instrument.columns))[: len(instrument.columns)]
    return [(column, "this stay already has follow-up answers; pass --allow-rating-changes to change them")
            for column, old, new in zip(instrument.columns, old_items, rec["items"]) if old != new]


def apply_upsert(session: Session, plan: UpsertPlan, instrument: Instrument, *, actor: str | None = None,
                 progress: _Progress | None = None) -> None:
    """Write the plan with set-based statements."""
    if progress is not None:
        progress.start(2, len(plan.new_patients) + len(plan.new_episodes) + len(plan.patient_updates)
                       + len(plan.episode_updates))
    # New rows go straight into their tables, their ids taken beforehand (_new_ids), so that stays and ratings name
    # their patient and stay without a lookup: a binary COPY for COPY_ROWS rows on PostgreSQL (the server takes each
    # block of rows while the next is made), the driver's executemany on SQLite, no per-row work in SQLAlchemy.
    # Patients, stays, then ratings, WRITE_CHUNK rows a block, a progress report after each.
    now = utcnow()
    pk_of = {pid: person.pk for pid, person in plan.people.items()}
    new_patients = list(plan.new_patients)
    pk_of.update(zip(new_patients, _new_ids(session, Patient.__table__, len(new_patients))))
    patient_fields = itemgetter(*PATIENT_FIELDS)
    with _writing(session, Patient.__table__, ["id", "patient_id", *PATIENT_FIELDS],
                  same={"phone_valid": True, "created_at": now, "updated_at": now}) as write:
        for chunk in _chunks(new_patients, WRITE_CHUNK):
            write([(pk_of[pid], pid, *patient_fields(plan.new_patients[pid])) for pid in chunk])
            _advance(progress, len(chunk))
    stay_ids = _new_ids(session, Episode.__table__, len(plan.new_episodes))
    stay_fields = itemgetter("episode_id", *EPISODE_FIELDS)
    with _writing(session, Episode.__table__, ["id", "patient_id", "site_episode_id", *EPISODE_FIELDS],
                  same={"created_at": now, "updated_at": now}) as write:
        for start, chunk in _numbered_chunks(plan.new_episodes, WRITE_CHUNK):
            write([(stay_id, pk_of[rec["patient_id"]], *stay_fields(rec))
                   for stay_id, rec in zip(stay_ids[start: start + len(chunk)], chunk)])
            _advance(progress, len(chunk) // 2)
    rating_ids = _new_ids(session, AllianceRating.__table__, len(plan.new_episodes))
    as_json = _JsonCache()  # items and scores as stored (JSON text), once per distinct set of answers
    with _writing(session, AllianceRating.__table__, ["id", "episode_id", "items", "mean_score", "subscale_scores"],
                  same={"instrument": instrument.name, "created_at": now, "updated_at": now},
                  serialized={"items", "subscale_scores"}) as write:
        for start, chunk in _numbered_chunks(plan.new_episodes, WRITE_CHUNK):
            end = start + len(chunk)
            write([(rating_id, stay_id, *as_json(rec))
                   for rating_id, stay_id, rec in zip(rating_ids[start: end], stay_ids[start: end], chunk)])
            _advance(progress, len(chunk) - len(chunk) // 2)
    for chunk in _chunks(plan.patient_updates, WRITE_CHUNK):
        session.execute(update(Patient), [
            # A new number gets a fresh chance; an unchanged one keeps what Twilio said about it.
            {"id": p.pk, "phone_valid": p.phone_valid or p.fields[0] != rec["phone"],
             **{f: rec[f] for f in PATIENT_FIELDS}} for p, rec in chunk])
        _advance(progress, len(chunk))
    for chunk in _chunks(plan.episode_updates, WRITE_CHUNK):
        session.execute(update(Episode), [
            {"id": stay.pk, **_episode(None, rec, stay.site_id)} for stay, rec in chunk])
        rated = [{"id": stay.rating_pk, **_rating(stay.pk, rec, instrument)} for stay, rec in chunk if stay.rating_pk]
        if rated:
            session.execute(update(AllianceRating), rated)
        unrated = [_rating(stay.pk, rec, instrument) for stay, rec in chunk if stay.rating_pk is None]
        if unrated:
            session.execute(insert(AllianceRating.__table__), unrated)
        _advance(progress, len(chunk))
    for person, stay, rec in plan.rating_changes:
        audit(session, "alliance_rating_changed", actor=actor, patient_id=person.pk, episode_id=stay.pk,
              site_episode_id=rec["episode_id"] or stay.site_id, discharge_date=rec["discharge_date"].isoformat(),
              old_instrument=stay.rating[0], old_items=stay.rating[1], new_instrument=instrument.name,
              new_items=rec["items"], new_mean=rec["mean_score"])
    session.flush()


def apply_contact_changes(session: Session, plan: UpsertPlan, result: ImportResult, *, file: str,
                          actor: str | None = None) -> None:
    """What the import changed about reaching patients, each audited with the file and line that said it:

    - consent withdrawn (``consent_withdrawn``): the patient's queued texts are cancelled and open follow-ups
      closed at once (the sender refuses them anyway: :mod:`outreach.messaging.send_rule`); consent given again
      (``consent_given``) lets the next wave invite them;
    - a new phone number (``phone_corrected``, with the old and new number): texts queued for the old number
      are cancelled, invitations among them queued again to the new one; an opt-out that came from a "wrong
      number" reply on the old number is lifted (``opted_in``); a STOP never is."""
    from ..db import current_actor

    who = actor or current_actor()
    pid_of = {p.pk: pid for pid, p in plan.people.items()}
    withdrawn, moved = [], []
    for person, rec in plan.patient_updates:
        old_phone, old_consent = person.fields[0], person.fields[PATIENT_FIELDS.index("sms_consent")]
        where = {"via": "import", "file": file, "line": rec["_line"]}
        if bool(old_consent) != bool(rec["sms_consent"]):
            action = "consent_withdrawn" if old_consent else "consent_given"
            audit(session, action, actor=who, patient_id=person.pk, **where)
            (withdrawn if old_consent else result.consent_given).append(person.pk)
        if old_phone != rec["phone"]:
            lifted = opted_out_by_wrong_number(session, person.pk)
            audit(session, "phone_corrected", actor=who, patient_id=person.pk, old=old_phone, new=rec["phone"],
                  opt_out_lifted=lifted, **where)
            if lifted:
                lift_opt_out(session, person.pk, actor=who, reason="phone number changed by an import after a "
                             "wrong-number reply (the opt-out belonged to the old number)", **where)
                result.opt_outs_lifted.append(pid_of[person.pk])
            moved.append(person.pk)
    for chunk in _chunks(withdrawn):  # open follow-ups stay open (they expire as usual; nothing is sent to them)
        result.texts_cancelled += cancel_pending(session, chunk, NO_CONSENT, exempt=TO_THE_WRITER)
    for chunk in _chunks(moved):
        cancelled, requeued = readdress_after_phone_change(session, chunk)
        result.texts_cancelled += cancelled - requeued
        result.invitations_requeued += requeued
    result.consent_withdrawn = sorted(pid_of[pk] for pk in withdrawn)
    result.consent_given = sorted(pid_of[pk] for pk in result.consent_given)
    result.opt_outs_lifted.sort()
    result.phones_changed = len(moved)
    session.flush()


def _episode(patient_pk: int | None, rec: dict[str, Any], site_id: str | None = None) -> dict[str, Any]:
    row = {"site_episode_id": rec["episode_id"] or site_id, **{f: rec[f] for f in EPISODE_FIELDS}}
    if patient_pk is not None:
        row["patient_id"] = patient_pk
    return row


class _JsonCache:
    """``(items, mean_score, subscale_scores)`` of a record, the first and last as JSON text (as SQLAlchemy's JSON
    type writes them), each distinct set of items serialised once."""

    def __init__(self) -> None:
        self.known: dict[tuple, tuple[str, str]] = {}

    def __call__(self, rec: dict[str, Any]) -> tuple[str, float | None, str]:
        key = tuple(rec["items"])
        if key not in self.known:
            self.known[key] = (json.dumps(rec["items"]), json.dumps(rec["subscale_scores"]))
        items, subscales = self.known[key]
        return items, rec["mean_score"], subscales


def _new_ids(session: Session, table: Table, count: int) -> list[int]:
    """``count`` new primary keys for ``table``, increasing: from its sequence on PostgreSQL (safe beside other
    writers); on SQLite past the largest id, which no one else can add to while this transaction writes (SQLite
    has one writer at a time; a writer that came between would make this transaction's first write fail, not
    collide)."""
    if count == 0:
        return []
    if session.get_bind().dialect.name == "postgresql":
        # the sequence's name looked up once, not once a row (the catalog lookup was nine tenths of the time)
        sequence = session.scalar(sql("SELECT pg_get_serial_sequence(:name, 'id')"), {"name": table.name})
        return session.scalar(sql("SELECT array_agg(id ORDER BY id) FROM (SELECT nextval(CAST(:sequence AS regclass)) "
                                  "AS id FROM generate_series(1, :count)) AS taken"),
                              {"sequence": sequence, "count": count})
    first = session.scalar(select(func.coalesce(func.max(table.c.id), 0))) + 1
    return list(range(first, first + count))


@contextmanager
def _writing(session: Session, table: Table, names: list[str], *, same: dict[str, Any] | None = None,
             serialized: set[str] = frozenset()) -> Iterator[Callable[[list[tuple]], None]]:
    """``write(rows)``, to be called with each block of rows to insert, each row a tuple of the values of ``names``
    (the values of ``same`` are added to every row): on PostgreSQL a binary COPY for up to COPY_ROWS rows of blocks,
    each value written by psycopg as its column's type (:func:`_copy_types`); on SQLite the driver's executemany for
    each block, each value written as SQLAlchemy's type for the column writes it.  ``serialized`` columns are JSON
    text already."""
    same = same or {}
    statement_names = ", ".join([*names, *same])
    conn = session.connection()
    if conn.dialect.name == "postgresql":  # through psycopg's own connection, the one this transaction is on
        statement = f"COPY {table.name} ({statement_names}) FROM STDIN (FORMAT BINARY)"
        types, extra = _copy_types(table, [*names, *same]), tuple(same.values())
        with conn.connection.driver_connection.cursor() as cursor, ExitStack() as open_copy:
            copy, rows = None, 0

            def write_blocks(block: list[tuple]) -> None:
                nonlocal copy, rows
                if copy is None or rows >= COPY_ROWS:
                    open_copy.close()  # the statement before, if any, ends: the server checks its rows' keys
                    copy, rows = open_copy.enter_context(cursor.copy(statement)), 0
                    copy.set_types(types)
                for row in block:
                    copy.write_row(row + extra)
                rows += len(block)

            yield write_blocks
        return
    dialect = conn.dialect

    def processor(name: str) -> Callable[[Any], Any] | None:
        fn = None if name in serialized else table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        return None if fn is None else _memoised(fn)

    extra = tuple(fn(v) if (fn := processor(c)) else v for c, v in same.items())
    procs = [(i, fn) for i, c in enumerate(names) if (fn := processor(c)) is not None]
    statement = f"INSERT INTO {table.name} ({statement_names}) VALUES ({', '.join('?' * (len(names) + len(same)))})"

    def write(block: list[tuple]) -> None:
        if block:
            conn.exec_driver_sql(statement, [_processed(row, procs) + extra for row in block] if procs
                                 else [row + extra for row in block])

    yield write


def _copy_types(table: Table, names: list[str]) -> list[str]:
    """The type psycopg writes the values of each column of ``table`` called ``names`` as, in a binary COPY (one
    writer a column, chosen once, in C): the column's own type; text for the text columns, and for JSON, whose
    values here are JSON text already (json's binary form is its text)."""
    types = []
    for name in names:
        column_type = table.c[name].type
        if isinstance(column_type, Boolean):
            types.append("bool")
        elif isinstance(column_type, BigInteger):
            types.append("int8")
        elif isinstance(column_type, Integer):
            types.append("int4")
        elif isinstance(column_type, Float):  # FLOAT is PostgreSQL's double precision
            types.append("float8")
        elif isinstance(column_type, DateTime):
            types.append("timestamptz" if column_type.timezone else "timestamp")
        elif isinstance(column_type, Date):
            types.append("date")
        else:
            types.append("text")
    return types


def _memoised(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A column's bind processor answering each distinct value once (a file has few distinct dates and flags)."""
    known: dict[Any, Any] = {}

    def once(value: Any) -> Any:
        try:
            return known[value]
        except KeyError:
            known[value] = out = fn(value)
            return out
        except TypeError:  # not hashable
            return fn(value)

    return once


def _processed(row: tuple, procs: list[tuple[int, Callable[[Any], Any]]]) -> tuple:
    values = list(row)
    for i, fn in procs:
        if values[i] is not None:
            values[i] = fn(values[i])
    return tuple(values)


def _rating(episode_pk: int | None, rec: dict[str, Any], instrument: Instrument) -> dict[str, Any]:
    return {"episode_id": episode_pk, "instrument": instrument.name, "items": rec["items"],
            "mean_score": rec["mean_score"], "subscale_scores": rec["subscale_scores"]}
