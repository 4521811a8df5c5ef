"""The ordered logit with its analytic score and Hessian agrees with statsmodels' OrderedModel (numerical
derivatives) on simulated data: the derivatives at a point away from the optimum, and the fit (Newton here, BFGS
to a tight tolerance there): estimates and standard errors."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from statsmodels.miscmodels.ordinal_model import OrderedModel

from analysis.ordered_logit import model_class


def simulated(n: int, seed: int):
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"alliance_sd": rng.normal(size=n), "age": rng.integers(20, 70, n).astype(float),
                      "sex_M": (rng.random(n) < 0.4) * 1.0})
    latent = 0.5 * x["alliance_sd"] + 0.02 * x["age"] + 0.3 * x["sex_M"] + rng.logistic(size=n)
    y = pd.Series(pd.Categorical(np.digitize(latent, [0.5, 1.2, 2, 3]) + 1, ordered=True))
    return y, x


def rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.abs(b)))


def test_the_derivatives_are_statsmodels_numerical_ones():
    y, x = simulated(500, 1)
    mine, ref = model_class()(y, x, distr="logit"), OrderedModel(y, x, distr="logit")
    point = ref.start_params + 0.1
    assert rel(mine.score(point), ref.score(point)) < 1e-6
    h, h_ref = mine.hessian(point), ref.hessian(point)
    assert np.abs(h - h_ref).max() < 1e-6 * np.abs(h_ref).max()
    assert mine.loglike(point) == ref.loglike(point)


@pytest.mark.parametrize("n, seed", [(500, 1), (2000, 2)])
def test_the_fit_agrees_with_ordered_model(n, seed):
    y, x = simulated(n, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mine = model_class()(y, x, distr="logit").fit(method="newton", disp=False, maxiter=100)
        ref = OrderedModel(y, x, distr="logit").fit(method="bfgs", disp=False, maxiter=5000, gtol=1e-9)
    assert mine.mle_retvals["converged"]
    assert rel(mine.params, ref.params) < 1e-6
    assert rel(mine.bse, ref.bse) < 1e-5  # OrderedModel's Hessian is a finite difference


def test_a_nearly_separated_small_sample_still_gets_the_fit_ordered_model_would_give():
    """12 answers whose categories the alliance almost separates: Newton fails there (a singular Hessian or no
    convergence), and the fit falls back to BFGS, as OrderedModel fits by default, instead of failing."""
    from analysis.ordered_logit import fit

    rng = np.random.default_rng(23)
    x = pd.DataFrame({"alliance_sd": rng.normal(size=12), "sex_M": (rng.random(12) < 0.3) * 1.0})
    y = pd.Series(pd.Categorical(np.digitize(3 * x["alliance_sd"] + rng.logistic(size=12), [-1, 0, 1]) + 1,
                                 ordered=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            newton = model_class()(y, x, distr="logit").fit(method="newton", disp=False, maxiter=100)
            assert not (newton.mle_retvals["converged"] and np.all(np.isfinite(newton.bse)))
        except np.linalg.LinAlgError:
            pass
        mine = fit(y, x)
        ref = OrderedModel(y, x, distr="logit").fit(method="bfgs", disp=False, maxiter=500)
    assert mine.mle_retvals["converged"] and np.all(np.isfinite(mine.params))
    assert rel(mine.params, ref.params) < 1e-5
