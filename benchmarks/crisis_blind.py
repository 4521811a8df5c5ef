"""The crisis detector on a blind batch: texts written by someone who had read neither the rules nor the corpus.

    python benchmarks/crisis_blind.py [benchmarks/crisis_eval/batch3.tsv] [--misses]

The batch is a tab-separated file (``kind``, ``category``, ``lang``, ``text``): crisis texts labelled ``direct``
or ``indirect``, ordinary texts by what makes them hard (``third_person``, ``prevention``, ``denial``, ``idiom``,
``survey``, ``other``).  Prints recall on direct and indirect statements (by language), the false-alarm rate
on ordinary texts (by category), and with ``--misses`` every miss and every false alarm with the rule that fired.
The first figure printed for a batch, before any rule is changed for it, is its blind figure: the README keeps
each one, in order.
"""
from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

DEFAULT = Path(__file__).resolve().parent / "crisis_eval" / "batch3.tsv"


def load(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    for n, row in enumerate(rows, 2):
        if row["kind"] not in ("crisis", "ordinary") or row["lang"] not in ("en", "fr") or not row["text"].strip():
            raise SystemExit(f"{path}:{n}: expected kind crisis|ordinary, lang en|fr and a text")
    return rows


def score(rows: list[dict[str, str]]) -> dict:
    from conversations import crisis

    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    misses, alarms = [], []
    for row in rows:
        hit = crisis.detect(row["text"])
        flagged = bool(hit)
        key = (row["kind"], row["category"])
        counts[key][1] += 1
        counts[(row["kind"], f"{row['category']}/{row['lang']}")][1] += 1
        if flagged:
            counts[key][0] += 1
            counts[(row["kind"], f"{row['category']}/{row['lang']}")][0] += 1
        if row["kind"] == "crisis" and not flagged:
            misses.append(row)
        elif row["kind"] == "ordinary" and flagged:
            alarms.append((row, getattr(hit, "rule", hit)))
    return {"counts": counts, "misses": misses, "alarms": alarms}


def pct(caught: int, total: int) -> str:
    return f"{caught}/{total} ({100 * caught / total:.1f}%)" if total else "0/0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("batch", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--misses", action="store_true", help="list every miss and every false alarm")
    args = parser.parse_args()
    result = score(load(args.batch))
    counts = result["counts"]
    crisis_total = [sum(v[i] for (k, c), v in counts.items() if k == "crisis" and "/" not in c) for i in (0, 1)]
    ordinary_total = [sum(v[i] for (k, c), v in counts.items() if k == "ordinary" and "/" not in c) for i in (0, 1)]
    print(f"batch: {args.batch.name}")
    print(f"crisis texts caught: {pct(*crisis_total)}")
    for category in ("direct", "indirect"):
        by_lang = ", ".join(f"{lang} {pct(*counts[('crisis', f'{category}/{lang}')])}" for lang in ("en", "fr"))
        print(f"  {category}: {pct(*counts[('crisis', category)])} ({by_lang})")
    print(f"false alarms on ordinary texts: {pct(*ordinary_total)}")
    for (kind, category), (flagged, total) in sorted(counts.items()):
        if kind == "ordinary" and "/" not in category:
            print(f"  {category}: {pct(flagged, total)}")
    if args.misses:
        print("\nmissed:")
        for row in result["misses"]:
            print(f"  [{row['category']}/{row['lang']}] {row['text']}")
        print("\nfalse alarms:")
        for row, rule in result["alarms"]:
            print(f"  [{row['category']}/{row['lang']}] {row['text']}  <- {rule}")


if __name__ == "__main__":
    main()
