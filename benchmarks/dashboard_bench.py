"""Dashboard benchmark: the study dashboard's whole request for N patients × 4 time points, through the real app.

Seeds N patients, each with one stay and a follow-up at every time point (30, 90, 180, 365 days): their
invitations (sent, delivered or failed), first replies after a spread of delays and answers, in the mix of
outcomes a study sees.  Then times ``GET /console/dashboard`` with the Flask test client as a researcher
(suppressed, with the headline results' lookup) and as a coordinator (exact, with the waves), counting the SQL
statements of each request, at two sizes to show that the count does not grow with the study.  Runs on
PostgreSQL when BENCH_POSTGRES_URL is set, else on SQLite.  Target (issue 22): under 500 ms at 100,000 × 4.

    python benchmarks/dashboard_bench.py [--patients 100000] [--small 1000] [--repeat 7]

:func:`seed` is also what ``tests/test_dashboard.py`` builds its studies with (a count of follow-ups per
time point and profile, so the expected numbers are known).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import tempfile
import time

from sqlalchemy import event, insert, select, text

from conversations.machine import FollowUpState, question_state
from outreach.states import Delivery, Processing

START = dt.datetime(2026, 6, 1, 14, 0)
PAGE = 10_000
TIMEPOINTS = (30, 90, 180, 365)
QUESTIONS = ["self_efficacy", "mental_health", "physical_health", "days_used"]
RANGES = {"self_efficacy": (0, 10), "mental_health": (1, 5), "physical_health": (1, 5), "days_used": (0, 30)}

# profile -> (state, answers, replied, invitation: "delivered" | "failed" | "sent" | "pending")
PROFILES = {
    "completed": (FollowUpState.COMPLETED, 4, True, "delivered"),
    "partial_open": (question_state("mental_health"), 1, True, "delivered"),
    "partial_closed": (FollowUpState.EXPIRED, 2, True, "delivered"),
    "crisis": (FollowUpState.CRISIS, 0, True, "delivered"),
    "opted_out": (FollowUpState.OPTED_OUT, 0, True, "delivered"),
    "declined": (FollowUpState.DECLINED, 0, True, "delivered"),
    "undeliverable": (FollowUpState.UNDELIVERABLE, 0, False, "failed"),
    "replied_no_answer": (FollowUpState.EXPIRED, 0, True, "sent"),
    "no_reply_open": (FollowUpState.INVITED, 0, False, "delivered"),
    "no_reply_closed": (FollowUpState.EXPIRED, 0, False, "delivered"),
    "not_sent": (FollowUpState.INVITED, 0, False, "pending"),
}
# the study-sized mix (shares of follow-ups at each time point)
MIX = {"completed": 0.45, "partial_open": 0.03, "partial_closed": 0.07, "crisis": 0.005, "opted_out": 0.04,
       "declined": 0.03, "undeliverable": 0.03, "replied_no_answer": 0.04, "no_reply_open": 0.08,
       "no_reply_closed": 0.215, "not_sent": 0.02}


def delay_minutes(i: int) -> int:
    """A spread of delays from a few minutes to four days (deterministic)."""
    return (i * 7919) % 97 if i % 3 else 60 + (i * 104729) % (4 * 1440)


def seed(engine, counts: dict[tuple[int, str], int], *, start: int = 0) -> int:
    """Follow-ups by (time point, profile): for each, a patient with one stay rated at discharge (the same
    patients across time points, as many as the largest time point needs), the invitation, the first reply after
    :func:`delay_minutes` and the answers.  Returns the number of follow-ups."""
    from outreach.models import AllianceRating, Answer, Episode, FollowUp, Message, Patient

    n_patients = max([sum(n for (t, _), n in counts.items() if t == tp) for tp in {t for t, _ in counts}] + [0])
    with engine.begin() as conn:
        patients = [dict(patient_id=f"D{start + i:07d}", phone=f"+1{416 + i % 7}{3000000 + start + i:07d}",
                         timezone="America/Toronto", language="en", sms_consent=True, phone_valid=True)
                    for i in range(n_patients)]
        for i in range(0, len(patients), PAGE):
            conn.execute(insert(Patient), patients[i:i + PAGE])
        pks = [pk for (pk,) in conn.execute(select(Patient.id).where(Patient.patient_id.like("D%"))
                                            .order_by(Patient.id))][-n_patients:] if n_patients else []
        stays = [dict(patient_id=pk, discharge_date=dt.date(2026, 1, 1) + dt.timedelta(days=i % 60),
                      length_of_stay_days=21) for i, pk in enumerate(pks)]
        for i in range(0, len(stays), PAGE):
            conn.execute(insert(Episode), stays[i:i + PAGE])
        episodes = dict(conn.execute(select(Episode.patient_id, Episode.id)).all())
        ratings = [dict(episode_id=episodes[pk], instrument="alliance6", items=items, mean_score=sum(items) / 6,
                        subscale_scores={"bond": sum(items[:3]) / 3, "goal_task": sum(items[3:]) / 3})
                   for i, pk in enumerate(pks) for items in [[(i * 5 + j * 3) % 7 for j in range(6)]]]
        for i in range(0, len(ratings), PAGE):
            conn.execute(insert(AllianceRating), ratings[i:i + PAGE])
        total = 0
        for tp in sorted({t for t, _ in counts}):
            rows, profiles = [], []
            k = 0
            for (t, profile), n in counts.items():
                if t != tp:
                    continue
                state, _, replied, _ = PROFILES[profile]
                for _ in range(n):
                    pk = pks[k]
                    invited = START + dt.timedelta(days=tp, minutes=k % 600)
                    rows.append(dict(patient_id=pk, episode_id=episodes[pk], timepoint_days=tp, state=state,
                                     invited_at=invited, created_at=invited,
                                     last_inbound_at=invited + dt.timedelta(minutes=delay_minutes(k) + 5)
                                     if replied else None))
                    profiles.append((profile, invited, k))
                    k += 1
            for i in range(0, len(rows), PAGE):
                conn.execute(insert(FollowUp), rows[i:i + PAGE])
            ids = [fid for (fid,) in conn.execute(select(FollowUp.id).where(FollowUp.timepoint_days == tp)
                                                  .order_by(FollowUp.id))][-len(rows):] if rows else []
            messages, answers = [], []
            for fid, (profile, invited, k) in zip(ids, profiles):
                state, n_answers, replied, invitation = PROFILES[profile]
                pk = pks[k]
                sid = f"SM{tp:03d}{start + k:029d}" if invitation != "pending" else None
                status = {"delivered": Delivery.DELIVERED, "failed": Delivery.UNDELIVERED, "sent": Delivery.SENT,
                          "pending": Delivery.PENDING}[invitation]
                messages.append(dict(direction="out", patient_id=pk, followup_id=fid, kind="invitation",
                                     body="Hello from the study", status=status, provider_sid=sid,
                                     created_at=invited, send_after=invited))
                if replied:
                    at = invited + dt.timedelta(minutes=delay_minutes(k))
                    messages.append(dict(direction="in", patient_id=pk, followup_id=fid, kind=None,
                                         body="private reply words", status=Processing.PROCESSED, provider_sid=None,
                                         created_at=at, send_after=None))
                    answers += [dict(followup_id=fid, question_key=q, raw_text=str(v), value=v,
                                     answered_at=at + dt.timedelta(minutes=j + 1))
                                for j, q in enumerate(QUESTIONS[:n_answers])
                                for v in [RANGES[q][0] + (k * 7 + tp) % (RANGES[q][1] - RANGES[q][0] + 1)]]
            for i in range(0, len(messages), PAGE):
                conn.execute(insert(Message), messages[i:i + PAGE])
            for i in range(0, len(answers), PAGE):
                conn.execute(insert(Answer), answers[i:i + PAGE])
            total += len(rows)
    return total


def study(n: int) -> dict[tuple[int, str], int]:
    """``n`` follow-ups at each time point in the study-sized mix (the later time points a little smaller)."""
    out = {}
    for j, tp in enumerate(TIMEPOINTS):
        size = n - j * n // 20
        shares = list(MIX.items())
        counts = {p: int(size * s) for p, s in shares}
        counts["completed"] += size - sum(counts.values())
        out.update({(tp, p): c for p, c in counts.items()})
    return out


def bench(url: str, sizes: list[int], repeat: int) -> None:
    from argon2 import PasswordHasher

    from outreach.db import make_engine, upgrade
    from outreach.models import User, Wave
    from webhooks.app import create_app

    for n in sizes:
        engine = make_engine(url)
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        upgrade(engine)
        t0 = time.perf_counter()
        followups = seed(engine, study(n))
        with engine.begin() as conn:
            conn.execute(insert(User), [dict(email=f"{r}@study.example.org", role=r,
                                             password_hash=PasswordHasher().hash("benchmark password 2026"))
                                        for r in ("researcher", "coordinator")])
            conn.execute(insert(Wave), [dict(timepoint_days=t, as_of=dt.date(2026, 6, 1), created_by="bench",
                                             targeted=0) for t in TIMEPOINTS])
            if engine.dialect.name == "postgresql":
                conn.execute(text("ANALYZE"))
        seeded = time.perf_counter() - t0
        engine.dispose()
        app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench", "CONSOLE_INSECURE_COOKIES": "1",
                          "TWILIO_AUTH_TOKEN": "x" * 32, "HELP_CONTACT": "1-800-555-0199", "PUBLIC_BASE_URL": "https://outreach.example.org",
                          "JOBS_DIR": tempfile.mkdtemp()})
        app_engine = app.extensions["outreach"]["engine"]
        counter = {"n": 0}
        event.listen(app_engine, "before_cursor_execute", lambda *a, **k: counter.__setitem__("n", counter["n"] + 1))
        for role in ("researcher", "coordinator"):
            client = app.test_client()
            page = client.get("/console/sign-in").get_data(as_text=True)
            import re

            token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
            client.post("/console/sign-in", data={"email": f"{role}@study.example.org",
                                                  "password": "benchmark password 2026", "csrf_token": token})
            t0 = time.perf_counter()
            first = client.get("/console/dashboard").get_data(as_text=True)  # the process's first count starts
            first_s = time.perf_counter() - t0
            for _ in range(600):  # wait for the first count to be made (the page reloads itself meanwhile)
                if 'id="counting"' not in first:
                    break
                time.sleep(0.5)
                first = client.get("/console/dashboard").get_data(as_text=True)
            times, statements = [], []
            for _ in range(repeat):
                counter["n"] = 0
                t0 = time.perf_counter()
                response = client.get("/console/dashboard")
                times.append(time.perf_counter() - t0)
                statements.append(counter["n"])
                assert response.status_code == 200, response.status_code
            print(f"{app_engine.dialect.name:10s} {n:7d} patients × {len(TIMEPOINTS)} ({followups} follow-ups, "
                  f"seeded in {seeded:.0f} s) as {role:11s}: median {1000 * statistics.median(times):6.0f} ms, "
                  f"worst {1000 * max(times):6.0f} ms, {statements[-1]} SQL statements per request "
                  f"(the first request: {1000 * first_s:.0f} ms)", flush=True)
        from analysis.dashboard import count_all
        from outreach.db import session_factory

        counts = []
        for _ in range(3):
            counter["n"] = 0
            t0 = time.perf_counter()
            with session_factory(app_engine)() as s, s.begin():
                count_all(s)
            counts.append(time.perf_counter() - t0)
        print(f"{'':10s} counting (in the background, at most once a minute): median "
              f"{statistics.median(counts):.2f} s, {counter['n']} SQL statements", flush=True)
        app_engine.dispose()
        scrape(url, repeat)


def scrape(url: str, repeat: int) -> None:
    """``GET /metrics`` (docs/operations.md): the aggregates it reads from the database, timed through the real
    app, then again with an index on ``messages.sent_at`` made for the occasion (the achieved send rate's
    filter), to show what such an index would save; the index is dropped again."""
    from webhooks.app import create_app

    token = "bench-metrics-token-0123456789abcdef"
    app = create_app({"DATABASE_URL": url, "TWILIO_AUTH_TOKEN": "x" * 32, "HELP_CONTACT": "1-800-555-0199",
                      "METRICS_TOKEN": token})
    client, engine = app.test_client(), app.extensions["outreach"]["engine"]

    def timed() -> float:
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
            times.append(time.perf_counter() - t0)
            assert response.status_code == 200, response.status_code
        return statistics.median(times)

    plain = timed()
    with engine.begin() as conn:
        conn.execute(text("CREATE INDEX bench_messages_sent_at ON messages (sent_at)"))
        conn.execute(text("ANALYZE messages") if engine.dialect.name == "postgresql" else text("ANALYZE"))
    indexed = timed()
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX bench_messages_sent_at"))
    print(f"{'':10s} GET /metrics: median {1000 * plain:.0f} ms; with an index on messages.sent_at "
          f"{1000 * indexed:.0f} ms ({indexed / plain:.2f} x)", flush=True)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    url = os.environ.get("BENCH_POSTGRES_URL")
    if not url:
        folder = tempfile.mkdtemp()
        url = f"sqlite:///{folder}/dashboard.db"
        print("BENCH_POSTGRES_URL is not set: SQLite (a new file per size)")
        sizes = [args.small, args.patients]
        for i, n in enumerate(sizes):
            bench(f"sqlite:///{folder}/dashboard{i}.db", [n], args.repeat)
        return
    bench(url, [args.small, args.patients], args.repeat)


if __name__ == "__main__":
    main()
