"""Wave benchmark: plan and launch a wave for N eligible patients (simulator, rate limit off).

Runs on SQLite and, when BENCH_POSTGRES_URL is set, on PostgreSQL.  Does what ``outreach waves launch``
does, in one transaction: plan (who is eligible, every exclusion counted), then launch with that plan
(the follow-ups and their queued invitations), then commit; then pauses, resumes and cancels the wave as the
console's buttons do, each in its own transaction.  Prints the seconds of each and the number
of SQL statements issued, at two sizes, to show the statement count grows with chunks of 10,000 patients,
not with patients.

Every patient has one stay due at 30 days; ``--readmitted`` (default 0.1) of them
also have an earlier stay with nothing due, so the readmission checks of planning
run too (the eligible count stays N).

With ``--reference-src PATH`` (a checkout of the code to compare with), every measurement is made with
both, interleaved round by round (``--repeat``), each in a child process on a freshly seeded database,
and the summary gives medians and the ratio current / reference of the times:

    git archive 8058b14 | (mkdir -p /tmp/outreach-ref && tar -x -C /tmp/outreach-ref)
    python benchmarks/wave_bench.py [--patients 100000] [--readmitted 0.1] \\
        [--reference-src /tmp/outreach-ref] [--repeat 3]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AS_OF = dt.date(2026, 11, 20)
PAGE = 10000
ROOT = Path(__file__).resolve().parent.parent


def seed(engine, n: int, readmitted: float = 0.1) -> int:
    """``n`` patients with a stay discharged 30-43 days before AS_OF; every ``1 / readmitted``-th of
    them also has a stay 120-159 days before (no time point due).  Returns the number of stays."""
    from sqlalchemy import insert, select

    from outreach.models import Episode, Patient

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


def bench(label: str, url: str, n: int, readmitted: float) -> dict:
    """Seed a fresh database, then plan + launch + commit as ``waves launch`` does; the figures."""
    from sqlalchemy import event, text

    from outreach.config import load_settings
    from outreach.db import make_engine, session_factory, unit_of_work, upgrade
    from outreach.study.waves import launch_wave, plan_wave

    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(engine)
    stays = seed(engine, n, readmitted)
    if engine.dialect.name == "postgresql":  # statistics as autovacuum would have them a minute after an import
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    statements = {"n": 0}
    event.listen(engine, "before_cursor_execute", lambda *a: statements.__setitem__("n", statements["n"] + 1))
    settings = load_settings({"DATABASE_URL": url, "SMS_BACKEND": "simulator", "SEND_RATE_PER_SECOND": "0"})
    sessions = session_factory(engine)
    t0 = time.perf_counter()
    with unit_of_work(sessions) as s:
        plan = plan_wave(s, settings, 30, AS_OF)
        t1 = time.perf_counter()
        plan_q, statements["n"] = statements["n"], 0
        wave, _ = launch_wave(s, settings, 30, AS_OF, actor="bench", plan=plan)
        t2 = time.perf_counter()
        launch_q, targeted = statements["n"], wave.targeted
    t3 = time.perf_counter()
    controls = _controls(sessions, wave.id)
    engine.dispose()
    return {"label": label, "patients": n, "stays": stays, "eligible": len(plan.eligible), "targeted": targeted,
            "plan": t1 - t0, "plan_statements": plan_q, "launch": t2 - t1, "launch_statements": launch_q,
            "commit": t3 - t2, "total": t3 - t0, **controls}


def _controls(sessions, wave_id: int) -> dict:
    """The console's pause, resume and cancel of the wave just launched, each in its own transaction as its
    request runs it (a coordinator waits for each): seconds, commit included.  Empty for code without them."""
    from outreach.db import unit_of_work

    try:
        from outreach.study.waves import cancel_wave, pause_wave, resume_wave
    except ImportError:
        return {}
    from sqlalchemy import update

    from outreach.clock import utcnow
    from outreach.models import FollowUp

    with unit_of_work(sessions) as s:  # each conversation's deadline set, as a sent invitation sets it: resuming
        s.execute(update(FollowUp).where(FollowUp.wave_id == wave_id)  # gives each back the time paused
                  .values(expires_at=utcnow() + dt.timedelta(days=14)))
    out = {}
    for name, act in (("pause", pause_wave), ("resume", resume_wave), ("cancel", cancel_wave)):
        t0 = time.perf_counter()
        with unit_of_work(sessions) as s:
            act(s, wave_id, actor="bench")
        out[name] = time.perf_counter() - t0
    return out


def child(label: str, url: str, n: int, readmitted: float) -> None:
    print(json.dumps(bench(label, url, n, readmitted)))


def run_child(src: Path, label: str, url: str, n: int, readmitted: float) -> dict:
    """``bench`` in a child process importing the packages from ``src``."""
    code = (f"import sys; sys.path.insert(0, {str(src)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"import wave_bench; wave_bench.child({label!r}, {url!r}, {n}, {readmitted})")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=tempfile.gettempdir())
    if out.returncode != 0:
        sys.exit(f"{label} with {src} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def show(code: str, r: dict) -> None:
    print(f"{r['label']:10s} {code:9s} {r['patients']:7d} patients ({r['stays']} stays): "
          f"plan {r['plan']:5.2f} s ({r['plan_statements']} statements, {r['eligible']} eligible); "
          f"launch {r['launch']:5.2f} s ({r['launch_statements']} statements, {r['targeted']} follow-ups + "
          f"invitations); commit {r['commit']:4.2f} s; total {r['total']:5.2f} s"
          + (f"; then pause {r['pause']:.2f} s, resume {r['resume']:.2f} s, cancel {r['cancel']:.2f} s"
             if "pause" in r else ""), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--readmitted", type=float, default=0.1,
                        help="share of the patients who also have an earlier stay (nothing due)")
    parser.add_argument("--reference-src", type=Path,
                        help="a source tree of the code to compare with; skipped when not given")
    parser.add_argument("--repeat", type=int, default=1, help="rounds, interleaved; the summary gives medians")
    parser.add_argument("--databases", default="sqlite,postgresql",
                        help="comma-separated; postgresql only when BENCH_POSTGRES_URL is set")
    args = parser.parse_args()
    sizes = sorted({max(args.patients // 10, 1), args.patients})
    pg = os.environ.get("BENCH_POSTGRES_URL")
    labels = [d for d in args.databases.split(",") if d == "sqlite" or (d == "postgresql" and pg)]
    codes = [("current", ROOT)] + ([("reference", args.reference_src.resolve())] if args.reference_src else [])
    results: dict[tuple[str, int, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeat):
            order = codes if rep % 2 == 0 else codes[::-1]  # alternate, so drift does not favour one side
            for n in sizes:
                for label in labels:
                    for code, src in order:
                        url = f"sqlite:///{tmp}/wave-{rep}-{code}-{n}.db" if label == "sqlite" else pg
                        r = run_child(src, label, url, n, args.readmitted)
                        show(code, r)
                        results.setdefault((label, n, code), []).append(r)
    if args.repeat > 1 or args.reference_src:
        print(f"median of {args.repeat}:")
        for n in sizes:
            for label in labels:
                med = {c: {k: statistics.median(r[k] for r in results[label, n, c])
                           for k in ("plan", "launch", "commit", "total")} for c, _ in codes}
                line = "; ".join(f"{c} plan {m['plan']:5.2f} + launch {m['launch']:5.2f} + commit "
                                 f"{m['commit']:4.2f} = {m['total']:5.2f} s" for c, m in med.items())
                if args.reference_src:
                    ratios = [a["total"] / b["total"]
                              for a, b in zip(results[label, n, "current"], results[label, n, "reference"])]
                    line += (f"; current/reference {med['current']['total'] / med['reference']['total']:.2f} "
                             f"(per round: {', '.join(f'{x:.2f}' for x in ratios)})")
                print(f"  {label:10s} {n:7d} patients: {line}")


if __name__ == "__main__":
    main()
