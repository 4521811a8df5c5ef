"""The alliance alert and watch rules, read from ``alliance_rules.toml``, and what a check-in meets.

:func:`evaluate` is pure: a check-in's ratings and the patient's earlier check-ins in, the flags out, each naming
its rule, its level and the statements that fell most (with the subscale they belong to, so that the clinician
knows what to talk about: the bond, or agreement on goals and tasks)."""
from __future__ import annotations

import math
import statistics
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import AllianceCheckin
from ..study.instrument import Instrument

ALERT, WATCH = "alert", "watch"
KINDS = {"mean_below", "item_at_or_below", "drop_from_previous", "drop_from_median", "below_ceiling",
         "missed_in_a_row"}


@dataclass(frozen=True)
class Rule:
    name: str
    level: str
    kind: str
    threshold: float | str | None
    over: int
    says: str


@dataclass(frozen=True)
class Rules:
    rules: tuple[Rule, ...]
    alert_days: int
    sd: float
    alpha: float
    z: float
    recompute_after: int

    def of_kind(self, kind: str) -> list[Rule]:
        return [r for r in self.rules if r.kind == kind]


@cache
def load_rules() -> Rules:
    data = tomllib.loads((resources.files("outreach.care") / "alliance_rules.toml").read_text(encoding="utf-8"))
    rules = tuple(Rule(r["name"], r["level"], r["kind"], r.get("threshold"), int(r.get("over", 0)), r["says"])
                  for r in data["rule"])
    for r in rules:
        if r.level not in (ALERT, WATCH) or r.kind not in KINDS:
            raise ValueError(f"alliance rule {r.name!r}: level must be alert or watch and kind one of {sorted(KINDS)}")
    rc = data["reliable_change"]
    return Rules(rules, int(data["alert_days"]), float(rc["sd"]), float(rc["alpha"]), float(rc["z"]),
                 int(rc["recompute_after"]))


def reliable_change_of(sd: float, alpha: float, z: float = 1.96) -> float:
    """The smallest change in the mean beyond measurement error: z × SD × √(2(1 − α))."""
    return round(z * sd * math.sqrt(2 * (1 - alpha)), 2)


@dataclass(frozen=True)
class ReliableChange:
    threshold: float
    sd: float
    alpha: float
    checkins: int
    from_study: bool  # the study's own SD and alpha (once enough check-ins exist), else the defaults


def reliable_change(session: Session, instrument: Instrument, rules: Rules | None = None) -> ReliableChange:
    """The drop rule's threshold: from the defaults, or from the study's own check-ins once there are
    ``recompute_after`` of them with every statement answered (SD of their means, Cronbach's alpha of the items)."""
    rules = rules or load_rules()
    count = session.scalar(select(func.count()).select_from(AllianceCheckin)
                           .where(AllianceCheckin.mean_score.is_not(None))) or 0
    if count < rules.recompute_after:
        return ReliableChange(reliable_change_of(rules.sd, rules.alpha, rules.z), rules.sd, rules.alpha, count, False)
    complete = [items for (items,) in session.execute(select(AllianceCheckin.items)
                                                       .where(AllianceCheckin.mean_score.is_not(None)))
                if items and all(v is not None for v in items)]
    if len(complete) < rules.recompute_after:
        return ReliableChange(reliable_change_of(rules.sd, rules.alpha, rules.z), rules.sd, rules.alpha, count, False)
    sd = statistics.stdev(sum(items) / len(items) for items in complete)
    alpha = cronbach_alpha(complete)
    return ReliableChange(reliable_change_of(sd, alpha, rules.z), round(sd, 3), round(alpha, 3), count, True)


def cronbach_alpha(rows: Sequence[Sequence[float]]) -> float:
    k = len(rows[0])
    item_var = sum(statistics.variance([r[i] for r in rows]) for i in range(k))
    total_var = statistics.variance([sum(r) for r in rows])
    return 0.0 if total_var == 0 else k / (k - 1) * (1 - item_var / total_var)


@dataclass(frozen=True)
class Scored:
    """A check-in as the rules see it."""
    items: Sequence[int | None]
    mean: float | None


def evaluate(new: Scored, earlier: Sequence[Scored], instrument: Instrument, rules: Rules, *,
             drop_threshold: float) -> list[dict[str, Any]]:
    """The rules ``new`` meets, given the patient's ``earlier`` check-ins of this stay (oldest first):
    ``[{"rule", "level", "says", "statements", "subscale"}]`` in the rules' order."""
    flags = []
    previous = next((e for e in reversed(earlier) if e.mean is not None), None)
    for rule in rules.rules:
        fired, reference = _fires(rule, new, earlier, previous, instrument, drop_threshold)
        if fired:
            statements = _fell_most(new, reference)
            flags.append({"rule": rule.name, "level": rule.level, "says": rule.says, "statements": statements,
                          "subscale": subscale_of(statements, instrument)})
    return flags


def _fires(rule: Rule, new: Scored, earlier: Sequence[Scored], previous: Scored | None, instrument: Instrument,
           drop_threshold: float) -> tuple[bool, Scored | None]:
    answered = [v for v in new.items if v is not None]
    if rule.kind == "mean_below":
        return new.mean is not None and new.mean < float(rule.threshold), None
    if rule.kind == "item_at_or_below":
        return any(v <= float(rule.threshold) for v in answered), None
    if rule.kind == "drop_from_previous":
        limit = drop_threshold if rule.threshold == "reliable_change" else float(rule.threshold)
        return (previous is not None and new.mean is not None
                and round(previous.mean - new.mean, 4) >= limit), previous
    if rule.kind == "drop_from_median":
        last = [e.mean for e in earlier if e.mean is not None][-rule.over:]
        return (len(last) == rule.over and new.mean is not None
                and round(statistics.median(last) - new.mean, 4) >= float(rule.threshold)), previous
    if rule.kind == "below_ceiling":
        run = [e for e in earlier if e.mean is not None][-rule.over:]
        at_max = all(e.mean == instrument.max for e in run)
        return (len(run) == rule.over and at_max and new.mean is not None and new.mean < instrument.max), previous
    return False, None  # missed_in_a_row: no check-in to look at (outreach.care.alerts.check_missed)


def _fell_most(new: Scored, reference: Scored | None) -> list[int]:
    """The statements (1-based) that fell most since ``reference``, else the lowest rated; ties all named."""
    if reference is not None:
        drops = {i: reference.items[i - 1] - v for i, v in enumerate(new.items, 1)
                 if v is not None and reference.items[i - 1] is not None}
        if drops and max(drops.values()) > 0:
            top = max(drops.values())
            return sorted(i for i, d in drops.items() if d == top)
    rated = {i: v for i, v in enumerate(new.items, 1) if v is not None}
    if not rated:
        return []
    low = min(rated.values())
    return sorted(i for i, v in rated.items() if v == low)


def subscale_of(statements: Sequence[int], instrument: Instrument) -> str | None:
    """The subscale most of ``statements`` belong to (the first on a tie), or None."""
    best, best_count = None, 0
    for sub in instrument.subscales:
        count = sum(s in sub.items for s in statements)
        if count > best_count:
            best, best_count = sub.name, count
    return best
