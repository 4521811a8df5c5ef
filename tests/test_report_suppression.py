"""Proof that suppression holds in every output: cohorts of 1 to 40 participants in many shapes, and every output
(report.md, report.html's text, stats.json and the numbers drawn in the figures, read back from their artists)
scanned for a count from 1 to 4 or one that can be worked out (a total minus the cells shown)."""
from __future__ import annotations

import html as htmlmod
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.report import build_report, save_report
from analysis.simulate import cohort
from outreach.study.waves import OUTCOMES

from .disclosure_audit import audit, small_shown

K = 5
HIDDEN = ("<5", "x")
AUDITED = {3, 7, 12, 20, 31, 40}  # cohort sizes whose stats.json and report.md are audited from scratch
NON_RESPONSE = [c for c in OUTCOMES if c not in ("completed", "partial")]


_COUNT_WORDS = r"(participants?|people|responders|non-responders|answers|follow-ups|episodes)"


def small_counts_in_text(text: str, below: int) -> list[str]:
    """Numbers from 1 to below-1 written as counts of people or answers in running text."""
    return [m.group(0) for m in re.finditer(rf"(?<![\d.<\-])\b([1-9]\d*)\b(?![.\d])\s+(?:of them\s+)?{_COUNT_WORDS}",
                                            text) if 0 < int(m.group(1)) < below]


# -- cohorts --------------------------------------------------------------------------------------------------------
def _base(n: int, seed: int, timepoints=(30,), base_response=0.7) -> pd.DataFrame:
    df = cohort(n, seed, timepoints=timepoints, base_response=base_response)
    df.insert(1, "episode", 1)
    return df


def _answer(df: pd.DataFrame, mask: pd.Series, answered: bool) -> pd.DataFrame:
    """Set who answered (with answers) and who did not (answers missing), keeping the flags consistent."""
    df = df.copy()
    rng = np.random.default_rng(len(df))
    for col, lo, hi in (("self_efficacy", 0, 11), ("mental_health", 1, 6), ("physical_health", 1, 6)):
        values = rng.integers(lo, hi, len(df)).astype(float)
        mask = pd.Series(np.asarray(mask), index=df.index)
        df.loc[mask, col] = values[mask.to_numpy()] if answered else np.nan
    df.loc[mask, "responded"] = int(answered)
    for col, src, cut in (("self_efficacy_high", "self_efficacy", 8), ("mental_health_high", "mental_health", 4),
                          ("physical_health_high", "physical_health", 4)):
        df[col] = (df[src] >= cut).astype(float).where(df[src].notna())
    return df


def _statuses(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Spread responders over completed/partial and the others over every other outcome code."""
    rng = np.random.default_rng(seed)
    answered = df["responded"] == 1
    df["status"] = np.where(answered, rng.choice(["completed", "partial"], len(df), p=[0.8, 0.2]),
                            rng.choice(NON_RESPONSE, len(df)))
    return df


def _tertiles(df: pd.DataFrame) -> pd.DataFrame:
    from analysis.dataset import assign_tertiles, tertile_cuts

    per = df.drop_duplicates(["participant", "episode"])["alliance_mean"]
    df["alliance_tertile"] = assign_tertiles(df["alliance_mean"], tertile_cuts(per))
    return df


def shape(name: str, n: int) -> pd.DataFrame:
    seed = 100 + n
    if name == "typical":
        return _statuses(_base(n, seed, (30, 90)), seed)
    if name == "one_responder":
        df = _answer(_base(n, seed), pd.Series(True, index=range(n)), False)
        return _statuses(_answer(df, df.index == 0, True), seed)
    if name == "all_but_one":
        df = _answer(_base(n, seed), pd.Series(True, index=range(n)), True)
        return _statuses(_answer(df, df.index == 0, False), seed)
    if name == "all_respond":
        return _statuses(_answer(_base(n, seed, (30, 90)), pd.Series(True, index=range(2 * n)), True), seed)
    if name == "one_responder_per_tertile":
        df = _answer(_base(n, seed), pd.Series(True, index=range(n)), False)
        first = ~df.duplicated("alliance_tertile") & df["alliance_tertile"].notna()
        return _statuses(_answer(df, first, True), seed)
    if name == "one_in_a_tertile":
        df = _base(n, seed)
        df["alliance_mean"] = 4.0
        df.loc[0, "alliance_mean"] = 5.5
        if n > 2:
            df.loc[1:2, "alliance_mean"] = 3.0
        return _statuses(_tertiles(df), seed)
    if name == "one_at_ceiling":
        df = _base(n, seed)
        df["alliance_mean"] = np.minimum(df["alliance_mean"], 5.8)
        df.loc[0, "alliance_mean"] = 6.0
        return _statuses(_tertiles(df), seed)
    if name == "empty_timepoints":  # a 90-day time point nobody answered, a 180-day one with a few people
        df = _base(n, seed, (30, 90, 180))
        df = _answer(df, df["timepoint_days"] == 90, False)
        df = df[(df["timepoint_days"] != 180) | (df["participant"].isin(df["participant"].unique()[:2]))]
        return _statuses(df.reset_index(drop=True), seed)
    if name == "readmitted":  # a few second stays
        df = _base(n, seed)
        again = _base(min(n, 3), seed + 1).assign(episode=2)
        again["participant"] = df["participant"].iloc[:len(again)].to_numpy()
        return _statuses(_tertiles(pd.concat([df, again], ignore_index=True)), seed)
    raise KeyError(name)


SHAPES = ["typical", "one_responder", "all_but_one", "all_respond", "one_responder_per_tertile", "one_in_a_tertile",
          "one_at_ceiling", "empty_timepoints", "readmitted"]


# -- the scan -------------------------------------------------------------------------------------------------------
def _small(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 < v < K


def _remainder(total, parts) -> int | None:
    """A total minus the counts shown beside it (None when the total is hidden)."""
    if not isinstance(total, int):
        return None
    return total - sum(p for p in parts if isinstance(p, int))


def json_problems(stats: dict) -> list[str]:
    problems = small_shown(stats, K)

    def derivable(where, total, parts):
        rest = _remainder(total, parts)
        if rest is not None and 0 < rest < K:
            problems.append(f"{where}: {total} minus {parts} = {rest}")

    for r in stats["contact"]["rows"]:
        cols = [r[c] for c in stats["contact"]["columns"]]
        derivable(f"contact {r['timepoint']}", r["targeted"], cols)
        if all(isinstance(c, int) for c in cols + [r["targeted"]]):
            assert sum(cols) == r["targeted"], "the outcome columns must add up to targeted"
        derivable(f"answered {r['timepoint']}", r["answered"], [r["completed"], r["partial"]])
        if r["targeted"] in HIDDEN or r["answered"] in HIDDEN:
            assert r["response_rate"] is None and r["ci_low"] is None, r
    derivable("follow-ups", stats["n_rows"], [r["targeted"] for r in stats["contact"]["rows"]])
    people = stats.get("participants", {})
    a = stats.get("alliance", {})
    if a:
        derivable("alliance", a["n"], [a["at_ceiling"]])
        derivable("rated", people["targeted"], [a["n"]])
        if a["n"] == "<5":
            assert a["mean"] is None and a["median"] is None and a["tertile_cuts"] is None
        if a["n"] in HIDDEN or a["at_ceiling"] in HIDDEN:
            assert a["share_at_ceiling"] is None
        bins = [b["count"] for b in a["histogram"]]
        assert all(b in HIDDEN or b == 0 or b >= K for b in bins), bins
        derivable("histogram", a["n"], bins)
    ep = stats.get("episodes", {})
    if ep:
        derivable("episodes", ep["n_episodes"], [people.get("targeted")])
    for nr in stats.get("nonresponse", []):
        row = next(r for r in stats["contact"]["rows"] if r["timepoint"] == nr["timepoint"])
        derivable("responders", row["answered"], [nr["n_responders"]])
        derivable("non-responders", row["targeted"], [row["answered"], nr["n_nonresponders"]])
        if nr["n_responders"] in HIDDEN or nr["n_nonresponders"] in HIDDEN:
            assert all(nr[k] is None for k in ("mean_responders", "mean_nonresponders", "estimate", "ci_low", "p")), nr

    def groups(g, where):
        derivable(where, g["n"], [g["events"]])
        if g["n"] in HIDDEN or g["events"] in HIDDEN:
            assert g["share"] is None and g["ci_low"] is None and g["ci_high"] is None, (where, g)

    for t, g in stats.get("response_by_tertile", {}).items():
        groups(g, f"response {t}")
    derivable("tertiles", a.get("n"), [g["n"] for g in stats.get("response_by_tertile", {}).values()])
    for o, by in stats.get("shares_by_tertile", {}).items():
        for t, g in by.items():
            groups(g, f"{o} {t}")
    for r in stats.get("high_vs_other", []):
        cells = [c for row in r["table"] for c in row]
        derivable(f"2x2 {r['outcome']}", r["n"], cells)
        if any(c in HIDDEN for c in cells):
            assert r["estimate"] is None and r["ci_low"] is None and r["p"] is None, r
    for t, g in stats.get("self_efficacy_by_tertile", {}).items():
        if g["n"] == "<5":
            assert g["mean"] is None and g["quantiles_10_25_50_75_90"] is None
    for col, by in stats.get("timepoint_groups", {}).items():
        for t, gs in by.items():
            for tert, g in gs.items():
                if "events" in g:
                    groups(g, f"{col} {t} {tert}")
                elif g["n"] == "<5":
                    assert g["mean"] is None
    return problems


def text_problems(text: str, where: str) -> list[str]:
    problems = [f"{where}: '{m}'" for m in small_counts_in_text(text, K)]
    for line in text.splitlines():
        if line.startswith("|"):
            for cell in line.strip("|").split("|"):
                cell = cell.strip()
                for number in re.findall(r"^(\d+)$|^(\d+)/|/(\d+)$", cell):
                    if any(_small(int(x)) for x in number if x):
                        problems.append(f"{where} table cell '{cell}' in: {line}")
    return problems


def figure_problems(report) -> list[str]:
    ledger = report.model.ledger
    problems = []
    for fig in report.figures:
        d = fig.drawn
        if d["points"]:
            problems.append(f"{fig.name}: {d['points']} individual points drawn")
        count_axes = {"fig1_funnel.png": d.get("xticks", []),
                      "fig2_alliance.png": d.get("yticks", [])}.get(fig.name, [])  # the axes that count people
        for text in d["texts"] + count_axes:
            for m in re.finditer(r"(?<![<\d.])\b(\d+)\b(?![.\d])", text):
                if _small(int(m.group(1))) and not re.search(r"\d+ days|\(\d+-\d+\)", text):
                    problems.append(f"{fig.name}: text '{text}'")
        for item in d["bars"] + d["lines"]:
            kind, keys = item["gid"].split(":", 1)
            cells = [ledger.cells[k] for k in keys.split(",") if k]
            if kind == "count":
                [cell] = cells
                length = item.get("width") if fig.name == "fig1_funnel.png" else item.get("height")
                if cell.hidden or _small(cell.value) or length != cell.value:
                    problems.append(f"{fig.name}: bar of {cell.key} ({cell.value}, {cell.status}) drawn {length}")
            elif kind == "share" and any(c.hidden for c in cells):
                problems.append(f"{fig.name}: share of hidden {[c.key for c in cells if c.hidden]}")
            elif kind == "group" and any(c.status in ("primary", "masked") for c in cells):
                problems.append(f"{fig.name}: summary of a group below {K}: {[c.key for c in cells]}")
        for (lo, hi), name in zip(d.get("ylim", []), [fig.name] * len(d.get("ylim", []))):
            assert lo >= 0, (name, lo)
    return problems


def ledger_problems(report) -> list[str]:
    """Every line of the model: the total shown minus the cells shown is never 1 .. K-1, no hidden count pinned."""
    ledger = report.model.ledger
    problems = []
    for ln in ledger.lines:
        total = ledger.cells[ln.total]
        if not total.hidden:
            rest = sum(ledger.cells[p].value for p in ln.parts if ledger.cells[p].hidden)
            if 0 < rest < K:
                problems.append(f"line {ln.total} = {ln.parts}: remainder {rest}")
    ranges = ledger.ranges()
    for c in ledger.cells.values():
        lo, hi = ranges[c.key]
        assert lo <= c.value <= hi, (c, lo, hi)  # what a reader can work out is true
        if (c.status in ("primary", "masked") or (c.internal and 0 < c.value < K)) and lo == hi:
            problems.append(f"{c.key} = {c.value} can be worked out")
        if not c.internal and not c.hidden:
            assert not _small(c.value)
    return problems


def scan(df: pd.DataFrame, out) -> list[str]:
    report = build_report(df, out, suppress_below=K)
    payload = save_report(report, out)
    stats = json.loads((out / "stats.json").read_text())
    assert stats == json.loads(json.dumps(payload, default=str))
    md = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    page_text = htmlmod.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"src='data:[^']+'", "", page)))
    problems = json_problems(stats) + text_problems(md, "report.md") + ledger_problems(report)
    problems += [p.replace("report.md", "report.html") for p in small_counts_in_text(page_text, K)]
    problems += [f"report.html cell {c}" for c in re.findall(r"<td>(\d+)</td>", page) if _small(int(c))]
    problems += figure_problems(report)
    if len(df) and df["participant"].nunique() in AUDITED:  # the independent audit (linear programs: slower)
        problems += audit(stats, md, K)
    return problems


@pytest.fixture
def no_png(monkeypatch):
    """The figures are drawn and read back from their artists, but not rasterised (the slow part): a few bytes
    stand in for each PNG.  test_report.py checks real PNGs."""
    from matplotlib.figure import Figure

    monkeypatch.setattr(Figure, "savefig", lambda self, path, **kw: Path(path).write_bytes(b"\x89PNG"))
    monkeypatch.setattr(Figure, "tight_layout", lambda self, **kw: None)


@pytest.mark.parametrize("name", SHAPES)
def test_no_output_reveals_a_small_count_in_cohorts_of_1_to_40(name, tmp_path, no_png):
    found = {}
    sizes = range(1, 41) if name in ("typical", "one_responder", "all_respond") else \
        [1, 2, 3, 4, 5, 6, 7, 9, 12, 16, 20, 25, 31, 35, 40]
    for n in sizes:
        df = shape(name, n)
        problems = scan(df, tmp_path / f"{name}{n}")
        if problems:
            found[n] = problems[:5]
    assert not found, found


def test_the_scan_finds_what_the_old_report_leaked(tmp_path):
    """The checks above can fail: an unprotected count, a total that gives a hidden cell away, a share of a small
    group and a bar drawn to its true length are all caught."""
    stats = {"contact": {"columns": ["completed", "no_reply"], "rows": [
        {"timepoint": 30, "targeted": 15, "completed": "<5", "no_reply": 12, "partial": 0, "answered": 3,
         "response_rate": 0.2, "ci_low": 0.1}]}, "n_rows": 15, "participants": {"targeted": 15},
        "alliance": {"n": 15, "at_ceiling": "<5", "share_at_ceiling": 0.0667, "mean": 5.0, "median": 5.0,
                     "tertile_cuts": [4, 5], "histogram": [{"count": 2}]}}
    with pytest.raises(AssertionError):
        json_problems(stats)
    stats["alliance"]["share_at_ceiling"] = None
    stats["alliance"]["histogram"] = []
    stats["contact"]["rows"][0]["response_rate"] = stats["contact"]["rows"][0]["ci_low"] = None
    problems = json_problems(stats)
    assert any("answered = 3" in p for p in problems)  # stats.json carries a 3
    assert any("contact 30: 15 minus" in p for p in problems)  # 15 - 12 = 3 completed
    stats["alliance"]["at_ceiling"] = 14  # 15 - 14 = 1 below the ceiling
    assert any("alliance: 15 minus" in p for p in json_problems(stats))
    assert text_problems("Only 2 people answered.\n\n| 30 days | 15 | <5/6 | 3 |", "md") == [
        "md: '2 people'", "md table cell '3' in: | 30 days | 15 | <5/6 | 3 |"]


def test_a_participant_alone_in_the_report(tmp_path):
    """The smallest cohort: one participant who answered.  Every count is <5 or 0 and nothing is drawn but the
    contact bars of zero length."""
    df = shape("all_but_one", 2).iloc[[1]].reset_index(drop=True)
    report = build_report(df, tmp_path)
    data = report.data
    assert data["participants"] == {"targeted": "<5", "answered": "<5", "answers": None}
    assert data["alliance"]["mean"] is None and data["alliance"]["histogram"] == []
    assert [f.name for f in report.figures] == ["fig1_funnel.png"]
    assert all(b["gid"].startswith("count:") and b["width"] == 0 for b in report.figures[0].drawn["bars"]) or \
        not report.figures[0].drawn["bars"]


@pytest.mark.parametrize("budget", [0.0, 1e-9])
def test_when_the_solver_runs_out_of_time_the_report_is_still_safe_and_says_so(budget, tmp_path, no_png,
                                                                            monkeypatch):
    """The integer program has a time budget (one demo's table ran for tens of minutes): with none left, the
    suppression still hides a safe set of counts, every output passes the scan and the independent audit, and the
    Methods say the choice was not proven least costly."""
    import analysis.results as rs

    monkeypatch.setattr(rs, "SOLVER_BUDGET_SECONDS", budget)
    df = shape("typical", 20)
    assert scan(df, tmp_path / "out") == []
    md = (tmp_path / "out" / "report.md").read_text()
    assert "ran out of its time budget" in md
    monkeypatch.setattr(rs, "SOLVER_BUDGET_SECONDS", 20.0)
    assert "ran out of its time budget" not in build_report(df, tmp_path / "again", suppress_below=K).doc.markdown()
