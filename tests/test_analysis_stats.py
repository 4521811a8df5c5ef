"""Statistics checked against values worked out independently, and recovery of a known effect."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import stats as st
from analysis.simulate import cohort

# A small fixed dataset with ties in both variables and missing answers.
FIXED = pd.DataFrame({
    "participant": [f"p{i}" for i in range(12)],
    "timepoint_days": 30,
    "alliance_mean": [6, 6, 5.5, 5.5, 5, 4.5, 4.5, 4, 3.5, 3, 5, 2.5],
    "self_efficacy": [10, 9, 9, 7, 8, 6, 7, 5, np.nan, 4, np.nan, 5],
    "responded": [1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1],
})


def test_spearman_matches_pearson_on_average_ranks_with_ties_and_missing():
    r = st.spearman(FIXED, "self_efficacy")
    pair = FIXED[["alliance_mean", "self_efficacy"]].dropna()
    ranks = pair.rank(method="average")  # ties get their average rank
    x, y = ranks.iloc[:, 0].to_numpy(), ranks.iloc[:, 1].to_numpy()
    by_hand = ((x - x.mean()) * (y - y.mean())).sum() / math.sqrt(((x - x.mean()) ** 2).sum() * ((y - y.mean()) ** 2).sum())
    assert r["n"] == 10 and r["estimate"] == pytest.approx(by_hand, abs=1e-12)
    se = math.sqrt((1 + by_hand ** 2 / 2) / 7)
    assert r["ci_low"] == pytest.approx(math.tanh(math.atanh(by_hand) - 1.96 * se))
    assert r["ci_low"] < r["estimate"] < r["ci_high"] < 1


def test_chi_square_2x2_by_hand():
    # high tertile: 30 yes / 10 no; others: 20 yes / 40 no
    df = pd.DataFrame({"alliance_tertile": ["high"] * 40 + ["low"] * 60,
                       "self_efficacy_high": [1] * 30 + [0] * 10 + [1] * 20 + [0] * 40})
    r = st.high_vs_other(df, "self_efficacy_high")
    a, b, c, d = 30, 10, 20, 40
    n = a + b + c + d
    chi2 = n * (a * d - b * c) ** 2 / ((a + b) * (c + d) * (a + c) * (b + d))
    from math import erfc, sqrt

    assert r["test"] == "Pearson chi-square test"
    assert r["p"] == pytest.approx(erfc(sqrt(chi2 / 2)), rel=1e-9)  # chi-square with 1 df
    assert r["estimate"] == pytest.approx(a * d / (b * c))
    se = math.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    assert r["ci_low"] == pytest.approx(math.exp(math.log(6) - 1.96 * se), rel=0.02)


def test_fisher_exact_when_counts_are_small_by_hand():
    df = pd.DataFrame({"alliance_tertile": ["high"] * 4 + ["mid"] * 5,
                       "self_efficacy_high": [1, 1, 1, 0, 0, 0, 1, 0, 0]})
    r = st.high_vs_other(df, "self_efficacy_high")
    assert r["test"] == "Fisher's exact test"
    # Hypergeometric: 4 "high" drawn from 9 with 4 successes; observed 3 successes in high.
    from math import comb

    probs = {k: comb(4, k) * comb(5, 4 - k) / comb(9, 4) for k in range(5)}
    p_obs = probs[3]
    p_two_sided = sum(p for p in probs.values() if p <= p_obs + 1e-12)
    assert r["p"] == pytest.approx(p_two_sided)


def test_mann_whitney_u_by_hand():
    r = st.nonresponse(FIXED)
    data = FIXED[["alliance_mean", "responded"]]
    ranks = data["alliance_mean"].rank()
    n1 = int((data.responded == 1).sum())
    u1 = ranks[data.responded == 1].sum() - n1 * (n1 + 1) / 2
    assert r["u"] == pytest.approx(u1)
    resp, non = data.alliance_mean[data.responded == 1], data.alliance_mean[data.responded == 0]
    d = (resp.mean() - non.mean()) / math.sqrt((resp.var() + non.var()) / 2)
    assert r["estimate"] == pytest.approx(d)


def test_logistic_odds_ratio_matches_newton_raphson_by_hand():
    df = cohort(300, seed=5)
    r = st.logistic(df, "self_efficacy_high")
    data = df[["alliance_mean", "self_efficacy_high"]].dropna()
    x = ((data.alliance_mean - data.alliance_mean.mean()) / data.alliance_mean.std()).to_numpy()
    y = data.self_efficacy_high.to_numpy()
    X = np.column_stack([np.ones_like(x), x])
    beta = np.zeros(2)
    for _ in range(25):
        p = 1 / (1 + np.exp(-X @ beta))
        beta += np.linalg.solve(X.T @ (X * (p * (1 - p))[:, None]), X.T @ (y - p))
    assert r["estimate"] == pytest.approx(math.exp(beta[1]), rel=1e-5)


def test_holm_by_hand():
    results = [{"p": 0.01}, {"p": 0.04}, {"p": 0.03}, {"p": None}]
    st.holm(results)
    assert [r.get("p_holm") for r in results] == [pytest.approx(0.03), pytest.approx(0.06), pytest.approx(0.06),
                                                  None]


def test_wilson_interval_by_hand():
    share, lo, hi = st.wilson(8, 20)
    z, p, n = 1.959963984540054, 0.4, 20
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (share, lo, hi) == (0.4, pytest.approx(centre - half), pytest.approx(centre + half))


def test_wilson_interval_contains_an_estimate_of_0_or_1():
    assert st.wilson(7, 7)[1:] == (pytest.approx(0.6457, abs=1e-4), 1.0)
    assert st.wilson(0, 7)[1:] == (0.0, pytest.approx(0.3543, abs=1e-4))


def test_pipeline_recovers_a_true_odds_ratio_of_2():
    """n = 400, true OR 2 per SD: the 95% CI covers 2 in at least 90% of 50 seeds."""
    covered = sum(1 for seed in range(50)
                  if (r := st.logistic(cohort(400, seed, or_efficacy=2.0)))["ci_low"] <= 2.0 <= r["ci_high"])
    assert covered >= 45


def test_no_effect_gives_few_false_positives():
    false_positive = sum(1 for seed in range(50) if st.logistic(cohort(400, 1000 + seed, or_efficacy=1.0))["p"] < 0.05)
    assert false_positive <= 5


def test_ordinal_model_recovers_a_true_odds_ratio_for_health():
    covered = sum(1 for seed in range(30)
                  if (r := st.ordinal(cohort(400, 2000 + seed, or_health=2.0), "mental_health"))["ci_low"] <= 2.0
                  <= r["ci_high"])
    assert covered >= 26


def test_nonresponse_is_described_without_a_verdict():
    r = st.nonresponse(cohort(2000, 7, or_response=3.0))
    assert r["estimate"] > 0.2 and r["p"] < 0.001 and "differs" not in r


def test_response_that_depends_on_the_alliance_alone_leaves_the_complete_case_odds_ratio_unbiased():
    """Missing at random given the alliance: responders are a biased sample of the alliance, not of the outcome
    given the alliance, so the complete-case odds ratio per SD (population SD) is unbiased: 60 cohorts of 400,
    true OR 2, response OR 3 per SD."""
    from analysis.simulate import POP_SD

    logs = [math.log(st.logistic(df, sd=POP_SD)["estimate"]) for seed in range(60)
            for df in [cohort(400, 3000 + seed, or_efficacy=2.0, or_response=3.0)]]
    se = np.std(logs, ddof=1) / math.sqrt(len(logs))
    assert abs(np.mean(logs) - math.log(2.0)) < 3 * se + 0.02


def test_too_few_responders_gives_no_estimates():
    small = cohort(40, 3, base_response=0.4)
    summary = st.summarise(small)
    assert summary["too_small"] and "spearman" not in summary and "logistic" not in summary


def test_mixed_model_when_two_timepoints_have_enough_answers():
    df = cohort(200, 11, timepoints=(30, 90))
    mixed = st.summarise(df)["mixed"]
    assert mixed["timepoints"] == [30, 90] and mixed["n_participants"] <= 200 and mixed["estimate"] > 0


# -- treatment episodes (readmissions) --------------------------------------------------------------------------
def readmitted(n: int, seed: int, k: int, *, duplicate: bool = False,
               timepoints: tuple[int, ...] = (30,)) -> pd.DataFrame:
    """``cohort(n, seed)`` as everyone's first episode, plus a second episode for its first ``k`` participants.

    The second episode is a fresh draw (its own alliance rating and answers), or an exact copy of the first
    when ``duplicate``. Columns as in the linked dataset: ``episode`` right after ``participant``.
    """
    first = cohort(n, seed, timepoints=timepoints)
    ids = first["participant"].unique()[:k]
    if duplicate:
        second = first[first["participant"].isin(ids)].copy()
    else:
        second = cohort(k, seed + 1, timepoints=timepoints)
        second["participant"] = second["participant"].map(dict(zip(second["participant"].unique(), ids)))
    df = pd.concat([first.assign(episode=1), second.assign(episode=2)], ignore_index=True)
    return df[["participant", "episode"] + [c for c in first.columns if c != "participant"]]


def _log_width(r: dict) -> float:
    return math.log(r["ci_high"]) - math.log(r["ci_low"])


def test_first_episodes_keeps_each_participants_earliest_episode_at_every_time_point():
    df = pd.DataFrame({"participant": ["a", "a", "a", "b", "b", "b", "c"],
                       "episode": [2, 1, 1, 3, 2, 2, 1],
                       "timepoint_days": [30, 30, 90, 30, 30, 90, 30]})
    primary = st.first_episodes(df)
    assert primary.index.tolist() == [1, 2, 4, 5, 6]  # b's episode 1 is not in the data: its earliest is 2
    assert st.episode_counts(df) == {"n_participants_multi": 2, "n_episodes": 5}
    no_column = df.drop(columns="episode").head(3)  # before episodes existed: every row is episode 1
    assert len(st.first_episodes(no_column)) == 3 and st.episode_counts(no_column)["n_participants_multi"] == 0


def _row(summary: dict, outcome: str = "self_efficacy", adjusted: bool = False) -> dict:
    return next(r for r in summary["estimates"] if r["outcome"] == outcome and r["adjusted"] is adjusted)


def test_primary_analysis_counts_each_participant_once_and_matches_the_first_episodes_alone():
    df = readmitted(300, 21, 60)
    summary = st.summarise(df)
    alone = st.summarise(df[df["episode"] == 1].reset_index(drop=True))
    assert summary["n_followups"] == summary["n_participants"] == summary["nonresponse"][0]["n"] == 300
    assert _row(summary)["n"] == int(df.loc[df["episode"] == 1, "self_efficacy"].notna().sum())
    for key in ("spearman", "estimates", "high_vs_other"):
        assert [r["estimate"] for r in summary[key]] == [r["estimate"] for r in alone[key]]
    assert summary["missing"]["ipw"]["estimate"] == pytest.approx(alone["missing"]["ipw"]["estimate"])
    episodes = summary["episodes"]
    assert episodes["n_participants_multi"] == 60 and episodes["n_episodes"] == 360
    sensitivity = episodes["sensitivity"]
    assert sensitivity["test"] == "Linear regression, SE clustered by participant"
    assert sensitivity["n"] == int(df["self_efficacy"].notna().sum()) > _row(summary)["n"]


def test_mixed_model_sees_one_episode_per_participant():
    df = readmitted(200, 11, 80, timepoints=(30, 90))
    mixed = st.summarise(df)["mixed"]
    first = df[df["episode"] == 1]
    alone = st.mixed_model(first, sd=st.alliance_sd(first))
    assert mixed["n"] == alone["n"] == int(df.loc[df["episode"] == 1, "self_efficacy"].notna().sum())
    assert mixed["estimate"] == pytest.approx(alone["estimate"])


def _width(r: dict) -> float:
    return r["ci_high"] - r["ci_low"]


def test_clustered_interval_is_wider_than_the_naive_one_when_a_second_episode_repeats_the_first():
    """Each answer counted twice: the naive fit thinks it has twice the information, the clustered one does not."""
    df = readmitted(300, 5, 300, duplicate=True)
    summary = st.summarise(df)
    sd = summary["alliance_sd"]
    clustered, primary, naive = summary["episodes"]["sensitivity"], _row(summary), st.linear(df, sd=sd)
    assert clustered["n"] == naive["n"] == 2 * primary["n"]
    assert clustered["estimate"] == pytest.approx(naive["estimate"]) == pytest.approx(primary["estimate"], rel=0.01)
    assert _width(clustered) > 1.3 * _width(naive)  # about sqrt(2) wider
    assert _width(clustered) == pytest.approx(_width(primary), rel=0.1)  # as wide as one copy's


def test_no_sensitivity_analysis_when_no_answer_comes_from_a_later_episode():
    df = readmitted(300, 8, 50)
    later = df["episode"] == 2
    df.loc[later, ["responded"]] = 0
    df.loc[later, ["self_efficacy", "self_efficacy_high", "mental_health", "physical_health"]] = np.nan
    episodes = st.summarise(df)["episodes"]
    assert episodes["n_participants_multi"] == 50 and episodes["sensitivity"] is None
    single = st.summarise(cohort(300, 8).assign(episode=1))["episodes"]
    assert single["n_participants_multi"] == 0 and single["sensitivity"] is None


def test_too_few_responders_gives_no_sensitivity_analysis_either():
    small = pd.concat([cohort(40, 3, base_response=0.4).assign(episode=1),
                       cohort(40, 3, base_response=0.4).assign(episode=2)], ignore_index=True)
    summary = st.summarise(small)
    assert summary["too_small"] and summary["episodes"]["n_participants_multi"] == 40
    assert summary["episodes"]["sensitivity"] is None and "estimates" not in summary


# -- decision rules and the unit of analysis --------------------------------------------------------------------
def test_the_sample_size_rule_counts_people_not_answers():
    df = cohort(20, 4, timepoints=(30, 90, 180), base_response=0.99)  # up to 60 answers from 20 people
    summary = st.summarise(df)
    assert summary["n_answers"] > st.MIN_RESPONDERS > summary["n_people_answered"] == 20
    assert summary["too_small"] and "estimates" not in summary


@pytest.mark.parametrize("primary_timepoint", [30, 90])
def test_every_association_analysis_uses_the_primary_time_point_only(primary_timepoint):
    df = cohort(300, 9, timepoints=(30, 90))
    summary = st.summarise(df, primary_timepoint=primary_timepoint)
    at = df[df["timepoint_days"] == primary_timepoint]
    assert summary["analysis_timepoint"] == primary_timepoint and summary["analysis_is_primary"]
    assert _row(summary)["n"] == int(at["self_efficacy"].notna().sum())
    assert _row(summary)["estimate"] == pytest.approx(st.linear(at, sd=summary["alliance_sd"])["estimate"])
    for key in ("estimates", "spearman", "high_vs_other", "trend"):
        assert {r["timepoint"] for r in summary[key]} == {primary_timepoint}
    assert [nr["timepoint"] for nr in summary["nonresponse"]] == [30, 90]
    assert all(nr["n"] == 300 for nr in summary["nonresponse"])  # one row per participant at each time point


def test_a_report_without_the_primary_time_point_analyses_its_earliest_and_says_it_is_not_primary():
    summary = st.summarise(cohort(300, 9, timepoints=(90,)), primary_timepoint=30)
    assert summary["analysis_timepoint"] == 90 and summary["analysis_is_primary"] is False
    assert {r["timepoint"] for r in summary["estimates"]} == {90}


def test_one_sd_for_every_per_sd():
    df = cohort(300, 4, timepoints=(30, 90))
    summary = st.summarise(df)
    sd = df.drop_duplicates("participant")["alliance_mean"].std()
    assert summary["alliance_sd"] == pytest.approx(sd)
    at = df[df["timepoint_days"] == 30]
    assert _row(summary, "self_efficacy_high")["estimate"] == pytest.approx(
        st.logistic(at, sd=sd)["estimate"], rel=1e-6)
    assert _row(summary, "self_efficacy_high")["estimate"] != pytest.approx(st.logistic(at)["estimate"], rel=1e-6)


def test_no_mixed_model_when_nobody_is_measured_twice():
    """The demo: every participant answered at one time point only (161 answers of 161 people)."""
    a, b = cohort(150, 1, timepoints=(30,)), cohort(150, 2, timepoints=(90,))
    mixed = st.mixed_model(pd.concat([a, b], ignore_index=True))
    assert mixed["fitted"] is False and mixed["n_repeated"] == 0 and mixed["estimate"] is None
    assert mixed["timepoints"] == [30, 90]


def test_the_mixed_model_needs_30_participants_answering_twice():
    both = cohort(200, 3, timepoints=(30, 90), base_response=0.99)
    ids = both["participant"].unique()
    answered = both[both["self_efficacy"].notna()]
    ids = [p for p in ids if p in set(answered.loc[answered["timepoint_days"] == 30, "participant"])
           and p in set(answered.loc[answered["timepoint_days"] == 90, "participant"])]
    for repeated, fitted in [(29, False), (30, True)]:
        at30 = both["participant"].isin(ids[:150])  # 90 days: the first `repeated` of them and 40 others
        at90 = both["participant"].isin(ids[:repeated] + ids[150:190])
        mixed = st.mixed_model(both[((both["timepoint_days"] == 30) & at30) | ((both["timepoint_days"] == 90) & at90)])
        assert mixed["n_repeated"] == repeated and mixed["fitted"] is fitted


def test_the_multiple_imputation_in_a_forked_child_gives_the_same_numbers(monkeypatch):
    """A large study's imputation runs in a forked child while the models are fitted: the summary is the same,
    number for number, as computed in one process; and the same again when the child fails (computed here)."""
    import json
    import os
    import threading

    from analysis import forked

    df = cohort(600, 21, timepoints=(30, 90))
    monkeypatch.setattr(st, "FORK_FROM", 10 ** 9)
    alone = json.dumps(st.summarise(df), default=str)
    assert json.loads(alone)["missing"]["mice"]["estimate"] is not None

    from analysis import missing

    started, here, parent, real_init, real_mice = [], [], os.getpid(), forked.Later.__init__, missing.mice

    def watched(self, fn, fork=True):
        real_init(self, fn, fork)
        started.append(self.forked)

    def mice(*args, **kwargs):
        if os.getpid() != parent and die:
            os._exit(3)  # a child killed (say, for memory): the parent computes it again
        here.append(os.getpid() == parent)
        return real_mice(*args, **kwargs)

    monkeypatch.setattr(forked.Later, "__init__", watched)
    monkeypatch.setattr(missing, "mice", mice)
    monkeypatch.setattr(st, "FORK_FROM", 0)
    die = False
    assert json.dumps(st.summarise(df), default=str) == alone
    assert started == [True] and here == []  # computed in the child (which records its call in its own memory)
    die = True
    assert json.dumps(st.summarise(df), default=str) == alone
    assert started == [True, True] and here == [True]

    # a second thread running: no fork (a fork copies locks other threads may hold), the same numbers
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert json.dumps(st.summarise(df), default=str) == alone
    finally:
        stop.set()
        other.join()
    assert started == [True, True, False] and here == [True, True]
