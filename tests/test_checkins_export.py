"""Issue 26, part 6 (the export): ``outreach export --out FILE`` also writes FILE.alliance_checkins.* in the same
format, one row per check-in, with its codebook, de-identified like the main file.  Real CLI, both databases."""
from __future__ import annotations

import csv
import datetime as dt

import pandas as pd
import pytest
from sqlalchemy import select

from outreach.care.checkins import Method, record_checkin, stay_in_treatment
from outreach.models import Patient
from outreach.study.instrument import load_instrument

KEY = "export-key-for-tests-0123456789abcdef"
ADMITTED = dt.date.today() - dt.timedelta(days=30)
DISCHARGED = dt.date.today() - dt.timedelta(days=5)


def admit_with_checkins(tmp_path, run_cli, uow, admitted: dt.date, methods: dict[str, str], checkins) -> None:
    """Ward A, ``methods``' patients admitted on ``admitted`` (patient_id: alliance_checkins), each with the
    tablet check-ins ``checkins`` ((day after admission, six ratings), ...)."""
    assert run_cli("care-teams", "add", "Ward A").exit_code == 0
    admissions = tmp_path / "admissions.csv"
    admissions.write_text("patient_id,phone,admission_date,care_team,sms_consent,alliance_checkins\n" + "".join(
        f"{pid},416-555-01{i:02d},{admitted},Ward A,yes,{how}\n" for i, (pid, how) in enumerate(methods.items(), 1)),
        encoding="utf-8")
    assert run_cli("import-admissions", str(admissions)).exit_code == 0
    instrument = load_instrument("alliance6")
    with uow() as s:
        for pid in methods:
            stay = stay_in_treatment(s, s.scalar(select(Patient.id).where(Patient.patient_id == pid)))
            for day, items in checkins:
                record_checkin(s, stay, items, instrument, method=Method.TABLET,
                               taken_at=dt.datetime.combine(admitted + dt.timedelta(days=day), dt.time(15)))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_the_export_writes_the_check_ins_beside_it_de_identified_with_a_codebook(tmp_path, run_cli, uow, fmt):
    admit_with_checkins(tmp_path, run_cli, uow, ADMITTED, {"X1": "tablet", "X2": "sms"},
                        ((6, [6, 6, 5, 6, 6, 6]), (13, [5, 4, 5, None, 5, 5])))
    instrument = load_instrument("alliance6")
    discharges = tmp_path / "discharges.csv"
    discharges.write_text("patient_id,phone,discharge_date,sms_consent," + ",".join(instrument.columns) + "\n"
                          f"X1,416-555-0101,{DISCHARGED},yes,,,,,,\n", encoding="utf-8")
    assert run_cli("import-discharges", str(discharges)).exit_code == 0
    with uow() as s:  # X2 withdrew, keeping what they gave
        s.scalar(select(Patient).where(Patient.patient_id == "X2")).withdrawn_at = dt.datetime.combine(DISCHARGED,
                                                                                                       dt.time(9))
    out = tmp_path / f"results.{fmt}"
    result = run_cli("export", "--out", str(out), extra_env={"EXPORT_KEY": KEY})
    assert result.exit_code == 0, result.output
    companion = tmp_path / f"results.alliance_checkins.{fmt}"
    assert f"wrote 4 check-in rows to {companion}" in result.output
    df = pd.read_csv(companion) if fmt == "csv" else pd.read_parquet(companion)
    assert list(df.columns) == ["participant", "episode", "treatment_week", "days_since_admission",
                                "days_before_discharge", "method", *[f"checkin_{i}" for i in range(1, 7)],
                                "checkin_mean", "checkin_bond", "checkin_goal_task", "withdrawn"]
    assert df["participant"].nunique() == 2 and not df.astype(str).isin(["X1", "X2"]).any().any()
    x1 = df[df["days_before_discharge"].notna()].sort_values("days_since_admission")
    assert x1["days_before_discharge"].tolist() == [19, 12] and x1["treatment_week"].tolist() == [1, 2]
    assert df["days_before_discharge"].isna().sum() == 2  # X2 is still in treatment
    assert x1["withdrawn"].tolist() == [0, 0]
    assert df.loc[df["days_before_discharge"].isna(), "withdrawn"].tolist() == [1, 1]  # X2 withdrew
    assert sorted(df["checkin_mean"].round(2).tolist()) == [4.8, 4.8, 5.83, 5.83]
    with open(tmp_path / f"results.alliance_checkins.codebook.csv", encoding="utf-8") as fh:
        book = {r["variable"]: r for r in csv.DictReader(fh)}
    assert book["treatment_week"]["label"].startswith("Treatment week of the check-in")
    assert "tablet = on the ward's tablet" in book["method"]["codes"]
    assert book["withdrawn"]["type"] == "binary" and "1 = Yes" in book["withdrawn"]["codes"]
    assert book["(unit)"]["label"].startswith("One row per alliance check-in")
