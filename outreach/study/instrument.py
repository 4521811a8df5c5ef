"""Rating instruments defined as data (``instruments/*.toml``) and their scoring."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Sequence


@dataclass(frozen=True)
class Subscale:
    name: str
    label: str
    items: tuple[int, ...]  # 1-based item numbers
    min_answered: int


@dataclass(frozen=True)
class Instrument:
    name: str
    label: str
    column_prefix: str
    n_items: int
    min: int
    max: int
    min_answered: int
    subscales: tuple[Subscale, ...]
    # The statements in each language, and the scale's end words (min, max), when the file gives them: what a
    # patient reads at a check-in during the stay (outreach.care).
    statements: dict[str, tuple[str, ...]] = field(default_factory=dict)
    anchors: dict[str, tuple[str, str]] = field(default_factory=dict)

    def statements_in(self, language: str) -> tuple[str, ...]:
        return self.statements.get(language) or self.statements["en"]

    def anchors_in(self, language: str) -> tuple[str, str]:
        return self.anchors.get(language) or self.anchors["en"]

    @property
    def columns(self) -> list[str]:
        return [f"{self.column_prefix}{i}" for i in range(1, self.n_items + 1)]

    def score(self, items: Sequence[int | None]) -> tuple[float | None, dict[str, float | None]]:
        """Mean of answered items (missing below ``min_answered``) and each subscale's mean."""
        mean = _mean(items, self.min_answered)
        subs = {s.name: _mean([items[i - 1] for i in s.items], s.min_answered) for s in self.subscales}
        return mean, subs


def _mean(values: Sequence[int | None], min_answered: int) -> float | None:
    answered = [v for v in values if v is not None]
    if len(answered) < min_answered:
        return None
    return round(sum(answered) / len(answered), 4)


@cache
def load_instrument(name: str) -> Instrument:
    path = resources.files("outreach.study") / "instruments" / f"{name}.toml"
    if not path.is_file():
        known = sorted(p.name.removesuffix(".toml") for p in (resources.files("outreach.study") / "instruments").iterdir()
                       if p.name.endswith(".toml"))
        raise ValueError(f"unknown instrument {name!r}; known: {', '.join(known)}")
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    subscales = tuple(
        Subscale(name=k, label=v.get("label", k), items=tuple(v["items"]), min_answered=v["min_answered"])
        for k, v in data.get("subscales", {}).items()
    )
    return Instrument(name=data["name"], label=data.get("label", data["name"]),
                      column_prefix=data["column_prefix"], n_items=data["items"],
                      min=data["min"], max=data["max"], min_answered=data["min_answered"],
                      subscales=subscales,
                      statements={k: tuple(v) for k, v in data.get("statements", {}).items()},
                      anchors={k: (v[0], v[1]) for k, v in data.get("anchors", {}).items()})
