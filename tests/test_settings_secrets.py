"""Settings never print a secret; a weak EXPORT_KEY and a plain-http Twilio host are refused."""
from __future__ import annotations

import pytest

from outreach.config import ConfigError, load_settings

SECRETS = {"TWILIO_AUTH_TOKEN": "auth-token-value-9f8e7d", "EXPORT_KEY": "export-key-value-" + "x" * 20,
           "SECRET_KEY": "console-secret-value-6b5a"}
DB_PASSWORD = "pg-password-value-42"


def test_the_repr_of_settings_masks_every_secret_and_the_database_password():
    settings = load_settings({**SECRETS, "DATABASE_URL": f"postgresql+psycopg://outreach:{DB_PASSWORD}@db:5432/study",
                              "ORG_NAME": "Recovery Study", "ALERT_SMS_TO": "+14165550100",
                              "SOME_OTHER_TOKEN": "unrelated-secret-value"})
    for shown in (repr(settings), str(settings), f"{settings}", repr([settings]), repr({"s": settings})):
        for value in (*SECRETS.values(), DB_PASSWORD, "unrelated-secret-value", "4165550100"):
            assert value not in shown, value
        assert "postgresql+psycopg://outreach:***@db:5432/study" in shown
        assert "TWILIO_AUTH_TOKEN='***'" in shown and "EXPORT_KEY='***'" in shown and "SECRET_KEY='***'" in shown
        assert "ORG_NAME='Recovery Study'" in shown  # the rest is there to help
    assert settings.require("TWILIO_AUTH_TOKEN") == SECRETS["TWILIO_AUTH_TOKEN"]  # the values themselves are intact


def test_a_database_url_sqlalchemy_cannot_read_still_hides_its_password():
    from outreach.config import hide_password

    assert hide_password("weird://me:hunter2@somewhere/x") == "weird://me:***@somewhere/x"
    assert hide_password("sqlite:///outreach.db") == "sqlite:///outreach.db"


@pytest.mark.parametrize("command", [["export", "--out", "{tmp}/r.csv"]])  # the report needs no key
def test_an_export_key_shorter_than_32_characters_is_refused_with_how_to_make_one(run_cli, tmp_path, command):
    out = tmp_path / "out"
    args = [a.format(tmp=out) for a in command]
    result = run_cli(*args, extra_env={"EXPORT_KEY": "k" * 31})
    assert result.exit_code == 2
    assert "EXPORT_KEY is too short (31 characters; at least 32 are needed)" in result.output
    assert 'python -c "import secrets; print(secrets.token_hex(32))"' in result.output
    assert "k" * 31 not in result.output
    assert not out.exists()  # nothing written
    assert run_cli(*args, extra_env={"EXPORT_KEY": "k" * 32}).exit_code == 0


def test_the_suggested_command_makes_a_key_that_is_accepted():
    import secrets

    assert len(load_settings({"EXPORT_KEY": secrets.token_hex(32)}).export_key) == 64


@pytest.mark.parametrize("url", ["https://api.twilio.com", "https://twilio.internal.example.org:8443/",
                                 "http://127.0.0.1:8080", "http://127.9.9.9", "http://localhost:5000",
                                 "http://[::1]:8080"])
def test_twilio_api_base_url_https_or_loopback_is_accepted(url):
    assert load_settings({"TWILIO_API_BASE_URL": url}).twilio_api_base_url == url.rstrip("/")


@pytest.mark.parametrize("url", ["http://api.twilio.com", "http://10.0.0.5:8080", "http://localhost.example.org",
                                 "ftp://127.0.0.1", "api.twilio.com", "https://"])
def test_twilio_api_base_url_over_plain_http_to_another_host_is_refused(url):
    with pytest.raises(ConfigError, match="TWILIO_API_BASE_URL must"):
        load_settings({"TWILIO_API_BASE_URL": url}).twilio_api_base_url


def test_the_sender_refuses_to_start_with_a_plain_http_twilio_host(run_cli, send_env):
    """The auth token is sent with every API call: it must never cross a network unencrypted."""
    result = run_cli("send-due", extra_env={**send_env, "TWILIO_API_BASE_URL": "http://twilio.example.org"})
    assert result.exit_code == 2
    assert "error: TWILIO_API_BASE_URL must use https" in result.output and "loopback" in result.output
