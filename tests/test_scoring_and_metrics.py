import numpy as np
import pytest
import torch

from vae_anomaly.metrics import detection_metrics, evaluate
from vae_anomaly.models import VAE, VAEConfig, gaussian_nll, kl_to_standard_normal
from support import score_params
from vae_anomaly.scores import compute_scores, negative_elbo
from vae_anomaly.thresholds import choose_threshold, flag, mean_std_threshold, percentile_threshold


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


def test_detection_metrics_on_a_known_case():
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.6, 0.5, 0.9])
    m = detection_metrics(labels, scores, threshold=0.55)
    assert m["roc_auc"] == pytest.approx(5 / 6)
    assert (m["n_flagged"], m["precision"], m["recall"]) == (2, 0.5, 0.5)
    assert m["f1"] == pytest.approx(0.5)


def test_single_class_has_no_auc():
    m = detection_metrics(np.zeros(4), np.arange(4.0), threshold=2.5)
    assert m["roc_auc"] is None and m["n_flagged"] == 1


def test_evaluate_reports_primary_on_top_and_per_type():
    kinds = np.array(["normal"] * 4 + ["a", "a", "b", "b"])
    labels = (kinds != "normal").astype(int)
    primary = np.array([0, 1, 2, 3, 10, 11, 1.5, 12.0])
    other = -primary
    out = evaluate(labels, kinds, {"s": primary, "t": other}, "s", threshold=5)
    assert out["roc_auc"] == out["scores"]["s"]["roc_auc"]
    assert out["scores"]["t"]["roc_auc"] == pytest.approx(1 - out["roc_auc"])
    assert out["per_type"]["a"]["roc_auc"] == 1.0 and out["per_type"]["a"]["recall"] == 1.0
    assert out["per_type"]["b"]["recall"] == 0.5
    assert out["threshold"] == 5


def test_negative_elbo_with_many_samples_matches_its_definition():
    torch.manual_seed(0)
    model = VAE(VAEConfig([5], [8], 2)).eval()
    x = torch.randn(3, 5)
    g = torch.Generator().manual_seed(1)
    got = negative_elbo(model, x, g, n_samples=1)
    g = torch.Generator().manual_seed(1)
    mu, logvar = model.encode(x)
    z = model.reparameterize(mu, logvar, g)
    expected = gaussian_nll(x, model.decode(z)) + kl_to_standard_normal(mu, logvar)
    torch.testing.assert_close(got, expected)


def test_compute_scores_is_deterministic_and_batched():
    torch.manual_seed(0)
    model = VAE(VAEConfig([5], [8], 2))
    x = np.random.default_rng(0).normal(size=(50, 5)).astype(np.float32)
    names = ["negative_elbo", "reconstruction_mse"]
    a = compute_scores(model, x, score_params(names, batch_size=7, elbo_samples=4), seed=0)
    b = compute_scores(model, x, score_params(names, batch_size=7, elbo_samples=4), seed=0)
    np.testing.assert_array_equal(a["negative_elbo"], b["negative_elbo"])
    full = compute_scores(model, x, score_params(["reconstruction_mse"], batch_size=64), seed=0)
    np.testing.assert_allclose(a["reconstruction_mse"], full["reconstruction_mse"], rtol=1e-5)
    assert a["negative_elbo"].shape == (50,)


def test_weighted_ranking_metrics_equal_scikit_learns_with_sample_weights_ties_included():
    from sklearn.metrics import average_precision_score, roc_auc_score

    from vae_anomaly.metrics import weighted_ranking_metrics

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
    from vae_anomaly.metrics import stratified_bootstrap_weights

    labels = np.r_[np.zeros(30), np.ones(7)]
    weights = stratified_bootstrap_weights(labels, 50, seed=1)
    assert weights.shape == (50, 37)
    np.testing.assert_array_equal(weights[:, labels == 1].sum(axis=1), 7)
    np.testing.assert_array_equal(weights[:, labels == 0].sum(axis=1), 30)
    assert len({tuple(row) for row in weights}) > 40  # resamples differ
