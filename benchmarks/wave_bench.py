"""Wave benchmark: plan and launch a wave for N eligible patients (simulator, rate limit off).

Runs on SQLite and, when BENCH_POSTGRES_URL is set, on PostgreSQL.  Prints
seconds and the number of SQL statements issued, at two sizes, to show the
statement count grows with batches, not with patients.

Every patient has one stay due at 30 days; ``--readmitted`` (default 0.1) of them
also have an earlier stay with nothing due, so the readmission checks of planning
run too (the eligible count stays N).

    python benchmarks/wave_bench.py [--patients 100000] [--readmitted 0.1]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time

from sqlalchemy import event, insert, select, text

from outreach.config import load_settings
from outreach.db import make_engine, session_factory, unit_of_work, upgrade
from outreach.models import Episode, Patient
from outreach.study.waves import launch_wave, plan_wave

AS_OF = dt.date(2026, 11, 20)
PAGE = 10000


def seed(engine, n: int, readmitted: float = 0.1) -> int:
    """``n`` patients with a stay discharged 30-43 days before AS_OF; every ``1 / readmitted``-th of
    them also has a stay 120-159 days before (no time point due).  Returns the number of stays."""
    patients = [dict(patient_id=f"W{i:07d}", phone=f"+1{416 + i % 7}{2000000 + i:07d}", timezone="America/Toronto",
                     language="en", sms_consent=True, phone_valid=True) for i in range(n)]
    every = round(1 / readmitted) if readmitted else 0
    with engine.begin() as conn:
        for i in range(0, n, PAGE):
            conn.execute(insert(Patient), patients[i:i + PAGE])
        pks = dict(conn.execute(select(Patient.patient_id, Patient.id)).all())
        episodes = [dict(patient_id=pks[f"W{i:07d}"], discharge_date=AS_OF - dt.timedelta(days=120 + i % 40),
                         length_of_stay_days=21) for i in range(0, n, every)] if every else []
        episodes += [dict(patient_id=pks[f"W{i:07d}"], discharge_date=AS_OF - dt.timedelta(days=30 + i % 14),
                          length_of_stay_days=21) for i in range(n)]
        for i in range(0, len(episodes), PAGE):
            conn.execute(insert(Episode), episodes[i:i + PAGE])
    return len(episodes)


def bench(label: str, url: str, n: int, readmitted: float) -> None:
    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(engine)
    stays = seed(engine, n, readmitted)
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
    print(f"{label:10s} {n:7d} patients ({stays} stays): plan {plan_s:5.2f} s ({plan_q} statements, "
          f"{len(plan.eligible)} eligible); "
          f"launch {launch_s:5.2f} s ({statements['n']} statements, {wave.targeted} follow-ups + invitations)")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--readmitted", type=float, default=0.1,
                        help="share of the patients who also have an earlier stay (nothing due)")
    args = parser.parse_args()
    sizes = sorted({max(args.patients // 10, 1), args.patients})
    pg = os.environ.get("BENCH_POSTGRES_URL")
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            bench("sqlite", f"sqlite:///{tmp}/wave.db", n, args.readmitted)
        if pg:
            bench("postgresql", pg, n, args.readmitted)


if __name__ == "__main__":
    main()
