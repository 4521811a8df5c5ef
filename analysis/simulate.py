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
           or_response: float = 1.3, base_response: float = 0.7, timepoints: tuple[int, ...] = (30,)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    items = _alliance(rng, n)
    mean = items.mean(axis=1)
    z = (mean - POP_MEAN) / POP_SD
    rows = []
    for tp in timepoints:
        logit_r = np.log(base_response / (1 - base_response)) + np.log(or_response) * z
        responded = rng.random(n) < 1 / (1 + np.exp(-logit_r))
        high = rng.random(n) < 1 / (1 + np.exp(-(0.0 + np.log(or_efficacy) * z)))
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
