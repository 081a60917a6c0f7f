"""When majority voting beats median smoothing: IPCert vs MS on synthetic votes with tunable dependence.

Both certificates of :mod:`wmlib.certify` read the same Monte-Carlo votes of m noisy models on an
IP set of n points: IPCert (Jiang, Fang, Gong 2023) certifies each point's majority vote with a
Clopper–Pearson bound at level α/|Y| (Eq. 5) and counts the points certified beyond R (CMR, Eq. 6);
MS (Bansal et al. 2022, after Chiang et al. 2020) certifies a low order statistic of the per-draw
matching rate. How the points fail *together* under noise matters only to MS: IPCert's per-point
counts have the same law whatever the dependence, while MS's per-draw MR is concentrated when
points fail independently and spread out when a draw breaks many points at once.

This module makes the dependence a dial. :func:`synthetic_votes` draws per-draw outcomes from a
one-factor Gaussian copula (one shared factor Z_j per draw, correlation ρ between any two points'
latent variables) with a fixed marginal failure rate per point; :func:`dispersion` measures the
dependence on any votes (real or synthetic) as the variance of the per-draw MR over its binomial
value (or over that of independent points with the same per-point rates); :func:`rho_for_dispersion`
places a measured dispersion on the ρ axis; :func:`crossover_study` runs both certificates on the
same votes across ρ, and :func:`regime_study` over a grid of failure rates too.
:func:`anchored_failure_rate` turns a reported radius at which MS's CMR leaves 1 into the failure
rate that produces it at each ρ (:func:`p_any_failure`), which places a paper that reports no votes.

With m large, IPCert's CMR(R) is about the share of points whose own failure rate is below
Φ(−R/σ), and MS's the Φ(−R/σ) quantile of the per-draw MR: IPCert gives each point full credit up
to its own radius and none beyond, MS partial credit beyond it and a loss whenever draws break
points apart. Which is larger depends on the rates and on the dependence (the IPCert page).

Perfect dependence (ρ = 1, one failure rate q for all points) has a closed form
(:func:`perfect_dependence_radii`): if K of the m draws fail, every point has m − K votes for its
label and K for one other label, and every draw has MR 1 or 0. Both certified CMR curves are then
steps from 1 to 0, at the same kind of radius, σ·Φ⁻¹(p̲), with p̲ the one-sided Clopper–Pearson
lower bound B(·; m − K, K + 1) on P[a draw keeps the points]: IPCert at level α/|Y| (strict,
CMR = 1 for R < r_IPCert) and MS at level α (CMR = 1 for R ≤ r_MS). Since α/|Y| < α, r_IPCert < r_MS:
the two agree except on [r_IPCert, r_MS], where only MS certifies.
"""
from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
from scipy import integrate, optimize, stats

from . import certify as C
from .schemes.ipcert import largest_radius


# ----------------------------------------------------------------------------- input checks
def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name}={value!r} must be an integer >= {low}")
    return int(value)


def _check_rho(rho) -> float:
    if not (np.isscalar(rho) and isinstance(rho, numbers.Real) and 0 <= rho <= 1):
        raise ValueError(f"rho={rho!r} must be a number in the closed interval [0, 1]")
    return float(rho)


def _check_failure(failure, n: int) -> np.ndarray:
    """``failure`` as an (n,) float array: a number in [0, 1) for every point, or a length-n array
    with entries in [0, 1] (a point of rate 1 never matches, like a trigger image a model never learnt)."""
    q = np.asarray(failure, dtype=float) if not isinstance(failure, (str, bytes)) else None
    if q is None or q.ndim > 1 or (q.ndim == 1 and len(q) != n):
        raise ValueError(f"failure must be a number or an array of length n={n} with entries in [0, 1]; "
                         f"got {failure!r}")
    ok = (q >= 0) & (q < 1) if q.ndim == 0 else (q >= 0) & (q <= 1)      # also rejects NaN
    if not np.all(ok):
        raise ValueError(f"failure={failure!r} must lie in [0, 1) (one number) or [0, 1] (one per point)")
    return np.broadcast_to(q, (n,)).copy()


def _check_scalar_failure(failure) -> float:
    if not (np.isscalar(failure) and isinstance(failure, numbers.Real) and 0 < failure < 1):
        raise ValueError(f"failure={failure!r} must be a single number in the open interval (0, 1)")
    return float(failure)


# ----------------------------------------------------------------------------- synthetic votes
def synthetic_votes(n: int, m: int, failure, rho: float, classes: int = 10,
                    seed: int = 0) -> tuple[C.Votes, np.ndarray]:
    """Votes of m noisy draws on n IP points failing with a Gaussian copula of correlation ρ (IPCert §4.3 votes).

    Point i fails in draw j iff √ρ·Z_j + √(1−ρ)·E_ij > Φ⁻¹(1 − q_i), with Z_j and E_ij i.i.d. N(0, 1)
    from ``numpy.random.default_rng(seed)`` (Z, shape (m,), drawn first, then E, shape (m, n)).
    Marginally point i fails in each draw with probability q_i (``failure``: a number for all
    points, or a length-n array), independently across draws; ρ only sets how failures co-occur
    within a draw: ρ = 0 independent points, ρ = 1 a draw breaks every point whose q_i exceeds
    1 − Φ(Z_j) (all points at once when q is one number).

    The true labels are y_i = i mod ``classes``; a failing point votes (y_i + 1) mod ``classes``,
    otherwise y_i. Returns ``(votes, y)``: ``votes`` a :class:`wmlib.certify.Votes` with ``counts``
    (n, classes) int64, ``draw_match`` (m,) the fraction of points voting y_i in each draw,
    ``sigma`` = 1 (so certified radii read in units of σ), ``m`` and ``seed``; ``y`` the (n,) labels.
    Memory: one (m, n) float64 array.
    """
    n, m = _check_int("n", n, 1), _check_int("m", m, 1)
    classes, seed = _check_int("classes", classes, 2), _check_int("seed", seed, 0)
    rho, q = _check_rho(rho), _check_failure(failure, n)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(m)
    e = rng.standard_normal((m, n))
    latent = np.sqrt(rho) * z[:, None] + np.sqrt(1 - rho) * e
    fail = latent > stats.norm.isf(q)[None, :]               # Φ⁻¹(1 − q) = isf(q); q = 0 never fails
    y = np.arange(n) % classes
    k = fail.sum(0)
    counts = np.zeros((n, classes), dtype=np.int64)
    rows = np.arange(n)
    counts[rows, y] = m - k
    counts[rows, (y + 1) % classes] = k
    draw_match = 1.0 - fail.mean(1)
    return C.Votes(counts, draw_match, 1.0, m, seed), y


# ----------------------------------------------------------------------------- dispersion
def dispersion(draw_match, n: int, p: float | None = None, rates=None) -> float:
    """Variance of the per-draw MR (the quantity MS smooths, Bansal et al. 2022) over its binomial value.

    D = s² / (p(1 − p)/n), where p(1 − p)/n is the variance of the mean of n *independent* points
    matching with the same rate p. With ``p`` None, p = mean of ``draw_match`` and s² is the sample
    variance with ddof = 1 (needs ≥ 2 draws); with ``p`` given (a known rate), s² = mean((MR_j − p)²).
    Either way s² is unbiased for Var(MR), so E[D] ≈ 1 for independent points. If every draw has MR
    0 or 1 (points failing together) and p is estimated, D = n·m/(m − 1) exactly (n for m → ∞).
    Heterogeneous per-point rates lower D below 1 at independence; pass ``rates`` (the n per-point
    failure rates q_i, e.g. from each point's votes) to compare with the variance of independent
    points *with those rates* instead, Σ q_i(1 − q_i)/n², so that E[D] ≈ 1 at independence whatever
    the rates. Returns NaN when that baseline is 0 (every draw alike: 0/0).
    """
    x = np.asarray(draw_match, dtype=float)
    if x.ndim != 1 or len(x) == 0 or not np.all((x >= 0) & (x <= 1)):
        raise ValueError("draw_match must be a non-empty 1-D array of per-draw matching rates in [0, 1]")
    n = _check_int("n", n, 1)
    if rates is not None:
        if p is not None:
            raise ValueError("pass p or rates, not both")
        q = _check_failure(rates, n)
        if len(x) < 2:
            raise ValueError("draw_match must hold at least 2 draws to estimate the variance")
        base = float(np.sum(q * (1 - q))) / n ** 2
        return float(x.var(ddof=1)) / base if base > 0 else float("nan")
    if p is None:
        if len(x) < 2:
            raise ValueError("draw_match must hold at least 2 draws to estimate the variance when p is None")
        p = float(x.mean())
        if p * (1 - p) == 0:
            return float("nan")
        s2 = float(x.var(ddof=1))
    else:
        if not (np.isscalar(p) and isinstance(p, numbers.Real) and 0 < p < 1):
            raise ValueError(f"p={p!r} must be None or a number in the open interval (0, 1)")
        s2 = float(np.mean((x - p) ** 2))
    return s2 / (p * (1 - p) / n)


def expected_dispersion(rho: float, n: int, failure: float) -> float:
    """Expected :func:`dispersion` of the copula of :func:`synthetic_votes`: 1 + (n − 1)·corr.

    With t = Φ⁻¹(q) two points fail together with probability Φ₂(t, t; ρ) (bivariate normal CDF,
    ``scipy.stats.multivariate_normal.cdf``), so their failure indicators have correlation
    corr = (Φ₂(t, t; ρ) − q²) / (q(1 − q)); then Var(MR) = q(1 − q)/n · (1 + (n − 1)·corr).
    Increasing in ρ from 1 (ρ = 0) to n (ρ = 1). One failure rate q ∈ (0, 1) for all points.
    """
    rho, n, q = _check_rho(rho), _check_int("n", n, 1), _check_scalar_failure(failure)
    t = stats.norm.ppf(q)
    both = stats.multivariate_normal.cdf([t, t], mean=[0.0, 0.0], cov=[[1.0, rho], [rho, 1.0]],
                                         allow_singular=True)
    corr = (float(both) - q * q) / (q * (1 - q))
    return 1.0 + (n - 1) * float(np.clip(corr, 0.0, 1.0))


def rho_for_dispersion(d: float, n: int, failure: float, *, clip: bool = False) -> float:
    """The copula correlation ρ whose :func:`expected_dispersion` is ``d`` (``scipy.optimize.brentq``).

    Places a dispersion measured on a real model's votes (n points, mean failure rate ``failure``)
    on the ρ axis of :func:`synthetic_votes`. The copula reaches dispersions 1 (ρ = 0) to n (ρ = 1);
    ``d`` outside [1, n] raises ValueError unless ``clip``, which maps d < 1 (e.g. sampling noise,
    or heterogeneous per-point rates) to ρ = 0 and d > n to ρ = 1.
    """
    n, q = _check_int("n", n, 2), _check_scalar_failure(failure)
    if not (np.isscalar(d) and isinstance(d, numbers.Real) and np.isfinite(d)):
        raise ValueError(f"d={d!r} must be a finite number")
    if not 1 <= d <= n:
        if not clip:
            raise ValueError(f"d={d!r} must lie in [1, n={n}] (the copula's range of dispersions); "
                             "pass clip=True to map values outside to rho 0 or 1")
        return 0.0 if d < 1 else 1.0
    if d == 1:
        return 0.0
    if d == n:
        return 1.0
    return float(optimize.brentq(lambda r: expected_dispersion(r, n, q) - d, 0.0, 1.0, xtol=1e-10))


# ----------------------------------------------------------------------------- both certificates
def perfect_dependence_radii(k_fail: int, m: int, classes: int, alpha: float = 0.001,
                             sigma: float = 1.0) -> tuple[float, float]:
    """Cut-offs (r_IPCert, r_MS) when all points fail in the same K of m draws (IPCert Eq. 5–6; Bansal et al. 2022).

    Every point then has counts (m − K, K) on (y_i, another label) and every draw MR 1 or 0. IPCert:
    p̲_A = B(α/|Y|; m − K, K + 1) and p̄_B = B(1 − α/|Y|; K + 1, m − K) = 1 − p̲_A (Beta symmetry; also
    for K = 0 through the closed forms), so r = σ/2·(Φ⁻¹(p̲_A) − Φ⁻¹(1 − p̲_A)) = σ·Φ⁻¹(p̲_A) and
    CMR_IPCert(R) = 1[R < r_IPCert] (r_IPCert ≤ 0 certifies nothing). MS: the bound X_(k) is 1 iff
    k > K iff P[Bin(m, Φ(−R/σ)) ≤ K] ≤ α iff Φ(−R/σ) ≥ B(1 − α; K + 1, m − K) = 1 − B(α; m − K, K + 1),
    so CMR_MS(R) = 1[R ≤ r_MS] with r_MS = σ·Φ⁻¹(B(α; m − K, K + 1)) (negative: nothing certified).
    """
    k, m = _check_int("k_fail", k_fail, 0), _check_int("m", m, 1)
    if k > m:
        raise ValueError(f"k_fail={k_fail!r} must be at most m={m}")
    classes = _check_int("classes", classes, 2)
    sigma, alpha = C._check_sigma(sigma), C._check_alpha(alpha)

    def lower(level):
        return stats.beta.ppf(level, m - k, k + 1) if k < m else 0.0

    return float(sigma * stats.norm.ppf(lower(alpha / classes))), float(sigma * stats.norm.ppf(lower(alpha)))


def crossover_study(n: int, m: int, failure, rhos, radii_over_sigma, alpha: float = 0.001,
                    seed: int = 0, reps: int = 1) -> pd.DataFrame:
    """IPCert (Eq. 5–6, Jiang et al. 2023) vs MS (Bansal et al. 2022) CMR on the same synthetic votes, across ρ.

    For each ρ in ``rhos`` and rep r = 0..reps−1, one :func:`synthetic_votes` (n, m, ``failure``, ρ,
    seed + r) with σ = 1, so radii are in units of σ. The same seed for every ρ (common random
    numbers: the same Z and E, only ρ changes), so differences across ρ are not sampling noise.
    IPCert: :func:`wmlib.certify.majority_certificate` then :func:`~wmlib.certify.certified_matching_rate`;
    MS: :func:`wmlib.certify.median_certificate` of ``draw_match``; both at level ``alpha``.

    Long form, one row per (rho, rep, radius): ``rho``, ``rep``, ``dispersion`` (of the votes'
    draw_match, :func:`dispersion`; against the per-point rates' own binomial variance when
    ``failure`` is an array), ``radius_over_sigma``, ``cmr_ipcert``, ``cmr_ms``, and the
    per-(rho, rep) summaries repeated on each of its rows: ``mean_cmr_ipcert``, ``mean_cmr_ms``
    (plain means over the given radii: on an even grid, the area under the curve over its range),
    ``gap`` = mean_cmr_ipcert − mean_cmr_ms (> 0: majority voting wins), ``share_ipcert_ge_ms``
    (the share of radii where IPCert's CMR is at least MS's) and ``r1_ipcert``, ``r1_ms`` (the
    largest radius of the grid up to which each CMR stays 1, the paper's anchor; 0 when it starts
    below 1). One row per (rho, rep): ``df.drop_duplicates(["rho", "rep"])``.
    """
    reps = _check_int("reps", reps, 1)
    seed = _check_int("seed", seed, 0)
    alpha = C._check_alpha(alpha)
    rhos = np.atleast_1d(np.asarray(rhos, dtype=float))
    if rhos.ndim != 1 or len(rhos) == 0:
        raise ValueError(f"rhos={rhos!r} must be a non-empty 1-D sequence of numbers in [0, 1]")
    for r in rhos:
        _check_rho(float(r))
    radii = np.atleast_1d(np.asarray(radii_over_sigma, dtype=float))
    if radii.ndim != 1 or len(radii) == 0 or not np.all(np.isfinite(radii) & (radii >= 0)):
        raise ValueError(f"radii_over_sigma={radii_over_sigma!r} must be a non-empty 1-D sequence of "
                         "finite radii >= 0")
    rates = _check_failure(failure, n) if np.ndim(failure) == 1 else None
    rows = []
    for rho in rhos:
        for rep in range(reps):
            votes, y = synthetic_votes(n, m, failure, float(rho), seed=seed + rep)
            ip = C.certified_matching_rate(C.majority_certificate(votes.counts, votes.sigma, alpha), y, radii)
            ms = C.median_certificate(votes.draw_match, votes.sigma, radii, alpha)
            d = dispersion(votes.draw_match, n, rates=rates) if m >= 2 else float("nan")
            ip, ms = np.asarray(ip, dtype=float), np.asarray(ms, dtype=float)
            summary = dict(mean_cmr_ipcert=float(ip.mean()), mean_cmr_ms=float(ms.mean()),
                           gap=float(ip.mean() - ms.mean()), share_ipcert_ge_ms=float(np.mean(ip >= ms - 1e-12)),
                           r1_ipcert=largest_radius(radii, ip), r1_ms=largest_radius(radii, ms))
            for R, a, b in zip(radii, ip, ms):
                rows.append(dict(rho=float(rho), rep=rep, dispersion=d, radius_over_sigma=float(R),
                                 cmr_ipcert=float(a), cmr_ms=float(b), **summary))
    return pd.DataFrame(rows)


SUMMARY = ["dispersion", "mean_cmr_ipcert", "mean_cmr_ms", "gap", "share_ipcert_ge_ms", "r1_ipcert", "r1_ms"]


def regime_study(n: int, m: int, failures, rhos, radii_over_sigma, alpha: float = 0.001, seed: int = 0,
                 reps: int = 1) -> pd.DataFrame:
    """:func:`crossover_study` over a grid of failure rates and ρ: where in (q, ρ) majority voting beats MS.

    One failure rate q for all n points per grid row (``failures``: numbers in (0, 1)). One row per
    (failure, rho, rep) with the columns of :data:`SUMMARY`; the same seeds for every q and ρ
    (common random numbers)."""
    qs = np.atleast_1d(np.asarray(failures, dtype=float))
    if qs.ndim != 1 or len(qs) == 0:
        raise ValueError(f"failures={failures!r} must be a non-empty 1-D sequence of numbers in (0, 1)")
    out = []
    for q in qs:
        q = _check_scalar_failure(float(q))
        df = crossover_study(n, m, q, rhos, radii_over_sigma, alpha=alpha, seed=seed, reps=reps)
        out.append(df.drop_duplicates(["rho", "rep"]).assign(failure=q)[["failure", "rho", "rep", *SUMMARY]])
    return pd.concat(out, ignore_index=True)


def p_any_failure(failure: float, rho: float, n: int) -> float:
    """P[a draw breaks at least one of the n points] under the copula of :func:`synthetic_votes` (one rate q).

    1 − E_Z[Φ((t − √ρ·Z)/√(1 − ρ))ⁿ], t = Φ⁻¹(1 − q), by ``scipy.integrate.quad`` over Z ~ N(0, 1);
    1 − (1 − q)ⁿ at ρ = 0 and q at ρ = 1."""
    q, rho, n = _check_scalar_failure(failure), _check_rho(rho), _check_int("n", n, 1)
    if rho == 0:
        return float(-np.expm1(n * np.log1p(-q)))
    if rho == 1:
        return q
    t, a, b = stats.norm.isf(q), np.sqrt(rho), np.sqrt(1 - rho)
    ok, _ = integrate.quad(lambda z: stats.norm.pdf(z) * np.exp(n * stats.norm.logcdf((t - a * z) / b)),
                           -12, 12, limit=200, points=[(t - 3 * b) / a, t / a, (t + 3 * b) / a])
    return float(1 - ok)


def anchored_failure_rate(n: int, r_ms_over_sigma: float, rho: float = 0.0) -> float:
    """The failure rate q at which MS's CMR starts to fall below 1 at R = ``r_ms_over_sigma``·σ (m → ∞).

    MS's bound at R is the Φ(−R/σ) quantile of the per-draw MR, so it drops below 1 beyond the R
    where P[MR < 1] = P[a draw breaks a point] = Φ(−R/σ) (:func:`p_any_failure`; ``scipy.optimize.brentq``
    in q). Places a paper that reports where MS degrades (Jiang et al. 2023: past R = 0.75σ on the
    CIFAR-10 watermark, n = 100) on the (q, ρ) plane of :func:`regime_study`, one q per ρ."""
    n, rho = _check_int("n", n, 1), _check_rho(rho)
    if not (np.isscalar(r_ms_over_sigma) and isinstance(r_ms_over_sigma, numbers.Real) and r_ms_over_sigma > 0):
        raise ValueError(f"r_ms_over_sigma={r_ms_over_sigma!r} must be a number > 0")
    target = float(stats.norm.sf(r_ms_over_sigma))
    if rho == 1:
        return target
    return float(optimize.brentq(lambda q: p_any_failure(q, rho, n) - target, 1e-12, target, xtol=1e-14))
