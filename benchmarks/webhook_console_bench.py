"""Does the console slow the webhook?  The webhook benchmark's load (gunicorn + PostgreSQL on
loopback, signed inbound texts over 50 connections) measured alone and while a signed-in
coordinator reloads the crisis-alert queue twice a second, interleaved, in the same run.
Target (issue 11): the webhook's throughput drops by no more than 5%.

    BENCH_POSTGRES_URL=postgresql+psycopg://… python benchmarks/webhook_console_bench.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import http.client
import os
import re
import statistics
import sys
import threading
import time
import urllib.parse

from argon2 import PasswordHasher
from sqlalchemy import insert, select

import webhook_bench as wb  # beside this file

PASSWORD = "benchmark password 2026"


def seed_console(url: str, alerts: int) -> None:
    """A coordinator account, and ``alerts`` open crisis alerts for the queue to show."""
    from outreach.db import make_engine
    from outreach.models import Alert, Message, Patient, User

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(User), [dict(email="bench@study.example.org", role="coordinator",
                                         password_hash=PasswordHasher().hash(PASSWORD))])
        pks = list(conn.scalars(select(Patient.id).order_by(Patient.id).limit(alerts)))
        ids = conn.execute(insert(Message).returning(Message.id, sort_by_parameter_order=True), [
            dict(direction="in", patient_id=pk, body="I want to die", status="processed") for pk in pks]).scalars()
        conn.execute(insert(Alert), [dict(kind="crisis", patient_id=pk, message_id=mid) for pk, mid in zip(pks, ids)])
    engine.dispose()


class Coordinator(threading.Thread):
    """Signs in, then reloads /console/alerts every ``every`` seconds until stopped."""

    def __init__(self, port: int, every: float = 0.5):
        super().__init__(daemon=True)
        self.port, self.every, self.stop, self.pages, self.failures = port, every, threading.Event(), 0, 0
        self.cookie = ""

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Cookie": self.cookie}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read().decode()
        for name, value in response.getheaders():
            if name.lower() == "set-cookie" and value.startswith("outreach_session="):
                self.cookie = value.split(";", 1)[0]
        conn.close()
        return response.status, text

    def run(self) -> None:
        _, page = self.request("GET", "/console/sign-in")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        status, _ = self.request("POST", "/console/sign-in", urllib.parse.urlencode(
            {"email": "bench@study.example.org", "password": PASSWORD, "csrf_token": token}))
        if status != 302:
            sys.exit(f"the benchmark's coordinator could not sign in ({status})")
        while not self.stop.is_set():
            started = time.monotonic()
            status, _ = self.request("GET", "/console/alerts")
            self.pages += 1
            self.failures += status != 200
            self.stop.wait(max(0.0, self.every - (time.monotonic() - started)))


def measure(label: str, phones: list[str], rounds: int, run: str, env: dict[str, str], console: bool) -> float:
    per_conn = wb.build_requests(phones, rounds, run)
    total = sum(len(r) for r in per_conn)
    port = wb.free_port()
    proc = wb.start_gunicorn("webhooks.app:create_app()", port, env)
    coordinator = Coordinator(port)
    try:
        wb.load(port, wb.build_requests(phones[:50], 1, f"w{run}"))  # warm up (not counted)
        if console:
            coordinator.start()
            time.sleep(1)
        elapsed, latencies, errors = wb.load(port, per_conn)
    finally:
        coordinator.stop.set()
        if console:
            coordinator.join(timeout=30)
        proc.terminate()
        proc.wait(timeout=30)
    extra = f"; alerts page loaded {coordinator.pages} times ({coordinator.failures} not 200)" if console else ""
    print(f"{label:34s} {total / elapsed:7.0f} msg/s, p50 {wb.pct(latencies, 50):6.1f} ms, "
          f"p99 {wb.pct(latencies, 99):6.1f} ms, errors {errors}{extra}", flush=True)
    return total / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--alerts", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    url = os.environ.get("BENCH_POSTGRES_URL")
    if not url:
        sys.exit("set BENCH_POSTGRES_URL to a PostgreSQL database the benchmark may wipe")
    phones = wb.seed(url, args.patients)
    seed_console(url, args.alerts)
    env = {**os.environ, "DATABASE_URL": url, "TWILIO_AUTH_TOKEN": wb.TOKEN, "HELP_CONTACT": "1-800-555-0199",
           "PUBLIC_BASE_URL": wb.BASE, "PYTHONPATH": str(wb.ROOT), "SECRET_KEY": "bench-secret",
           "CONSOLE_INSECURE_COOKIES": "1"}
    alone, loaded = [], []
    for rep in range(args.repeat):
        alone.append(measure("webhook alone", phones, args.rounds, f"a{rep}", env, console=False))
        loaded.append(measure("webhook + alerts page 2x a second", phones, args.rounds, f"c{rep}", env,
                              console=True))
    ratio = statistics.median(c / a for a, c in zip(alone, loaded))
    print(f"median of {args.repeat}: alone {statistics.median(alone):.0f} msg/s, with the console "
          f"{statistics.median(loaded):.0f} msg/s: {ratio:.3f} x ({100 * (1 - ratio):+.1f}% drop; target <= 5%)")


if __name__ == "__main__":
    main()
