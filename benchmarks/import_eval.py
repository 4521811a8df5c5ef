"""Score the discharge import against the blind evaluation set (benchmarks/import_eval/, written by someone who
had not read the importer's rules): for each file, does the import do what an honest importer should?

    python benchmarks/import_eval.py [--verbose]

Each file is imported (all-or-nothing, as `outreach import-discharges` does by default) into a fresh SQLite
database.  A file passes when:
- accept: it is imported with no row rejected;
- refuse: nothing is imported, and every line and column the manifest names appears in the errors;
- warn: it is imported, and a warning (or an error) names every line the manifest names;
- accept_or_warn: it is imported, or refused cleanly (a refusal never misreads) - never a crash.
Prints the score per expectation and in all, and each failing file with what the import said."""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from outreach.config import load_settings  # noqa: E402
from outreach.db import make_engine, session_factory, unit_of_work  # noqa: E402
from outreach.models import Base  # noqa: E402
from outreach.study.importer import ImportFileError, import_discharges  # noqa: E402

EVAL = ROOT / "benchmarks" / "import_eval"
TODAY = dt.date(2026, 12, 6)


def run_one(path: Path, workdir: Path) -> tuple[str, str, list[str]]:
    """(outcome, text of every message, warning lines): outcome is written, refused or crashed."""
    db = workdir / f"{path.stem}.db"
    engine = make_engine(f"sqlite:///{db}")
    Base.metadata.create_all(engine)
    settings = load_settings({"DATABASE_URL": f"sqlite:///{db}"})
    try:
        with unit_of_work(session_factory(engine)) as session:
            result = import_discharges(session, path, settings, today=TODAY)
    except ImportFileError as exc:
        return "refused", str(exc), []
    except Exception as exc:  # a crash: the worst answer
        return "crashed", f"{type(exc).__name__}: {exc}", []
    finally:
        engine.dispose()
    errors = "\n".join(str(e) for e in result.errors)
    warnings = [str(w) for w in result.warnings]
    if not result.written or result.rejected:
        return "refused", errors, warnings
    return "written", "\n".join(warnings), warnings


def named(text: str, lines: list[str], columns: list[str]) -> bool:
    said_lines = {int(n) for n in re.findall(r"\blines? (\d+)", text)}
    said_lines |= {int(n) for group in re.findall(r"\blines ([\d, …]+)", text) for n in re.findall(r"\d+", group)}
    return all(int(n) in said_lines for n in lines) and all(c in text for c in columns)


def judge(expect: str, outcome: str, text: str, lines: list[str], columns: list[str]) -> bool:
    if outcome == "crashed":
        return False
    if expect == "accept":
        return outcome == "written"
    if expect == "refuse":
        return outcome == "refused" and named(text, lines, columns)
    if expect == "warn":
        return named(text, lines, columns)
    return outcome in ("written", "refused")  # accept_or_warn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="show what the import said for every file")
    args = parser.parse_args()
    rows = list(csv.DictReader((EVAL / "manifest.csv").open(encoding="utf-8")))
    score: dict[str, list[int]] = {}
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for row in rows:
            path = EVAL / row["file"]
            lines, columns = row["lines"].split(), row["columns"].split()
            outcome, text, _ = run_one(path, Path(tmp))
            ok = judge(row["expect"], outcome, text, lines, columns)
            score.setdefault(row["expect"], [0, 0])
            score[row["expect"]][0] += ok
            score[row["expect"]][1] += 1
            if not ok or args.verbose:
                failures.append((ok, row, outcome, text))
    for ok, row, outcome, text in failures:
        mark = "ok  " if ok else "FAIL"
        print(f"{mark} {row['file']} (expect {row['expect']} lines {row['lines'] or '-'} columns "
              f"{row['columns'] or '-'}): {outcome}")
        for line in (text or "(nothing said)").splitlines()[:6]:
            print(f"       {line[:160]}")
    total = [sum(v[0] for v in score.values()), sum(v[1] for v in score.values())]
    print()
    for expect, (good, n) in sorted(score.items()):
        print(f"{expect:15} {good:3d} of {n:3d}")
    print(f"{'all':15} {total[0]:3d} of {total[1]:3d} ({100 * total[0] / total[1]:.0f}%)")


if __name__ == "__main__":
    main()
