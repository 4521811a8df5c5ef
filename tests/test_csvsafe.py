"""Every CSV the service writes neutralises spreadsheet formulas (OWASP), without changing numbers."""
from __future__ import annotations

import csv
import datetime as dt
import io

import pandas as pd
import pytest
from sqlalchemy import update

from outreach.csvsafe import FORMULA_START, safe_cell, safe_frame
from outreach.models import Episode

KEY = "export-key-for-csv-tests-0123456789abcdef"
FORMULAS = ["=1+2", "+1+2", "-2+3", "@SUM(A1:A2)", "\t=1+2", "\r=1+2", "=HYPERLINK(\"http://x.example\",\"y\")",
            "-cmd|' /C calc'!A0", "+", "-", "="]
NUMBERS = ["-3", "+3", "-3.5", "+0.25", "-1e5", ".5", "-.5", "3", "0"]


@pytest.mark.parametrize("text", FORMULAS)
def test_a_cell_a_spreadsheet_would_run_gets_a_leading_apostrophe(text):
    assert safe_cell(text) == "'" + text


@pytest.mark.parametrize("value", NUMBERS + [-3, 3, -3.5, 0, None, True, "", "plain text", "a=b", "1-2"])
def test_numbers_and_ordinary_text_are_unchanged(value):
    assert safe_cell(value) == value


def test_the_shared_list_is_owasps():
    assert set(FORMULA_START) == {"=", "+", "-", "@", "\t", "\r"}


def test_a_frame_is_neutralised_column_by_column_and_numbers_stay_numbers():
    df = pd.DataFrame({"text": ["=1+2", "-3", "ok", None], "n": [-3, 4, 5, 6],
                       "f": pd.array([-1.5, None, 2.0, 3.0], dtype="Float64"),
                       "s": pd.array(["@x", "-4.5", pd.NA, "y"], dtype="string"),
                       "c": pd.Categorical(["-low", "mid", "-low", "mid"]),
                       "mixed": ["=x", -7, None, "z"]})
    out = safe_frame(df)
    assert list(out["text"][:3]) == ["'=1+2", "-3", "ok"] and pd.isna(out["text"][3])
    assert list(out["n"]) == [-3, 4, 5, 6] and out["n"].dtype == df["n"].dtype
    assert out["f"].dtype == df["f"].dtype and out["f"][0] == -1.5
    assert list(out["s"].fillna("<NA>")) == ["'@x", "-4.5", "<NA>", "y"]
    assert list(out["c"]) == ["'-low", "mid", "'-low", "mid"]
    assert list(out["mixed"][[0, 1, 3]]) == ["'=x", -7, "z"] and pd.isna(out["mixed"][2])
    assert list(df["text"][:3]) == ["=1+2", "-3", "ok"]  # the caller's frame is not changed
    plain = pd.DataFrame({"a": ["x", "y"], "b": [1, 2]})
    assert safe_frame(plain) is plain  # nothing to do: no copy


def _cells(path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


def test_the_export_and_its_codebook_neutralise_formulas(make_patient, make_followup, sessions, run_cli, tmp_path):
    from outreach.db import unit_of_work

    evil = make_patient(patient_id="=HYPERLINK(\"http://evil.example\",\"x\")")
    negative = make_patient(patient_id="-42")
    for p, program in ((evil, "@SUM(1+1)"), (negative, "-residential")):
        make_followup(p, timepoint=30)
        with unit_of_work(sessions) as s:
            s.execute(update(Episode).where(Episode.id == p.episode_id).values(program=program, length_of_stay_days=3))
    out = tmp_path / "r.csv"
    result = run_cli("export", "--out", str(out), "--identified", "--reason", "formula test",
                     extra_env={"EXPORT_KEY": KEY})
    assert result.exit_code == 0, result.output
    rows = {r["patient_id"]: r for r in _cells(out)}
    assert set(rows) == {"'=HYPERLINK(\"http://evil.example\",\"x\")", "-42"}  # -42 is a number: unchanged
    assert {r["program"] for r in rows.values()} == {"'@SUM(1+1)", "'-residential"}
    assert {r["length_of_stay_days"] for r in rows.values()} == {"3"}
    assert not any(cell.startswith(FORMULA_START) and cell not in ("-42",)
                   for r in rows.values() for cell in r.values())
    book = _cells(tmp_path / "r.codebook.csv")
    assert all(not cell.startswith(("=", "+", "@")) for r in book for cell in r.values())


def test_import_rejects_neutralise_formulas_but_keep_negative_numbers(tmp_path, run_cli):
    header = "patient_id,phone,discharge_date,sms_consent,alliance_1,alliance_2,alliance_3,alliance_4,alliance_5,alliance_6"
    path = tmp_path / "d.csv"
    path.write_text(header + "\n=1+2,416-555-0101,2026-01-15,@yes,-3,6,5,6,6,6\n", encoding="utf-8")
    result = run_cli("import-discharges", str(path), "--skip-invalid")
    assert result.exit_code == 0, result.output
    [row] = _cells(tmp_path / "d.rejected.csv")
    assert row["patient_id"] == "'=1+2" and row["sms_consent"] == "'@yes" and row["alliance_1"] == "-3"
    assert not row["error"].startswith(FORMULA_START)


def test_the_audit_log_download_uses_the_same_rule():
    from outreach.staff.audit_log import AuditRow, audit_csv

    rows = [AuditRow(id=1, at=dt.datetime(2026, 11, 2, 15), actor="+cmd", action="-x", patient_pk=None,
                     patient_study_id="-42", address="@home", details={"note": "=1+2"})]
    [parsed] = list(csv.DictReader(io.StringIO(audit_csv(rows))))
    assert parsed["actor"] == "'+cmd" and parsed["action"] == "'-x" and parsed["address"] == "'@home"
    assert parsed["patient"] == "-42"  # a number stays a number
    assert parsed["details"] == '{"note": "=1+2"}'  # JSON starts with "{": nothing to run
