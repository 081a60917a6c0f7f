"""IPCert majority vote vs median smoothing under dependent failures (wmlib.dependence)."""
import numpy as np
import pytest
from scipy import integrate, stats

from wmlib import certify as C
from wmlib import dependence as W
from wmlib.schemes.ipcert import largest_radius

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
                                "mean_cmr_ipcert", "mean_cmr_ms", "gap", "share_ipcert_ge_ms", "r1_ipcert", "r1_ms"]
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


# ----------------------------------------------------------------------------- heterogeneous rates
def test_points_that_never_match_and_the_heterogeneous_dispersion():
    """A point of rate 1 (a trigger image the model never learnt) always fails; with per-point rates,
    D compares with Σ q_i(1 − q_i)/n², so independent points give D ≈ 1 (chi² bounds), where the
    one-rate binomial p̄(1 − p̄)/n overstates their variance and reads far below 1."""
    n, m = 100, 4000
    rates = np.r_[np.zeros(50), np.full(40, 0.05), np.full(9, 0.3), 1.0]
    votes, y = W.synthetic_votes(n, m, rates, 0.0, seed=2)
    assert wrong_counts(votes, y)[-1] == m and wrong_counts(votes, y)[0] == 0
    d = W.dispersion(votes.draw_match, n, rates=rates)
    lo, hi = stats.chi2.interval(0.999, m - 1)
    assert lo / (m - 1) <= d <= hi / (m - 1), d
    base = np.sum(rates * (1 - rates)) / n ** 2
    pbar = 1 - votes.draw_match.mean()            # the one-rate version estimates it
    assert W.dispersion(votes.draw_match, n) == pytest.approx(d * base / (pbar * (1 - pbar) / n), rel=1e-9)
    assert W.dispersion(votes.draw_match, n) < 0.75
    together, _ = W.synthetic_votes(n, m, rates, 1.0, seed=2)
    assert W.dispersion(together.draw_match, n, rates=rates) > 10 * d


def test_crossover_study_with_per_point_rates_has_the_summaries():
    rates = np.r_[np.zeros(90), np.full(10, 0.2)]
    df = W.crossover_study(100, 1000, rates, [0.0, 1.0], RADII, seed=1)
    one = df.drop_duplicates(["rho", "rep"])
    for _, r in one.iterrows():
        x = df[df.rho == r.rho]
        assert r.share_ipcert_ge_ms == pytest.approx(np.mean(x.cmr_ipcert >= x.cmr_ms - 1e-12))
        for fw in ("ipcert", "ms"):
            c = x[f"cmr_{fw}"].to_numpy()
            r1 = r[f"r1_{fw}"]
            if c[0] < 1:
                assert r1 == 0.0
            else:
                assert (c[RADII <= r1 + 1e-9] == 1).all() and (r1 == RADII[-1] or c[RADII > r1 + 1e-9][0] < 1)
    # ten points lose the vote at R ≈ σΦ⁻¹(0.8) = 0.84σ; below it IPCert certifies all 100 points
    ip0 = df[df.rho == 0]
    assert ip0[ip0.radius_over_sigma <= 0.7].cmr_ipcert.min() == 1.0
    assert ip0[ip0.radius_over_sigma >= 1.0].cmr_ipcert.max() <= 0.9


# ----------------------------------------------------------------------------- where the crossover is
def test_probability_a_draw_breaks_a_point_matches_the_copula():
    n = 100
    for q, rho in ((0.01, 0.0), (0.01, 0.3), (0.003, 0.7)):
        votes, _ = W.synthetic_votes(n, 40_000, q, rho, seed=11)
        p = W.p_any_failure(q, rho, n)
        seen = float((votes.draw_match < 1).mean())
        assert seen == pytest.approx(p, abs=4 * np.sqrt(p * (1 - p) / 40_000)), (q, rho)
    assert W.p_any_failure(0.01, 0.0, n) == pytest.approx(1 - 0.99 ** n, rel=1e-12)
    assert W.p_any_failure(0.01, 1.0, n) == 0.01


def test_the_papers_anchor_fixes_the_failure_rate():
    """MS's CMR leaves 1 where P[MR < 1] = Φ(−R/σ): at ρ = 0, q = 1 − Φ(0.75)^(1/n) = 0.00257 for
    R = 0.75σ, n = 100 (the paper's CIFAR-10 anchor); more dependence needs a larger q."""
    q0 = W.anchored_failure_rate(100, 0.75, 0.0)
    assert q0 == pytest.approx(1 - stats.norm.cdf(0.75) ** (1 / 100), rel=1e-9)
    qs = [W.anchored_failure_rate(100, 0.75, r) for r in (0.0, 0.1, 0.3, 0.6, 0.9, 1.0)]
    assert np.all(np.diff(qs) > 0) and qs[-1] == pytest.approx(stats.norm.sf(0.75))
    for rho, q in ((0.0, qs[0]), (0.3, qs[2])):
        assert W.p_any_failure(q, rho, 100) == pytest.approx(stats.norm.sf(0.75), rel=1e-6)
        votes, _ = W.synthetic_votes(100, 20_000, q, rho, seed=3)
        grid = np.linspace(0, 3.2, 65)
        ms = np.asarray(C.median_certificate(votes.draw_match, 1.0, grid, 0.001))
        assert largest_radius(grid, ms) == pytest.approx(0.75, abs=0.1), rho     # finite m, α: a little below


def test_regime_study_no_crossover_in_area_but_majority_wins_the_papers_anchor():
    """n = 100, m = 1000, α = 0.001, R/σ ∈ [0, 3.2], seed 0. Measured mean CMR gap IPCert − MS at
    ρ = 0 / 0.4 / 1: q = 0.001: −0.052 / −0.043 / −0.031; q = 0.01: −0.149 / −0.108 / −0.015;
    q = 0.1: −0.315 / −0.154 / −0.015. Largest R/σ with CMR = 1 at ρ = 0, IPCert against MS:
    2.10 / 1.10, 1.75 / 0.00, 0.95 / 0.00. So MS certifies more area at every (q, ρ), while IPCert
    keeps CMR = 1 further at every ρ < 1 (at ρ = 1 MS by one or two grid steps: α against α/|Y|)."""
    grid = np.linspace(0, 3.2, 65)
    df = W.regime_study(100, 1000, [0.001, 0.01, 0.1], [0.0, 0.4, 1.0], grid, seed=0)
    assert list(df.columns) == ["failure", "rho", "rep", *W.SUMMARY] and len(df) == 9
    assert (df.gap < 0).all()
    for q, d in df.groupby("failure"):
        assert d.gap.is_monotonic_increasing, q           # dependence narrows MS's lead
        indep = d[d.rho == 0].iloc[0]
        assert indep.r1_ipcert - indep.r1_ms >= 0.9, q
        full = d[d.rho == 1].iloc[0]
        assert -0.11 <= full.r1_ipcert - full.r1_ms <= 0, q
    assert df[(df.failure == 0.1) & (df.rho == 0)].gap.iloc[0] == pytest.approx(-0.315, abs=0.03)


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
    (lambda: W.synthetic_votes(3, 10, [0.1, 1.2, 0.0], 0.5), "failure="),
    (lambda: W.dispersion([0.5, 0.6], 2, p=0.5, rates=[0.1, 0.2]), "p or rates"),
    (lambda: W.regime_study(10, 10, [0.1, 1.0], [0.5], RADII), "failure="),
    (lambda: W.anchored_failure_rate(10, 0.0), "r_ms_over_sigma="),
    (lambda: W.p_any_failure(0.1, 0.5, 0), "n="),
])
def test_bad_inputs_raise_naming_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()
