"""Thresholds chosen from scores alone: no labels are ever seen here."""
from __future__ import annotations

import numpy as np


def mean_std_threshold(scores: np.ndarray, k: float) -> float:
    """mean + k * std of the scores."""
    return float(np.mean(scores) + k * np.std(scores))


def percentile_threshold(scores: np.ndarray, q: float) -> float:
    """The q-th percentile (linear interpolation): about (100 - q)% of ``scores`` lie above."""
    return float(np.percentile(scores, q))


def choose_threshold(scores: np.ndarray, method: str, k: float, q: float) -> float:
    if method == "mean_std":
        return mean_std_threshold(scores, k)
    if method == "percentile":
        return percentile_threshold(scores, q)
    raise ValueError(f"unknown threshold method {method!r}")  # params validation lists them


def flag(scores: np.ndarray, threshold: float) -> np.ndarray:
    """A sample is flagged as anomalous when its score is strictly above the threshold."""
    return np.asarray(scores) > threshold
