import numpy as np
import pytest

from vae_anomaly.evaluation.metrics import detection_metrics, evaluate, per_type_metrics

# Five samples ranked by score: 0.9 (anomaly), 0.6 (normal), 0.5 (anomaly), 0.2, 0.1 (normal).
LABELS = np.array([0, 0, 0, 1, 1])
SCORES = np.array([0.1, 0.2, 0.6, 0.5, 0.9])


def test_detection_metrics_on_a_known_case():
    m = detection_metrics(LABELS, SCORES, threshold=0.55)  # flags 0.6 and 0.9
    assert m["roc_auc"] == pytest.approx(5 / 6)  # 5 of the 6 (anomaly, normal) pairs in order
    # average precision: precision at each anomaly in rank order, 1/1 and 2/3, averaged
    assert m["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)
    assert (m["n_flagged"], m["precision"], m["recall"]) == (2, 0.5, 0.5)
    assert m["f1"] == pytest.approx(0.5)
    # balanced accuracy: mean of the recall of anomalies (1/2) and of normal samples (2/3)
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert (m["n"], m["n_anomalies"]) == (5, 2)


def test_single_class_has_no_auc():
    m = detection_metrics(np.zeros(4), np.arange(4.0), threshold=2.5)
    assert m["roc_auc"] is None and m["n_flagged"] == 1


def test_evaluate_gives_the_primary_scores_headline_and_the_rest_apart():
    other = np.array([0.9, 0.8, 0.7, 0.2, 0.3])  # ranks every anomaly below every normal sample
    out, rest = evaluate(LABELS, {"s": SCORES, "t": other}, "s", threshold=0.55)
    # the headline alone, in this order: every other score, the baselines, per_type and the
    # rest of the primary's metrics have files of their own, so `dvc exp show` stays narrow
    assert list(out) == ["roc_auc", "pr_auc", "f1", "n_flagged", "threshold"]
    assert (out["roc_auc"], out["threshold"], out["n_flagged"]) == (pytest.approx(5 / 6), 0.55, 2)
    assert list(rest) == ["precision", "recall", "balanced_accuracy", "n", "n_anomalies"]
    assert (rest["precision"], rest["n"], rest["n_anomalies"]) == (0.5, 5, 2)


def test_per_type_compares_each_kind_with_all_normal_samples():
    kinds = np.array(["normal"] * 4 + ["a", "a", "b", "b"])
    labels = (kinds != "normal").astype(int)
    scores = np.array([0, 1, 2, 3, 10, 11, 1.5, 12.0])
    out = per_type_metrics(labels, kinds, scores, threshold=5)
    assert out["a"] == {"roc_auc": 1.0, "pr_auc": 1.0, "recall": 1.0, "f1": 1.0, "n_anomalies": 2}
    # b: 12 is above every normal score, 1.5 above two of four: 6 of 8 pairs in order
    assert out["b"]["roc_auc"] == pytest.approx(6 / 8) and out["b"]["recall"] == 0.5
    assert list(out) == ["a", "b"]


def test_weighted_ranking_metrics_equal_scikit_learns_with_sample_weights_ties_included():
    from sklearn.metrics import average_precision_score, roc_auc_score

    from vae_anomaly.evaluation.metrics import weighted_ranking_metrics

    rng = np.random.default_rng(0)
    labels = rng.random(300) < 0.2
    scores = np.round(rng.normal(size=300) + labels, 1)  # rounded: many ties
    weights = rng.integers(0, 4, size=(5, 300)).astype(float)
    weights[0] = 1.0
    roc, ap = weighted_ranking_metrics(labels, scores, weights)
    for b in range(5):
        assert roc[b] == pytest.approx(roc_auc_score(labels, scores, sample_weight=weights[b]), abs=1e-12)
        assert ap[b] == pytest.approx(average_precision_score(labels, scores, sample_weight=weights[b]), abs=1e-12)


def test_stratified_bootstrap_keeps_each_class_count():
    from vae_anomaly.evaluation.metrics import stratified_bootstrap_weights

    labels = np.r_[np.zeros(30), np.ones(7)]
    weights = stratified_bootstrap_weights(labels, 50, seed=1)
    assert weights.shape == (50, 37)
    np.testing.assert_array_equal(weights[:, labels == 1].sum(axis=1), 7)
    np.testing.assert_array_equal(weights[:, labels == 0].sum(axis=1), 30)
    assert len({tuple(row) for row in weights}) > 40  # resamples differ
