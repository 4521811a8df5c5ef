"""statsmodels' OrderedModel (logit) with its analytic score and Hessian.

OrderedModel differentiates its log-likelihood numerically: a forward difference per parameter for each gradient
of the BFGS search and four evaluations per pair of parameters for the Hessian behind the standard errors, over a
thousand evaluations of the whole likelihood per fit, and its BFGS stops at a gradient tolerance that leaves the
estimates off the maximum by up to 1e-3 relative (ill-conditioned designs: age in years beside an SD-scaled
alliance).  Here both derivatives are written out for the same parametrisation (coefficients b; the first cut
point, then the logarithms of the increments between cut points), and Newton's method reaches the maximum in a
few evaluations.  The logistic cdf is ``scipy.special.expit``, the function ``scipy.stats.logistic.cdf`` itself
ends in.  ``tests/test_ordered_logit.py`` checks the derivatives and the fit against OrderedModel's own.

For an answer in category j, with cut points c_0 = -inf < c_1 < ... < c_J = inf, upper bound u = c_{j+1} - x b and
lower bound l = c_j - x b: p = F(u) - F(l), F the logistic cdf, f = F (1 - F) its density and f' = f (1 - 2 F).
"""
from __future__ import annotations

import functools

import numpy as np


@functools.cache
def model_class() -> type:
    from scipy.special import expit
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    class OrderedLogit(OrderedModel):
        def cdf(self, x):
            return expit(x)

        def _parts(self, params):
            """p, the derivatives of p (n x parameters), and what the Hessian needs."""
            params = np.asarray(params, float)
            k = self.k_vars
            low, upp = self._bounds(params)
            fu, fl = (self.cdf(v) for v in (upp, low))
            p = np.maximum(fu - fl, 0) + 1e-20
            du, dl = fu * (1 - fu), fl * (1 - fl)  # densities (0 at the infinite cut points)
            ju, jl = self._cut_jacobians(params)
            dp = np.column_stack([-(du - dl)[:, None] * self.exog, du[:, None] * ju - dl[:, None] * jl])
            return p, dp, (fu, fl, du, dl, ju, jl, k)

        def _cut_jacobians(self, params):
            """d c_{j+1} / d theta and d c_j / d theta of each answer (0 rows for the infinite cut points)."""
            theta = params[-(self.k_levels - 1):]
            step = np.concatenate(([1.0], np.exp(theta[1:])))
            cuts = np.tril(np.ones((len(theta), len(theta)))) * step  # row m: d c_{m+1} / d theta
            table = np.vstack([np.zeros(len(theta)), cuts, np.zeros(len(theta))])  # c_0 .. c_J
            return table[self.endog + 1], table[self.endog]

        def score(self, params):
            p, dp, _ = self._parts(params)
            return (dp / p[:, None]).sum(axis=0)

        def hessian(self, params):
            p, dp, (fu, fl, du, dl, ju, jl, k) = self._parts(params)
            x = self.exog
            gu, gl = du * (1 - 2 * fu), dl * (1 - 2 * fl)  # f' at the two bounds
            n_par = dp.shape[1]
            second = np.zeros((n_par, n_par))
            second[:k, :k] = x.T @ (x * ((gu - gl) / p)[:, None])
            cross = -(x / p[:, None]).T @ (gu[:, None] * ju - gl[:, None] * jl)
            second[:k, k:], second[k:, :k] = cross, cross.T
            second[k:, k:] = (ju * (gu / p)[:, None]).T @ ju - (jl * (gl / p)[:, None]).T @ jl
            # d2 c / d theta_m^2 = d c / d theta_m for the increments (m >= 1), 0 for the first cut point
            diag = ((du / p)[:, None] * ju - (dl / p)[:, None] * jl).sum(axis=0)
            diag[0] = 0.0
            second[k:, k:] += np.diag(diag)
            scaled = dp / p[:, None]
            return second - scaled.T @ scaled

    return OrderedLogit



def fit(y, exog):
    """The maximum-likelihood fit by Newton's method with the analytic derivatives.  Where Newton fails (an answer
    category nearly separated by a covariate in a small study: the Hessian is singular or a full step overshoots) or
    ends on a value that is not finite, BFGS, the search OrderedModel uses by default, on the same derivatives."""
    model = model_class()(y, exog, distr="logit")
    try:
        result = model.fit(method="newton", disp=False, maxiter=100)
    except (np.linalg.LinAlgError, ValueError, FloatingPointError, OverflowError):
        result = None
    if (result is not None and result.mle_retvals.get("converged") and np.all(np.isfinite(result.params))
            and np.all(np.isfinite(result.bse))):
        return result
    return model.fit(method="bfgs", disp=False, maxiter=500)
