"""The study's statistics, each returned as a plain dict: test, n, estimate, 95% CI, p.

Is a stronger alliance at discharge associated with higher self-efficacy and
better self-rated health later?  One estimand: each outcome at one pre-specified
time point (``PRIMARY_TIMEPOINT``), one row per participant, never a mixture of
time points.  The primary analysis: self-efficacy (0-10) on the alliance per SD,
adjusted (linear, robust SE); one secondary analysis per outcome (Holm within
that family, with the mixed model's interaction terms); everything else
exploratory.  "Per SD" is one SD throughout (:func:`alliance_sd`).

Patients readmitted for treatment have several episodes (column ``episode``,
1, 2, ... in discharge order).  The analyses use each participant's first
episode in the data, so everyone counts once per time point; a sensitivity
analysis repeats the primary model on every episode with standard errors
clustered by participant.

Missing answers are assumed missing at random given the alliance and the
covariates; :mod:`analysis.missing` holds the sensitivity analyses (multiple
imputation, tipping point, inverse-probability weights).  Responders and
non-responders are described within each time point, without a verdict.  Only
the mixed model uses the answers of several time points, and it models them.

Decision rules (stated in the report): estimates only when at least
``MIN_RESPONDERS`` participants answered; each model at least ``EPP``
participants (or events of the rarer outcome) per parameter; the mixed model
only when at least ``MIN_REPEATED`` participants answered at two or more time
points.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.stats.contingency import odds_ratio

from . import forked
from .queries import COVARIATES

MIN_RESPONDERS = 30  # participants (people, not answers) with at least one answer
FORK_FROM = 5000  # rated participants from which the multiple imputation runs in a forked child (analysis.forked)
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


def _design(df: pd.DataFrame, outcome: str, adjust: bool | list[str],
            sd: float | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The model's rows (complete cases) and terms.  ``alliance_sd`` is the alliance centred on the rows' mean and
    divided by ``sd`` (the report's one stated SD; the rows' own sample SD when None).  ``adjust``: True for every
    covariate present, or a list of them."""
    wanted = COVARIATES if adjust is True else (adjust or [])
    cols = ["alliance_mean", outcome] + [c for c in wanted if c in df]
    data = df[cols].copy()
    data["alliance_mean"] = _num(data["alliance_mean"])
    data[outcome] = _num(data[outcome])
    for c in cols[2:]:
        data[c] = data[c].astype("object") if c in CATEGORICAL else _num(data[c])
    data = data.dropna()
    for c in cols[2:]:  # patsy reads a pandas Categorical's codes at once; an object column, or one in C(), it checks
        if c in CATEGORICAL:  # value by value (1.3 million calls at 100,000 episodes); the same sorted levels either way
            data[c] = pd.Categorical(data[c])
    sd = data["alliance_mean"].std() if sd is None else sd
    data["alliance_sd"] = (data["alliance_mean"] - data["alliance_mean"].mean()) / sd if sd > 0 else np.nan
    terms = ["alliance_sd"]
    for c in cols[2:]:
        if data[c].nunique() > 1:
            terms.append(c)  # a Categorical column is a categorical term for patsy (no C(): its box is read value by value)
    return data, terms


def _name(base: str, terms: list[str]) -> str:
    return base + (", adjusted for " + ", ".join(terms[1:]) if len(terms) > 1 else "")


def _parameters(fit: Any) -> int:
    return int(len(fit.params))


def logistic(df: pd.DataFrame, outcome: str = "self_efficacy_high", adjust: bool | list[str] = False,
             weights: pd.Series | None = None, cluster: pd.Series | None = None,
             sd: float | None = None) -> dict[str, Any]:
    """Odds ratio per SD of alliance (``sd``, or the rows' sample SD), from a logistic regression (optionally
    weighted), with the average marginal effect beside it: the risk difference per SD (``rd``, delta-method CI).

    ``cluster`` (aligned with ``df``, e.g. its participant column) gives cluster-robust standard errors
    for rows that are not independent; it is not combined with ``weights``.
    """
    import statsmodels.formula.api as smf
    import statsmodels.api as sm

    if weights is not None and cluster is not None:
        raise ValueError("weights and cluster are not combined")
    data, terms = _design(df, outcome, adjust, sd)
    name = (_name("Logistic regression", terms) + (", IPW" if weights is not None else "")
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
    if result["estimate"] is None:
        return result
    result["events"] = int(data[outcome].sum())
    result["parameters"] = _parameters(fit)
    if cluster is not None:
        result["interval"] = "Wald, cluster-robust (sandwich) SE by participant"
    elif weights is not None:
        result["interval"] = "Wald, robust (HC0) SE"
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = fit.get_margeff(at="overall").summary_frame()
        row = frame.loc["alliance_sd"]
        result["rd"] = {"estimate": float(row["dy/dx"]), "ci_low": float(row["Conf. Int. Low"]),
                        "ci_high": float(row["Cont. Int. Hi."]), "p": float(row["Pr(>|z|)"]),
                        "scale": "risk difference per SD (average marginal change in probability, delta-method CI)"}
    return result


def linear(df: pd.DataFrame, outcome: str = "self_efficacy", adjust: bool | list[str] = False,
           weights: pd.Series | None = None, sd: float | None = None,
           cluster: pd.Series | None = None) -> dict[str, Any]:
    """Mean difference in ``outcome`` (points of its scale) per SD of alliance: least squares with
    heteroskedasticity-robust (HC3) standard errors, weighted least squares with HC0 for ``weights``, or
    cluster-robust standard errors by ``cluster`` (aligned with ``df``)."""
    import statsmodels.formula.api as smf

    data, terms = _design(df, outcome, adjust, sd)
    name = (_name("Linear regression", terms) + (", IPW" if weights is not None else "")
            + (", SE clustered by participant" if cluster is not None else ""))
    scale = ("days" if outcome == "days_used" else "points") + " per SD of alliance"
    if len(data) < 10 or data[outcome].nunique() < 2 or data["alliance_sd"].isna().all():
        return _result(name, len(data), None, None, None, None, outcome=outcome, scale=scale)
    formula = f"{outcome} ~ " + " + ".join(terms)
    try:
        if cluster is not None:
            groups = pd.factorize(cluster.reindex(data.index))[0]
            fit = smf.ols(formula, data).fit(cov_type="cluster", cov_kwds={"groups": groups})
        elif weights is None:
            fit = smf.ols(formula, data).fit(cov_type="HC3")
        else:
            fit = smf.wls(formula, data, weights=weights.reindex(data.index)).fit(cov_type="HC0")
    except Exception as exc:
        return _result(name, len(data), None, None, None, None, outcome=outcome, scale=scale,
                       error=f"{type(exc).__name__}: {exc}")
    beta, (lo, hi) = fit.params["alliance_sd"], fit.conf_int().loc["alliance_sd"]
    return _result(name, len(data), beta, lo, hi, fit.pvalues["alliance_sd"], outcome=outcome, scale=scale,
                   interval=("Wald, cluster-robust (sandwich) SE by participant" if cluster is not None else
                             "Wald, robust (HC3) SE" if weights is None else "Wald, robust (HC0) SE"),
                   parameters=_parameters(fit))


def rcs_term(x: pd.Series, knots: list[float]) -> pd.Series:
    """The non-linear term of a restricted cubic spline with three knots (Harrell 2015, eq. 2.25), scaled by the
    squared knot range: 0 below the first knot, linear beyond the last."""
    t1, t2, t3 = knots
    pos = lambda v: np.clip(v, 0, None) ** 3  # noqa: E731
    return (pos(x - t1) - pos(x - t2) * (t3 - t1) / (t3 - t2) + pos(x - t3) * (t2 - t1) / (t3 - t2)) / (t3 - t1) ** 2


def linearity(df: pd.DataFrame, outcome: str, covariates: list[str], sd: float) -> dict[str, Any] | None:
    """The ceiling check: the primary model with a restricted cubic spline of the alliance (knots at its 10th, 50th
    and 90th percentiles among the rows) instead of a straight line; the robust (HC3) Wald test of the spline's
    non-linear term.  None when the percentiles do not give three distinct knots (a ceiling holding a tenth)."""
    import statsmodels.formula.api as smf

    data, terms = _design(df, outcome, covariates or False, sd)
    knots = sorted(set(float(k) for k in data["alliance_mean"].quantile([0.1, 0.5, 0.9])))
    if len(knots) < 3 or len(data) < 20:
        return None
    data["alliance_curve"] = rcs_term(data["alliance_mean"], knots) / sd
    fit = smf.ols(f"{outcome} ~ " + " + ".join(terms + ["alliance_curve"]), data).fit(cov_type="HC3")
    return {"test": "Restricted cubic spline (3 knots), robust Wald test of the non-linear term", "n": len(data),
            "knots": knots, "estimate": float(fit.params["alliance_curve"]), "p": float(fit.pvalues["alliance_curve"]),
            "outcome": outcome}


def _odds_ratio_per_sd(name: str, n: int, fit: Any, outcome: str) -> dict[str, Any]:
    beta, (lo, hi) = fit.params["alliance_sd"], fit.conf_int().loc["alliance_sd"]
    converged = getattr(fit, "mle_retvals", None) or {}
    if (not converged.get("converged", True) or not np.all(np.isfinite([beta, lo, hi]))
            or max(abs(lo), abs(hi)) > 30 or not np.all(np.isfinite(fit.bse))):
        # (quasi-)separation: a covariate level or the alliance predicts the outcome perfectly
        return _result(name, n, None, None, None, None, outcome=outcome, scale="odds ratio per SD",
                       error="not estimable: the model did not converge or separates the outcome")
    return _result(name, n, math.exp(beta), math.exp(lo), math.exp(hi), fit.pvalues["alliance_sd"],
                   outcome=outcome, scale="odds ratio per SD", interval="Wald")


def _exog(data: pd.DataFrame, terms: list[str]) -> pd.DataFrame:
    """The design matrix of ``terms`` without an intercept (patsy's treatment coding for categories)."""
    from patsy import dmatrix

    x = dmatrix(" + ".join(terms), data, return_type="dataframe")
    return x.drop(columns="Intercept")


def ordinal(df: pd.DataFrame, outcome: str, adjust: bool | list[str] = False, sd: float | None = None) -> dict[str, Any]:
    """Proportional-odds (ordinal logistic) regression: odds ratio per SD for a better rating, with a Brant test
    of proportional odds for the alliance (``brant``: the odds ratio of each cut point's binary logistic regression
    and the Wald test that they are equal)."""
    from . import ordered_logit

    data, terms = _design(df, outcome, adjust, sd)
    name = _name("Proportional-odds logistic regression", terms)
    if len(data) < 10 or data[outcome].nunique() < 2:
        return _result(name, len(data), None, None, None, None, outcome=outcome, scale="odds ratio per SD")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            y = pd.Series(pd.Categorical(data[outcome].astype(int), ordered=True), index=data.index)
            fit = ordered_logit.fit(y, _exog(data, terms))
        except Exception as exc:
            return _result(name, len(data), None, None, None, None, outcome=outcome, scale="odds ratio per SD",
                           error=f"{type(exc).__name__}: {exc}")
    result = _odds_ratio_per_sd(name, len(data), fit, outcome)
    if result["estimate"] is None:
        return result
    result["parameters"] = _parameters(fit)
    result["brant"] = brant(data, outcome, terms)
    return result


def brant(data: pd.DataFrame, outcome: str, terms: list[str]) -> dict[str, Any] | None:
    """Brant's test of proportional odds for the alliance: a binary logistic regression per cut point
    (y > k), their alliance coefficients' joint covariance (Brant 1990), and the Wald chi-square that the
    coefficients are equal (J - 2 df for J categories).  None with fewer than three categories or a failed fit."""
    import statsmodels.api as sm

    levels = sorted(data[outcome].unique())
    if len(levels) < 3:
        return None
    exog = sm.add_constant(_exog(data, terms), has_constant="add")
    col = list(exog.columns).index("alliance_sd")  # patsy puts categorical terms first
    x = exog.to_numpy(float)
    y = data[outcome].to_numpy()
    betas, probs, infos = [], [], []
    try:
        for k in levels[:-1]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = sm.Logit((y > k).astype(float), x).fit(disp=False)
            if not fit.mle_retvals.get("converged", True):
                return None
            betas.append(fit.params)
            p = fit.predict(x)
            probs.append(p)
            infos.append(np.linalg.inv(x.T @ (x * (p * (1 - p))[:, None])))
    except Exception:
        return None
    j = len(betas)
    cov = np.zeros((j, j))
    for a in range(j):
        for b in range(a, j):
            w = probs[b] - probs[a] * probs[b]  # P(y > k_b) (1 - P(y > k_a)) for k_a <= k_b
            v = infos[a] @ (x.T @ (x * w[:, None])) @ infos[b]
            cov[a, b] = cov[b, a] = v[col, col]
    est = np.array([beta[col] for beta in betas])
    contrast = np.eye(j)[1:] - np.eye(j)[:-1]  # successive differences: all equal
    diff = contrast @ est
    stat = float(diff @ np.linalg.solve(contrast @ cov @ contrast.T, diff))
    se = np.sqrt(np.diag(cov))  # each cut point's own logistic regression's (model-based) SE
    return {"test": "Brant test (alliance)", "odds_ratios": [float(math.exp(b)) for b in est],
            "ci": [[float(math.exp(b - Z95 * s)), float(math.exp(b + Z95 * s))] for b, s in zip(est, se)],
            "cuts": [f"{outcome} > {int(k)}" for k in levels[:-1]], "chi2": stat, "df": float(j - 1),
            "p": float(sps.chi2.sf(stat, j - 1))}


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
                   table=table.tolist(), interval="Woolf (normal on the log odds ratio)", **risk_difference(table))


def risk_difference(table: np.ndarray) -> dict[str, float]:
    """The share with the outcome in the first row minus the second's, with Newcombe's hybrid score interval."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    (a, b), (c, d) = table
    low, high = confint_proportions_2indep(a, a + b, c, c + d, method="newcomb", compare="diff")
    return {"rd": float(a / (a + b) - c / (c + d)), "rd_low": float(low), "rd_high": float(high)}


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
    the standardized difference d with its normal-approximation 95% CI.  A description, not a test of the
    missing-data assumption (which the data cannot test)."""
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
                   interval="normal approximation (Hedges-Olkin SE)")


MIXED_TEST = "Linear mixed model (random intercept per participant, REML, robust SE)"
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
            "robust_bse": np.sqrt(np.diag(_sandwich(X, y, codes, sizes, sx, a, beta, g))),
            "scale": scale, "group_var": g * scale}


def _sandwich(X, y, codes, sizes, sx, a, beta, g) -> np.ndarray:
    """Cluster-robust (sandwich) covariance of the fixed effects by group: A^-1 (sum u_i u_i') A^-1 with
    A = X' H^-1 X and u_i = X_i' H_i^-1 r_i, H_i^-1 = I - c_i J (the scale cancels).  Valid for the fixed effects
    even when a random intercept alone does not describe how a participant's answers go together (a random slope,
    an unstructured covariance over time)."""
    r = y - X @ beta
    c = g / (1 + sizes * g)
    xr = np.zeros_like(sx)
    np.add.at(xr, codes, X * r[:, None])
    rs = np.bincount(codes, weights=r, minlength=len(sizes))
    u = xr - sx * (c * rs)[:, None]
    a_inv = np.linalg.inv(a)
    n_groups, p = len(sizes), X.shape[1]
    small = n_groups / (n_groups - 1) if n_groups > 1 else 1.0  # the usual G / (G - 1) correction
    return small * a_inv @ (u.T @ u) @ a_inv


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


def mixed_model(df: pd.DataFrame, sd: float | None = None, covariates: list[str] | None = None) -> dict[str, Any]:
    """Self-efficacy on alliance x time point and the covariates, random intercept per participant (REML, every
    participant), with cluster-robust (sandwich) standard errors by participant.

    Time points are numbers, ordered numerically, the earliest as reference; the time points used are those
    with MIN_RESPONDERS or more answers (``dropped``: the others).  Fitted only when at least MIN_REPEATED
    participants answered at two or more of them (otherwise nobody, or too few, are measured twice and a random
    intercept per participant is not identified); ``n_repeated`` says how many did.  Terms are named in words.
    Wald 95% CIs from the robust SE, normal p-values.  ``sd``: the report's one SD of the alliance.
    """
    from .missing import numeric_frame

    data = pd.DataFrame({"y": _num(df["self_efficacy"]), "a": _num(df["alliance_mean"]),
                         "t": _num(df["timepoint_days"]), "g": df["participant"]})
    covs = numeric_frame(df, covariates or [], CATEGORICAL)
    data = data.join(covs).dropna()
    counts = data.groupby("t")["g"].nunique()
    points = sorted(int(t) for t in counts[counts >= MIN_RESPONDERS].index)
    dropped = sorted(int(t) for t in counts[counts < MIN_RESPONDERS].index)
    if len(points) >= 2:
        data = data[data["t"].isin(points)]
    repeated = int((data.groupby("g")["t"].nunique() >= 2).sum()) if len(data) else 0
    base = {"timepoints": points, "dropped": dropped if len(points) >= 2 else [], "n_repeated": repeated,
            "min_repeated": MIN_REPEATED, "covariates": [c for c in (covariates or []) if c in df]}
    if len(points) < 2 or repeated < MIN_REPEATED:
        return _result(MIXED_TEST, len(data), None, None, None, None, fitted=False, **base)
    scale_sd = data["a"].std() if sd is None else sd
    z = ((data["a"] - data["a"].mean()) / scale_sd).to_numpy()
    t = data["t"].to_numpy()
    reference, later = points[0], points[1:]
    columns, names = [np.ones(len(data)), z], ["intercept", "alliance_sd"]
    words = {"alliance_sd": f"alliance (per SD) at {reference} days"}
    for tp in later:  # explicit indicators: numeric order, the earliest time point as reference
        at = (t == tp).astype(float)
        columns += [at, z * at]
        names += [f"at_{tp}", f"alliance_sd_at_{tp}"]
        words[f"alliance_sd_at_{tp}"] = f"difference in the alliance association, {tp} vs {reference} days"
    for c in covs.columns:
        if data[c].nunique() > 1:
            columns.append(data[c].to_numpy(float))
            names.append(c)
    x, y, g = np.column_stack(columns), data["y"].to_numpy(), data["g"].to_numpy()
    years = (t - reference) / 365.0  # the random slope's time: years since the reference time point
    slope = random_slope_reml(y, x, g, years) if len(points) >= 3 else None
    if slope is not None and slope.get("fit") is not None:
        fit, structure = slope["fit"], "random intercept and slope"
    else:
        structure = "random intercept"
        try:
            fit = random_intercept_reml(y, x, g)
        except (np.linalg.LinAlgError, ValueError) as exc:
            return _result(MIXED_TEST, len(data), None, None, None, None, fitted=False, **base,
                           error=f"{type(exc).__name__}: {exc}")
    fallback = (None if structure != "random intercept" else
                "two time points: a random slope cannot be told apart from the residual variance"
                if len(points) < 3 else slope["reason"])
    terms = []
    for name in ["alliance_sd"] + [f"alliance_sd_at_{tp}" for tp in later]:
        i = names.index(name)
        est, se = float(fit["params"][i]), float(fit["robust_bse"][i])
        terms.append({"term": words[name], "estimate": est, "ci_low": est - Z95 * se, "ci_high": est + Z95 * se,
                      "p": float(2 * sps.norm.sf(abs(est / se))), "model_se": float(fit["bse"][i])})
    main = terms[0]
    extra = ({"variance_slope": float(fit["slope_var"]), "covariance_intercept_slope": float(fit["cov_is"]),
              "slope_time": "years since the reference time point"} if structure != "random intercept" else {})
    return _result(MIXED_TEST if structure == "random intercept" else MIXED_SLOPE_TEST, len(data), main["estimate"],
                   main["ci_low"], main["ci_high"], main["p"], fitted=True, **base, reference=reference,
                   n_participants=int(data["g"].nunique()), terms=terms, random_effects=structure,
                   fallback=fallback, variance_participant=float(fit["group_var"]),
                   variance_residual=float(fit["scale"]), **extra,
                   scale=f"points of self-efficacy per SD of alliance at {reference} days",
                   interval="Wald, cluster-robust (sandwich) SE by participant")


MIXED_SLOPE_TEST = "Linear mixed model (random intercept and slope on time per participant, REML, robust SE)"


def random_slope_reml(y: np.ndarray, X: np.ndarray, groups: np.ndarray, years: np.ndarray) -> dict[str, Any]:
    """The mixed model with a random intercept and a random slope on time (``years``) per participant (REML, an
    unstructured 2x2 covariance of the two random effects), fitted by :mod:`analysis.mixed_slope`: statsmodels'
    MixedLM's criterion and standard errors, its algebra shared by each pattern of times.  ``fit`` is None, with
    the ``reason``, when the fit does not converge or would make MixedLM warn (a variance under 0.01: "on the
    boundary"; a Hessian not negative definite), or puts a variance or the correlation on its boundary (the
    random slope is then not supported by the data and the random intercept is used).  Robust SE: the
    cluster-robust sandwich by participant with the fitted V_i = Z_i G Z_i' + s2 I."""
    from . import mixed_slope

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = mixed_slope.fit(X, y, groups, years)
            cov_re, scale, hess = res["cov_re"], float(res["scale"]), res["hessian"]
            pcov = np.linalg.inv(-hess)
    except (np.linalg.LinAlgError, ValueError) as exc:
        return {"fit": None, "reason": f"the random-slope fit failed ({type(exc).__name__})"}
    warned = np.min(np.abs(np.diag(cov_re))) < 0.01 or np.any(np.diag(hess) >= 0)  # MixedLM's two warnings
    # (a singular covariance, MixedLM's third, has a variance at 0 or a correlation of +-1: the rules below)
    corr = cov_re[0, 1] / math.sqrt(cov_re[0, 0] * cov_re[1, 1]) if np.all(np.diag(cov_re) > 0) else 1.0
    if not res["converged"] or warned or np.any(np.diag(cov_re) <= 1e-6 * scale) or abs(corr) > 0.99:
        return {"fit": None, "reason": "the random-slope model did not converge or put its slope variance (or the "
                                       "intercept-slope correlation) on the boundary"}
    beta = res["params"]
    robust = mixed_slope.sandwich(res["model"], beta, cov_re, scale)
    return {"fit": {"params": beta, "bse": np.sqrt(np.diag(pcov)[:len(beta)]), "robust_bse": np.sqrt(np.diag(robust)),
                    "scale": scale, "group_var": float(cov_re[0, 0]), "slope_var": float(cov_re[1, 1]),
                    "cov_is": float(cov_re[0, 1])}, "reason": None}


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


def all_episodes(df: pd.DataFrame, outcome: str = "self_efficacy", covariates: list[str] | None = None,
                 sd: float | None = None) -> dict[str, Any]:
    """Sensitivity analysis for readmissions: the primary model on every episode (of the primary time point),
    SEs clustered by participant."""
    return linear(df, outcome, adjust=covariates or False, sd=sd, cluster=df["participant"])


# -- the unit of analysis -----------------------------------------------------------------------------------------
def by_timepoint(df: pd.DataFrame) -> list[tuple[int, pd.DataFrame]]:
    """The rows of each time point, in numeric order."""
    t = _num(df["timepoint_days"])
    return [(int(v), df[t == v]) for v in sorted(t.dropna().unique())]


def people_answered(df: pd.DataFrame) -> int:
    """Participants (people, not answers) with at least one usable answer at any time point."""
    return int(df.loc[_num(df["responded"]).fillna(0) == 1, "participant"].nunique()) if len(df) else 0


# -- the primary estimand, the secondary family and the rules that keep a model out ------------------------------
PRIMARY_OUTCOME = "self_efficacy"
EPP = 10  # participants (linear), events of the rarer outcome (logistic) or participants (ordinal) per parameter
REASONS = {  # why each covariate is in the adjustment set (the report's Methods prints them)
    "age": "a confounder: age goes with how patients rate their therapist and with recovery",
    "sex": "a confounder: sex goes with the alliance and with self-rated health and substance use",
    "primary_substance": "a confounder: the substance shapes both the treatment relationship and the outcomes",
    "program": "a confounder: programmes differ in therapists, intensity and the patients they admit",
    "length_of_stay_days": ("a confounder (a longer stay gives the alliance time to form and is itself treatment), "
                            "but possibly a mediator too (a good alliance keeps patients in treatment): a "
                            "sensitivity analysis leaves it out"),
}
MODELS = {"self_efficacy": "linear", "self_efficacy_high": "logistic", "mental_health": "ordinal",
          "physical_health": "ordinal", "days_used": "linear"}


def fit_model(rows: pd.DataFrame, outcome: str, adjust: bool | list[str], sd: float) -> dict[str, Any]:
    kind = MODELS[outcome]
    if kind == "linear":
        return linear(rows, outcome, adjust=adjust, sd=sd)
    if kind == "logistic":
        return logistic(rows, outcome, adjust=adjust, sd=sd)
    return ordinal(rows, outcome, adjust=adjust, sd=sd)


def epp_rule(r: dict[str, Any], kind: str) -> dict[str, Any]:
    """The events-per-parameter rule of a fitted model (a minimum of ``EPP``, after Riley et al. 2019, whose
    full criteria need an anticipated R-squared this study does not pre-specify): a model that breaks it is kept
    out, its estimate withheld, and ``rule`` says which rule did it."""
    k = r.get("parameters")
    if r.get("estimate") is None or not k:
        return r
    if kind == "logistic":
        have, what = min(r["events"], r["n"] - r["events"]), "events of the rarer outcome"
    else:
        have, what = r["n"], "participants"
    k_model = k - 1 if kind != "ordinal" else k  # the intercept is not counted; an ordinal model's cut points are
    r["epp"] = {"have": int(have), "parameters": int(k_model), "needed": EPP * int(k_model), "what": what}
    if have < EPP * k_model:
        r["rule"] = f"fewer than {EPP} {what} per parameter ({k_model} parameters need {EPP * k_model})"
        for key in ("estimate", "ci_low", "ci_high", "p", "rd", "brant"):
            r[key] = None
    return r


RARE_LEVEL = 0.10  # a covariate level held by fewer than this share of the participants joins "other"
OTHER = "other"


def rare_levels(rows: pd.DataFrame, covariates: list[str]) -> dict[str, list[str]]:
    """The pre-specified collapsing rule, decided from the covariate distribution alone (never from an outcome):
    among ``rows`` (every participant targeted at the analysis time point with an alliance rating, answering or
    not), a category held by fewer than ``RARE_LEVEL`` of those with the covariate joins one level "other" (kept
    whatever its size).  Nothing is collapsed when only one level would join (renaming it gains no parameter)."""
    rated = rows[_num(rows["alliance_mean"]).notna()]
    out: dict[str, list[str]] = {}
    for c in covariates:
        if c not in CATEGORICAL or c not in rated:
            continue
        shares = rated[c].dropna().astype(str).value_counts(normalize=True)
        rare = sorted(str(v) for v in shares[shares < RARE_LEVEL].index)
        if len(rare) >= 2:
            out[c] = rare
    return out


def collapse(df: pd.DataFrame, levels: dict[str, list[str]]) -> pd.DataFrame:
    """``df`` with each covariate's rare levels (from :func:`rare_levels`) replaced by "other"."""
    if not levels:
        return df
    df = df.copy()
    for c, rare in levels.items():
        df[c] = df[c].where(~df[c].astype(str).isin(rare) | df[c].isna(), OTHER)
    return df


def planned_parameters(rows: pd.DataFrame, covariates: list[str]) -> int:
    """The size of the pre-specified adjusted primary model, fixed before any outcome is used: the alliance, one
    per numeric covariate and one per non-reference level of each categorical one (after collapsing)."""
    rated = rows[_num(rows["alliance_mean"]).notna()]
    k = 1
    for c in covariates:
        values = rated[c].dropna()
        k += max(values.astype(str).nunique() - 1, 0) if c in CATEGORICAL else int(values.nunique() > 1)
    return k


def analysis_timepoint(points: list[int], primary_timepoint: int) -> int | None:
    """The pre-specified time point when the data have it; otherwise (a report restricted to another time point)
    the earliest time point present, and the report says it is not the primary one."""
    if primary_timepoint in points:
        return primary_timepoint
    return min(points) if points else None


def at_timepoint(df: pd.DataFrame, timepoint: int | None) -> pd.DataFrame:
    """The rows of one time point (one per participant in the first-episode data)."""
    return df[_num(df["timepoint_days"]) == timepoint] if timepoint is not None else df.iloc[:0]


def alliance_sd(primary: pd.DataFrame) -> float | None:
    """The one SD of "per SD": the sample SD of the alliance over the participants (first episode, one rating
    each), as the report's description of the alliance prints it."""
    per = _num(primary.drop_duplicates("participant")["alliance_mean"]).dropna()
    return float(per.std()) if len(per) > 1 and per.std() > 0 else None


def covariates_present(df: pd.DataFrame) -> list[str]:
    return [c for c in COVARIATES if c in df and df[c].notna().any()]


def wide_answers(primary: pd.DataFrame, outcome: str, skip: int) -> pd.DataFrame:
    """``outcome`` at every other time point, one row per participant (the imputation's auxiliary columns)."""
    others = primary[_num(primary["timepoint_days"]) != skip]
    if not len(others):
        return pd.DataFrame()
    wide = others.assign(v=_num(others[outcome])).pivot_table(index="participant", columns="timepoint_days",
                                                              values="v", aggfunc="first")
    wide.columns = [f"{outcome}_{int(c)}" for c in wide.columns]
    return wide


def summarise(df: pd.DataFrame, primary_timepoint: int = 30) -> dict[str, Any]:
    """Every statistic of the report (:func:`_summarise`), with one BLAS thread.

    The models multiply tall, narrow matrices (rows x a dozen columns): a second BLAS thread gains little there,
    and on a busy machine each product waits for it (a 90,000 x 9 matrix-vector product: 6.6 ms with OpenBLAS's
    threads, 0.5 ms with one).  One thread also makes the numbers the same whatever the machine's cores (a
    threaded sum may split differently)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _summarise(df, primary_timepoint)


def _summarise(df: pd.DataFrame, primary_timepoint: int = 30) -> dict[str, Any]:
    """Every statistic of the report, machine-readable (unsuppressed: :mod:`analysis.results` suppresses).

    Counts describe the primary data (``first_episodes``).  The estimand: the association of the alliance with
    each outcome at one pre-specified time point (``primary_timepoint``), one row per participant; the primary
    analysis is self-efficacy (0-10) on the alliance per SD, adjusted for the covariates present, by least squares
    with robust SE.  ``estimates`` holds every outcome's unadjusted and adjusted model at that time point (roles:
    primary, secondary (the Holm family, with the mixed model's interaction terms), exploratory); ``missing`` the
    sensitivity analyses for non-response; ``mixed`` the longitudinal model.  People and answers are counted apart.
    """
    from . import missing

    primary = first_episodes(df)
    answers = int(_num(primary["responded"]).fillna(0).sum()) if len(primary) else 0
    people = people_answered(primary)
    points = [t for t, _ in by_timepoint(primary)] if len(primary) else []
    tp = analysis_timepoint(points, primary_timepoint)
    sd = alliance_sd(primary) if len(primary) else None
    out: dict[str, Any] = {
        "timepoints": points, "n_followups": int(len(primary)),
        "n_participants": int(primary["participant"].nunique()) if len(primary) else 0,
        "n_answers": answers, "n_people_answered": people, "min_responders": MIN_RESPONDERS,
        "primary_timepoint": primary_timepoint, "analysis_timepoint": tp,
        "analysis_is_primary": tp == primary_timepoint, "alliance_sd": sd, "epp": EPP,
        "unit": f"one row per participant at the {tp}-day time point (first treatment episode)",
        "episodes": {**episode_counts(df), "primary": "first episode per participant", "sensitivity": None}}
    out["nonresponse"] = [{"timepoint": t, **nonresponse(rows)} for t, rows in by_timepoint(primary)]
    if people < MIN_RESPONDERS or sd is None:
        out["too_small"] = True
        return out
    out["too_small"] = False
    at = at_timepoint(primary, tp)
    covs = covariates_present(at)
    levels = rare_levels(at, covs)  # from the covariates of everyone targeted, before any outcome is used
    at, primary, df = collapse(at, levels), collapse(primary, levels), collapse(df, levels)
    out["adjustment"] = [{"covariate": c, "reason": REASONS[c], **({"collapsed": levels[c]} if c in levels else {})}
                         for c in covs]
    out["planned_parameters"] = planned_parameters(at, covs)
    rated = at[_num(at["alliance_mean"]).notna()].assign(responded=_num(at[PRIMARY_OUTCOME]).notna().astype(int))

    def imputation() -> dict[str, Any]:
        aux = wide_answers(primary, PRIMARY_OUTCOME, tp).reindex(rated["participant"])
        aux.index = rated.index
        return {**missing.mice(rated, PRIMARY_OUTCOME, covs, CATEGORICAL, sd, auxiliary=aux), "timepoint": tp}

    # The multiple imputation (a third of the time) needs nothing the models below compute: in a large study it
    # starts now in a forked child (its seeded draws and numbers the same), used if the primary model is fitted.
    imputed = forked.Later(imputation, fork=len(rated) >= FORK_FROM)
    estimates = []
    for o in MODELS:
        if o not in at or _num(at[o]).notna().sum() < 10:
            continue
        for adjusted in (False, True):
            if adjusted and not covs:
                continue
            r = epp_rule(fit_model(at, o, covs if adjusted else False, sd), MODELS[o])
            role = ("primary" if o == PRIMARY_OUTCOME else "secondary") if adjusted or not covs else "exploratory"
            estimates.append({**r, "outcome": o, "timepoint": tp, "adjusted": bool(adjusted), "role": role,
                              "model": MODELS[o]})
    out["estimates"] = estimates
    main = next((r for r in estimates if r["role"] == "primary"), None)
    out["primary_estimable"] = main is not None and main.get("estimate") is not None
    if main is not None and main.get("estimate") is None:
        main = None  # kept out by a rule: so are the analyses built on it
        for r in estimates:  # no covariate is dropped to make it fit: the unadjusted estimate is descriptive
            if r["outcome"] == PRIMARY_OUTCOME and not r["adjusted"]:
                r["role"] = "descriptive"
    if main is not None and "length_of_stay_days" in covs:
        out["without_length_of_stay"] = {
            **epp_rule(linear(at, PRIMARY_OUTCOME, adjust=[c for c in covs if c != "length_of_stay_days"], sd=sd),
                       "linear"), "outcome": PRIMARY_OUTCOME, "timepoint": tp}
    if main is not None:
        out["linearity"] = linearity(at, PRIMARY_OUTCOME, covs, sd)
        # the 0-10 answers as ordered categories: a sensitivity analysis of the primary model's interval scale
        out["ordinal_primary"] = {**epp_rule(ordinal(at, PRIMARY_OUTCOME, covs or False, sd), "ordinal"),
                                  "outcome": PRIMARY_OUTCOME, "timepoint": tp, "adjusted": bool(covs)}
    out["spearman"] = [{**spearman(at, o), "timepoint": tp} for o in OUTCOMES if o in at
                       and _num(at[o]).notna().sum() >= 10]
    out["high_vs_other"] = [{**high_vs_other(at, o), "timepoint": tp} for o in BINARY if o in at]
    out["trend"] = [{**trend(at, o), "timepoint": tp} for o in BINARY if o in at]
    if later_episode_answers(at_timepoint(df, tp), PRIMARY_OUTCOME):  # otherwise every episode = the primary rows
        out["episodes"]["sensitivity"] = {**all_episodes(at_timepoint(df, tp), PRIMARY_OUTCOME, covs, sd),
                                          "timepoint": tp}
    out["missing"] = {"assumption": "missing at random given the alliance and the covariates",
                      "mice": None, "ipw": None}
    if main is not None and rated["responded"].nunique() == 2:
        weights, info = missing.response_weights(rated, covs, CATEGORICAL, sd)
        out["missing"]["ipw"] = {**linear(rated, PRIMARY_OUTCOME, adjust=covs, weights=weights, sd=sd),
                                 "weights": info, "timepoint": tp}
    out["mixed"] = mixed_model(primary, sd=sd, covariates=covs)  # its random effects see one episode each
    if main is not None:
        out["missing"]["mice"] = imputed.result()
    else:
        imputed.cancel()
    family = [r for r in estimates if r["role"] == "secondary"] + (out["mixed"].get("terms") or [])[1:]
    holm(family)
    return out
