"""GET /metrics: what Prometheus scrapes (issue 27).  Real app, real databases; counters are per process here, so
each test reads what changed between two scrapes."""
from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from prometheus_client.parser import text_string_to_metric_families

from outreach.clock import utcnow
from outreach.db import unit_of_work
from outreach.models import Alert, Message
from outreach.states import Delivery

TOKEN = "metrics-token-0123456789abcdef0123456789"
ROOT = Path(__file__).resolve().parent.parent


def samples(text: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(scraped: dict, name: str, **labels) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def metrics_app(web_env):
    from webhooks.app import create_app

    application = create_app({**web_env, "METRICS_TOKEN": TOKEN})
    yield application
    application.extensions["outreach"]["engine"].dispose()


def scrape(client) -> dict:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return samples(response.get_data(as_text=True))


def test_metrics_are_off_without_a_token_and_refuse_a_wrong_one(app, metrics_app):
    assert app.test_client().get("/metrics").status_code == 404  # no METRICS_TOKEN: nothing to scrape here
    client = metrics_app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": TOKEN}).status_code == 401


def test_a_guessable_metrics_token_turns_metrics_off_and_says_so_but_texts_are_still_answered(web_env, caplog):
    """Monitoring must never stop the service that answers patients (a crisis text above all): a short token keeps
    /metrics off, with an error naming the setting, never the token."""
    from webhooks.app import create_app

    app = create_app({**web_env, "METRICS_TOKEN": "prometheus"})
    client = app.test_client()
    assert client.get("/metrics", headers={"Authorization": "Bearer prometheus"}).status_code == 404
    assert "METRICS_TOKEN is too short (10 characters; at least 32" in caplog.text
    assert "prometheus" not in caplog.text.replace("METRICS_TOKEN", "")
    assert client.get("/healthz").status_code == 200
    app.extensions["outreach"]["engine"].dispose()


def test_the_console_s_sign_in_does_not_stand_in_front_of_the_metrics(console_env):
    from webhooks.app import create_app

    application = create_app({**console_env, "METRICS_TOKEN": TOKEN})
    client = application.test_client()
    assert value(scrape(client), "outreach_database_up") == 1  # a bearer token, no console session
    assert client.get("/metrics").status_code == 401  # and no redirect to the sign-in page
    application.extensions["outreach"]["engine"].dispose()


def test_texts_queues_alerts_and_the_worker_as_prometheus_sees_them(metrics_app, make_patient, make_followup,
                                                                   sessions):
    from outreach.messaging.webhook_client import SignedWebhookClient, flask_post

    from .conftest import AUTH_TOKEN, PUBLIC_BASE

    client = metrics_app.test_client()
    twilio = SignedWebhookClient(flask_post(client), PUBLIC_BASE, AUTH_TOKEN)
    patient = make_patient(phone="+14165550123")
    make_followup(patient)
    before = scrape(client)
    twilio.text("+14165550123", "4", sid="SM" + "a" * 32)
    twilio.text("+14165550123", "4", sid="SM" + "a" * 32)  # Twilio delivering the same text again
    twilio.text("+14165550123", "I want to end my life")
    assert client.post("/twilio/sms", data={"From": "+14165550123", "Body": "x"}).status_code == 403  # unsigned
    now = utcnow()
    with unit_of_work(sessions) as s:
        for status, send_after in [(Delivery.PENDING, now - dt.timedelta(minutes=1)),
                                   (Delivery.PENDING, now + dt.timedelta(hours=9)),
                                   (Delivery.CLAIMED, now), (Delivery.FAILED, now)]:
            s.add(Message(direction="out", patient_id=patient.id, to_number=patient.phone, body="hello",
                          status=status, send_after=send_after, kind="invitation"))
        s.add(Message(direction="out", patient_id=patient.id, to_number=patient.phone, body="sent one",
                      status=Delivery.SENT, sent_at=now, kind="invitation"))
    after = scrape(client)
    changed = {outcome: value(after, "outreach_inbound_texts_total", outcome=outcome)
               - value(before, "outreach_inbound_texts_total", outcome=outcome)
               for outcome in ("applied", "repeat", "spooled", "refused")}
    assert changed == {"applied": 2, "repeat": 1, "spooled": 0, "refused": 1}
    assert value(after, "outreach_webhook_seconds_count", endpoint="sms") \
        - value(before, "outreach_webhook_seconds_count", endpoint="sms") == 4
    assert value(after, "outreach_outbound_texts", state="queued") == 1
    assert value(after, "outreach_outbound_texts", state="held") == 1
    assert value(after, "outreach_outbound_texts", state="claimed") == 1
    assert value(after, "outreach_outbound_texts", state="failed") == 1
    assert value(after, "outreach_outbound_texts", state="sent") == 1  # by a worker; not the webhook's own answers
    assert value(after, "outreach_outbound_texts", state="answered") >= 2
    assert value(after, "outreach_crisis_alerts", state="open") == 1
    with unit_of_work(sessions) as s:
        assert s.query(Alert).count() == 1
    assert value(after, "outreach_database_up") == 1
    assert value(after, "outreach_worker_heartbeat_age_seconds") == float("inf")  # no worker has ever run
    assert value(after, "outreach_jobs", state="queued") == 0
    assert value(after, "outreach_alert_response_seconds") == 12 * 3600
    assert value(after, "outreach_spool_texts") == 0
    assert value(after, "outreach_send_rate_limit_per_second", sender="twilio") == 1
    assert value(after, "outreach_send_rate_per_second", sender="twilio") == pytest.approx(1 / 60)
    text = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).get_data(as_text=True)
    for patient_data in ("5550123", "end my life", "hello", patient.patient_id):
        assert patient_data not in text


def test_a_database_outage_shows_as_spooled_texts_and_database_errors(tmp_path, spool_path):
    from webhooks.app import create_app
    from outreach.messaging.webhook_client import SignedWebhookClient, flask_post

    with socket.socket() as s:  # a port where nothing answers
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    application = create_app({"DATABASE_URL": f"postgresql+psycopg://u:p@127.0.0.1:{port}/none",
                              "TWILIO_AUTH_TOKEN": "t", "HELP_CONTACT": "1", "METRICS_TOKEN": TOKEN,
                              "PUBLIC_BASE_URL": "https://outreach.example.org", "SPOOL_DIR": str(spool_path)})
    client = application.test_client()
    before = scrape(client)
    twilio = SignedWebhookClient(flask_post(client), "https://outreach.example.org", "t")
    assert twilio.text("+14165550123", "5")[0] == 200
    after = scrape(client)
    assert value(after, "outreach_database_up") == 0
    assert value(after, "outreach_spool_texts") == 1
    assert value(after, "outreach_inbound_texts_total", outcome="spooled") \
        - value(before, "outreach_inbound_texts_total", outcome="spooled") == 1
    assert value(after, "outreach_database_errors_total", kind="unavailable") \
        > value(before, "outreach_database_errors_total", kind="unavailable")
    # one scrape that cannot reach the database is one error, not two (the engine's listener counts it already)
    again = scrape(client)
    assert value(again, "outreach_database_errors_total", kind="unavailable") \
        - value(after, "outreach_database_errors_total", kind="unavailable") == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_gunicorn_workers_counts_add_up_and_the_loopback_port_serves_them(web_env, tmp_path):
    """The Procfile's web line with two workers: every scrape, whichever worker answers it, counts every text."""
    from outreach.messaging.webhook_client import SignedWebhookClient, http_post

    from .conftest import AUTH_TOKEN

    web = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    argv = shlex.split(web.removeprefix("web:"))
    argv[0] = str(Path(sys.executable).with_name("gunicorn"))
    port, metrics_port = _free_port(), _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**web_env, "PATH": str(Path(sys.executable).parent), "PORT": str(port), "WEB_CONCURRENCY": "2",
           "WEB_THREADS": "2", "METRICS_TOKEN": TOKEN, "METRICS_PORT": str(metrics_port),
           "PUBLIC_BASE_URL": base, "PYTHONPATH": str(ROOT)}
    log = tmp_path / "gunicorn.log"
    with log.open("w") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        while time.monotonic() < deadline and (len(children.read_text().split()) < 2 or
                                               _get_or_none(f"{base}/healthz") is None):
            time.sleep(0.1)
        assert json.loads(_get(f"{base}/healthz")[1])["database"] == "ok", log.read_text()
        twilio = SignedWebhookClient(http_post(base), base, AUTH_TOKEN)
        for n in range(12):
            assert twilio.text(f"+1416555{n:04d}", "hello")[0] == 200
        for _ in range(6):  # several scrapes: each may reach either worker
            scraped = samples(_get(f"{base}/metrics", TOKEN)[1])
            assert value(scraped, "outreach_inbound_texts_total", outcome="applied") == 12, log.read_text()
            assert value(scraped, "outreach_webhook_seconds_count", endpoint="sms") == 12
        status, body = _get(f"http://127.0.0.1:{metrics_port}/metrics")  # loopback: no token
        assert status == 200
        assert value(samples(body), "outreach_inbound_texts_total", outcome="applied") == 12
        assert value(samples(body), "outreach_database_up") == 1
        assert "555" not in body and "hello" not in body
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _get_or_none(url: str):
    try:
        return _get(url)
    except OSError:
        return None


def test_the_worker_s_database_errors_join_the_host_s_metrics(db_url, env, tmp_path):
    """With PROMETHEUS_MULTIPROC_DIR set for the worker too, its database errors add to the host's /metrics."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    from .db_proxy import TcpProxy

    if not db_url.startswith("postgresql"):
        pytest.skip("the database cut through a loopback proxy: PostgreSQL")
    url = make_url(db_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    folder = tmp_path / "metrics"
    folder.mkdir()
    worker_env = {**os.environ, **env, "DATABASE_URL": url.set(host="127.0.0.1", port=proxy.port)
                  .render_as_string(hide_password=False), "SMS_BACKEND": "simulator", "PYTHONPATH": str(ROOT),
                  "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    worker = subprocess.Popen([sys.executable, "-m", "outreach.cli", "worker"], cwd=ROOT, env=worker_env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "worker: started" in worker.stdout.readline()
        proxy.cut()
        time.sleep(3)  # a few rounds while the database is away
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(folder))
        scraped = samples(generate_latest(registry).decode())
        assert value(scraped, "outreach_database_errors_total", kind="unavailable") >= 1
    finally:
        proxy.restore()
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=30)
        proxy.close()
