"""Files a bilingual site really produces (French-locale Excel: semicolons, oui/non), and rows that are written
but deserve a look: warnings with their line, errors with --strict."""
from __future__ import annotations

import csv

import pytest
from sqlalchemy import func, select

from outreach.models import AuditEvent, Patient

COLUMNS = ["patient_id", "phone", "discharge_date", "sms_consent"] + [f"alliance_{i}" for i in range(1, 7)]


def write(tmp_path, rows: list[list[str]], sep: str = ",", name: str = "discharges.csv", bom: bool = False,
          newline: str = "\n"):
    text = newline.join(sep.join(r) for r in [COLUMNS, *rows]) + newline
    path = tmp_path / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def row(pid: str, phone: str, consent: str = "yes", items: str = "6,6,5,6,6,6", day: str = "2026-01-15"):
    return [pid, phone, day, consent, *items.split(",")]


@pytest.mark.parametrize("sep, name", [(";", "semicolon"), ("\t", "tab"), (",", "comma")])
def test_the_separator_is_detected_and_named_in_the_summary(tmp_path, run_cli, session, sep, name):
    path = write(tmp_path, [row("S1", "416-555-0101"), row("S2", "(604) 555-0102")], sep=sep, bom=True,
                 newline="\r\n")
    result = run_cli("import-discharges", str(path))
    assert result.exit_code == 0, result.output
    assert f"imported 2 new patients, 2 new episodes, updated 0, unchanged 0, rejected 0 ({name}-separated)" \
        in result.output
    assert sorted(session.scalars(select(Patient.patient_id))) == ["S1", "S2"]
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "import_discharges"))
    assert event.details["separator"] == name


def test_oui_non_and_o_are_consent_values(tmp_path, run_cli, session):
    path = write(tmp_path, [row("F1", "514-555-0101", "oui"), row("F2", "514-555-0102", "non"),
                            row("F3", "514-555-0103", "O"), row("F4", "514-555-0104", "peut-être")], sep=";")
    result = run_cli("import-discharges", str(path), "--skip-invalid")
    assert result.exit_code == 0, result.output
    consent = dict(session.execute(select(Patient.patient_id, Patient.sms_consent)).all())
    assert consent == {"F1": True, "F2": False, "F3": True}
    assert "line 5: sms_consent: 'peut-être' is not one of yes/no, oui/non" in result.output
    rejected = (tmp_path / "discharges.rejected.csv").read_text(encoding="utf-8-sig")
    assert rejected.splitlines()[0].startswith("patient_id;phone;")  # the site's separator, to fix and reload


def test_a_header_that_reads_as_one_column_says_how_columns_are_separated(tmp_path, run_cli):
    path = write(tmp_path, [row("P1", "416-555-0101")], sep="|")
    result = run_cli("import-discharges", str(path))
    assert result.exit_code == 1
    assert "the header reads as one column" in result.output
    assert "separated by commas, semicolons or tabs" in result.output


def _problem_file(tmp_path, sep=","):
    return write(tmp_path, [
        row("W1", "416-555-0101", items="6,,5,6,,6"),  # line 2: 4 of 6 answered: no alliance score
        row("W2", "416-555-0102"),  # line 3: shares its phone with W3 in this file
        row("W3", "416 555 0102"),  # line 4
        row("W4", "514 555 0154 ext 2"),  # line 5: the extension is dropped
        row("W5", "416-555-0199"),  # line 6: shares its phone with a stored patient
        row("OK", "416-555-0105"),  # line 7: nothing to say
    ], sep=sep)


def test_rows_that_deserve_a_look_are_imported_with_a_warning_naming_their_line(tmp_path, run_cli, make_patient,
                                                                              session):
    make_patient(patient_id="STORED", phone="+14165550199")
    result = run_cli("import-discharges", str(_problem_file(tmp_path)))
    assert result.exit_code == 0, result.output
    out = result.output
    assert ("warning: line 2: alliance: 4 of 6 items answered, so this stay has no alliance score (it needs at "
            "least 5)") in out
    assert "warning: line 3: phone: +1******0102 is also the phone of patient W3" in out
    assert "warning: line 4: phone: +1******0102 is also the phone of patient W2" in out
    assert "warning: line 5: phone: the extension 2 was dropped" in out
    assert "warning: line 6: phone: +1******0199 is also the phone of patient STORED" in out
    assert "line 7" not in out and "4165550102" not in out and "555-0199" not in out
    assert "5 warning(s): those rows were imported; check them, or use --strict to refuse them" in out
    assert "imported 6 new patients, 6 new episodes" in out
    assert session.scalar(select(Patient.phone).where(Patient.patient_id == "W4")) == "+15145550154"


def test_strict_turns_warnings_into_errors(tmp_path, run_cli, make_patient, session):
    make_patient(patient_id="STORED", phone="+14165550199")
    path = _problem_file(tmp_path, sep=";")
    refused = run_cli("import-discharges", str(path), "--strict")
    assert refused.exit_code == 1
    for line in ("line 2: alliance: ", "line 3: phone: ", "line 4: phone: ", "line 5: phone: the extension 2",
                 "line 6: phone: "):
        assert line in refused.output, line
    assert "(--strict)" in refused.output and "warning:" not in refused.output
    assert "nothing was imported" in refused.output
    assert session.scalar(select(func.count()).select_from(Patient)) == 1
    skipped = run_cli("import-discharges", str(path), "--strict", "--skip-invalid")
    assert "imported 1 new patients, 1 new episodes, updated 0, unchanged 0, rejected 5 (semicolon-separated)" \
        in skipped.output
    with (tmp_path / "discharges.rejected.csv").open(encoding="utf-8-sig") as fh:
        rejected = list(csv.DictReader(fh, delimiter=";"))
    assert [r["patient_id"] for r in rejected] == ["W1", "W2", "W3", "W4", "W5"]
    assert "extension 2 was dropped" in rejected[3]["error"]
