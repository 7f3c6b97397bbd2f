import numpy as np
import pytest

from vae_anomaly.scoring.thresholds import choose_threshold, flag, mean_std_threshold, percentile_threshold


def test_mean_std_threshold():
    assert mean_std_threshold(np.array([1.0, 3.0]), k=2) == pytest.approx(2.0 + 2 * 1.0)


def test_percentile_flags_the_top_share():
    scores = np.random.default_rng(0).normal(size=10_000)
    threshold = percentile_threshold(scores, 99)
    assert flag(scores, threshold).sum() == 100


def test_choose_threshold_dispatches():
    s = np.arange(101.0)
    assert choose_threshold(s, "percentile", k=0, q=90) == 90.0
    assert choose_threshold(s, "mean_std", k=0, q=90) == 50.0
