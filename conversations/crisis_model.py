"""The crisis detector's learned second opinion: a TF-IDF logistic regression read from ``data/crisis_model.json``.

Trained by ``benchmarks/train_crisis_model.py`` (scikit-learn, a dev dependency); scored here in pure Python,
so this package keeps to its runtime dependencies.  The features are scikit-learn's ``TfidfVectorizer``'s,
reproduced exactly: the text lower-cased then stripped of accents (``strip_accents="unicode"``), then for each
block of the ``FeatureUnion``, its n-grams (``char_wb``: character n-grams of each whitespace-separated word
padded with one space on each side; ``word``: n-grams of the ``token_pattern``'s tokens), counted, only those
in the block's vocabulary kept (a block may first read the negation-marked text, :func:`negation_marked`), tf made sublinear (1 + ln tf), multiplied by the idf, and the block's vector
l2-normalised on its own.  The probability is the logistic of the coefficients' dot product plus the
intercept.  The JSON's check pairs (a training text and scikit-learn's probability) prove it in the tests.

The model is loaded once, on first use (:func:`model`); the web app warms it with the rules.
"""
from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass
from collections.abc import Callable
from functools import cache
from importlib import resources

__all__ = ["Model", "model", "negation_marked", "probability"]

_WHITE_SPACES = re.compile(r"\s\s+")
_NEGATORS = frozenset("not no never nothing nobody none dont didnt doesnt cant cannot wont wouldnt isnt arent wasnt "
                      "werent havent hasnt hadnt shouldnt couldnt pas plus jamais rien aucun aucune pu personne ni"
                      .split())
_NEG_TOKEN = re.compile(r"[\w']+|[.!?;:,\n]")
_NEG_SCOPE = 3


@dataclass(frozen=True)
class _Block:
    analyzer: str
    preprocessor: Callable[[str], str]   # the text the block reads: lower-cased, accents stripped (maybe negation-marked)
    ngram_range: tuple[int, int]
    token_pattern: re.Pattern | None
    sublinear_tf: bool
    features: dict[str, tuple[float, float]]  # n-gram -> (idf, coefficient)


@dataclass(frozen=True)
class Model:
    blocks: tuple[_Block, ...]
    intercept: float
    threshold: float
    C: float
    checks: tuple[tuple[str, float], ...]


def _preprocess(text: str) -> str:
    """scikit-learn's preprocessor with ``lowercase=True, strip_accents="unicode"``."""
    text = text.lower()
    try:
        text.encode("ASCII", errors="strict")
        return text
    except UnicodeEncodeError:
        return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def negation_marked(text: str) -> str:
    """The text lower-cased and stripped of accents, each of the (at most) three words after a negator ("not", "dont",
    "pas", "jamais"...) prefixed with ``neg_`` up to the next punctuation: "i dont want to die" -> "i dont neg_want
    neg_to neg_die".  Apostrophes inside a word are dropped first ("don't" -> "dont")."""
    out, left = [], 0
    for token in _NEG_TOKEN.findall(_preprocess(text).replace("'", "").replace("\u2019", "")):
        if not token[0].isalnum() and token[0] != "_":
            left = 0
            continue
        out.append(f"neg_{token}" if left else token)
        left = _NEG_SCOPE if token in _NEGATORS else max(left - 1, 0)
    return " ".join(out)


def _char_wb(text: str, min_n: int, max_n: int) -> list[str]:
    """``TfidfVectorizer(analyzer="char_wb")``'s n-grams (including its quirk for words shorter than n)."""
    text = _WHITE_SPACES.sub(" ", text)
    out = []
    append = out.append
    for w in text.split():
        w = " " + w + " "
        w_len = len(w)
        for n in range(min_n, max_n + 1):
            offset = 0
            append(w[offset:offset + n])
            while offset + n < w_len:
                offset += 1
                append(w[offset:offset + n])
            if offset == 0:  # a word shorter than n is counted once
                break
    return out


def _word(text: str, pattern: re.Pattern, min_n: int, max_n: int) -> list[str]:
    tokens = pattern.findall(text)
    out = list(tokens) if min_n == 1 else []
    for n in range(max(min_n, 2), min(max_n + 1, len(tokens) + 1)):
        for i in range(len(tokens) - n + 1):
            out.append(" ".join(tokens[i:i + n]))
    return out


def _block_score(block: _Block, text: str) -> float:
    """This block's l2-normalised tf-idf vector, dotted with its coefficients."""
    if block.analyzer == "char_wb":
        grams = _char_wb(text, *block.ngram_range)
    else:
        grams = _word(text, block.token_pattern, *block.ngram_range)
    counts: dict[str, int] = {}
    features = block.features
    for g in grams:
        if g in features:
            counts[g] = counts.get(g, 0) + 1
    if not counts:
        return 0.0
    norm2 = 0.0
    dot = 0.0
    for g, tf in counts.items():
        idf, coef = features[g]
        value = (1.0 + math.log(tf) if block.sublinear_tf else float(tf)) * idf
        norm2 += value * value
        dot += value * coef
    return dot / math.sqrt(norm2)


# How a block reads the text, by the name the JSON gives (none: scikit-learn's own lower-casing and accent stripping).
_PREPROCESSORS = {None: _preprocess, "negation_marked": negation_marked}


@cache
def model() -> Model:
    data = json.loads((resources.files("conversations") / "data" / "crisis_model.json").read_text("utf-8"))
    blocks = []
    for b in data["blocks"]:
        if not (b["lowercase"] and b["strip_accents"] == "unicode" and b["norm"] == "l2" and b["smooth_idf"]):
            raise ValueError(f"crisis_model.json block {b['name']}: settings this scorer does not reproduce")
        if b["analyzer"] not in ("char_wb", "word"):
            raise ValueError(f"crisis_model.json block {b['name']}: analyzer {b['analyzer']!r}")
        if b.get("preprocessor") not in _PREPROCESSORS:
            raise ValueError(f"crisis_model.json block {b['name']}: preprocessor {b['preprocessor']!r}")
        blocks.append(_Block(
            analyzer=b["analyzer"], preprocessor=_PREPROCESSORS[b.get("preprocessor")], ngram_range=tuple(b["ngram_range"]),
            token_pattern=re.compile(b["token_pattern"]) if b["analyzer"] == "word" else None,
            sublinear_tf=bool(b["sublinear_tf"]),
            features={term: (idf, coef) for term, (idf, coef) in b["features"].items()}))
    return Model(blocks=tuple(blocks), intercept=float(data["intercept"]), threshold=float(data["threshold"]),
                 C=float(data["C"]), checks=tuple((t, float(p)) for t, p in data["checks"]))


def probability(text: str) -> float:
    """The model's probability that ``text`` is a crisis message."""
    m = model()
    text = text or ""
    read = {}
    for b in m.blocks:
        if b.preprocessor not in read:
            read[b.preprocessor] = b.preprocessor(text)
    z = m.intercept + sum(_block_score(b, read[b.preprocessor]) for b in m.blocks)
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)
