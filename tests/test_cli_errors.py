"""The error boundary: an ordinary mistake gets one or two lines saying what to do and a non-zero exit, never a
traceback; a command that only reads never creates a database; the web app's start-up names every missing
setting at once."""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from outreach.models import FollowUp

ROOT = Path(__file__).resolve().parent.parent
HEADER = "patient_id,phone,discharge_date,sms_consent,alliance_1,alliance_2,alliance_3,alliance_4,alliance_5,alliance_6"
SECRETS = ("TWILIO_AUTH_TOKEN", "HELP_CONTACT", "TWILIO_ACCOUNT_SID", "TWILIO_MESSAGING_SERVICE_SID",
           "TWILIO_FROM_NUMBER", "SECRET_KEY", "EXPORT_KEY", "DATABASE_URL", "ALERT_SMS_TO", "CONSOLE_TIMEZONE")


def invoke(env: dict, *args: str, input: str | None = None):
    """The real CLI with exactly these settings (none inherited from the test machine's environment)."""
    from outreach.cli import cli

    cleared = {name: "" for name in SECRETS}
    return CliRunner().invoke(cli, list(args), env={**cleared, **env}, input=input, catch_exceptions=False)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subprocess_env(**settings: str) -> dict:
    """This machine's environment without the service's settings; this checkout's code first on the path."""
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return {**env, "PYTHONPATH": str(ROOT), **settings}


def test_import_before_db_upgrade_says_to_upgrade_and_writes_nothing(empty_db_url, tmp_path):
    path = tmp_path / "f.csv"
    path.write_text(HEADER + "\nA1,416-555-0101,2026-01-15,yes,6,6,5,6,6,6\nA2,416-555-0102,2026-01-15,maybe,6,6,5,6,6,6\n")
    result = invoke({"DATABASE_URL": empty_db_url}, "import-discharges", str(path), "--skip-invalid")
    assert result.exit_code == 1
    assert len(lines(result.output)) <= 2 and "Traceback" not in result.output
    assert "has no tables yet: run `outreach db upgrade` first" in result.output
    assert not (tmp_path / "f.rejected.csv").exists()  # nothing written before the failure


@pytest.mark.parametrize("command", [["waves", "list"], ["alerts", "list"], ["events"],
                                     ["responses", "--timepoint", "30"]])
def test_a_read_only_command_from_another_folder_names_the_missing_database_and_creates_none(tmp_path, command):
    """The default DATABASE_URL is relative: run from the wrong folder, it points at a file that is not there."""
    result = subprocess.run([sys.executable, "-m", "outreach.cli", *command], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, env=subprocess_env())
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and len(lines(result.stderr)) <= 2, result.stderr
    assert f"no database at {tmp_path / 'outreach.db'}" in result.stderr
    assert f"relative to the current folder {tmp_path}" in result.stderr and "outreach db upgrade" in result.stderr
    assert list(tmp_path.iterdir()) == []  # no stray empty database


def test_db_upgrade_creates_the_database_the_others_then_find(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert invoke({"DATABASE_URL": url}, "db", "upgrade").exit_code == 0
    assert invoke({"DATABASE_URL": url}, "alerts", "list").output == "no open alerts\n"


def test_an_unreachable_database_names_host_and_port_with_the_password_masked():
    port = free_port()
    url = f"postgresql+psycopg://outreach:s3cret-pw@127.0.0.1:{port}/study"
    result = invoke({"DATABASE_URL": url}, "alerts", "list")
    assert result.exit_code == 1
    assert "Traceback" not in result.output and len(lines(result.output)) <= 2, result.output
    assert f"cannot connect to the database at host 127.0.0.1, port {port}" in result.output
    assert f"outreach:***@127.0.0.1:{port}/study" in result.output and "connection refused" in result.output.lower()
    assert "s3cret-pw" not in result.output


@pytest.mark.parametrize("command", [["send-due"], ["worker", "--once"]])
def test_every_missing_twilio_setting_is_named_at_once_with_what_it_is_for(run_cli, command):
    result = run_cli(*command, extra_env={"SMS_BACKEND": "twilio", "TWILIO_ACCOUNT_SID": "", "TWILIO_AUTH_TOKEN": "",
                                          "TWILIO_MESSAGING_SERVICE_SID": "", "TWILIO_FROM_NUMBER": ""})
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "3 settings are not set" in result.output
    assert "  TWILIO_ACCOUNT_SID: Twilio account SID" in result.output
    assert "  TWILIO_AUTH_TOKEN: Twilio auth token" in result.output
    assert "  TWILIO_MESSAGING_SERVICE_SID or TWILIO_FROM_NUMBER: Messaging service to send from" in result.output
    assert "worker: started" not in result.output


def test_the_web_app_names_every_missing_setting_at_once(tmp_path):
    from outreach.config import ConfigError
    from webhooks.app import create_app

    with pytest.raises(ConfigError) as refused:
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "TWILIO_AUTH_TOKEN": "", "HELP_CONTACT": ""})
    assert "TWILIO_AUTH_TOKEN: Twilio auth token" in str(refused.value)
    assert "HELP_CONTACT: Phone number given to patients who text HELP" in str(refused.value)


def test_gunicorn_without_its_secrets_prints_a_short_message_not_tracebacks(tmp_path):
    """The Procfile's web line, run as written, without TWILIO_AUTH_TOKEN and HELP_CONTACT."""
    import shlex

    web = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    argv = shlex.split(web.removeprefix("web:"))
    argv[0] = str(Path(sys.executable).with_name("gunicorn"))
    env = subprocess_env(DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}", PORT=str(free_port()),
                         PATH=str(Path(sys.executable).parent))
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output and len(lines(output)) <= 4, output
    assert "the web app cannot start: 2 settings are not set" in output
    assert "TWILIO_AUTH_TOKEN:" in output and "HELP_CONTACT:" in output


def test_chat_with_a_server_that_does_not_answer_says_so_before_writing_anything(run_cli, make_patient, session):
    make_patient(patient_id="C1")
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli("chat", "C1", "--url", url, "--timepoint", "30", input="yes\n",
                     extra_env={"TWILIO_AUTH_TOKEN": "token"})
    assert result.exit_code == 1
    assert lines(result.output) == [f"error: the server at {url} does not answer (connection refused); start it, "
                                    "or check --url"]
    assert session.scalar(select(func.count()).select_from(FollowUp)) == 0  # no follow-up made for nothing


def test_a_file_that_is_not_there_is_named_with_its_full_path(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli("import-discharges", "discharges.csv")
    assert result.exit_code == 1
    assert lines(result.output) == [f"error: no file at {tmp_path / 'discharges.csv'} (looked for 'discharges.csv' "
                                    f"in {tmp_path})"]


def test_an_unexpected_failure_is_one_line_with_a_reference_and_its_traceback_only_with_debug(run_cli, monkeypatch,
                                                                                            caplog):
    from outreach.staff import alerts

    def broken(*args, **kwargs):
        raise RuntimeError("engine exploded near +14165550123")

    monkeypatch.setattr(alerts, "open_alerts", broken)
    with caplog.at_level(logging.ERROR):
        result = run_cli("alerts", "list")
    assert result.exit_code == 1
    (line,) = lines(result.output)
    assert line.startswith("error: unexpected failure (RuntimeError: engine exploded near +1******0123); reference ")
    assert "--debug" in line and "4165550123" not in line
    assert not [r for r in caplog.records if r.exc_info]  # no traceback anywhere without --debug
    reference = line.split("reference ")[1].split(";")[0]
    with caplog.at_level(logging.ERROR):
        debugged = run_cli("--debug", "alerts", "list")
    assert debugged.exit_code == 1 and "Traceback" not in debugged.output
    (record,) = [r for r in caplog.records if r.exc_info]
    assert record.exc_info[0] is RuntimeError and "reference" in record.getMessage()
    assert reference not in debugged.output  # a new reference for the new run


def test_an_older_schema_met_mid_command_says_to_upgrade(run_cli, engine):
    """A table this version needs is not there (a database from an older version): the same sentence."""
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("DROP TABLE waves CASCADE" if engine.dialect.name == "postgresql" else "DROP TABLE waves"))
    result = run_cli("waves", "list")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert lines(result.output) == [f"error: the database at {where(engine)} has no table 'waves': run `outreach db "
                                    "upgrade` first (it creates or migrates the schema; safe to repeat)"]


def where(engine) -> str:
    from outreach.errors import where_is

    return where_is(engine.url.render_as_string(hide_password=False))
