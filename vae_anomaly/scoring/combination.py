"""The ``combined`` score's arithmetic on scores already computed (NumPy only: the detector
stage fits its scales from the score stage's validation scores, with no model).

``combined`` is the mean of the scores named in ``score.combine``, each standardised by the
median and interquartile range of its values on the validation split (:func:`fit_combination`),
a label-free ensemble of scores that fail in different places (Aggarwal & Sathe 2017,
"Outlier Ensembles", ch. 1: normalise, then average).
"""
from __future__ import annotations

import numpy as np


def fit_combination(validation: dict[str, np.ndarray], components: list[str]) -> dict[str, list[float]]:
    """Per component of ``combined``: the median and the interquartile range of its validation
    scores (normal data only, never labels), which put every component on one scale. A
    component whose IQR is 0 is scaled by its standard deviation, or 1 if that is 0 too."""
    scales = {}
    for name in components:
        values = validation[name]
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        spread = q3 - q1 if q3 > q1 else float(np.std(values)) or 1.0
        scales[name] = [float(median), float(spread)]
    return scales


def combined(scores: dict[str, np.ndarray], scales: dict[str, list[float]]) -> np.ndarray:
    """The mean over the components of (score - median) / IQR, with :func:`fit_combination`'s scales."""
    return np.mean([(scores[name] - median) / spread for name, (median, spread) in scales.items()], axis=0)
