"""Console benchmark: a patient page with 2,000 messages and the alerts queue with 500 open alerts.

Seeds the data set-based, then times the real Flask app (test client: the server's whole request,
from routing and the access check to the rendered HTML) and counts the SQL statements per page, on
SQLite and, when BENCH_POSTGRES_URL is set, on PostgreSQL.  Targets (issue 11): patient page under
300 ms, alerts queue under 200 ms, a fixed number of queries per page.

    python benchmarks/console_bench.py [--messages 2000] [--alerts 500] [--repeat 15]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import statistics
import tempfile
import time

from argon2 import PasswordHasher
from sqlalchemy import event, insert, select, text

from outreach.db import make_engine, upgrade
from outreach.models import Alert, Answer, Episode, FollowUp, Message, Patient, User

START = dt.datetime(2026, 10, 1, 12, 0)
PASSWORD = "benchmark password 2026"


def seed(engine, messages: int, alerts: int) -> int:
    """One patient with ``messages`` texts, and ``alerts`` other patients with an open alert each after five
    texts.  Returns the first patient's id."""
    with engine.begin() as conn:
        conn.execute(insert(User), [dict(email="bench@study.example.org", role="coordinator",
                                         password_hash=PasswordHasher().hash(PASSWORD))])
        n = alerts + 1
        conn.execute(insert(Patient), [dict(patient_id=f"B{i:05d}", phone=f"+1416{5000000 + i:07d}",
                                            timezone="America/Toronto", language="en", sms_consent=True,
                                            phone_valid=True) for i in range(n)])
        pks = [pk for (pk,) in conn.execute(select(Patient.id).order_by(Patient.id))]
        conn.execute(insert(Episode), [dict(patient_id=pk, discharge_date=dt.date(2026, 9, 1)) for pk in pks])
        eps = dict(conn.execute(select(Episode.patient_id, Episode.id)).all())
        conn.execute(insert(FollowUp), [dict(patient_id=pk, episode_id=eps[pk], timepoint_days=30,
                                             state="crisis" if i else "completed", invited_at=START)
                                        for i, pk in enumerate(pks)])
        fus = dict(conn.execute(select(FollowUp.patient_id, FollowUp.id)).all())
        first = pks[0]
        rows = [dict(direction="in" if k % 2 else "out", patient_id=first, followup_id=fus[first],
                     kind=None if k % 2 else "reply", body=f"message number {k}", status="processed" if k % 2
                     else "delivered", provider_sid=f"SM{k:032d}", created_at=START + dt.timedelta(minutes=k))
                for k in range(messages)]
        for pk in pks[1:]:
            rows += [dict(direction="in" if k % 2 else "out", patient_id=pk, followup_id=fus[pk],
                          kind=None if k % 2 else "reply", body=f"text {k}", status="processed", provider_sid=None,
                          created_at=START + dt.timedelta(minutes=k)) for k in range(6)]
        for i in range(0, len(rows), 5000):
            conn.execute(insert(Message), rows[i:i + 5000])
        conn.execute(insert(Answer), [dict(followup_id=fus[first], question_key=q, raw_text="7", value=3)
                                      for q in ("self_efficacy", "mental_health", "physical_health")])
        last = dict(conn.execute(select(Message.patient_id, Message.id).where(Message.body == "text 5")).all())
        conn.execute(insert(Alert), [dict(kind="crisis", patient_id=pk, followup_id=fus[pk], message_id=last[pk],
                                          opened_at=START + dt.timedelta(hours=i)) for i, pk in enumerate(pks[1:])])
    return first


def timed(client, path: str, engine, repeat: int) -> tuple[float, float, int, int]:
    """Median and worst milliseconds, statements per request, response size."""
    statements = {"n": 0}

    def count(*_):
        statements["n"] += 1

    client.get(path)  # warm: templates compiled, connections open
    event.listen(engine, "before_cursor_execute", count)
    times, size = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(path)
        times.append(1000 * (time.perf_counter() - start))
        assert response.status_code == 200, response.status_code
        size = len(response.data)
    event.remove(engine, "before_cursor_execute", count)
    return statistics.median(times), max(times), statements["n"] // repeat, size


def bench(label: str, url: str, messages: int, alerts: int, repeat: int) -> None:
    from webhooks.app import create_app

    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(engine)
    first = seed(engine, messages, alerts)
    engine.dispose()
    app = create_app({"DATABASE_URL": url, "TWILIO_AUTH_TOKEN": "bench", "HELP_CONTACT": "1-800-555-0199",
                      "SECRET_KEY": "bench", "CONSOLE_INSECURE_COOKIES": "1"})
    app_engine = app.extensions["outreach"]["engine"]
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/console/sign-in").get_data(as_text=True))
    client.post("/console/sign-in", data={"email": "bench@study.example.org", "password": PASSWORD,
                                          "csrf_token": token.group(1)})
    for name, path, target in [(f"patient page, {messages} messages", f"/console/patients/{first}", 300),
                               (f"alerts queue, {alerts} open alerts", "/console/alerts", 200)]:
        median, worst, statements, size = timed(client, path, app_engine, repeat)
        verdict = "meets" if median < target else "MISSES"
        print(f"{label:10s} {name:32s} median {median:6.0f} ms, worst {worst:6.0f} ms, {statements:2d} statements, "
              f"{size / 1024:5.0f} KB  ({verdict} the {target} ms target)")
    app_engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--alerts", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench("sqlite", f"sqlite:///{tmp}/bench.db", args.messages, args.alerts, args.repeat)
    pg = os.environ.get("BENCH_POSTGRES_URL")
    if pg:
        bench("postgresql", pg, args.messages, args.alerts, args.repeat)


if __name__ == "__main__":
    main()
