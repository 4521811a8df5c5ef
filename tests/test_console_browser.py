"""The console in a real browser: Playwright drives Debian's Chromium against the real app served on a
loopback port, on SQLite and PostgreSQL.  Only Twilio's REST API is mocked (``responses``)."""
from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import threading
import urllib.parse

import pytest
import responses
from sqlalchemy import select
from werkzeug.serving import make_server

from outreach.config import load_settings
from outreach.db import unit_of_work
from outreach.messaging.gateway import make_gateway
from outreach.models import Message
from outreach.messaging.sender import Sender
from outreach.messaging.webhook_client import SignedWebhookClient, http_post

from .conftest import AUTH_TOKEN, CONSOLE_PASSWORD, IN_CI, PUBLIC_BASE, TWILIO_SID

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytestmark = pytest.mark.skip(reason="Debian's chromium is not installed (.ci/run installs it)")
    if IN_CI:
        raise RuntimeError("CI needs Debian's chromium for the console's browser tests")

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
API = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def live(console_env):
    """The real app on a loopback port, in a thread; yields its base URL and its settings."""
    from webhooks.app import create_app

    env = {**console_env, "CONSOLE_REFRESH_SECONDS": "1"}
    app = create_app(env)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", env
    server.shutdown()
    thread.join(timeout=5)
    app.extensions["outreach"]["engine"].dispose()


@pytest.fixture
def page(chromium):
    context = chromium.new_context()
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    yield pg
    context.close()


@pytest.fixture
def phone_of(live):
    """Texts from a patient, signed as Twilio signs them, to the live server."""
    base, _ = live
    return SignedWebhookClient(http_post(base), PUBLIC_BASE, AUTH_TOKEN)


def sign_in(page, base: str, email: str, password: str = CONSOLE_PASSWORD) -> None:
    page.goto(f"{base}/console/sign-in")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_label("Password").press("Enter")  # the keyboard, as many people sign in


def test_a_crisis_text_appears_without_reload_is_taken_and_resolved(live, page, phone_of, make_user, make_patient,
                                                                     make_followup):
    base, _ = live
    make_user("coord@study.example.org", "coordinator")
    patient = make_patient(patient_id="BR-1")
    make_followup(patient, state="q_self_efficacy")
    sign_in(page, base, "coord@study.example.org")
    page.get_by_role("link", name=re.compile("Crisis alerts")).click()
    page.wait_for_selector("#no-alerts")
    assert page.locator("#open-alert-count").inner_text() == "0"

    status, replies = phone_of.text(patient.phone, "I want to end my life")
    assert status == 200 and "988" in replies[0]
    card = page.locator("article.alert-card")
    card.wait_for()  # the list refreshed by itself: no reload
    assert "I want to end my life" in card.inner_text() and "Patient BR-1" in card.inner_text()
    assert page.locator("#open-alert-count").inner_text() == "1"

    note = page.get_by_label("Resolution note (required)")
    note.fill("Called at once; she is with her sister")
    page.wait_for_timeout(2500)  # two more refreshes
    assert note.input_value() == "Called at once; she is with her sister"  # typing is not lost

    page.get_by_role("button", name="Take").click()
    assert "taken by coord@study.example.org" in page.locator("article.alert-card").inner_text()
    page.get_by_label("Resolution note (required)").fill("Called at once; she is safe with her sister")
    page.get_by_role("button", name="Resolve").click()
    page.wait_for_selector("#no-alerts")
    assert "Alert #1 is resolved" in page.content()


def test_a_hand_written_text_is_sent_and_shown_delivered_after_the_status_callback(live, page, phone_of, make_user,
                                                                                  make_patient, make_followup,
                                                                                  sessions, send_env):
    base, _ = live
    make_user("coord@study.example.org", "coordinator")
    patient = make_patient(patient_id="BR-2", phone="+14165550122")
    make_followup(patient)
    phone_of.text(patient.phone, "yes")
    sign_in(page, base, "coord@study.example.org")
    page.get_by_role("link", name="Patients").click()
    page.get_by_label("Study id, or the last four digits of the phone number").fill("0122")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="BR-2").click()
    assert "yes" in page.locator("body").inner_text()
    assert "BR-2" not in page.title() and "0122" not in page.url

    box = page.locator("textarea[name=body]")
    box.fill("Hello, this is Sam from the study team. Is now a good time to talk?")
    assert "1 segment" in page.locator(f"#segments-{patient.id}").inner_text()
    page.get_by_role("button", name=re.compile("Send")).click()
    assert "Hello, this is Sam" in page.locator("body").inner_text()

    with responses.RequestsMock() as api:  # the worker sends it through Twilio's API
        api.add_callback(responses.POST, API, callback=lambda request: (201, {}, json.dumps({
            "sid": "SM" + "7" * 32, "status": "queued",
            "to": dict(urllib.parse.parse_qsl(request.body))["To"]})))
        settings = load_settings(send_env)
        Sender(sessions, settings, make_gateway(settings, echo=None)).send_due()
    assert phone_of.status("SM" + "7" * 32, "delivered") == 204
    page.reload()
    row = page.locator("tr", has_text="Hello, this is Sam")
    assert "delivered" in row.inner_text() and "coord@study.example.org" in row.inner_text()


def test_a_researcher_gets_403_on_a_patient_page_and_sees_no_identifier(live, page, phone_of, make_user,
                                                                        make_patient, make_followup):
    base, _ = live
    make_user("res@study.example.org", "researcher")
    patient = make_patient(patient_id="HIDDEN-9", phone="+14165550199")
    make_followup(patient)
    phone_of.text(patient.phone, "yes")
    phone_of.text(patient.phone, "words only the team should read")
    sign_in(page, base, "res@study.example.org")
    page.wait_for_url(re.compile(r"/console/$"))
    links = [a.get_attribute("href") for a in page.locator("nav a").all()]
    assert not any("patients" in href or "alerts" in href for href in links)
    for href in links:
        page.goto(base + href)
        html = page.content()
        for secret in ("HIDDEN-9", "4165550199", "555-0199", "words only the team should read"):
            assert secret not in html, (href, secret)
    response = page.goto(f"{base}/console/patients/{patient.id}")
    assert response.status == 403 and "Your role does not give access" in page.content()


def test_a_form_without_its_csrf_token_is_refused(live, page, make_user, phone_of, make_patient, make_followup):
    base, _ = live
    make_user("coord@study.example.org", "coordinator")
    patient = make_patient()
    make_followup(patient)
    phone_of.text(patient.phone, "I want to kill myself")
    sign_in(page, base, "coord@study.example.org")
    page.goto(f"{base}/console/alerts")
    page.locator("article.alert-card input[name=csrf_token]").evaluate_all("els => els.forEach(e => e.remove())")
    page.get_by_label("Resolution note (required)").fill("done")
    page.get_by_role("button", name="Resolve").click()
    assert "Form not accepted" in page.content()
    page.goto(f"{base}/console/alerts")
    assert page.locator("article.alert-card").count() == 1  # still open


def test_the_sixth_wrong_password_locks_the_account(live, page, make_user):
    base, _ = live
    make_user("lock@study.example.org", "coordinator")
    for _ in range(5):
        sign_in(page, base, "lock@study.example.org", "not the right password")
        assert "There is a problem" in page.content()
    sign_in(page, base, "lock@study.example.org")
    assert "There is a problem" in page.content() and "/console/sign-in" in page.url


def test_idle_timeout_signs_out(live, page, make_user, monkeypatch):
    import time

    from console import security

    base, _ = live
    make_user("idle@study.example.org", "admin")
    sign_in(page, base, "idle@study.example.org")
    page.wait_for_url(re.compile(r"/console/$"))
    later = time.time() + 31 * 60
    monkeypatch.setattr(security, "now", lambda: later)
    page.goto(f"{base}/console/users")
    assert "/console/sign-in" in page.url
    assert "signed out after a period without activity" in page.content()


def test_every_page_passes_axe_without_serious_violations(live, chromium, make_user, make_patient, make_followup,
                                                          phone_of, sessions):
    from axe_playwright_python.sync_playwright import Axe

    base, _ = live
    make_user("a11y@study.example.org", "admin")
    patient = make_patient()
    make_followup(patient)
    phone_of.text(patient.phone, "yes")
    phone_of.text(patient.phone, "I want to die")
    with unit_of_work(sessions) as s:  # a wave for its page
        from outreach.models import Wave

        s.add(Wave(timepoint_days=30, as_of=dt.date(2026, 11, 1), created_by="a11y@study.example.org"))
    context = chromium.new_context(bypass_csp=True)  # lets axe's script in; the pages themselves are unchanged
    page = context.new_page()
    try:
        sign_in(page, base, "a11y@study.example.org")
        page.wait_for_url(re.compile(r"/console/$"))
        paths = ["/console/", "/console/alerts", "/console/patients", f"/console/patients/{patient.id}",
                 "/console/inbox", "/console/progress", "/console/users", "/console/audit",
                 "/console/account/two-factor", "/console/settings", "/console/waves/1",
                 "/console/waves?timepoint=30&as_of=2026-11-01"]
        axe = Axe()
        problems = {}
        for path in paths:
            page.goto(base + path)
            violations = axe.run(page).response["violations"]
            serious = [f"{v['id']}: {v['help']}" for v in violations if v["impact"] in ("serious", "critical")]
            if serious:
                problems[path] = serious
        assert problems == {}
    finally:
        context.close()


def test_the_alert_queue_works_from_the_keyboard_alone(live, page, phone_of, make_user, make_patient, make_followup):
    base, _ = live
    make_user("keys@study.example.org", "coordinator")
    patient = make_patient()
    make_followup(patient)
    phone_of.text(patient.phone, "I want to kill myself")
    sign_in(page, base, "keys@study.example.org")
    page.goto(f"{base}/console/alerts")

    def tab_to(predicate, limit=60):
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate(predicate):
                return
        raise AssertionError("not reachable with Tab")

    tab_to("document.activeElement.tagName === 'BUTTON' && document.activeElement.textContent.trim() === 'Take'")
    page.keyboard.press("Enter")
    page.wait_for_selector("text=taken by keys@study.example.org")
    tab_to("document.activeElement.tagName === 'TEXTAREA'")
    page.keyboard.type("Called; safe at home")
    tab_to("document.activeElement.textContent.trim() === 'Resolve'")
    page.keyboard.press("Enter")
    page.wait_for_selector("#no-alerts")


def test_a_coordinator_withdraws_a_participant_after_reading_what_it_does(live, chromium, make_user, make_patient,
                                                                         make_followup, phone_of, sessions):
    """The patient page's withdrawal: the choice and the reason, the consequences in words, then the confirmation;
    the two new pages pass axe, and the page shows the erased number's marker."""
    from axe_playwright_python.sync_playwright import Axe

    from outreach.models import Patient

    base, _ = live
    make_user("coord-w@study.example.org", "coordinator")
    patient = make_patient(patient_id="BR-W")
    make_followup(patient)
    context = chromium.new_context(bypass_csp=True)  # lets axe's script in
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        sign_in(page, base, "coord-w@study.example.org")
        page.wait_for_url(re.compile(r"/console/$"))
        page.goto(f"{base}/console/patients/{patient.id}")
        page.get_by_text("Withdraw from the study").click()
        page.get_by_label("Remove them: answers and texts deleted, phone number erased").check()
        page.get_by_label("Reason (kept in the audit record; no phone numbers or names)").fill("no longer wishes to")
        page.get_by_role("button", name="Continue: see what this does").click()
        page.wait_for_selector("#consequences")
        assert "cannot be reversed" in page.locator("#consequences").inner_text()
        serious = [v["id"] for v in Axe().run(page).response["violations"] if v["impact"] in ("serious", "critical")]
        assert serious == []
        with unit_of_work(sessions) as s:
            assert s.get(Patient, patient.id).withdrawn_at is None  # nothing changed before the confirmation
        page.get_by_role("button", name="Withdraw BR-W and remove their data").click()
        page.wait_for_selector("#withdrawal-state")
        assert "Withdrew on" in page.locator("#withdrawal-state").inner_text()
        assert "at the participant's withdrawal" in page.locator("#phone-erased").inner_text()
        page.goto(f"{base}/console/withdrawals")
        assert "BR-W" in page.locator("#withdrawals").inner_text()
        serious = [v["id"] for v in Axe().run(page).response["violations"] if v["impact"] in ("serious", "critical")]
        assert serious == []
    finally:
        context.close()
