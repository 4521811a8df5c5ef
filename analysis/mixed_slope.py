"""The random intercept and slope model by REML, with every participant's algebra shared by their pattern of times.

The model: y_i = X_i b + Z_i u_i + e_i for participant i, Z_i = [1, t_i] (an intercept and the time), u_i ~ N(0, G)
with G an unstructured 2x2 covariance, e_i ~ N(0, s2 I).  With Psi = G / s2 and H_i = I + Z_i Psi Z_i', V_i = s2 H_i.

H_i depends only on the participant's times, and a study has a handful of patterns of times (four time points
give at most fifteen).  Each pattern's sums of cross-products of X and y over its participants are formed once
(one matrix product); after that the REML criterion, its gradient and its Hessian cost a few k x k inversions per
pattern (k <= the number of time points), whatever the number of participants.  The criterion, its
parametrisation and the standard errors are statsmodels' MixedLM's (REML, the scale profiled out, the model SE from
the observed Hessian in (b, vech Psi)); ``tests/test_mixed_slope.py`` checks the fit against MixedLM's.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

# dPsi / dtheta for theta = vech(Psi) = (psi_00, psi_01, psi_11), MixedLM's order of cov_re's lower triangle
_E = (np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([[0.0, 0.0], [0.0, 1.0]]))


@dataclass
class Pattern:
    """The participants sharing one sequence of times: ``rows`` (participants x k) indexes the data's rows."""
    z: np.ndarray  # k x 2
    rows: np.ndarray
    sxx: np.ndarray  # k x k x p x p: sum over participants of x_a' x_b (a, b: the pattern's positions)
    sxy: np.ndarray  # k x k x p: sum of x_a y_b
    syy: np.ndarray  # k x k: sum of y_a y_b


def patterns(groups: np.ndarray, times: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Participants grouped by the sequence of their times (rows in data order): (times (k,), rows (m, k))."""
    codes = pd.factorize(groups)[0]
    order = np.argsort(codes, kind="stable")
    codes_o = codes[order]
    starts = np.flatnonzero(np.r_[True, codes_o[1:] != codes_o[:-1]])
    sizes = np.diff(np.r_[starts, len(codes_o)])
    tcodes, tvalues = pd.factorize(times[order])
    grid = np.full((len(starts), int(sizes.max())), -1)
    grid[np.repeat(np.arange(len(starts)), sizes), np.arange(len(order)) - np.repeat(starts, sizes)] = tcodes
    keys, which = np.unique(grid, axis=0, return_inverse=True)
    out = []
    for u, key in enumerate(keys):
        members = np.flatnonzero(which.ravel() == u)
        k = int((key >= 0).sum())
        out.append((np.asarray(tvalues[key[:k]], float), order[starts[members][:, None] + np.arange(k)[None, :]]))
    return out


def _sums(X: np.ndarray, y: np.ndarray, times: np.ndarray, rows: np.ndarray) -> Pattern:
    m, k = rows.shape
    p = X.shape[1]
    xi, yi = X[rows].reshape(m, k * p), y[rows]
    sxx = (xi.T @ xi).reshape(k, p, k, p).transpose(0, 2, 1, 3)
    sxy = (xi.T @ yi).reshape(k, p, k).transpose(0, 2, 1)
    return Pattern(np.column_stack([np.ones(k), times]), rows, sxx, sxy, yi.T @ yi)


class SlopeREML:
    """The REML criterion of the random intercept and slope model as a function of Psi, from the patterns' sums."""

    def __init__(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray, times: np.ndarray):
        self.X, self.y = X, y
        self.n, self.p = X.shape
        self.k = self.n - self.p  # REML: the scale is Q / (n - p)
        self.patterns = [_sums(X, y, t, rows) for t, rows in patterns(groups, times)]

    def _gls(self, psi: np.ndarray):
        """Each pattern's H^-1, and A = sum X'H^-1X, b = sum X'H^-1y, yy = sum y'H^-1y, sum log|H_i|."""
        a, b, yy, logdet, inv = np.zeros((self.p, self.p)), np.zeros(self.p), 0.0, 0.0, []
        for pt in self.patterns:
            h = np.eye(len(pt.z)) + pt.z @ psi @ pt.z.T
            h_inv = np.linalg.inv(h)
            inv.append(h_inv)
            logdet += len(pt.rows) * np.linalg.slogdet(h)[1]
            a += np.tensordot(h_inv, pt.sxx, axes=([0, 1], [0, 1]))
            b += np.tensordot(h_inv, pt.sxy, axes=([0, 1], [0, 1]))
            yy += float((h_inv * pt.syy).sum())
        return inv, a, b, yy, logdet

    def objective(self, psi: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, float]:
        """Minus the REML log-likelihood (the scale profiled out, up to a constant), its gradient in vech(Psi), the
        fixed effects (GLS at Psi) and Q = sum r_i' H_i^-1 r_i."""
        inv, a, b, yy, logdet = self._gls(psi)
        beta = np.linalg.solve(a, b)
        q = yy - float(b @ beta)
        if not q > 0:
            return math.inf, np.full(3, np.nan), beta, q
        a_inv = np.linalg.inv(a)
        grad = np.zeros(3)
        for pt, h_inv in zip(self.patterns, inv):
            srr = self._srr(pt, beta)
            for j, e in enumerate(_E):
                d = pt.z @ e @ pt.z.T
                g = h_inv @ d @ h_inv
                da = -np.tensordot(g, pt.sxx, axes=([0, 1], [0, 1]))
                grad[j] += 0.5 * (-self.k * float((g * srr).sum()) / q + len(pt.rows) * float((h_inv * d).sum())
                                  + float((a_inv * da).sum()))
        return 0.5 * (self.k * math.log(q / self.k) + logdet + np.linalg.slogdet(a)[1]), grad, beta, q

    @staticmethod
    def _srr(pt: Pattern, beta: np.ndarray) -> np.ndarray:
        """sum over the pattern's participants of r_a r_b, r = y - X beta."""
        sxy_b = np.einsum("abp,p->ab", pt.sxy, beta)  # sum x_a beta y_b
        return pt.syy - sxy_b - sxy_b.T + np.einsum("abpq,p,q->ab", pt.sxx, beta, beta)

    def hessian(self, psi: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """MixedLM's Hessian of the REML log-likelihood (scale profiled out) in (b, vech Psi), at ``beta``."""
        inv, a, _, _, _ = self._gls(psi)
        p = self.p
        a_inv = np.linalg.inv(a)
        q, q1, q2 = 0.0, np.zeros(3), np.zeros((3, 3))
        l_bt, a1, a2, h2 = np.zeros((p, 3)), np.zeros((3, p, p)), np.zeros((3, 3, p, p)), np.zeros((3, 3))
        for pt, h_inv in zip(self.patterns, inv):
            srr = self._srr(pt, beta)
            sxr = pt.sxy - np.einsum("abpq,q->abp", pt.sxx, beta)  # sum x_a r_b
            m = len(pt.rows)
            q += float((h_inv * srr).sum())
            ds = [pt.z @ e @ pt.z.T for e in _E]
            gs = [h_inv @ d @ h_inv for d in ds]
            for j in range(3):
                q1[j] -= float((gs[j] * srr).sum())
                l_bt[:, j] += np.tensordot(gs[j], sxr, axes=([0, 1], [0, 1]))
                a1[j] -= np.tensordot(gs[j], pt.sxx, axes=([0, 1], [0, 1]))
                for l in range(j, 3):
                    kk = gs[j] @ ds[l] @ h_inv
                    kk = kk + kk.T  # d2 H^-1 / dj dl = H^-1 D_j H^-1 D_l H^-1 + H^-1 D_l H^-1 D_j H^-1
                    q2[j, l] += float((kk * srr).sum())
                    a2[j, l] += np.tensordot(kk, pt.sxx, axes=([0, 1], [0, 1]))
                    h2[j, l] += m * float((h_inv @ ds[l] @ h_inv * ds[j]).sum())  # m tr(H^-1 D_l H^-1 D_j)
        k = self.k
        hess = np.zeros((p + 3, p + 3))
        hess[:p, :p] = -k * a / q
        hess[:p, p:] = -k * l_bt / q
        hess[p:, :p] = hess[:p, p:].T
        for j in range(3):
            for l in range(j, 3):
                v = (-k / 2 * (q2[j, l] / q - q1[j] * q1[l] / q ** 2) + 0.5 * h2[j, l]
                     - 0.5 * (float((a_inv * a2[j, l]).sum()) - float((a_inv @ a1[l] * (a_inv @ a1[j]).T).sum())))
                hess[p + j, p + l] = hess[p + l, p + j] = v
        return hess


def _psi(theta: np.ndarray) -> np.ndarray:
    chol = np.array([[theta[0], 0.0], [theta[1], theta[2]]])
    return chol @ chol.T


def fit(X: np.ndarray, y: np.ndarray, groups: np.ndarray, times: np.ndarray) -> dict:
    """The REML fit: ``params`` (fixed effects), ``bse`` (model-based, MixedLM's), ``scale``, ``cov_re`` (G),
    ``hessian`` (in (b, vech Psi)), ``converged`` and the ``model`` (its patterns serve the robust SE)."""
    from scipy import optimize

    model = SlopeREML(X, y, groups, times)

    def f(theta):  # MixedLM's parametrisation: the Cholesky factor of Psi, packed (l00, l10, l11)
        value, grad, _, _ = model.objective(_psi(theta))
        l00, l10, l11 = theta
        jac = np.array([[2 * l00, l10, 0.0], [0.0, l00, 2 * l10], [0.0, 0.0, 2 * l11]])  # d vech Psi / d theta
        return value, jac @ grad

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best = optimize.minimize(f, np.array([1.0, 0.0, 1.0]), jac=True, method="BFGS", options={"gtol": 1e-8})
    psi = _psi(best.x)
    value, grad, beta, q = model.objective(psi)
    polished = False
    for _ in range(20):  # Newton's method on the profiled criterion in vech(Psi), to machine precision
        hess = model.hessian(psi, beta)
        p = model.p
        prof = -(hess[p:, p:] - hess[p:, :p] @ np.linalg.solve(hess[:p, :p], hess[:p, p:]))  # of minus l
        try:
            step = np.linalg.solve(prof, grad)
        except np.linalg.LinAlgError:
            break
        new = psi - np.array([[step[0], step[1]], [step[1], step[2]]])
        if np.any(np.linalg.eigvalsh(new) < 0):
            break
        new_value, new_grad, new_beta, new_q = model.objective(new)
        if not new_value <= value + 1e-12 * abs(value):
            break
        psi, value, grad, beta, q = new, new_value, new_grad, new_beta, new_q
        if np.abs(step).max() <= 1e-10 * max(np.abs(psi).max(), 1.0):
            polished = True
            break
    scale = q / model.k
    hess = model.hessian(psi, beta)
    converged = bool(best.success or polished) and math.isfinite(value)
    return {"params": beta, "scale": scale, "cov_re": scale * psi, "psi": psi, "hessian": hess,
            "converged": converged, "model": model}


def sandwich(model: SlopeREML, beta: np.ndarray, cov_re: np.ndarray, scale: float) -> np.ndarray:
    """The cluster-robust covariance of the fixed effects by participant: B^-1 (sum u_i u_i') B^-1 with
    B = sum X_i' V_i^-1 X_i and u_i = X_i' V_i^-1 r_i, V_i = Z_i G Z_i' + s2 I, the G / (G - 1) correction."""
    p = model.p
    bread, meat, n_groups = np.zeros((p, p)), np.zeros((p, p)), 0
    r = model.y - model.X @ beta
    for pt in model.patterns:
        k = len(pt.z)
        v_inv = np.linalg.inv(pt.z @ cov_re @ pt.z.T + scale * np.eye(k))
        bread += np.tensordot(v_inv, pt.sxx, axes=([0, 1], [0, 1]))
        vx = np.einsum("ab,mbp->map", v_inv, model.X[pt.rows])
        u = np.einsum("map,ma->mp", vx, r[pt.rows])
        meat += u.T @ u
        n_groups += len(pt.rows)
    b_inv = np.linalg.inv(bread)
    return n_groups / (n_groups - 1) * b_inv @ meat @ b_inv
