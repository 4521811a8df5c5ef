"""Wave benchmark: plan and launch a wave for N eligible patients (simulator, rate limit off).

Runs on SQLite and, when BENCH_POSTGRES_URL is set, on PostgreSQL.  Prints
seconds and the number of SQL statements issued, at two sizes, to show the
statement count grows with batches, not with patients.

    python benchmarks/wave_bench.py [--patients 100000]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time

from sqlalchemy import event, insert, text

from outreach.config import load_settings
from outreach.db import make_engine, session_factory, unit_of_work, upgrade
from outreach.models import Patient
from outreach.waves import launch_wave, plan_wave

AS_OF = dt.date(2026, 11, 20)


def seed(engine, n: int) -> None:
    rows = [dict(patient_id=f"W{i:07d}", phone=f"+1{416 + i % 7}{2000000 + i:07d}", timezone="America/Toronto",
                 language="en", sms_consent=True, phone_valid=True,
                 discharge_date=AS_OF - dt.timedelta(days=30 + i % 14)) for i in range(n)]
    with engine.begin() as conn:
        for i in range(0, n, 10000):
            conn.execute(insert(Patient), rows[i:i + 10000])


def bench(label: str, url: str, n: int) -> None:
    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(engine)
    seed(engine, n)
    statements = {"n": 0}
    event.listen(engine, "before_cursor_execute", lambda *a: statements.__setitem__("n", statements["n"] + 1))
    settings = load_settings({"DATABASE_URL": url, "SMS_BACKEND": "simulator", "SEND_RATE_PER_SECOND": "0"})
    sessions = session_factory(engine)
    t0 = time.perf_counter()
    with unit_of_work(sessions) as s:
        plan = plan_wave(s, settings, 30, AS_OF)
    plan_s, plan_q = time.perf_counter() - t0, statements["n"]
    statements["n"] = 0
    t0 = time.perf_counter()
    with unit_of_work(sessions) as s:
        wave, _ = launch_wave(s, settings, 30, AS_OF, actor="bench")
    launch_s = time.perf_counter() - t0
    print(f"{label:10s} {n:7d} patients: plan {plan_s:5.2f} s ({plan_q} statements, {len(plan.eligible)} eligible); "
          f"launch {launch_s:5.2f} s ({statements['n']} statements, {wave.targeted} follow-ups + invitations)")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=100_000)
    args = parser.parse_args()
    sizes = sorted({max(args.patients // 10, 1), args.patients})
    pg = os.environ.get("BENCH_POSTGRES_URL")
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            bench("sqlite", f"sqlite:///{tmp}/wave.db", n)
        if pg:
            bench("postgresql", pg, n)


if __name__ == "__main__":
    main()
