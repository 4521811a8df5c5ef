"""Train the crisis detector's learned second opinion and write ``conversations/data/crisis_model.json``.

    python benchmarks/train_crisis_model.py [--dry-run]

Needs scikit-learn (a dev dependency only: ``conversations/crisis_model.py`` reads the JSON in pure Python).
Deterministic: the same sources give the same JSON (one BLAS thread; same scikit-learn and numpy).

The model: TF-IDF features of the lower-cased, accent-stripped text (``strip_accents="unicode"``), character
2-5-grams inside word boundaries (``char_wb``) and word 1-2-grams (``(?u)\\b\\w\\w+\\b`` tokens), each with
sublinear tf, smoothed idf, ``min_df=2`` and its own l2 normalisation (a ``FeatureUnion`` of the two
vectorizers), then a logistic regression (``class_weight="balanced"``, lbfgs).

Training sources (every labelled text we have that is *not* a blind test): ``tests/corpus/*.txt`` (one source,
"corpus"), ``benchmarks/crisis_eval/batch3.tsv``, ``batch4.tsv``, ``batch4_author_probes.tsv``, ``batch5.tsv`` and
``batch6.tsv``, ``model_contrasts.tsv``, ``batch7_dev.tsv`` and ``model_contrasts2.tsv``.  Batches 5 and 6 were blind
tests once (their first figures are in the README) and are dev data since; of batch 7 only its dev half is read
(``batch7_dev.tsv``, split by ``split.py``'s fixed seed): ``batch7.tsv``, ``batch7_heldout.tsv`` and any later batch
are NOT (batch 7's held-out half is the next blind test).
``model_contrasts.tsv`` holds 60 texts written for the model's known false alarms on short everyday wishes ("je veux
me reposer", "i just want to go home and rest", "tired of the snow"), each family beside crisis texts in the same
words ("je veux me reposer pour toujours", "so tired of being alive"); before it was read the model flagged 3 of its
40 ordinary texts.  ``model_contrasts2.tsv`` holds 102 texts written for the families of batch 7's dev misses (never
their sentences): a means held or a lethal place now with no verb of harm ("razor blade in my hand right now", "chu
sur le bord du toit"), no need to write after a near day, no more surveys, words left for the family and a pet
given away, no way out and knowing what to do, a lethal amount asked, and first-person present "suicidal" and
"overdose" (the other sources use them mostly in denials), each family beside ordinary texts in the same words
("knife in my hand, chopping onions", "dont text after 9pm, im at work", "combien de comprimés par jour pour mon
dos?"); 10 of them, added after the first nine-source model flagged "after tonight i wont have to
work nights" at 0.88: no more pain or feeling after a near day beside no more chores after one).
A text found in an earlier source (same text once lower-cased and stripped) is kept once, in the first source
that has it, in the order above, so no text is in two cross-validation folds.

How C and the threshold are chosen (fixed before any figure was computed by this script; with six sources
since batch 7 was being written, with nine sources since batch 7's dev half and ``model_contrasts2`` were added, the rule
unchanged and written here before those nine were cross-validated):

1. Leave-one-source-out cross-validation over the sources: for each C of ``C_GRID`` and each source,
   the whole pipeline (vocabulary, idf and regression) is fitted on the other sources and the held-out
   source's texts are scored; the out-of-fold probabilities of the folds are pooled.
2. For each C, the threshold is the lowest of ``THRESHOLDS`` (0.01 to 0.99 in steps of 0.01; a text is
   flagged when p >= threshold) at which the pooled out-of-fold false-alarm rate on ordinary texts is
   <= ``MAX_FALSE_ALARMS`` (2%, the issue's target).
3. C is the one with the best pooled out-of-fold recall on crisis texts at its threshold (ties: the smaller C).
4. The final model is fitted with that C on all training texts; the threshold of step 2 is kept.

Negation (decided by a rule fixed before either figure was computed, 2026-12-07): the word block may read the
text with the three words after a negator marked ``neg_`` (:func:`conversations.crisis_model.negation_marked`: "i
dont want to die" -> "i dont neg_want neg_to neg_die"), the character block unchanged.  Both variants were
cross-validated by steps 1-3; the negation-marked one was to be kept iff its pooled out-of-fold recall at its own
threshold were strictly greater than the plain one's.  It was: 1003/1836 (54.6%) at 56/2864 (2.0%) false alarms,
C=10, threshold 0.90, against 903/1836 (49.2%) at 57/2864, C=3, threshold 0.85 for the plain model (six
sources; with ``model_contrasts`` added after, the same rule chose C=10, threshold 0.90 again: 1006/1856 (54.2%)
at 57/2904 (2.0%)).  A gate
that would have asked the model to confirm a bare "suicide" or "overdose" was weighed by a rule fixed at the same
time (kept iff no crisis text caught by those words alone scored under 0.10 out of fold) and dropped: "I am having
suicidal thoughts" scores 0.06 out of fold, because the other sources use the word mostly in denials and
prevention talk.

Each source is written by different people in a different way, so the leave-one-source-out figures are an
estimate of how the model does on a new writer's words, not a blind measure: the next blind batch is that.

The JSON holds the vocabulary of each block with each feature's idf and coefficient, the intercept, the
preprocessing and n-gram settings, the threshold, the CV figures, the training sources (lines, texts kept
and SHA-256) and ~50 check pairs (a training text and scikit-learn's probability for it) that the tests use
to prove the pure-Python scorer gives the same probability.
"""
from __future__ import annotations

import os

# One BLAS thread: a multi-threaded BLAS sums in a varying order, and lbfgs then stops at a point that differs
# in the tenth decimal from run to run (once, by one text at a threshold).  Set before numpy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import csv  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus"
EVAL = ROOT / "benchmarks" / "crisis_eval"
OUT = ROOT / "conversations" / "data" / "crisis_model.json"
SOURCES = ("corpus", "batch3", "batch4", "batch4_author_probes", "batch5", "batch6", "model_contrasts", "batch7_dev",
           "model_contrasts2")
C_GRID = (1.0, 3.0, 10.0, 30.0, 100.0)
THRESHOLDS = tuple(round(0.01 * i, 2) for i in range(1, 100))
MAX_FALSE_ALARMS = 0.02
NEGATION = True  # the word block reads the negation-marked text (see "Negation" in the docstring)
CHECK_PAIRS = 50
SEED = 20261207

CHAR = dict(analyzer="char_wb", ngram_range=(2, 5))
WORD = dict(analyzer="word", ngram_range=(1, 2), token_pattern=r"(?u)\b\w\w+\b")
COMMON = dict(lowercase=True, strip_accents="unicode", sublinear_tf=True, smooth_idf=True, use_idf=True,
              norm="l2", min_df=2)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_sources() -> tuple[list[tuple[str, str, int]], list[dict]]:
    """(source, text, label 1 crisis / 0 ordinary) for each training text, and what each source is."""
    raw: list[tuple[str, str, int]] = []
    info = []
    corpus_files = sorted(CORPUS.glob("*.txt"))
    lines = 0
    for path in corpus_files:
        label = 1 if path.name.startswith("crisis_") else 0
        for line in path.read_text("utf-8").splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            lang, sep, text = line.partition("\t")
            if not sep or not text.strip():
                raise SystemExit(f"{path}: bad line {line!r}")
            raw.append(("corpus", text, label))
            lines += 1
    info.append({"source": "corpus", "files": [
        {"path": str(p.relative_to(ROOT)), "sha256": _sha256(p)} for p in corpus_files], "texts_in_file": lines})
    for name in SOURCES[1:]:
        path = EVAL / f"{name}.tsv"
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
        for row in rows:
            if row["kind"] not in ("crisis", "ordinary") or not row["text"].strip():
                raise SystemExit(f"{path}: bad row {row!r}")
            raw.append((name, row["text"], 1 if row["kind"] == "crisis" else 0))
        info.append({"source": name, "files": [{"path": str(path.relative_to(ROOT)), "sha256": _sha256(path)}],
                     "texts_in_file": len(rows)})
    seen: dict[str, int] = {}
    kept = []
    for source, text, label in raw:
        key = text.lower().strip()
        if key in seen:
            if seen[key] != label:
                raise SystemExit(f"{text!r} is labelled both ways")
            continue
        seen[key] = label
        kept.append((source, text, label))
    for entry in info:
        mine = [k for k in kept if k[0] == entry["source"]]
        entry["texts_kept"] = len(mine)
        entry["crisis"] = sum(k[2] for k in mine)
        entry["ordinary"] = len(mine) - entry["crisis"]
    return kept, info


def pipeline(c: float, negation: bool = False):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    word = TfidfVectorizer(**WORD, **COMMON)
    if negation:
        from conversations.crisis_model import negation_marked

        word = TfidfVectorizer(**WORD, **COMMON, preprocessor=negation_marked)
    return Pipeline([
        ("features", FeatureUnion([("char_wb", TfidfVectorizer(**CHAR, **COMMON)),
                                   ("word", word)])),
        ("model", LogisticRegression(C=c, class_weight="balanced", solver="lbfgs", max_iter=10000, tol=1e-6)),
    ])


def rates(probs: list[float], labels: list[int], threshold: float) -> tuple[int, int, int, int]:
    """(crisis caught, crisis texts, ordinary flagged, ordinary texts) at p >= threshold."""
    caught = sum(p >= threshold for p, y in zip(probs, labels) if y == 1)
    flagged = sum(p >= threshold for p, y in zip(probs, labels) if y == 0)
    n_crisis = sum(labels)
    return caught, n_crisis, flagged, len(labels) - n_crisis


def lowest_threshold(probs: list[float], labels: list[int]) -> float | None:
    for t in THRESHOLDS:
        _, _, flagged, n_ordinary = rates(probs, labels, t)
        if flagged <= MAX_FALSE_ALARMS * n_ordinary:
            return t
    return None


def pct(n: int, total: int) -> str:
    return f"{n}/{total} ({100 * n / total:.1f}%)" if total else "0/0"


def cross_validate(texts: list[tuple[str, str, int]], negation: bool = False) -> tuple[dict, float, float]:
    print(f"leave-one-source-out cross-validation, C in {C_GRID}, threshold: lowest of 0.01..0.99 with pooled "
          f"out-of-fold false alarms <= {MAX_FALSE_ALARMS:.0%}", flush=True)
    cv: dict = {"procedure": "leave-one-source-out over " + ", ".join(SOURCES) + "; pooled out-of-fold "
                "probabilities; threshold = lowest of 0.01..0.99 with pooled false alarms <= 2%; C = best pooled "
                "recall at that threshold (ties: smaller C)", "by_C": []}
    best = None
    for c in C_GRID:
        probs: list[float] = [0.0] * len(texts)
        started = time.perf_counter()
        for held in SOURCES:
            train = [i for i, t in enumerate(texts) if t[0] != held]
            test = [i for i, t in enumerate(texts) if t[0] == held]
            model = pipeline(c, negation).fit([texts[i][1] for i in train], [texts[i][2] for i in train])
            for i, p in zip(test, model.predict_proba([texts[i][1] for i in test])[:, 1]):
                probs[i] = float(p)
        labels = [t[2] for t in texts]
        threshold = lowest_threshold(probs, labels)
        entry = {"C": c, "threshold": threshold}
        if threshold is None:
            print(f"C={c:g}: no threshold reaches {MAX_FALSE_ALARMS:.0%} false alarms")
            cv["by_C"].append(entry)
            continue
        caught, n_crisis, flagged, n_ordinary = rates(probs, labels, threshold)
        entry.update(recall=[caught, n_crisis], false_alarms=[flagged, n_ordinary], by_source={})
        line = (f"C={c:g}: threshold {threshold:.2f}  recall {pct(caught, n_crisis)}  false alarms "
                f"{pct(flagged, n_ordinary)}  ({time.perf_counter() - started:.0f} s)")
        print(line)
        for held in SOURCES:
            idx = [i for i, t in enumerate(texts) if t[0] == held]
            sc, sn, sf, so = rates([probs[i] for i in idx], [labels[i] for i in idx], threshold)
            entry["by_source"][held] = {"recall": [sc, sn], "false_alarms": [sf, so]}
            print(f"    held out {held:<22} recall {pct(sc, sn):<20} false alarms {pct(sf, so)}")
        cv["by_C"].append(entry)
        if best is None or caught > best[2]:
            best = (c, threshold, caught)
        sys.stdout.flush()
    if best is None:
        raise SystemExit("no C reaches the false-alarm limit")
    cv["chosen"] = {"C": best[0], "threshold": best[1]}
    print(f"chosen: C={best[0]:g}, threshold {best[1]:.2f}")
    return cv, best[0], best[1]


def export(model, texts: list[tuple[str, str, int]], info: list[dict], cv: dict, c: float,
           threshold: float) -> dict:
    union = model.named_steps["features"]
    lr = model.named_steps["model"]
    coef = lr.coef_[0]
    blocks, offset = [], 0
    for name, vec in union.transformer_list:
        vocab = vec.vocabulary_
        idf = vec.idf_
        features = {}
        for term, j in sorted(vocab.items()):
            features[term] = [float(idf[j]), float(coef[offset + j])]
        settings = {k: v for k, v in vec.get_params().items()
                    if k in ("analyzer", "ngram_range", "token_pattern", "lowercase", "strip_accents",
                             "sublinear_tf", "smooth_idf", "norm", "min_df")}
        if settings["analyzer"] != "word":
            settings.pop("token_pattern")
        if vec.preprocessor is not None:  # the scorer knows it by name (conversations/crisis_model.py)
            settings["preprocessor"] = vec.preprocessor.__name__
        settings["ngram_range"] = list(settings["ngram_range"])
        blocks.append({"name": name, **settings, "features": features})
        offset += len(vocab)
    assert offset == len(coef)
    rng = random.Random(SEED)
    sample = []
    for source in SOURCES:  # the same share from each source, crisis and ordinary alike
        for label in (1, 0):
            pool = [t[1] for t in texts if t[0] == source and t[2] == label]
            sample += rng.sample(pool, min(len(pool), CHECK_PAIRS // (2 * len(SOURCES)) + 1))
    sample = sample[:CHECK_PAIRS]
    probs = model.predict_proba(sample)[:, 1]
    import sklearn

    return {
        "about": "The crisis detector's learned second opinion (conversations/crisis_model.py), written by "
                 "benchmarks/train_crisis_model.py: TF-IDF (FeatureUnion of a char_wb and a word vectorizer, each "
                 "l2-normalised) and logistic regression. A text no rule catches is flagged when p >= threshold. "
                 "features: n-gram -> [idf, coefficient].",
        "trained_with": {"scikit-learn": sklearn.__version__, "python": sys.version.split()[0]},
        "C": c,
        "class_weight": "balanced",
        "threshold": threshold,
        "intercept": float(lr.intercept_[0]),
        "blocks": blocks,
        "cv": cv,
        "training": {"texts": len(texts), "crisis": sum(t[2] for t in texts),
                     "ordinary": len(texts) - sum(t[2] for t in texts),
                     "deduplicated": "a text already in an earlier source (lower-cased, stripped) is kept once",
                     "sources": info, "not_read": "batch7.tsv, batch7_heldout.tsv (batch 7's held-out half) and any later batch"},
        "checks": [[text, float(p)] for text, p in zip(sample, probs)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the CV figures, write nothing")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    texts, info = load_sources()
    for entry in info:
        print(f"source {entry['source']:<22} {entry['texts_in_file']:>5} texts, {entry['texts_kept']:>5} kept "
              f"({entry['crisis']} crisis, {entry['ordinary']} ordinary)")
    cv, c, threshold = cross_validate(texts, negation=NEGATION)
    if args.dry_run:
        return
    model = pipeline(c, NEGATION).fit([t[1] for t in texts], [t[2] for t in texts])
    data = export(model, texts, info, cv, c, threshold)
    sizes = ", ".join(f"{b['name']} {len(b['features'])}" for b in data["blocks"])
    args.out.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n", "utf-8")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}: features {sizes}, "
          f"{args.out.stat().st_size / 1e6:.2f} MB")
    if not math.isfinite(data["intercept"]):
        raise SystemExit("the intercept is not finite")


if __name__ == "__main__":
    main()
