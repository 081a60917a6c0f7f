"""Verification statistics: binomial tails, decision thresholds, p-values (scipy.stats)."""
from __future__ import annotations

import numpy as np
from scipy import stats


def binomial_tail(k: int, n: int, p: float) -> float:
    """P[Bin(n, p) >= k]: the chance that a model guessing with success rate ``p`` matches >= k of n."""
    if k <= 0:
        return 1.0
    return float(stats.binom.sf(k - 1, n, p))


def matches_threshold(n: int, p: float, alpha: float = 0.05) -> int:
    """Smallest k with P[Bin(n, p) >= k] <= alpha: the fewest matches a claim of ownership needs.

    A model answering at random (success rate ``p``, e.g. 1/|classes|) reaches it with
    probability at most ``alpha``.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha} must lie in (0, 1)")
    k = 0
    while binomial_tail(k, n, p) > alpha:
        k += 1
    return k


def prediction_bound(null, alpha: float) -> tuple[float, float, float]:
    """(bound, mean, scale): the one-sided (1 − ``alpha``) prediction bound for one more draw from
    the scores ``null`` of n ≥ 3 independent models, mean + t(1 − α; n − 1) · sd · √(1 + 1/n), under
    a normal model (Student's t accounts for estimating the mean and the spread from n models)."""
    null = np.asarray(null, dtype=float)
    if null.ndim != 1 or len(null) < 3 or not np.isfinite(null).all():
        raise ValueError(f"null: {len(np.atleast_1d(null))} scores given; calibrating needs at least 3 "
                         f"finite ones (independent models)")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha} must lie in (0, 1)")
    n = len(null)
    scale = float(null.std(ddof=1) * np.sqrt(1 + 1 / n))
    return float(null.mean() + stats.t.isf(alpha, n - 1) * scale), float(null.mean()), scale
