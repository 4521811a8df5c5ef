"""COPY text made by outreach.pg_copy: every value read back from the database as it was written, the nasty ones
(tabs, newlines, carriage returns, backslashes, a literal \\N, quotes, accents, empty text beside NULL) included,
and the same rows written by psycopg's own write_row read back identical."""
from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from sqlalchemy import select

from outreach.db import unit_of_work
from outreach.models import AllianceRating, Episode, Patient
from outreach.pg_copy import CannotFormat, copy_text

NASTY = ["tab\there", "new\nline", "carriage\rreturn", "crlf\r\nend", "back\\slash", "\\N", "\\", "ends\\",
         "\\t not a tab", 'quote " and \'', "accents éèçÀ ß", "emoji 🙂", "form\ffeed\vvert\bback", "semi;colon,comma",
         "  inner  spaces  ", "x" * 64]


def test_values_are_written_as_copy_text_with_escapes_and_null():
    table = Episode.__table__
    rows = [(1, 2, None, dt.date(2026, 1, 2), 7, "tab\there", ""),
            (3, 4, "\\N", None, None, "a\\b\nc\rd", None)]
    text = copy_text(table, ["id", "patient_id", "site_episode_id", "discharge_date", "length_of_stay_days",
                             "program", "primary_substance"], list(zip(*rows)),
                     {"created_at": dt.datetime(2026, 1, 2, 3, 4, 5)})
    assert text == ("1\t2\t\\N\t2026-01-02\t7\ttab\\there\t\t2026-01-02T03:04:05\n"
                    "3\t4\t\\\\N\t\\N\t\\N\ta\\\\b\\nc\\rd\t\\N\t2026-01-02T03:04:05\n")
    ratings = copy_text(AllianceRating.__table__, ["id", "mean_score", "items"],
                        [[1, 2, 3], [35 / 6, None, 4], ["[1, null]", '["\\u00e9"]', "[]"]])
    assert ratings == f"1\t{35 / 6!r}\t[1, null]\n2\t\\N\t[\"\\\\u00e9\"]\n3\t4.0\t[]\n"
    assert copy_text(Patient.__table__, ["sms_consent", "phone_valid"], [[True, None], [False, True]]) == \
        "t\tf\n\\N\tt\n"
    assert copy_text(Patient.__table__, ["age"], [[]]) == ""


@pytest.mark.parametrize("columns", [[["a\x00b"]], [[12]], [["a", "b"], ["c"]]])
def test_a_value_it_does_not_write_is_left_to_the_driver(columns):
    with pytest.raises(CannotFormat):
        copy_text(Episode.__table__, ["program", "sex"][: len(columns)], columns)


def test_nasty_text_cells_are_stored_as_written(tmp_path, settings, sessions, session):
    from outreach.study.importer import import_discharges

    header = ["patient_id", "phone", "discharge_date", "sms_consent", *[f"alliance_{i}" for i in range(1, 7)],
              "episode_id", "sex", "primary_substance", "program"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)  # a lone CR quoted too
    writer.writerow(header)
    expected = {}
    for i, value in enumerate(NASTY):
        pid = f"N{i}-{value[:20]}"
        cells = [pid.strip(), f"416-555-01{i:02d}", "2026-01-15", "yes", 6, 5, 4, 3, 2, 1, value[:64].strip(),
                 value[:32].strip(), value.strip(), value.strip()]
        if "\n" in value:  # a quoted cell over two lines must hold no separator (else: an unclosed quote)
            cells = [c.replace(",", " ") if isinstance(c, str) else c for c in cells]
        writer.writerow(cells)
        expected[cells[0]] = tuple(cells[10:14])
    writer.writerow(["EMPTY", "416-555-0199", "2026-01-15", "yes", 6, 5, 4, 3, 2, 1, "", "", "", ""])
    expected["EMPTY"] = (None, None, None, None)  # an empty cell is no value (NULL), never empty text
    path = tmp_path / "nasty.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    with unit_of_work(sessions) as s:
        result = import_discharges(s, path, settings, today=dt.date(2026, 12, 6))
    assert result.written and not result.errors, [str(e) for e in result.errors]
    session.rollback()
    stored = {pid: (site, sex, substance, program) for pid, site, sex, substance, program in session.execute(
        select(Patient.patient_id, Episode.site_episode_id, Patient.sex, Episode.primary_substance, Episode.program)
        .join(Episode, Episode.patient_id == Patient.id))}
    assert stored == expected


def test_copy_text_stores_what_psycopg_write_row_stores(sessions, session, monkeypatch):
    import outreach.study.importer as importer

    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("COPY is PostgreSQL's")
    now = dt.datetime(2026, 12, 6, 10, 11, 12, 131415)
    columns = ["patient_id", "phone", "phone_valid", "timezone", "language", "sms_consent", "age", "sex"]
    values = [*NASTY, "", None]
    rows = [(value if value is None else value[:50], f"+1416555{i:04d}", i % 2 == 0, "America/Toronto", "fr", i % 3 == 0, i if i % 4 else None,
             value if value is None else value[:32]) for i, value in enumerate(values)]

    def write(prefix: str, later=lambda row: row) -> None:
        with unit_of_work(sessions) as s, importer._writing(s, Patient.__table__, columns,
                                                            same={"created_at": now, "updated_at": now}) as put:
            put(list(zip(*[(f"{prefix}{row[0]}", f"{row[1]}{prefix}", *row[2:]) for row in rows[:5]])))
            put(list(zip(*[(f"{prefix}{row[0]}", f"{row[1]}{prefix}", *later(row)[2:]) for row in rows[5:]])))

    write("ours:")
    # a block with a value of another type than its column's (an age as text) goes through the driver, after ours
    write("mixed:", lambda row: (*row[:6], None if row[6] is None else str(row[6]), row[7]))

    def refuse(*args, **kwargs):
        raise CannotFormat("the driver writes these rows")

    monkeypatch.setattr(importer, "copy_text", refuse)
    write("driver:")
    session.rollback()

    def read(prefix: str) -> list[tuple]:
        return sorted((pid.removeprefix(prefix), phone.removesuffix(prefix), *rest) for pid, phone, *rest in
                      session.execute(select(Patient.patient_id, Patient.phone, Patient.phone_valid, Patient.timezone,
                                             Patient.language, Patient.sms_consent, Patient.age, Patient.sex,
                                             Patient.created_at, Patient.updated_at)
                                      .where(Patient.patient_id.startswith(prefix))))

    ours, theirs = read("ours:"), read("driver:")
    assert len(ours) == len(rows) and ours == theirs == read("mixed:")
    assert ("\\N", "+14165550005", False, "America/Toronto", "fr", False, 5, "\\N", now, now) in ours
