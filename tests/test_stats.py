import pytest
from scipy import stats

from wmlib.stats import binomial_tail, matches_threshold


@pytest.mark.parametrize("n,p,alpha", [(100, 0.1, 0.05), (100, 0.5, 0.05), (20, 0.5, 0.05),
                                       (100, 0.01, 0.01), (50, 0.1, 0.001)])
def test_threshold_is_the_smallest_k_with_tail_at_most_alpha(n, p, alpha):
    brute = min(k for k in range(n + 2) if stats.binom.sf(k - 1, n, p) <= alpha)
    assert matches_threshold(n, p, alpha) == brute


def test_known_thresholds():
    # 10 classes, |T| = 100: 16 matches are needed (P[Bin(100, .1) >= 16] = 0.0399, >= 15: 0.0726)
    assert matches_threshold(100, 0.1) == 16
    assert binomial_tail(16, 100, 0.1) == pytest.approx(0.03989, abs=1e-4)
    assert binomial_tail(15, 100, 0.1) == pytest.approx(0.07257, abs=1e-4)


def test_tail_edges():
    assert binomial_tail(0, 100, 0.1) == 1.0
    assert binomial_tail(101, 100, 0.1) == 0.0
    assert binomial_tail(100, 100, 0.1) == pytest.approx(1e-100, rel=1e-6)


def test_bad_alpha():
    with pytest.raises(ValueError, match="alpha"):
        matches_threshold(100, 0.1, alpha=1.5)


def test_prediction_bound_is_students_t_for_one_more_model():
    import numpy as np
    from scipy import stats as st
    from wmlib.stats import prediction_bound
    null = [0.10, 0.12, 0.09, 0.11]
    bound, mean, scale = prediction_bound(null, 0.01)
    assert mean == pytest.approx(np.mean(null)) and scale == pytest.approx(np.std(null, ddof=1) * np.sqrt(1.25))
    assert bound == pytest.approx(mean + st.t.ppf(0.99, 3) * scale)
    with pytest.raises(ValueError, match="at least 3"):
        prediction_bound([0.1, 0.2], 0.01)
    with pytest.raises(ValueError, match="alpha=0"):
        prediction_bound(null, 0)
