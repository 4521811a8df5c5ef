"""Exports in the console (issue 22): the export job over the CLI's functions (one zip: the data file and its
codebook), identified exports for administrators only with a reason, audited before a byte is written, the export
history, and what a researcher receives (no phone, no study id, no message, no small count).

On both databases, with the real app and the queue run as the worker runs it."""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import re
import stat
import zipfile

import pandas as pd
import pytest
from sqlalchemy import select

from analysis.dataset import CONTRACT
from outreach.config import load_settings
from outreach.db import unit_of_work
from outreach.jobs.exports import (IdentifiedExportFailed, check_request, export_history, shown_count, start_export,
                                   write_identified, ExportRequestError)
from outreach.jobs.queue import jobs_dir, run_pending
from outreach.models import AuditEvent, Job
from outreach.states import JobState

KEY = "export-key-for-tests-0123456789abcdef"
SECRET_BODY = "words only the team should read"
BELOW = 5


@pytest.fixture
def console_env(console_env):
    return {**console_env, "EXPORT_KEY": KEY}


@pytest.fixture
def research_settings(console_env):
    return load_settings(console_env)


@pytest.fixture
def small_study(make_patient, make_followup, twilio):
    """Three patients at 30 days (every count is small): one answers everything, one writes a free text, one is
    silent.  Returns their study ids and phones, which a researcher must never receive."""
    people = [make_patient(patient_id=f"SECRET-{i}", phone=f"+1416555010{i}", discharge_date=dt.date(2026, 10, 1),
                           mean=4.0 + i) for i in range(1, 4)]
    for p in people:
        make_followup(p, timepoint=30)
    for text in ["yes", "9", "very good", "good"]:
        twilio.text(people[0].phone, text)
    twilio.text(people[1].phone, SECRET_BODY)
    return people


def study(make_patient, make_followup, twilio, n: int = 12, answering: int = 9):
    """``n`` patients at 30 days, the first ``answering`` of them answering every question."""
    people = []
    for i in range(n):
        p = make_patient(patient_id=f"STUDY-{i:03d}", phone=f"+1416555{2000 + i:04d}",
                         discharge_date=dt.date(2026, 10, 1), mean=2.5 + (i % 7) * 0.5)
        make_followup(p, timepoint=30)
        people.append(p)
        if i < answering:
            for text in ["yes", str(3 + i % 8), ["poor", "fair", "good", "very good"][i % 4],
                         ["fair", "good", "excellent"][i % 3]]:
                twilio.text(p.phone, text)
    return people


def secrets_of(people) -> list[str]:
    out = [SECRET_BODY]
    for p in people:
        out += [p.patient_id, p.phone, p.phone[2:], p.phone[-4:] + ","]
    return out


COUNT_CELL = re.compile(r"<t[d]\b[^>]*>\s*(\d[\d,]*)\s*</td>|<dd\b[^>]*>\s*(\d[\d,]*)\s*</dd>")
COUNT_WORDS = re.compile(r"\b(\d[\d,]*)\s+(rows?|participants?|people|follow-ups?|patients?|answers?|stays?)\b")


def small_counts(text: str, below: int = BELOW) -> list[str]:
    """Counts from 1 to ``below - 1`` in a page or file: a table cell or definition that is only a number, or a
    number followed by what it counts."""
    found = []
    for match in [*COUNT_CELL.finditer(text), *COUNT_WORDS.finditer(text)]:
        number = next(g for g in match.groups() if g is not None)
        if 0 < int(number.replace(",", "")) < below:
            found.append(text[max(0, match.start() - 60):match.end() + 20])
    return found


def assert_nothing_identifying(text: str, people, where: str = "") -> None:
    for secret in secrets_of(people):
        assert secret not in text, (where, secret)
    assert small_counts(text) == [], where


def _events(session, action: str) -> list[AuditEvent]:
    session.rollback()
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def _job(session, job_id: int) -> Job:
    session.rollback()  # what the worker committed since this session last read
    return session.get(Job, job_id)


def _zip_of(content: bytes) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(content))


# -- the request ----------------------------------------------------------------------------------------------------

def test_an_export_is_checked_in_words_before_it_is_queued(research_settings, console_env):
    assert check_request(research_settings, fmt="sav", timepoint="30", role="researcher") == ("sav", 30, None)
    assert check_request(research_settings, fmt="csv", timepoint="", role="researcher") == ("csv", None, None)
    with pytest.raises(ExportRequestError, match="choose a format"):
        check_request(research_settings, fmt="xlsx", timepoint=None, role="researcher")
    with pytest.raises(ExportRequestError, match="time points"):
        check_request(research_settings, fmt="csv", timepoint="45", role="researcher")
    with pytest.raises(PermissionError):
        check_request(research_settings, fmt="csv", timepoint=None, identified=True, reason="x", role="researcher")
    with pytest.raises(ExportRequestError, match="needs a reason"):
        check_request(research_settings, fmt="csv", timepoint=None, identified=True, reason="  ", role="admin")
    no_key = load_settings({k: v for k, v in console_env.items() if k != "EXPORT_KEY"})
    with pytest.raises(ExportRequestError, match="EXPORT_KEY is not set"):
        check_request(no_key, fmt="csv", timepoint=None, role="researcher")


def test_counts_are_shown_suppressed():
    assert [shown_count(n, 5) for n in (0, 1, 4, 5, 1234)] == ["0", "<5", "<5", "5", "1,234"]


# -- the job --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["csv", "parquet", "dta", "sav"])
def test_the_export_job_writes_the_clis_file_and_codebook_in_one_private_zip(small_study, sessions, research_settings,
                                                                            session, fmt):
    with unit_of_work(sessions) as s:
        job_id = start_export(s, research_settings, fmt=fmt, timepoint="30", owner="res@study.example.org",
                              owner_role="researcher", address="127.0.0.1").id
    assert run_pending(sessions, research_settings, "test-worker") == 1
    job = _job(session, job_id)
    assert job.state == JobState.DONE, job.error
    result = job.result
    assert result["rows"] == 3 and result["rows_shown"] == "<5" and "<5 rows" in result["summary"]
    folder = jobs_dir(research_settings) / str(job_id)
    path = folder / result["files"]["zip"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert result["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [p.name for p in folder.iterdir()] == [path.name]  # no staging folder left
    bundle = _zip_of(path.read_bytes())
    data_name = f"{path.stem}.{fmt}"
    companion = f"{path.stem}.alliance_checkins.{fmt}"  # no check-ins: the file with its columns, as the CLI writes
    assert sorted(bundle.namelist()) == sorted([data_name, f"{path.stem}.codebook.csv", companion,
                                                f"{path.stem}.alliance_checkins.codebook.csv"])
    raw = bundle.read(data_name)
    if fmt == "csv":
        df = pd.read_csv(io.BytesIO(raw))
    elif fmt == "parquet":
        df = pd.read_parquet(io.BytesIO(raw))
    else:
        import pyreadstat

        scratch = folder / f"read.{fmt}"
        scratch.write_bytes(raw)
        df, _ = (pyreadstat.read_dta if fmt == "dta" else pyreadstat.read_sav)(str(scratch))
    assert list(df.columns) == CONTRACT and len(df) == 3 and set(df["timepoint_days"]) == {30}
    for secret in secrets_of(small_study):
        assert secret.encode() not in raw
    codebook = pd.read_csv(io.BytesIO(bundle.read(f"{path.stem}.codebook.csv")))
    assert list(codebook.columns) == ["variable", "label", "type", "codes"]
    [written] = _events(session, "export_written")
    assert written.actor == "res@study.example.org" and written.details["sha256"] == result["sha256"]
    assert written.details["rows"] == 3 and written.details["job_id"] == job_id
    assert written.details["checkin_rows"] == 0 and written.details["companion_sha256"] == hashlib.sha256(
        bundle.read(companion)).hexdigest()


def test_the_export_job_zips_the_check_ins_beside_the_main_file_as_the_cli_writes_them(
        sessions, research_settings, session, run_cli, uow, tmp_path):
    """Issue 26: the console's export carries the companion of check-ins during treatment, the same file (same
    pseudonyms, columns and codebook) as ``outreach export`` writes; an identified export has none."""
    from tests.test_checkins_export import admit_with_checkins

    admit_with_checkins(tmp_path, run_cli, uow, dt.date.today() - dt.timedelta(days=20),
                        {"SECRET-1": "tablet", "SECRET-2": "tablet"}, [(6, [6, 5, 5, 6, 6, 6]), (13, [4] * 6)])
    with unit_of_work(sessions) as s:
        job_id = start_export(s, research_settings, fmt="csv", timepoint=None, owner="res@study.example.org",
                              owner_role="researcher", address="127.0.0.1").id
    assert run_pending(sessions, research_settings, "test-worker") == 1
    job = _job(session, job_id)
    assert job.state == JobState.DONE, job.error
    assert job.result["checkin_rows"] == 4 and "<5 check-in rows" in job.result["summary"]
    path = jobs_dir(research_settings) / str(job_id) / job.result["files"]["zip"]
    bundle = _zip_of(path.read_bytes())
    from_console = pd.read_csv(io.BytesIO(bundle.read(f"{path.stem}.alliance_checkins.csv")))
    assert run_cli("export", "--out", str(tmp_path / "cli.csv"), extra_env={"EXPORT_KEY": KEY}).exit_code == 0
    from_cli = pd.read_csv(tmp_path / "cli.alliance_checkins.csv")
    pd.testing.assert_frame_equal(from_console, from_cli)
    assert bundle.read(f"{path.stem}.alliance_checkins.codebook.csv") == \
        (tmp_path / "cli.alliance_checkins.codebook.csv").read_bytes()
    assert b"SECRET-" not in bundle.read(f"{path.stem}.alliance_checkins.csv")
    with unit_of_work(sessions) as s:
        identified = start_export(s, research_settings, fmt="csv", timepoint=None, identified=True,
                                  reason="a chart review", owner="admin@study.example.org", owner_role="admin",
                                  address="127.0.0.1").id
    assert run_pending(sessions, research_settings, "test-worker") == 1
    job = _job(session, identified)
    assert job.state == JobState.DONE, job.error
    names = _zip_of((jobs_dir(research_settings) / str(identified) / job.result["files"]["zip"]).read_bytes()).namelist()
    assert len(names) == 2 and not any("alliance_checkins" in n for n in names)


def test_an_identified_export_is_audited_before_a_byte_is_written(small_study, sessions, research_settings, session,
                                                                 monkeypatch):
    import analysis.export

    real_write, seen = analysis.export.write, []

    def write_and_look(df, path, fmt, **kwargs):
        seen.append([e.action for e in _events(session, "identified_export")])
        seen.append([e.action for e in _events(session, "identified_export_written")])
        return real_write(df, path, fmt, **kwargs)

    monkeypatch.setattr(analysis.export, "write", write_and_look)
    with unit_of_work(sessions) as s:
        job_id = start_export(s, research_settings, fmt="csv", timepoint=None, identified=True,
                              reason="linkage with the registry", owner="admin@study.example.org", owner_role="admin",
                              address="10.0.0.1").id
    run_pending(sessions, research_settings, "test-worker")
    job = _job(session, job_id)
    assert job.state == JobState.DONE, job.error
    assert seen == [["identified_export"], []]  # committed before writing; the outcome after
    path = jobs_dir(research_settings) / str(job_id) / job.result["files"]["zip"]
    [started] = _events(session, "identified_export")
    assert started.details["reason"] == "linkage with the registry" and started.details["file"] == str(path)
    assert started.details["job_id"] == job_id and started.address == "10.0.0.1"
    [written] = _events(session, "identified_export_written")
    assert written.details["export_id"] == started.id
    assert written.details["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() == job.result["sha256"]
    bundle = _zip_of(path.read_bytes())
    df = pd.read_csv(io.BytesIO(bundle.read(f"{path.stem}.csv")), dtype=str)
    assert set(df["patient_id"]) == {"SECRET-1", "SECRET-2", "SECRET-3"}
    assert written.details["data_sha256"] == hashlib.sha256(bundle.read(f"{path.stem}.csv")).hexdigest()
    assert _events(session, "export_written") == []  # audited as identified, not as an ordinary export


def test_an_identified_export_that_cannot_be_written_fails_in_words_and_is_audited(small_study, sessions,
                                                                                  research_settings, session,
                                                                                  monkeypatch):
    import analysis.export

    def full(df, path, fmt, **kwargs):
        path.write_text("half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(analysis.export, "write", full)
    with unit_of_work(sessions) as s:
        job_id = start_export(s, research_settings, fmt="csv", timepoint=None, identified=True, reason="linkage",
                              owner="admin@study.example.org", owner_role="admin", address=None).id
    run_pending(sessions, research_settings, "test-worker")
    job = _job(session, job_id)
    assert job.state == JobState.FAILED and "could not be written" in job.error and "audit row" in job.error
    [started] = _events(session, "identified_export")
    [failed] = _events(session, "identified_export_failed")
    assert failed.details["export_id"] == started.id and "No space left" in failed.details["error"]
    assert list((jobs_dir(research_settings) / str(job_id)).iterdir()) == []  # nothing left behind


def test_write_identified_raises_with_the_audit_row_that_records_the_attempt(sessions, tmp_path):
    df = pd.DataFrame({"participant": ["a"], "patient_id": ["P1"]})
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(IdentifiedExportFailed) as caught:
        write_identified(sessions, df, tmp_path / "a-file" / "out.csv", "csv", reason="why", timepoint=None,
                         actor="cli:tester", suppress_below=5)
    assert caught.value.export_id and caught.value.summary


def test_a_job_whose_owner_is_no_longer_an_admin_writes_no_identified_file(small_study, sessions, research_settings,
                                                                          session):
    with unit_of_work(sessions) as s:
        job = start_export(s, research_settings, fmt="csv", timepoint=None, identified=True, reason="linkage",
                           owner="admin@study.example.org", owner_role="admin", address=None)
        job.owner_role = "researcher"  # as if forged, or changed between asking and running
        job_id = job.id
    run_pending(sessions, research_settings, "test-worker")
    job = _job(session, job_id)
    assert job.state == JobState.FAILED and "administrators only" in job.error
    assert _events(session, "identified_export") == []


def test_the_history_lists_who_when_format_rows_and_sha_and_hides_identified_exports_from_researchers(
        small_study, sessions, research_settings, session):
    with unit_of_work(sessions) as s:
        start_export(s, research_settings, fmt="parquet", timepoint=None, owner="res@study.example.org",
                     owner_role="researcher", address=None)
        start_export(s, research_settings, fmt="csv", timepoint=None, identified=True, reason="linkage",
                     owner="admin@study.example.org", owner_role="admin", address=None)
    run_pending(sessions, research_settings, "test-worker")
    session.rollback()
    researcher = export_history(session, research_settings, "researcher")
    admin = export_history(session, research_settings, "admin")
    assert [(e.owner, e.format, e.rows, e.identified) for e in researcher] == [
        ("res@study.example.org", "Parquet", "<5", False)]
    assert [e.identified for e in admin] == [True, False]
    assert all(re.fullmatch(r"[0-9a-f]{64}", e.sha256) for e in admin)


# -- the pages ------------------------------------------------------------------------------------------------------

def test_a_researcher_exports_from_the_console_and_downloads_the_zip_audited(small_study, console_client, sessions,
                                                                            research_settings, session):
    client = console_client("researcher", "res@study.example.org")
    page = client.get("/console/exports")
    assert page.status_code == 200 and "Export history" in page.get_data(as_text=True)
    assert "Identified export" not in page.get_data(as_text=True)  # offered to administrators only
    answer = client.post("/console/exports", data={"csrf_token": client.csrf, "format": "csv", "timepoint": "30"})
    assert answer.status_code == 302 and re.search(r"/console/jobs/\d+$", answer.headers["Location"])
    run_pending(sessions, research_settings, "test-worker")
    job_page = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "&lt;5 rows" in job_page and "SHA-256 of the zip" in job_page
    assert_nothing_identifying(job_page, small_study, "job page")
    link = re.search(r'href="(/console/jobs/\d+/files/zip)"', job_page).group(1)
    download = client.get(link)
    content = download.data
    download.close()  # send_file's file
    assert download.status_code == 200 and "attachment" in download.headers["Content-Disposition"]
    bundle = _zip_of(content)
    for name in bundle.namelist():
        inside = bundle.read(name).decode()
        for secret in secrets_of(small_study):
            assert secret not in inside, (name, secret)
    df = pd.read_csv(io.BytesIO(bundle.read(next(n for n in bundle.namelist() if not n.endswith("codebook.csv")))))
    assert list(df.columns) == CONTRACT
    [downloaded] = _events(session, "job_file_downloaded")
    assert downloaded.actor == "res@study.example.org" and downloaded.details["file"] == "zip"
    assert downloaded.details["sha256"] == hashlib.sha256(content).hexdigest()
    history = client.get("/console/exports").get_data(as_text=True)
    assert hashlib.sha256(content).hexdigest() in history and "res@study.example.org" in history
    assert_nothing_identifying(history, small_study, "exports page")


def test_a_researcher_cannot_ask_for_an_identified_export(small_study, console_client, session):
    client = console_client("researcher")
    answer = client.post("/console/exports", data={"csrf_token": client.csrf, "format": "csv", "identified": "1",
                                                   "reason": "curious"})
    assert answer.status_code == 403
    session.rollback()
    assert session.scalars(select(Job)).all() == []


def test_an_admin_needs_a_reason_for_an_identified_export(small_study, console_client, session):
    client = console_client("admin")
    page = client.get("/console/exports").get_data(as_text=True)
    assert "Identified export (administrators only)" in page
    answer = client.post("/console/exports", data={"csrf_token": client.csrf, "format": "csv", "identified": "1",
                                                   "reason": " "})
    assert answer.status_code == 400 and "Say why identifiers are needed" in answer.get_data(as_text=True)
    ok = client.post("/console/exports", data={"csrf_token": client.csrf, "format": "sav", "identified": "1",
                                               "reason": "registry linkage, approved by the ethics board"})
    assert ok.status_code == 302
    session.rollback()
    [job] = session.scalars(select(Job)).all()
    assert job.params["identified"] and job.params["reason"] == "registry linkage, approved by the ethics board"


def test_a_bad_time_point_or_a_missing_key_is_refused_in_words(console_env, console_client, make_user, sessions):
    client = console_client("researcher")
    answer = client.post("/console/exports", data={"csrf_token": client.csrf, "format": "csv", "timepoint": "45"})
    assert answer.status_code == 400 and "Choose one of the study" in answer.get_data(as_text=True)


def test_without_an_export_key_the_page_says_who_sets_it(console_env, make_user):
    from webhooks.app import create_app

    from .conftest import CONSOLE_PASSWORD, csrf_token_of

    app = create_app({k: v for k, v in console_env.items() if k != "EXPORT_KEY"})
    try:
        make_user("nokey@study.example.org", "researcher")
        client = app.test_client()
        token = csrf_token_of(client.get("/console/sign-in").get_data(as_text=True))
        client.post("/console/sign-in", data={"email": "nokey@study.example.org", "password": CONSOLE_PASSWORD,
                                              "csrf_token": token})
        token = csrf_token_of(client.get("/console/exports").get_data(as_text=True))
        answer = client.post("/console/exports", data={"csrf_token": token, "format": "csv"})
        assert answer.status_code == 400 and "EXPORT_KEY is not set" in answer.get_data(as_text=True)
    finally:
        app.extensions["outreach"]["engine"].dispose()


def test_another_researchers_export_file_is_not_served(small_study, console_client, sessions, research_settings):
    first, second = console_client("researcher"), console_client("researcher")
    location = first.post("/console/exports", data={"csrf_token": first.csrf, "format": "csv"}).headers["Location"]
    run_pending(sessions, research_settings, "test-worker")
    assert second.get(f"{location}/files/zip").status_code == 404
    mine = first.get(f"{location}/files/zip")
    mine.close()
    assert mine.status_code == 200


def test_the_scan_finds_a_small_count_where_it_would_be():
    assert small_counts("<td>3</td>") and small_counts("<dd> 1 </dd>") and small_counts("from 2 participants")
    assert small_counts("<td class='n'>4</td>") and small_counts("3 rows")
    assert not small_counts("<td>5</td><td>0</td><td>&lt;5</td> &lt;5 rows, 30 days, job 3, <th>2</th>")
