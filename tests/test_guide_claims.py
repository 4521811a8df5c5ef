"""Where the program and its guide disagreed (issue 20): each claim of the guide, now true, checked here."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from outreach.db import unit_of_work
from outreach.models import FollowUp, Message, Wave

from .conftest import csrf_token_of

ROOT = Path(__file__).resolve().parent.parent
HEADER = "patient_id,phone,discharge_date,sms_consent,alliance_1,alliance_2,alliance_3,alliance_4,alliance_5,alliance_6"


# -- 1. a count is a positive whole number ------------------------------------------------------------------------

@pytest.mark.parametrize("limit", ["-1", "0"])
def test_waves_launch_refuses_a_limit_that_is_not_positive_and_records_no_wave(run_cli, tmp_path, session, limit):
    path = tmp_path / "d.csv"
    path.write_text(HEADER + "\n" + "".join(f"L{i},416-555-01{i:02d},2026-09-01,yes,6,6,5,6,6,6\n" for i in range(3)))
    assert run_cli("import-discharges", str(path)).exit_code == 0
    result = run_cli("waves", "launch", "--timepoint", "30", "--as-of", "2026-10-01", "--limit", limit, "--yes")
    assert result.exit_code != 0 and "--limit" in result.output and f"{limit} is not in the range x>=1" in result.output
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Wave)) == 0
    assert session.scalar(select(func.count()).select_from(FollowUp)) == 0


def test_events_refuses_a_negative_limit(run_cli):
    result = run_cli("events", "--limit", "-1")
    assert result.exit_code != 0 and "-1 is not in the range x>=1" in result.output


# -- 2. resolving a crisis gives the follow-up back the time it spent paused --------------------------------------

def _crisis_that_outlasts_the_window(make_patient, sessions, twilio, clock):
    p = make_patient()
    with unit_of_work(sessions) as s:
        from outreach.clock import utcnow

        fu = FollowUp(patient_id=p.id, episode_id=p.episode_id, timepoint_days=30, state="q_mental_health",
                      invited_at=utcnow() - dt.timedelta(days=6), expires_at=utcnow() + dt.timedelta(hours=2))
        s.add(fu)
    twilio.text(p.phone, "I want to kill myself")
    clock(hours=5)  # the window ran out while the survey was paused
    with unit_of_work(sessions) as s:
        from outreach.models import Alert

        return fu.id, s.scalar(select(Alert.id))


def _after_tick(run_cli, session, followup_id):
    assert run_cli("tick").exit_code == 0
    session.rollback()
    return session.get(FollowUp, followup_id)


def test_resolving_an_alert_on_the_command_line_gives_back_the_paused_time(make_patient, sessions, twilio, clock,
                                                                            run_cli, session):
    followup_id, alert_id = _crisis_that_outlasts_the_window(make_patient, sessions, twilio, clock)
    assert run_cli("alerts", "resolve", str(alert_id), "--note", "called, safe").exit_code == 0
    fu = _after_tick(run_cli, session, followup_id)
    assert fu.state == "q_mental_health"  # not expired: it goes on when the patient writes again
    from outreach.clock import utcnow

    assert dt.timedelta(hours=1, minutes=55) < fu.expires_at - utcnow() <= dt.timedelta(hours=2, minutes=1)


def test_resolving_an_alert_in_the_console_gives_back_the_paused_time(make_patient, sessions, twilio, clock,
                                                                       run_cli, session, console_client):
    followup_id, alert_id = _crisis_that_outlasts_the_window(make_patient, sessions, twilio, clock)
    client = console_client("coordinator")
    client.post(f"/console/alerts/{alert_id}/resolve", data={"csrf_token": client.csrf, "note": "called, safe"})
    assert _after_tick(run_cli, session, followup_id).state == "q_mental_health"


# -- 3. `make serve` with an empty demo folder: see tests/test_demo.py --------------------------------------------

# -- 4. a closed pipe ends a command quietly ----------------------------------------------------------------------

def test_a_command_piped_into_a_reader_that_stops_ends_quietly(env):
    command = f"{sys.executable} -m outreach.cli responses --timepoint 30 | true"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.stderr == "" and done.returncode == 0


# -- 5. a DATABASE_URL that cannot be used is said in a sentence, the password masked ----------------------------

@pytest.mark.parametrize("url, says", [
    ("notaurl", "DATABASE_URL: 'notaurl' cannot be read as a database URL"),
    ("mysql+pymysql://study:s3cretpw@db.example.org/outreach", "needs the database driver 'pymysql', which is not "
                                                               "installed"),
    ("nosuchdb://study:s3cretpw@db.example.org/outreach", "names a database SQLAlchemy does not know"),
])
def test_a_database_url_that_cannot_be_used_is_named_in_a_sentence(run_cli, url, says):
    result = run_cli("--debug", "waves", "list", extra_env={"DATABASE_URL": url})
    assert result.exit_code == 2 and says in result.output
    assert "unexpected failure" not in result.output and "s3cretpw" not in result.output


# -- 6. the codebook and the report say the same about tertiles ---------------------------------------------------

def test_the_codebook_and_the_report_say_how_tertiles_are_cut_the_same_way():
    from analysis.codebook import VARIABLES
    from analysis.report import METHODS

    label = next(v.label for v in VARIABLES if v.name == "alliance_tertile")
    same = "every treatment episode in this"
    assert same in label and "each episode counted once" in label
    assert same in METHODS and "each episode counted once" in METHODS


# -- 7. what a user meets, said ----------------------------------------------------------------------------------

def test_serve_says_what_dir_is(run_cli):
    assert "an empty or missing folder gets the demo first" in run_cli("serve", "--help").output


def test_port_and_log_level_are_settings_with_their_default_and_checked():
    from outreach.config import SETTINGS, ConfigError, load_settings

    assert SETTINGS["PORT"][0] == "8000" and "every interface" in SETTINGS["PORT"][1]
    assert SETTINGS["LOG_LEVEL"][0] == "INFO"
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert "| `PORT` | `8000` |" in operations and "| `LOG_LEVEL` | `INFO` |" in operations
    with pytest.raises(ConfigError, match="LOG_LEVEL: 'chatty' cannot be read"):
        load_settings({"LOG_LEVEL": "chatty"})


def test_a_password_link_without_public_base_url_says_where_it_points(run_cli):
    result = run_cli("users", "add", "new@study.example.org", "--role", "coordinator")
    assert result.exit_code == 0 and "http://localhost:5000/console/set-password/" in result.output
    assert "PUBLIC_BASE_URL is not set, so the link points to http://localhost:5000" in result.output
    with_base = run_cli("users", "reset", "new@study.example.org",
                        extra_env={"PUBLIC_BASE_URL": "https://outreach.example.org"})
    assert "https://outreach.example.org/console/set-password/" in with_base.output
    assert "PUBLIC_BASE_URL is not set" not in with_base.output


def test_turning_off_2fa_that_was_never_on_says_so(run_cli):
    assert run_cli("users", "add", "no2fa@study.example.org", "--role", "admin").exit_code == 0
    result = run_cli("users", "reset", "no2fa@study.example.org", "--turn-off-2fa")
    assert "had no authenticator-app code; nothing to turn off" in result.output
    assert "turned off for" not in result.output


def test_db_downgrade_asks_then_takes_the_schema_back(run_cli, env, empty_db_url):
    from sqlalchemy import inspect

    from outreach.db import make_engine

    from .conftest import reset_schema

    reset_schema(empty_db_url)  # the same database as run_cli's, made anew by migrations
    assert run_cli("db", "upgrade").exit_code == 0
    declined = run_cli("db", "downgrade", "0008", input="n\n")
    assert "not changed" in declined.output
    done = run_cli("db", "downgrade", "0008", "--yes")
    assert done.exit_code == 0 and "database schema is at 0008" in done.output
    engine = make_engine(empty_db_url)
    assert "opt_out_reason" not in {c["name"] for c in inspect(engine).get_columns("patients")}
    engine.dispose()
    unknown = run_cli("db", "downgrade", "nope", "--yes")
    assert unknown.exit_code == 1 and "error:" in unknown.output and "Traceback" not in unknown.output


def test_the_guide_says_a_second_unusable_answer_moves_on():
    guide = (ROOT / "docs" / "coordinators.md").read_text(encoding="utf-8")
    assert "A second unusable answer in a row is not asked again" in guide


@pytest.mark.parametrize("words", ["HELP", "who is this?"])
def test_help_from_a_number_no_patient_has_is_answered(twilio, session, words):
    status, replies = twilio.text("+14165559999", words)
    assert status == 200 and len(replies) == 2
    assert replies[0].startswith("Recovery Study: follow-up texts") and "Recovery Study :" in replies[1]
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Message).where(Message.kind == "reply")) == 2
    assert twilio.text("+14165559999", "hello there")[1] == []  # anything else: stored, not answered
