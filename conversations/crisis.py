"""The crisis detector: does an inbound text say the person may be in danger?

Rules are data (``data/crisis_rules.toml``), each with an id and a comment saying what it catches.
A text is normalised once into one or a few word strings (several only when letters are drawn out,
``diiiie``), known false-alarm idioms are masked, context phrases are found, and the danger rules are
matched.  Recall comes first: a false alarm costs a coordinator a minute, a miss can cost a life.
Measured on the corpus in ``tests/corpus/`` (``python -m benchmarks.crisis_figures``) and on blind
batches (``python benchmarks/crisis_blind.py``).

When no rule matches, a learned second opinion (:mod:`conversations.crisis_model`, a TF-IDF logistic
regression trained by ``benchmarks/train_crisis_model.py``) scores the raw text; at or above its threshold
the text is a crisis message too, with the rule id ``model``, unless the rules read every word of it as
idioms and contexts, or it has no word or is a keyword of the lexicon (:func:`model_asked`).

Contexts are phrases in which danger words do not speak of the writer's own danger: another person's
words or acts ("my friend said she wanted to die"), prevention, screening and treatment talk ("suicide
prevention walk", "my counselor asked if I had thoughts of suicide") and the writer's denial ("not
suicidal, just tired").  A first-person danger statement always wins over them: a danger match counts
unless it lies wholly inside a context, and the danger rules also read each context as a mark
(``~@`` another person, ``~?`` asked, ``~%`` asked if safe, ``~#`` prevention, ``~!`` denial), so the
answer after one ("... and honestly yes, every day", "... but I lied", "... me too") is a rule.

Normalisation, in order:

* lower case; curly apostrophes made straight; emoji that signal danger become words (``emo_gun``),
  other emoji and accents are dropped;
* a few raw rewrites (``w/o``, ``sewer slide``);
* letters written one by one (``k i l l``, ``s.u.i.c.i.d.e``) are joined when they make a key word;
* per word: SMS and Québécois forms (``jveux`` -> ``je veux``, ``chu`` -> ``je suis``, ``pu`` ->
  ``plus``, ``kms`` -> ``kill myself``); digits and symbols used for letters inside words (``k1ll``,
  ``$uicide``); French elision (``m'enlever`` -> ``me enlever``, ``n'`` dropped); letters repeated
  three times or more are read both as two and as one (``tooook`` -> ``took``, ``diiiie`` -> ``die``);
  words of five letters or more one edit away from a key word are read as it (``suicde``); a ``*``
  stands for any one letter (``s*icide``); key words run together are split (``killmyself``);
* phrase rewrites (``do not`` -> ``dont``, ``i m`` -> ``i am``); sentence punctuation becomes ``.``.
"""
from __future__ import annotations

import itertools
import re
import tomllib
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

from . import crisis_model

__all__ = ["MODEL_RULE", "Match", "detect", "explain", "is_crisis", "model_asked", "model_match", "normalise",
           "read_as_ordinary", "rule_match", "rules"]

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'", "\u02bc": "'"})
_MODIFIERS = re.compile("[\U0001F3FB-\U0001F3FF\uFE0F\uFE0E]")
_LETTERS = {"œ": "oe", "æ": "ae", "ß": "ss", "ø": "o", "ł": "l"}
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "@": "a", "$": "s", "!": "i"})
_TOKEN = re.compile(r"[a-z0-9$@*'_]+(?:![a-z0-9$@*'_]+)*|[.!?;:,\n]+")
_ELISION = re.compile(r"^(j|m|t|s|d|l|n|c|qu|jusqu|lorsqu|puisqu)'(.+)$")
_J_CONSONANT = re.compile(r"^j([bcdfghjklmnpqrstvwxz][a-z]+)$")
_NUMBERISH = re.compile(r"^\d+[a-z]{0,4}$")  # 10am, 2nd, 30mg: numbers, not letters
_RUN3 = re.compile(r"([a-z])\1{2,}")
_RUN2 = re.compile(r"([a-z])\1+")
_SPACES = re.compile(" {2,}")
_MAX_VARIANTS = 16
MODEL_RULE = "model"  # the rule id of a match made by the learned second opinion, not by a rule


@dataclass(frozen=True)
class Match:
    rule: str
    why: str


@dataclass(frozen=True)
class _Rules:
    words: dict[str, str]
    elision: dict[str, str]
    emoji: dict[str, str]
    raw: tuple[tuple[re.Pattern, str], ...]
    phrases: tuple[tuple[re.Pattern, str], ...]
    keys: frozenset[str]          # fuzzy-matched key words (five letters or more)
    join: frozenset[str]          # words that spaced or run-together letters may form
    not_fuzzy: frozenset[str]
    deletes: dict[str, frozenset[str]]
    spaced: re.Pattern
    idioms: re.Pattern
    idiom_ids: tuple[tuple[str, str], ...]
    contexts: re.Pattern
    context_ids: tuple[tuple[str, str], ...]
    context_marks: tuple[str, ...]   # the word each context is shown as to the danger rules
    danger: re.Pattern
    danger_ids: tuple[tuple[str, str], ...]
    danger_each: tuple[re.Pattern, ...]


def _expand(pattern: str, macros: dict[str, str]) -> str:
    for _ in range(4):  # macros may use macros
        new = re.sub(r"\{([A-Z][A-Z0-9_]*)\}", lambda m: macros[m.group(1)], pattern)
        if new == pattern:
            break
        pattern = new
    return pattern


def _combined(entries: list[dict], macros: dict[str, str], kind: str) -> tuple[re.Pattern, tuple]:
    parts, ids = [], []
    for i, entry in enumerate(entries):
        pattern = _expand(entry["pattern"], macros)
        try:
            re.compile(pattern)
        except re.error as exc:  # name the rule: a broken rule must not be hard to find
            raise ValueError(f"{kind} {entry['id']}: {exc}") from exc
        parts.append(f"(?P<r{i}>{pattern})")
        ids.append((entry["id"], " ".join(entry["why"].split())))
    return re.compile("|".join(parts)), tuple(ids)


def _deletes(word: str) -> frozenset[str]:
    return frozenset(word[:i] + word[i + 1:] for i in range(len(word)))


@cache
def rules() -> _Rules:
    data = tomllib.loads((resources.files("conversations") / "data" / "crisis_rules.toml").read_text("utf-8"))
    norm = data["normalise"]
    macros = data["macros"]
    keys = frozenset(norm["fuzzy_keys"])
    join = frozenset(norm["join_words"]) | keys
    idioms, idiom_ids = _combined(data["idiom"], macros, "idiom")
    contexts, context_ids = _combined(data["context"], macros, "context")
    danger, danger_ids = _combined(data["rule"], macros, "rule")
    marks = data["context_marks"]
    unknown = {c["kind"] for c in data["context"]} - set(marks)
    if unknown:
        raise ValueError(f"context kinds without a mark: {sorted(unknown)}")
    return _Rules(
        words=dict(norm["words"]), elision=dict(norm["elision"]), emoji=dict(norm["emoji"]),
        raw=tuple((re.compile(p), r) for p, r in norm["raw"]),
        phrases=tuple((re.compile(_expand(p, macros)), r) for p, r in norm["phrases"]),
        keys=keys, join=join, not_fuzzy=frozenset(norm["not_fuzzy"]),
        deletes={k: _deletes(k) for k in keys},
        spaced=re.compile(r"(?<![\w$@*])[a-z0-9$@](?:[ .\-_]{1,2}[a-z0-9$@]){2,}(?![\w$@*])"),
        idioms=idioms, idiom_ids=idiom_ids, contexts=contexts, context_ids=context_ids,
        context_marks=tuple(f" {marks[c['kind']]} " for c in data["context"]),
        danger=danger, danger_ids=danger_ids,
        danger_each=tuple(re.compile(_expand(e["pattern"], macros)) for e in data["rule"]))


def _osa1(a: str, b: str) -> bool:
    """Optimal-string-alignment distance of at most one (a transposition counts as one edit)."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    i = 0
    while i < min(la, lb) and a[i] == b[i]:
        i += 1
    if la == lb:
        return a[i + 1:] == b[i + 1:] or (a[i + 1:i + 2] == b[i:i + 1] and a[i:i + 1] == b[i + 1:i + 2]
                                          and a[i + 2:] == b[i + 2:])
    return a[i + 1:] == b[i:] if la > lb else a[i:] == b[i + 1:]


@lru_cache(maxsize=20000)
def _fuzzy(word: str) -> str:
    r = rules()
    if word in r.join or word in r.not_fuzzy or "_" in word:
        return word
    if "*" in word:
        core = word.strip("*")
        if "*" in core and len(core) >= 3:
            rx = re.compile(re.escape(core).replace(r"\*", "[a-z]"))
            hits = sorted(k for k in r.join if len(k) == len(core) and rx.fullmatch(k))
            if len(hits) == 1:
                return hits[0]
        word = core.replace("*", "")
    if len(word) >= 5:
        mine = _deletes(word)
        hits = sorted(k for k, dels in r.deletes.items() if abs(len(k) - len(word)) <= 1
                      and (word in dels or k in mine or dels & mine) and _osa1(word, k))
        if hits:
            return hits[0]
        split = _split(word)
        if split:
            return split
    return word


def _split(word: str, depth: int = 0) -> str | None:
    """``killmyself`` -> ``kill myself``: a run-together word made only of key words."""
    join = rules().join
    for i in range(1, len(word)):
        head, tail = word[:i], word[i:]
        if head in join:
            if tail in join:
                return f"{head} {tail}"
            if depth < 2:
                rest = _split(tail, depth + 1)
                if rest:
                    return f"{head} {rest}"
    return None


def _words(token: str) -> list[str]:
    """One token (after letter repeats are settled) -> its normalised words."""
    r = rules()
    if token in r.words:
        return r.words[token].split()
    if "'" in token:
        m = _ELISION.match(token)
        if m:
            head = r.elision.get(m.group(1), m.group(1))
            return ([head] if head else []) + _words(m.group(2))
        token = token.replace("'", "")
        if not token:
            return []
        if token in r.words:
            return r.words[token].split()
    m = _J_CONSONANT.match(token)
    if m and token not in r.join:
        return ["je", *_words(m.group(1))]
    if token == "_":
        return []
    return [_fuzzy(token)] if token else []


@lru_cache(maxsize=20000)
def _token(token: str) -> tuple[str, ...]:
    """Alternative readings of one raw token, each a string of normalised words."""
    r = rules()
    if token in r.words:
        return (r.words[token],)
    token = token.strip("'_")
    if not token:
        return ("",)
    if token[0] in ".!?;:,\n":
        return (".",)
    if re.search(r"[a-z]", token) and re.search(r"[0134@$!]", token) and not _NUMBERISH.match(token) \
            and token not in r.words:
        token = token.translate(_LEET)
    token = token.replace("!", "")
    readings = {_RUN3.sub(r"\1\1", token), _RUN3.sub(r"\1", token)}
    single = _RUN2.sub(r"\1", token)  # "diee" -> "die": a doubled letter in a short key word
    if single != token and len(single) >= 3 and single in r.join and token not in r.join:
        readings.add(single)
    return tuple(dict.fromkeys(" ".join(_words(t)) for t in sorted(readings, key=len, reverse=True)))


def _join_spaced(m: re.Match) -> str:
    joined = re.sub(r"[ .\-_]", "", m.group(0))
    j = joined.translate(_LEET)
    r = rules()
    if j in r.join or _fuzzy(j) != j or _split(j):
        return f" {joined} "
    return m.group(0)


def _join_pairs(s: str, keys: frozenset[str]) -> str:
    words = s.split(" ")
    out: list[str] = []
    for w in words:
        if out and out[-1] + w in keys:
            out[-1] += w
        else:
            out.append(w)
    return " ".join(out)


@lru_cache(maxsize=4096)
def normalise(text: str) -> tuple[str, ...]:
    """The normalised readings of a text (usually one): lower-case words separated by single spaces,
    sentence punctuation as ``.``, danger emoji as ``emo_*`` words."""
    r = rules()
    s = _MODIFIERS.sub("", (text or "").lower().translate(_APOSTROPHES))
    s = "".join(f" {r.emoji[c]} " if c in r.emoji else _LETTERS.get(c, c) for c in s)
    s = "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))
    for rx, rep in r.raw:
        s = rx.sub(rep, s)
    s = r.spaced.sub(_join_spaced, s)
    options = [_token(t) for t in _TOKEN.findall(s)]
    if any(len(o) > 1 for o in options):
        combos = 1
        for o in options:
            combos *= len(o)
        if combos <= _MAX_VARIANTS:
            choices = list(itertools.product(*options))
        else:
            choices = [[o[0] for o in options], [o[-1] for o in options]]
    else:
        choices = [[o[0] for o in options]]
    out = []
    for choice in choices:
        s = " ".join(w for w in choice if w)
        s = re.sub(r"(?:\. ?)+", ". ", s).strip()
        s = re.sub(r"^\. ?", "", s)
        # adjacent words that make a key word: "over dose", "my self"
        s = _join_pairs(s, r.keys)
        for rx, rep in r.phrases:
            s = rx.sub(rep, s)
        s = re.sub(r" {2,}", " ", s).strip()
        if s not in out:
            out.append(s)
    return tuple(out)


def _first(r: _Rules, text: str) -> Match | None:
    """The first danger rule, in the file's order, that matches ``text``.  Each rule is searched on its
    own: Python's regex engine finds a rule's literal words far faster alone than in one alternation."""
    for i, pattern in enumerate(r.danger_each):
        if pattern.search(text) is not None:
            return Match(*r.danger_ids[i])
    return None


def _outside(r: _Rules, text: str, spans: list[tuple[int, int]]) -> Match | None:
    """The first danger match in ``text`` that is not wholly inside one of ``spans``: a danger statement
    that only starts or ends in a third-person, prevention or denial phrase still counts."""
    for i, pattern in enumerate(r.danger_each):
        pos = 0
        while (m := pattern.search(text, pos)) is not None:
            if not any(a <= m.start() and m.end() <= b for a, b in spans):
                return Match(*r.danger_ids[i])
            pos = m.start() + 1
    return None


def _contexts(r: _Rules, masked: str) -> tuple[list[tuple[int, int]], str, list[str]]:
    """Spans of the context phrases in ``masked``, the text with each shown as its mark, and their ids."""
    spans, ids, parts, last = [], [], [], 0
    for m in r.contexts.finditer(masked):
        i = int(m.lastgroup[1:])
        spans.append((m.start(), m.end()))
        ids.append(r.context_ids[i][0])
        parts += [masked[last:m.start()], r.context_marks[i]]
        last = m.end()
    marked = _SPACES.sub(" ", "".join(parts) + masked[last:]).strip()
    return spans, marked, ids


def detect(text: str) -> Match | None:
    """The rule that marks ``text`` as a crisis message, or None.

    Idioms are masked first.  Then context phrases (another person's words or acts, prevention and
    screening talk, the writer's own denial) are found: a danger match wholly inside one does not count,
    any other does, and the danger rules also see each context as a mark (``~?`` asked, ``~!`` denied...)
    so that "asked if I had thoughts of suicide, and honestly yes" or "not suicidal, but I lied" match.

    When no rule matches, the learned model (:mod:`conversations.crisis_model`) scores the text: at or above
    its threshold the match is ``Match("model", ...)``, whose ``why`` gives the probability and the threshold
    (never the text's words).  It is not asked (:func:`model_asked`) when the rules read the whole text as
    idioms and contexts (:func:`read_as_ordinary`: "I cut myself shaving", "i dont want to die"): its danger
    words are the ones the rules were written to discount, and the model, which reads words and not their
    setting, would weigh them alone; nor about a text with no word (".", "...", "/6.") or none with meaning
    ("je", "me", "je veux", "i want": :data:`_NO_MEANING`, scored 0.91-0.98 on letter shapes), or a whole-message
    keyword of the lexicon ("je veux me désabonner", STOP, yes, no, an acknowledgement), whose meaning is
    known (the model gives "." p=0.90 and "je veux me désabonner" p=0.93)."""
    found = rule_match(text)
    if found is not None:
        return found
    if not _model_may_read(text) or read_as_ordinary(text):
        return None
    return model_match(text)


def model_asked(text: str) -> bool:
    """Does :func:`detect` ask the learned model about ``text``?  When no rule matches, the text has a word
    of two letters or more, is no whole-message keyword and is not read as idioms and contexts only."""
    return rule_match(text) is None and _model_may_read(text) and not read_as_ordinary(text)


_WORD = re.compile(r"[^\W\d_]{2}")
# Words that say nothing on their own: pronouns, articles and determiners, the verbs "be", "have", "want" and
# "do" and their contractions, conjunctions and small prepositions, in both languages (normalised: no accents,
# elisions split).  A text made of these alone ("je", "me", "je veux", "i want", "it", "im") is a fragment the
# model scores on letter shapes (0.91-0.98), not on meaning, so it is not asked.  Negations ("not", "cant",
# "pas", "plus"), adverbs and every other word are meaning and are not here.
_NO_MEANING = frozenset("""
    i me my mine myself im ive id ill you u your ur yours youre he him his she her hers it its itself we us our they
    them their this that these those a an the and or but so if to of in on at for with is am are was were be been
    being have has had do does did want wanna wants just oh um uh
    je j me m moi ma mon mes tu te t toi ta ton tes il lui elle on nous vous ils elles eux se s le la l les un une
    des du de d au aux ce c ca cela ceci et ou mais donc si a en y suis es est sommes etes sont ai as avons avez
    ont veux veut voulais voudrais juste que qu qui bon ben euh
""".split())


def _model_may_read(text: str) -> bool:
    """Has ``text`` a word of two letters or more, with meaning (a word not in :data:`_NO_MEANING`), and is it
    not a whole-message keyword of the lexicon?"""
    if not _WORD.search(text or ""):
        return False
    words = {w for reading in normalise(text) for w in re.findall(r"[a-z0-9_]+", reading)}
    if words <= _NO_MEANING:
        return False
    from .lexicon import is_acknowledgement, keyword  # the lexicon imports this module

    return keyword(text) is None and not is_acknowledgement(text)


def read_as_ordinary(text: str) -> bool:
    """Do the rules account for every word of ``text`` as an idiom or a context (another person, prevention
    or screening talk, a denial)?  True when at least one was found and, in every reading, no word of three
    letters or more is left outside them ("my friend said she wanted to die": only "my" is left)."""
    r = rules()
    for reading in normalise(text):
        masked = _SPACES.sub(" ", r.idioms.sub(" ~ ", reading)).strip()
        spans = [(m.start(), m.end()) for m in r.contexts.finditer(masked)]
        if not spans and "~" not in masked:
            return False
        rest, last = [], 0
        for a, b in spans:
            rest.append(masked[last:a])
            last = b
        rest.append(masked[last:])
        if any(len(w) >= 3 for w in re.findall(r"[a-z0-9_]+", " ".join(rest))):
            return False
    return True


def model_match(text: str) -> Match | None:
    """The learned model's match for ``text`` (whatever the rules say), or None under its threshold."""
    m = crisis_model.model()
    p = crisis_model.probability(text)
    if p < m.threshold:
        return None
    return Match(MODEL_RULE, f"no rule matched, but the learned model (a second opinion trained on the corpus and "
                             f"earlier batches) gives p={p:.2f}, at or above its threshold {m.threshold:.2f}")


def rule_match(text: str) -> Match | None:
    """The first danger rule that marks ``text`` as a crisis message (the rules alone), or None."""
    r = rules()
    for reading in normalise(text):
        masked = _SPACES.sub(" ", r.idioms.sub(" ~ ", reading)).strip()
        if r.contexts.search(masked) is None:
            found = _first(r, masked)
        else:
            spans, marked, _ = _contexts(r, masked)
            found = _first(r, marked) or _outside(r, masked, spans)
        if found:
            return found
    return None


def is_crisis(text: str) -> bool:
    return detect(text) is not None


def explain(text: str) -> dict:
    """For people writing rules: the readings, the idioms and contexts found, the rule matched, the learned
    model's probability and threshold, and the match :func:`detect` returns."""
    r = rules()
    readings = normalise(text)
    masked = [_SPACES.sub(" ", r.idioms.sub(" ~ ", x)).strip() for x in readings]
    return {"readings": readings,
            "idioms": [r.idiom_ids[int(m.lastgroup[1:])][0] for x in readings for m in r.idioms.finditer(x)],
            "contexts": [c for x in masked for c in _contexts(r, x)[2]],
            "rule": rule_match(text),
            "model": {"p": crisis_model.probability(text), "threshold": crisis_model.model().threshold,
                      "asked": model_asked(text)},
            "match": detect(text)}
