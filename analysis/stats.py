"""The study's statistics, each returned as a plain dict: test, n, estimate, 95% CI, p.

Does a stronger alliance at discharge go with higher self-efficacy and better
self-rated health later?  Spearman correlations, logistic and
proportional-odds regressions per SD of alliance, high vs other tertiles with
a trend test, non-response checks with an inverse-probability-weighted
sensitivity estimate, a mixed model across time points, Holm adjustment.

Patients readmitted for treatment have several episodes (column ``episode``,
1, 2, ... in discharge order).  The primary analysis uses each participant's
first episode in the data, so everyone counts once per time point; a
sensitivity analysis repeats the logistic regression on every episode with
standard errors clustered by participant.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.stats.contingency import odds_ratio

from .queries import COVARIATES

MIN_RESPONDERS = 30
MIXED_MAX_PARTICIPANTS = 5_000  # larger cohorts: the mixed model is fitted on a random sample of participants
OUTCOMES = {
    "self_efficacy": "Self-efficacy (0-10)",
    "mental_health": "Self-rated mental health (1 poor - 5 excellent)",
    "physical_health": "Self-rated physical health (1 poor - 5 excellent)",
    "days_used": "Days of use, past 30",
}
BINARY = {"self_efficacy_high": "Self-efficacy 8+", "mental_health_high": "Mental health very good/excellent",
          "physical_health_high": "Physical health very good/excellent"}
CATEGORICAL = {"sex", "primary_substance", "program"}


def _num(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype("float64")


def _result(test: str, n: int, estimate: float | None, low: float | None, high: float | None, p: float | None,
            **extra: Any) -> dict[str, Any]:
    clean = lambda x: None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)  # noqa: E731
    return {"test": test, "n": int(n), "estimate": clean(estimate), "ci_low": clean(low), "ci_high": clean(high),
            "p": clean(p), **extra}


def spearman(df: pd.DataFrame, outcome: str) -> dict[str, Any]:
    """Spearman's rho with a Fisher-z 95% CI (Bonett-Wright standard error)."""
    pair = pd.DataFrame({"a": _num(df["alliance_mean"]), "y": _num(df[outcome])}).dropna()
    n = len(pair)
    if n < 4 or pair["a"].nunique() < 2 or pair["y"].nunique() < 2:
        return _result("Spearman's rho", n, None, None, None, None)
    rho, p = sps.spearmanr(pair["a"], pair["y"])
    se = math.sqrt((1 + rho ** 2 / 2) / (n - 3))
    z = math.atanh(min(max(rho, -0.999999), 0.999999))
    return _result("Spearman's rho", n, rho, math.tanh(z - 1.96 * se), math.tanh(z + 1.96 * se), p,
                   outcome=outcome)


def _design(df: pd.DataFrame, outcome: str, adjust: bool) -> tuple[pd.DataFrame, list[str]]:
    cols = ["alliance_mean", outcome] + ([c for c in COVARIATES if c in df] if adjust else [])
    data = df[cols].copy()
    data["alliance_mean"] = _num(data["alliance_mean"])
    data[outcome] = _num(data[outcome])
    for c in cols[2:]:
        data[c] = data[c].astype("object") if c in CATEGORICAL else _num(data[c])
    data = data.dropna()
    sd = data["alliance_mean"].std()
    data["alliance_sd"] = (data["alliance_mean"] - data["alliance_mean"].mean()) / sd if sd > 0 else np.nan
    terms = ["alliance_sd"]
    for c in cols[2:]:
        if data[c].nunique() > 1:
            terms.append(f"C({c})" if c in CATEGORICAL else c)
    return data, terms


def logistic(df: pd.DataFrame, outcome: str = "self_efficacy_high", adjust: bool = False,
             weights: pd.Series | None = None, cluster: pd.Series | None = None) -> dict[str, Any]:
    """Odds ratio per 1 SD of alliance (sample SD), from a logistic regression (optionally weighted).

    ``cluster`` (aligned with ``df``, e.g. its participant column) gives cluster-robust standard errors
    for rows that are not independent; it is not combined with ``weights``.
    """
    import statsmodels.formula.api as smf
    import statsmodels.api as sm

    if weights is not None and cluster is not None:
        raise ValueError("weights and cluster are not combined")
    data, terms = _design(df, outcome, adjust)
    name = ("Logistic regression" + (", adjusted for " + ", ".join(t.strip("C()") for t in terms[1:])
                                     if len(terms) > 1 else "") + (", IPW" if weights is not None else "")
            + (", SE clustered by participant" if cluster is not None else ""))
    if len(data) < 10 or data[outcome].nunique() < 2 or data["alliance_sd"].isna().all():
        return _result(name, len(data), None, None, None, None, outcome=outcome, scale="odds ratio per SD")
    formula = f"{outcome} ~ " + " + ".join(terms)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if cluster is not None:
                groups = pd.factorize(cluster.reindex(data.index))[0]  # the rows actually used, in order
                fit = smf.logit(formula, data).fit(disp=False, cov_type="cluster", cov_kwds={"groups": groups})
            elif weights is None:
                fit = smf.logit(formula, data).fit(disp=False)
            else:
                w = weights.reindex(data.index)
                fit = smf.glm(formula, data, family=sm.families.Binomial(), var_weights=w).fit(cov_type="HC0")
        except Exception as exc:  # separation, singular design
            return _result(name, len(data), None, None, None, None, outcome=outcome, scale="odds ratio per SD",
                           error=f"{type(exc).__name__}: {exc}")
    return _odds_ratio_per_sd(name, len(data), fit, outcome)


def _odds_ratio_per_sd(name: str, n: int, fit: Any, outcome: str) -> dict[str, Any]:
    beta, (lo, hi) = fit.params["alliance_sd"], fit.conf_int().loc["alliance_sd"]
    return _result(name, n, math.exp(beta), math.exp(lo), math.exp(hi), fit.pvalues["alliance_sd"],
                   outcome=outcome, scale="odds ratio per SD")


def ordinal(df: pd.DataFrame, outcome: str) -> dict[str, Any]:
    """Proportional-odds (ordinal logistic) regression: odds ratio per SD for a better rating."""
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    data, _ = _design(df, outcome, adjust=False)
    name = "Proportional-odds logistic regression"
    if len(data) < 10 or data[outcome].nunique() < 2:
        return _result(name, len(data), None, None, None, None, outcome=outcome, scale="odds ratio per SD")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            y = pd.Series(pd.Categorical(data[outcome].astype(int), ordered=True), index=data.index)
            fit = OrderedModel(y, data[["alliance_sd"]], distr="logit").fit(method="bfgs", disp=False)
        except Exception as exc:
            return _result(name, len(data), None, None, None, None, outcome=outcome, scale="odds ratio per SD",
                           error=f"{type(exc).__name__}: {exc}")
    return _odds_ratio_per_sd(name, len(data), fit, outcome)


def high_vs_other(df: pd.DataFrame, outcome: str) -> dict[str, Any]:
    """2x2 table high tertile vs the rest: chi-square, or Fisher's exact when an expected count is < 5."""
    data = pd.DataFrame({"t": df["alliance_tertile"], "y": _num(df[outcome])}).dropna()
    high = data["t"] == "high"
    table = np.array([[int(((data.y == 1) & high).sum()), int(((data.y == 0) & high).sum())],
                      [int(((data.y == 1) & ~high).sum()), int(((data.y == 0) & ~high).sum())]])
    n = int(table.sum())
    if n == 0 or (table.sum(axis=0) == 0).any() or (table.sum(axis=1) == 0).any():
        return _result("2x2 table", n, None, None, None, None, outcome=outcome, table=table.tolist())
    expected = sps.contingency.expected_freq(table)
    if (expected < 5).any():
        test, (_, p) = "Fisher's exact test", sps.fisher_exact(table)
    else:
        test, p = "Pearson chi-square test", sps.chi2_contingency(table, correction=False)[1]
    if (table == 0).any():  # the sample odds ratio is 0 or infinite: report the test, not an estimate
        return _result(test, n, None, None, None, p, outcome=outcome, scale="odds ratio, high vs other",
                       table=table.tolist(), note="odds ratio not estimable: a cell is zero")
    ratio = odds_ratio(table, kind="sample")
    ci = ratio.confidence_interval(0.95)
    return _result(test, n, ratio.statistic, ci.low, ci.high, p, outcome=outcome, scale="odds ratio, high vs other",
                   table=table.tolist())


def trend(df: pd.DataFrame, outcome: str) -> dict[str, Any]:
    """Linear-by-linear association (Cochran-Armitage type) trend test across low, mid, high tertiles."""
    from statsmodels.stats.contingency_tables import Table

    data = pd.DataFrame({"t": df["alliance_tertile"], "y": _num(df[outcome])}).dropna()
    table = pd.crosstab(pd.Categorical(data["t"], categories=["low", "mid", "high"]), data["y"]).reindex(
        columns=[0.0, 1.0], fill_value=0)
    shares = (table[1.0] / table.sum(axis=1)).replace([np.inf], np.nan)
    n = int(table.values.sum())
    if n == 0 or (table.sum(axis=0) == 0).any() or (table.sum(axis=1) == 0).sum() > 1:
        return _result("Trend test across tertiles", n, None, None, None, None, outcome=outcome)
    res = Table(table.values + 0.0).test_ordinal_association(row_scores=np.array([1, 2, 3]),
                                                             col_scores=np.array([0, 1]))
    return _result("Linear-by-linear trend test across tertiles", n, None, None, None, res.pvalue, outcome=outcome,
                   shares={k: (None if pd.isna(v) else float(v)) for k, v in shares.items()})


def nonresponse(df: pd.DataFrame) -> dict[str, Any]:
    """Responders vs non-responders on alliance: Mann-Whitney U and the standardized difference."""
    data = pd.DataFrame({"a": _num(df["alliance_mean"]), "r": _num(df["responded"])}).dropna()
    r, nr = data.loc[data.r == 1, "a"], data.loc[data.r == 0, "a"]
    if len(r) < 2 or len(nr) < 2:
        return _result("Mann-Whitney U", len(data), None, None, None, None, n_responders=len(r),
                       n_nonresponders=len(nr))
    u, p = sps.mannwhitneyu(r, nr, alternative="two-sided")
    pooled = math.sqrt((r.var() + nr.var()) / 2)
    d = (r.mean() - nr.mean()) / pooled if pooled > 0 else 0.0
    se = math.sqrt(1 / len(r) + 1 / len(nr) + d ** 2 / (2 * (len(r) + len(nr))))
    return _result("Mann-Whitney U", len(data), d, d - 1.96 * se, d + 1.96 * se, p, u=float(u),
                   scale="standardized difference (responders - non-responders)", n_responders=int(len(r)),
                   n_nonresponders=int(len(nr)), mean_responders=float(r.mean()), mean_nonresponders=float(nr.mean()),
                   differs=bool(p < 0.05 or abs(d) >= 0.1))


def response_weights(df: pd.DataFrame) -> pd.Series:
    """Inverse probability of response, from a logistic model of response on alliance (and covariates)."""
    import statsmodels.formula.api as smf

    data, terms = _design(df.assign(responded=_num(df["responded"])), "responded", adjust=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = smf.logit("responded ~ " + " + ".join(terms), data).fit(disp=False)
        except Exception:
            fit = smf.logit("responded ~ alliance_sd", data).fit(disp=False)
    p = fit.predict(data).clip(0.02, 1.0)
    return (1 / p).reindex(df.index)


def mixed_model(df: pd.DataFrame) -> dict[str, Any] | None:
    """Self-efficacy on alliance x time point, random intercept per participant (when 2+ time points have 30+)."""
    import statsmodels.formula.api as smf

    data = pd.DataFrame({"y": _num(df["self_efficacy"]), "a": _num(df["alliance_mean"]),
                         "t": df["timepoint_days"].astype("float64"), "g": df["participant"]}).dropna()
    counts = data.groupby("t").size()
    points = sorted(counts[counts >= MIN_RESPONDERS].index)
    if len(points) < 2:
        return None
    data = data[data["t"].isin(points)].copy()
    everyone = data["g"].nunique()
    if everyone > MIXED_MAX_PARTICIPANTS:  # statsmodels' MixedLM is slow with very many groups
        keep = pd.Series(data["g"].unique()).sample(MIXED_MAX_PARTICIPANTS, random_state=0)
        data = data[data["g"].isin(set(keep))].copy()
    data["alliance_sd"] = (data["a"] - data["a"].mean()) / data["a"].std()
    data["tp"] = data["t"].astype(int).astype(str)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = smf.mixedlm("y ~ alliance_sd * C(tp)", data, groups=data["g"]).fit()
    ci = fit.conf_int()
    terms = {name: {"estimate": float(fit.params[name]), "ci_low": float(ci.loc[name, 0]),
                    "ci_high": float(ci.loc[name, 1]), "p": float(fit.pvalues[name])}
             for name in fit.params.index if name.startswith("alliance_sd")}
    main = terms["alliance_sd"]
    return _result("Linear mixed model (random intercept per participant)", len(data), main["estimate"],
                   main["ci_low"], main["ci_high"], main["p"], timepoints=[int(t) for t in points],
                   n_participants=int(data["g"].nunique()), sampled_from=int(everyone), terms=terms,
                   scale=f"points of self-efficacy per SD of alliance at {int(points[0])} days")


def holm(results: list[dict[str, Any]]) -> None:
    """Add Holm-adjusted p-values (``p_holm``) across a family of results, in place."""
    from statsmodels.stats.multitest import multipletests

    idx = [i for i, r in enumerate(results) if r.get("p") is not None]
    if not idx:
        return
    adjusted = multipletests([results[i]["p"] for i in idx], method="holm")[1]
    for i, p in zip(idx, adjusted):
        results[i]["p_holm"] = float(p)


def wilson(successes: int, n: int) -> tuple[float | None, float | None, float | None]:
    if n == 0:
        return None, None, None
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(successes, n, method="wilson")
    share = successes / n
    # At 0/n and n/n statsmodels returns bounds a rounding error inside the estimate (1 - 1e-16).
    return share, min(float(lo), share), max(float(hi), share)


# -- treatment episodes (readmissions) --------------------------------------------------------------------------
def episode_numbers(df: pd.DataFrame) -> pd.Series:
    """Each row's treatment episode (1, 2, ... in discharge order); 1 where the column is absent or empty."""
    if "episode" not in df:
        return pd.Series(1, index=df.index, dtype="int64")
    return _num(df["episode"]).fillna(1).astype("int64")


def _first_episode_rows(df: pd.DataFrame) -> pd.Series:
    episode = episode_numbers(df)
    return episode == episode.groupby(df["participant"]).transform("min")


def first_episodes(df: pd.DataFrame) -> pd.DataFrame:
    """The primary analysis rows: each participant's earliest episode present in ``df``, at every time point."""
    return df[_first_episode_rows(df)] if len(df) else df


def episode_counts(df: pd.DataFrame) -> dict[str, int]:
    """Participants with more than one episode in ``df``, and the number of (participant, episode) pairs."""
    per = episode_numbers(df).groupby(df["participant"]).nunique() if len(df) else pd.Series(dtype="int64")
    return {"n_participants_multi": int((per > 1).sum()), "n_episodes": int(per.sum())}


def later_episode_answers(df: pd.DataFrame, outcome: str = "self_efficacy_high") -> int:
    """Rows with an answer to ``outcome`` that the primary analysis leaves out (a participant's later episodes)."""
    if not len(df):
        return 0
    return int((~_first_episode_rows(df) & _num(df[outcome]).notna()).sum())


def all_episodes(df: pd.DataFrame, outcome: str = "self_efficacy_high") -> dict[str, Any]:
    """Sensitivity analysis: the unadjusted logistic regression on every episode, SEs clustered by participant."""
    return logistic(df, outcome, cluster=df["participant"])


def summarise(df: pd.DataFrame) -> dict[str, Any]:
    """Every statistic of the report, machine-readable.

    Counts and estimates describe the primary data (``first_episodes``); ``episodes`` holds the number of
    participants with more than one episode and the all-episodes sensitivity analysis (None when the
    sample is too small or no answer comes from a later episode).
    """
    primary = first_episodes(df)
    responders = int(_num(primary["responded"]).fillna(0).sum()) if len(primary) else 0
    out: dict[str, Any] = {"n_rows": int(len(primary)), "n_participants": int(primary["participant"].nunique()),
                           "n_responders": responders, "min_responders": MIN_RESPONDERS,
                           "episodes": {**episode_counts(df), "primary": "first episode per participant",
                                        "sensitivity": None}}
    out["nonresponse"] = nonresponse(primary) if len(primary) else None
    if responders < MIN_RESPONDERS:
        out["too_small"] = True
        return out
    out["too_small"] = False
    if later_episode_answers(df, "self_efficacy_high"):  # otherwise every episode = the primary answers
        out["episodes"]["sensitivity"] = all_episodes(df, "self_efficacy_high")
    outcomes = [o for o in OUTCOMES if o in primary and _num(primary[o]).notna().sum() >= 10]
    out["spearman"] = [spearman(primary, o) for o in outcomes]
    holm(out["spearman"])
    out["logistic"] = [logistic(primary, "self_efficacy_high"), logistic(primary, "self_efficacy_high", adjust=True)]
    out["ordinal"] = [ordinal(primary, o) for o in ("mental_health", "physical_health") if o in outcomes]
    holm(out["ordinal"])
    out["high_vs_other"] = [high_vs_other(primary, o) for o in BINARY]
    holm(out["high_vs_other"])
    out["trend"] = [trend(primary, o) for o in BINARY]
    holm(out["trend"])
    weights = response_weights(primary)
    out["ipw"] = logistic(primary, "self_efficacy_high", weights=weights)
    out["mixed"] = mixed_model(primary)  # its random intercept per participant sees one episode each
    return out
