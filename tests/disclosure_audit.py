"""An independent audit of a published report: from stats.json and report.md alone (not the results model), the
counts a reader sees, the arithmetic that ties them together, and what a reader can work out by solving it.

Every count published is a variable: a number shown is fixed, ``<5`` is 1 to 4, ``x`` is 1 or more.  Counts never
published but implied (the people of a tertile who did not answer, participants without an alliance rating, the
episodes beyond the first) are differences of 0 or more.  The relations are the report's own: a contact row adds up
to targeted, answered = completed + partial, the groups compared are counted in total, tertile groups add up to the
analysis n and make up the 2x2 table, and so on.  A linear program gives the least and greatest value of each
unknown; the audit reports

* a count from 1 to below-1 shown as a number (in stats.json or a table of report.md);
* a hidden count (``<5`` or ``x``) that only one whole number fits: hidden in one place, derivable from the rest;
* an unpublished difference that only one whole number from 1 to below-1 fits (a small count given away);
* a count shown in report.md's tables differently from stats.json (hidden in one, printed in the other).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linprog

TERTILES = ("low", "mid", "high")


@dataclass
class System:
    below: int = 5
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    kind: dict[str, str] = field(default_factory=dict)  # shown | hidden | difference
    rows: list[dict[str, float]] = field(default_factory=list)
    _n: int = 0

    def count(self, name: str, v: Any) -> str | None:
        """A published count: an int, ``<k`` or ``x`` (None: not published, no variable)."""
        if v is None:
            return None
        if name in self.bounds:  # the same count published twice: the same variable, and they must agree
            self.eq(name, [self.count(f"{name}#again", v)])
            return name
        if isinstance(v, bool) or not (isinstance(v, int) or v == "x" or (isinstance(v, str) and v.startswith("<"))):
            raise ValueError(f"{name}: not a count: {v!r}")
        self.bounds[name] = (v, v) if isinstance(v, int) else (1, self.below - 1) if v.startswith("<") else (1, math.inf)
        self.kind[name] = "shown" if isinstance(v, int) else "hidden"
        return name

    def difference(self, name: str) -> str:
        self._n += 1
        key = f"{name}~{self._n}"
        self.bounds[key], self.kind[key] = (0, math.inf), "difference"
        return key

    def eq(self, total: str | None, parts: list[str | None]) -> None:
        """total = sum(parts) (skipped when a member is not published)."""
        if total is None or any(p is None for p in parts):
            return
        row: dict[str, float] = {total: 1.0}
        for p in parts:
            row[p] = row.get(p, 0.0) - 1
        self.rows.append(row)

    def at_least(self, big: str | None, small: str | None, name: str) -> None:
        """big = small + a difference of 0 or more (nested groups)."""
        if big is not None and small is not None:
            self.eq(big, [small, self.difference(name)])

    def solve(self) -> dict[str, tuple[float, float]]:
        """The least and greatest value of every hidden count and every difference."""
        keys = list(self.bounds)
        index = {k: i for i, k in enumerate(keys)}
        a = np.zeros((max(len(self.rows), 1), len(keys)))
        for i, row in enumerate(self.rows):
            for k, w in row.items():
                a[i, index[k]] += w
        box = [(lo, None if math.isinf(hi) else hi) for lo, hi in (self.bounds[k] for k in keys)]
        out = {}
        for k in keys:
            if self.kind[k] == "shown":
                continue
            c = np.zeros(len(keys))
            c[index[k]] = 1
            lo = linprog(c, A_eq=a, b_eq=np.zeros(len(a)), bounds=box, method="highs")
            hi = linprog(-c, A_eq=a, b_eq=np.zeros(len(a)), bounds=box, method="highs")
            if lo.status != 0:
                raise AssertionError(f"the published counts contradict each other ({lo.message})")
            out[k] = (lo.fun, -hi.fun if hi.status == 0 else math.inf)
        return out


def _pinned(lo: float, hi: float) -> int | None:
    if math.isinf(hi):
        return None
    a, b = math.ceil(lo - 1e-6), math.floor(hi + 1e-6)
    return a if a == b else None


def relations(stats: dict[str, Any], below: int = 5) -> System:
    """The counts of stats.json and the arithmetic a reader knows ties them together."""
    s = System(below)
    rows = stats.get("contact", {}).get("rows", [])
    columns = stats.get("contact", {}).get("columns", [])
    for r in rows:
        t = r["timepoint"]
        total = s.count(f"contact.{t}.targeted", r["targeted"])
        cells = [s.count(f"contact.{t}.{c}", r.get(c)) for c in columns]
        s.eq(total, cells)
        answered = s.count(f"contact.{t}.answered", r["answered"])
        s.eq(answered, [f"contact.{t}.completed", f"contact.{t}.partial"])
    targets = [f"contact.{r['timepoint']}.targeted" for r in rows]
    s.eq(s.count("followups", stats.get("n_rows")), targets if rows else [])
    people = stats.get("participants", {})
    targeted = s.count("participants.targeted", people.get("targeted"))
    answered = s.count("participants.answered", people.get("answered"))
    if rows:  # everyone at the first time point is a participant, and perhaps others later
        first = rows[0]["timepoint"]
        if len(rows) == 1:
            s.eq(targeted, [f"contact.{first}.targeted"])
            s.eq(answered, [f"contact.{first}.answered"])
        else:
            for r in rows:
                s.at_least(targeted, f"contact.{r['timepoint']}.targeted", "participants not at this time point")
                s.at_least(answered, f"contact.{r['timepoint']}.answered", "answering, not at this time point")
    s.at_least(targeted, answered, "participants who never answered")
    ep = stats.get("episodes") or {}
    if ep:
        n_ep = s.count("episodes.n", ep.get("n_episodes"))
        multi = s.count("episodes.multi", ep.get("n_participants_multi"))
        if n_ep is not None and targeted is not None and multi is not None:
            extra = s.difference("episodes beyond the first")
            s.eq(n_ep, [targeted, extra])
            if ep.get("n_participants_multi") == 0:  # no one with several episodes: none beyond the first
                s.eq(extra, [multi])
            else:
                s.at_least(extra, multi, "episodes beyond the second")
    a = stats.get("alliance") or {}
    rated = s.count("alliance.n", a.get("n"))
    if a.get("participants") is not None:  # the participants, printed again in the description: the same count
        s.count("participants.targeted", a["participants"])
    if a.get("unrated") is not None:  # the description counts everyone, those without a rating apart
        s.eq("participants.targeted" if "participants.targeted" in s.bounds else None,
             [rated, s.count("alliance.unrated", a["unrated"])])
    else:
        s.at_least(targeted, rated, "participants without an alliance rating")
    if a:
        s.at_least(rated, s.count("alliance.at_ceiling", a.get("at_ceiling")), "rated below the ceiling")
        if a.get("histogram"):
            s.eq(rated, [s.count(f"alliance.bin.{i}", b["count"]) for i, b in enumerate(a["histogram"])])
    for nr in stats.get("nonresponse", []):
        t = nr["timepoint"]
        non = s.count(f"nonresponse.{t}.nonresponders", nr["n_nonresponders"])
        if "n_unrated" not in nr:  # reports before issue 24: the groups of people with a rating
            s.at_least(f"contact.{t}.answered", s.count(f"nonresponse.{t}.responders", nr["n_responders"]),
                       f"responders at {t} days without a rating")
            s.eq(f"contact.{t}.targeted", [f"contact.{t}.answered", non,
                                           s.difference(f"non-responders at {t} days without a rating")])
        else:  # the groups counted in total, the people without a rating apart
            s.eq(s.count(f"contact.{t}.answered", nr["n_responders"]), [f"contact.{t}.answered"])
            s.eq(f"contact.{t}.targeted", [f"contact.{t}.answered", non])
            unrated = s.count(f"nonresponse.{t}.unrated", nr["n_unrated"])
            ur, un = s.difference(f"responders at {t} days without a rating"), \
                s.difference(f"non-responders at {t} days without a rating")
            s.eq(unrated, [ur, un])
            s.at_least(f"contact.{t}.answered", ur, f"rated responders at {t} days")
            s.at_least(non, un, f"rated non-responders at {t} days")
    by_tertile = stats.get("response_by_tertile") or {}
    if by_tertile:
        ns = [s.count(f"response.{t}.n", g["n"]) for t, g in by_tertile.items()]
        events = [s.count(f"response.{t}.events", g["events"]) for t, g in by_tertile.items()]
        s.eq(rated, ns)
        for t, n, e in zip(by_tertile, ns, events):
            s.at_least(n, e, f"{t} tertile, never answered")
        if answered is not None and None not in events:
            s.eq(answered, [*events, s.difference("answered without an alliance rating")])
    base = {"self_efficacy_high": "self_efficacy", "mental_health_high": "mental_health",
            "physical_health_high": "physical_health"}
    for key in ("spearman", "ordinal", "logistic"):
        for i, r in enumerate(stats.get(key) or []):
            name = "n.self_efficacy" + (f".{i}" if i else "") if key == "logistic" else f"n.{r['outcome']}"
            n = s.count(name, r.get("n"))
            s.at_least(answered, n, f"answered, not in the {name} analysis")
            s.at_least(rated, n, f"rated, not in the {name} analysis")
    for r in stats.get("estimates") or []:  # one unadjusted and one adjusted row per outcome (issue 24)
        o = {"self_efficacy_high": "self_efficacy", "mental_health_high": "mental_health",
             "physical_health_high": "physical_health"}.get(r["outcome"], r["outcome"])
        name = f"n.{o}" + (".adjusted" if r.get("adjusted") else "")
        n = s.count(name, r.get("n"))
        s.at_least(answered, n, f"answered, not in the {name} analysis")
        s.at_least(rated, n, f"rated, not in the {name} analysis")
        if r.get("adjusted") and f"n.{o}" in s.bounds:
            s.at_least(f"n.{o}", n, f"left out of the adjusted {o} model")
    if "n.self_efficacy.1" in s.bounds:
        s.at_least("n.self_efficacy", "n.self_efficacy.1", "left out of the adjusted model")
    sens = (ep or {}).get("sensitivity")
    if sens:
        s.at_least(s.count("episodes.sensitivity.n", sens.get("n")), "n.self_efficacy", "answers of later episodes")
    for o, by in (stats.get("shares_by_tertile") or {}).items():
        ns = [s.count(f"{o}.{t}.n", g["n"]) for t, g in by.items()]
        ev = [s.count(f"{o}.{t}.events", g["events"]) for t, g in by.items()]
        non = [s.difference(f"{o} {t} without the outcome") for t in by]
        for n, e, x in zip(ns, ev, non):
            s.eq(n, [e, x])
        s.eq(f"n.{base.get(o, o)}" if f"n.{base.get(o, o)}" in s.bounds else None, ns)
        for r in stats.get("high_vs_other") or []:
            if r["outcome"] != o:
                continue
            (hy, hn), (oy, on) = r["table"]
            cells = [s.count(f"2x2.{o}.{k}", v) for k, v in (("hy", hy), ("hn", hn), ("oy", oy), ("on", on))]
            s.eq(s.count(f"n.{base.get(o, o)}", r["n"]), cells)
            if set(by) == set(TERTILES):
                i = {t: j for j, t in enumerate(by)}
                s.eq(cells[0], [ev[i["high"]]])
                s.eq(cells[1], [non[i["high"]]])
                s.eq(cells[2], [ev[i["low"]], ev[i["mid"]]])
                s.eq(cells[3], [non[i["low"]], non[i["mid"]]])
        for r in stats.get("trend") or []:
            if r["outcome"] == o:
                s.count(f"n.{base.get(o, o)}", r["n"])
    for t, g in (stats.get("self_efficacy_by_tertile") or {}).items():
        s.count(f"self_efficacy_high.{t}.n", g["n"])
    for col, by in (stats.get("timepoint_groups") or {}).items():
        for t, groups in by.items():
            ns = []
            for tert, g in groups.items():
                n = s.count(f"tp.{col}.{t}.{tert}.n", g["n"])
                ns.append(n)
                if "events" in g:
                    s.at_least(n, s.count(f"tp.{col}.{t}.{tert}.events", g["events"]), f"{col} {t} {tert} without")
            if ns and None not in ns and f"contact.{t}.answered" in s.bounds:
                s.at_least(f"contact.{t}.answered", _sum(s, ns, f"{col} at {t}"), f"answered at {t} days, not in {col}")
    mixed = stats.get("mixed") or {}
    if mixed.get("fitted"):
        people_m = s.count("mixed.n_participants", mixed.get("n_participants"))
        if mixed.get("left_out") is not None:  # those who answered, the ones the model leaves out counted apart
            s.eq(answered, [people_m, s.count("mixed.left_out", mixed["left_out"])])
        else:
            s.at_least(answered, people_m, "answered, not in the mixed model")
        repeated = s.count("mixed.n_repeated", mixed.get("n_repeated"))
        s.at_least(people_m, repeated, "answered once")
        beyond = s.difference("answers beyond a participant's first")  # answers = people + the answers beyond
        s.eq(s.count("mixed.n_answers", mixed.get("n")), [people_m, beyond])
        if len(mixed.get("timepoints") or []) == 2:  # two time points: one more answer for each who answered twice
            s.eq(beyond, [repeated])
        else:
            s.at_least(beyond, repeated, "answers beyond a participant's second")
    return s


def _sum(s: System, parts: list[str], name: str) -> str:
    total = s.difference(f"sum: {name}")
    s.eq(total, parts)
    return total


def small_shown(stats: dict[str, Any], below: int = 5) -> list[str]:
    """Counts from 1 to below-1 printed as numbers in stats.json (the decision rules and settings are not counts)."""
    skip = {"timepoint", "timepoints", "suppress_below", "min_responders", "min_repeated", "reference",
            "nonresponse_min_d", "decision_rules", "generated", "planned_parameters"}  # the last: a model's size
    out = []

    def walk(obj: Any, path: str) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                if k not in skip:
                    walk(v, f"{path}.{k}")
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                walk(v, f"{path}[{i}]")
        elif isinstance(obj, int) and not isinstance(obj, bool) and 0 < obj < below:
            out.append(f"stats.json{path} = {obj}")

    walk(stats, "")
    return out


def md_tables(md: str) -> list[list[list[str]]]:
    """Every table of report.md as rows of cells (the header row first)."""
    tables, current = [], []
    for line in md.splitlines():
        if line.startswith("|"):
            if not line.startswith("|---"):
                current.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def md_problems(stats: dict[str, Any], md: str, below: int = 5) -> list[str]:
    """Small counts in report.md's tables, and its contact tables and 2x2 cells against stats.json."""
    out = []
    tables = md_tables(md)
    for table in tables:
        for row in table[1:]:
            for cell in row:
                for number in re.findall(r"^(\d+)$|^(\d+)/|/(\d+)$", cell):
                    if any(x and 0 < int(x) < below for x in number):
                        out.append(f"report.md table cell '{cell}' in {row}")
    rows = {f"{r['timepoint']} days": r for r in stats.get("contact", {}).get("rows", [])}
    for table in tables:
        header = table[0]
        for row in table[1:]:
            r = rows.get(row[0])
            if r is None or len(row) != len(header):
                continue
            for name, cell in zip(header[1:], row[1:]):
                key = {"answered (completed + partial)": "answered"}.get(name, name.replace(" ", "_"))
                if key in r and not isinstance(r[key], float) and r[key] is not None and str(r[key]) != cell:
                    out.append(f"report.md {row[0]} {name} is {cell}, stats.json says {r[key]}")
    for r in stats.get("high_vs_other") or []:
        (hy, hn), (oy, on) = r["table"]
        printed = f"| {hy}/{hn} | {oy}/{on} |"
        if not any(line.endswith(printed) for line in md.splitlines() if line.startswith("|")):
            out.append(f"report.md does not print the 2x2 table of {r['outcome']} as stats.json does: {printed}")
    return out


def audit(stats: dict[str, Any], md: str = "", below: int = 5) -> list[str]:
    """Everything a reader of stats.json and report.md could learn that the suppression rule forbids."""
    problems = small_shown(stats, below) + (md_problems(stats, md, below) if md else [])
    s = relations(stats, below)
    for key, (lo, hi) in s.solve().items():
        v = _pinned(lo, hi)
        if v is None:
            continue
        if s.kind[key] == "hidden":
            problems.append(f"{key.replace('#again', ' (printed twice)')} is hidden but derivable: {v}")
        elif s.kind[key] == "difference" and 0 < v < below:
            problems.append(f"{key.split('~')[0]} = {v} can be worked out")
    return problems
