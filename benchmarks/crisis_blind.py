"""The crisis detector on a blind batch: texts written by someone who had read neither the rules nor the corpus.

    python benchmarks/crisis_blind.py [benchmarks/crisis_eval/batch3.tsv] [--misses]

The batch is a tab-separated file (``kind``, ``category``, ``lang``, ``text``): crisis texts labelled ``direct``
or ``indirect``, ordinary texts by what makes them hard (``third_person``, ``prevention``, ``denial``, ``idiom``,
``survey``, ``other``).  Prints recall on direct and indirect statements (by language), the false-alarm rate
on ordinary texts (by category), and with ``--misses`` every miss and every false alarm with the rule that fired.
The first figure printed for a batch, before any rule is changed for it, is its blind figure: the README keeps
each one, in order.

The detector is the rules, then, when no rule matches, the learned second opinion (``conversations/crisis_model.py``).
The figures are printed for the detector as it runs ("rules + model"), then for the rules alone and the model alone;
with ``--misses`` each text caught is listed with what flags it (``rules``, ``model`` or ``rules+model``, the model
alone at its threshold), each false alarm with the rule that fired or ``model`` and the model's probability, and
each miss with the model's probability.
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


MODES = ("both", "rules", "model")
MODE_NAMES = {"both": "rules + model (the detector: the model when no rule matches, unless the text is idioms and "
                      "contexts only, has no word or is a keyword)",
              "rules": "rules alone", "model": "model alone (p >= threshold, whatever the rules say)"}


def _count(rows: list[dict[str, str]], flags: list[bool]) -> dict[tuple[str, str], list[int]]:
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for row, flagged in zip(rows, flags):
        for key in ((row["kind"], row["category"]), (row["kind"], f"{row['category']}/{row['lang']}")):
            counts[key][1] += 1
            counts[key][0] += flagged
    return counts


def score(rows: list[dict[str, str]]) -> dict:
    """``counts``, ``misses`` and ``alarms`` of the detector as it runs (rules, then the model), ``by_mode``: the
    counts of each of :data:`MODES`, and ``rows``: each row with its rule match, model probability and detector
    match."""
    from conversations import crisis, crisis_model

    threshold = crisis_model.model().threshold
    scored = []
    for row in rows:
        rule = crisis.rule_match(row["text"])
        p = crisis_model.probability(row["text"])
        hit = crisis.detect(row["text"])
        asked = crisis.model_asked(row["text"])
        assert (hit is not None) == (rule is not None or (p >= threshold and asked))
        scored.append({"row": row, "rule": rule, "p": p, "model": p >= threshold, "hit": hit,
                       "not_asked": rule is None and not asked})
    by_mode = {
        "both": _count(rows, [s["hit"] is not None for s in scored]),
        "rules": _count(rows, [s["rule"] is not None for s in scored]),
        "model": _count(rows, [s["model"] for s in scored]),
    }
    misses = [s["row"] for s in scored if s["row"]["kind"] == "crisis" and s["hit"] is None]
    alarms = [(s["row"], s["hit"].rule) for s in scored if s["row"]["kind"] == "ordinary" and s["hit"] is not None]
    return {"counts": by_mode["both"], "by_mode": by_mode, "misses": misses, "alarms": alarms, "rows": scored,
            "threshold": threshold}


def pct(caught: int, total: int) -> str:
    return f"{caught}/{total} ({100 * caught / total:.1f}%)" if total else "0/0"


def _caught_by(s: dict) -> str:
    return "+".join(name for name, yes in (("rules", s["rule"] is not None), ("model", s["model"])) if yes)


def _figures(counts: dict) -> list[str]:
    crisis_total = [sum(v[i] for (k, c), v in counts.items() if k == "crisis" and "/" not in c) for i in (0, 1)]
    ordinary_total = [sum(v[i] for (k, c), v in counts.items() if k == "ordinary" and "/" not in c) for i in (0, 1)]
    lines = [f"crisis texts caught: {pct(*crisis_total)}"]
    for category in ("direct", "indirect"):
        by_lang = ", ".join(f"{lang} {pct(*counts[('crisis', f'{category}/{lang}')])}" for lang in ("en", "fr"))
        lines.append(f"  {category}: {pct(*counts[('crisis', category)])} ({by_lang})")
    lines.append(f"false alarms on ordinary texts: {pct(*ordinary_total)}")
    for (kind, category), (flagged, total) in sorted(counts.items()):
        if kind == "ordinary" and "/" not in category:
            lines.append(f"  {category}: {pct(flagged, total)}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("batch", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--misses", action="store_true",
                        help="list every miss, every false alarm and what caught each text caught")
    args = parser.parse_args()
    result = score(load(args.batch))
    print(f"batch: {args.batch.name}")
    print(f"model threshold: p >= {result['threshold']:.2f}")
    for mode in MODES:
        print(f"\n{MODE_NAMES[mode]}:")
        print("\n".join(_figures(result["by_mode"][mode])))
    if args.misses:
        scored = result["rows"]
        print("\nmissed (by rules and model; p: the model's probability):")
        for s in scored:
            if s["row"]["kind"] == "crisis" and s["hit"] is None:
                note = ("  (model not asked: idioms/contexts only, no word, or a keyword)"
                        if s["not_asked"] and s["model"] else "")
                print(f"  [{s['row']['category']}/{s['row']['lang']}] p={s['p']:.2f}  {s['row']['text']}{note}")
        print("\nfalse alarms (<- the rule that fired, or the model):")
        for s in scored:
            if s["row"]["kind"] == "ordinary" and s["hit"] is not None:
                by = s["rule"].rule if s["rule"] else "model"
                print(f"  [{s['row']['category']}/{s['row']['lang']}] {s['row']['text']}  <- {by} "
                      f"(caught by {_caught_by(s)}, p={s['p']:.2f})")
        print("\ncaught (by rules, model or rules+model):")
        for s in scored:
            if s["row"]["kind"] == "crisis" and s["hit"] is not None:
                print(f"  [{s['row']['category']}/{s['row']['lang']}] {_caught_by(s):<11} p={s['p']:.2f}  "
                      f"{s['row']['text']}")


if __name__ == "__main__":
    main()
