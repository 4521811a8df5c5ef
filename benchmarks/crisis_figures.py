"""Crisis detector figures on the test corpus (tests/corpus/): recall, false alarms, misses, speed.

The corpus has two halves, split at random: the rules were written from the dev half only; the
held-out half says how the detector does on messages it was not written for.

    python -m benchmarks.crisis_figures [--markdown]

Prints the size of each half, recall on the crisis messages (held-out, dev, whole), the false-alarm
rate on the ordinary replies (held-out, dev, whole), every missed crisis message and every false
alarm with the rule that fired (``model``: the learned second opinion, which scores every text no rule
catches), and the mean time per message of ``detect()`` as the webhook runs it, rules then model
(time.perf_counter over the whole corpus, caches emptied first, rules and model loaded before).

Measurement history (one author wrote both the corpus and the rules, so even blind figures flatter them):

* batch 1 (665 crisis, 1,227 ordinary, written before any rule): rules written from its dev half,
  held-out half measured once: recall 93.1% (309/332), false alarms 0.2% (1/613); misses then fixed.
* batch 2 (123 crisis, 178 ordinary, written after that, phrased away from the rules), measured once
  as a whole: recall 62.6% (77/123), false alarms 2.2% (4/178). Split in halves like batch 1, rules
  fixed from its dev half, its held-out half measured once: recall 71.7% (43/60), false alarms
  3.4% (3/88); misses then fixed.
* batch 3 (132 crisis, 178 ordinary chosen to share words, written by a helper who read no rule and no
  corpus; ``benchmarks/crisis_eval/``, scored by ``benchmarks/crisis_blind.py``), measured once as a whole:
  direct 98.2%, indirect 66.7%, false alarms 40.4%; rules fixed from its dev half, its held-out half measured
  once: direct 96.4%, indirect 81.6%, false alarms 1.1% (the README's table has every figure, in order).
* since then every held-out figure is on messages the rules were fixed for: it is no longer blind.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "corpus"
HALVES = ("heldout", "dev")


@dataclass(frozen=True)
class Message:
    kind: str  # crisis | ordinary
    half: str  # dev | heldout
    lang: str
    text: str


def load(directory: Path = CORPUS) -> list[Message]:
    """Every message of the four corpus files (``<lang>\\t<message>`` lines, ``#`` comments)."""
    out = []
    for kind in ("crisis", "ordinary"):
        for half in HALVES:
            path = directory / f"{kind}_{half}.txt"
            for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
                if not line.strip() or line.startswith("#"):
                    continue
                lang, sep, text = line.partition("\t")
                if not sep or lang not in ("en", "fr") or not text.strip():
                    raise ValueError(f"{path.name}:{n}: expected '<en|fr>\\t<message>'")
                out.append(Message(kind, half, lang, text))
    return out


@dataclass(frozen=True)
class Figures:
    sizes: dict[tuple[str, str], int]
    recall: dict[str, tuple[int, int]]       # half or "whole" -> (caught, total)
    false_alarms: dict[str, tuple[int, int]]  # half or "whole" -> (flagged, total)
    misses: list[Message]
    alarms: list[tuple[Message, str]]        # (message, rule)
    ms_per_message: float
    ms_model_per_message: float = 0.0  # the learned model alone, scoring every message


def figures(messages: list[Message] | None = None) -> Figures:
    from conversations import crisis

    from conversations import crisis_model

    messages = load() if messages is None else messages
    crisis.rules()  # load and compile outside the timing
    crisis_model.model()  # the learned second opinion's JSON too
    for cached in (crisis.normalise, crisis._token, crisis._fuzzy):
        cached.cache_clear()
    start = time.perf_counter()
    found = [crisis.detect(m.text) for m in messages]
    elapsed = time.perf_counter() - start
    start = time.perf_counter()
    for m in messages:
        crisis_model.probability(m.text)
    model_elapsed = time.perf_counter() - start
    sizes: dict[tuple[str, str], int] = {}
    for m in messages:
        sizes[m.kind, m.half] = sizes.get((m.kind, m.half), 0) + 1

    def rate(kind: str, flagged: bool) -> dict[str, tuple[int, int]]:
        out = {}
        for half in (*HALVES, "whole"):
            rows = [f for m, f in zip(messages, found) if m.kind == kind and half in (m.half, "whole")]
            out[half] = (sum((f is not None) == flagged for f in rows), len(rows))
        return out

    return Figures(
        sizes=sizes, recall=rate("crisis", True), false_alarms=rate("ordinary", True),
        misses=[m for m, f in zip(messages, found) if m.kind == "crisis" and f is None],
        alarms=[(m, f.rule) for m, f in zip(messages, found) if m.kind == "ordinary" and f is not None],
        ms_per_message=elapsed / max(len(messages), 1) * 1000,
        ms_model_per_message=model_elapsed / max(len(messages), 1) * 1000)


def pct(pair: tuple[int, int]) -> str:
    n, total = pair
    return f"{100 * n / total:.1f}% ({n}/{total})" if total else "n/a"


def report(f: Figures, markdown: bool = False) -> str:
    lines = []
    if markdown:
        lines += ["| | held-out | dev | whole |", "|---|---|---|---|",
                  "| recall (crisis messages caught) | " + " | ".join(pct(f.recall[h]) for h in (*HALVES, "whole")) + " |",
                  "| false alarms (ordinary replies flagged) | "
                  + " | ".join(pct(f.false_alarms[h]) for h in (*HALVES, "whole")) + " |", ""]
    else:
        lines.append("corpus: " + ", ".join(f"{k} {h} {n}" for (k, h), n in sorted(f.sizes.items())))
        lines.append("recall        held-out " + pct(f.recall["heldout"]) + "   dev " + pct(f.recall["dev"])
                     + "   whole " + pct(f.recall["whole"]))
        lines.append("false alarms  held-out " + pct(f.false_alarms["heldout"]) + "   dev "
                     + pct(f.false_alarms["dev"]) + "   whole " + pct(f.false_alarms["whole"]))
    bullet = "- " if markdown else "  "
    lines.append(f"missed crisis messages ({len(f.misses)}):")
    lines += [f"{bullet}[{m.half} {m.lang}] {m.text}" for m in f.misses] or [f"{bullet}none"]
    lines.append(f"false alarms ({len(f.alarms)}):")
    lines += [f"{bullet}[{m.half} {m.lang}] {m.text}   <- {rule}" for m, rule in f.alarms] or [f"{bullet}none"]
    lines.append(f"mean time per message: {f.ms_per_message:.3f} ms "
                 f"({sum(f.sizes.values())} messages, caches emptied first; rules, then the model when no rule "
                 f"matches)")
    lines.append(f"the learned model alone: {f.ms_model_per_message:.3f} ms per message (scoring every message)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="a table and lists ready for the README")
    args = parser.parse_args()
    print(report(figures(), markdown=args.markdown))


if __name__ == "__main__":
    main()
