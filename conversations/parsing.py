"""Reply parsing: pure functions from what people type to a coded answer.

``parse_scale`` reads one whole number in a range; ``parse_choice`` reads one
option of a numbered list by number or by label.  Both return a
:class:`Parsed` with either ``value`` or ``problem`` set.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from .text import normalize

_EN = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
       "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
_FR = ["zero", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix", "onze", "douze",
       "treize", "quatorze", "quinze", "seize", "dix-sept", "dix-huit", "dix-neuf", "vingt"]
NUMBER_WORDS: dict[str, int] = {}
for _i, _w in enumerate(_EN):
    NUMBER_WORDS[_w] = _i
for _i, _w in enumerate(_FR):
    NUMBER_WORDS[_w] = _i
    NUMBER_WORDS[_w.replace("-", " ")] = _i
for _u in range(1, 10):
    NUMBER_WORDS[f"twenty-{_EN[_u]}"] = NUMBER_WORDS[f"twenty {_EN[_u]}"] = 20 + _u
    fr = "vingt et un" if _u == 1 else f"vingt-{_FR[_u]}"
    NUMBER_WORDS[fr] = NUMBER_WORDS[fr.replace(" ", "-")] = NUMBER_WORDS[fr.replace("-", " ")] = 20 + _u
NUMBER_WORDS.update({"thirty": 30, "trente": 30, "nil": 0, "nought": 0})
# Words that are numbers only when they are the whole reply (French articles).
_ALONE_ONLY = {"un": 1, "une": 1}
_WORD_RE = re.compile(r"(?<![\w-])(" + "|".join(sorted(map(re.escape, NUMBER_WORDS), key=len, reverse=True))
                      + r")(?![\w-])")
_DIGITS = re.compile(r"(?<![\d\w])-?\d+|\d+")
_DECIMAL = re.compile(r"\d\s*[.,]\s*\d")
_OUT_OF = re.compile(r"(\S+)\s*(?:/|\bout of\b|\bsur\b|\bover\b)\s*(\S+)")
_FILLER = re.compile(r"^(?:(?:about|around|approx(?:imately)?|maybe|probably|prob|roughly|like|i(?:'d| would)? say|"
                     r"i think|i guess|environ|a peu pres|peut-etre|peut etre|je dirais|je pense|disons|"
                     r"a|an|it's|its|it is|c'est|ca fait)\s+)+")
_NEGATION = re.compile(r"\b(?:not|pas|no|non|never|isn't|n'est)\b")
# A number right after a negation ("not 10", "pas un") is not the answer.
_NEGATED_BEFORE = re.compile(r"(?<![\w'])(?:not|pas|never|jamais)\s+(?:(?:a|an|even|quite|really|meme|vraiment)\s+)?$")


@dataclass(frozen=True)
class Parsed:
    value: int | None = None
    problem: str | None = None  # why the reply could not be used

    @property
    def ok(self) -> bool:
        return self.value is not None


def _numbers_at(text: str) -> list[tuple[int, int]]:
    """Every number in ``text``, digits or words, left to right, as (position, value)."""
    found: list[tuple[int, int]] = []
    for m in _DIGITS.finditer(text):
        found.append((m.start(), int(m.group())))
    masked = _DIGITS.sub(lambda m: " " * len(m.group()), text)
    for m in _WORD_RE.finditer(masked):
        found.append((m.start(), NUMBER_WORDS[m.group(1)]))
    return sorted(found)


def _numbers(text: str) -> list[int]:
    return [v for _, v in _numbers_at(text)]


def parse_scale(text: str, lo: int, hi: int, words: Mapping[str, int] | None = None) -> Parsed:
    """One whole number from ``lo`` to ``hi``.  ``words``: whole replies (normalised) that mean a value
    for this question, such as the scale's anchor labels or "none" for a count of days."""
    s = normalize(text)
    if not s:
        return Parsed(problem="empty")
    core = _FILLER.sub("", s).strip()
    for candidate in (s, core):
        if words and candidate in words:
            return Parsed(words[candidate])
    if s in _ALONE_ONLY:
        return _in_range(_ALONE_ONLY[s], lo, hi)
    if _DECIMAL.search(s):
        return Parsed(problem="decimal")
    m = _OUT_OF.search(core)  # "8/10", "seven out of ten", "7/10 today": the numerator is the answer
    if m and _numbers(m.group(1)) and _numbers(m.group(2)):
        if _numbers(m.group(2)) != [hi]:
            return Parsed(problem="different scale")
        core = " ".join(f"{core[:m.start()]} {m.group(1)} {core[m.end():]}".split())
    found = _numbers_at(core)
    if any(_NEGATED_BEFORE.search(core[:pos]) for pos, _ in found):
        return Parsed(problem="negated")
    if len(found) != 1:
        return Parsed(problem="no number" if not found else "more than one number")
    return _in_range(found[0][1], lo, hi)


def _in_range(n: int, lo: int, hi: int) -> Parsed:
    if lo <= n <= hi:
        return Parsed(n)
    return Parsed(problem="out of range")


@functools.lru_cache(maxsize=16)
def _label_patterns(options: tuple[tuple[str, ...], ...]) -> tuple[tuple[re.Pattern[str], int], ...]:
    """Each option label as a whole-word pattern with its option number, longest label first (so
    'very good' is taken before 'good'); built once per list of options."""
    labels = sorted(((normalize(label), i + 1) for i, opts in enumerate(options) for label in opts),
                    key=lambda x: len(x[0]), reverse=True)
    return tuple((re.compile(r"(?<![\w])" + re.escape(label) + r"(?![\w])"), pos) for label, pos in labels)


def parse_choice(text: str, options: Sequence[Sequence[str]]) -> Parsed:
    """``options[i]`` lists the accepted labels of option ``i + 1`` (longer labels first is not needed)."""
    s = normalize(text)
    if not s:
        return Parsed(problem="empty")
    if _DECIMAL.search(s):
        return Parsed(problem="decimal")
    positions: set[int] = set()
    rest = s
    for pattern, pos in _label_patterns(tuple(map(tuple, options))):
        if pattern.search(rest):
            positions.add(pos)
            rest = pattern.sub(" ", rest)
    if _NEGATION.search(rest) and positions:
        return Parsed(problem="negated")
    for n in _numbers(rest) + ([_ALONE_ONLY[s]] if s in _ALONE_ONLY else []):
        if not 1 <= n <= len(options):
            return Parsed(problem="out of range")
        positions.add(n)
    if len(positions) != 1:
        return Parsed(problem="no option" if not positions else "more than one option")
    return Parsed(positions.pop())
