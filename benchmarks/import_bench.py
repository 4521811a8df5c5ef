"""Import benchmark: generate a 100,000-row discharge file (10% of the rows second stays of
earlier patients) and time ``outreach import-discharges`` on it.

Runs the real command in a child process on a fresh SQLite database (and on
PostgreSQL when BENCH_POSTGRES_URL is set), then re-imports the same file
(the all-unchanged path).  Prints rows/second and the child's peak memory.

With ``--reference-src PATH`` (a checkout of the code to compare with), the same
runs are made with that code on the same file (``--reference-file single``: a
file of as many single-stay rows, for code before treatment episodes, which
refuses a repeated patient_id), interleaved round by round with the current
code, and the summary gives medians and the ratio current / reference of rows
per second.

Right before each import, in a child process like the import's, it also
measures a floor that no import of this file can go under: the phone library
alone parsing every distinct phone cell of the file (``phonenumbers.parse``,
which every cell needs, nothing of ours; its ``is_valid_number`` after it is
timed too), and the summary gives the first import's time as a multiple of the
floor measured beside it: a figure that the load of other work on the machine
changes far less than the seconds.  On PostgreSQL, after the first import, it also measures the server's own
time to take the rows that import wrote, sent back to it by COPY into the same tables (their indexes and foreign
keys in place), and prints the floor of both together:

    git archive 997b8b6 | (mkdir -p /tmp/outreach-ref && tar -x -C /tmp/outreach-ref)
    python benchmarks/import_bench.py [--rows 100000] [--readmitted 0.1] \\
        [--reference-src /tmp/outreach-ref] [--reference-file same|single] [--repeat 3]
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

from sqlalchemy import create_engine, text

from outreach.synthetic import discharge_rows, write_discharges

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("first import", "re-import (unchanged)")


def launcher(src: Path) -> list[str]:
    """The ``outreach`` command, importing the packages from ``src`` whatever is installed."""
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(src)!r}); "
            "from outreach.cli import main; main()"]


def check_source(src: Path) -> None:
    out = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(src)!r}); "
                          "import outreach, analysis, conversations; "
                          "print(outreach.__file__, analysis.__file__, conversations.__file__)"],
                         capture_output=True, text=True, cwd=tempfile.gettempdir())
    files = out.stdout.split()
    if out.returncode != 0 or len(files) != 3 or not all(Path(f).is_relative_to(src) for f in files):
        sys.exit(f"{src}: the packages are not imported from there: {out.stdout}{out.stderr}")


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run ``cmd``; its wall time, its own peak RSS in MB, and the import summary it printed."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, cwd=tempfile.gettempdir())
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        sys.exit(f"command failed ({' '.join(cmd[-2:])}): {stdout[-1000:]}{stderr[-2000:]}")
    lines = stdout.strip().splitlines() or [""]
    summary = next((line for line in reversed(lines) if line.startswith("imported")), lines[-1])
    warned = re.search(r"^(\d+) warning\(s\)", stderr, re.MULTILINE)  # printed on stderr, rows still imported
    return elapsed, usage.ru_maxrss / 1024, summary + (f"; {warned[1]} warnings" if warned else "")


FLOOR = """
import csv, sys, time
import phonenumbers
path, region = sys.argv[1], sys.argv[2]
with open(path, newline="", encoding="utf-8-sig") as fh:
    rows = csv.reader(fh)
    at = next(rows).index("phone")
    cells = list(dict.fromkeys(row[at].strip() for row in rows if len(row) > at))
start = time.perf_counter()
numbers = []
for cell in cells:
    try:
        numbers.append(phonenumbers.parse(cell, region))
    except phonenumbers.NumberParseException:
        pass
parsed = time.perf_counter()
for number in numbers:
    phonenumbers.is_valid_number(number)
print(len(cells), parsed - start, time.perf_counter() - start)
"""


def phone_floor(csv_path: Path, region: str = "CA") -> tuple[int, float, float]:
    """(distinct phone cells, seconds the phone library alone takes to parse them, and to parse and validate
    them with its own is_valid_number), in a child process."""
    out = subprocess.run([sys.executable, "-c", FLOOR, str(csv_path), region], capture_output=True, text=True,
                         check=True, cwd=tempfile.gettempdir())
    cells, parse, validate = out.stdout.split()
    return int(cells), float(parse), float(validate)


WRITE_FLOOR = """
import io, sys, time
import psycopg
tables = ["patients", "episodes", "alliance_ratings"]
with psycopg.connect(sys.argv[1]) as conn:
    data = {}
    for table in tables:
        buf = io.BytesIO()
        with conn.cursor().copy(f"COPY {table} TO STDOUT") as copy:
            for chunk in copy:
                buf.write(chunk)
        data[table] = buf.getvalue()
    conn.rollback()
    with conn.transaction():
        conn.execute("TRUNCATE " + ", ".join(tables) + " CASCADE")
        start = time.perf_counter()
        for table in tables:
            with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
                copy.write(data[table])
        conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
    print(time.perf_counter() - start)
"""


def write_floor(url: str) -> float:
    """PostgreSQL only: the server's own time to take the rows the first import wrote (patients, stays,
    ratings), sent back to it as COPY text in one transaction into the same tables with their indexes and
    foreign keys: no import can write them in less."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    out = subprocess.run([sys.executable, "-c", WRITE_FLOOR, dsn], capture_output=True, text=True, check=True,
                         cwd=tempfile.gettempdir())
    return float(out.stdout.split()[-1])


def fresh_database(label: str, tmp: Path, round_: str) -> str:
    if label == "sqlite":
        return f"sqlite:///{tmp}/bench-{round_}.db"
    url = os.environ["BENCH_POSTGRES_URL"]
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return url


def bench(label: str, code: str, src: Path, url: str, csv_path: Path, rows: int,
          floor_file: Path) -> dict[str, dict]:
    env = {**os.environ, "DATABASE_URL": url}
    env.pop("PYTHONPATH", None)
    outreach = launcher(src)
    run(outreach + ["db", "upgrade"], env)
    out = {}
    for phase in PHASES:
        floor = phone_floor(floor_file)
        elapsed, peak, summary = run(outreach + ["import-discharges", str(csv_path)], env)
        print(f"{label:10s} {code:9s} {phase:22s} {rows:7d} rows in {elapsed:6.2f} s = {rows / elapsed:8.0f} rows/s, "
              f"peak RSS {peak:5.0f} MB, {elapsed / floor[1]:5.2f} x the floor  [{summary}]", flush=True)
        print(f"{'':10s} {'floor':9s} {phase:22s} the phone library alone parsed the file's {floor[0]} distinct phone "
              f"cells in {floor[1]:6.2f} s (and validated them by its is_valid_number in {floor[2] - floor[1]:6.2f} s "
              "more)", flush=True)
        out[phase] = {"rate": rows / elapsed, "seconds": elapsed, "rss": peak, "floor": floor[1],
                      "x_floor": elapsed / floor[1]}
        if label == "postgresql" and phase == PHASES[0]:
            written = write_floor(url)
            both = floor[2] + written
            print(f"{'':10s} {'floor':9s} {phase:22s} the server alone took the rows written back by COPY in "
                  f"{written:6.2f} s; with the phone library's parsing and validation: {both:6.2f} s, the first "
                  f"import {elapsed / both:5.2f} x that", flush=True)
            out[phase]["write_floor"] = both
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--readmitted", type=float, default=0.1,
                        help="share of the rows that are second stays of earlier patients")
    parser.add_argument("--reference-src", type=Path,
                        help="a source tree of the code to compare with (single-stay file); skipped when not given")
    parser.add_argument("--reference-file", choices=("same", "single"), default="same",
                        help="the reference imports the same file, or as many single-stay rows")
    parser.add_argument("--repeat", type=int, default=3, help="rounds, interleaved; the summary gives medians")
    parser.add_argument("--databases", default="sqlite,postgresql",
                        help="comma-separated; postgresql only when BENCH_POSTGRES_URL is set")
    args = parser.parse_args()
    labels = [d for d in args.databases.split(",")
              if d == "sqlite" or (d == "postgresql" and os.environ.get("BENCH_POSTGRES_URL"))]
    codes = [("current", ROOT)]
    if args.reference_src:
        ref = args.reference_src.resolve()
        check_source(ref)
        codes.append(("reference", ref))
    check_source(ROOT)
    # Yesterday: a second stay discharged "today" on this machine could be tomorrow in the importer's zone.
    today = dt.date.today() - dt.timedelta(days=1)
    results: dict[tuple[str, str], list[dict]] = {(lab, c): [] for lab in labels for c, _ in codes}
    with tempfile.TemporaryDirectory() as tmp:
        files = {"current": write_discharges(Path(tmp) / "discharges.csv",
                                             discharge_rows(args.rows, seed=11, today=today,
                                                            readmitted=args.readmitted))}
        print(f"current:   {args.rows} rows ({round(args.rows * args.readmitted)} second stays), "
              f"{files['current'].stat().st_size / 1e6:.1f} MB")
        if args.reference_src and args.reference_file == "single":
            files["reference"] = write_discharges(Path(tmp) / "single.csv",
                                                  discharge_rows(args.rows, seed=11, today=today))
            print(f"reference: {args.rows} single-stay rows, {files['reference'].stat().st_size / 1e6:.1f} MB, "
                  f"code from {args.reference_src}")
        elif args.reference_src:
            files["reference"] = files["current"]
            print(f"reference: the same file, code from {args.reference_src}")

        for rep in range(args.repeat):
            order = codes if rep % 2 == 0 else codes[::-1]  # alternate, so drift does not favour one side
            for label in labels:
                for code, src in order:
                    url = fresh_database(label, Path(tmp), f"{rep}-{code}")
                    results[label, code].append(bench(label, code, src, url, files[code], args.rows,
                                                      files["current"]))
    print(f"median of {args.repeat}:")
    for label in labels:
        for phase in PHASES:
            med = {c: {k: statistics.median(r[phase][k] for r in results[label, c]) for k in ("rate", "seconds", "rss")}
                   for c, _ in codes}
            line = "; ".join(f"{c} {m['rate']:6.0f} rows/s ({m['seconds']:5.2f} s, {m['rss']:4.0f} MB)"
                             for c, m in med.items())
            if args.reference_src:
                ratios = [a[phase]["rate"] / b[phase]["rate"]
                          for a, b in zip(results[label, "current"], results[label, "reference"])]
                line += (f"; ratio current/reference {med['current']['rate'] / med['reference']['rate']:.2f} "
                         f"(per round: {', '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):.2f})")
            print(f"  {label:10s} {phase:22s} {line}")
        for c, _ in codes:
            for phase in PHASES:
                ratios = [r[phase]["x_floor"] for r in results[label, c]]
                floors = [r[phase]["floor"] for r in results[label, c]]
                print(f"  {label:10s} {c:9s} {phase:22s} = {statistics.median(ratios):5.2f} x the phone library's "
                      f"parsing alone, measured just before (per round: {', '.join(f'{r:.2f}' for r in ratios)}; "
                      f"floor median {statistics.median(floors):.2f} s)")
                both = [r[phase]["write_floor"] for r in results[label, c] if "write_floor" in r[phase]]
                if both:
                    print(f"  {label:10s} {c:9s} {phase:22s} floor with the server's own write: median "
                          f"{statistics.median(both):.2f} s (per round: {', '.join(f'{b:.2f}' for b in both)})")


if __name__ == "__main__":
    main()
