"""The alliance during treatment, for the report (issue 26): its course over treatment weeks, and whether the
in-treatment slope predicts 30-day self-efficacy beyond the discharge rating.  Pure functions on the export's
check-in companion (:mod:`analysis.checkins`) and the linked dataset; the report's section is still to be written.

Sample-size rule: a model is fitted only with at least ``MIN_PARTICIPANTS`` participants who have
``MIN_CHECKINS`` or more check-ins during treatment (tablet or SMS; a discharge file's own rating, method
``import``, is not part of the course)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

MIN_PARTICIPANTS = 30
MIN_CHECKINS = 3
Z95 = 1.959963984540054


def _clean(x: Any) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def course_data(checkins: pd.DataFrame) -> pd.DataFrame:
    """The in-treatment check-ins with a mean, of participants with enough of them (one stay each: the first)."""
    d = checkins[checkins["method"].astype(str) != "import"].copy()
    d = d[pd.to_numeric(d["checkin_mean"], errors="coerce").notna()]
    d = d[d["episode"] == d.groupby("participant")["episode"].transform("min")]
    counts = d.groupby("participant")["checkin_mean"].transform("size")
    out = d[counts >= MIN_CHECKINS]
    return pd.DataFrame({"participant": out["participant"].astype(str),
                         "week": pd.to_numeric(out["treatment_week"]).astype(float),
                         "mean": pd.to_numeric(out["checkin_mean"]).astype(float)}).reset_index(drop=True)


def alliance_course(checkins: pd.DataFrame) -> dict[str, Any]:
    """A mixed model of the check-in mean on treatment week, random intercept and slope per participant (REML):
    the average change per week with its Wald 95% interval."""
    data = course_data(checkins)
    people = int(data["participant"].nunique()) if len(data) else 0
    base = {"test": "mixed model, random intercept and slope", "n_participants": people, "n": len(data),
            "min_participants": MIN_PARTICIPANTS, "min_checkins": MIN_CHECKINS}
    if people < MIN_PARTICIPANTS:
        return {**base, "fitted": False, "estimate": None, "ci_low": None, "ci_high": None, "p": None}
    import statsmodels.formula.api as smf
    from scipy import stats as sps

    fit = smf.mixedlm("mean ~ week", data, groups=data["participant"], re_formula="~week").fit(reml=True)
    est, se = float(fit.params["week"]), float(fit.bse["week"])
    return {**base, "fitted": True, "estimate": _clean(est), "ci_low": _clean(est - Z95 * se),
            "ci_high": _clean(est + Z95 * se), "p": _clean(2 * sps.norm.sf(abs(est / se))),
            "scale": "points of alliance (0-6) per treatment week"}


def person_slopes(checkins: pd.DataFrame) -> pd.DataFrame:
    """Each participant's own least-squares slope of the mean on treatment week, and their person mean (the
    between-person part of person-mean centring; each check-in's deviation from it is the within part)."""
    data = course_data(checkins)
    rows = []
    for pid, g in data.groupby("participant"):
        slope = np.polyfit(g["week"], g["mean"], 1)[0] if g["week"].nunique() > 1 else np.nan
        rows.append({"participant": pid, "slope": float(slope), "person_mean": float(g["mean"].mean())})
    return pd.DataFrame(rows, columns=["participant", "slope", "person_mean"])


def slope_predicts_outcome(checkins: pd.DataFrame, linked: pd.DataFrame, timepoint: int = 30) -> dict[str, Any]:
    """Self-efficacy at ``timepoint`` days on the discharge rating and the in-treatment slope (OLS): the slope's
    coefficient (points of self-efficacy per point of alliance a week) beyond the discharge rating.  Each person's
    slope is their own least-squares slope: with few or noisy check-ins it is measured with error and its
    coefficient is diluted towards zero (a joint model would not be; not done yet)."""
    slopes = person_slopes(checkins).dropna()
    outcome = linked[(linked["timepoint_days"] == timepoint)][["participant", "self_efficacy", "alliance_mean"]]
    outcome = outcome.assign(participant=outcome["participant"].astype(str))
    data = slopes.merge(outcome, on="participant").dropna(subset=["self_efficacy", "alliance_mean", "slope"])
    base = {"test": f"OLS, self-efficacy at {timepoint} days on discharge alliance + in-treatment slope",
            "n": len(data), "min_participants": MIN_PARTICIPANTS}
    if len(data) < MIN_PARTICIPANTS:
        return {**base, "fitted": False, "estimate": None, "ci_low": None, "ci_high": None, "p": None}
    import statsmodels.api as sm

    X = sm.add_constant(data[["alliance_mean", "slope"]].astype(float))
    fit = sm.OLS(data["self_efficacy"].astype(float), X).fit()
    low, high = fit.conf_int().loc["slope"]
    return {**base, "fitted": True, "estimate": _clean(fit.params["slope"]), "ci_low": _clean(low),
            "ci_high": _clean(high), "p": _clean(fit.pvalues["slope"]),
            "discharge_estimate": _clean(fit.params["alliance_mean"])}
