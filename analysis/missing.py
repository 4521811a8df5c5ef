"""Missing outcomes: the stated assumption and the sensitivity analyses that go with it.

The primary analysis is complete-case: valid when answering depends on the
alliance and the covariates in the model (not on the outcome itself).  Missing
at random given the alliance and the covariates is assumed and cannot be tested
from the data; these analyses show how much the estimate leans on it, and the
report always shows them:

* multiple imputation by chained equations (statsmodels' ``MICEData``,
  predictive mean matching), ``IMPUTATIONS`` data sets, the primary model fitted
  on each and pooled by Rubin's rules (Barnard-Rubin degrees of freedom);
* a tipping-point (delta-adjustment) analysis: the imputed answers of
  non-responders shifted by ``delta`` points per SD of alliance, i.e. the
  association among non-responders weaker (or stronger) than MAR predicts, until
  the conclusion of the primary analysis changes;
* inverse-probability-of-response weighting with stabilised weights, truncated
  at the 99th percentile, with the weights' summary (largest weight, effective
  sample size) and covariate balance (standardized differences between the
  weighted responders and everyone targeted).
"""
from __future__ import annotations

import math
import re
import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

IMPUTATIONS = 20  # imputed data sets (more than the share of incomplete cases in percent, up to 50% missing)
BURN_IN = 5  # chained-equation cycles before the first imputed set (R's mice: maxit = 5)
BETWEEN = 2  # cycles between two sets of one chain (a 90,000-participant study: a few seconds in all)
TRUNCATE_AT = 0.99  # stabilised weights above this quantile of the responders' weights are set to it
DELTA_MAX = 5.0  # the tipping-point search, points of self-efficacy per SD of alliance (half the scale)


def _num(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype("float64")


def _safe(name: str) -> str:
    return re.sub(r"\W", "_", str(name))


def numeric_frame(rows: pd.DataFrame, covariates: list[str], categorical: set[str]) -> pd.DataFrame:
    """The covariates as numbers: numeric columns as they are, categories as indicators (treatment coding, the
    first level as reference; a missing category stays missing in each of its indicators)."""
    out = pd.DataFrame(index=rows.index)
    for c in covariates:
        if c not in rows or rows[c].isna().all():
            continue
        if c in categorical:
            values = rows[c].astype("object")
            levels = sorted(values.dropna().unique(), key=str)
            for level in levels[1:]:
                out[_safe(f"{c}_{level}")] = (values == level).astype(float).where(values.notna())
        else:
            out[c] = _num(rows[c])
    return out.loc[:, out.nunique() > 1] if len(out.columns) else out


# -- multiple imputation -------------------------------------------------------------------------------------------
def rubin(estimates: np.ndarray, variances: np.ndarray, df_complete: float) -> dict[str, float]:
    """Rubin's rules for one coefficient: the mean estimate, total variance T = W + (1 + 1/m) B, and the
    Barnard-Rubin (1999) degrees of freedom for the t interval."""
    m = len(estimates)
    q, w, b = float(np.mean(estimates)), float(np.mean(variances)), float(np.var(estimates, ddof=1))
    t = w + (1 + 1 / m) * b
    lam = (1 + 1 / m) * b / t if t > 0 else 0.0
    nu_old = (m - 1) / lam ** 2 if lam > 0 else math.inf
    nu_obs = (df_complete + 1) / (df_complete + 3) * df_complete * (1 - lam)
    nu = 1 / (1 / nu_old + 1 / nu_obs) if nu_obs > 0 else nu_old
    half = float(sps.t.ppf(0.975, nu)) * math.sqrt(t)
    return {"estimate": q, "ci_low": q - half, "ci_high": q + half, "p": float(2 * sps.t.sf(abs(q) / math.sqrt(t), nu)),
            "se": math.sqrt(t), "within": w, "between": b, "df": nu, "fmi": lam}


def imputed_sets(frame: pd.DataFrame, m: int = IMPUTATIONS, seed: int = 20240, donors: int = 5) -> list[pd.DataFrame]:
    """``m`` completed copies of ``frame`` (numeric columns) by chained equations with predictive mean matching, as
    R's mice does it (van Buuren 2018, algorithm 3.3): each incomplete column in turn is regressed on all the others
    (their current imputations included) by least squares; the coefficients are drawn from their posterior; each
    missing value takes the observed value of one of the ``donors`` observed rows whose predicted value (at the
    least-squares fit) is nearest its own (at the drawn coefficients).  BURN_IN cycles before the first set,
    BETWEEN cycles between two sets.  Plain numpy (statsmodels' MICEData builds a formula at every step, 40 times
    slower) and seeded: the report is the same every time it is made."""
    rng = np.random.default_rng(seed)
    x = frame.to_numpy(dtype=float, copy=True)
    miss = np.isnan(x)
    incomplete = [j for j in range(x.shape[1]) if miss[:, j].any() and (~miss[:, j]).sum() >= 2]
    for j in incomplete:  # start from random draws of the observed values
        x[miss[:, j], j] = rng.choice(x[~miss[:, j], j], miss[:, j].sum())
    sets = []
    for i in range(m):
        for _ in range(BURN_IN if i == 0 else BETWEEN):
            for j in incomplete:
                _pmm_step(x, miss[:, j], j, rng, donors)
        sets.append(pd.DataFrame(x.copy(), index=frame.index, columns=frame.columns))
    return sets


def _pmm_step(x: np.ndarray, missing: np.ndarray, j: int, rng: np.random.Generator, donors: int) -> None:
    obs_rows, missing_rows = np.flatnonzero(~missing), np.flatnonzero(missing)
    ao, yo = _predictors(x, obs_rows, j)
    xtx_inv = np.linalg.pinv(ao.T @ ao)
    beta = xtx_inv @ (ao.T @ yo)
    df = max(len(obs_rows) - ao.shape[1], 1)
    resid = yo - ao @ beta
    sigma2 = float(resid @ resid) / rng.chisquare(df)
    cov = sigma2 * xtx_inv
    drawn = beta + rng.multivariate_normal(np.zeros(len(beta)), cov, method="svd")
    fitted, wanted = ao @ beta, _predictors(x, missing_rows, j)[0] @ drawn
    order = np.argsort(fitted)  # the nearest donors lie within `donors` places of where each fits
    ranked = fitted[order]
    at = np.searchsorted(ranked, wanted)
    window = np.clip(at[:, None] + np.arange(-donors, donors)[None, :], 0, len(ranked) - 1)
    closest = np.argsort(np.abs(ranked[window] - wanted[:, None]), axis=1)[:, :donors]
    nearest = np.take_along_axis(window, closest, axis=1)
    pick = nearest[np.arange(len(wanted)), rng.integers(0, nearest.shape[1], len(wanted))]
    x[missing_rows, j] = yo[order[pick]]


def _predictors(x: np.ndarray, rows: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray]:
    """The intercept and every column but ``j`` of ``rows`` (C-ordered, as np.column_stack builds it), and column
    ``j``, from one gather of the rows."""
    xr = np.take(x, rows, axis=0)
    a = np.empty_like(xr)
    a[:, 0] = 1.0
    a[:, 1:j + 1] = xr[:, :j]
    a[:, j + 1:] = xr[:, j + 1:]
    return a, np.ascontiguousarray(xr[:, j])


def _slope(data: pd.DataFrame, outcome: str, predictors: list[str]) -> tuple[float, float, int]:
    """The alliance's least-squares coefficient and its HC3 variance (as statsmodels' OLS(...).fit(cov_type="HC3")),
    in numpy: the tipping-point search fits this model a few hundred times."""
    x = np.column_stack([np.ones(len(data)), data[predictors].to_numpy(float)])
    y = data[outcome].to_numpy(float)
    xtx_inv = np.linalg.pinv(x.T @ x)
    beta = xtx_inv @ x.T @ y
    e = y - x @ beta
    h = np.einsum("ij,jk,ik->i", x, xtx_inv, x)
    meat = (x * (e / (1 - h))[:, None] ** 2).T @ x
    cov = xtx_inv @ meat @ xtx_inv
    return float(beta[1]), float(cov[1, 1]), int(len(y) - x.shape[1])


def mice(rows: pd.DataFrame, outcome: str, covariates: list[str], categorical: set[str], sd: float,
         auxiliary: pd.DataFrame | None = None, m: int = IMPUTATIONS) -> dict[str, Any]:
    """The primary model (``outcome`` on alliance per ``sd`` and ``covariates``) on ``m`` imputed data sets,
    pooled by Rubin's rules, with the tipping-point analysis.  ``rows``: one per participant targeted at the
    primary time point with an alliance rating (answered or not); ``auxiliary``: other columns that help predict the
    missing answers (the answers at the other time points), aligned with ``rows``, used in the imputation models
    only."""
    name = f"Multiple imputation by chained equations ({m} imputations, predictive mean matching), Rubin's rules"
    frame = pd.DataFrame({"y": _num(rows[outcome]), "alliance": _num(rows["alliance_mean"])}, index=rows.index)
    frame = frame.join(numeric_frame(rows, covariates, categorical))
    predictors = ["alliance_sd"] + [c for c in frame.columns if c not in ("y", "alliance")]
    if auxiliary is not None:
        frame = frame.join(auxiliary.loc[:, auxiliary.notna().sum() >= 10].add_prefix("aux_"))
    frame = frame[frame["alliance"].notna()]
    missing = frame["y"].isna()
    base = {"test": name, "n": int(len(frame)), "n_imputed": int(missing.sum()), "imputations": m,
            "outcome": outcome, "scale": "points per SD of alliance"}
    if len(frame) < 10 or (~missing).sum() < 10 or not missing.any():
        return {**base, "estimate": None, "ci_low": None, "ci_high": None, "p": None, "tipping_point": None}
    frame = frame.loc[:, frame.notna().sum() >= 2]
    sets = imputed_sets(frame, m)
    fits, completed = [], []
    for data in sets:
        data = data.assign(alliance_sd=(data["alliance"] - data["alliance"].mean()) / sd)
        completed.append(data)
        fits.append(_slope(data, "y", predictors))
    est, var, dfc = (np.array(v, dtype=float) for v in zip(*fits))
    pooled = rubin(est, var, float(dfc[0]))
    out = {**base, **{k: pooled[k] for k in ("estimate", "ci_low", "ci_high", "p", "df", "fmi")},
           "interval": "t, Rubin's rules (Barnard-Rubin df), HC3 SE within each imputed set"}
    out["tipping_point"] = tipping_point(completed, missing.to_numpy(), predictors, pooled)
    return out


def tipping_point(completed: list[pd.DataFrame], missing: np.ndarray, predictors: list[str],
                  pooled: dict[str, float]) -> dict[str, Any]:
    """Shift every imputed answer by ``delta`` x (its alliance in SD): non-responders' answers less associated with
    the alliance than MAR predicts (toward no association, the direction that would undo the conclusion), and
    find the shift (to 0.01 point per SD, up to DELTA_MAX) at which the pooled 95% CI changes side of 0 (or starts
    to exclude 0 when the primary interval includes it).  The pooled estimate moves linearly with the shift."""
    excludes = pooled["ci_low"] > 0 or pooled["ci_high"] < 0
    sign = -1.0 if pooled["estimate"] > 0 else 1.0
    if not excludes:  # how far toward a clearer association before the data would show one
        sign = -sign

    # Least squares is linear in y: with y + delta s (s = the shift's direction on the imputed rows), the
    # coefficient is b_y + delta b_s and the residuals e_y + delta e_s, so every delta costs a few vector operations.
    parts = []
    for data in completed:
        x = np.column_stack([np.ones(len(data)), data[predictors].to_numpy(float)])
        xtx_inv = np.linalg.pinv(x.T @ x)
        row = (xtx_inv @ x.T)[1]  # the alliance's coefficient as a weighted sum of y
        h = np.einsum("ij,jk,ik->i", x, xtx_inv, x)
        y = data["y"].to_numpy(float)
        shift = np.where(missing, sign * data["alliance_sd"].to_numpy(float), 0.0)
        resid = [v - x @ (xtx_inv @ (x.T @ v)) for v in (y, shift)]
        parts.append((row, h, row @ y, row @ shift, resid[0], resid[1], len(y) - x.shape[1]))

    def pooled_at(delta: float) -> dict[str, float]:
        est = np.array([by + delta * bs for _, _, by, bs, _, _, _ in parts])
        var = np.array([float(((row * (ey + delta * es) / (1 - h)) ** 2).sum()) for row, h, _, _, ey, es, _ in parts])
        return rubin(est, var, float(parts[0][6]))

    def side(p: dict[str, float]) -> int:  # 1: the interval above 0, -1: below, 0: it includes 0
        return 1 if p["ci_low"] > 0 else -1 if p["ci_high"] < 0 else 0

    start = side(pooled)

    def changed(p: dict[str, float]) -> bool:  # monotone in the shift: above 0, then including it, then below
        return side(p) != start

    base = {"direction": "weaker" if excludes else "stronger", "searched_up_to": DELTA_MAX}
    if not changed(pooled_at(DELTA_MAX)):
        return {**base, "delta": None, "reached": False}
    low, high = 0.0, DELTA_MAX
    while high - low > 0.01:
        mid = (low + high) / 2
        low, high = (low, mid) if changed(pooled_at(mid)) else (mid, high)
    p = pooled_at(high)
    return {**base, "delta": sign * round(high, 2), "reached": True, "estimate": p["estimate"],
            "ci_low": p["ci_low"], "ci_high": p["ci_high"]}


# -- inverse-probability-of-response weights ------------------------------------------------------------------------
def response_weights(rows: pd.DataFrame, covariates: list[str], categorical: set[str],
                     sd: float) -> tuple[pd.Series, dict[str, Any]]:
    """Stabilised weights P(answered) / P(answered | alliance, covariates) for the responders of ``rows`` (one row
    per participant targeted at the primary time point, ``responded`` 0/1), truncated at the TRUNCATE_AT quantile,
    and their diagnostics.  When the model with covariates cannot be fitted, the alliance alone is used and the
    diagnostics say so (``fallback``)."""
    import statsmodels.api as sm

    x = pd.DataFrame({"alliance_sd": _num(rows["alliance_mean"])}, index=rows.index)
    x["alliance_sd"] = (x["alliance_sd"] - x["alliance_sd"].mean()) / sd
    covs = numeric_frame(rows, covariates, categorical)
    data = x.join(covs).assign(r=_num(rows["responded"])).dropna()
    model_terms = ["alliance_sd", *covs.columns]
    fallback = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = sm.Logit(data["r"], sm.add_constant(data[model_terms], has_constant="add")).fit(disp=False)
            fitted = fit.predict()
            if not np.all(np.isfinite(fit.bse)) or not fit.mle_retvals.get("converged", True):
                raise np.linalg.LinAlgError("the response model did not converge")
            if fitted.min() < 1e-6 or fitted.max() > 1 - 1e-6:
                raise np.linalg.LinAlgError("the response model separates responders from non-responders")
        except Exception as exc:  # separation, a singular design
            fallback = f"{type(exc).__name__}: {exc}"
            data = x.assign(r=_num(rows["responded"])).dropna()
            model_terms = ["alliance_sd"]
            fit = sm.Logit(data["r"], sm.add_constant(data[model_terms], has_constant="add")).fit(disp=False)
    p = fit.predict(sm.add_constant(data[model_terms], has_constant="add"))
    responders = data["r"] == 1
    stabilised = (data["r"].mean() / p)[responders]
    cap = float(stabilised.quantile(TRUNCATE_AT))
    weights = stabilised.clip(upper=cap)
    balance = _balance(data, [c for c in data.columns if c != "r"], weights)
    info = {"response_model": ("answered the outcome at the primary time point ~ alliance"
                               + (" + " + ", ".join(c for c in covariates if c in rows and rows[c].notna().any())
                                  if fallback is None and len(model_terms) > 1 else "")),
            "fallback": fallback, "stabilised": True, "truncated_at_quantile": TRUNCATE_AT,
            "truncated_at": cap, "n_truncated": int((stabilised > cap).sum()),
            "largest": float(weights.max()), "smallest": float(weights.min()), "mean": float(weights.mean()),
            "ess": float(weights.sum() ** 2 / (weights ** 2).sum()), "n_responders": int(responders.sum()),
            "n_modelled": int(len(data)), "balance": balance,
            "max_abs_smd_before": max((abs(b["before"]) for b in balance), default=None),
            "max_abs_smd_after": max((abs(b["after"]) for b in balance), default=None)}
    return weights.reindex(rows.index), info


def _balance(data: pd.DataFrame, columns: list[str], weights: pd.Series) -> list[dict[str, Any]]:
    """Standardized differences between the responders (unweighted: before; weighted: after) and everyone
    modelled (the population the weights stand for), in SDs of everyone modelled."""
    out = []
    resp = data.loc[weights.index]
    for c in columns:
        sd = data[c].std()
        if not sd > 0:
            continue
        target = data[c].mean()
        before = (resp[c].mean() - target) / sd
        after = (float(np.average(resp[c], weights=weights)) - target) / sd
        out.append({"variable": "alliance" if c == "alliance_sd" else c, "before": float(before),
                    "after": float(after)})
    return out
