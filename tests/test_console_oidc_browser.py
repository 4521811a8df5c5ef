"""Single sign-on in a real browser: Debian's Chromium (Playwright) signs in to the live console through the
OpenID Connect provider on loopback (``oidc-provider-mock``, PKCE enforced, see ``test_console_oidc``), on
SQLite and PostgreSQL; axe-core finds no serious or critical violation on the sign-in pages."""
from __future__ import annotations

import re
import urllib.parse

import pyotp
import pytest
from sqlalchemy import select

from outreach.db import unit_of_work
from outreach.models import User

from .test_console_browser import CHROMIUM, chromium, live, page  # noqa: F401  (fixtures)
from .test_console_oidc import CLIENT_ID, CLIENT_SECRET, Provider

if CHROMIUM is None:
    pytestmark = pytest.mark.skip(reason="Debian's chromium is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def provider():
    p = Provider()
    yield p
    p.stop()


@pytest.fixture
def console_env(web_env, provider):
    """The live console (``live``) with single sign-on offered, passwords too."""
    return {**web_env, "SECRET_KEY": "console-secret-for-tests", "CONSOLE_INSECURE_COOKIES": "1",
            "OIDC_ISSUER": provider.issuer, "OIDC_CLIENT_ID": CLIENT_ID, "OIDC_CLIENT_SECRET": CLIENT_SECRET}


def loopback_only(pg) -> None:
    """The provider's page links a stylesheet on a CDN: nothing leaves this machine."""
    def route(r):
        host = urllib.parse.urlsplit(r.request.url).hostname or ""
        return r.continue_() if host in ("127.0.0.1", "localhost") else r.abort()

    pg.route("**/*", route)


def through_the_provider(pg, base: str, sub: str) -> None:
    """Sign in from the console's sign-in page at the provider, as ``sub``."""
    pg.goto(f"{base}/console/sign-in")
    pg.get_by_role("button", name="Sign in with your institution's account").click()
    pg.wait_for_url(re.compile(r"/oauth2/authorize\?"))
    pg.locator("input[name=sub]").fill(sub)
    pg.get_by_role("button", name="Authorize").click()


def test_signing_in_and_out_through_the_institutions_provider(live, page, provider, make_user):
    base, _ = live
    loopback_only(page)
    make_user("coord@study.example.org", "coordinator")
    through_the_provider(page, base, "coord@study.example.org")
    page.wait_for_url(re.compile(r"/console/$"))
    sign_out = page.get_by_role("button", name="Sign out coord@study.example.org")
    assert sign_out.is_visible()
    links = [a.inner_text() for a in page.locator("nav a").all()]
    assert "Patients" in links and "Users" not in links  # the console's role, a coordinator's
    sign_out.click()
    page.wait_for_url(re.compile(r"/console/sign-in$"))
    assert "You are signed out." in page.locator("main").inner_text()
    page.goto(f"{base}/console/patients")
    assert "/console/sign-in" in page.url


def test_a_person_no_admin_added_reads_why_in_the_browser(live, page, provider):
    base, _ = live
    loopback_only(page)
    through_the_provider(page, base, "stranger@study.example.org")
    page.wait_for_url(re.compile(r"/console/sign-in/sso/callback"))
    alert = page.get_by_role("alert")
    assert "There is no console account for stranger@study.example.org" in alert.inner_text()
    assert page.get_by_role("button", name="Sign in with your institution's account").is_visible()


def test_the_sign_in_pages_with_single_sign_on_pass_axe(live, chromium, provider, make_user, sessions):
    from axe_playwright_python.sync_playwright import Axe

    base, _ = live
    make_user("two@study.example.org", "admin")
    with unit_of_work(sessions) as s:  # an account with an authenticator app: the code page after the provider
        s.scalar(select(User).where(User.email == "two@study.example.org")).totp_secret = pyotp.random_base32()
    context = chromium.new_context(bypass_csp=True)  # lets axe's script in; the pages themselves are unchanged
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    loopback_only(pg)
    axe = Axe()
    problems = {}

    def scan(name: str) -> None:
        violations = axe.run(pg).response["violations"]
        serious = [f"{v['id']}: {v['help']}" for v in violations if v["impact"] in ("serious", "critical")]
        if serious:
            problems[name] = serious

    try:
        pg.goto(f"{base}/console/sign-in")
        assert pg.get_by_role("button", name="Sign in with your institution's account").is_visible()
        scan("sign-in with single sign-on offered")
        through_the_provider(pg, base, "nobody@study.example.org")
        pg.wait_for_url(re.compile(r"/console/sign-in/sso/callback"))
        scan("a refusal")
        through_the_provider(pg, base, "two@study.example.org")
        pg.wait_for_url(re.compile(r"/console/sign-in/sso/code$"))
        assert pg.get_by_label("6-digit code from your authenticator app").is_visible()
        scan("the authenticator code after the provider")
        assert problems == {}
    finally:
        context.close()
