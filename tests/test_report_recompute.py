"""Every estimate in stats.json recomputed from the exported file with an independent implementation: scipy for
the closed forms (relative difference under 1e-6) and statsmodels' formula API for the fitted models (under 1e-4).

The recomputation builds its own analysis rows from the CSV (each participant's first episode; one answer per
participant, the earliest, for the association analyses; one row per participant within each time point for the
responder comparison) and does not call analysis.stats.
"""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import stats as sps

from analysis.export import write
from analysis.report import write_report
from analysis.simulate import POP_MEAN, POP_SD, cohort

CLOSED, ITERATIVE = 1e-6, 1e-4


def study(n: int = 420, seed: int = 3, timepoints=(30, 90), readmitted: int = 40, slopes: dict | None = None):
    """A cohort in the export's shape: covariates, a few readmissions, outcomes at several time points
    (``slopes``: points of self-efficacy per SD of alliance at each time point)."""
    rng = np.random.default_rng(seed)
    first = cohort(n, seed, timepoints=timepoints)
    ids = first["participant"].unique()
    later = cohort(readmitted, seed + 1, timepoints=timepoints)
    later["participant"] = later["participant"].map(dict(zip(later["participant"].unique(), ids[:readmitted])))
    df = pd.concat([first.assign(episode=1), later.assign(episode=2)], ignore_index=True)
    people = pd.DataFrame({"participant": ids, "age": rng.integers(18, 80, n), "sex": rng.choice(["F", "M"], n)})
    df = df.merge(people, on="participant", how="left")
    # Self-efficacy with a participant's own level (a random intercept, as repeated answers of one person have)
    # and a slope per SD of alliance at each time point.
    z = (df["alliance_mean"] - POP_MEAN) / POP_SD
    own = df["participant"].map(dict(zip(ids, rng.normal(0, 1.5, n))))
    for tp in timepoints:
        at = (df["timepoint_days"] == tp) & df["self_efficacy"].notna()
        slope = (slopes or {}).get(tp, 1.0)
        df.loc[at, "self_efficacy"] = np.clip(np.rint(5 + slope * z[at] + own[at] + rng.normal(0, 1.5, at.sum())),
                                              0, 10)
    df["self_efficacy_high"] = (df["self_efficacy"] >= 8).astype(float).where(df["self_efficacy"].notna())
    return df[["participant", "episode"] + [c for c in df.columns if c not in ("participant", "episode")]]


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """The export (CSV) and the report's stats.json for the same study."""
    out = tmp_path_factory.mktemp("study")
    df = study()
    write(df, out / "results.csv", "csv")
    write_report(df, out / "report")
    return pd.read_csv(out / "results.csv"), json.loads((out / "report" / "stats.json").read_text())


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def primary(csv: pd.DataFrame) -> pd.DataFrame:
    first = csv.groupby("participant")["episode"].transform("min")
    return csv[csv["episode"] == first]


def earliest(rows: pd.DataFrame, outcome: str) -> pd.DataFrame:
    answered = rows[rows[outcome].notna()].sort_values(["participant", "timepoint_days"])
    return answered.groupby("participant", as_index=False).head(1)


def with_z(rows: pd.DataFrame, *cols: str) -> pd.DataFrame:
    data = rows.dropna(subset=["alliance_mean", *cols]).copy()
    data["z"] = (data["alliance_mean"] - data["alliance_mean"].mean()) / data["alliance_mean"].std(ddof=1)
    return data


def test_spearman_correlations_match_scipy(published):
    csv, stats = published
    for r in stats["spearman"]:
        data = earliest(primary(csv), r["outcome"]).dropna(subset=["alliance_mean"])
        rho, p = sps.spearmanr(data["alliance_mean"], data[r["outcome"]])
        n = len(data)
        se = math.sqrt((1 + rho ** 2 / 2) / (n - 3))
        assert r["n"] == n
        assert rel(r["estimate"], rho) < CLOSED and rel(r["p"], p) < CLOSED
        assert rel(r["ci_low"], math.tanh(math.atanh(rho) - 1.96 * se)) < CLOSED
        assert rel(r["ci_high"], math.tanh(math.atanh(rho) + 1.96 * se)) < CLOSED
        assert r["interval"].startswith("Fisher z")
    pvals = [r["p"] for r in stats["spearman"]]  # Holm, by statsmodels' own implementation
    from statsmodels.stats.multitest import multipletests

    assert [r["p_holm"] for r in stats["spearman"]] == pytest.approx(list(multipletests(pvals, method="holm")[1]),
                                                                      rel=CLOSED)


def _odds_ratio_check(r: dict, fit, term: str = "z") -> None:
    lo, hi = fit.conf_int().loc[term]
    assert rel(r["estimate"], math.exp(fit.params[term])) < ITERATIVE
    assert rel(r["ci_low"], math.exp(lo)) < ITERATIVE and rel(r["ci_high"], math.exp(hi)) < ITERATIVE
    assert rel(r["p"], fit.pvalues[term]) < ITERATIVE or abs(r["p"] - fit.pvalues[term]) < 1e-12


def test_logistic_regressions_match_the_statsmodels_formula_api(published):
    csv, stats = published
    rows = earliest(primary(csv), "self_efficacy_high")
    unadjusted, adjusted = stats["logistic"]
    data = with_z(rows, "self_efficacy_high")
    fit = smf.logit("self_efficacy_high ~ z", data).fit(disp=False)
    assert unadjusted["n"] == len(data) == rows["participant"].nunique()
    _odds_ratio_check(unadjusted, fit)
    data = with_z(rows, "self_efficacy_high", "age", "sex")
    fit = smf.logit("self_efficacy_high ~ z + age + C(sex)", data).fit(disp=False)
    assert adjusted["test"] == "Logistic regression, adjusted for age, sex" and adjusted["n"] == len(data)
    _odds_ratio_check(adjusted, fit)
    assert unadjusted["interval"] == "Wald"


def test_the_weighted_estimate_matches_a_weighted_glm_per_participant(published):
    csv, stats = published
    rows = primary(csv)
    answered = rows["self_efficacy_high"].notna()
    key = rows.assign(never=~answered).sort_values(["never", "timepoint_days"], kind="stable")
    people = key.groupby("participant", as_index=False).head(1).copy()  # ever answered: their earliest answer
    people["responded"] = people["self_efficacy_high"].notna().astype(int)
    design = with_z(people, "responded", "age", "sex")
    p = smf.logit("responded ~ z + age + C(sex)", design).fit(disp=False).predict(design).clip(0.02, 1.0)
    data = with_z(people, "self_efficacy_high")
    weights = (1 / p).reindex(data.index)
    fit = smf.glm("self_efficacy_high ~ z", data, family=sm.families.Binomial(), var_weights=weights).fit(
        cov_type="HC0")
    assert stats["ipw"]["n"] == len(data)
    _odds_ratio_check(stats["ipw"], fit)


def test_proportional_odds_regressions_match_the_formula_api(published):
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    csv, stats = published
    for r in stats["ordinal"]:
        data = with_z(earliest(primary(csv), r["outcome"]), r["outcome"])
        data["y"] = pd.Categorical(data[r["outcome"]].astype(int), ordered=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = OrderedModel.from_formula("y ~ 0 + z", data, distr="logit").fit(method="newton", disp=False,
                                                                                   maxiter=200)
        assert r["n"] == len(data)
        _odds_ratio_check(r, fit)


def test_two_by_two_tables_and_trend_tests_by_formula(published):
    csv, stats = published
    for r, t in zip(stats["high_vs_other"], stats["trend"]):
        data = earliest(primary(csv), r["outcome"]).dropna(subset=["alliance_tertile"])
        high, y = data["alliance_tertile"] == "high", data[r["outcome"]]
        a, b = int(((y == 1) & high).sum()), int(((y == 0) & high).sum())
        c, d = int(((y == 1) & ~high).sum()), int(((y == 0) & ~high).sum())
        assert r["table"] == [[a, b], [c, d]]
        n = a + b + c + d
        chi2 = n * (a * d - b * c) ** 2 / ((a + b) * (c + d) * (a + c) * (b + d))
        assert r["test"] == "Pearson chi-square test" and rel(r["p"], sps.chi2.sf(chi2, 1)) < CLOSED
        se = math.sqrt(1 / a + 1 / b + 1 / c + 1 / d)  # Woolf
        assert rel(r["estimate"], a * d / (b * c)) < CLOSED
        assert rel(r["ci_low"], math.exp(math.log(a * d / (b * c)) - 1.959963984540054 * se)) < CLOSED
        # Mantel's M2 = (n - 1) r^2 on tertile scores 1, 2, 3
        score = data["alliance_tertile"].map({"low": 1, "mid": 2, "high": 3})
        m2 = (n - 1) * np.corrcoef(score, y)[0, 1] ** 2
        assert t["test"].startswith("Mantel's linear-by-linear") and rel(t["p"], sps.chi2.sf(m2, 1)) < CLOSED
        shares = data.groupby("alliance_tertile")[r["outcome"]].mean()
        assert all(rel(t["shares"][k], shares[k]) < CLOSED for k in ("low", "mid", "high"))


def test_responders_and_non_responders_compared_within_each_time_point(published):
    csv, stats = published
    rows = primary(csv)
    assert [nr["timepoint"] for nr in stats["nonresponse"]] == sorted(rows["timepoint_days"].unique())
    for nr in stats["nonresponse"]:
        everyone = rows[(rows["timepoint_days"] == nr["timepoint"])]
        at = everyone.dropna(subset=["alliance_mean"])
        assert at["participant"].is_unique  # independent samples: one row per participant
        r, n = at.loc[at["responded"] == 1, "alliance_mean"], at.loc[at["responded"] == 0, "alliance_mean"]
        # the groups are counted in total, with those left out for want of a rating counted apart (<5 if small)
        assert (nr["n_responders"], nr["n_nonresponders"]) == ((everyone["responded"] == 1).sum(),
                                                               (everyone["responded"] == 0).sum())
        left_out = len(everyone) - len(at)
        assert nr["n_unrated"] == ("<5" if 0 < left_out < 5 else left_out)
        assert rel(nr["p"], sps.mannwhitneyu(r, n, alternative="two-sided").pvalue) < CLOSED
        d = (r.mean() - n.mean()) / math.sqrt((r.var() + n.var()) / 2)
        se = math.sqrt(1 / len(r) + 1 / len(n) + d ** 2 / (2 * (len(r) + len(n))))
        assert rel(nr["estimate"], d) < CLOSED and rel(nr["ci_low"], d - 1.96 * se) < CLOSED
        assert nr["differs"] == ((d - 1.96 * se > 0 or d + 1.96 * se < 0) and abs(d) >= 0.2)


def test_the_readmission_sensitivity_analysis_matches_cluster_robust_logit(published):
    csv, stats = published
    data = with_z(csv, "self_efficacy_high")  # every episode and time point
    groups = pd.factorize(data["participant"])[0]
    fit = smf.logit("self_efficacy_high ~ z", data).fit(disp=False, cov_type="cluster", cov_kwds={"groups": groups})
    sens = stats["episodes"]["sensitivity"]
    assert sens["n"] == len(data)
    _odds_ratio_check(sens, fit)


def _mixed(csv: pd.DataFrame, reference: int):
    data = primary(csv).dropna(subset=["self_efficacy", "alliance_mean"]).copy()
    data["z"] = (data["alliance_mean"] - data["alliance_mean"].mean()) / data["alliance_mean"].std(ddof=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smf.mixedlm(f"self_efficacy ~ z * C(timepoint_days, Treatment({reference}))", data,
                           groups=data["participant"]).fit()


def test_the_mixed_model_matches_the_formula_api_with_30_days_as_reference(published):
    csv, stats = published
    m = stats["mixed"]
    fit = _mixed(csv, 30)
    assert m["fitted"] and m["reference"] == 30 and m["n"] == int(fit.nobs)
    assert [t["term"] for t in m["terms"]] == ["alliance (per SD) at 30 days",
                                               "change in the alliance effect, 90 vs 30 days"]
    names = ["z", "z:C(timepoint_days, Treatment(30))[T.90]"]
    for term, name in zip(m["terms"], names):
        assert rel(term["estimate"], fit.params[name]) < ITERATIVE
        lo, hi = fit.conf_int().loc[name]
        assert rel(term["ci_low"], lo) < ITERATIVE and rel(term["ci_high"], hi) < ITERATIVE


@pytest.mark.parametrize("points", [(30, 180), (90, 365), (30, 90, 180)])
def test_time_points_are_ordered_as_numbers_not_text(points, tmp_path):
    """With 30 and 180 days the alliance effect 'at 30 days' is the 30-day slope, not the 180-day one (text
    sorts '180' before '30')."""
    slopes = {points[0]: 0.7, **{p: 2.0 for p in points[1:]}}
    df = study(400, 5, timepoints=points, readmitted=0, slopes=slopes)
    write(df, tmp_path / "r.csv", "csv")
    stats = write_report(df, tmp_path / "rep")
    m = stats["mixed"]
    fit = _mixed(pd.read_csv(tmp_path / "r.csv"), points[0])
    assert m["timepoints"] == list(points) and m["reference"] == points[0]
    assert m["terms"][0]["term"] == f"alliance (per SD) at {points[0]} days"
    assert rel(m["estimate"], fit.params["z"]) < ITERATIVE
    assert abs(m["estimate"] - 0.7 * np.std(df["alliance_mean"]) / POP_SD) < 0.35  # the true 30-day slope, roughly
    report = (tmp_path / "rep" / "report.md").read_text()
    assert f"{points[0]} days is the reference" in report and "C(tp)" not in report and "alliance_sd" not in report
