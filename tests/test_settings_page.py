"""The administrator's settings page and the worker's heartbeat (issue 22): what is in force, secrets masked, the
URLs to paste into Twilio with the signature check, and a banner on every page when no worker runs."""
from __future__ import annotations

from outreach.config import load_settings
from outreach.staff.settings_page import effective_settings, twilio_check

from .conftest import AUTH_TOKEN, PUBLIC_BASE


def test_secrets_are_shown_only_as_set_and_the_database_password_never():
    settings = load_settings({"TWILIO_AUTH_TOKEN": "tok-secret-value", "SECRET_KEY": "k" * 40,
                              "DATABASE_URL": "postgresql+psycopg://study:pw-secret@db.example.org/outreach",
                              "ALERT_SMS_TO": "+1 416 555 0100", "SEND_RATE_PER_SECOND": "3"})
    shown = {line.name: line for line in effective_settings(settings)}
    text = " ".join(line.value for line in shown.values())
    assert "tok-secret-value" not in text and "pw-secret" not in text and "kkkk" not in text
    assert shown["TWILIO_AUTH_TOKEN"].value == "set (hidden)" and shown["EXPORT_KEY"].value == "not set"
    assert shown["DATABASE_URL"].value == "postgresql+psycopg://study:***@db.example.org/outreach"
    assert "0100" in shown["ALERT_SMS_TO"].value and "416 555" not in shown["ALERT_SMS_TO"].value
    assert (shown["SEND_RATE_PER_SECOND"].value, shown["SEND_RATE_PER_SECOND"].is_default) == ("3", False)
    assert shown["EXPIRE_DAYS"].is_default


def test_the_twilio_urls_and_whether_a_signed_request_passes():
    good = twilio_check(load_settings({"PUBLIC_BASE_URL": "https://outreach.example.org/",
                                       "TWILIO_AUTH_TOKEN": AUTH_TOKEN}))
    assert good.sms_url == "https://outreach.example.org/twilio/sms" and good.passes
    assert good.status_url == "https://outreach.example.org/twilio/status"
    unset = twilio_check(load_settings({"TWILIO_AUTH_TOKEN": AUTH_TOKEN}))
    assert not unset.passes and "PUBLIC_BASE_URL is not set" in unset.words
    plain = twilio_check(load_settings({"PUBLIC_BASE_URL": "http://outreach.example.org",
                                        "TWILIO_AUTH_TOKEN": AUTH_TOKEN}))
    assert "not https" in plain.words


def test_the_settings_page_is_for_admins_and_shows_the_urls(console_client):
    page = console_client("admin").get("/console/settings").get_data(as_text=True)
    assert f"{PUBLIC_BASE}/twilio/sms" in page and "passes the signature check" in page
    assert "Off: set <code>OIDC_ISSUER</code>" in page  # no single sign-on configured here
    assert "console-secret-for-tests" not in page and AUTH_TOKEN not in page
    assert console_client("coordinator").get("/console/settings").status_code == 403


def test_every_page_says_when_no_worker_has_run_for_five_minutes(console_client, run_cli, clock):
    client = console_client("researcher")
    assert "No worker is running" in client.get("/console/").get_data(as_text=True)
    assert run_cli("tick").exit_code == 0  # the worker's minute duties record a heartbeat
    assert "No worker is running" not in client.get("/console/").get_data(as_text=True)
    clock(minutes=6)
    page = client.get("/console/").get_data(as_text=True)
    assert "No worker is running: the last one stopped at" in page and "Nothing is being sent" in page
