"""Import benchmark: generate a 100,000-row discharge file and time ``outreach import-discharges``.

Runs the real command in a child process on a fresh SQLite database (and on
PostgreSQL when BENCH_POSTGRES_URL is set), then re-imports the same file
(the all-unchanged path).  Prints rows/second and the child's peak memory.

    python benchmarks/import_bench.py [--rows 100000]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from outreach.synthetic import discharge_rows, write_discharges


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"command failed: {proc.stderr[-2000:]}")
    peak_mb = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
    return elapsed, peak_mb, proc.stdout.strip().splitlines()[-1]


def bench(label: str, url: str, csv_path: Path, rows: int) -> None:
    env = {**os.environ, "DATABASE_URL": url}
    outreach = str(Path(sys.executable).with_name("outreach"))
    subprocess.run([outreach, "db", "upgrade"], env=env, check=True, capture_output=True)
    for phase in ("first import", "re-import (unchanged)"):
        elapsed, peak, summary = run([outreach, "import-discharges", str(csv_path)], env)
        print(f"{label:10s} {phase:22s} {rows:7d} rows in {elapsed:6.2f} s = {rows / elapsed:8.0f} rows/s, "
              f"peak RSS {peak:5.0f} MB  [{summary}]")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = write_discharges(Path(tmp) / "discharges.csv", discharge_rows(args.rows, seed=11))
        print(f"file: {args.rows} rows, {csv_path.stat().st_size / 1e6:.1f} MB")
        bench("sqlite", f"sqlite:///{tmp}/bench.db", csv_path, args.rows)
        pg = os.environ.get("BENCH_POSTGRES_URL")
        if pg:
            from sqlalchemy import text

            from outreach.db import make_engine

            engine = make_engine(pg)
            with engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
            engine.dispose()
            bench("postgresql", pg, csv_path, args.rows)


if __name__ == "__main__":
    main()
