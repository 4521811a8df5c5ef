import json
import os

import pytest

from webhooks.app import create_app


@pytest.fixture
def make_app():
    apps = []

    def make(config):
        app = create_app(config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["outreach"]["engine"].dispose()


def test_healthz_ok_when_database_answers(web_env, make_app):
    client = make_app(web_env).test_client()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok", "spooled": 0}


def test_healthz_503_when_database_does_not_answer(tmp_path, make_app):
    url = f"sqlite:///{tmp_path}/missing-dir/x.db"
    config = {"DATABASE_URL": url, "TWILIO_AUTH_TOKEN": "t", "HELP_CONTACT": "1"}
    response = make_app(config).test_client().get("/healthz")
    assert response.status_code == 200  # texts can still be spooled
    assert response.get_json() == {"status": "degraded", "database": "unavailable", "spooled": 0}


def test_healthz_503_when_neither_database_nor_spool_can_take_a_text(tmp_path, make_app):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the spool folder should be")
    config = {"DATABASE_URL": f"sqlite:///{tmp_path}/missing-dir/x.db", "TWILIO_AUTH_TOKEN": "t", "HELP_CONTACT": "1",
              "SPOOL_DIR": str(blocked / "spool")}
    response = make_app(config).test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "unavailable"


def test_app_refuses_to_start_without_its_secret(monkeypatch, tmp_path):
    from outreach.config import ConfigError

    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN"):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "HELP_CONTACT": "1"})


def test_app_refuses_to_start_with_an_on_call_number_it_cannot_text(web_env, tmp_path):
    """A typo must not leave coordinators believing they will be texted about crises."""
    from outreach.config import ConfigError

    with pytest.raises(ConfigError, match="ALERT_SMS_TO: a number is not a valid phone number"):
        create_app({**web_env, "ALERT_SMS_TO": "+14165550100, 555-01"})


def test_worker_refuses_to_start_with_an_on_call_number_it_cannot_text(env):
    """Checked at start: inside the loop the error would only be logged and retried, minute after minute."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "outreach.cli", "worker", "--once"], capture_output=True,
                            text=True, timeout=60,
                            env={**os.environ, **env, "SMS_BACKEND": "simulator", "ALERT_SMS_TO": "555-01"})
    assert result.returncode == 2 and "error: ALERT_SMS_TO: a number" in result.stderr
    assert "worker: started" not in result.stdout


def test_cli_help_lists_every_command(run_cli):
    out = run_cli("--help").output
    import re

    commands = out.split("Commands:")[1]
    listed = dict(re.findall(r"^  (\S+)\s+(.+)$", commands, re.M))
    assert set(listed) == {"db", "demo", "serve", "import-discharges", "alerts", "users", "lexicon", "inbox", "chat",
                           "waves", "send-due", "tick", "worker", "export", "report", "patients", "events",
                           "responses", "backup", "restore", "retention", "study", "import-admissions", "alliance",
                           "care-teams"}
    assert all(len(text) > 10 and not text.endswith("...") for text in listed.values())


def test_command_needing_a_secret_names_it(run_cli, make_patient, monkeypatch):
    """Talking to a live server signs with the real token (the preview needs none: tests/test_cli_chat.py)."""
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    make_patient(patient_id="Q1")
    result = run_cli("chat", "Q1", "--url", "http://127.0.0.1:9", input="")
    assert result.exit_code == 2 and "TWILIO_AUTH_TOKEN is not set" in result.output


def test_procfile_web_process_serves_the_app(web_env, tmp_path):
    """The Procfile's ``web`` line, run as written (gunicorn with webhooks.gunicorn_conf) on PORT."""
    import shlex
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    web = next(line for line in (root / "Procfile").read_text().splitlines() if line.startswith("web:"))
    argv = shlex.split(web.removeprefix("web:"))
    assert argv[0] == "gunicorn"
    argv[0] = str(Path(sys.executable).with_name("gunicorn"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**web_env, "PATH": str(Path(sys.executable).parent), "PORT": str(port),
           "WEB_CONCURRENCY": "2", "WEB_THREADS": "2"}
    log = tmp_path / "gunicorn.log"
    with log.open("w") as out:
        proc = subprocess.Popen(argv, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline, body = time.monotonic() + 20, None
        while body is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read()
            except OSError:
                time.sleep(0.1)
        assert json.loads(body)["status"] == "ok", log.read_text()
        # gunicorn forks its workers one after another: the first may answer before the second exists
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        while len(children.read_text().split()) < 2 and time.monotonic() < deadline + 20:
            time.sleep(0.1)
        assert len(children.read_text().split()) == 2  # WEB_CONCURRENCY reached gunicorn
    finally:
        proc.terminate()
        proc.wait(timeout=20)
