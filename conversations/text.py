"""Text normalisation shared by keyword, reply and crisis matching."""
from __future__ import annotations

import re
import unicodedata

_SKIN_TONES = re.compile("[\U0001F3FB-\U0001F3FF\uFE0F\u200D]")
_SPACES = re.compile(r"\s+")


def strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _is_trailing_junk(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PZ" or ch.isspace()


def normalize(text: str) -> str:
    """Trim, lower-case, drop accents and emoji modifiers, collapse spaces, drop trailing punctuation."""
    s = _SKIN_TONES.sub("", strip_accents(text or "").lower())
    s = _SPACES.sub(" ", s).strip()
    while s and _is_trailing_junk(s[-1]):
        s = s[:-1]
    while s and (unicodedata.category(s[0])[0] in "Z" or s[0].isspace()):
        s = s[1:]
    return s.replace("\u2019", "'")


