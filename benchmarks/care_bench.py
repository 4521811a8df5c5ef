"""Care-team benchmark (issue 26): 2,000 patients in treatment with weekly alliance check-ins for a year (104,000
check-ins), ten care teams of 200, an open alliance alert for one patient in ten.

Seeds the data set-based, then times the real Flask app (test client: routing, the access check, the services and
the rendered HTML) and counts the SQL statements per page, on SQLite and, when BENCH_POSTGRES_URL is set, on
PostgreSQL: the care team's queue as a clinician of one team (its 200 patients) and as an administrator (every
team: 2,000 patients, shown 100 a page; its 20th page; one team picked), and one patient's trend page (52
check-ins).  Target: under 300 ms, a fixed number of
queries whatever the numbers.

    python benchmarks/care_bench.py [--patients 2000] [--weeks 52] [--repeat 15]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import re
import tempfile

from argon2 import PasswordHasher
from sqlalchemy import insert, select, text

from benchmarks.console_bench import timed
from outreach.care.rules import ALERT, WATCH
from outreach.db import make_engine, upgrade
from outreach.models import AllianceAlert, AllianceCheckin, CareTeam, CareTeamMember, Episode, Patient, User

PASSWORD = "benchmark password 2026"
TODAY = dt.date.today()


def seed(engine, patients: int, weeks: int) -> int:
    """Returns the first patient's id."""
    rng = random.Random(26)
    admitted = TODAY - dt.timedelta(days=7 * weeks + 3)
    hashed = PasswordHasher().hash(PASSWORD)
    with engine.begin() as conn:
        conn.execute(insert(User), [dict(email="nurse@study.example.org", role="clinician", password_hash=hashed),
                                    dict(email="admin@study.example.org", role="admin", password_hash=hashed)])
        conn.execute(insert(CareTeam), [dict(name=f"Ward {t}") for t in range(10)])
        teams = [pk for (pk,) in conn.execute(select(CareTeam.id).order_by(CareTeam.id))]
        nurse = conn.scalar(select(User.id).where(User.role == "clinician"))
        conn.execute(insert(CareTeamMember), [dict(team_id=teams[0], user_id=nurse)])
        conn.execute(insert(Patient), [dict(patient_id=f"C{i:05d}", phone=f"+1416{5000000 + i:07d}",
                                            timezone="America/Toronto", language="en", sms_consent=True,
                                            phone_valid=True) for i in range(patients)])
        pks = [pk for (pk,) in conn.execute(select(Patient.id).order_by(Patient.id))]
        conn.execute(insert(Episode), [dict(patient_id=pk, admission_date=admitted, care_team_id=teams[i % 10],
                                            alliance_checkins="tablet") for i, pk in enumerate(pks)])
        eps = dict(conn.execute(select(Episode.patient_id, Episode.id)).all())
        rows = []
        for pk in pks:
            level = rng.uniform(4.0, 6.0)
            for w in range(1, weeks + 1):
                items = [max(0, min(6, round(level + rng.gauss(0, 0.7)))) for _ in range(6)]
                mean = round(sum(items) / 6, 4)
                flags = ([{"rule": "low_mean", "level": ALERT, "says": "mean below 4.0", "statements": [2],
                           "subscale": "bond"}] if mean < 4 else
                         [{"rule": "watch_mean", "level": WATCH, "says": "mean below 5.4", "statements": [],
                           "subscale": None}] if mean < 5.4 else [])
                rows.append(dict(patient_id=pk, episode_id=eps[pk], instrument="alliance6", items=items,
                                 mean_score=mean, subscale_scores={"bond": round((items[1] + items[2] + items[4]) / 3, 4),
                                                                   "goal_task": round((items[0] + items[3] + items[5]) / 3, 4)},
                                 taken_at=dt.datetime.combine(admitted + dt.timedelta(days=7 * w - 1), dt.time(14)),
                                 method="tablet", treatment_week=w, days_since_admission=7 * w - 1, flags=flags))
        for i in range(0, len(rows), 10000):
            conn.execute(insert(AllianceCheckin), rows[i:i + 10000])
        conn.execute(insert(AllianceAlert), [dict(patient_id=pk, episode_id=eps[pk], care_team_id=teams[i % 10],
                                                  rule="low_mean", statements=[2], subscale="bond",
                                                  details={"says": "mean below 4.0"},
                                                  raised_at=dt.datetime.combine(TODAY, dt.time(9)))
                                             for i, pk in enumerate(pks) if i % 10 == 0])
    return pks[0]


def bench(label: str, url: str, patients: int, weeks: int, repeat: int) -> None:
    from webhooks.app import create_app

    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(engine)
    first = seed(engine, patients, weeks)
    with engine.connect() as conn:
        team = conn.scalar(select(CareTeam.id).order_by(CareTeam.id).offset(3).limit(1))
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    engine.dispose()
    app = create_app({"DATABASE_URL": url, "TWILIO_AUTH_TOKEN": "bench", "HELP_CONTACT": "1-800-555-0199",
                      "SECRET_KEY": "bench", "CONSOLE_INSECURE_COOKIES": "1"})
    app_engine = app.extensions["outreach"]["engine"]
    for who in ("nurse", "admin"):
        client = app.test_client()
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/console/sign-in").get_data(as_text=True))
        client.post("/console/sign-in", data={"email": f"{who}@study.example.org", "password": PASSWORD,
                                              "csrf_token": token.group(1)})
        pages = [(f"queue as {who}", "/console/care")]
        if who == "admin":  # every team comes a page at a time (100 patients), or one team
            pages += [("admin, page 20 of patients", "/console/care?page=20"),
                      ("admin, one team", f"/console/care?team={team}")]
        if who == "nurse":
            pages.append((f"trend page, {weeks} check-ins", f"/console/care/patients/{first}"))
        for name, path in pages:
            median, worst, statements, size = timed(client, path, app_engine, repeat)
            verdict = "meets" if median < 300 else "MISSES"
            print(f"{label:10s} {name:30s} median {median:6.0f} ms, worst {worst:6.0f} ms, {statements:2d} statements, "
                  f"{size / 1024:5.0f} KB  ({verdict} the 300 ms target)")
    app_engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench("sqlite", f"sqlite:///{tmp}/bench.db", args.patients, args.weeks, args.repeat)
    pg = os.environ.get("BENCH_POSTGRES_URL")
    if pg:
        bench("postgresql", pg, args.patients, args.weeks, args.repeat)


if __name__ == "__main__":
    main()
