"""The methods a statistical reviewer asks for (issue 24): the missing-data analyses, the weights' diagnostics, the
score rule, the model checks and rules, and simulations that tell 90% coverage from 95%.  Under a minute."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import missing
from analysis import stats as st
from analysis.results import model
from analysis.simulate import POP_SD, cohort


# -- multiple imputation ----------------------------------------------------------------------------------------
def test_rubins_rules_by_hand():
    est, var = np.array([1.0, 1.2, 0.9, 1.1]), np.array([0.04, 0.05, 0.04, 0.03])
    pooled = missing.rubin(est, var, df_complete=100)
    w, b, m = var.mean(), est.var(ddof=1), 4
    t = w + (1 + 1 / m) * b
    lam = (1 + 1 / m) * b / t
    nu_old, nu_obs = (m - 1) / lam ** 2, (101 / 103) * 100 * (1 - lam)
    nu = 1 / (1 / nu_old + 1 / nu_obs)
    from scipy import stats as sps

    assert pooled["estimate"] == pytest.approx(1.05) and pooled["se"] == pytest.approx(math.sqrt(t))
    assert pooled["df"] == pytest.approx(nu)
    assert pooled["ci_high"] == pytest.approx(1.05 + sps.t.ppf(0.975, nu) * math.sqrt(t))


def test_predictive_mean_matching_imputes_observed_values_and_is_reproducible():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=200)})
    frame["y"] = np.clip(np.rint(5 + 2 * frame["x"] + rng.normal(size=200)), 0, 10)
    frame.loc[frame.index[::4], "y"] = np.nan
    sets = missing.imputed_sets(frame, m=3)
    observed = set(frame["y"].dropna())
    assert all(set(s["y"]) <= observed and s["y"].notna().all() for s in sets)
    assert not sets[0]["y"].equals(sets[1]["y"])  # between-imputation variation
    again = missing.imputed_sets(frame, m=3)
    assert all(a.equals(b) for a, b in zip(sets, again))
    filled = sets[0].loc[frame["y"].isna()]
    assert np.corrcoef(filled["x"], filled["y"])[0, 1] > 0.6  # imputed from the predictors, not at random


def test_multiple_imputation_recovers_what_missing_at_random_given_an_auxiliary_hides():
    """Answering at 30 days depends on the 90-day answer's own participant level: the imputation with the answers
    at other time points is closer to the full-data slope than the complete cases."""
    df = cohort(1500, 41, timepoints=(30, 90), person_sd=1.5, or_response=1.0)
    summary = st.summarise(df)
    mi = summary["missing"]["mice"]
    assert mi["imputations"] == missing.IMPUTATIONS and mi["n"] == 1500
    assert mi["n_imputed"] == int(df.loc[df["timepoint_days"] == 30, "self_efficacy"].isna().sum())
    assert mi["ci_low"] < mi["estimate"] < mi["ci_high"] and 0 < mi["fmi"] < 1


def test_the_tipping_point_is_where_the_pooled_interval_first_reaches_no_association():
    summary = st.summarise(cohort(500, 3))
    tip = summary["missing"]["mice"]["tipping_point"]
    main = next(r for r in summary["estimates"] if r["role"] == "primary")
    assert main["ci_low"] > 0 and tip["reached"] and tip["direction"] == "weaker" and tip["delta"] < 0
    assert tip["ci_low"] <= 0 < tip["ci_high"] and abs(tip["ci_low"]) < 0.02


# -- inverse-probability weights -------------------------------------------------------------------------------
def test_the_response_model_is_answering_at_the_primary_time_point_not_at_any():
    """A participant who answered only at 90 days counts as not answering at 30: "ever answered" would make them a
    responder and the weights would be different."""
    df = cohort(400, 5, timepoints=(30, 90), base_response=0.6)
    summary = st.summarise(df)
    at30 = df[df["timepoint_days"] == 30]
    ever = df.groupby("participant")["self_efficacy"].apply(lambda v: v.notna().any())
    assert ever.sum() > at30["self_efficacy"].notna().sum()  # the two definitions differ in this cohort
    ipw = summary["missing"]["ipw"]
    assert ipw["n"] == int(at30["self_efficacy"].notna().sum())
    w = ipw["weights"]
    assert w["response_model"].startswith("answered the outcome at the primary time point")
    assert w["n_responders"] == ipw["n"] and w["n_modelled"] == 400


def test_stabilised_weights_have_mean_near_one_and_their_diagnostics():
    df = cohort(800, 6, or_response=3.0, age_or_response=2.0)
    rows = df.assign(responded=df["self_efficacy"].notna().astype(int))
    weights, info = missing.response_weights(rows, ["age"], set(), sd=POP_SD)
    w = weights.dropna()
    assert len(w) == rows["responded"].sum() and w.mean() == pytest.approx(1, abs=0.1)
    assert info["largest"] == pytest.approx(w.max()) and info["largest"] <= info["truncated_at"] + 1e-12
    assert info["ess"] == pytest.approx(w.sum() ** 2 / (w ** 2).sum()) and info["ess"] < len(w)
    assert info["max_abs_smd_after"] < info["max_abs_smd_before"]  # the weights balance alliance and age
    assert {b["variable"] for b in info["balance"]} == {"alliance", "age"} and info["fallback"] is None


def test_a_response_model_that_cannot_be_fitted_falls_back_to_the_alliance_and_says_so():
    df = cohort(300, 8)
    rows = df.assign(responded=df["self_efficacy"].notna().astype(int))
    rows["program"] = np.where(rows["responded"] == 1, "A", "B")  # separates responders perfectly
    weights, info = missing.response_weights(rows, ["program"], {"program"}, sd=POP_SD)
    assert info["fallback"] and info["response_model"] == "answered the outcome at the primary time point ~ alliance"
    assert weights.notna().sum() == rows["responded"].sum()


# -- the score rule, the model rules and checks -----------------------------------------------------------------
def test_prorated_alliance_scores_are_counted_and_suppressed_like_any_count():
    df = cohort(300, 2)
    df.loc[df.index[:12], "alliance_3"] = np.nan  # 12 scores from five items
    m = model(df, st.summarise(df))
    assert m.data["alliance"]["prorated"] == 12
    df.loc[df.index[3:12], "alliance_3"] = 4.0  # 3: shown as <5
    assert model(df, st.summarise(df)).data["alliance"]["prorated"] == "<5"


def test_the_events_per_parameter_rule_keeps_a_model_out_and_says_which():
    df = cohort(300, 9, or_efficacy=0.5)
    df.loc[df["self_efficacy"] >= 8, "self_efficacy"] = 7.0  # few events of the rarer outcome
    keep = df.index[df["self_efficacy_high"] == 1][:15]
    df["self_efficacy_high"] = 0.0
    df.loc[keep, "self_efficacy_high"] = 1.0
    df.loc[df["self_efficacy"].isna(), "self_efficacy_high"] = np.nan
    df["age"] = np.random.default_rng(1).integers(20, 70, len(df))
    df["sex"] = np.random.default_rng(2).choice(["F", "M"], len(df))
    summary = st.summarise(df)
    adjusted = next(r for r in summary["estimates"] if r["outcome"] == "self_efficacy_high" and r["adjusted"])
    assert adjusted["estimate"] is None and adjusted["rule"].startswith("fewer than 10 events of the rarer outcome")
    unadjusted = next(r for r in summary["estimates"] if r["outcome"] == "self_efficacy_high" and not r["adjusted"])
    assert unadjusted["estimate"] is not None  # 15 events for one parameter


def test_brants_test_finds_odds_that_are_not_proportional():
    rng = np.random.default_rng(3)
    z = rng.standard_normal(3000)
    y = np.where(rng.random(3000) < 1 / (1 + np.exp(-(0.0 + 1.5 * z))), 3.0,  # the top cut depends on z
                 rng.choice([1.0, 2.0], 3000))
    df = pd.DataFrame({"alliance_mean": z, "mental_health": y})
    r = st.ordinal(df, "mental_health")
    assert r["brant"]["p"] < 0.001 and r["brant"]["odds_ratios"][1] > 1.5 * r["brant"]["odds_ratios"][0]
    proportional = st.ordinal(cohort(1000, 4, or_health=2.0), "mental_health")
    assert proportional["brant"]["p"] > 0.01 and proportional["brant"]["df"] == 3


def test_the_mixed_model_names_a_time_point_left_out_for_too_few_answers():
    df = cohort(300, 11, timepoints=(30, 90, 180))
    few = (df["timepoint_days"] == 180) & ~df["participant"].isin(df["participant"].unique()[:20])
    df.loc[few, ["self_efficacy", "self_efficacy_high"]] = np.nan
    m = st.mixed_model(df)
    assert m["timepoints"] == [30, 90] and m["dropped"] == [180] and m["fitted"]


# -- simulations ------------------------------------------------------------------------------------------------
def _logit_wald(df: pd.DataFrame, columns: list[str]) -> tuple[float, float]:
    """The alliance's log odds ratio per population SD and its SE, by Newton-Raphson (the model the report fits,
    fast enough for hundreds of cohorts)."""
    data = df.dropna(subset=["self_efficacy_high", *columns])
    x = np.column_stack([np.ones(len(data)), (data["alliance_mean"] - data["alliance_mean"].mean()) / POP_SD,
                         *[data[c] for c in columns]]).astype(float)
    x[:, 2:] = (x[:, 2:] - x[:, 2:].mean(axis=0)) / x[:, 2:].std(axis=0)
    y = data["self_efficacy_high"].to_numpy(float)
    beta = np.zeros(x.shape[1])
    for _ in range(30):
        p = 1 / (1 + np.exp(-x @ beta))
        info = x.T @ (x * (p * (1 - p))[:, None])
        step = np.linalg.solve(info, x.T @ (y - p))
        beta += step
        if np.abs(step).max() < 1e-10:
            break
    return float(beta[1]), float(np.sqrt(np.linalg.inv(info)[1, 1]))


def test_the_fast_logit_is_the_reports_logistic_regression():
    df = cohort(300, 5000, or_response=2.0, age_or_efficacy=2.0, age_or_response=2.0)
    beta, se = _logit_wald(df, ["age"])
    r = st.logistic(df, adjust=["age"], sd=POP_SD)
    assert math.exp(beta) == pytest.approx(r["estimate"], rel=1e-6)
    assert math.exp(beta + 1.959963984540054 * se) == pytest.approx(r["ci_high"], rel=1e-5)


def test_coverage_with_response_depending_on_a_covariate_tells_95_from_90_percent():
    """400 cohorts of 300, answering depending on the alliance and on age (which also predicts the outcome): the
    adjusted complete-case 95% CI covers the true odds ratio of 2 per SD in 93-97% of them (a 90% coverage would
    fall outside with probability < 1e-4: the binomial SE is 1.1 points)."""
    covered = 0
    for seed in range(400):
        df = cohort(300, 5000 + seed, or_efficacy=2.0, or_response=2.0, age_or_efficacy=2.0, age_or_response=2.0)
        beta, se = _logit_wald(df, ["age"])
        covered += abs(beta - math.log(2.0)) <= 1.959963984540054 * se
    assert 0.93 <= covered / 400 <= 0.97


def test_response_that_depends_on_the_outcome_biases_the_complete_cases():
    """Missing not at random (those with high self-efficacy answer less): the complete-case odds ratio is off the
    truth, which no analysis under MAR can detect; the report's protection is the stated assumption."""
    logs = [math.log(st.logistic(cohort(600, 7000 + s, or_efficacy=2.0, or_response=3.0,
                                        outcome_or_response=0.2), sd=POP_SD)["estimate"]) for s in range(40)]
    se = np.std(logs, ddof=1) / math.sqrt(len(logs))
    assert abs(np.mean(logs) - math.log(2.0)) > 0.1 + 3 * se


def test_correlated_time_points_need_the_clustered_errors():
    """A participant's own level shared by 30 and 90 days: pooling both time points with naive errors is too
    narrow; clustering by participant widens the interval."""
    df = cohort(500, 9, timepoints=(30, 90), person_sd=2.0, base_response=0.95)
    naive = st.logistic(df, sd=POP_SD)
    clustered = st.logistic(df, sd=POP_SD, cluster=df["participant"])
    assert (math.log(clustered["ci_high"]) - math.log(clustered["ci_low"])) > 1.1 * (
        math.log(naive["ci_high"]) - math.log(naive["ci_low"]))


def test_the_publication_rule_says_what_the_results_model_does_with_means_and_shares():
    """No mean and no share of a group whose count is hidden (as x or as <5): the issue's rule, and the text says
    exactly that."""
    from analysis.codebook import suppression_text
    from analysis.results import Ledger, derived, resolve

    ledger = Ledger(5)
    total = ledger.count("total", 30)
    group, small, rest = ledger.count("group", 12), ledger.count("small", 3), ledger.count("rest", 15)
    ledger.line(total, [group, small, rest])
    ledger.protect()
    hidden_x = next(k for k in ("group", "rest") if ledger.value(k) == "x")
    shown = next(k for k in ("group", "rest") if k != hidden_x)
    assert resolve(derived(5.5, hidden_x, strict=False), ledger) is None  # a mean
    assert resolve(derived(0.4, hidden_x), ledger) is None  # a share
    assert resolve(derived(5.5, "small", strict=False), ledger) is None
    assert resolve(derived(5.5, shown, strict=False), ledger) == 5.5
    text = suppression_text(5)
    assert "No percentage, rate, mean, median, interval, test or plotted element is shown for a group whose count " \
           "is hidden" in text


def test_a_statistic_within_a_total_stays_only_while_its_group_is_known_to_within_a_small_count():
    """The alliance description's rule: its mean is of the rated participants, counted within all participants
    with those without a rating apart.  Hiding the number rated (so that the <5 unrated are not given away) keeps
    the mean; a group hidden as small, a hidden total or a rest that is not small does not."""
    from analysis.results import Ledger, derived, resolve

    def mean_of(group: int, rest: int, total_status: str = "shown") -> float | None:
        ledger = Ledger(5)
        g, r = ledger.count("rated", group), ledger.count("unrated", rest)
        t = ledger.count("participants", group + rest)
        ledger.line(t, [g, r])
        ledger.protect()
        ledger.cells["participants"].status = total_status
        return resolve(derived(5.1, within=(g, t, r)), ledger)

    assert mean_of(275, 4) == 5.1  # the number rated is hidden (x), 279 participants and <5 unrated shown
    assert mean_of(275, 0) == 5.1 and mean_of(275, 30) == 5.1  # everything shown
    assert mean_of(275, 4, "complementary") is None  # 275 to 278 of an unknown number: not known closely
    assert mean_of(3, 4) is None  # a small group
    ledger = Ledger(5)
    g, r = ledger.count("rated", 275), ledger.count("unrated", 30)
    ledger.line(ledger.count("participants", 305), [g, r])
    g_cell, r_cell = ledger.cells["rated"], ledger.cells["unrated"]
    g_cell.status = r_cell.status = "complementary"  # both hidden: the rated could be anything up to 304
    assert resolve(derived(5.1, within=(g, "participants", r)), ledger) is None


def test_the_spline_finds_an_association_that_flattens_at_the_ceiling():
    rng = np.random.default_rng(4)
    df = cohort(1500, 12)
    a = df["alliance_mean"]
    df["self_efficacy"] = np.clip(np.rint(2 + 2.5 * np.minimum(a, 4.5) + rng.normal(0, 1, len(df))), 0, 10)
    lin = st.linearity(df, "self_efficacy", [], sd=float(a.std()))
    assert lin["p"] < 0.001 and lin["estimate"] < 0
    straight = df.assign(self_efficacy=2 + 1.0 * a + rng.normal(0, 1, len(df)))  # no rounding, no clipping
    assert st.linearity(straight, "self_efficacy", [], sd=float(a.std()))["p"] > 0.01


def test_the_mixed_model_falls_back_to_a_random_intercept_and_says_why(monkeypatch):
    """With three time points the random slope is tried; when its fit fails (here: forced), the random intercept
    is fitted instead, the result says which covariance was used and why, and the report's text says so."""
    from analysis.report import covariance_text

    df = cohort(200, 12, timepoints=(30, 90, 180))
    monkeypatch.setattr(st, "random_slope_reml", lambda *a, **k: {"fit": None, "reason": "did not converge"})
    m = st.mixed_model(df)
    assert m["fitted"] and m["random_effects"] == "random intercept" and m["fallback"] == "did not converge"
    assert "variance_slope" not in m and "random slope on time was not used (did not converge)" in covariance_text(m)
    two = st.mixed_model(cohort(200, 12, timepoints=(30, 90)))
    assert two["random_effects"] == "random intercept" and "two time points" in two["fallback"]


def test_when_proportional_odds_fail_the_cut_point_odds_ratios_are_tabled():
    """Brant's test failing (p < 0.05) puts each cut point's odds ratio with its 95% CI in a table, with the stated
    rule; passing, no table.  The cut-point intervals hold their odds ratios."""
    from analysis.report import PO_FAILS, Doc, results_section

    rng = np.random.default_rng(3)
    z = rng.standard_normal(1500)
    y = np.where(rng.random(1500) < 1 / (1 + np.exp(-1.5 * z)), 3.0, rng.choice([1.0, 2.0], 1500))
    r = st.ordinal(pd.DataFrame({"alliance_mean": z, "mental_health": y}), "mental_health")
    assert all(lo < o < hi for o, (lo, hi) in zip(r["brant"]["odds_ratios"], r["brant"]["ci"]))
    row = {**r, "role": "secondary", "adjusted": False, "model": "ordinal", "outcome": "mental_health"}
    for brant_p, shown in ((r["brant"]["p"], True), (0.5, False)):
        doc = Doc()
        results_section(doc, {"analysis_timepoint": 30, "estimates": [{**row, "brant": {**r["brant"], "p": brant_p}}],
                              "episodes": {"sensitivity": None}, "spearman": [], "high_vs_other": [], "trend": [],
                              "timepoints": [30], "missing": {}})
        text = doc.markdown()
        assert (PO_FAILS in text) is shown and ("| mental health (1-5) | unadjusted | better than 2 |" in text) is shown


def test_rare_covariate_levels_are_collapsed_from_the_covariates_alone():
    """The adjustment set's size is fixed before any outcome is used: rare levels (under 10% of everyone targeted
    with a rating, answering or not) join 'other', whatever the answers; the planned parameters are the model's."""
    df = cohort(300, 21)
    rng = np.random.default_rng(21)
    df["primary_substance"] = rng.choice(["alcohol", "opioids", "cannabis", "ketamine", "inhalants"], len(df),
                                         p=[0.5, 0.35, 0.07, 0.05, 0.03])
    df["age"] = rng.integers(18, 80, len(df))
    levels = st.rare_levels(df, ["age", "primary_substance"])
    assert levels == {"primary_substance": ["cannabis", "inhalants", "ketamine"]}
    shuffled = df.assign(self_efficacy=rng.permutation(df["self_efficacy"].to_numpy()))
    shuffled.loc[shuffled.index[:100], "self_efficacy"] = np.nan  # other answers, fewer answers: the same rule
    assert st.rare_levels(shuffled, ["age", "primary_substance"]) == levels
    collapsed = st.collapse(df, levels)
    assert set(collapsed["primary_substance"]) == {"alcohol", "opioids", "other"}
    k = st.planned_parameters(collapsed, ["age", "primary_substance"])
    fit = st.linear(collapsed, "self_efficacy", adjust=["age", "primary_substance"])
    assert k == 4 == fit["parameters"] - 1  # alliance, age, two non-reference substance levels


def test_a_primary_model_kept_out_is_not_estimable_and_the_unadjusted_one_descriptive():
    from analysis.report import association_text

    kept_out = {"estimate": None, "ci_low": None, "rule": "fewer than 10 participants per parameter (11 parameters "
                                                          "need 110)"}
    unadjusted = {"estimate": 1.01, "ci_low": 0.61, "ci_high": 1.40, "p": 0.0001, "n": 77, "scale": "points per SD"}
    text = association_text(kept_out, 30, True, unadjusted)
    assert "the primary analysis was not estimable (fewer than 10" in text and "no covariate was dropped" in text
    assert "The unadjusted estimate, 1.01" in text and "descriptive only" in text
    df = cohort(60, 22)
    df["age"], df["program"] = np.arange(60) % 50 + 20, np.where(np.arange(60) % 3 == 0, "a", "b")
    out = st.summarise(df.assign(length_of_stay_days=np.arange(60) % 40 + 5), 30)
    roles = {(r["outcome"], r["adjusted"]): r["role"] for r in out["estimates"]}
    assert out["primary_estimable"] is (roles[("self_efficacy", False)] == "exploratory")


def test_methods_say_why_the_simple_rule_and_not_rileys_criteria():
    """The rule stated is the rule the code applies (EPP per parameter); Riley's shrinkage criterion, n = p /
    ((S - 1) ln(1 - R2 / S)), with R2 = 0.15 and S = 0.9 is about 55 per parameter, as Methods says."""
    import math

    from analysis.report import METHODS, decision_rules

    per = 1 / ((0.9 - 1) * math.log(1 - 0.15 / 0.9))
    assert f"about {per:.0f} participants per parameter" in METHODS and round(per) == 55
    assert f"each model needs {st.EPP} participants" in METHODS and "anticipated prevalence" in METHODS
    assert "Methods says why the simpler rule is used" in " ".join(decision_rules(5))
