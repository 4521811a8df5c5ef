"""A coordinator's routine in a real browser (Debian's Chromium, on SQLite and PostgreSQL): upload a discharge
file with errors and read them, fix it and import it, plan and launch a wave, watch the simulator send its
invitations, pause and cancel it.  The jobs run in the worker's own job thread (``JobRunner``) beside the live
app, as in production; axe-core checks the new pages."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import func, select

from outreach.config import load_settings
from outreach.db import unit_of_work
from outreach.jobs.queue import JobRunner
from outreach.messaging.gateway import SimulatorGateway
from outreach.messaging.sender import Sender
from outreach.models import Episode, Patient

from .test_console_browser import CHROMIUM, chromium, live, page, sign_in  # noqa: F401 - fixtures

if CHROMIUM is None:
    pytestmark = pytest.mark.skip(reason="Debian's chromium is not installed (.ci/run installs it)")

HEADER = "patient_id,phone,discharge_date,sms_consent,alliance_1,alliance_2,alliance_3,alliance_4,alliance_5,alliance_6"


@pytest.fixture
def worker_jobs(live, sessions):
    """The worker's job thread, running the console's jobs against the live app's database."""
    _, env = live
    runner = JobRunner(sessions, load_settings(env), "browser-worker").start()
    yield runner
    runner.stop(timeout=30)


def _discharged(days_ago: int) -> str:
    return (dt.date.today() - dt.timedelta(days=days_ago)).isoformat()


def test_a_coordinator_imports_a_file_then_launches_watches_pauses_and_cancels_a_wave(
        live, page, make_user, worker_jobs, sessions, tmp_path):
    base, env = live
    make_user("coord@study.example.org", "coordinator")
    sign_in(page, base, "coord@study.example.org")
    page.get_by_role("link", name="Imports").click()

    rows = [f"C{i},416-555-01{i:02d},{_discharged(31 + i % 5)},yes,5,6,5,6,4,6" for i in range(12)]
    broken = rows[:5] + ["C90,555-12,2026-02-30,yes,5,6,5,6,4,6"] + rows[5:]
    bad = tmp_path / "april.csv"
    bad.write_text("\n".join([HEADER, *broken]) + "\n")
    page.get_by_label("Discharge file").set_input_files(str(bad))
    page.get_by_role("button", name="Upload and check").click()
    page.wait_for_url(re.compile(r"/console/jobs/\d+$"))
    page.locator("#import-errors").wait_for(timeout=20_000)  # the page updated itself when the check ended
    table = page.locator("#import-errors").inner_text()
    assert re.search(r"7\s+phone", table) and re.search(r"7\s+discharge_date", table)  # line 7 of the file
    assert page.get_by_role("button", name="Import only the 12 valid rows").is_visible()
    assert page.get_by_role("button", name=re.compile("Import all")).count() == 0

    fixed = tmp_path / "april-fixed.csv"  # the coordinator fixes the file and uploads it again
    fixed.write_text("\n".join([HEADER, *rows]) + "\n")
    page.get_by_role("link", name="Imports").click()
    page.get_by_label("Discharge file").set_input_files(str(fixed))
    page.get_by_role("button", name="Upload and check").click()
    page.get_by_role("button", name="Import all 12 rows").click(timeout=20_000)
    page.locator("#job-summary").wait_for(timeout=20_000)
    assert "imported 12 new patients, 12 new episodes, updated 0, unchanged 0, rejected 0" in \
        page.locator("#job-summary").inner_text()
    page.get_by_role("link", name="Imports").click()
    history = page.locator("#import-history").inner_text()
    assert "april-fixed.csv" in history and "april.csv" in history and "coord@study.example.org" in history

    page.get_by_role("link", name="Waves").click()
    page.get_by_label("Time point (days after discharge)").select_option("30")
    page.get_by_role("button", name="Plan").click()
    assert "12 eligible at 30 days" in page.locator("#plan").inner_text()
    page.get_by_label(re.compile("Type 12 to confirm")).fill("12")
    page.get_by_role("button", name="Launch the wave").click()
    page.locator("#job-summary").wait_for(timeout=20_000)
    assert "12 invitation(s) queued" in page.locator("#job-summary").inner_text()
    page.get_by_role("link", name=re.compile(r"Wave \d+: its texts")).click()
    assert "Waiting to go now: 12" in page.locator("#wave-texts").inner_text() or \
        "Held for quiet hours" in page.locator("#wave-texts").inner_text()

    send = load_settings({**env, "SMS_BACKEND": "simulator", "SEND_WINDOW": "Mon-Sun 00:00-24:00",
                          "SEND_RATE_PER_SECOND": "0"})
    sender = Sender(sessions, send, SimulatorGateway(echo=lambda line: None))
    sender.send_due(max_batches=1)  # the worker's simulator sends them
    page.locator("#wave-texts", has_text="Sent: 12").wait_for()  # the page refreshed its funnel by itself
    assert page.locator("#wave-live table tbody").inner_text().split()[:2] == ["12", "12"]  # targeted, sent

    page.get_by_role("button", name=re.compile(r"Pause wave")).click()
    assert page.locator("#wave-state").inner_text().startswith("paused since")
    page.get_by_role("button", name=re.compile(r"Resume wave")).click()
    assert not page.locator("#wave-state").inner_text().startswith("paused")
    page.get_by_label(re.compile("Type the wave's number")).fill("999")
    page.get_by_role("button", name=re.compile("Cancel wave")).click()
    assert "was not cancelled: type its number" in page.locator("main").inner_text()
    number = re.search(r"Wave (\d+):", page.locator("h1").inner_text()).group(1)
    page.get_by_label(re.compile("Type the wave's number")).fill(number)
    page.get_by_role("button", name=re.compile("Cancel wave")).click()
    assert "is cancelled" in page.locator("main").inner_text()
    assert page.locator("#wave-state").inner_text().startswith("cancelled")
    with unit_of_work(sessions) as s:
        assert s.scalar(select(func.count()).select_from(Episode)) == 12
        assert s.scalar(select(func.count()).select_from(Patient).where(Patient.patient_id == "C90")) == 0


def test_the_coordinators_new_pages_pass_axe(live, chromium, make_user, worker_jobs, tmp_path):  # noqa: F811
    from axe_playwright_python.sync_playwright import Axe

    base, _ = live
    make_user("a11y-imports@study.example.org", "coordinator")
    context = chromium.new_context(bypass_csp=True)  # lets axe's script in; the pages themselves are unchanged
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    try:
        sign_in(pg, base, "a11y-imports@study.example.org")
        pg.wait_for_url(re.compile(r"/console/$"))
        bad = tmp_path / "bad.csv"
        bad.write_text("\n".join([HEADER, f"A1,416-555-0101,{_discharged(40)},yes,5,6,5,6,4,6",
                                  "A2,555-12,2026-02-30,maybe,7,6,5,6,4,6"]) + "\n")
        pg.goto(f"{base}/console/imports")
        pg.get_by_label("Discharge file").set_input_files(str(bad))
        pg.get_by_role("button", name="Upload and check").click()
        pg.locator("#import-errors").wait_for()
        job_page = pg.url
        axe, problems = Axe(), {}
        for path in ["/console/imports", job_page.replace(base, ""), "/console/waves?timepoint=30&limit=5"]:
            pg.goto(base + path)
            serious = [f"{v['id']}: {v['help']}" for v in axe.run(pg).response["violations"]
                       if v["impact"] in ("serious", "critical")]
            if serious:
                problems[path] = serious
        assert problems == {}
    finally:
        context.close()
