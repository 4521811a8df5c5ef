"""Split a blind batch into a dev half (rules may be changed from it) and a held-out half (measured once).

    python benchmarks/crisis_eval/split.py [benchmarks/crisis_eval/batch3.tsv]

Stratified by kind x category x lang: each stratum is shuffled with a fixed seed and cut in two; when a
stratum has an odd number of texts, the extra one goes to dev and held-out in turn, so the halves stay
within one text of each other overall.  Writes ``<batch>_dev.tsv`` and ``<batch>_heldout.tsv`` beside the
batch, rows in the batch's own order.  Prints only counts: nobody changing rules should see the held-out
texts before it is measured.
"""
from __future__ import annotations

import csv
import random
import sys
from collections import defaultdict
from pathlib import Path

SEED = 20230923  # fixed: the same batch always splits the same way
HERE = Path(__file__).resolve().parent
FIELDS = ("kind", "category", "lang", "text")


def split(rows: list[dict[str, str]], seed: int = SEED) -> tuple[list[int], list[int]]:
    """Row indexes of the dev half and of the held-out half."""
    strata: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        strata[row["kind"], row["category"], row["lang"]].append(i)
    rng = random.Random(seed)
    dev, heldout, extra_to_dev = [], [], True
    for key in sorted(strata):
        idx = strata[key][:]
        rng.shuffle(idx)
        half = len(idx) // 2
        if len(idx) % 2:
            half += extra_to_dev
            extra_to_dev = not extra_to_dev
        dev += idx[:half]
        heldout += idx[half:]
    return sorted(dev), sorted(heldout)


def write(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.DictWriter(fh, FIELDS, delimiter="\t", quoting=csv.QUOTE_NONE, lineterminator="\n",
                             escapechar=None)
        out.writeheader()
        out.writerows(rows)


def main() -> None:
    batch = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "batch3.tsv"
    with batch.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    dev, heldout = split(rows)
    stem = batch.with_suffix("")
    for name, idx in (("dev", dev), ("heldout", heldout)):
        path = stem.parent / f"{stem.name}_{name}.tsv"
        write(path, [rows[i] for i in idx])
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for i in idx:
            counts[rows[i]["kind"], rows[i]["category"]] += 1
        print(f"{path.name}: {len(idx)} texts; " + ", ".join(f"{k}/{c} {n}" for (k, c), n in sorted(counts.items())))


if __name__ == "__main__":
    main()
