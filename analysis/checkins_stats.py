"""The alliance during treatment, for the report (issue 26): its course over treatment weeks, and whether the
in-treatment slope predicts 30-day self-efficacy beyond the discharge rating.  Pure functions on the export's
check-in companion (:mod:`analysis.checkins`) and the linked dataset; the report's section is built from them by
:func:`analysis.results.checkins_tree`.

Sample-size rule: a model is fitted only with at least ``MIN_PARTICIPANTS`` participants who have
``MIN_CHECKINS`` or more check-ins during treatment (tablet or SMS; a discharge file's own rating, method
``import``, is not part of the course)."""
from __future__ import annotations

import math
import warnings
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
                         "episode": pd.to_numeric(out["episode"]).astype(int),
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

    fit, notes = _fit(smf.mixedlm("mean ~ week", data, groups=data["participant"], re_formula="~week"))
    est, se = float(fit.params["week"]), float(fit.bse["week"])
    return {**base, "fitted": True, "estimate": _clean(est), "ci_low": _clean(est - Z95 * se),
            "ci_high": _clean(est + Z95 * se), "p": _clean(2 * sps.norm.sf(abs(est / se))),
            "scale": "points of alliance (0-6) per treatment week", "warnings": notes}


def _fit(model):
    """REML fit, its warnings kept as words (statsmodels' "on the boundary" test is a variance under 0.01, which a
    slope per week's variance often is without being zero)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = model.fit(reml=True)
    return fit, sorted({str(w.message) for w in caught})


def person_slopes(checkins: pd.DataFrame) -> pd.DataFrame:
    """Each participant's own least-squares slope of the mean on treatment week, and their person mean (the
    between-person part of person-mean centring; each check-in's deviation from it is the within part)."""
    data = course_data(checkins)
    rows = []
    for (pid, episode), g in data.groupby(["participant", "episode"]):
        slope = np.polyfit(g["week"], g["mean"], 1)[0] if g["week"].nunique() > 1 else np.nan
        rows.append({"participant": pid, "episode": episode, "slope": float(slope),
                     "person_mean": float(g["mean"].mean())})
    return pd.DataFrame(rows, columns=["participant", "episode", "slope", "person_mean"])


def slope_predicts_outcome(checkins: pd.DataFrame, linked: pd.DataFrame, timepoint: int = 30) -> dict[str, Any]:
    """Self-efficacy at ``timepoint`` days on the discharge rating and the in-treatment slope (OLS): the slope's
    coefficient (points of self-efficacy per point of alliance a week) beyond the discharge rating.  Each person's
    slope is their own least-squares slope: with few or noisy check-ins it is measured with error and its
    coefficient is diluted towards zero (a joint model would not be; not done yet)."""
    slopes = person_slopes(checkins).dropna()
    on = ["participant", "episode"] if "episode" in linked.columns else ["participant"]  # the same stay's outcome
    outcome = linked[(linked["timepoint_days"] == timepoint)][[*on, "self_efficacy", "alliance_mean"]]
    outcome = outcome.assign(participant=outcome["participant"].astype(str))
    if "episode" in on:
        outcome = outcome.assign(episode=pd.to_numeric(outcome["episode"]).astype(int))
    data = slopes.merge(outcome, on=on).dropna(subset=["self_efficacy", "alliance_mean", "slope"])
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


def within_between(checkins: pd.DataFrame) -> dict[str, Any]:
    """Within- versus between-person effects of treatment week by person-mean centring: the check-in mean on each
    check-in's week minus its participant's mean week (within: a participant's own change per week) and the
    participant's mean week (between: participants checked in later in their stay, e.g. longer stays, rating
    differently), random intercept and within-slope per participant (REML).  A between estimate unlike the within
    one says the average course mixes who stays with how the alliance changes."""
    data = course_data(checkins)
    people = int(data["participant"].nunique()) if len(data) else 0
    base = {"test": "mixed model, person-mean-centred week, random intercept and within slope",
            "n_participants": people, "n": len(data)}
    empty = {"estimate": None, "ci_low": None, "ci_high": None, "p": None}
    if people < MIN_PARTICIPANTS:
        return {**base, "fitted": False, "within": dict(empty), "between": dict(empty)}
    import statsmodels.formula.api as smf
    from scipy import stats as sps

    data = data.assign(week_between=data.groupby("participant")["week"].transform("mean"))
    data = data.assign(week_within=data["week"] - data["week_between"])
    fit, notes = _fit(smf.mixedlm("mean ~ week_within + week_between", data, groups=data["participant"],
                                  re_formula="~week_within"))
    out = {}
    for part in ("within", "between"):
        est, se = float(fit.params[f"week_{part}"]), float(fit.bse[f"week_{part}"])
        out[part] = {"estimate": _clean(est), "ci_low": _clean(est - Z95 * se), "ci_high": _clean(est + Z95 * se),
                     "p": _clean(2 * sps.norm.sf(abs(est / se)))}
    return {**base, "fitted": True, **out, "scale": "points of alliance (0-6) per treatment week", "warnings": notes}


def description(checkins: pd.DataFrame) -> dict[str, Any]:
    """Counts for the report: participants and check-ins during treatment (first stay), those in the course (3 or
    more check-ins) and, per treatment week of the course, its check-ins and their mean."""
    d = checkins[checkins["method"].astype(str) != "import"]
    d = d[pd.to_numeric(d["checkin_mean"], errors="coerce").notna()]
    d = d[d["episode"] == d.groupby("participant")["episode"].transform("min")]
    data = course_data(checkins)
    weeks = [{"week": int(w), "n": len(g), "mean": float(g["mean"].mean())}
             for w, g in data.groupby("week")] if len(data) else []
    return {"participants": int(d["participant"].nunique()), "checkins": len(d),
            "participants_course": int(data["participant"].nunique()) if len(data) else 0,
            "checkins_course": len(data), "weeks": weeks}
