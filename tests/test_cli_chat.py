"""`outreach chat` (the preview) needs no secret, shows no log lines from its throw-away copy, and labels the
copy's own crisis alert as the preview's."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from outreach.models import Alert, Message

NO_SECRETS = {"TWILIO_AUTH_TOKEN": "", "HELP_CONTACT": "", "SECRET_KEY": ""}


def test_the_preview_needs_no_secret_and_stores_nothing(run_cli, make_patient, session):
    make_patient(patient_id="PV1")
    result = run_cli("chat", "PV1", input="yes\n7\nhelp\n\n", extra_env=NO_SECRETS)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "preview as patient PV1" in out and "30-day check-in" in out
    assert "0 (not at all) to 10 (completely)" in out  # the survey went on after "yes"
    assert "[HELP_CONTACT]" in out  # the help reply, with a placeholder for the contact that is not set
    assert session.scalar(select(func.count()).select_from(Message)) == 0  # the real database is untouched


def test_the_preview_shows_no_log_lines_and_labels_its_own_alert(db_url, make_patient, session):
    """As a coordinator runs it (a process with logging set up): no migration lines, no 'alert opened'."""
    make_patient(patient_id="PV2")
    env = {k: v for k, v in os.environ.items() if k not in ("TWILIO_AUTH_TOKEN", "HELP_CONTACT", "SECRET_KEY",
                                                            "ALERT_SMS_TO", "LOG_LEVEL")}
    result = subprocess.run([sys.executable, "-m", "outreach.cli", "chat", "PV2"], input="yes\nI want to die\n\n",
                            capture_output=True, text=True, timeout=120,
                            env={**env, "DATABASE_URL": db_url, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # neither alembic's upgrade of the copy nor "WARNING … alert 1 opened"
    assert "988" in result.stdout  # the safety reply
    assert ("! preview: this text opened a crisis alert in the throw-away copy only; no coordinator was alerted and "
            "nothing was sent") in result.stdout
    assert session.scalar(select(func.count()).select_from(Alert)) == 0  # no real alert
