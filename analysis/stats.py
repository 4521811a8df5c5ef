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

The unit of analysis is the participant.  Per time point there is one row per
participant.  Across time points the association analyses use one answer per
participant, the earliest (lowest time point) answer to each question; the
inverse-probability weights model "ever answered" per participant; the
non-response comparison is made within each time point; only the mixed model
(and the cluster-robust readmission sensitivity analysis) uses repeated
answers, and it models them.

Decision rules (stated in the report): estimates only when at least
``MIN_RESPONDERS`` participants answered; responders and non-responders
"differ" only when the 95% CI of the standardized difference excludes 0 and
|d| >= ``NONRESPONSE_MIN_D``; the mixed model only when at least
``MIN_REPEATED`` participants answered at two or more time points.
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

MIN_RESPONDERS = 30  # participants (people, not answers) with at least one answer
NONRESPONSE_MIN_D = 0.2  # smallest standardized difference called a difference (with a CI excluding 0)
MIN_REPEATED = 30  # participants answering at 2+ time points needed for the mixed model
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
                   outcome=outcome, interval="Fisher z, Bonett-Wright SE")


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
    result = _odds_ratio_per_sd(name, len(data), fit, outcome)
    if cluster is not None:
        result["interval"] = "Wald, cluster-robust (sandwich) SE by participant"
    elif weights is not None:
        result["interval"] = "Wald, robust (HC0) SE"
    return result


def _odds_ratio_per_sd(name: str, n: int, fit: Any, outcome: str) -> dict[str, Any]:
    beta, (lo, hi) = fit.params["alliance_sd"], fit.conf_int().loc["alliance_sd"]
    return _result(name, n, math.exp(beta), math.exp(lo), math.exp(hi), fit.pvalues["alliance_sd"],
                   outcome=outcome, scale="odds ratio per SD", interval="Wald")


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
                   table=table.tolist(), interval="Woolf (normal on the log odds ratio)")


TREND_TEST = "Mantel's linear-by-linear trend test across tertiles"


def trend(df: pd.DataFrame, outcome: str) -> dict[str, Any]:
    """Mantel's linear-by-linear association test, M² = (n-1)r² on scores 1, 2, 3 (tertiles) and 0, 1 (outcome)."""
    from statsmodels.stats.contingency_tables import Table

    data = pd.DataFrame({"t": df["alliance_tertile"], "y": _num(df[outcome])}).dropna()
    table = pd.crosstab(pd.Categorical(data["t"], categories=["low", "mid", "high"]), data["y"]).reindex(
        columns=[0.0, 1.0], fill_value=0)
    shares = (table[1.0] / table.sum(axis=1)).replace([np.inf], np.nan)
    n = int(table.values.sum())
    if n == 0 or (table.sum(axis=0) == 0).any() or (table.sum(axis=1) == 0).sum() > 1:
        return _result(TREND_TEST, n, None, None, None, None, outcome=outcome)
    res = Table(table.values + 0.0).test_ordinal_association(row_scores=np.array([1, 2, 3]),
                                                             col_scores=np.array([0, 1]))
    return _result(TREND_TEST, n, None, None, None, res.pvalue, outcome=outcome,
                   shares={k: (None if pd.isna(v) else float(v)) for k, v in shares.items()})


def nonresponse(df: pd.DataFrame) -> dict[str, Any]:
    """Responders vs non-responders on alliance (one row per participant, e.g. one time point): Mann-Whitney U and
    the standardized difference d with its normal-approximation 95% CI.  ``differs``: the CI excludes 0 and
    |d| >= NONRESPONSE_MIN_D."""
    data = pd.DataFrame({"a": _num(df["alliance_mean"]), "r": _num(df["responded"])}).dropna()
    r, nr = data.loc[data.r == 1, "a"], data.loc[data.r == 0, "a"]
    if len(r) < 2 or len(nr) < 2:
        return _result("Mann-Whitney U", len(data), None, None, None, None, n_responders=len(r),
                       n_nonresponders=len(nr))
    u, p = sps.mannwhitneyu(r, nr, alternative="two-sided")
    pooled = math.sqrt((r.var() + nr.var()) / 2)
    d = (r.mean() - nr.mean()) / pooled if pooled > 0 else 0.0
    se = math.sqrt(1 / len(r) + 1 / len(nr) + d ** 2 / (2 * (len(r) + len(nr))))
    low, high = d - 1.96 * se, d + 1.96 * se
    return _result("Mann-Whitney U", len(data), d, low, high, p, u=float(u),
                   scale="standardized difference (responders - non-responders)", n_responders=int(len(r)),
                   n_nonresponders=int(len(nr)), mean_responders=float(r.mean()), mean_nonresponders=float(nr.mean()),
                   differs=differs(d, low, high), interval="normal approximation (Hedges-Olkin SE)")


def differs(d: float | None, low: float | None, high: float | None) -> bool:
    """The non-response decision rule: a difference only when the 95% CI excludes 0 and |d| >= 0.2."""
    if d is None or low is None or high is None:
        return False
    return bool((low > 0 or high < 0) and abs(d) >= NONRESPONSE_MIN_D)


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


MIXED_TEST = "Linear mixed model (random intercept per participant, REML)"
Z95 = float(sps.norm.ppf(0.975))


def random_intercept_reml(y: np.ndarray, X: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    """A linear model with a random intercept per group, fitted by restricted maximum likelihood.

    With V_i = s2 (I + g J) for a group of n_i rows, V_i^-1 = (I - c_i J) / s2 with c_i = g / (1 + n_i g), so
    X'V^-1 X and X'V^-1 y need only the group sums of X and y: the REML criterion is profiled over the variance
    ratio g (one dimension) and every evaluation costs O(N p + G p^2).  Same model and estimates as statsmodels'
    MixedLM (REML), in a fraction of the time, so every participant is used.  Returns the fixed effects with
    their standard errors (s2 (X'H^-1 X)^-1) and the two variances.
    """
    from scipy import optimize

    codes, uniq = pd.factorize(groups)
    n_groups, (n_obs, p) = len(uniq), X.shape
    sizes = np.bincount(codes, minlength=n_groups).astype(float)
    sx = np.zeros((n_groups, p))
    np.add.at(sx, codes, X)
    sy = np.bincount(codes, weights=y, minlength=n_groups)
    xtx, xty, yty = X.T @ X, X.T @ y, float(y @ y)

    def solve(g: float):
        c = g / (1 + sizes * g)
        a = xtx - (sx * c[:, None]).T @ sx
        b = xty - (sx * c[:, None]).T @ sy
        beta = np.linalg.solve(a, b)
        rss = yty - float((c * sy * sy).sum()) - float(b @ beta)
        return a, beta, rss

    def criterion(log_g: float) -> float:
        g = math.exp(log_g)
        a, _, rss = solve(g)
        return 0.5 * ((n_obs - p) * math.log(rss / (n_obs - p)) + float(np.log1p(sizes * g).sum())
                      + float(np.linalg.slogdet(a)[1]))

    best = optimize.minimize_scalar(criterion, bounds=(-25.0, 12.0), method="bounded", options={"xatol": 1e-10})
    g = math.exp(best.x)
    a, beta, rss = solve(g)
    scale = rss / (n_obs - p)
    return {"params": beta, "bse": np.sqrt(np.diag(_observed_cov(X, y, codes, sizes, sx, a, beta, g, scale))),
            "scale": scale, "group_var": g * scale}


def _observed_cov(X, y, codes, sizes, sx, a, beta, g, scale) -> np.ndarray:
    """The fixed effects' covariance from the observed information of the REML log-likelihood in (beta, g), the
    scale profiled out (as statsmodels' MixedLM reports it): -(l_bb - l_bg l_gg^-1 l_gb)^-1.  Without the
    cross term this is the GLS covariance s2 (X'H^-1 X)^-1, used when g is at its boundary (no curvature)."""
    n_obs, p = X.shape
    r = y - X @ beta
    rs = np.bincount(codes, weights=r, minlength=len(sizes))
    c1, c2 = 1 / (1 + sizes * g) ** 2, -2 * sizes / (1 + sizes * g) ** 3
    q = scale * (n_obs - p)
    q_g, q_gg = -float((c1 * rs * rs).sum()), -float((c2 * rs * rs).sum())
    q_bg = 2 * (sx * (c1 * rs)[:, None]).sum(axis=0)
    a_inv = np.linalg.inv(a)
    a1, a2 = -(sx * c1[:, None]).T @ sx, -(sx * c2[:, None]).T @ sx
    f_gg = 0.5 * float((sizes ** 2 / (1 + sizes * g) ** 2).sum()) - 0.5 * (
        float(np.trace(a_inv @ a2)) - float(np.trace(a_inv @ a1 @ a_inv @ a1)))
    k = n_obs - p
    l_bg = -k / 2 * q_bg / q
    l_gg = -k / 2 * (q_gg / q - q_g ** 2 / q ** 2) + f_gg
    if not (np.isfinite(l_gg) and l_gg < 0):
        return scale * a_inv
    return np.linalg.inv(k * a / q + np.outer(l_bg, l_bg) / l_gg)


def mixed_model(df: pd.DataFrame) -> dict[str, Any]:
    """Self-efficacy on alliance x time point, random intercept per participant (REML, every participant).

    Time points are numbers, ordered numerically, the earliest as reference; the time points used are those
    with MIN_RESPONDERS or more answers.  Fitted only when at least MIN_REPEATED participants answered at two
    or more of them (otherwise nobody, or too few, are measured twice and a random intercept per participant is
    not identified); ``n_repeated`` says how many did.  Terms are named in words.  Wald 95% CIs, normal p-values.
    """
    data = pd.DataFrame({"y": _num(df["self_efficacy"]), "a": _num(df["alliance_mean"]),
                         "t": _num(df["timepoint_days"]), "g": df["participant"]}).dropna()
    counts = data.groupby("t")["g"].nunique()
    points = sorted(int(t) for t in counts[counts >= MIN_RESPONDERS].index)
    if len(points) >= 2:
        data = data[data["t"].isin(points)]
    repeated = int((data.groupby("g")["t"].nunique() >= 2).sum()) if len(data) else 0
    base = {"timepoints": points, "n_repeated": repeated, "min_repeated": MIN_REPEATED}
    if len(points) < 2 or repeated < MIN_REPEATED:
        return _result(MIXED_TEST, len(data), None, None, None, None, fitted=False, **base)
    z = ((data["a"] - data["a"].mean()) / data["a"].std()).to_numpy()
    t = data["t"].to_numpy()
    reference, later = points[0], points[1:]
    columns, names = [np.ones(len(data)), z], ["intercept", "alliance_sd"]
    words = {"alliance_sd": f"alliance (per SD) at {reference} days"}
    for tp in later:  # explicit indicators: numeric order, the earliest time point as reference
        at = (t == tp).astype(float)
        columns += [at, z * at]
        names += [f"at_{tp}", f"alliance_sd_at_{tp}"]
        words[f"alliance_sd_at_{tp}"] = f"change in the alliance effect, {tp} vs {reference} days"
    try:
        fit = random_intercept_reml(data["y"].to_numpy(), np.column_stack(columns), data["g"].to_numpy())
    except (np.linalg.LinAlgError, ValueError) as exc:
        return _result(MIXED_TEST, len(data), None, None, None, None, fitted=False, **base,
                       error=f"{type(exc).__name__}: {exc}")
    terms = []
    for name in ["alliance_sd"] + [f"alliance_sd_at_{tp}" for tp in later]:
        i = names.index(name)
        est, se = float(fit["params"][i]), float(fit["bse"][i])
        terms.append({"term": words[name], "estimate": est, "ci_low": est - Z95 * se, "ci_high": est + Z95 * se,
                      "p": float(2 * sps.norm.sf(abs(est / se)))})
    main = terms[0]
    return _result(MIXED_TEST, len(data), main["estimate"], main["ci_low"], main["ci_high"], main["p"], fitted=True,
                   **base, reference=reference, n_participants=int(data["g"].nunique()), terms=terms,
                   variance_participant=float(fit["group_var"]), variance_residual=float(fit["scale"]),
                   scale=f"points of self-efficacy per SD of alliance at {reference} days", interval="Wald")


def holm(results: list[dict[str, Any]]) -> None:
    """Add Holm-adjusted p-values (``p_holm``) across a family of results, in place: the i-th smallest of m
    p-values becomes max over j <= i of min(1, (m - j + 1) p_(j))."""
    idx = [i for i, r in enumerate(results) if r.get("p") is not None]
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: results[i]["p"])):
        running = max(running, min(1.0, (m - rank) * results[i]["p"]))
        results[i]["p_holm"] = float(running)


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


# -- the unit of analysis -----------------------------------------------------------------------------------------
def one_answer_per_participant(df: pd.DataFrame, outcome: str) -> pd.DataFrame:
    """Each participant's earliest answer to ``outcome`` (lowest time point): one row per participant."""
    rows = df[_num(df[outcome]).notna()]
    if rows["participant"].is_unique:
        return rows
    order = np.argsort(_num(rows["timepoint_days"]).to_numpy(), kind="stable")
    return rows.iloc[order].drop_duplicates("participant").sort_index()


def response_rows(df: pd.DataFrame, outcome: str = "self_efficacy_high") -> pd.DataFrame:
    """One row per participant for the response model: the earliest answer to ``outcome``, or the earliest
    follow-up of a participant who never answered it; ``responded`` = answered it at any time point."""
    answered = _num(df[outcome]).notna()
    if df["participant"].is_unique:
        return df.assign(responded=answered.astype(int))
    key = pd.DataFrame({"never": ~answered, "t": _num(df["timepoint_days"])}, index=df.index)
    order = key.sort_values(["never", "t"], kind="stable").index
    rows = df.loc[order].drop_duplicates("participant").sort_index()
    return rows.assign(responded=_num(rows[outcome]).notna().astype(int))


def by_timepoint(df: pd.DataFrame) -> list[tuple[int, pd.DataFrame]]:
    """The rows of each time point, in numeric order."""
    t = _num(df["timepoint_days"])
    return [(int(v), df[t == v]) for v in sorted(t.dropna().unique())]


def people_answered(df: pd.DataFrame) -> int:
    """Participants (people, not answers) with at least one usable answer at any time point."""
    return int(df.loc[_num(df["responded"]).fillna(0) == 1, "participant"].nunique()) if len(df) else 0


def summarise(df: pd.DataFrame) -> dict[str, Any]:
    """Every statistic of the report, machine-readable (unsuppressed: :mod:`analysis.results` suppresses).

    Counts and estimates describe the primary data (``first_episodes``); ``episodes`` holds the number of
    participants with more than one episode and the all-episodes sensitivity analysis (None when the
    sample is too small or no answer comes from a later episode).  People and answers are counted apart:
    ``n_participants`` and ``n_people_answered`` are people, ``n_followups`` and ``n_answers`` follow-ups.
    """
    primary = first_episodes(df)
    answers = int(_num(primary["responded"]).fillna(0).sum()) if len(primary) else 0
    people = people_answered(primary)
    points = [t for t, _ in by_timepoint(primary)] if len(primary) else []
    out: dict[str, Any] = {
        "timepoints": points, "n_followups": int(len(primary)),
        "n_participants": int(primary["participant"].nunique()) if len(primary) else 0,
        "n_answers": answers, "n_people_answered": people, "min_responders": MIN_RESPONDERS,
        "unit": ("one row per participant per time point; across time points, each participant's earliest answer "
                 "to each question" if len(points) > 1 else "one row per participant"),
        "episodes": {**episode_counts(df), "primary": "first episode per participant", "sensitivity": None}}
    out["nonresponse"] = [{"timepoint": t, **nonresponse(rows)} for t, rows in by_timepoint(primary)]
    if people < MIN_RESPONDERS:
        out["too_small"] = True
        return out
    out["too_small"] = False
    if later_episode_answers(df, "self_efficacy_high"):  # otherwise every episode = the primary answers
        out["episodes"]["sensitivity"] = all_episodes(df, "self_efficacy_high")
    rows = {o: one_answer_per_participant(primary, o) for o in [*OUTCOMES, *BINARY] if o in primary}
    outcomes = [o for o in OUTCOMES if o in rows and len(rows[o]) >= 10]
    out["spearman"] = [spearman(rows[o], o) for o in outcomes]
    holm(out["spearman"])
    out["logistic"] = [logistic(rows["self_efficacy_high"], "self_efficacy_high"),
                       logistic(rows["self_efficacy_high"], "self_efficacy_high", adjust=True)]
    out["ordinal"] = [ordinal(rows[o], o) for o in ("mental_health", "physical_health") if o in outcomes]
    holm(out["ordinal"])
    out["high_vs_other"] = [high_vs_other(rows[o], o) for o in BINARY]
    holm(out["high_vs_other"])
    out["trend"] = [trend(rows[o], o) for o in BINARY]
    holm(out["trend"])
    responders = response_rows(primary, "self_efficacy_high")
    out["ipw"] = logistic(responders, "self_efficacy_high", weights=response_weights(responders))
    out["mixed"] = mixed_model(primary)  # its random intercept per participant sees one episode each
    return out
