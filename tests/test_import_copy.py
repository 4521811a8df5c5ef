"""The import's writing of new rows (a binary COPY on PostgreSQL, the driver's executemany on SQLite): every value
read back from the database as it was written, the nasty ones (tabs, newlines, carriage returns, backslashes, a
literal \\N, quotes, accents, empty text beside NULL) included, and the same as SQLAlchemy's own insert stores."""
from __future__ import annotations

import csv
import datetime as dt
import io

from sqlalchemy import insert, select

from outreach.db import unit_of_work
from outreach.models import AllianceRating, Episode, Patient

NASTY = ["tab\there", "new\nline", "carriage\rreturn", "crlf\r\nend", "back\\slash", "\\N", "\\", "ends\\",
         "\\t not a tab", 'quote " and \'', "accents éèçÀ ß", "emoji 🙂", "form\ffeed\vvert\bback", "semi;colon,comma",
         "  inner  spaces  ", "x" * 64]


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


def test_what_the_import_writes_is_what_sqlalchemy_inserts(sessions, session):
    """Every type of column the import writes (text, whole numbers, flags, dates, times, JSON text, a double), nasty
    values and NULL among them, reads back as the same values from both ways of writing."""
    import outreach.study.importer as importer

    now = dt.datetime(2026, 12, 6, 10, 11, 12, 131415)
    columns = ["patient_id", "phone", "phone_valid", "timezone", "language", "sms_consent", "age", "sex"]
    values = [*NASTY, "", None]
    rows = [(value if value is None else value[:50], f"+1416555{i:04d}", i % 2 == 0, "America/Toronto", "fr",
             i % 3 == 0, i if i % 4 else None, value if value is None else value[:32]) for i, value in enumerate(values)]

    def ours(prefix: str, row: tuple) -> tuple:
        return (f"{prefix}{row[0]}", f"{row[1]}{prefix}", *row[2:])

    with unit_of_work(sessions) as s:
        pks = importer._new_ids(s, Patient.__table__, 2 * len(rows))
        with importer._writing(s, Patient.__table__, ["id", *columns],
                               same={"created_at": now, "updated_at": now}) as put:
            put([(pk, *ours("copy:", row)) for pk, row in zip(pks[:5], rows[:5])])
            put([(pk, *ours("copy:", row)) for pk, row in zip(pks[5:len(rows)], rows[5:])])
        s.execute(insert(Patient.__table__), [dict(zip(columns, ours("orm:", row)), created_at=now, updated_at=now)
                                             for row in rows])
        stays = importer._new_ids(s, Episode.__table__, len(rows))
        days = [dt.date(2026, 1, 1) + dt.timedelta(days=i) if i % 3 else None for i in range(len(rows))]
        with importer._writing(s, Episode.__table__, ["id", "patient_id", "discharge_date", "program",
                                                      "length_of_stay_days"],
                               same={"created_at": now, "updated_at": now}) as put:
            put([(stay, pk, day, row[7], row[6]) for stay, pk, day, row in zip(stays, pks, days, rows)])
        scores = [35 / 6, None, 4.0, 1e-300, -0.0]
        items = ['[1, null]', '["\\u00e9", "\\t"]', "[]", '{"a": [1.5, 2]}', "[6, 6, 6, 6, 6, 6]"]
        with importer._writing(s, AllianceRating.__table__, ["id", "episode_id", "items", "mean_score",
                                                             "subscale_scores"],
                               same={"instrument": "alliance6", "created_at": now, "updated_at": now},
                               serialized={"items", "subscale_scores"}) as put:
            put([(rating, stay, item, score, item) for rating, stay, item, score in
                 zip(importer._new_ids(s, AllianceRating.__table__, 5), stays, items, scores)])
    session.rollback()

    def read(prefix: str) -> list[tuple]:
        return sorted((pid.removeprefix(prefix), phone.removesuffix(prefix), *rest) for pid, phone, *rest in
                      session.execute(select(Patient.patient_id, Patient.phone, Patient.phone_valid, Patient.timezone,
                                             Patient.language, Patient.sms_consent, Patient.age, Patient.sex,
                                             Patient.created_at, Patient.updated_at)
                                      .where(Patient.patient_id.startswith(prefix))))

    copied = read("copy:")
    assert len(copied) == len(rows) and copied == read("orm:")
    assert ("\\N", "+14165550005", False, "America/Toronto", "fr", False, 5, "\\N", now, now) in copied
    assert ("", "+14165550016", True, "America/Toronto", "fr", False, None, "", now, now) in copied
    stored_stays = session.execute(select(Episode.id, Episode.discharge_date, Episode.program,
                                          Episode.length_of_stay_days, Episode.created_at)
                                   .where(Episode.id.in_(stays)).order_by(Episode.id)).all()
    assert stored_stays == [(stay, day, row[7], row[6], now) for stay, day, row in zip(stays, days, rows)]
    stored_ratings = session.execute(select(AllianceRating.items, AllianceRating.mean_score,
                                            AllianceRating.subscale_scores, AllianceRating.instrument)
                                     .where(AllianceRating.episode_id.in_(stays)).order_by(AllianceRating.id)).all()
    parsed = [[1, None], ["\u00e9", "\t"], [], {"a": [1.5, 2]}, [6, 6, 6, 6, 6, 6]]
    assert stored_ratings == [(p, score, p, "alliance6") for p, score in zip(parsed, scores)]
