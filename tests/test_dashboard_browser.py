"""The study dashboard in a real browser (Playwright, Debian's Chromium) as each role, on SQLite and PostgreSQL:
reached from the navigation, its tables and charts read as a person (and a screen reader) would, nothing fetched
from anywhere but the console, and axe-core finding no serious or critical violation."""
from __future__ import annotations

import datetime as dt
import re

import pytest

from benchmarks.dashboard_bench import seed
from outreach.db import unit_of_work
from outreach.models import Wave

from .test_console_browser import CHROMIUM, chromium, live, page, sign_in  # noqa: F401 (fixtures)
from .test_dashboard import STUDY, expected

if CHROMIUM is None:
    pytestmark = pytest.mark.skip(reason="Debian's chromium is not installed (.ci/run installs it)")


@pytest.fixture
def study(engine, sessions):
    seed(engine, STUDY)
    with unit_of_work(sessions) as s:
        s.add(Wave(timepoint_days=30, as_of=dt.date(2026, 7, 1), created_by="coord@study.example.org"))


@pytest.mark.parametrize("role", ["researcher", "coordinator", "admin"])
def test_each_role_walks_to_the_dashboard_and_reads_it(live, page, make_user, study, role):  # noqa: F811
    base, _ = live
    make_user(f"{role}@study.example.org", role)
    outside = []
    page.on("request", lambda r: None if r.url.startswith(base) else outside.append(r.url))
    sign_in(page, base, f"{role}@study.example.org")
    page.wait_for_url(re.compile(r"/console/$"))
    page.get_by_role("link", name="Dashboard", exact=True).click()
    page.wait_for_url(re.compile(r"/console/dashboard$"))
    assert page.get_by_role("heading", level=1).inner_text() == "Study dashboard"
    assert page.get_by_role("link", name="Study progress").count() == 0

    table = page.locator("#funnel-table")
    row = table.locator("tr", has=page.locator("th", has_text="30 days"))
    cells = row.locator("td").all_inner_texts()
    want = expected(STUDY)[30]
    if role == "researcher":
        assert "<5" in cells  # 2 partial conversations still open, 1 declined, ... are not shown as such
        assert all(c in ("<5", "x", "0") or int(c) >= 5 for c in cells), cells
        assert page.locator("a[href*='/console/waves/']").count() == 0
    else:
        assert cells[0] == str(want["targeted"]) and cells[-1] == str(want["open"])
        page.get_by_role("link", name="1", exact=True).click()  # the wave, from the waves table
        page.wait_for_url(re.compile(r"/console/waves/1$"))
        page.go_back()

    for name in ("Contact funnel per time point", "Response rate per time point", "Time from invitation to first"):
        chart = page.get_by_role("img", name=re.compile(name))
        assert chart.count() == 1 and chart.is_visible()
        assert chart.get_attribute("aria-labelledby").endswith("-desc")  # the title, then every number in words
    funnel = page.locator("#funnel-chart-desc").text_content()
    assert funnel.startswith(f"At 30 days: targeted {want['targeted']}")
    results = page.locator("#results")
    if role == "coordinator":
        assert results.count() == 0
    else:
        assert "No report has been generated in the console yet" in results.inner_text()
    assert outside == []  # nothing fetched from the internet (or anywhere but the console)


def test_the_dashboard_passes_axe_for_every_role(live, chromium, make_user, study):  # noqa: F811
    from axe_playwright_python.sync_playwright import Axe

    base, _ = live
    problems = {}
    for role in ("researcher", "coordinator", "admin"):
        make_user(f"a11y-{role}@study.example.org", role)
        context = chromium.new_context(bypass_csp=True)  # lets axe's script in; the page itself is unchanged
        pg = context.new_page()
        try:
            sign_in(pg, base, f"a11y-{role}@study.example.org")
            pg.wait_for_url(re.compile(r"/console/$"))
            for path in ("/console/dashboard", "/console/"):
                pg.goto(base + path)
                violations = Axe().run(pg).response["violations"]
                serious = [f"{v['id']}: {v['help']}" for v in violations if v["impact"] in ("serious", "critical")]
                if serious:
                    problems[(role, path)] = serious
        finally:
            context.close()
    assert problems == {}
