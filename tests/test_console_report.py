"""The report in the console (issue 22): generated as a job by the functions ``outreach report`` calls, read inside
the console with its figures, downloaded as a zip (audited), saying when it was generated and from how many
participants, that number suppressed like any count.  On both databases."""
from __future__ import annotations

import io
import re
import zipfile

import pytest
from sqlalchemy import select

from outreach.db import unit_of_work
from outreach.jobs.queue import jobs_dir, run_pending
from outreach.jobs.reports import ReportRequestError, participants_text, report_body, report_view, start_report
from outreach.models import AuditEvent, Job
from outreach.states import JobState

from .test_console_exports import (assert_nothing_identifying, console_env, research_settings,  # noqa: F401
                                   secrets_of, small_study, study)


@pytest.fixture
def big_study(make_patient, make_followup, twilio):
    return study(make_patient, make_followup, twilio)


def _generate(sessions, settings, timepoint=None, owner="res@study.example.org") -> int:
    with unit_of_work(sessions) as s:
        job_id = start_report(s, settings, timepoint=timepoint, owner=owner, owner_role="researcher",
                              address="127.0.0.1").id
    assert run_pending(sessions, settings, "test-worker") == 1
    return job_id


def test_participants_are_said_suppressed():
    assert participants_text(120) == "from 120 participants"
    assert participants_text("<5") == "from <5 participants"
    assert "hidden" in participants_text("x")
    assert participants_text(0) == "from no participants yet"


def test_a_report_for_an_unknown_time_point_is_refused_in_words(sessions, research_settings):
    with unit_of_work(sessions) as s, pytest.raises(ReportRequestError, match="time points"):
        start_report(s, research_settings, timepoint="45", owner="r", owner_role="researcher", address=None)


def test_report_body_sits_under_the_pages_heading():
    html = "<html><head><style>x</style></head><body><h1>T</h1><p>a</p><h3>b</h3></body></html>"
    assert report_body(html) == "<h2>T</h2><p>a</p><h4>b</h4>"


def test_the_report_job_writes_the_clis_report_and_its_zip(big_study, sessions, research_settings, session):
    job_id = _generate(sessions, research_settings)
    session.rollback()
    job = session.get(Job, job_id)
    assert job.state == JobState.DONE, job.error
    result = job.result
    assert result["participants"] == 12 and "from 12 participants" in result["summary"]
    assert result["figures"] and result["files"] == {"report.zip": "report.zip"}
    folder = jobs_dir(research_settings) / str(job_id)
    names = zipfile.ZipFile(folder / "report.zip").namelist()
    assert {"report/report.html", "report/report.md", "report/stats.json"} <= set(names)
    assert {f"report/{f}" for f in result["figures"]} <= set(names)
    view = report_view(session, research_settings)
    assert view.job.id == job_id and view.participants == "from 12 participants"
    assert view.body.count("<img src='data:image/png;base64,") == len(result["figures"]) and "<h1" not in view.body


def test_a_small_study_says_its_participants_suppressed(small_study, sessions, research_settings, session):
    job_id = _generate(sessions, research_settings, timepoint="30")
    session.rollback()
    job = session.get(Job, job_id)
    assert job.state == JobState.DONE, job.error
    assert job.result["participants"] in ("<5", "x") and "3 participants" not in job.result["summary"]


def test_a_researcher_generates_reads_and_downloads_the_report(big_study, console_client, sessions,
                                                               research_settings, session):
    client = console_client("researcher", "res@study.example.org")
    empty = client.get("/console/report").get_data(as_text=True)
    assert "No report has been generated" in empty
    answer = client.post("/console/report", data={"csrf_token": client.csrf, "timepoint": ""})
    assert answer.status_code == 302 and re.search(r"/console/jobs/\d+$", answer.headers["Location"])
    run_pending(sessions, research_settings, "test-worker")
    job_page = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Read the report in the console" in job_page
    page = client.get("/console/report").get_data(as_text=True)
    assert "from 12 participants" in page and "Generated" in page
    assert page.count("data:image/png;base64,") >= 1 and "<figcaption>" in page
    assert_nothing_identifying(page, big_study, "report page")
    link = re.search(r'href="(/console/report/\d+/report.zip)"', page).group(1)
    download = client.get(link)
    content = download.data
    download.close()
    assert download.status_code == 200 and "attachment" in download.headers["Content-Disposition"]
    bundle = zipfile.ZipFile(io.BytesIO(content))
    for name in bundle.namelist():
        if name.endswith((".html", ".md", ".json")):
            text = bundle.read(name).decode()
            for secret in secrets_of(big_study):
                assert secret not in text, (name, secret)
    assert_nothing_identifying(bundle.read("report/report.html").decode(), big_study, "report.html")
    session.rollback()
    [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "report_downloaded")).all()
    assert event.actor == "res@study.example.org" and event.details["job_id"]


def test_a_colleagues_report_is_readable_by_every_researcher(big_study, console_client, sessions,
                                                            research_settings):
    job_id = _generate(sessions, research_settings, owner="someone-else@study.example.org")
    client = console_client("researcher")
    page = client.get(f"/console/report/{job_id}")
    assert page.status_code == 200 and "someone-else@study.example.org" in page.get_data(as_text=True)
    download = client.get(f"/console/report/{job_id}/report.zip")
    download.close()
    assert download.status_code == 200
    assert client.get("/console/report/999").status_code == 404


def test_the_small_studys_report_page_holds_no_small_count_and_no_identifier(small_study, console_client, sessions,
                                                                            research_settings):
    _generate(sessions, research_settings)
    client = console_client("researcher")
    page = client.get("/console/report").get_data(as_text=True)
    assert_nothing_identifying(page, small_study, "report page")
    assert "from 3 participants" not in page


def test_a_report_whose_files_were_deleted_says_so(big_study, console_client, sessions, research_settings):
    import datetime as dt

    from outreach.jobs.queue import delete_old_files

    job_id = _generate(sessions, research_settings)
    delete_old_files(sessions, research_settings, now=dt.datetime.now() + dt.timedelta(days=30))
    client = console_client("researcher")
    page = client.get("/console/report").get_data(as_text=True)
    assert "Its files were deleted" in page
    assert client.get(f"/console/report/{job_id}/report.zip").status_code == 404


def test_a_bad_time_point_is_refused_on_the_page(console_client):
    client = console_client("admin")
    answer = client.post("/console/report", data={"csrf_token": client.csrf, "timepoint": "45"})
    assert answer.status_code == 400 and "Choose one of the study" in answer.get_data(as_text=True)


def test_long_analysis_steps_still_report_progress_every_few_seconds(monkeypatch):
    """The analysis has no progress hook: while it runs the job's words say how long it has been at it."""
    import time
    from types import SimpleNamespace

    from outreach.jobs import reports

    assert reports.TICK < 2  # the real cadence, within the 2 s
    monkeypatch.setattr(reports, "TICK", 0.05)
    said = []
    ctx = SimpleNamespace(job_id=1, progress=lambda fraction, message=None: said.append((fraction, message)))
    with reports.Ticker(ctx, 0.3, "computing the statistics"):
        time.sleep(0.3)
    assert said[0] == (0.3, "computing the statistics") and len(said) >= 3
    assert all(f == 0.3 and m.startswith("computing the statistics (") for f, m in said[1:])
