"""Analysis benchmark: 100,000 treatment episodes x 4 time points loaded, summarised and exported.

Seeds a SQLite database (and PostgreSQL with BENCH_POSTGRES_URL) with set-based
inserts, then runs load + statistics + CSV/Parquet export in a child process
and prints its wall time and peak memory.  Target: under 20 s and 2 GB.

``--readmitted`` (default 0.1) of the episodes are second stays of patients who
have one already (so 100,000 episodes = 90,000 patients + 10,000 second stays),
each with its own rating and follow-ups; ``--readmitted 0`` gives one stay per
patient, as before treatment episodes.

    python benchmarks/analysis_bench.py [--episodes 100000] [--readmitted 0.1]

With ``--reference-src PATH`` (a checkout of the code to compare with, e.g. ``git archive main``) every
measurement is also made with that code, interleaved round by round (``--repeat``), in child processes on the
same seeded database; ``--sqlite-file FILE`` keeps the SQLite database there and, with ``--no-seed``, reuses it
(and BENCH_POSTGRES_URL's database) as it is.  Peak memory: the child's own peak RSS, its children's (a process
it forks counts the pages it shares with its parent too), and the peak proportional set size of the whole
process tree sampled every 50 ms (shared pages counted once):

    git archive main | (mkdir -p /tmp/outreach-ref && tar -x -C /tmp/outreach-ref)
    python benchmarks/analysis_bench.py --reference-src /tmp/outreach-ref --repeat 3 \\
        [--sqlite-file /tmp/analysis.db [--no-seed]]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import insert, select, text

TIMEPOINTS = (30, 90, 180, 365)


def seed(url: str, n: int, readmitted: float = 0.1) -> int:
    """``n`` episodes with ratings and 4 follow-ups each; returns the number of patients."""
    from outreach.db import make_engine, upgrade
    from outreach.models import AllianceRating, Answer, Episode, FollowUp, Message, Patient

    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(engine)
    rng = np.random.default_rng(1)
    now = dt.datetime(2026, 11, 1)
    items = np.clip(np.rint(rng.normal(5.1, 0.9, (n, 1)) + rng.normal(0, 0.6, (n, 6))), 0, 6).astype(int)
    if not 0 <= readmitted <= 0.5:
        sys.exit("--readmitted must be between 0 and 0.5 (one second stay per patient at most)")
    second = round(n * readmitted)
    people = n - second
    every = people // second if second else 1
    back = list(range(0, second * every, every))  # the patients who come back: episode people + k is back[k]'s
    earlier = set(back)
    with engine.begin() as conn:
        conn.execute(insert(Patient), [
            dict(patient_id=f"A{i:07d}", phone=f"+1416{2000000 + i:07d}", timezone="America/Toronto", language="en",
                 sms_consent=True, phone_valid=True, age=int(20 + i % 50), sex="FMX"[i % 3],
                 created_at=now, updated_at=now) for i in range(people)])
        patient_pks = conn.execute(select(Patient.id).order_by(Patient.id)).scalars().all()
        owner = patient_pks + [patient_pks[k] for k in back]
        conn.execute(insert(Episode), [
            dict(patient_id=owner[i], discharge_date=dt.date(2025, 3, 1) if i in earlier else dt.date(2025, 10, 1),
                 length_of_stay_days=int(14 + i % 40), primary_substance="alcohol", program="residential",
                 created_at=now, updated_at=now) for i in range(n)])
        pks = conn.execute(select(Episode.id).order_by(Episode.id)).scalars().all()
        means = items.mean(axis=1)
        conn.execute(insert(AllianceRating), [
            dict(episode_id=pk, instrument="alliance6", items=items[i].tolist(), mean_score=float(means[i]),
                 subscale_scores={"bond": float(items[i, [1, 2, 4]].mean()),
                                  "goal_task": float(items[i, [0, 3, 5]].mean())}, created_at=now, updated_at=now)
            for i, pk in enumerate(pks)])
        conn.execute(insert(FollowUp), [
            dict(patient_id=owner[i], episode_id=pk, timepoint_days=tp,
                 state="completed" if (i + tp) % 5 < 3 else "expired",
                 retries=0, reminders_sent=1, invited_at=now, last_inbound_at=now if (i + tp) % 5 < 4 else None,
                 created_at=now, updated_at=now)
            for i, pk in enumerate(pks) for tp in TIMEPOINTS])
        fus = conn.execute(select(FollowUp.id, FollowUp.state, FollowUp.timepoint_days)).all()
        answers, messages = [], []
        for fid, state, tp in fus:
            messages.append(dict(direction="out", kind="invitation", status="delivered", followup_id=fid,
                                 provider_sid=f"SM{fid:032x}", body="x", attempts=1, media_count=0,
                                 created_at=now, updated_at=now))
            if state == "completed":
                for key, value in (("self_efficacy", fid % 11), ("mental_health", 1 + fid % 5),
                                   ("physical_health", 1 + (fid // 5) % 5)) + ((("days_used", fid % 31),)
                                                                              if tp >= 90 else ()):
                    answers.append(dict(followup_id=fid, question_key=key, raw_text=str(value), value=value,
                                        answered_at=now))
        conn.execute(insert(Message), messages)
        conn.execute(insert(Answer), answers)
    engine.dispose()
    return people


MEASURE = """
import sys, time, resource, tempfile, os
from outreach.db import make_engine
from analysis.dataset import linked_dataset
from analysis.stats import summarise
from analysis.export import write
t0 = time.perf_counter()
engine = make_engine(sys.argv[1])
df = linked_dataset(engine, b"bench-key")
t1 = time.perf_counter()
summary = summarise(df)
t2 = time.perf_counter()
with tempfile.TemporaryDirectory() as tmp:
    write(df, os.path.join(tmp, "r.csv"), "csv")
    write(df, os.path.join(tmp, "r.parquet"), "parquet")
t3 = time.perf_counter()
print(f"{len(df)} rows: load {t1 - t0:.1f} s, statistics {t2 - t1:.1f} s, export csv+parquet {t3 - t2:.1f} s, "
      f"total {t3 - t0:.1f} s, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB "
      f"(children {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB)")
"""
ROOT = Path(__file__).resolve().parents[1]


def _tree_pss_kb(pid: int) -> int:
    """The proportional set size of ``pid`` and its descendants (kB): each shared page divided among its sharers."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total += int(re.search(r"^Pss:\s+(\d+) kB", f.read(), re.M).group(1))
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, AttributeError):
            pass
    return total


def measure(src: Path, url: str) -> tuple[str, dict[str, float]]:
    """Run MEASURE with the code in ``src`` on ``url``: its line and its numbers (plus the tree's peak PSS)."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    child = subprocess.Popen([sys.executable, "-c", MEASURE, url], cwd=src, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0
    while child.poll() is None:
        peak = max(peak, _tree_pss_kb(child.pid))
        time.sleep(0.05)
    out, err = child.communicate()
    line = out.strip() or err[-2000:]
    numbers = {k: float(v) for k, v in re.findall(r"(load|statistics|csv\+parquet|total) ([\d.]+) s", line)}
    return f"{line}, tree peak PSS {peak / 1024:.0f} MB", {**numbers, "pss": peak / 1024}



def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", "--patients", type=int, default=100_000, dest="episodes")
    parser.add_argument("--readmitted", type=float, default=0.1,
                        help="share of the episodes that are second stays of earlier patients")
    parser.add_argument("--reference-src", type=Path,
                        help="a source tree of the code to compare with; skipped when not given")
    parser.add_argument("--repeat", type=int, default=1, help="rounds, interleaved; the summary gives medians")
    parser.add_argument("--sqlite-file", type=Path, help="the SQLite database's file (default: a temporary one)")
    parser.add_argument("--no-seed", action="store_true", help="measure the databases as they are")
    parser.add_argument("--databases", default="sqlite,postgresql",
                        help="comma-separated; postgresql only when BENCH_POSTGRES_URL is set")
    args = parser.parse_args()
    codes = [("current", ROOT)] + ([("reference", args.reference_src.resolve())] if args.reference_src else [])
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        targets = []
        if "sqlite" in args.databases.split(","):
            targets.append(("sqlite", f"sqlite:///{args.sqlite_file or Path(tmp) / 'analysis.db'}"))
        if os.environ.get("BENCH_POSTGRES_URL") and "postgresql" in args.databases.split(","):
            targets.append(("postgresql", os.environ["BENCH_POSTGRES_URL"]))
        for label, url in targets:
            if not args.no_seed:
                if args.sqlite_file and label == "sqlite":
                    args.sqlite_file.unlink(missing_ok=True)
                t0 = time.perf_counter()
                people = seed(url, args.episodes, args.readmitted)
                print(f"{label}: seeded {args.episodes} episodes ({people} patients) x {len(TIMEPOINTS)} time "
                      f"points in {time.perf_counter() - t0:.0f} s")
        for rep in range(args.repeat):
            for label, url in targets:
                for code, src in (codes if rep % 2 == 0 else codes[::-1]):  # alternate: drift favours neither
                    line, numbers = measure(src, url)
                    print(f"{label}{' ' + code if args.reference_src else ''}: {line}", flush=True)
                    results.setdefault((label, code), []).append(numbers)
    if args.repeat > 1 or args.reference_src:
        print(f"median of {args.repeat}:")
        for label, _ in targets:
            for code, _ in codes:
                rows = [r for r in results[label, code] if "total" in r]
                if rows:
                    med = {k: statistics.median(r.get(k, float("nan")) for r in rows)
                           for k in ("load", "statistics", "csv+parquet", "total", "pss")}
                    print(f"  {label:10s} {code:9s} load {med['load']:4.1f} + statistics {med['statistics']:4.1f} "
                          f"+ export {med['csv+parquet']:3.1f} = {med['total']:4.1f} s, tree peak PSS "
                          f"{med['pss']:.0f} MB")


if __name__ == "__main__":
    main()
