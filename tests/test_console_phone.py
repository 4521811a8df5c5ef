"""Issue 23: the console on a phone, where an on-call coordinator opens it.  At 390 CSS pixels wide (an iPhone
12-15) every navigation link and the sign-out button can be reached without scrolling sideways, and the alert
queue, a patient's page and the inbox fit the screen and pass axe (Debian's Chromium, both databases)."""
from __future__ import annotations

import re

import pytest

from .test_console_browser import CHROMIUM, chromium, live, phone_of, sign_in  # noqa: F401 - fixtures

if CHROMIUM is None:
    pytestmark = pytest.mark.skip(reason="Debian's chromium is not installed (.ci/run installs it)")

PHONE = {"width": 390, "height": 844}


def test_the_console_works_at_a_phones_width(live, chromium, phone_of, make_user, make_patient, make_followup):
    from axe_playwright_python.sync_playwright import Axe

    base, _ = live
    make_user("oncall@study.example.org", "admin")  # the admin sees the longest navigation
    patient = make_patient(patient_id="PHONE-1")
    make_followup(patient, state="q_self_efficacy")
    phone_of.text(patient.phone, "I want to end my life")
    phone_of.text(patient.phone, "is anyone reading this")
    context = chromium.new_context(viewport=PHONE, is_mobile=True, has_touch=True, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        sign_in(page, base, "oncall@study.example.org")
        page.wait_for_url(re.compile(r"/console/$"))
        links = page.locator("header nav a")
        assert links.count() >= 10
        for i in range(links.count()):  # every link inside the screen's width, none hidden off to the right
            box = links.nth(i).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 1, \
                links.nth(i).inner_text()
        sign_out = page.get_by_role("button", name=re.compile("Sign out"))
        box = sign_out.bounding_box()
        assert box["x"] + box["width"] <= PHONE["width"] + 1
        axe, problems = Axe(), {}
        for path in ("/console/alerts", f"/console/patients/{patient.id}", "/console/inbox"):
            page.goto(base + path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"] + 1, (path, width)  # no sideways scrolling of the whole page
            serious = [f"{v['id']}: {v['help']}" for v in axe.run(page).response["violations"]
                       if v["impact"] in ("serious", "critical")]
            if serious:
                problems[path] = serious
        assert problems == {}
        page.goto(base + "/console/alerts")
        card = page.locator("article.alert-card").first
        assert "is anyone reading this" in card.inner_text()  # the text after the alert, on its card
        page.get_by_label("Resolution note (required)").first.fill("Called her, she is safe with her sister")
        page.get_by_role("button", name="Resolve").first.click()
        page.wait_for_selector("#no-alerts")
    finally:
        context.close()
