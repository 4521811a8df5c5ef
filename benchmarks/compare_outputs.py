"""Every published output of the linked dataset, written by this code and by other code on the same database, compared.

For each database URL: the linked dataset at every time point (and none), pseudonymised and identified, as
CSV, Parquet, Stata and SPSS (an export that fails is recorded and compared as its error), the check-in
companion, and the report (report.md, report.html, stats.json, figures) with the repr of ``summarise``; each
code in a child process.  The DataFrames must be equal (exact, dtypes) and the files byte for byte (the
timestamps inside .sav and .dta files masked):

    git archive main | (mkdir -p /tmp/outreach-ref && tar -x -C /tmp/outreach-ref)
    python benchmarks/compare_outputs.py --reference-src /tmp/outreach-ref sqlite:////tmp/demo.db [URL ...]
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WRITE = """
import sys
from pathlib import Path
from outreach.db import make_engine
from analysis.dataset import linked_dataset
from analysis.export import write
from analysis.checkins import checkins_dataset, write_companion
from analysis.report import write_report
from analysis.stats import summarise

url, out = sys.argv[1], Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
engine = make_engine(url)
key = b"compare-key"
for tp in [None, 30, 90, 180, 365, 7]:
    for ident in (False, True):
        df = linked_dataset(engine, key, timepoint=tp, identified=ident)
        name = f"tp{tp}_{'id' if ident else 'de'}"
        (out / f"{name}.dtypes.txt").write_text(df.dtypes.to_string() + f"\\nindex {df.index!r}\\n")
        df.to_pickle(out / f"{name}.pkl")
        for fmt in ("csv", "parquet", "dta", "sav"):
            try:
                write(df, out / f"{name}.{fmt}", fmt)
            except Exception as exc:
                (out / f"{name}.{fmt}.error").write_text(f"{type(exc).__name__}: {exc}")
        if tp is None and not ident:
            write_companion(engine, key, out / f"{name}.csv", "csv")
            write_report(df, out / "report", checkins=checkins_dataset(engine, key))
            (out / "summarise.txt").write_text(repr(summarise(df)))
"""


def _masked(p: Path) -> bytes:
    data = p.read_bytes()
    if p.suffix == ".sav":  # the header's creation date and time (17 bytes at offset 92)
        data = data[:92] + b"#" * 17 + data[109:]
    elif p.suffix == ".dta":
        data = re.sub(rb"<timestamp>.*?</timestamp>", b"<timestamp/>", data, count=1, flags=re.S)
    return data


def compare(a: Path, b: Path) -> list[str]:
    import pandas as pd

    for p in sorted(a.glob("*.pkl")):
        pd.testing.assert_frame_equal(pd.read_pickle(p), pd.read_pickle(b / p.name), check_exact=True,
                                      check_index_type=True, check_column_type=True)
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.suffix != ".pkl")
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.suffix != ".pkl")
    if fa != fb:
        return [f"files differ: {sorted(map(str, set(fa) ^ set(fb)))}"]
    bad = [str(r) for r in fa if _masked(a / r) != _masked(b / r)]
    print(f"  {len(list(a.glob('*.pkl')))} frames equal; {len(fa)} files, "
          f"{sum((a / r).stat().st_size for r in fa)} bytes: " + ("IDENTICAL" if not bad else f"DIFFERENT: {bad}"))
    return bad


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference-src", type=Path, required=True, help="a source tree of the code to compare with")
    parser.add_argument("urls", nargs="+")
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for i, url in enumerate(args.urls):
            print(url)
            outs = []
            for code, src in (("current", ROOT), ("reference", args.reference_src.resolve())):
                out = Path(tmp) / f"{i}-{code}"
                subprocess.run([sys.executable, "-c", WRITE, url, str(out)], cwd=src, check=True,
                               env={**os.environ, "PYTHONPATH": str(src)})
                outs.append(out)
            failed |= bool(compare(*outs))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
