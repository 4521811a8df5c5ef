"""Settings are parsed once, when a process starts: a malformed value stops the worker and the web app at once,
naming the variable and what it should look like (issue 19)."""
from __future__ import annotations

import datetime as dt

import pytest

from outreach.config import ConfigError, load_settings


@pytest.mark.parametrize("name, value, says", [
    ("SEND_RATE_PER_SECOND", "abc", "it should be a number of texts a second"),
    ("SEND_WINDOW", "whenever", "days and hours such as 'Mon-Fri 09:00-20:00"),
    ("FOLLOWUP_DAYS", "30,ninety", "whole numbers of days separated by commas"),
    ("DEFAULT_TIMEZONE", "Mars/Base", "an IANA time zone"),
    ("SMS_BACKEND", "carrier-pigeon", "twilio or simulator"),
    ("CONSOLE_INSECURE_COOKIES", "yes", "0 or 1"),
])
def test_a_malformed_setting_stops_the_worker_at_start_naming_it(run_cli, name, value, says):
    result = run_cli("worker", "--once", extra_env={"SMS_BACKEND": "simulator", name: value})
    assert result.exit_code != 0
    assert f"{name}: {value!r} cannot be read" in result.output and says in result.output
    assert "Traceback" not in result.output and "worker: started" not in result.output


def test_a_malformed_setting_stops_the_web_app_at_start(web_env):
    from webhooks.app import create_app

    with pytest.raises(ConfigError, match="SEND_WINDOW: 'whenever' cannot be read"):
        create_app({**web_env, "SEND_WINDOW": "whenever"})


def test_every_malformed_setting_is_named_at_once():
    with pytest.raises(ConfigError) as refused:
        load_settings({"SEND_RATE_PER_SECOND": "abc", "WINDOW_DAYS": "-3", "STALL_HOURS": "0"})
    message = str(refused.value)
    assert message.startswith("3 settings cannot be read")
    assert all(name in message for name in ("SEND_RATE_PER_SECOND", "WINDOW_DAYS", "STALL_HOURS"))


def test_settings_are_read_as_typed_attributes():
    settings = load_settings({"FOLLOWUP_DAYS": "30, 90", "SEND_RATE_PER_SECOND": "2.5",
                              "REQUIRE_2FA_FOR_ADMINS": "1", "SEND_WINDOW": "Mon-Sun 00:00-24:00"})
    assert settings.followup_days == (30, 90)
    assert settings.send_rate_per_second == 2.5
    assert settings.require_2fa_for_admins is True
    assert settings.send_window.opening(dt.datetime(2026, 1, 5, 12), "UTC") == dt.datetime(2026, 1, 5, 12)
    assert settings.expire_days == 7  # the documented default, typed


def test_the_primary_time_point_is_a_typed_setting_and_one_of_the_follow_up_days():
    assert load_settings({}).primary_timepoint == 30
    assert load_settings({"PRIMARY_TIMEPOINT": "90"}).primary_timepoint == 90
    with pytest.raises(ConfigError, match="PRIMARY_TIMEPOINT: 45 is not one of FOLLOWUP_DAYS"):
        load_settings({"PRIMARY_TIMEPOINT": "45"})
    with pytest.raises(ConfigError, match="PRIMARY_TIMEPOINT: 'thirty' cannot be read"):
        load_settings({"PRIMARY_TIMEPOINT": "thirty"})
