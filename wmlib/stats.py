"""Verification statistics: binomial tails, decision thresholds, p-values (scipy.stats)."""
from __future__ import annotations

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
