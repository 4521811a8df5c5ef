"""Suppression that hides exactly what it must (issue 24): the published output audited from stats.json and
report.md alone (tests/disclosure_audit.py solves the relations between the counts), on the demo and on simulated
studies of 420 participants; every count hidden is needed; the cheapest count goes first; no statistic for a group
whose count is hidden."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis import results as rs
from analysis import stats as st
from analysis.report import write_report

from .disclosure_audit import audit
from .test_report_recompute import study

OTHER = ["crisis", "opted_out", "declined", "undeliverable", "replied_no_answer", "no_reply"]


def issue_study(seed: int = 3, unrated: int = 3) -> pd.DataFrame:
    """The 420-participant study of issue 24: answers split completed/partial, a few of each other outcome, and a
    few non-responders without an alliance rating."""
    df = study(seed=seed)
    rng = np.random.default_rng(seed)
    answered = df["responded"] == 1
    df.loc[answered, "status"] = np.where(rng.random(answered.sum()) < 0.085, "partial", "completed")
    df.loc[~answered, "status"] = rng.choice(OTHER, (~answered).sum(), p=[0.01, 0.06, 0.04, 0.03, 0.02, 0.84])
    never = df.groupby("participant")["responded"].transform("max") == 0
    ids = df.loc[never & (df["episode"] == 1), "participant"].unique()[:unrated]
    cols = [f"alliance_{i}" for i in range(1, 7)] + ["alliance_mean", "alliance_tertile"]
    df.loc[df["participant"].isin(ids), cols] = np.nan
    return df


def published(df: pd.DataFrame, out) -> tuple[dict, str]:
    write_report(df, out)
    return json.loads((out / "stats.json").read_text()), (out / "report.md").read_text()


def needless(ledger: rs.Ledger) -> list[str]:
    """Counts hidden as x that protect nothing: shown again, no sensitive count can be pinned down and no line
    is left with hidden counts adding up to 1 .. below-1."""
    out = []
    for c in [c for c in ledger.cells.values() if c.status == "complementary"]:
        c.status = "shown"
        if ledger.exposed() is None and not ledger._covers():
            out.append(f"{c.key} ({c.value})")
        c.status = "complementary"
    return out


# -- the audit can fail --------------------------------------------------------------------------------------------
def test_the_audit_finds_a_hidden_count_the_others_give_away_and_a_small_one_shown():
    row = {"timepoint": 30, "targeted": 420, "completed": 217, "partial": 20, "crisis": "<5", "opted_out": 30,
           "declined": "<5", "undeliverable": 10, "replied_no_answer": 6, "no_reply": 131, "answered": "x",
           "response_rate": None}
    stats = {"contact": {"columns": ["completed", "partial", *OTHER], "rows": [row]}, "n_rows": 420,
             "participants": {"targeted": 420, "answered": 237}}
    problems = audit(stats)
    assert "contact.30.answered is hidden but derivable: 237" in problems  # 217 + 20, printed as responders too
    row["crisis"], row["declined"], row["opted_out"] = 2, 4, "x"
    problems = audit(stats)
    assert "stats.json.contact.rows[0].crisis = 2" in problems and "contact.30.opted_out is hidden but derivable: 30" \
        in problems
    stats["alliance"] = {"n": 416, "at_ceiling": 80, "histogram": []}  # 420 - 416: four people without a rating
    assert "participants without an alliance rating = 4 can be worked out" in audit(stats)
    md = "| time point | targeted | answered (completed + partial) | response rate |\n|---|---|---|---|\n" \
         "| 30 days | 420 | 237 | 56% |\n"
    assert "report.md 30 days answered (completed + partial) is 237, stats.json says x" in audit(stats, md)


def test_no_readmission_ties_the_participants_to_the_episodes():
    """'No participant has more than one treatment episode' makes the participants the episodes: the demo before
    issue 24 hid its 279 participants beside 279 episodes, 0 readmitted and 275 rated, giving away the 4 without a
    rating, and neither the model nor the audit knew."""
    stats = {"contact": {"columns": [], "rows": []}, "participants": {"targeted": "x", "answered": 165},
             "episodes": {"n_episodes": 279, "n_participants_multi": 0}, "alliance": {"n": 275, "histogram": []}}
    problems = audit(stats)
    assert "participants.targeted is hidden but derivable: 279" in problems
    assert "participants without an alliance rating = 4 can be worked out" in problems
    stats["episodes"] = {"n_episodes": 330, "n_participants_multi": 40}  # readmissions: how many episodes each, unknown
    assert audit(stats) == []
    df = issue_study(4, 0)
    df = df[df["episode"] == 1]
    m = rs.build(df, {"too_small": True, "episodes": {"n_participants_multi": 0, "n_episodes": 420}})
    m.ledger.cells["participants.targeted"].status = "complementary"
    assert m.ledger.pinned("participants.targeted")  # the model knows it too


def test_the_issue_contact_row_keeps_its_response_rate():
    """217 completed, 20 partial and two small outcomes: a descriptive column is hidden beside them, not answered
    (which completed + partial give away) nor the response rate."""
    ledger = rs.Ledger(5)
    total = ledger.count("targeted", 420, cost=rs.RATE)
    cells = {k: ledger.count(k, v, cost=rs.BREAKDOWN) for k, v in (
        ("completed", 217), ("partial", 20), ("crisis", 1), ("opted_out", 30), ("declined", 3),
        ("undeliverable", 10), ("replied_no_answer", 6), ("no_reply", 133))}
    ledger.line(total, cells.values())
    ledger.line(ledger.count("answered", 237, cost=rs.RATE), [cells["completed"], cells["partial"]])
    ledger.protect()
    assert ledger.value("answered") == 237 and ledger.value("targeted") == 420
    assert [k for k, c in ledger.cells.items() if c.status == "complementary"] == ["replied_no_answer"]
    assert needless(ledger) == []


def test_tiny_counts_that_pin_each_other_are_shown_as_x_before_anything_else_is_hidden():
    """Three tertiles of 4 among 12 participants, all rated: the <5 marks and the total pin each at 4.  Showing one
    as x protects them; hiding the number rated instead would hide the participants (12 rated of 12), which the
    cost order ranks far above a small count's mark."""
    ledger = rs.Ledger(5)
    people = ledger.count("participants", 12, cost=rs.SIZE)
    rated = ledger.count("rated", 12, cost=rs.GROUP)
    ledger.line(people, [rated, ledger.count("unrated", 0, cost=rs.GROUP)])
    ledger.line(rated, [ledger.count(f"tertile.{t}", 4, cost=rs.GROUP) for t in ("low", "mid", "high")])
    ledger.protect()
    assert ledger.value("participants") == 12 and ledger.value("rated") == 12
    assert sorted(ledger.value(f"tertile.{t}") for t in ("low", "mid", "high")) == ["<5", "<5", "x"]
    assert ledger.exposed() is None


def test_no_statistic_is_shown_for_a_group_whose_count_is_hidden():
    """A mean (not only a share) of a group whose count is hidden as x is not published: before, a mean stayed
    beside an x (only <5 hid it)."""
    ledger = rs.Ledger(5)
    total = ledger.count("all", 40)
    a, b = ledger.count("a", 2), ledger.count("b", 38)
    ledger.line(total, [a, b])
    ledger.protect()
    assert ledger.value("b") == "x"
    tree = {"mean_b": rs.derived(4.2, b, strict=False), "share_b": rs.derived(0.95, b), "mean_all": rs.derived(4.1, total,
                                                                                                         strict=False)}
    assert rs.resolve(tree, ledger) == {"mean_b": None, "share_b": None, "mean_all": 4.1}


# -- the demo and the 420-participant studies ---------------------------------------------------------------------
@pytest.mark.parametrize("seed,unrated", [(3, 3), (4, 0), (5, 6)])
def test_a_420_participant_study_hides_only_what_it_must(seed, unrated, tmp_path):
    df = issue_study(seed, unrated)
    stats, md = published(df, tmp_path)
    assert audit(stats, md) == []
    assert stats["participants"]["targeted"] == df["participant"].nunique()  # the headline, whoever has no rating
    for r in stats["contact"]["rows"]:  # no small count needs the response rate: it is shown, with its interval
        assert isinstance(r["answered"], int) and r["response_rate"] is not None and r["ci_low"] is not None
    for nr in stats["nonresponse"]:  # the people without a rating are counted, the comparison shown
        assert nr["estimate"] is not None and nr["n_responders"] == next(
            r["answered"] for r in stats["contact"]["rows"] if r["timepoint"] == nr["timepoint"])
        assert nr["n_unrated"] == ("<5" if 0 < unrated < 5 else unrated)
    assert all(isinstance(r["n"], int) and r["estimate"] is not None for r in stats["estimates"] + stats["spearman"])
    m = rs.model(df, st.summarise(df))
    assert needless(m.ledger) == []


def without_rating(df: pd.DataFrame, k: int, answering: bool) -> pd.DataFrame:
    """``k`` participants' alliance ratings blanked: some who answered at 30 days (``answering``: the demo's case,
    where the people without a rating are among the responders too) or some who never answered."""
    df = df.copy()
    first = df[df["episode"] == 1]
    answered_30 = first.loc[(first["timepoint_days"] == 30) & (first["responded"] == 1), "participant"]
    never = first.groupby("participant")["responded"].max()
    pool = answered_30.unique() if answering else never[never == 0].index
    cols = [f"alliance_{i}" for i in range(1, 7)] + ["alliance_mean", "alliance_tertile"]
    df.loc[df["participant"].isin(pool[:k]), cols] = np.nan
    return df


@pytest.mark.parametrize("unrated,answering", [(1, True), (4, True), (2, False)])
def test_a_few_participants_without_a_rating_leave_the_headline_count_and_response_rates_shown(unrated, answering,
                                                                                               tmp_path):
    """Issue 24: the demo hid its own number of participants because 4 had no alliance rating (the participants
    and the number rated would give the 4 away, and the cost order hid the headline first).  People left out are
    counted in total, never by hiding the analysis: the alliance description counts everyone ("of 420
    participants, <5 had no alliance rating"), and what goes is its own n (a descriptive count) with one part of
    each breakdown of the rated, not the participants, a response rate or an analysis's n."""
    df = without_rating(issue_study(3, 0), unrated, answering)
    first = df[df["episode"] == 1]
    people = first["participant"].nunique()
    rated = first.drop_duplicates("participant")["alliance_mean"].dropna()
    assert people - len(rated) == unrated
    stats, md = published(df, tmp_path)
    assert audit(stats, md) == []
    assert stats["participants"]["targeted"] == people and isinstance(stats["participants"]["answered"], int)
    assert f"{people} participants (their first treatment episode) were contacted at 30 and 90 days" in md
    for r in stats["contact"]["rows"]:
        assert isinstance(r["targeted"], int) and isinstance(r["answered"], int)
        assert r["response_rate"] is not None and r["ci_low"] is not None
    a = stats["alliance"]
    assert (a["participants"], a["unrated"], a["n"]) == (people, "<5", "x")
    assert a["mean"] == pytest.approx(rated.mean()) and a["sd"] == pytest.approx(rated.std())  # still described
    assert a["median"] == pytest.approx(rated.median())
    assert f"Of {people} participants, <5 had no alliance rating and are left out of this description" in md
    assert all(isinstance(r["n"], int) and r["estimate"] is not None for r in stats["estimates"] + stats["spearman"])
    assert all(nr["estimate"] is not None and isinstance(nr["n_responders"], int) for nr in stats["nonresponse"])
    flow = {f["step"]: f["n"] for f in stats["flow"]}
    assert flow["participants (first episode)"] == people and flow["left out: no alliance rating"] == "<5"


def test_the_demo_shows_its_response_rates_and_hides_only_what_a_small_count_needs(default_demo):
    directory, _ = default_demo
    stats, md = published_files(directory / "report")
    assert audit(stats, md) == []
    for r in stats["contact"]["rows"]:
        assert isinstance(r["answered"], int) and r["response_rate"] is not None
    assert all(nr["estimate"] is not None for nr in stats["nonresponse"])
    hidden = [(r["timepoint"], c) for r in stats["contact"]["rows"] for c in stats["contact"]["columns"] + ["answered"]
              if r[c] == "x"]
    assert all(c not in ("completed", "partial", "answered") for _, c in hidden), hidden


def published_files(out) -> tuple[dict, str]:
    return json.loads((out / "stats.json").read_text()), (out / "report.md").read_text()
