"""The lexicon (``data/lexicon.toml``): whole-message keywords, loaded once.  Crisis detection is
:mod:`conversations.crisis` (rules in ``data/crisis_rules.toml``); :func:`is_crisis` delegates to it."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from . import crisis
from .text import normalize


@dataclass(frozen=True)
class Lexicon:
    keywords: dict[str, frozenset[str]]


@cache
def lexicon() -> Lexicon:
    data = tomllib.loads((resources.files("conversations") / "data" / "lexicon.toml").read_text("utf-8"))
    keywords = {kind: frozenset(normalize(w) for w in ws) for kind, ws in data["keywords"].items()}
    return Lexicon(keywords=keywords)


def keyword(text: str) -> str | None:
    """The keyword class a whole message belongs to: opt_out (a carrier keyword), opt_out_request (a
    plain request to stop that the carrier ignores), wrong_number, opt_in, help, skip, yes, no, or None."""
    norm = normalize(text)
    for kind in ("opt_out", "opt_out_request", "wrong_number", "opt_in", "help", "skip", "yes", "no"):
        if norm in lexicon().keywords[kind]:
            return kind
    return None


def opts_back_in(text: str) -> bool:
    """Does this whole message opt an opted-out patient back in?  START, UNSTOP, or a plain YES / OUI."""
    norm = normalize(text)
    return norm in lexicon().keywords["opt_in"] or norm in lexicon().keywords["opt_in_yes"]


def is_acknowledgement(text: str) -> bool:
    """'ok', 'thanks', a thumbs-up ...: the whole message only acknowledges what we said."""
    return normalize(text) in lexicon().keywords["acknowledgement"]


def is_crisis(text: str) -> bool:
    """True when the crisis detector finds a danger statement in the message (see :mod:`conversations.crisis`)."""
    return crisis.is_crisis(text)
