"""A 10,000-row discharge file with 1% bad rows: how long `outreach import-discharges` takes to refuse it, and to
write the rest with --skip-invalid, against a reference checkout measured in the same run (issue 21: the checks
for silent misreads must not slow the import).

    git archive HEAD~1 | (mkdir -p /tmp/outreach-ref && tar -x -C /tmp/outreach-ref)
    python benchmarks/import_errors_bench.py [--rows 10000] [--reference-src /tmp/outreach-ref] [--repeat 3]

Each run is the real command in a child process on a fresh SQLite database; rounds alternate current and
reference code.  Prints each phase's median seconds and the ratio current / reference."""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.import_bench import check_source, launcher  # noqa: E402
from outreach.synthetic import discharge_rows, write_discharges  # noqa: E402


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    return time.perf_counter() - start, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--reference-src", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bad = max(1, args.rows // 100)
    sources = {"current": ROOT}
    if args.reference_src:
        check_source(args.reference_src.resolve())
        sources["reference"] = args.reference_src.resolve()
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = write_discharges(Path(tmp) / "discharges.csv", discharge_rows(args.rows - bad, seed=3, invalid=bad))
        print(f"{args.rows:,} rows, {bad} of them bad (1%), {path.stat().st_size / 1e6:.1f} MB")
        for round_ in range(args.repeat):
            for label, src in sources.items():
                for phase, extra in (("refuse", []), ("--skip-invalid", ["--skip-invalid"])):
                    db = Path(tmp) / f"{label}-{round_}-{phase.strip('-')}.db"
                    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}"}
                    subprocess.run(launcher(src) + ["db", "upgrade"], env=env, capture_output=True, check=True,
                                   cwd=tempfile.gettempdir())
                    seconds, code = timed(launcher(src) + ["import-discharges", str(path), *extra], env)
                    times.setdefault((label, phase), []).append(seconds)
                    print(f"round {round_ + 1} {label:9} {phase:15} {seconds:6.2f} s (exit {code})", flush=True)
    print()
    for phase in ("refuse", "--skip-invalid"):
        current = statistics.median(times[("current", phase)])
        line = f"{phase:15} current {current:.2f} s"
        if ("reference", phase) in times:
            reference = statistics.median(times[("reference", phase)])
            line += f", reference {reference:.2f} s, ratio current/reference {current / reference:.2f}"
        print(line)


if __name__ == "__main__":
    main()
