"""Issue 26, the report's section on the alliance during treatment: a simulated cohort with a known in-treatment
slope and a known effect of that slope on 30-day self-efficacy, written as the export's two files (the main file
and its ``*.alliance_checkins.*`` companion) and reported; every number of the section is recomputed from the two
CSV files with statsmodels alone (no analysis function is called for it), the known effects are recovered, small
counts are suppressed, and a report without check-ins is unchanged."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats as sps

from analysis.checkins import CONTRACT, UNIT
from analysis.export import write
from analysis.report import write_report
from tests.test_report_recompute import study

TRUE_SLOPE = 0.06  # points of alliance a week
TRUE_EFFECT = 20.0  # points of self-efficacy per point a week of slope
ITERATIVE = 1e-4


def checkins_for(df: pd.DataFrame, seed: int = 26, weeks: int = 12, people: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Weekly check-ins (and the discharge file's own rating, method import) for the first stay of ``people``
    participants, and ``df`` with their 30-day self-efficacy made to depend on their slope."""
    rng = np.random.default_rng(seed)
    ids = df.loc[df["episode"] == 1, "participant"].drop_duplicates().tolist()[:people]
    df = df.copy()
    rows = []
    for pid in ids:
        intercept, slope = 4.2 + rng.normal(0, 0.5), TRUE_SLOPE + rng.normal(0, 0.03)
        # a tenth have too few check-ins for the course; the others enough for their own slope to be measured
        # well (a slope from few or noisy check-ins dilutes its coefficient towards zero)
        n_weeks = 2 if rng.random() < 0.1 else int(rng.integers(weeks - 2, weeks + 1))
        for w in range(1, n_weeks + 1):
            items = np.clip(np.round(intercept + slope * w + rng.normal(0, 0.05), 4) + np.zeros(6), 0, 6)
            rows.append({"participant": pid, "episode": 1, "treatment_week": w, "days_since_admission": 7 * w - 1,
                         "days_before_discharge": 7 * (n_weeks - w) + 1, "method": rng.choice(["tablet", "sms"]),
                         **{f"checkin_{i}": None for i in range(1, 7)}, "checkin_mean": float(items.mean()),
                         "checkin_bond": float(items.mean()), "checkin_goal_task": float(items.mean())})
        rows.append({**rows[-1], "method": "import", "checkin_mean": 6.0})  # not part of the course
        at = (df["participant"] == pid) & (df["episode"] == 1) & (df["timepoint_days"] == 30) \
            & df["self_efficacy"].notna()
        df.loc[at, "self_efficacy"] = 2 + 0.8 * df.loc[at, "alliance_mean"] + TRUE_EFFECT * slope \
            + rng.normal(0, 0.5, at.sum())
    return pd.DataFrame(rows, columns=CONTRACT), df


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    out = tmp_path_factory.mktemp("checkins_study")
    checkins, df = checkins_for(study(n=300))
    write(df, out / "results.csv", "csv")
    write(checkins, out / "results.alliance_checkins.csv", "csv", unit=UNIT)
    write_report(df, out / "report", checkins=checkins)
    return (pd.read_csv(out / "results.csv"), pd.read_csv(out / "results.alliance_checkins.csv"),
            json.loads((out / "report" / "stats.json").read_text()), (out / "report" / "report.md").read_text())


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def course_rows(companion: pd.DataFrame) -> pd.DataFrame:
    """Recomputed: in-treatment check-ins (not 'import'), each participant's first stay, 3 or more of them."""
    d = companion[(companion["method"] != "import") & companion["checkin_mean"].notna()]
    d = d[d["episode"] == d.groupby("participant")["episode"].transform("min")]
    return d[d.groupby("participant")["checkin_mean"].transform("size") >= 3]


def reml(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a slope variance under 0.01 is "on the boundary" to statsmodels
        return model.fit(reml=True)


def wald(fit, term: str) -> tuple[float, float, float, float]:
    est, se = float(fit.params[term]), float(fit.bse[term])
    return est, est - 1.959963984540054 * se, est + 1.959963984540054 * se, float(2 * sps.norm.sf(abs(est / se)))


def check(r: dict, numbers: tuple[float, float, float, float]) -> None:
    for k, v in zip(("estimate", "ci_low", "ci_high", "p"), numbers):
        assert rel(r[k], v) < ITERATIVE or abs(r[k] - v) < 1e-12, (k, r[k], v)


def test_the_counts_and_the_course_match_statsmodels_on_the_companion_file(published):
    _, companion, stats, md = published
    c = stats["checkins"]
    treated = companion[companion["method"] != "import"]
    data = course_rows(companion)
    assert c["n"] == len(treated) and c["participants"] == treated["participant"].nunique()
    assert c["n_course"] == len(data) and c["participants_course"] == data["participant"].nunique() >= 30
    assert c["participants_course"] < c["participants"]  # some had too few check-ins
    for w in c["weeks"]:
        at = data[data["treatment_week"] == w["week"]]
        assert w["n"] == len(at) and rel(w["mean"], at["checkin_mean"].mean()) < 1e-9
    fit = reml(smf.mixedlm("checkin_mean ~ treatment_week", data, groups=data["participant"],
                           re_formula="~treatment_week"))
    check(c["course"], wald(fit, "treatment_week"))
    assert c["course"]["ci_low"] < TRUE_SLOPE < c["course"]["ci_high"]
    assert "## The alliance during treatment" in md


def test_within_and_between_person_effects_match_statsmodels(published):
    _, companion, stats, _ = published
    data = course_rows(companion).copy()
    data["between"] = data.groupby("participant")["treatment_week"].transform("mean")
    data["within"] = data["treatment_week"] - data["between"]
    fit = reml(smf.mixedlm("checkin_mean ~ within + between", data, groups=data["participant"],
                           re_formula="~within"))
    wb = stats["checkins"]["within_between"]
    check(wb["within"], wald(fit, "within"))
    check(wb["between"], wald(fit, "between"))


def test_the_slope_predicts_self_efficacy_beyond_the_discharge_rating_as_statsmodels_says(published):
    main, companion, stats, _ = published
    data = course_rows(companion)
    slopes = data.groupby("participant").apply(
        lambda g: np.polyfit(g["treatment_week"], g["checkin_mean"], 1)[0]).rename("slope").reset_index()
    outcome = main[(main["episode"] == 1) & (main["timepoint_days"] == 30)][
        ["participant", "self_efficacy", "alliance_mean"]]
    rows = slopes.merge(outcome, on="participant").dropna()
    fit = smf.ols("self_efficacy ~ alliance_mean + slope", rows).fit()
    s = stats["checkins"]["slope_effect"]
    low, high = fit.conf_int().loc["slope"]
    assert s["n"] == len(rows) and s["fitted"]
    check(s, (fit.params["slope"], low, high, fit.pvalues["slope"]))
    assert s["ci_low"] < TRUE_EFFECT < s["ci_high"]  # the known effect is recovered


def test_a_small_count_is_suppressed_and_below_the_rule_nothing_is_fitted(tmp_path):
    checkins, df = checkins_for(study(n=300), people=4, weeks=4)
    stats = write_report(df, tmp_path, checkins=checkins)
    c = stats["checkins"]
    assert c["participants"] == "<5" and c["course"]["fitted"] is False and c["course"]["estimate"] is None
    assert c["slope_effect"]["fitted"] is False
    for w in c["weeks"]:
        assert w["n"] == "<5" and w["mean"] is None or isinstance(w["n"], int) and w["n"] >= 5
    md = (tmp_path / "report.md").read_text()
    assert "no model is fitted" in md


def test_without_check_ins_the_report_is_unchanged(tmp_path):
    df = study(n=120)
    before = write_report(df, tmp_path / "a")
    after = write_report(df, tmp_path / "b", checkins=pd.DataFrame({c: [] for c in CONTRACT}))
    assert "checkins" not in after and after == before
    assert (tmp_path / "a" / "report.md").read_text() == (tmp_path / "b" / "report.md").read_text()


def test_the_report_command_reads_the_check_ins_from_the_database(tmp_path, run_cli, uow):
    """`outreach report` takes the check-ins beside the linked dataset (one pseudonymising key for both): two
    participants' check-ins are counted, hidden below the threshold, and nothing is fitted."""
    import datetime as dt

    from outreach.study.instrument import load_instrument
    from tests.test_checkins_export import admit_with_checkins

    admitted = dt.date.today() - dt.timedelta(days=40)
    admit_with_checkins(tmp_path, run_cli, uow, admitted, {"X1": "tablet", "X2": "tablet"},
                        [(day, [5, 5, 5, 6, 6, 6]) for day in (6, 13, 20)])
    instrument = load_instrument("alliance6")
    discharges = tmp_path / "discharges.csv"
    discharges.write_text("patient_id,phone,discharge_date,sms_consent," + ",".join(instrument.columns) + "\n"
                          f"X1,416-555-0101,{admitted + dt.timedelta(days=25)},yes,,,,,,\n"
                          f"X2,416-555-0102,{admitted + dt.timedelta(days=25)},yes,,,,,,\n", encoding="utf-8")
    assert run_cli("import-discharges", str(discharges)).exit_code == 0
    result = run_cli("report", "--out", str(tmp_path / "report"))
    assert result.exit_code == 0, result.output
    c = json.loads((tmp_path / "report" / "stats.json").read_text())["checkins"]
    assert c["participants"] == "<5" and c["n"] == 6 and c["course"]["fitted"] is False
    assert "## The alliance during treatment" in (tmp_path / "report" / "report.md").read_text()
