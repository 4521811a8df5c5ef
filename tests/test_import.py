"""Discharge import through the real CLI, on both databases."""
from __future__ import annotations

import csv
import datetime as dt

import pytest
from sqlalchemy import func, select

from outreach.models import AllianceRating, AuditEvent, Episode, Patient

HEADER = "patient_id,phone,discharge_date,sms_consent,alliance_1,alliance_2,alliance_3,alliance_4,alliance_5,alliance_6"


def write(tmp_path, text: str, name: str = "discharges.csv", encoding: str = "utf-8", bom: bool = False):
    path = tmp_path / name
    data = text.encode(encoding)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def test_valid_file_imports_every_patient_with_scores(tmp_path, run_cli, session):
    path = write(tmp_path, HEADER + "\n"
                 "A1,416-555-0101,2026-01-15,yes,6,6,5,6,6,6\n"
                 "A2,(604) 555-0102,2026-02-01,no,4,,3,5,4,4\n"
                 "A3,+1 514 555 0103,2026-02-03,Y,,2,,3,4,5\n")
    result = run_cli("import-discharges", str(path))
    assert result.exit_code == 0, result.output
    assert "imported 3 new patients, 3 new episodes, updated 0, unchanged 0, rejected 0" in result.output
    patients = {p.patient_id: p for p in session.scalars(select(Patient))}
    assert patients["A1"].phone == "+14165550101"
    assert patients["A2"].sms_consent is False and patients["A3"].sms_consent is True
    assert patients["A2"].timezone == "America/Vancouver"  # guessed from the area code
    ratings = {p: r for p, r in session.execute(select(Episode.patient_id, AllianceRating)
                                                 .join(Episode, Episode.id == AllianceRating.episode_id))}
    a1, a2, a3 = (ratings[patients[k].id] for k in ("A1", "A2", "A3"))
    assert a1.mean_score == pytest.approx(35 / 6, abs=1e-4)
    assert a1.subscale_scores == {"bond": pytest.approx(17 / 3, abs=1e-4), "goal_task": 6.0}
    assert a2.items == [4, None, 3, 5, 4, 4]
    assert a2.mean_score == pytest.approx(4.0)  # 5 of 6 answered: mean of those
    assert a2.subscale_scores["bond"] == pytest.approx(3.5)  # 2 of 3 answered
    assert a3.mean_score is None  # only 4 of 6 answered
    assert a3.subscale_scores == {"bond": pytest.approx(3.0), "goal_task": pytest.approx(4.0)}


def test_invalid_rows_are_all_reported_with_physical_line_numbers_and_nothing_written(tmp_path, run_cli, session):
    future = (dt.date.today() + dt.timedelta(days=3)).isoformat()
    path = write(tmp_path, HEADER + ",timezone,language,program\r\n"
                 'B1,416-555-0101,2026-01-15,yes,6,6,5,6,6,6,,en,"residential, long ""stay"""\r\n'
                 'B2,416-555-0102,2026-01-15,yes,6,6,5,6,6,6,,fr,"two\r\nline program"\r\n'
                 "B3,555-12,2026-02-30,maybe,7,x,5,6,6,6,Mars/Olympus,de,\r\n"
                 f"B1,416-555-0104,{future},yes,1,2,3,4,5,6,,,\r\n"
                 "B1,416-555-0104,2026-01-15,yes,1,2,3,4,5,6,,,\r\n")
    result = run_cli("import-discharges", str(path))
    assert result.exit_code == 1
    err = result.output
    # The quoted two-line field puts B3 on physical line 5, the repeat of B1 on line 6.
    for expected in ["line 5: phone: ", "line 5: discharge_date: '2026-02-30' is not a real date",
                     "line 5: sms_consent: 'maybe'", "line 5: alliance_1: 7 is out of range 0-6",
                     "line 5: alliance_2: 'x' is not a whole number", "line 5: timezone: 'Mars/Olympus'",
                     "line 5: language: 'de'", "line 6: discharge_date: " + future + " is in the future",
                     "line 7: discharge_date: 'B1' discharged on 2026-01-15 repeats line 2"]:
        assert expected in err, expected
    assert "555-12" not in err  # even an invalid number is masked
    assert "nothing was imported" in err
    assert count(session, Patient) == 0 and count(session, AllianceRating) == 0


def test_skip_invalid_writes_valid_rows_and_a_rejected_file(tmp_path, run_cli, session):
    path = write(tmp_path, HEADER + "\n"
                 "C1,416-555-0101,2026-01-15,yes,6,6,5,6,6,6\n"
                 "C2,416-555-0102,2026-01-15,sometimes,6,6,5,6,6,6\n"
                 "C3,416-555-0103,2026-01-15,no,6,6,5,6,6,9\n")
    result = run_cli("import-discharges", str(path), "--skip-invalid")
    assert result.exit_code == 0
    assert "imported 1 new patients, 1 new episodes, updated 0, unchanged 0, rejected 2" in result.output
    rejected = tmp_path / "discharges.rejected.csv"
    with rejected.open(encoding="utf-8-sig") as fh:  # written with a BOM, for Excel
        rows = list(csv.DictReader(fh))
    assert [r["patient_id"] for r in rows] == ["C2", "C3"]
    assert rows[0]["phone"] == "********02"  # masked: the file is a copy of patient data outside the database
    assert rows[0]["sms_consent"] == "sometimes"  # the other values are kept for correction
    assert "sms_consent" in rows[0]["error"] and "alliance_6: 9 is out of range" in rows[1]["error"]
    assert [p.patient_id for p in session.scalars(select(Patient))] == ["C1"]
    assert "phone numbers masked; --keep-identifiers keeps them" in result.output


def test_reimport_updates_by_patient_id_without_duplicates(tmp_path, run_cli, session):
    first = write(tmp_path, HEADER + "\nD1,416-555-0101,2026-01-15,yes,6,6,5,6,6,6\n"
                  "D2,416-555-0102,2026-01-15,yes,5,5,5,5,5,5\n", name="a.csv")
    assert run_cli("import-discharges", str(first)).exit_code == 0
    second = write(tmp_path, HEADER + "\nD1,416-555-0101,2026-01-15,yes,6,6,5,6,6,6\n"
                   "D2,416-555-0199,2026-01-15,no,5,5,5,5,5,4\nD3,416-555-0103,2026-01-16,yes,3,3,3,3,3,3\n",
                   name="b.csv")
    result = run_cli("import-discharges", str(second))
    assert "imported 1 new patients, 1 new episodes, updated 1, unchanged 1, rejected 0" in result.output
    assert count(session, Patient) == 3 and count(session, AllianceRating) == 3
    d2 = session.scalar(select(Patient).where(Patient.patient_id == "D2"))
    assert d2.phone == "+14165550199" and d2.sms_consent is False
    rating = session.scalar(select(AllianceRating).join(Episode, Episode.id == AllianceRating.episode_id)
                            .where(Episode.patient_id == d2.id))
    assert rating.items[-1] == 4 and rating.mean_score == pytest.approx(29 / 6, abs=1e-4)
    actions = session.scalars(select(AuditEvent.action)).all()
    assert actions.count("import_discharges") == 2


def test_bom_windows_line_endings_and_unusual_phone_formats(tmp_path, run_cli, session):
    path = write(tmp_path, (HEADER + "\r\n"
                            "E1,+1 (416) 555-0101,2026-01-15,TRUE,6,6,5,6,6,6\r\n"
                            "E2,1.604.555.0102,2026-01-15,0,6,6,5,6,6,6\r\n"
                            "E3,+33 6 12 34 56 78,2026-01-15,N,6,6,5,6,6,6\r\n"
                            "E4,  4165550104  ,2026-01-15,yes,6,6,5,6,6,6\r\n"), bom=True)
    result = run_cli("import-discharges", str(path))
    assert result.exit_code == 0, result.output
    phones = dict(session.execute(select(Patient.patient_id, Patient.phone)).all())
    assert phones == {"E1": "+14165550101", "E2": "+16045550102", "E3": "+33612345678", "E4": "+14165550104"}


def test_non_utf8_file_is_rejected_clearly(tmp_path, run_cli, session):
    path = write(tmp_path, HEADER + ",program\nF1,416-555-0101,2026-01-15,yes,6,6,5,6,6,6,Séjour\n",
                 encoding="latin-1")
    result = run_cli("import-discharges", str(path))
    assert result.exit_code == 1
    assert "line 2, column program: the file is not UTF-8" in result.output and "CSV UTF-8" in result.output
    assert count(session, Patient) == 0


@pytest.mark.parametrize("header, expected", [
    (HEADER.replace(",sms_consent", ""), "missing required column 'sms_consent'"),
    (HEADER + ",name", "unknown column 'name'"),
])
def test_header_problems_name_the_column_and_list_expected(tmp_path, run_cli, header, expected):
    path = write(tmp_path, header + "\n")
    result = run_cli("import-discharges", str(path))
    assert result.exit_code == 1
    assert expected in result.output
    assert "required columns: patient_id, phone, discharge_date, sms_consent, alliance_1" in result.output


def test_output_masks_phone_numbers(tmp_path, run_cli):
    path = write(tmp_path, HEADER + "\nG1,416-555-0101,2026-01-15,yes,6,6,5,6,6,6\n"
                 "G2,416-555-0102,2999-01-15,yes,6,6,5,6,6,6\n")
    result = run_cli("import-discharges", str(path))
    assert "5550101" not in result.output and "555-0102" not in result.output


def test_demo_generated_file_imports_through_the_cli(tmp_path, run_cli, session):
    from outreach.synthetic import discharge_rows, write_discharges

    path = write_discharges(tmp_path / "cohort.csv", discharge_rows(120, seed=3, invalid=4))
    result = run_cli("import-discharges", str(path), "--skip-invalid")
    assert "imported 120 new patients, 120 new episodes, updated 0, unchanged 0, rejected 4" in result.output
    again = run_cli("import-discharges", str(path), "--skip-invalid")
    assert "imported 0 new patients, 0 new episodes, updated 0, unchanged 120, rejected 4" in again.output


def test_reimport_keeps_a_phone_marked_invalid_unless_the_number_changes(tmp_path, run_cli, sessions, session):
    first = write(tmp_path, HEADER + "\nK1,416-555-0101,2026-01-15,yes,6,6,5,6,6,6\n"
                  "K2,416-555-0102,2026-01-15,yes,6,6,5,6,6,6\n", name="a.csv")
    run_cli("import-discharges", str(first))
    with sessions.begin() as s:
        for p in s.scalars(select(Patient)):
            p.phone_valid = False  # Twilio said 21211
    second = write(tmp_path, HEADER + ",age\nK1,416-555-0101,2026-01-15,yes,6,6,5,6,6,6,40\n"
                   "K2,416-555-0199,2026-01-15,yes,6,6,5,6,6,6,41\n", name="b.csv")
    assert "updated 2" in run_cli("import-discharges", str(second)).output
    valid = dict(session.execute(select(Patient.patient_id, Patient.phone_valid)).all())
    assert valid == {"K1": False, "K2": True}


def test_rejected_rows_file_masks_phone_numbers_and_is_private(tmp_path, run_cli):
    """The rejects are a copy of patient data outside the database: owner-only, numbers masked."""
    import os
    import stat

    path = write(tmp_path, HEADER + ",program\n"
                 "M1,416-555-0101,2026-01-15,yes,6,6,5,6,6,6,\n"
                 "M2,(416) 555-0102,2026-01-15,maybe,6,6,5,6,6,6,call 416-555-0177 first\n"
                 "M3,+33 6 12 34 56 78,2999-01-15,yes,6,6,5,6,6,6,\n")
    rejected = tmp_path / "discharges.rejected.csv"
    rejected.write_text("an older file, readable by anyone\n")
    os.chmod(rejected, 0o644)
    result = run_cli("import-discharges", str(path), "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(rejected).st_mode) == 0o600
    text = rejected.read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(text.splitlines()))
    assert [(r["patient_id"], r["phone"]) for r in rows] == [("M2", "********02"), ("M3", "*********78")]
    for raw in ("555-0102", "4165550102", "555-0177", "12 34 56 78"):
        assert raw not in text, raw
    assert rows[0]["sms_consent"] == "maybe" and "sms_consent" in rows[0]["error"]


def test_keep_identifiers_keeps_the_numbers_as_written_and_the_file_private(tmp_path, run_cli, session):
    import os
    import stat

    path = write(tmp_path, HEADER + "\nN1,416-555-0101,2026-01-15,yes,6,6,5,6,6,6\n"
                 "N2,(416) 555-0102,2026-01-15,maybe,6,6,5,6,6,6\n")
    result = run_cli("import-discharges", str(path), "--skip-invalid", "--keep-identifiers")
    assert result.exit_code == 0 and "masked" not in result.output
    rejected = tmp_path / "discharges.rejected.csv"
    assert stat.S_IMODE(os.stat(rejected).st_mode) == 0o600
    rows = list(csv.DictReader(rejected.read_text(encoding="utf-8-sig").splitlines()))
    assert rows[0]["phone"] == "(416) 555-0102"  # kept exactly as written, for correction
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "import_discharges"))
    assert event.details["rejected_file"] == "discharges.rejected.csv"
    assert event.details["rejected_file_identified"] is True


def test_progress_is_reported_in_each_pass_and_new_rows_are_written_a_chunk_at_a_time(tmp_path, sessions, settings,
                                                                                      engine, session, monkeypatch):
    """A job shows how far an import is: (done, total) from 0 to total, never backwards, several reports while
    the rows are read and while they are written; the new patients, stays and ratings are written by a few
    statements per chunk (on PostgreSQL a COPY for a few chunks), not one per row."""
    from sqlalchemy import event

    from outreach.db import unit_of_work
    from outreach.study import importer

    monkeypatch.setattr(importer, "READ_REPORT", 10)
    monkeypatch.setattr(importer, "WRITE_CHUNK", 10)
    monkeypatch.setattr(importer, "COPY_ROWS", 20)
    rows = [f"P{i:03d},416-555-{i:04d},2026-01-{1 + i % 28:02d},yes,6,6,5,6,6,6" for i in range(45)]
    path = write(tmp_path, HEADER + "\n" + "\n".join(rows) + "\n")
    reports: list[tuple[int, int]] = []
    inserts: list[str] = []
    listener = lambda conn, cur, statement, *a: statement.startswith("INSERT") and inserts.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    if engine.dialect.name == "postgresql":  # new rows go by COPY, which SQLAlchemy's events do not see
        import psycopg

        copy = psycopg.Cursor.copy
        monkeypatch.setattr(psycopg.Cursor, "copy", lambda cur, statement, *a, **k: (
            inserts.append(str(statement).replace("COPY ", "INSERT INTO ", 1)), copy(cur, statement, *a, **k))[1])
    try:
        with unit_of_work(sessions) as s:
            result = importer.import_discharges(s, path, settings, progress=lambda d, t: reports.append((d, t)))
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert result.written and result.new_patients == 45 and result.new_episodes == 45
    total = {t for _, t in reports}
    assert total == {3 * 45} and reports[0][0] == 0 and reports[-1] == (135, 135)
    assert [d for d, _ in reports] == sorted({d for d, _ in reports})  # each report further than the last
    assert sum(0 < d < 45 for d, _ in reports) >= 3 and sum(90 < d < 135 for d, _ in reports) >= 3
    # 5 chunks of 10: on SQLite one INSERT each for patients, stays and ratings, plus the audit; on PostgreSQL a COPY
    # for every 20 rows of a table (two chunks, two, then one)
    statements = 3 if engine.dialect.name == "postgresql" else 5
    assert len([s for s in inserts if "INTO patients" in s]) == statements
    assert len([s for s in inserts if "INTO episodes" in s]) == statements
    assert len([s for s in inserts if "INTO alliance_ratings" in s]) == statements
    stored = session.execute(select(Patient.patient_id, Patient.phone, Episode.discharge_date, AllianceRating.items,
                                    AllianceRating.mean_score)
                             .join(Episode, Episode.patient_id == Patient.id)
                             .join(AllianceRating, AllianceRating.episode_id == Episode.id)
                             .where(Patient.patient_id == "P007")).one()
    assert stored == ("P007", "+14165550007", dt.date(2026, 1, 8), [6, 6, 5, 6, 6, 6], pytest.approx(5.8333, abs=1e-4))
    assert session.execute(select(func.count(), func.count(func.distinct(Patient.patient_id)))
                           .select_from(Patient).join(Episode, Episode.patient_id == Patient.id)
                           .join(AllianceRating, AllianceRating.episode_id == Episode.id)).one() == (45, 45)
