"""Issue 26, part 5, in a real browser (Debian's Chromium through Playwright, as test_console_browser.py): a tablet
check-in in each language, one statement per screen with 44 x 44 px buttons, a submit whose response is lost and
that the page retries (saved once), the idle lock, axe-core clean, usable at 200% zoom."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import func, select

from outreach.models import AllianceCheckin, CareTeam, CareTeamMember, Episode, User

from .test_console_browser import chromium, live, page, sign_in  # noqa: F401  (the browser fixtures)

ADMITTED = dt.date.today() - dt.timedelta(days=10)


@pytest.fixture
def console_env(web_env):
    return {**web_env, "SECRET_KEY": "console-secret-for-tests", "CONSOLE_INSECURE_COOKIES": "1",
            "KIOSK_IDLE_SECONDS": "10"}


@pytest.fixture
def ward(uow, make_user, make_patient):
    def setup(language):
        make_user("nurse@study.example.org", "clinician")
        p = make_patient(patient_id="KB1", language=language, discharge_date=ADMITTED - dt.timedelta(days=300))
        with uow() as s:
            team = CareTeam(name="Ward A")
            s.add(team)
            s.flush()
            s.add(CareTeamMember(team_id=team.id, user_id=s.scalar(select(User.id).where(User.email == "nurse@study.example.org"))))
            s.add(Episode(patient_id=p.id, admission_date=ADMITTED, care_team_id=team.id, alliance_checkins="tablet"))
        return p

    return setup


def _hand_over(page, base, patient):  # noqa: F811
    sign_in(page, base, "nurse@study.example.org")
    page.wait_for_url(re.compile(r"/console/$"))
    page.goto(f"{base}/console/care/patients/{patient.id}")
    page.get_by_role("button", name=re.compile("Hand over the tablet")).click()
    page.wait_for_url(re.compile(r"/console/kiosk$"))


@pytest.mark.parametrize("language, statement, send, thanks", [
    ("en", "I trust my care team.", "Send", "Thank you!"),
    ("fr", "J'ai confiance en mon équipe de soins.", "Envoyer", "Merci!"),
])
def test_a_tablet_check_in_in_the_patients_language_saved_once_after_a_lost_response(
        live, page, ward, session, language, statement, send, thanks):  # noqa: F811
    base, _ = live
    patient = ward(language)
    _hand_over(page, base, patient)
    assert page.locator("html").get_attribute("lang") == language
    visible = page.locator("fieldset.statement:visible")
    assert visible.count() == 1
    box = page.locator("#statement-1 label.scale-button").first.bounding_box()
    assert box["width"] >= 44 and box["height"] >= 44
    for n, value in enumerate([6, 5, 4, 6, 5, 6], 1):
        page.locator(f"label[for=s{n}-{value}]").click()
        if n < 6:
            page.locator(f"#statement-{n + 1}").wait_for(state="visible")
        if n == 3:
            assert statement in page.locator("#statement-3").inner_text()
    page.locator("#statement-6 button.back").click()  # back works, and the answer is kept
    assert page.locator("#s5-5").is_checked()
    page.locator("#statement-5 button.next").click()
    lost = {"n": 0}

    def drop_first_response(route):
        if route.request.method == "POST" and lost["n"] == 0:
            lost["n"] += 1
            route.fetch()  # the server saves it; the answer never reaches the tablet
            route.abort()
        else:
            route.continue_()

    page.route(re.compile(r".*/console/kiosk$"), drop_first_response)
    page.get_by_role("button", name=send).click()
    page.get_by_role("heading", name=thanks).wait_for()
    assert lost["n"] == 1
    assert session.scalar(select(func.count()).select_from(AllianceCheckin)) == 1
    assert session.scalar(select(AllianceCheckin.items)) == [6, 5, 4, 6, 5, 6]
    page.goto(f"{base}/console/care")  # locked: a staff member signs in again
    assert "/console/sign-in" in page.url


def test_the_page_locks_when_left_idle_and_passes_axe_at_200_percent_zoom(live, chromium, ward):  # noqa: F811
    from axe_playwright_python.sync_playwright import Axe

    base, _ = live
    patient = ward("en")
    context = chromium.new_context(bypass_csp=True, viewport={"width": 512, "height": 400})  # a tablet at 200%
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    try:
        _hand_over(pg, base, patient)
        pg.locator("label[for=s1-2]").click()
        pg.locator("#statement-2").wait_for(state="visible")
        assert pg.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        violations = Axe().run(pg).response["violations"]
        assert [v["id"] for v in violations if v["impact"] in ("serious", "critical")] == []
        # KIOSK_IDLE_SECONDS=10 later the tablet locks: the sheet is gone, not started again for the next person
        pg.get_by_role("heading", name="This tablet is locked").wait_for(timeout=20_000)
        assert pg.locator("fieldset.statement").count() == 0
        pg.go_back()
        pg.wait_for_load_state()
        assert pg.locator("fieldset.statement").count() == 0  # Back does not bring the sheet back
        pg.goto(f"{base}/console/kiosk")
        assert "This tablet is locked" in pg.content()
    finally:
        context.close()
