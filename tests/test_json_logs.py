"""LOG_FORMAT=json (issue 27): one JSON object a line, still masked, with one request id for a text from the webhook
that spooled it to the worker that applied it; a console page's id is in its response."""
from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from outreach.logs import configure_logging
from outreach.messaging.webhook_client import SignedWebhookClient, flask_post

from .conftest import AUTH_TOKEN, PUBLIC_BASE

ROOT = Path(__file__).resolve().parent.parent
SID = "SM" + "7" * 32
PHONE, WORDS = "+14165550123", "I want to kill myself tonight"


class Captured:
    def __init__(self):
        self.stream = io.StringIO()

    def readouterr(self) -> SimpleNamespace:
        text, self.stream = self.stream.getvalue(), self.stream
        self.stream.seek(0)
        self.stream.truncate()
        return SimpleNamespace(err=text)


@pytest.fixture(autouse=True)
def capsys(monkeypatch):
    """What the service logs, as JSON (LOG_FORMAT=json when the app starts)."""
    monkeypatch.setenv("LOG_FORMAT", "json")
    captured = Captured()
    handler = configure_logging()
    previous = handler.setStream(captured.stream)
    yield captured
    handler.setStream(previous)
    monkeypatch.delenv("LOG_FORMAT")
    configure_logging()  # the next tests' lines are text again


def json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line is one JSON object, or this fails


def assert_no_patient_data(text: str) -> None:
    assert "5550123" not in text and "kill myself" not in text


def test_a_text_keeps_its_request_id_from_the_webhook_to_the_worker(env, make_patient, spool_path, capsys):
    from webhooks.app import create_app

    make_patient(phone=PHONE)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    # This host's web app while the database is away: the text is spooled.
    down = create_app({**env, "DATABASE_URL": f"postgresql+psycopg://u:p@127.0.0.1:{dead_port}/away",
                       "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "HELP_CONTACT": "1-800-555-0199",
                       "PUBLIC_BASE_URL": PUBLIC_BASE})
    twilio = SignedWebhookClient(flask_post(down.test_client()), PUBLIC_BASE, AUTH_TOKEN)
    assert twilio.text(PHONE, WORDS, sid=SID)[0] == 200
    web = capsys.readouterr().err
    web_lines = json_lines(web)
    mine = [line for line in web_lines if line["request_id"] == SID]
    assert any("POST /twilio/sms 200" in line["message"] for line in mine), web
    assert_no_patient_data(web)
    # The worker of the same host, the database back: it applies the spooled text and opens the alert.
    worker_env = {**os.environ, **env, "LOG_FORMAT": "json", "SMS_BACKEND": "simulator", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "outreach.cli", "worker"], cwd=ROOT, env=worker_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            if "alert" in line and "opened" in line:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=60)[1]
    worker = "".join(seen) + rest
    worker_lines = json_lines(worker)
    opened = [line for line in worker_lines if "opened" in line["message"]]
    assert opened and opened[0]["request_id"] == SID and opened[0]["level"] == "WARNING", worker
    assert "+1******0123" in opened[0]["message"]
    assert_no_patient_data(worker)


def test_a_console_page_logs_under_the_id_in_its_response(console_client, capsys):
    client = console_client("coordinator")
    capsys.readouterr()
    response = client.get("/console/alerts")
    assert response.status_code == 200
    rid = response.headers["X-Request-Id"]
    lines = json_lines(capsys.readouterr().err)
    assert any(line["request_id"] == rid and "GET /console/alerts 200" in line["message"] for line in lines)
    proxied = client.get("/console/alerts", headers={"X-Request-Id": "lb-42.abc"})
    assert proxied.headers["X-Request-Id"] == "lb-42.abc"  # a proxy's id is kept, to follow a request through it
    assert client.get("/console/alerts", headers={"X-Request-Id": "not a valid id {}"}).headers["X-Request-Id"] \
        != "not a valid id {}"


def test_tracebacks_are_one_masked_json_line(capsys):
    import logging

    try:
        raise ValueError(f"cannot text {PHONE}: {WORDS!r}")
    except ValueError:
        logging.getLogger("outreach.test").exception("while texting %s", PHONE)
    (line,) = json_lines(capsys.readouterr().err)
    assert line["level"] == "ERROR" and "ValueError" in line["exception"] and line["request_id"] is None
    assert_no_patient_data(json.dumps(line))


def test_a_text_whose_request_died_is_applied_by_the_worker_under_its_own_id(make_patient, sessions, settings,
                                                                              capsys):
    import datetime as dt

    from outreach.clock import utcnow
    from outreach.db import unit_of_work
    from outreach.messaging.inbound import Inbox
    from outreach.models import Message
    from outreach.states import Processing

    make_patient(phone=PHONE)
    with unit_of_work(sessions) as s:  # stored by a web worker killed before it applied it
        s.add(Message(direction="in", provider_sid=SID, from_number=PHONE, body=WORDS, status=Processing.RECEIVED,
                      created_at=utcnow() - dt.timedelta(minutes=10)))
    Inbox(sessions, settings).recover_stuck()  # the worker's minute duties
    text = capsys.readouterr().err
    lines = json_lines(text)
    assert any(line["request_id"] == SID and "applied late" in line["message"] for line in lines), text
    assert any(line["request_id"] == SID and "opened" in line["message"] for line in lines), text
    assert_no_patient_data(text)


def test_gunicorn_s_own_lines_are_json_too(web_env, tmp_path):
    """The Procfile's web line with LOG_FORMAT=json: gunicorn's start, its workers' boots and its stop are JSON
    objects like the app's, so a log shipper reading one object a line loses none (a worker timeout among them)."""
    import shlex
    import urllib.request

    web = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    argv = shlex.split(web.removeprefix("web:"))
    argv[0] = str(Path(sys.executable).with_name("gunicorn"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**web_env, "PATH": str(Path(sys.executable).parent), "PORT": str(port), "WEB_CONCURRENCY": "1",
           "WEB_THREADS": "1", "LOG_FORMAT": "json", "PYTHONPATH": str(ROOT)}
    log = tmp_path / "gunicorn.log"
    with log.open("w") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
                    assert response.status == 200
                    break
            except OSError:
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    lines = json_lines(log.read_text())
    assert any(line["logger"] == "gunicorn.error" and "Booting worker" in line["message"] for line in lines), lines
    assert any("GET /healthz 200" in line["message"] for line in lines)
    assert len([line for line in lines if "GET /healthz 200" in line["message"]]) == 1  # no line twice


def test_an_unsigned_webhook_does_not_log_under_the_message_sid_it_claims(app, capsys):
    """Anyone can post a form naming a real text's MessageSid; without Twilio's signature its 403 is not logged under
    that text's id (which would mix a stranger's requests into the trail of, say, a crisis text)."""
    response = app.test_client().post("/twilio/sms", data={"MessageSid": SID, "From": PHONE, "Body": "x"})
    assert response.status_code == 403
    assert response.headers["X-Request-Id"] != SID
    lines = json_lines(capsys.readouterr().err)
    assert not any(line["request_id"] == SID for line in lines), lines
    assert any("POST /twilio/sms 403" in line["message"] for line in lines)
