"""Retention benchmark: the daily pass over a large study, and the webhook's latency while it runs.

A PostgreSQL database (BENCH_POSTGRES_URL; its tables are dropped and made again) is filled in SQL with N
participants discharged two years ago, each with 4 completed follow-ups of 20 texts (every text and phone number
due for erasure under RETAIN_MESSAGE_BODIES_DAYS=30 and RETAIN_PHONES_DAYS_AFTER_LAST_CONTACT=60), plus 200
participants in an open survey, and 10 audit rows per participant (1 in 100 a phone correction with its old and new
number).  Then ``outreach.study.retention.run`` erases everything due (as the worker's daily
pass does, without its per-minute budget) while another thread texts the real webhook (signed, through the Flask
app) as the participants in an open survey, one text every 50 ms: it prints the pass's duration, what it erased,
and the webhook's median, 99th percentile and slowest request (target: none over 2 s).

    BENCH_POSTGRES_URL=postgresql+psycopg://... python benchmarks/retention_bench.py [--participants 100000]
"""
from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

from sqlalchemy import text

from outreach.config import load_settings
from outreach.db import make_engine, session_factory, upgrade
from outreach.study import retention

AUTH = "bench-auth-token-0123456789abcdef"
BASE = "https://outreach.example.org"
ACTIVE = 200
AUDIT_PER_PARTICIPANT = 10


def fill(engine, n: int) -> None:
    """N old participants (4 follow-ups x 20 texts, 3 answers each, 10 audit rows) and ACTIVE ones mid-survey, in SQL."""
    with engine.begin() as c:
        c.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(engine)
    old = "now() - interval '800 days'"
    with engine.begin() as c:
        c.execute(text(f"""
            INSERT INTO patients (id, patient_id, phone, phone_valid, timezone, language, sms_consent, created_at,
                                  updated_at)
            SELECT g, 'P' || g, '+1416' || lpad(g::text, 7, '0'), true, 'America/Toronto', 'en', true, {old}, {old}
            FROM generate_series(1, :total) g"""), {"total": n + ACTIVE})
        c.execute(text(f"""
            INSERT INTO episodes (id, patient_id, discharge_date, created_at, updated_at)
            SELECT g, g, CASE WHEN g <= :n THEN ({old})::date ELSE current_date - 30 END, {old}, {old}
            FROM generate_series(1, :total) g"""), {"n": n, "total": n + ACTIVE})
        c.execute(text(f"""
            INSERT INTO followups (id, patient_id, episode_id, timepoint_days, state, retries, reminders_sent,
                                   invited_at, completed_at, closed_at, created_at, updated_at)
            SELECT (p - 1) * 4 + t, p, p, (ARRAY[30, 90, 180, 365])[t], 'completed', 0, 0,
                   {old} + t * interval '30 days', {old} + t * interval '30 days',
                   {old} + t * interval '30 days', {old}, {old}
            FROM generate_series(1, :n) p, generate_series(1, 4) t"""), {"n": n})
        c.execute(text("""
            INSERT INTO followups (id, patient_id, episode_id, timepoint_days, state, retries, reminders_sent,
                                   invited_at, created_at, updated_at)
            SELECT :n * 4 + g, :n + g, :n + g, 30, 'q_self_efficacy', 0, 0, now(), now(), now()
            FROM generate_series(1, :active) g"""), {"n": n, "active": ACTIVE})
        c.execute(text(f"""
            INSERT INTO messages (direction, patient_id, followup_id, from_number, to_number, body, media_count,
                                  kind, status, attempts, preview, created_at, updated_at)
            SELECT CASE WHEN m % 2 = 0 THEN 'in' ELSE 'out' END, (f - 1) / 4 + 1, f,
                   CASE WHEN m % 2 = 0 THEN '+1416' || lpad(((f - 1) / 4 + 1)::text, 7, '0') ELSE '+15550000000' END,
                   CASE WHEN m % 2 = 0 THEN '+15550000000' ELSE '+1416' || lpad(((f - 1) / 4 + 1)::text, 7, '0') END,
                   'words of text number ' || m, 0, CASE WHEN m % 2 = 0 THEN NULL ELSE 'reply' END,
                   CASE WHEN m % 2 = 0 THEN 'processed' ELSE 'delivered' END, 0, false,
                   {old} + interval '1 day', {old} + interval '1 day'
            FROM generate_series(1, :followups) f, generate_series(1, 20) m"""), {"followups": n * 4})
        c.execute(text("""
            INSERT INTO answers (followup_id, question_key, raw_text, value, message_id, answered_at)
            SELECT m.followup_id, (ARRAY['self_efficacy', 'mental_health', 'physical_health'])[(m.rn)], m.body, 3,
                   m.id, m.created_at
            FROM (SELECT id, followup_id, body, created_at,
                         row_number() OVER (PARTITION BY followup_id ORDER BY id) AS rn
                  FROM messages WHERE direction = 'in') m WHERE m.rn <= 3"""))
        # The audit a study of that size has: staff looking at each participant's page, and 1 in 100 a phone number
        # corrected (its old and new number, which the phone rule erases); kept, as RETAIN_AUDIT_DAYS is 7 years.
        c.execute(text(f"""
            INSERT INTO audit_events (at, actor, action, patient_id, address, details)
            SELECT {old} + v * interval '1 day', 'coordinator@study.example.org',
                   CASE WHEN v = 1 AND g % 100 = 0 THEN 'phone_corrected' ELSE 'viewed_patient' END, g, '10.0.0.1',
                   CASE WHEN v = 1 AND g % 100 = 0
                        THEN json_build_object('old', '+1905' || lpad(g::text, 7, '0'),
                                               'new', '+1416' || lpad(g::text, 7, '0'))
                        ELSE '{{}}'::json END
            FROM generate_series(1, :n) g, generate_series(1, :per) v"""), {"n": n, "per": AUDIT_PER_PARTICIPANT})
        for table in ("patients", "episodes", "followups", "messages", "answers", "audit_events"):
            c.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"))
        c.execute(text("ANALYZE"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--participants", type=int, default=100_000)
    args = parser.parse_args()
    url = os.environ["BENCH_POSTGRES_URL"]
    env = {"DATABASE_URL": url, "TWILIO_AUTH_TOKEN": AUTH, "PUBLIC_BASE_URL": BASE, "HELP_CONTACT": "1-800-555-0199",
           "RETAIN_MESSAGE_BODIES_DAYS": "30", "RETAIN_PHONES_DAYS_AFTER_LAST_CONTACT": "60", "LOG_LEVEL": "WARNING"}
    settings = load_settings(env)
    engine = make_engine(url)
    started = time.perf_counter()
    fill(engine, args.participants)
    print(f"filled {args.participants:,} participants x 4 follow-ups x 20 texts "
          f"({args.participants * 80:,} texts) in {time.perf_counter() - started:.0f} s")

    from outreach.messaging.webhook_client import SignedWebhookClient, flask_post
    from webhooks.app import create_app

    app = create_app(env)
    client = SignedWebhookClient(flask_post(app.test_client()), BASE, AUTH)
    latencies: list[float] = []
    done = threading.Event()

    def texting() -> None:
        i = 0
        while not done.is_set():
            phone = "+1416" + str(args.participants + 1 + i % ACTIVE).rjust(7, "0")
            t0 = time.perf_counter()
            client.text(phone, "7")
            latencies.append(time.perf_counter() - t0)
            i += 1
            time.sleep(0.05)

    sessions = session_factory(engine)
    texter = threading.Thread(target=texting, daemon=True)
    texter.start()
    t0 = time.perf_counter()
    result = retention.run(sessions, settings)
    duration = time.perf_counter() - t0
    done.set()
    texter.join()
    print(f"retention pass: {duration:.0f} s; {result.describe()}")
    print(f"  {result.counts['message_bodies'] / duration:,.0f} texts a second; {result.batches:,} transactions, "
          f"the longest {result.longest_batch * 1000:.0f} ms")
    lat = sorted(latencies)
    print(f"webhook while it ran: {len(lat)} texts, median {statistics.median(lat) * 1000:.0f} ms, "
          f"99th percentile {lat[int(len(lat) * 0.99) - 1] * 1000:.0f} ms, slowest {lat[-1] * 1000:.0f} ms, "
          f"over 2 s: {sum(1 for x in lat if x > 2)}")
    app.extensions["outreach"]["engine"].dispose()
    engine.dispose()


if __name__ == "__main__":
    main()
