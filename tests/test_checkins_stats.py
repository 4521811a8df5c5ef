"""Issue 26, part 6 (the statistics): a simulated cohort with a known in-treatment slope, and a known effect of
that slope on 30-day self-efficacy beyond the discharge rating, is recovered; below the sample-size rule nothing
is fitted."""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.checkins_stats import MIN_PARTICIPANTS, alliance_course, person_slopes, slope_predicts_outcome

TRUE_SLOPE = 0.06  # points of alliance a week
TRUE_EFFECT = 15.0  # points of self-efficacy per point a week of slope


def cohort(people: int, weeks: int = 16, seed: int = 26, noise: float = 0.1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``people`` with weekly check-ins for ``weeks``; each person's own slope is measured well (16 weeks, noise
    0.1), so the slope's effect is not diluted by its measurement error."""
    rng = np.random.default_rng(seed)
    rows, outcomes = [], []
    for i in range(people):
        pid = f"p{i:03d}"
        intercept = 4.2 + rng.normal(0, 0.5)
        slope = TRUE_SLOPE + rng.normal(0, 0.03)
        means = [intercept + slope * w + rng.normal(0, noise) for w in range(1, weeks + 1)]
        for w, m in enumerate(means, 1):
            rows.append({"participant": pid, "episode": 1, "treatment_week": w, "method": "tablet",
                         "checkin_mean": round(m, 4)})
        rows.append({"participant": pid, "episode": 1, "treatment_week": weeks + 1, "method": "import",
                     "checkin_mean": 0.0})  # a discharge file's rating: not part of the course
        discharge = means[-1]
        outcomes.append({"participant": pid, "timepoint_days": 30, "alliance_mean": discharge,
                         "self_efficacy": 2 + 0.8 * discharge + TRUE_EFFECT * slope + rng.normal(0, 0.3)})
    return pd.DataFrame(rows), pd.DataFrame(outcomes)


def test_the_course_and_the_slopes_effect_are_recovered_from_a_simulated_cohort():
    checkins, linked = cohort(60)
    course = alliance_course(checkins)
    assert course["fitted"] and course["n_participants"] == 60 and course["n"] == 960
    assert course["ci_low"] < TRUE_SLOPE < course["ci_high"] and abs(course["estimate"] - TRUE_SLOPE) < 0.02
    effect = slope_predicts_outcome(checkins, linked)
    assert effect["fitted"] and effect["ci_low"] < TRUE_EFFECT < effect["ci_high"]
    slopes = person_slopes(checkins)
    assert abs(slopes["slope"].mean() - TRUE_SLOPE) < 0.02  # independently: each person's own slope, averaged


def test_nothing_is_fitted_below_the_sample_size_rule():
    checkins, linked = cohort(MIN_PARTICIPANTS - 1)
    assert alliance_course(checkins)["fitted"] is False
    assert slope_predicts_outcome(checkins, linked)["fitted"] is False
    few, _ = cohort(40, weeks=2)  # two check-ins each: not enough to have a course
    assert alliance_course(few)["n_participants"] == 0
