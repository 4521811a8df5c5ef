"""Jobs benchmark: the browser's side of a 100,000-row import stays short, and the job's progress moves often.

Through the real Flask app (its test client, so the figures are the server's own time without a network) a
coordinator uploads a generated 100,000-row discharge file: the upload request is timed (target: under 2 s).
The worker's job thread (``JobRunner``, as in ``outreach worker``) then runs the check and the import, while
this script reads the job's row every 50 ms as the job's page does: it prints each job's duration and the
longest time its progress stood still (target: at most 2 s), and the time of every page request made while
the job ran (the job's page and its self-refreshing part; target: under 2 s each).  With ``--report`` the
report on the imported study runs as a job too (the export and report jobs are timed the same way).

Runs on a fresh SQLite database, and on PostgreSQL when BENCH_POSTGRES_URL is set (its tables are dropped
and made again):

    python benchmarks/jobs_bench.py [--rows 100000] [--report]
"""
from __future__ import annotations

import argparse
import io
import os
import re
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from outreach.config import load_settings
from outreach.db import make_engine, session_factory, upgrade
from outreach.jobs.queue import JobRunner, live_progress
from outreach.models import Base, Job
from outreach.synthetic import discharge_rows, write_discharges

PASSWORD = "correct horse battery staple"


def _reset(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as c:
        if engine.dialect.name == "postgresql":
            c.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()


def _signed_in(app, sessions):
    from argon2 import PasswordHasher

    from outreach.db import unit_of_work
    from outreach.models import User

    with unit_of_work(sessions) as s:
        s.add(User(email="bench@study.example.org", role="admin", password_hash=PasswordHasher().hash(PASSWORD)))
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/console/sign-in").get_data(as_text=True))
    client.post("/console/sign-in", data={"email": "bench@study.example.org", "password": PASSWORD,
                                          "csrf_token": token.group(1)})
    page = client.get("/console/imports").get_data(as_text=True)
    client.csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return client


def _watch(client, sessions, settings, job_id: int, label: str) -> dict:
    """Poll the job's row every 50 ms (and its page every second, as the browser does) until it ends."""
    started = time.perf_counter()
    last_value, last_change, longest_still, still_after = None, started, 0.0, None
    page_times: list[float] = []
    next_page = started
    while True:
        with sessions() as s:  # as the job's page reads it (the row, or the job's folder while SQLite is busy)
            job = s.get(Job, job_id)
            state, value = job.state, live_progress(settings, job)
        now = time.perf_counter()
        if value != last_value:
            if now - last_change > longest_still:
                longest_still, still_after = now - last_change, last_value
            last_value, last_change = value, now
        if now >= next_page:
            t0 = time.perf_counter()
            client.get(f"/console/jobs/{job_id}/status")
            page_times.append(time.perf_counter() - t0)
            next_page = now + 1.0
        if state in ("done", "failed"):
            if now - last_change > longest_still:
                longest_still, still_after = now - last_change, last_value
            break
        time.sleep(0.05)
    took = time.perf_counter() - started
    with sessions() as s:
        job = s.get(Job, job_id)
        outcome = job.error if job.state == "failed" else (job.result or {}).get("summary")
    where = f" at {still_after[0]:.0%} '{still_after[1]}'" if still_after else ""
    print(f"{label}: {took:.1f} s; progress still at most {longest_still:.2f} s{where} (target <= 2 s); "
          f"{len(page_times)} page refreshes, slowest {max(page_times or [0]):.3f} s; {outcome}")
    return {"took": took, "still": longest_still, "slowest_page": max(page_times or [0])}


def bench(url: str, rows: int, folder: Path, report: bool) -> None:
    from webhooks.app import create_app

    env = {"DATABASE_URL": url, "SECRET_KEY": "bench", "CONSOLE_INSECURE_COOKIES": "1", "JOBS_DIR": str(folder / "jobs"),
           "TWILIO_AUTH_TOKEN": "bench", "HELP_CONTACT": "1-800-555-0199", "SUPPRESS_BELOW": "5",
           "EXPORT_KEY": "b" * 64}
    settings = load_settings(env)
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    app = create_app(env)
    client = _signed_in(app, sessions)
    csv_path = write_discharges(folder / "discharges.csv", discharge_rows(rows, seed=5, readmitted=0.1, invalid=50))
    data = csv_path.read_bytes()
    t0 = time.perf_counter()
    response = client.post("/console/imports", data={"csrf_token": client.csrf,
                                                     "file": (io.BytesIO(data), "discharges.csv")},
                           content_type="multipart/form-data")
    upload = time.perf_counter() - t0
    check_id = int(response.headers["Location"].rsplit("/", 1)[-1])
    print(f"{engine.dialect.name}: upload of {rows:,} rows ({len(data) / 1e6:.1f} MB) answered in {upload:.2f} s "
          "(target < 2 s)")
    # read as the job's page reads: a plain BEGIN, without SQLite's write lock (the job's transaction holds it)
    page_sessions = session_factory(make_engine(url, immediate=False))
    runner = JobRunner(sessions, settings, "bench-worker").start()
    try:
        _watch(client, page_sessions, settings, check_id, "  check job")
        t0 = time.perf_counter()
        response = client.post(f"/console/imports/{check_id}/import", data={"csrf_token": client.csrf, "rows": "valid"})
        print(f"  'import the valid rows' answered in {time.perf_counter() - t0:.3f} s")
        _watch(client, page_sessions, settings, int(response.headers["Location"].rsplit("/", 1)[-1]), "  import job")
        if report and "console.report_generate" in app.view_functions:
            t0 = time.perf_counter()
            response = client.post("/console/report", data={"csrf_token": client.csrf})
            print(f"  'generate the report' answered in {time.perf_counter() - t0:.3f} s")
            _watch(client, page_sessions, settings, int(response.headers["Location"].rsplit("/", 1)[-1]),
                   "  report job")
    finally:
        runner.stop(timeout=600)
        app.extensions["outreach"]["engine"].dispose()
        page_sessions.kw["bind"].dispose()
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--report", action="store_true", help="Also generate the report as a job.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bench(f"sqlite:///{folder / 'bench.db'}", args.rows, folder, args.report)
        pg = os.environ.get("BENCH_POSTGRES_URL")
        if pg:
            _reset(pg)
            bench(pg, args.rows, folder, args.report)


if __name__ == "__main__":
    main()
