"""Backup and restore timings for a study of N patients × 4 time points (issue 27), on SQLite and PostgreSQL.

Seeds the study the dashboard benchmark builds (each patient with a stay, a rating, a follow-up at 30, 90, 180 and
365 days, invitations, replies and answers in a study's mix), then times the real commands as an operator runs
them, each once: ``outreach backup --out FILE`` (SQLite's online backup API; PostgreSQL's pg_dump, custom format),
``outreach restore FILE`` into a fresh database, and ``outreach db upgrade`` on the copy (a no-op); and checks that
the copy holds as many rows of every table as the source.

    python benchmarks/backup_bench.py [--patients 100000] [--postgres postgresql+psycopg://…/outreach_bench]

Without --postgres (or BENCH_POSTGRES_URL) only SQLite is measured.  The PostgreSQL database named is emptied first
and a database ``<name>_restored`` is created beside it (the role needs CREATEDB).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.dashboard_bench import seed, study  # noqa: E402
from outreach.db import make_engine, upgrade  # noqa: E402


def outreach(url: str, *args: str) -> tuple[float, str]:
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "outreach.cli", *args], env=env, capture_output=True, text=True)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"outreach {' '.join(args)} failed: {done.stdout}{done.stderr}")
    return took, done.stdout.strip()


def counts(url: str) -> dict[str, int]:
    engine = make_engine(url, immediate=False)
    with engine.connect() as conn:
        names = inspect(conn).get_table_names()
        found = {t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar() for t in sorted(names)}
    engine.dispose()
    return found


def fresh_postgres(url: str) -> str:
    """Empty ``url``'s database; create ``<name>_restored`` beside it; return that one's URL."""
    source = make_url(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    target = f"{source.database}_restored"
    admin = make_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{target}"'))
    admin.dispose()
    return source.set(database=target).render_as_string(hide_password=False)


def measure(name: str, source: str, target: str, patients: int, folder: Path) -> None:
    engine = make_engine(source)
    upgrade(engine)
    started = time.perf_counter()
    followups = seed(engine, study(patients))
    engine.dispose()
    print(f"{name}: seeded {patients:,} patients, {followups:,} follow-ups in {time.perf_counter() - started:.0f} s",
          flush=True)
    before = counts(source)
    file = folder / f"{name}.backup"
    took, said = outreach(source, "backup", "--out", str(file))
    print(f"{name}: backup  {took:6.1f} s  {file.stat().st_size / 1e6:7.1f} MB  ({said})", flush=True)
    took, said = outreach(target, "restore", str(file))
    print(f"{name}: restore {took:6.1f} s  ({said})", flush=True)
    took, said = outreach(target, "db", "upgrade")
    print(f"{name}: db upgrade on the copy {took:.1f} s ({said})", flush=True)
    after = counts(target)
    before["audit_events"] += 1  # the restore's own audit row (database_restore), in the copy
    assert after == before, (before, after)
    print(f"{name}: every table has as many rows in the copy as in the source ({before['patients']:,} patients, "
          f"{before['followups']:,} follow-ups, {before['messages']:,} messages, {before['answers']:,} answers)",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--postgres", default=os.environ.get("BENCH_POSTGRES_URL"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="outreach-backup-bench-") as tmp:
        folder = Path(tmp)
        measure("sqlite", f"sqlite:///{folder / 'source.db'}", f"sqlite:///{folder / 'restored.db'}", args.patients,
                folder)
        if args.postgres:
            measure("postgresql", args.postgres, fresh_postgres(args.postgres), args.patients, folder)


if __name__ == "__main__":
    main()
