"""The random intercept and slope model fitted per pattern of times agrees with statsmodels' MixedLM (REML) fitted
on the same data to a tight tolerance: fixed effects, their model SEs, the variance components, the Hessian; and
the robust SE with the sandwich summed participant by participant."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from statsmodels.regression.mixed_linear_model import MixedLM

from analysis import mixed_slope
from analysis import stats as st


def simulated(n: int, seed: int, slope_sd: float = 1.0, missing: float = 0.3):
    """``n`` participants at four time points (years since the first), about ``missing`` of the answers absent
    (so the patterns of times differ), rows shuffled."""
    rng = np.random.default_rng(seed)
    years = np.array([0, 60, 150, 335]) / 365
    g, t = np.repeat(np.arange(n), 4), np.tile(years, n)
    u0, u1 = rng.normal(0, 1.5, n)[g], rng.normal(0, slope_sd, n)[g]
    a, age = rng.normal(size=n)[g], rng.integers(20, 70, n)[g].astype(float)
    x = np.column_stack([np.ones(len(g)), a, (t > 0.1) * 1.0, a * (t > 0.1), (t > 0.3) * 1.0, age])
    y = x @ np.array([5, 0.8, 0.3, -0.2, 0.1, 0.01]) + u0 + u1 * t + rng.normal(0, 1, len(g))
    keep = rng.permutation(np.flatnonzero(rng.random(len(g)) > missing))
    return y[keep], x[keep], np.char.add("p", g[keep].astype(str)), t[keep]


def rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.abs(b)))


@pytest.mark.parametrize("n, seed", [(150, 1), (300, 1)])
def test_the_fit_agrees_with_mixedlm(n, seed):
    y, x, g, t = simulated(n, seed)
    mine = mixed_slope.fit(x, y, g, t)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = MixedLM(y, x, groups=g, exog_re=np.column_stack([np.ones(len(y)), t])).fit(
            reml=True, method=["bfgs"], gtol=1e-10)
    assert mine["converged"]  # MixedLM's BFGS rarely meets so tight a gradient tolerance, but gets close
    assert rel(mine["params"], ref.fe_params) < 1e-6
    assert rel(np.sqrt(np.diag(np.linalg.inv(-mine["hessian"])))[:x.shape[1]], ref.bse_fe) < 1e-6
    assert np.abs(mine["cov_re"] - ref.cov_re).max() < 1e-6 * np.abs(ref.cov_re).max()
    assert rel(mine["scale"], ref.scale) < 1e-6
    assert rel(mine["hessian"], ref.model.hessian(ref.params_object)[0]) < 1e-5


def test_the_robust_se_sums_each_participant():
    y, x, g, t = simulated(200, 7)
    fit = st.random_slope_reml(y, x, g, t)["fit"]
    mine = mixed_slope.fit(x, y, g, t)
    cov_re, scale, beta = mine["cov_re"], mine["scale"], mine["params"]
    bread, meat = np.zeros((6, 6)), np.zeros((6, 6))
    for label in np.unique(g):
        rows = g == label
        z = np.column_stack([np.ones(rows.sum()), t[rows]])
        v_inv = np.linalg.inv(z @ cov_re @ z.T + scale * np.eye(rows.sum()))
        bread += x[rows].T @ v_inv @ x[rows]
        u = x[rows].T @ v_inv @ (y[rows] - x[rows] @ beta)
        meat += np.outer(u, u)
    k = len(np.unique(g))
    robust = k / (k - 1) * np.linalg.inv(bread) @ meat @ np.linalg.inv(bread)
    assert fit["robust_bse"] == pytest.approx(np.sqrt(np.diag(robust)), rel=1e-10)


def test_no_slope_variance_falls_back():
    """Without a random slope in the data the slope variance goes to its boundary: no fit, and the reason."""
    y, x, g, t = simulated(300, 2, slope_sd=0.0)
    out = st.random_slope_reml(y, x, g, t)
    assert out["fit"] is None and "boundary" in out["reason"]
