"""tledge.stats: the intervals behind parity's three outcomes (published values, coverage, edge cases)."""

from __future__ import annotations

import numpy as np
import pytest

from tledge import stats


def test_tango_interval_matches_the_published_example():
    # Fagerland, Lydersen & Laake (2014), airway hyper-responsiveness data: n12=1, n21=7 of 21 pairs;
    # Tango's asymptotic score interval for the difference is -0.2857 (-0.5173 to -0.0260).
    low, high = stats.paired_delta_interval(gains=1, losses=7, n=21)
    assert low == pytest.approx(-0.5173, abs=5e-4) and high == pytest.approx(-0.0260, abs=5e-4)


def test_no_discordant_pairs_still_leaves_an_honest_interval():
    # 100 identical answers out of 100: a drop up to ~3.7 points is still possible (z²/(n+z²)).
    low, high = stats.paired_delta_interval(0, 0, 100)
    expected = stats.Z95 ** 2 / (100 + stats.Z95 ** 2)
    assert low == pytest.approx(-expected, rel=1e-6) and high == pytest.approx(expected, rel=1e-6)
    assert stats.resolvable_drop(100, 0) == pytest.approx(expected, rel=1e-6)
    assert stats.paired_delta_interval(0, 0, 0) == (-1.0, 1.0)


def test_discordant_pairs_decide_the_width_not_the_sample_alone():
    wide = stats.resolvable_drop(874, 60)
    narrow = stats.resolvable_drop(874, 10)
    assert narrow < wide
    assert stats.resolvable_drop(2158, 52) == pytest.approx(0.0066, abs=0.0005)  # FIELD-NOTES: about ±0.65 pt


def test_tango_interval_covers_95_percent():
    rng = np.random.default_rng(0)
    for p_loss, p_gain, n in [(0.02, 0.02, 200), (0.05, 0.02, 874)]:
        truth = p_gain - p_loss
        hits = 0
        for _ in range(400):
            losses, gains, _ = rng.multinomial(n, [p_loss, p_gain, 1 - p_loss - p_gain])
            low, high = stats.paired_delta_interval(gains, losses, n)
            hits += low <= truth <= high
        assert 0.91 <= hits / 400 <= 0.99


def test_wilson_interval():
    low, high = stats.wilson(874, 874)
    assert high == 1.0 and low == pytest.approx(874 / (874 + stats.Z95 ** 2), rel=1e-9)  # 99.56%
    low, high = stats.wilson(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    assert stats.wilson(0, 0) == (0.0, 1.0)


def test_three_outcomes_and_combination():
    assert stats.at_most((-0.5, 0.8), 1.0) == stats.WITHIN
    assert stats.at_most((1.2, 3.0), 1.0) == stats.OVER
    assert stats.at_most((0.2, 1.4), 1.0) == stats.INCONCLUSIVE
    assert stats.at_least((99.6, 100.0), 99.5) == stats.WITHIN
    assert stats.at_least((90.0, 99.0), 99.5) == stats.OVER
    assert stats.at_least((98.0, 100.0), 99.5) == stats.INCONCLUSIVE
    assert stats.combine(["within", "inconclusive", "over"]) == "over"
    assert stats.combine(["within", "inconclusive"]) == "inconclusive"
    assert stats.combine(["within"]) == "within"


def test_images_needed_at_the_same_rates():
    # Full agreement on 24 images: the drop bound z²/(n+z²) reaches 1 pt at n ≥ z²·99 = 380.3 → 381 images.
    def outcome_at(m):
        low, high = stats.paired_delta_interval(0, 0, m)
        return stats.at_most((-100 * high, -100 * low), 1.0)

    assert outcome_at(24) == stats.INCONCLUSIVE
    assert stats.images_needed(outcome_at, 24) == 381
    # An estimate that sits exactly on the budget is never settled by more images.
    def on_the_budget(m):
        low, high = stats.paired_delta_interval(0.01 * m, 0.02 * m, m)
        return stats.at_most((-100 * high, -100 * low), 1.0)

    assert stats.images_needed(on_the_budget, 100, limit=20_000) is None
