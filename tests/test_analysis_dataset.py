"""The linked dataset and its export, from a real database filled through the real webhook."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import pandas as pd
import pytest
from sqlalchemy import select

from analysis.dataset import CONTRACT, linked_dataset
from outreach.db import unit_of_work
from outreach.models import AuditEvent, FollowUp, Message

KEY = "export-key-for-tests-0123456789abcdef"  # 32+ characters, as EXPORT_KEY must be


@pytest.fixture
def filled(make_patient, make_followup, sessions, twilio, engine):
    """Five patients at 30 days and one at 90, answering in different ways."""
    a = make_patient(patient_id="A", discharge_date=dt.date(2026, 10, 1), mean=5.5)
    b = make_patient(patient_id="B", discharge_date=dt.date(2026, 10, 1), mean=3.0)
    c = make_patient(patient_id="C", discharge_date=dt.date(2026, 10, 1), mean=4.5)
    d = make_patient(patient_id="D", discharge_date=dt.date(2026, 10, 1), mean=6.0)
    e = make_patient(patient_id="E", discharge_date=dt.date(2026, 10, 1), mean=5.0)
    fus = {p.patient_id: make_followup(p, timepoint=30) for p in (a, b, c, d, e)}
    fus["A90"] = make_followup(a, timepoint=90, state="completed")
    with unit_of_work(sessions) as s:
        s.add(Message(direction="out", kind="invitation", status="delivered", provider_sid="SM" + "a" * 32,
                      patient_id=a.id, followup_id=fus["A"].id, body="x"))
        s.add(Message(direction="out", kind="reminder", status="delivered", provider_sid="SM" + "b" * 32,
                      patient_id=a.id, followup_id=fus["A"].id, body="x"))
        s.get(FollowUp, fus["A90"].id).state = "expired"  # an earlier cohort's closed follow-up
    for text in ["yes", "9", "very good"]:
        twilio.text(a.phone, text)  # A: partial at 30 days, stopped before the last question
    for text in ["oui", "3", "5", "poor"]:
        twilio.text(b.phone, text)  # B: completed
    twilio.text(c.phone, "STOP")  # C: opted out, no answers
    # D never replies; E says yes and nothing else (then the window closes)
    twilio.text(e.phone, "yes")
    return engine


def test_columns_follow_the_contract_and_missing_stays_missing(filled):
    df = linked_dataset(filled, KEY.encode())
    assert list(df.columns) == CONTRACT  # no covariates were imported for these patients
    assert len(df) == 6
    by = {(r.participant, r.timepoint_days): r for r in df.itertuples()}
    pseudo = {pid: hmac.new(KEY.encode(), pid.encode(), hashlib.sha256).hexdigest()[:16] for pid in "ABCDE"}
    a30, b30 = by[(pseudo["A"], 30)], by[(pseudo["B"], 30)]
    assert a30.status == "partial" and a30.responded == 1 and a30.self_efficacy == 9 and a30.mental_health == 4
    assert pd.isna(a30.physical_health) and pd.isna(a30.days_used) and pd.isna(a30.physical_health_high)
    assert a30.contact_attempts == 2 and a30.self_efficacy_high == 1 and a30.mental_health_high == 1
    assert b30.status == "completed" and b30.self_efficacy == 3 and b30.self_efficacy_high == 0
    assert b30.mental_health == 1 and b30.physical_health == 1  # "5" and "poor" are both Poor
    today = dt.datetime.now(dt.UTC).date()
    assert b30.days_to_response == (today - dt.date(2026, 10, 1)).days
    assert by[(pseudo["C"], 30)].status == "opted_out" and by[(pseudo["C"], 30)].responded == 0
    assert by[(pseudo["D"], 30)].status == "no_reply" and pd.isna(by[(pseudo["D"], 30)].self_efficacy)
    assert by[(pseudo["E"], 30)].status == "replied_no_answer"  # replied, answered nothing (not "expired": a state)
    assert by[(pseudo["A"], 90)].status == "no_reply"
    # Tertiles are cut within the exported participants (means 3.0, 4.5, 5.0, 5.5, 6.0).
    tertiles = {pid: by[(pseudo[pid], 30)].alliance_tertile for pid in "ABCDE"}
    assert tertiles["B"] == "low" and tertiles["D"] == "high"


def test_default_export_has_no_identifiers(filled, run_cli, tmp_path):
    out = tmp_path / "results.csv"
    result = run_cli("export", "--out", str(out), extra_env={"EXPORT_KEY": KEY})
    assert result.exit_code == 0, result.output
    text = out.read_text()
    df = pd.read_csv(out)
    assert "patient_id" not in df.columns and "discharge_date" not in df.columns and "phone" not in df.columns
    assert "+1416" not in text and "2026-10-01" not in text and ",A," not in text
    codebook = pd.read_csv(tmp_path / "results.codebook.csv")
    assert list(codebook.columns) == ["variable", "label", "type", "codes"]
    variables = codebook[codebook["type"] != "note"]
    assert list(variables["variable"]) == list(df.columns)
    assert "1 = Poor" in codebook.set_index("variable").loc["mental_health", "codes"]
    # The notes after the variables: what one row is, and the suppression rule with this study's threshold.
    rule = codebook.set_index("variable").loc["(publication rule)", "label"]
    assert "SUPPRESS_BELOW = 5" in rule and "Counts from 1 to 4 are shown as <5" in rule
    assert "count people with 'participant'" in codebook.set_index("variable").loc["(unit)", "label"]


def test_the_codebook_states_the_studys_own_suppression_threshold(filled, run_cli, tmp_path):
    out = tmp_path / "results.sav"
    result = run_cli("export", "--out", str(out), extra_env={"EXPORT_KEY": KEY, "SUPPRESS_BELOW": "11"})
    assert result.exit_code == 0, result.output
    rule = pd.read_csv(tmp_path / "results.codebook.csv").set_index("variable").loc["(publication rule)", "label"]
    assert "SUPPRESS_BELOW = 11" in rule and "Counts from 1 to 10 are shown as <11" in rule


def test_export_refuses_without_key(filled, run_cli, tmp_path):
    result = run_cli("export", "--out", str(tmp_path / "r.csv"))
    assert result.exit_code == 2 and "EXPORT_KEY is not set" in result.output
    assert not (tmp_path / "r.csv").exists()


def test_identified_export_needs_a_reason_and_is_audited(filled, run_cli, tmp_path, session):
    refused = run_cli("export", "--out", str(tmp_path / "r.csv"), "--identified", extra_env={"EXPORT_KEY": KEY})
    assert refused.exit_code != 0 and "--reason" in refused.output
    ok = run_cli("export", "--out", str(tmp_path / "r.csv"), "--identified", "--reason", "contact tracing audit",
                 extra_env={"EXPORT_KEY": KEY})
    assert ok.exit_code == 0, ok.output
    df = pd.read_csv(tmp_path / "r.csv", dtype=str)
    assert list(df.columns[:4]) == ["participant", "episode", "patient_id", "discharge_date"]
    assert set(df["patient_id"]) == set("ABCDE") and set(df["discharge_date"]) == {"2026-10-01"}
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "identified_export"))
    assert event.actor.startswith("cli:") and event.details["reason"] == "contact tracing audit"
    assert event.details["rows"] == 6


@pytest.mark.parametrize("ext", ["dta", "sav"])
def test_stats_package_files_carry_variable_and_value_labels(filled, run_cli, tmp_path, ext):
    import pyreadstat

    out = tmp_path / f"results.{ext}"
    assert run_cli("export", "--out", str(out), "--timepoint", "30", extra_env={"EXPORT_KEY": KEY}).exit_code == 0
    df, meta = (pyreadstat.read_dta if ext == "dta" else pyreadstat.read_sav)(str(out))
    assert len(df) == 5 and set(df["timepoint_days"]) == {30}
    labels = dict(zip(meta.column_names, meta.column_labels))
    assert labels["self_efficacy"].startswith("Confidence in ability")
    assert meta.variable_value_labels["physical_health"][5] == "Excellent"
    assert meta.variable_value_labels["self_efficacy_high"][1] == "Yes"
    assert df["days_used"].isna().all()  # missing, never zero


def test_parquet_and_bad_extension(filled, run_cli, tmp_path):
    out = tmp_path / "r.parquet"
    assert run_cli("export", "--out", str(out), extra_env={"EXPORT_KEY": KEY}).exit_code == 0
    assert len(pd.read_parquet(out)) == 6
    bad = run_cli("export", "--out", str(tmp_path / "r.xlsx"), extra_env={"EXPORT_KEY": KEY})
    assert bad.exit_code != 0 and "--format" in bad.output


def _export_events(session):
    session.rollback()
    return {e.action: e for e in session.scalars(select(AuditEvent).where(AuditEvent.action.like("identified_export%"))
                                                 .order_by(AuditEvent.id))}


def test_an_identified_export_is_audited_before_it_is_written_and_its_checksum_after(filled, run_cli, tmp_path,
                                                                                     session, monkeypatch):
    import analysis.export
    import os
    import stat

    out = tmp_path / "identified.csv"
    real_write = analysis.export.write
    seen_before_writing = []

    def write_and_look(df, path, fmt, **kwargs):  # what is in the database (committed) when writing starts
        seen_before_writing.append(dict(_export_events(session)))
        return real_write(df, path, fmt, **kwargs)

    monkeypatch.setattr(analysis.export, "write", write_and_look)
    result = run_cli("export", "--out", str(out), "--identified", "--reason", "linkage with registry",
                     extra_env={"EXPORT_KEY": KEY})
    assert result.exit_code == 0, result.output
    [before] = seen_before_writing
    assert list(before) == ["identified_export"]  # committed before a byte was written
    started = before["identified_export"]
    assert started.details["file"] == str(out.absolute()) and started.details["rows"] == 6
    assert started.details["reason"] == "linkage with registry" and started.actor.startswith("cli:")
    events = _export_events(session)
    written = events["identified_export_written"]
    assert written.details["export_id"] == started.id and written.actor == started.actor
    assert written.details["file"] == str(out.absolute()) and written.details["rows"] == 6
    assert written.details["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    codebook = tmp_path / "identified.codebook.csv"
    assert written.details["codebook_sha256"] == hashlib.sha256(codebook.read_bytes()).hexdigest()
    for path in (out, codebook):  # readable by their owner only
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("test.db")) == [
        "identified.codebook.csv", "identified.csv"]  # no staging folder left behind


@pytest.mark.parametrize("how", ["folder is a file", "disk full"])
def test_an_identified_export_that_cannot_be_written_is_audited_as_failed(filled, run_cli, tmp_path, session,
                                                                          monkeypatch, how):
    import analysis.export

    if how == "folder is a file":
        (tmp_path / "not-a-folder").write_text("x")
        out = tmp_path / "not-a-folder" / "identified.csv"
    else:
        out = tmp_path / "identified.csv"

        def full(df, path, fmt, **kwargs):
            path.write_text("half a file")
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(analysis.export, "write", full)
    result = run_cli("export", "--out", str(out), "--identified", "--reason", "linkage", extra_env={"EXPORT_KEY": KEY})
    assert result.exit_code == 1
    assert "the identified export could not be written" in result.output
    events = _export_events(session)
    assert list(events) == ["identified_export", "identified_export_failed"]
    failed = events["identified_export_failed"]
    assert failed.details["export_id"] == events["identified_export"].id
    assert failed.details["file"] == str(out.absolute()) and failed.details["error"]
    assert not out.exists() and not out.with_name("identified.codebook.csv").exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(("test.db", "not-a-folder"))] == []


def test_the_export_header_is_the_same_with_no_rows(filled, sessions, run_cli, tmp_path):
    """A time point without follow-ups gives the same columns (covariates included), not a shorter header."""
    from outreach.models import Episode, Patient

    with unit_of_work(sessions) as s:
        for p in s.scalars(select(Patient)):
            p.age, p.sex = 40, "F"
        for e in s.scalars(select(Episode)):
            e.program = "residential"
    for extra in ([], ["--identified", "--reason", "linkage"]):
        full, none = tmp_path / "all.csv", tmp_path / "none.csv"
        assert run_cli("export", "--out", str(full), *extra, extra_env={"EXPORT_KEY": KEY}).exit_code == 0
        result = run_cli("export", "--out", str(none), "--timepoint", "180", *extra, extra_env={"EXPORT_KEY": KEY})
        assert result.exit_code == 0 and "wrote 0 rows" in result.output
        header = full.read_text().splitlines()[0]
        assert none.read_text().splitlines() == [header]
        assert header.endswith("days_used,withdrawn,withdrawn_days,age,sex,program")
        book = pd.read_csv(tmp_path / "none.codebook.csv")
        assert book[book["type"] != "note"]["variable"].tolist() == header.split(",")


def test_a_rating_with_unanswered_statements_and_a_withdrawal_come_through_as_stored(make_patient, make_followup,
                                                                                      sessions, engine):
    """The stored rating (JSON) and the dates (text on SQLite, date objects on PostgreSQL) as the export shows them:
    an unanswered statement and a subscale without a score stay missing, the days to a withdrawal count from the
    discharge, and each of a stay's follow-ups carries the stay's rating."""
    from outreach.models import AllianceRating, Patient

    w = make_patient(patient_id="W", discharge_date=dt.date(2026, 10, 1))
    q = make_patient(patient_id="Q", discharge_date=dt.date(2026, 9, 1), mean=4.0)
    for patient, point in ((w, 30), (w, 90), (q, 30)):
        make_followup(patient, timepoint=point)
    with unit_of_work(sessions) as s:
        rating = s.scalars(select(AllianceRating).where(AllianceRating.episode_id == w.episode_id)).one()
        rating.items, rating.mean_score = [6, None, 5, None, 4, 6], 5.25
        rating.subscale_scores = {"bond": 4.5, "goal_task": None}
        s.get(Patient, w.id).withdrawn_at = dt.datetime(2026, 10, 11, 23, 59, 59, 999999)
    df = linked_dataset(engine, KEY.encode())
    pseudo = {pid: hmac.new(KEY.encode(), pid.encode(), hashlib.sha256).hexdigest()[:16] for pid in "WQ"}
    rows = {(r["participant"], r["timepoint_days"]): r for r in df.astype(object).where(df.notna(), None)
            .to_dict("records")}
    items = [f"alliance_{i}" for i in range(1, 7)]
    for point in (30, 90):
        row = rows[(pseudo["W"], point)]
        assert [row[c] for c in items] == [6, None, 5, None, 4, 6]
        assert (row["alliance_mean"], row["alliance_bond"], row["alliance_goal_task"]) == (5.25, 4.5, None)
        assert (row["withdrawn"], row["withdrawn_days"]) == (1, 10)
    row = rows[(pseudo["Q"], 30)]
    assert [row[c] for c in items] == [5] * 6 and row["alliance_bond"] == 4.0
    assert (row["withdrawn"], row["withdrawn_days"]) == (0, None)


def _awkward_frame() -> pd.DataFrame:
    import numpy as np

    text = ["plain", "a,b", 'say "hi"', "two\nlines", "cr\ronly", "", None, "é 中", "=1+2", "-3"]
    floats = [0.1, 5.0, 1e16, 1e-05, -0.0, 5.333333333333333, np.nan, 1e22, 123456789.125, 2.5]
    return pd.DataFrame({
        "str": pd.Series(text, dtype="str"), "string": pd.Series(text, dtype="string"),
        "object": pd.Series(text, dtype=object), "int": range(10),
        "Int64": pd.array([1, None, -3, 0, 2**40, 5, 6, None, 8, 9], dtype="Int64"),
        "Int8": pd.array([1, 0, None] * 3 + [1], dtype="Int8"),
        "float": floats, "Float64": pd.array(floats, dtype="Float64"),
        "bool": [True, False] * 5, "boolean": pd.array([True, None, False] * 3 + [True], dtype="boolean"),
        "tertile": pd.Categorical(["low", "mid", None, "high", "a,b"] * 2, categories=["low", "mid", "high", "a,b"],
                                  ordered=True),
        'a "quoted", header': 1,
    })


def test_the_csv_export_holds_what_pandas_writes_byte_for_byte(tmp_path):
    """Every kind of cell the export writes (text needing quotes, line breaks, formulas, missing values in each
    dtype, floats from 1e-05 to 1e22, categories), as ``DataFrame.to_csv`` writes it after the formula guard."""
    from analysis.export import to_csv, write
    from outreach.csvsafe import safe_frame

    df = _awkward_frame()
    write(df, tmp_path / "x.csv", "csv")
    assert (tmp_path / "x.csv").read_bytes() == safe_frame(df).to_csv(index=False).encode("utf-8")
    assert "'=1+2" in (tmp_path / "x.csv").read_text(encoding="utf-8")  # the formula guard still applies
    # Frames it leaves to pandas: a date column, a single column, an object column holding numbers, 32-bit floats.
    for other in (df.assign(when=pd.Timestamp("2026-01-02 03:04:05")), df[["str"]],
                  df.assign(mixed=pd.Series([1, "a"] * 5, dtype=object)), df.assign(f32=df["float"].astype("float32")),
                  df.iloc[:0]):
        to_csv(other, tmp_path / "y.csv")
        assert (tmp_path / "y.csv").read_bytes() == other.to_csv(index=False).encode("utf-8")


def test_an_export_where_no_rating_has_subscale_scores_has_them_missing(filled, sessions, run_cli, tmp_path):
    """A study whose ratings all came without subscale scores (a mean only) still exports, the two subscale
    columns empty; it failed with "data type 'Float64' not understood"."""
    from outreach.models import AllianceRating

    with unit_of_work(sessions) as s:
        for r in s.scalars(select(AllianceRating)):
            r.subscale_scores = None
    out = tmp_path / "r.csv"
    result = run_cli("export", "--out", str(out), extra_env={"EXPORT_KEY": KEY})
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out)
    assert len(df) == 6 and df["alliance_bond"].isna().all() and df["alliance_goal_task"].isna().all()
    assert df["alliance_mean"].notna().all()


@pytest.mark.parametrize("ext", ["dta", "sav"])
def test_a_time_point_without_follow_ups_exports_to_stata_and_spss(filled, run_cli, tmp_path, ext):
    """No rows: the file holds the header's variables with the contract's types (a Stata export failed with
    "A provided value was incompatible with the variable's declared type")."""
    import pyreadstat

    out = tmp_path / f"none.{ext}"
    result = run_cli("export", "--out", str(out), "--timepoint", "180", extra_env={"EXPORT_KEY": KEY})
    assert result.exit_code == 0 and "wrote 0 rows" in result.output, result.output
    data, meta = (pyreadstat.read_dta if ext == "dta" else pyreadstat.read_sav)(str(out))
    assert len(data) == 0 and list(data.columns) == CONTRACT
    assert meta.readstat_variable_types["responded"] == "double" and meta.variable_value_labels["responded"]


def test_the_dataset_is_one_snapshot_of_the_database_whatever_is_written_while_it_is_read(filled, monkeypatch):
    """Writes committed between two of the dataset's queries (the webhook storing answers, a withdrawal, a rating
    corrected) show in none of them: the queries read one state of the database."""
    from sqlalchemy import update

    from analysis import queries
    from outreach.models import AllianceRating, Answer, Patient

    before = linked_dataset(filled, KEY.encode())
    real, written = queries._frame, []

    def frame_then_write(bind, stmt):
        out = real(bind, stmt)
        if not written:  # after the first query (the follow-ups): every table the later queries read
            with filled.begin() as conn:
                conn.execute(update(Patient).values(withdrawn_at=dt.datetime(2026, 11, 2)))
                conn.execute(update(AllianceRating).values(mean_score=1.0))
                conn.execute(update(Answer).values(value=0))
                conn.execute(update(Message).values(provider_sid=None))
                conn.execute(update(FollowUp).values(state="expired"))
            written.append(True)
        return out

    monkeypatch.setattr(queries, "_frame", frame_then_write)
    during = linked_dataset(filled, KEY.encode())
    monkeypatch.setattr(queries, "_frame", real)
    assert written
    pd.testing.assert_frame_equal(during, before)
    after = linked_dataset(filled, KEY.encode())  # the writes did change what the dataset shows
    assert after["withdrawn"].eq(1).all() and after["contact_attempts"].eq(0).all()
    assert not after["alliance_mean"].equals(before["alliance_mean"])
