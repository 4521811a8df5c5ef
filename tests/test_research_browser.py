"""The researchers' side of the console in a real browser (issue 22): run an export and open the downloaded zip with
pandas, generate the report and see its figures, make a token and pull the export with pandas as the docs show;
axe-core finds no serious or critical violation on these pages; nothing a researcher's browser receives holds a
phone number, a study id, a message or a small count.  Playwright drives Debian's Chromium against the real app on a
loopback port, with the worker's job thread running the jobs, on SQLite and PostgreSQL."""
from __future__ import annotations

import io
import re
import zipfile

import pandas as pd
import pytest
from sqlalchemy import select

from analysis.dataset import CONTRACT
from outreach.config import load_settings
from outreach.models import AuditEvent

from .test_console_browser import CHROMIUM, chromium, live, page, sign_in  # noqa: F401 - fixtures by import
from .test_console_exports import assert_nothing_identifying, console_env, study  # noqa: F401

if CHROMIUM is None:
    pytestmark = pytest.mark.skip(reason="Debian's chromium is not installed (.ci/run installs it)")


@pytest.fixture
def worker(live, sessions):
    """The worker's job thread, as ``outreach worker`` runs it beside the sender."""
    from outreach.jobs.queue import JobRunner

    _, env = live
    runner = JobRunner(sessions, load_settings(env), "browser-test-worker").start()
    yield runner
    runner.stop(timeout=30)


@pytest.fixture
def people(make_patient, make_followup, twilio):
    return study(make_patient, make_followup, twilio, n=14, answering=10)


def _events(session, action):
    session.rollback()
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def _wait_done(page, timeout=60_000):
    """The job's page updates by itself (no reload) until it says it is done."""
    page.wait_for_selector("#job-summary, #job-error", timeout=timeout)
    assert page.locator("#job-error").count() == 0, page.locator("#job-error").inner_text()


def test_a_researcher_runs_an_export_and_opens_the_zip_with_pandas(live, page, worker, people, make_user, session,
                                                                   tmp_path):
    base, _ = live
    make_user("res@study.example.org", "researcher")
    sign_in(page, base, "res@study.example.org")
    page.get_by_role("link", name="Exports").click()
    page.get_by_label("Parquet").check()
    page.get_by_label("Time point").select_option("30")
    page.get_by_role("button", name="Export").click()
    page.wait_for_url(re.compile(r"/console/jobs/\d+$"))
    _wait_done(page)
    assert_nothing_identifying(page.content(), people, "job page")
    with page.expect_download() as info:
        page.get_by_role("link", name=re.compile("Download zip")).click()
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    with zipfile.ZipFile(saved) as bundle:
        data = next(n for n in bundle.namelist() if n.endswith(".parquet"))
        df = pd.read_parquet(io.BytesIO(bundle.read(data)))
        codebook = pd.read_csv(io.BytesIO(bundle.read(data.replace(".parquet", ".codebook.csv"))))
    assert list(df.columns) == CONTRACT and len(df) == 14 and set(df["timepoint_days"]) == {30}
    assert set(codebook["variable"]) >= set(CONTRACT)
    [downloaded] = _events(session, "job_file_downloaded")
    assert downloaded.actor == "res@study.example.org"
    page.get_by_role("link", name="the exports").click()
    history = page.locator("#export-history").inner_text()
    assert "res@study.example.org" in history and "Parquet" in history and downloaded.details["sha256"] in history


def test_a_researcher_generates_the_report_and_sees_its_figures(live, page, worker, people, make_user, session,
                                                                tmp_path):
    base, _ = live
    make_user("res@study.example.org", "researcher")
    sign_in(page, base, "res@study.example.org")
    page.get_by_role("link", name="Report").click()
    page.get_by_role("button", name="Generate the report").click()
    page.wait_for_url(re.compile(r"/console/jobs/\d+$"))
    _wait_done(page, timeout=120_000)
    page.get_by_role("link", name="Read the report in the console").click()
    about = page.locator("#report-about").inner_text()
    assert "Generated" in about and "from 14 participants" in about
    figures = page.locator("#report-body figure img")
    assert figures.count() >= 1
    for i in range(figures.count()):  # drawn: the page's policy lets its embedded figures in
        img = figures.nth(i)
        assert img.evaluate("el => el.complete && el.naturalWidth > 0"), i
        assert img.get_attribute("alt")
    assert_nothing_identifying(page.content(), people, "report page")
    with page.expect_download() as info:
        page.locator("#report-zip").click()
    saved = tmp_path / "report.zip"
    info.value.save_as(saved)
    with zipfile.ZipFile(saved) as bundle:
        assert "report/report.html" in bundle.namelist()
    assert len(_events(session, "report_downloaded")) == 1


def test_a_token_made_in_the_console_pulls_the_export_with_pandas(live, page, people, make_user, session):
    base, _ = live
    make_user("res@study.example.org", "researcher")
    sign_in(page, base, "res@study.example.org")
    page.get_by_role("link", name="Exports").click()
    page.get_by_role("link", name=re.compile("personal access token")).click()
    page.get_by_label(re.compile("^Name")).fill("laptop pandas")
    page.get_by_role("button", name="Make a token").click()
    token = page.get_by_label("Token", exact=True).input_value()
    assert_nothing_identifying(page.content(), people, "tokens page")
    # the docs' three lines
    df = pd.read_csv(f"{base}/api/v1/export?format=csv&timepoint=30",
                     storage_options={"Authorization": f"Bearer {token}"})
    assert list(df.columns) == CONTRACT and len(df) == 14
    assert len(_events(session, "api_export_downloaded")) == 1
    page.goto(f"{base}/console/tokens")
    assert "laptop pandas" in page.content() and token not in page.content()
    page.get_by_role("button", name="Revoke the token laptop pandas").click()
    assert "is revoked" in page.content()
    with pytest.raises(Exception, match="401"):
        pd.read_csv(f"{base}/api/v1/export?format=csv", storage_options={"Authorization": f"Bearer {token}"})


def test_the_research_pages_pass_axe_and_hold_nothing_identifying(live, chromium, worker, people, make_user):
    from axe_playwright_python.sync_playwright import Axe

    base, _ = live
    make_user("res@study.example.org", "researcher")
    make_user("adm@study.example.org", "admin")
    context = chromium.new_context(bypass_csp=True)  # lets axe's script in; the pages themselves are unchanged
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    axe, problems = Axe(), {}

    def check(path_or_none, label):
        if path_or_none:
            pg.goto(base + path_or_none)
        violations = axe.run(pg).response["violations"]
        serious = [f"{v['id']}: {v['help']}" for v in violations if v["impact"] in ("serious", "critical")]
        if serious:
            problems[label] = serious

    try:
        sign_in(pg, base, "res@study.example.org")
        pg.wait_for_url(re.compile(r"/console/$"))
        pg.goto(f"{base}/console/exports")
        pg.get_by_role("button", name="Export").click()
        pg.wait_for_url(re.compile(r"/console/jobs/\d+$"))
        _wait_done(pg)
        check(None, "export job")
        assert_nothing_identifying(pg.content(), people, "export job")
        pg.goto(f"{base}/console/report")
        pg.get_by_role("button", name="Generate the report").click()
        _wait_done(pg, timeout=120_000)
        check(None, "report job")
        for path in ("/console/exports", "/console/report", "/console/tokens"):
            check(path, path)
            assert_nothing_identifying(pg.content(), people, path)
        pg.get_by_label(re.compile("^Name")).fill("axe")
        pg.get_by_role("button", name="Make a token").click()
        check(None, "a new token")
        pg.goto(f"{base}/console/tokens")
        check(None, "tokens listed")
        pg.goto(f"{base}/console/exports")
        pg.get_by_role("button", name=re.compile("Sign out")).click()
        sign_in(pg, base, "adm@study.example.org")
        pg.wait_for_url(re.compile(r"/console/$"))
        pg.goto(f"{base}/console/exports")
        pg.locator("#identified-part summary").click()
        assert pg.get_by_label(re.compile("^Why identifiers are needed")).is_visible()
        check(None, "exports as an admin, identified part open")
        assert problems == {}
    finally:
        context.close()
