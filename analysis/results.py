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
import time
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
# What hiding a count costs the reader, from the cheapest (the method text states this order).  Each share, rate,
# mean, interval or test computed from a count adds 1 more (:func:`model`), as hiding the count hides it too.
BREAKDOWN = 1.0  # a descriptive breakdown: an outcome column of the contact table, a histogram bin, the ceiling
GROUP = 4.0  # a descriptive group (a tertile, a time point) with its share or mean; also the people described or
#             modelled when those left out are counted apart beside a total that is shown (the number rated beside
#             the participants): hiding it hides no statistic (Derived.within), only the exact n
TOTAL = 5.0  # a total the tables already give, repeated in running text (follow-ups, episodes)
# The order is kept as an order: a response rate's count costs more than any set of descriptive counts a table
# could need hidden together (with 20, a Table 1 column, the imputation's n and three time-point groups, about 60
# in all, outweighed the 30-day response rate and its responder comparison, which were hidden instead).
RATE = 200.0  # the counts of a response rate: targeted and answered at a time point
SIZE = 300.0  # a sample size: participants contacted, answering
INPUT = 500.0  # a model's input: the n of an estimate, a cell of a 2x2 table, a group compared or tested
COST_ORDER = ("a descriptive breakdown (an outcome column of the contact table, a histogram bin, the count at the "
              "ceiling), then a descriptive group (a tertile, a time point, or the number of people described or "
              "modelled where those left out are counted apart beside a total that is shown, such as the number "
              "rated beside the participants), then a total the tables already give, then the counts of a response "
              "rate, then a sample size (the participants contacted or answering), and last a model's input (the n "
              "of an estimate, a cell of a 2x2 table, a group compared or tested)")


@dataclass
class Cell:
    key: str
    value: int
    internal: bool = False  # never published (a difference readers could compute)
    status: str = "shown"  # shown | primary (<5) | masked (x) | complementary (x) | internal
    cost: float = TOTAL  # what hiding it costs the reader (see BREAKDOWN .. INPUT): the least costly set is hidden
    in_text: bool = False  # a total printed in running text: among counts of equal cost, hidden first

    @property
    def hidden(self) -> bool:
        return self.status != "shown"


@dataclass
class Line:
    total: str
    parts: list[str]
    prefer_total: bool = False  # a total printed in running text: hide it rather than a cell of equal cost

    @property
    def members(self) -> list[str]:
        return [self.total, *self.parts]


SOLVER_BUDGET_SECONDS = 300.0  # for all the integer programs of one suppression (the cut loop may solve dozens)
SOLVE_LIMIT_SECONDS = 10.0  # for one of them: HiGHS's best choice so far is used after that


@dataclass
class Ledger:
    below: int = 5
    cells: dict[str, Cell] = field(default_factory=dict)
    lines: list[Line] = field(default_factory=list)
    # Each integer program has a time limit and those of one suppression share a budget: HiGHS proves the least
    # costly choice in milliseconds on most tables, but one (a demo whose replies changed) ran for over ten
    # minutes.  At the limit the best choice found so far is used; with the budget spent (or no choice found),
    # every count that may be hidden: always a safe choice (every row met; the reader's check in _least_costly
    # still runs), not always the least costly one.
    solver_budget: float = field(default_factory=lambda: SOLVER_BUDGET_SECONDS)  # seconds left
    least_costly_proven: bool = True

    # building
    def count(self, key: str, value: int | float, *, internal: bool = False, cost: float = TOTAL) -> Ref:
        """Register a count (the same key twice: the same count; a different value: a related count).  ``cost``:
        how much hiding it takes from the report, from ``BREAKDOWN`` to ``INPUT``."""
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
        if self.cells[total].value != sum(self.cells[k].value for k in parts):  # a false equation: a bug, not data
            raise ValueError(f"{total} ({self.cells[total].value}) is not the sum of {parts} "
                             f"({[self.cells[k].value for k in parts]})")
        if prefer_total:
            self.cells[total].in_text = True
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
        """Primary suppression, then the least costly complementary suppression that leaves no sensitive count (one
        shown as <5, or an unpublished one from 1 to below-1) pinned down by any combination of lines."""
        for c in self.cells.values():
            if not c.internal and 0 < c.value < self.below:
                c.status = "primary"
        self._mask_tiny()
        for _ in range(len(self.cells) + 1):  # each failed round shows one more small count as x
            chosen = self._least_costly()
            if chosen is not None:
                for key in chosen:
                    self.cells[key].status = "complementary"
                self._show_derivable()
                return
        raise RuntimeError("complementary suppression did not settle")  # pragma: no cover

    def _mask_tiny(self) -> None:
        """Before any complementary suppression: a count shown as <5 that only the <5 marks pin down (tiny counts
        adding up to a shown total: three tertiles of 4 among 12 participants) is shown as x, the nearest first.
        That costs the reader less than any count hidden to protect it, which could reach the participants
        themselves (12 rated of 12: hiding the number rated hides the participants)."""
        for _ in range(len(self.cells)):
            small = [c for c in self.cells.values() if c.status == "primary"]
            exposed = [c for c in small if self.pinned(c.key)]
            if not exposed:
                return
            for c in small:  # were every <5 an x, would the lines still pin it? then hiding others must protect it
                c.status = "masked"
            tiny = [c for c in exposed if not self.pinned(c.key)]
            for c in small:
                c.status = "primary"
            if not tiny or not self._mask_near(tiny[0]):
                return

    def sensitive(self) -> list[Cell]:
        """The counts no reader may pin down: those shown as <5 (or x in their place) and unpublished differences
        from 1 to below-1."""
        return [c for c in self.cells.values()
                if c.status in ("primary", "masked") or (c.internal and 0 < c.value < self.below)]

    def _least_costly(self) -> list[str] | None:
        """The least costly set of counts to hide: an integer program (scipy's HiGHS) with a variable for each count
        that may be hidden (its cost) and each unpublished one (free: a reader knows it or not).  In every line, a
        count a reader does not know needs another count of that line unknown (else the line gives it away); every
        sensitive count stays unknown; the counts hidden in a line with a shown total add up to ``below`` or more.
        Each time a reader solving the lines together (:meth:`exposed`) still pins a sensitive count down, one more
        count is required among the shown counts of the lines that reach it (a cut: hiding fewer never hides more).
        None when nothing left to hide protects a count: the nearest count below the threshold is shown as x instead
        (a table of tiny counts, where the "<5" marks themselves pin a count down)."""
        sensitive = self.sensitive()
        if not sensitive:
            return []
        rows = self._pattern(sensitive) + self._covers()
        for _ in range(10 * len(self.cells) + 10):
            chosen = self._solve(rows)
            if chosen is None:  # no way: a line of tiny counts that nothing left to hide protects
                exposed = next((c for c in sensitive if self.pinned(c.key)), sensitive[0])
                if not self._mask_near(exposed):
                    raise RuntimeError(f"cannot protect {exposed.key}")  # pragma: no cover
                return None
            for key in chosen:
                self.cells[key].status = "complementary"
            exposed = self.exposed()
            cut: dict[str, float] = {} if exposed is None else {
                m: 1 for ln in self._why(exposed.key) for m in ln.members
                if self.cells[m].status == "shown" and self.cells[m].value}
            known = [] if exposed is not None else self._known(chosen)
            for key in known:  # a hidden count the lines give away protects nothing: one more of those lines, or not it
                rows.append(({**{m: 1.0 for ln in self._why(key) for m in ln.members
                                 if self.cells[m].status == "shown" and self.cells[m].value}, key: -1.0}, 0.0))
            for key in chosen:
                self.cells[key].status = "shown"
            if exposed is None and not known:
                return chosen
            if exposed is None:
                continue
            if not cut:
                if not self._mask_near(exposed):
                    raise RuntimeError(f"cannot protect {exposed.key}")  # pragma: no cover
                return None
            rows.append((cut, 1))
        raise RuntimeError("complementary suppression did not settle")  # pragma: no cover

    def _known(self, keys: list[str]) -> list[str]:
        """The counts of ``keys`` (hidden) that a reader can pin down all the same."""
        ranges = self.ranges()
        return [k for k in keys if ranges[k][0] == ranges[k][1] or self.pinned(k)]

    def exposed(self) -> Cell | None:
        """A sensitive count a reader can pin down: first by each line in turn (:meth:`ranges`, fast), then by every
        line together (:meth:`bounds`, a linear program per count)."""
        ranges, sensitive = self.ranges(), self.sensitive()
        fast = next((c for c in sensitive if ranges[c.key][0] == ranges[c.key][1]), None)
        return fast if fast is not None else next((c for c in sensitive if self.pinned(c.key)), None)

    def _pattern(self, sensitive: list[Cell]) -> list[tuple[dict[str, float], float]]:
        """Rows (weights, least sum): in each line, a count unknown to the reader has another unknown beside it, and
        each sensitive count is unknown.  A count shown as <5 is unknown; one shown (not zero) is unknown if hidden;
        an unpublished one may be either."""
        def var(k: str) -> bool:
            c = self.cells[k]
            return c.internal or (c.status == "shown" and c.value > 0)

        fixed = {k for k, c in self.cells.items() if c.status in ("primary", "masked")}
        rows: list[tuple[dict[str, float], float]] = [({c.key: 1}, 1) for c in sensitive if c.internal]
        for ln in self.lines:
            for m in dict.fromkeys(ln.members):
                others = [o for o in ln.members if o != m]
                if not (m in fixed or var(m)) or any(o in fixed for o in others):
                    continue
                weights: dict[str, float] = {o: 1 for o in others if var(o)}
                if m in fixed:
                    rows.append((weights, 1))
                else:
                    rows.append(({**weights, m: -1}, 0))
        return rows

    def _covers(self) -> list[tuple[dict[str, float], float]]:
        """In a line whose total is shown, the counts hidden must not add up to 1 .. below-1 (the total minus the
        counts shown would be a small count): once a count of the line is hidden (already, or by the program), the
        counts hidden add up to ``below`` or more, or the total goes too.  Rows (weights, least sum)."""
        out = []
        for ln in self.lines:
            if self.cells[ln.total].hidden:
                continue
            rest = sum(self.cells[p].value for p in ln.parts if self.cells[p].hidden)
            if rest >= self.below:
                continue
            weights = {p: float(self.cells[p].value) for p in ln.parts
                       if not self.cells[p].hidden and self.cells[p].value}
            weights[ln.total] = float(self.below)
            if rest:
                out.append((weights, float(self.below - rest)))
            else:  # nothing hidden yet: only if the program hides one of them (its weight less what it must reach)
                for p in [p for p in weights if p != ln.total]:
                    out.append(({**weights, p: weights[p] - self.below}, 0.0))
        return out

    def _solve(self, rows: list[tuple[dict[str, float], float]]) -> list[str] | None:
        """Minimise the cost of the counts hidden so that every row is met (None: no way): ties go to a total in
        running text, then to the smaller count, as statistical agencies hide the next smallest cell."""
        if not rows:
            return []
        from scipy.optimize import Bounds, LinearConstraint, milp
        from scipy.sparse import coo_array

        keys = sorted({k for weights, _ in rows for k in weights})
        index = {k: i for i, k in enumerate(keys)}
        scale = 1e-3 / (1 + max(self.cells[k].value for k in keys))
        cost = np.array([0.0 if self.cells[k].internal else
                         self.cells[k].cost + (0 if self.cells[k].in_text else 1e-3) + scale * self.cells[k].value
                         for k in keys])
        entries = [(i, index[k], w) for i, (weights, _) in enumerate(rows) for k, w in weights.items()]
        i, j, w = zip(*entries)
        a = coo_array((w, (i, j)), shape=(len(rows), len(keys))).tocsr()
        candidates = [k for k in keys if not self.cells[k].internal]
        if self.solver_budget <= 0:
            self.least_costly_proven = False
            return candidates
        started = time.monotonic()
        res = milp(cost, constraints=LinearConstraint(a, lb=[need for _, need in rows], ub=np.inf),
                   integrality=np.ones(len(keys)), bounds=Bounds(0, 1),
                   options={"time_limit": min(self.solver_budget, SOLVE_LIMIT_SECONDS)})
        self.solver_budget -= time.monotonic() - started
        if res.status == 2:  # infeasible
            return None
        if res.status == 1:  # the time budget ran out: the best choice found so far, else every count that may go
            self.least_costly_proven = False
            if res.x is None:
                return candidates
        elif not res.success:  # pragma: no cover
            raise RuntimeError(f"complementary suppression: {res.message}")
        return [k for k, x in zip(keys, res.x) if x > 0.5 and not self.cells[k].internal]

    def _show_derivable(self) -> None:
        """A hidden count that every line together pins down protects nothing: show it (it is printed anyway)."""
        for c in self.cells.values():
            if c.status == "complementary" and self.pinned(c.key):
                c.status = "shown"

    def _mask_near(self, c: Cell) -> bool:
        """Show the count below the threshold nearest ``c`` (through lines and the counts hidden in them) as x:
        hidden, 1 or more, no upper bound.  False when there is none."""
        frontier, seen = {c.key}, set()
        while frontier:
            if c.status == "primary" and c.key in frontier:
                c.status = "masked"
                return True
            lines = [ln for ln in self.lines if id(ln) not in seen and frontier & set(ln.members)]
            seen |= {id(ln) for ln in lines}
            small = sorted({k for ln in lines for k in ln.members if self.cells[k].status == "primary"})
            if small:
                self.cells[small[0]].status = "masked"
                return True
            frontier = {k for ln in lines for k in ln.members if self.cells[k].hidden} - frontier
        return False

    def _why(self, key: str) -> list[Line]:
        """The lines that give ``key`` away, as few as the reader needs (each line dropped that is not needed): a
        count to hide must be among their shown counts.  When only the linear program pins it down, the lines it
        needs (:meth:`_needed`): with every line that reaches it, the count to hide could be anywhere, and the
        search added one useless count at a time (hundreds of rounds for one person without a rating who answered)."""
        keep = self._reach(key)
        if not self.cells[key].hidden:  # not hidden itself: the lines through it and those they reach
            return keep
        r = self.ranges(keep)
        if r[key][0] != r[key][1]:
            return self._needed(key, keep)
        for ln in list(keep):
            trial = [other for other in keep if other is not ln]
            r = self.ranges(trial)
            if r[key][0] == r[key][1]:
                keep = trial
        return keep

    def _needed(self, key: str, lines: list[Line]) -> list[Line]:
        """Lines that still pin ``key`` down by the linear program, none of them dropped without it coming loose:
        dropped in blocks, halved until single lines (a deletion filter)."""
        keep, step = list(lines), max(1, len(lines) // 2)
        while True:
            i = 0
            while i < len(keep):
                trial = keep[:i] + keep[i + step:]
                if self.pinned(key, trial):
                    keep = trial
                else:
                    i += step
            if step == 1:
                return keep
            step = max(1, step // 2)

    def _lines_of(self, key: str) -> list[Line]:
        return [ln for ln in self.lines if key in ln.members]

    def _reach(self, key: str) -> list[Line]:
        """The lines a reader can use to work out ``key``: those through it, and through the counts not shown in
        them, and so on."""
        found, frontier, seen = [], {key}, {key}
        while frontier:
            lines = [ln for ln in self.lines if frontier & set(ln.members) and all(ln is not f for f in found)]
            found += lines
            frontier = {m for ln in lines for m in ln.members if self.cells[m].hidden} - seen
            seen |= frontier
        return found

    def bounds(self, key: str, lines: list[Line] | None = None) -> tuple[float, float]:
        """The least and greatest value of a count that a reader can work out from everything published: a linear
        program over every line that reaches it (what is shown is fixed, <5 is 1 to below-1, x is 1 or more, an
        unpublished count 0 or more); ``lines``: only these."""
        from scipy.optimize import linprog

        c = self.cells[key]
        if not c.hidden:
            return c.value, c.value
        lines = self._reach(key) if lines is None else lines
        if not any(key in ln.members for ln in lines):
            return self.public_range(c)
        keys = sorted({m for ln in lines for m in ln.members})
        index = {k: i for i, k in enumerate(keys)}
        a = np.zeros((len(lines), len(keys)))
        for i, ln in enumerate(lines):
            a[i, index[ln.total]] += 1
            for p in ln.parts:
                a[i, index[p]] -= 1
        box = [tuple(None if math.isinf(b) else b for b in self.public_range(self.cells[k])) for k in keys]
        objective = np.zeros(len(keys))
        objective[index[key]] = 1
        lo = linprog(objective, A_eq=a, b_eq=np.zeros(len(lines)), bounds=box, method="highs")
        hi = linprog(-objective, A_eq=a, b_eq=np.zeros(len(lines)), bounds=box, method="highs")
        if lo.status != 0 or hi.status not in (0, 3):  # pragma: no cover - the true values always fit
            raise RuntimeError(f"bounds of {key}: {lo.message} {hi.message}")
        return lo.fun, (-hi.fun if hi.status == 0 else INF)

    def pinned(self, key: str, lines: list[Line] | None = None) -> bool:
        """Only one whole number is possible for the count, given everything published (``lines``: only these)."""
        lo, hi = self.bounds(key, lines)
        return not math.isinf(hi) and math.ceil(lo - 1e-6) >= math.floor(hi + 1e-6)

    def public_range(self, c: Cell) -> tuple[float, float]:
        return {"shown": (c.value, c.value), "primary": (1, self.below - 1), "masked": (1, INF),
                "complementary": (1, INF), "internal": (0, INF)}[c.status]

    def ranges(self, lines: list[Line] | None = None) -> dict[str, tuple[float, float]]:
        """What a reader can work out about every count by propagating bounds through each line in turn (looser
        than :meth:`bounds`, which solves the lines together); ``lines``: only these."""
        r = {key: self.public_range(c) for key, c in self.cells.items()}
        for _ in range(50):
            changed = False
            for ln in self.lines if lines is None else lines:
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
    """A number computed from groups (a share, rate, mean, median, interval, test): published only when every count
    in ``depends`` is shown, so that no statistic is shown for a group whose count is hidden.  ``strict`` is kept
    for callers and no longer matters (a mean once stayed beside a count shown as x).

    ``within`` = (group, total, rest): a statistic of ``group``, a part of ``total`` whose ``rest`` (the people left
    out) is counted apart, as the text says ("of 279 participants, <5 had no rating").  It is published when the
    group's count is shown, or when that count is hidden only as a complementary suppression (so not a small group),
    the total is shown and the rest is shown as <5: the reader then knows the group's size to within 1 to 4."""
    value: Any
    depends: tuple[str, ...]
    strict: bool = True
    within: tuple[str, str, str] | None = None


def derived(value: Any, *depends: str | Ref, strict: bool = True,
            within: tuple[str | Ref, str | Ref, str | Ref] | None = None) -> Derived:
    return Derived(value, tuple(_key(d) for d in depends), strict,
                   None if within is None else tuple(_key(k) for k in within))


def _published(obj: Derived, ledger: Ledger) -> bool:
    if any(ledger.hidden(d) for d in obj.depends):
        return False
    if obj.within is None:
        return True
    group, total, rest = (ledger.cells[k] for k in obj.within)
    return not group.hidden or (group.status == "complementary" and not total.hidden and rest.status == "primary")


def resolve(obj: Any, ledger: Ledger) -> Any:
    if isinstance(obj, Ref):
        return ledger.value(obj)
    if isinstance(obj, Derived):
        return resolve(obj.value, ledger) if _published(obj, ledger) else None
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


def _group(ledger: Ledger, key: str, values: pd.Series, cost: float = GROUP) -> dict[str, Any]:
    """events / n of a binary column, with its Wilson 95% CI, tied to its counts."""
    values = _num(values).dropna()
    n = ledger.count(f"{key}.n", len(values), cost=cost)
    events = ledger.count(f"{key}.events", int(values.sum()), cost=cost)
    rest = ledger.count(f"{key}.nonevents", len(values) - int(values.sum()), internal=True)
    ledger.line(n, [events, rest])
    share, lo, hi = st.wilson(int(values.sum()), len(values))
    return {"n": n, "events": events, "share": derived(share, n, events), "ci_low": derived(lo, n, events),
            "ci_high": derived(hi, n, events)}


def _count_result(ledger: Ledger, r: dict[str, Any] | None, key: str, cost: float = INPUT) -> dict[str, Any] | None:
    if r is None:
        return None
    out = {k: v for k, v in r.items() if k not in ("parameters", "events", "epp")}  # in words, not published counts
    if r.get("epp"):
        out["epp"] = {"per_parameter": st.EPP, "of": r["epp"]["what"]}
    out["n"] = ledger.count(key, r["n"], cost=cost)
    return _of_group(out, out["n"])


ESTIMATES = ("estimate", "ci_low", "ci_high", "p", "p_holm")


def _of_group(result: dict[str, Any], n: Ref) -> dict[str, Any]:
    """An analysis's estimate, interval and p-values: not shown when its n is hidden."""
    return {k: derived(v, n) if k in ESTIMATES else v for k, v in result.items()}


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
        total = ledger.count(f"contact.{t}.targeted", len(rows_t), cost=RATE)
        cells = {code: ledger.count(f"contact.{t}.{code}", int((status == code).sum()), cost=BREAKDOWN)
                 for code in OUTCOMES}
        other = int((~status.isin(list(OUTCOMES))).sum())
        if other:  # a code from an older export: counted apart, so the row still adds up
            cells["other"] = ledger.count(f"contact.{t}.other", other)
        ledger.line(total, cells.values())
        answered = ledger.count(f"contact.{t}.answered", int((_num(rows_t["responded"]) == 1).sum()),
                                cost=RATE)
        ledger.line(answered, [cells[c] for c in ANSWERED])
        rate, lo, hi = st.wilson(ledger.cells[answered.key].value, len(rows_t))
        rows.append({"timepoint": t, "targeted": total, **cells, "answered": answered,
                     "response_rate": derived(rate, total, answered), "ci_low": derived(lo, total, answered),
                     "ci_high": derived(hi, total, answered)})
    tree["contact"] = {"columns": list(OUTCOMES) + (["other"] if any("other" in r for r in rows) else []),
                       "rows": rows}

    # people
    targeted = ledger.count("participants.targeted", primary["participant"].nunique(), cost=SIZE)
    answered_people = ledger.count("participants.answered", st.people_answered(primary), cost=SIZE)
    if single:
        t = per_tp[0][0]
        ledger.line(targeted, [f"contact.{t}.targeted"])  # one time point: its people are the participants
        ledger.line(answered_people, [f"contact.{t}.answered"])
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
        for t, _ in per_tp[1:]:  # a later time point's people are some of the participants, too
            ledger.related(targeted, f"contact.{t}.targeted")
            ledger.related(answered_people, f"contact.{t}.answered")
    ledger.related(targeted, answered_people)  # the rest never answered
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
    multi = ledger.count("episodes.multi", ep.get("n_participants_multi", 0), cost=GROUP)
    n_episodes = ledger.count("episodes.n", ep.get("n_episodes", 0))
    extra = ledger.count("episodes.extra", ep.get("n_episodes", 0) - ledger.cells[targeted.key].value, internal=True)
    ledger.line(n_episodes, [targeted, extra], prefer_total=True)
    if "n_participants_multi" in ep and ledger.cells[multi.key].value == 0:
        # nobody has several episodes, so no episode beyond the first either: the episodes are the participants (the
        # readmissions text says so); not when the summary has no episodes (a caller's counts before the statistics)
        ledger.line(extra, [multi])
    else:
        ledger.related(extra, multi)  # each participant with several episodes has one extra episode or more
    tree["episodes"] = {"n_participants_multi": multi, "n_episodes": n_episodes,
                        "primary": ep.get("primary", "first episode per participant"), "sensitivity": None}

    # alliance at discharge: one rating per participant (first episode)
    # The description counts everyone: of the participants, those without a rating are counted apart (suppressed
    # if small), and its own n, the number rated, is a descriptive count.  When a few have no rating, hiding that n
    # (and one part of each breakdown of the rated) protects them; the participants, the headline count, stay shown,
    # and so do the mean, SD and median, which are of the rated "within" the participants (:class:`Derived`).
    per = primary.drop_duplicates("participant")["alliance_mean"].astype("float64").dropna()
    n_rated = ledger.count("alliance.n", len(per), cost=GROUP)
    unrated = ledger.count("alliance.unrated", ledger.cells[targeted.key].value - len(per), cost=GROUP)
    ledger.line(targeted, [n_rated, unrated])
    ceiling = ledger.count("alliance.at_ceiling", int((per == 6).sum()), cost=BREAKDOWN)
    below_ceiling = ledger.count("alliance.below_ceiling", len(per) - ledger.cells[ceiling.key].value, internal=True)
    ledger.line(n_rated, [ceiling, below_ceiling])
    hist = histogram_bins(per.to_numpy(), below)
    bins = [ledger.count(f"alliance.bin.{i}", b["count"], cost=BREAKDOWN) for i, b in enumerate(hist)]
    if bins:
        ledger.line(n_rated, bins)
    rated = every_episode.drop_duplicates(["participant", "episode"] if "episode" in every_episode else
                                          ["participant"])["alliance_mean"].astype("float64").dropna()
    cuts = [float(x) for x in rated.quantile([1 / 3, 2 / 3])] if len(rated) else None
    of = (n_rated, targeted, unrated)  # the rated, within the participants, the unrated apart
    tree["alliance"] = {"n": n_rated, "participants": targeted, "unrated": unrated,
                        "mean": derived(float(per.mean()) if len(per) else None, within=of),
                        "sd": derived(float(per.std()) if len(per) > 1 else None, within=of),
                        "median": derived(float(per.median()) if len(per) else None, within=of),
                        "at_ceiling": ceiling,
                        "share_at_ceiling": derived(float((per == 6).mean()) if len(per) else None, n_rated, ceiling),
                        "tertile_cuts": derived(cuts, within=of),
                        "histogram": [{"low": b["low"], "high": b["high"], "count": ref}
                                      for b, ref in zip(hist, bins)]}
    # the score rule: the mean of the six items, prorated (the mean of five) when one is missing
    first_rows = primary.drop_duplicates("participant")
    items = [c for c in (f"alliance_{i}" for i in range(1, 7)) if c in first_rows]
    if len(items) == 6:
        answered_items = first_rows.loc[_num(first_rows["alliance_mean"]).notna(), items].notna().sum(axis=1)
        prorated = ledger.count("alliance.prorated", int((answered_items < 6).sum()), cost=2)
        complete = ledger.count("alliance.six_items", ledger.cells[n_rated.key].value - ledger.cells[prorated.key].value,
                                internal=True)
        ledger.line(n_rated, [prorated, complete])
        tree["alliance"]["prorated"] = prorated

    # who answered: within each time point, one row per participant.  The groups compared are counted in total (every
    # responder and non-responder of the time point, as the contact table counts them), with the people left out for
    # want of an alliance rating counted apart (suppressed if small): the comparison is never hidden to protect them
    tree["nonresponse"] = []
    for nr in summary.get("nonresponse", []):
        t = nr["timepoint"]
        total_t, r = f"contact.{t}.targeted", f"contact.{t}.answered"
        n = ledger.count(f"nonresponse.{t}.nonresponders", ledger.cells[total_t].value - ledger.cells[r].value,
                         cost=INPUT)
        ledger.line(total_t, [r, n])
        rated_r = ledger.count(f"nonresponse.{t}.responders", nr["n_responders"], internal=True)
        rated_n = ledger.count(f"nonresponse.{t}.rated_nonresponders", nr["n_nonresponders"], internal=True)
        unrated = [ledger.count(f"nonresponse.{t}.unrated_{g}", ledger.cells[_key(group)].value - rated, internal=True)
                   for g, group, rated in (("responders", r, nr["n_responders"]),
                                           ("nonresponders", n, nr["n_nonresponders"]))]
        ledger.line(r, [rated_r, unrated[0]])
        ledger.line(n, [rated_n, unrated[1]])
        left_out = ledger.count(f"nonresponse.{t}.unrated", sum(ledger.cells[u.key].value for u in unrated),
                                cost=GROUP)
        ledger.line(left_out, unrated)
        dep = (r, n)  # the groups' counts: a statistic of a group whose count is hidden is not shown
        tree["nonresponse"].append({
            "timepoint": t, "test": nr["test"], "n_responders": Ref(r), "n_nonresponders": n, "n_unrated": left_out,
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
            ledger.count(nkey(o), len(rows_o), cost=INPUT)
            ledger.related(answered_people, nkey(o))
            ledger.related(responders, nkey(o))
            ledger.related(n_rated, nkey(o))  # rated, but no answer to o
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
    tree["planned_parameters"] = summary.get("planned_parameters")  # of the model, not of people: no count
    tree["primary_estimable"] = summary.get("primary_estimable")
    if summary.get("without_length_of_stay"):
        tree["without_length_of_stay"] = _count_result(ledger, summary["without_length_of_stay"],
                                                       nkey(st.PRIMARY_OUTCOME) + ".without_los")
        ledger.related(nkey(st.PRIMARY_OUTCOME), tree["without_length_of_stay"]["n"])
        ledger.related(primary_key, tree["without_length_of_stay"]["n"])

    _strobe(ledger, tree, at, tp, nkey, primary_key)

    if summary.get("linearity"):
        tree["linearity"] = _count_result(ledger, summary["linearity"], primary_key)
    if summary.get("ordinal_primary"):  # the primary model's rows, as ordered categories: the primary's n
        tree["ordinal_primary"] = _count_result(ledger, summary["ordinal_primary"], primary_key)
    # missing outcomes: the assumption and its sensitivity analyses
    miss = summary.get("missing") or {}
    tree["missing"] = {"assumption": miss.get("assumption"), "mice": None, "ipw": None}
    if miss.get("mice"):
        mi = dict(miss["mice"])
        mi["n"] = ledger.count("mice.n", mi["n"], cost=GROUP)  # beside those targeted, the unrated apart
        if f"nonresponse.{tp}.unrated" in ledger.cells:  # everyone targeted then, those without a rating apart
            mi["targeted"], mi["unrated"] = Ref(f"contact.{tp}.targeted"), Ref(f"nonresponse.{tp}.unrated")
        imputed = ledger.count("mice.imputed", mi.pop("n_imputed"), cost=2)
        if nkey(st.PRIMARY_OUTCOME) in ledger.cells:
            ledger.line(mi["n"], [nkey(st.PRIMARY_OUTCOME), imputed])
        ledger.line(mi["n"], [responders, f"nonresponse.{tp}.rated_nonresponders"])
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
                                                  cost=INPUT) for t in TERTILES}
        n_o = ledger.count(nkey(o), len(rows_o), cost=INPUT)  # another count than the scale's n if they differ
        ledger.line(n_o, [f"{o}.{t}.n" for t in TERTILES])
    tree["high_vs_other"] = []
    for r in summary.get("high_vs_other", []):
        o = r["outcome"]
        (a, b), (c, d) = r["table"]
        cells = [ledger.count(f"2x2.{o}.{name}", v, cost=INPUT)
                 for name, v in zip(["high_yes", "high_no", "other_yes", "other_no"], [a, b, c, d])]
        n = ledger.count(nkey(o), r["n"], cost=INPUT)
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
        n = ledger.count(nkey(o), r["n"], cost=INPUT)
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
            n = ledger.count(f"self_efficacy_high.{t}.n", len(v), cost=INPUT)  # the same participants
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
                        n = ledger.count(f"{key}.n", len(g), cost=GROUP)
                        groups[tert] = {"n": n, "mean": derived(float(g.mean()) if len(g) else None, n, strict=False)}
                    else:
                        groups[tert] = _group(ledger, key, g, cost=GROUP)
                        groups[tert]["mean"] = groups[tert]["share"]
                rated = ledger.count(f"tp.{col}.{t}.rated", sum(ledger.cells[f"tp.{col}.{t}.{x}.n"].value
                                                                for x in TERTILES), internal=True)
                ledger.line(rated, [f"tp.{col}.{t}.{x}.n" for x in TERTILES])
                ledger.related(f"contact.{t}.answered", rated)  # the rest: no rating, or no answer to col
                by[t] = groups
            tree["timepoint_groups"][col] = by

    # mixed model across time points
    mixed = summary.get("mixed")
    if mixed:
        m = {k: v for k, v in mixed.items()}
        m["n_repeated"] = ledger.count("mixed.n_repeated", mixed.get("n_repeated", 0), cost=GROUP)
        if mixed.get("fitted"):
            m["n"] = ledger.count("mixed.n_answers", mixed["n"], cost=INPUT)
            m["n_participants"] = people_m = ledger.count("mixed.n_participants", mixed["n_participants"],
                                                          cost=GROUP)
            # the model's people are some of those who answered: the rest (no rating, no self-efficacy answer then,
            # a covariate missing) are counted apart, suppressed if small, so that the model's own count of people
            # may go rather than the number who answered, and the model (its estimates do not depend on it) stays
            left = ledger.cells[answered_people.key].value - mixed["n_participants"]
            if left >= 0:
                m["answered"], m["left_out"] = answered_people, ledger.count("mixed.left_out", left, cost=GROUP)
                ledger.line(answered_people, [people_m, m["left_out"]])
            # answers = people + each one's answers beyond the first: one more for each person answering twice or
            # more, exactly one with two time points
            beyond = ledger.count("mixed.answers_beyond_first", mixed["n"] - mixed["n_participants"], internal=True)
            ledger.line(m["n"], [people_m, beyond])
            if len(mixed.get("timepoints") or []) == 2:
                ledger.line(beyond, [m["n_repeated"]])
            else:
                ledger.related(beyond, m["n_repeated"])
            ledger.related(people_m, m["n_repeated"])
        else:
            m.pop("n", None)
        tree["mixed"] = m

    # readmissions sensitivity analysis: the primary model on every episode of the analysis time point
    sens = ep.get("sensitivity")
    if sens:
        s = {k: v for k, v in sens.items() if k not in ("parameters", "events", "epp")}  # in words, not counts
        s["n"] = ledger.count("episodes.sensitivity.n", sens["n"], cost=INPUT)
        added = ledger.count("episodes.sensitivity.added", sens["n"] - ledger.cells[primary_key].value,
                             internal=True)
        ledger.line(s["n"], [primary_key, added], prefer_total=True)
        tree["episodes"]["sensitivity"] = _of_group(s, s["n"])
    return Model(ledger, tree)


def _strobe(ledger: Ledger, tree: dict[str, Any], at: pd.DataFrame, tp: int, nkey, primary_key: str) -> None:
    """STROBE's participant flow (episodes to the primary analysis, at the analysis time point), Table 1 (the
    characteristics of the participants targeted then, by alliance tertile) and the follow-up timing."""
    rated = at.loc[_num(at["alliance_mean"]).notna()]
    flow_rated = ledger.count(f"flow.{tp}.rated", len(rated), cost=GROUP)  # descriptive: hidden before a response rate
    ledger.line(flow_rated, [f"nonresponse.{tp}.responders", f"nonresponse.{tp}.rated_nonresponders"])
    steps = [("treatment episodes in the dataset", "episodes.n"), ("participants (first episode)",
                                                                     "participants.targeted"),
             (f"targeted at {tp} days", f"contact.{tp}.targeted"),
             ("left out: no alliance rating", f"nonresponse.{tp}.unrated"),  # counted, suppressed if small
             ("with an alliance rating", flow_rated.key),
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


def _uses(obj: Any, out: dict[str, int] | None = None) -> dict[str, int]:
    """How many published numbers are computed from each count (hidden with it; a statistic ``within`` a total
    is not hidden with its group's count alone, so it adds nothing)."""
    out = {} if out is None else out
    if isinstance(obj, Derived):
        if obj.value is not None:
            for d in set(obj.depends):
                out[d] = out.get(d, 0) + 1
    elif isinstance(obj, dict):
        for v in obj.values():
            _uses(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _uses(v, out)
    return out


def model(df: pd.DataFrame, summary: dict[str, Any], *, below: int = 5, timepoint: int | None = None) -> Model:
    """Build, protect and resolve."""
    m = build(df, summary, below=below, timepoint=timepoint)
    for key, n in _uses(m.tree).items():  # hiding a count also hides the shares and intervals made from it
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
