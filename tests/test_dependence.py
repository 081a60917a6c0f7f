"""IPCert majority vote vs median smoothing under dependent failures (wmlib.dependence)."""
import numpy as np
import pytest
from scipy import integrate, stats

from wmlib import certify as C
from wmlib import dependence as W

RADII = np.linspace(0, 3, 31)      # 0 .. 3σ in steps of 0.1σ


def wrong_counts(votes, y):
    """Per point, the number of draws in which it failed (voted y_i + 1)."""
    return votes.counts[np.arange(len(y)), (y + 1) % votes.counts.shape[1]]


# ----------------------------------------------------------------------------- synthetic votes
@pytest.mark.parametrize("rho", [0.0, 0.8])
def test_marginal_failure_rate_matches_failure(rho):
    n, m, q = 50, 2000, 0.1
    votes, y = W.synthetic_votes(n, m, q, rho, seed=3)
    assert votes.counts.shape == (n, 10) and votes.counts.dtype == np.int64
    assert (votes.counts.sum(1) == m).all() and votes.m == m and votes.sigma == 1.0
    assert (y == np.arange(n) % 10).all()
    assert (votes.counts[np.arange(n), y] + wrong_counts(votes, y) == m).all()   # two labels only
    # draw_match is the per-draw fraction of correct votes: its mean is the total correct share
    assert votes.draw_match.mean() == pytest.approx(votes.counts[np.arange(n), y].sum() / (n * m), abs=1e-12)
    # whatever rho, each point fails i.i.d. across draws: K_i ~ Bin(m, q); Bonferroni over the n points
    lo, hi = stats.binom.interval(1 - 0.001 / n, m, q)
    k = wrong_counts(votes, y)
    assert ((lo <= k) & (k <= hi)).all(), (k.min(), k.max(), lo, hi)
    if rho == 0:   # independent points: the total is Bin(n m, q)
        lo, hi = stats.binom.interval(0.999, n * m, q)
        assert lo <= k.sum() <= hi


def test_heterogeneous_failure_rates():
    n, m = 40, 3000
    q = np.linspace(0, 0.3, n)
    votes, y = W.synthetic_votes(n, m, q, 0.5, seed=4)
    k = wrong_counts(votes, y)
    assert k[0] == 0                                   # q = 0 never fails
    lo, hi = stats.binom.interval(1 - 0.001 / n, m, q[1:])
    assert ((lo <= k[1:]) & (k[1:] <= hi)).all()
    # deterministic given the seed
    again, _ = W.synthetic_votes(n, m, q, 0.5, seed=4)
    assert (again.counts == votes.counts).all() and (again.draw_match == votes.draw_match).all()


# ----------------------------------------------------------------------------- dispersion
def test_dispersion_of_independent_points_is_one():
    n, m, q = 100, 4000, 0.2
    votes, _ = W.synthetic_votes(n, m, q, 0.0, seed=5)
    # MR_j = Bin(n, 1 - q)/n is close to normal (excess kurtosis (1 - 6q(1-q))/(nq(1-q)) = 0.0025), so
    # (m - 1) s² / Var ~ chi²(m - 1) with the mean estimated, m·s²/Var ~ chi²(m) with the mean known
    d = W.dispersion(votes.draw_match, n)
    lo, hi = stats.chi2.interval(0.999, m - 1)
    assert lo / (m - 1) <= d <= hi / (m - 1), d
    d_known = W.dispersion(votes.draw_match, n, p=1 - q)
    lo, hi = stats.chi2.interval(0.999, m)
    assert lo / m <= d_known <= hi / m, d_known


def test_dispersion_of_perfectly_dependent_points():
    n, m, q = 100, 1000, 0.3
    votes, y = W.synthetic_votes(n, m, q, 1.0, seed=6)
    x = votes.draw_match
    assert set(np.unique(x)) == {0.0, 1.0}            # a draw breaks all points or none
    k = int((x == 0).sum())
    assert (wrong_counts(votes, y) == k).all()          # every point fails in the same K draws
    lo, hi = stats.binom.interval(0.999, m, q)
    assert lo <= k <= hi
    # Bernoulli draws: s² (ddof 1) = m/(m-1)·p̂(1-p̂) exactly, so D = n·m/(m-1), whatever K in 1..m-1
    assert W.dispersion(x, n) == pytest.approx(n * m / (m - 1), rel=1e-12)
    # every draw alike: 0/0
    assert np.isnan(W.dispersion(np.ones(10), n))


def test_expected_dispersion_matches_owen_integral():
    # Φ₂(t, t; ρ) = Φ(t)² + ∫_0^ρ exp(-t²/(1+r)) / (2π √(1-r²)) dr (∂Φ₂/∂ρ = bivariate density)
    n, q = 100, 0.1
    t = stats.norm.ppf(q)
    for rho in (0.1, 0.3, 0.7, 0.95):
        extra, _ = integrate.quad(lambda r: np.exp(-t * t / (1 + r)) / (2 * np.pi * np.sqrt(1 - r * r)), 0, rho)
        corr = extra / (q * (1 - q))                 # (Φ₂ − q²) / (q(1 − q))
        assert W.expected_dispersion(rho, n, q) == pytest.approx(1 + (n - 1) * corr, rel=1e-5)
    assert W.expected_dispersion(0.0, n, q) == pytest.approx(1.0, abs=1e-9)
    assert W.expected_dispersion(1.0, n, q) == pytest.approx(n, rel=1e-9)


def test_rho_for_dispersion_inverts_measured_dispersion():
    n, q, m = 100, 0.1, 20_000
    votes, _ = W.synthetic_votes(n, m, q, 0.3, seed=7)
    d = W.dispersion(votes.draw_match, n)
    assert d == pytest.approx(W.expected_dispersion(0.3, n, q), rel=0.05)   # measured 13.64 vs 13.78
    assert W.rho_for_dispersion(d, n, q) == pytest.approx(0.3, abs=0.05)
    for rho in (0.05, 0.5, 0.9):                      # exact round trip
        assert W.rho_for_dispersion(W.expected_dispersion(rho, n, q), n, q) == pytest.approx(rho, abs=1e-6)
    assert W.rho_for_dispersion(1.0, n, q) == 0.0 and W.rho_for_dispersion(n, n, q) == 1.0
    assert W.rho_for_dispersion(0.97, n, q, clip=True) == 0.0
    assert W.rho_for_dispersion(n + 1, n, q, clip=True) == 1.0
    with pytest.raises(ValueError, match="d="):
        W.rho_for_dispersion(0.97, n, q)


# ----------------------------------------------------------------------------- rho = 1: both agree
@pytest.mark.parametrize("q, m", [(0.05, 1000), (0.15, 1000), (0.3, 200), (1e-9, 200), (0.7, 200)])
def test_perfect_dependence_majority_vote_and_median_smoothing_agree(q, m):
    """ρ = 1: every point has the same counts (m − K, K) and every draw MR 1 or 0 (K of them 0). Both
    CMR curves are steps from 1 to 0 at σΦ⁻¹ of the Clopper–Pearson lower bound B(·; m − K, K + 1):
    IPCert at level α/|Y| (CMR = 1 iff R < r_IPCert), MS at level α (CMR = 1 iff R ≤ r_MS). So
    CMR_IPCert ≤ CMR_MS everywhere, with equality outside [r_IPCert, r_MS]."""
    n, alpha, classes = 30, 0.001, 10
    votes, y = W.synthetic_votes(n, m, q, 1.0, classes=classes, seed=8)
    k = int((votes.draw_match == 0).sum())
    assert (wrong_counts(votes, y) == k).all() and (votes.counts[np.arange(n), y] == m - k).all()
    r_ip, r_ms = W.perfect_dependence_radii(k, m, classes, alpha)
    cert = C.majority_certificate(votes.counts, 1.0, alpha)
    if r_ip > 0:
        assert (cert.label == y).all()
        assert cert.p_upper == pytest.approx(1 - cert.p_lower, rel=1e-9)   # p̄_B = 1 − p̲_A
        assert cert.radius == pytest.approx(np.full(n, r_ip), rel=1e-9)
    assert r_ip < r_ms
    grid = np.linspace(0, 3, 601)
    grid = grid[(np.abs(grid - r_ip) > 1e-6) & (np.abs(grid - r_ms) > 1e-6)]   # off the cut-offs
    ip = C.certified_matching_rate(cert, y, grid)
    ms = C.median_certificate(votes.draw_match, 1.0, grid, alpha)
    assert (ip == (grid < r_ip)).all()
    assert (ms == (grid <= r_ms)).all()
    assert (ip <= ms).all()
    assert (ip[(grid < r_ip) | (grid > r_ms)] == ms[(grid < r_ip) | (grid > r_ms)]).all()
    if q == 0.05:   # K = 51 of 1000 (seed 8): the Bonferroni factor |Y| = 10 costs 0.039σ
        assert k == 51
        assert (r_ip, r_ms) == pytest.approx((1.3928, 1.4315), abs=1e-4)
    if q == 1e-9:   # K = 0: closed forms p̲ = level^(1/m) (Beta(m, 1) quantile)
        assert k == 0
        assert r_ip == pytest.approx(stats.norm.ppf((alpha / classes) ** (1 / m)), rel=1e-9)
        assert r_ms == pytest.approx(stats.norm.ppf(alpha ** (1 / m)), rel=1e-9)
    if q == 0.7:    # the majority is the wrong label: nothing is certified by either
        assert r_ms < 0 and not ip.any() and not ms.any()


# ----------------------------------------------------------------------------- rho = 0: MS is a binomial quantile
def test_median_smoothing_of_independent_points_is_the_binomial_quantile():
    n, q, m, alpha = 100, 0.1, 20_000, 0.001
    votes, _ = W.synthetic_votes(n, m, q, 0.0, seed=1)
    for R in (0.0, 0.5, 1.0, 1.5, 2.0, 2.5):
        p = stats.norm.cdf(-R)                          # p̲ = Φ(−R/σ)
        exact = stats.binom.ppf(p, n, 1 - q) / n        # p̲-quantile of MR ~ Bin(n, 1 − q)/n
        bound = C.median_certificate(votes.draw_match, 1.0, R, alpha)
        # MS reads X_(k) with k/m ≈ p̲ − 3.1·sd(p̲) (confidence α); X_(k) falls below the p_lo-quantile
        # only if fewer than k draws lie under it, p_lo = Clopper–Pearson lower bound of k/m at 0.001.
        # So, with probability ≥ 0.998, quantile(p_lo) ≤ X_(k) ≤ quantile(p̲), and here p_lo costs at
        # most two 1/n steps (m = 20,000 keeps k/m within a few 0.01 of p̲ down to R = 2.5).
        k = C.order_statistic_index(m, p, alpha)
        low = stats.binom.ppf(stats.beta.ppf(0.001, k, m - k + 1), n, 1 - q) / n
        assert low - 1e-9 <= bound <= exact + 1e-9, (R, low, bound, exact)
        assert low >= exact - 2 / n - 1e-9
        assert bound >= exact - 1 / n - 1e-9           # measured: at most one step below


# ----------------------------------------------------------------------------- the crossover
@pytest.fixture(scope="module")
def study():
    rhos = [0.0, 0.2, 0.5, 0.8, 1.0]
    return {q: W.crossover_study(100, 1000, q, rhos, RADII, alpha=0.001, seed=0) for q in (0.05, 0.15)}


def test_crossover_study_layout(study):
    df = study[0.05]
    assert len(df) == 5 * len(RADII)
    assert list(df.columns) == ["rho", "rep", "dispersion", "radius_over_sigma", "cmr_ipcert", "cmr_ms",
                                "mean_cmr_ipcert", "mean_cmr_ms", "gap"]
    one = df.drop_duplicates(["rho", "rep"])
    assert one.gap.to_numpy() == pytest.approx((one.mean_cmr_ipcert - one.mean_cmr_ms).to_numpy())
    per = df.groupby("rho").cmr_ipcert.mean().to_numpy()
    assert per == pytest.approx(one.mean_cmr_ipcert.to_numpy())
    assert one.dispersion.iloc[-1] == pytest.approx(100 * 1000 / 999)      # rho = 1
    assert not df.isna().any().any()


@pytest.mark.parametrize("q", [0.05, 0.15])
def test_mean_cmr_gap_shrinks_with_dependence_but_majority_voting_never_wins(q, study):
    """The issue's hypothesis, measured (n = 100, m = 1000, α = 0.001, R = 0..3σ, seed 0).

    Gap = mean CMR(IPCert) − mean CMR(MS):
      q = 0.05: ρ = 0, 0.2, 0.5, 0.8, 1 → −0.269, −0.206, −0.132, −0.058, −0.032
      q = 0.15:                          → −0.347, −0.228, −0.122, −0.044, −0.032
    MS wins at independence as predicted, dependence closes the gap, but it never turns positive:
    at ρ = 1 the two tie up to α vs α/|Y| (previous test), so there is no crossover in ρ.
    """
    df = study[q]
    one = df.drop_duplicates(["rho", "rep"])
    gap = one.gap.to_numpy()
    assert gap[0] < -0.2
    assert (np.diff(gap) > 0.01).all()                 # common random numbers: monotone in rho
    assert (gap < 0).all()
    # rho = 1: the gap is exactly the share of grid radii in [r_IPCert, r_MS]
    last = df[df.rho == 1.0]
    votes, _ = W.synthetic_votes(100, 1000, q, 1.0, seed=0)
    r_ip, r_ms = W.perfect_dependence_radii(int((votes.draw_match == 0).sum()), 1000, 10, 0.001)
    between = ((RADII >= r_ip) & (RADII <= r_ms)).mean()
    assert gap[-1] == pytest.approx(-between, abs=1e-12) and between <= 2 / len(RADII)
    assert (last.cmr_ipcert.to_numpy() <= last.cmr_ms.to_numpy()).all()


def test_crossover_is_in_radius_not_in_rho(study):
    """At every ρ < 1 IPCert certifies more below its cut-off σΦ⁻¹(p̲_A) ≈ 1.4σ (q = 0.05) and MS beyond.

    Measured (seed 0), IPCert − MS at R = 1.0σ: 0.07, 0.10, 0.11, 0.07 (ρ = 0, 0.2, 0.5, 0.8);
    at R = 2.0σ: −0.90, −0.76, −0.51, −0.21. Dependence widens IPCert's lead below the cut-off and
    shrinks MS's lead beyond it."""
    df = study[0.05]
    for rho, x in df[df.rho < 1].groupby("rho"):
        r, d = x.radius_over_sigma.to_numpy(), (x.cmr_ipcert - x.cmr_ms).to_numpy()
        assert (d[r <= 1.3 + 1e-9] >= 0).all(), rho
        assert d[np.isclose(r, 1.0)][0] > 0.05, rho
        assert (d[r >= 1.6 - 1e-9] <= 0).all(), rho
        assert d[np.isclose(r, 2.0)][0] < -0.2, rho
    at2 = df[np.isclose(df.radius_over_sigma, 2.0) & (df.rho < 1)]
    assert (np.diff((at2.cmr_ipcert - at2.cmr_ms).to_numpy()) > 0).all()


# ----------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("call, name", [
    (lambda: W.synthetic_votes(0, 10, 0.1, 0.5), "n="),
    (lambda: W.synthetic_votes(10, 0, 0.1, 0.5), "m="),
    (lambda: W.synthetic_votes(10, 10, 0.1, 1.5), "rho="),
    (lambda: W.synthetic_votes(10, 10, 0.1, -0.1), "rho="),
    (lambda: W.synthetic_votes(10, 10, 0.1, float("nan")), "rho="),
    (lambda: W.synthetic_votes(10, 10, 1.0, 0.5), "failure="),
    (lambda: W.synthetic_votes(10, 10, -0.1, 0.5), "failure="),
    (lambda: W.synthetic_votes(10, 10, [0.1, 0.2], 0.5), "failure must"),
    (lambda: W.synthetic_votes(10, 10, 0.1, 0.5, classes=1), "classes="),
    (lambda: W.synthetic_votes(10, 10, 0.1, 0.5, seed=-1), "seed="),
    (lambda: W.dispersion([0.5, 1.2], 10), "draw_match"),
    (lambda: W.dispersion([0.5], 10), "draw_match"),
    (lambda: W.dispersion([0.5, 0.6], 0), "n="),
    (lambda: W.dispersion([0.5, 0.6], 10, p=1.0), "p="),
    (lambda: W.expected_dispersion(0.5, 10, 0.0), "failure="),
    (lambda: W.rho_for_dispersion(5.0, 1, 0.1), "n="),
    (lambda: W.rho_for_dispersion(5.0, 10, np.array([0.1, 0.2])), "failure="),
    (lambda: W.perfect_dependence_radii(11, 10, 10), "k_fail="),
    (lambda: W.crossover_study(10, 10, 0.1, [0.5, 2.0], RADII), "rho="),
    (lambda: W.crossover_study(10, 10, 0.1, [0.5], [-1.0]), "radii_over_sigma="),
    (lambda: W.crossover_study(10, 10, 0.1, [0.5], RADII, reps=0), "reps="),
    (lambda: W.crossover_study(10, 10, 0.1, [0.5], RADII, alpha=0), "alpha="),
])
def test_bad_inputs_raise_naming_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()
