"""How sure a parity figure is: 95% intervals, three outcomes, and how many images a verdict needs.

Parity compares two classifiers on the SAME images, so the accuracy difference is decided by the
discordant pairs only: `losses` (reference right, artifact wrong) and `gains` (reference wrong, artifact
right). Its interval is Tango's asymptotic score interval for the difference of paired proportions
(Tango 1998; recommended by Fagerland, Lydersen & Laake 2014 over the Wald interval): it is built from the
same statistic as McNemar's test, and unlike a Wald or conditional interval it stays honest when there
are no discordant pairs at all (100 identical answers out of 100 still allow a drop of ~3.7 points).
Agreement (share of identical top-1 answers) is one binomial proportion: Wilson score interval.

A budget is then judged with the interval, not the point estimate:
  within        the whole interval is inside the budget (the data show it fits);
  over          the whole interval is outside (the data show it does not);
  inconclusive  the interval straddles the budget: too few images to tell.
numpy-free on purpose: parity numbers come from plain counts.
"""

from __future__ import annotations

import math
from typing import Callable

Z95 = 1.959963984540054  # two-sided 95%
WITHIN, OVER, INCONCLUSIVE = "within", "over", "inconclusive"
MAX_IMAGES_NEEDED = 1_000_000


def wilson(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (0..1). n = 0 gives (0, 1): nothing is known."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _tango_score(gains: float, losses: float, n: float, delta: float) -> float:
    """Tango's score statistic for H0: (gains - losses)/n = delta, with the constrained MLE of P(loss)."""
    w = -gains - losses + (2 * n - gains + losses) * delta
    p_loss = (math.sqrt(max(w * w + 8 * n * losses * delta * (1 - delta), 0.0)) - w) / (4 * n)
    variance = n * (2 * p_loss + delta * (1 - delta))
    diff = gains - losses - n * delta
    if variance <= 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return diff / math.sqrt(variance)


def paired_delta_interval(gains: float, losses: float, n: float, z: float = Z95) -> tuple[float, float]:
    """95% interval of (gains - losses)/n, the accuracy difference artifact − reference (proportions).

    Counts may be fractional (used to ask "what would N images show at this rate").
    """
    if n <= 0:
        return -1.0, 1.0
    estimate = (gains - losses) / n

    def solve(target: float, lo: float, hi: float) -> float:
        # _tango_score decreases in delta; find delta where it crosses `target` by bisection.
        for _ in range(80):
            mid = (lo + hi) / 2
            if _tango_score(gains, losses, n, mid) > target:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    edge = 1.0 - 1e-12
    low = -1.0 if _tango_score(gains, losses, n, -edge) <= z else solve(z, -edge, estimate)
    high = 1.0 if _tango_score(gains, losses, n, edge) >= -z else solve(-z, estimate, edge)
    return low, high


def resolvable_drop(n: float, discordant: float, z: float = Z95) -> float:
    """The smallest accuracy drop (proportion) that n images with this many discordant pairs can tell
    apart from no drop: the interval's half-width when gains and losses are equal."""
    low, _ = paired_delta_interval(discordant / 2, discordant / 2, n, z)
    return -low


def at_most(interval: tuple[float, float], limit: float) -> str:
    """Outcome for "value ≤ limit" (e.g. accuracy drop ≤ budget) given the value's interval."""
    low, high = interval
    if high <= limit + 1e-12:
        return WITHIN
    if low > limit + 1e-12:
        return OVER
    return INCONCLUSIVE


def at_least(interval: tuple[float, float], limit: float) -> str:
    """Outcome for "value ≥ limit" (e.g. agreement ≥ 99.5%) given the value's interval."""
    low, high = interval
    if low >= limit - 1e-12:
        return WITHIN
    if high < limit - 1e-12:
        return OVER
    return INCONCLUSIVE


def images_needed(outcome_at: Callable[[float], str], n: int, limit: int = MAX_IMAGES_NEEDED) -> int | None:
    """Smallest image count at which `outcome_at(count)` (the same rates, more images) is no longer
    inconclusive; None when even `limit` images would not settle it (the estimate sits on the budget)."""
    if outcome_at(float(n)) != INCONCLUSIVE:
        return n
    low, high = n, n
    while outcome_at(float(high)) == INCONCLUSIVE:
        low, high = high, high * 2
        if high > limit:
            return None if outcome_at(float(limit)) == INCONCLUSIVE else _bisect(outcome_at, low, limit)
    return _bisect(outcome_at, low, high)


def _bisect(outcome_at: Callable[[float], str], low: int, high: int) -> int:
    while high - low > 1:
        mid = (low + high) // 2
        if outcome_at(float(mid)) == INCONCLUSIVE:
            low = mid
        else:
            high = mid
    return high


def combine(outcomes: list[str]) -> str:
    """One verdict from several checks: any over → over; else any inconclusive → inconclusive; else within."""
    if OVER in outcomes:
        return OVER
    if INCONCLUSIVE in outcomes:
        return INCONCLUSIVE
    return WITHIN
