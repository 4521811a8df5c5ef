"""One suppressed results model, built once from the statistics and rendered everywhere.

Every count the report publishes (in report.md, report.html, stats.json and the
figures) is a :class:`Cell` in one :class:`Ledger`, with the arithmetic that
ties counts together recorded as lines (``total = part + part + ...``): the
contact table's rows, a 2x2 table and its tertile groups, participants with and
without an alliance rating, and so on.  Counts readers never see but could work
out (a total minus the cells shown) are *internal* cells of those lines.

:meth:`Ledger.protect` then applies

* primary suppression: a published count from 1 to ``below - 1`` is shown as
  ``<5`` (for ``below`` = 5);
* complementary suppression: as long as the total of a line minus the counts
  shown is from 1 to 4, or a reader can pin down a hidden count (or an
  unpublished one from 1 to 4), one more non-zero count of that line is hidden,
  shown as ``x``: the cheapest to lose (a total in running text first, a cell
  that estimates are computed from last; each count also costs the shares and
  intervals made from it), the smallest among equals, as statistical agencies
  hide the next smallest cell of the row or column.  What a reader knows about a
  hidden cell is propagated through every line: ``<5`` is 1-4, ``x`` is 1 or
  more, an unpublished count is anything from 0.  In a table of tiny counts,
  where the ``<5`` marks themselves pin a count down, those counts are shown as
  ``x`` too.

Percentages, rates, means, medians, CIs, p-values and plotted elements computed
from a group are published only when every count they depend on is shown
(:class:`Derived`), so a share never gives away a suppressed count.

:func:`build` returns the resolved model: a JSON-ready dict in which every count
is an int or ``"<5"``/``"x"`` and every derived number a float or None.  The
report's renderers read nothing else.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pandas as pd

from outreach.study.waves import ANSWERED, OUTCOMES

from . import stats as st

INF = math.inf
COMPLEMENTARY = "x"
TERTILES = ["low", "mid", "high"]


# -- the ledger -----------------------------------------------------------------------------------------------------
@dataclass
class Cell:
    key: str
    value: int
    internal: bool = False  # never published (a difference readers could compute)
    status: str = "shown"  # shown | primary (<5) | masked (x) | complementary (x) | internal
    cost: float = 5.0  # what hiding it costs the reader (a figure, an estimate): the cheapest is hidden first

    @property
    def hidden(self) -> bool:
        return self.status != "shown"


@dataclass
class Line:
    total: str
    parts: list[str]
    prefer_total: bool = False  # a total printed in running text: hide it rather than a cell of a table


@dataclass
class Ledger:
    below: int = 5
    cells: dict[str, Cell] = field(default_factory=dict)
    lines: list[Line] = field(default_factory=list)

    # building
    def count(self, key: str, value: int | float, *, internal: bool = False, cost: float = 5.0) -> Ref:
        """Register a count (the same key twice: the same count; a different value: a related count).  ``cost``:
        how much hiding it takes from the report (0 for a total in running text, high for a cell that an
        estimate is computed from)."""
        value = int(value)
        if key in self.cells and self.cells[key].value != value:
            other = self.count(f"{key}'", value, internal=internal, cost=cost)
            self.related(key, other)
            return other
        if key not in self.cells:
            self.cells[key] = Cell(key, value, internal, "internal" if internal else "shown", cost)
        return Ref(key)

    def line(self, total: str | Ref, parts: Iterable[str | Ref], *, prefer_total: bool = False) -> None:
        total, parts = _key(total), [_key(p) for p in parts]
        missing = [k for k in [total, *parts] if k not in self.cells]
        if missing:
            raise KeyError(f"unknown cells {missing}")
        if len(parts) == 1 and parts[0] == total:
            return
        if prefer_total:
            self.cells[total].cost = 0.0
        self.lines.append(Line(total, parts, prefer_total))

    def related(self, a: str | Ref, b: str | Ref, *, prefer: str | Ref | None = None) -> None:
        """Two published counts of nested groups: the larger = the smaller + an unpublished difference."""
        a, b = _key(a), _key(b)
        if a == b:
            return
        va, vb = self.cells[a].value, self.cells[b].value
        big, small = (a, b) if va >= vb else (b, a)
        diff = self.count(f"{big}-{small}", abs(va - vb), internal=True)
        self.line(big, [small, diff], prefer_total=prefer is not None and _key(prefer) == big)

    # suppression
    def protect(self) -> None:
        """Primary suppression, then complementary suppression until no line gives a hidden count away."""
        k = self.below
        for c in self.cells.values():
            if not c.internal and 0 < c.value < k:
                c.status = "primary"
        for _ in range(10 * len(self.cells) + 10):
            line = next((ln for ln in self.lines if self._small_remainder(ln)), None)
            if line is not None:  # the total minus the cells shown is a small count: hide one more of the line
                candidates = self._shown([*line.parts, line.total])
                if not candidates:
                    raise RuntimeError(f"cannot protect the line of {line.total}")  # pragma: no cover
                if line.prefer_total:  # a total in running text, rather than a cell of a table
                    self.cells[line.total].status = "complementary"
                else:
                    min(candidates, key=lambda x: (x.cost, x.key == line.total, x.value)).status = "complementary"
                continue
            ranges = self.ranges()
            bad = next((c for c in self.cells.values() if self._exposed(c, ranges[c.key])), None)
            if bad is None:
                return
            if not self._unpin(bad):
                raise RuntimeError(f"cannot protect {bad.key}")  # pragma: no cover
        raise RuntimeError("complementary suppression did not settle")  # pragma: no cover

    def _small_remainder(self, ln: Line) -> bool:
        """The total is shown and the counts hidden in its line add up to 1 .. below-1 (total minus the rest)."""
        if self.cells[ln.total].hidden:
            return False
        rest = sum(self.cells[p].value for p in ln.parts if self.cells[p].hidden)
        return 0 < rest < self.below

    def _shown(self, keys: Iterable[str]) -> list[Cell]:
        return [self.cells[k] for k in dict.fromkeys(keys) if not self.cells[k].hidden and self.cells[k].value]

    def _unpin(self, c: Cell) -> bool:
        """``c`` can be worked out: hide a count shown in a line through it, or in a line through the hidden counts
        of those lines (nearest first), choosing the cheapest that leaves ``c`` uncertain.  With nothing left to
        hide (a table of tiny counts, where "<5" itself pins a count down), show those small counts as x."""
        candidates: list[tuple[float, int, int, str]] = []
        frontier, seen = {c.key}, set()
        for depth in range(4):
            lines = [ln for ln in self.lines if id(ln) not in seen and frontier & {ln.total, *ln.parts}]
            if not lines:
                break
            seen |= {id(ln) for ln in lines}
            candidates += [(x.cost, depth, x.value, x.key) for ln in lines for x in self._shown([*ln.parts, ln.total])]
            frontier = {k for ln in lines for k in [ln.total, *ln.parts] if self.cells[k].hidden} - frontier
        for _, _, _, key in sorted(set(candidates))[:12]:
            self.cells[key].status = "complementary"
            if not self._exposed(c, self.ranges()[c.key]):
                return True
            self.cells[key].status = "shown"
        if candidates:
            self.cells[min(candidates)[3]].status = "complementary"
            return True
        # Nothing left to hide: tiny counts, where the "<5" marks (1 to 4) themselves pin a count down.  Show the
        # nearest of them as x (hidden, 1 or more, no upper bound) instead, one at a time.
        frontier, seen = {c.key}, set()
        while frontier:
            if self.cells[c.key].status == "primary" and c.key in frontier:
                c.status = "masked"
                return True
            lines = [ln for ln in self.lines if id(ln) not in seen and frontier & {ln.total, *ln.parts}]
            seen |= {id(ln) for ln in lines}
            small = sorted({k for ln in lines for k in [ln.total, *ln.parts] if self.cells[k].status == "primary"})
            if small:
                self.cells[small[0]].status = "masked"
                return True
            frontier = {k for ln in lines for k in [ln.total, *ln.parts] if self.cells[k].hidden} - frontier
        return False

    def _exposed(self, c: Cell, rng: tuple[float, float]) -> bool:
        """A suppressed count, or an unpublished one from 1 to below-1, that a reader can pin down.  (Knowing that a
        count is somewhere from 1 to below-1 is what ``<5`` says, and allowed.)"""
        lo, hi = rng
        if c.status in ("primary", "masked") or (c.status == "internal" and 0 < c.value < self.below):
            return lo == hi
        return False

    def public_range(self, c: Cell) -> tuple[float, float]:
        return {"shown": (c.value, c.value), "primary": (1, self.below - 1), "masked": (1, INF),
                "complementary": (1, INF), "internal": (0, INF)}[c.status]

    def ranges(self) -> dict[str, tuple[float, float]]:
        """What a reader can work out about every count: bounds propagated through every line."""
        r = {key: self.public_range(c) for key, c in self.cells.items()}
        for _ in range(50):
            changed = False
            for ln in self.lines:
                members = [(ln.total, -1)] + [(p, 1) for p in ln.parts]
                for key, sign in members:
                    others = [(o, s) for o, s in members if o != key]
                    # sign * v_key = - sum(s * v_o)
                    lo_sum = sum((r[o][0] if s > 0 else -r[o][1]) for o, s in others)
                    hi_sum = sum((r[o][1] if s > 0 else -r[o][0]) for o, s in others)
                    lo, hi = (-hi_sum, -lo_sum) if sign > 0 else (lo_sum, hi_sum)
                    new = (max(r[key][0], lo), min(r[key][1], hi))
                    if new != r[key] and new[0] <= new[1]:
                        r[key] = new
                        changed = True
            if not changed:
                break
        return r

    # reading
    def hidden(self, key: str | Ref) -> bool:
        return self.cells[_key(key)].hidden

    def value(self, key: str | Ref) -> int | str:
        c = self.cells[_key(key)]
        if c.status == "shown":
            return c.value
        return f"<{self.below}" if c.status == "primary" else COMPLEMENTARY  # masked or complementary


def _key(x: str | Ref) -> str:
    return x.key if isinstance(x, Ref) else x


@dataclass(frozen=True)
class Ref:
    """A count in the model: resolved to its published value."""
    key: str


@dataclass(frozen=True)
class Derived:
    """A number computed from groups.  ``strict`` (shares, rates, intervals, tests: numbers from which a count can
    be worked back): published only when every count in ``depends`` is shown.  Otherwise (a mean, a median, an
    SD of one group): published unless a count in ``depends`` is below the threshold (``<5``)."""
    value: Any
    depends: tuple[str, ...]
    strict: bool = True


def derived(value: Any, *depends: str | Ref, strict: bool = True) -> Derived:
    return Derived(value, tuple(_key(d) for d in depends), strict)


def resolve(obj: Any, ledger: Ledger) -> Any:
    if isinstance(obj, Ref):
        return ledger.value(obj)
    if isinstance(obj, Derived):
        if any(ledger.hidden(d) if obj.strict else ledger.cells[d].status in ("primary", "masked")
               for d in obj.depends):
            return None
        return resolve(obj.value, ledger)
    if isinstance(obj, dict):
        return {k: resolve(v, ledger) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [resolve(v, ledger) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# -- the model ------------------------------------------------------------------------------------------------------
def _num(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype("float64")


def histogram_bins(values: np.ndarray, below: int, width: float = 0.5, top: float = 6.0) -> list[dict[str, Any]]:
    """Bins of the 0-``top`` scale holding at least ``below`` people each: fine bins of ``width`` plus one for the
    ceiling (exactly ``top``), merged from the top down until each holds enough; the lowest remainder joins the
    bin above it.  Each bin: ``low`` (inclusive), ``high`` (exclusive, except the last, which includes ``top``)
    and ``count``; the ceiling alone is ``low == high == top``.  No bins for fewer than ``below`` people."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) < below:
        return []
    lows = list(np.round(np.arange(0, top, width), 6)) + [top]  # fine bins, the last one the ceiling alone
    highs = lows[1:] + [top]
    fine = [int(((values >= lo) & (values < hi)).sum()) for lo, hi in zip(lows[:-1], highs[:-1])]
    fine.append(int((values >= top).sum()))
    bins: list[dict[str, Any]] = []  # built from the top down
    acc, high = 0, top
    for i in range(len(fine) - 1, -1, -1):
        acc += fine[i]
        if acc >= below:
            bins.append({"low": float(lows[i]), "high": float(high), "count": acc})
            acc, high = 0, lows[i]
    if acc:
        bins[-1]["count"] += acc
    bins[-1]["low"] = 0.0
    return bins[::-1]


@dataclass
class Model:
    ledger: Ledger
    tree: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)  # resolved

    def resolve(self) -> dict[str, Any]:
        self.data = resolve(self.tree, self.ledger)
        return self.data


def _group(ledger: Ledger, key: str, values: pd.Series, cost: float = 8.0) -> dict[str, Any]:
    """events / n of a binary column, with its Wilson 95% CI, tied to its counts."""
    values = _num(values).dropna()
    n = ledger.count(f"{key}.n", len(values), cost=cost)
    events = ledger.count(f"{key}.events", int(values.sum()), cost=cost)
    rest = ledger.count(f"{key}.nonevents", len(values) - int(values.sum()), internal=True)
    ledger.line(n, [events, rest])
    share, lo, hi = st.wilson(int(values.sum()), len(values))
    return {"n": n, "events": events, "share": derived(share, n, events), "ci_low": derived(lo, n, events),
            "ci_high": derived(hi, n, events)}


def _count_result(ledger: Ledger, r: dict[str, Any] | None, key: str, cost: float = 30.0) -> dict[str, Any] | None:
    if r is None:
        return None
    out = {k: v for k, v in r.items() if k not in ("parameters", "events", "epp")}  # in words, not published counts
    if r.get("epp"):
        out["epp"] = {"per_parameter": st.EPP, "of": r["epp"]["what"]}
    out["n"] = ledger.count(key, r["n"], cost=cost)
    return out


def build(df: pd.DataFrame, summary: dict[str, Any], *, below: int = 5, timepoint: int | None = None) -> Model:
    """The report's numbers, every count registered in one ledger (protected and resolved by the caller)."""
    ledger = Ledger(below)
    tree: dict[str, Any] = {"timepoint": timepoint, "suppress_below": below,
                            "timepoints": summary.get("timepoints", []), "unit": summary.get("unit"),
                            "too_small": bool(summary.get("too_small", True)),
                            "min_responders": st.MIN_RESPONDERS,
                            "primary_timepoint": summary.get("primary_timepoint"),
                            "analysis_timepoint": summary.get("analysis_timepoint"),
                            "analysis_is_primary": summary.get("analysis_is_primary"),
                            "alliance_sd": summary.get("alliance_sd"),
                            "decision_rules": {"min_responders": st.MIN_RESPONDERS, "epp": st.EPP,
                                               "min_repeated": st.MIN_REPEATED}}
    if not len(df):
        tree["n_rows"] = ledger.count("followups", 0)
        tree["participants"] = {"targeted": ledger.count("participants.targeted", 0),
                                "answered": ledger.count("participants.answered", 0)}
        tree["contact"] = {"columns": list(OUTCOMES), "rows": []}
        return Model(ledger, tree)
    every_episode, primary = df, st.first_episodes(df)
    per_tp = st.by_timepoint(primary)
    single = len(per_tp) == 1

    # contact: one row per time point, a column for every outcome code, the total = the sum of the columns
    rows = []
    for t, rows_t in per_tp:
        status = rows_t["status"].astype("object")
        total = ledger.count(f"contact.{t}.targeted", len(rows_t), cost=8)
        cells = {code: ledger.count(f"contact.{t}.{code}", int((status == code).sum()), cost=2) for code in OUTCOMES}
        other = int((~status.isin(list(OUTCOMES))).sum())
        if other:  # a code from an older export: counted apart, so the row still adds up
            cells["other"] = ledger.count(f"contact.{t}.other", other)
        ledger.line(total, cells.values())
        answered = ledger.count(f"contact.{t}.answered", int((_num(rows_t["responded"]) == 1).sum()), cost=3)
        ledger.line(answered, [cells[c] for c in ANSWERED])
        rate, lo, hi = st.wilson(ledger.cells[answered.key].value, len(rows_t))
        rows.append({"timepoint": t, "targeted": total, **cells, "answered": answered,
                     "response_rate": derived(rate, total, answered), "ci_low": derived(lo, total, answered),
                     "ci_high": derived(hi, total, answered)})
    tree["contact"] = {"columns": list(OUTCOMES) + (["other"] if any("other" in r for r in rows) else []),
                       "rows": rows}

    # people
    targeted = ledger.count("participants.targeted", primary["participant"].nunique(), cost=0)
    answered_people = ledger.count("participants.answered", st.people_answered(primary), cost=0)
    if single:
        t = per_tp[0][0]
        ledger.related(targeted, f"contact.{t}.targeted")
        ledger.related(answered_people, f"contact.{t}.answered")
    else:  # people = those at the first time point + those first seen (first answering) later
        seen: set = set()
        parts_t, parts_a, answered_seen = [], [], set()
        for i, (t, rows_t) in enumerate(per_tp):
            ids = set(rows_t["participant"])
            ans = set(rows_t.loc[_num(rows_t["responded"]) == 1, "participant"])
            if i == 0:
                parts_t.append(f"contact.{t}.targeted")
                parts_a.append(f"contact.{t}.answered")
            else:
                parts_t.append(ledger.count(f"participants.targeted.new_at_{t}", len(ids - seen), internal=True))
                parts_a.append(ledger.count(f"participants.answered.new_at_{t}", len(ans - answered_seen),
                                            internal=True))
            seen |= ids
            answered_seen |= ans
        ledger.line(targeted, parts_t, prefer_total=True)
        ledger.line(answered_people, parts_a, prefer_total=True)
    followups = ledger.count("followups", len(primary))
    ledger.line(followups, [f"contact.{t}.targeted" for t, _ in per_tp], prefer_total=True)
    tree["n_rows"] = followups  # follow-ups of the primary data (the `outreach report` command prints it)
    tree["participants"] = {"targeted": targeted, "answered": answered_people,
                            "answers": derived(summary.get("n_answers"), *[f"contact.{t}.answered" for t, _ in per_tp])}
    # withdrew from the study keeping their answers (those who asked for removal are not in the data at all)
    if "withdrawn" in every_episode:
        gone = every_episode.loc[_num(every_episode["withdrawn"]) == 1, "participant"].nunique()
        tree["participants"]["withdrawn"] = ledger.count("participants.withdrawn", gone, cost=1)

    # readmissions
    ep = summary.get("episodes", {})
    multi = ledger.count("episodes.multi", ep.get("n_participants_multi", 0), cost=2)
    n_episodes = ledger.count("episodes.n", ep.get("n_episodes", 0))
    extra = ledger.count("episodes.extra", ep.get("n_episodes", 0) - ledger.cells[targeted.key].value, internal=True)
    ledger.line(n_episodes, [targeted, extra], prefer_total=True)
    tree["episodes"] = {"n_participants_multi": multi, "n_episodes": n_episodes,
                        "primary": ep.get("primary", "first episode per participant"), "sensitivity": None}

    # alliance at discharge: one rating per participant (first episode)
    per = primary.drop_duplicates("participant")["alliance_mean"].astype("float64").dropna()
    n_rated = ledger.count("alliance.n", len(per), cost=15)
    ledger.related(targeted, n_rated)
    ceiling = ledger.count("alliance.at_ceiling", int((per == 6).sum()), cost=4)
    below_ceiling = ledger.count("alliance.below_ceiling", int((per < 6).sum()), internal=True)
    ledger.line(n_rated, [ceiling, below_ceiling])
    hist = histogram_bins(per.to_numpy(), below)
    bins = [ledger.count(f"alliance.bin.{i}", b["count"], cost=10) for i, b in enumerate(hist)]
    if bins:
        ledger.line(n_rated, bins)
    rated = every_episode.drop_duplicates(["participant", "episode"] if "episode" in every_episode else
                                          ["participant"])["alliance_mean"].astype("float64").dropna()
    cuts = [float(x) for x in rated.quantile([1 / 3, 2 / 3])] if len(rated) else None
    tree["alliance"] = {"n": n_rated, "mean": derived(float(per.mean()) if len(per) else None, n_rated, strict=False),
                        "sd": derived(float(per.std()) if len(per) > 1 else None, n_rated, strict=False),
                        "median": derived(float(per.median()) if len(per) else None, n_rated, strict=False),
                        "at_ceiling": ceiling,
                        "share_at_ceiling": derived(float((per == 6).mean()) if len(per) else None, n_rated, ceiling),
                        "tertile_cuts": derived(cuts, n_rated, strict=False),
                        "histogram": [{"low": b["low"], "high": b["high"], "count": ref}
                                      for b, ref in zip(hist, bins)]}
    # the score rule: the mean of the six items, prorated (the mean of five) when one is missing
    first_rows = primary.drop_duplicates("participant")
    items = [c for c in (f"alliance_{i}" for i in range(1, 7)) if c in first_rows]
    if len(items) == 6:
        answered_items = first_rows.loc[_num(first_rows["alliance_mean"]).notna(), items].notna().sum(axis=1)
        prorated = ledger.count("alliance.prorated", int((answered_items < 6).sum()), cost=2)
        complete = ledger.count("alliance.six_items", int((answered_items == 6).sum()), internal=True)
        ledger.line(n_rated, [prorated, complete])
        tree["alliance"]["prorated"] = prorated

    # who answered: within each time point, one row per participant
    tree["nonresponse"] = []
    for nr in summary.get("nonresponse", []):
        t = nr["timepoint"]
        r = ledger.count(f"nonresponse.{t}.responders", nr["n_responders"], cost=6)
        n = ledger.count(f"nonresponse.{t}.nonresponders", nr["n_nonresponders"], cost=6)
        ledger.related(f"contact.{t}.answered", r)
        unrated = (ledger.cells[f"contact.{t}.targeted"].value - ledger.cells[f"contact.{t}.answered"].value
                   - nr["n_nonresponders"])
        ledger.line(f"contact.{t}.targeted", [f"contact.{t}.answered", n,
                                              ledger.count(f"nonresponse.{t}.unrated", unrated, internal=True)])
        dep = (r, n)
        tree["nonresponse"].append({
            "timepoint": t, "test": nr["test"], "n_responders": r, "n_nonresponders": n,
            "mean_responders": derived(nr.get("mean_responders"), *dep),
            "mean_nonresponders": derived(nr.get("mean_nonresponders"), *dep),
            "estimate": derived(None if tree["too_small"] else nr.get("estimate"), *dep),
            "ci_low": derived(None if tree["too_small"] else nr.get("ci_low"), *dep),
            "ci_high": derived(None if tree["too_small"] else nr.get("ci_high"), *dep),
            "p": derived(None if tree["too_small"] else nr.get("p"), *dep),
            "scale": nr.get("scale"), "interval": nr.get("interval")})

    # response by tertile (a descriptive figure): per participant, "answered at any time point"
    people = primary.assign(_r=_num(primary["responded"]).fillna(0)).groupby("participant", sort=False).agg(
        tertile=("alliance_tertile", "first"), responded=("_r", "max"))
    tree["response_by_tertile"] = {}
    for t in TERTILES:
        tree["response_by_tertile"][t] = _group(ledger, f"response.{t}", people.loc[people["tertile"] == t,
                                                                                     "responded"])
    ledger.line(n_rated, [f"response.{t}.n" for t in TERTILES])
    unrated_answered = ledger.count("response.unrated_answered", int(people.loc[people["tertile"].isna(),
                                                                                 "responded"].sum()), internal=True)
    ledger.line(answered_people, [f"response.{t}.events" for t in TERTILES] + [unrated_answered])

    if tree["too_small"]:
        return Model(ledger, tree)

    # estimates: one row per participant at the analysis time point, among the participants with an alliance
    # rating; every unadjusted analysis of one question has the same n (one count), a part of those who answered then
    tp = summary.get("analysis_timepoint")
    at = st.at_timepoint(primary, tp)
    rated_at = at.loc[_num(at["alliance_mean"]).notna()]
    rated_rows = {o: rated_at.loc[_num(rated_at[o]).notna()] for o in [*st.OUTCOMES, *st.BINARY] if o in at}
    base = {"self_efficacy_high": "self_efficacy", "mental_health_high": "mental_health",
            "physical_health_high": "physical_health"}
    nkey = lambda outcome: f"n.{base.get(outcome, outcome)}"  # noqa: E731
    responders = f"nonresponse.{tp}.responders"
    for o, rows_o in rated_rows.items():
        if o in st.OUTCOMES:
            ledger.count(nkey(o), len(rows_o), cost=30)
            ledger.related(responders, nkey(o))
    tree["spearman"] = [_count_result(ledger, r, nkey(r["outcome"])) for r in summary.get("spearman", [])]
    tree["estimates"] = []
    for r in summary.get("estimates", []):
        key = nkey(r["outcome"]) + (".adjusted" if r["adjusted"] else "")
        row = _count_result(ledger, r, key)
        if r["adjusted"]:
            ledger.related(nkey(r["outcome"]), row["n"])  # missing covariates
        tree["estimates"].append(row)
    primary_row = next((r for r in tree["estimates"] if r["role"] == "primary"), None)
    primary_key = primary_row["n"].key if primary_row else nkey(st.PRIMARY_OUTCOME)
    tree["adjustment"] = summary.get("adjustment", [])
    if summary.get("without_length_of_stay"):
        tree["without_length_of_stay"] = _count_result(ledger, summary["without_length_of_stay"],
                                                       nkey(st.PRIMARY_OUTCOME) + ".without_los")
        ledger.related(nkey(st.PRIMARY_OUTCOME), tree["without_length_of_stay"]["n"])
        ledger.related(primary_key, tree["without_length_of_stay"]["n"])

    _strobe(ledger, tree, at, tp, nkey, primary_key)

    if summary.get("linearity"):
        tree["linearity"] = _count_result(ledger, summary["linearity"], primary_key)
    # missing outcomes: the assumption and its sensitivity analyses
    miss = summary.get("missing") or {}
    tree["missing"] = {"assumption": miss.get("assumption"), "mice": None, "ipw": None}
    if miss.get("mice"):
        mi = dict(miss["mice"])
        mi["n"] = ledger.count("mice.n", mi["n"], cost=20)
        imputed = ledger.count("mice.imputed", mi.pop("n_imputed"), cost=2)
        if nkey(st.PRIMARY_OUTCOME) in ledger.cells:
            ledger.line(mi["n"], [nkey(st.PRIMARY_OUTCOME), imputed])
        ledger.line(mi["n"], [responders, f"nonresponse.{tp}.nonresponders"])
        mi["share_imputed"] = derived(ledger.cells[imputed.key].value / max(ledger.cells[mi["n"].key].value, 1),
                                      mi["n"], imputed)
        mi["n_imputed"] = imputed
        tree["missing"]["mice"] = mi
    if miss.get("ipw"):
        ipw = _count_result(ledger, miss["ipw"], nkey(st.PRIMARY_OUTCOME) + ".ipw")
        ledger.related(primary_key, ipw["n"])
        w = dict(ipw.pop("weights"))
        modelled = ledger.count("ipw.modelled", w.pop("n_modelled"), cost=2)
        if "mice.n" in ledger.cells:
            ledger.related("mice.n", modelled)
        w.pop("n_responders", None)
        w["n_truncated"] = ledger.count("ipw.truncated", w["n_truncated"], cost=1)
        ipw["weights"] = w
        ipw["n_modelled"] = modelled
        tree["missing"]["ipw"] = ipw

    # tertile groups of each binary outcome, the 2x2 tables and trend tests built on them
    tree["shares_by_tertile"] = {}
    for o in st.BINARY:
        if o not in rated_rows:
            continue
        rows_o = rated_rows[o]
        tree["shares_by_tertile"][o] = {t: _group(ledger, f"{o}.{t}", rows_o.loc[rows_o["alliance_tertile"] == t, o],
                                                  cost=12) for t in TERTILES}
        ledger.count(nkey(o), len(rows_o), cost=30)
        ledger.line(nkey(o), [f"{o}.{t}.n" for t in TERTILES])
    tree["high_vs_other"] = []
    for r in summary.get("high_vs_other", []):
        o = r["outcome"]
        (a, b), (c, d) = r["table"]
        cells = [ledger.count(f"2x2.{o}.{name}", v, cost=20)
                 for name, v in zip(["high_yes", "high_no", "other_yes", "other_no"], [a, b, c, d])]
        n = ledger.count(nkey(o), r["n"], cost=30)
        ledger.line(n, cells)
        ledger.line(f"{o}.high.events", [cells[0]])
        ledger.line(f"{o}.high.nonevents", [cells[1]])
        ledger.line(cells[2], [f"{o}.low.events", f"{o}.mid.events"])
        ledger.line(cells[3], [f"{o}.low.nonevents", f"{o}.mid.nonevents"])
        keys = [n, *cells]
        tree["high_vs_other"].append({**{k: v for k, v in r.items() if k not in ("table", "n")}, "n": n,
                                      "table": [[cells[0], cells[1]], [cells[2], cells[3]]],
                                      **{k: derived(r.get(k), *keys) for k in ("estimate", "ci_low", "ci_high", "p",
                                                                                "p_holm", "rd", "rd_low", "rd_high")}})
    tree["trend"] = []
    for r in summary.get("trend", []):
        o = r["outcome"]
        n = ledger.count(nkey(o), r["n"], cost=30)
        keys = [f"{o}.{t}.{x}" for t in TERTILES for x in ("n", "events")]
        tree["trend"].append({**{k: v for k, v in r.items() if k not in ("shares", "n")}, "n": n,
                              "shares": {t: derived((r.get("shares") or {}).get(t), f"{o}.{t}.n", f"{o}.{t}.events")
                                         for t in TERTILES},
                              **{k: derived(r.get(k), *keys) for k in ("p", "p_holm")}})

    # self-efficacy by tertile (box plots): the answering participants of each tertile
    se = rated_rows.get("self_efficacy")
    tree["self_efficacy_by_tertile"] = {}
    if se is not None:
        for t in TERTILES:
            v = _num(se.loc[se["alliance_tertile"] == t, "self_efficacy"]).dropna()
            n = ledger.count(f"self_efficacy_high.{t}.n", len(v), cost=12)  # the same participants
            q = v.quantile([0.1, 0.25, 0.5, 0.75, 0.9]).tolist() if len(v) else None
            tree["self_efficacy_by_tertile"][t] = {
                "n": n, "mean": derived(float(v.mean()) if len(v) else None, n, strict=False),
                "quantiles_10_25_50_75_90": derived(q, n, strict=False)}

    # across time points, by tertile: groups of one answer per participant at each time point
    tree["timepoint_groups"] = {}
    if len(per_tp) > 1:
        for col in ("self_efficacy", "mental_health_high", "physical_health_high"):
            by = {}
            for t, rows_t in per_tp:
                v = rows_t.assign(v=_num(rows_t[col])).dropna(subset=["v"])
                groups = {}
                for tert in TERTILES:
                    g = v.loc[v["alliance_tertile"] == tert, "v"]
                    key = f"tp.{col}.{t}.{tert}"
                    if col == "self_efficacy":
                        n = ledger.count(f"{key}.n", len(g), cost=4)
                        groups[tert] = {"n": n, "mean": derived(float(g.mean()) if len(g) else None, n, strict=False)}
                    else:
                        groups[tert] = _group(ledger, key, g, cost=4)
                        groups[tert]["mean"] = groups[tert]["share"]
                rated = ledger.count(f"tp.{col}.{t}.rated", sum(ledger.cells[f"tp.{col}.{t}.{x}.n"].value
                                                                for x in TERTILES), internal=True)
                ledger.line(rated, [f"tp.{col}.{t}.{x}.n" for x in TERTILES])
                ledger.related(f"nonresponse.{t}.responders", rated)
                by[t] = groups
            tree["timepoint_groups"][col] = by

    # mixed model across time points
    mixed = summary.get("mixed")
    if mixed:
        m = {k: v for k, v in mixed.items()}
        m["n_repeated"] = ledger.count("mixed.n_repeated", mixed.get("n_repeated", 0), cost=2)
        if mixed.get("fitted"):
            m["n"] = ledger.count("mixed.n_answers", mixed["n"])
            m["n_participants"] = ledger.count("mixed.n_participants", mixed["n_participants"])
        else:
            m.pop("n", None)
        tree["mixed"] = m

    # readmissions sensitivity analysis: the primary model on every episode of the analysis time point
    sens = ep.get("sensitivity")
    if sens:
        s = dict(sens)
        s["n"] = ledger.count("episodes.sensitivity.n", sens["n"])
        added = ledger.count("episodes.sensitivity.added", sens["n"] - ledger.cells[primary_key].value,
                             internal=True)
        ledger.line(s["n"], [primary_key, added], prefer_total=True)
        tree["episodes"]["sensitivity"] = s
    return Model(ledger, tree)


def _strobe(ledger: Ledger, tree: dict[str, Any], at: pd.DataFrame, tp: int, nkey, primary_key: str) -> None:
    """STROBE's participant flow (episodes to the primary analysis, at the analysis time point), Table 1 (the
    characteristics of the participants targeted then, by alliance tertile) and the follow-up timing."""
    rated = at.loc[_num(at["alliance_mean"]).notna()]
    flow_rated = ledger.count(f"flow.{tp}.rated", len(rated), cost=20)
    ledger.line(flow_rated, [f"nonresponse.{tp}.responders", f"nonresponse.{tp}.nonresponders"])
    steps = [("treatment episodes in the dataset", "episodes.n"), ("participants (first episode)",
                                                                     "participants.targeted"),
             (f"targeted at {tp} days", f"contact.{tp}.targeted"), ("with an alliance rating", flow_rated.key),
             ("answered self-efficacy", nkey(st.PRIMARY_OUTCOME)), ("in the primary analysis (complete covariates)",
                                                                    primary_key)]
    tree["flow"] = [{"step": name, "n": Ref(key)} for name, key in steps if key in ledger.cells]

    # Table 1: by tertile, the participants with a rating targeted at the analysis time point
    table: dict[str, Any] = {"timepoint": tp, "n": {}, "rows": []}
    groups = {t: rated.loc[rated["alliance_tertile"].astype("object") == t] for t in TERTILES}
    for t, g in groups.items():
        table["n"][t] = ledger.count(f"t1.{t}.n", len(g), cost=12)
    ledger.line(flow_rated, [f"t1.{t}.n" for t in TERTILES])
    answered = {t: ledger.count(f"t1.{t}.answered", int(_num(g[st.PRIMARY_OUTCOME]).notna().sum()), cost=3)
                for t, g in groups.items()}
    for t in TERTILES:
        ledger.line(f"t1.{t}.n", [answered[t], ledger.count(f"t1.{t}.unanswered", ledger.cells[f"t1.{t}.n"].value
                                                            - ledger.cells[answered[t].key].value, internal=True)])
    table["rows"].append({"variable": "answered self-efficacy", "kind": "count", "cells": {
        t: {"n": answered[t], "share": derived(ledger.cells[answered[t].key].value / max(len(groups[t]), 1),
                                               answered[t], f"t1.{t}.n")} for t in TERTILES}})
    for c in st.covariates_present(at):
        if c in st.CATEGORICAL:
            levels = sorted(rated[c].dropna().astype(str).unique())
            for level in levels:
                cells = {}
                for t, g in groups.items():
                    k = ledger.count(f"t1.{c}.{level}.{t}",
                                     int((g[c].astype("string") == level).fillna(False).sum()), cost=1)
                    cells[t] = {"n": k, "share": derived(ledger.cells[k.key].value / max(len(g), 1), k, f"t1.{t}.n")}
                table["rows"].append({"variable": f"{c}: {level}", "kind": "count", "cells": cells})
            for t, g in groups.items():  # the levels and the missing add up to the tertile
                miss = ledger.count(f"t1.{c}.missing.{t}", int(g[c].isna().sum()), internal=True)
                ledger.line(f"t1.{t}.n", [f"t1.{c}.{level}.{t}" for level in levels] + [miss])
        else:
            cells = {}
            for t, g in groups.items():
                v = _num(g[c]).dropna()
                n = f"t1.{t}.n"
                cells[t] = {"mean": derived(float(v.mean()) if len(v) else None, n, strict=False),
                            "sd": derived(float(v.std()) if len(v) > 1 else None, n, strict=False),
                            "median": derived(float(v.median()) if len(v) else None, n, strict=False),
                            "q1": derived(float(v.quantile(0.25)) if len(v) else None, n, strict=False),
                            "q3": derived(float(v.quantile(0.75)) if len(v) else None, n, strict=False)}
            table["rows"].append({"variable": c, "kind": "numeric", "cells": cells})
    tree["table1"] = table

    # follow-up timing: days from discharge to the first answer, among the responders at the analysis time point
    days = _num(rated.loc[_num(rated["responded"]) == 1, "days_to_response"]).dropna() \
        if "days_to_response" in rated else pd.Series(dtype=float)
    who = f"nonresponse.{tp}.responders"
    tree["timing"] = {"timepoint": tp, "what": "days from discharge to the first answer",
                      "median": derived(float(days.median()) if len(days) else None, who, strict=False),
                      "q1": derived(float(days.quantile(0.25)) if len(days) else None, who, strict=False),
                      "q3": derived(float(days.quantile(0.75)) if len(days) else None, who, strict=False),
                      "min": derived(float(days.min()) if len(days) else None, who, strict=False),
                      "max": derived(float(days.max()) if len(days) else None, who, strict=False)}


def _strict_uses(obj: Any, out: dict[str, int] | None = None) -> dict[str, int]:
    out = {} if out is None else out
    if isinstance(obj, Derived):
        if obj.strict and obj.value is not None:
            for d in set(obj.depends):
                out[d] = out.get(d, 0) + 1
    elif isinstance(obj, dict):
        for v in obj.values():
            _strict_uses(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _strict_uses(v, out)
    return out


def model(df: pd.DataFrame, summary: dict[str, Any], *, below: int = 5, timepoint: int | None = None) -> Model:
    """Build, protect and resolve."""
    m = build(df, summary, below=below, timepoint=timepoint)
    for key, n in _strict_uses(m.tree).items():  # hiding a count also hides the shares and intervals made from it
        m.ledger.cells[key].cost += n
    m.ledger.protect()
    m.resolve()
    return m


# -- the alliance during treatment (issue 26) -----------------------------------------------------------------------
def checkins_model(checkins: pd.DataFrame, df: pd.DataFrame, *, below: int = 5,
                   outcome_timepoint: int = 30) -> dict[str, Any]:
    """The check-ins' section, built, protected and resolved in a ledger of its own (the same rules; none of its
    counts adds up with a count of the other sections, so no line joins them)."""
    ledger = Ledger(below)
    tree = checkins_tree(ledger, checkins, df, outcome_timepoint)
    ledger.protect()
    return resolve(tree, ledger)


def checkins_tree(ledger: Ledger, checkins: pd.DataFrame, df: pd.DataFrame, outcome_timepoint: int) -> dict[str, Any]:
    """The check-ins' section: its counts in the ledger (participants and check-ins during treatment, those in the
    course, per treatment week), the course, the slope's link to self-efficacy at ``outcome_timepoint`` days beyond
    the discharge rating, and the within/between decomposition (each fitted only under the sample-size rule)."""
    from . import checkins_stats as cs

    d = cs.description(checkins)
    people = ledger.count("checkins.participants", d["participants"], cost=20)
    rows = ledger.count("checkins.n", d["checkins"], cost=20)
    course_people = ledger.count("checkins.course.participants", d["participants_course"], cost=20)
    course_rows = ledger.count("checkins.course.n", d["checkins_course"], cost=20)
    ledger.line(people, [course_people, ledger.count("checkins.fewer.participants",
                                                     d["participants"] - d["participants_course"], internal=True)])
    ledger.line(rows, [course_rows, ledger.count("checkins.fewer.n", d["checkins"] - d["checkins_course"],
                                                 internal=True)])
    weeks = []
    for w in d["weeks"]:
        n = ledger.count(f"checkins.week.{w['week']}.n", w["n"], cost=2)
        weeks.append({"week": w["week"], "n": n, "mean": derived(w["mean"], n, strict=False)})
    if weeks:
        ledger.line(course_rows, [w["n"] for w in weeks])
    tree: dict[str, Any] = {"min_participants": cs.MIN_PARTICIPANTS, "min_checkins": cs.MIN_CHECKINS,
                            "participants": people, "n": rows, "participants_course": course_people,
                            "n_course": course_rows, "weeks": weeks, "outcome_timepoint": outcome_timepoint}
    course = cs.alliance_course(checkins)
    tree["course"] = {**course, "n_participants": course_people, "n": course_rows}
    wb = cs.within_between(checkins)
    tree["within_between"] = {**wb, "n_participants": course_people, "n": course_rows}
    linked = df
    if len(df) and "episode" in df.columns:  # the outcome of the stay the check-ins belong to
        linked = df[["participant", "episode", "timepoint_days", "self_efficacy", "alliance_mean"]]
    slope = cs.slope_predicts_outcome(checkins, linked, timepoint=outcome_timepoint) if len(df) else \
        {"fitted": False, "n": 0, "estimate": None, "ci_low": None, "ci_high": None, "p": None,
         "min_participants": cs.MIN_PARTICIPANTS}
    slope["n"] = ledger.count("checkins.slope.n", slope["n"], cost=30)
    tree["slope_effect"] = slope
    return tree
