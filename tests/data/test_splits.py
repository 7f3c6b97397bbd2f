import numpy as np

from vae_anomaly.data.splits import NORMAL
from vae_anomaly.data.synthetic import make_synthetic
from vae_anomaly.params import SYNTHETIC_ANOMALIES


def small_config(params, **overrides):
    cfg = params["data"]["synthetic"]
    cfg.update({"n_train": 500, "n_val": 100, "n_test": 400, **overrides})
    return cfg


def anomaly(cfg, kind):
    """The item of data.synthetic.anomalies of this kind."""
    return next(a for a in cfg["anomalies"] if a["kind"] == kind)


def test_synthetic_shapes_and_labels(params):
    cfg = small_config(params)
    splits = make_synthetic(cfg, seed=0)
    assert splits.train.shape == (500, 30) and splits.val.shape == (100, 30)
    assert splits.test.shape == (400, 30)
    assert splits.train.dtype == np.float32
    counts = {k: int((splits.test_kind == k).sum()) for k in SYNTHETIC_ANOMALIES}
    assert counts == {k: 20 for k in SYNTHETIC_ANOMALIES}
    assert (splits.test_label == (splits.test_kind != NORMAL)).all()
    assert splits.summary()["test"]["n_anomalies"] == 60


def test_standardised_with_training_statistics_only(params):
    splits = make_synthetic(small_config(params), seed=0)
    np.testing.assert_allclose(splits.train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(splits.train.std(axis=0), 1, atol=1e-4)
    assert not np.allclose(splits.test.std(axis=0), 1, atol=1e-3)


def test_features_are_correlated_through_a_low_dimensional_latent(params):
    splits = make_synthetic(small_config(params, latent_dim=2, noise_std=0.05), seed=0)
    singular = np.linalg.svd(splits.train, compute_uv=False) ** 2
    assert singular[:2].sum() / singular.sum() > 0.95


def test_anomalies_differ_from_normal_as_described(params):
    cfg = small_config(params, n_test=3000)
    anomaly(cfg, "variance_explosion")["scale"] = 10.0
    anomaly(cfg, "mean_shift")["magnitude"] = 5.0
    splits = make_synthetic(cfg, seed=0)
    normal = splits.test[splits.test_kind == NORMAL]
    exploded = splits.test[splits.test_kind == "variance_explosion"]
    shifted = splits.test[splits.test_kind == "mean_shift"]
    # one feature per sample gets 10x noise: the largest |value| per row is far larger
    assert np.median(np.abs(exploded).max(axis=1)) > 3 * np.median(np.abs(normal).max(axis=1))
    assert np.median(np.abs(shifted).max(axis=1)) > 2 * np.median(np.abs(normal).max(axis=1))


def test_same_seed_same_data(params):
    a = make_synthetic(small_config(params), seed=3)
    b = make_synthetic(small_config(params), seed=3)
    np.testing.assert_array_equal(a.test, b.test)
    np.testing.assert_array_equal(a.test_kind, b.test_kind)


def test_correlation_break_keeps_each_feature_marginal_and_loses_the_correlations(params):
    # Every feature of a broken sample replaced: such samples should look, feature by feature,
    # like normal data (mean 0, std 1 after standardising) but have no correlation left.
    cfg = small_config(params, n_test=2000, latent_dim=2, noise_std=0.1)
    cfg["anomalies"] = [{"kind": "correlation_break", "share": 0.5, "n_features": cfg["n_features"]}]
    splits = make_synthetic(cfg, seed=0)
    broken = splits.test[splits.test_kind == "correlation_break"]
    normal = splits.test[splits.test_kind == NORMAL]
    assert len(broken) == 1000
    np.testing.assert_allclose(broken.mean(axis=0), 0, atol=0.15)
    np.testing.assert_allclose(broken.std(axis=0), 1, atol=0.1)

    def largest_correlation(x):
        corr = np.corrcoef(x, rowvar=False)
        return np.abs(corr[~np.eye(len(corr), dtype=bool)]).max()

    assert largest_correlation(normal) > 0.5  # two latent factors drive all 30 features
    assert largest_correlation(broken) < 0.15  # chance level for 1,000 samples


def test_the_anomalies_listed_are_the_ones_injected_and_the_rest_is_unchanged(params):
    """A kind left out of data.synthetic.anomalies is not injected; the training data stays the
    same (it is drawn before the anomalies), and a kind's share is of the whole test set."""
    cfg = small_config(params)
    full = make_synthetic(cfg, seed=0)
    cfg["anomalies"] = [{"kind": "variance_explosion", "share": 0.25, "n_features": 2, "scale": 3.0}]
    only = make_synthetic(cfg, seed=0)
    assert sorted(set(only.test_kind.tolist())) == [NORMAL, "variance_explosion"]
    assert (only.test_kind == "variance_explosion").sum() == 100
    np.testing.assert_array_equal(only.train, full.train)
    cfg["anomalies"] = []
    assert not make_synthetic(cfg, seed=0).test_label.any()
