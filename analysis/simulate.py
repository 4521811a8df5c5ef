"""Simulated cohorts with a known effect of alliance on each outcome and on response.

``cohort`` returns a DataFrame in the linked dataset's format, so the whole
analysis pipeline can be checked against the truth it was built from.  The
effects are per standard deviation of the alliance mean score (a ceiling at
6 included): ``or_efficacy`` on self-efficacy 8+, ``or_health`` on each
health rating (proportional odds), ``or_response`` on answering at all.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from outreach.study.waves import Outcome

from .dataset import assign_tertiles, tertile_cuts


def _alliance(rng: np.random.Generator, n: int) -> np.ndarray:
    items = np.clip(np.rint(rng.normal(5.1, 0.9, (n, 1)) + rng.normal(0, 0.6, (n, 6))), 0, 6)
    return items


# Population mean and SD of the alliance mean score under ``_alliance`` (from 200,000 draws).
_POP = _alliance(np.random.default_rng(12345), 200_000).mean(axis=1)
POP_MEAN, POP_SD = float(_POP.mean()), float(_POP.std())


def cohort(n: int = 400, seed: int = 0, *, or_efficacy: float = 2.0, or_health: float = 1.5,
           or_response: float = 1.3, base_response: float = 0.7, timepoints: tuple[int, ...] = (30,),
           age_or_efficacy: float = 1.0, age_or_response: float = 1.0, outcome_or_response: float = 1.0,
           person_sd: float = 0.0) -> pd.DataFrame:
    """``age_or_*``: odds ratios per SD of age (an ``age`` column is added when either is not 1) on self-efficacy
    8+ and on answering (a confounder of the response, missing at random given age); ``outcome_or_response``: the
    odds ratio of answering for a high self-efficacy (missing not at random); ``person_sd``: the SD of a
    participant's own level on the logit of self-efficacy 8+, shared by every time point (correlated answers)."""
    rng = np.random.default_rng(seed)
    items = _alliance(rng, n)
    mean = items.mean(axis=1)
    z = (mean - POP_MEAN) / POP_SD
    with_age = age_or_efficacy != 1.0 or age_or_response != 1.0
    age_z = rng.standard_normal(n) if with_age else np.zeros(n)
    own = rng.normal(0, person_sd, n) if person_sd else np.zeros(n)
    rows = []
    for tp in timepoints:
        logit_r = (np.log(base_response / (1 - base_response)) + np.log(or_response) * z
                   + np.log(age_or_response) * age_z)
        responded = rng.random(n) < 1 / (1 + np.exp(-logit_r))
        high = rng.random(n) < 1 / (1 + np.exp(-(0.0 + np.log(or_efficacy) * z + np.log(age_or_efficacy) * age_z
                                                  + own)))
        if outcome_or_response != 1.0:  # answering depends on the answer itself
            again = rng.random(n) < 1 / (1 + np.exp(-(logit_r + np.log(outcome_or_response) * high)))
            responded = again
        efficacy = np.where(high, rng.integers(8, 11, n), rng.integers(0, 8, n)).astype(float)
        health = {}
        for key in ("mental_health", "physical_health"):
            latent = np.log(or_health) * z + rng.logistic(size=n)
            health[key] = np.digitize(latent, [-1.5, -0.5, 0.5, 1.5]) + 1.0  # 1 poor .. 5 excellent
        frame = pd.DataFrame({
            "participant": [f"S{seed:03d}{i:05d}" for i in range(n)], "timepoint_days": tp,
            "responded": responded.astype(int),
            "self_efficacy": np.where(responded, efficacy, np.nan),
            "mental_health": np.where(responded, health["mental_health"], np.nan),
            "physical_health": np.where(responded, health["physical_health"], np.nan),
        })
        if with_age:
            frame["age"] = np.rint(45 + 15 * age_z)
        for i in range(6):
            frame[f"alliance_{i + 1}"] = items[:, i]
        frame["alliance_mean"] = mean
        rows.append(frame)
    df = pd.concat(rows, ignore_index=True)
    df["status"] = np.where(df["responded"] == 1, Outcome.COMPLETED, Outcome.NO_REPLY)
    df["self_efficacy_high"] = (df["self_efficacy"] >= 8).astype(float).where(df["self_efficacy"].notna())
    df["mental_health_high"] = (df["mental_health"] >= 4).astype(float).where(df["mental_health"].notna())
    df["physical_health_high"] = (df["physical_health"] >= 4).astype(float).where(df["physical_health"].notna())
    per = df.drop_duplicates("participant")["alliance_mean"]
    df["alliance_tertile"] = assign_tertiles(df["alliance_mean"], tertile_cuts(per))
    return df
