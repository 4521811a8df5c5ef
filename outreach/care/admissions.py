"""``outreach import-admissions FILE.csv``: stays that have begun, so that in-treatment patients exist before their
discharge.  Columns ``patient_id, phone, admission_date, care_team, sms_consent, alliance_checkins`` and optionally
``episode_id, language, timezone``; ``alliance_checkins`` is ``sms``, ``tablet`` or ``none``.

The discharge import's code reads and checks the file (:mod:`outreach.study.importer`): the same separators,
encodings, messages, ``--skip-invalid`` with its rejected-rows file, ``--strict`` and the audit of what a row
changes about reaching the patient.  A patient has at most one stay in treatment: a row matches it by its
``episode_id``, else by being the patient's open stay; a later discharge row for the same stay completes it.

The console's form for one admission (:func:`record_admission`) goes through the same reading as a one-row file, so
its checks and messages are the import's."""
from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

from sqlalchemy import update
from sqlalchemy.orm import Session

from ..config import Settings
from ..db import audit
from ..models import Episode, Patient
from ..study.importer import (PATIENT_FIELDS, SEPARATORS, ImportResult, RowValidator, UpsertPlan, _load_people,
                              _Person, _Row, _shared_phones, _text_or_none, _withdrawn_ids, apply_contact_changes,
                              ImportFileError, _rows_kept_out_of_gc, decode, detect_separator, read_rows, sort_out,
                              warnings_refuse)
from ..study.instrument import load_instrument
from ..study.retention import refuse_if_closed
from .checkins import CheckinsBy
from .teams import teams_by_name

REQUIRED = ["patient_id", "phone", "admission_date", "care_team", "sms_consent", "alliance_checkins"]
OPTIONAL = ["episode_id", "language", "timezone"]
COLUMNS = (REQUIRED, OPTIONAL)
METHODS = ", ".join(m.value for m in CheckinsBy)


class AdmissionValidator(RowValidator):
    """One admission row: the discharge row's checks for the columns they share, and the care team and method."""

    def __init__(self, settings: Settings, today: dt.date, teams: dict[str, int]):
        super().__init__(settings, load_instrument(settings.get("ALLIANCE_INSTRUMENT")), today)
        self.teams = teams

    def __call__(self, values: dict[str, str]) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
        problems: list[tuple[str, str]] = []
        warnings: list[tuple[str, str]] = []
        rec: dict[str, Any] = {}
        checks: list[tuple[str, Callable[[str], Any]]] = [
            ("patient_id", self._patient_id), ("episode_id", lambda v: _text_or_none(v, 64)),
            ("phone", lambda v: self._phone(v, warnings)), ("admission_date", self._date),
            ("sms_consent", self._consent), ("timezone", lambda v: self._zone(v, rec.get("phone"))),
            ("language", self._language), ("care_team", self._team), ("alliance_checkins", self._method)]
        for column, check in checks:
            try:
                rec[column] = check(values.get(column, "").strip())
            except ValueError as exc:
                problems.append((column, str(exc)))
        if not problems and rec["alliance_checkins"] == CheckinsBy.SMS and not rec["sms_consent"]:
            problems.append(("alliance_checkins", "sms check-ins need sms_consent yes; use tablet or none"))
        if problems:
            return None, problems
        rec["timezone"] = rec["timezone"] or self.default_zone
        rec["language"] = rec["language"] or "en"
        rec["warnings"] = warnings
        return rec, []

    def _team(self, v: str) -> int:
        if v not in self.teams:
            known = ", ".join(sorted(self.teams)) or "none yet: add one with `outreach care-teams add NAME`"
            raise ValueError(f"{v!r} is not a care team (care teams: {known})")
        return self.teams[v]

    @staticmethod
    def _method(v: str) -> str:
        if v.lower() not in {m.value for m in CheckinsBy}:
            raise ValueError(f"{v!r} is not one of {METHODS}")
        return v.lower()


def admission_keys(record: dict[str, Any]) -> list[tuple[str, tuple, str]]:
    """What makes two rows of an admission file one stay: the patient (one stay in treatment at a time)."""
    pid = record["patient_id"]
    return [("patient_id", (pid, "admitted"), f"{pid!r} is admitted")]


def import_admissions(session: Session, path: Path, settings: Settings, *, skip_invalid: bool = False,
                      today: dt.date | None = None, actor: str | None = None, keep_identifiers: bool = False,
                      strict: bool = False) -> ImportResult:
    """Import an admission file (see the module's docstring); nothing is written when a row has a problem, unless
    ``skip_invalid``."""
    return _admit(session, decode(Path(path).read_bytes()), Path(path), settings, skip_invalid=skip_invalid,
                  today=today, actor=actor, keep_identifiers=keep_identifiers, strict=strict)


FORM = "console form"  # the ``file`` of a form's audit rows


def record_admission(session: Session, settings: Settings, values: dict[str, str], *, actor: str,
                     address: str | None = None, today: dt.date | None = None) -> ImportResult:
    """One admission from the console's form (``values``: the import's columns, as typed), checked and written as
    an admission file's one row would be (the same messages; ``result.errors`` when refused, nothing written),
    audited as ``admission_recorded``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = REQUIRED + OPTIONAL
    writer.writerow(columns)
    writer.writerow([str(values.get(c) or "").replace("\r", " ").replace("\n", " ") for c in columns])
    return _admit(session, buffer.getvalue(), Path(FORM), settings, today=today, actor=actor, address=address,
                  action="admission_recorded")


def _admit(session: Session, text: str, path: Path, settings: Settings, *, skip_invalid: bool = False,
           today: dt.date | None = None, actor: str | None = None, keep_identifiers: bool = False,
           strict: bool = False, action: str = "import_admissions", address: str | None = None) -> ImportResult:
    refuse_if_closed(session, ImportFileError)
    instrument = load_instrument(settings.get("ALLIANCE_INSTRUMENT"))
    today = today or dt.datetime.now(ZoneInfo(settings.default_timezone)).date()
    separator = detect_separator(text, instrument, COLUMNS)
    validate = AdmissionValidator(settings, today, teams_by_name(session))
    with _rows_kept_out_of_gc():  # read_rows freezes what it reads; this undoes it (else it stayed frozen for ever)
        names, rows = read_rows(text, instrument, validate, separator, columns=COLUMNS, stay_keys=admission_keys)
    _shared_phones(session, rows)
    if strict:
        warnings_refuse(rows)
    valid = [r for r in rows if r.record is not None]
    gone = _withdrawn_ids(session, list(dict.fromkeys(r.record["patient_id"] for r in valid)))
    skipped_withdrawn = sum(1 for r in valid if r.record["patient_id"] in gone)  # never enrolled again, as a
    valid = [r for r in valid if r.record["patient_id"] not in gone]  # discharge row of theirs is not
    people = _load_people(session, list(dict.fromkeys(r.record["patient_id"] for r in valid)))
    plan = UpsertPlan(people=people)
    stays: list[tuple[_Row, _Person | None, Any]] = []
    for row in valid:
        person = people.get(row.record["patient_id"])
        stay, problems = _match(person, row.record)
        if problems:
            row.problems.extend(problems)
            row.record = None
        else:
            stays.append((row, person, stay))
    result = ImportResult(separator=separator, withdrawn=skipped_withdrawn)
    if not sort_out(result, rows, names, Path(path), skip_invalid=skip_invalid, keep_identifiers=keep_identifiers):
        return result
    _write(session, stays, plan, result)
    apply_contact_changes(session, plan, result, file=Path(path).name, actor=actor)
    rejects = {"rejected_file": result.rejected_path.name, "rejected_file_identified": keep_identifiers} \
        if result.rejected_path else {}
    audit(session, action, actor=actor, address=address, file=Path(path).name, new_patients=result.new_patients,
          new_episodes=result.new_episodes, updated=result.updated, unchanged=result.unchanged,
          rejected=result.rejected, warnings=len(result.warnings), separator=SEPARATORS.get(separator, separator),
          consent_withdrawn=len(result.consent_withdrawn), phones_changed=result.phones_changed, **rejects)
    result.written = True
    return result


def _match(person: _Person | None, rec: dict[str, Any]) -> tuple[Any, list[tuple[str, str]]]:
    """The patient's stay in treatment this row describes (None: a new stay), or why it is refused."""
    if person is None:
        return None, []
    day, site = rec["admission_date"], rec["episode_id"]
    if site:
        same = next((s for s in person.stays if s.site_id == site), None)
        if same is not None and same.fields[0] is not None:
            return None, [("episode_id", f"stay {site!r} was discharged on {same.fields[0]}; an admission file "
                                         "loads stays in treatment")]
        if same is not None:
            return same, []
    open_stay = next((s for s in person.stays if s.fields[0] is None), None)
    if open_stay is not None:
        if (site and open_stay.site_id not in (None, site)) or (not site and open_stay.fields[1] != day):
            return None, [("admission_date", f"{rec['patient_id']!r} has a stay in treatment since {open_stay.fields[1]}"
                                             f"{f' ({open_stay.site_id})' if open_stay.site_id else ''}; import its "
                                             "discharge first (one stay in treatment at a time)")]
        return open_stay, []
    if person.latest is not None and day <= person.latest:
        return None, [("admission_date", f"{day} is not after the discharge on {person.latest} of the patient's "
                                         "latest stay")]
    return None, []


def _write(session: Session, stays: list, plan: UpsertPlan, result: ImportResult) -> None:
    """New patients and stays, and changes to stored ones; ``plan.patient_updates`` gets the patients whose phone
    or consent the file changes (for :func:`apply_contact_changes`)."""
    for row, person, stay in stays:
        rec = row.record
        rec["_line"] = row.line
        episode_fields = {"admission_date": rec["admission_date"], "care_team_id": rec["care_team"],
                          "alliance_checkins": rec["alliance_checkins"]}
        if person is None:
            patient = Patient(patient_id=rec["patient_id"], phone=rec["phone"], timezone=rec["timezone"],
                              language=rec["language"], sms_consent=rec["sms_consent"], phone_valid=True)
            session.add(patient)
            session.flush()
            person = plan.people[rec["patient_id"]] = _Person(patient.id, (), True)
            result.new_patients += 1
        else:
            rec["age"], rec["sex"] = person.fields[PATIENT_FIELDS.index("age")], person.fields[PATIENT_FIELDS.index("sex")]
            if tuple(rec[f] for f in PATIENT_FIELDS) != person.fields:
                plan.patient_updates.append((person, rec))
                session.execute(update(Patient).where(Patient.id == person.pk).values(
                    phone_valid=person.phone_valid or person.fields[0] != rec["phone"],
                    **{f: rec[f] for f in PATIENT_FIELDS}))
        if stay is None:
            session.add(Episode(patient_id=person.pk, site_episode_id=rec["episode_id"], **episode_fields))
            result.new_episodes += 1
            continue
        episode = session.get(Episode, stay.pk)
        before = (episode.admission_date, episode.care_team_id, episode.alliance_checkins, episode.site_episode_id)
        for name, value in episode_fields.items():
            setattr(episode, name, value)
        episode.site_episode_id = episode.site_episode_id or rec["episode_id"]
        changed = before != (episode.admission_date, episode.care_team_id, episode.alliance_checkins,
                             episode.site_episode_id) or any(p is person for p, _ in plan.patient_updates)
        result.updated += changed
        result.unchanged += not changed
    session.flush()
