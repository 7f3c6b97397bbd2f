"""Per-column explanations (scoring/explanation.py): the decomposition against a direct
computation, and the column a planted change touched found again."""
import numpy as np
import pandas as pd
import pytest

from vae_anomaly import Detector
from vae_anomaly.scoring.explanation import matching_pursuit


def greedy_by_hand(r, covariance, feature_column, held):
    """The greedy decomposition computed directly: at each step, for every column not taken,
    the Mahalanobis distance of the held entries explained by the taken columns and it,
    u_S^T (P_SS)^-1 u_S with P the precision of the held entries and u = P r."""
    keep = np.flatnonzero(held)
    precision = np.linalg.inv(covariance[np.ix_(keep, keep)])
    u = precision @ r[keep]
    column = feature_column[keep]
    taken, explained, gains = [], 0.0, np.zeros(feature_column.max() + 1)
    for _ in range(len(set(column))):
        best = None
        for c in sorted(set(column) - set(taken)):
            s = np.flatnonzero(np.isin(column, [*taken, c]))
            value = u[s] @ np.linalg.solve(precision[np.ix_(s, s)], u[s])
            if best is None or value > best[1]:
                best = (c, value)
        gains[best[0]] = best[1] - explained
        explained = best[1]
        taken.append(best[0])
    return gains


@pytest.mark.parametrize("with_gaps", [False, True])
def test_the_gains_are_the_greedy_steps_and_add_up_to_the_mahalanobis_distance(with_gaps):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(7, 7))
    covariance = a @ a.T + np.eye(7)
    feature_column = np.array([0, 1, 1, 1, 2, 3, 4])  # column 1: a category of three
    r = rng.normal(size=(20, 7))
    missing = (rng.random((20, 7)) < 0.15) if with_gaps else np.zeros((20, 7), dtype=bool)
    missing[:, 2:4] = missing[:, [1]]  # a category is missing as a block
    gains = matching_pursuit(r, covariance, feature_column, missing)
    for i in range(20):
        np.testing.assert_allclose(gains[i], greedy_by_hand(r[i], covariance, feature_column, ~missing[i]), atol=1e-9)
        held = np.flatnonzero(~missing[i])
        total = r[i, held] @ np.linalg.solve(covariance[np.ix_(held, held)], r[i, held])
        assert gains[i].sum() == pytest.approx(total)
        assert (gains[i] >= 0).all()


@pytest.fixture(scope="module")
def correlated():
    """Eight columns driven by two factors, a text column and a boolean; its detector."""
    rng = np.random.default_rng(0)

    def rows(n):
        z = rng.normal(size=(n, 2))
        numbers = z @ np.array([[1, 0.8, 0.5, -0.4, 0.9, 0.1, -0.7, 0.3],
                                [0.2, -0.5, 0.9, 0.8, -0.1, 1.0, 0.4, -0.6]]) + 0.1 * rng.normal(size=(n, 8))
        frame = pd.DataFrame(numbers, columns=[f"m{j}" for j in range(8)])
        frame["region"] = np.where(z[:, 0] > 0, "north", "south")
        frame["large"] = z[:, 1] > 0
        return frame

    detector = Detector(model={"hidden_dims": [32], "latent_dim": 2},
                        train={"epochs": 60, "kl_warmup_epochs": 5, "lr": 0.005, "device": "cpu"}).fit(rows(1500))
    return detector, rows(200)


def test_explain_has_the_tables_columns_and_finds_a_planted_change(correlated):
    detector, test = correlated
    changed = test.copy()
    changed.loc[5, "m3"] += 4 * test["m3"].std()  # a shift
    changed.loc[9, "m6"] = -changed.loc[9, "m6"]  # a correlation break: the same marginal, against the factors
    changed.loc[12, "region"] = "north" if changed.loc[12, "region"] == "south" else "south"
    contributions = detector.explain(changed)
    assert list(contributions.columns) == list(test.columns) and list(contributions.index) == list(test.index)
    assert contributions.idxmax(axis=1)[[5, 9, 12]].tolist() == ["m3", "m6", "region"]
    assert (contributions.to_numpy() >= 0).all()
    with_gap = changed.copy()
    with_gap.loc[5, "m1"] = np.nan
    again = detector.explain(with_gap)
    assert again.loc[5, "m1"] == 0 and again.loc[5].idxmax() == "m3"  # a gap explains nothing, and hides nothing


def test_past_max_steps_the_columns_left_share_the_rest_and_the_sum_stays_exact():
    from vae_anomaly.scoring.explanation import MAX_STEPS

    rng = np.random.default_rng(3)
    d = MAX_STEPS + 36
    a = rng.normal(size=(d, d))
    covariance = a @ a.T / d + np.eye(d)
    r = rng.normal(size=(4, d))
    r[0, 5] += 40.0  # one planted column stands out
    gains = matching_pursuit(r, covariance, np.arange(d), np.zeros_like(r, dtype=bool))
    total = np.einsum("nd,de,ne->n", r, np.linalg.inv(covariance), r)
    np.testing.assert_allclose(gains.sum(axis=1), total, rtol=1e-8)
    assert (gains >= 0).all() and gains[0].argmax() == 5
